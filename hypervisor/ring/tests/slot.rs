//! `RecvBatch::slot`: parts of a message read where it lies, checked
//! against the whole message copied out, at every offset and length, over a
//! ring that wraps.

#![cfg(not(loom))]

mod common;

use common::ChannelMem;
use hallows_ring::{ChannelLayout, Receiver, Sender};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Msg {
    seq: u64,
    bytes: [u8; 40],
}

fn msg(seq: u64) -> Msg {
    let mut bytes = [0u8; 40];
    for (k, b) in bytes.iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31).wrapping_add((k as u8).wrapping_mul(7));
    }
    Msg { seq, bytes }
}

#[test]
fn parts_read_in_place_equal_the_message_copied_out() {
    let layout = ChannelLayout::for_message::<Msg>(64).unwrap();
    let mem = ChannelMem::new(layout);
    // SAFETY: `mem` outlives both endpoints; one sender, one receiver.
    let mut rx = unsafe { Receiver::<Msg>::new(mem.base(), layout) }.unwrap();
    // SAFETY: as above.
    let mut tx = unsafe { Sender::<Msg>::new(mem.base(), layout) }.unwrap();
    // The receiver's first look joins the sender's epoch.
    assert!(rx.recv_batch(1).is_err());
    let size = size_of::<Msg>();
    let mut seq = 0;
    // Rounds of 11 messages, more than the ring holds in all: batches
    // straddle the wrap and blocks' stamp slots.
    assert!(rx.capacity() < 12 * 11, "{}", rx.capacity());
    for _ in 0..12 {
        for _ in 0..11 {
            tx.try_send(&msg(seq)).unwrap();
            seq += 1;
        }
        let batch = rx.recv_batch(11).unwrap();
        assert_eq!(batch.len(), 11);
        for i in 0..batch.len() {
            let whole = batch.get(i).unwrap();
            let want = whole.as_bytes();
            let slot = batch.slot(i).unwrap();
            for at in 0..=size {
                for len in 0..=size - at {
                    let mut got = vec![0xAAu8; len];
                    assert!(slot.copy_to(at, &mut got), "{at}+{len}");
                    assert_eq!(got, want[at..at + len], "{at}+{len}");
                }
                let mut past = vec![0u8; size - at + 1];
                assert!(!slot.copy_to(at, &mut past), "{at} past the end");
                if at + 8 <= size {
                    assert_eq!(slot.read::<u64>(at), Some(u64::from_ne_bytes(want[at..at + 8].try_into().unwrap())));
                } else {
                    assert_eq!(slot.read::<u64>(at), None);
                }
            }
            for at in [0, 3, 8, 13, size - 1, size, size + 5] {
                for len in [0, 1, 7, 9, 40, 1000] {
                    let run = slot.bytes(at, len);
                    let (a, b) = (at.min(size), (at + len).min(size));
                    assert_eq!(run.len(), b - a);
                    let mut got = vec![0u8; len + 3];
                    assert_eq!(run.copy_to(&mut got), b - a);
                    assert_eq!(got[..b - a], want[a..b]);
                    let mut short = [0u8; 4];
                    assert_eq!(run.copy_to(&mut short), (b - a).min(4));
                    assert_eq!(short[..(b - a).min(4)], want[a..a + (b - a).min(4)]);
                }
            }
            assert_eq!(slot.read::<u64>(0), Some(whole.seq));
            assert_eq!(slot.read::<[u8; 2]>(usize::MAX), None);
            assert!(!slot.copy_to(usize::MAX, &mut [0u8; 2]));
        }
        assert!(batch.slot(11).is_none());
        batch.release();
    }
}

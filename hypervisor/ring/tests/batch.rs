//! `RecvBatch::iter`: folding a batch (`for_each`, `fold`, `sum`), which
//! copies small messages out of their slots in bulk, yields exactly the
//! messages `get` and `next` read one at a time, for message sizes on both
//! sides of the bulk copy's limit, slots wider than their message, batches
//! longer than one copy pass, across blocks' stamp slots and the wrap. The
//! channel memory has guard pages on both sides, so a copy reaching past
//! the slot region kills the test.

#![cfg(not(loom))]

mod common;

use common::ChannelMem;
use hallows_ring::{ChannelLayout, Message, Receiver, Sender, Tuning};

/// A message type whose every byte depends on its sequence number.
trait Seq: Message + Copy + PartialEq + core::fmt::Debug {
    fn of(seq: u64) -> Self;
}

impl<const N: usize> Seq for [u64; N] {
    fn of(seq: u64) -> Self {
        core::array::from_fn(|k| seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(k as u32 * 7) ^ k as u64)
    }
}

impl<const N: usize> Seq for [u8; N] {
    fn of(seq: u64) -> Self {
        core::array::from_fn(|k| (seq as u8).wrapping_mul(31).wrapping_add(k as u8 * 7) ^ (seq >> 8) as u8)
    }
}

impl Seq for u32 {
    fn of(seq: u64) -> Self {
        (seq as u32).wrapping_mul(2_654_435_761)
    }
}

/// Sends rounds of `batch` messages (as many as fit) and checks each batch
/// folded, iterated one by one and read by index, over enough rounds that
/// the ring wraps several times.
fn folds_equal_singles<M: Seq>(slot_size: usize, slots: usize, batch: usize) {
    for tuning in Tuning::ALL {
        folds_equal_singles_tuned::<M>(slot_size, slots, batch, tuning);
    }
}

fn folds_equal_singles_tuned<M: Seq>(slot_size: usize, slots: usize, batch: usize, tuning: Tuning) {
    let layout = ChannelLayout::new(slot_size, slots).unwrap().tuned(tuning);
    let mem = ChannelMem::new(layout);
    // SAFETY: `mem` outlives both endpoints; one sender, one receiver.
    let mut rx = unsafe { Receiver::<M>::new(mem.base(), layout) }.unwrap();
    // SAFETY: as above.
    let mut tx = unsafe { Sender::<M>::new(mem.base(), layout) }.unwrap();
    assert!(rx.recv_batch(1).is_err(), "the receiver's first look joins the sender's epoch");
    let (mut sent, mut got) = (0u64, 0u64);
    let total = 5 * rx.capacity() as u64 + 3;
    while got < total {
        let n = (batch as u64).min(total - sent);
        // Every other round one at a time, else as one batch filled in
        // place (`fill_with`: 8-byte messages two to a store).
        if (sent / batch as u64).is_multiple_of(2) {
            for _ in 0..n {
                if tx.try_send(&M::of(sent)).is_err() {
                    break;
                }
                sent += 1;
            }
        } else if let Ok(mut b) = tx.reserve(n as usize) {
            let base = sent;
            b.fill_with(|i| M::of(base + i as u64));
            sent += b.len() as u64;
            b.commit();
        }
        let b = rx.recv_batch(batch).unwrap();
        let len = b.len();
        let mut folded = Vec::with_capacity(len);
        b.iter().for_each(|m| folded.push(m));
        let singles: Vec<M> = (0..len).map(|i| b.get(i).unwrap()).collect();
        let mut stepped = Vec::with_capacity(len);
        let mut it = b.iter();
        // Part by `next`, the rest by `fold`: both resume where the other
        // stopped.
        for _ in 0..len / 2 {
            stepped.push(it.next().unwrap());
        }
        it.for_each(|m| stepped.push(m));
        let want: Vec<M> = (got..got + len as u64).map(M::of).collect();
        assert_eq!(folded, want, "fold, messages {got}..");
        assert_eq!(singles, want, "get, messages {got}..");
        assert_eq!(stepped, want, "next then fold, messages {got}..");
        b.release();
        got += len as u64;
    }
}

#[test]
fn eight_byte_messages_fold_through_the_bulk_copy() {
    // 7 messages a block; batches shorter and longer than a block, than a
    // copy pass (32 messages of 8 bytes), and the whole ring.
    for batch in [1, 5, 7, 8, 31, 32, 33, 100, 1000] {
        folds_equal_singles::<[u64; 1]>(8, 64, batch);
        folds_equal_singles::<[u8; 8]>(8, 128, batch);
    }
}

#[test]
fn sixteen_byte_messages_fold_through_the_bulk_copy() {
    for batch in [1, 3, 4, 15, 16, 17, 50] {
        folds_equal_singles::<[u64; 2]>(16, 64, batch);
    }
}

#[test]
fn wider_slots_and_larger_messages_fold_slot_by_slot() {
    for batch in [1, 2, 3, 9, 40] {
        // A 4-byte message in an 8-byte slot: not packed, no bulk copy.
        folds_equal_singles::<u32>(4, 32, batch);
        // 8-byte messages in 16-byte slots.
        folds_equal_singles::<[u64; 1]>(16, 32, batch);
        // Larger than the bulk copy takes.
        folds_equal_singles::<[u64; 3]>(24, 32, batch);
        folds_equal_singles::<[u64; 8]>(64, 64, batch);
    }
}

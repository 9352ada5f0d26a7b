//! Two threads, one sender and one receiver, over a small ring so that it
//! wraps and runs full and empty many times; random batch sizes on both
//! sides. Every message carries its sequence number and a checksum.

// Real shared memory: not meaningful (nor buildable) under loom.
#![cfg(not(loom))]

mod common;

use std::sync::Arc;

use common::ChannelMem;
use hallows_ring::{ChannelLayout, Receiver, RingError, Sender};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
struct Msg {
    seq: u64,
    data: [u64; 6],
    sum: u64,
}

impl Msg {
    fn new(seq: u64) -> Self {
        let mut data = [0; 6];
        let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for d in &mut data {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *d = x;
        }
        let sum = data.iter().fold(seq, |a, d| a.rotate_left(5) ^ d);
        Self { seq, data, sum }
    }

    fn valid(&self) -> bool {
        self.data.iter().fold(self.seq, |a, d| a.rotate_left(5) ^ d) == self.sum
    }
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const MESSAGES: u64 = 200_000;

#[test]
fn two_threads_sequence_and_checksum() {
    let layout = ChannelLayout::for_message::<Msg>(64).unwrap();
    let mem = Arc::new(ChannelMem::new(layout));
    // SAFETY: `mem` is kept alive by the Arc in each thread for as long as
    // the endpoints live; exactly one sender and one receiver.
    let mut rx = unsafe { Receiver::<Msg>::new(mem.base(), layout) }.unwrap();
    let producer = {
        let mem = Arc::clone(&mem);
        std::thread::spawn(move || {
            // SAFETY: as above.
            let mut tx = unsafe { Sender::<Msg>::new(mem.base(), layout) }.unwrap();
            let mut rng = Rng(0x1234_5678);
            let mut seq = 0;
            while seq < MESSAGES {
                let want = 1 + rng.below(40) as usize;
                if rng.below(4) == 0 {
                    match tx.try_send(&Msg::new(seq)) {
                        Ok(()) => seq += 1,
                        Err(RingError::Full) => std::thread::yield_now(),
                        Err(e) => panic!("sender: {e}"),
                    }
                    continue;
                }
                match tx.reserve(want.min((MESSAGES - seq) as usize)) {
                    Ok(mut batch) => {
                        if rng.below(2) == 0 {
                            batch.fill_with(|i| Msg::new(seq + i as u64));
                        } else {
                            for i in 0..batch.len() {
                                batch[i] = Msg::new(seq + i as u64);
                            }
                        }
                        seq += batch.len() as u64;
                        batch.commit();
                    }
                    Err(RingError::Full) => std::thread::yield_now(),
                    Err(e) => panic!("sender: {e}"),
                }
            }
        })
    };
    let mut rng = Rng(0x8765_4321);
    let mut expect = 0;
    while expect < MESSAGES {
        match rx.recv_batch(1 + rng.below(40) as usize) {
            Ok(batch) => {
                // Sometimes consume only part of what is there.
                let take = if rng.below(3) == 0 { 1 + rng.below(batch.len() as u64) as usize } else { batch.len() };
                for m in batch.iter().take(take) {
                    assert!(m.valid(), "checksum mismatch at {expect}: {m:?}");
                    assert_eq!(m.seq, expect);
                    expect += 1;
                }
                batch.release_first(take);
            }
            Err(RingError::Empty) => std::thread::yield_now(),
            Err(e) => panic!("receiver: {e}"),
        }
    }
    producer.join().unwrap();
    assert_eq!(rx.try_recv().err(), Some(RingError::Empty));
}

//! Streams `count` messages over channel `channel` (boot arguments):
//! `role=send` produces them in batches of `batch`, ringing the doorbell
//! after each batch when the channel has one (and spinning `pace` times
//! between batches); `role=recv` checks that they
//! arrive in order and intact, sleeping on the doorbell when the ring is
//! empty (or polling on a poll-mode channel). Both ends print a checksum of
//! everything that crossed, so the test compares the two.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use hallows_rt::channel::{self, RingError};
use hallows_rt::{println, Boot};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

hallows_rt::entry!(main);

/// One 64-byte message: a sequence number and a payload derived from it.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Msg {
    seq: u64,
    data: [u64; 7],
}

impl Msg {
    fn new(seq: u64) -> Msg {
        let mut data = [0; 7];
        for (i, d) in data.iter_mut().enumerate() {
            *d = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i as u32 * 9);
        }
        Msg { seq, data }
    }

    fn sum(&self) -> u64 {
        self.data.iter().fold(self.seq, |a, &d| a.wrapping_add(d))
    }
}

fn main(boot: &Boot) -> u64 {
    let name = boot.arg("channel").unwrap_or("stream");
    let count: u64 = boot.arg("count").and_then(|s| s.parse().ok()).unwrap_or(1000);
    let batch: usize = boot.arg("batch").and_then(|s| s.parse().ok()).unwrap_or(32);
    match boot.arg("role") {
        Some("send") => {
            let pace: u64 = boot.arg("pace").and_then(|s| s.parse().ok()).unwrap_or(0);
            send(boot, name, count, batch.max(1), pace)
        }
        Some("recv") => recv(boot, name, count),
        other => {
            println!("unknown role {other:?}");
            2
        }
    }
}

fn send(boot: &Boot, name: &str, count: u64, batch: usize, pace: u64) -> u64 {
    let mut tx = match channel::sender::<Msg>(boot, name) {
        Ok(tx) => tx,
        Err(e) => {
            println!("cannot open {name}: {e:?}");
            return 3;
        }
    };
    let (mut seq, mut sum, mut rings) = (0u64, 0u64, 0u64);
    while seq < count {
        let want = batch.min((count - seq) as usize);
        match tx.reserve(want) {
            Ok(mut b) => {
                let n = b.len();
                b.fill_with(|i| Msg::new(seq + i as u64));
                b.commit();
                for s in seq..seq + n as u64 {
                    sum = sum.wrapping_add(Msg::new(s).sum());
                }
                seq += n as u64;
                if tx.has_doorbell() {
                    if let Err(e) = tx.notify() {
                        println!("notify failed: {e}");
                        return 4;
                    }
                    rings += 1;
                }
                // `pace`: idle between batches, so that each doorbell finds
                // the receiver asleep (for measuring delivery).
                for _ in 0..pace {
                    hallows_rt::relax();
                }
            }
            Err(RingError::Full) | Err(RingError::PeerRestarted) => hallows_rt::relax(),
            Err(e) => {
                println!("send failed at {seq}: {e}");
                return 5;
            }
        }
    }
    println!("sent {count} messages on {name} ({rings} doorbells), checksum {sum:#018x}");
    0
}

fn recv(boot: &Boot, name: &str, count: u64) -> u64 {
    let mut rx = match channel::receiver::<Msg>(boot, name) {
        Ok(rx) => rx,
        Err(e) => {
            println!("cannot open {name}: {e:?}");
            return 3;
        }
    };
    let (mut expected, mut sum, mut waits) = (0u64, 0u64, 0u64);
    while expected < count {
        let doorbell = rx.has_doorbell();
        match rx.recv_batch(64) {
            Ok(b) => {
                for m in b.iter() {
                    if m.seq != expected || m.data != Msg::new(expected).data {
                        println!("message {expected} arrived as {} or corrupted", m.seq);
                        return 6;
                    }
                    sum = sum.wrapping_add(m.sum());
                    expected += 1;
                }
                b.release();
            }
            Err(RingError::Empty) if doorbell => {
                rx.wait();
                waits += 1;
            }
            Err(RingError::Empty) | Err(RingError::PeerRestarted) => hallows_rt::relax(),
            Err(e) => {
                println!("receive failed at {expected}: {e}");
                return 5;
            }
        }
    }
    println!("received {count} messages on {name} in order ({waits} waits), checksum {sum:#018x}");
    0
}

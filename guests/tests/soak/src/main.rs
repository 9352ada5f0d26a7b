//! The soak test's partitions (`make soak`, `tests/systems/soak.toml`), by
//! boot argument `role`; `secs=N` is the length of the run in seconds of
//! machine time (`time::now`, which restarts do not reset):
//!
//! * `producer`: sends numbered, checksummed messages on `p2r` as fast as
//!   the ring takes them until `secs`, then reports how many.
//! * `relay`: forwards `p2r` to `r2c` in batches; every `crash_ms` of its
//!   own run it panics (its fault policy restarts it) while holding a
//!   batch it has taken and not forwarded, until `secs`; then it forwards
//!   what is left and exits.
//! * `consumer`: receives on `r2c` until `secs` plus a grace period and
//!   checks the restart contract (docs/channels.md): sequence numbers only
//!   grow (no duplicate, no reordering), every message is intact (no
//!   half-written one), and it counts what was lost (gaps) and how often
//!   the relay was seen restarting.
//! * `hostile`: until `secs`, random hypercalls with hostile arguments and
//!   a doorbell storm on `noise` (to the consumer's core).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use hallows_rt::abi::{call, psci};
use hallows_rt::channel::{self, RingError};
use hallows_rt::{println, raw_hypercall, time, Boot};
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
            *d = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i as u32 * 9) ^ 0x5a5a_5a5a;
        }
        Msg { seq, data }
    }

    fn intact(&self) -> bool {
        self.data == Msg::new(self.seq).data
    }
}

fn arg(boot: &Boot, key: &str, default: u64) -> u64 {
    boot.arg(key).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn now_ms() -> u64 {
    time::now().as_millis() as u64
}

fn main(boot: &Boot) -> u64 {
    let end_ms = arg(boot, "secs", 20) * 1000;
    match boot.arg("role") {
        Some("producer") => producer(boot, end_ms),
        Some("relay") => relay(boot, end_ms),
        Some("consumer") => consumer(boot, end_ms),
        Some("hostile") => hostile(boot, end_ms),
        other => {
            println!("unknown role {other:?}");
            2
        }
    }
}

fn producer(boot: &Boot, end_ms: u64) -> u64 {
    let Ok(mut tx) = channel::sender::<Msg>(boot, "p2r") else { return 3 };
    let (mut seq, mut restarts) = (0u64, 0u64);
    let mut next_report = 60_000;
    while now_ms() < end_ms {
        match tx.reserve(32) {
            Ok(mut b) => {
                let n = b.len();
                b.fill_with(|i| Msg::new(seq + i as u64));
                b.commit();
                seq += n as u64;
            }
            Err(RingError::Full) => hallows_rt::relax(),
            Err(RingError::PeerRestarted) => restarts += 1,
            Err(e) => {
                println!("soak: producer: {e}");
                return 5;
            }
        }
        if now_ms() >= next_report {
            println!("soak: producer: {seq} sent so far");
            next_report += 60_000;
        }
    }
    println!("soak: producer: sent {seq}, saw the relay restart {restarts} times");
    0
}

fn relay(boot: &Boot, end_ms: u64) -> u64 {
    let crash_ms = arg(boot, "crash_ms", 2000);
    let Ok(mut rx) = channel::receiver::<Msg>(boot, "p2r") else { return 3 };
    let Ok(mut tx) = channel::sender::<Msg>(boot, "r2c") else { return 3 };
    let started = now_ms();
    let mut forwarded = 0u64;
    let mut held = [Msg::new(0); 32];
    loop {
        let now = now_ms();
        if now >= end_ms + 2000 {
            break;
        }
        // Take a batch from the producer...
        let n = match rx.recv_batch(held.len()) {
            Ok(b) => {
                let n = b.len();
                for (slot, m) in held.iter_mut().zip(b.iter()) {
                    *slot = m;
                }
                b.release();
                n
            }
            Err(RingError::Empty) | Err(RingError::PeerRestarted) => 0,
            Err(e) => {
                println!("soak: relay: receive: {e}");
                return 5;
            }
        };
        // ...and crash now and then while holding it (until the end).
        if n > 0 && now < end_ms && now - started >= crash_ms {
            panic!("soak: relay crashes on purpose holding {n} messages after {forwarded} forwarded (run #{})", boot.restart_count());
        }
        let mut sent = 0;
        while sent < n {
            match tx.reserve(n - sent) {
                Ok(mut b) => {
                    let k = b.len();
                    for i in 0..k {
                        b.write(i, &held[sent + i]);
                    }
                    b.commit();
                    sent += k;
                }
                Err(RingError::Full) | Err(RingError::PeerRestarted) => hallows_rt::relax(),
                Err(e) => {
                    println!("soak: relay: send: {e}");
                    return 5;
                }
            }
        }
        forwarded += n as u64;
    }
    println!("soak: relay: run #{} forwarded {forwarded}", boot.restart_count());
    0
}

fn consumer(boot: &Boot, end_ms: u64) -> u64 {
    let Ok(mut rx) = channel::receiver::<Msg>(boot, "r2c") else { return 3 };
    // The hostile partition's doorbells land here; this end never waits
    // on them.
    let _noise = channel::receiver::<Msg>(boot, "noise");
    let (mut received, mut lost, mut gaps, mut max_gap) = (0u64, 0u64, 0u64, 0u64);
    let (mut dup_or_reorder, mut corrupt, mut restarts) = (0u64, 0u64, 0u64);
    let mut expected = 0u64;
    let mut next_report = 60_000;
    while now_ms() < end_ms + 4000 {
        match rx.recv_batch(64) {
            Ok(b) => {
                for m in b.iter() {
                    if !m.intact() {
                        corrupt += 1;
                    } else if m.seq < expected {
                        dup_or_reorder += 1;
                    } else {
                        if m.seq > expected {
                            let gap = m.seq - expected;
                            lost += gap;
                            gaps += 1;
                            max_gap = max_gap.max(gap);
                        }
                        expected = m.seq + 1;
                        received += 1;
                    }
                }
                b.release();
            }
            Err(RingError::Empty) => hallows_rt::relax(),
            Err(RingError::PeerRestarted) => restarts += 1,
            Err(e) => {
                println!("soak: consumer: {e}");
                return 5;
            }
        }
        if now_ms() >= next_report {
            println!("soak: consumer: {received} received so far, {lost} lost in {gaps} gaps");
            next_report += 60_000;
        }
    }
    println!(
        "soak: consumer: received {received}, last {}, lost {lost} in {gaps} gaps (largest {max_gap}), duplicates or reordered {dup_or_reorder}, corrupt {corrupt}, relay restarts seen {restarts}",
        expected.saturating_sub(1)
    );
    if dup_or_reorder != 0 || corrupt != 0 {
        return 1;
    }
    0
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn hostile(boot: &Boot, end_ms: u64) -> u64 {
    let noise = channel::sender::<Msg>(boot, "noise").ok();
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ boot.restart_count() as u64);
    let (mut calls, mut rings) = (0u64, 0u64);
    let ram = (boot.ram_base(), boot.ram_size());
    while now_ms() < end_ms {
        for _ in 0..256 {
            let r = rng.next();
            let a = rng.next();
            let b = rng.next();
            // Calls that cannot end this partition: never EXIT, FAULT,
            // CPU_OFF, CPU_ON (a foreign target stops it) or SYSTEM_*.
            let (f, args) = match r % 9 {
                0 => (call::CONSOLE_WRITE, [a, b % 512, 0, 0, 0]),
                // Starts inside its RAM, runs off the end.
                1 => (call::CONSOLE_WRITE, [ram.0 + ram.1 - 1 - a % 32, 64 + b % 192, 0, 0, 0]),
                2 => (call::NOTIFY, [a % 64, 0, 0, 0, 0]),
                3 => (call::BASE + 8 + a % 0x1000, [a, b, a ^ b, 0, 0]),
                4 => (call::ABI_VERSION, [a, b, 0, 0, 0]),
                5 => (call::SET_TIMER, [a, b, 0, 0, 0]),
                6 => (call::WAKE, [a, 0, 0, 0, 0]),
                7 => (psci::AFFINITY_INFO_64, [a, b % 3, 0, 0, 0]),
                _ => (psci::FEATURES, [a, 0, 0, 0, 0]),
            };
            raw_hypercall(f, args);
            calls += 1;
        }
        if let Some(n) = &noise {
            for _ in 0..64 {
                if n.notify().is_ok() {
                    rings += 1;
                }
            }
        }
    }
    println!("soak: hostile: {calls} hypercalls, {rings} doorbells");
    0
}

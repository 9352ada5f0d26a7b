//! Loom models of the ring protocol: every interleaving (up to a preemption
//! bound) of a producer and a consumer, with the slots as loom cells so that
//! a missing happens-before edge between a slot write and a slot read (or a
//! read and the next write) is reported as a data race. The stamps are loom
//! atomics next to the cells, so the publication edge checked is the real
//! one: stamp store (Release, or Release fence + Relaxed for a batch) to
//! stamp load (Relaxed + Acquire fence).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p hallows-ring --release --test loom`
#![cfg(loom)]
#![allow(unsafe_code)]

use hallows_ring::{ChannelLayout, ChannelView, ConsumerCore, ConsumerHeader, ProducerCore, ProducerHeader, RingError, Tuning};
use loom::cell::UnsafeCell;
use loom::sync::atomic::Ordering::SeqCst;
use loom::sync::atomic::{AtomicBool, AtomicU64};
use loom::sync::Arc;
use loom::thread;

struct Shared {
    p: ProducerHeader,
    c: ConsumerHeader,
    slots: Vec<UnsafeCell<u64>>,
    stamps: Vec<AtomicU64>,
    /// `block_slots - 1`.
    bm: usize,
}

#[derive(Clone)]
struct View(Arc<Shared>);

impl ChannelView for View {
    fn producer_header(&self) -> &ProducerHeader {
        &self.0.p
    }
    fn consumer_header(&self) -> &ConsumerHeader {
        &self.0.c
    }
    fn stamp(&self, index: u64) -> &AtomicU64 {
        // The block's stamp slot; the message cells of stamp slots are
        // never used.
        &self.0.stamps[(index as usize | self.0.bm) & (self.0.stamps.len() - 1)]
    }
}

impl View {
    fn new(layout: &ChannelLayout) -> Self {
        let slots = (0..layout.slot_count()).map(|_| UnsafeCell::new(0)).collect();
        let stamps = (0..layout.slot_count()).map(|_| AtomicU64::new(0)).collect();
        let bm = layout.block_slots() - 1;
        View(Arc::new(Shared { p: ProducerHeader::new(), c: ConsumerHeader::new(), slots, stamps, bm }))
    }
    fn write(&self, index: u64, v: u64) {
        assert_ne!(index as usize & self.0.bm, self.0.bm, "a stamp slot never carries a message");
        let i = index as usize & (self.0.slots.len() - 1);
        // SAFETY: loom checks that no access to this cell races with this one.
        self.0.slots[i].with_mut(|p| unsafe { *p = v });
    }
    fn read(&self, index: u64) -> u64 {
        let i = index as usize & (self.0.slots.len() - 1);
        // SAFETY: as above.
        self.0.slots[i].with(|p| unsafe { *p })
    }
}

/// Sends `values` in batches of at most `batch`, spinning while full.
fn send_all(tx: &mut ProducerCore<View>, values: &[u64], batch: u32) {
    let mut i = 0;
    while i < values.len() {
        match tx.reserve(batch) {
            Ok(span) => {
                let n = (span.len as usize).min(values.len() - i);
                for k in 0..n {
                    tx.view().write(tx.geometry().advance(span.start, k as u64), values[i + k]);
                }
                tx.commit(n as u32);
                i += n;
            }
            Err(RingError::Full) => thread::yield_now(),
            Err(e) => panic!("producer: {e:?}"),
        }
    }
}

/// Takes `values` in batches of up to `batch` (`peek`/`release`),
/// spinning while empty: each must arrive in order and intact.
fn peek_in_order(rx: &mut ConsumerCore<View>, values: std::ops::Range<u64>, batch: u32) {
    let mut next = values.start;
    while next < values.end {
        match rx.peek(batch.min((values.end - next) as u32)) {
            Ok(span) => {
                for k in 0..span.len {
                    assert_eq!(rx.view().read(rx.geometry().advance(span.start, u64::from(k))), next);
                    next += 1;
                }
                rx.release(span.len);
            }
            Err(RingError::Empty) => thread::yield_now(),
            Err(e) => panic!("consumer: {e:?}"),
        }
    }
}

/// Takes `values` one at a time (`peek_one`/`release_one`), spinning while
/// empty: each must arrive in order and intact.
fn receive_in_order(rx: &mut ConsumerCore<View>, values: std::ops::Range<u64>) {
    for want in values {
        loop {
            match rx.peek_one() {
                Ok(index) => {
                    assert_eq!(rx.view().read(index), want);
                    rx.release_one();
                    break;
                }
                Err(RingError::Empty) => thread::yield_now(),
                Err(e) => panic!("consumer: {e:?}"),
            }
        }
    }
}

/// Sends `from..to` one at a time (`send_one`), spinning while full.
fn send_one_at_a_time(tx: &mut ProducerCore<View>, from: u64, to: u64) {
    let mut v = from;
    while v < to {
        match tx.send_one(|view, index| view.write(index, v)) {
            Ok(()) => v += 1,
            Err(RingError::Full) => thread::yield_now(),
            Err(e) => panic!("producer: {e:?}"),
        }
    }
}

/// Takes `values` one at a time with `recv_one`, spinning while empty.
fn recv_one_in_order(rx: &mut ConsumerCore<View>, values: std::ops::Range<u64>) {
    for want in values {
        loop {
            match rx.recv_one(|view, index| view.read(index)) {
                Ok(got) => {
                    assert_eq!(got, want);
                    break;
                }
                Err(RingError::Empty) => thread::yield_now(),
                Err(e) => panic!("consumer: {e:?}"),
            }
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(4);
    }
    b.check(f);
}

/// Steady state: three messages through a ring of two messages (so it wraps
/// and fills), batches on both sides; values arrive in order and intact.
#[test]
fn transfer_wraps_in_order() {
    model(|| {
        // Two blocks of two slots (one message and the stamp each), so a
        // batch stamps two blocks.
        let layout = ChannelLayout::new(32, 4).unwrap();
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let producer = thread::spawn(move || send_all(&mut tx, &[10, 11, 12], 2));
        peek_in_order(&mut rx, 10..13, 2);
        producer.join().unwrap();
    });
}

/// A single-message reader (`peek_one`, as `Receiver::try_recv`) behind a
/// producer of batches: blocks of one message, so every block it finds
/// published to its end makes it probe the farthest block it may read and
/// take the whole run on that one stamp. Values arrive in order and intact,
/// and no slot is rewritten while it may still be read.
#[test]
fn single_reader_probes_and_wraps() {
    model(|| {
        // Four blocks of two slots: one message and the stamp each.
        let layout = ChannelLayout::new(32, 8).unwrap();
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let producer = thread::spawn(move || send_all(&mut tx, &[10, 11, 12, 13, 14], 3));
        receive_in_order(&mut rx, 10..15);
        producer.join().unwrap();
    });
}

/// One message at a time on both sides (`send_one` and `recv_one`, as
/// `Sender::try_send` and `Receiver::try_recv`): the producer's free-slot
/// limit, kept across sends and recomputed only when it is reached, never
/// lets it write a slot the consumer may still be reading, and the
/// consumer's hand-back mark (`hand_at`) never hands a slot back before it
/// has been read; the values arrive in order and intact through a ring
/// that wraps twice.
#[test]
fn one_at_a_time_both_sides_wraps() {
    model(|| {
        // Two blocks of two slots: capacity two.
        let layout = ChannelLayout::new(32, 4).unwrap();
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let producer = thread::spawn(move || send_one_at_a_time(&mut tx, 10, 14));
        recv_one_in_order(&mut rx, 10..14);
        producer.join().unwrap();
    });
}

/// The short paths of 8-byte messages one at a time (`quick_end` on both
/// sides: sends and receives inside a block that look at nothing but one
/// index) through a one-block ring of three messages that wraps: no slot
/// is written while it may still be read, nothing is read before it is
/// published, and the values arrive in order and intact.
#[test]
fn short_paths_one_at_a_time_wrap() {
    model(|| {
        // One block of four 8-byte slots: three messages and the stamp.
        let layout = ChannelLayout::new(8, 4).unwrap();
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let producer = thread::spawn(move || send_one_at_a_time(&mut tx, 10, 15));
        recv_one_in_order(&mut rx, 10..15);
        producer.join().unwrap();
    });
}

/// A ring tuned for throughput (blocks of eight 16-byte slots, two lines,
/// one stamp): a batch, then single sends on the short path, read by a
/// batch reader then one at a time; the batch's `head` is not stored
/// (it does not leave its block). Values in order and intact.
#[test]
fn throughput_blocks_batches_then_singles() {
    model(|| {
        let layout = ChannelLayout::new(16, 32).unwrap().tuned(Tuning::Throughput);
        assert_eq!(layout.block_slots(), 8);
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let producer = thread::spawn(move || {
            send_all(&mut tx, &[10, 11, 12], 3);
            send_one_at_a_time(&mut tx, 13, 15);
        });
        peek_in_order(&mut rx, 10..12, 2);
        recv_one_in_order(&mut rx, 12..15);
        producer.join().unwrap();
    });
}

/// The consumer restarts while the producer sends one message at a time
/// (`send_one`), so the producer header's `head` lags inside the block
/// being filled: the new incarnation, which starts from that `head` and
/// skips what the block's stamp publishes, never sees a message its
/// predecessor may have taken, and then sees the rest in order.
#[test]
fn consumer_restart_behind_one_at_a_time_sends() {
    model(|| {
        // One block of 7 messages: every send lags the header.
        let layout = ChannelLayout::new(8, 8).unwrap();
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        // The last message goes out only once the new incarnation is
        // attached, so it is one that incarnation must receive.
        let reattached = Arc::new(AtomicBool::new(false));
        let go = Arc::clone(&reattached);
        let producer = thread::spawn(move || {
            let mut v = 100;
            while v < 103 {
                if v == 102 && !go.load(SeqCst) {
                    thread::yield_now();
                    continue;
                }
                match tx.send_one(|view, index| view.write(index, v)) {
                    Ok(()) => v += 1,
                    Err(RingError::Full) => thread::yield_now(),
                    Err(RingError::PeerRestarted) => {}
                    Err(e) => panic!("producer: {e:?}"),
                }
            }
        });
        // The first incarnation takes what it finds, then dies.
        let mut first = Vec::new();
        while let Ok(got) = rx.recv_one(|view, index| view.read(index)) {
            first.push(got);
        }
        assert!(first.iter().copied().eq(100..100 + first.len() as u64), "{first:?}");
        drop(rx);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        reattached.store(true, SeqCst);
        let mut got = Vec::new();
        while got.last() != Some(&102) {
            match rx.recv_one(|view, index| view.read(index)) {
                Ok(v) => got.push(v),
                Err(RingError::Empty) => thread::yield_now(),
                Err(e) => panic!("consumer: {e:?}"),
            }
        }
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
        if let (Some(&last), Some(&next)) = (first.last(), got.first()) {
            assert!(next > last, "{first:?} then {got:?}");
        }
        producer.join().unwrap();
    });
}

/// The producer restarts mid-stream: the consumer sees an in-order subset
/// ending with the post-restart message, and the new producer never writes a
/// slot the consumer may still be reading.
#[test]
fn producer_restart_resynchronises() {
    model(|| {
        let layout = ChannelLayout::new(8, 2).unwrap();
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let v = view.clone();
        let producer = thread::spawn(move || {
            send_all(&mut tx, &[1], 1);
            drop(tx);
            let mut tx = ProducerCore::attach(v, &layout);
            send_all(&mut tx, &[2], 1);
        });
        let mut got = Vec::new();
        let mut restarts = 0;
        while got.last() != Some(&2) {
            match rx.peek_one() {
                Ok(index) => {
                    got.push(rx.view().read(index));
                    rx.release_one();
                }
                Err(RingError::Empty) => thread::yield_now(),
                Err(RingError::PeerRestarted) => restarts += 1,
                Err(e) => panic!("consumer: {e:?}"),
            }
        }
        assert!(got == [1, 2] || got == [2], "{got:?}");
        assert_eq!(restarts, 1);
        producer.join().unwrap();
    });
}

/// The consumer restarts mid-stream, while the producer publishes batches
/// as large as the ring: the new consumer sees a gap-free, in-order run of
/// messages ending with the last one sent and starting after anything its
/// previous incarnation received (it starts at the producer's `head`, which
/// is stored before the stamps), and the producer never reuses a slot while
/// the old incarnation may still be reading it.
#[test]
fn consumer_restart_resynchronises() {
    model(|| {
        let layout = ChannelLayout::new(32, 4).unwrap();
        let view = View::new(&layout);
        let mut tx = ProducerCore::attach(view.clone(), &layout);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let producer = thread::spawn(move || {
            let mut sent = 0u64;
            while sent < 3 {
                match tx.reserve(2) {
                    Ok(span) => {
                        let n = u64::from(span.len).min(3 - sent);
                        for k in 0..n {
                            tx.view().write(tx.geometry().advance(span.start, k), 100 + sent + k);
                        }
                        tx.commit(n as u32);
                        sent += n;
                    }
                    Err(RingError::Full) => thread::yield_now(),
                    Err(RingError::PeerRestarted) => {}
                    Err(e) => panic!("producer: {e:?}"),
                }
            }
        });
        // The first incarnation reads what is there (without releasing it),
        // then dies.
        let mut first = Vec::new();
        match rx.peek(2) {
            Ok(span) => {
                for k in 0..span.len {
                    first.push(rx.view().read(rx.geometry().advance(span.start, u64::from(k))));
                }
            }
            Err(RingError::Empty) => {}
            Err(e) => panic!("consumer: {e:?}"),
        }
        assert!(first.iter().copied().eq(100..100 + first.len() as u64), "{first:?}");
        drop(rx);
        let mut rx = ConsumerCore::attach(view.clone(), &layout);
        let mut got = Vec::new();
        while got.last() != Some(&102) {
            match rx.peek(2) {
                Ok(span) => {
                    for k in 0..span.len {
                        got.push(rx.view().read(rx.geometry().advance(span.start, u64::from(k))));
                    }
                    rx.release(span.len);
                }
                Err(RingError::Empty) => thread::yield_now(),
                Err(e) => panic!("consumer: {e:?}"),
            }
        }
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
        if let Some(&last) = first.last() {
            assert!(got[0] > last, "{first:?} then {got:?}");
        }
        producer.join().unwrap();
    });
}

//! Property tests with a hostile peer: the adversary writes arbitrary values
//! into its own header page and slots between the honest side's operations,
//! while the honest side runs with exactly the permissions stage 2 would give
//! it (guard pages around the channel, the peer's regions read-only). A stray
//! access or a write in the wrong direction kills the test with SIGSEGV; a
//! panic or hang fails it; and implausible indices or stamps must be
//! reported as `RingError::Corrupt`.

// Real shared memory: not meaningful (nor buildable) under loom.
#![cfg(not(loom))]

mod common;

use common::{ChannelMem, Side};
use hallows_ring::header::*;
use hallows_ring::protocol::{stamp_value, Geometry};
use hallows_ring::{ChannelLayout, Receiver, RingError, Sender, Tuning};
use proptest::prelude::*;

type Msg = [u64; 2];

/// 16-byte slots; tuned for throughput, rings of 32 slots get blocks of 8
/// (two lines, one stamp) instead of 4.
fn layout(slots_log2: u32, throughput: bool) -> ChannelLayout {
    let l = ChannelLayout::new(16, 1 << slots_log2).unwrap();
    if throughput {
        l.tuned(Tuning::Throughput)
    } else {
        l
    }
}

#[derive(Debug, Clone)]
enum HostileProducer {
    SetHead(u64),
    BumpHead(u8),
    /// Stamps the blocks of the next `n` messages past the consumer's tail
    /// as published in the epoch the consumer acknowledged (whatever their
    /// contents).
    Publish(u8),
    /// A stamp of the acknowledged epoch that no honest producer can have
    /// written (a later lap, a stamp slot's index, or another block's) in
    /// the block of the consumer's next message: must be reported.
    BadStamp(u32),
    SetStamp(u8, u64),
    SetEpoch(u64),
    BumpEpoch,
    SetGeometry(u32, u32, u32),
    Scribble(u16, u8),
    Recv,
    RecvBatch(u8, u8),
}

fn hostile_producer() -> impl Strategy<Value = HostileProducer> {
    use HostileProducer::*;
    prop_oneof![
        any::<u64>().prop_map(SetHead),
        any::<u8>().prop_map(BumpHead),
        any::<u8>().prop_map(Publish),
        any::<u8>().prop_map(Publish),
        any::<u32>().prop_map(BadStamp),
        (any::<u8>(), any::<u64>()).prop_map(|(i, v)| SetStamp(i, v)),
        prop_oneof![any::<u64>(), 0..4u64].prop_map(SetEpoch),
        Just(BumpEpoch),
        (0..3u32, any::<u32>(), any::<u32>()).prop_map(|(w, a, b)| SetGeometry(w, a, b)),
        (any::<u16>(), any::<u8>()).prop_map(|(o, v)| Scribble(o, v)),
        Just(Recv),
        (any::<u8>(), any::<u8>()).prop_map(|(m, r)| RecvBatch(m, r)),
    ]
}

#[derive(Debug, Clone)]
enum HostileConsumer {
    SetTail(u64),
    BumpTail(u8),
    /// Tail beyond head: must be reported once connected.
    Overrun(u32),
    SetAck(u64),
    AckCurrent,
    SetEpoch(u64),
    Send,
    SendBatch(u8, u8),
}

fn hostile_consumer() -> impl Strategy<Value = HostileConsumer> {
    use HostileConsumer::*;
    prop_oneof![
        any::<u64>().prop_map(SetTail),
        any::<u8>().prop_map(BumpTail),
        any::<u32>().prop_map(Overrun),
        prop_oneof![any::<u64>(), 0..4u64].prop_map(SetAck),
        Just(AckCurrent),
        prop_oneof![any::<u64>(), 0..4u64].prop_map(SetEpoch),
        Just(Send),
        Just(Send),
        (any::<u8>(), any::<u8>()).prop_map(|(m, c)| SendBatch(m, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn honest_receiver_survives_hostile_producer(
        slots_log2 in 1u32..6,
        throughput in any::<bool>(),
        ops in proptest::collection::vec(hostile_producer(), 1..80),
    ) {
        let l = layout(slots_log2, throughput);
        let g = Geometry::new(&l);
        let cap = l.capacity() as u64;
        let (slots, block) = (l.slot_count() as u64, l.block_slots() as u64);
        let mem = ChannelMem::new(l);
        let cons = l.consumer_header().offset;
        // A real producer initialises the header, then the adversary owns it.
        mem.enforce(Side::Producer);
        // SAFETY: `mem` maps the channel with the producer's permissions and
        // outlives the sender; no other sender exists.
        let _init: Sender<Msg> = unsafe { Sender::new(mem.base(), l) }.unwrap();
        mem.enforce(Side::Consumer);
        // SAFETY: as above, with the consumer's permissions.
        let mut rx = unsafe { Receiver::<Msg>::new(mem.base(), l) }.unwrap();
        let hostile = |f: &dyn Fn()| { mem.open(); f(); mem.enforce(Side::Consumer); };
        for op in ops {
            match op {
                HostileProducer::SetHead(v) => hostile(&|| mem.write_u64(PRODUCER_HEAD_OFFSET, v)),
                HostileProducer::BumpHead(k) => hostile(&|| {
                    let h = mem.read_u64(PRODUCER_HEAD_OFFSET);
                    mem.write_u64(PRODUCER_HEAD_OFFSET, h.wrapping_add(u64::from(k)));
                }),
                HostileProducer::Publish(n) => {
                    let tail = mem.read_u64(cons + CONSUMER_TAIL_OFFSET);
                    let ack = mem.read_u64(cons + CONSUMER_PROD_EPOCH_ACK_OFFSET);
                    hostile(&|| {
                        let mut i = tail;
                        for _ in 0..u64::from(n) % (cap + 1) {
                            mem.write_u64(l.stamp_offset(i), stamp_value(ack, i));
                            i = g.next(i);
                        }
                    });
                }
                HostileProducer::BadStamp(k) => {
                    // Let the consumer hand out what it already validated.
                    if let Ok(b) = rx.recv_batch(cap as usize) { b.release(); }
                    let tail = mem.read_u64(cons + CONSUMER_TAIL_OFFSET);
                    let ack = mem.read_u64(cons + CONSUMER_PROD_EPOCH_ACK_OFFSET);
                    let blocks = slots / block;
                    let index = match k % 3 {
                        // Another block's message, in this lap.
                        2 if blocks > 1 => g.block_start(tail) + block * (1 + u64::from(k / 3) % (blocks - 1)) + u64::from(k / 3) % (block - 1),
                        // The block's stamp slot.
                        1 => tail | (block - 1),
                        // A later lap.
                        _ => tail + slots * (1 + u64::from(k / 3) % 1000),
                    };
                    hostile(&|| mem.write_u64(l.stamp_offset(tail), stamp_value(ack, index)));
                    let synced = ack != 0 && mem.read_u64(PRODUCER_EPOCH_OFFSET) == ack;
                    // A single-message read always looks at the stamp.
                    let r = rx.try_recv().map(|_| ());
                    if synced {
                        prop_assert_eq!(r, Err(RingError::Corrupt));
                    }
                    // A batch read looks once `head` says there is more.
                    hostile(&|| mem.write_u64(PRODUCER_HEAD_OFFSET, tail.wrapping_add(1)));
                    let r = rx.recv_batch(cap as usize + 1).map(|b| b.len());
                    if synced {
                        prop_assert_eq!(r, Err(RingError::Corrupt));
                    }
                }
                HostileProducer::SetStamp(i, v) => hostile(&|| mem.write_u64(l.stamp_offset(u64::from(i)), v)),
                HostileProducer::SetEpoch(v) => hostile(&|| mem.write_u64(PRODUCER_EPOCH_OFFSET, v)),
                HostileProducer::BumpEpoch => hostile(&|| {
                    let e = mem.read_u64(PRODUCER_EPOCH_OFFSET);
                    mem.write_u64(PRODUCER_EPOCH_OFFSET, e.wrapping_add(1));
                }),
                HostileProducer::SetGeometry(which, a, b) => hostile(&|| match which {
                    0 => mem.write_u32(PRODUCER_MAGIC_OFFSET, a),
                    1 => mem.write_u32(PRODUCER_SLOT_SIZE_OFFSET, b),
                    _ => mem.write_u32(PRODUCER_SLOT_COUNT_OFFSET, a ^ b),
                }),
                HostileProducer::Scribble(off, v) => {
                    let s = l.slots();
                    hostile(&|| mem.write_byte(s.offset + usize::from(off) % s.size, v));
                }
                HostileProducer::Recv => {
                    let r = rx.try_recv();
                    prop_assert!(r.is_ok() || matches!(r, Err(RingError::Empty | RingError::PeerRestarted | RingError::Corrupt)));
                }
                HostileProducer::RecvBatch(max, rel) => match rx.recv_batch(usize::from(max)) {
                    Ok(b) => {
                        prop_assert!(b.len() as u64 <= cap && b.len() <= usize::from(max));
                        prop_assert!(max == 0 || !b.is_empty());
                        let n = b.iter().count();
                        prop_assert_eq!(n, b.len());
                        b.release_first(usize::from(rel));
                    }
                    Err(e) => prop_assert!(matches!(e, RingError::Empty | RingError::PeerRestarted | RingError::Corrupt)),
                },
            }
        }
    }

    #[test]
    fn honest_sender_survives_hostile_consumer(
        slots_log2 in 1u32..6,
        throughput in any::<bool>(),
        ops in proptest::collection::vec(hostile_consumer(), 1..80),
    ) {
        let l = layout(slots_log2, throughput);
        let cap = l.capacity() as u64;
        let mem = ChannelMem::new(l);
        let cons = l.consumer_header().offset;
        let s = l.slots();
        // Fill the page padding after the last slot with a canary.
        let used = l.slot_count() * l.slot_stride();
        for i in used..s.size { mem.write_byte(s.offset + i, 0xA5); }
        // A real consumer initialises its header, then the adversary owns it.
        mem.enforce(Side::Consumer);
        // SAFETY: `mem` maps the channel with the consumer's permissions and
        // outlives the receiver; no other receiver exists.
        let _init: Receiver<Msg> = unsafe { Receiver::new(mem.base(), l) }.unwrap();
        mem.enforce(Side::Producer);
        // SAFETY: as above, with the producer's permissions.
        let mut tx = unsafe { Sender::<Msg>::new(mem.base(), l) }.unwrap();
        let hostile = |f: &dyn Fn()| { mem.open(); f(); mem.enforce(Side::Producer); };
        let mut seq = 0u64;
        for op in ops {
            match op {
                HostileConsumer::SetTail(v) => hostile(&|| mem.write_u64(cons + CONSUMER_TAIL_OFFSET, v)),
                HostileConsumer::BumpTail(k) => hostile(&|| {
                    let t = mem.read_u64(cons + CONSUMER_TAIL_OFFSET);
                    mem.write_u64(cons + CONSUMER_TAIL_OFFSET, t.wrapping_add(u64::from(k)));
                }),
                HostileConsumer::Overrun(k) => {
                    let head = mem.read_u64(PRODUCER_HEAD_OFFSET);
                    let bad = head.wrapping_add(1).wrapping_add(u64::from(k) % (u64::MAX - cap));
                    hostile(&|| mem.write_u64(cons + CONSUMER_TAIL_OFFSET, bad));
                    let steady = tx.is_connected()
                        && mem.read_u64(cons + CONSUMER_PROD_EPOCH_ACK_OFFSET) == mem.read_u64(PRODUCER_EPOCH_OFFSET)
                        && mem.read_u64(cons + CONSUMER_EPOCH_OFFSET) == mem.read_u64(PRODUCER_CONS_EPOCH_ACK_OFFSET);
                    let r = tx.reserve(cap as usize + 1).map(|b| b.len());
                    if steady {
                        prop_assert_eq!(r, Err(RingError::Corrupt));
                    }
                }
                HostileConsumer::SetAck(v) => hostile(&|| mem.write_u64(cons + CONSUMER_PROD_EPOCH_ACK_OFFSET, v)),
                HostileConsumer::AckCurrent => {
                    let e = mem.read_u64(PRODUCER_EPOCH_OFFSET);
                    hostile(&|| mem.write_u64(cons + CONSUMER_PROD_EPOCH_ACK_OFFSET, e));
                }
                HostileConsumer::SetEpoch(v) => hostile(&|| mem.write_u64(cons + CONSUMER_EPOCH_OFFSET, v)),
                HostileConsumer::Send => {
                    let r = tx.try_send(&[seq, !seq]);
                    match r {
                        Ok(()) => seq += 1,
                        Err(e) => prop_assert!(matches!(e, RingError::Full | RingError::PeerRestarted | RingError::Corrupt)),
                    }
                }
                HostileConsumer::SendBatch(max, commit) => match tx.reserve(usize::from(max)) {
                    Ok(mut b) => {
                        prop_assert!(b.len() as u64 <= cap && b.len() <= usize::from(max));
                        prop_assert!(max == 0 || !b.is_empty());
                        for i in 0..b.len() { b.write(i, &[seq + i as u64, 0]); }
                        prop_assert!(b.get_mut(b.len()).is_none());
                        b.commit_first(usize::from(commit));
                    }
                    Err(e) => prop_assert!(matches!(e, RingError::Full | RingError::PeerRestarted | RingError::Corrupt)),
                },
            }
        }
        mem.open();
        for i in used..s.size { prop_assert_eq!(mem.read_byte(s.offset + i), 0xA5); }
    }
}

#[derive(Debug, Clone)]
enum Honest {
    Send(u8),
    Recv(u8),
    RestartProducer,
    RestartConsumer,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Both sides honest, either may restart: no corruption is ever reported,
    /// messages arrive in order, and none is lost unless a restart happened.
    #[test]
    fn honest_peers_with_restarts(
        slots_log2 in 1u32..6,
        throughput in any::<bool>(),
        ops in proptest::collection::vec(prop_oneof![
            6 => (1u8..40).prop_map(Honest::Send),
            6 => (1u8..40).prop_map(Honest::Recv),
            1 => Just(Honest::RestartProducer),
            1 => Just(Honest::RestartConsumer),
        ], 1..100),
    ) {
        let l = layout(slots_log2, throughput);
        let mem = ChannelMem::new(l);
        // SAFETY: `mem` outlives both endpoints; one sender, one receiver.
        let mut tx = unsafe { Sender::<Msg>::new(mem.base(), l) }.unwrap();
        // SAFETY: as above.
        let mut rx = unsafe { Receiver::<Msg>::new(mem.base(), l) }.unwrap();
        let mut next = 0u64;
        let mut last: Option<u64> = None;
        let mut restarted = false;
        for op in ops {
            match op {
                Honest::Send(n) => match tx.reserve(usize::from(n)) {
                    Ok(mut b) => {
                        for i in 0..b.len() { b.write(i, &[next + i as u64, !(next + i as u64)]); }
                        next += b.len() as u64;
                        b.commit();
                    }
                    Err(RingError::Full) => {}
                    Err(RingError::PeerRestarted) => restarted = true,
                    Err(e) => prop_assert!(false, "sender: {e:?}"),
                },
                Honest::Recv(n) => match rx.recv_batch(usize::from(n)) {
                    Ok(b) => {
                        for m in b.iter() {
                            prop_assert_eq!(m[1], !m[0]);
                            prop_assert!(m[0] < next);
                            match (last, restarted) {
                                (Some(p), false) => prop_assert_eq!(m[0], p + 1),
                                (None, false) => prop_assert_eq!(m[0], 0),
                                (Some(p), true) => prop_assert!(m[0] > p),
                                (None, true) => {}
                            }
                            last = Some(m[0]);
                            restarted = false;
                        }
                        b.release();
                    }
                    Err(RingError::Empty) => {}
                    Err(RingError::PeerRestarted) => restarted = true,
                    Err(e) => prop_assert!(false, "receiver: {e:?}"),
                },
                Honest::RestartProducer => {
                    // SAFETY: the previous sender is replaced (it never
                    // touches the memory again).
                    tx = unsafe { Sender::<Msg>::new(mem.base(), l) }.unwrap();
                    restarted = true;
                }
                Honest::RestartConsumer => {
                    // SAFETY: the previous receiver is replaced.
                    rx = unsafe { Receiver::<Msg>::new(mem.base(), l) }.unwrap();
                    restarted = true;
                }
            }
        }
        // Whatever is still in flight drains completely and in order.
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    if let (Some(p), false) = (last, restarted) { prop_assert_eq!(m[0], p + 1); }
                    last = Some(m[0]);
                    restarted = false;
                }
                Err(RingError::Empty) => break,
                Err(RingError::PeerRestarted) => restarted = true,
                Err(e) => prop_assert!(false, "receiver: {e:?}"),
            }
        }
        if !restarted && tx.is_connected() {
            prop_assert_eq!(last.map_or(0, |p| p + 1), next);
        }
    }
}

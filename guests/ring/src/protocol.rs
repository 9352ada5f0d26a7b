//! The channel protocol: free-running indices, cached peer index, restart
//! epochs, and validation of everything the peer writes.
//!
//! This module is safe code over a [`ChannelView`] (two header references),
//! so the same logic runs on real shared memory, on heap memory in host tests
//! and under loom. It deals in indices ([`Span`]s) only; moving message bytes
//! in and out of the slots a span names is the caller's job (`shm` does it for
//! real memory, the loom models do it with loom cells).
//!
//! It must never loop on, index with, or panic on a value read from the
//! peer's header: every observation of the peer is checked against what the
//! protocol allows before it is used, and every method is O(1).
#![forbid(unsafe_code)]

use crate::header::{ConsumerHeader, ProducerHeader, MAGIC, VERSION};
use crate::layout::ChannelLayout;
use crate::sync::Ordering::{Acquire, Relaxed, Release};
use crate::RingError;

/// Access to the two header pages of one channel.
///
/// Implemented by the raw shared-memory binding and by test harnesses. The
/// protocol only ever stores to the header of its own side.
pub trait ChannelView {
    /// Page 0, written by the producer.
    fn producer_header(&self) -> &ProducerHeader;
    /// Page 1, written by the consumer.
    fn consumer_header(&self) -> &ConsumerHeader;
}

impl<V: ChannelView + ?Sized> ChannelView for &V {
    #[inline]
    fn producer_header(&self) -> &ProducerHeader {
        (**self).producer_header()
    }
    #[inline]
    fn consumer_header(&self) -> &ConsumerHeader {
        (**self).consumer_header()
    }
}

/// A run of consecutive free-running indices: slot `k` of the span is
/// `(start + k) & (slot_count - 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Free-running index of the first slot.
    pub start: u64,
    /// Number of slots, at most the channel capacity.
    pub len: u32,
}

/// Next epoch after both our own last one and the peer's acknowledgement of
/// it, so a restart is visible even if our header page was wiped; never 0
/// (0 means "never attached").
fn next_epoch(own: u64, peer_ack: u64) -> u64 {
    match own.max(peer_ack).wrapping_add(1) {
        0 => 1,
        e => e,
    }
}

/// Producer side of the protocol.
#[derive(Debug)]
pub struct ProducerCore<V> {
    view: V,
    capacity: u64,
    /// Our index; mirrors `ProducerHeader::head`, which only we write.
    head: u64,
    /// Last validated consumer index: `head - cached_tail <= capacity`.
    cached_tail: u64,
    /// Slots handed out by the last `reserve`, the most `commit` may publish.
    reserved: u32,
    epoch: u64,
    /// Consumer epoch we last resynchronised with.
    cons_epoch: u64,
    /// The consumer has acknowledged `epoch`; until then we may not write.
    connected: bool,
}

impl<V: ChannelView> ProducerCore<V> {
    /// Attaches as the producer, starting a new epoch.
    ///
    /// Nothing can be sent until the consumer acknowledges the epoch (it does
    /// so on its next poll); until then [`reserve`](Self::reserve) reports
    /// [`RingError::Full`].
    pub fn attach(view: V, layout: &ChannelLayout) -> Self {
        let p = view.producer_header();
        let c = view.consumer_header();
        // Our own page: whatever a previous incarnation left is as good a
        // starting index as any, because the consumer adopts it on resync.
        let head = p.head.load(Relaxed);
        let epoch = next_epoch(p.epoch.load(Relaxed), c.prod_epoch_ack.load(Relaxed));
        // Layout guarantees both fit in u32 (slot array <= 1 GiB).
        p.magic.store(MAGIC, Relaxed);
        p.version.store(VERSION, Relaxed);
        p.slot_size.store(layout.slot_size() as u32, Relaxed);
        p.slot_count.store(layout.slot_count() as u32, Relaxed);
        // Release: a consumer that sees the epoch also sees geometry and head.
        p.epoch.store(epoch, Release);
        Self {
            view,
            capacity: layout.slot_count() as u64,
            head,
            cached_tail: head,
            reserved: 0,
            epoch,
            cons_epoch: 0,
            connected: false,
        }
    }

    /// The header view this producer runs on.
    #[inline]
    pub fn view(&self) -> &V {
        &self.view
    }

    /// Ring capacity in messages.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// This producer's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the consumer has acknowledged this producer's epoch.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    #[inline]
    fn free(&self) -> u64 {
        // Invariant (validated): head - cached_tail <= capacity.
        self.capacity - self.head.wrapping_sub(self.cached_tail)
    }

    /// Reserves up to `max` free slots (at least one unless `max` is 0).
    ///
    /// Only looks at the consumer's header when the cached view has fewer
    /// than `max` free slots, so a producer that keeps ahead of the consumer
    /// touches no shared cache line but its own.
    #[inline]
    pub fn reserve(&mut self, max: u32) -> Result<Span, RingError> {
        self.reserved = 0;
        let mut free = if self.connected { self.free() } else { 0 };
        if free < u64::from(max) {
            self.refresh()?;
            free = if self.connected { self.free() } else { 0 };
            if free == 0 {
                return Err(RingError::Full);
            }
        }
        let len = free.min(u64::from(max)) as u32;
        self.reserved = len;
        Ok(Span { start: self.head, len })
    }

    /// Publishes the first `n` slots of the last reservation (clamped to its
    /// length); the reservation ends either way.
    #[inline]
    pub fn commit(&mut self, n: u32) {
        let n = n.min(self.reserved);
        self.reserved = 0;
        if n == 0 {
            return;
        }
        self.head = self.head.wrapping_add(u64::from(n));
        // Release: the slot contents written before are visible to a consumer
        // that reads this head with Acquire.
        self.view.producer_header().head.store(self.head, Release);
    }

    #[cold]
    fn refresh(&mut self) -> Result<(), RingError> {
        let c = self.view.consumer_header();
        // Order matters: the consumer stores tail, then ack, then its epoch,
        // each with Release; loading in the reverse order with Acquire means a
        // new epoch or ack is never paired with a tail older than its reset.
        // The epoch and ack sit on a line the consumer writes only when it
        // (re)attaches, so these two loads normally hit our cache and only
        // the tail costs a transfer.
        let cons_epoch = c.epoch.load(Acquire);
        let ack = c.prod_epoch_ack.load(Acquire);
        // Acquire: the consumer's reads of the slots before `tail` happen
        // before our next writes to them.
        let tail = c.tail.load(Acquire);
        if ack != self.epoch {
            // Before the handshake, wait. After it, the consumer only ever
            // acknowledges our epoch, so anything else is corruption.
            return if self.connected { Err(RingError::Corrupt) } else { Ok(()) };
        }
        if !self.connected || cons_epoch != self.cons_epoch {
            // (Re)synchronise: adopt the consumer's tail if it is plausible.
            if self.head.wrapping_sub(tail) > self.capacity {
                return Err(RingError::Corrupt);
            }
            let restarted = self.connected;
            self.connected = true;
            self.cons_epoch = cons_epoch;
            self.cached_tail = tail;
            self.view.producer_header().cons_epoch_ack.store(cons_epoch, Release);
            return if restarted { Err(RingError::PeerRestarted) } else { Ok(()) };
        }
        // Steady state: tail only moves forward, and never past head.
        if tail.wrapping_sub(self.cached_tail) > self.head.wrapping_sub(self.cached_tail) {
            return Err(RingError::Corrupt);
        }
        self.cached_tail = tail;
        Ok(())
    }
}

/// Consumer side of the protocol.
#[derive(Debug)]
pub struct ConsumerCore<V> {
    view: V,
    capacity: u64,
    slot_size: u32,
    slot_count: u32,
    /// Our index; mirrors `ConsumerHeader::tail`, which only we write.
    tail: u64,
    /// Last validated producer index: `cached_head - tail <= capacity`.
    cached_head: u64,
    /// Slots handed out by the last `peek`, the most `release` may free.
    peeked: u32,
    /// Producer epoch we are synchronised with; 0 = none yet.
    prod_epoch: u64,
    epoch: u64,
}

impl<V: ChannelView> ConsumerCore<V> {
    /// Attaches as the consumer, starting a new epoch and discarding
    /// whatever was in flight (a restarted consumer cannot know what its
    /// previous incarnation already handled).
    pub fn attach(view: V, layout: &ChannelLayout) -> Self {
        let p = view.producer_header();
        let c = view.consumer_header();
        let epoch = next_epoch(c.epoch.load(Relaxed), p.cons_epoch_ack.load(Relaxed));
        let mut core = Self {
            view,
            capacity: layout.slot_count() as u64,
            slot_size: layout.slot_size() as u32,
            slot_count: layout.slot_count() as u32,
            tail: 0,
            cached_head: 0,
            peeked: 0,
            prod_epoch: 0,
            epoch,
        };
        let p = core.view.producer_header();
        let prod_epoch = p.epoch.load(Acquire);
        let synced = prod_epoch != 0 && core.geometry_matches();
        let head = p.head.load(Acquire);
        core.tail = head;
        core.cached_head = head;
        core.prod_epoch = if synced { prod_epoch } else { 0 };
        let c = core.view.consumer_header();
        // Stored in the order the producer's refresh relies on. Release on
        // the tail too: a previous incarnation's reads of the slots we skip
        // must happen before the producer reuses them, whichever of our
        // stores the producer happens to observe first.
        c.tail.store(head, Release);
        c.prod_epoch_ack.store(core.prod_epoch, Release);
        c.epoch.store(epoch, Release);
        core
    }

    /// The header view this consumer runs on.
    #[inline]
    pub fn view(&self) -> &V {
        &self.view
    }

    /// Ring capacity in messages.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// This consumer's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn geometry_matches(&self) -> bool {
        let p = self.view.producer_header();
        p.magic.load(Relaxed) == MAGIC
            && p.version.load(Relaxed) == VERSION
            && p.slot_size.load(Relaxed) == self.slot_size
            && p.slot_count.load(Relaxed) == self.slot_count
    }

    /// Returns up to `max` published messages (at least one unless `max` is
    /// 0) without consuming them.
    ///
    /// Only looks at the producer's header when fewer than `max` messages are
    /// known to be available.
    #[inline]
    pub fn peek(&mut self, max: u32) -> Result<Span, RingError> {
        self.peeked = 0;
        // Invariant (validated): cached_head - tail <= capacity.
        let mut avail = self.cached_head.wrapping_sub(self.tail);
        if avail < u64::from(max) {
            self.refresh()?;
            avail = self.cached_head.wrapping_sub(self.tail);
            if avail == 0 {
                return Err(RingError::Empty);
            }
        }
        let len = avail.min(u64::from(max)) as u32;
        self.peeked = len;
        Ok(Span { start: self.tail, len })
    }

    /// Consumes the first `n` messages of the last peek (clamped to its
    /// length), handing their slots back to the producer; the peek ends
    /// either way.
    #[inline]
    pub fn release(&mut self, n: u32) {
        let n = n.min(self.peeked);
        self.peeked = 0;
        if n == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(u64::from(n));
        // Release: our reads of those slots happen before the producer's
        // next writes to them.
        self.view.consumer_header().tail.store(self.tail, Release);
    }

    #[cold]
    fn refresh(&mut self) -> Result<(), RingError> {
        let p = self.view.producer_header();
        // Acquire: the slot contents published before this head are visible.
        let head = p.head.load(Acquire);
        // head only moves forward and never more than capacity past tail.
        let advance = head.wrapping_sub(self.cached_head);
        let room = self.tail.wrapping_add(self.capacity).wrapping_sub(self.cached_head);
        if advance != 0 && advance <= room && self.prod_epoch != 0 {
            // Fast path, one load of the producer's (hot) line: new messages.
            // They belong to the epoch we know, because a restarted producer
            // does not publish until we have acknowledged its epoch, which
            // happens only on the slow path below.
            self.cached_head = head;
            return Ok(());
        }
        // Nothing new, or something odd: only now look at the epoch, so a
        // restart is noticed as soon as the old producer's messages stop.
        let prod_epoch = p.epoch.load(Acquire);
        if prod_epoch != self.prod_epoch {
            return self.resync(prod_epoch);
        }
        if advance > room {
            return Err(RingError::Corrupt);
        }
        self.cached_head = head;
        Ok(())
    }

    /// Adopts a new producer epoch: drop everything in flight, start empty at
    /// the producer's head, and acknowledge so the producer may write.
    #[cold]
    fn resync(&mut self, prod_epoch: u64) -> Result<(), RingError> {
        if prod_epoch != 0 && !self.geometry_matches() {
            return Err(RingError::Corrupt);
        }
        // The producer stored its head before its epoch (Release), and does
        // not move it until we acknowledge, so this is the epoch's start.
        let head = self.view.producer_header().head.load(Acquire);
        let first = self.prod_epoch == 0;
        self.tail = head;
        self.cached_head = head;
        self.prod_epoch = prod_epoch;
        let c = self.view.consumer_header();
        // Release, as in `attach`: our earlier slot reads happen before the
        // producer reuses the slots we skip.
        c.tail.store(head, Release);
        // Release: the producer that sees the ack sees the tail above.
        c.prod_epoch_ack.store(prod_epoch, Release);
        if first {
            Ok(())
        } else {
            Err(RingError::PeerRestarted)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::Ordering::SeqCst;

    #[derive(Default)]
    struct Heap {
        p: ProducerHeader,
        c: ConsumerHeader,
    }
    impl ChannelView for Heap {
        fn producer_header(&self) -> &ProducerHeader {
            &self.p
        }
        fn consumer_header(&self) -> &ConsumerHeader {
            &self.c
        }
    }

    fn layout(n: usize) -> ChannelLayout {
        ChannelLayout::new(8, n).unwrap()
    }

    #[test]
    fn producer_waits_for_ack_then_fills_to_capacity() {
        let h = Heap::default();
        let l = layout(4);
        let mut tx = ProducerCore::attach(&h, &l);
        assert_eq!(tx.reserve(1), Err(RingError::Full));
        let mut rx = ConsumerCore::attach(&h, &l);
        // The consumer attached after the producer and acked at attach time.
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        let s = tx.reserve(8).unwrap();
        assert_eq!(s.len, 4);
        tx.commit(3);
        assert_eq!(tx.reserve(8).unwrap().len, 1);
        tx.commit(9); // clamped to the reservation
        assert_eq!(tx.reserve(1), Err(RingError::Full));
        let s = rx.peek(10).unwrap();
        assert_eq!((s.start, s.len), (0, 4));
        rx.release(2);
        assert_eq!(tx.reserve(8).unwrap().len, 2);
        tx.commit(0);
        let s = rx.peek(10).unwrap();
        assert_eq!((s.start, s.len), (2, 2));
        rx.release(2);
        assert_eq!(rx.peek(1), Err(RingError::Empty));
    }

    #[test]
    fn consumer_first_then_producer() {
        let h = Heap::default();
        let l = layout(2);
        let mut rx = ConsumerCore::attach(&h, &l);
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        let mut tx = ProducerCore::attach(&h, &l);
        assert_eq!(tx.reserve(1), Err(RingError::Full));
        // First sight of a producer is not a restart.
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        assert!(tx.reserve(1).is_ok());
        tx.commit(1);
        assert_eq!(rx.peek(1).unwrap().len, 1);
    }

    #[test]
    fn producer_restart_is_reported_and_resynchronised() {
        let h = Heap::default();
        let l = layout(4);
        let mut rx = ConsumerCore::attach(&h, &l);
        let mut tx = ProducerCore::attach(&h, &l);
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        tx.reserve(2).unwrap();
        tx.commit(2);
        let e1 = tx.epoch();
        let mut tx = ProducerCore::attach(&h, &l);
        assert!(tx.epoch() > e1);
        assert_eq!(tx.reserve(1), Err(RingError::Full));
        // The consumer first gets what the old producer published, then,
        // seeing no progress, notices the new epoch.
        let old = rx.peek(4).unwrap();
        assert_eq!(old.len, 2);
        rx.release(2);
        assert_eq!(rx.peek(4), Err(RingError::PeerRestarted));
        assert_eq!(rx.peek(4), Err(RingError::Empty));
        let s = tx.reserve(4).unwrap();
        assert_eq!(s.len, 4);
        tx.commit(1);
        assert_eq!(rx.peek(4).unwrap().start, s.start);
    }

    #[test]
    fn producer_restart_with_wiped_page_still_changes_epoch() {
        let h = Heap::default();
        let l = layout(4);
        let mut rx = ConsumerCore::attach(&h, &l);
        let tx = ProducerCore::attach(&h, &l);
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        let e1 = tx.epoch();
        h.p.epoch.store(0, SeqCst);
        h.p.head.store(0, SeqCst);
        let tx2 = ProducerCore::attach(&h, &l);
        assert!(tx2.epoch() > e1, "must exceed the consumer's ack");
    }

    #[test]
    fn consumer_restart_is_reported_to_the_producer() {
        let h = Heap::default();
        let l = layout(4);
        let mut tx = ProducerCore::attach(&h, &l);
        let _dead = ConsumerCore::attach(&h, &l);
        tx.reserve(4).unwrap();
        tx.commit(4);
        // The first consumer dies without consuming anything.
        let mut rx = ConsumerCore::attach(&h, &l);
        // In-flight messages were discarded by the new consumer.
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        assert_eq!(tx.reserve(1), Err(RingError::PeerRestarted));
        assert_eq!(tx.reserve(4).unwrap().len, 4);
    }

    #[test]
    fn corrupt_indices_are_reported_and_state_kept() {
        let h = Heap::default();
        let l = layout(4);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        tx.reserve(1).unwrap();
        tx.commit(1);
        // Producer claims more than capacity.
        h.p.head.store(100, SeqCst);
        assert_eq!(rx.peek(8), Err(RingError::Corrupt));
        h.p.head.store(1, SeqCst);
        assert_eq!(rx.peek(8).unwrap().len, 1);
        rx.release(1);
        // Consumer index moving past head.
        assert_eq!(tx.reserve(4).unwrap().len, 4);
        h.c.tail.store(5, SeqCst);
        assert_eq!(tx.reserve(5), Err(RingError::Corrupt));
        h.c.tail.store(0, SeqCst); // backwards
        assert_eq!(tx.reserve(5), Err(RingError::Corrupt));
        h.c.tail.store(1, SeqCst);
        assert_eq!(tx.reserve(5).unwrap().len, 4);
        // Ack of an epoch that was never ours.
        h.c.prod_epoch_ack.store(tx.epoch() + 7, SeqCst);
        assert_eq!(tx.reserve(5), Err(RingError::Corrupt));
        // Head moving backwards.
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(rx.peek(1).unwrap().len, 1);
        h.p.head.store(0, SeqCst);
        assert_eq!(rx.peek(2), Err(RingError::Corrupt));
    }

    #[test]
    fn wrong_geometry_is_corrupt() {
        let h = Heap::default();
        let mut rx = ConsumerCore::attach(&h, &layout(4));
        let mut tx = ProducerCore::attach(&h, &layout(8));
        assert_eq!(rx.peek(1), Err(RingError::Corrupt));
        assert_eq!(tx.reserve(1), Err(RingError::Full));
    }

    #[test]
    fn indices_wrap_around_u64() {
        let h = Heap::default();
        let l = layout(4);
        h.p.head.store(u64::MAX - 1, SeqCst);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        for i in 0..10u64 {
            let s = tx.reserve(3).unwrap();
            assert_eq!(s.start, (u64::MAX - 1).wrapping_add(i * 3));
            tx.commit(3);
            let r = rx.peek(4).unwrap();
            assert_eq!((r.start, r.len), (s.start, 3));
            rx.release(3);
        }
    }
}

//! The channel protocol: per-slot publication stamps, free-running indices,
//! cached peer index, restart epochs, and validation of everything the peer
//! writes.
//!
//! This module is safe code over a [`ChannelView`] (two header references
//! and the slots' stamps), so the same logic runs on real shared memory, on
//! heap memory in host tests and under loom. It deals in indices ([`Span`]s)
//! and stamps only; moving message bytes in and out of the slots a span
//! names is the caller's job (`shm` does it for real memory, the loom models
//! do it with loom cells).
//!
//! It must never loop on, index with, or panic on a value read from the
//! peer's pages: every observation of the peer is checked against what the
//! protocol allows before it is used, and every method is O(batch).
#![forbid(unsafe_code)]

use crate::header::{ConsumerHeader, ProducerHeader, MAGIC, VERSION};
use crate::layout::ChannelLayout;
use crate::sync::Ordering::{Acquire, Relaxed, Release};
use crate::sync::{fence, AtomicU64};
use crate::RingError;

/// Access to the two header pages and the slot stamps of one channel.
///
/// Implemented by the raw shared-memory binding and by test harnesses. The
/// protocol only ever stores to the header of its own side, and only the
/// producer stores stamps.
pub trait ChannelView {
    /// Page 0, written by the producer.
    fn producer_header(&self) -> &ProducerHeader;
    /// Page 1, written by the consumer.
    fn consumer_header(&self) -> &ConsumerHeader;
    /// The publication stamp of the slot of free-running index `index`
    /// (the implementation masks the index with the slot count).
    fn stamp(&self, index: u64) -> &AtomicU64;
    /// A hint that the message of slot `index` may be read soon, issued
    /// just before its stamp is polled: when the message does not share the
    /// stamp's cache line, its line then travels alongside the stamp's
    /// instead of after it. No effect on correctness; by default nothing.
    #[inline]
    fn prefetch(&self, _index: u64) {}
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
    #[inline]
    fn stamp(&self, index: u64) -> &AtomicU64 {
        (**self).stamp(index)
    }
    #[inline]
    fn prefetch(&self, index: u64) {
        (**self).prefetch(index)
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

/// The stamp that publishes message `index` of producer epoch `epoch`: the
/// epoch's low 32 bits in the high half, `index + 1` modulo 2^32 in the low
/// half.
///
/// The epoch tag keeps a slot written by an earlier producer incarnation
/// from passing for a message of the current one; the index keeps last
/// lap's message from passing for this lap's. Epoch tags are never 0
/// ([`next_epoch`]), so zeroed memory publishes nothing.
#[inline]
pub const fn stamp_value(epoch: u64, index: u64) -> u64 {
    (epoch << 32) | (index.wrapping_add(1) & 0xFFFF_FFFF)
}

const TAG_MASK: u64 = 0xFFFF_FFFF << 32;

/// How many slots past its tail the consumer probes for a published run once
/// the next slot is published (capped at the ring): one stamp read then
/// validates up to this many messages.
const PROBE: u64 = 32;

/// Next epoch after both our own last one and the peer's acknowledgement of
/// it, so a restart is visible even if our header page was wiped; its low 32
/// bits (the stamp tag) are never 0, so it is never 0 ("never attached").
fn next_epoch(own: u64, peer_ack: u64) -> u64 {
    let e = own.max(peer_ack).wrapping_add(1);
    if e as u32 == 0 {
        e.wrapping_add(1)
    } else {
        e
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

    /// The view this producer runs on.
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
    /// touches no shared cache line but the slots it writes.
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
    ///
    /// Stores `head` once, then one stamp per slot: no read-modify-write and
    /// a single release barrier per batch.
    #[inline]
    pub fn commit(&mut self, n: u32) {
        let n = n.min(self.reserved);
        self.reserved = 0;
        if n == 0 {
            return;
        }
        let start = self.head;
        self.head = start.wrapping_add(u64::from(n));
        // Before the stamps (ordered by the Release below): a consumer that
        // received any of these messages happens-after this store, so a
        // restarted consumer, which starts at `head`, never starts behind
        // what its previous incarnation consumed. Nobody polls `head`.
        self.view.producer_header().head.store(self.head, Relaxed);
        if n == 1 {
            // Release: the slot contents (and `head`) are visible to a
            // consumer that reads this stamp with Acquire.
            self.view.stamp(start).store(stamp_value(self.epoch, start), Release);
        } else {
            // One barrier for the batch: every stamp below is ordered after
            // every slot write and `head` (fence-to-load synchronisation
            // with the consumer's Acquire fence).
            fence(Release);
            // Last slot first: a consumer waiting on the first slot's stamp
            // then sees the whole batch at once, and does not pull the
            // batch's lines away from us while we are still stamping them.
            for k in (0..u64::from(n)).rev() {
                let i = start.wrapping_add(k);
                self.view.stamp(i).store(stamp_value(self.epoch, i), Relaxed);
            }
        }
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
    /// End of the run of messages whose stamps we have validated:
    /// `tail <= cached_head <= tail + capacity`.
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
        // Never behind what a previous incarnation consumed: the producer
        // stores `head` before the stamps that publish below it.
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

    /// The view this consumer runs on.
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
    /// Reads the stamps of the slots past the known-published run until it
    /// has `max` messages or meets a slot not yet published: the stamp and a
    /// small message share a cache line, so the same transfer that signals a
    /// message brings its data. The producer's header is read only when
    /// nothing is available (its epoch, on a line that changes only on
    /// restarts).
    #[inline]
    pub fn peek(&mut self, max: u32) -> Result<Span, RingError> {
        self.peeked = 0;
        // Invariant (validated): cached_head - tail <= capacity.
        let mut avail = self.cached_head.wrapping_sub(self.tail);
        if avail < u64::from(max) {
            avail = self.scan(u64::from(max).min(self.capacity));
            if avail == 0 {
                return Err(self.idle());
            }
        }
        let len = avail.min(u64::from(max)) as u32;
        self.peeked = len;
        Ok(Span { start: self.tail, len })
    }

    /// Extends the validated run towards `want` (<= capacity) messages past
    /// `tail` and returns its length; called only when the run is shorter.
    ///
    /// A slot is accepted only on an exact stamp, and the loop is bounded by
    /// `want`, never by a peer value. The first unvalidated slot is checked
    /// first. If it is published, one more stamp, [`PROBE`] slots (or
    /// `want`, if more) past `tail`, is checked: if it too is exactly the one
    /// its index and the producer's epoch call for, the whole run up to it
    /// is published (an honest producer stamps only committed slots and
    /// commits in index order, and the Release barrier before a commit's
    /// stamps covers every earlier write of the slots), so one stamp read
    /// stands for a batch, as a cached head index would, and a hostile
    /// producer gains nothing it could not get by stamping every slot.
    /// Otherwise the stamps are checked one by one, up to `want`.
    #[inline]
    fn scan(&mut self, want: u64) -> u64 {
        if self.prod_epoch == 0 {
            // No producer yet: nothing is published (and `idle` looks for one).
            return self.cached_head.wrapping_sub(self.tail);
        }
        let epoch = self.prod_epoch;
        let first = self.cached_head;
        self.view.prefetch(first);
        if self.view.stamp(first).load(Relaxed) != stamp_value(epoch, first) {
            return first.wrapping_sub(self.tail);
        }
        // first - tail < want <= probe <= capacity, so `far` is at or past
        // `first` and the run stays within a ring.
        let probe = want.max(PROBE).min(self.capacity);
        let far = self.tail.wrapping_add(probe - 1);
        let mut next = first.wrapping_add(1);
        if far != first && self.view.stamp(far).load(Relaxed) == stamp_value(epoch, far) {
            next = far.wrapping_add(1);
        } else {
            let end = self.tail.wrapping_add(want);
            while next != end && self.view.stamp(next).load(Relaxed) == stamp_value(epoch, next) {
                next = next.wrapping_add(1);
            }
        }
        // Acquire (one barrier for the run): the slot contents written
        // before the stamps we matched (and before each commit's Release
        // barrier) are visible to our reads.
        fence(Acquire);
        self.cached_head = next;
        next.wrapping_sub(self.tail)
    }

    /// Nothing is published at `tail`: look for a producer restart, then for
    /// an impossible stamp. Returns why `peek` got nothing.
    #[cold]
    fn idle(&mut self) -> RingError {
        // Only now look at the epoch, so a restart is noticed as soon as the
        // old producer's messages stop: a restarted producer does not publish
        // until we have acknowledged its epoch, which happens only here.
        let prod_epoch = self.view.producer_header().epoch.load(Acquire);
        if prod_epoch != self.prod_epoch {
            return match self.resync(prod_epoch) {
                Ok(()) => RingError::Empty,
                Err(e) => e,
            };
        }
        if self.prod_epoch != 0 {
            let s = self.view.stamp(self.tail).load(Relaxed);
            // A stamp of another epoch is an old incarnation's (or never
            // written): not yet. Of ours, the honest values are this index
            // (published since we looked) or an earlier lap's; a later lap's,
            // or one that does not belong to this slot, cannot happen.
            if s & TAG_MASK == stamp_value(self.prod_epoch, 0) & TAG_MASK {
                let behind = (stamp_value(0, self.tail) as u32).wrapping_sub(s as u32);
                if behind >= 1 << 31 || u64::from(behind) & (self.capacity - 1) != 0 {
                    return RingError::Corrupt;
                }
            }
        }
        RingError::Empty
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

    /// Headers and up to 16 stamps on the heap (slot contents are not
    /// modelled: these tests are about indices and stamps).
    struct Heap {
        p: ProducerHeader,
        c: ConsumerHeader,
        stamps: [AtomicU64; 16],
        mask: usize,
    }
    impl Heap {
        fn new(slots: usize) -> Self {
            assert!(slots <= 16);
            Self {
                p: ProducerHeader::new(),
                c: ConsumerHeader::new(),
                stamps: core::array::from_fn(|_| AtomicU64::new(0)),
                mask: slots - 1,
            }
        }
    }
    impl ChannelView for Heap {
        fn producer_header(&self) -> &ProducerHeader {
            &self.p
        }
        fn consumer_header(&self) -> &ConsumerHeader {
            &self.c
        }
        fn stamp(&self, index: u64) -> &AtomicU64 {
            &self.stamps[index as usize & self.mask]
        }
    }

    fn layout(n: usize) -> ChannelLayout {
        ChannelLayout::new(8, n).unwrap()
    }

    #[test]
    fn producer_waits_for_ack_then_fills_to_capacity() {
        let l = layout(4);
        let h = Heap::new(4);
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
        let l = layout(2);
        let h = Heap::new(2);
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
        let l = layout(4);
        let h = Heap::new(4);
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
        let l = layout(4);
        let h = Heap::new(4);
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
        let l = layout(4);
        let h = Heap::new(4);
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
        let l = layout(4);
        let h = Heap::new(4);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(h.stamps[0].load(SeqCst), stamp_value(e, 0));
        // The consumer never looks at head on the data path.
        h.p.head.store(100, SeqCst);
        assert_eq!(rx.peek(8).unwrap().len, 1);
        h.p.head.store(1, SeqCst);
        rx.release(1);
        // A stamp of our epoch a lap ahead, or for another slot: impossible.
        h.stamps[1].store(stamp_value(e, 5), SeqCst);
        assert_eq!(rx.peek(8), Err(RingError::Corrupt));
        h.stamps[1].store(stamp_value(e, 2), SeqCst);
        assert_eq!(rx.peek(8), Err(RingError::Corrupt));
        // A lap behind, or another epoch's: not yet.
        h.stamps[1].store(stamp_value(e, 1u64.wrapping_sub(4)), SeqCst);
        assert_eq!(rx.peek(8), Err(RingError::Empty));
        h.stamps[1].store(stamp_value(e + 1, 1), SeqCst);
        assert_eq!(rx.peek(8), Err(RingError::Empty));
        h.stamps[1].store(u64::MAX, SeqCst);
        assert_eq!(rx.peek(8), Err(RingError::Empty));
        // State kept: the real message still arrives.
        h.stamps[1].store(0, SeqCst);
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(rx.peek(8).unwrap(), Span { start: 1, len: 1 });
        rx.release(1);
        // Consumer index moving past head.
        assert_eq!(tx.reserve(4).unwrap().len, 4);
        h.c.tail.store(5, SeqCst);
        assert_eq!(tx.reserve(5), Err(RingError::Corrupt));
        h.c.tail.store(0, SeqCst); // backwards
        assert_eq!(tx.reserve(5), Err(RingError::Corrupt));
        h.c.tail.store(2, SeqCst);
        assert_eq!(tx.reserve(5).unwrap().len, 4);
        // Ack of an epoch that was never ours.
        h.c.prod_epoch_ack.store(tx.epoch() + 7, SeqCst);
        assert_eq!(tx.reserve(5), Err(RingError::Corrupt));
    }

    #[test]
    fn batches_publish_every_stamp_and_stop_at_a_gap() {
        let l = layout(8);
        let h = Heap::new(8);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let s = tx.reserve(5).unwrap();
        tx.commit(5);
        assert_eq!(h.p.head.load(SeqCst), 5);
        for i in 0..5 {
            assert_eq!(h.stamps[i].load(SeqCst), stamp_value(tx.epoch(), i as u64));
        }
        // A hole: the consumer takes the run before it, and only that.
        h.stamps[2].store(0, SeqCst);
        assert_eq!(rx.peek(8).unwrap(), Span { start: s.start, len: 2 });
        rx.release(1);
        assert_eq!(rx.peek(8).unwrap(), Span { start: 1, len: 1 });
        h.stamps[2].store(stamp_value(tx.epoch(), 2), SeqCst);
        assert_eq!(rx.peek(8).unwrap(), Span { start: 1, len: 4 });
        rx.release(4);
        assert_eq!(rx.peek(1), Err(RingError::Empty));
    }

    #[test]
    fn one_far_stamp_validates_a_published_run() {
        let l = layout(8);
        let h = Heap::new(8);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        tx.reserve(8).unwrap();
        tx.commit(8);
        // The first and the farthest slot are exactly stamped: the run
        // between them was committed before the farthest one.
        h.stamps[3].store(0, SeqCst);
        assert_eq!(rx.peek(2).unwrap(), Span { start: 0, len: 2 });
        assert_eq!(rx.peek(8).unwrap(), Span { start: 0, len: 8 });
        rx.release(8);
        // A wrong far stamp is only "not validated": fall back to one by one.
        tx.reserve(8).unwrap();
        tx.commit(3);
        h.stamps[7].store(stamp_value(tx.epoch(), 7 + 8 * 5), SeqCst);
        assert_eq!(rx.peek(8).unwrap(), Span { start: 8, len: 3 });
    }

    #[test]
    fn epochs_never_tag_stamps_with_zero() {
        assert_eq!(next_epoch(0, 0), 1);
        assert_eq!(next_epoch(0xFFFF_FFFF, 3), 0x1_0000_0001);
        assert_eq!(next_epoch(u64::MAX, 0), 1);
        assert_ne!(stamp_value(1, u64::from(u32::MAX)), 0);
    }

    #[test]
    fn wrong_geometry_is_corrupt() {
        let h = Heap::new(8);
        let mut rx = ConsumerCore::attach(&h, &layout(4));
        let mut tx = ProducerCore::attach(&h, &layout(8));
        assert_eq!(rx.peek(1), Err(RingError::Corrupt));
        assert_eq!(tx.reserve(1), Err(RingError::Full));
    }

    #[test]
    fn indices_wrap_around_u64() {
        let l = layout(4);
        let h = Heap::new(4);
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

//! The channel protocol: one publication stamp per block of slots,
//! free-running indices, cached peer index, restart epochs, and validation
//! of everything the peer writes.
//!
//! This module is safe code over a [`ChannelView`] (two header references
//! and the blocks' stamps), so the same logic runs on real shared memory, on
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

/// Access to the two header pages and the block stamps of one channel.
///
/// Implemented by the raw shared-memory binding and by test harnesses. The
/// protocol only ever stores to the header of its own side, and only the
/// producer stores stamps.
pub trait ChannelView {
    /// Page 0, written by the producer.
    fn producer_header(&self) -> &ProducerHeader;
    /// Page 1, written by the consumer.
    fn consumer_header(&self) -> &ConsumerHeader;
    /// The publication stamp of the block that the slot of free-running
    /// index `index` belongs to: the first 8 bytes of the block's last slot
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

/// A run of consecutive messages: `len` message slots from free-running
/// slot index `start`, skipping the stamp slot at the end of every block
/// (see [`Geometry::advance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Free-running index of the first slot; never a stamp slot.
    pub start: u64,
    /// Number of messages, at most the channel capacity.
    pub len: u32,
}

/// Index arithmetic over blocks: slots are numbered by free-running `u64`
/// indices, the slot of index `i` is `i & (slot_count - 1)`, and the last
/// slot of every block of `block` slots carries the block's stamp, never a
/// message. Message indices therefore skip every index `≡ block - 1` modulo
/// `block`. All arithmetic wraps (`block` divides 2^64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// `block - 1`: messages per block, and the in-block index mask.
    bm: u64,
    /// ceil(2^63 / bm): `m / bm` is `(m * recip) >> 63` (in 128 bits) for
    /// every `m` with `m * bm < 2^63`, which covers a ring plus a block
    /// (both at most 2^27 slots: the slot array is at most 1 GiB of slots
    /// of at least 8 bytes), whatever the block size.
    recip: u64,
    /// log2(block).
    shift: u32,
    /// Messages the ring holds.
    capacity: u64,
    /// Slots, stamp slots included.
    slots: u64,
    /// A block is at most one line: its stamp shares the line with its
    /// messages ([`Tuning::Latency`](crate::Tuning) for messages of up to
    /// half a line).
    line_blocks: bool,
    /// Messages of at most 16 bytes: one-at-a-time sends and receives
    /// inside a block take the short paths (`ProducerCore::quick_end`,
    /// `ConsumerCore::quick_end`). Larger messages measured slower with them
    /// (`benches/spsc`, single 64-byte messages), where the line
    /// transfers, not the instructions, set the pace.
    quick: bool,
}

impl Geometry {
    /// The geometry of `layout`.
    pub const fn new(layout: &ChannelLayout) -> Self {
        let block = layout.block_slots() as u64;
        let bm = block - 1;
        Self {
            bm,
            recip: (1u64 << 63).div_ceil(bm),
            shift: block.trailing_zeros(),
            capacity: layout.capacity() as u64,
            slots: layout.slot_count() as u64,
            line_blocks: layout.slot_stride() * layout.block_slots() <= crate::layout::LINE,
            quick: layout.slot_stride() <= QUICK_MAX,
        }
    }

    /// Messages the ring holds at once.
    #[inline]
    pub const fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether `index` is a block's stamp slot.
    #[inline]
    pub const fn is_stamp_slot(&self, index: u64) -> bool {
        index & self.bm == self.bm
    }

    /// The index `n` messages after message index `index`.
    #[inline]
    pub fn advance(&self, index: u64, n: u64) -> u64 {
        let p = index & self.bm;
        let m = p + n; // p < block and n <= a ring: below 2^27 + 32
        if m < self.bm {
            return index.wrapping_add(n);
        }
        // `m / bm` blocks on, `m % bm` into that block; callers pass at
        // most a ring, so the reciprocal is exact (see `recip`).
        let q = ((u128::from(m) * u128::from(self.recip)) >> 63) as u64;
        let r = m - q * self.bm;
        (index - p).wrapping_add(q << self.shift).wrapping_add(r)
    }

    /// The message index right after `index`.
    #[inline]
    pub fn next(&self, index: u64) -> u64 {
        let n = index.wrapping_add(1);
        if n & self.bm == self.bm {
            n.wrapping_add(1)
        } else {
            n
        }
    }

    /// Messages from message index `from` up to (not including) message
    /// index `to`, for `to` at or after `from`.
    #[inline]
    pub fn between(&self, from: u64, to: u64) -> u64 {
        // Every block boundary crossed skips one stamp slot.
        let blocks = (to & !self.bm).wrapping_sub(from & !self.bm) >> self.shift;
        to.wrapping_sub(from).wrapping_sub(blocks)
    }

    /// The last message index of `index`'s block.
    #[inline]
    pub const fn block_last(&self, index: u64) -> u64 {
        (index | self.bm).wrapping_sub(1)
    }

    /// The first index of `index`'s block.
    #[inline]
    pub const fn block_start(&self, index: u64) -> u64 {
        index & !self.bm
    }

    /// If the block stamp `s` publishes message index `index` of epoch
    /// `epoch`, the last message of `index`'s block it publishes (at or
    /// after `index`); `None` for anything else.
    #[inline]
    fn published(&self, s: u64, epoch: u64, index: u64) -> Option<u64> {
        debug_assert!(!self.is_stamp_slot(index), "callers pass message indices");
        // The stamp names its last published index c by (c + 1) mod 2^32;
        // d = c - index (mod 2^32) must reach no further than the block's
        // last message.
        let d = (s as u32).wrapping_sub((index as u32).wrapping_add(1));
        let room = self.bm - 1 - (index & self.bm);
        if s & TAG_MASK == stamp_value(epoch, 0) & TAG_MASK && u64::from(d) <= room {
            Some(index.wrapping_add(u64::from(d)))
        } else {
            None
        }
    }
}

/// The stamp that says "message `index` of producer epoch `epoch`, and every
/// message of its block before it, are published": the epoch's low 32 bits
/// in the high half, `index + 1` modulo 2^32 in the low half.
///
/// The epoch tag keeps a block written by an earlier producer incarnation
/// from passing for the current one; the index keeps last lap's block from
/// passing for this lap's. Epoch tags are never 0 ([`next_epoch`]), so
/// zeroed memory publishes nothing.
#[inline]
pub const fn stamp_value(epoch: u64, index: u64) -> u64 {
    (epoch << 32) | (index.wrapping_add(1) & 0xFFFF_FFFF)
}

const TAG_MASK: u64 = 0xFFFF_FFFF << 32;

/// Messages of at most this many bytes (slots of at most this stride) are
/// sent and received one at a time through the short paths
/// (`ProducerCore::send_one`); larger ones through the full paths
/// (`send_one_full`, which `Sender::try_send` calls for them directly).
pub(crate) const QUICK_MAX: usize = 16;

/// The shortest distance, in messages past `tail`, at which the consumer
/// probes for a published run (see `ConsumerCore::scan`).
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
    geo: Geometry,
    /// Our index (a message index); mirrors `ProducerHeader::head`, which
    /// only we write.
    head: u64,
    /// Last validated consumer index: a message index, at most a ring
    /// behind `head`.
    cached_tail: u64,
    /// Messages handed out by the last `reserve`, the most `commit` may
    /// publish, as long as `head` is still `reserved_at`.
    reserved: u32,
    /// `head` when the last reservation was made: a send in between moves
    /// `head` and so ends it, without the send touching `reserved`.
    reserved_at: u64,
    /// The message index where the room seen at the last look at the
    /// consumer's index ends (`free_limit()` then; `head` until
    /// connected): a send fits while `head` has not reached it, one
    /// comparison and no index arithmetic.
    limit: u64,
    /// `send_one` takes its short path while `head` has not reached
    /// this: sends that keep `head` inside its block (so neither a stamp
    /// slot nor the header's `head` is involved) and inside the room up
    /// to `limit`. Set by `send_one`'s full path; every other assignment
    /// of `head`, and every look at the room, sets it to `head` (no short
    /// sends), so it is never past what the full path would allow. Kept
    /// only where `Geometry::quick` (small messages): elsewhere the short
    /// path is never taken and it is not consulted. An
    /// index, not a count: the short path stores nothing but `head` (a
    /// store more per message measured about 25 % slower on single
    /// 64-byte messages, `benches/spsc`: the producer's stores wait in the
    /// store buffer for lines the consumer holds).
    quick_end: u64,
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
        let geo = Geometry::new(layout);
        let p = view.producer_header();
        let c = view.consumer_header();
        // Our own page: whatever a previous incarnation left is as good a
        // starting index as any, because the consumer adopts it on resync
        // (moved off a stamp slot, which a wiped page cannot hold anyway).
        let mut head = p.head.load(Relaxed);
        if geo.is_stamp_slot(head) {
            head = head.wrapping_add(1);
            p.head.store(head, Relaxed);
        }
        let epoch = next_epoch(p.epoch.load(Relaxed), c.prod_epoch_ack.load(Relaxed));
        // Layout guarantees both fit in u32 (slot array <= 1 GiB).
        p.magic.store(MAGIC, Relaxed);
        p.version.store(VERSION, Relaxed);
        p.slot_size.store(layout.slot_size() as u32, Relaxed);
        p.slot_count.store(layout.slot_count() as u32, Relaxed);
        p.block_slots.store(layout.block_slots() as u32, Relaxed);
        // Release: a consumer that sees the epoch also sees geometry and head.
        p.epoch.store(epoch, Release);
        Self {
            view,
            geo,
            head,
            cached_tail: head,
            reserved: 0,
            reserved_at: head,
            limit: head,
            quick_end: head,
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

    /// The block arithmetic of this channel.
    #[inline]
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Ring capacity in messages.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.geo.capacity
    }

    /// This producer's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the consumer has acknowledged this producer's epoch.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The index of the next message this producer publishes (the
    /// producer header's `head`): it changes exactly when messages are
    /// committed (or the ring resynchronises after a consumer restart).
    #[inline]
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Whether the message published at ring index `index` is the current
    /// consumer incarnation's to receive: at or after the index its epoch
    /// started at (a consumer that restarted drops what was in flight when
    /// it attached). Reads the consumer's header: for restart handling, not
    /// the data path. A hostile consumer can make this say anything, which
    /// only misleads its own clients.
    pub fn reaches_current_consumer(&self, index: u64) -> bool {
        let c = self.view.consumer_header();
        // The consumer stores its start before its epoch (Release): seeing
        // an epoch means seeing at least that epoch's start.
        let epoch = c.epoch.load(Acquire);
        let start = c.epoch_start.load(Acquire);
        epoch != 0 && index.wrapping_sub(start) < (1u64 << 63)
    }

    /// Where the messages we may write end: at the block of `cached_tail`,
    /// a ring on.
    ///
    /// Never into the block the consumer is still reading, even into its
    /// already released slots: one stamp describes one block, so a block
    /// must never hold messages of two laps at once.
    #[inline]
    fn free_limit(&self) -> u64 {
        // Invariant (validated): head is at most a ring past the start of
        // cached_tail's block, so `head` is at or before this.
        self.geo.block_start(self.cached_tail).wrapping_add(self.geo.slots)
    }

    /// Reserves up to `max` free slots (at least one unless `max` is 0).
    ///
    /// Only looks at the consumer's header when the cached view has fewer
    /// than `max` free slots, so a producer that keeps ahead of the consumer
    /// touches no shared cache line but the slots it writes.
    #[inline]
    pub fn reserve(&mut self, max: u32) -> Result<Span, RingError> {
        self.reserved = 0;
        let mut free = self.geo.between(self.head, self.limit);
        if free < u64::from(max) {
            self.refresh_room()?;
            free = self.geo.between(self.head, self.limit);
            if free == 0 {
                return Err(RingError::Full);
            }
        }
        let len = free.min(u64::from(max)) as u32;
        self.reserved = len;
        self.reserved_at = self.head;
        Ok(Span { start: self.head, len })
    }

    /// `reserve(1)`, for a producer that sends one message at a time: the
    /// index of the reserved slot. Publish it with
    /// [`commit_one`](Self::commit_one).
    #[inline]
    pub fn reserve_one(&mut self) -> Result<u64, RingError> {
        if self.head == self.limit {
            self.reserved = 0;
            self.refresh_room()?;
            if self.head == self.limit {
                return Err(RingError::Full);
            }
        }
        self.reserved = 1;
        self.reserved_at = self.head;
        Ok(self.head)
    }

    /// Sends one message: `write(view, index)` fills the free slot of ring
    /// index `index`, which is then published, as `reserve_one`, the
    /// write, `commit_one`, with nothing kept between the two (a sender
    /// of one message at a time does only this). Ends any reservation.
    #[inline]
    pub fn send_one(&mut self, write: impl FnOnce(&V, u64)) -> Result<(), RingError> {
        let start = self.head;
        // The full path keeps `quick_end` only for small messages (see
        // there), so for larger ones it is not consulted.
        if start == self.quick_end || !self.geo.quick {
            return self.send_one_full(write);
        }
        // Room, and `start` is not its block's last message (`quick_end`):
        // the next index is a message of the same block, and the header's
        // `head` stays (see `publish_head`).
        // Everything the publication needs, before the write: the slot
        // write may alias anything as far as the compiler knows, so after
        // it every field would be loaded again.
        let stamp = self.view.stamp(start);
        let value = stamp_value(self.epoch, start);
        write(&self.view, start);
        self.head = start.wrapping_add(1);
        stamp.store(value, Release);
        Ok(())
    }

    /// `send_one` without its short path: what it does at `quick_end` (at
    /// a block's last message, at the end of the room seen, or after
    /// anything else moved `head`). For messages larger than 16 bytes,
    /// which never take the short path: the check alone measured slower
    /// on single 64-byte messages (`benches/spsc`).
    #[inline]
    pub fn send_one_full(&mut self, write: impl FnOnce(&V, u64)) -> Result<(), RingError> {
        if self.head == self.limit {
            self.refresh_room()?;
            if self.head == self.limit {
                return Err(RingError::Full);
            }
        }
        let start = self.head;
        let next = self.geo.next(start);
        let stamp = self.view.stamp(start);
        let value = stamp_value(self.epoch, start);
        write(&self.view, start);
        self.head = next;
        self.publish_head(start, next);
        stamp.store(value, Release);
        if self.geo.quick {
            // The short sends from here: up to the block's last message,
            // and within the room (a `limit` inside the block is less than
            // a block away, so the raw distance counts messages). Stored
            // only for small messages: a store more per message measured
            // slower on large ones (see `quick_end`).
            let in_block = self.geo.block_last(next).wrapping_sub(next);
            let room = self.limit.wrapping_sub(next);
            self.quick_end = next.wrapping_add(in_block.min(room));
        }
        Ok(())
    }

    /// Publishes the message at `start`, the one at `head`.
    #[inline]
    fn publish_one(&mut self, start: u64) {
        let next = self.geo.next(start);
        self.head = next;
        self.quick_end = next;
        self.publish_head(start, next);
        self.view.stamp(start).store(stamp_value(self.epoch, start), Release);
    }

    /// Before the stamp of a message sent on its own: stores the header's
    /// `head` only when the message is its block's last (`next` starts a
    /// block), so the header names the block being filled and lags the
    /// true head by less than a block. A store per message measured
    /// costly (64-byte messages one at a time: about 47 against 64-66
    /// Melem/s in `benches/spsc`). A restarted consumer, which starts
    /// from the header's `head`, skips what that block's stamp publishes
    /// (`ConsumerCore::attach`). Batch commits store it the same way,
    /// except where batch readers use it as a hint (`commit`).
    #[inline]
    fn publish_head(&self, start: u64, next: u64) {
        if next.wrapping_sub(start) != 1 {
            // `next` skipped the block's stamp slot: a new block.
            self.view.producer_header().head.store(next, Relaxed);
        }
    }

    /// `commit(1)`: publishes the message of the last reservation (nothing
    /// if there is none).
    #[inline]
    pub fn commit_one(&mut self) {
        if self.reserved == 0 || self.reserved_at != self.head {
            return;
        }
        self.reserved = 0;
        self.publish_one(self.head);
    }

    /// Refreshes the cached consumer index and recomputes `limit` from it,
    /// whatever the refresh found (a resynchronisation moves
    /// `cached_tail`; an error leaves it as it was).
    #[cold]
    fn refresh_room(&mut self) -> Result<(), RingError> {
        self.quick_end = self.head;
        let r = self.refresh();
        self.limit = if self.connected { self.free_limit() } else { self.head };
        r
    }

    /// Publishes the first `n` messages of the last reservation (clamped to
    /// its length); the reservation ends either way.
    ///
    /// Stores `head` once, then one stamp per block the messages touch: no
    /// read-modify-write and a single release barrier per batch.
    #[inline]
    pub fn commit(&mut self, n: u32) {
        let n = if self.reserved_at == self.head { n.min(self.reserved) } else { 0 };
        self.reserved = 0;
        if n == 0 {
            return;
        }
        // n <= reserved <= the room up to `limit`.
        let start = self.head;
        self.head = self.geo.advance(start, u64::from(n));
        if self.geo.quick {
            self.quick_end = self.head;
        }
        // Before the stamps (ordered by the Release below): a consumer that
        // received any of these messages happens-after this store, so a
        // restarted consumer, which starts at `head` (and skips what the
        // stamp of its block publishes), never starts behind what its
        // previous incarnation consumed. Where batch readers use `head` as
        // a hint (blocks of one line, see `ConsumerCore::scan`), every
        // commit stores it exactly; elsewhere only a commit that leaves a
        // block does, as single sends do (`publish_head`): a store fewer
        // per batch measured about 1 % on 64-byte batches (`benches/spsc`,
        // the producer's stores wait for lines the consumer holds).
        if self.geo.line_blocks || self.geo.block_start(start) != self.geo.block_start(self.head) {
            self.view.producer_header().head.store(self.head, Relaxed);
        }
        if n == 1 {
            // Release: the message (and `head`) are visible to a consumer
            // that reads this stamp and then fences with Acquire.
            self.view.stamp(start).store(stamp_value(self.epoch, start), Release);
            return;
        }
        // One barrier for the batch: every stamp below is ordered after
        // every slot write and `head` (fence-to-load synchronisation with
        // the consumer's Acquire fence).
        fence(Release);
        // Last block first: a consumer waiting on the first block's stamp
        // then sees the whole batch at once, and does not pull the batch's
        // lines away from us while we are still stamping them. At most
        // n / (block - 1) + 2 blocks.
        let first_block = self.geo.block_start(start);
        let mut last = self.geo.head_last(self.head);
        loop {
            self.view.stamp(last).store(stamp_value(self.epoch, last), Relaxed);
            let b = self.geo.block_start(last);
            if b == first_block {
                break;
            }
            // The previous block's last message: skip its stamp slot.
            last = b.wrapping_sub(2);
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
        // An honest consumer's index is always a message index.
        if self.geo.is_stamp_slot(tail) {
            return Err(RingError::Corrupt);
        }
        if !self.connected || cons_epoch != self.cons_epoch {
            // (Re)synchronise: adopt the consumer's tail if it is plausible:
            // head at most a ring past the start of its block.
            if self.head.wrapping_sub(self.geo.block_start(tail)) > self.geo.slots {
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

impl Geometry {
    /// The last message index before message index `head` (the last message
    /// of a commit that ended at `head`).
    #[inline]
    fn head_last(&self, head: u64) -> u64 {
        let p = head.wrapping_sub(1);
        if self.is_stamp_slot(p) {
            p.wrapping_sub(1)
        } else {
            p
        }
    }
}

/// Consumer side of the protocol.
#[derive(Debug)]
pub struct ConsumerCore<V> {
    view: V,
    geo: Geometry,
    slot_size: u32,
    slot_count: u32,
    /// Our index (a message index); mirrors `ConsumerHeader::tail`, which
    /// only we write.
    tail: u64,
    /// End of the run of messages whose stamps we have validated, a message
    /// index at most `capacity` messages past `tail`.
    cached_head: u64,
    /// Messages handed out by the last `peek`, the most `release` may free,
    /// as long as `tail` is still `peeked_at`.
    peeked: u32,
    /// `tail` when the last peek was made: a receive in between moves
    /// `tail` and so ends it, without the receive touching `peeked`.
    peeked_at: u64,
    /// Producer epoch we are synchronised with; 0 = none yet.
    prod_epoch: u64,
    epoch: u64,
    /// How far past `tail` the next scan probes for a published run.
    probe: u64,
    /// The last scan found nothing at `tail` and an impossible stamp there.
    bad_stamp: bool,
    /// The stamp the last scan found not publishing `cached_head`.
    seen: u64,
    /// What an empty `peek_one` last reported, with what it was decided
    /// on: `cached_head`, the stamp there and our producer epoch. A poll
    /// that finds the same stamp there and the producer's epoch unchanged
    /// would decide the same, so it answers at once.
    quiet: Option<(u64, u64, u64, RingError)>,
    /// The tail last stored to our header: the slots from there to `tail`
    /// are released but not yet handed back.
    handed: u64,
    /// How many slots (stamp slots included) released messages may span
    /// while they wait to be handed back and the validated run lasts.
    lazy: u64,
    /// The message index at which a receive one at a time hands the slots
    /// back: `cached_head` or the first message index `lazy` slots past
    /// `handed`, whichever `tail` reaches first (see `aim_hand_back`), so
    /// that it decides with one comparison.
    hand_at: u64,
    /// `recv_one` takes its short path while `tail` has not reached
    /// this: validated messages that keep `tail` inside its block and
    /// short of `hand_at` (so neither a stamp slot nor a hand-back is
    /// involved). Set by `recv_one`'s full path; every other assignment
    /// of `tail` sets it to `tail` (no short receives), so it is never past
    /// what the full path would allow. Kept only where `Geometry::quick`,
    /// and an index, not a count, as `ProducerCore::quick_end`.
    quick_end: u64,
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
            geo: Geometry::new(layout),
            slot_size: layout.slot_size() as u32,
            slot_count: layout.slot_count() as u32,
            tail: 0,
            cached_head: 0,
            handed: 0,
            peeked: 0,
            peeked_at: 0,
            prod_epoch: 0,
            epoch,
            probe: PROBE,
            bad_stamp: false,
            seen: 0,
            quiet: None,
            lazy: (layout.slot_count() as u64 / 4).max(1),
            hand_at: 0,
            quick_end: 0,
        };
        let p = core.view.producer_header();
        let prod_epoch = p.epoch.load(Acquire);
        // Never behind what a previous incarnation consumed: the producer's
        // `head` may lag its true head, but only within the block it is
        // filling (see `ProducerCore::publish_head`), and is stored before the
        // stamps that publish past it.
        let mut head = p.head.load(Acquire);
        // A head on a stamp slot is no honest producer's: do not adopt the
        // producer (`idle` reports it), and keep our own index valid.
        let synced = prod_epoch != 0 && core.geometry_matches() && !core.geo.is_stamp_slot(head);
        if core.geo.is_stamp_slot(head) {
            head = head.wrapping_add(1);
        }
        if synced {
            // What the block's stamp publishes from `head` on was published
            // in flight, perhaps taken by a previous incarnation: start
            // after it. That block cannot hold a later lap yet: the
            // producer never writes into the block of the tail it last
            // saw, which is at or before this block.
            let s = core.view.stamp(head).load(Acquire);
            if let Some(last) = core.geo.published(s, prod_epoch, head) {
                head = core.geo.next(last);
            }
        }
        core.tail = head;
        core.quick_end = head;
        core.cached_head = head;
        core.handed = head;
        core.aim_hand_back();
        core.prod_epoch = if synced { prod_epoch } else { 0 };
        let c = core.view.consumer_header();
        // Stored in the order the producer's refresh relies on. Release on
        // the tail too: a previous incarnation's reads of the slots we skip
        // must happen before the producer reuses them, whichever of our
        // stores the producer happens to observe first.
        c.tail.store(head, Release);
        c.prod_epoch_ack.store(core.prod_epoch, Release);
        c.epoch_start.store(head, Release);
        c.epoch.store(epoch, Release);
        core
    }

    /// The view this consumer runs on.
    #[inline]
    pub fn view(&self) -> &V {
        &self.view
    }

    /// The block arithmetic of this channel.
    #[inline]
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Ring capacity in messages.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.geo.capacity
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
            && u64::from(p.block_slots.load(Relaxed)) == self.geo.bm + 1
    }

    /// Returns up to `max` published messages (at least one unless `max` is
    /// 0) without consuming them.
    ///
    /// Reads block stamps past the known-published run until it has `max`
    /// messages or meets a block not yet published that far: a small
    /// message shares its block's line with the stamp, so the same transfer
    /// that signals a message brings its data. The producer's header is read
    /// only when nothing is available (its epoch, on a line that changes
    /// only on restarts).
    #[inline]
    pub fn peek(&mut self, max: u32) -> Result<Span, RingError> {
        self.peeked = 0;
        // Invariant (validated): cached_head - tail <= capacity messages.
        let mut avail = self.ready();
        if avail < u64::from(max) {
            avail = self.scan(u64::from(max).min(self.geo.capacity));
            if avail == 0 {
                return Err(self.idle());
            }
        }
        let len = avail.min(u64::from(max)) as u32;
        self.peeked = len;
        self.peeked_at = self.tail;
        Ok(Span { start: self.tail, len })
    }

    /// The index of the next published message, for a reader that takes
    /// one at a time: `peek(1)`, with the common case (a message already
    /// validated) reduced to one comparison. Consume it with
    /// [`release_one`](Self::release_one).
    #[inline]
    pub fn peek_one(&mut self) -> Result<u64, RingError> {
        if self.tail == self.cached_head {
            self.refill()?;
        }
        self.peeked = 1;
        self.peeked_at = self.tail;
        Ok(self.tail)
    }

    /// Validated messages from `tail` on.
    #[inline]
    fn ready(&self) -> u64 {
        self.geo.between(self.tail, self.cached_head)
    }

    /// Receives one message: `read(view, index)` takes the published
    /// message of ring index `index`, whose slot is then handed back; as
    /// `peek_one`, the read, `release_one`, with nothing kept between the
    /// two (a reader of one message at a time does only this). Ends any
    /// peek.
    #[inline]
    pub fn recv_one<R>(&mut self, read: impl FnOnce(&V, u64) -> R) -> Result<R, RingError> {
        let at = self.tail;
        // As in `ProducerCore::send_one`.
        if at == self.quick_end || !self.geo.quick {
            return self.recv_one_full(read);
        }
        // Validated, and `tail` is neither its block's last message nor
        // one short of `hand_at` (`quick_end`).
        let r = read(&self.view, at);
        self.tail = at.wrapping_add(1);
        Ok(r)
    }

    /// `recv_one` without its short path: what it does at `quick_end` (at
    /// a block's last message, at the end of the validated run, where
    /// slots are handed back, or after another entry point moved `tail`).
    /// For messages larger than 16 bytes, as `send_one_full`.
    #[inline]
    pub fn recv_one_full<R>(&mut self, read: impl FnOnce(&V, u64) -> R) -> Result<R, RingError> {
        if self.tail == self.cached_head {
            self.refill()?;
        }
        let r = read(&self.view, self.tail);
        self.consume_one();
        // The short receives from here: up to the block's last message,
        // and before `hand_at` (at or before `cached_head`, so within the
        // validated run; bounded by the run too, in case). Inside one
        // block the raw distances count messages.
        if self.geo.quick {
            let t = self.tail;
            let in_block = self.geo.block_last(t).wrapping_sub(t);
            let before_hand = self.hand_at.wrapping_sub(t).min(self.cached_head.wrapping_sub(t));
            self.quick_end = t.wrapping_add(in_block.min(before_hand.saturating_sub(1)));
        }
        Ok(r)
    }

    /// Moves `tail` past one validated message, handing the slots back
    /// when the run is used up or enough are waiting.
    #[inline]
    fn consume_one(&mut self) {
        self.tail = self.geo.next(self.tail);
        // `tail` moves one message at a time, so it meets `hand_at` exactly
        // when `release` would hand back (see `aim_hand_back`).
        if self.tail == self.hand_at {
            self.hand_back();
        }
    }

    /// Recomputes `hand_at` after `cached_head` or `handed` moved. Both
    /// candidates are at or after `tail`: `release` hands back as soon as
    /// `lazy` slots wait, so fewer wait now.
    #[inline]
    fn aim_hand_back(&mut self) {
        let mut due = self.handed.wrapping_add(self.lazy);
        if self.geo.is_stamp_slot(due) {
            // `tail` steps over stamp slots: it next stands on the message
            // after, where `tail - handed >= lazy` first holds.
            due = due.wrapping_add(1);
        }
        let head = self.cached_head;
        self.hand_at = if due.wrapping_sub(self.tail) < head.wrapping_sub(self.tail) { due } else { head };
    }

    /// Extends an empty run for [`peek_one`](Self::peek_one): out of line,
    /// so the common case stays small.
    #[inline(never)]
    fn refill(&mut self) -> Result<(), RingError> {
        // The run is empty, so `tail == cached_head`: the next message is
        // in `tail`'s block, and a run inside that block can never reach
        // a lap on.
        let (at, epoch) = (self.cached_head, self.prod_epoch);
        if epoch != 0 {
            // The load the full path starts with (`scan`), done once.
            let s = self.view.stamp(at).load(Relaxed);
            if let Some(last) = self.geo.published(s, epoch, at) {
                // What `scan(1)` does when it would not probe (the block
                // is not published to its end, or only the one message
                // waited for arrived): the run is what this stamp
                // publishes. A message arriving at a reader that keeps
                // pace with the producer costs this much.
                if last != self.geo.block_last(at) || last == at {
                    // Acquire: as in `scan`.
                    fence(Acquire);
                    self.cached_head = self.geo.next(last);
                    self.aim_hand_back();
                    self.bad_stamp = false;
                    self.quiet = None;
                    return Ok(());
                }
            } else if s == stamp_value(epoch, at.wrapping_sub(1)) && !self.geo.is_stamp_slot(at.wrapping_sub(1)) {
                // Empty, the honest way: the block's stamp still names the
                // message just before `at`, the one last consumed (a
                // request/reply exchange finds this at its first poll after
                // every message). What `scan(1)` concludes from that load
                // (nothing new; not an impossible stamp, since it names a
                // message of this block before `at`), then the same `idle`
                // as the full path, which looks at the producer's epoch.
                self.seen = s;
                self.bad_stamp = false;
                let err = self.idle();
                if self.prod_epoch == epoch && self.cached_head == at {
                    self.quiet = Some((at, s, epoch, err));
                }
                return Err(err);
            } else if let Some((q_at, stamp, q_epoch, err)) = self.quiet {
                // The same two loads the full path makes (the stamp,
                // then the producer's epoch in `idle`), with the same
                // orderings: the same values give the same answer.
                if q_at == at
                    && q_epoch == epoch
                    && s == stamp
                    && self.view.producer_header().epoch.load(Acquire) == epoch
                {
                    return Err(err);
                }
            }
        }
        self.quiet = None;
        if self.scan(1) > 0 {
            return Ok(());
        }
        let err = self.idle();
        // Only an answer decided on a stamp of this producer, with no
        // resynchronisation in between, can be repeated.
        if epoch != 0 && self.prod_epoch == epoch && self.cached_head == at {
            self.quiet = Some((at, self.seen, epoch, err));
        }
        Err(err)
    }

    /// Consumes the message of the last [`peek_one`](Self::peek_one) (or
    /// the first of the last `peek`), as `release(1)`.
    #[inline]
    pub fn release_one(&mut self) {
        if self.peeked == 0 || self.peeked_at != self.tail {
            return;
        }
        self.peeked = 0;
        self.consume_one();
        if self.geo.quick {
            self.quick_end = self.tail;
        }
    }

    /// Extends the validated run towards `want` (<= capacity) messages past
    /// `tail` and returns its length; called only when the run is shorter.
    ///
    /// Reads the stamp of the block of the first unvalidated message, and,
    /// if that block is published to its end and more is wanted, the stamp
    /// of one block further on (see `probe`); if that one is not published
    /// that far, the blocks in between one by one, until `want` or a block
    /// not published to its end. A block's messages are accepted only
    /// through what its stamp, exactly of the producer's epoch and this lap,
    /// says is published; the loop is bounded by `want`, never by a peer
    /// value, and the run never reaches past the block `tail` is in, a ring
    /// on, whatever the stamps claim. For small messages a stamp shares its
    /// block's line with the messages, so reading it is a transfer the batch
    /// needs anyway.
    #[inline]
    fn scan(&mut self, want: u64) -> u64 {
        let geo = self.geo;
        if self.prod_epoch == 0 {
            // No producer yet: nothing is published (and `idle` looks for one).
            return self.ready();
        }
        let epoch = self.prod_epoch;
        let mut next = self.cached_head;
        self.bad_stamp = false;
        self.view.prefetch(next);
        let first = self.view.stamp(next).load(Relaxed);
        let Some(last) = geo.published(first, epoch, next) else {
            // Nothing new; `idle` reports an impossible stamp at `tail`.
            self.seen = first;
            self.bad_stamp = next == self.tail && self.impossible(first);
            return self.ready();
        };
        let end = geo.block_last(next);
        if last != end {
            next = geo.next(last);
        } else {
            next = end.wrapping_add(2);
            // A single-message reader probes too, though it has its
            // message, when the producer is ahead of it (this stamp
            // published more than the one message it waited for):
            // otherwise it would come back here for every block. One that
            // keeps pace with the producer (a request/reply exchange) does
            // not: the probed line is one the producer has not written
            // yet, and fetching it would put a line transfer on every
            // block's last hop.
            if (want == 1 && last != self.cached_head) || geo.between(self.tail, next) < want {
                // Probe the block `probe` messages on (at least `want`, at
                // most to `tail`'s block a lap on): if its stamp publishes
                // that far, so is everything before it (an honest producer
                // commits in index order and stamps only what it committed,
                // with a Release barrier covering all earlier slot writes),
                // so one read stands for all the blocks between, and a
                // hostile producer gains nothing it could not get by
                // stamping each of them. The probe doubles while it
                // succeeds, so a consumer behind a fast producer validates
                // up to a ring per stamp read, and halves when it fails.
                let room = geo.between(self.tail, geo.block_start(self.tail).wrapping_add(geo.slots));
                let mut n = self.probe.max(want).min(room);
                // Whether a `head` that may lag cut the probe short (below).
                let mut lagging = false;
                if want > 1 && geo.line_blocks {
                    // A batch reader of small messages probes no further
                    // than the producer's `head` says it has committed
                    // (on a line of its own): a probe past it fails (and
                    // then the blocks are read one by one), and its line is
                    // one the producer has yet to write, taken away from
                    // it. Only a hint: `head` may lag by up to a block
                    // (`ProducerCore::publish_head`), and a hostile one
                    // only moves the probe within the same bounds; nothing
                    // is accepted without its stamp.
                    let hint = self.view.producer_header().head.load(Relaxed);
                    let ahead = geo.between(self.tail, hint);
                    if ahead >= 1 && ahead < n {
                        n = ahead;
                        lagging = geo.block_start(hint) == hint;
                    }
                }
                let far = geo.advance(self.tail, n - 1);
                // Where `head` bounded the probe, only a `head` on a block's
                // start may lag (single sends store it once per block, on
                // leaving one): then the producer's block may hold more,
                // and the blocks are read on below even if the probe, or
                // the run already validated, reached `head`. A `head`
                // inside a block is a batch's exact one: reading on would
                // take the line the producer is about to fill.
                let mut blocks = true;
                if geo.between(self.tail, next) >= n {
                    // Already that far (a small ring, or `head`).
                    blocks = lagging;
                } else if geo.published(self.view.stamp(far).load(Relaxed), epoch, far).is_some() {
                    next = geo.next(far);
                    self.probe = (self.probe * 2).min(geo.capacity);
                    blocks = lagging;
                } else {
                    self.probe = (self.probe / 2).max(PROBE);
                }
                if blocks {
                    // Short of `want`: one block at a time, up to `want`.
                    // The next block's address comes from `next`, not from
                    // the stamp just loaded, so the CPU can fetch the
                    // following stamps while this one is on its way.
                    while geo.between(self.tail, next) < want {
                        let Some(last) = geo.published(self.view.stamp(next).load(Relaxed), epoch, next) else {
                            break;
                        };
                        let end = geo.block_last(next);
                        if last != end {
                            next = geo.next(last);
                            break;
                        }
                        next = end.wrapping_add(2);
                    }
                }
            }
        }
        // No block may hold two laps, so a run reaching into `tail`'s block
        // a lap on is no honest producer's: cut it there.
        let limit = geo.block_start(self.tail).wrapping_add(geo.slots);
        if next.wrapping_sub(self.tail) > limit.wrapping_sub(self.tail) {
            next = limit;
        }
        // Acquire (one barrier for the run): the slot contents written
        // before the stamps we matched (and before each commit's Release
        // barrier) are visible to our reads.
        fence(Acquire);
        self.cached_head = next;
        self.aim_hand_back();
        geo.between(self.tail, next)
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
        if self.prod_epoch != 0 && self.bad_stamp {
            return RingError::Corrupt;
        }
        RingError::Empty
    }

    /// Whether `s`, read as the stamp of `tail`'s block while nothing is
    /// published at `tail`, is one no honest producer can have written. A
    /// stamp of another epoch is an old incarnation's (or never written):
    /// not yet. Of ours, the honest values name a message of this block: at
    /// or after `tail` (published since we looked), or before it, in this
    /// lap or an earlier one. A later lap, a slot of another block or the
    /// stamp slot itself cannot happen.
    fn impossible(&self, s: u64) -> bool {
        if s & TAG_MASK != stamp_value(self.prod_epoch, 0) & TAG_MASK
            || self.geo.published(s, self.prod_epoch, self.tail).is_some()
        {
            return false;
        }
        let c = u64::from((s as u32).wrapping_sub(1));
        let behind = (self.tail as u32).wrapping_sub(s as u32); // tail - 1 - c
        let ring = self.geo.slots - 1;
        let same_block = (c & ring & !self.geo.bm) == (self.tail & ring & !self.geo.bm);
        behind >= 1 << 31 || !same_block || self.geo.is_stamp_slot(c)
    }

    /// Consumes the first `n` messages of the last peek (clamped to its
    /// length), handing their slots back to the producer; the peek ends
    /// either way.
    #[inline]
    pub fn release(&mut self, n: u32) {
        let n = if self.peeked_at == self.tail { n.min(self.peeked) } else { 0 };
        self.peeked = 0;
        if n == 0 {
            return;
        }
        self.tail = self.geo.advance(self.tail, u64::from(n));
        if self.geo.quick {
            self.quick_end = self.tail;
        }
        // Hand the slots back once the validated run is used up (so a
        // producer waiting for room never waits on a consumer that has
        // nothing left to read), or once enough are pending: a consumer
        // working through a long run does not move the tail line to the
        // producer, and back, on every batch.
        if self.tail == self.cached_head || self.tail.wrapping_sub(self.handed) >= self.lazy {
            self.hand_back();
        }
    }

    /// Stores `tail` to our header: the released slots go back to the
    /// producer.
    #[inline]
    fn hand_back(&mut self) {
        self.handed = self.tail;
        self.aim_hand_back();
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
        if self.geo.is_stamp_slot(head) {
            return Err(RingError::Corrupt);
        }
        let first = self.prod_epoch == 0;
        self.tail = head;
        self.quick_end = head;
        self.cached_head = head;
        self.handed = head;
        self.aim_hand_back();
        // A peek of the old epoch ends here, whatever index the new one
        // starts at.
        self.peeked = 0;
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
    use crate::Tuning;
    use std::vec::Vec;

    /// Headers and up to 256 slots' stamps on the heap (slot contents are
    /// not modelled: these tests are about indices and stamps). Only the
    /// stamp slots' entries are used.
    struct Heap {
        p: ProducerHeader,
        c: ConsumerHeader,
        stamps: [AtomicU64; 256],
        /// How often each entry of `stamps` was handed out (loads and
        /// stores alike) since the last `clear_uses`.
        uses: [AtomicU64; 256],
        mask: u64,
        bm: u64,
    }
    impl Heap {
        fn new(l: &ChannelLayout) -> Self {
            assert!(l.slot_count() <= 256);
            Self {
                p: ProducerHeader::new(),
                c: ConsumerHeader::new(),
                stamps: core::array::from_fn(|_| AtomicU64::new(0)),
                uses: core::array::from_fn(|_| AtomicU64::new(0)),
                mask: l.slot_count() as u64 - 1,
                bm: l.block_slots() as u64 - 1,
            }
        }
        fn clear_uses(&self) {
            self.uses.iter().for_each(|u| u.store(0, SeqCst));
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
            let i = ((index | self.bm) & self.mask) as usize;
            self.uses[i].fetch_add(1, SeqCst);
            &self.stamps[i]
        }
    }

    /// 8-byte messages: blocks of min(8, n) slots.
    fn layout(n: usize) -> ChannelLayout {
        ChannelLayout::new(8, n).unwrap()
    }

    #[test]
    fn geometry_matches_a_slot_by_slot_walk() {
        for (size, n) in [(8, 2), (8, 4), (8, 32), (16, 16), (64, 64), (24, 8)] {
            let l = ChannelLayout::new(size, n).unwrap();
            let g = Geometry::new(&l);
            let k = l.block_slots() as u64;
            assert_eq!(g.capacity(), (n as u64) - n as u64 / k);
            // Start near the top of u64 so the walk wraps.
            for start in [0u64, 1, k + 1, u64::MAX - 2 * k + 1, u64::MAX - k + 1] {
                if g.is_stamp_slot(start) {
                    continue;
                }
                let mut walk = start;
                for steps in 0..3 * n as u64 {
                    assert_eq!(g.advance(start, steps), walk, "advance({start}, {steps})");
                    assert_eq!(g.between(start, walk), steps);
                    assert!(!g.is_stamp_slot(walk));
                    assert_eq!(g.block_last(walk) & (k - 1), k - 2);
                    let next = g.next(walk);
                    assert_eq!(next, if walk.wrapping_add(1) & (k - 1) == k - 1 { walk.wrapping_add(2) } else { walk.wrapping_add(1) });
                    walk = next;
                }
            }
        }
    }

    #[test]
    fn throughput_geometry_matches_a_slot_by_slot_walk_and_exact_division() {
        // Multi-line blocks, walked slot by slot.
        for (size, n) in [(24, 16), (8, 64), (16, 128), (64, 256)] {
            let l = ChannelLayout::new(size, n).unwrap().tuned(Tuning::Throughput);
            let g = Geometry::new(&l);
            let k = l.block_slots() as u64;
            assert_eq!(k, n as u64 / 4);
            assert!(!g.line_blocks || size * k as usize <= crate::layout::LINE);
            for start in [0u64, 1, k + 1, u64::MAX - 2 * k + 1] {
                let mut walk = start;
                for steps in 0..2 * n as u64 {
                    assert_eq!(g.advance(start, steps), walk, "{size}x{n}: advance({start}, {steps})");
                    assert_eq!(g.between(start, walk), steps);
                    walk = g.next(walk);
                }
            }
        }
        // Blocks up to 2^25 slots: the reciprocal against exact division,
        // for steps up to a ring.
        for (size, n) in [(8usize, 1usize << 27), (64, 1 << 24), (4096, 1 << 18), (8, 1 << 10)] {
            let l = ChannelLayout::new(size, n).unwrap().tuned(Tuning::Throughput);
            let g = Geometry::new(&l);
            let k = l.block_slots() as u64;
            let bm = k - 1;
            let cap = g.capacity();
            for start in [0u64, 5, bm - 1, k, k + bm - 1, 3 * k + 7, u64::MAX - k + 1, u64::MAX - 1 - k] {
                if g.is_stamp_slot(start) {
                    continue;
                }
                for steps in [0, 1, bm - 1, bm, bm + 1, 2 * bm - 1, 2 * bm, cap / 3, cap - 1, cap] {
                    let p = start & bm;
                    let m = p + steps;
                    let want = (start - p).wrapping_add((m / bm) * k).wrapping_add(m % bm);
                    assert_eq!(g.advance(start, steps), want, "{size}x{n}: advance({start}, {steps})");
                    assert_eq!(g.between(start, want), steps);
                }
            }
        }
    }

    #[test]
    fn producer_waits_for_ack_then_fills_to_capacity() {
        let l = layout(4); // one block: messages 0, 1, 2, stamp in slot 3
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        assert_eq!(tx.reserve(1), Err(RingError::Full));
        let mut rx = ConsumerCore::attach(&h, &l);
        // The consumer attached after the producer and acked at attach time.
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        let s = tx.reserve(8).unwrap();
        assert_eq!(s.len, 3);
        tx.commit(2);
        assert_eq!(tx.reserve(8).unwrap().len, 1);
        tx.commit(9); // clamped to the reservation
        assert_eq!(h.p.head.load(SeqCst), 4, "head steps over the stamp slot");
        assert_eq!(tx.reserve(1), Err(RingError::Full));
        let s = rx.peek(10).unwrap();
        assert_eq!((s.start, s.len), (0, 3));
        rx.release(2);
        // Slots 0 and 1 are free, but their block still holds message 2 of
        // this lap: one stamp cannot describe two laps.
        assert_eq!(tx.reserve(8), Err(RingError::Full));
        let s = rx.peek(10).unwrap();
        assert_eq!((s.start, s.len), (2, 1));
        rx.release(1);
        let s = tx.reserve(8).unwrap();
        assert_eq!((s.start, s.len), (4, 3));
        tx.commit(0);
        assert_eq!(rx.peek(1), Err(RingError::Empty));
    }

    #[test]
    fn one_at_a_time_sends_keep_the_free_count_of_a_full_refresh() {
        let l = layout(16); // two blocks of 7 messages
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        assert_eq!(tx.reserve_one(), Err(RingError::Full), "not acknowledged yet");
        tx.commit_one();
        assert_eq!(h.p.head.load(SeqCst), 0, "nothing reserved, nothing committed");
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        let g = *tx.geometry();
        // Single sends, a partial batch and single sends again: exactly
        // the capacity, then Full; each single send stamps its block.
        let mut at = 0;
        for i in 0..5 {
            assert_eq!(tx.reserve_one(), Ok(at), "send {i}");
            tx.commit_one();
            assert_eq!(h.stamps[7].load(SeqCst), stamp_value(e, at));
            at = g.next(at);
        }
        assert_eq!(tx.head(), 5);
        assert_eq!(h.p.head.load(SeqCst), 0, "the header names the block being filled");
        assert_eq!(tx.reserve(4).unwrap(), Span { start: 5, len: 4 });
        tx.commit(2); // 5 6 | 8
        at = g.advance(at, 2);
        for _ in 0..7 {
            assert_eq!(tx.reserve_one(), Ok(at));
            tx.commit_one();
            at = g.next(at);
        }
        assert_eq!(at, 16, "14 messages: the capacity");
        assert_eq!(tx.reserve_one(), Err(RingError::Full));
        assert_eq!(tx.reserve(1), Err(RingError::Full));
        // The consumer leaves block 0: its 7 slots are free again, and no
        // more (block 1 still holds this lap).
        assert_eq!(rx.peek(7).unwrap().len, 7);
        rx.release(7);
        let mut n = 0;
        while tx.reserve_one().is_ok() {
            tx.commit_one();
            n += 1;
        }
        assert_eq!(n, 7);
        // A consumer restart: reported once, then the count is the one a
        // full refresh gives (the new consumer starts at head: a ring free,
        // less the block it is in).
        let _rx2 = ConsumerCore::attach(&h, &l);
        assert_eq!(tx.reserve_one(), Err(RingError::PeerRestarted));
        let mut n = 0;
        while tx.reserve_one().is_ok() {
            tx.commit_one();
            n += 1;
        }
        assert_eq!(n, 14);
        // A hostile tail is Corrupt, and the state is kept.
        h.c.tail.store(7, SeqCst);
        assert_eq!(tx.reserve_one(), Err(RingError::Corrupt));
        tx.commit_one();
        assert_eq!(h.p.head.load(SeqCst), 40, "a failed reservation publishes nothing");
    }

    #[test]
    fn consumer_first_then_producer() {
        let l = layout(2);
        let h = Heap::new(&l);
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
        let l = layout(8);
        let h = Heap::new(&l);
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
        let h = Heap::new(&l);
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
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let _dead = ConsumerCore::attach(&h, &l);
        tx.reserve(4).unwrap();
        tx.commit(4);
        // The first consumer dies without consuming anything.
        let mut rx = ConsumerCore::attach(&h, &l);
        // In-flight messages were discarded by the new consumer.
        assert_eq!(rx.peek(1), Err(RingError::Empty));
        assert_eq!(tx.reserve(1), Err(RingError::PeerRestarted));
        assert_eq!(tx.reserve(4).unwrap().len, 3);
    }

    #[test]
    fn a_producer_tells_which_messages_reach_the_current_consumer() {
        let l = layout(8);
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let _rx = ConsumerCore::attach(&h, &l);
        let before = tx.head();
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert!(tx.reaches_current_consumer(before));
        // The consumer restarts with the message in flight: dropped.
        let _rx2 = ConsumerCore::attach(&h, &l);
        assert!(!tx.reaches_current_consumer(before));
        // Sent after the restart (before the producer noticed it): reaches it.
        let after = tx.head();
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert!(tx.reaches_current_consumer(after));
        assert!(!tx.reaches_current_consumer(before));
    }

    #[test]
    fn corrupt_indices_are_reported_and_state_kept() {
        // Two blocks of four: messages 0 1 2 | 4 5 6, stamps in slots 3, 7.
        let l = ChannelLayout::new(16, 8).unwrap();
        assert_eq!(l.block_slots(), 4);
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(h.stamps[3].load(SeqCst), stamp_value(e, 0));
        // The consumer never looks at head on the data path.
        h.p.head.store(100, SeqCst);
        assert_eq!(rx.peek(8).unwrap().len, 1);
        h.p.head.store(1, SeqCst);
        rx.release(1);
        // Stamps of our epoch that no honest producer can have written for
        // block 0 while the consumer waits at index 1: a later lap, a slot
        // of the other block, the stamp slot.
        for bad in [1 + 8, 4u64.wrapping_sub(8), 3u64.wrapping_sub(8), 3, 5] {
            h.stamps[3].store(stamp_value(e, bad), SeqCst);
            assert_eq!(rx.peek(1), Err(RingError::Corrupt), "stamp for index {bad}");
            // A batch reader too, whatever `head` says.
            assert_eq!(rx.peek(8), Err(RingError::Corrupt), "stamp for index {bad}");
        }
        // Earlier in this lap, an earlier lap, another epoch: not yet.
        for old in [stamp_value(e, 0), stamp_value(e, 1u64.wrapping_sub(8)), stamp_value(e + 1, 1), u64::MAX] {
            h.stamps[3].store(old, SeqCst);
            assert_eq!(rx.peek(1), Err(RingError::Empty), "stamp {old:#x}");
            h.p.head.store(2, SeqCst);
            assert_eq!(rx.peek(8), Err(RingError::Empty), "stamp {old:#x}");
            h.p.head.store(1, SeqCst);
        }
        // State kept: the real message still arrives.
        h.stamps[3].store(0, SeqCst);
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(rx.peek(8).unwrap(), Span { start: 1, len: 1 });
        rx.release(1);
        // The consumer is still in block 0, so the producer may fill the
        // rest of this lap only: 2 | 4 5 6. Asking for more refreshes.
        let s = tx.reserve(6).unwrap();
        assert_eq!((s.start, s.len), (2, 4));
        // Consumer index moving backwards, onto a stamp slot, past head.
        for bad in [1, 3, 7, 5] {
            h.c.tail.store(bad, SeqCst);
            assert_eq!(tx.reserve(7), Err(RingError::Corrupt), "tail {bad}");
        }
        h.c.tail.store(2, SeqCst);
        assert_eq!(tx.reserve(7).unwrap().len, 4);
        // Ack of an epoch that was never ours.
        h.c.prod_epoch_ack.store(tx.epoch() + 7, SeqCst);
        assert_eq!(tx.reserve(7), Err(RingError::Corrupt));
    }

    #[test]
    fn batches_stamp_every_block_they_touch_and_stop_at_a_gap() {
        let l = ChannelLayout::new(16, 8).unwrap(); // messages 0 1 2 | 4 5 6
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        let s = tx.reserve(5).unwrap();
        tx.commit(5);
        assert_eq!(h.p.head.load(SeqCst), 6);
        assert_eq!(h.stamps[3].load(SeqCst), stamp_value(e, 2));
        assert_eq!(h.stamps[7].load(SeqCst), stamp_value(e, 5));
        // A block not stamped: the consumer takes the run before it.
        h.stamps[7].store(0, SeqCst);
        assert_eq!(rx.peek(8).unwrap(), Span { start: s.start, len: 3 });
        rx.release(1);
        assert_eq!(rx.peek(8).unwrap(), Span { start: 1, len: 2 });
        h.stamps[7].store(stamp_value(e, 5), SeqCst);
        assert_eq!(rx.peek(8).unwrap(), Span { start: 1, len: 4 });
        rx.release(4);
        assert_eq!(rx.peek(1), Err(RingError::Empty));
    }

    #[test]
    fn runs_are_checked_block_by_block_and_never_reach_a_lap_on() {
        let l = layout(32); // four blocks of 7 messages
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        assert_eq!(tx.reserve(28).unwrap().len, 28);
        tx.commit(28);
        assert_eq!(h.stamps[15].load(SeqCst), stamp_value(e, 14));
        // The probe (the block of the last message wanted) is not stamped:
        // block by block, and a block whose stamp is missing ends the run.
        h.stamps[15].store(0, SeqCst);
        h.stamps[31].store(0, SeqCst);
        assert_eq!(rx.peek(28).unwrap(), Span { start: 0, len: 7 });
        h.stamps[15].store(stamp_value(e, 14), SeqCst);
        assert_eq!(rx.peek(28).unwrap(), Span { start: 0, len: 21 });
        h.stamps[31].store(stamp_value(e, 30), SeqCst);
        assert_eq!(rx.peek(28).unwrap(), Span { start: 0, len: 28 });
        rx.release(3);
        // Block 0 stamped for the next lap while the consumer is still in
        // it: no honest producer does that, and the run stops at the end of
        // this lap.
        h.stamps[7].store(stamp_value(e, 32 + 6), SeqCst);
        assert_eq!(rx.peek(28).unwrap(), Span { start: 3, len: 25 });
    }

    #[test]
    fn one_probe_stamp_validates_a_published_run() {
        let l = layout(32); // four blocks of 7 messages
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        tx.reserve(28).unwrap();
        tx.commit(28);
        // The first and the farthest block are stamped: the run between
        // them was committed before the farthest one.
        h.stamps[15].store(0, SeqCst);
        h.stamps[23].store(0, SeqCst);
        assert_eq!(rx.peek(28).unwrap(), Span { start: 0, len: 28 });
        rx.release(28);
        // A probe stamp of another lap is only "not validated".
        tx.reserve(21).unwrap();
        tx.commit(10); // 32..=38 | 40 41 42
        h.stamps[31].store(stamp_value(e, 62 + 32 * 5), SeqCst);
        assert_eq!(rx.peek(21).unwrap(), Span { start: 32, len: 10 });
    }

    #[test]
    fn a_batch_reader_probes_no_farther_than_the_producers_head() {
        let l = layout(32); // four blocks of 7 messages
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        // Ten messages: 0..=6 | 8 9 10, head 11.
        tx.reserve(10).unwrap();
        tx.commit(10);
        h.clear_uses();
        // The probe lands on the last committed message (block 1), not 28
        // messages on (block 3, a line the producer has yet to write).
        assert_eq!(rx.peek(28).unwrap(), Span { start: 0, len: 10 });
        let reads: [u64; 32] = core::array::from_fn(|i| h.uses[i].load(SeqCst));
        assert_eq!((reads[7], reads[15], reads[23], reads[31]), (1, 1, 0, 0), "{reads:?}");
        // A head claiming more than was committed only moves the probe:
        // what is accepted still comes from the stamps.
        rx.release(10);
        tx.reserve(3).unwrap();
        tx.commit(3); // 11 12 13 | 16, head 17
        h.p.head.store(1000, SeqCst);
        assert_eq!(rx.peek(28).unwrap(), Span { start: 11, len: 3 });
        h.p.head.store(12, SeqCst);
        assert_eq!(rx.peek(28).unwrap(), Span { start: 11, len: 3 });
    }

    #[test]
    fn a_batch_reader_behind_a_lagging_head_takes_everything_published() {
        // 16-byte messages: blocks of 3. Seven sent one at a time: 0 1 2 |
        // 4 5 6 | 8; the header's `head` says 8 (the block being filled),
        // the true head is 9. A batch reader whose probe `head` bounds
        // reads on into that block, whether the probe ran or the run
        // already reached `head` (a one-message peek validated part of it
        // first, as a service's arrival check does).
        let l = ChannelLayout::new(16, 32).unwrap();
        assert_eq!(l.block_slots(), 4);
        for peek_first in [false, true] {
            let h = Heap::new(&l);
            let mut tx = ProducerCore::attach(&h, &l);
            let mut rx = ConsumerCore::attach(&h, &l);
            for _ in 0..7 {
                tx.send_one(|_, _| {}).unwrap();
            }
            assert_eq!((h.p.head.load(SeqCst), tx.head()), (8, 9));
            if peek_first {
                assert_eq!(rx.peek(1).unwrap(), Span { start: 0, len: 1 });
            }
            assert_eq!(rx.peek(7).unwrap(), Span { start: 0, len: 7 }, "peek(1) first: {peek_first}");
        }
    }

    #[test]
    fn a_single_reader_takes_a_published_run_on_one_probe() {
        let l = layout(32); // four blocks of 7 messages, capacity 28
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        let g = *tx.geometry();
        tx.reserve(28).unwrap();
        tx.commit(28);
        // Nothing peeked: nothing to release.
        rx.release_one();
        assert_eq!(h.c.tail.load(SeqCst), 0);
        // The probe is the farthest block it may read: the first block
        // and that one carry the whole run; the middle ones are not read.
        h.stamps[15].store(0, SeqCst);
        h.stamps[23].store(0, SeqCst);
        for i in 0..28 {
            assert_eq!(rx.peek_one(), Ok(g.advance(0, i)), "message {i}");
            rx.release_one();
            if i == 6 {
                assert_eq!(h.c.tail.load(SeqCst), 8, "7 pending: handed back");
            }
        }
        assert_eq!(h.c.tail.load(SeqCst), 32, "run used up: handed back at once");
        assert_eq!(rx.peek_one(), Err(RingError::Empty));
        // Without the probe's stamp, one block at a time.
        tx.reserve(28).unwrap();
        tx.commit(28);
        h.stamps[31].store(0, SeqCst);
        for i in 0..7 {
            assert_eq!(rx.peek_one(), Ok(g.advance(32, i)));
            rx.release_one();
        }
        assert_eq!(h.c.tail.load(SeqCst), 40, "the run ended with the block");
        // An impossible stamp of our epoch at `tail`: Corrupt, state kept.
        h.stamps[15].store(stamp_value(e, 33), SeqCst);
        assert_eq!(rx.peek_one(), Err(RingError::Corrupt));
        assert_eq!(rx.peek_one(), Err(RingError::Corrupt), "the same stamp, the same answer");
        h.stamps[15].store(stamp_value(e, 46), SeqCst);
        assert_eq!(rx.peek_one(), Ok(40));
    }

    #[test]
    fn a_single_reader_keeping_pace_reads_only_its_own_blocks_stamp() {
        let l = layout(32); // four blocks of 7 messages
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let g = *tx.geometry();
        assert_eq!(rx.peek_one(), Err(RingError::Empty));
        // One message at a time, each received before the next is sent
        // (a request/reply exchange): no probe ahead, not even when a
        // message completes its block, so the reader never touches a line
        // the producer has yet to write.
        let mut at = 0;
        for i in 0..3 * 28 {
            tx.reserve(1).unwrap();
            tx.commit(1);
            h.clear_uses();
            assert_eq!(rx.peek_one(), Ok(at), "message {i}");
            rx.release_one();
            assert_eq!(rx.peek_one(), Err(RingError::Empty), "message {i}");
            // Its message's block, and the next message's (the empty poll).
            let next = g.next(at);
            let (own, then) = (((at | 7) & 31) as usize, ((next | 7) & 31) as usize);
            for (s, u) in h.uses.iter().enumerate() {
                assert_eq!(u.load(SeqCst) > 0, s == own || s == then, "message {i}: stamp slot {s}");
            }
            at = next;
        }
        // A producer that runs ahead: a whole block found published at
        // once still makes the reader probe, and one more stamp read
        // takes the rest of the run.
        tx.reserve(28).unwrap();
        tx.commit(28);
        h.clear_uses();
        for i in 0..28 {
            assert_eq!(rx.peek_one(), Ok(g.advance(at, i)), "run message {i}");
            rx.release_one();
        }
        let reads: u64 = h.uses.iter().map(|u| u.load(SeqCst)).sum();
        // The first block's stamp (by `refill`, then again by `scan`,
        // from the cache) and the probe; block by block it would be 4+.
        assert_eq!(reads, 3, "the first block's stamp twice and the probe");
    }

    #[test]
    fn repeated_empty_polls_still_see_a_new_stamp_and_a_restart() {
        let l = layout(8);
        let h = Heap::new(&l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let mut tx = ProducerCore::attach(&h, &l);
        for _ in 0..3 {
            assert_eq!(rx.peek_one(), Err(RingError::Empty));
        }
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(rx.peek_one(), Ok(0));
        rx.release_one();
        for _ in 0..3 {
            assert_eq!(rx.peek_one(), Err(RingError::Empty));
        }
        // A restart leaves the stamp as it was; the epoch tells.
        let mut tx = ProducerCore::attach(&h, &l);
        assert_eq!(rx.peek_one(), Err(RingError::PeerRestarted));
        assert_eq!(rx.peek_one(), Err(RingError::Empty));
        assert_eq!(rx.peek_one(), Err(RingError::Empty));
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(rx.peek_one(), Ok(1));
    }

    #[test]
    fn a_reader_keeping_pace_finds_the_ring_empty_on_one_stamp_load() {
        let l = layout(32); // four blocks of 7 messages
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let e = tx.epoch();
        for i in 0..3 {
            tx.reserve(1).unwrap();
            tx.commit(1);
            assert_eq!(rx.peek_one(), Ok(i));
            rx.release_one();
            // The block's stamp still names message i: empty, from that
            // one load (no probe of a later block), twice in a row.
            h.clear_uses();
            assert_eq!(rx.peek_one(), Err(RingError::Empty));
            assert_eq!(rx.peek_one(), Err(RingError::Empty));
            let reads: [u64; 32] = core::array::from_fn(|i| h.uses[i].load(SeqCst));
            assert_eq!(reads.iter().sum::<u64>(), 2, "{reads:?}");
            assert_eq!(reads[7], 2, "{reads:?}");
        }
        // A stamp naming the previous message under another epoch is not
        // this producer's: the full path judges it (not yet), and a stamp
        // this producer cannot have written is reported.
        h.stamps[7].store(stamp_value(e + 1, 2), SeqCst);
        assert_eq!(rx.peek_one(), Err(RingError::Empty));
        h.stamps[7].store(stamp_value(e, 32 + 2), SeqCst);
        assert_eq!(rx.peek_one(), Err(RingError::Corrupt));
        h.stamps[7].store(stamp_value(e, 2), SeqCst);
        assert_eq!(rx.peek_one(), Err(RingError::Empty));
        tx.reserve(1).unwrap();
        tx.commit(1);
        assert_eq!(rx.peek_one(), Ok(3));
    }

    #[test]
    fn released_slots_are_handed_back_lazily_while_the_run_lasts() {
        let l = layout(32); // capacity 28: up to 7 released messages wait
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        tx.reserve(28).unwrap();
        tx.commit(28);
        assert_eq!(rx.peek(28).unwrap().len, 28);
        rx.release(6);
        assert_eq!(h.c.tail.load(SeqCst), 0, "6 < 7 pending, and the run goes on");
        assert_eq!(rx.peek(1).unwrap().start, 6);
        rx.release(1);
        assert_eq!(h.c.tail.load(SeqCst), 8, "7 pending: handed back");
        assert_eq!(rx.peek(28).unwrap().len, 21);
        rx.release(21);
        assert_eq!(h.c.tail.load(SeqCst), 32, "run used up: handed back at once");
        assert_eq!(tx.reserve(28).unwrap().len, 28);
    }

    #[test]
    fn a_send_or_receive_one_at_a_time_ends_a_reservation_or_peek() {
        let l = layout(32);
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let mut wrote = u64::MAX;
        // A reservation dropped without a commit, then a send: a late
        // commit of the old reservation publishes nothing.
        assert_eq!(tx.reserve(5).unwrap(), Span { start: 0, len: 5 });
        tx.send_one(|_, i| wrote = i).unwrap();
        assert_eq!(wrote, 0);
        tx.commit(5);
        assert_eq!(tx.head(), 1, "the stale reservation published nothing");
        tx.reserve_one().unwrap();
        tx.send_one(|_, i| wrote = i).unwrap();
        tx.commit_one();
        assert_eq!((tx.head(), wrote), (2, 1));
        // The same on the consumer: a peek, a receive, a late release.
        assert_eq!(rx.peek(2).unwrap(), Span { start: 0, len: 2 });
        assert_eq!(rx.recv_one(|_, i| i), Ok(0));
        rx.release(2);
        assert_eq!(rx.recv_one(|_, i| i), Ok(1), "the stale peek released nothing");
        assert_eq!(rx.recv_one(|_, i| i), Err(RingError::Empty));
        rx.peek_one().unwrap_err();
        tx.send_one(|_, _| {}).unwrap();
        assert_eq!(rx.peek_one(), Ok(2));
        assert_eq!(rx.recv_one(|_, i| i), Ok(2));
        rx.release_one();
        assert_eq!(rx.recv_one(|_, i| i), Err(RingError::Empty), "nothing left to release");
    }

    #[test]
    fn receiving_one_at_a_time_hands_back_where_releasing_one_does() {
        // Two rings fed the same way; one reader takes `recv_one`, the
        // other `peek_one` + `release_one` (its hand-back decided by the
        // full check). After every message both consumer tails agree.
        // 16 slots: `lazy` (4 slots) is not a multiple of the block, so
        // its mark can fall on a stamp slot.
        for slots in [16, 32] {
            one_at_a_time_hand_back(slots);
        }
    }

    fn one_at_a_time_hand_back(slots: usize) {
        let l = layout(slots);
        let (ha, hb) = (Heap::new(&l), Heap::new(&l));
        let mut ta = ProducerCore::attach(&ha, &l);
        let mut tb = ProducerCore::attach(&hb, &l);
        let mut ra = ConsumerCore::attach(&ha, &l);
        let mut rb = ConsumerCore::attach(&hb, &l);
        let mut handed = 0;
        // Runs of several lengths, so runs end on and off block ends and
        // the lazy limit falls inside runs.
        // Every run length up to a ring, each after every other: runs
        // then start and end at every offset in a block.
        let lens = (1..=l.capacity() as u32).flat_map(|a| [a, 1, 3, a + 2]);
        for (round, n) in lens.enumerate() {
            for tx in [&mut ta, &mut tb] {
                let s = tx.reserve(n).unwrap();
                tx.commit(s.len);
            }
            loop {
                let a = ra.recv_one(|_, i| i);
                let b = rb.peek_one();
                assert_eq!(a, b, "round {round}");
                if a.is_err() {
                    break;
                }
                rb.release_one();
                let (x, y) = (ha.c.tail.load(SeqCst), hb.c.tail.load(SeqCst));
                assert_eq!(x, y, "round {round}, message {a:?}");
                handed += u64::from(x == ra.tail);
            }
        }
        assert!(handed > 40, "{slots} slots: hand-backs happened mid-run and at run ends: {handed}");
    }

    #[test]
    fn a_restarted_consumer_skips_what_a_lagging_head_leaves_published() {
        let l = layout(32); // blocks of 7 messages
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let g = *tx.geometry();
        // Sends one at a time: the header's `head` moves only when a block
        // is left, to the next block's start.
        let mut at = 0;
        for i in 0..10 {
            tx.send_one(|_, _| {}).unwrap();
            at = g.next(at);
            let header = h.p.head.load(SeqCst);
            assert_eq!(header, g.block_start(at), "send {i}");
            assert!(g.between(header, at) < 7, "lags by less than a block");
        }
        // The reader takes 9 of the 10; then a new incarnation attaches
        // with the header at 8 and message 9 (index 10) still published.
        for i in 0..9 {
            assert_eq!(rx.recv_one(|_, x| x), Ok(g.advance(0, i)));
        }
        assert_eq!(h.p.head.load(SeqCst), 8);
        let mut rx = ConsumerCore::attach(&h, &l);
        assert_eq!(h.c.epoch_start.load(SeqCst), 11, "after everything its block's stamp publishes");
        // (The producer has room; it notices the restart when it looks at
        // the consumer's header again.)
        tx.send_one(|_, _| {}).unwrap();
        assert_eq!(rx.recv_one(|_, x| x), Ok(11), "nothing a previous incarnation may have taken");
        // A batch commit stores the exact head.
        let s = tx.reserve(3).unwrap();
        tx.commit(s.len);
        assert_eq!(h.p.head.load(SeqCst), tx.head());
        // With the header at a block start and nothing of that block
        // published, a new incarnation starts there.
        let mut rx = ConsumerCore::attach(&h, &l);
        let start = h.c.epoch_start.load(SeqCst);
        assert_eq!(start, tx.head());
        tx.send_one(|_, _| {}).unwrap();
        assert_eq!(rx.recv_one(|_, x| x), Ok(start));
    }

    #[test]
    fn throughput_batches_store_the_header_head_only_when_leaving_a_block() {
        // Blocks of 16 slots, 15 messages each.
        let l = ChannelLayout::new(8, 64).unwrap().tuned(Tuning::Throughput);
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let g = *tx.geometry();
        // Three batches of four inside block 0: the header stays at 0.
        for _ in 0..3 {
            let s = tx.reserve(4).unwrap();
            tx.commit(s.len);
        }
        assert_eq!((tx.head(), h.p.head.load(SeqCst)), (12, 0));
        // The reader takes 8; a new incarnation must not start behind them
        // (nor hand out what the old one may have taken): it starts after
        // what block 0's stamp publishes.
        let s = rx.peek(8).unwrap();
        rx.release(s.len);
        let mut rx = ConsumerCore::attach(&h, &l);
        assert_eq!(h.c.epoch_start.load(SeqCst), 12);
        // (The producer has room; it notices the restart when it looks at
        // the consumer's header again.)
        let s = tx.reserve(4).unwrap();
        assert_eq!(s.start, 12);
        tx.commit(s.len);
        // That batch left block 0 (12, 13, 14, then 16): the exact head.
        assert_eq!((tx.head(), h.p.head.load(SeqCst)), (17, 17));
        let s = rx.peek(8).unwrap();
        assert_eq!((s.start, s.len), (12, 4));
        assert_eq!(g.advance(s.start, 3), 16);
        // A one-message commit inside the block leaves the header too.
        let s = tx.reserve(1).unwrap();
        tx.commit(s.len);
        assert_eq!((tx.head(), h.p.head.load(SeqCst)), (18, 17));
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
        let h = Heap::new(&layout(8));
        let mut rx = ConsumerCore::attach(&h, &layout(4));
        let mut tx = ProducerCore::attach(&h, &layout(8));
        assert_eq!(rx.peek(1), Err(RingError::Corrupt));
        assert_eq!(tx.reserve(1), Err(RingError::Full));
    }

    #[test]
    fn a_producer_of_another_tuning_is_corrupt() {
        let lat = ChannelLayout::new(24, 16).unwrap();
        let thr = lat.tuned(Tuning::Throughput);
        assert_ne!(lat.block_slots(), thr.block_slots());
        for (prod, cons) in [(lat, thr), (thr, lat)] {
            let h = Heap::new(&lat);
            let mut rx = ConsumerCore::attach(&h, &cons);
            let mut tx = ProducerCore::attach(&h, &prod);
            assert_eq!(rx.peek(1), Err(RingError::Corrupt));
            assert_eq!(tx.reserve(1), Err(RingError::Full));
        }
    }

    #[test]
    fn throughput_blocks_carry_every_message_in_order_across_laps() {
        // Blocks of 16 slots (two lines of 8-byte messages, one stamp),
        // 60 messages in flight at most; sends and receives of every size,
        // one at a time and batched, for ten laps.
        let l = ChannelLayout::new(8, 64).unwrap().tuned(Tuning::Throughput);
        let h = Heap::new(&l);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let g = *tx.geometry();
        assert_eq!((l.block_slots(), g.capacity()), (16, 60));
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        let mut filled = false;
        for round in 0..200u32 {
            let want = [1, 3, 15, 16, 17, 40, 60][round as usize % 7];
            if round % 3 == 0 {
                // One at a time until the ring says it is full.
                let why = loop {
                    if let Err(e) = tx.send_one(|_, i| sent.push(i)) {
                        break e;
                    }
                };
                assert_eq!(why, RingError::Full);
            } else if let Ok(s) = tx.reserve(want) {
                (0..u64::from(s.len)).for_each(|k| sent.push(g.advance(s.start, k)));
                tx.commit(s.len);
            }
            filled |= g.between(rx.tail, tx.head()) == g.capacity();
            let take = [2, 16, 1, 60, 7][round as usize % 5];
            if round % 4 == 1 {
                for _ in 0..take {
                    if rx.recv_one(|_, i| got.push(i)).is_err() {
                        break;
                    }
                }
            } else if let Ok(s) = rx.peek(take) {
                (0..u64::from(s.len)).for_each(|k| got.push(g.advance(s.start, k)));
                rx.release(s.len);
            }
        }
        while let Ok(s) = rx.peek(64) {
            (0..u64::from(s.len)).for_each(|k| got.push(g.advance(s.start, k)));
            rx.release(s.len);
        }
        assert!(filled, "the ring was filled to capacity");
        assert!(sent.len() > 10 * 64, "ten laps: {}", sent.len());
        assert_eq!(got, sent);
        assert!(sent.iter().all(|&i| !g.is_stamp_slot(i)));
    }

    #[test]
    fn a_head_on_a_stamp_slot_is_not_adopted() {
        let l = layout(4);
        let h = Heap::new(&l);
        let _tx = ProducerCore::attach(&h, &l);
        h.p.head.store(7, SeqCst);
        let mut rx = ConsumerCore::attach(&h, &l);
        assert_eq!(rx.peek(1), Err(RingError::Corrupt));
        assert_eq!(h.c.tail.load(SeqCst), 8, "our own index stays a message index");
    }

    #[test]
    fn indices_wrap_around_u64() {
        let l = layout(4);
        let h = Heap::new(&l);
        h.p.head.store(u64::MAX - 1, SeqCst);
        let mut tx = ProducerCore::attach(&h, &l);
        let mut rx = ConsumerCore::attach(&h, &l);
        let g = *tx.geometry();
        let (mut expect, mut total) = (u64::MAX - 1, 0);
        for _ in 0..10 {
            let s = tx.reserve(3).unwrap();
            assert_eq!(s.start, expect);
            tx.commit(s.len);
            let r = rx.peek(4).unwrap();
            assert_eq!(r, s);
            rx.release(s.len);
            expect = g.advance(expect, u64::from(s.len));
            total += s.len;
        }
        assert!(total >= 28, "the ring keeps moving across the wrap: {total}");
    }
}

//! The binding of the protocol to raw shared memory: the only module in the
//! crate with `unsafe`.
//!
//! It owns turning a base pointer plus a [`ChannelLayout`] into header
//! references and slot pointers, and copying message bytes in and out of
//! slots. It must never compute an address from a value the peer wrote: slot
//! addresses (the stamps' included) come only from indices masked by the
//! layout's slot count, and the headers' addresses only from the layout.

#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::{Index, IndexMut};
use core::ptr::{self, NonNull};

use crate::header::{ConsumerHeader, ProducerHeader};
use crate::sync::AtomicU64;
use crate::layout::{ChannelLayout, LayoutError};
use crate::protocol::{ChannelView, ConsumerCore, ProducerCore, Span, QUICK_MAX};
use crate::{Message, RingError};
use zerocopy::{FromBytes, IntoBytes};

/// Channel memory as seen by one partition.
#[derive(Debug)]
pub(crate) struct RawChannel {
    base: NonNull<u8>,
    layout: ChannelLayout,
    /// `base` + the slot region's offset: slot 0's message.
    slots: *mut u8,
    /// `slot_count - 1`.
    mask: usize,
    /// The layout's slot stride.
    stride: usize,
    /// `block_slots - 1`: the in-block index mask, and the index of a
    /// block's stamp slot within it.
    bm: usize,
}

// SAFETY: a RawChannel only hands out shared references to atomics and
// pointers into memory that, per `RawChannel::new`'s contract, stays valid
// for its whole life regardless of which thread uses it.
unsafe impl Send for RawChannel {}

impl RawChannel {
    /// # Safety
    ///
    /// `base` must point to `layout.total_size()` bytes that stay mapped and
    /// readable for as long as the returned value (or an endpoint built on
    /// it) lives, and whose header pages and slots are only ever accessed,
    /// within this address space, through this value. The side that will
    /// write a region (see [`ChannelLayout::regions`]) must have it mapped
    /// writable. The peer partition may write its own regions at any time.
    unsafe fn new(base: NonNull<u8>, layout: ChannelLayout) -> Result<Self, LayoutError> {
        if !(base.as_ptr() as usize).is_multiple_of(layout.page_size()) {
            return Err(LayoutError::BaseMisaligned);
        }
        // SAFETY: the slot region lies inside the channel memory.
        let slots = unsafe { base.as_ptr().add(layout.slots().offset) };
        Ok(Self {
            base,
            layout,
            slots,
            mask: layout.slot_count() - 1,
            stride: layout.slot_stride(),
            bm: layout.block_slots() - 1,
        })
    }

    /// Pointer to the slot of free-running index `index`;
    /// `layout.slot_offset(index)` bytes from the base.
    #[inline]
    fn slot(&self, index: u64) -> *mut u8 {
        // SAFETY: the index is masked, so the offset plus a stride lies
        // inside the slot region, inside the `total_size()` bytes `new`'s
        // contract guarantees.
        let p = unsafe { self.slots.add((index as usize & self.mask) * self.stride) };
        debug_assert_eq!(p as usize - self.base.as_ptr() as usize, self.layout.slot_offset(index));
        p
    }
}

/// Walks the message slots of a span in order, a block's run of
/// contiguous message slots at a time, stepping over each block's stamp
/// slot: batch loops then run over plain contiguous slots.
#[derive(Debug)]
struct SlotCursor {
    /// The next message slot.
    next: *mut u8,
    /// Message slots from `next` to its block's stamp slot; at least 1.
    run: usize,
    first: *mut u8,
    end: *mut u8,
    stride: usize,
    bm: usize,
}

impl SlotCursor {
    #[inline]
    fn new(raw: &RawChannel, start: u64) -> Self {
        // SAFETY: `end` is one past the last slot, inside the page-rounded
        // slot region or at its end (`new`'s contract).
        let end = unsafe { raw.slots.add((raw.mask + 1) * raw.stride) };
        debug_assert!(start as usize & raw.bm != raw.bm, "spans start on a message slot");
        let run = raw.bm - (start as usize & raw.bm);
        Self { next: raw.slot(start), run, first: raw.slots, end, stride: raw.stride, bm: raw.bm }
    }

    /// The next `n` message slots, contiguous, for the largest `n <= max`
    /// (`max >= 1`) that stays in the current block: their first slot and
    /// `n`. Moves past them, and past the block's stamp slot at its end.
    #[inline]
    fn take(&mut self, max: usize) -> (*mut u8, usize) {
        let n = self.run.min(max);
        let p = self.next;
        self.run -= n;
        // SAFETY: the `n` slots from `p` are message slots of one block, so
        // `p + n * stride` is at most that block's stamp slot, before `end`.
        self.next = unsafe { p.add(n * self.stride) };
        if self.run == 0 {
            // SAFETY: `next` is the block's stamp slot, so `next + stride`
            // is at most `end` (the slot count is a multiple of the block).
            self.next = unsafe { self.next.add(self.stride) };
            if self.next == self.end {
                self.next = self.first;
            }
            self.run = self.bm;
        }
        (p, n)
    }
}

impl ChannelView for RawChannel {
    #[inline]
    fn producer_header(&self) -> &ProducerHeader {
        // SAFETY: the producer header page starts at offset 0, the base is
        // page-aligned (checked in `new`) and the page is larger than the
        // header. The header is all atomics, valid for any bit pattern, and
        // the peer only accesses it atomically too. Loads through the shared
        // reference are fine on a read-only mapping: the consumer never
        // stores to this header and atomic loads do not write.
        unsafe { &*self.base.as_ptr().cast::<ProducerHeader>() }
    }

    #[inline]
    fn consumer_header(&self) -> &ConsumerHeader {
        let region = self.layout.consumer_header();
        // SAFETY: as for `producer_header`, one page further.
        unsafe { &*self.base.as_ptr().add(region.offset).cast::<ConsumerHeader>() }
    }

    #[inline]
    fn stamp(&self, index: u64) -> &AtomicU64 {
        // SAFETY: the first 8 bytes of the block's last slot
        // (`layout.stamp_offset(index)`), inside the channel (`new`'s
        // contract; a stride is at least 8 bytes); 8-aligned (page-aligned
        // base, stride a multiple of 8). An AtomicU64 is valid for any bits;
        // only the producer stores (atomically) and the consumer only loads,
        // which is fine on its read-only mapping. No reference to a message
        // ever covers a stamp: stamp slots are never handed out as message
        // slots (spans and cursors step over them).
        unsafe { &*self.slot(index | self.bm as u64).cast::<AtomicU64>() }
    }

    #[inline]
    fn prefetch(&self, index: u64) {
        let p = self.slot(index);
        // SAFETY: a prefetch is only a hint: it never faults, writes nothing
        // and has no architectural effect (and `p` is inside the channel).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().cast_const());
        }
        // SAFETY: as above (`prfm` is a hint, never a fault).
        #[cfg(target_arch = "aarch64")]
        unsafe {
            core::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) p, options(nostack, readonly, preserves_flags));
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = p;
    }
}

/// The sending end of a channel carrying `T`.
#[derive(Debug)]
pub struct Sender<T> {
    core: ProducerCore<RawChannel>,
    /// Whether `SendBatch::fill_with` asks for a batch's lines ahead of the
    /// writes (`has_store_prefetch`, decided once at attach).
    store_prefetch: bool,
    _msg: PhantomData<fn(T)>,
}

impl<T: Message> Sender<T> {
    /// Attaches as the producer of the channel at `base` (starting a new
    /// epoch; see `docs/channels.md`).
    ///
    /// # Safety
    ///
    /// - `base` points to `layout.total_size()` bytes of channel memory laid
    ///   out by `layout`, mapped for this partition with the producer's
    ///   access from [`ChannelLayout::regions`] (writable producer header and
    ///   slots, readable consumer header), and it stays mapped while the
    ///   `Sender` lives.
    /// - No other `Sender` for this channel exists in any partition, and
    ///   nothing else in this partition accesses that memory.
    ///
    /// The consumer partition, however hostile, cannot break these
    /// guarantees: it can only write its own header, and every value there is
    /// validated.
    pub unsafe fn new(base: NonNull<u8>, layout: ChannelLayout) -> Result<Self, LayoutError> {
        layout.check_message::<T>()?;
        // SAFETY: forwarded from this function's contract.
        let raw = unsafe { RawChannel::new(base, layout)? };
        Ok(Self { core: ProducerCore::attach(raw, &layout), store_prefetch: has_store_prefetch(), _msg: PhantomData })
    }

    /// Ring capacity in messages.
    pub fn capacity(&self) -> usize {
        self.core.capacity() as usize
    }

    /// Whether the consumer has acknowledged this sender's epoch.
    pub fn is_connected(&self) -> bool {
        self.core.is_connected()
    }

    /// The ring index of the next message to be committed: it moves
    /// exactly when messages are published, so a doorbell can be rung once
    /// for everything committed since the position it last saw.
    #[inline]
    pub fn position(&self) -> u64 {
        self.core.head()
    }

    /// Whether the message committed at ring index `index` (a
    /// [`position`](Self::position) before its send) will be seen by the
    /// consumer as it is now: false if the consumer restarted after it was
    /// published (the new incarnation dropped it, or its predecessor took
    /// it). Reads the consumer's header; for restart handling.
    pub fn reaches_current_consumer(&self, index: u64) -> bool {
        self.core.reaches_current_consumer(index)
    }

    /// Sends one message, or reports why not ([`RingError::Full`] when the
    /// ring is full or the consumer has not connected yet).
    #[inline]
    pub fn try_send(&mut self, msg: &T) -> Result<(), RingError> {
        let write = |raw: &RawChannel, index| {
            // SAFETY: the slot is inside the channel (masked index), writable
            // by the producer, aligned for T and at least size_of::<T>()
            // long (checked in `new`), and not in [tail, head), so the
            // consumer does not read it; `msg` is a live T, and T: IntoBytes
            // has no padding.
            unsafe { write_slot(raw.slot(index), msg) };
        };
        // Decided at compile time: larger messages never take the short
        // path (see `ProducerCore::send_one_full`).
        if size_of::<T>() <= QUICK_MAX {
            self.core.send_one(write)
        } else {
            self.core.send_one_full(write)
        }
    }

    /// Reserves up to `max` consecutive slots to fill in place; at least one
    /// slot unless `max` is 0. Nothing is published until
    /// [`SendBatch::commit`]; dropping the batch publishes nothing.
    #[inline]
    pub fn reserve(&mut self, max: usize) -> Result<SendBatch<'_, T>, RingError> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let span = self.core.reserve(max)?;
        Ok(SendBatch { sender: self, span })
    }
}

/// The cache line size the store prefetch steps by.
const LINE: usize = 64;

/// Whether this CPU has a prefetch for writing (`prefetchw`, CPUID
/// 0x8000_0001 ECX bit 8). Older Intel processors lack it, so it is asked
/// for, not assumed. Not used on other architectures (not measured there).
#[cfg(target_arch = "x86_64")]
fn has_store_prefetch() -> bool {
    use core::arch::x86_64::__cpuid;
    // CPUID exists on every x86_64 processor; leaf 0x8000_0000 reports the
    // highest extended leaf.
    __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn has_store_prefetch() -> bool {
    false
}

/// Asks for every line of the `len` bytes of slots from `p` in the state a
/// write needs, before any of the writes. The consumer read those lines a
/// lap ago, so each write must first take its line back from the
/// consumer's cache; a write waits for that in a store-buffer entry, in
/// order, while the prefetches go out together. Measured on the `spsc`
/// bench (64-byte batches of 32, throughput tuning): 1.02-1.04 of rtrb
/// against 1.00-1.01 without, same session, builds alternated. Issued in
/// `reserve` instead, which then no longer inlined, it measured 0.98-0.99;
/// for 8-byte batches (`fill_pairs`, 8 messages per line) it made no
/// difference and is not issued.
#[inline(always)]
fn prefetch_for_store(p: *mut u8, len: usize) {
    let mut line = p as usize & !(LINE - 1);
    let end = p as usize + len;
    while line < end {
        prefetch_line_for_store(line);
        line += LINE;
    }
}

/// Fetches the line at `addr` for writing (only where `has_store_prefetch`
/// said so).
#[inline(always)]
fn prefetch_line_for_store(addr: usize) {
    // SAFETY: a prefetch is a hint: it never faults, has no architectural
    // effect and writes no memory; the CPU supports it (the caller checked
    // `has_store_prefetch`).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("prefetchw [{a}]", a = in(reg) addr, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Slots reserved by [`Sender::reserve`], written in place (`batch[i] = m`
/// or [`get_mut`](Self::get_mut)).
///
/// Slots start with whatever bytes were there (any bytes are a valid `T`).
#[derive(Debug)]
pub struct SendBatch<'a, T> {
    sender: &'a mut Sender<T>,
    span: Span,
}

impl<T: Message> SendBatch<'_, T> {
    /// Number of reserved slots.
    #[inline]
    pub fn len(&self) -> usize {
        self.span.len as usize
    }

    /// Whether no slot was reserved (only when `max` was 0).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.span.len == 0
    }

    /// The `i`-th reserved slot, or `None` past the end.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len() {
            return None;
        }
        let p = self.sender.core.view().slot(self.sender.core.geometry().advance(self.span.start, i as u64));
        // SAFETY: the slot is inside the channel, aligned for T (base is
        // page-aligned, the slot stride and the page size are multiples of
        // align_of::<T>(), checked in `Sender::new`), at least size_of::<T>()
        // long, and any bytes are a valid T (T: FromBytes). It is reserved for
        // us: the consumer does not read it until we commit, no other slot of
        // the span aliases it (span.len <= capacity), and the borrow of `self`
        // keeps the reference from outliving the reservation.
        Some(unsafe { &mut *p.cast::<T>() })
    }

    /// Writes `msg` into the `i`-th reserved slot.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    #[inline]
    pub fn write(&mut self, i: usize, msg: &T) {
        self[i].as_mut_bytes().copy_from_slice(msg.as_bytes());
    }

    /// Writes `f(i)` into every reserved slot `i`, in order. The fastest
    /// way to fill a batch: 8-byte messages go two per store, and for
    /// larger ones the batch's lines are fetched for writing before the
    /// first write where the CPU can (`prefetchw` on x86_64).
    #[inline]
    pub fn fill_with(&mut self, mut f: impl FnMut(usize) -> T) {
        if size_of::<T>() == 8 && self.sender.core.view().stride == 8 {
            return self.fill_pairs(f);
        }
        // A cursor walk with the width decided per slot: on the two-thread
        // benchmark (`benches/spsc`, 64-byte batches) it measured faster
        // than a block walk deciding the width once, though it executes
        // more instructions; why is not established. The producer is the
        // bottleneck there: counted per thread, its consumer found the ring
        // empty 3 to 13 times per batch and the producer almost never found
        // it full. The lines it writes, not its instructions, bound it (see
        // `prefetch_for_store`).
        let stride = self.sender.core.view().stride;
        let mut cur = SlotCursor::new(self.sender.core.view(), self.span.start);
        let (len, mut i) = (self.len(), 0);
        let prefetch = self.sender.store_prefetch;
        while i < len {
            let (p, n) = cur.take(len - i);
            if prefetch {
                prefetch_for_store(p, n * stride);
            }
            for k in 0..n {
                let v = f(i + k);
                // SAFETY: the cursor yields the span's slots (k < n of a
                // contiguous run), each inside the channel, aligned, large
                // enough and reserved for us (see `get_mut`); the write
                // replaces bytes, never drops a T.
                unsafe { write_slot(p.add(k * stride), &v) };
            }
            i += n;
        }
    }

    /// `fill_with` for 8-byte messages packed slot to slot: two messages
    /// per 16-byte store, straight from registers. One 8-byte store per
    /// message measured much slower on two threads (`benches/spsc`,
    /// 8-byte batches with [`Tuning::Throughput`](crate::Tuning)): every
    /// store to a line the consumer last held waits for that line in a
    /// store-buffer entry, so half as many stores keep twice as many lines
    /// in flight. Staging the messages in a local buffer and copying that
    /// out 16 bytes at a time measured slower still (the staging stores
    /// queue behind the waiting ones).
    #[inline]
    fn fill_pairs(&mut self, mut f: impl FnMut(usize) -> T) {
        let mut cur = SlotCursor::new(self.sender.core.view(), self.span.start);
        let (len, mut i) = (self.len(), 0);
        let bits = |v: T| -> u64 {
            let mut x = 0u64;
            x.as_mut_bytes().copy_from_slice(v.as_bytes());
            x
        };
        while i < len {
            let (mut p, n) = cur.take(len - i);
            let end = i + n;
            if !(p as usize).is_multiple_of(CHUNK) {
                // SAFETY: a reserved 8-byte message slot, 8-aligned.
                unsafe { ptr::write_volatile(p.cast::<u64>(), bits(f(i))) };
                i += 1;
                // SAFETY: the next slot of the run, or its end.
                p = unsafe { p.add(8) };
            }
            while i + 2 <= end {
                let (a, b) = (bits(f(i)), bits(f(i + 1)));
                // SAFETY: two reserved slots of the run, 16-aligned here.
                unsafe { ptr::write_volatile(p.cast::<Chunk>(), chunk_of(a, b)) };
                i += 2;
                // SAFETY: as above.
                p = unsafe { p.add(16) };
            }
            if i < end {
                // SAFETY: the run's last slot.
                unsafe { ptr::write_volatile(p.cast::<u64>(), bits(f(i))) };
                i += 1;
            }
        }
    }

    /// Publishes all reserved slots.
    #[inline]
    pub fn commit(self) {
        let n = self.span.len;
        self.sender.core.commit(n);
    }

    /// Publishes the first `n` reserved slots (clamped to the batch length).
    #[inline]
    pub fn commit_first(self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.sender.core.commit(n);
    }
}

impl<T: Message> Index<usize> for SendBatch<'_, T> {
    type Output = T;

    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    #[inline]
    fn index(&self, i: usize) -> &T {
        assert!(i < self.len(), "slot {i} out of a batch of {}", self.len());
        let p = self.sender.core.view().slot(self.sender.core.geometry().advance(self.span.start, i as u64));
        // SAFETY: as in `get_mut`, through a shared borrow.
        unsafe { &*p.cast::<T>() }
    }
}

impl<T: Message> IndexMut<usize> for SendBatch<'_, T> {
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        let len = self.len();
        match self.get_mut(i) {
            Some(slot) => slot,
            None => panic!("slot {i} out of a batch of {len}"),
        }
    }
}

/// The receiving end of a channel carrying `T`.
#[derive(Debug)]
pub struct Receiver<T> {
    core: ConsumerCore<RawChannel>,
    _msg: PhantomData<fn() -> T>,
}

impl<T: Message> Receiver<T> {
    /// Attaches as the consumer of the channel at `base` (starting a new
    /// epoch and discarding whatever was in flight).
    ///
    /// # Safety
    ///
    /// - `base` points to `layout.total_size()` bytes of channel memory laid
    ///   out by `layout`, mapped for this partition with the consumer's
    ///   access from [`ChannelLayout::regions`] (writable consumer header,
    ///   readable producer header and slots), and it stays mapped while the
    ///   `Receiver` lives.
    /// - No other `Receiver` for this channel exists in any partition, and
    ///   nothing else in this partition accesses that memory.
    ///
    /// The producer partition, however hostile, cannot break these
    /// guarantees: every header value it writes is validated and slot bytes
    /// are only ever copied out as a `T`, for which any bytes are valid.
    pub unsafe fn new(base: NonNull<u8>, layout: ChannelLayout) -> Result<Self, LayoutError> {
        layout.check_message::<T>()?;
        // SAFETY: forwarded from this function's contract.
        let raw = unsafe { RawChannel::new(base, layout)? };
        Ok(Self { core: ConsumerCore::attach(raw, &layout), _msg: PhantomData })
    }

    /// Ring capacity in messages.
    pub fn capacity(&self) -> usize {
        self.core.capacity() as usize
    }

    #[inline]
    fn read(&self, index: u64) -> T {
        // SAFETY: `slot` returns a slot inside the channel.
        unsafe { read_slot(self.core.view().slot(index)) }
    }

    /// Receives one message, or reports why not ([`RingError::Empty`] when
    /// nothing is available).
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, RingError> {
        // SAFETY: `slot` returns a slot inside the channel, and the index
        // is a published message's.
        let read = |raw: &RawChannel, index| unsafe { read_slot(raw.slot(index)) };
        if size_of::<T>() <= QUICK_MAX {
            self.core.recv_one(read)
        } else {
            self.core.recv_one_full(read)
        }
    }

    /// Looks at up to `max` available messages (at least one unless `max` is
    /// 0). They stay in the ring until [`RecvBatch::release`]; dropping the
    /// batch consumes nothing.
    #[inline]
    pub fn recv_batch(&mut self, max: usize) -> Result<RecvBatch<'_, T>, RingError> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let span = self.core.peek(max)?;
        Ok(RecvBatch { receiver: self, span })
    }
}

/// The widest access to a slot: `write_slot`'s stores and the loads of
/// `copy_out_volatile`, 16 bytes (SSE2 is part of the x86_64 baseline; an
/// aarch64 `u128` access is one `ldp`/`stp`).
#[cfg(target_arch = "x86_64")]
type Chunk = core::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Chunk = u128;
const CHUNK: usize = size_of::<Chunk>();

/// Writes `v` into the slot at `p`, 16 bytes at a time when the slot
/// allows.
///
/// # Safety
/// `p` must be a slot reserved by this producer in a live channel whose
/// layout passed `check_message::<T>()`.
#[inline(always)]
unsafe fn write_slot<T: Message>(p: *mut u8, v: &T) {
    let src = v.as_bytes().as_ptr();
    if wide::<T>(p as usize) {
        let mut i = 0;
        while i < size_of::<T>() {
            // SAFETY: `src + i` lies inside `v`, whose bytes are all
            // initialised (T: IntoBytes has no padding); `p + i` is inside
            // the reserved slot and 16-aligned (checked above). Volatile so
            // that it stays one 16-byte store: the compiler would otherwise
            // split a message it built from 8-byte parts into 8-byte stores,
            // and a producer whose stores wait for lines the consumer holds
            // runs out of store buffer entries sooner with more stores.
            unsafe { ptr::write_volatile(p.add(i).cast::<Chunk>(), src.add(i).cast::<Chunk>().read_unaligned()) };
            i += CHUNK;
        }
        return;
    }
    // SAFETY: the caller's contract: a reserved slot of the channel, at
    // least size_of::<T>() bytes; `v` is a live T without padding.
    unsafe { ptr::copy_nonoverlapping(src, p, size_of::<T>()) }
}

/// Whether slots at `at` (an address, or an address or-ed with a stride)
/// take messages of `T` 16 bytes at a time.
#[inline(always)]
fn wide<T>(at: usize) -> bool {
    size_of::<T>().is_multiple_of(CHUNK) && at.is_multiple_of(CHUNK)
}

/// Whether slots at `at` (an address, or an address or-ed with a stride)
/// give up messages of `T` a word (8 bytes) at a time. `fold` decides it
/// once for the slot region's start or-ed with the stride, which covers
/// every slot (the slot region starts on a page).
#[inline(always)]
fn worded<T>(at: usize) -> bool {
    size_of::<T>().is_multiple_of(8) && at.is_multiple_of(8)
}

/// Copies the message out of the slot at `p`.
///
/// One volatile read of the whole `T`, done a word (8 bytes) at a time
/// when the slot allows. Words, not the 16-byte chunks `write_slot` stores:
/// a receiver mostly uses a message's fields in general registers, and a
/// 16-byte load must then be split again (two more instructions per pair
/// of words). Measured with the `spsc` bench's consumers, which use every
/// word: 64-byte messages took 62.8 instructions per message in batches of
/// 32 with 16-byte loads and 54.0 with words; on two threads 0.96-1.00 of
/// rtrb with 16-byte loads and 1.00 with words (same session, builds
/// alternated). The copy into a local buffer that small batched messages
/// go through (`fold_copied`) keeps 16-byte loads, since there the bytes
/// are stored again as they are.
///
/// # Safety
/// `p` must be a slot of a live channel whose layout passed
/// `check_message::<T>()`.
#[inline]
unsafe fn read_slot<T: Message>(p: *mut u8) -> T {
    // SAFETY: forwarded.
    unsafe { read_slot_as::<T>(p, worded::<T>(p as usize)) }
}

/// `read_slot` with the width decided by the caller (`worded`).
///
/// # Safety
/// As `read_slot`; `worded` only if `worded::<T>(p)` holds.
#[inline(always)]
unsafe fn read_slot_as<T: Message>(p: *mut u8, worded: bool) -> T {
    if worded && size_of::<T>() > 8 {
        let mut out = MaybeUninit::<T>::uninit();
        let dst = out.as_mut_ptr().cast::<u8>();
        let mut i = 0;
        while i < size_of::<T>() {
            // SAFETY: `p + i` is inside the slot (i + 8 <= size_of::<T>(),
            // which fits the slot) and 8-aligned (checked above); any bytes
            // are a valid word. Volatile for the same reason as below, one
            // load per word. The destination is our own local, written
            // without alignment assumptions.
            unsafe { dst.add(i).cast::<u64>().write_unaligned(ptr::read_volatile(p.add(i).cast::<u64>())) };
            i += 8;
        }
        // SAFETY: every byte of `out` was written above, and any bytes are a
        // valid T (T: FromBytes).
        return unsafe { out.assume_init() };
    }
    // SAFETY: the slot is inside the channel, readable, aligned for T and at
    // least size_of::<T>() long (caller's contract and `check_message`), and
    // any bytes are a valid T. The read is volatile because a hostile
    // producer may write the slot concurrently: the compiler must read it
    // exactly once and never assume it unchanged; we never derive a
    // reference into the slot.
    unsafe { ptr::read_volatile(p.cast::<T>()) }
}

/// Iterator over copies of the messages of a [`RecvBatch`].
#[derive(Debug)]
pub struct RecvIter<'b, T> {
    cursor: SlotCursor,
    left: u32,
    _batch: PhantomData<&'b T>,
}

impl<T: Message> Iterator for RecvIter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (p, _) = self.cursor.take(1);
        // SAFETY: the cursor yields the batch's slots, which the borrow of the
        // batch keeps valid and unreleased.
        Some(unsafe { read_slot(p) })
    }

    /// A block's run at a time, so `for_each` and friends loop over
    /// contiguous slots; small messages are first copied out in bulk (see
    /// `fold_copied`).
    #[inline]
    fn fold<B, F: FnMut(B, T) -> B>(mut self, init: B, mut f: F) -> B {
        if size_of::<T>() <= COPIED_MAX && align_of::<T>() <= 8 && self.cursor.stride == size_of::<T>() {
            return self.fold_copied(init, f);
        }
        let mut acc = init;
        let stride = self.cursor.stride;
        let worded = worded::<T>(self.cursor.first as usize | stride);
        while self.left > 0 {
            let (p, n) = self.cursor.take(self.left as usize);
            self.left -= n as u32;
            for k in 0..n {
                // SAFETY: as in `next`: slot k < n of a contiguous run of
                // the batch's slots; `worded` holds for every slot.
                acc = f(acc, unsafe { read_slot_as(p.add(k * stride), worded) });
            }
        }
        acc
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl<T: Message> ExactSizeIterator for RecvIter<'_, T> {}

/// Messages of at most this many bytes are copied out of their slots in
/// bulk before `fold` hands them on (`RecvIter::fold_copied`).
const COPIED_MAX: usize = 16;

/// Bytes of messages `fold_copied` copies out per pass.
const COPIED_BYTES: usize = 256;

impl<T: Message> RecvIter<'_, T> {
    /// `fold` for small messages packed slot to slot (stride = size, at
    /// most 8-aligned): copies up to `COPIED_BYTES` of messages at a time
    /// out of the slots, 16 bytes per volatile load, into a local buffer,
    /// then folds over the buffer with plain loads. The caller's loop then
    /// runs over ordinary memory, which the compiler may vectorise; over
    /// the slots every message would be one volatile load (a hostile
    /// producer may write them at any time: see `read_slot`).
    #[inline]
    fn fold_copied<B, F: FnMut(B, T) -> B>(self, init: B, mut f: F) -> B {
        let size = size_of::<T>();
        let c = &self.cursor;
        let stride = c.stride;
        // 16 spare bytes: the last chunk of a copy may reach 8 bytes past it.
        let mut buf = MaybeUninit::<[u64; COPIED_BYTES / 8 + 2]>::uninit();
        let dst = buf.as_mut_ptr().cast::<u8>();
        let cap = COPIED_BYTES / size;
        let mut acc = init;
        // The cursor's walk, in locals: through `SlotCursor::take` it ran
        // slower on 8-byte batches (`benches/spsc`).
        let (mut p, mut run, mut left) = (c.next, c.run, self.left as usize);
        while left > 0 {
            let mut k = 0;
            while left > 0 && k < cap {
                let n = run.min(left).min(cap - k);
                // SAFETY: the n slots from `p` are contiguous message slots
                // of one block of the batch (stride = size), followed within
                // the block by at least one more slot of at least 8 bytes
                // (the next message's or the stamp's), which covers the
                // copy's overshoot; `dst + k * size` has room for
                // `n * size + 8` bytes (k + n <= cap, 16 spare bytes).
                unsafe { copy_out_volatile(p, dst.add(k * size), n * size) };
                k += n;
                left -= n;
                run -= n;
                // SAFETY: at most the block's stamp slot.
                p = unsafe { p.add(n * stride) };
                if run == 0 {
                    // SAFETY: past the stamp slot: at most the end of the
                    // slot region (the slot count is a multiple of the
                    // block), which wraps to its start.
                    p = unsafe { p.add(stride) };
                    if p == c.end {
                        p = c.first;
                    }
                    run = c.bm;
                }
            }
            let src = dst.cast_const().cast::<T>();
            for i in 0..k {
                // SAFETY: the first `k * size` bytes of `buf` were written
                // above; `buf` is 8-aligned, as is every `T` in it (align
                // <= 8, size a multiple of the alignment); any bytes are a
                // valid T (T: FromBytes).
                acc = f(acc, unsafe { src.add(i).read() });
            }
        }
        acc
    }
}

/// Copies `len` bytes (a multiple of 8) from slot memory at `src` (8-aligned)
/// to `dst`, 16 bytes per volatile load where `src` allows; the last load
/// may read up to 8 bytes past `src + len` and the last store write as
/// many past `dst + len`.
///
/// # Safety
/// `src .. src + len + 8` must lie inside the channel's slot region;
/// `dst .. dst + len + 8` must be writable memory of the caller's.
#[inline(always)]
unsafe fn copy_out_volatile(src: *const u8, dst: *mut u8, len: usize) {
    let (mut s, mut d) = (src, dst);
    // SAFETY: `src + len` is inside or at the end of the range above.
    let end = unsafe { src.add(len) };
    if len > 0 && !(s as usize).is_multiple_of(CHUNK) {
        // SAFETY: `s` is 8-aligned and 8 bytes of the range; `d` is
        // writable (unaligned store).
        unsafe {
            d.cast::<u64>().write_unaligned(ptr::read_volatile(s.cast::<u64>()));
            s = s.add(8);
            d = d.add(8);
        }
    }
    while s < end {
        // SAFETY: `s` is 16-aligned, and `s + 16 <= src + len + 8` lies in
        // the slot region (caller); `d + 16` in the destination. Volatile
        // for the reason `read_slot` gives.
        unsafe {
            d.cast::<Chunk>().write_unaligned(ptr::read_volatile(s.cast::<Chunk>()));
            s = s.add(CHUNK);
            d = d.add(CHUNK);
        }
    }
}

/// Two 8-byte values as one 16-byte chunk, `a` first in memory.
#[inline(always)]
fn chunk_of(a: u64, b: u64) -> Chunk {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86_64 baseline.
    return unsafe { core::arch::x86_64::_mm_set_epi64x(b as i64, a as i64) };
    #[cfg(not(target_arch = "x86_64"))]
    return u128::from(a) | (u128::from(b) << 64);
}

/// Messages made available by [`Receiver::recv_batch`].
#[derive(Debug)]
pub struct RecvBatch<'a, T> {
    receiver: &'a mut Receiver<T>,
    span: Span,
}

impl<T: Message> RecvBatch<'_, T> {
    /// Number of messages in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.span.len as usize
    }

    /// Whether the batch is empty (only when `max` was 0).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.span.len == 0
    }

    /// A copy of the `i`-th message, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len() {
            return None;
        }
        Some(self.receiver.read(self.receiver.core.geometry().advance(self.span.start, i as u64)))
    }

    /// Copies of the messages in order.
    #[inline]
    pub fn iter(&self) -> RecvIter<'_, T> {
        RecvIter {
            cursor: SlotCursor::new(self.receiver.core.view(), self.span.start),
            left: self.span.len,
            _batch: PhantomData,
        }
    }

    /// The `i`-th message where it lies in its slot, or `None` past the
    /// end: for reading parts of it straight to where they are going
    /// ([`Slot::read`], [`Slot::copy_to`]) instead of copying the whole
    /// message out first.
    #[inline]
    pub fn slot(&self, i: usize) -> Option<Slot<'_, T>> {
        if i >= self.len() {
            return None;
        }
        let index = self.receiver.core.geometry().advance(self.span.start, i as u64);
        Some(Slot { p: self.receiver.core.view().slot(index), _batch: PhantomData })
    }

    /// Consumes all messages of the batch.
    #[inline]
    pub fn release(self) {
        let n = self.span.len;
        self.receiver.core.release(n);
    }

    /// Consumes the first `n` messages (clamped to the batch length).
    #[inline]
    pub fn release_first(self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.receiver.core.release(n);
    }
}

/// One message of a [`RecvBatch`] where it lies in its slot.
///
/// The producer may still write the slot (a hostile one may change it at
/// any time): every read is a volatile copy out of it, never a reference
/// into it, and two reads of the same bytes may differ. A reader takes each
/// value once (a length, then the bytes it says) and keeps what it read.
#[derive(Debug)]
pub struct Slot<'b, T> {
    p: *mut u8,
    _batch: PhantomData<&'b T>,
}

impl<T: Message> Slot<'_, T> {
    /// A copy of the `F` at byte `at` of the message (one volatile read), or
    /// `None` if it would reach past the message. Any bytes are a valid `F`.
    #[inline]
    pub fn read<F: FromBytes + IntoBytes>(&self, at: usize) -> Option<F> {
        let mut v = F::new_zeroed();
        self.copy_to(at, v.as_mut_bytes()).then_some(v)
    }

    /// Copies `dst.len()` bytes of the message from byte `at` into `dst`,
    /// straight from the slot (volatile loads, a word at a time where the
    /// slot is aligned); `false` (and nothing copied) if the range reaches
    /// past the message.
    #[inline]
    pub fn copy_to(&self, at: usize, dst: &mut [u8]) -> bool {
        let Some(end) = at.checked_add(dst.len()) else { return false };
        if end > size_of::<T>() {
            return false;
        }
        // SAFETY: `at..end` lies inside the message (checked), in the slot
        // the batch keeps unreleased. Every load is volatile and copies
        // out; nothing refers into the slot after this returns.
        unsafe { copy_out(self.p.add(at), dst) };
        true
    }
}

impl<'b, T: Message> Slot<'b, T> {
    /// Bytes `at..at + len` of the message (clamped to the message), to
    /// be copied where they are going with [`SlotBytes::copy_to`]: a
    /// variable-length field whose length the reader has already read.
    #[inline]
    pub fn bytes(&self, at: usize, len: usize) -> SlotBytes<'b, T> {
        let at = at.min(size_of::<T>());
        let len = len.min(size_of::<T>() - at);
        // SAFETY: at <= size_of::<T>(): inside the slot or one past the
        // message's end, within the slot region.
        SlotBytes { p: unsafe { self.p.add(at) }, len, _batch: PhantomData }
    }
}

/// A run of bytes of a message in its slot ([`Slot::bytes`]).
#[derive(Debug)]
pub struct SlotBytes<'b, T> {
    p: *mut u8,
    len: usize,
    _batch: PhantomData<&'b T>,
}

impl<T: Message> SlotBytes<'_, T> {
    /// Bytes in the run.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the run is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the run (at most `dst.len()` bytes of it) into the front of
    /// `dst`, straight from the slot; returns the bytes copied.
    #[inline]
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = self.len.min(dst.len());
        // SAFETY: `p..p + len` lies inside the message (`Slot::bytes`
        // clamped it), in a slot the batch keeps unreleased.
        unsafe { copy_out(self.p, &mut dst[..n]) };
        n
    }
}

/// Copies `dst.len()` bytes from shared memory at `src` into `dst`: byte
/// loads up to the first 8-byte boundary of `src`, aligned 8-byte loads,
/// byte loads for the rest; all volatile.
///
/// # Safety
/// `src..src + dst.len()` must be readable memory of a live channel slot.
#[inline]
unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let head = (src as usize).wrapping_neg() & 7;
    let mut i = 0;
    while i < n.min(head) {
        // SAFETY: i < n: inside the caller's range.
        dst[i] = unsafe { ptr::read_volatile(src.add(i)) };
        i += 1;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n: inside the caller's range, and `src + i` is
        // 8-aligned (past `head`).
        let w = unsafe { ptr::read_volatile(src.add(i).cast::<u64>()) };
        dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
        i += 8;
    }
    while i < n {
        // SAFETY: i < n: inside the caller's range.
        dst[i] = unsafe { ptr::read_volatile(src.add(i)) };
        i += 1;
    }
}

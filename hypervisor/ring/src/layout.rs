//! Where a channel's pieces live in its memory, and who may write them.
//!
//! The host tool calls [`ChannelLayout::new`] to size the channel memory and
//! to build stage-2 permissions from [`ChannelLayout::regions`]; the guest
//! runtime passes the same layout to [`crate::Sender::new`] /
//! [`crate::Receiver::new`]. The layout is pure arithmetic: it never touches
//! memory, so it is `const` and usable by both.
//!
//! ```text
//! offset 0          page_size          2*page_size                total_size
//! +-----------------+------------------+------------------------------+
//! | producer header | consumer header  | slot 0 | slot 1 | ... | pad  |
//! | P: RW   C: RO   | P: RO   C: RW    | P: RW   C: RO                |
//! +-----------------+------------------+------------------------------+
//!
//! slots (stride = round_up(slot_size, 8) bytes each) form blocks of
//! K = block_slots() slots; the last slot of every block holds the block's
//! publication stamp instead of a message. 8-byte messages: K = 8, one
//! 64-byte line per block:
//! +-------+-------+-------+-------+-------+-------+-------+-------------+
//! | msg 0 | msg 1 | msg 2 | msg 3 | msg 4 | msg 5 | msg 6 | stamp (u64) |
//! +-------+-------+-------+-------+-------+-------+-------+-------------+
//! ```
//!
//! Every region starts on a page boundary and is a whole number of pages, so
//! a stage-2 mapping can give it its own permissions. A third partition gets
//! no mapping at all. The stamp (see `protocol`) says how far the block is
//! published. For messages of up to 32 bytes a block is one 64-byte line, so
//! a message and its stamp share a line and the consumer learns "published"
//! and reads the data in one line transfer; larger messages use blocks of 32
//! slots, so the stamp costs 1/32 of the slots. The stamp is producer-written
//! like the rest of the slot array.

use crate::Message;

/// The stage-2 granule the default layout is built for.
pub const PAGE_SIZE: usize = 4096;

/// The largest slot array a channel may have (1 GiB): keeps every offset and
/// index product far from overflow on both 32- and 64-bit hosts.
pub const MAX_SLOTS_BYTES: usize = 1 << 30;

/// Bytes of the publication stamp at the start of every block's last slot.
pub const STAMP_SIZE: usize = 8;

/// The coherence unit the block size is chosen for.
pub const LINE: usize = 64;

/// Slots per block for messages larger than half a line: one slot in 32
/// carries the stamp.
pub const LARGE_BLOCK: usize = 32;

const _: () = assert!(LARGE_BLOCK.is_power_of_two() && LINE / STAMP_SIZE <= LARGE_BLOCK);

/// Blocks per ring of a [`Tuning::Throughput`] channel (when the ring is
/// large enough for its blocks to be larger than [`Tuning::Latency`]'s).
pub const THROUGHPUT_BLOCKS: usize = 4;

/// What a channel's layout is tuned for: where its publication stamps go.
///
/// Both carry any message size and give the same guarantees; they differ
/// in how many cache lines a message costs to move, and the manifest picks
/// one per channel (`tuning = "throughput"`, default latency).
///
/// - [`Latency`](Tuning::Latency): a stamp in every 64-byte line of small
///   messages (32-slot blocks above 32 bytes). A message and the stamp that
///   publishes it travel in one line transfer, so a request/reply round
///   trip costs one transfer per hop, the least any pair of queues can
///   take; but 8-byte messages fill 7 of every 8 slots of a line, and every
///   line of a batch is written twice by the producer (messages, then
///   stamp).
/// - [`Throughput`](Tuning::Throughput): one stamp per quarter of the
///   ring, in its own slot. Messages fill whole lines and a batch's lines
///   are written once, but a reader learns of a message from a line
///   other than the message's: two transfers per hop, as for an index-based
///   queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Tuning {
    /// A stamp per line: one line transfer per message (request/reply).
    #[default]
    Latency,
    /// A stamp per quarter ring: dense lines (streams, bulk transfer).
    Throughput,
}

impl Tuning {
    /// Every tuning, in code order.
    pub const ALL: [Tuning; 2] = [Tuning::Latency, Tuning::Throughput];

    /// The code the system table and a partition's channel directory
    /// carry.
    pub const fn code(self) -> u32 {
        match self {
            Tuning::Latency => 0,
            Tuning::Throughput => 1,
        }
    }

    /// The tuning of a code, or `None` for a code no tuning has.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Tuning::Latency),
            1 => Some(Tuning::Throughput),
            _ => None,
        }
    }

    /// The manifest's name for it.
    pub const fn name(self) -> &'static str {
        match self {
            Tuning::Latency => "latency",
            Tuning::Throughput => "throughput",
        }
    }

    /// The tuning of a manifest name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl core::fmt::Display for Tuning {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated channel geometry. Construct with [`ChannelLayout::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelLayout {
    slot_size: usize,
    slot_stride: usize,
    slot_count: usize,
    block: usize,
    tuning: Tuning,
    page_size: usize,
}

/// Which part of the channel a [`Region`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Producer index, producer epoch, geometry, consumer-epoch ack.
    ProducerHeader,
    /// Consumer index, consumer epoch, producer-epoch ack.
    ConsumerHeader,
    /// The message slots.
    Slots,
}

/// Stage-2 access one side gets to a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Mapped readable, not writable, never executable.
    ReadOnly,
    /// Mapped readable and writable, never executable.
    ReadWrite,
}

/// One page-aligned part of the channel memory with its permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// What lives here.
    pub kind: RegionKind,
    /// Byte offset from the channel base; a multiple of the page size.
    pub offset: usize,
    /// Size in bytes; a non-zero multiple of the page size.
    pub size: usize,
    /// The producer partition's access.
    pub producer: Access,
    /// The consumer partition's access.
    pub consumer: Access,
}

/// Why a geometry or a message type was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The slot size is zero.
    ZeroSlotSize,
    /// The slot count is zero or not a power of two (indices are masked).
    SlotCountNotPowerOfTwo,
    /// One slot: a block needs a message slot and a stamp slot.
    TooFewSlots,
    /// The slot array would exceed [`MAX_SLOTS_BYTES`].
    TooLarge,
    /// The page size is not a power of two of at least [`PAGE_SIZE`].
    BadPageSize,
    /// The message type is larger than the slot.
    MessageTooLarge,
    /// The slot stride is not a multiple of the message type's alignment
    /// (types aligned to more than 8 bytes need a slot size that is a
    /// multiple of their alignment).
    MessageMisaligned,
    /// The channel base address is not aligned to the layout's page size.
    BaseMisaligned,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LayoutError::ZeroSlotSize => "slot size is zero",
            LayoutError::SlotCountNotPowerOfTwo => "slot count is not a non-zero power of two",
            LayoutError::TooFewSlots => "a channel needs at least 2 slots (one carries the stamp)",
            LayoutError::TooLarge => "slot array exceeds 1 GiB",
            LayoutError::BadPageSize => "page size is not a power of two >= 4096",
            LayoutError::MessageTooLarge => "message type is larger than the slot",
            LayoutError::MessageMisaligned => "slot stride is not a multiple of the message alignment",
            LayoutError::BaseMisaligned => "channel base is not page-aligned",
        })
    }
}

const fn round_up(x: usize, to: usize) -> usize {
    // `to` is a power of two and x <= MAX_SLOTS_BYTES, so this cannot overflow.
    (x + to - 1) & !(to - 1)
}

/// Slots per block for slots of `stride` bytes: for [`Tuning::Latency`],
/// the most that fit one 64-byte line (a power of two, at least 2) for
/// strides up to half a line, [`LARGE_BLOCK`] above; for
/// [`Tuning::Throughput`], a quarter of the ring if that is more. Never
/// more than the ring.
const fn block_slots(stride: usize, slot_count: usize, tuning: Tuning) -> usize {
    let latency = latency_block(stride);
    let k = match tuning {
        Tuning::Throughput if slot_count / THROUGHPUT_BLOCKS > latency => slot_count / THROUGHPUT_BLOCKS,
        _ => latency,
    };
    if k < slot_count {
        k
    } else {
        slot_count
    }
}

/// [`Tuning::Latency`]'s block for slots of `stride` bytes, before the
/// ring's size caps it.
const fn latency_block(stride: usize) -> usize {
    if stride * 2 <= LINE {
        let fit = LINE / stride; // >= 2
        // Largest power of two <= fit.
        1 << (usize::BITS - 1 - fit.leading_zeros())
    } else {
        LARGE_BLOCK
    }
}

impl ChannelLayout {
    /// Layout for `slot_count` slots that each carry a message of up to
    /// `slot_size` bytes, with 4 KiB pages. Each slot takes
    /// [`slot_stride`](Self::slot_stride) bytes; one slot of every block
    /// holds the block's stamp, so the ring carries
    /// [`capacity`](Self::capacity) messages at once.
    pub const fn new(slot_size: usize, slot_count: usize) -> Result<Self, LayoutError> {
        Self::with_page_size(slot_size, slot_count, PAGE_SIZE)
    }

    /// Layout with an explicit stage-2 granule (4, 16 or 64 KiB).
    pub const fn with_page_size(
        slot_size: usize,
        slot_count: usize,
        page_size: usize,
    ) -> Result<Self, LayoutError> {
        if !page_size.is_power_of_two() || page_size < PAGE_SIZE {
            return Err(LayoutError::BadPageSize);
        }
        if slot_size == 0 {
            return Err(LayoutError::ZeroSlotSize);
        }
        if !slot_count.is_power_of_two() {
            return Err(LayoutError::SlotCountNotPowerOfTwo);
        }
        if slot_count < 2 {
            return Err(LayoutError::TooFewSlots);
        }
        if slot_size > MAX_SLOTS_BYTES {
            return Err(LayoutError::TooLarge);
        }
        let slot_stride = round_up(slot_size, STAMP_SIZE);
        match slot_stride.checked_mul(slot_count) {
            Some(bytes) if bytes <= MAX_SLOTS_BYTES => {}
            _ => return Err(LayoutError::TooLarge),
        }
        let tuning = Tuning::Latency;
        let block = block_slots(slot_stride, slot_count, tuning);
        Ok(Self { slot_size, slot_stride, slot_count, block, tuning, page_size })
    }

    /// The same geometry tuned for `tuning`: the same slots and memory,
    /// with the blocks (and so the stamps, and the capacity) `tuning`
    /// places.
    #[must_use]
    pub const fn tuned(self, tuning: Tuning) -> Self {
        let block = block_slots(self.slot_stride, self.slot_count, tuning);
        Self { block, tuning, ..self }
    }

    /// What the layout is tuned for.
    pub const fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// Layout for `slot_count` slots that each hold exactly one `T`.
    pub const fn for_message<T: Message>(slot_count: usize) -> Result<Self, LayoutError> {
        Self::new(core::mem::size_of::<T>(), slot_count)
    }

    /// The largest message a slot carries, in bytes.
    pub const fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Bytes from one slot to the next: the message rounded up to 8 bytes.
    pub const fn slot_stride(&self) -> usize {
        self.slot_stride
    }

    /// Number of slots, stamp slots included; a power of two, at least 2.
    pub const fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Slots per block (a power of two, at least 2, dividing the slot
    /// count): `block_slots() - 1` messages, then the block's stamp.
    pub const fn block_slots(&self) -> usize {
        self.block
    }

    /// How many messages the ring holds at once: every slot but the stamp
    /// slots.
    pub const fn capacity(&self) -> usize {
        self.slot_count - self.slot_count / self.block
    }

    /// Whether free-running index `index` names a block's stamp slot (the
    /// last of its block), which never carries a message.
    #[inline]
    pub const fn is_stamp_slot(&self, index: u64) -> bool {
        index as usize & (self.block - 1) == self.block - 1
    }

    /// The page size every region is aligned to.
    pub const fn page_size(&self) -> usize {
        self.page_size
    }

    /// Page 0: written by the producer only.
    pub const fn producer_header(&self) -> Region {
        Region {
            kind: RegionKind::ProducerHeader,
            offset: 0,
            size: self.page_size,
            producer: Access::ReadWrite,
            consumer: Access::ReadOnly,
        }
    }

    /// Page 1: written by the consumer only.
    pub const fn consumer_header(&self) -> Region {
        Region {
            kind: RegionKind::ConsumerHeader,
            offset: self.page_size,
            size: self.page_size,
            producer: Access::ReadOnly,
            consumer: Access::ReadWrite,
        }
    }

    /// The slot pages: written by the producer only.
    pub const fn slots(&self) -> Region {
        Region {
            kind: RegionKind::Slots,
            offset: 2 * self.page_size,
            size: round_up(self.slot_stride * self.slot_count, self.page_size),
            producer: Access::ReadWrite,
            consumer: Access::ReadOnly,
        }
    }

    /// All regions in address order; together they tile `0..total_size()`.
    pub const fn regions(&self) -> [Region; 3] {
        [self.producer_header(), self.consumer_header(), self.slots()]
    }

    /// Total bytes of channel memory; a multiple of the page size.
    pub const fn total_size(&self) -> usize {
        let s = self.slots();
        s.offset + s.size
    }

    /// Byte offset of slot `index & (slot_count - 1)` from the channel base.
    #[inline]
    pub const fn slot_offset(&self, index: u64) -> usize {
        // Masking first keeps the product below MAX_SLOTS_BYTES.
        2 * self.page_size + (index as usize & (self.slot_count - 1)) * self.slot_stride
    }

    /// Byte offset of the stamp of the block that slot `index` belongs to:
    /// the first 8 bytes of the block's last slot, 8-aligned.
    #[inline]
    pub const fn stamp_offset(&self, index: u64) -> usize {
        self.slot_offset(index | (self.block as u64 - 1))
    }

    /// Checks that slots of this layout can hold a `T`.
    pub const fn check_message<T: Message>(&self) -> Result<(), LayoutError> {
        if core::mem::size_of::<T>() > self.slot_size {
            return Err(LayoutError::MessageTooLarge);
        }
        let align = core::mem::align_of::<T>();
        if !self.slot_stride.is_multiple_of(align) || !self.page_size.is_multiple_of(align) {
            return Err(LayoutError::MessageMisaligned);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_tile_the_channel_on_page_boundaries() {
        for &(size, count) in &[(1, 2), (8, 1024), (64, 64), (4096, 4), (24, 4), (24, 3), (100, 512), (8, 2)] {
            let Ok(l) = ChannelLayout::new(size, count) else { continue };
            let mut next = 0;
            for r in l.regions() {
                assert_eq!(r.offset, next);
                assert_eq!(r.offset % PAGE_SIZE, 0);
                assert!(r.size > 0 && r.size % PAGE_SIZE == 0);
                next = r.offset + r.size;
            }
            assert_eq!(next, l.total_size());
            assert!(l.slots().size >= size * count);
            assert!(l.slot_offset(u64::MAX) + l.slot_stride() <= l.total_size());
            assert!(l.stamp_offset(u64::MAX) + STAMP_SIZE <= l.total_size());
            assert_eq!(l.stamp_offset(7) % STAMP_SIZE, 0);
            let k = l.block_slots();
            assert!(k.is_power_of_two() && k >= 2 && count % k == 0);
            assert_eq!(l.capacity(), count - count / k);
            // The stamp is the block's last slot, and every slot of the
            // block names it.
            for i in 0..k as u64 {
                assert_eq!(l.stamp_offset(i), l.slot_offset(k as u64 - 1));
                assert_eq!(l.is_stamp_slot(i), i == k as u64 - 1);
            }
        }
    }

    #[test]
    fn example_geometry() {
        let l = ChannelLayout::new(64, 1024).unwrap();
        assert_eq!((l.slot_stride(), l.block_slots(), l.capacity()), (64, 32, 992));
        assert_eq!(l.total_size(), 2 * 4096 + 64 * 1024);
        assert_eq!(l.slot_offset(1025), 2 * 4096 + 64);
        assert_eq!(l.stamp_offset(1025), 2 * 4096 + 31 * 64);
        let l = ChannelLayout::new(8, 1024).unwrap();
        assert_eq!((l.slot_stride(), l.block_slots(), l.capacity()), (8, 8, 896));
        assert_eq!(l.total_size(), 4 * 4096);
        // One block per 64-byte line for small messages: stamp and message
        // share a line.
        assert_eq!(l.stamp_offset(9) - l.slot_offset(9), 48);
        assert_eq!(ChannelLayout::new(16, 64).unwrap().block_slots(), 4);
        assert_eq!(ChannelLayout::new(13, 4).unwrap().slot_stride(), 16);
        assert_eq!(ChannelLayout::new(24, 64).unwrap().block_slots(), 2);
        assert_eq!(ChannelLayout::new(32, 64).unwrap().block_slots(), 2);
        assert_eq!(ChannelLayout::new(40, 64).unwrap().block_slots(), 32);
        // Never more than the ring.
        assert_eq!(ChannelLayout::new(8, 4).unwrap().block_slots(), 4);
        assert_eq!(ChannelLayout::new(64, 2).unwrap().capacity(), 1);
        let l = ChannelLayout::new(24, 4).unwrap();
        assert_eq!(l.total_size(), 3 * 4096);
        let l = ChannelLayout::with_page_size(8, 8, 65536).unwrap();
        assert_eq!(l.consumer_header().offset, 65536);
        assert_eq!(l.total_size(), 3 * 65536);
    }

    #[test]
    fn throughput_tuning_makes_quarter_ring_blocks() {
        // Same memory, larger blocks, more capacity.
        for &(size, count, block) in &[(8, 1024, 256), (64, 1024, 256), (24, 16, 4), (4096, 64, 32), (8, 1 << 27, 1 << 25)] {
            let lat = ChannelLayout::new(size, count).unwrap();
            let thr = lat.tuned(Tuning::Throughput);
            assert_eq!(thr.tuning(), Tuning::Throughput);
            assert_eq!(thr.block_slots(), block, "{size} x {count}");
            assert_eq!(thr.capacity(), count - count / block);
            assert!(thr.capacity() >= lat.capacity());
            assert_eq!((thr.total_size(), thr.regions()), (lat.total_size(), lat.regions()));
            assert_eq!(thr.tuned(Tuning::Latency), lat);
            assert_eq!(thr.stamp_offset(0), thr.slot_offset(block as u64 - 1));
        }
        // Never smaller blocks than latency's, never more than the ring.
        for &(size, count) in &[(8, 8), (8, 32), (64, 64), (64, 2), (8, 2)] {
            let lat = ChannelLayout::new(size, count).unwrap();
            assert_eq!(lat.tuned(Tuning::Throughput).block_slots(), lat.block_slots(), "{size} x {count}");
        }
    }

    #[test]
    fn tuning_codes_and_names_round_trip() {
        for t in Tuning::ALL {
            assert_eq!(Tuning::from_code(t.code()), Some(t));
            assert_eq!(Tuning::from_name(t.name()), Some(t));
            assert_eq!(std::format!("{t}"), t.name());
        }
        assert_eq!(Tuning::default(), Tuning::Latency);
        assert_eq!(ChannelLayout::new(8, 8).unwrap().tuning(), Tuning::Latency);
        assert_eq!(Tuning::from_code(2), None);
        assert_eq!(Tuning::from_name("Throughput"), None);
    }

    #[test]
    fn direction_is_exclusive() {
        let l = ChannelLayout::new(8, 8).unwrap();
        for r in l.regions() {
            // Exactly one side may write each region.
            assert_ne!(r.producer == Access::ReadWrite, r.consumer == Access::ReadWrite);
        }
    }

    #[test]
    fn rejects_bad_geometry() {
        assert_eq!(ChannelLayout::new(0, 8), Err(LayoutError::ZeroSlotSize));
        assert_eq!(ChannelLayout::new(8, 0), Err(LayoutError::SlotCountNotPowerOfTwo));
        assert_eq!(ChannelLayout::new(8, 12), Err(LayoutError::SlotCountNotPowerOfTwo));
        assert_eq!(ChannelLayout::new(8, 1), Err(LayoutError::TooFewSlots));
        assert_eq!(ChannelLayout::new(1 << 20, 1 << 11), Err(LayoutError::TooLarge));
        assert_eq!(ChannelLayout::new(usize::MAX, 1 << 20), Err(LayoutError::TooLarge));
        assert_eq!(ChannelLayout::new(usize::MAX, 2), Err(LayoutError::TooLarge));
        assert_eq!(ChannelLayout::new((1 << 14) + 1, 1 << 16), Err(LayoutError::TooLarge));
        assert_eq!(ChannelLayout::with_page_size(8, 8, 2048), Err(LayoutError::BadPageSize));
        assert_eq!(ChannelLayout::with_page_size(8, 8, 12288), Err(LayoutError::BadPageSize));
        assert!(ChannelLayout::new(1 << 20, 1 << 10).is_ok());
    }

    #[test]
    fn message_fit() {
        let l = ChannelLayout::new(12, 8).unwrap();
        assert_eq!(l.check_message::<[u32; 3]>(), Ok(()));
        assert_eq!(l.check_message::<[u32; 4]>(), Err(LayoutError::MessageTooLarge));
        // Stride 16: an 8-byte-aligned message fits a 12-byte slot.
        assert_eq!(l.check_message::<u64>(), Ok(()));
        // Stride 24 is not a multiple of 16.
        assert_eq!(ChannelLayout::new(24, 8).unwrap().check_message::<u128>(), Err(LayoutError::MessageMisaligned));
        assert_eq!(ChannelLayout::new(16, 8).unwrap().check_message::<u128>(), Ok(()));
        assert_eq!(ChannelLayout::for_message::<[u64; 8]>(16).unwrap().slot_size(), 64);
    }
}

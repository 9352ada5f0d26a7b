//! The two header pages. Each is written by exactly one side (stage-2
//! enforced) and only read by the other, so every field is an atomic that the
//! owner stores and the peer loads: a hostile peer can put any value there,
//! but can never tear or race a field into undefined behaviour.
//!
//! These structs are the binary interface between partitions: `repr(C)`,
//! fixed offsets (checked by tests against the `*_OFFSET` constants), all
//! integers in the machine's native byte order (both partitions run on the
//! same machine).

use crate::sync::{AtomicU32, AtomicU64};

/// `"HRNG"`: stored in [`ProducerHeader`] so a consumer can tell a channel
/// from a page the producer never initialised.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HRNG");
/// Protocol version stored next to [`MAGIC`]. 3: one publication stamp per
/// block of slots, in the block's last slot; the consumer polls stamps, not
/// `head`. 4: the block size is the layout's [`Tuning`](crate::Tuning)'s,
/// and the producer header records it.
pub const VERSION: u32 = 4;

/// Bytes between the hot index and the cold fields of a header: two 64-byte
/// lines, so neither Intel's adjacent-line prefetch nor a 128-byte-line Arm
/// core puts them in one coherence unit.
pub const HOT_LINE: usize = 128;

/// Page 0 of a channel: written by the producer, read by the consumer.
///
/// `head`, written on every commit, has a 128-byte line to itself. A
/// single-message reader never reads it on the data path (it polls the
/// blocks' stamps); a batch reader of small messages reads it as a hint
/// before touching a slot line, like any SPSC ring's index; every consumer
/// reads it when it (re)synchronises.
/// The cold fields (epoch, acknowledgement, geometry) change only on
/// restarts, so the consumer keeps them cached and checking them costs no
/// coherence traffic.
/// The consumer's fields live on another page: the two sides never write the
/// same line.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct ProducerHeader {
    /// Free-running producer index: every message below `head` has been
    /// handed out and is being or has been published. Stored before the
    /// stamps of a commit, so it is never behind anything a consumer may
    /// have received: a (re)starting consumer starts here.
    pub(crate) head: AtomicU64,
    _hot: [u64; HOT_LINE / 8 - 1],
    /// Producer restart epoch; 0 means no producer ever attached.
    pub(crate) epoch: AtomicU64,
    /// The consumer epoch this producer has resynchronised with.
    pub(crate) cons_epoch_ack: AtomicU64,
    /// [`MAGIC`].
    pub(crate) magic: AtomicU32,
    /// [`VERSION`].
    pub(crate) version: AtomicU32,
    /// Slot size the producer was built for.
    pub(crate) slot_size: AtomicU32,
    /// Slot count the producer was built for.
    pub(crate) slot_count: AtomicU32,
    /// Slots per block of the producer's layout (its tuning).
    pub(crate) block_slots: AtomicU32,
}

/// Page 1 of a channel: written by the consumer, read by the producer.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct ConsumerHeader {
    /// Free-running consumer index: messages before `tail` are released.
    pub(crate) tail: AtomicU64,
    _hot: [u64; HOT_LINE / 8 - 1],
    /// Consumer restart epoch; 0 means no consumer ever attached.
    pub(crate) epoch: AtomicU64,
    /// The producer epoch this consumer has resynchronised with.
    pub(crate) prod_epoch_ack: AtomicU64,
    /// The ring index this consumer epoch started at (its `tail` at
    /// attach): messages published at or after it are this incarnation's
    /// to receive; earlier ones it dropped or a previous one took. Stored
    /// before `epoch`. Lets a request/reply client tell, after the
    /// server restarted, whether its pending request will be answered.
    pub(crate) epoch_start: AtomicU64,
}

/// Byte offset of the producer index in page 0.
pub const PRODUCER_HEAD_OFFSET: usize = 0;
/// Byte offset of the producer epoch in page 0.
pub const PRODUCER_EPOCH_OFFSET: usize = HOT_LINE;
/// Byte offset of the producer's consumer-epoch acknowledgement in page 0.
pub const PRODUCER_CONS_EPOCH_ACK_OFFSET: usize = HOT_LINE + 8;
/// Byte offset of the magic number (u32) in page 0.
pub const PRODUCER_MAGIC_OFFSET: usize = HOT_LINE + 16;
/// Byte offset of the version (u32) in page 0.
pub const PRODUCER_VERSION_OFFSET: usize = HOT_LINE + 20;
/// Byte offset of the slot size (u32) in page 0.
pub const PRODUCER_SLOT_SIZE_OFFSET: usize = HOT_LINE + 24;
/// Byte offset of the slot count (u32) in page 0.
pub const PRODUCER_SLOT_COUNT_OFFSET: usize = HOT_LINE + 28;
/// Byte offset of the block size (u32) in page 0.
pub const PRODUCER_BLOCK_SLOTS_OFFSET: usize = HOT_LINE + 32;
/// Byte offset of the consumer index in page 1.
pub const CONSUMER_TAIL_OFFSET: usize = 0;
/// Byte offset of the consumer epoch in page 1.
pub const CONSUMER_EPOCH_OFFSET: usize = HOT_LINE;
/// Byte offset of the consumer's producer-epoch acknowledgement in page 1.
pub const CONSUMER_PROD_EPOCH_ACK_OFFSET: usize = HOT_LINE + 8;
/// Byte offset of the index the consumer's epoch started at in page 1.
pub const CONSUMER_EPOCH_START_OFFSET: usize = HOT_LINE + 16;

impl ProducerHeader {
    /// An all-zero header, as freshly mapped memory reads (for host tests and
    /// loom models; in a partition the header is overlaid on the page).
    pub fn new() -> Self {
        Self {
            head: AtomicU64::new(0),
            _hot: [0; HOT_LINE / 8 - 1],
            epoch: AtomicU64::new(0),
            cons_epoch_ack: AtomicU64::new(0),
            magic: AtomicU32::new(0),
            version: AtomicU32::new(0),
            slot_size: AtomicU32::new(0),
            slot_count: AtomicU32::new(0),
            block_slots: AtomicU32::new(0),
        }
    }
}

impl Default for ProducerHeader {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsumerHeader {
    /// An all-zero header.
    pub fn new() -> Self {
        Self {
            tail: AtomicU64::new(0),
            _hot: [0; HOT_LINE / 8 - 1],
            epoch: AtomicU64::new(0),
            prod_epoch_ack: AtomicU64::new(0),
            epoch_start: AtomicU64::new(0),
        }
    }
}

impl Default for ConsumerHeader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn abi_offsets() {
        assert_eq!(offset_of!(ProducerHeader, head), PRODUCER_HEAD_OFFSET);
        assert_eq!(offset_of!(ProducerHeader, epoch), PRODUCER_EPOCH_OFFSET);
        assert_eq!(offset_of!(ProducerHeader, cons_epoch_ack), PRODUCER_CONS_EPOCH_ACK_OFFSET);
        assert_eq!(offset_of!(ProducerHeader, magic), PRODUCER_MAGIC_OFFSET);
        assert_eq!(offset_of!(ProducerHeader, version), PRODUCER_VERSION_OFFSET);
        assert_eq!(offset_of!(ProducerHeader, slot_size), PRODUCER_SLOT_SIZE_OFFSET);
        assert_eq!(offset_of!(ProducerHeader, slot_count), PRODUCER_SLOT_COUNT_OFFSET);
        assert_eq!(offset_of!(ProducerHeader, block_slots), PRODUCER_BLOCK_SLOTS_OFFSET);
        assert_eq!(offset_of!(ConsumerHeader, tail), CONSUMER_TAIL_OFFSET);
        assert_eq!(offset_of!(ConsumerHeader, epoch), CONSUMER_EPOCH_OFFSET);
        assert_eq!(offset_of!(ConsumerHeader, prod_epoch_ack), CONSUMER_PROD_EPOCH_ACK_OFFSET);
        assert_eq!(offset_of!(ConsumerHeader, epoch_start), CONSUMER_EPOCH_START_OFFSET);
        // Both fit well inside the smallest page.
        assert!(size_of::<ProducerHeader>() <= crate::PAGE_SIZE);
        assert!(size_of::<ConsumerHeader>() <= crate::PAGE_SIZE);
    }
}

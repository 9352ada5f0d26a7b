//! Shared-memory single-producer single-consumer ring channels between
//! RustHallows partitions.
//!
//! The hypervisor maps a channel's memory into exactly two partitions and
//! enforces its direction with stage-2 permissions (see [`ChannelLayout`]);
//! it never touches the data path. This crate is the data path: the
//! partition-side protocol that moves fixed-size [`Message`]s through that
//! memory, and the function that tells the host tool how to lay the memory
//! out.
//!
//! It owns the protocol and nothing else: it never allocates, never blocks,
//! never loops on a value the peer controls, and never trusts the peer. Every
//! value read from the peer's pages is validated before use; a hostile peer
//! can corrupt or drop the messages it sends, but it cannot make this side
//! read or write outside the channel, panic, or hang. Misbehaviour is reported
//! as [`RingError::Corrupt`]; a restarted peer as [`RingError::PeerRestarted`].
//!
//! Structure:
//! - [`layout`]: page-aligned memory layout and stage-2 access table (pure).
//! - [`header`]: the two header pages, each written by exactly one side.
//! - [`protocol`]: the index/epoch protocol, safe and generic over a
//!   [`ChannelView`] so that it runs under loom and on heap memory.
//! - `shm` (not under loom): the only module with `unsafe`; binds the protocol
//!   to raw shared memory as the typed [`Sender`] / [`Receiver`].
//!
//! The full design, with the memory-ordering argument and the hostile-peer
//! guarantees, is in `docs/channels.md`.
//!
//! ```
//! use core::ptr::NonNull;
//! use hallows_ring::{ChannelLayout, Receiver, RingError, Sender};
//!
//! let layout = ChannelLayout::for_message::<[u64; 2]>(64).unwrap();
//! // In a partition the memory is the channel's mapping; here, the heap.
//! let mem = std::alloc::Layout::from_size_align(layout.total_size(), layout.page_size()).unwrap();
//! // SAFETY: non-zero size; freed at the end, after both endpoints.
//! let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(mem) }).unwrap();
//! // SAFETY: `base` is page-aligned, `total_size` bytes, outlives both
//! // endpoints, and there is one sender and one receiver.
//! let mut tx = unsafe { Sender::<[u64; 2]>::new(base, layout) }.unwrap();
//! let mut rx = unsafe { Receiver::<[u64; 2]>::new(base, layout) }.unwrap();
//!
//! tx.try_send(&[1, 2]).unwrap();
//! let mut batch = tx.reserve(8).unwrap();
//! batch.fill_with(|i| [10 + i as u64, 0]);
//! batch.commit();
//!
//! assert_eq!(rx.try_recv(), Ok([1, 2]));
//! let batch = rx.recv_batch(32).unwrap();
//! assert_eq!(batch.iter().map(|m| m[0]).collect::<Vec<_>>(), (10..18).collect::<Vec<_>>());
//! batch.release();
//! assert_eq!(rx.try_recv(), Err(RingError::Empty));
//! # drop((tx, rx));
//! # unsafe { std::alloc::dealloc(base.as_ptr(), mem) };
//! ```
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod header;
pub mod layout;
pub mod protocol;
#[cfg(not(loom))]
mod shm;
mod sync;

pub use header::{ConsumerHeader, ProducerHeader, MAGIC, VERSION};
pub use layout::{Access, ChannelLayout, LayoutError, Region, RegionKind, Tuning, PAGE_SIZE};
pub use protocol::{ChannelView, ConsumerCore, ProducerCore, Span};
#[cfg(not(loom))]
pub use shm::{RecvBatch, RecvIter, Receiver, SendBatch, Sender, Slot, SlotBytes};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A type that can travel through a channel.
///
/// `FromBytes` because the receiver reads whatever the (untrusted) sender
/// left in the slot and every bit pattern must be a valid value; `IntoBytes`
/// because the sender copies the value's bytes into shared memory and a type
/// with padding would leak uninitialised bytes to the other partition.
pub trait Message: FromBytes + IntoBytes + KnownLayout + Immutable + Sized {}

impl<T: FromBytes + IntoBytes + KnownLayout + Immutable + Sized> Message for T {}

/// Why a channel operation did not complete.
///
/// None of these is fatal to the endpoint: `Full` and `Empty` are the normal
/// back-pressure signals, `PeerRestarted` has already resynchronised the
/// endpoint (retry the operation), and `Corrupt` leaves the endpoint's own
/// state untouched so the caller can decide whether to keep polling (the
/// peer may be restarted by the hypervisor) or to give up on the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// No free slot: the consumer has not released enough messages, or has
    /// not yet acknowledged this producer's epoch.
    Full,
    /// No message available.
    Empty,
    /// The peer attached with a new epoch. Messages in flight at that moment
    /// were dropped and both sides now agree on an empty ring.
    PeerRestarted,
    /// The peer wrote a value to its header that the protocol cannot have
    /// produced (an index outside the ring, an index moving backwards, an
    /// acknowledgement for an epoch that never existed, a wrong geometry).
    Corrupt,
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RingError::Full => "channel full",
            RingError::Empty => "channel empty",
            RingError::PeerRestarted => "channel peer restarted; in-flight messages dropped",
            RingError::Corrupt => "channel peer wrote an invalid header value",
        })
    }
}

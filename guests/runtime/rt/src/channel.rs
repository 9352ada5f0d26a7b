//! Channels: typed endpoints looked up by name in the boot information.
//!
//! The hypervisor maps each channel's memory at the guest-physical address
//! the boot information gives, with the producer/consumer permissions of
//! `hallows_ring::ChannelLayout`; this module turns a directory entry into
//! a `Sender<T>` or `Receiver<T>` and adds the doorbell for channels whose
//! manifest entry says `notify = "doorbell"`.

use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use hallows_abi::{call, role, ChannelInfo};
pub use hallows_ring::{ChannelLayout, LayoutError, Message, Receiver, RingError, Sender};

use crate::{arch, Boot};

/// Why a channel could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// No channel of that name connects this partition.
    NotFound,
    /// This partition is the other end (a receiver asked for a sending end, or the reverse).
    WrongRole,
    /// The endpoint was already opened: each end exists once.
    AlreadyOpen,
    /// The message type does not fit the channel's slots.
    Layout(LayoutError),
}

/// An open channel end: the ring endpoint plus its doorbell.
#[derive(Debug)]
pub struct Endpoint<E> {
    endpoint: E,
    index: u32,
    doorbell: bool,
}

impl<E> Deref for Endpoint<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.endpoint
    }
}

impl<E> DerefMut for Endpoint<E> {
    fn deref_mut(&mut self) -> &mut E {
        &mut self.endpoint
    }
}

/// Doorbells the hypervisor delivered, one bit per directory entry; set by
/// the interrupt handler, consumed by [`Endpoint::wait`].
static RUNG: AtomicU32 = AtomicU32::new(0);
static OPEN: AtomicU32 = AtomicU32::new(0);

impl<E> Endpoint<E> {
    /// Whether the channel has a doorbell (`notify = "doorbell"`).
    pub fn has_doorbell(&self) -> bool {
        self.doorbell
    }

    /// Rings the peer's doorbell: it gets a virtual interrupt. Costs one
    /// trap; ring once per batch, not per message. `Err` with the
    /// hypervisor's error code on a poll-mode channel.
    pub fn notify(&self) -> Result<(), i64> {
        let (r, _) = arch::hypercall(call::NOTIFY, [self.index as u64, 0, 0, 0, 0]);
        if (r as i64) < 0 {
            Err(r as i64)
        } else {
            Ok(())
        }
    }

    /// Sleeps (`wfi`) until the peer rings this channel's doorbell, and
    /// consumes the ring. Returns at once if it rang since the last wait.
    pub fn wait(&self) {
        let bit = 1 << self.index;
        while RUNG.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            arch::wait_for_interrupt();
        }
    }
}

/// Records a delivered doorbell (called from the interrupt handler).
pub(crate) fn doorbell_rang(index: u32) {
    if index < 32 {
        RUNG.fetch_or(1 << index, Ordering::AcqRel);
    }
}

fn find(boot: &Boot, name: &str, want: u32) -> Result<(u32, &'static ChannelInfo), ChannelError> {
    let info = boot.info;
    let n = (info.channel_count as usize).min(info.channels.len());
    let (i, c) = info.channels[..n]
        .iter()
        .enumerate()
        .find(|(_, c)| crate::padded(&c.name) == name)
        .ok_or(ChannelError::NotFound)?;
    if c.role != want {
        return Err(ChannelError::WrongRole);
    }
    let bit = 1 << i;
    if OPEN.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
        return Err(ChannelError::AlreadyOpen);
    }
    Ok((i as u32, c))
}

fn layout(c: &ChannelInfo) -> Result<ChannelLayout, ChannelError> {
    ChannelLayout::new(c.slot_size as usize, c.slot_count as usize).map_err(ChannelError::Layout)
}

/// Opens the sending end of channel `name`. On a doorbell channel this
/// rings the receiver once, so that it acknowledges the new sender.
pub fn sender<T: Message>(boot: &Boot, name: &str) -> Result<Endpoint<Sender<T>>, ChannelError> {
    let (index, c) = find(boot, name, role::PRODUCER)?;
    let base = NonNull::new(c.ipa as *mut u8).ok_or(ChannelError::NotFound)?;
    // SAFETY: the hypervisor maps `layout.total_size()` bytes at `c.ipa`
    // with the producer's permissions for as long as the partition runs;
    // `find` guarantees this is the only `Sender` of the channel in this
    // partition, and the hypervisor maps the producer side into no other.
    let endpoint = unsafe { Sender::new(base, layout(c)?) }.map_err(ChannelError::Layout)?;
    let end = Endpoint { endpoint, index, doorbell: c.notify != 0 };
    if end.doorbell {
        // A new sender starts a new epoch that the receiver must acknowledge
        // before anything can be sent; a receiver asleep on an empty ring
        // would never see it. Wake it once.
        let _ = end.notify();
    }
    Ok(end)
}

/// Opens the receiving end of channel `name`.
pub fn receiver<T: Message>(boot: &Boot, name: &str) -> Result<Endpoint<Receiver<T>>, ChannelError> {
    let (index, c) = find(boot, name, role::CONSUMER)?;
    let base = NonNull::new(c.ipa as *mut u8).ok_or(ChannelError::NotFound)?;
    // SAFETY: as in `sender`, for the consumer's side.
    let endpoint = unsafe { Receiver::new(base, layout(c)?) }.map_err(ChannelError::Layout)?;
    Ok(Endpoint { endpoint, index, doorbell: c.notify != 0 })
}

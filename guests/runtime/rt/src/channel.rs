//! Channels: typed endpoints looked up by name in the boot information.
//!
//! The hypervisor maps each channel's memory at the guest-physical address
//! the boot information gives, with the producer/consumer permissions of
//! `hallows_ring::ChannelLayout`; this module turns a directory entry into
//! a `Sender<T>` or `Receiver<T>` and adds the doorbell for channels whose
//! manifest entry says `notify = "doorbell"`.

use core::future::Future;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};

use hallows_abi::{call, role, ChannelInfo};
pub use hallows_ring::{ChannelLayout, LayoutError, Message, Receiver, RingError, Sender, Tuning};

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
    /// The system's specs type this channel with a message whose layout
    /// hash is `expected` (`ChannelInfo::layout_hash`, written by the tool
    /// from the spec both ends were checked against); the type this
    /// partition opens it with hashes to `found`. Nothing was opened: the
    /// two ends would read each other's bytes as garbage.
    LayoutMismatch { expected: u64, found: u64 },
    /// The channel directory gives a ring tuning code
    /// (`ChannelInfo::tuning`) this runtime does not know, so it cannot
    /// build the layout the other end uses. Nothing was opened.
    UnknownTuning(u16),
}

impl core::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChannelError::NotFound => f.write_str("no channel of that name connects this partition"),
            ChannelError::WrongRole => f.write_str("this partition is the other end of the channel"),
            ChannelError::AlreadyOpen => f.write_str("the channel end is already open"),
            ChannelError::Layout(e) => write!(f, "the message type does not fit the channel's slots ({e:?})"),
            ChannelError::LayoutMismatch { expected, found } => write!(
                f,
                "message layout mismatch: the system's specs say layout hash {expected:#018x}, this partition was built with {found:#018x}; \
                 rebuild both ends from the same spec (`hallows check` shows both definitions)"
            ),
            ChannelError::UnknownTuning(code) => write!(
                f,
                "the channel's ring tuning code {code} is unknown to this runtime; \
                 build the partition with the same hallows as the system image"
            ),
        }
    }
}

/// An open channel end: the ring endpoint plus its doorbell.
#[derive(Debug)]
pub struct Endpoint<E> {
    endpoint: E,
    index: u32,
    doorbell: bool,
    /// Sending ends: the ring position the receiver was last rung for
    /// ([`Endpoint::flush`]).
    rung_at: u64,
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
/// the interrupt handler, consumed by [`Endpoint::wait`] and [`Rung`].
static RUNG: AtomicU32 = AtomicU32::new(0);
static OPEN: AtomicU32 = AtomicU32::new(0);
/// Per directory entry: the task awaiting its doorbell ([`Rung`]).
static WAITERS: [crate::sync::Mutex<Option<Waker>>; hallows_abi::MAX_CHANNELS] =
    [const { crate::sync::Mutex::new(None) }; hallows_abi::MAX_CHANNELS];

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

    /// Sleeps (`wfi` on aarch64, `hlt` on x86_64) until the peer rings
    /// this channel's doorbell, and consumes the ring. Returns at once if
    /// it rang since the last wait. Outside the executor: a task awaits
    /// [`rung`](Self::rung) instead.
    pub fn wait(&self) {
        wait_any(1 << self.index);
    }

    /// This channel's bit for [`wait_any`], if it has a doorbell.
    pub fn doorbell_mask(&self) -> Option<u32> {
        (self.doorbell && self.index < 32).then(|| 1 << self.index)
    }

    /// A future that completes once the peer has rung this channel's
    /// doorbell since the last wait (consuming the ring): the task sleeps,
    /// its core idles until an interrupt. On a channel without a doorbell
    /// there is nothing to wait for: it completes after one yield, so a
    /// loop around it polls without starving other tasks.
    pub fn rung(&self) -> Rung {
        Rung { index: self.index, doorbell: self.doorbell, yielded: false }
    }
}

impl<T: Message> Endpoint<Receiver<T>> {
    /// The next message: on a doorbell channel the task sleeps until the
    /// sender rings; on a poll channel it yields between polls. Errors
    /// other than an empty ring (`PeerRestarted`, `Corrupt`) are returned.
    pub async fn recv(&mut self) -> Result<T, RingError> {
        loop {
            match self.endpoint.try_recv() {
                Err(RingError::Empty) => self.rung().await,
                r => return r,
            }
        }
    }
}

impl<T: Message> Endpoint<Sender<T>> {
    /// On a doorbell channel, rings the receiver if anything was committed
    /// since the last ring (by any path: `try_send`, a committed batch,
    /// [`send`](Self::send)); otherwise costs one comparison and no trap.
    /// The Parseltongue loop calls this once per turn for every sending
    /// end, so messages sent directly are rung for at the next turn.
    #[inline]
    pub fn flush(&mut self) {
        let at = self.endpoint.position();
        if self.doorbell && at != self.rung_at {
            self.rung_at = at;
            let _ = self.notify();
        }
    }

    /// Sends `msg` and, on a doorbell channel, rings the receiver (one
    /// trap per message: for batches, `reserve`, commit, then
    /// [`flush`](Self::flush) once). While the ring is full the task
    /// yields and retries.
    pub async fn send(&mut self, msg: &T) -> Result<(), RingError> {
        loop {
            match self.endpoint.try_send(msg) {
                Ok(()) => {
                    self.flush();
                    return Ok(());
                }
                Err(RingError::Full) => crate::task::yield_now().await,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Sleeps until the doorbell of any channel in `mask` (bits from
/// [`Endpoint::doorbell_mask`]) has rung since it was last consumed, and
/// consumes them all; returns at once for an empty mask. Outside the
/// executor (a task awaits [`Endpoint::rung`] instead).
pub fn wait_any(mask: u32) {
    if mask == 0 {
        return;
    }
    while RUNG.fetch_and(!mask, Ordering::AcqRel) & mask == 0 {
        arch::wait_for_interrupt();
    }
}

/// The future of [`Endpoint::rung`].
#[derive(Debug)]
pub struct Rung {
    index: u32,
    doorbell: bool,
    yielded: bool,
}

impl Future for Rung {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A polled core (a NIC in poll mode) never idles, and interrupts
        // are taken only when a core idles: a doorbell would wait there
        // until something else woke the task. Such a core polls its
        // doorbell channels as it polls the NIC.
        if !self.doorbell || crate::time::is_polled() {
            if self.yielded {
                return Poll::Ready(());
            }
            self.yielded = true;
            // Polling for the peer's core: let it run (`crate::relax`).
            crate::relax();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let bit = 1 << self.index;
        if RUNG.fetch_and(!bit, Ordering::AcqRel) & bit != 0 {
            return Poll::Ready(());
        }
        let Some(slot) = WAITERS.get(self.index as usize) else { return Poll::Ready(()) };
        arch::without_interrupts(|| *slot.lock() = Some(cx.waker().clone()));
        // A ring between the check and the registration woke nobody.
        if RUNG.fetch_and(!bit, Ordering::AcqRel) & bit != 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Records a delivered doorbell and wakes the task awaiting it (called
/// from the interrupt handler).
pub(crate) fn doorbell_rang(index: u32) {
    if index < 32 {
        RUNG.fetch_or(1 << index, Ordering::AcqRel);
    }
    if let Some(w) = WAITERS.get(index as usize).and_then(|s| s.lock().take()) {
        w.wake();
    }
}

fn lookup(boot: &Boot, name: &str) -> Result<(usize, &'static ChannelInfo), ChannelError> {
    let info = boot.info;
    let n = (info.channel_count as usize).min(info.channels.len());
    info.channels[..n]
        .iter()
        .enumerate()
        .find(|(_, c)| crate::padded(&c.name) == name)
        .ok_or(ChannelError::NotFound)
}

/// The layout hash the system recorded for channel `name`
/// (`ChannelInfo::layout_hash`): that of the message type the specs of
/// its ends agree on, 0 when no spec types it (or no such channel).
pub fn layout_hash(boot: &Boot, name: &str) -> u64 {
    lookup(boot, name).map_or(0, |(_, c)| c.layout_hash)
}

/// Compares a type's layout hash with the one the system recorded for the
/// channel; either being 0 means unchecked.
pub fn check_layout(recorded: u64, found: u64) -> Result<(), ChannelError> {
    if recorded != 0 && found != 0 && recorded != found {
        return Err(ChannelError::LayoutMismatch { expected: recorded, found });
    }
    Ok(())
}

/// What `find` claimed: an end of a channel, checked in every way that
/// can be checked before its endpoint is built.
struct Claim {
    index: u32,
    info: &'static ChannelInfo,
    layout: ChannelLayout,
    base: NonNull<u8>,
}

impl Claim {
    /// Gives the end back after its endpoint could not be built, so a later
    /// attempt is not refused as `AlreadyOpen`.
    fn release(&self) {
        OPEN.fetch_and(!(1 << self.index), Ordering::AcqRel);
    }
}

/// Finds channel `name`, checks the role, the message type (`T`, and its
/// layout hash `hash`), the layout and the address, and only then marks
/// the end open: a refusal leaves it free for another attempt.
fn find<T: Message>(boot: &Boot, name: &str, want: u32, hash: u64) -> Result<Claim, ChannelError> {
    let (i, c) = lookup(boot, name)?;
    if c.role != want {
        return Err(ChannelError::WrongRole);
    }
    check_layout(c.layout_hash, hash)?;
    let layout = layout(c)?;
    layout.check_message::<T>().map_err(ChannelError::Layout)?;
    let base = NonNull::new(c.ipa as *mut u8).ok_or(ChannelError::NotFound)?;
    let bit = 1 << i;
    if OPEN.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
        return Err(ChannelError::AlreadyOpen);
    }
    Ok(Claim { index: i as u32, info: c, layout, base })
}

/// The layout both ends of the channel build: its geometry with the
/// tuning the manifest gave it.
fn layout(c: &ChannelInfo) -> Result<ChannelLayout, ChannelError> {
    let tuning = Tuning::from_code(u32::from(c.tuning)).ok_or(ChannelError::UnknownTuning(c.tuning))?;
    let layout = ChannelLayout::new(c.slot_size as usize, c.slot_count as usize).map_err(ChannelError::Layout)?;
    Ok(layout.tuned(tuning))
}

/// Opens the sending end of channel `name`. On a doorbell channel this
/// rings the receiver once, so that it acknowledges the new sender. The
/// message type is not compared with the system's (see [`sender_typed`]).
pub fn sender<T: Message>(boot: &Boot, name: &str) -> Result<Endpoint<Sender<T>>, ChannelError> {
    sender_typed(boot, name, 0)
}

/// As [`sender`], for a message type whose layout hash is `layout_hash`
/// (Parseltongue's `TYPE::LAYOUT_HASH`; 0: unchecked): refused with
/// [`ChannelError::LayoutMismatch`], nothing opened, when the system
/// recorded another hash for the channel.
pub fn sender_typed<T: Message>(boot: &Boot, name: &str, layout_hash: u64) -> Result<Endpoint<Sender<T>>, ChannelError> {
    let claim = find::<T>(boot, name, role::PRODUCER, layout_hash)?;
    // SAFETY: the hypervisor maps `layout.total_size()` bytes at `c.ipa`
    // with the producer's permissions for as long as the partition runs;
    // `find` guarantees this is the only `Sender` of the channel in this
    // partition, and the hypervisor maps the producer side into no other.
    let endpoint = unsafe { Sender::new(claim.base, claim.layout) }.map_err(|e| {
        claim.release();
        ChannelError::Layout(e)
    })?;
    let rung_at = endpoint.position();
    let end = Endpoint { endpoint, index: claim.index, doorbell: claim.info.notify != 0, rung_at };
    if end.doorbell {
        // A new sender starts a new epoch that the receiver must acknowledge
        // before anything can be sent; a receiver asleep on an empty ring
        // would never see it. Wake it once.
        let _ = end.notify();
    }
    Ok(end)
}

/// Opens the receiving end of channel `name` (type unchecked: see
/// [`receiver_typed`]).
pub fn receiver<T: Message>(boot: &Boot, name: &str) -> Result<Endpoint<Receiver<T>>, ChannelError> {
    receiver_typed(boot, name, 0)
}

/// As [`receiver`], refused with [`ChannelError::LayoutMismatch`] when the
/// system recorded another layout hash than `layout_hash` for the channel.
pub fn receiver_typed<T: Message>(boot: &Boot, name: &str, layout_hash: u64) -> Result<Endpoint<Receiver<T>>, ChannelError> {
    let claim = find::<T>(boot, name, role::CONSUMER, layout_hash)?;
    // SAFETY: as in `sender`, for the consumer's side.
    let endpoint = unsafe { Receiver::new(claim.base, claim.layout) }.map_err(|e| {
        claim.release();
        ChannelError::Layout(e)
    })?;
    Ok(Endpoint { endpoint, index: claim.index, doorbell: claim.info.notify != 0, rung_at: 0 })
}

/// A ring in this partition's own memory with both ends here: a driver
/// feeds a service's receive channel through it (the display's keyboard
/// and pointer events reach a Nagini service's `input_channel` this way,
/// so the generated loop schedules them as input). The memory is
/// allocated once, zeroed, and never freed, so no end outlives it; each
/// end can be taken once.
#[derive(Debug)]
pub struct Loopback {
    base: NonNull<u8>,
    layout: hallows_ring::ChannelLayout,
    sender_taken: bool,
    receiver_taken: bool,
}

// SAFETY: the memory belongs to this `Loopback` and the ends it hands out.
unsafe impl Send for Loopback {}

impl Loopback {
    /// A ring holding at least `slots` messages of type `T`.
    pub fn new<T: Message>(slots: usize) -> Option<Loopback> {
        let mut n = slots.next_power_of_two().max(2);
        let layout = loop {
            let l = hallows_ring::ChannelLayout::for_message::<T>(n).ok()?;
            if l.capacity() >= slots || n >= 1 << 16 {
                break l;
            }
            n *= 2;
        };
        let alloc = core::alloc::Layout::from_size_align(layout.total_size(), 4096).ok()?;
        // SAFETY: a non-zero size (a ring has headers); the memory is
        // zeroed (a fresh channel) and deliberately leaked.
        let p = unsafe { alloc::alloc::alloc_zeroed(alloc) };
        Some(Loopback { base: NonNull::new(p)?, layout, sender_taken: false, receiver_taken: false })
    }

    /// The sending end (once; `None` after, or if `T` does not fit).
    pub fn sender<T: Message>(&mut self) -> Option<Sender<T>> {
        if self.sender_taken {
            return None;
        }
        // SAFETY: `base` is `layout.total_size()` bytes laid out by
        // `layout`, readable and writable, never freed; this is its only
        // sender, and only its two ends touch it.
        let s = unsafe { Sender::new(self.base, self.layout) }.ok()?;
        self.sender_taken = true;
        Some(s)
    }

    /// The receiving end (once; `None` after, or if `T` does not fit).
    pub fn receiver<T: Message>(&mut self) -> Option<Receiver<T>> {
        if self.receiver_taken {
            return None;
        }
        // SAFETY: as in `sender`; the only receiver.
        let r = unsafe { Receiver::new(self.base, self.layout) }.ok()?;
        self.receiver_taken = true;
        Some(r)
    }
}

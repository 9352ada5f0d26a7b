//! A virtio-net device with its buffers allocated once: frames are
//! received into a fixed pool and sent from another, without waiting for
//! the device.
//!
//! `virtio-drivers`' `VirtIONet` allocates (and zeroes) a buffer for every
//! frame sent and then spins until the device has taken it. Here a frame
//! is written straight into a free transmit buffer and handed to the
//! device; buffers the device is done with are taken back before the next
//! send. Receive buffers are posted once and posted again after each
//! frame is read.
//!
//! The device reads and writes these buffers by DMA, so this is where the
//! `unsafe` of the raw queue interface lives: a buffer is owned by the
//! device from `*_begin` to `*_complete`, and this module touches it only
//! outside that window.

use alloc::vec;
use alloc::vec::Vec;

use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::Transport;

use crate::virtio::Hal;

/// Largest Ethernet frame sent or received (no VLAN tag, no jumbo frames).
pub const MAX_FRAME: usize = 1514;
/// Room for the virtio-net header in front of a frame (12 bytes, or 10 for
/// a legacy device), rounded up.
const HEADER_ROOM: usize = 16;
/// One receive buffer: header and frame (virtio-drivers asks for at least
/// 1526 bytes).
const RX_LEN: usize = 2048;
const TX_LEN: usize = HEADER_ROOM + MAX_FRAME;

/// Errors of [`NetDevice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// The device could not be set up (the driver's error).
    Init(virtio_drivers::Error),
    /// No transmit buffer or descriptor is free now.
    Busy,
    /// A frame longer than [`MAX_FRAME`].
    TooLong,
    /// The device reported something that does not fit its queue.
    Device,
}

enum Rx {
    /// Owned by the device (posted with the given token).
    Posted(u16),
    /// Filled: the frame is `[start, start + len)` of the buffer.
    Full { start: usize, len: usize },
    /// Out of the device's hands ([`NetDevice::take`]).
    Taken,
}

/// A transmit buffer the device owns: its token and the length handed over.
type InFlight = (u16, usize);

/// A virtio-net device with `Q` descriptors per queue.
pub struct NetDevice<T: Transport, const Q: usize> {
    // Declared first so that it is dropped first: dropping the transport
    // resets the device, which then no longer touches the buffers below.
    raw: VirtIONetRaw<Hal, T, Q>,
    rx: Vec<(Vec<u8>, Rx)>,
    /// Transmit buffers and, while the device owns one, its token and the
    /// length handed over.
    tx: Vec<(Vec<u8>, Option<InFlight>)>,
    /// Transmit buffers free now.
    tx_free: Vec<usize>,
    /// Receive buffers in the order the device fills them is not known in
    /// advance: token -> buffer.
    rx_of_token: [u16; Q],
}

impl<T: Transport, const Q: usize> core::fmt::Debug for NetDevice<T, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NetDevice {{ {} receive buffers, {} transmit buffers ({} free) }}", self.rx.len(), self.tx.len(), self.tx_free.len())
    }
}

impl<T: Transport, const Q: usize> NetDevice<T, Q> {
    /// Sets up the device, posts `Q` receive buffers and makes `Q / 2`
    /// transmit buffers.
    pub fn new(transport: T) -> Result<Self, NetError> {
        let raw = VirtIONetRaw::<Hal, T, Q>::new(transport).map_err(NetError::Init)?;
        let mut dev = NetDevice {
            raw,
            rx: Vec::with_capacity(Q),
            tx: (0..Q / 2).map(|_| (vec![0u8; TX_LEN], None)).collect(),
            tx_free: (0..Q / 2).rev().collect(),
            rx_of_token: [u16::MAX; Q],
        };
        for i in 0..Q {
            dev.rx.push((vec![0u8; RX_LEN], Rx::Full { start: 0, len: 0 }));
            dev.post(i)?;
        }
        Ok(dev)
    }

    fn post(&mut self, i: usize) -> Result<(), NetError> {
        let (buf, state) = &mut self.rx[i];
        // SAFETY: the buffer is owned by `self` and never moves (a heap
        // allocation that is not resized); it is `Posted` from here until
        // `receive` completes it, and nothing reads or writes a `Posted`
        // buffer. If `self` is dropped first, the device is reset first.
        let token = unsafe { self.raw.receive_begin(buf) }.map_err(|_| NetError::Device)?;
        *state = Rx::Posted(token);
        *self.rx_of_token.get_mut(token as usize).ok_or(NetError::Device)? = i as u16;
        Ok(())
    }

    /// The device's MAC address.
    pub fn mac_address(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// Lets the device interrupt when it used buffers.
    pub fn enable_interrupts(&mut self) {
        self.raw.enable_interrupts()
    }

    /// Stops the device from interrupting.
    pub fn disable_interrupts(&mut self) {
        self.raw.disable_interrupts()
    }

    /// The next received frame's handle, if one is waiting: take it with
    /// [`take`](Self::take), then give the buffer back with
    /// [`recycle`](Self::recycle).
    pub fn receive(&mut self) -> Option<usize> {
        let token = self.raw.poll_receive()?;
        let i = *self.rx_of_token.get(token as usize)? as usize;
        let (buf, state) = self.rx.get_mut(i)?;
        if !matches!(state, Rx::Posted(t) if *t == token) {
            return None;
        }
        // SAFETY: `buf` is the buffer posted with `token` (checked above),
        // which the device has now returned.
        match unsafe { self.raw.receive_complete(token, buf) } {
            Ok((start, len)) if start + len <= buf.len() => {
                *state = Rx::Full { start, len };
                Some(i)
            }
            _ => {
                // A malformed completion: drop the frame, keep the buffer.
                *state = Rx::Full { start: 0, len: 0 };
                let _ = self.post(i);
                None
            }
        }
    }

    /// Takes the buffer of the frame `receive` returned out of the device
    /// (so that the device can send while the frame is read): the buffer
    /// and where the frame lies in it. Give it back with
    /// [`recycle`](Self::recycle).
    pub fn take(&mut self, i: usize) -> Option<(Vec<u8>, core::ops::Range<usize>)> {
        let (buf, state) = self.rx.get_mut(i)?;
        match *state {
            Rx::Full { start, len } => {
                *state = Rx::Taken;
                Some((core::mem::take(buf), start..start + len))
            }
            _ => None,
        }
    }

    /// Gives a taken receive buffer back and posts it to the device again.
    pub fn recycle(&mut self, i: usize, buf: Vec<u8>) {
        if let Some((slot, state @ Rx::Taken)) = self.rx.get_mut(i) {
            *slot = buf;
            *state = Rx::Full { start: 0, len: 0 };
            let _ = self.post(i);
        }
    }

    /// Takes back the transmit buffers the device is done with.
    fn reclaim(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            let Some(i) = self.tx.iter().position(|(_, t)| matches!(t, Some((k, _)) if *k == token)) else {
                // Not a buffer we handed over (the device is trusted with
                // DMA, so this is a device fault): leave it; sends fail
                // once every buffer is out, and TCP retransmits.
                return;
            };
            let (buf, owned) = &mut self.tx[i];
            let len = owned.map_or(0, |(_, n)| n);
            // SAFETY: `buf[..len]` is the slice handed over with `token`,
            // which the device has now returned.
            let _ = unsafe { self.raw.transmit_complete(token, &buf[..len]) };
            *owned = None;
            self.tx_free.push(i);
        }
    }

    /// Whether a frame can be sent now.
    pub fn can_send(&mut self) -> bool {
        self.reclaim();
        !self.tx_free.is_empty() && self.raw.can_send()
    }

    /// Sends a `len`-byte frame that `fill` writes; does not wait for the
    /// device. An error means `fill` was not called. (Should the device
    /// refuse a buffer after `fill` ran, the frame is dropped: a lost
    /// frame, as on a wire.)
    pub fn send<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        if len > MAX_FRAME {
            return Err(NetError::TooLong);
        }
        self.reclaim();
        if !self.raw.can_send() {
            return Err(NetError::Busy);
        }
        let i = self.tx_free.pop().ok_or(NetError::Busy)?;
        let (buf, owned) = &mut self.tx[i];
        let header = match self.raw.fill_buffer_header(buf) {
            Ok(h) if h <= HEADER_ROOM => h,
            _ => {
                self.tx_free.push(i);
                return Err(NetError::Device);
            }
        };
        let r = fill(&mut buf[header..header + len]);
        // SAFETY: the buffer (owned by `self`, never moved or resized) is
        // the device's until `reclaim` sees its token come back; nothing
        // touches a buffer while `owned` holds a token.
        match unsafe { self.raw.transmit_begin(&buf[..header + len]) } {
            Ok(token) => {
                *owned = Some((token, header + len));
                Ok(r)
            }
            Err(_) => {
                self.tx_free.push(i);
                Ok(r)
            }
        }
    }
}

//! What a link runs over: anything that moves [`Frame`]s both ways without
//! blocking. In a partition, the two ring channels ([`RingTransport`]); in
//! host tests, heap memory ([`MemTransport`]) or rings on the heap.

use core::ops::DerefMut;

use hallows_ring::{Receiver, RingError, Sender};

use zerocopy::IntoBytes;

use crate::frame::{Frame, HEADER_SIZE, PAYLOAD};

/// Why a transport operation did not complete (the ring's errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No room to send (back-pressure).
    Full,
    /// Nothing to receive.
    Empty,
    /// The peer restarted: what was in flight is lost, both directions.
    PeerRestarted,
    /// The peer wrote something impossible into its side of the channel.
    Corrupt,
}

impl From<RingError> for TransportError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::Full => Self::Full,
            RingError::Empty => Self::Empty,
            RingError::PeerRestarted => Self::PeerRestarted,
            RingError::Corrupt => Self::Corrupt,
        }
    }
}

/// A non-blocking, in-order, lossless (between restarts) frame pipe in each
/// direction. A peer may send any bytes: the link validates every frame.
pub trait Transport {
    /// Queues one frame for the peer.
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError>;
    /// Takes the next frame from the peer.
    fn recv(&mut self) -> Result<Frame, TransportError>;
    /// Takes the next frame from the peer into `frame`: its header, and of
    /// its payload at least the bytes its `len` says (clamped to
    /// [`PAYLOAD`]) and the first [`FIXED_PAYLOAD`]; the rest of `frame`'s
    /// payload may hold an earlier frame's bytes. A transport over shared
    /// memory copies only that much (a 2 KiB frame carrying a 100-byte
    /// request costs 100 bytes, not 2,048).
    fn recv_into(&mut self, frame: &mut Frame) -> Result<(), TransportError> {
        *frame = self.recv()?;
        Ok(())
    }
}

/// Payload bytes [`Transport::recv_into`] always copies, whatever `len`
/// says: fixed-layout frames (`OPEN`'s peer address) are read from the
/// payload's start.
pub const FIXED_PAYLOAD: usize = 8;

/// How many bytes of `frame` (header and payload) carry what it says.
#[inline]
fn used(frame_len: u16) -> usize {
    HEADER_SIZE + (frame_len as usize).clamp(FIXED_PAYLOAD, PAYLOAD)
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        (**self).send(frame)
    }
    fn recv(&mut self) -> Result<Frame, TransportError> {
        (**self).recv()
    }
    fn recv_into(&mut self, frame: &mut Frame) -> Result<(), TransportError> {
        (**self).recv_into(frame)
    }
}

/// The two ring channels of a link: `tx` to the peer, `rx` from it. `S`
/// and `R` are anything that dereferences to the ring endpoints
/// (`hallows_rt::channel::Endpoint`, `Box`, `&mut`).
#[derive(Debug)]
pub struct RingTransport<S, R> {
    /// The sending end (`<self>-<peer>`).
    pub tx: S,
    /// The receiving end (`<peer>-<self>`).
    pub rx: R,
}

impl<S, R> Transport for RingTransport<S, R>
where
    S: DerefMut<Target = Sender<Frame>>,
    R: DerefMut<Target = Receiver<Frame>>,
{
    /// Writes only the header and the payload's used bytes into the slot
    /// (the rest of the slot keeps whatever this end wrote there before).
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        let n = used(frame.len);
        let mut batch = self.tx.reserve(1)?;
        let Some(slot) = batch.get_mut(0) else { return Err(TransportError::Full) };
        slot.as_mut_bytes()[..n].copy_from_slice(&frame.as_bytes()[..n]);
        batch.commit();
        Ok(())
    }
    fn recv(&mut self) -> Result<Frame, TransportError> {
        Ok(self.rx.try_recv()?)
    }
    /// Copies the header, then only the payload bytes the header's `len`
    /// covers (clamped to the slot), straight from the slot. `len` is kept
    /// as the peer wrote it, so the link still refuses a frame whose `len`
    /// is out of range.
    fn recv_into(&mut self, frame: &mut Frame) -> Result<(), TransportError> {
        let batch = self.rx.recv_batch(1)?;
        let Some(slot) = batch.slot(0) else { return Err(TransportError::Empty) };
        let bytes = frame.as_mut_bytes();
        let read = slot.copy_to(0, &mut bytes[..HEADER_SIZE]);
        let n = used(u16::from_ne_bytes([bytes[2], bytes[3]]));
        let read = read && slot.copy_to(HEADER_SIZE, &mut bytes[HEADER_SIZE..n]);
        batch.release_first(1);
        // Unreachable: a batch of one, ranges inside the frame.
        if read { Ok(()) } else { Err(TransportError::Corrupt) }
    }
}

#[cfg(any(test, feature = "std"))]
pub use mem::MemTransport;

#[cfg(any(test, feature = "std"))]
mod mem {
    extern crate std;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use super::{Transport, TransportError};
    use crate::frame::Frame;

    type Queue = Rc<RefCell<VecDeque<Frame>>>;

    /// One end of a pair of bounded in-memory queues (host tests). The test
    /// can reach into the queues to drop, corrupt or inject frames.
    #[derive(Debug)]
    pub struct MemTransport {
        /// Frames to the peer.
        pub tx: Queue,
        /// Frames from the peer.
        pub rx: Queue,
        /// Frames each direction holds before `Full`.
        pub capacity: usize,
    }

    impl MemTransport {
        /// Two connected ends.
        pub fn pair(capacity: usize) -> (Self, Self) {
            let a: Queue = Rc::default();
            let b: Queue = Rc::default();
            (Self { tx: a.clone(), rx: b.clone(), capacity }, Self { tx: b, rx: a, capacity })
        }
    }

    impl Transport for MemTransport {
        fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
            let mut q = self.tx.borrow_mut();
            if q.len() >= self.capacity {
                return Err(TransportError::Full);
            }
            q.push_back(frame.clone());
            Ok(())
        }
        fn recv(&mut self) -> Result<Frame, TransportError> {
            self.rx.borrow_mut().pop_front().ok_or(TransportError::Empty)
        }
    }
}

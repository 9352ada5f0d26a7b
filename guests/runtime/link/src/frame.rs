//! The wire format: one [`Frame`] per ring slot.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Bytes of a frame: the ring channels of a link must have this slot size.
pub const FRAME_SIZE: usize = 2048;
/// Bytes of a frame's header.
pub const HEADER_SIZE: usize = 16;
/// Largest payload of a `DATA` frame.
pub const PAYLOAD: usize = FRAME_SIZE - HEADER_SIZE;
/// Protocol version carried by `HELLO`.
pub const VERSION: u32 = 1;
/// `HELLO`'s magic, "HLNK" in memory order.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HLNK");
/// Connection slots a link can have (the low 16 bits of a connection id are
/// a slot below this).
pub const MAX_SLOTS: usize = 128;
/// Smallest receive window a side may announce: one full `DATA` frame.
pub const MIN_WINDOW: u32 = PAYLOAD as u32;
/// Largest receive window a side may announce.
pub const MAX_WINDOW: u32 = 1 << 20;

/// Frame kinds (`Frame::kind`).
pub mod kind {
    /// Link start: `arg0` = [`VERSION`](super::VERSION), `arg1` =
    /// [`MAGIC`](super::MAGIC), `flags` = the sender's role (0 gateway, 1
    /// service), `conn` = 0.
    pub const HELLO: u8 = 1;
    /// Gateway to service: a new connection `conn`; `arg0` = the gateway's
    /// receive window, `arg1` = the TCP port, payload = client IPv4 address
    /// (4 bytes) and port (2 bytes, big-endian), `len` = 6.
    pub const OPEN: u8 = 2;
    /// Service to gateway: connection `conn` accepted; `arg0` = the
    /// service's receive window.
    pub const ACCEPT: u8 = 3;
    /// Bytes of connection `conn`: `len` in `1..=PAYLOAD`.
    pub const DATA: u8 = 4;
    /// Flow control: the receiver consumed `arg0` (> 0) more bytes of
    /// `conn`; the sender may send that many more.
    pub const CREDIT: u8 = 5;
    /// The sender will send no more data on `conn` (half-close).
    pub const FIN: u8 = 6;
    /// Connection `conn` is aborted, both ways; never answered.
    pub const RST: u8 = 7;
}

/// Roles in `HELLO`'s `flags`.
pub mod role {
    /// The side that owns the NIC and opens connections.
    pub const GATEWAY: u8 = 0;
    /// The side that accepts them.
    pub const SERVICE: u8 = 1;
}

/// One message of the link: a ring slot. Any bytes are a valid `Frame`;
/// the link validates every field it reads.
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Frame {
    /// One of [`kind`].
    pub kind: u8,
    /// `HELLO`: the sender's [`role`]; otherwise 0.
    pub flags: u8,
    /// Payload bytes used.
    pub len: u16,
    /// Connection id: slot (low 16 bits, below [`MAX_SLOTS`]) and
    /// generation (high 16 bits), chosen by the gateway.
    pub conn: u32,
    /// Kind-specific argument.
    pub arg0: u32,
    /// Kind-specific argument.
    pub arg1: u32,
    /// `DATA` bytes, `OPEN` client address.
    pub payload: [u8; PAYLOAD],
}

impl core::fmt::Debug for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("flags", &self.flags)
            .field("len", &self.len)
            .field("conn", &format_args!("{:#x}", self.conn))
            .field("arg0", &self.arg0)
            .field("arg1", &self.arg1)
            .finish_non_exhaustive()
    }
}

impl Frame {
    /// A frame of `kind` for `conn`, arguments and payload zero.
    pub fn new(kind: u8, conn: u32) -> Self {
        let mut f = Self::new_zeroed();
        f.kind = kind;
        f.conn = conn;
        f
    }

    /// The used part of the payload (`len`, clamped to [`PAYLOAD`]).
    pub fn data(&self) -> &[u8] {
        &self.payload[..(self.len as usize).min(PAYLOAD)]
    }
}

/// A TCP peer's IPv4 address and port, as the gateway saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// IPv4 address, network order.
    pub ip: [u8; 4],
    /// TCP port.
    pub port: u16,
}

impl PeerAddr {
    pub(crate) fn encode(&self, payload: &mut [u8; PAYLOAD]) -> u16 {
        payload[..4].copy_from_slice(&self.ip);
        payload[4..6].copy_from_slice(&self.port.to_be_bytes());
        6
    }

    pub(crate) fn decode(payload: &[u8; PAYLOAD]) -> Self {
        Self { ip: [payload[0], payload[1], payload[2], payload[3]], port: u16::from_be_bytes([payload[4], payload[5]]) }
    }
}

impl core::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.ip;
        write!(f, "{a}.{b}.{c}.{d}:{}", self.port)
    }
}

const _: () = assert!(core::mem::size_of::<Frame>() == FRAME_SIZE);
const _: () = assert!(MAX_SLOTS <= 1 << 16);

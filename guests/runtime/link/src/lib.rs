//! The gateway link: TCP connections carried between a gateway partition
//! (which owns the NIC and terminates TCP) and a service partition, over a
//! pair of ring channels, so that the service needs neither a NIC nor a TCP
//! stack.
//!
//! # Channels
//!
//! A route from gateway `G` to service `S` uses two channels, `G-S` (gateway
//! to service) and `S-G`, each with **slot size [`FRAME_SIZE`] (2048) and
//! at least 16 slots** (a power of two; 64 recommended: 62 frames in flight,
//! 132 KiB per direction with the two header pages). One slot carries one [`Frame`]. Each end opens
//! its receiving channel before its sending one (see [`Link::new`]).
//!
//! # Frames
//!
//! A frame is 2048 bytes: a 16-byte header (`kind`, `flags`, `len`, `conn`,
//! `arg0`, `arg1`) and 2032 bytes of payload. `conn` is a connection id
//! chosen by the gateway: slot (low 16 bits, below [`MAX_SLOTS`]) and
//! generation (high 16 bits, bumped each time the gateway reuses the slot).
//!
//! | kind | from | meaning |
//! |---|---|---|
//! | `HELLO` | both | link start: version, magic, sender's role; sent once per incarnation and after every restart of the peer |
//! | `OPEN` | gateway | new connection `conn` to TCP port `arg1` from the client address in the payload; `arg0` = the gateway's receive window |
//! | `ACCEPT` | service | `conn` accepted; `arg0` = the service's receive window |
//! | `DATA` | both | `len` (1..=2032) bytes of `conn` |
//! | `CREDIT` | both | the sender of this frame consumed `arg0` more bytes of `conn` |
//! | `FIN` | both | no more `DATA` from this side on `conn` (half-close) |
//! | `RST` | both | `conn` aborted both ways; never answered |
//!
//! # Connections and flow control
//!
//! The gateway opens a connection only after the service's `HELLO` (so a
//! gateway refuses clients at once while its service is down). The service
//! answers `OPEN` with `ACCEPT` straight away if it listens on the port and
//! has a free entry (its backlog: accepted connections wait for the
//! application's `accept`), with `RST` otherwise.
//!
//! Each side announces a receive window `W` (at least one frame, at most
//! [`MAX_WINDOW`]) and never buffers more than `W` bytes of a connection.
//! The other side may send only as many `DATA` bytes as it holds credit for:
//! `W` at first, plus every `CREDIT`. The receiver returns credit for bytes
//! the application consumed, once a quarter of the window is pending, or at
//! once when the application closed the connection or the stream has ended.
//! A slow service, or a client that never reads, therefore stops the
//! sender of *its* connection (the gateway stops reading that client's
//! socket, and TCP pushes back), never the ring or other connections: the
//! receiving side always drains the ring into the per-connection buffers.
//!
//! A connection ends when each side has sent `FIN` (or either sent `RST`).
//! The gateway reuses a slot only once both `FIN`s are through and all its
//! bytes were credited back (the service consumed them), or after an `RST`;
//! the generation makes frames still in flight for the old connection
//! stray, and strays are dropped. The service keys its own entries by the
//! gateway's id, so an application still holding a finished connection does
//! not block the slot.
//!
//! # Against a hostile or restarted peer
//!
//! Every frame is validated against the connection's state: an unknown
//! kind, `DATA` beyond the credit or after `FIN`, credit beyond the window
//! announced, a second `FIN`, `ACCEPT` out of turn, an `OPEN` to the
//! gateway, a window out of bounds: each is a violation (counted) and resets
//! the connection it names, and only that one. (A malformed `HELLO` is about
//! the link, not a connection: the gateway then resets every connection
//! and treats the service as down until a valid `HELLO`; a service counts it.) Frames for ids that name no
//! live connection are dropped. Nothing the peer sends makes this side
//! allocate more than `max_conns * window` bytes of buffers, loop more than
//! `rx_budget` frames per [`Link::poll`], or panic; control frames that
//! cannot be sent yet wait as per-connection flags, never in a queue.
//!
//! A restarted peer (the ring reports `PeerRestarted`, or a second `HELLO`
//! arrives) resets every connection; a corrupt ring resets them too and the
//! gateway opens none until the service says `HELLO` again.
//!
//! # Use
//!
//! ```
//! use hallows_link::{Config, Link, MemTransport, PeerAddr, Role};
//!
//! let (a, b) = MemTransport::pair(64);
//! let mut gw = Link::new(a, Role::Gateway, Config::default());
//! let mut svc = Link::new(b, Role::Service, Config::default());
//! svc.listen(80);
//! svc.poll();
//! gw.poll(); // the service's HELLO
//! let c = gw.open(80, PeerAddr { ip: [10, 0, 2, 2], port: 40000 }).unwrap();
//! svc.poll();
//! let (s, peer) = svc.accept(80).unwrap();
//! assert_eq!(peer.port, 40000);
//! gw.poll(); // ACCEPT
//! assert_eq!(gw.send(c, b"GET /"), Ok(5));
//! svc.poll();
//! let mut buf = [0; 16];
//! assert_eq!(svc.recv(s, &mut buf), Ok(5));
//! svc.send(s, b"200").unwrap();
//! svc.close(s); // FIN
//! gw.poll();
//! assert_eq!(gw.recv(c, &mut buf), Ok(3));
//! assert_eq!(gw.recv(c, &mut buf), Ok(0)); // end of stream
//! gw.close(c);
//! for _ in 0..3 { svc.poll(); gw.poll(); }
//! assert_eq!((gw.live(), svc.live()), (0, 0));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod frame;
mod link;
pub mod transport;

pub use frame::{Frame, PeerAddr, FRAME_SIZE, MAX_SLOTS, MAX_WINDOW, MIN_WINDOW, PAYLOAD};
pub use link::{Config, ConnError, ConnId, ConnState, Events, Link, OpenError, Role, Stats};
#[cfg(any(test, feature = "std"))]
pub use transport::MemTransport;
pub use transport::{RingTransport, Transport, TransportError};

/// Slot size the manifest checker requires of a link's channels (the
/// contract lives in `hallows-abi`; a frame fills a slot).
pub const CHANNEL_SLOT_SIZE: usize = hallows_abi::LINK_SLOT_SIZE;
/// Fewest slots the manifest checker accepts for a link's channel.
pub const CHANNEL_MIN_SLOTS: usize = hallows_abi::LINK_MIN_SLOTS;
const _: () = assert!(FRAME_SIZE == CHANNEL_SLOT_SIZE);

//! Networking for RustHallows partitions (both architectures): async TCP and UDP
//! sockets on the runtime's executor ([`hallows_rt::task`]).
//!
//! ```ignore
//! hallows_rt::task::run(boot, async move {
//!     hallows_net::init(&boot).expect("network");
//!     let mut listener = hallows_net::TcpListener::bind(80).expect("port 80");
//!     loop {
//!         let Ok(mut stream) = listener.accept().await else { continue };
//!         hallows_rt::task::spawn(async move {
//!             let mut buf = [0u8; 512];
//!             while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!                 if stream.write_all(&buf[..n]).await.is_err() { break }
//!             }
//!             let _ = stream.close().await;
//!         });
//!     }
//! });
//! ```
//!
//! [`init`] picks the backend from the partition's boot information
//! (`boot.info().net.mode`, filled from the manifest):
//!
//! * `poll` / `interrupt`: the partition owns a virtio-net NIC and runs the
//!   smoltcp TCP/IP stack itself (`nic` module). In poll mode a driver task
//!   polls the device queues and the stack on every turn of the executor
//!   (no device interrupt, no hypervisor instruction per packet, the clock
//!   read in the loop); in interrupt mode the device's interrupt wakes the
//!   driver task and a timer follows smoltcp's `poll_delay`.
//! * `gateway`: the partition owns no NIC; a gateway partition terminates
//!   TCP and relays connections over channels (`gateway` module).
//!
//! The same service code runs on either: the public types wrap an id of
//! the installed backend (see the `backend` module for that interface).
//!
//! The crate has no `unsafe`: device access and DMA are the runtime's
//! (`hallows_rt::virtio`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod backend;
mod gateway;
mod nic;
mod socket;
pub mod stats;

pub use socket::*;
pub use stats::{stats, Stats};

pub use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

/// Errors of the network API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// [`init`] was not called, or the partition has no network
    /// (`net_mode::NONE`).
    NotInitialized,
    /// [`init`] was called twice.
    AlreadyInitialized,
    /// The boot information names a mode this build does not support, or
    /// no usable NIC was found.
    Unsupported,
    /// The device failed to initialise or answer.
    Device,
    /// The bound on sockets ([`Limits::sockets`]) is reached.
    TooManySockets,
    /// Something already listens on (or is bound to) that port.
    AddrInUse,
    /// An invalid argument (port 0 for a listener, a bad address).
    InvalidInput,
    /// This side closed the connection (or it was reset): no more writes.
    Closed,
    /// The peer reset the connection.
    ConnectionReset,
    /// A graceful close did not complete within [`Limits::linger`]; the
    /// connection was reset.
    TimedOut,
    /// A datagram larger than the socket's buffer.
    TooLarge,
    /// The handle does not name a live object of the backend (a bug).
    InvalidId,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

/// The backend [`init`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Own NIC, polled.
    Poll,
    /// Own NIC, interrupt-driven.
    Interrupt,
    /// Through a gateway partition.
    Gateway,
}

/// Bounds on what the network stack may hold. Defaults below; each can be
/// set with a boot argument (`net_sockets=`, `net_rx=`, `net_tx=`,
/// `net_backlog=`, `net_linger_ms=`, `net_udp=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TCP sockets in all: established connections, connections being
    /// closed and the listeners' pending (listening) sockets. Connection
    /// attempts beyond it are refused (RST).
    pub sockets: usize,
    /// Receive buffer per TCP connection (bytes): the most a peer can make
    /// this partition hold for a connection its service does not read.
    pub rx_buffer: usize,
    /// Send buffer per TCP connection (bytes): the most a service can
    /// queue for a peer that does not read.
    pub tx_buffer: usize,
    /// Per listener: connections in the handshake, and (apart) connections
    /// that completed it and wait for `accept`. SYNs beyond either bound
    /// are refused (RST).
    pub backlog: usize,
    /// How long a closing connection (after `close`, or after its
    /// `TcpStream` was dropped) may take to send its data and FIN before
    /// it is reset.
    pub linger: Duration,
    /// UDP sockets in all (each with `rx_buffer` and `tx_buffer` of
    /// datagram space).
    pub udp_sockets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sockets: 64,
            rx_buffer: 16 * 1024,
            tx_buffer: 16 * 1024,
            backlog: 32,
            linger: Duration::from_secs(5),
            udp_sockets: 4,
        }
    }
}

impl Limits {
    /// Hard ceilings on the boot arguments (whatever the arguments say).
    pub const MAX_SOCKETS: usize = 1024;
    pub const MAX_BUFFER: usize = 1024 * 1024;
    pub const MAX_BACKLOG: usize = 64;

    /// The defaults, overridden by the boot arguments that parse.
        pub fn from_boot(boot: &hallows_rt::Boot) -> Self {
        let mut l = Limits::default();
        let num = |k: &str| boot.arg(k).and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = num("net_sockets") {
            l.sockets = n.clamp(2, Self::MAX_SOCKETS);
        }
        if let Some(n) = num("net_rx") {
            l.rx_buffer = n.clamp(1024, Self::MAX_BUFFER);
        }
        if let Some(n) = num("net_tx") {
            l.tx_buffer = n.clamp(1024, Self::MAX_BUFFER);
        }
        if let Some(n) = num("net_backlog") {
            l.backlog = n.clamp(1, Self::MAX_BACKLOG);
        }
        if let Some(n) = num("net_linger_ms") {
            l.linger = Duration::from_millis(n.min(600_000) as u64);
        }
        if let Some(n) = num("net_udp") {
            l.udp_sockets = n.min(Self::MAX_SOCKETS);
        }
        l
    }
}

/// The partition's IPv4 configuration, as [`init`] understood it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub limits: Limits,
}

//! The internal interface between the public socket types and a network
//! backend.
//!
//! The public types ([`TcpListener`](crate::TcpListener),
//! [`TcpStream`](crate::TcpStream), [`UdpSocket`](crate::UdpSocket)) hold
//! only an [`Id`] that their backend handed out, and call the one
//! installed backend (a `Box<dyn Backend>` behind a lock, see
//! `crate::with_backend`) for every operation. Two backends exist:
//!
//! * `nic` — the partition owns a virtio-net NIC and runs smoltcp itself
//!   ([`net_mode::POLL`](hallows_rt::abi::net_mode::POLL) or
//!   [`INTERRUPT`](hallows_rt::abi::net_mode::INTERRUPT));
//! * `gateway` — the partition owns no NIC; a gateway partition terminates
//!   TCP and relays each connection's bytes over the channels
//!   `<gateway>-<self>` and `<self>-<gateway>`
//!   ([`net_mode::GATEWAY`](hallows_rt::abi::net_mode::GATEWAY)).
//!
//! # Contract
//!
//! * **Ids.** A backend hands out ids from `tcp_listen`, `tcp_poll_accept`
//!   and `udp_bind`; an id names one live object until its owner calls the
//!   matching `*_release`, exactly once (the public types do so in `Drop`).
//!   The public types are not `Clone`, so an id has one owner. An unknown
//!   or released id is answered with [`Error::InvalidId`] (never a panic).
//!   Ids of listeners, connections and UDP sockets may overlap: each kind
//!   has its own namespace.
//! * **Polling.** Every `poll_*` method is non-blocking: it returns
//!   `Poll::Ready` with a result, or registers `cx.waker()` and returns
//!   `Poll::Pending`; the backend wakes that waker when the operation may
//!   make progress (data arrived, buffer space freed, connection closed,
//!   backend shut down). One waker per direction and object is enough:
//!   the public types never poll the same direction of one object from
//!   two tasks at once (they take `&mut self`). Methods are called with
//!   the backend lock held, from async tasks (interrupts masked), on any
//!   core of the partition; they must not block or spin for long.
//! * **Progress.** The backend moves data on its own: `init` spawns
//!   whatever driver task it needs (the NIC backend's poll loop; the
//!   gateway's channel pump). A `poll_*` call that queued work (a write, a
//!   close, a read that reopened the receive window) must make sure the
//!   driver runs soon (in interrupt-driven backends: wake the driver).
//! * **Bounds.** The backend enforces [`Limits`](crate::Limits): at most
//!   `sockets` connections and listeners in all, `rx_buffer`/`tx_buffer`
//!   bytes buffered per connection, `backlog` connections waiting in
//!   `accept` per listener (further connection attempts are refused),
//!   and it never allocates per received byte or packet beyond those.
//! * **Counters.** The backend keeps the shared counters in
//!   [`crate::stats`] up to date (`conn_opened`/`conn_closed` for every
//!   connection that reached `accept`'s queue and for its final removal,
//!   `add_rx`/`add_tx` for payload bytes).
//!
//! # Semantics each method must give
//!
//! | method | meaning |
//! |---|---|
//! | `tcp_listen(port)` | start accepting on `port`; [`Error::AddrInUse`] if already listening there, [`Error::TooManySockets`] |
//! | `tcp_poll_accept(l)` | the next established connection of listener `l`: `(id, peer)` |
//! | `tcp_release_listener(l)` | stop listening; queued, unaccepted connections are reset |
//! | `tcp_poll_read(c, buf)` | `Ok(n)` with `1..=buf.len()` bytes, `Ok(0)` at end of stream (peer's FIN, or the connection is gone), [`Error::ConnectionReset`] if reset before the end |
//! | `tcp_poll_write(c, buf)` | `Ok(n)`, `1..=buf.len()` bytes queued for sending; [`Error::Closed`] once this side closed or the peer reset |
//! | `tcp_poll_close(c)` | send FIN after the queued data; `Ready(Ok)` when all data and the FIN were acknowledged (or the peer closed too), `Err(TimedOut)` after [`Limits::linger`](crate::Limits::linger) (then the connection was reset) |
//! | `tcp_abort(c)` | reset the connection now (RST) |
//! | `tcp_release(c)` | the owner is gone: close gracefully (FIN after the queued data) and free everything once closed, or after `linger` at the latest (then reset); never blocks |
//! | `tcp_local(c)` | this end's address (the peer's came with `accept`) |
//! | `udp_bind(port)` | a UDP socket on `port` (0: any free port) |
//! | `udp_poll_recv_from(u, buf)` | one datagram: `(len, from)`; a datagram longer than `buf` is truncated to it |
//! | `udp_poll_send_to(u, buf, to)` | queue one datagram; [`Error::TooLarge`] if it can never fit |
//! | `udp_release(u)` | drop the socket and its queued datagrams |
use core::net::SocketAddrV4;
use core::task::{Context, Poll};

use crate::Error;

/// An object's handle inside its backend.
pub(crate) type Id = u32;

/// A network backend (see the module documentation for the contract).
pub(crate) trait Backend: Send {
    fn tcp_listen(&mut self, port: u16) -> Result<Id, Error>;
    fn tcp_poll_accept(&mut self, listener: Id, cx: &mut Context<'_>) -> Poll<Result<(Id, SocketAddrV4), Error>>;
    fn tcp_release_listener(&mut self, listener: Id);

    fn tcp_poll_read(&mut self, conn: Id, buf: &mut [u8], cx: &mut Context<'_>) -> Poll<Result<usize, Error>>;
    fn tcp_poll_write(&mut self, conn: Id, buf: &[u8], cx: &mut Context<'_>) -> Poll<Result<usize, Error>>;
    fn tcp_poll_close(&mut self, conn: Id, cx: &mut Context<'_>) -> Poll<Result<(), Error>>;
    fn tcp_abort(&mut self, conn: Id);
    fn tcp_release(&mut self, conn: Id);
    fn tcp_local(&self, conn: Id) -> Result<SocketAddrV4, Error>;

    fn udp_bind(&mut self, port: u16) -> Result<Id, Error>;
    fn udp_poll_recv_from(&mut self, sock: Id, buf: &mut [u8], cx: &mut Context<'_>) -> Poll<Result<(usize, SocketAddrV4), Error>>;
    fn udp_poll_send_to(&mut self, sock: Id, buf: &[u8], to: SocketAddrV4, cx: &mut Context<'_>) -> Poll<Result<(), Error>>;
    fn udp_release(&mut self, sock: Id);
}

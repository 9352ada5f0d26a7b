//! The public API: [`init`], [`TcpListener`], [`TcpStream`], [`UdpSocket`].
//! Every type holds an id of the installed backend and calls it through
//! [`with_backend`].

use alloc::boxed::Box;
use core::future::{poll_fn, Future};
use core::net::SocketAddrV4;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use hallows_rt::abi::net_mode;
use hallows_rt::time::Sleep;
use hallows_rt::Boot;

use crate::backend::{Backend, Id};
use crate::{Config, Error, Ipv4Addr, Limits, Mode};

static BACKEND: hallows_rt::sync::Mutex<Option<Box<dyn Backend>>> = hallows_rt::sync::Mutex::new(None);
static CONFIG: spin::Once<Config> = spin::Once::new();

/// Runs `f` on the installed backend. Callers are async tasks, polled with
/// interrupts masked, so the lock is never taken by an interrupted holder
/// on the same core.
pub(crate) fn with_backend<R>(f: impl FnOnce(&mut dyn Backend) -> Result<R, Error>) -> Result<R, Error> {
    match BACKEND.lock().as_mut() {
        Some(b) => f(&mut **b),
        None => Err(Error::NotInitialized),
    }
}

fn poll_backend<R>(
    cx: &mut Context<'_>,
    f: impl FnOnce(&mut dyn Backend, &mut Context<'_>) -> Poll<Result<R, Error>>,
) -> Poll<Result<R, Error>> {
    match BACKEND.lock().as_mut() {
        Some(b) => f(&mut **b, cx),
        None => Poll::Ready(Err(Error::NotInitialized)),
    }
}

/// The configuration [`init`] installed, if any.
pub fn config() -> Option<Config> {
    CONFIG.get().copied()
}

/// Reads the partition's network configuration and starts its backend:
/// the NIC's driver task (modes `poll`, `interrupt`) or the gateway
/// client (mode `gateway`). Call it once, from a task running under
/// [`hallows_rt::task::run`] (the backend spawns its own task).
///
/// The configuration comes from `boot.info().net` (the manifest's `nic`
/// and `listen` keys).
pub fn init(boot: &Boot) -> Result<Config, Error> {
    let cfg = read_config(boot).ok_or(Error::NotInitialized)?;
    let mut slot = BACKEND.lock();
    if slot.is_some() {
        return Err(Error::AlreadyInitialized);
    }
    let backend: Box<dyn Backend> = match cfg.mode {
        Mode::Poll | Mode::Interrupt => crate::nic::start(boot, &cfg)?,
        Mode::Gateway => crate::gateway::start(boot, &cfg)?,
    };
    *slot = Some(backend);
    CONFIG.call_once(|| cfg);
    log::info!(
        "net: {:?} {}/{} router {:?}, limits {:?}",
        cfg.mode,
        cfg.address,
        cfg.prefix_len,
        cfg.router,
        cfg.limits
    );
    Ok(cfg)
}

fn read_config(boot: &Boot) -> Option<Config> {
    let net = &boot.info().net;
    let limits = Limits::from_boot(boot);
    let router = (net.router != [0; 4]).then(|| Ipv4Addr::from(net.router));
    let mode = match net.mode {
        net_mode::POLL => Mode::Poll,
        net_mode::INTERRUPT => Mode::Interrupt,
        net_mode::GATEWAY => Mode::Gateway,
        _ => return None,
    };
    Some(Config { mode, address: Ipv4Addr::from(net.address), prefix_len: net.prefix_len.min(32) as u8, router, limits })
}

/// A TCP listener: connections to one port of this partition.
#[derive(Debug)]
pub struct TcpListener {
    id: Id,
    port: u16,
}

impl TcpListener {
    /// Starts accepting connections on `port` (the manifest must declare it
    /// in `listen` for a gateway to route it here).
    pub fn bind(port: u16) -> Result<TcpListener, Error> {
        if port == 0 {
            return Err(Error::InvalidInput);
        }
        let id = with_backend(|b| b.tcp_listen(port))?;
        Ok(TcpListener { id, port })
    }

    /// The next connection that completed its handshake. Up to
    /// [`Limits::backlog`] connections wait here; further attempts are
    /// refused while the backlog is full.
    pub async fn accept(&mut self) -> Result<TcpStream, Error> {
        let id = self.id;
        let (conn, peer) = poll_fn(|cx| poll_backend(cx, |b, cx| b.tcp_poll_accept(id, cx))).await?;
        Ok(TcpStream { id: conn, peer, released: false })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let id = self.id;
        let _ = with_backend(|b| {
            b.tcp_release_listener(id);
            Ok(())
        });
    }
}

/// An established TCP connection.
///
/// **Drop** closes it gracefully: the data already written and a FIN are
/// sent in the background, and the connection is reset if that has not
/// completed within [`Limits::linger`]; memory is freed when it is closed.
/// [`TcpStream::close`] does the same and waits for it; [`TcpStream::abort`]
/// resets at once.
#[derive(Debug)]
pub struct TcpStream {
    id: Id,
    peer: SocketAddrV4,
    released: bool,
}

impl TcpStream {
    /// Reads up to `buf.len()` bytes; `Ok(0)` at the end of the stream
    /// (the peer closed its side) or for an empty `buf`.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let id = self.id;
        poll_fn(|cx| poll_backend(cx, |b, cx| b.tcp_poll_read(id, buf, cx))).await
    }

    /// [`read`](Self::read) as a poll function: for a caller that polls it
    /// together with something else (a timer) in one `poll_fn`, without
    /// a future per read.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, Error>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        poll_backend(cx, |b, cx| b.tcp_poll_read(id, buf, cx))
    }

    /// [`write`](Self::write) as a poll function (see [`poll_read`](Self::poll_read)).
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, Error>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        poll_backend(cx, |b, cx| b.tcp_poll_write(id, buf, cx))
    }

    /// Writes some of `buf` (at least one byte unless `buf` is empty) into
    /// the send buffer; returns how many bytes.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let id = self.id;
        poll_fn(|cx| poll_backend(cx, |b, cx| b.tcp_poll_write(id, buf, cx))).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Closes gracefully: sends the data written so far, then a FIN, and
    /// waits until the peer acknowledged them (at most [`Limits::linger`];
    /// then the connection is reset and [`Error::TimedOut`] returned).
    /// Data the peer still sends is discarded.
    pub async fn close(mut self) -> Result<(), Error> {
        let id = self.id;
        let linger = config().map_or(Limits::default().linger, |c| c.limits.linger);
        let closing = poll_fn(|cx| poll_backend(cx, |b, cx| b.tcp_poll_close(id, cx)));
        let r = match with_timeout(linger, closing).await {
            Ok(r) => r,
            Err(Elapsed) => {
                let _ = with_backend(|b| {
                    b.tcp_abort(id);
                    Ok(())
                });
                Err(Error::TimedOut)
            }
        };
        self.release();
        r
    }

    /// Resets the connection (RST) and frees it at once.
    pub fn abort(mut self) {
        let id = self.id;
        let _ = with_backend(|b| {
            b.tcp_abort(id);
            Ok(())
        });
        self.release();
    }

    /// The remote end's address.
    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.peer
    }

    /// This end's address.
    pub fn local_addr(&self) -> Result<SocketAddrV4, Error> {
        let id = self.id;
        with_backend(|b| b.tcp_local(id))
    }

    fn release(&mut self) {
        if !core::mem::replace(&mut self.released, true) {
            let id = self.id;
            let _ = with_backend(|b| {
                b.tcp_release(id);
                Ok(())
            });
        }
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.release();
    }
}

/// A UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    id: Id,
}

impl UdpSocket {
    /// Binds `port` (0: any free port).
    pub fn bind(port: u16) -> Result<UdpSocket, Error> {
        let id = with_backend(|b| b.udp_bind(port))?;
        Ok(UdpSocket { id })
    }

    /// Receives one datagram into `buf` (truncated to `buf.len()`):
    /// its length and sender.
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), Error> {
        let id = self.id;
        poll_fn(|cx| poll_backend(cx, |b, cx| b.udp_poll_recv_from(id, buf, cx))).await
    }

    /// Sends one datagram to `to`.
    pub async fn send_to(&mut self, buf: &[u8], to: SocketAddrV4) -> Result<(), Error> {
        let id = self.id;
        poll_fn(|cx| poll_backend(cx, |b, cx| b.udp_poll_send_to(id, buf, to, cx))).await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let id = self.id;
        let _ = with_backend(|b| {
            b.udp_release(id);
            Ok(())
        });
    }
}

/// [`with_timeout`] ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `fut` for at most `limit`: its output, or [`Elapsed`] (then `fut`
/// is dropped). For per-connection read and write timeouts. The timer is
/// made only if `fut` does not complete at once.
pub async fn with_timeout<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = core::pin::pin!(fut);
    let deadline = hallows_rt::time::now() + limit;
    let mut sleep: Option<Sleep> = None;
    poll_fn(move |cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let sleep = sleep.get_or_insert_with(|| hallows_rt::time::sleep_until(deadline));
        match Pin::new(sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}


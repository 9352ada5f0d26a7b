//! The gateway backend (mode `gateway`): the partition owns no NIC; the
//! gateway partition named in `boot.info().net.upstream` terminates TCP and
//! relays each connection over the channels `<gateway>-<self>` and
//! `<self>-<gateway>` with the `hallows-link` protocol (docs/networking.md,
//! "Gateway protocol").
//!
//! One pump task drives the link: each turn it sends what is queued, takes
//! up to a budget of frames from the gateway into the connections' buffers
//! and wakes the tasks whose connections changed, frees the released
//! connections that finished (or resets those past their linger deadline),
//! then yields. Like the NIC backend in poll mode, the core's timer is left
//! off and the loop fires due sleepers itself: no message costs a
//! hypervisor instruction. With the boot argument `net_idle_us=N` the pump
//! instead sleeps N µs (timer on, the core halts) after 256 turns without
//! a frame: on an emulator with fewer host threads than busy vCPUs that
//! frees a host thread for the others (measured 2.6x the keep-alive
//! requests/s on a 2-CPU host, docs/networking.md), at the cost of up to
//! N µs for the first frame after a pause.
//!
//! Bounds: the link holds at most `Limits::sockets` connections (at most
//! `hallows_link::MAX_SLOTS`), buffers at most one announced window per
//! connection (`Limits::rx_buffer`, raised to `hallows_link::MIN_WINDOW`), and keeps at most
//! `Limits::backlog` connections per port waiting for `accept`; the
//! gateway's `OPEN`s beyond those are refused. Sending is bounded by the
//! gateway's window (`write` waits for credit). UDP does not go through a
//! gateway: `UdpSocket::bind` fails with `Unsupported`.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::task::{Context, Poll, Waker};

use hallows_link::{Config as LinkConfig, ConnError, ConnId, ConnState, Frame, Link, RingTransport, Role, MAX_SLOTS};
use hallows_rt::channel::{self, Endpoint, Receiver, Sender};
use hallows_rt::{task, time, Boot};

use crate::backend::{Backend, Id};
use crate::{stats, Config, Error, Limits};

type Transport = RingTransport<Endpoint<Sender<Frame>>, Endpoint<Receiver<Frame>>>;

struct Listener {
    port: u16,
    waker: Option<Waker>,
}

struct Conn {
    link: ConnId,
    port: u16,
    read: Option<Waker>,
    write: Option<Waker>,
    /// Released: freed once the link frees it, reset at this time (ns).
    orphan: Option<u64>,
}

struct Gw {
    link: Link<Transport>,
    listeners: Vec<Option<Listener>>,
    /// Indexed by the link's entry index (`ConnId::index`).
    conns: Vec<Option<Conn>>,
    address: Ipv4Addr,
    limits: Limits,
}

static GW: hallows_rt::sync::Mutex<Option<Gw>> = hallows_rt::sync::Mutex::new(None);

fn name_of(b: &[u8]) -> &str {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..n]).unwrap_or("")
}

/// Starts the gateway client (spawning its channel pump) and returns it.
pub(crate) fn start(boot: &Boot, cfg: &Config) -> Result<Box<dyn Backend>, Error> {
    let upstream = name_of(&boot.info().net.upstream);
    if upstream.is_empty() {
        log::error!("net: gateway mode without an upstream gateway");
        return Err(Error::Unsupported);
    }
    let me = boot.name();
    let (down, up) = (format!("{upstream}-{me}"), format!("{me}-{upstream}"));
    // The receiving end first: a restarted gateway then finds our consumer
    // attached before our HELLO can reach it.
    let rx = channel::receiver::<Frame>(boot, &down).map_err(|e| {
        log::error!("net: channel {down}: {e:?}");
        Error::Unsupported
    })?;
    let tx = channel::sender::<Frame>(boot, &up).map_err(|e| {
        log::error!("net: channel {up}: {e:?}");
        Error::Unsupported
    })?;
    let limits = cfg.limits;
    let lc = LinkConfig {
        max_conns: limits.sockets.min(MAX_SLOTS),
        window: limits.rx_buffer.min(u32::MAX as usize) as u32,
        rx_budget: 64,
        backlog: limits.backlog,
    };
    let link = Link::new(RingTransport { tx, rx }, Role::Service, lc);
    let n = link.config().max_conns;
    log::info!("net: behind gateway `{upstream}` (channels {down}, {up}; {n} connections)");
    *GW.lock() = Some(Gw {
        link,
        listeners: Vec::new(),
        conns: (0..n).map(|_| None).collect(),
        address: cfg.address,
        limits,
    });
    let idle = boot.arg("net_idle_us").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0).min(100_000);
    let turns = boot.arg("net_idle_turns").and_then(|v| v.parse::<u32>().ok()).unwrap_or(IDLE_TURNS).clamp(1, 1 << 20);
    task::spawn(pump(core::time::Duration::from_micros(idle), turns));
    Ok(Box::new(GatewayBackend))
}

/// Turns without a frame from the gateway before the pump naps (with
/// `net_idle_us`), unless the boot argument `net_idle_turns=` says.
const IDLE_TURNS: u32 = 256;

/// The pump task (see the module documentation). With a non-zero `nap`
/// (boot argument `net_idle_us=`), after `turns` turns without a
/// frame it sleeps that long with the core's timer on (the core halts, an
/// emulator's host thread is freed), at the cost of up to `nap` of latency
/// for the next frame; 0 (the default) polls without pause.
async fn pump(nap: core::time::Duration, turns: u32) {
    time::set_polled(true);
    let mut idle = 0u32;
    loop {
        let moved = match GW.lock().as_mut() {
            Some(gw) => gw.turn(),
            None => return,
        };
        idle = if moved { 0 } else { idle.saturating_add(1) };
        if !nap.is_zero() && idle >= turns {
            time::set_polled(false);
            time::sleep(nap).await;
            time::set_polled(true);
        } else {
            time::poll_timers();
            task::yield_now().await;
        }
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

impl Gw {
    /// One turn; whether frames came in.
    fn turn(&mut self) -> bool {
        let frames = self.link.poll();
        let ev = self.link.take_events();
        if ev.backlog || ev.link {
            for l in self.listeners.iter_mut().flatten() {
                wake(&mut l.waker);
            }
        }
        let mut bits = if ev.link { u128::MAX } else { ev.conns };
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= !(1u128 << i);
            if let Some(Some(c)) = self.conns.get_mut(i) {
                wake(&mut c.read);
                wake(&mut c.write);
            }
        }
        self.reap();
        frames > 0
    }

    /// Frees released connections the link has freed; resets those past
    /// their deadline (the link then frees them).
    fn reap(&mut self) {
        let now = time::now_nanos();
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_ref() else { continue };
            let Some(deadline) = c.orphan else { continue };
            let id = c.link;
            if self.link.state(id) == ConnState::Invalid {
                self.conns[i] = None;
                stats::conn_closed();
            } else if now >= deadline {
                self.link.reset(id);
            }
        }
    }

    fn conn(&mut self, id: Id) -> Result<&mut Conn, Error> {
        self.conns
            .get_mut((id & 0xffff) as usize)
            .and_then(Option::as_mut)
            .filter(|c| c.link.raw() == id && c.orphan.is_none())
            .ok_or(Error::InvalidId)
    }

    fn listener(&mut self, id: Id) -> Result<&mut Listener, Error> {
        self.listeners.get_mut(id as usize).and_then(Option::as_mut).ok_or(Error::InvalidId)
    }
}

struct GatewayBackend;

fn with_gw<R>(f: impl FnOnce(&mut Gw) -> Result<R, Error>) -> Result<R, Error> {
    GW.lock().as_mut().map_or(Err(Error::NotInitialized), f)
}

fn poll_gw<R>(f: impl FnOnce(&mut Gw) -> Poll<Result<R, Error>>) -> Poll<Result<R, Error>> {
    GW.lock().as_mut().map_or(Poll::Ready(Err(Error::NotInitialized)), f)
}

macro_rules! ready_err {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Poll::Ready(Err(e)),
        }
    };
}

impl Backend for GatewayBackend {
    fn tcp_listen(&mut self, port: u16) -> Result<Id, Error> {
        with_gw(|g| {
            if g.listeners.iter().flatten().any(|l| l.port == port) {
                return Err(Error::AddrInUse);
            }
            if !g.link.listen(port) {
                return Err(Error::TooManySockets);
            }
            let l = Listener { port, waker: None };
            match g.listeners.iter().position(Option::is_none) {
                Some(i) => {
                    g.listeners[i] = Some(l);
                    Ok(i as Id)
                }
                None => {
                    g.listeners.push(Some(l));
                    Ok((g.listeners.len() - 1) as Id)
                }
            }
        })
    }

    fn tcp_poll_accept(&mut self, listener: Id, cx: &mut Context<'_>) -> Poll<Result<(Id, SocketAddrV4), Error>> {
        poll_gw(|g| {
            let port = ready_err!(g.listener(listener)).port;
            let Some((link, peer)) = g.link.accept(port) else {
                ready_err!(g.listener(listener)).waker = Some(cx.waker().clone());
                return Poll::Pending;
            };
            let i = link.index();
            if g.conns[i].take().is_some() {
                // A released connection whose entry the link already freed
                // and reused (a held one keeps its entry).
                stats::conn_closed();
            }
            g.conns[i] = Some(Conn { link, port, read: None, write: None, orphan: None });
            stats::conn_opened();
            Poll::Ready(Ok((link.raw(), SocketAddrV4::new(Ipv4Addr::from(peer.ip), peer.port))))
        })
    }

    fn tcp_release_listener(&mut self, listener: Id) {
        let _ = with_gw(|g| {
            let port = g.listener(listener)?.port;
            g.listeners[listener as usize] = None;
            g.link.unlisten(port);
            Ok(())
        });
    }

    fn tcp_poll_read(&mut self, conn: Id, buf: &mut [u8], cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        poll_gw(|g| {
            let id = ready_err!(g.conn(conn)).link;
            match g.link.recv(id, buf) {
                Ok(n) => {
                    stats::add_rx(n);
                    Poll::Ready(Ok(n))
                }
                Err(ConnError::WouldBlock) => {
                    ready_err!(g.conn(conn)).read = Some(cx.waker().clone());
                    Poll::Pending
                }
                Err(ConnError::Reset) => Poll::Ready(Err(Error::ConnectionReset)),
                Err(ConnError::Closed | ConnError::Invalid) => Poll::Ready(Ok(0)),
            }
        })
    }

    fn tcp_poll_write(&mut self, conn: Id, buf: &[u8], cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        poll_gw(|g| {
            let id = ready_err!(g.conn(conn)).link;
            match g.link.send(id, buf) {
                Ok(n) => {
                    stats::add_tx(n);
                    Poll::Ready(Ok(n))
                }
                Err(ConnError::WouldBlock) => {
                    if g.link.writable(id) > 0 {
                        // Credit but no ring room: the gateway drains the
                        // ring without telling us; try again next turn.
                        cx.waker().wake_by_ref();
                    } else {
                        ready_err!(g.conn(conn)).write = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                Err(ConnError::Reset) => Poll::Ready(Err(Error::ConnectionReset)),
                Err(_) => Poll::Ready(Err(Error::Closed)),
            }
        })
    }

    fn tcp_poll_close(&mut self, conn: Id, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        poll_gw(|g| {
            let id = ready_err!(g.conn(conn)).link;
            if g.link.shutdown(id).is_err() || g.link.state(id) == ConnState::Reset {
                return Poll::Ready(Err(Error::ConnectionReset));
            }
            if g.link.is_drained(id) {
                return Poll::Ready(Ok(()));
            }
            ready_err!(g.conn(conn)).write = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    fn tcp_abort(&mut self, conn: Id) {
        let _ = with_gw(|g| {
            let id = g.conn(conn)?.link;
            g.link.reset(id);
            Ok(())
        });
    }

    fn tcp_release(&mut self, conn: Id) {
        let _ = with_gw(|g| {
            let linger = g.limits.linger.as_nanos().min(u128::from(u64::MAX)) as u64;
            let c = g.conn(conn)?;
            c.orphan = Some(time::now_nanos().saturating_add(linger));
            c.read = None;
            c.write = None;
            let id = c.link;
            g.link.close(id);
            g.reap();
            Ok(())
        });
    }

    fn tcp_local(&self, conn: Id) -> Result<SocketAddrV4, Error> {
        with_gw(|g| {
            let address = g.address;
            g.conn(conn).map(|c| SocketAddrV4::new(address, c.port))
        })
    }

    fn udp_bind(&mut self, _port: u16) -> Result<Id, Error> {
        Err(Error::Unsupported)
    }

    fn udp_poll_recv_from(&mut self, _sock: Id, _buf: &mut [u8], _cx: &mut Context<'_>) -> Poll<Result<(usize, SocketAddrV4), Error>> {
        Poll::Ready(Err(Error::InvalidId))
    }

    fn udp_poll_send_to(&mut self, _sock: Id, _buf: &[u8], _to: SocketAddrV4, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Err(Error::InvalidId))
    }

    fn udp_release(&mut self, _sock: Id) {}
}

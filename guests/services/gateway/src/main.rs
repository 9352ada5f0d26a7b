//! The gateway guest: owns the partition's NIC through
//! `hallows-net` (smoltcp), listens on every route's port
//! (`boot.info().net.routes`), and relays each accepted TCP connection to
//! the route's service partition over the channels `<self>-<service>` and
//! `<service>-<self>` with the `hallows-link` protocol (docs/networking.md,
//! "Gateway protocol"). The service runs `hallows-net` in gateway mode and
//! sees an ordinary `TcpListener`.
//!
//! * One pump task polls every route's link (a bounded number of frames
//!   each turn) and wakes the connection tasks whose link connection
//!   changed; it also resets link connections that linger past
//!   `linger_ms` after their TCP side ended.
//! * One task per route accepts TCP connections and opens a link
//!   connection for each, if the service is up (it said `HELLO`) and has
//!   fewer than `route_conns` connections; otherwise the client is reset
//!   at once. Routes to the same partition share its link.
//! * One task per connection moves bytes both ways under the link's flow
//!   control: it reads the client only while the service's window has
//!   room, and reads the link only while the client takes what it sent, so
//!   neither side can make the gateway hold more than a window and two
//!   8 KiB buffers per connection. A connection idle for `idle_ms` (no byte
//!   either way) is reset on both sides.
//!
//! Each port of the gateway's own `listen` list serves a small HTTP admin
//! endpoint: `GET /stats` (the counters), and, with the boot argument
//! `quit`, `GET /quit`: the gateway then prints its counters and exits 0
//! once its connections are gone (at most 3 s).
//!
//! Boot arguments: `route_conns=` (connections per service partition, all
//! its routes together, default 32, at most 128), `idle_ms=` (default
//! 30000), `linger_ms=` (default 5000), `window=` (bytes per connection
//! and direction, default 32768), `quit`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use hallows_rt::Boot;

hallows_rt::entry!(main);

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    hallows_rt::task::run(boot, app::serve(b))
}

mod app {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::future::{poll_fn, Future};
    use core::pin::{pin, Pin};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use core::task::{Context, Poll, Waker};
    use core::time::Duration;

    use hallows_link::{Config, ConnError, ConnId, ConnState, Frame, Link, PeerAddr, RingTransport, Role, MAX_SLOTS};
    use hallows_net::{stats, with_timeout, TcpListener, TcpStream};
    use hallows_rt::channel::{self, Endpoint, Receiver, Sender};
    use hallows_rt::task::{spawn, yield_now};
    use hallows_rt::{println, time, Boot};

    type Transport = RingTransport<Endpoint<Sender<Frame>>, Endpoint<Receiver<Frame>>>;

    /// Bytes buffered per connection and direction in the gateway (besides
    /// the link's window).
    const BUF: usize = 8192;

    /// Counters of one route.
    #[derive(Default)]
    struct Counters {
        accepted: AtomicU64,
        /// Clients reset at once: the service was down or the route full.
        refused: AtomicU64,
        completed: AtomicU64,
        client_errors: AtomicU64,
        service_resets: AtomicU64,
        idle_timeouts: AtomicU64,
        up_bytes: AtomicU64,
        down_bytes: AtomicU64,
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A service partition: one link (channel pair) for all its routes.
    struct Route {
        ports: Vec<u16>,
        to: String,
        link: Link<Transport>,
        /// One waker per link entry: the connection task using it.
        wakers: Vec<Option<Waker>>,
        /// Link connections whose TCP side ended, and when to reset them.
        lingering: Vec<(ConnId, u64)>,
        /// Connections with a task.
        active: usize,
    }

    static ROUTES: hallows_rt::sync::Mutex<Vec<Route>> = hallows_rt::sync::Mutex::new(Vec::new());
    static COUNTERS: spin::Once<Vec<Counters>> = spin::Once::new();
    static QUIT: AtomicBool = AtomicBool::new(false);

    #[derive(Clone, Copy)]
    struct Settings {
        route_conns: usize,
        idle: Duration,
        linger: Duration,
        quit: bool,
    }

    fn padded(b: &[u8]) -> &str {
        let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        core::str::from_utf8(&b[..n]).unwrap_or("")
    }

    fn counters(r: usize) -> &'static Counters {
        &COUNTERS.get().expect("set before any task")[r]
    }

    pub async fn serve(boot: Boot) -> u64 {
        let num = |k: &str, d: u64| boot.arg(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(d);
        let settings = Settings {
            route_conns: (num("route_conns", 32) as usize).clamp(1, MAX_SLOTS),
            idle: Duration::from_millis(num("idle_ms", 30_000).max(1)),
            linger: Duration::from_millis(num("linger_ms", 5_000)),
            quit: boot.has("quit"),
        };
        let window = num("window", 32 * 1024).min(u64::from(u32::MAX)) as u32;
        let cfg = match hallows_net::init(&boot) {
            Ok(c) => c,
            Err(e) => {
                println!("gateway: network init failed: {e}");
                return 1;
            }
        };
        let net = &boot.info().net;
        let me = boot.name();
        let mut routes: Vec<Route> = Vec::new();
        // (port, service index)
        let mut ports: Vec<(u16, usize)> = Vec::new();
        for r in net.routes.iter().take((net.route_count as usize).min(net.routes.len())) {
            let to = padded(&r.to);
            if let Some(i) = routes.iter().position(|x| x.to == to) {
                routes[i].ports.push(r.port);
                ports.push((r.port, i));
                continue;
            }
            let (down, up) = (format!("{to}-{me}"), format!("{me}-{to}"));
            // Receiving end first (see hallows_link::Link::new).
            let rx = channel::receiver::<Frame>(&boot, &down);
            let tx = channel::sender::<Frame>(&boot, &up);
            let (Ok(rx), Ok(tx)) = (rx, tx) else {
                println!("gateway: route {} to {to}: channels {down} and {up} missing or of the wrong geometry", r.port);
                return 1;
            };
            let config = Config { max_conns: settings.route_conns, window, rx_budget: 64, backlog: 1 };
            ports.push((r.port, routes.len()));
            routes.push(Route {
                ports: vec![r.port],
                to: String::from(to),
                link: Link::new(RingTransport { tx, rx }, Role::Gateway, config),
                wakers: vec![None; settings.route_conns],
                lingering: Vec::new(),
                active: 0,
            });
        }
        if routes.is_empty() {
            println!("gateway: no routes");
            return 1;
        }
        COUNTERS.call_once(|| routes.iter().map(|_| Counters::default()).collect());
        let list: Vec<String> = ports.iter().map(|&(p, i)| format!("{p} -> {}", routes[i].to)).collect();
        *ROUTES.lock() = routes;
        spawn(pump(settings));
        for &(port, i) in &ports {
            match TcpListener::bind(port) {
                Ok(l) => {
                    spawn(accept_loop(i, port, l, settings));
                }
                Err(e) => {
                    println!("gateway: cannot listen on {port}: {e}");
                    return 1;
                }
            }
        }
        for &port in net.listen.iter().take((net.listen_count as usize).min(net.listen.len())) {
            if ports.iter().any(|(p, _)| *p == port) {
                continue;
            }
            match TcpListener::bind(port) {
                Ok(l) => {
                    spawn(admin_loop(l, settings));
                }
                Err(e) => println!("gateway: no admin port {port}: {e}"),
            }
        }
        println!("gateway ready: {} routes {}", cfg.address, list.join(", "));
        poll_fn(|cx| {
            if QUIT.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                // Checked again on every admin request.
                *QUIT_WAKER.lock() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let end = time::now() + Duration::from_secs(3);
        while (live_connections() > 0 || stats().sockets > 1) && time::now() < end {
            time::sleep(Duration::from_millis(10)).await;
        }
        println!("gateway stats: {}", report());
        println!("net stats: {}", stats());
        0
    }

    static QUIT_WAKER: hallows_rt::sync::Mutex<Option<Waker>> = hallows_rt::sync::Mutex::new(None);

    fn live_connections() -> usize {
        ROUTES.lock().iter().map(|r| r.link.live() + r.active).sum()
    }

    /// The counters, one line.
    fn report() -> String {
        let routes = ROUTES.lock();
        let mut out = String::new();
        for (i, r) in routes.iter().enumerate() {
            let c = counters(i);
            let l = r.link.stats();
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            out += &format!(
                "[{} ports={}: up={} active={} live={} accepted={} refused={} completed={} \
                 client_errors={} service_resets={} idle_timeouts={} up_bytes={} down_bytes={} link_opened={} \
                 link_closed={} link_violations={} link_stray={} link_restarts={} link_corrupt={}] ",
                r.to,
                r.ports.iter().map(|p| format!("{p}")).collect::<Vec<_>>().join(","),
                r.link.is_up(),
                r.active,
                r.link.live(),
                get(&c.accepted),
                get(&c.refused),
                get(&c.completed),
                get(&c.client_errors),
                get(&c.service_resets),
                get(&c.idle_timeouts),
                get(&c.up_bytes),
                get(&c.down_bytes),
                l.opened,
                l.closed,
                l.violations,
                l.stray,
                l.peer_restarts,
                l.corrupt,
            );
        }
        out
    }

    /// Polls every link, wakes the connections that changed, resets
    /// lingering link connections past their deadline.
    async fn pump(settings: Settings) {
        let linger = settings.linger.as_nanos() as u64;
        loop {
            {
                let mut routes = ROUTES.lock();
                let now = time::now_nanos();
                for r in routes.iter_mut() {
                    r.link.poll();
                    let ev = r.link.take_events();
                    let mut bits = if ev.link { u128::MAX } else { ev.conns };
                    while bits != 0 {
                        let i = bits.trailing_zeros() as usize;
                        bits &= !(1u128 << i);
                        if let Some(w) = r.wakers.get_mut(i).and_then(Option::take) {
                            w.wake();
                        }
                    }
                    let Route { link, lingering, .. } = r;
                    lingering.retain(|&(id, since)| {
                        if link.state(id) == ConnState::Invalid {
                            return false;
                        }
                        if now.saturating_sub(since) >= linger {
                            link.reset(id);
                        }
                        link.state(id) != ConnState::Invalid
                    });
                }
            }
            // The NIC's driver task reads the clock and fires sleepers too;
            // yielding lets it and the connection tasks run.
            yield_now().await;
        }
    }

    async fn accept_loop(r: usize, port: u16, mut listener: TcpListener, settings: Settings) {
        loop {
            let Ok(stream) = listener.accept().await else { continue };
            bump(&counters(r).accepted);
            let peer = stream.peer_addr();
            let opened = {
                let mut routes = ROUTES.lock();
                let route = &mut routes[r];
                if route.active >= settings.route_conns {
                    None
                } else {
                    match route.link.open(port, PeerAddr { ip: peer.ip().octets(), port: peer.port() }) {
                        Ok(id) => {
                            route.active += 1;
                            Some(id)
                        }
                        Err(_) => None,
                    }
                }
            };
            match opened {
                Some(id) => {
                    spawn(relay(r, id, stream, settings));
                }
                None => {
                    bump(&counters(r).refused);
                    stream.abort();
                }
            }
        }
    }

    /// How a relayed connection ended.
    enum End {
        /// Both sides finished (or the service finished and the client got
        /// everything): close the client gracefully.
        Done,
        /// The client failed or reset.
        Client,
        /// The service reset (or refused) the connection, or restarted.
        Service,
        Idle,
    }

    /// Polls `fut` once (a fresh future each time: the socket calls keep
    /// no state between polls).
    fn poll_once<F: Future>(fut: F, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut fut = pin!(fut);
        fut.as_mut().poll(cx)
    }

    async fn relay(r: usize, id: ConnId, mut s: TcpStream, settings: Settings) {
        let c = counters(r);
        let mut up = vec![0u8; BUF];
        let (mut up_len, mut up_off) = (0usize, 0usize);
        let mut down = vec![0u8; BUF];
        let (mut down_len, mut down_off) = (0usize, 0usize);
        let (mut client_eof, mut service_eof) = (false, false);
        let mut deadline = time::now() + settings.idle;
        let mut sleep = time::sleep_until(deadline);
        let end = poll_fn(|cx| loop {
            let mut progress = false;
            // Client to service.
            if up_off == up_len && !client_eof {
                // Read the client only once the service has room: a service
                // that does not read stops this read, and TCP pushes back.
                let room = {
                    let routes = ROUTES.lock();
                    routes[r].link.writable(id) > 0 || routes[r].link.state(id) == ConnState::Connecting
                };
                if room {
                    match poll_once(s.read(&mut up), cx) {
                        Poll::Ready(Ok(0)) => {
                            client_eof = true;
                            progress = true;
                            let _ = ROUTES.lock()[r].link.shutdown(id);
                        }
                        Poll::Ready(Ok(n)) => {
                            (up_len, up_off) = (n, 0);
                            progress = true;
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(End::Client),
                        Poll::Pending => {}
                    }
                }
            }
            let mut routes = ROUTES.lock();
            let route = &mut routes[r];
            if up_off < up_len {
                match route.link.send(id, &up[up_off..up_len]) {
                    Ok(n) => {
                        up_off += n;
                        c.up_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        progress = true;
                        if up_off == up_len && client_eof {
                            let _ = route.link.shutdown(id);
                        }
                    }
                    Err(ConnError::WouldBlock) => {}
                    Err(_) => return Poll::Ready(End::Service),
                }
            }
            // Service to client.
            if down_off == down_len && !service_eof {
                match route.link.recv(id, &mut down) {
                    Ok(0) => {
                        service_eof = true;
                        progress = true;
                    }
                    Ok(n) => {
                        (down_len, down_off) = (n, 0);
                        progress = true;
                    }
                    Err(ConnError::WouldBlock) => {}
                    Err(_) => return Poll::Ready(End::Service),
                }
            }
            if route.link.state(id) == ConnState::Reset {
                return Poll::Ready(End::Service);
            }
            // Woken by the pump when the link connection changes.
            route.wakers[id.index()] = Some(cx.waker().clone());
            if up_off < up_len && route.link.writable(id) > 0 {
                // Credit but the ring was full: the service drains it
                // without telling us; try again after the others ran.
                cx.waker().wake_by_ref();
            }
            drop(routes);
            if down_off < down_len {
                match poll_once(s.write(&down[down_off..down_len]), cx) {
                    Poll::Ready(Ok(n)) => {
                        down_off += n;
                        c.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(End::Client),
                    Poll::Pending => {}
                }
            }
            if service_eof && down_off == down_len {
                return Poll::Ready(End::Done);
            }
            if progress {
                deadline = time::now() + settings.idle;
                continue;
            }
            if Pin::new(&mut sleep).poll(cx).is_ready() {
                if time::now() >= deadline {
                    return Poll::Ready(End::Idle);
                }
                sleep = time::sleep_until(deadline);
                continue;
            }
            return Poll::Pending;
        })
        .await;
        drop(sleep);
        let reset_link = !matches!(end, End::Done);
        {
            let mut routes = ROUTES.lock();
            let route = &mut routes[r];
            if reset_link {
                route.link.reset(id);
            }
            route.link.close(id);
            route.wakers[id.index()] = None;
            route.active -= 1;
            if route.link.state(id) != ConnState::Invalid {
                route.lingering.push((id, time::now_nanos()));
            }
        }
        match end {
            End::Done => {
                bump(&c.completed);
                // The service ended its side: end the client's (anything
                // the client still sends is discarded).
                let _ = s.close().await;
            }
            End::Client => {
                bump(&c.client_errors);
                s.abort();
            }
            End::Service => {
                bump(&c.service_resets);
                s.abort();
            }
            End::Idle => {
                bump(&c.idle_timeouts);
                s.abort();
            }
        }
    }

    /// A tiny HTTP endpoint on the gateway's own ports: `/stats`, `/quit`.
    /// One request at a time (each bounded by its timeouts): a client
    /// flooding this port holds one socket, never the routed ports' pool.
    async fn admin_loop(mut listener: TcpListener, settings: Settings) {
        loop {
            match listener.accept().await {
                Ok(s) => admin(s, settings).await,
                Err(_) => hallows_rt::task::yield_now().await,
            }
        }
    }

    async fn admin(mut s: TcpStream, settings: Settings) {
        let mut buf = [0u8; 1024];
        let mut have = 0;
        let head = with_timeout(Duration::from_secs(5), async {
            while have < buf.len() {
                match s.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => have += n,
                }
                if buf[..have].windows(4).any(|w| w == b"\r\n\r\n") {
                    return true;
                }
            }
            false
        })
        .await;
        if !matches!(head, Ok(true)) {
            s.abort();
            return;
        }
        let line = core::str::from_utf8(&buf[..have]).unwrap_or("").lines().next().unwrap_or("");
        let path = line.split(' ').nth(1).unwrap_or("");
        let (code, body) = match path {
            "/stats" => (200, format!("{}\nnet {}\n", report(), stats())),
            "/quit" if settings.quit => (200, String::from("bye\n")),
            _ => (404, String::from("not found\n")),
        };
        let resp = format!(
            "HTTP/1.1 {code} {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            if code == 200 { "OK" } else { "Not Found" },
            body.len()
        );
        let _ = with_timeout(Duration::from_secs(5), s.write_all(resp.as_bytes())).await;
        let _ = s.close().await;
        if path == "/quit" && settings.quit {
            QUIT.store(true, Ordering::Release);
            if let Some(w) = QUIT_WAKER.lock().take() {
                w.wake();
            }
        }
    }
}

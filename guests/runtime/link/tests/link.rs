//! The link protocol on in-memory transports: honest exchanges, flow
//! control, connection churn, restarts, and hostile peers (proptest).

use hallows_link::frame::{kind, role, MAGIC, VERSION};
use hallows_link::{
    Config, ConnError, ConnId, ConnState, Frame, Link, MemTransport, OpenError, PeerAddr, Role, Transport,
    TransportError, MAX_WINDOW, PAYLOAD,
};
use proptest::prelude::*;

const CLIENT: PeerAddr = PeerAddr { ip: [10, 0, 2, 2], port: 40000 };

fn pair(cap: usize, gw: Config, svc: Config) -> (Link<MemTransport>, Link<MemTransport>) {
    let (a, b) = MemTransport::pair(cap);
    let mut g = Link::new(a, Role::Gateway, gw);
    let mut s = Link::new(b, Role::Service, svc);
    s.listen(80);
    s.poll();
    g.poll();
    assert!(g.is_up());
    (g, s)
}

fn pump(g: &mut Link<MemTransport>, s: &mut Link<MemTransport>) {
    for _ in 0..4 {
        s.poll();
        g.poll();
    }
}

/// Opens a connection and accepts it.
fn connect(g: &mut Link<MemTransport>, s: &mut Link<MemTransport>) -> (ConnId, ConnId) {
    let c = g.open(80, CLIENT).unwrap();
    s.poll();
    let (a, peer) = s.accept(80).unwrap();
    assert_eq!(peer, CLIENT);
    g.poll();
    assert_eq!(g.state(c), ConnState::Open);
    (c, a)
}

fn read_all(l: &mut Link<MemTransport>, id: ConnId, out: &mut Vec<u8>) -> Result<bool, ConnError> {
    let mut buf = [0u8; 3000];
    loop {
        match l.recv(id, &mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(ConnError::WouldBlock) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn echo_and_close_leave_nothing() {
    let (mut g, mut s) = pair(64, Config::default(), Config::default());
    let (c, a) = connect(&mut g, &mut s);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let (mut sent, mut echoed, mut back) = (0, 0, Vec::new());
    let mut at_svc = Vec::new();
    for _ in 0..10_000 {
        if sent < data.len() {
            sent += g.send(c, &data[sent..]).unwrap_or(0);
            if sent == data.len() {
                g.shutdown(c).unwrap();
            }
        }
        s.poll();
        let eof = read_all(&mut s, a, &mut at_svc).unwrap();
        while echoed < at_svc.len() {
            match s.send(a, &at_svc[echoed..]) {
                Ok(n) => echoed += n,
                Err(ConnError::WouldBlock) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        if eof && echoed == at_svc.len() {
            s.close(a);
        }
        g.poll();
        if read_all(&mut g, c, &mut back).unwrap() {
            break;
        }
    }
    assert_eq!(back, data);
    g.close(c);
    pump(&mut g, &mut s);
    assert_eq!((g.live(), s.live()), (0, 0));
    assert_eq!(g.stats().violations + s.stats().violations, 0);
    assert_eq!(g.stats().closed, 1);
    assert_eq!(s.stats().closed, 1);
}

#[test]
fn a_service_that_never_reads_holds_one_window() {
    let cfg = Config { window: 8192, ..Config::default() };
    let (mut g, mut s) = pair(64, cfg, cfg);
    let (c, a) = connect(&mut g, &mut s);
    let (c2, a2) = connect(&mut g, &mut s);
    let big = vec![1u8; 1 << 20];
    let mut sent = 0;
    for _ in 0..100 {
        sent += g.send(c, &big).unwrap_or(0);
        s.poll();
        g.poll();
    }
    assert_eq!(sent, 8192, "no more than the window");
    assert_eq!(s.buffered(), 8192);
    assert_eq!(g.send(c, b"x"), Err(ConnError::WouldBlock));
    // The other connection is unaffected.
    assert_eq!(g.send(c2, b"hello"), Ok(5));
    s.poll();
    let mut buf = [0u8; 16];
    assert_eq!(s.recv(a2, &mut buf), Ok(5));
    // Reading a quarter returns credit.
    let mut buf = vec![0u8; 2048];
    assert_eq!(s.recv(a, &mut buf), Ok(2048));
    s.poll();
    g.poll();
    assert_eq!(g.writable(c), 2048);
}

#[test]
fn thousand_connections_sequential_and_concurrent() {
    let (mut g, mut s) = pair(64, Config::default(), Config { max_conns: 16, ..Config::default() });
    for round in 0..1000u32 {
        let (c, a) = connect(&mut g, &mut s);
        let req = format!("request {round}");
        g.send(c, req.as_bytes()).unwrap();
        g.shutdown(c).unwrap();
        s.poll();
        let mut got = Vec::new();
        assert!(read_all(&mut s, a, &mut got).unwrap());
        assert_eq!(got, req.as_bytes());
        s.send(a, b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        s.close(a);
        g.poll();
        let mut resp = Vec::new();
        assert!(read_all(&mut g, c, &mut resp).unwrap());
        g.close(c);
        pump(&mut g, &mut s);
    }
    assert_eq!((g.live(), s.live()), (0, 0));
    // 16 at once, closed in reverse order.
    let conns: Vec<_> = (0..16).map(|_| connect(&mut g, &mut s)).collect();
    assert_eq!(g.open(80, CLIENT).map(|_| ()), Ok(()), "the gateway has room...");
    s.poll();
    g.poll();
    assert_eq!(s.stats().refused, 1, "...the service refuses the 17th");
    for (c, a) in conns.into_iter().rev() {
        s.close(a);
        g.close(c);
    }
    for _ in 0..64 {
        g.poll();
        s.poll();
    }
    // The refused one stays the gateway's until closed.
    assert_eq!(s.live(), 0);
    assert_eq!(g.live(), 1);
}

#[test]
fn refused_and_unknown_ports() {
    let (mut g, mut s) = pair(64, Config::default(), Config::default());
    let c = g.open(81, CLIENT).unwrap();
    pump(&mut g, &mut s);
    assert_eq!(g.state(c), ConnState::Reset);
    assert_eq!(g.send(c, b"x"), Err(ConnError::Reset));
    g.close(c);
    assert_eq!(g.state(c), ConnState::Invalid);
    pump(&mut g, &mut s);
    assert_eq!((g.live(), s.live()), (0, 0));
    assert_eq!(g.stats().refused, 1);
}

#[test]
fn gateway_opens_nothing_before_hello() {
    let (a, _b) = MemTransport::pair(8);
    let mut g = Link::new(a, Role::Gateway, Config::default());
    g.poll();
    assert_eq!(g.open(80, CLIENT), Err(OpenError::PeerDown));
}

#[test]
fn a_second_hello_resets_everything() {
    let (mut g, mut s) = pair(64, Config::default(), Config::default());
    let (c, _a) = connect(&mut g, &mut s);
    // The service restarts: a new link end on the same queues.
    let t = std::mem::replace(s.transport_mut(), MemTransport::pair(1).0);
    let mut s2 = Link::new(t, Role::Service, Config::default());
    s2.listen(80);
    s2.poll();
    g.poll();
    assert_eq!(g.state(c), ConnState::Reset);
    assert!(g.is_up());
    g.close(c);
    let (c, a) = connect(&mut g, &mut s2);
    g.send(c, b"again").unwrap();
    s2.poll();
    let mut buf = [0u8; 8];
    assert_eq!(s2.recv(a, &mut buf), Ok(5));
}

/// A transport that reports a restart once.
struct Restarting {
    inner: MemTransport,
    restart_rx: bool,
}

impl Transport for Restarting {
    fn send(&mut self, f: &Frame) -> Result<(), TransportError> {
        self.inner.send(f)
    }
    fn recv(&mut self) -> Result<Frame, TransportError> {
        if std::mem::take(&mut self.restart_rx) {
            return Err(TransportError::PeerRestarted);
        }
        self.inner.recv()
    }
}

#[test]
fn a_ring_restart_resets_everything_and_says_hello_again() {
    let (a, b) = MemTransport::pair(64);
    let mut g = Link::new(Restarting { inner: a, restart_rx: false }, Role::Gateway, Config::default());
    let mut s = Link::new(b, Role::Service, Config::default());
    s.listen(80);
    s.poll();
    g.poll();
    let c = g.open(80, CLIENT).unwrap();
    s.poll();
    let (sa, _) = s.accept(80).unwrap();
    g.poll();
    g.transport_mut().restart_rx = true;
    g.poll();
    assert_eq!(g.state(c), ConnState::Reset);
    assert!(!g.is_up());
    assert_eq!(g.stats().peer_restarts, 1);
    // The gateway re-announced itself: the service resets what it had.
    s.poll();
    assert_eq!(s.state(sa), ConnState::Reset);
    s.close(sa);
    g.close(c);
    assert_eq!(s.live(), 0);
    assert_eq!(g.live(), 0);
}

fn hello(r: u8) -> Frame {
    let mut f = Frame::new(kind::HELLO, 0);
    f.arg0 = VERSION;
    f.arg1 = MAGIC;
    f.flags = r;
    f
}

#[test]
fn violations_reset_only_their_connection() {
    let (mut g, mut s) = pair(64, Config::default(), Config::default());
    let (c1, _a1) = connect(&mut g, &mut s);
    let (c2, a2) = connect(&mut g, &mut s);
    // The service (hostile) sends more than the gateway's window on c1.
    let wire1 = {
        // Find c1's wire id: the next frame the service sends for a1 names it.
        s.send(_a1, b"x").unwrap();
        s.transport().tx.borrow_mut().pop_back().unwrap().conn
    };
    for _ in 0..(MAX_WINDOW as usize / PAYLOAD + 2) {
        let mut f = Frame::new(kind::DATA, wire1);
        f.len = PAYLOAD as u16;
        s.transport_mut().send(&f).unwrap_or(());
        g.poll();
    }
    assert_eq!(g.state(c1), ConnState::Reset);
    assert!(g.stats().violations >= 1);
    assert!(g.buffered() <= Config::default().window as usize);
    assert_eq!(g.state(c2), ConnState::Open);
    g.send(c2, b"ok").unwrap();
    s.poll();
    let mut buf = [0u8; 4];
    assert_eq!(s.recv(a2, &mut buf), Ok(2));
}

#[derive(Clone, Debug)]
enum Op {
    /// The hostile side sends a frame of its choice.
    Inject { kind: u8, flags: u8, len: u16, conn_pick: u8, conn_raw: u32, arg0: u32, arg1: u32 },
    /// The hostile side sends a well-formed frame for an id it saw.
    Valid { kind: u8, conn_pick: u8, n: u16 },
    /// The honest side acts.
    Open,
    Send(u8, u16),
    Recv(u8),
    Shutdown(u8),
    Reset(u8),
    Close(u8),
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop_oneof![1 => 0u8..=255, 6 => 1u8..=7], any::<u8>(), any::<u16>(), any::<u8>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(kind, flags, len, conn_pick, conn_raw, arg0, arg1)| Op::Inject { kind, flags, len, conn_pick, conn_raw, arg0, arg1 }
        ),
        6 => (2u8..=7, any::<u8>(), any::<u16>()).prop_map(|(kind, conn_pick, n)| Op::Valid { kind, conn_pick, n }),
        1 => Just(Op::Open),
        2 => (any::<u8>(), any::<u16>()).prop_map(|(c, n)| Op::Send(c, n)),
        2 => any::<u8>().prop_map(Op::Recv),
        1 => any::<u8>().prop_map(Op::Shutdown),
        1 => any::<u8>().prop_map(Op::Reset),
        1 => any::<u8>().prop_map(Op::Close),
        3 => Just(Op::Poll),
    ]
}

/// Runs `ops` against an honest `role` end whose peer writes whatever it
/// likes (and also replays ids the honest side used).
fn hostile(role_: Role, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let cfg = Config { max_conns: 8, window: 4096, rx_budget: 16, backlog: 4 };
    let (a, mut peer) = MemTransport::pair(32);
    let mut l = Link::new(a, role_, cfg);
    l.listen(80);
    let peer_role = if role_ == Role::Gateway { role::SERVICE } else { role::GATEWAY };
    peer.send(&hello(peer_role)).unwrap();
    l.poll();
    let mut ids: Vec<ConnId> = Vec::new();
    let mut closed: Vec<ConnId> = Vec::new();
    let mut seen_wire: Vec<u32> = vec![0x1_0000, 0x2_0001];
    let data = vec![0xabu8; 70_000];
    for op in ops {
        // What the honest side sent: remember its ids, drop the rest.
        while let Ok(f) = peer.recv() {
            if !seen_wire.contains(&f.conn) && seen_wire.len() < 64 {
                seen_wire.push(f.conn);
            }
        }
        let pick = |ids: &Vec<ConnId>, c: u8| ids.get(c as usize % ids.len().max(1)).copied();
        match op {
            Op::Inject { kind, flags, len, conn_pick, conn_raw, arg0, arg1 } => {
                let mut f = Frame::new(kind, 0);
                f.flags = flags;
                // Mostly plausible: an OPEN's 6, a DATA length near the payload.
                f.len = match flags % 4 {
                    0 => len,
                    1 => 6,
                    _ => len % (PAYLOAD as u16 + 16),
                };
                f.conn = if conn_pick < 200 { seen_wire[conn_pick as usize % seen_wire.len()] } else { conn_raw };
                f.arg0 = match arg0 % 4 {
                    0 => arg0,
                    1 => arg0 % 8192,
                    _ => arg0 % (2 * MAX_WINDOW),
                };
                f.arg1 = if arg1 % 2 == 0 { 80 } else { arg1 };
                if kind == kind::HELLO && flags % 2 == 0 {
                    f = hello(peer_role);
                }
                let _ = peer.send(&f);
            }
            Op::Valid { kind, conn_pick, n } => {
                let mut f = Frame::new(kind, seen_wire[conn_pick as usize % seen_wire.len()]);
                match kind {
                    kind::OPEN => {
                        f.arg0 = 4096;
                        f.arg1 = 80;
                        f.len = 6;
                    }
                    kind::ACCEPT => f.arg0 = 4096,
                    kind::DATA => f.len = n % PAYLOAD as u16 + 1,
                    kind::CREDIT => f.arg0 = u32::from(n % 3000) + 1,
                    _ => {}
                }
                let _ = peer.send(&f);
            }
            Op::Open => {
                if role_ == Role::Gateway {
                    if let Ok(id) = l.open(80, CLIENT) {
                        ids.push(id);
                    }
                } else if let Some((id, _)) = l.accept(80) {
                    ids.push(id);
                }
            }
            Op::Send(c, n) => {
                if let Some(id) = pick(&ids, c) {
                    let _ = l.send(id, &data[..n as usize % data.len()]);
                }
            }
            Op::Recv(c) => {
                if let Some(id) = pick(&ids, c) {
                    let mut buf = [0u8; 5000];
                    let _ = l.recv(id, &mut buf);
                }
            }
            Op::Shutdown(c) => {
                if let Some(id) = pick(&ids, c) {
                    let _ = l.shutdown(id);
                }
            }
            Op::Reset(c) => {
                if let Some(id) = pick(&ids, c) {
                    l.reset(id);
                }
            }
            Op::Close(c) => {
                if let Some(id) = pick(&ids, c) {
                    l.close(id);
                    ids.retain(|&x| x != id);
                    closed.push(id);
                }
            }
            Op::Poll => {}
        }
        let n = l.poll();
        prop_assert!(n <= cfg.rx_budget);
        prop_assert!(l.live() <= cfg.max_conns);
        prop_assert!(l.buffered() <= cfg.max_conns * cfg.window as usize);
        for &id in &ids {
            prop_assert!(l.readable(id) <= cfg.window as usize);
        }
    }
    // Closing every handle and a quiet, vanished peer: the honest side
    // resets what is left (as an idle timeout would) and frees it all.
    for id in ids {
        l.reset(id);
        l.close(id);
    }
    // Lingering ones (their linger timeout).
    for id in closed {
        l.reset(id);
        prop_assert_eq!(l.state(id), ConnState::Invalid);
    }
    l.poll();
    while peer.recv().is_ok() {}
    l.poll();
    if role_ == Role::Gateway {
        prop_assert_eq!(l.live(), 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_service(ops in proptest::collection::vec(op(), 1..200)) {
        hostile(Role::Gateway, ops)?;
    }

    #[test]
    fn hostile_gateway(ops in proptest::collection::vec(op(), 1..200)) {
        hostile(Role::Service, ops)?;
    }

    /// Two honest ends, random interleaving, a small ring: every stream
    /// arrives byte-exact and everything is freed at the end.
    #[test]
    fn honest_streams_arrive_exact(
        cap in 2usize..12,
        window in 2032u32..10_000,
        conns in 1usize..6,
        sizes in proptest::collection::vec(0usize..30_000, 6),
        steps in proptest::collection::vec(any::<u8>(), 50..400),
    ) {
        let cfg = Config { max_conns: 8, window, rx_budget: 4, backlog: 8 };
        let (a, b) = MemTransport::pair(cap);
        let mut g = Link::new(a, Role::Gateway, cfg);
        let mut s = Link::new(b, Role::Service, cfg);
        s.listen(80);
        for _ in 0..4 { s.poll(); g.poll(); }
        struct C { g: ConnId, s: Option<ConnId>, up: Vec<u8>, sent: usize, at_s: Vec<u8>, echoed: usize, back: Vec<u8>, s_eof: bool, s_closed: bool, g_done: bool }
        let mut cs: Vec<C> = Vec::new();
        for (k, size) in sizes.iter().enumerate().take(conns) {
            let up = (0..*size).map(|i| (i * 31 + k) as u8).collect();
            cs.push(C { g: g.open(80, CLIENT).unwrap(), s: None, up, sent: 0, at_s: Vec::new(), echoed: 0, back: Vec::new(), s_eof: false, s_closed: false, g_done: false });
        }
        let mut buf = vec![0u8; 3000];
        let mut step = 0usize;
        for round in 0..100_000 {
            let r = steps[round % steps.len()] as usize + round / steps.len();
            step += 1;
            let ci = (r + step) % cs.len();
            if r % 5 == 1 {
                s.poll();
                while let Some((id, _)) = s.accept(80) {
                    let c = cs.iter_mut().find(|c| c.s.is_none()).unwrap();
                    c.s = Some(id);
                }
                continue;
            }
            let c = &mut cs[ci];
            match r % 5 {
                0 => { g.poll(); }
                2 => {
                    if c.sent < c.up.len() { c.sent += g.send(c.g, &c.up[c.sent..]).unwrap_or(0); }
                    if c.sent == c.up.len() { let _ = g.shutdown(c.g); }
                }
                3 => if let (Some(id), false) = (c.s, c.s_closed) {
                    loop {
                        match s.recv(id, &mut buf[..(r * 97) % 3000 + 1]) {
                            Ok(0) => { c.s_eof = true; break }
                            Ok(n) => c.at_s.extend_from_slice(&buf[..n]),
                            Err(ConnError::WouldBlock) => break,
                            Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
                        }
                    }
                    if c.echoed < c.at_s.len() { c.echoed += s.send(id, &c.at_s[c.echoed..]).unwrap_or(0); }
                    if c.s_eof && c.echoed == c.at_s.len() { s.close(id); c.s_closed = true; }
                },
                _ => if !c.g_done {
                    loop {
                        match g.recv(c.g, &mut buf) {
                            Ok(0) => { c.g_done = true; g.close(c.g); break }
                            Ok(n) => c.back.extend_from_slice(&buf[..n]),
                            Err(ConnError::WouldBlock) => break,
                            Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
                        }
                    }
                },
            }
            if cs.iter().all(|c| c.g_done) { break; }
        }
        for c in &cs {
            prop_assert!(c.g_done);
            prop_assert_eq!(&c.back, &c.up);
        }
        for _ in 0..16 { s.poll(); g.poll(); }
        prop_assert_eq!((g.live(), s.live()), (0, 0));
        prop_assert_eq!(g.stats().violations + s.stats().violations, 0);
    }
}

#[test]
fn events_name_the_connections_that_changed() {
    let (mut g, mut s) = pair(64, Config::default(), Config::default());
    g.take_events();
    s.take_events();
    let c = g.open(80, CLIENT).unwrap();
    s.poll();
    assert!(s.take_events().backlog);
    let (a, _) = s.accept(80).unwrap();
    g.poll();
    assert_eq!(g.take_events().conns, 1u128 << c.index());
    g.send(c, b"x").unwrap();
    s.poll();
    assert_eq!(s.take_events().conns, 1u128 << a.index());
    assert_eq!(s.take_events(), hallows_link::Events::default());
}

#[test]
fn the_backlog_is_bounded_per_port() {
    let (mut g, mut s) = pair(64, Config::default(), Config { backlog: 2, ..Config::default() });
    let c: Vec<_> = (0..3).map(|_| g.open(80, CLIENT).unwrap()).collect();
    pump(&mut g, &mut s);
    assert_eq!(g.state(c[0]), ConnState::Open);
    assert_eq!(g.state(c[1]), ConnState::Open);
    assert_eq!(g.state(c[2]), ConnState::Reset);
    assert!(s.accept(80).is_some());
    let d = g.open(80, CLIENT).unwrap();
    pump(&mut g, &mut s);
    assert_eq!(g.state(d), ConnState::Open);
}

/// A peer that keeps rewriting its ring epoch (every receive says it
/// restarted) costs one bounded `poll`, not an endless loop.
#[test]
fn a_peer_that_keeps_restarting_is_bounded_by_the_budget() {
    struct Restarting;
    impl Transport for Restarting {
        fn send(&mut self, _: &Frame) -> Result<(), TransportError> {
            Ok(())
        }
        fn recv(&mut self) -> Result<Frame, TransportError> {
            Err(TransportError::PeerRestarted)
        }
    }
    let config = Config::default();
    let mut g = Link::new(Restarting, Role::Gateway, config);
    assert_eq!(g.poll(), config.rx_budget);
}

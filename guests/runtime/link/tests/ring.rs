//! The link over real `hallows-ring` channels on heap memory: a two-thread
//! echo of 10 MB, and a service restart (new ring endpoints on the same
//! memory) seen by the gateway.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hallows_link::{
    Config, ConnError, ConnState, Frame, Link, PeerAddr, RingTransport, Role, CHANNEL_SLOT_SIZE,
};
use hallows_ring::{ChannelLayout, Receiver, Sender};

const CLIENT: PeerAddr = PeerAddr { ip: [10, 0, 2, 2], port: 40000 };

struct Mem {
    base: NonNull<u8>,
    layout: std::alloc::Layout,
    ring: ChannelLayout,
}

// SAFETY: plain heap memory, shared by the ring protocol's rules.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

impl Mem {
    fn new(slots: usize) -> Arc<Self> {
        let ring = ChannelLayout::new(CHANNEL_SLOT_SIZE, slots).unwrap();
        let layout = std::alloc::Layout::from_size_align(ring.total_size(), ring.page_size()).unwrap();
        // SAFETY: non-zero size.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Arc::new(Self { base, layout, ring })
    }
    fn sender(&self) -> Box<Sender<Frame>> {
        // SAFETY: page-aligned, the layout's size, outlives the endpoint (the
        // tests keep the Arc alive), one sender at a time.
        Box::new(unsafe { Sender::new(self.base, self.ring) }.unwrap())
    }
    fn receiver(&self) -> Box<Receiver<Frame>> {
        // SAFETY: as above, one receiver at a time.
        Box::new(unsafe { Receiver::new(self.base, self.ring) }.unwrap())
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

type RingLink = Link<RingTransport<Box<Sender<Frame>>, Box<Receiver<Frame>>>>;

fn ends(slots: usize) -> (Arc<Mem>, Arc<Mem>, RingLink, RingLink) {
    let g2s = Mem::new(slots);
    let s2g = Mem::new(slots);
    // Receivers first.
    let grx = s2g.receiver();
    let srx = g2s.receiver();
    let g = Link::new(RingTransport { tx: g2s.sender(), rx: grx }, Role::Gateway, Config::default());
    let mut s = Link::new(RingTransport { tx: s2g.sender(), rx: srx }, Role::Service, Config::default());
    s.listen(80);
    (g2s, s2g, g, s)
}

#[test]
fn ten_megabytes_echo_across_threads() {
    let (_a, _b, mut g, mut s) = ends(64);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let service = std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        let mut conn = None;
        let mut echoed_total = 0usize;
        while !stop2.load(Ordering::Relaxed) {
            s.poll();
            if conn.is_none() {
                conn = s.accept(80).map(|(c, _)| c);
            }
            let Some(c) = conn else { continue };
            if pending.is_empty() {
                match s.recv(c, &mut buf) {
                    Ok(0) => {
                        s.close(c);
                        conn = None;
                    }
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(ConnError::WouldBlock) => {}
                    Err(e) => panic!("service: {e:?}"),
                }
            }
            if !pending.is_empty() {
                if let Ok(n) = s.send(c, &pending) {
                    pending.drain(..n);
                    echoed_total += n;
                }
            }
        }
        for _ in 0..100 {
            s.poll();
        }
        (echoed_total, s.live(), s.stats().violations)
    });
    while !g.is_up() {
        g.poll();
    }
    let c = g.open(80, CLIENT).unwrap();
    let data: Vec<u8> = (0..10_000_000u32).map(|i| (i ^ (i >> 9)) as u8).collect();
    let (mut sent, mut back) = (0, Vec::with_capacity(data.len()));
    let mut buf = vec![0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "timed out at {} of {} back", back.len(), data.len());
        g.poll();
        if sent < data.len() {
            match g.send(c, &data[sent..]) {
                Ok(n) => {
                    sent += n;
                    if sent == data.len() {
                        g.shutdown(c).unwrap();
                    }
                }
                Err(ConnError::WouldBlock) => {}
                Err(e) => panic!("gateway: {e:?}"),
            }
        }
        match g.recv(c, &mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(ConnError::WouldBlock) => {}
            Err(e) => panic!("gateway: {e:?}"),
        }
    }
    g.close(c);
    for _ in 0..100 {
        g.poll();
    }
    stop.store(true, Ordering::Relaxed);
    let (echoed, svc_live, svc_violations) = service.join().unwrap();
    assert!(back == data, "echo differs");
    assert_eq!(echoed, data.len());
    assert_eq!((g.live(), svc_live), (0, 0));
    assert_eq!(g.stats().violations + svc_violations, 0);
}

#[test]
fn a_restarted_service_is_seen_and_reconnected() {
    let (g2s, s2g, mut g, mut s) = ends(16);
    for _ in 0..4 {
        s.poll();
        g.poll();
    }
    let c = g.open(80, CLIENT).unwrap();
    s.poll();
    let (_sc, _) = s.accept(80).unwrap();
    g.poll();
    assert_eq!(g.state(c), ConnState::Open);
    // The service partition restarts: its endpoints attach again.
    drop(s);
    let srx = g2s.receiver();
    let mut s = Link::new(RingTransport { tx: s2g.sender(), rx: srx }, Role::Service, Config::default());
    s.listen(80);
    for _ in 0..8 {
        s.poll();
        g.poll();
    }
    assert_eq!(g.state(c), ConnState::Reset);
    assert!(g.stats().peer_restarts >= 1);
    g.close(c);
    assert!(g.is_up());
    let c = g.open(80, CLIENT).unwrap();
    s.poll();
    let (sc, _) = s.accept(80).expect("the new service gets the new connection");
    g.poll();
    g.send(c, b"after restart").unwrap();
    s.poll();
    let mut buf = [0u8; 32];
    assert_eq!(s.recv(sc, &mut buf), Ok(13));
}

/// Random traffic on several connections over real rings, with the service
/// end restarted (new endpoints on the same memory, a new link) at random
/// moments: the gateway never panics, never holds more than its bounds,
/// frees every connection once its handles are closed, and a fresh
/// connection works after each restart.
#[test]
fn random_traffic_across_service_restarts() {
    let (g2s, s2g, mut g, mut s) = ends(16);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let data = vec![7u8; 20_000];
    let mut buf = vec![0u8; 5000];
    let cfg = *g.config();
    for round in 0..20 {
        let mut gc = Vec::new();
        let mut sc = Vec::new();
        for _ in 0..300 {
            match rand() % 8 {
                0 => {
                    if let Ok(c) = g.open(80, CLIENT) {
                        gc.push(c);
                    }
                }
                1 => {
                    if let Some((c, _)) = s.accept(80) {
                        sc.push(c);
                    }
                }
                2 if !gc.is_empty() => {
                    let c = gc[rand() as usize % gc.len()];
                    let _ = g.send(c, &data[..rand() as usize % data.len()]);
                }
                3 if !sc.is_empty() => {
                    let c = sc[rand() as usize % sc.len()];
                    let _ = s.recv(c, &mut buf);
                    let _ = s.send(c, &data[..rand() as usize % 3000]);
                }
                4 if !gc.is_empty() => {
                    let c = gc[rand() as usize % gc.len()];
                    let _ = g.recv(c, &mut buf);
                }
                5 if !gc.is_empty() && rand() % 4 == 0 => {
                    let c = gc.swap_remove(rand() as usize % gc.len());
                    g.close(c);
                }
                6 if !sc.is_empty() && rand() % 4 == 0 => {
                    let c = sc.swap_remove(rand() as usize % sc.len());
                    s.close(c);
                }
                _ => {}
            }
            g.poll();
            s.poll();
            assert!(g.live() <= cfg.max_conns);
            assert!(g.buffered() <= cfg.max_conns * cfg.window as usize);
        }
        // The service restarts in the middle of all that.
        drop(s);
        let srx = g2s.receiver();
        s = Link::new(RingTransport { tx: s2g.sender(), rx: srx }, Role::Service, Config::default());
        s.listen(80);
        for _ in 0..8 {
            s.poll();
            g.poll();
        }
        assert!(g.is_up(), "round {round}: the gateway saw the new service's HELLO");
        for c in gc.drain(..) {
            assert_eq!(g.state(c), ConnState::Reset, "round {round}");
            g.close(c);
        }
        assert_eq!(g.live(), 0, "round {round}: {:?}", g.stats());
        // A fresh connection works.
        let c = g.open(80, CLIENT).unwrap();
        s.poll();
        let (a, _) = s.accept(80).expect("accepted after the restart");
        g.poll();
        assert_eq!(g.send(c, b"ping"), Ok(4));
        s.poll();
        assert_eq!(s.recv(a, &mut buf), Ok(4));
        s.close(a);
        g.close(c);
        for _ in 0..8 {
            s.poll();
            g.poll();
        }
        assert_eq!((g.live(), s.live()), (0, 0), "round {round}");
    }
    assert_eq!(g.stats().violations, 0);
}

/// Over rings, a frame travels as its header and the payload bytes its
/// `len` covers (at least the first 8): what arrives is what was sent, a
/// frame received into a buffer that held a longer one keeps `len` as
/// sent, and a `len` past the payload is copied clamped and kept as sent,
/// for the link to refuse.
#[test]
fn frames_cross_a_ring_as_their_used_bytes() {
    use hallows_link::{Transport, PAYLOAD};
    let (there, back) = (Mem::new(8), Mem::new(8));
    // Receivers first, as a partition opens them.
    let (rx_end, back_rx) = (there.receiver(), back.receiver());
    let mut rx = RingTransport { tx: back.sender(), rx: rx_end };
    let mut tx = RingTransport { tx: there.sender(), rx: back_rx };
    let mut long = Frame::new(4, 7);
    long.len = PAYLOAD as u16;
    long.payload.fill(0xAB);
    let mut short = Frame::new(4, 9);
    short.len = 3;
    short.payload[..3].copy_from_slice(b"abc");
    let mut huge = Frame::new(4, 11);
    huge.len = u16::MAX;
    huge.payload.fill(0xCD);
    let mut got = Frame::new(0, 0);
    // The consumer's first look acknowledges the producer (nothing yet);
    // only then may it publish.
    assert!(rx.recv_into(&mut got).is_err());
    for f in [&long, &short, &huge] {
        tx.send(f).unwrap();
    }
    rx.recv_into(&mut got).unwrap();
    assert_eq!((got.kind, got.conn, got.len), (4, 7, PAYLOAD as u16));
    assert!(got.payload.iter().all(|&b| b == 0xAB));
    rx.recv_into(&mut got).unwrap();
    assert_eq!((got.kind, got.conn, got.len), (4, 9, 3));
    assert_eq!(got.data(), b"abc");
    rx.recv_into(&mut got).unwrap();
    assert_eq!((got.conn, got.len), (11, u16::MAX));
    assert!(got.payload.iter().all(|&b| b == 0xCD));
    assert!(rx.recv_into(&mut got).is_err());
}

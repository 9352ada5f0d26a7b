//! The RustHallows side of comparison A's HTTP GET (docs/benchmarks.md,
//! tools/bench/compare-a-http). One guest, two roles:
//!
//! * `role=server`: the handler, served by Basilisk (`hallows-basilisk`'s
//!   server on the `hallows-http` engine: keep-alive, limits) on the
//!   partition's network in gateway mode (`hallows-net`): `GET /` answers
//!   `200`, `text/plain`, [`BODY`]; anything else `404`. With `quit`, the
//!   partition exits after the client's `GET /quit`.
//! * `role=client bench=A,B`: the gateway end of the link (the channels
//!   `<self>-<server>` and `<server>-<self>`, `hallows-link` frames, the
//!   same bytes a gateway partition relays from a TCP client): opens one
//!   connection to port 80 and sends a warm-up run of A `GET /`, then a
//!   run of A and a run of B, one request in flight, keep-alive, each
//!   answer parsed and checked (status line, `Content-Length`, body), each
//!   measured run between two [`hallows_rt::bench_mark`]s. Prints each
//!   run's rate and p50/p99 in emulated time, then
//!   `http-bench: bench done, N checks failed`. `server=NAME` names the
//!   server partition (default `api`).
//!
//! The client owns the link itself instead of running behind a real
//! gateway with a NIC: on one QEMU machine two partitions' NICs cannot be
//! connected to each other, so the request crosses a ring channel pair
//! carrying the HTTP bytes (labelled so in the report), not TCP.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use core::time::Duration;

use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// The answer to `GET /`, on both sides of the comparison.
pub const BODY: &[u8] = b"Hello, World!";
/// The request the client sends (what `curl` would, less its agent).
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n";
/// Most bytes of one answer the client accepts.
const MAX_ANSWER: usize = 4096;
/// How long the client waits for the link, the connection or an answer.
const WAIT: Duration = Duration::from_secs(20);

fn main(boot: &Boot) -> u64 {
    match boot.arg("role") {
        Some("server") => {
            let b = boot.clone();
            hallows_rt::task::run(boot, server::serve(b))
        }
        Some("client") => {
            let b = boot.clone();
            hallows_rt::task::run(boot, async move { client::run(&b).await })
        }
        other => {
            println!("http-bench: role={other:?}: give role=server or role=client");
            1
        }
    }
}

mod server {
    use alloc::vec::Vec;

    use hallows_basilisk::server::{self, Stop};
    use hallows_basilisk::{Method, Request, Response};
    use hallows_rt::task::spawn;
    use hallows_rt::{println, Boot};

    use super::BODY;

    fn text(status: u16, body: &[u8]) -> Response {
        Response { status, content_type: "text/plain", body: body.to_vec(), headers: Vec::new() }
    }

    pub async fn serve(boot: Boot) -> u64 {
        if let Err(e) = hallows_net::init(&boot) {
            println!("http-bench: net init failed: {e}");
            return 1;
        }
        let (mut listener, port) = match server::bind(&boot) {
            Ok(l) => l,
            Err(e) => {
                println!("http-bench: {e}");
                return 1;
            }
        };
        let quit = boot.has("quit");
        println!("http-bench: serving on port {port}");
        let stop = Stop::default();
        server::accept_until(&mut listener, &stop, |s| {
            let stop = stop.clone();
            let handler = async move |req: &Request<'_>| match (req.method, req.path) {
                (Method::Get, "/") => text(200, BODY),
                (Method::Get, "/quit") if quit => {
                    stop.stop();
                    text(200, b"bye")
                }
                _ => text(404, b"not found"),
            };
            spawn(server::serve_conn(s, server::LIMITS, handler));
        })
        .await;
        println!("http-bench: server done");
        0
    }
}

mod client {
    use super::*;
    use hallows_link::{Config, ConnError, ConnId, ConnState, Frame, Link, PeerAddr, RingTransport, Role};
    use hallows_rt::channel::{self, Endpoint, Receiver, Sender};

    type Transport = RingTransport<Endpoint<Sender<Frame>>, Endpoint<Receiver<Frame>>>;

    struct Client {
        link: Link<Transport>,
        id: ConnId,
        buf: Vec<u8>,
        idle: Idle,
    }

    /// Polls without pause for `spin` turns without progress (boot
    /// argument `idle_turns`, default [`IDLE_TURNS`]), then
    /// naps `nap` with the core halted (as the server's pump with
    /// `net_idle_us=`): the emulator's one thread then runs the other
    /// core instead of this one spinning until its round-robin kick.
    struct Idle {
        turns: u32,
        spin: u32,
        nap: Duration,
    }

    const IDLE_TURNS: u32 = 256;

    impl Idle {
        async fn turn(&mut self) {
            self.turns += 1;
            if self.turns >= self.spin {
                self.turns = 0;
                time::sleep(self.nap).await;
            }
        }
    }

    /// Why a request failed (the fields are read through `Debug`, in the
    /// `FAIL` lines).
    #[derive(Debug)]
    #[allow(dead_code)]
    enum Fail {
        Timeout,
        Link(ConnError),
        Answer(&'static str),
    }

    impl Client {
        /// Sends `req` whole and reads one answer into `self.buf`; the
        /// answer's body, checked against its head.
        async fn get(&mut self, req: &[u8]) -> Result<(u16, &[u8]), Fail> {
            let end = time::now() + WAIT;
            let mut sent = 0;
            while sent < req.len() {
                match self.link.send(self.id, &req[sent..]) {
                    Ok(n) => sent += n,
                    Err(ConnError::WouldBlock) => {
                        self.link.poll();
                        self.idle.turn().await;
                    }
                    Err(e) => return Err(Fail::Link(e)),
                }
                if time::now() > end {
                    return Err(Fail::Timeout);
                }
            }
            self.buf.clear();
            let mut chunk = [0u8; 2048];
            loop {
                if let Some(len) = answer_len(&self.buf)? {
                    if self.buf.len() > len {
                        return Err(Fail::Answer("bytes beyond the answer (none was asked)"));
                    }
                    if self.buf.len() == len {
                        return parse(&self.buf);
                    }
                }
                self.link.poll();
                match self.link.recv(self.id, &mut chunk) {
                    Ok(0) => return Err(Fail::Answer("the server closed the connection")),
                    Ok(n) => {
                        self.idle.turns = 0;
                        if self.buf.len() + n > MAX_ANSWER {
                            return Err(Fail::Answer("answer over 4 KiB"));
                        }
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                    Err(ConnError::WouldBlock) => {
                        if time::now() > end {
                            return Err(Fail::Timeout);
                        }
                        self.idle.turn().await;
                    }
                    Err(e) => return Err(Fail::Link(e)),
                }
            }
        }
    }

    /// The answer's whole length once its head is in, else `None`.
    fn answer_len(b: &[u8]) -> Result<Option<usize>, Fail> {
        let Some(h) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        Ok(Some(h + 4 + content_length(&b[..h])?))
    }

    fn content_length(head: &[u8]) -> Result<usize, Fail> {
        let mut found = None;
        for line in head.split(|&c| c == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&c| c == b':') else {
                return Err(Fail::Answer("a header line without a colon"));
            };
            if line[..colon].eq_ignore_ascii_case(b"content-length") {
                let v = core::str::from_utf8(&line[colon + 1..]).map_err(|_| Fail::Answer("Content-Length not text"))?;
                let n: usize = v.trim().parse().map_err(|_| Fail::Answer("Content-Length not a number"))?;
                if found.is_some_and(|f| f != n) {
                    return Err(Fail::Answer("two different Content-Lengths"));
                }
                found = Some(n);
            } else if line[..colon].eq_ignore_ascii_case(b"transfer-encoding") {
                return Err(Fail::Answer("a chunked answer (a fixed body was expected)"));
            }
        }
        found.filter(|&n| n <= MAX_ANSWER).ok_or(Fail::Answer("no Content-Length, or over 4 KiB"))
    }

    fn parse(b: &[u8]) -> Result<(u16, &[u8]), Fail> {
        let h = b.windows(4).position(|w| w == b"\r\n\r\n").ok_or(Fail::Answer("no head"))?;
        let status = b
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|s| core::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .ok_or(Fail::Answer("not an HTTP/1.1 status line"))?;
        Ok((status, &b[h + 4..]))
    }

    async fn wait(link: &mut Link<Transport>, idle: &mut Idle, mut done: impl FnMut(&Link<Transport>) -> bool) -> bool {
        let end = time::now() + WAIT;
        while !done(link) {
            if time::now() > end {
                return false;
            }
            link.poll();
            idle.turn().await;
        }
        true
    }

    pub async fn run(boot: &Boot) -> u64 {
        let nap_us = boot.arg("nap_us").and_then(|v| v.parse::<u64>().ok()).unwrap_or(20).clamp(1, 100_000);
        let spin = boot.arg("idle_turns").and_then(|v| v.parse::<u32>().ok()).unwrap_or(IDLE_TURNS).clamp(1, 1 << 20);
        let mut idle = Idle { turns: 0, spin, nap: Duration::from_micros(nap_us) };
        let server = boot.arg("server").unwrap_or("api");
        let runs: Vec<u32> = boot.arg("bench").unwrap_or("").split(',').filter_map(|n| n.parse().ok()).collect();
        if runs.len() != 2 || runs[0] == 0 || runs[1] <= runs[0] {
            println!("http-bench: bench=A,B with 0 < A < B, not {:?}", boot.arg("bench"));
            return 1;
        }
        let me = boot.name();
        let (down, up) = (format!("{server}-{me}"), format!("{me}-{server}"));
        // Receiving end first (see hallows_link::Link::new).
        let (Ok(rx), Ok(tx)) = (channel::receiver::<Frame>(boot, &down), channel::sender::<Frame>(boot, &up)) else {
            println!("http-bench: channels {down} and {up} missing or of the wrong geometry");
            return 1;
        };
        let config = Config { max_conns: 1, window: 32 * 1024, rx_budget: 64, backlog: 1 };
        let mut link = Link::new(RingTransport { tx, rx }, Role::Gateway, config);
        if !wait(&mut link, &mut idle, |l| l.is_up()).await {
            println!("http-bench: the server never said HELLO");
            return 1;
        }
        let id = match link.open(80, PeerAddr { ip: [10, 0, 2, 2], port: 40000 }) {
            Ok(id) => id,
            Err(e) => {
                println!("http-bench: open: {e:?}");
                return 1;
            }
        };
        if !wait(&mut link, &mut idle, |l| l.state(id) != ConnState::Connecting).await || link.state(id) != ConnState::Open {
            println!("http-bench: the server did not accept the connection: {:?}", link.state(id));
            return 1;
        }
        let mut c = Client { link, id, buf: Vec::with_capacity(MAX_ANSWER), idle };
        let mut failed = 0u32;
        let mut check = |ok: bool, what: &str| {
            if !ok {
                println!("http-bench: FAIL {what}");
                failed += 1;
            }
        };
        // The warm-up run: one-time costs (heap growth, the first use of
        // every path) stay out of the two measured runs.
        for _ in 0..runs[0] {
            let r = c.get(REQUEST).await;
            check(matches!(r, Ok((200, BODY))), &format!("warm-up GET: {r:?}"));
        }
        let mut lat: Vec<u64> = Vec::with_capacity(runs[1] as usize);
        for &n in &runs {
            lat.clear();
            let mut bad = 0u32;
            let mut first_bad = None;
            hallows_rt::bench_mark();
            let start = time::now();
            for _ in 0..n {
                let t = time::now();
                let r = c.get(REQUEST).await;
                if !matches!(r, Ok((200, BODY))) {
                    bad += 1;
                    if first_bad.is_none() {
                        first_bad = Some(format!("{r:?}"));
                    }
                }
                lat.push((time::now() - t).as_nanos() as u64);
            }
            let took = time::now() - start;
            hallows_rt::bench_mark();
            check(bad == 0, &format!("bench get {n}: {bad} answers not 200 {BODY:?}, first {first_bad:?}"));
            lat.sort_unstable();
            let pct = |p: usize| lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
            println!(
                "http-bench: bench get {n} rps={} p50_us={}.{:03} p99_us={}.{:03} (emulated time)",
                u64::from(n) * 1_000_000_000 / (took.as_nanos() as u64).max(1),
                pct(50) / 1000,
                pct(50) % 1000,
                pct(99) / 1000,
                pct(99) % 1000
            );
        }
        if boot.has("quit_server") {
            let r = c.get(b"GET /quit HTTP/1.1\r\nHost: api\r\n\r\n").await;
            check(matches!(r, Ok((200, _))), &format!("GET /quit: {r:?}"));
        }
        println!("http-bench: bench done, {failed} checks failed");
        u64::from(failed != 0)
    }
}

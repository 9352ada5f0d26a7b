//! Networking (QEMU: aarch64 `virt`, and x86_64 `microvm` with AMD SVM): the `web` guest serves HTTP/1.1 and a TCP/UDP
//! echo through `hallows-net` on a virtio-net NIC, reached from this host
//! through QEMU's user-mode network (`restrict=on`: the guest reaches
//! nothing on the host; the manifests' `[[forward]]`s bring one loopback
//! port per service in).
//! Real clients (curl, std sockets) talk to it while the machine runs.
//! Each test system gets its own host ports, so the tests may run in
//! parallel. QEMU's slirp accepts a host connection before the guest
//! listens, so readiness is an HTTP 200, never a bare connect.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hallows_tests::{start_system, Boot, Running};

/// The guest must answer HTTP within this long of QEMU's start.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Heap the guest may keep after all its connections closed, beyond what
/// it held after a warm-up: the bookkeeping tables (connection table, the
/// timer's sleeper list, the executor's task map) keep the capacity they
/// grew to at peak concurrency; nothing grows with the number of
/// connections served. (Measured: 0 bytes.)
const HEAP_TOLERANCE: u64 = 16 * 1024;

struct Net {
    run: Running,
    http: u16,
    echo: u16,
}

/// Boots `system` (its manifest forwards a host port to the web guest's
/// ports 80 and 7) and waits for `GET /`.
fn start(system: &str) -> Net {
    let mut run = start_system(system, &[]);
    let (http, echo) = (run.host_port("web", 80), run.host_port("web", 7));
    let body = run.wait_http(http, "/", READY_TIMEOUT);
    assert_eq!(body, "hello from web\n");
    Net { run, http, echo }
}

impl Net {
    /// `GET /quit`, then the machine's end (the guest exits after it).
    fn quit(mut self) -> Boot {
        let r = get(self.http, "/quit", true);
        if !matches!(r, Ok((200, _))) {
            let b = self.run.stop();
            panic!("/quit answered {r:?}:\n{}", b.output);
        }
        let b = self.run.wait();
        b.assert_no_uncontained();
        b
    }

    fn stats(&self) -> Stats {
        let (code, body) = get(self.http, "/stats", true).expect("GET /stats");
        assert_eq!(code, 200, "{body}");
        Stats::parse(body.trim()).unwrap_or_else(|| panic!("stats: {body}"))
    }
}

#[derive(Debug, Default)]
struct Stats {
    sockets: u64,
    accepted: u64,
    udp_rx: u64,
    udp_tx: u64,
    nic_interrupts: u64,
    heap: u64,
    idle_heap: u64,
}

impl Stats {
    /// `sockets=N accepted=N rx=N tx=N udp_rx=N udp_tx=N nic_interrupts=N heap=N idle_heap=N`
    fn parse(line: &str) -> Option<Stats> {
        let mut s = Stats::default();
        let mut seen = 0;
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "sockets" => s.sockets = v,
                "accepted" => s.accepted = v,
                "udp_rx" => s.udp_rx = v,
                "udp_tx" => s.udp_tx = v,
                "nic_interrupts" => s.nic_interrupts = v,
                "heap" => s.heap = v,
                "idle_heap" => s.idle_heap = v,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 7).then_some(s)
    }

    /// The guest's final `net stats: ...` line.
    fn from_exit(b: &Boot) -> Stats {
        let line = b
            .lines_of("web")
            .into_iter()
            .find_map(|l| l.strip_prefix("net stats: "))
            .unwrap_or_else(|| panic!("no final stats:\n{}", b.output));
        Stats::parse(line).unwrap_or_else(|| panic!("bad stats line {line}"))
    }
}

/// Client timeouts. QEMU's forward takes connections in through a
/// listening socket with a backlog of one: in a burst of connects the host
/// kernel drops SYNs (or handshake ACKs) and the client retries after 1,
/// 2, 4, 8... s. On a loaded machine a burst can take tens of seconds to
/// get in; that is QEMU's front door, not the guest.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one HTTP response (status line, headers, `Content-Length` body)
/// from `s`, `buf` holding bytes already read past earlier responses.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, String)> {
    let bad = |m: &str| std::io::Error::new(ErrorKind::InvalidData, m.to_owned());
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("closed before a response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let code: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| bad(&head))?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad(&head))?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("closed in a body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    buf.drain(..head_end + len);
    Ok((code, body))
}

/// One `GET` on a new connection.
fn get(port: u16, path: &str, close: bool) -> std::io::Result<(u16, String)> {
    let mut s = connect(port)?;
    let conn = if close { "close" } else { "keep-alive" };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: web\r\nConnection: {conn}\r\n\r\n").as_bytes())?;
    read_response(&mut s, &mut Vec::new())
}

/// `curl` fetches `/`.
fn curl_gets_hello(port: u16) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("running curl (apt-get install curl)");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from web\n");
}

/// `n` requests on one keep-alive connection, half of them pipelined in pairs.
fn keep_alive(port: u16, n: usize) {
    let (mut s, mut buf) = served_connection(port);
    let mut i = 1;
    while i < n {
        let pair = i % 4 == 0 && i + 1 < n;
        let req = "GET / HTTP/1.1\r\nHost: web\r\n\r\n";
        s.write_all(if pair { req.repeat(2) } else { req.to_owned() }.as_bytes()).expect("write");
        for _ in 0..if pair { 2 } else { 1 } {
            let (code, body) = read_response(&mut s, &mut buf).expect("keep-alive response");
            assert_eq!((code, body.as_str()), (200, "hello from web\n"), "request {i}");
            i += 1;
        }
    }
}

/// How long a new connection may wait for its first answer before it is
/// taken for one that never got past QEMU's front door and is retried.
const FIRST_ANSWER: Duration = Duration::from_secs(15);

/// A new keep-alive connection that has answered one `GET /`, and the
/// bytes read past that answer. QEMU's forward accepts connections from a
/// listening socket one deep: in a burst of connects the host kernel may
/// complete a connection for the client that QEMU never takes in, and give
/// it up without a word. Such a connection gets no answer at all and is
/// replaced (three times at most); a refusal (reset, close, an error
/// status) fails at once.
fn served_connection(port: u16) -> (TcpStream, Vec<u8>) {
    let mut last = None;
    for _ in 0..4 {
        let mut s = connect(port).expect("connect");
        s.set_read_timeout(Some(FIRST_ANSWER)).expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").expect("write");
        let mut buf = Vec::new();
        match read_response(&mut s, &mut buf) {
            Ok((200, body)) if body == "hello from web\n" => {
                s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                return (s, buf);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => last = Some(e),
            r => panic!("a new connection was answered {r:?}"),
        }
    }
    panic!("no answer on four new connections: {last:?}");
}

/// `clients` keep-alive connections at once, `n` requests each.
fn parallel_keep_alive(port: u16, clients: usize, n: usize) {
    let t0 = Instant::now();
    let threads: Vec<_> = (0..clients).map(|_| std::thread::spawn(move || keep_alive(port, n))).collect();
    for t in threads {
        t.join().expect("a keep-alive client failed");
    }
    let rate = (clients * n) as f64 / t0.elapsed().as_secs_f64();
    eprintln!("{clients} keep-alive clients: {rate:.0} requests/s");
}

/// `n` clients connect at once (a burst of SYNs within the backlog) and
/// each must get its answer: none is refused (reset) by the guest.
fn simultaneous_connects(port: u16, n: usize) {
    let go = Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                served_connection(port).0
            })
        })
        .collect();
    for t in threads {
        t.join().expect("one of the simultaneous clients was refused");
    }
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends `len` bytes to the echo service and checks they come back
/// byte-exact; returns the seconds it took.
fn echo(port: u16, len: usize) -> f64 {
    let data = Arc::new(pattern(len));
    let t0 = Instant::now();
    let mut s = connect(port).expect("connect to echo");
    let mut w = s.try_clone().expect("clone");
    let d = data.clone();
    let writer = std::thread::spawn(move || {
        for c in d.chunks(64 * 1024) {
            w.write_all(c).expect("echo write");
        }
    });
    let mut back = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = s.read(&mut back[got..]).expect("echo read");
        assert!(n > 0, "echo closed after {got} bytes");
        got += n;
    }
    writer.join().expect("writer");
    let secs = t0.elapsed().as_secs_f64();
    if let Some(i) = (0..len).find(|&i| back[i] != data[i]) {
        panic!("echoed byte {i} differs");
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut rest = [0u8; 16];
    assert_eq!(s.read(&mut rest).expect("EOF after echo"), 0, "the echo service closes after our FIN");
    secs
}

/// A UDP round trip from the guest: `GET /udp` makes it send a TFTP
/// request to QEMU's user network (the router), which answers with a TFTP
/// error: `restrict=on` lets a guest's UDP reach QEMU's own services only,
/// and forwards are TCP, so this is the one UDP exchange a test can see.
fn udp_round_trip(net: &Net) {
    let before = net.stats();
    let r = get(net.http, "/udp", true).expect("GET /udp");
    assert_eq!(r, (200, "udp ok from 10.0.2.2:69\n".to_owned()));
    let after = net.stats();
    assert!(after.udp_rx > before.udp_rx && after.udp_tx > before.udp_tx, "{after:?} after {before:?}");
}

/// `n` connections one after another: half answer a `GET`, half are
/// opened and closed without a word.
fn churn(port: u16, n: usize) {
    for i in 0..n {
        if i % 2 == 0 {
            let r = get(port, "/", true);
            assert!(matches!(r, Ok((200, _))), "connection {i}: {r:?}");
        } else {
            drop(connect(port).expect("connect"));
        }
    }
}

/// Waits until the guest has no connection left (the bare ones of `churn`
/// reach it after the client is gone): `/stats` then shows only itself.
fn settle(net: &Net) -> Stats {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let s = net.stats();
        if s.sockets <= 1 || Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The NIC's transport on `qemu-virt-aarch64`.
const AARCH64_NIC: &str = "0xa000e00";
/// The NIC's transport on `qemu-microvm` (x86_64).
const X86_NIC: &str = "0xfeb00e00";

fn assert_snoop_stopped(b: &Boot, nic: &str) {
    assert!(
        b.summary("snoop").starts_with(&format!("stopped: stage-2 fault: read at {nic}")),
        "the partition touching the NIC was not stopped:\n{}",
        b.output
    );
}

#[test]
fn poll_mode_serves_curl_keep_alive_echo_udp_and_1000_connections_leak_nothing() {
    poll_mode("net-poll", AARCH64_NIC);
}

#[test]
fn x86_poll_mode_serves_curl_keep_alive_echo_udp_and_1000_connections_leak_nothing() {
    poll_mode("x86-net-poll", X86_NIC);
}

fn poll_mode(system: &str, nic: &str) {
    let net = start(system);
    curl_gets_hello(net.http);
    keep_alive(net.http, 200);
    parallel_keep_alive(net.http, 10, 300);
    simultaneous_connects(net.http, 24);
    let secs = echo(net.echo, 10 * 1024 * 1024);
    eprintln!("{system}: 10 MiB echoed in {secs:.1} s");
    udp_round_trip(&net);
    churn(net.http, 20);
    let base = settle(&net);
    churn(net.http, 1000);
    let after = settle(&net);
    assert!(after.accepted >= base.accepted + 1000, "{after:?} after {base:?}");
    let b = net.quit();
    b.assert_status(1); // snoop was stopped
    assert_eq!(b.summary("web"), "exited 0");
    assert_snoop_stopped(&b, nic);
    let end = Stats::from_exit(&b);
    eprintln!("{system}: heap {} after 1,000 connections, {} before; {end:?}", end.heap, base.idle_heap);
    assert_eq!(end.sockets, 0, "{}", b.output);
    assert!(
        end.heap <= base.idle_heap + HEAP_TOLERANCE,
        "heap {} after 1,000 connections, {} before (tolerance {HEAP_TOLERANCE})",
        end.heap,
        base.idle_heap
    );
    assert!(b.lines_of("web").iter().any(|l| l.starts_with("net ready: Poll")), "{}", b.output);
    assert_eq!(end.nic_interrupts, 0, "poll mode took device interrupts");
}

#[test]
fn interrupt_mode_serves_curl_keep_alive_echo_and_connections() {
    interrupt_mode("net-irq", AARCH64_NIC);
}

#[test]
fn x86_interrupt_mode_serves_curl_keep_alive_echo_and_connections() {
    interrupt_mode("x86-net-irq", X86_NIC);
}

fn interrupt_mode(system: &str, nic: &str) {
    let net = start(system);
    curl_gets_hello(net.http);
    keep_alive(net.http, 200);
    parallel_keep_alive(net.http, 10, 300);
    simultaneous_connects(net.http, 24);
    let secs = echo(net.echo, 10 * 1024 * 1024);
    eprintln!("{system}: 10 MiB echoed in {secs:.1} s");
    udp_round_trip(&net);
    churn(net.http, 20);
    let base = settle(&net);
    churn(net.http, 200);
    settle(&net);
    let b = net.quit();
    assert_eq!(b.summary("web"), "exited 0");
    assert_snoop_stopped(&b, nic);
    let end = Stats::from_exit(&b);
    assert_eq!(end.sockets, 0, "{}", b.output);
    assert!(end.heap <= base.idle_heap + HEAP_TOLERANCE, "heap {} vs {}", end.heap, base.idle_heap);
    assert!(b.lines_of("web").iter().any(|l| l.starts_with("net ready: Interrupt")), "{}", b.output);
    // The device's interrupt drove the stack (one interrupt covers a batch
    // of packets: 10 MiB took about 500).
    assert!(end.nic_interrupts > 100, "{end:?}");
}

/// What a bad request gets: the status of the answer, or `None` if the
/// connection closed without one.
fn bad_request(port: u16, bytes: &[u8]) -> Option<u16> {
    let mut s = connect(port).expect("connect");
    let _ = s.write_all(bytes);
    read_response(&mut s, &mut Vec::new()).ok().map(|(c, _)| c)
}

#[test]
fn abusive_clients_neither_stop_service_nor_grow_memory() {
    let net = start("net-abuse");
    let port = net.http;
    let t_start = Instant::now();
    let phase = |what: &str| eprintln!("abuse: {what} at {:.1} s", t_start.elapsed().as_secs_f64());
    churn(port, 20);
    let base = settle(&net);

    // Malformed and oversized requests are answered and closed.
    let garbage: Vec<u8> = pattern(3000).into_iter().map(|b| if b == b'\r' { b'x' } else { b }).collect();
    let mut g = garbage.clone();
    g.extend_from_slice(b"\r\n\r\n");
    assert_eq!(bad_request(port, &g), Some(400));
    assert_eq!(bad_request(port, b"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n"), Some(400));
    assert_eq!(bad_request(port, b"GET / SPDY/9\r\n\r\n"), Some(400));
    assert_eq!(bad_request(port, b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), Some(405));
    assert_eq!(bad_request(port, b"GET / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"), Some(413));
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 8000));
    assert_eq!(bad_request(port, &big), Some(431));

    phase("bad requests done");
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    // Slowloris: a byte every 300 ms; must be cut off (408) within the
    // head time limit.
    for _ in 0..4 {
        attackers.push(std::thread::spawn(move || {
            let mut s = connect(port).expect("connect");
            let t0 = Instant::now();
            for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle() {
                if s.write_all(&[*b]).is_err() || t0.elapsed() > Duration::from_secs(20) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            let cut = t0.elapsed();
            assert!(cut < Duration::from_secs(20), "a slowloris client was kept {cut:?}");
        }));
    }
    // Half-open: a partial request, then silence.
    let half: Vec<TcpStream> = (0..16)
        .filter_map(|_| {
            let mut s = connect(port).ok()?;
            s.write_all(b"GET / HT").ok()?;
            Some(s)
        })
        .collect();
    // A client that sends requests and never reads the responses.
    {
        let stop = stop.clone();
        attackers.push(std::thread::spawn(move || {
            let Ok(mut s) = connect(port) else { return };
            s.set_write_timeout(Some(Duration::from_millis(500))).expect("timeout");
            let reqs = "GET /stats HTTP/1.1\r\nHost: web\r\n\r\n".repeat(100);
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = s.write_all(reqs.as_bytes()) {
                    if e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut {
                        break;
                    }
                }
            }
        }));
    }
    phase("slow, half-open and never-reading clients started");
    // A burst of 1,000 concurrent connections (a thread each), held open.
    // They are dropped only after the machine has ended: most of them never
    // get past the host kernel's accept queue of QEMU's forward (QEMU takes
    // them in one by one), and a client that closes such a connection
    // leaves a socket retransmitting its FIN for half a minute, hundreds
    // of which slow the tests that follow; once QEMU's listening socket is
    // gone, the kernel resets them at once.
    let burst: Vec<TcpStream> = (0..1000)
        .map(|_| std::thread::spawn(move || connect(port).ok()))
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|t| t.join().expect("a connecting thread panicked"))
        .collect();
    let n = burst.len();
    assert!(n >= 900, "only {n} of 1,000 concurrent connects");
    // Meanwhile a well-behaved client keeps being served.
    let t0 = Instant::now();
    let mut last_ok = Instant::now();
    let mut served = 0;
    let mut max_gap = Duration::ZERO;
    let mut peak_heap = 0;
    while t0.elapsed() < Duration::from_secs(25) {
        if let Ok((200, body)) = get(port, "/stats", true) {
            served += 1;
            max_gap = max_gap.max(last_ok.elapsed());
            last_ok = Instant::now();
            if let Some(s) = Stats::parse(body.trim()) {
                peak_heap = peak_heap.max(s.heap);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    max_gap = max_gap.max(last_ok.elapsed());
    phase("good client done");
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().expect("an attacker thread failed");
    }
    phase("attackers joined");
    eprintln!("abuse: good client served {served} times, longest gap {max_gap:?}, peak heap {peak_heap} (idle {})", base.idle_heap);
    assert!(served >= 20, "the good client was served {served} times in 25 s");
    // The guest frees a slot within 5 s (its idle limit); the rest is
    // the retries of QEMU's front door (see CONNECT_TIMEOUT).
    assert!(max_gap < Duration::from_secs(20), "the good client went {max_gap:?} without an answer");
    // 64 sockets of 16 KiB + 16 KiB, and the tasks serving them.
    let bound = base.idle_heap + 64 * 32 * 1024 + 1024 * 1024;
    assert!(peak_heap <= bound, "heap reached {peak_heap} (bound {bound})");

    let after = settle(&net);
    assert!(after.sockets <= 1, "{after:?}");
    phase("settled");
    let b = net.quit();
    assert_eq!(b.summary("web"), "exited 0", "{}", b.output);
    drop(burst);
    drop(half);
    let end = Stats::from_exit(&b);
    assert_eq!(end.sockets, 0, "{}", b.output);
    assert!(end.heap <= base.idle_heap + HEAP_TOLERANCE, "heap {} vs {}", end.heap, base.idle_heap);
}

//! The gateway (guests/services/gateway) under QEMU: it owns the NIC and relays
//! ports 80 and 7 to `api` (the web guest, unchanged, behind the gateway)
//! and port 8080 to `evil`, a service that writes garbage link frames
//! (tests/systems/net-gateway.toml). Each test boots the system in the
//! background, waits for an HTTP 200 through the gateway (never a bare TCP
//! connect: QEMU accepts those before any guest listens), and bounds every
//! step with a timeout; the machine is killed after `BOOT_TIMEOUT` at the
//! latest. The tests run one at a time (they could share host ports); the
//! systems' host ports (24xxx) differ from the other network tests'.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hallows_tests::{http_get, start_system, Running};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SYSTEM: &str = "net-gateway";
/// Its x86_64 twin (QEMU microvm, AMD SVM).
const X86_SYSTEM: &str = "x86-net-gateway";
const BOOT: Duration = Duration::from_secs(240);

fn boot() -> (std::sync::MutexGuard<'static, ()>, Running) {
    boot_system(SYSTEM)
}

fn boot_system(system: &str) -> (std::sync::MutexGuard<'static, ()>, Running) {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut sys = start_system(system, &[]);
    let api = sys.host_port("api", 80);
    let body = sys.wait_http(api, "/", BOOT);
    assert!(body.contains("api"), "GET / through the gateway: {body:?}");
    (guard, sys)
}

fn connect(port: u16, timeout: Duration) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    s
}

/// The gateway's counters (its admin port), one `[service ...]` group each.
fn gateway_stats(sys: &Running) -> String {
    let (code, body) = http_get(sys.host_port("gateway", 9000), "/stats", Duration::from_secs(20)).expect("gateway /stats");
    assert_eq!(code, 200, "{body}");
    body
}

/// `key=value` of the group of `service` in the gateway's counters.
fn counter(stats: &str, service: &str, key: &str) -> u64 {
    let group = stats
        .split('[')
        .find(|g| g.starts_with(&format!("{service} ")))
        .unwrap_or_else(|| panic!("no group for {service} in {stats}"));
    group
        .split([' ', ']'])
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} for {service} in {stats}"))
}

fn echo_exact(port: u16, len: usize, timeout: Duration) -> Duration {
    let data: Vec<u8> = (0..len as u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let start = Instant::now();
    let mut s = connect(port, Duration::from_secs(30));
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).expect("writing the echo");
        w.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut back = Vec::with_capacity(len);
    let mut buf = vec![0u8; 65536];
    loop {
        assert!(start.elapsed() < timeout, "echo: {} of {len} bytes back after {timeout:?}", back.len());
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) => panic!("echo: reading after {} of {len} bytes: {e}", back.len()),
        }
    }
    writer.join().expect("writer");
    assert_eq!(back.len(), len, "echo length");
    assert!(back == data, "echo differs at byte {:?}", back.iter().zip(&data).position(|(a, b)| a != b));
    start.elapsed()
}

#[test]
fn curl_and_a_10_mb_echo_through_the_gateway() {
    curl_and_echo(boot());
}

#[test]
fn x86_curl_and_a_10_mb_echo_through_the_gateway() {
    curl_and_echo(boot_system(X86_SYSTEM));
}

fn curl_and_echo((_g, mut sys): (std::sync::MutexGuard<'static, ()>, Running)) {
    let api = sys.host_port("api", 80);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-m", "30", &format!("http://127.0.0.1:{api}/")])
        .output()
        .expect("curl (make deps installs it)");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && body.contains("api"), "curl: {body} {}", String::from_utf8_lossy(&out.stderr));
    let took = echo_exact(sys.host_port("api", 7), 10 << 20, Duration::from_secs(180));
    eprintln!("10 MiB echo through the gateway: {took:?}");
    let stats = gateway_stats(&sys);
    assert_eq!(counter(&stats, "api", "link_violations"), 0, "{stats}");
    assert!(counter(&stats, "api", "up_bytes") >= 10 << 20, "{stats}");
    assert!(counter(&stats, "api", "down_bytes") >= 10 << 20, "{stats}");
    let b = sys.stop();
    assert!(!b.output.contains("panicked"), "{}", b.output);
}

#[test]
fn a_thousand_connections_leave_nothing_behind_on_either_side() {
    let (_g, mut sys) = boot();
    let api = sys.host_port("api", 80);
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..250 {
                    let r = http_get(api, "/", Duration::from_secs(30));
                    match r {
                        Ok((200, body)) if body.contains("api") => {}
                        other => panic!("thread {t} request {i}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    eprintln!("1000 connections through the gateway in {:?}", start.elapsed());
    // Closing connections finish within the linger time (2 s gateway, 5 s service).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (stats, svc) = loop {
        let stats = gateway_stats(&sys);
        let (code, svc) = http_get(api, "/stats", Duration::from_secs(20)).expect("api /stats");
        assert_eq!(code, 200);
        // The /stats request itself is the service's one connection.
        let quiet = counter(&stats, "api", "live") <= 1 && counter(&stats, "api", "active") <= 1 && svc.starts_with("sockets=1 ");
        if quiet || Instant::now() > deadline {
            break (stats, svc);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(counter(&stats, "api", "completed") >= 1000, "{stats}");
    assert_eq!(counter(&stats, "api", "refused"), 0, "{stats}");
    assert_eq!(counter(&stats, "api", "link_violations"), 0, "{stats}");
    assert!(counter(&stats, "api", "live") <= 1, "gateway link connections leaked: {stats}");
    assert!(svc.starts_with("sockets=1 "), "service connections leaked: {svc}");
    // Quit both; their final counters show nothing open.
    assert_eq!(http_get(api, "/quit", Duration::from_secs(20)).expect("api /quit").0, 200);
    let admin = sys.host_port("gateway", 9000);
    assert_eq!(http_get(admin, "/quit", Duration::from_secs(20)).expect("gateway /quit").0, 200);
    // `evil` runs forever: stop once both have printed their counters
    // (each waits at most 3 s for its connections).
    std::thread::sleep(Duration::from_secs(8));
    let b = sys.stop();
    let gw = b.lines_of("gateway");
    let line = gw.iter().find(|l| l.starts_with("gateway stats: ")).unwrap_or_else(|| panic!("no counters:\n{}", b.output));
    assert_eq!(counter(line, "api", "live"), 0, "{line}");
    assert_eq!(counter(line, "api", "active"), 0, "{line}");
    let net = b.lines_of("api");
    assert!(net.iter().any(|l| l.starts_with("net stats: sockets=0 ")), "service's final counters:\n{}", b.output);
}

#[test]
fn a_hostile_service_does_not_take_the_gateway_or_other_routes_down() {
    let (_g, mut sys) = boot();
    let api = sys.host_port("api", 80);
    let evil = sys.host_port("evil", 8080);
    // Wait until the hostile service has done some damage.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = gateway_stats(&sys);
        if counter(&stats, "evil", "link_violations") > 100 {
            break;
        }
        assert!(Instant::now() < deadline, "the hostile service wrote no violations: {stats}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // A client of the hostile route gets an answer of some kind (reset,
    // end of stream, garbage) within the idle timeout, never a hang.
    for _ in 0..5 {
        let start = Instant::now();
        let mut s = connect(evil, Duration::from_secs(20));
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        assert!(start.elapsed() < Duration::from_secs(15), "the hostile route held a client {:?}", start.elapsed());
    }
    // The other route keeps working, meanwhile and after.
    for i in 0..50 {
        match http_get(api, "/", Duration::from_secs(20)) {
            Ok((200, body)) if body.contains("api") => {}
            other => panic!("request {i} to api next to the hostile service: {other:?}"),
        }
    }
    echo_exact(sys.host_port("api", 7), 256 << 10, Duration::from_secs(60));
    // The gateway still answers, and kept the damage to the hostile link.
    let stats = gateway_stats(&sys);
    assert_eq!(counter(&stats, "api", "link_violations"), 0, "{stats}");
    assert_eq!(counter(&stats, "api", "link_restarts"), 0, "{stats}");
    assert!(counter(&stats, "evil", "live") <= 32, "{stats}");
    let b = sys.stop();
    assert!(!b.output.contains("panicked"), "{}", b.output);
}

#[test]
fn a_restarted_service_costs_only_its_own_connections() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut sys = start_system("net-gateway-restart", &[]);
    let crashy = sys.host_port("crashy", 80);
    let body = sys.wait_http(crashy, "/", BOOT);
    assert_eq!(body, "crashy 0\n");
    let api = sys.host_port("api", 81);
    sys.wait_http(api, "/", Duration::from_secs(60));
    // A connection on the other service's route, open across the restart.
    let mut echo = connect(sys.host_port("api", 7), Duration::from_secs(20));
    let one = |s: &mut TcpStream, msg: &[u8]| {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).expect("echo across the restart");
        assert_eq!(got, msg);
    };
    one(&mut echo, b"before");
    // The service panics: the request gets no answer, only an end.
    let start = Instant::now();
    let r = http_get(crashy, "/crash", Duration::from_secs(20));
    assert!(!matches!(r, Ok((200, _))), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(20));
    // The hypervisor restarts it; the gateway takes connections for it again.
    let body = sys.wait_http(crashy, "/", Duration::from_secs(60));
    assert_eq!(body, "crashy 1\n");
    one(&mut echo, b"after the other service restarted");
    let stats = gateway_stats(&sys);
    assert!(counter(&stats, "crashy", "link_restarts") >= 1, "{stats}");
    assert_eq!(counter(&stats, "crashy", "link_violations"), 0, "{stats}");
    assert_eq!(counter(&stats, "api", "link_restarts"), 0, "{stats}");
    drop(echo);
    let b = sys.stop();
    assert!(b.output.contains("[crashy] crashy: serving 80, restart 1"), "{}", b.output);
}

/// `heap=N` in a `/stats` body (the first one: the service's own, or the
/// gateway's `net` line).
fn heap(stats: &str) -> u64 {
    stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("heap="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no heap in {stats}"))
}

#[test]
fn a_client_that_never_reads_is_held_to_a_bounded_buffer() {
    let (_g, mut sys) = boot();
    let api = sys.host_port("api", 80);
    let admin = sys.host_port("gateway", 9000);
    let sample = move || {
        let (_, gw) = http_get(admin, "/stats", Duration::from_secs(20)).expect("gateway /stats");
        let (_, svc) = http_get(api, "/stats", Duration::from_secs(20)).expect("api /stats");
        (heap(gw.split("\nnet ").nth(1).expect("net line")), heap(&svc))
    };
    let (gw_before, svc_before) = sample();
    // Write to the echo service and never read: the echo stalls on the
    // client, then the writes stall on the echo. Meanwhile, sample both
    // heaps (the web guest's echo gives up on a client that does not read
    // for 5 s and frees everything).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut max = (0, 0);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let (g, s) = sample();
            max = (max.0.max(g), max.1.max(s));
            std::thread::sleep(Duration::from_millis(100));
        }
        max
    });
    let mut s = connect(sys.host_port("api", 7), Duration::from_secs(5));
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        match s.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break, // the write timeout: back-pressure reached the client
        }
    }
    let stalled = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (gw_max, svc_max) = sampler.join().expect("sampler");
    eprintln!(
        "stalled after {written} bytes in {stalled:?}; heap gateway {gw_before} -> at most {gw_max}, \
         service {svc_before} -> at most {svc_max}"
    );
    assert!(stalled < Duration::from_secs(60), "60 s of writes never blocked ({written} bytes)");
    // The connection held buffers while it lived (the sampler saw them)...
    assert!(gw_max > gw_before, "the gateway never held the connection? {gw_before} -> {gw_max}");
    // ...and no more than a bound: per connection the gateway holds two
    // 8 KiB buffers, the link window (32 KiB) and its smoltcp buffers
    // (16 KiB each way), the service its window (16 KiB) and the echo's
    // buffer; allow for the admin requests.
    assert!(gw_max < gw_before + (256 << 10), "gateway heap {gw_before} -> {gw_max}");
    assert!(svc_max < svc_before + (256 << 10), "service heap {svc_before} -> {svc_max}");
    // Everything still works.
    assert_eq!(http_get(api, "/", Duration::from_secs(20)).expect("GET /").0, 200);
    drop(s);
    sys.stop();
}

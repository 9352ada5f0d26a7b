//! `hallows serve`: boot a system and keep it up for clients on the host.
//!
//! It waits until every `[[forward]]`ed service answers its own protocol
//! (not a bare TCP connect: QEMU's user-mode network accepts connections on
//! a forwarded port before any guest listens), prints how to reach each one
//! with the client people already use, and runs until SIGINT or SIGTERM.
//! Then it asks the hypervisor, over the console's control path, for each
//! partition's state and to stop every partition (the front doors first);
//! the hypervisor powers the machine off once the last has stopped, and
//! the per-partition summary is printed. QMP `quit` and, last, a kill are
//! the fallbacks, reported as an unclean stop (docs/deploy.md#make-serve).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use vmm_config::{Forward, Protocol, System};

use crate::qemu::{self, Control, Ended};

/// Exit status of `hallows serve` when a forwarded service did not answer
/// within the readiness timeout (the system was stopped).
pub const NOT_READY: u8 = 5;

/// One readiness check of the service on host port `port`: a request of
/// its protocol and a reply that only a server of that protocol gives.
pub fn probe(protocol: Protocol, port: u16) -> std::io::Result<bool> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reply = [0u8; 8];
    let read = |s: &mut TcpStream, buf: &mut [u8]| -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match s.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    };
    match protocol {
        Protocol::Http => {
            s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
            Ok(read(&mut s, &mut reply[..5])? == 5 && &reply[..5] == b"HTTP/")
        }
        Protocol::Redis => {
            // PING answers +PONG; a server that wants AUTH first answers
            // an error (`-NOAUTH ...`): a Redis server either way.
            s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
            Ok(read(&mut s, &mut reply[..1])? == 1 && (reply[0] == b'+' || reply[0] == b'-'))
        }
        Protocol::Kafka => {
            // ApiVersions v0 (key 18), correlation id "HALL", client id
            // "hallows"; the reply echoes the correlation id.
            let mut req = Vec::new();
            req.extend(18i16.to_be_bytes());
            req.extend(0i16.to_be_bytes());
            req.extend(*b"HALL");
            req.extend(7i16.to_be_bytes());
            req.extend(*b"hallows");
            let mut msg = (req.len() as i32).to_be_bytes().to_vec();
            msg.extend(req);
            s.write_all(&msg)?;
            Ok(read(&mut s, &mut reply[..8])? == 8 && &reply[4..8] == b"HALL")
        }
        Protocol::Postgres => {
            // SSLRequest: a PostgreSQL server answers one byte, `N` (no
            // TLS) or `S`.
            let mut msg = 8i32.to_be_bytes().to_vec();
            msg.extend(80_877_103i32.to_be_bytes());
            s.write_all(&msg)?;
            Ok(read(&mut s, &mut reply[..1])? == 1 && (reply[0] == b'N' || reply[0] == b'S'))
        }
        Protocol::Tcp => {
            // Any byte back (the line makes an HTTP server, and many line
            // protocols, answer): only a listening guest answers at all.
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            Ok(read(&mut s, &mut reply[..1])? == 1)
        }
    }
}

/// What the readiness check sends, for messages.
pub fn probe_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http => "an HTTP GET /",
        Protocol::Redis => "a Redis PING",
        Protocol::Kafka => "a Kafka ApiVersions request",
        Protocol::Postgres => "a PostgreSQL SSLRequest",
        Protocol::Tcp => "a line of text",
    }
}

/// The host command line that reaches the service behind host port `port`.
pub fn client_command(protocol: Protocol, port: u16) -> String {
    match protocol {
        Protocol::Http => format!("curl -i http://127.0.0.1:{port}/"),
        Protocol::Redis => format!("redis-cli -h 127.0.0.1 -p {port} ping"),
        Protocol::Kafka => format!("kcat -b 127.0.0.1:{port} -L"),
        Protocol::Postgres => format!("psql -h 127.0.0.1 -p {port}"),
        Protocol::Tcp => format!("nc 127.0.0.1 {port}"),
    }
}

/// The service behind a forward, as messages name it.
fn service(f: &Forward) -> String {
    let via = if f.nic_owner != f.to { format!(" via gateway `{}`", f.nic_owner) } else { String::new() };
    format!("partition `{}` port {}{via} ({}, host 127.0.0.1:{})", f.to, f.port, Protocol::of_forward(f).name(), f.host)
}

/// The lines that tell the user how to reach the running system.
pub fn endpoints(sys: &System, vnc: Option<u16>, qmp: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in &sys.forwards {
        let p = Protocol::of_forward(f);
        out.push(format!("{} port {} ({}): {}", f.to, f.port, p.name(), client_command(p, f.host)));
    }
    if let (Some(n), Some(p)) = (vnc, sys.partitions.iter().find(|p| p.display.is_some())) {
        out.push(format!("{} display: VNC 127.0.0.1:{} (vncviewer 127.0.0.1::{})", p.name, 5900 + n, 5900 + n));
    }
    out.push(format!("QMP: {}", qmp.display()));
    out
}

/// How waiting for the services ended.
enum Ready {
    Yes,
    /// The named service did not answer in time.
    TimedOut(String),
    /// A signal came first.
    Signalled,
    /// The machine ended first.
    Ended,
}

fn wait_ready(sys: &System, timeout: Duration, signalled: &AtomicBool, done: &AtomicBool) -> Ready {
    let deadline = Instant::now() + timeout;
    for f in &sys.forwards {
        let p = Protocol::of_forward(f);
        loop {
            if signalled.load(Ordering::Acquire) {
                return Ready::Signalled;
            }
            if done.load(Ordering::Acquire) {
                return Ready::Ended;
            }
            if probe(p, f.host).unwrap_or(false) {
                eprintln!("hallows: {} answers", service(f));
                break;
            }
            if Instant::now() >= deadline {
                return Ready::TimedOut(format!(
                    "{} did not answer {} within {} s (its partition's console lines above may say why; \
                     a slow machine: --ready-timeout)",
                    service(f),
                    probe_name(p),
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    Ready::Yes
}

/// Settings of a serve run.
pub struct Options<'a> {
    /// How long every service has to answer after QEMU starts.
    pub ready_timeout: Duration,
    /// The QMP socket (the system's `display_host.qmp`).
    pub qmp: &'a Path,
    /// The VNC display number, if the system's display is shown.
    pub vnc: Option<u16>,
    /// Set by SIGINT or SIGTERM.
    pub signalled: &'a AtomicBool,
}

/// Boots `image` of `sys`, waits for its services, prints how to reach
/// them, runs until `opts.signalled`, stops the system and prints the
/// per-partition summary. Returns the exit status: 0 stopped cleanly (or
/// the system ended by itself with status 0), 1 a partition failed or the
/// machine had to be stopped from outside, [`NOT_READY`].
pub fn serve(sys: &System, image: &Path, opts: &Options<'_>) -> Result<u8> {
    let control = Arc::new(Control::default());
    let (kill, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let names: Vec<&str> = sys.partitions.iter().map(|p| p.name.as_str()).collect();
    // Operator commands typed while it serves, as under `hallows run`.
    let input = control.clone();
    let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    std::thread::spawn(move || {
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if !line.trim().is_empty() {
                if let Err(e) = input.send(line.trim(), &names) {
                    eprintln!("hallows: {e}");
                }
            }
        }
    });
    std::thread::scope(|s| {
        let machine = s.spawn(|| {
            let out = qemu::run_controlled(sys, image, None, &kill, false, &[], &[], Some(control.clone()));
            done.store(true, Ordering::Release);
            out
        });
        let start = Instant::now();
        while control.pid().is_none() && !done.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(pid) = control.pid() {
            eprintln!("hallows: QEMU is process {pid}; waiting for the {} forwarded service(s) to answer", sys.forwards.len());
        }
        let ready = wait_ready(sys, opts.ready_timeout, opts.signalled, &done);
        let mut code = 0;
        match &ready {
            Ready::Yes => {
                eprintln!("hallows: serving; reach it from this machine with:");
                for l in endpoints(sys, opts.vnc, opts.qmp) {
                    eprintln!("hallows:   {l}");
                }
                eprintln!("hallows: Ctrl-C (or SIGTERM) stops it and prints each partition's summary");
                while !opts.signalled.load(Ordering::Acquire) && !done.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ready::TimedOut(why) => {
                eprintln!("hallows: error: {why}; stopping the system");
                code = NOT_READY;
            }
            Ready::Signalled | Ready::Ended => {}
        }
        let ended_by_itself = done.load(Ordering::Acquire);
        let mut clean = true;
        let mut at_stop = String::new();
        if !ended_by_itself {
            eprintln!("hallows: stopping: asking the hypervisor for each partition's state, then to stop each partition");
            at_stop = stop(sys, &control, &done);
            clean = wait_done(&done, Duration::from_secs(30));
            if !clean {
                eprintln!("hallows: the machine did not power off within 30 s of the stops; QMP quit");
                let quit = crate::qmp::Qmp::connect(opts.qmp, (1, 1), Duration::from_secs(2)).and_then(|mut q| q.execute("quit", serde_json::json!({})));
                if let Err(e) = quit {
                    eprintln!("hallows: QMP quit failed: {e:#}");
                }
                if !wait_done(&done, Duration::from_secs(10)) {
                    eprintln!("hallows: QEMU still runs; killing it");
                    kill.store(true, Ordering::Release);
                }
            }
        }
        let out = machine.join().map_err(|_| anyhow::anyhow!("the machine's thread panicked"))??;
        let _ = std::fs::remove_file(opts.qmp);
        let lines = summary(&out.output, &at_stop, &names);
        eprintln!("hallows: per-partition summary:");
        for l in &lines.lines {
            eprintln!("hallows:   {l}");
        }
        if ended_by_itself {
            let status = match (out.ended, out.status) {
                (Ended::Exited, Some(s)) => s,
                _ => 1,
            };
            eprintln!("hallows: the system ended by itself (status {status}) before it was asked to stop");
            return Ok(if code != 0 { code } else { status.clamp(0, 255) as u8 });
        }
        if !clean || out.ended != Ended::Exited {
            eprintln!("hallows: the system did not stop cleanly (stopped from outside the hypervisor)");
            return Ok(if code != 0 { code } else { 1 });
        }
        if !lines.failed.is_empty() {
            eprintln!("hallows: failed: {} (a fault stopped it, or it exited non-zero)", lines.failed.join(", "));
            return Ok(if code != 0 { code } else { 1 });
        }
        if code == 0 {
            eprintln!("hallows: stopped cleanly");
        }
        Ok(code)
    })
}

fn wait_done(done: &AtomicBool, t: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < t {
        if done.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done.load(Ordering::Acquire)
}

/// Asks for `status` (its `state:` lines, returned), then stops every
/// running partition: first those the forwards reach (no new requests come
/// in), then the rest, each group until its partitions have ended (a stop
/// refused while a partition restarts is sent again).
fn stop(sys: &System, control: &Control, done: &AtomicBool) -> String {
    let names: Vec<&str> = sys.partitions.iter().map(|p| p.name.as_str()).collect();
    let mark = control.output_len();
    let _ = control.send("status", &names);
    let start = Instant::now();
    let mut states = String::new();
    while start.elapsed() < Duration::from_secs(10) && !done.load(Ordering::Acquire) {
        states = control.output_since(mark);
        if names.iter().all(|n| states.lines().any(|l| l.trim_end().starts_with(&format!("[hallows] state: {n}: ")))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let front: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| sys.forwards.iter().any(|f| f.to == *n || f.nic_owner == *n))
        .collect();
    let rest: Vec<&str> = names.iter().copied().filter(|n| !front.contains(n)).collect();
    for group in [front, rest] {
        let running = |out: &str| -> Vec<&str> {
            qemu::partition_states(out, &names)
                .into_iter()
                .zip(&names)
                .filter(|((_, st), n)| st.starts_with("running") && group.contains(n))
                .map(|(_, n)| *n)
                .collect()
        };
        let start = Instant::now();
        let mut last_send: Option<Instant> = None;
        while start.elapsed() < Duration::from_secs(20) && !done.load(Ordering::Acquire) {
            let left = running(&control.output());
            if left.is_empty() {
                break;
            }
            if last_send.is_none_or(|t| t.elapsed() >= Duration::from_secs(3)) {
                for n in &left {
                    let _ = control.send(&format!("stop {n}"), &names);
                }
                last_send = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    states
}

/// The summary of a stopped system.
pub struct Summary {
    /// One line per partition.
    pub lines: Vec<String>,
    /// Partitions that a fault stopped or that exited non-zero.
    pub failed: Vec<String>,
}

/// Each partition's line: its state when the stop began (`at_stop`: the
/// hypervisor's `state:` lines, uptime, restarts, faults, watchdog misses),
/// how it ended (the hypervisor's `summary:` line, or the console's
/// partition lines if the machine never printed one), and the
/// hypervisor's other per-partition counters (watchdog looks); then the
/// hypervisor's page-table line.
pub fn summary(output: &str, at_stop: &str, names: &[&str]) -> Summary {
    let hv = |text: &'_ str| -> Vec<String> {
        text.lines().filter_map(|l| l.trim_end_matches('\r').strip_prefix("[hallows] ").map(str::to_owned)).collect()
    };
    let (hv_out, hv_stop) = (hv(output), hv(at_stop));
    let states = qemu::partition_states(output, names);
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for (name, fallback) in states {
        let key = format!("{name}: ");
        let find = |lines: &[String], prefix: &str| lines.iter().rev().find_map(|l| l.strip_prefix(prefix).and_then(|r| r.strip_prefix(&key)).map(str::to_owned));
        let then = find(&hv_stop, "state: ").map(|s| format!("at the stop: {s}; ")).unwrap_or_default();
        let end = find(&hv_out, "summary: ").unwrap_or(fallback);
        let looks = find(&hv_out, "watchdog: ").map(|s| format!("; watchdog: {s}")).unwrap_or_default();
        let ok = end.starts_with("stopped: by the operator") || end.starts_with("exited 0") || end.starts_with("running");
        if !ok {
            failed.push(name.clone());
        }
        lines.push(format!("{name}: {then}end: {end}{looks}"));
    }
    if let Some(pages) = hv_out.iter().find(|l| l.ends_with("page-table pages used at the end")) {
        lines.push(format!("hypervisor: {pages}"));
    }
    Summary { lines, failed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server on a free port that reads the request and
    /// answers `reply`; returns its port.
    fn fake(reply: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in l.incoming().take(1) {
                let mut c = c.unwrap();
                let mut buf = [0u8; 256];
                let _ = c.read(&mut buf);
                let _ = c.write_all(reply);
            }
        });
        port
    }

    #[test]
    fn each_probe_accepts_its_own_protocol_only() {
        let http: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let redis: &[u8] = b"+PONG\r\n";
        let kafka: &[u8] = b"\0\0\0\x06HALL\0\0";
        let pg: &[u8] = b"N";
        let replies = [(Protocol::Http, http), (Protocol::Redis, redis), (Protocol::Kafka, kafka), (Protocol::Postgres, pg)];
        for (p, reply) in replies {
            for (q, other) in replies {
                let ok = probe(p, fake(other)).unwrap_or(false);
                assert_eq!(ok, p == q, "{} probe against a {} reply", p.name(), q.name());
            }
            assert!(probe(Protocol::Tcp, fake(reply)).unwrap(), "any answer is a TCP service's");
        }
        // Accepted and closed without a byte: what QEMU's forward does
        // before the guest listens.
        assert!(!probe(Protocol::Http, fake(b"")).unwrap_or(false));
        assert!(!probe(Protocol::Tcp, fake(b"")).unwrap_or(false));
        // Kafka: the reply must echo our correlation id.
        assert!(!probe(Protocol::Kafka, fake(b"\0\0\0\x06XXXX\0\0")).unwrap_or(false));
    }

    #[test]
    fn the_summary_joins_the_state_at_the_stop_with_the_end() {
        let at_stop = "[hallows] state: api: running, up 12.345 s, restarts 1, faults 1, watchdog misses 0\n\
                       [hallows] state: db: running, up 12.300 s, restarts 0, faults 0, watchdog misses 0\n\
                       [api] [hallows] state: db: forged\n";
        let output = format!(
            "{at_stop}[hallows] partition api stopped: by the operator\n[hallows] partition db stopped: stage-2 fault\n\
             [hallows] watchdog: api: 40 looks\n\
             [hallows] summary: api: stopped: by the operator (restarted 1 times)\n[hallows] summary: db: stopped: stage-2 fault\n\
             [hallows] 22 page-table pages used at the end\n"
        );
        let s = summary(&output, at_stop, &["api", "db"]);
        assert_eq!(
            s.lines,
            [
                "api: at the stop: running, up 12.345 s, restarts 1, faults 1, watchdog misses 0; end: stopped: by the operator (restarted 1 times); watchdog: 40 looks",
                "db: at the stop: running, up 12.300 s, restarts 0, faults 0, watchdog misses 0; end: stopped: stage-2 fault",
                "hypervisor: 22 page-table pages used at the end",
            ]
        );
        assert_eq!(s.failed, ["db"]);
    }

    #[test]
    fn client_commands_name_the_host_port() {
        assert_eq!(client_command(Protocol::Redis, 16379), "redis-cli -h 127.0.0.1 -p 16379 ping");
        assert_eq!(client_command(Protocol::Kafka, 9092), "kcat -b 127.0.0.1:9092 -L");
        assert_eq!(client_command(Protocol::Postgres, 15432), "psql -h 127.0.0.1 -p 15432");
        assert_eq!(client_command(Protocol::Http, 8080), "curl -i http://127.0.0.1:8080/");
    }
}

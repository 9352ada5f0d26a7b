//! `hallows net-cost`: instructions per keep-alive HTTP request, for the
//! hypervisor (EL2) and for the guest that serves the request, split by
//! the part of the stack that ran them.
//!
//! Method: the system runs under QEMU with every instruction in the
//! measured ranges logged (`-singlestep -d exec,nochain -dfilter`, each
//! line naming the core that ran it; QEMU flushes the log after every
//! line). Once the service answers, the tool opens one keep-alive
//! connection, sends `warm-up` requests, waits for the machine to settle,
//! notes where the log ends, sends `n` requests (each waiting for its whole
//! response), waits for the last ACKs, notes the log's end again, and
//! counts what was logged in between: boot, the readiness probe and the
//! connection's set-up lie outside the window. Idle time does not: a
//! poll-mode partition spins while it waits for the client, so its *guest*
//! count grows with wall time (measure the guest's cost in interrupt mode,
//! where an idle core sleeps); the hypervisor count is exact either way.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmm_config::System;

use crate::qemu;

/// Where the guest's instructions went.
pub const PARTS: &[&str] = &["driver (virtio)", "tcp/ip (smoltcp)", "net glue (hallows-net)", "gateway link", "runtime", "library (core/alloc)", "application", "other"];

fn part_of(symbol: &str) -> usize {
    let s = symbol.trim_start_matches('<').trim_start_matches('&');
    let first = s.split("::").next().unwrap_or("");
    match first {
        "virtio_drivers" => 0,
        "smoltcp" => 1,
        "hallows_net" => 2,
        "hallows_link" | "hallows_ring" => 3,
        "hallows_rt" | "hallows_sched" | "buddy_system_allocator" | "spin" => 4,
        "core" | "alloc" | "compiler_builtins" | "memcpy" | "memset" | "memmove" | "memcmp" | "bcmp" => 5,
        "?" | "" => 7,
        _ => 6,
    }
}

/// Instructions of one traced run.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Hypervisor instructions on the measured partitions' cores.
    pub el2: u64,
    /// Hypervisor instructions on every other core.
    pub el2_other: u64,
    /// Guest instructions of each measured partition, by [`PARTS`].
    pub guest: Vec<[u64; 8]>,
    /// Guest instructions of each measured partition, by function, most
    /// first.
    pub functions: Vec<Vec<(String, u64)>>,
    /// [`crate::trace::Reader::summary`] of the window.
    pub repeats: String,
}

/// One partition whose guest instructions are counted.
pub struct Measured {
    pub name: String,
    /// Its board cores (QEMU CPU indices).
    pub cores: Vec<usize>,
    /// Its guest's code.
    pub text: Range<u64>,
    /// Its guest's symbols, sorted by address, demangled.
    pub symbols: Vec<(u64, String)>,
}

/// What to measure: the hypervisor image and the partitions that serve.
pub struct Target<'a> {
    pub hv: Range<u64>,
    pub partitions: Vec<Measured>,
    pub host_port: u16,
    pub path: &'a str,
    /// Header lines sent with every HTTP request (`Name: value\r\n` each;
    /// see [`header_lines`]).
    pub headers: String,
    /// A request sent once before the warm-up (see [`Prime`]).
    pub prime: Option<Prime>,
    /// The hypervisor's and the guests' instruction bytes, by which the
    /// trace's reader drops the lines of blocks QEMU left without running
    /// them ([`crate::trace`]).
    pub code: crate::trace::Code,
}

/// `--header` values as the lines sent: each `Name: value`, the name a
/// token, no CR, LF or other control characters anywhere.
pub fn header_lines(headers: &[String]) -> Result<String> {
    let mut out = String::new();
    for h in headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header {h:?}: expected `Name: value`");
        };
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            bail!("--header {h:?}: the name must be a non-empty HTTP token (letters, digits, !#$%&'*+-.^_`|~)");
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            bail!("--header {h:?}: the value has a control character (CR and LF would split the request)");
        }
        out.push_str(&format!("{name}: {}\r\n", value.trim()));
    }
    Ok(out)
}

/// `--prime "METHOD PATH [BODY]"`: one request sent before the warm-up
/// (e.g. `POST /todos {"title":"x"}` so that `GET /todos/1` finds a
/// record), with the `--header`s; its answer must be 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prime {
    pub method: String,
    pub path: String,
    pub body: String,
}

impl std::str::FromStr for Prime {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Prime> {
        let mut it = s.splitn(3, ' ');
        let (Some(method), Some(path)) = (it.next(), it.next()) else {
            bail!("--prime {s:?}: expected `METHOD PATH [BODY]`");
        };
        if method.is_empty() || !method.chars().all(|c| c.is_ascii_uppercase()) {
            bail!("--prime {s:?}: the method must be upper-case letters (GET, POST, ...)");
        }
        if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
            bail!("--prime {s:?}: the path must start with `/` and have no spaces or control characters");
        }
        Ok(Prime { method: method.to_owned(), path: path.to_owned(), body: it.next().unwrap_or("").to_owned() })
    }
}

impl Prime {
    /// Sends the request on a connection of its own; fails unless 2xx.
    pub fn send(&self, port: u16, headers: &str) -> Result<()> {
        let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let (method, path, body) = (&self.method, &self.path, &self.body);
        let kind = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
        write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        if !answer.starts_with("HTTP/1.1 2") {
            bail!("--prime {method} {path}: answered {:?}", answer.lines().next().unwrap_or("nothing"));
        }
        Ok(())
    }
}

/// A keep-alive client connection: HTTP or Redis on a plain socket, or a
/// Kafka client (`kafka:` workloads).
pub enum Client {
    Plain { s: TcpStream, r: std::io::BufReader<TcpStream>, headers: String },
    Kafka { c: hallows_log::client::Client, topic: String, depth: usize, sent: u64 },
}

impl Client {
    /// Connects to `port`; for a `kafka:[P<depth>:]TOPIC` workload, also
    /// creates the topic (one partition) unless it exists.
    pub fn connect(port: u16, path: &str, headers: &str) -> Result<Client> {
        if let Some(spec) = path.strip_prefix("kafka:") {
            let (depth, topic) = pipelined(spec)?;
            let mut c = hallows_log::client::Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(60))?;
            match c.create_topic(topic, 1, &[])? {
                0 | 36 => {} // created, or TOPIC_ALREADY_EXISTS
                e => bail!("CreateTopics {topic}: error {e}"),
            }
            return Ok(Client::Kafka { c, topic: topic.to_owned(), depth: depth as usize, sent: 0 });
        }
        let s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.set_nodelay(true)?;
        Ok(Client::Plain { r: std::io::BufReader::new(s.try_clone()?), s, headers: headers.to_owned() })
    }

    /// Sends `n` requests and reads each response whole: GETs one at a
    /// time (by Content-Length), Redis commands `depth` per write, Kafka
    /// Produce requests (acks=all) of one RecordBatch of 16 records of
    /// 100 bytes each, `depth` in flight.
    pub fn requests(&mut self, path: &str, n: u64) -> Result<()> {
        match self {
            Client::Plain { s, r, headers } => keep_alive_requests(s, r, path, headers, n),
            Client::Kafka { c, topic, depth, sent } => {
                let sets: Vec<Vec<u8>> = (*sent..*sent + n).map(|b| record_set(b * 16)).collect();
                let res = c.produce_pipelined(topic, 0, &sets, -1, *depth)?;
                if let Some((e, _)) = res.iter().find(|(e, _)| *e != 0) {
                    bail!("produce to {topic}: error {e}");
                }
                *sent += n;
                Ok(())
            }
        }
    }
}

/// Waits until a Kafka broker on `port` answers (creates the workload's
/// topic) or `stop` is set.
fn wait_for_kafka(port: u16, path: &str, stop: &AtomicBool) -> bool {
    while !stop.load(Ordering::Acquire) {
        if Client::connect(port, path, "").is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// `[P<depth>:]REST` as (depth, REST); depth 1 when absent.
fn pipelined(spec: &str) -> Result<(u64, &str)> {
    Ok(match spec.strip_prefix('P').and_then(|x| x.split_once(':')) {
        Some((d, rest)) => (d.parse::<u64>().context("pipeline depth")?.max(1), rest),
        None => (1, spec),
    })
}

/// A RecordBatch v2 of 16 records of 100 bytes, numbered from `first`.
fn record_set(first: u64) -> Vec<u8> {
    let vals: Vec<Vec<u8>> = (first..first + 16).map(|i| format!("{i:>16}{}", "x".repeat(84)).into_bytes()).collect();
    let kv: Vec<hallows_log::batch::KeyValue> = vals.iter().map(|v| (None, Some(&v[..]))).collect();
    hallows_log::batch::encode(0, 1_700_000_000_000, &kv)
}

/// A `path` of the form `redis:[P<depth>:]ARG ARG...` (e.g.
/// `redis:GET k`, `redis:P16:SET k v`) sends Redis requests instead of
/// HTTP GETs: `depth` at a time in one write (pipelining), each reply
/// read whole.
fn redis_requests(s: &mut TcpStream, r: &mut std::io::BufReader<TcpStream>, spec: &str, n: u64) -> Result<()> {
    let (depth, cmd) = pipelined(spec)?;
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let mut one = format!("*{}\r\n", args.len());
    for a in &args {
        one.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let mut sent = 0;
    while sent < n {
        let k = depth.min(n - sent);
        s.write_all(one.repeat(k as usize).as_bytes())?;
        for _ in 0..k {
            let mut line = String::new();
            r.read_line(&mut line)?;
            match line.as_bytes().first() {
                Some(b'+') | Some(b':') => {}
                Some(b'$') => {
                    let len: i64 = line[1..].trim().parse().context("bulk length")?;
                    if len >= 0 {
                        let mut body = vec![0u8; len as usize + 2];
                        r.read_exact(&mut body)?;
                    }
                }
                _ => bail!("request {sent}: {line:?}"),
            }
        }
        sent += k;
    }
    Ok(())
}

fn keep_alive_requests(s: &mut TcpStream, r: &mut std::io::BufReader<TcpStream>, path: &str, headers: &str, n: u64) -> Result<()> {
    if let Some(spec) = path.strip_prefix("redis:") {
        return redis_requests(s, r, spec, n);
    }
    for i in 0..n {
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n")?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!("request {i}: {line:?}");
        }
        let mut len = 0usize;
        loop {
            line.clear();
            r.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().context("Content-Length")?;
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
    }
    Ok(())
}

/// Boots `image` with the measured ranges traced, waits for the service
/// to answer, sends `warm` then `n` keep-alive requests on one connection,
/// stops the machine and counts the instructions of the `n`; then the
/// same for a window as long without traffic (what idling costs: a
/// polling partition's spin).
pub fn traced_run(sys: &System, image: &Path, t: &Target<'_>, warm: u64, n: u64, conns: u64) -> Result<(Counts, Counts)> {
    let log = image.with_extension(format!("net{n}.log"));
    let mut filter = vec![format!("{:#x}+{:#x}", t.hv.start, t.hv.end - t.hv.start)];
    for m in &t.partitions {
        // Guests linked at the same addresses share one range (the trace
        // tells them apart by core).
        let range = format!("{:#x}+{:#x}", m.text.start, m.text.end - m.text.start);
        if !filter.contains(&range) {
            filter.push(range);
        }
    }
    let extra: Vec<String> = vec![
        "-singlestep".into(),
        "-d".into(),
        "exec,nochain".into(),
        "-dfilter".into(),
        filter.join(","),
        "-D".into(),
        log.display().to_string(),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, system, img) = (stop.clone(), sys.clone(), image.to_path_buf());
    let machine = std::thread::spawn(move || qemu::run_until(&system, &img, Some(Duration::from_secs(900)), &flag, true, &extra));
    let deadline = Instant::now() + Duration::from_secs(600);
    let answered = {
        let give_up = AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                while Instant::now() < deadline && !machine.is_finished() && !give_up.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(200));
                }
                give_up.store(true, Ordering::Release);
            });
            let ok = if t.path.starts_with("kafka:") { wait_for_kafka(t.host_port, t.path, &give_up) } else { qemu::wait_for_answer(t.host_port, &give_up) };
            give_up.store(true, Ordering::Release);
            ok
        })
    };
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let window = (|| {
        if !answered {
            bail!("the service never answered");
        }
        if let Some(p) = &t.prime {
            p.send(t.host_port, &t.headers)?;
        }
        let mut clients = (0..conns.max(1)).map(|_| Client::connect(t.host_port, t.path, &t.headers)).collect::<Result<Vec<_>>>()?;
        // Warm-up on every connection at once: a connection left idle for
        // a few seconds (the web guest's keep-alive limit is 5 s) is closed.
        let k = clients.len() as u64;
        all(&mut clients, t.path, warm * k)?;
        std::thread::sleep(Duration::from_millis(500));
        let from = size();
        let started = Instant::now();
        all(&mut clients, t.path, n)?;
        // The client's last ACK reaches the guest.
        std::thread::sleep(Duration::from_millis(200));
        let to = size();
        let took = started.elapsed();
        std::thread::sleep(took);
        Ok((from..to, to..size()))
    })();
    stop.store(true, Ordering::Release);
    let out = machine.join().map_err(|_| anyhow::anyhow!("QEMU thread panicked"))??;
    let (busy, idle) = match window {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&log);
            bail!("{e:#}\n{}", out.output);
        }
    };
    // HALLOWS_NETCOST_PCS=FILE: the busy window's instruction addresses (and
    // FILE.idle the idle window's).
    let dump = std::env::var_os("HALLOWS_NETCOST_PCS");
    let idle_dump = dump.as_ref().map(|d| {
        let mut d = d.clone();
        d.push(".idle");
        d
    });
    let counts = count(&log, busy, t, dump).and_then(|b| Ok((b, count(&log, idle, t, idle_dump)?)));
    let _ = std::fs::remove_file(&log);
    counts
}

/// `n` requests spread over `clients`, all sending at once: with several
/// connections the serving cores always have a request to work on.
fn all(clients: &mut [Client], path: &str, n: u64) -> Result<()> {
    let k = clients.len() as u64;
    std::thread::scope(|sc| {
        let jobs: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(i, c)| sc.spawn(move || c.requests(path, n / k + u64::from((i as u64) < n % k))))
            .collect();
        jobs.into_iter().try_for_each(|j| j.join().map_err(|_| anyhow::anyhow!("client thread panicked"))?)
    })
}

fn count(log: &Path, window: Range<u64>, t: &Target<'_>, dump: Option<std::ffi::OsString>) -> Result<Counts> {
    use std::io::Seek;
    let mut file = std::fs::File::open(log).with_context(|| format!("reading {}", log.display()))?;
    file.seek(std::io::SeekFrom::Start(window.start))?;
    let mut c = Counts {
        el2: 0,
        el2_other: 0,
        guest: vec![[0; 8]; t.partitions.len()],
        functions: vec![Vec::new(); t.partitions.len()],
        repeats: String::new(),
    };
    let mut reader = crate::trace::Reader::new(&t.code);
    let mut by_pc: Vec<HashMap<u64, u64>> = vec![HashMap::new(); t.partitions.len()];
    let serving: Vec<usize> = t.partitions.iter().flat_map(|m| m.cores.iter().copied()).collect();
    // QEMU writes whole lines and flushes each: both ends fall on a line start.
    for line in std::io::BufReader::new(file.take(window.end - window.start)).lines() {
        let Some((cpu, pc)) = reader.line(&line?) else { continue };
        if t.hv.contains(&pc) {
            if serving.contains(&cpu) {
                c.el2 += 1;
            } else {
                c.el2_other += 1;
            }
        } else if let Some(i) = t.partitions.iter().position(|m| m.cores.contains(&cpu) && m.text.contains(&pc)) {
            *by_pc[i].entry(pc).or_default() += 1;
        }
    }
    // For finding a hot spot inside a function: every counted guest
    // instruction's address and count, for `llvm-objdump` to annotate.
    if let Some(dump) = dump {
        let mut lines = String::new();
        for (i, pcs) in by_pc.iter().enumerate() {
            let mut v: Vec<_> = pcs.iter().collect();
            v.sort();
            for (pc, n) in v {
                lines.push_str(&format!("{i} {pc:#x} {n}\n"));
            }
        }
        std::fs::write(&dump, lines).with_context(|| format!("writing {}", Path::new(&dump).display()))?;
    }
    c.repeats = reader.summary();
    for (i, m) in t.partitions.iter().enumerate() {
        let mut by_fn: HashMap<&str, u64> = HashMap::new();
        for (pc, n) in &by_pc[i] {
            let k = m.symbols.partition_point(|(a, _)| a <= pc);
            let name = if k == 0 { "?" } else { m.symbols[k - 1].1.as_str() };
            c.guest[i][part_of(name)] += n;
            *by_fn.entry(name).or_default() += n;
        }
        let mut v: Vec<(String, u64)> = by_fn.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        c.functions[i] = v;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked_and_joined() {
        let h = |v: &[&str]| header_lines(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(h(&["Authorization: Bearer t", "X-A:b"]).unwrap(), "Authorization: Bearer t\r\nX-A: b\r\n");
        assert_eq!(h(&[]).unwrap(), "");
        for bad in ["no colon", ": empty name", "Bad Name: x", "X: a\r\nInjected: y", "X: a\nb"] {
            assert!(h(&[bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prime_requests_parse() {
        let p: Prime = r#"POST /todos {"title":"x y"}"#.parse().unwrap();
        assert_eq!(p, Prime { method: "POST".into(), path: "/todos".into(), body: r#"{"title":"x y"}"#.into() });
        let p: Prime = "DELETE /todos/1".parse().unwrap();
        assert_eq!((p.method.as_str(), p.path.as_str(), p.body.as_str()), ("DELETE", "/todos/1", ""));
        for bad in ["POST", "post /x", "POST todos", "GET /a\tb", ""] {
            assert!(bad.parse::<Prime>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn symbols_fall_into_their_part_of_the_stack() {
        assert_eq!(PARTS[part_of("<smoltcp::iface::interface::Interface>::poll")], "tcp/ip (smoltcp)");
        assert_eq!(PARTS[part_of("virtio_drivers::device::net::dev_raw::VirtIONetRaw<H,T,_>::receive_begin")], "driver (virtio)");
        assert_eq!(PARTS[part_of("hallows_rt::task::run_loop")], "runtime");
        assert_eq!(PARTS[part_of("memcpy")], "library (core/alloc)");
        assert_eq!(PARTS[part_of("web::http::parse")], "application");
        assert_eq!(PARTS[part_of("?")], "other");
    }
}

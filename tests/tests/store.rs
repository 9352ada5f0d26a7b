//! The OLTP store partition under QEMU (aarch64), with the real clients:
//! a scripted `redis-cli` session over every command, `redis-benchmark`
//! with and without pipelining, a clean shutdown and a boot on the same
//! disk; and the crash campaign: a write load from the host, QEMU killed
//! at a random moment, booted again on the same disk image, every
//! acknowledged write checked (and transactions all or nothing); then
//! random bytes of the image flipped: nothing wrong is ever served.
//!
//! `make test` runs a short campaign; `make store-crash` the long one
//! (`STORE_KILLS`, `STORE_FLIPS`).
//!
//! QEMU's user-mode network accepts host connections with a listen
//! backlog of one: a burst of 50 new connections (redis-benchmark's
//! default) waits on SYN retransmissions for seconds, so the benchmark
//! runs use 10 clients.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hallows_tests::{root, start_system_edited, Running};

const READY: Duration = Duration::from_secs(180);

fn disk(name: &str) -> PathBuf {
    let dir = root().join("target/hallows/tests/store");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.img"));
    let _ = std::fs::remove_file(&p);
    p
}

fn start(system: &str, image: &Path) -> (Running, u16) {
    let img = image.to_path_buf();
    let run = start_system_edited(system, &[], &move |s| {
        s.partitions.iter_mut().find(|p| p.name == "store").and_then(|p| p.disk.as_mut()).expect("the store has a disk").path = img.clone();
    });
    let port = run.host_port("store", 6379);
    (run, port)
}

/// A RESP connection from the host.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Conn { r: BufReader::new(s.try_clone()?), w: s })
    }
    fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let mut b = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            b.extend_from_slice(a);
            b.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&b)
    }
    fn read(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n");
        let (t, rest) = line.split_at(1);
        Ok(match t {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    self.r.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    Reply::Array(None)
                } else {
                    Reply::Array(Some((0..n).map(|_| self.read()).collect::<std::io::Result<_>>()?))
                }
            }
            _ => panic!("not RESP: {line}"),
        })
    }
    fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        self.send(args)?;
        self.read()
    }
}

fn wait_ready(run: &mut Running, port: u16) {
    let start = Instant::now();
    while start.elapsed() < READY {
        if run.ended() {
            let b = run.wait();
            panic!("the store ended before answering:\n{}", b.output);
        }
        if let Ok(mut c) = Conn::open(port) {
            if matches!(c.call(&[b"PING"]), Ok(Reply::Simple(s)) if s == "PONG") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let b = run.stop();
    panic!("the store did not answer PING within {READY:?}:\n{}", b.output);
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli (make deps installs redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// Stops the store cleanly (its `quit` boot argument) and checks it exited 0.
fn shutdown(mut run: Running, port: u16) -> String {
    // (redis-cli handles QUIT itself, without sending it.)
    let mut c = Conn::open(port).unwrap();
    assert_eq!(c.call(&[b"CLIENT", b"SETNAME", b"hallows-shutdown"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(c.call(&[b"QUIT"]).unwrap(), Reply::Simple("OK".into()));
    let b = run.wait();
    b.assert_status(0);
    assert!(b.output.contains("store: shut down"), "{}", b.output);
    b.output
}

#[test]
fn redis_cli_and_redis_benchmark_work_unmodified() {
    cli_session("store", "cli");
}

/// The same session on x86_64 (QEMU microvm, AMD SVM): the same guest.
#[test]
fn x86_redis_cli_and_redis_benchmark_work_unmodified() {
    cli_session("x86-store", "x86-cli");
}

fn cli_session(system: &str, name: &str) {
    let image = disk(name);
    let (mut run, port) = start(system, &image);
    wait_ready(&mut run, port);
    // (arguments, what redis-cli prints)
    let session: &[(&[&str], &str)] = &[
        (&["PING"], "PONG"),
        (&["PING", "hi"], "hi"),
        (&["ECHO", "hello world"], "hello world"),
        (&["SET", "k", "v1"], "OK"),
        (&["GET", "k"], "v1"),
        (&["SET", "k", "v2", "NX"], ""),
        (&["SET", "k", "v2", "XX"], "OK"),
        (&["SET", "nx", "1", "XX"], ""),
        (&["GET", "k"], "v2"),
        (&["SET", "t", "x", "EX", "100"], "OK"),
        (&["TTL", "t"], "100"),
        (&["SET", "p", "x", "PX", "100000"], "OK"),
        (&["TTL", "p"], "100"),
        (&["SET", "k", "v", "EX", "0"], "ERR invalid expire time in 'set' command"),
        (&["SET", "k", "v", "NX", "XX"], "ERR syntax error"),
        (&["EXPIRE", "k", "5000"], "1"),
        (&["TTL", "k"], "5000"),
        (&["EXPIRE", "missing", "50"], "0"),
        (&["TTL", "missing"], "-2"),
        (&["TTL", "nx"], "-2"),
        (&["SET", "n", "10"], "OK"),
        (&["TTL", "n"], "-1"),
        (&["INCR", "n"], "11"),
        (&["INCRBY", "n", "-20"], "-9"),
        (&["DECR", "n"], "-10"),
        (&["INCR", "fresh"], "1"),
        (&["INCR", "k"], "ERR value is not an integer or out of range"),
        (&["SET", "big", "9223372036854775807"], "OK"),
        (&["INCR", "big"], "ERR increment or decrement would overflow"),
        (&["MSET", "a", "1", "b", "2", "c", "3"], "OK"),
        (&["MGET", "a", "b", "nope", "c"], "1\n2\n\n3"),
        (&["MSET", "a"], "ERR wrong number of arguments for 'mset' command"),
        (&["EXISTS", "a", "b", "nope", "a"], "3"),
        (&["DEL", "a", "b", "nope"], "2"),
        (&["EXISTS", "a"], "0"),
        (&["HSET", "h", "f1", "v1", "f2", "v2"], "2"),
        (&["HSET", "h", "f1", "w1"], "0"),
        (&["HGET", "h", "f1"], "w1"),
        (&["HGET", "h", "none"], ""),
        (&["HGETALL", "h"], "f1\nw1\nf2\nv2"),
        (&["HDEL", "h", "f1", "none"], "1"),
        (&["HGETALL", "h"], "f2\nv2"),
        (&["GET", "h"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (&["LPUSH", "l", "a", "b"], "2"),
        (&["RPUSH", "l", "c", "d"], "4"),
        (&["LRANGE", "l", "0", "-1"], "b\na\nc\nd"),
        (&["LRANGE", "l", "1", "2"], "a\nc"),
        (&["LPOP", "l"], "b"),
        (&["RPOP", "l", "2"], "d\nc"),
        (&["LRANGE", "l", "0", "-1"], "a"),
        (&["LPUSH", "h", "x"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (&["KEYS", "*"], "big\nc\nfresh\nh\nk\nl\nn\np\nt"),
        (&["KEYS", "[hk]"], "h\nk"),
        (&["SCAN", "0", "MATCH", "f*", "COUNT", "100"], "0\nfresh"),
        (&["DBSIZE"], "9"),
        (&["TYPE", "h"], "hash"),
        (&["TYPE", "l"], "list"),
        (&["TYPE", "nope"], "none"),
        (&["CONFIG", "GET", "appendonly"], "appendonly\nyes"),
        (&["CONFIG", "GET", "save"], "save"),
        (&["CONFIG", "SET", "save", ""], "ERR CONFIG SET is not supported: the manifest sets the store's durability (disk.durability) and size"),
        (&["COMMAND", "COUNT"], "44"),
        (&["SELECT", "1"], "ERR DB index is out of range"),
        (&["NOSUCH", "x"], "ERR unknown command 'NOSUCH', with args beginning with: 'x'"),
        (&["GET"], "ERR wrong number of arguments for 'get' command"),
    ];
    for (args, want) in session {
        assert_eq!(redis_cli(port, args), *want, "redis-cli {args:?}");
    }
    // SCAN through everything in small steps.
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    loop {
        let out = redis_cli(port, &["SCAN", &cursor, "COUNT", "2"]);
        let mut lines = out.lines();
        cursor = lines.next().unwrap().to_owned();
        seen.extend(lines.map(str::to_owned));
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen.join(","), "big,c,fresh,h,k,l,n,p,t");
    let info = redis_cli(port, &["INFO"]);
    assert!(info.contains("db0:keys=9,expires=3"), "{info}");
    assert!(info.contains("hallows_durability:strict"), "{info}");
    // A transaction, then a discarded one, then one with a queueing error
    // (redis-cli reading commands from a pipe prints a blank line after
    // each error).
    let multi = |script: &str| {
        let mut c = Command::new("redis-cli").arg("-p").arg(port.to_string()).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        c.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).trim_end().to_owned()
    };
    assert_eq!(multi("MULTI\nSET tx 1\nINCR tx\nGET tx\nEXEC\n"), "OK\nQUEUED\nQUEUED\nQUEUED\nOK\n2\n2");
    assert_eq!(multi("MULTI\nSET tx 9\nDISCARD\nGET tx\n"), "OK\nQUEUED\nOK\n2");
    assert_eq!(multi("MULTI\nSET tx 9\nGET\nEXEC\nGET tx\n"), "OK\nQUEUED\nERR wrong number of arguments for 'get' command\n\nEXECABORT Transaction discarded because of previous errors.\n\n2");
    assert_eq!(multi("EXEC\nDISCARD\n"), "ERR EXEC without MULTI\n\nERR DISCARD without MULTI");
    // Pipelining, raw: three requests in one write, three replies.
    let mut c = Conn::open(port).unwrap();
    c.w.write_all(b"*3\r\n$3\r\nSET\r\n$2\r\npp\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$2\r\npp\r\nPING\r\n").unwrap();
    assert_eq!(c.read().unwrap(), Reply::Simple("OK".into()));
    assert_eq!(c.read().unwrap(), Reply::Int(2));
    assert_eq!(c.read().unwrap(), Reply::Simple("PONG".into()));
    // A protocol error is answered, then the connection closes.
    c.w.write_all(b"*1\r\n$-7\r\n").unwrap();
    assert_eq!(c.read().unwrap(), Reply::Error("ERR Protocol error: invalid bulk length".into()));
    assert!(c.read().is_err());
    // redis-benchmark, without and with pipelining: every test runs, no error.
    for extra in [&["-n", "3000"][..], &["-n", "20000", "-P", "16"][..]] {
        let out = Command::new("timeout")
            .args(["300", "redis-benchmark", "-p", &port.to_string(), "-c", "10", "-q", "-t", "ping,set,get,incr,lpush,mset"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
        assert!(out.status.success(), "redis-benchmark {extra:?}: {out:?}");
        for t in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "MSET (10 keys)"] {
            assert!(text.lines().any(|l| l.starts_with(&format!("{t}: ")) && l.contains("requests per second")), "no {t} in:\n{text}");
        }
        assert!(!text.to_lowercase().contains("error"), "{text}");
        eprintln!("redis-benchmark {extra:?}:\n{}", text.lines().filter(|l| l.contains("requests per second")).collect::<Vec<_>>().join("\n"));
    }
    let info = redis_cli(port, &["INFO", "stats"]);
    assert!(info.contains("hallows_protocol_errors:1"), "only the deliberate one: {info}");
    // A clean shutdown, and a boot on the same disk: everything is there.
    let before = redis_cli(port, &["MGET", "k", "n", "tx", "pp", "c"]);
    assert_eq!(before, "v2\n-10\n2\n2\n3");
    shutdown(run, port);
    let (mut run, port) = start(system, &image);
    wait_ready(&mut run, port);
    assert_eq!(redis_cli(port, &["MGET", "k", "n", "tx", "pp", "c"]), before);
    assert_eq!(redis_cli(port, &["HGETALL", "h"]), "f2\nv2");
    assert_eq!(redis_cli(port, &["LRANGE", "l", "0", "-1"]), "a");
    let ttl: i64 = redis_cli(port, &["TTL", "t"]).parse().unwrap();
    assert!((1..=100).contains(&ttl), "{ttl}");
    let out = shutdown(run, port);
    assert!(out.contains("groups") && out.contains("replayed"), "{out}");
}

/// What the load recorded: acknowledged `SET key value` pairs, and the
/// transactions (two keys set together) acknowledged or in flight.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, String>,
    /// Sent, reply not seen: may or may not be there, never wrong.
    maybe: BTreeMap<String, String>,
    /// Pairs written by one MULTI/EXEC: both or neither.
    pairs: Vec<(String, String, String, bool)>,
}

fn load(port: u16, worker: usize, round: usize, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>) {
    let Ok(mut c) = Conn::open(port) else { return };
    let mut i = 0u64;
    while !stop.load(Ordering::Acquire) {
        i += 1;
        let key = format!("r{round}w{worker}k{i}");
        let value = format!("v{i}-{}", "x".repeat((i % 50) as usize));
        if i.is_multiple_of(10) {
            let (k1, k2) = (format!("{key}a"), format!("{key}b"));
            ledger.lock().unwrap().pairs.push((k1.clone(), k2.clone(), value.clone(), false));
            let ok = c.send(&[b"MULTI"]).is_ok()
                && c.send(&[b"SET", k1.as_bytes(), value.as_bytes()]).is_ok()
                && c.send(&[b"SET", k2.as_bytes(), value.as_bytes()]).is_ok()
                && c.send(&[b"EXEC"]).is_ok()
                && (0..4).map(|_| c.read()).last().is_some_and(|r| matches!(r, Ok(Reply::Array(Some(_)))));
            if !ok {
                return;
            }
            let mut l = ledger.lock().unwrap();
            if let Some(p) = l.pairs.iter_mut().rev().find(|p| p.0 == k1) {
                p.3 = true;
            }
            continue;
        }
        ledger.lock().unwrap().maybe.insert(key.clone(), value.clone());
        match c.call(&[b"SET", key.as_bytes(), value.as_bytes()]) {
            Ok(Reply::Simple(s)) if s == "OK" => {
                let mut l = ledger.lock().unwrap();
                l.maybe.remove(&key);
                l.acked.insert(key, value);
            }
            _ => return,
        }
    }
}

/// Checks everything the ledger says against the store; returns
/// (acknowledged writes checked, keys refused as damaged).
fn verify(port: u16, ledger: &Ledger, allow_damage: bool) -> (usize, usize) {
    let mut c = Conn::open(port).unwrap();
    // Every key the ledger names, read with MGET in batches; a damaged
    // store answers an error for a batch, refused as a whole.
    let mut keys: Vec<&str> = ledger.acked.keys().chain(ledger.maybe.keys()).map(String::as_str).collect();
    for (k1, k2, _, _) in &ledger.pairs {
        keys.push(k1);
        keys.push(k2);
    }
    let mut got: BTreeMap<&str, Option<Option<String>>> = BTreeMap::new();
    for batch in keys.chunks(200) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(batch.iter().map(|k| k.as_bytes()));
        match c.call(&args).unwrap() {
            Reply::Array(Some(vals)) => {
                for (k, v) in batch.iter().zip(vals) {
                    let v = match v {
                        Reply::Bulk(v) => v.map(|v| String::from_utf8(v).unwrap()),
                        other => panic!("MGET {k}: {other:?}"),
                    };
                    got.insert(k, Some(v));
                }
            }
            Reply::Error(e) if allow_damage && e.starts_with("DAMAGED") => {
                // Which keys: each on its own.
                for k in batch {
                    let v = match c.call(&[b"GET", k.as_bytes()]).unwrap() {
                        Reply::Bulk(v) => Some(v.map(|v| String::from_utf8(v).unwrap())),
                        Reply::Error(e) if e.starts_with("DAMAGED") => None,
                        other => panic!("GET {k}: {other:?}"),
                    };
                    got.insert(k, v);
                }
            }
            other => panic!("MGET: {other:?}"),
        }
    }
    let mut damaged = 0;
    for (k, v) in &ledger.acked {
        match &got[k.as_str()] {
            Some(Some(x)) => assert_eq!(x, v, "acknowledged {k} holds another value"),
            Some(None) => panic!("acknowledged write {k} = {v} is lost"),
            None => damaged += 1,
        }
    }
    for (k, v) in &ledger.maybe {
        if let Some(Some(x)) = &got[k.as_str()] {
            assert_eq!(x, v, "{k} (not acknowledged) holds a value never written");
        }
    }
    for (k1, k2, v, acked) in &ledger.pairs {
        let (Some(a), Some(b)) = (&got[k1.as_str()], &got[k2.as_str()]) else {
            damaged += 1;
            continue;
        };
        assert_eq!(a, b, "transaction {k1}/{k2} is half visible");
        if *acked {
            assert_eq!(a.as_deref(), Some(v.as_str()), "acknowledged transaction {k1}/{k2} lost");
        } else if let Some(x) = a {
            assert_eq!(x, v);
        }
    }
    (ledger.acked.len(), damaged)
}

fn campaign(kills: usize, flips: usize, seed: u64) {
    let image = disk(&format!("crash-{seed}"));
    let mut rng = hallows_blockdev::Rng::new(seed);
    let mut ledger = Ledger::default();
    let mut checked = 0;
    for round in 0..kills {
        let (mut run, port) = start("store-crash", &image);
        wait_ready(&mut run, port);
        let (n, _) = verify(port, &ledger, false);
        checked += n;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (stop, l) = (stop.clone(), shared.clone());
                std::thread::spawn(move || load(port, w, round, stop, l))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + rng.below(2500)));
        // Power off: QEMU killed mid-load, the writers see their
        // connections drop.
        let _ = run.stop();
        stop.store(true, Ordering::Release);
        for w in workers {
            w.join().unwrap();
        }
        ledger = Arc::try_unwrap(shared).ok().unwrap().into_inner().unwrap();
        eprintln!("kill {}: {} acknowledged writes so far, {} unacknowledged in flight", round + 1, ledger.acked.len(), ledger.maybe.len());
    }
    let (mut run, port) = start("store-crash", &image);
    wait_ready(&mut run, port);
    let (n, _) = verify(port, &ledger, false);
    checked += n;
    shutdown(run, port);
    eprintln!("{kills} kills: {checked} acknowledged writes checked after the boots, none lost, no transaction half visible");
    // Corruption: flip bytes where the store wrote, boot, check.
    let clean = std::fs::read(&image).unwrap();
    let written: Vec<usize> = clean.chunks(512).enumerate().filter(|(_, s)| s.iter().any(|&b| b != 0)).map(|(i, _)| i).collect();
    let mut refused = 0;
    for f in 0..flips {
        let mut img = clean.clone();
        for _ in 0..1 + rng.below(3) {
            let at = written[rng.below(written.len() as u64) as usize] * 512 + rng.below(512) as usize;
            img[at] ^= 1 << rng.below(8);
        }
        std::fs::write(&image, &img).unwrap();
        let (mut run, port) = start("store-crash", &image);
        wait_ready(&mut run, port);
        let (_, damaged) = verify(port, &ledger, true);
        refused += usize::from(damaged > 0);
        drop(run);
        eprintln!("flip {}: {damaged} keys refused as damaged, no wrong value", f + 1);
    }
    std::fs::write(&image, &clean).unwrap();
    eprintln!("{flips} corrupted images: {refused} with damage detected and refused, 0 wrong values served");
}

#[test]
fn acknowledged_writes_survive_kills_and_corruption_is_refused() {
    let kills = std::env::var("STORE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let flips = std::env::var("STORE_FLIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    campaign(kills, flips, 0x5eed);
}

// The channel front (docs/oltp.md, "Channel front"): the kv-client
// partition reaches the store over "kv-requests"/"kv-replies", without
// TCP. Each system ends by itself: the client runs its checks and load,
// asks the store to shut down, and both exit 0 (a failed check exits 1).

/// Boots `system` on a fresh disk of its own, waits for it to end (within
/// `BOOT_TIMEOUT`), and checks the client passed all its `checks` and both
/// partitions exited 0; returns the output.
fn channel_system(system: &str, name: &str, checks: u32, during: impl FnOnce(&mut Running)) -> String {
    let image = disk(name);
    let img = image.clone();
    let mut run = start_system_edited(system, &[], &move |s| {
        s.partitions.iter_mut().find(|p| p.name == "store").and_then(|p| p.disk.as_mut()).expect("the store has a disk").path = img.clone();
    });
    during(&mut run);
    let b = run.wait();
    b.assert_status(0);
    let client = b.lines_of("client");
    assert!(client.contains(&"kv-client: PASS"), "{}", b.output);
    assert!(!client.iter().any(|l| l.contains("FAIL")), "{}", b.output);
    let tally = format!("kv-client: {checks} checks passed, 0 failed");
    assert!(client.iter().any(|l| l.starts_with(&tally)), "no `{tally}` in:\n{}", b.output);
    assert!(b.output.contains("store: shut down"), "{}", b.output);
    assert!(b.summary("store").starts_with("exited 0"), "{}", b.output);
    assert_eq!(b.summary("client"), "exited 0", "{}", b.output);
    for l in client.iter().filter(|l| l.contains(" puts in ")) {
        eprintln!("{system}: {l}");
    }
    b.output
}

/// Beside RESP on a polled NIC: the client's writes read back over RESP
/// from the host, and a key the host writes over RESP reads back over the
/// channel.
#[test]
fn a_partition_uses_the_store_over_channels_beside_redis_clients() {
    channel_system("store-chan", "chan", 55, |run| {
        let port = run.host_port("store", 6379);
        wait_ready(run, port);
        let mut c = Conn::open(port).unwrap();
        // The client's last put, over RESP (it is durable: acknowledged).
        let start = Instant::now();
        let last = loop {
            match c.call(&[b"GET", b"load:00999"]).unwrap() {
                Reply::Bulk(Some(v)) => break v,
                _ if start.elapsed() < READY => std::thread::sleep(Duration::from_millis(200)),
                r => panic!("the client's writes never showed over RESP: {r:?}"),
            }
        };
        assert!(last.starts_with(b"value-00999-") && last.len() == 100, "{}", String::from_utf8_lossy(&last));
        assert_eq!(c.call(&[b"GET", b"s:04"]).unwrap(), Reply::Bulk(Some(b"4".to_vec())));
        assert_eq!(c.call(&[b"SET", b"from-resp", b"written over RESP"]).unwrap(), Reply::Simple("OK".into()));
    });
}

/// The channel front alone, the store's NIC in interrupt mode (its core
/// idles, so the doorbell interrupt wakes it).
#[test]
fn the_channel_front_alone_with_an_interrupt_nic() {
    channel_system("store-chan-alone", "chan-alone", 54, |_| {});
}

/// A store without a NIC: the channel front is its only front.
#[test]
fn the_channel_front_without_a_network() {
    channel_system("store-chan-nonet", "chan-nonet", 54, |_| {});
}

/// The store panics with a request pending and is restarted by its
/// policy: the client sees ServerRestarted, retries, and every write
/// acknowledged before the restart is there after it.
#[test]
fn the_channel_front_across_a_store_restart() {
    let out = channel_system("store-chan-restart", "chan-restart", 5, |_| {});
    assert!(out.contains("crash_after=1000: crashing with channel requests unanswered"), "{out}");
    assert!(out.contains("the store restarted under a pending request; retrying it"), "{out}");
    assert!(out.contains("summary: store: exited 0 (restarted 1 times)"), "{out}");
    assert!(out.contains("store restarts seen 1"), "{out}");
}

/// The same guests on x86_64 (QEMU microvm, AMD SVM).
#[test]
fn x86_the_channel_front_without_a_network() {
    channel_system("x86-store-chan", "x86-chan", 54, |_| {});
}

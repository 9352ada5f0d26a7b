//! The log partition (aarch64, QEMU): `hallows-log`'s Kafka broker on its
//! own virtio-blk disk, reached through the manifest's forward, with real
//! clients: kcat (`make deps` installs it) and kafka-python (in the venv
//! `make deps` creates, target/venv). The crash campaign kills QEMU
//! (SIGKILL) in the middle of a produce load and boots the system again on
//! the same disk: every acknowledged record must be there exactly once and
//! in order, and nothing corrupt served. `HALLOWS_LOG_KILLS` sets the
//! number of kills (3 here; `make crash-log` runs 50).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hallows_log::batch;
use hallows_log::client::Client;
use hallows_tests::{root, run_with_timeout, start_system_edited, Running};

const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// A disk image path of its own for `name`, absent: the tool creates it at
/// the size the manifest's `disk` says when the system first boots, and
/// later boots find what the last one left.
fn fresh_disk(name: &str) -> PathBuf {
    let dir = root().join("target/hallows/tests").join(name);
    std::fs::create_dir_all(&dir).expect("disk dir");
    let disk = dir.join("log.img");
    let _ = std::fs::remove_file(&disk);
    disk
}

/// Boots `system` on `disk` and waits until the broker answers a request.
fn boot(system: &str, disk: &Path) -> (Running, u16) {
    boot_with(system, disk, &[])
}

fn boot_with(system: &str, disk: &Path, extra: &[String]) -> (Running, u16) {
    let img = disk.to_path_buf();
    let mut run = start_system_edited(system, extra, &move |s| {
        s.partitions.iter_mut().find(|p| p.name == "log").and_then(|p| p.disk.as_mut()).expect("the log partition has a disk").path = img.clone();
    });
    let port = run.host_port("log", 9092);
    let start = Instant::now();
    loop {
        if run.ended() {
            let b = run.wait();
            panic!("the machine ended before the broker answered:\n{}", b.output);
        }
        if let Ok(mut c) = Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(5)) {
            if c.fetch("__probe", 0, 0, 1024, 0).is_ok() {
                return (run, port);
            }
        }
        if start.elapsed() > READY_TIMEOUT {
            let b = run.stop();
            panic!("the broker did not answer within {READY_TIMEOUT:?}:\n{}", b.output);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn need(tool: &Path, what: &str) {
    assert!(tool.exists() || Command::new("sh").arg("-c").arg(format!("command -v {}", tool.display())).output().is_ok_and(|o| o.status.success()), "{what} is missing: run `make deps`");
}

#[test]
fn kcat_produces_and_consumes_10000_lines_and_a_group_commits() {
    kcat_round_trip("log");
}

/// The same guest on x86_64 (QEMU microvm, AMD SVM).
#[test]
fn kcat_round_trip_on_x86_64() {
    kcat_round_trip("x86-log");
}

fn kcat_round_trip(system: &str) {
    need(Path::new("kcat"), "kcat");
    let disk = fresh_disk(system);
    let (mut run, port) = boot(system, &disk);
    let b = format!("127.0.0.1:{port}");
    let lines: String = (1..=10_000).map(|i| format!("line {i}\n")).collect();
    let p = run_with_timeout(Command::new("kcat").args(["-P", "-b", &b, "-t", "lines", "-X", "acks=all"]), Some(lines.as_bytes()), Duration::from_secs(120));
    assert!(p.status.success(), "kcat -P: {}", String::from_utf8_lossy(&p.stderr));
    let c = run_with_timeout(Command::new("kcat").args(["-C", "-b", &b, "-t", "lines", "-e", "-q"]), None, Duration::from_secs(120));
    assert!(c.status.success(), "kcat -C: {}", String::from_utf8_lossy(&c.stderr));
    let got = String::from_utf8_lossy(&c.stdout);
    assert_eq!(got.lines().count(), 10_000);
    assert!(got == lines, "the lines came back changed or out of order");
    // A consumer group: all 10,000, then (committed) only what came after.
    let g = || run_with_timeout(Command::new("kcat").args(["-b", &b, "-G", "kgroup", "lines", "-e", "-q", "-X", "auto.offset.reset=earliest"]), None, Duration::from_secs(120));
    let first = g();
    assert!(first.status.success(), "kcat -G: {}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(String::from_utf8_lossy(&first.stdout).lines().count(), 10_000);
    let more: String = (10_001..=10_005).map(|i| format!("line {i}\n")).collect();
    let p = run_with_timeout(Command::new("kcat").args(["-P", "-b", &b, "-t", "lines"]), Some(more.as_bytes()), Duration::from_secs(60));
    assert!(p.status.success());
    let second = g();
    assert_eq!(String::from_utf8_lossy(&second.stdout), more, "the group resumed from its committed offset");
    let out = run.stop();
    assert!(out.output.contains("log ready"), "{}", out.output);
}

fn python() -> PathBuf {
    root().join("target/venv/bin/python")
}

#[test]
fn kafka_python_acks_all_group_commit_and_resume_after_restart() {
    need(&python(), "the kafka-python venv (target/venv)");
    let script = root().join("guests/frameworks/log/clients/kafka_python_check.py");
    let disk = fresh_disk("log-restart");
    let (mut run, port) = boot("log-restart", &disk);
    let b = format!("127.0.0.1:{port}");
    let py = |args: &[&str]| {
        let o = run_with_timeout(Command::new(python()).arg(&script).args(args), None, Duration::from_secs(180));
        assert!(o.status.success(), "kafka-python {args:?}: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(py(&["produce", &b, "events", "0", "1000"]).trim(), "acked 1000");
    let first = py(&["consume", &b, "events", "pygroup", "600"]);
    let want: Vec<String> = (0..600).map(|i| format!("v{i}")).collect();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines[..600], want.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    assert!(lines[600].starts_with("committed 600"), "{first}");
    // The log partition restarts (the machine is killed and booted again
    // on the same disk): the group resumes at its committed offset.
    drop(run.stop());
    let (mut run, _) = boot("log-restart", &disk);
    let rest = py(&["consume", &b, "events", "pygroup", "400"]);
    let want: Vec<String> = (600..1000).map(|i| format!("v{i}")).collect();
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines[..400], want.iter().map(String::as_str).collect::<Vec<_>>()[..], "{rest}");
    assert!(lines[400].starts_with("committed 1000"), "{rest}");
    drop(run.stop());
}

/// Every record value in the topic, in offset order; panics on a gap, a
/// batch that does not verify, or an offset out of order.
fn read_topic(port: u16, topic: &str) -> Vec<u64> {
    try_read_topic(port, topic).expect("reading the topic")
}

/// [`read_topic`], with the transport's errors returned (the caller
/// panics with the machine's output).
fn try_read_topic(port: u16, topic: &str) -> std::io::Result<Vec<u64>> {
    let mut c = Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(30))?;
    let mut off = 0i64;
    let mut out = Vec::new();
    loop {
        let (e, hw, data) = c.fetch(topic, 0, off, 1 << 20, 0)?;
        assert_eq!(e, 0, "fetch at {off}: error {e}");
        if off >= hw {
            return Ok(out);
        }
        for b in batch::split(&data).expect("whole batches") {
            let recs = batch::decode(b).expect("every batch served verifies (CRC-32C) and decodes");
            for r in recs {
                if r.offset < off {
                    continue;
                }
                assert_eq!(r.offset, off, "offsets without gaps");
                let v = r.value.expect("a value");
                out.push(std::str::from_utf8(&v[..16]).expect("utf-8").trim().parse().expect("a sequence number"));
                off += 1;
            }
        }
    }
}

const PER_BATCH: u64 = 16;

fn record_set(first: u64) -> Vec<u8> {
    let vals: Vec<Vec<u8>> = (first..first + PER_BATCH).map(|i| format!("{i:>16}{}", "x".repeat(84)).into_bytes()).collect();
    let kv: Vec<batch::KeyValue> = vals.iter().map(|v| (None, Some(&v[..]))).collect();
    batch::encode(0, 1_700_000_000_000, &kv)
}

#[test]
fn killed_during_produce_load_no_acknowledged_record_is_lost_or_duplicated() {
    let kills: u32 = std::env::var("HALLOWS_LOG_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut seed: u64 = std::env::var("HALLOWS_LOG_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("crash campaign: {kills} kills, HALLOWS_LOG_SEED={seed}");
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // 512 MiB (the manifest's disk), sparse: 50 rounds of load never fill it.
    let disk = fresh_disk("log-crash");
    // Sequence numbers acknowledged, and the next one to send.
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut next = 0u64;
    let mut total_unacked_present = 0usize;
    let mut rounds_with_acks = 0u32;
    // QEMU ended by something other than this test (another process's
    // signal on a shared machine) is one more crash, not a failure: the
    // round is run again, at most 10 times in all.
    let mut outside_kills = 0;
    let mut round = 0;
    while round <= kills {
        let (mut run, port) = boot("log-crash", &disk);
        let checked = Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(30)).and_then(|mut c| {
            let e = c.create_topic("crash", 1, &[])?;
            assert!(e == 0 || (e == 36 && (round > 0 || outside_kills > 0)), "CreateTopics: error {e}");
            // Check everything so far: every acknowledged record once, in order.
            try_read_topic(port, "crash")
        });
        let got = match checked {
            Ok(g) => g,
            Err(e) if run.ended() && outside_kills < 10 => {
                let out = run.wait();
                outside_kills += 1;
                eprintln!("round {round}: the machine was ended from outside ({e}; {}); booting it again", out.output.lines().last().unwrap_or(""));
                continue;
            }
            Err(e) => {
                let out = run.stop();
                panic!("round {round}: reading the topic: {e}:\n{}", out.output);
            }
        };
        assert!(got.windows(2).all(|w| w[0] < w[1]), "round {round}: records duplicated or out of order");
        let a = acked.lock().unwrap().clone();
        let mut gi = got.iter().peekable();
        for s in &a {
            while gi.peek().is_some_and(|g| **g < *s) {
                gi.next();
                total_unacked_present += 1;
            }
            assert_eq!(gi.next(), Some(s), "round {round}: acknowledged record {s} is missing");
        }
        total_unacked_present += gi.count();
        eprintln!("round {round}: {} records present, {} acknowledged so far", got.len(), a.len());
        if round == kills {
            drop(run.stop());
            break;
        }
        round += 1;
        // Produce under load (4 requests in flight, acks=all) and kill the
        // machine at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let (acked2, stop2) = (acked.clone(), stop.clone());
        let first = got.last().map_or(next, |l| (l + 1).max(next));
        let acked_before_round = a.len();
        let producer = std::thread::spawn(move || {
            let mut c = match Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(10)) {
                Ok(c) => c,
                Err(_) => return first,
            };
            let mut seq = first;
            while !stop2.load(Ordering::Acquire) {
                let sets: Vec<Vec<u8>> = (0..4).map(|k| record_set(seq + k * PER_BATCH)).collect();
                let sent_to = seq + 4 * PER_BATCH;
                match c.produce_pipelined("crash", 0, &sets, -1, 4) {
                    Ok(res) => {
                        for (k, (e, _)) in res.iter().enumerate() {
                            if *e == 0 {
                                let s = seq + k as u64 * PER_BATCH;
                                acked2.lock().unwrap().extend(s..s + PER_BATCH);
                            }
                        }
                        seq = sent_to;
                    }
                    Err(_) => return sent_to,
                }
            }
            seq
        });
        std::thread::sleep(Duration::from_millis(300 + rand() % 2500));
        let before = acked.lock().unwrap().len();
        drop(run.stop()); // SIGKILL to QEMU
        stop.store(true, Ordering::Release);
        next = producer.join().expect("producer");
        eprintln!("kill {round}: {} records acknowledged before it", before);
        if acked.lock().unwrap().len() > acked_before_round {
            rounds_with_acks += 1;
        }
    }
    let total = acked.lock().unwrap().len();
    eprintln!("crash campaign done: {kills} kills (and {outside_kills} from outside), {total} acknowledged records all present once and in order, {total_unacked_present} unacknowledged records also present");
    eprintln!("{rounds_with_acks} of {kills} rounds had records acknowledged before their kill");
    assert!(total > 0 && rounds_with_acks * 2 >= kills, "the load was acknowledged in too few rounds");
}

/// Produce and consume throughput from the host into the guest (QEMU TCG,
/// aarch64), `make bench-log`: 16-record batches of 100-byte values,
/// acks=all with 8 requests in flight, then the whole topic fetched back
/// 1 MiB at a time. Prints the figures; asserts only that everything came
/// back.
#[test]
#[ignore = "a benchmark: make bench-log"]
fn bench_produce_consume_from_the_host() {
    let batches: u64 = std::env::var("HALLOWS_LOG_BENCH_BATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // HALLOWS_LOG_BENCH_SYSTEM=log-stats HALLOWS_LOG_QEMU_ARGS="-icount shift=0,sleep=off":
    // the guest's counters in instructions (docs/log.md).
    let system = std::env::var("HALLOWS_LOG_BENCH_SYSTEM").unwrap_or_else(|_| "log".to_owned());
    let extra: Vec<String> = std::env::var("HALLOWS_LOG_QEMU_ARGS").map(|a| a.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
    let disk = fresh_disk(&system);
    let (mut run, port) = boot_with(&system, &disk, &extra);
    let mut c = Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(60)).expect("connect");
    assert_eq!(c.create_topic("bench", 1, &[]).expect("CreateTopics"), 0);
    let sets: Vec<Vec<u8>> = (0..batches).map(|i| record_set(i * PER_BATCH)).collect();
    let bytes: usize = sets.iter().map(Vec::len).sum();
    let t = Instant::now();
    for chunk in sets.chunks(1000) {
        let res = c.produce_pipelined("bench", 0, chunk, -1, 8).expect("produce");
        assert!(res.iter().all(|(e, _)| *e == 0));
    }
    let p = t.elapsed().as_secs_f64();
    let records = batches * PER_BATCH;
    let t = Instant::now();
    let got = read_topic(port, "bench");
    let f = t.elapsed().as_secs_f64();
    assert_eq!(got.len() as u64, records);
    println!(
        "produce (acks=all, 8 in flight): {batches} batches, {records} records, {:.1} MB in {p:.2} s: {:.0} records/s, {:.1} MB/s, {:.0} batches/s",
        bytes as f64 / 1e6,
        records as f64 / p,
        bytes as f64 / 1e6 / p,
        batches as f64 / p
    );
    println!("consume (1 MiB fetches): {records} records in {f:.2} s: {:.0} records/s, {:.1} MB/s", records as f64 / f, bytes as f64 / 1e6 / f);
    // The `stats` line comes 500 ms (guest time) after the last batch.
    if system == "log-stats" {
        std::thread::sleep(Duration::from_secs(2));
    }
    let out = run.stop();
    assert!(out.output.contains("log ready"));
    if let Some(l) = out.output.lines().rev().find(|l| l.contains("log stats:")) {
        println!("{l}");
    }
}

/// An in-system producer partition publishes 20,000 records to the log
/// partition over a ring channel (typed by the Parseltongue spec
/// `records.pt` both ends import; served under the `messaging` scheduler);
/// a Kafka client on the host then reads them all, in order; and an
/// in-system consumer partition has all 20,000 delivered over another
/// ring channel, in order, its offset committed durably by the log.
#[test]
fn an_in_system_producer_publishes_over_a_ring_channel() {
    let disk = fresh_disk("log-ring");
    let (mut run, port) = boot("log-ring", &disk);
    let mut c = Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(30)).expect("connect");
    let start = Instant::now();
    loop {
        let (e, hw, _) = match c.fetch("in-system", 0, 0, 1, 0) {
            Ok(r) => r,
            Err(err) => {
                let out = run.stop();
                panic!("fetch: {err}:\n{}", out.output);
            }
        };
        if e == 0 && hw == 20_000 {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) || run.ended() {
            let out = run.stop();
            panic!("in-system topic at {hw} (error {e}) of 20000:\n{}", out.output);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = read_topic(port, "in-system");
    assert_eq!(got, (0..20_000).collect::<Vec<u64>>());
    // The in-system consumer has them all delivered and reports them done:
    // the log commits its group's offset durably.
    let start = Instant::now();
    loop {
        let (e, committed) = c.committed("in-system-consumers", "in-system", 0).expect("offset fetch");
        if e == 0 && committed == 20_000 {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) || run.ended() {
            let out = run.stop();
            panic!("the in-system consumers' committed offset is {committed} (error {e}) of 20000:\n{}", out.output);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let out = run.stop();
    let worker = out.lines_of("worker").into_iter().find(|l| l.starts_with("worker: 20000 jobs done")).map(str::to_owned);
    assert!(worker.as_deref().is_some_and(|l| l.contains("(offsets Some(0) to Some(19999), all in order)")), "{}", out.output);
    eprintln!("{}", worker.unwrap_or_default());
    let line = out.lines_of("producer").into_iter().find(|l| l.starts_with("log-producer: 20000 records acknowledged durable")).map(str::to_owned);
    assert!(line.is_some(), "{}", out.output);
    eprintln!("{}", line.unwrap_or_default());
    assert!(out.output.contains("in-system producers on channel \"records\", consumers on \"deliveries\" from offset 0"), "{}", out.output);
}

//! A client partition of the store's channel front (`hallows-kv`): every
//! request kind with its expected answer (gets, puts, deletes, scans and
//! their cursors, transactions and their refusals, hostile requests the
//! store must refuse), then a load: `count` puts (default 3000), as many
//! gets, and a full scan, with their rates. A mismatch prints `FAIL` and
//! the partition exits 1; otherwise it prints `kv-client: PASS` and exits 0.
//!
//! Across a store restart (the store's `crash_after`), a call that fails
//! with `ServerRestarted` is retried (every request here is idempotent),
//! and every write acknowledged before the restart must still be there.
//!
//! Boot arguments: `count=N`; `expect_restart` (fail unless the store
//! restarted during the run); `shutdown` (ask the store to stop at the
//! end, so that the system ends; the store must run with `quit`);
//! `no_checks` (the load alone); `await_key=K` (after the load, wait for
//! key K to hold `written over RESP`: a host client writes it over the
//! store's RESP front); `bench=A,B` (instead of the checks and the load:
//! the bench of docs/benchmarks.md, comparison A: runs of A and of B puts
//! of a 3-byte value to one 16-byte key, then as many gets of it, one
//! request in flight, each run between two bench markers for the
//! instruction-counting plugin).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use hallows_kv::client::{self, Error, Kv, TxnOp};
use hallows_kv::{KvError, KvOp, KvStatus};
use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            println!("kv-client: FAIL: {what}");
        }
    }
}

/// Retries `f` while it fails with `ServerRestarted` (at most 20 times).
macro_rules! retry {
    ($restarts:expr, $e:expr) => {{
        let mut tries = 0;
        loop {
            match $e {
                Err(Error::ServerRestarted) if tries < 20 => {
                    tries += 1;
                    $restarts += 1;
                    println!("kv-client: the store restarted under a pending request; retrying it");
                }
                r => break r,
            }
        }
    }};
}

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    hallows_rt::task::run(boot, run(b))
}

/// Whether a get returned `want`.
fn is(r: &Result<Option<Vec<u8>>, Error>, want: &[u8]) -> bool {
    matches!(r, Ok(Some(v)) if v.as_slice() == want)
}

fn value_of(i: u32) -> Vec<u8> {
    let mut v = format!("value-{i:05}-").into_bytes();
    while v.len() < 100 {
        v.push(b'a' + (v.len() as u8 + i as u8) % 26);
    }
    v
}

async fn run(boot: Boot) -> u64 {
    let count: u32 = boot.arg("count").and_then(|c| c.parse().ok()).unwrap_or(3000);
    let mut kv = match client::connect(&boot) {
        Ok(kv) => kv,
        Err(e) => {
            println!("kv-client: FAIL: cannot open the store's channels: {e}");
            return 1;
        }
    };
    if let Err(e) = kv.wait_ready(Duration::from_secs(120)).await {
        println!("kv-client: FAIL: the store never attached its end: {e}");
        return 1;
    }
    let mut c = Checks { passed: 0, failed: 0 };
    let mut restarts = 0u64;
    if let Some(runs) = boot.arg("bench") {
        bench(&mut kv, &mut c, runs).await;
    } else if !boot.has("no_checks") {
        requests(&mut kv, &mut c, &mut restarts).await;
    }
    if boot.arg("bench").is_none() {
        load(&mut kv, &mut c, &mut restarts, count).await;
    }
    if let Some(key) = boot.arg("await_key") {
        // Written by a Redis client over the store's RESP front.
        let start = time::now();
        let mut got = Ok(None);
        while time::now() - start < Duration::from_secs(120) {
            got = retry!(restarts, kv.get(key.as_bytes()).await);
            if !matches!(got, Ok(None)) {
                break;
            }
            time::sleep(Duration::from_millis(50)).await;
        }
        c.check(is(&got, b"written over RESP"), &format!("the key {key} written over RESP reads back over the channel: {got:?}"));
    }
    if boot.has("shutdown") {
        let r = retry!(restarts, kv.shutdown().await);
        c.check(r.is_ok(), &format!("shutdown accepted: {r:?}"));
    }
    let seen = restarts.max(kv.restarts);
    if boot.has("expect_restart") {
        c.check(seen >= 1, "the store restarted during the run (expect_restart)");
    }
    println!("kv-client: {} checks passed, {} failed; store restarts seen {seen}", c.passed, c.failed);
    if c.failed == 0 {
        println!("kv-client: PASS");
        0
    } else {
        println!("kv-client: FAIL ({} checks)", c.failed);
        1
    }
}

/// The bench (docs/benchmarks.md, comparison A): for puts, then gets, a
/// run of each request count in `runs` (`A,B`), one request in flight,
/// the key and value redis-benchmark uses (`key:__rand_int__`, `xxx`),
/// each run between two [`hallows_rt::bench_mark`]s. The counting tool
/// takes the difference of the two runs' counts, so what both share
/// (the markers, the loop's set-up) cancels out. Prints each run's rate
/// and p50/p99 latency in the machine's own (emulated) time.
async fn bench(kv: &mut Kv, c: &mut Checks, runs: &str) {
    // Longer than the store's commit window in tests/systems/bench-kv.toml
    // (10 ms, group durability): after it, what was written is durable.
    const SETTLE: Duration = Duration::from_millis(30);
    const KEY: &[u8] = b"key:__rand_int__";
    const VALUE: &[u8] = b"xxx";
    let runs: Vec<u32> = runs.split(',').filter_map(|n| n.parse().ok()).collect();
    if runs.is_empty() {
        c.check(false, "bench=A,B names request counts");
        return;
    }
    c.check(kv.put(KEY, VALUE).await.is_ok(), "the bench key is written");
    let mut lat: Vec<u64> = Vec::with_capacity(runs.iter().copied().max().unwrap_or(0) as usize);
    for op in ["set", "get"] {
        // A warm-up run of the first count, not measured: one-time costs
        // (heap growth, the first log group) stay out of the difference.
        // Twice, each settled: the store's first two group commits after
        // a format cost far more than the later ones.
        for _ in 0..2 {
            for _ in 0..runs[0] {
                let _ = if op == "set" { kv.put(KEY, VALUE).await.is_ok() } else { is(&kv.get(KEY).await, VALUE) };
            }
            time::sleep(SETTLE).await;
        }
        for &n in &runs {
            lat.clear();
            let mut failed = 0u32;
            hallows_rt::bench_mark();
            let start = time::now();
            for _ in 0..n {
                let t = time::now();
                let ok = if op == "set" { kv.put(KEY, VALUE).await.is_ok() } else { is(&kv.get(KEY).await, VALUE) };
                failed += u32::from(!ok);
                lat.push((time::now() - t).as_nanos() as u64);
            }
            let took = time::now() - start;
            // The run's writes reach the disk inside the run: its group
            // commit (the log write every SET costs, in groups) is counted
            // with it, and never in a later run.
            time::sleep(SETTLE).await;
            hallows_rt::bench_mark();
            c.check(failed == 0, &format!("bench {op} {n}: every request answered as expected ({failed} not)"));
            lat.sort_unstable();
            let pct = |p: usize| lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
            println!(
                "kv-client: bench {op} {n} rps={} p50_us={}.{:03} p99_us={}.{:03} (emulated time)",
                u64::from(n) * 1_000_000_000 / (took.as_nanos() as u64).max(1),
                pct(50) / 1000,
                pct(50) % 1000,
                pct(99) / 1000,
                pct(99) % 1000
            );
        }
    }
    println!("kv-client: bench done, {} checks failed", c.failed);
}

/// Every request kind, one at a time, with its expected answer.
#[allow(clippy::too_many_lines)]
async fn requests(kv: &mut Kv, c: &mut Checks, restarts: &mut u64) {
    // Point operations.
    let r = retry!(*restarts, kv.get(b"missing").await);
    c.check(r == Ok(None), &format!("get of a missing key is None: {r:?}"));
    let r = retry!(*restarts, kv.put(b"a", b"1").await);
    c.check(r.is_ok(), &format!("put a: {r:?}"));
    let r = retry!(*restarts, kv.get(b"a").await);
    c.check(is(&r, b"1"), &format!("get a: {r:?}"));
    let r = retry!(*restarts, kv.put(b"a", b"two").await);
    c.check(r.is_ok(), &format!("overwrite a: {r:?}"));
    let r = retry!(*restarts, kv.get(b"a").await);
    c.check(is(&r, b"two"), &format!("get a after overwrite: {r:?}"));
    let r = retry!(*restarts, kv.put(b"empty", b"").await);
    c.check(r.is_ok(), &format!("put of an empty value: {r:?}"));
    let r = retry!(*restarts, kv.get(b"empty").await);
    c.check(is(&r, b""), &format!("get of an empty value: {r:?}"));
    let r = retry!(*restarts, kv.put(b"", b"empty key").await);
    c.check(r.is_ok(), &format!("put with an empty key: {r:?}"));
    let r = retry!(*restarts, kv.get(b"").await);
    c.check(is(&r, b"empty key"), &format!("get of the empty key: {r:?}"));
    let bytes: Vec<u8> = (0..=255u8).collect();
    let r = retry!(*restarts, kv.put(b"binary", &bytes).await);
    c.check(r.is_ok(), &format!("put of every byte value: {r:?}"));
    let r = retry!(*restarts, kv.get(b"binary").await);
    c.check(is(&r, &bytes), "get of every byte value");
    let (big_key, big_value) = ([b'k'; hallows_kv::MAX_KEY], [b'v'; hallows_kv::MAX_VALUE]);
    let r = retry!(*restarts, kv.put(&big_key, &big_value).await);
    c.check(r.is_ok(), &format!("put of the longest key and value: {r:?}"));
    let r = retry!(*restarts, kv.get(&big_key).await);
    c.check(is(&r, &big_value), "get of the longest key and value");
    let r = kv.put(&[b'k'; hallows_kv::MAX_KEY + 1], b"x").await;
    c.check(r == Err(Error::TooLong), &format!("a key too long is refused before sending: {r:?}"));
    let r = kv.put(b"k", &[b'v'; hallows_kv::MAX_VALUE + 1]).await;
    c.check(r == Err(Error::TooLong), &format!("a value too long is refused before sending: {r:?}"));
    let r = kv.get(&[b'k'; hallows_kv::MAX_KEY + 1]).await;
    c.check(r == Err(Error::TooLong), &format!("a get with a key too long: {r:?}"));
    let r = retry!(*restarts, kv.delete(b"a").await);
    c.check(r == Ok(true), &format!("delete of an existing key: {r:?}"));
    let r = retry!(*restarts, kv.get(b"a").await);
    c.check(r == Ok(None), &format!("get after delete: {r:?}"));
    let r = retry!(*restarts, kv.delete(b"a").await);
    c.check(r == Ok(false), &format!("delete of a missing key: {r:?}"));

    // Transactions.
    let r = retry!(*restarts, kv.txn(&[TxnOp::Put(b"x", b"10"), TxnOp::Put(b"y", b"20"), TxnOp::Delete(b"empty")]).await);
    c.check(r == Ok(3), &format!("a transaction of 3 operations: {r:?}"));
    let (x, y, e) = (retry!(*restarts, kv.get(b"x").await), retry!(*restarts, kv.get(b"y").await), retry!(*restarts, kv.get(b"empty").await));
    c.check(is(&x, b"10") && is(&y, b"20") && e == Ok(None), "the transaction's writes are all there");
    let r = retry!(*restarts, kv.txn(&[TxnOp::Put(b"x", b"11"), TxnOp::Delete(b"x")]).await);
    c.check(r == Ok(2), &format!("a transaction writing one key twice: {r:?}"));
    let r = retry!(*restarts, kv.get(b"x").await);
    c.check(r == Ok(None), &format!("its operations apply in order: {r:?}"));
    let keys: Vec<String> = (0..hallows_kv::MAX_TXN_OPS).map(|i| format!("t:{i:02}")).collect();
    let ops: Vec<TxnOp<'_>> = keys.iter().map(|k| TxnOp::Put(k.as_bytes(), b"t")).collect();
    let r = retry!(*restarts, kv.txn(&ops).await);
    c.check(r == Ok(hallows_kv::MAX_TXN_OPS as u32), &format!("a transaction of the most operations: {r:?}"));
    let mut more = ops.clone();
    more.push(TxnOp::Put(b"t:over", b"t"));
    let r = kv.txn(&more).await;
    c.check(r == Err(Error::TooLong), &format!("a transaction of too many operations is refused before sending: {r:?}"));
    let r = kv.txn(&[]).await;
    c.check(r == Err(Error::TooLong), &format!("an empty transaction: {r:?}"));

    // Scans and their cursors.
    for i in 0..10u32 {
        let r = retry!(*restarts, kv.put(format!("s:{i:02}").as_bytes(), format!("{i}").as_bytes()).await);
        c.check(r.is_ok(), "put of a scan key");
    }
    let p = retry!(*restarts, kv.scan(b"s:", false, 4).await);
    match p {
        Ok(p) => {
            c.check(p.entries.len() == 4 && p.entries[0].0 == b"s:00" && p.entries[3].0 == b"s:03", &format!("the first page of 4: {:?}", p.entries));
            c.check(p.next.as_deref() == Some(b"s:03".as_slice()), &format!("its cursor: {:?}", p.next));
            let p2 = retry!(*restarts, kv.scan(b"s:03", true, 4).await);
            c.check(p2.as_ref().is_ok_and(|p| p.entries.first().is_some_and(|e| e.0 == b"s:04" && e.1 == b"4")), &format!("the next page starts after the cursor: {p2:?}"));
        }
        Err(e) => c.check(false, &format!("scan: {e:?}")),
    }
    let p = retry!(*restarts, kv.scan(b"s:09", true, 256).await);
    c.check(p.as_ref().is_ok_and(|p| p.entries.iter().all(|e| e.0.as_slice() > b"s:09".as_slice())), &format!("a page after the last scan key: {p:?}"));
    let p = retry!(*restarts, kv.scan(b"s:", false, 0).await);
    c.check(p.as_ref().is_ok_and(|p| p.entries.len() == hallows_kv::DEFAULT_SCAN as usize || p.next.is_none()), "a scan with limit 0 takes the default page");
    let p = retry!(*restarts, kv.scan(b"zzzz", false, 10).await);
    c.check(p.as_ref().is_ok_and(|p| p.entries.is_empty() && p.next.is_none()), &format!("a scan past every key is empty and ends: {p:?}"));

    // Requests the store must refuse (a hostile or broken client): each
    // answered with an error, changing nothing.
    let hostile: [(&str, hallows_kv::KvRequest); 7] = [
        ("an unknown operation", hallows_kv::request(0, KvOp(99), 0, 0, b"a", b"").unwrap()),
        ("undefined flags", hallows_kv::request(0, KvOp::Get, 0x80, 0, b"a", b"").unwrap()),
        ("a get carrying a value", hallows_kv::request(0, KvOp::Get, 0, 0, b"a", b"v").unwrap()),
        ("a scan limit above 256", hallows_kv::scan(0, b"", false, 1000).unwrap()),
        ("a put with a limit", hallows_kv::request(0, KvOp::Put, 0, 5, b"x", b"v").unwrap()),
        ("a transaction whose first operations are missing", hallows_kv::txn_op(0, 3, b"x", Some(b"half"), true).unwrap()),
        ("a key length above its bound", {
            let mut r = hallows_kv::put(0, b"x", b"v").unwrap();
            zerocopy_len(&mut r.key, 500);
            r
        }),
    ];
    for (what, req) in hostile {
        let r = kv.raw(req).await;
        let ok = matches!(&r, Ok(v) if v.len() == 1 && v[0].status == KvStatus::Err && v[0].error == KvError::BadRequest);
        c.check(ok, &format!("{what} is refused: {r:?}"));
    }
    let r = retry!(*restarts, kv.get(b"x").await);
    c.check(r == Ok(None), &format!("the refused requests changed nothing: {r:?}"));
}

/// Writes a length field above the capacity (what a hostile client can send).
fn zerocopy_len(field: &mut hallows_kv::BoundedBytes128, len: u16) {
    zerocopy::IntoBytes::as_mut_bytes(field)[..2].copy_from_slice(&len.to_ne_bytes());
}

/// `count` puts, `count` gets, a full scan; rates and latencies.
async fn load(kv: &mut Kv, c: &mut Checks, restarts: &mut u64, count: u32) {
    let t0 = time::now();
    let mut failed = 0;
    for i in 0..count {
        let r = retry!(*restarts, kv.put(format!("load:{i:05}").as_bytes(), &value_of(i)).await);
        if let Err(e) = r {
            failed += 1;
            if failed < 5 {
                println!("kv-client: FAIL: put load:{i:05}: {e}");
            }
        }
    }
    let puts = time::now() - t0;
    c.check(failed == 0, &format!("{count} puts acknowledged ({failed} failed)"));
    let t0 = time::now();
    let mut wrong = 0;
    for i in 0..count {
        let r = retry!(*restarts, kv.get(format!("load:{i:05}").as_bytes()).await);
        if !is(&r, &value_of(i)) {
            wrong += 1;
            if wrong < 5 {
                println!("kv-client: FAIL: get load:{i:05}: {r:?}");
            }
        }
    }
    let gets = time::now() - t0;
    c.check(wrong == 0, &format!("{count} gets return what was put ({wrong} wrong)"));
    let t0 = time::now();
    let all = retry!(*restarts, kv.scan_all(256).await);
    let scan = time::now() - t0;
    match all {
        Ok(all) => {
            // (A disk kept from an earlier run with a larger `count` holds more.)
            let end = format!("load:{count:05}").into_bytes();
            let loaded: Vec<&(Vec<u8>, Vec<u8>)> = all.iter().filter(|(k, _)| k.starts_with(b"load:") && *k < end).collect();
            let ordered = all.windows(2).all(|w| w[0].0 < w[1].0);
            let right = loaded.len() == count as usize && loaded.iter().enumerate().all(|(i, (k, v))| *k == format!("load:{i:05}").into_bytes() && *v == value_of(i as u32));
            c.check(ordered && right, &format!("the full scan returns every key once, in order, with its value ({} keys, {} loaded)", all.len(), loaded.len()));
        }
        Err(e) => c.check(false, &format!("full scan: {e}")),
    }
    let per_s = |n: u32, d: Duration| (n as u64 * 1_000_000) / (d.as_micros() as u64).max(1);
    println!(
        "kv-client: {count} puts in {} ms ({}/s, {} us each), {count} gets in {} ms ({}/s, {} us each), full scan in {} ms",
        puts.as_millis(),
        per_s(count, puts),
        puts.as_micros() as u64 / count.max(1) as u64,
        gets.as_millis(),
        per_s(count, gets),
        gets.as_micros() as u64 / count.max(1) as u64,
        scan.as_millis()
    );
}

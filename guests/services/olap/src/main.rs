//! The OLAP partition: a thin shell around `hallows-olap`. It finds its
//! virtio-blk disk, opens the image on it read-only (`Engine::open`: the
//! superblock and the catalog are checked; the image is written on the
//! host by `hallows-olap-load`), and serves queries:
//!
//! * PostgreSQL's v3 protocol (simple queries: `psql -c '...'`) on the
//!   manifest's first `listen` port (5432 without one);
//! * `POST /query` (the SQL as the body, answered with JSON) on the second
//!   `listen` port, where the manifest has one.
//!
//! One connection is one task. A query runs to its end inside its task;
//! its morsels run on that core and, on a partition with several cores
//! (`cores = [1, 2]`), on helper tasks the other cores pick up
//! ([`Cores`], over `hallows_rt::task::parallel_for`); the engine
//! assembles results in morsel order, so the answer does not depend on
//! the cores. The engine's `Limits` bound what a query may hold. A connection silent for [`IDLE`] is closed, a response a
//! client does not read within [`WRITE_TIME`] drops the connection, and
//! malformed protocol bytes are answered by the codec with a FATAL
//! ErrorResponse before the connection is closed. Nothing a client sends
//! is written to the disk: the partition never writes it.
//!
//! The events table (the flagship system, docs/demo.md): where the
//! system connects "deliveries" (from the log partition) and "consumed"
//! (back to it), the partition needs no disk: it consumes the log's
//! in-system topic into `hallows_olap::events` (table `events`: the
//! offset, the kind, and the todo id and title of each record) and
//! answers queries on a snapshot of it in memory, renewed at most every
//! `snapshot_ms` (boot argument, default 500) while events arrive. It
//! reports each event consumed once the snapshot holding it is in place
//! (the log then commits it for the group). The table lives in memory
//! (at most `events_max` events, default 100000, the oldest forgotten
//! first): a restarted partition starts empty and the log resumes at the
//! first event not reported, so the table then holds what arrived since.
//!
//! Boot arguments: `trace` (a console line per connection and per query,
//! with how many of its morsels ran on other cores), `serial` (every
//! morsel on the query's own core).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use core::time::Duration;

use hallows_blockdev::{BlockDevice, Error as DevError, MemDisk, SECTOR as BLOCK};
use hallows_net::{with_timeout, TcpListener, TcpStream};
use hallows_olap::pgwire::{Conn, Event};
use hallows_olap::{http, Engine, Executor};
use hallows_rt::task::spawn;
use hallows_rt::virtio::Disk;
use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// Generated from `events.pt` by the build script.
#[allow(dead_code)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

/// A connection silent this long is closed.
const IDLE: Duration = Duration::from_secs(300);
/// Time to hand a response to a client that does not read.
const WRITE_TIME: Duration = Duration::from_secs(30);
/// Largest transfer to the device in one request.
const MAX_IO: usize = 256 * 1024;
/// Bytes read from a socket at a time (the codec bounds a message to
/// 1 MiB and the HTTP parser a request to `http::MAX_REQUEST`).
const READ_BUF: usize = 16 * 1024;
/// Heap bytes allowed per row a query may hold (a join's build side, a
/// result) and per group of an aggregation: the engine's `Limits` are the
/// heap divided by this, so that a query too large for the partition's
/// memory fails with SQLSTATE 54000 instead of exhausting the heap (which
/// would stop the partition). Rows wider than about 40 columns can still
/// take more.
const ROW_BUDGET: u64 = 2048;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: u32 = 64;

/// `trace` in the boot arguments.
static TRACE: AtomicBool = AtomicBool::new(false);
/// Connections open now (both fronts).
static OPEN: AtomicU32 = AtomicU32::new(0);
/// Helper tasks a query's morsels may use besides its own core: the
/// partition's cores less one (0 with `serial`).
static HELPERS: AtomicUsize = AtomicUsize::new(0);

/// The engine's executor on the partition's cores: each batch of morsels
/// is a scoped parallel for over this core and [`HELPERS`] helper tasks.
/// Counts the morsels run, and those run on other cores.
#[derive(Default)]
struct Cores {
    morsels: AtomicUsize,
    elsewhere: AtomicUsize,
}

impl Executor for Cores {
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let helpers = HELPERS.load(Ordering::Relaxed);
        let elsewhere = hallows_rt::task::parallel_for(tasks, helpers, f);
        self.morsels.fetch_add(tasks, Ordering::Relaxed);
        self.elsewhere.fetch_add(elsewhere, Ordering::Relaxed);
    }
}

/// The partition's disk, read-only: reads are cut to [`MAX_IO`]; a write
/// is refused (the engine never writes; this makes sure of it).
struct ReadOnlyDisk(Disk);

impl BlockDevice for ReadOnlyDisk {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DevError> {
        hallows_blockdev::check(self.0.sectors(), lba, buf.len())?;
        for (i, chunk) in buf.chunks_mut(MAX_IO).enumerate() {
            self.0.read(lba + (i * (MAX_IO / BLOCK)) as u64, chunk)?;
        }
        Ok(())
    }
    fn write(&mut self, _lba: u64, _buf: &[u8]) -> Result<(), DevError> {
        Err(DevError::Io)
    }
    fn flush(&mut self) -> Result<(), DevError> {
        Ok(())
    }
}

/// What a query runs on: the image on the disk, or a snapshot of the
/// events table in memory.
enum Dev {
    Disk(alloc::boxed::Box<ReadOnlyDisk>),
    Events(MemDisk),
}

impl BlockDevice for Dev {
    fn sectors(&self) -> u64 {
        match self {
            Dev::Disk(d) => d.sectors(),
            Dev::Events(d) => d.sectors(),
        }
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DevError> {
        match self {
            Dev::Disk(d) => d.read(lba, buf),
            Dev::Events(d) => d.read(lba, buf),
        }
    }
    fn write(&mut self, _lba: u64, _buf: &[u8]) -> Result<(), DevError> {
        Err(DevError::Io)
    }
    fn flush(&mut self) -> Result<(), DevError> {
        Ok(())
    }
}

/// The engine queries run on now: a query takes the current one and
/// keeps it to its end, while the events task may put a newer one in.
struct Current(spin::Mutex<Arc<Engine<Dev>>>);

impl Current {
    fn get(&self) -> Arc<Engine<Dev>> {
        self.0.lock().clone()
    }
}

type Shared = Arc<Current>;

/// The engine's limits for this partition's heap (see [`ROW_BUDGET`]).
fn limit(e: &mut Engine<Dev>) {
    let (_, heap) = hallows_rt::mm::heap_range();
    let n = (heap / ROW_BUDGET).max(1) as usize;
    e.limits = hallows_olap::Limits { max_rows: n.min(e.limits.max_rows), max_groups: n.min(e.limits.max_groups) };
}

/// The events consumer: deliveries into the log of events.
struct Consumer {
    log: hallows_olap::events::EventLog,
    /// Every delivery up to this offset has been taken (not yet reported).
    taken: Option<i64>,
}

impl spec::Handlers for Consumer {
    type Endpoints = Boot;
    fn delivered(&mut self, message: spec::LogDelivery, _send: &mut spec::Senders<Boot>) {
        self.log.push(message.offset, message.key.as_bytes(), message.value.as_bytes());
        self.taken = Some(message.offset);
    }
}

/// Consumes the log's topic, snapshots it into `current` at most every
/// `period`, and reports on "consumed" what the current snapshot holds.
async fn consume(mut svc: spec::Service<Consumer>, current: Shared, period: Duration) {
    let mut last = time::now();
    let mut reported: Option<i64> = None;
    let mut snapshot_through: Option<i64> = None;
    loop {
        let t = svc.turn(time::now_nanos());
        if t.corrupt != 0 {
            println!("olap: channel \"deliveries\" corrupt: events stop here");
            return;
        }
        if svc.handlers.log.changed() && time::now() - last >= period {
            let t0 = time::now();
            match svc.handlers.log.snapshot_into(Dev::Events) {
                Ok(mut e) => {
                    limit(&mut e);
                    *current.0.lock() = Arc::new(e);
                    snapshot_through = svc.handlers.taken;
                    if TRACE.load(Ordering::Relaxed) {
                        println!("olap: events snapshot of {} rows in {} us", svc.handlers.log.len(), (time::now() - t0).as_micros());
                    }
                }
                Err(e) => println!("olap: events snapshot failed: {e}"),
            }
            last = time::now();
        }
        if let Some(through) = snapshot_through.filter(|t| Some(*t) != reported) {
            // Full: the log reads "consumed" soon; told next turn.
            if spec::Port::port(&mut svc.send.consumed).try_send(&spec::LogConsumed::new(through)).is_ok() {
                reported = Some(through);
                svc.flush();
            }
        }
        if t.handled == 0 {
            time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    hallows_rt::task::run(boot, serve(b))
}

async fn serve(boot: Boot) -> u64 {
    TRACE.store(boot.has("trace"), Ordering::Relaxed);
    let helpers = if boot.has("serial") { 0 } else { (boot.vcpu_count() as usize).saturating_sub(1) };
    HELPERS.store(helpers, Ordering::Relaxed);
    let cfg = match hallows_net::init(&boot) {
        Ok(c) => c,
        Err(e) => {
            println!("olap: net init failed: {e}");
            return 1;
        }
    };
    let consumer = Consumer { log: hallows_olap::events::EventLog::new(boot.arg("events_max").and_then(|n| n.parse().ok()).unwrap_or(100_000)), taken: None };
    let events = match spec::Service::connect(consumer, &boot) {
        Ok(svc) => Some(svc),
        Err(spec::ConnectError::MissingChannel(_)) => None,
        Err(e) => {
            println!("olap: the events channels: {e}");
            return 1;
        }
    };
    let engine: Shared = if let Some(mut svc) = events {
        let mut e = match svc.handlers.log.snapshot_into(Dev::Events) {
            Ok(e) => e,
            Err(e) => {
                println!("olap: the empty events table: {e}");
                return 1;
            }
        };
        limit(&mut e);
        let period = Duration::from_millis(boot.arg("snapshot_ms").and_then(|n| n.parse().ok()).unwrap_or(500).max(10));
        let current = Arc::new(Current(spin::Mutex::new(Arc::new(e))));
        println!("olap: table events fed by the log partition's topic (snapshot every {} ms)", period.as_millis());
        spawn(consume(svc, current.clone(), period));
        current
    } else {
        let disk = match Disk::open(&boot) {
            Ok(d) => d,
            Err(e) => {
                println!("olap: {e}");
                return 1;
            }
        };
        let blocks = disk.sectors();
        let t0 = time::now();
        let engine = match Engine::open(Dev::Disk(alloc::boxed::Box::new(ReadOnlyDisk(disk)))) {
            Ok(mut e) => {
                limit(&mut e);
                println!("olap: heap {} MiB: at most {} rows a result or join side, {} groups an aggregation", hallows_rt::mm::heap_range().1 >> 20, e.limits.max_rows, e.limits.max_groups);
                e
            }
            Err(e) => {
                println!("olap: cannot open the image on the disk ({} sectors): {e} (load one with hallows-olap-load, docs/olap.md)", blocks);
                return 1;
            }
        };
        let mut rows = 0u64;
        for t in &engine.db.tables {
            println!("olap: table {}: {} rows in {} row groups", t.schema.name, t.rows, t.groups.len());
            rows += t.rows;
        }
        println!(
            "olap: image of {} KiB opened in {} ms: {} tables, {rows} rows",
            (blocks * BLOCK as u64) >> 10,
            (time::now() - t0).as_millis(),
            engine.db.tables.len()
        );
        Arc::new(Current(spin::Mutex::new(Arc::new(engine))))
    };
    let net = &boot.info().net;
    let listen = |i: usize| if (net.listen_count as usize) > i && net.listen[i] != 0 { Some(net.listen[i]) } else { None };
    let port = listen(0).unwrap_or(5432);
    let Ok(mut listener) = TcpListener::bind(port) else {
        println!("olap: cannot listen on {port}");
        return 1;
    };
    if let Some(hp) = listen(1) {
        let Ok(mut hl) = TcpListener::bind(hp) else {
            println!("olap: cannot listen on {hp}");
            return 1;
        };
        let engine = engine.clone();
        spawn(async move {
            loop {
                if let Ok(s) = hl.accept().await {
                    if admit(&s) {
                        spawn(http_connection(s, engine.clone()));
                    } else {
                        s.abort();
                    }
                }
            }
        });
        println!("olap ready: {:?} {} postgres {port} http {hp}, queries on {} core(s)", cfg.mode, cfg.address, helpers + 1);
    } else {
        println!("olap ready: {:?} {} postgres {port}, queries on {} core(s)", cfg.mode, cfg.address, helpers + 1);
    }
    let mut key = 0u32;
    loop {
        if let Ok(s) = listener.accept().await {
            if admit(&s) {
                key = key.wrapping_add(1);
                spawn(pg_connection(s, engine.clone(), key));
            } else {
                s.abort();
            }
        }
    }
}

/// Counts a new connection in, or refuses it past [`MAX_CONNECTIONS`].
fn admit(s: &TcpStream) -> bool {
    if OPEN.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        OPEN.fetch_sub(1, Ordering::AcqRel);
        println!("olap: {} connections open: refusing {}", MAX_CONNECTIONS, s.peer_addr());
        return false;
    }
    if TRACE.load(Ordering::Relaxed) {
        println!("olap: connection from {}", s.peer_addr());
    }
    true
}

/// Writes `out` (if any) within [`WRITE_TIME`]; `false` when the client
/// is gone or does not read.
async fn send(s: &mut TcpStream, out: &[u8]) -> bool {
    out.is_empty() || matches!(with_timeout(WRITE_TIME, s.write_all(out)).await, Ok(Ok(())))
}

/// Runs one query; the console line under `trace`.
fn run_query(engine: &Shared, q: &str) -> Result<hallows_olap::ResultSet, hallows_olap::Error> {
    let t0 = time::now();
    let ex = Cores::default();
    let r = engine.get().query(q, &ex);
    if TRACE.load(Ordering::Relaxed) {
        let (m, e) = (ex.morsels.load(Ordering::Relaxed), ex.elsewhere.load(Ordering::Relaxed));
        match &r {
            Ok(rs) => println!("olap: query of {} bytes: {} rows in {} us, {e} of {m} morsels on other cores", q.len(), rs.rows.len(), (time::now() - t0).as_micros()),
            Err(e) => println!("olap: query of {} bytes failed: {e}", q.len()),
        }
    }
    r
}

/// One PostgreSQL connection: bytes read go to the codec, each query it
/// yields runs, and what the codec has to send is written.
async fn pg_connection(mut s: TcpStream, engine: Shared, key: u32) {
    let mut conn = Conn::new((key, key.wrapping_mul(2_654_435_761)));
    let mut buf = vec![0u8; READ_BUF];
    let ok = 'conn: loop {
        let n = match with_timeout(IDLE, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break true,
        };
        conn.feed(&buf[..n]);
        while let Some(ev) = conn.next_event() {
            match ev {
                Event::Query(q) => match run_query(&engine, &q) {
                    Ok(rs) => conn.send_result(&rs),
                    Err(e) => conn.send_error(&e, &q),
                },
                Event::Close => break,
            }
            if !send(&mut s, &conn.take_output()).await {
                break 'conn false;
            }
        }
        if !send(&mut s, &conn.take_output()).await {
            break false;
        }
        if conn.is_closed() {
            break true;
        }
    };
    finish(s, ok).await;
}

/// One HTTP connection: one `POST /query`, answered, then closed.
async fn http_connection(mut s: TcpStream, engine: Shared) {
    let mut req: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let answer = loop {
        let n = match with_timeout(IDLE, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return finish(s, true).await,
        };
        req.extend_from_slice(&buf[..n]);
        match http::parse(&req) {
            http::Request::Incomplete if req.len() <= http::MAX_REQUEST => continue,
            http::Request::Incomplete => break http::bad(413, "request too large"),
            http::Request::Bad(status, msg) => break http::bad(status, msg),
            http::Request::Query(q) => match run_query(&engine, &q) {
                Ok(rs) => break http::response(200, &http::result_json(&rs)),
                Err(e) => break http::response(400, &http::error_json(&e)),
            },
        }
    };
    let ok = send(&mut s, &answer).await;
    finish(s, ok).await;
}

/// Closes a connection (or aborts one whose client stopped reading) and
/// counts it out.
async fn finish(s: TcpStream, ok: bool) {
    OPEN.fetch_sub(1, Ordering::AcqRel);
    if ok {
        let _ = with_timeout(WRITE_TIME, s.close()).await;
    } else {
        s.abort();
    }
}

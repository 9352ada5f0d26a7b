//! The log partition: a thin shell around `hallows-log`. It finds its
//! virtio-blk disk, opens (recovering) the log on it, and serves Kafka's
//! wire protocol on port 9092 (the first `listen` port of the manifest)
//! over `hallows-net`.
//!
//! The disk is the manifest's `disk = { size = "64 MiB" }` (the tool
//! plugs it into a transport the partition owns); `durability = "group"`
//! with a `commit_window` makes new topics acknowledge once written and flush
//! within the window.
//!
//! Boot arguments: `advertise=HOST` and `advertise_port=N` (the address
//! clients are told to use: the host side of the manifest's forward),
//! `partitions=N` (of auto-created topics, default 1), `epoch_ms=N` (wall
//! clock at boot, for time-based retention; without it time retention
//! never fires), `trace` (a console line per connection, request and disk
//! write), `stats` (a line of counters after each burst of produce
//! requests: instructions per batch under `-icount shift=0`, docs/log.md),
//! `crc=software` (CRC-32C without the CPU's instruction: measurements).
//!
//! In-system producers and consumers: where the manifest connects the
//! channels of `log.pt`, a task serves them under the `messaging`
//! scheduler. Producers: each turn's records on "records" become one
//! RecordBatch v2 appended to topic `ring_topic` (boot argument, default
//! `in-system`) and flushed, and then one acknowledgement on "acks" names
//! the last record now durable. Kafka clients consume that topic like any
//! other. Consumers: the topic's records leave on "deliveries" in offset
//! order from the committed offset of group `deliver_group` (boot
//! argument, default `in-system-consumers`) on; what "consumed" reports
//! done is committed durably, so after a restart of either side delivery
//! resumes at the first record not done (at least once).
//!
//! One connection is one task; a request that waits (a produce waiting for
//! the group commit, a long-polling fetch, a JoinGroup) is polled by its
//! task, and a background task drives timers (flush intervals, session
//! timeouts, retention) every few milliseconds.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use hallows_log::dev::{BlockDevice, Error as DevError, BLOCK};
use hallows_log::{Broker, BrokerConfig, Log, LogConfig, Reply};
use hallows_net::{with_timeout, TcpListener, TcpStream};
use hallows_rt::task::spawn;
use hallows_rt::virtio::Disk;
use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// Generated from `log.pt` by the build script.
#[allow(dead_code)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/log.rs"));
}

/// Largest request frame accepted (a client sending more is disconnected).
const MAX_REQUEST: usize = 8 << 20;
/// A connection silent this long is closed (clients reconnect).
const IDLE: Duration = Duration::from_secs(600);
/// Time to hand a response to a client that does not read.
const WRITE_TIME: Duration = Duration::from_secs(30);
/// Largest transfer to the device in one request.
const MAX_IO: usize = 256 * 1024;

/// Guest nanoseconds spent waiting on the disk, and holding the broker
/// (boot argument `stats`: printed after each burst of produces). Under
/// QEMU's `-icount shift=0` a guest nanosecond is one instruction, so
/// `(broker - disk) / batches` is the broker's and engine's instructions per
/// produced batch, without the device's wait.
static DISK_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static BROKER_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn timed<T>(counter: &core::sync::atomic::AtomicU64, f: impl FnOnce() -> T) -> T {
    let t0 = time::now_nanos();
    let r = f();
    counter.fetch_add(time::now_nanos() - t0, core::sync::atomic::Ordering::Relaxed);
    r
}

/// The partition's disk (`hallows_rt::virtio::Disk`, the manifest's `disk`)
/// with transfers cut to [`MAX_IO`] and the time spent in them counted.
struct TimedDisk(Disk);

impl BlockDevice for TimedDisk {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DevError> {
        hallows_log::dev::check(self.0.sectors(), lba, buf.len())?;
        timed(&DISK_NS, || {
            for (i, chunk) in buf.chunks_mut(MAX_IO).enumerate() {
                self.0.read(lba + (i * (MAX_IO / BLOCK)) as u64, chunk)?;
            }
            Ok(())
        })
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DevError> {
        hallows_log::dev::check(self.0.sectors(), lba, buf.len())?;
        if TRACE.load(core::sync::atomic::Ordering::Relaxed) {
            println!("log: disk write {lba} +{}", buf.len() / BLOCK);
        }
        timed(&DISK_NS, || {
            for (i, chunk) in buf.chunks(MAX_IO).enumerate() {
                self.0.write(lba + (i * (MAX_IO / BLOCK)) as u64, chunk)?;
            }
            Ok(())
        })
    }
    fn flush(&mut self) -> Result<(), DevError> {
        timed(&DISK_NS, || self.0.flush())
    }
}

type Shared = Arc<hallows_rt::sync::Mutex<Broker<TimedDisk>>>;

/// `trace` in the boot arguments: a line per connection and request.
static TRACE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

static EPOCH_MS: core::sync::atomic::AtomicI64 = core::sync::atomic::AtomicI64::new(0);

fn now_ms() -> i64 {
    EPOCH_MS.load(core::sync::atomic::Ordering::Relaxed) + time::now().as_millis() as i64
}

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    hallows_rt::task::run(boot, serve(b))
}

async fn serve(boot: Boot) -> u64 {
    TRACE.store(boot.has("trace"), core::sync::atomic::Ordering::Relaxed);
    if boot.arg("crc") == Some("software") {
        hallows_log::crc32c::use_hardware(false);
    }
    println!("log: CRC-32C {}", if hallows_log::crc32c::hardware() { "by the CPU's instruction" } else { "in software" });
    if let Some(ms) = boot.arg("epoch_ms").and_then(|v| v.parse::<i64>().ok()) {
        EPOCH_MS.store(ms, core::sync::atomic::Ordering::Relaxed);
    }
    let cfg = match hallows_net::init(&boot) {
        Ok(c) => c,
        Err(e) => {
            println!("log: net init failed: {e}");
            return 1;
        }
    };
    let disk = match Disk::open(&boot) {
        Ok(d) => d,
        Err(e) => {
            println!("log: {e}");
            return 1;
        }
    };
    let blocks = disk.sectors();
    let disk = TimedDisk(disk);
    let t0 = time::now();
    let log = match Log::open(disk, LogConfig::default()) {
        Ok(l) => l,
        Err(e) => {
            println!("log: cannot open the log on the disk ({} MiB): {e:?}", (blocks * BLOCK as u64) >> 20);
            return 1;
        }
    };
    let r = log.report;
    println!(
        "log: disk {} MiB {}, {} segments, {} batches, {} torn tails truncated, {} segments dropped, {} topics, in {} ms",
        (blocks * BLOCK as u64) >> 20,
        if r.formatted { "formatted" } else { "recovered" },
        r.segments,
        r.batches,
        r.torn_tails,
        r.dropped_segments,
        log.topics().len(),
        (time::now() - t0).as_millis()
    );
    let net = &boot.info().net;
    let port = if net.listen_count > 0 && net.listen[0] != 0 { net.listen[0] } else { 9092 };
    let mut bc = BrokerConfig::default();
    if let Some(h) = boot.arg("advertise") {
        bc.host = h.into();
    }
    bc.port = boot.arg("advertise_port").and_then(|p| p.parse().ok()).unwrap_or(port as i32);
    if let Some(n) = boot.arg("partitions").and_then(|p| p.parse().ok()) {
        bc.default_partitions = n;
    }
    // The manifest's `disk.durability`: strict (the default) flushes before
    // every acknowledgement; group acknowledges once written and flushes
    // within the commit window (topics created with `flush.ms` choose their own).
    if boot.arg("disk_durability") == Some("group") {
        let us: u64 = boot.arg("disk_window_us").and_then(|w| w.parse().ok()).unwrap_or(10_000);
        let ms = us.div_ceil(1000).clamp(1, u32::MAX as u64) as u32;
        bc.default_topic.flush = hallows_log::FlushPolicy::Interval(ms);
        bc.flush_interval_ms = ms as i64;
    }
    let broker: Shared = Arc::new(hallows_rt::sync::Mutex::new(Broker::new(log, bc)));
    let Ok(mut listener) = TcpListener::bind(port) else {
        println!("log: cannot listen on {port}");
        return 1;
    };
    let ticker = broker.clone();
    let stats = boot.has("stats");
    spawn(async move {
        let (mut last_seen, mut last_printed, mut last_change) = (0u64, 0u64, time::now());
        loop {
            time::sleep(Duration::from_millis(5)).await;
            timed(&BROKER_NS, || ticker.lock().poll(now_ms()));
            if stats {
                // A line at the end of each burst of produces (500 ms
                // without a new batch).
                let b = ticker.lock().stats;
                if b.produced_batches != last_seen {
                    last_seen = b.produced_batches;
                    last_change = time::now();
                } else if last_seen != last_printed && time::now() - last_change > Duration::from_millis(500) {
                    last_printed = last_seen;
                    let (broker_ns, disk_ns) = (BROKER_NS.load(core::sync::atomic::Ordering::Relaxed), DISK_NS.load(core::sync::atomic::Ordering::Relaxed));
                    println!(
                        "log stats: requests {} produced batches {} flushes {} guest ns holding the broker {} of which disk {} -> {} per batch without the disk",
                        b.requests,
                        b.produced_batches,
                        b.flushes,
                        broker_ns,
                        disk_ns,
                        broker_ns.saturating_sub(disk_ns) / b.produced_batches.max(1)
                    );
                }
            }
        }
    });
    let topic = String::from(boot.arg("ring_topic").unwrap_or("in-system"));
    let group = String::from(boot.arg("deliver_group").unwrap_or("in-system-consumers"));
    let in_system = InSystem { broker: broker.clone(), topic: topic.clone(), appended: None, consumed: None };
    match spec::Service::connect(in_system, &boot) {
        Ok(service) => {
            let position = broker.lock().position_internal(&group, &topic);
            spawn(serve_ring(service, Delivery::new(topic, group, position)));
            println!("log: in-system producers on channel \"records\", consumers on \"deliveries\" from offset {position}");
        }
        Err(spec::ConnectError::MissingChannel(_)) => {}
        Err(e) => {
            println!("log: {e}");
            return 1;
        }
    }
    println!("log ready: {:?} {} kafka {port}", cfg.mode, cfg.address);
    loop {
        if let Ok(s) = listener.accept().await {
            if TRACE.load(core::sync::atomic::Ordering::Relaxed) {
                println!("log: connection from {}", s.peer_addr());
            }
            spawn(connection(s, broker.clone()));
        }
    }
}

/// Requests of one connection handled ahead of their responses (Kafka
/// clients pipeline; responses still leave in request order).
const MAX_PIPELINED: usize = 64;

/// A connection's received bytes: requests are handled where they were
/// read (no copy per request), and the buffer is compacted only when its
/// free end runs short.
struct InBuf {
    buf: Vec<u8>,
    /// Bytes before `head` are handled; `head..end` are waiting.
    head: usize,
    end: usize,
}

/// Bytes a read asks for at least (the buffer is compacted or grown to
/// offer them).
const READ_AT_LEAST: usize = 16 * 1024;

impl InBuf {
    fn new() -> Self {
        InBuf { buf: vec![0u8; 64 * 1024], head: 0, end: 0 }
    }

    fn is_empty(&self) -> bool {
        self.head == self.end
    }

    /// Room to read into: at least [`READ_AT_LEAST`] bytes.
    fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < READ_AT_LEAST {
            self.buf.copy_within(self.head..self.end, 0);
            self.end -= self.head;
            self.head = 0;
            if self.buf.len() - self.end < READ_AT_LEAST {
                // A request larger than the buffer: the caller bounds it
                // by MAX_REQUEST (`next_frame`).
                let len = (self.buf.len() * 2).min(MAX_REQUEST + 4 + READ_AT_LEAST).max(self.end + READ_AT_LEAST);
                self.buf.resize(len, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The next whole request frame (without its length) as a range of
    /// `buf`, `Err` for a length out of bounds.
    fn next_frame(&self) -> Result<Option<core::ops::Range<usize>>, ()> {
        let w = &self.buf[self.head..self.end];
        if w.len() < 4 {
            return Ok(None);
        }
        let n = i32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        if n < 8 || n as usize > MAX_REQUEST {
            return Err(());
        }
        if w.len() < 4 + n as usize {
            return Ok(None);
        }
        Ok(Some(self.head + 4..self.head + 4 + n as usize))
    }

    /// Marks everything up to `to` handled.
    fn consume(&mut self, to: usize) {
        self.head = to;
        if self.head == self.end {
            self.head = 0;
            self.end = 0;
        }
    }
}

/// One connection: requests are read and handled as they come, up to
/// [`MAX_PIPELINED`] ahead of their responses, so produce requests a client
/// pipelines on one connection share one flush (group commit); responses
/// are written in request order.
async fn connection(mut s: TcpStream, broker: Shared) {
    let mut inbuf = InBuf::new();
    let mut queue: alloc::collections::VecDeque<Reply> = alloc::collections::VecDeque::new();
    let mut waiting_since = time::now();
    'conn: loop {
        // Handle every whole request already here.
        while queue.len() < MAX_PIPELINED {
            let range = match inbuf.next_frame() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(()) => break 'conn,
            };
            let frame = &inbuf.buf[range.clone()];
            if TRACE.load(core::sync::atomic::Ordering::Relaxed) {
                println!("log: request key {} v{} ({} bytes)", i16::from_be_bytes([frame[0], frame[1]]), i16::from_be_bytes([frame[2], frame[3]]), frame.len());
            }
            let reply = timed(&BROKER_NS, || broker.lock().handle(frame, now_ms()));
            inbuf.consume(range.end);
            if reply == Reply::Close {
                break 'conn;
            }
            if queue.is_empty() {
                waiting_since = time::now();
            }
            queue.push_back(reply);
        }
        // Read: wait for a request when nothing is pending; otherwise take
        // what has already arrived (it joins the coming flush).
        if queue.is_empty() || queue.len() < MAX_PIPELINED {
            let limit = if queue.is_empty() {
                if inbuf.is_empty() { IDLE } else { WRITE_TIME }
            } else {
                Duration::from_micros(1)
            };
            match with_timeout(limit, s.read(inbuf.spare())).await {
                Ok(Ok(n)) if n > 0 => {
                    inbuf.filled(n);
                    continue;
                }
                Ok(_) => break,
                Err(_) if queue.is_empty() => break,
                Err(_) => {}
            }
        }
        // Complete what is done, in order.
        timed(&BROKER_NS, || broker.lock().poll(now_ms()));
        loop {
            let taken = match queue.front() {
                None => break,
                Some(Reply::Wait(t)) => match broker.lock().take(*t) {
                    Some(r) => Some(r),
                    None => break,
                },
                Some(_) => None,
            };
            let out = match queue.pop_front() {
                Some(Reply::Now(r)) => Some(r),
                Some(Reply::Wait(_)) => taken,
                _ => None,
            };
            waiting_since = time::now();
            if let Some(r) = out.filter(|r| !r.is_empty()) {
                if !matches!(with_timeout(WRITE_TIME, s.write_all(&r)).await, Ok(Ok(()))) {
                    cancel_all(&broker, &queue);
                    s.abort();
                    return;
                }
            }
        }
        if !queue.is_empty() {
            if time::now() - waiting_since > IDLE {
                break;
            }
            time::sleep(Duration::from_millis(1)).await;
        }
    }
    cancel_all(&broker, &queue);
    let _ = s.close().await;
}

/// Forgets the responses a closed connection will never read.
fn cancel_all(broker: &Shared, queue: &alloc::collections::VecDeque<Reply>) {
    let mut b = broker.lock();
    for r in queue {
        if let Reply::Wait(t) = r {
            b.cancel(*t);
        }
    }
}

/// Longest sleep of the in-system producers' task between two looks at
/// its channel when nothing rings (a doorbell wakes it at once).
const IDLE_RING_WAIT: Duration = Duration::from_millis(100);

/// The handlers of `log.pt`: what the last turn's records became (one
/// batch in the log, not yet flushed); the furthest record a consumer
/// reported done.
struct InSystem {
    broker: Shared,
    topic: String,
    appended: Option<Result<Appended, hallows_log::LogError>>,
    consumed: Option<i64>,
}

/// A turn's records, appended: the log offset of the last and the
/// producer's sequence number of the last.
#[derive(Clone, Copy)]
struct Appended {
    last_offset: i64,
    last_seq: u64,
}

/// Most bytes one record of `LogRecord` takes in a batch, with room: at
/// most 125 (its length varint 2, attributes 1, timestamp delta 1, offset
/// delta 1 below 64 records, key length 1 and 16 bytes, value length 2 and
/// 100 bytes, headers 1; the lengths read from the slot are clamped to the
/// capacities). So a turn's batch bound is never reached and no record of
/// the turn is left out.
const RECORD_BYTES: usize = 16 + 100 + 16;

impl spec::Handlers for InSystem {
    type Endpoints = Boot;
    /// The turn's records become one RecordBatch v2 built in place in the
    /// segment's buffer: each key and value is copied once, from its ring
    /// slot straight to its place in the log segment.
    fn append_records(&mut self, batch: &hallows_ring::RecvBatch<'_, spec::LogRecord>, _send: &mut spec::Senders<Boot>) {
        let n = batch.len();
        if n == 0 || matches!(self.appended, Some(Err(_))) {
            return;
        }
        let max = hallows_log::batch::HEADER + n * RECORD_BYTES;
        let mut last_seq = 0;
        let r = self.broker.lock().append_internal_built(&self.topic, now_ms(), max, |w| {
            for i in 0..n {
                let Some(slot) = batch.slot(i) else { break };
                let key = spec::LogRecord::key_in(&slot);
                let value = spec::LogRecord::value_in(&slot);
                let pushed = w.push(Some(key.len()), Some(value.len()), |k, v| {
                    key.copy_to(k);
                    value.copy_to(v);
                });
                if !pushed {
                    break;
                }
                last_seq = spec::LogRecord::seq_in(&slot);
            }
        });
        self.appended = Some(match r {
            Ok(Some((base, k))) => Ok(Appended { last_offset: base + k as i64 - 1, last_seq }),
            Ok(None) => return,
            Err(e) => Err(e),
        });
    }
    fn consumed(&mut self, message: spec::LogConsumed, _send: &mut spec::Senders<Boot>) {
        self.consumed = Some(self.consumed.map_or(message.through, |t| t.max(message.through)));
    }
}

/// Serves the in-system producers' channel: a turn of the messaging
/// scheduler, one batch appended and flushed, one acknowledgement.
async fn serve_ring(mut service: spec::Service<InSystem>, mut delivery: Delivery) {
    let topic = delivery.topic.clone();
    // First, "ready" (through = u64::MAX): a producer that started before
    // this partition opened the channel may have had its first records
    // dropped by the open (the ring's restart rule); it sends once it hears this.
    // It is repeated every 100 ms until a record arrives: a producer that
    // opens its end after this one may have lost the first.
    let ready = spec::LogAck { through: u64::MAX, offset: -1 };
    let mut unsent: Option<spec::LogAck> = Some(ready);
    let mut heard = false;
    let mut last_ready = time::now();
    loop {
        if !heard && unsent.is_none() && time::now() - last_ready > Duration::from_millis(100) {
            unsent = Some(ready);
            last_ready = time::now();
        }
        let turn = service.turn(time::now().as_nanos() as u64);
        if turn.corrupt != 0 {
            println!("log: an in-system channel is corrupt; in-system producers and consumers stop");
            return;
        }
        match service.handlers.appended.take() {
            Some(Ok(a)) => {
                heard = true;
                unsent = Some(spec::LogAck { through: a.last_seq, offset: a.last_offset });
            }
            Some(Err(e)) => {
                println!("log: in-system append to {topic} failed: {e:?}; in-system producers stop");
                return;
            }
            None => {}
        }
        if let Some(ack) = unsent {
            if spec::Port::port(&mut service.send.acks).try_send(&ack).is_ok() {
                unsent = None;
                service.flush();
            }
        }
        let delivered = match delivery.step(&mut service) {
            Ok(n) => n,
            Err(e) => {
                println!("log: {e}; in-system consumers stop");
                return;
            }
        };
        if delivered > 0 {
            service.flush();
        }
        if turn.handled == 0 && delivered == 0 {
            // Nothing came: sleep until the producer rings the channel's
            // doorbell, or until the scheduler's linger ends, the "ready"
            // is due again, or (an acknowledgement waiting for room in
            // "acks", which has no doorbell this way) a millisecond.
            let mut limit = if unsent.is_some() { Duration::from_millis(1) } else { IDLE_RING_WAIT.min(delivery.poll) };
            if let Some(at) = turn.wake_at {
                limit = limit.min(Duration::from_nanos(at.saturating_sub(time::now().as_nanos() as u64)));
            }
            let _ = with_timeout(limit, service.ready()).await;
        } else {
            hallows_rt::task::yield_now().await;
        }
    }
}

/// How often the in-system task looks for new records to deliver when it
/// has none in hand (appends by Kafka producers do not ring its channel).
const DELIVERY_POLL: Duration = Duration::from_millis(5);

/// In-system consumers: the next record to deliver, those read but not
/// yet sent, and the group's committed offset.
struct Delivery {
    topic: String,
    group: String,
    next: i64,
    committed: i64,
    unsent: alloc::collections::VecDeque<hallows_log::batch::Record>,
    /// How long the task may sleep with nothing to do.
    poll: Duration,
}

impl Delivery {
    fn new(topic: String, group: String, position: i64) -> Self {
        Delivery { topic, group, next: position, committed: position, unsent: Default::default(), poll: DELIVERY_POLL }
    }

    /// Commits what the consumer reported done, reads more records when
    /// none are in hand, sends as many as "deliveries" takes; how many
    /// were sent. Records whose key or value do not fit the message (a
    /// Kafka producer's) are skipped with a console line, as are
    /// compressed batches.
    fn step(&mut self, service: &mut spec::Service<InSystem>) -> Result<usize, String> {
        let broker = service.handlers.broker.clone();
        if let Some(done) = service.handlers.consumed.take() {
            // Only what was delivered can be done: a consumer that claims
            // more is held to what it was sent.
            let sent_through = self.unsent.front().map_or(self.next, |r| r.offset);
            let to = (done + 1).min(sent_through);
            if to > self.committed {
                broker.lock().commit_internal(&self.group, &self.topic, to, now_ms()).map_err(|e| alloc::format!("committing {}'s offset failed: {e:?}", self.group))?;
                self.committed = to;
            }
        }
        if self.unsent.is_empty() {
            let mut b = broker.lock();
            let (records, skipped) = b.read_internal(&self.topic, self.next, 64).map_err(|e| alloc::format!("reading {} failed: {e:?}", self.topic))?;
            if skipped > 0 {
                println!("log: {skipped} compressed record(s) of {} not delivered in-system", self.topic);
            }
            if let Some(last) = records.last() {
                self.next = last.offset + 1;
            } else if skipped > 0 {
                self.next = b.log.offsets(&self.topic, 0).map_or(self.next, |o| o.high_watermark);
            }
            self.unsent.extend(records);
        }
        let mut sent = 0;
        while let Some(r) = self.unsent.front() {
            let key = spec::BoundedBytes16::from_bytes(r.key.as_deref().unwrap_or(&[]));
            let value = spec::BoundedBytes100::from_bytes(r.value.as_deref().unwrap_or(&[]));
            let (Some(key), Some(value)) = (key, value) else {
                println!("log: record {} of {} too large for \"deliveries\" (key 16, value 100 bytes): skipped", r.offset, self.topic);
                self.unsent.pop_front();
                continue;
            };
            if spec::Port::port(&mut service.send.deliveries).try_send(&spec::LogDelivery::new(r.offset, key, value)).is_err() {
                break;
            }
            self.unsent.pop_front();
            sent += 1;
        }
        Ok(sent)
    }
}

//! The broker: Kafka requests in, responses out, over one log. It is a
//! state machine with no I/O of its own: the shell (the host harness over std
//! TCP, or the guest over hallows-net) feeds it request frames and the time,
//! and calls `poll`, which does the group commit (one device flush for every
//! append waiting on it), completes long-polling fetches, runs the consumer
//! group coordinator's timers and retention.
//!
//! Responses on one connection must keep request order, so a shell handles a
//! connection's requests one at a time: `Reply::Wait` means "call `poll`
//! until `take` gives the response".

use crate::batch::{self, BatchError};
use crate::dev::BlockDevice;
use crate::engine::{FlushPolicy, Log, LogError, TopicConfig};
use crate::proto::{self, err, *};
use crate::wire::{Reader, Writer};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// The address clients are told to connect to (Metadata, FindCoordinator).
    pub host: String,
    pub port: i32,
    pub cluster_id: String,
    /// Create a topic the first time Metadata names it.
    pub auto_create: bool,
    pub default_partitions: u32,
    pub default_topic: TopicConfig,
    /// Longest a fetch may wait, whatever the client asks.
    pub max_wait_ms: i64,
    /// Most milliseconds an unflushed append (acks=0, interval topics) waits.
    pub flush_interval_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            host: "127.0.0.1".to_string(),
            port: 9092,
            cluster_id: "rusthallows-log".to_string(),
            auto_create: true,
            default_partitions: 1,
            default_topic: TopicConfig::default(),
            max_wait_ms: 30_000,
            flush_interval_ms: 10,
        }
    }
}

/// Most consumer groups held in memory (an empty group is forgotten; its
/// committed offsets stay in the log).
pub const MAX_GROUPS: usize = 4096;
/// Most members of one group (Kafka's `group.max.size`).
pub const MAX_MEMBERS: usize = 1000;
/// Most member ids handed out and not yet used, per group.
const MAX_PENDING_IDS: usize = 1000;

/// A handle on a response that is not ready yet.
pub type Ticket = u64;

/// What to do after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes (a whole frame, length prefix included).
    Now(Vec<u8>),
    /// No response (Produce with acks=0).
    Silent,
    /// Poll until `take(ticket)` has it.
    Wait(Ticket),
    /// Malformed or unsupported: close the connection (what Kafka does).
    Close,
}

/// The answer if the flush fails, built only then.
enum Failed {
    Produce { v: i16, corr: i32, results: Vec<(String, Vec<ProducePartResp>)> },
    Bytes(Vec<u8>),
}

impl Failed {
    fn build(self) -> Vec<u8> {
        match self {
            Failed::Bytes(b) => b,
            Failed::Produce { v, corr, mut results } => {
                for (_, rs) in results.iter_mut() {
                    for r in rs.iter_mut() {
                        if r.error == err::NONE {
                            r.error = err::KAFKA_STORAGE_ERROR;
                            r.base_offset = -1;
                        }
                    }
                }
                let mut f = Writer::response(corr);
                write_produce(&mut f, v, &results);
                f.finish()
            }
        }
    }
}

enum Waiting {
    /// Produce or OffsetCommit: answered once the flush lands.
    Flush { ok: Vec<u8>, failed: Failed },
    Fetch { v: i16, corr: i32, req: FetchReq, deadline: i64, seen: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupState {
    Empty,
    Preparing { deadline: i64 },
    Completing,
    Stable,
}

#[derive(Debug)]
struct Member {
    protocols: Vec<(String, Vec<u8>)>,
    session_ms: i64,
    rebalance_ms: i64,
    last_seen: i64,
    /// A JoinGroup waiting for the rebalance: (ticket, version, correlation).
    join: Option<(Ticket, i16, i32)>,
    sync: Option<(Ticket, i16, i32)>,
    assignment: Vec<u8>,
}

#[derive(Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pending_ids: Vec<String>,
}

/// Counters for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests: u64,
    pub produced_batches: u64,
    pub flushes: u64,
    pub fetches: u64,
}

/// The broker over a log.
pub struct Broker<D: BlockDevice> {
    pub log: Log<D>,
    cfg: BrokerConfig,
    waiting: Vec<(Ticket, Waiting)>,
    done: BTreeMap<Ticket, Vec<u8>>,
    next_ticket: Ticket,
    groups: BTreeMap<String, Group>,
    next_member: u64,
    /// Bumped whenever the high watermark moves (wakes long polls).
    version: u64,
    last_flush: i64,
    last_retention: i64,
    /// A device error: everything fails until the log is reopened.
    failed: bool,
    pub stats: Stats,
}

impl<D: BlockDevice> core::fmt::Debug for Broker<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker").field("groups", &self.groups.len()).finish()
    }
}

fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::UnknownTopic | LogError::UnknownPartition => err::UNKNOWN_TOPIC_OR_PARTITION,
        LogError::Corrupt(BatchError::Magic(_)) => err::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        LogError::Corrupt(BatchError::Invalid) => err::INVALID_RECORD,
        LogError::Corrupt(_) => err::CORRUPT_MESSAGE,
        LogError::TooLarge => err::MESSAGE_TOO_LARGE,
        LogError::OffsetOutOfRange => err::OFFSET_OUT_OF_RANGE,
        LogError::TopicExists => err::TOPIC_ALREADY_EXISTS,
        LogError::InvalidTopic(_) => err::INVALID_TOPIC_EXCEPTION,
        LogError::DiskFull | LogError::Device(_) | LogError::BadGeometry => err::KAFKA_STORAGE_ERROR,
    }
}

impl<D: BlockDevice> Broker<D> {
    pub fn new(log: Log<D>, cfg: BrokerConfig) -> Self {
        Broker {
            log,
            cfg,
            waiting: Vec::new(),
            done: BTreeMap::new(),
            next_ticket: 1,
            groups: BTreeMap::new(),
            next_member: 1,
            version: 0,
            last_flush: 0,
            last_retention: 0,
            failed: false,
            stats: Stats::default(),
        }
    }

    /// Appends a batch from inside the system (an in-system producer over a
    /// ring channel) to partition 0 of `topic`, creating the topic if need
    /// be, and makes it durable before returning its base offset; long polls
    /// waiting on the topic wake.
    pub fn append_internal(&mut self, topic: &str, batch: &[u8], now: i64) -> Result<i64, LogError> {
        if self.failed {
            return Err(LogError::Device(crate::dev::Error::Io));
        }
        if self.log.topic(topic).is_none() {
            self.log.create_topic(topic, self.cfg.default_partitions, self.cfg.default_topic, now)?;
        }
        let r = self.log.append(topic, 0, batch).and_then(|base| {
            self.log.flush()?;
            Ok(base)
        });
        if matches!(r, Err(LogError::Device(_))) {
            self.failed = true;
        }
        self.version += 1;
        self.stats.produced_batches += 1;
        r
    }

    /// [`Broker::append_internal`] of a batch built in place in the
    /// segment's buffer ([`Log::append_built`]): the in-system producers'
    /// records go from their ring slots straight into the log segment.
    /// Returns the base offset and the records appended (`None`: `build`
    /// pushed none), durable.
    pub fn append_internal_built(
        &mut self,
        topic: &str,
        now: i64,
        batch_bytes: usize,
        build: impl FnOnce(&mut crate::batch::BatchWriter<'_>),
    ) -> Result<Option<(i64, usize)>, LogError> {
        if self.failed {
            return Err(LogError::Device(crate::dev::Error::Io));
        }
        if self.log.topic(topic).is_none() {
            self.log.create_topic(topic, self.cfg.default_partitions, self.cfg.default_topic, now)?;
        }
        let r = self.log.append_built(topic, 0, now, batch_bytes, build).and_then(|a| {
            if a.is_some() {
                self.log.flush()?;
            }
            Ok(a)
        });
        if matches!(r, Err(LogError::Device(_))) {
            self.failed = true;
        }
        if matches!(r, Ok(Some(_))) {
            self.version += 1;
            self.stats.produced_batches += 1;
        }
        r
    }

    /// Records of partition 0 of `topic` for an in-system consumer: those
    /// from offset `from` on (or from the first one retention kept, if
    /// `from` is older), up to the high watermark, at most `max` of them,
    /// decoded from the batches as stored. An unknown topic has none yet.
    /// A compressed batch (a Kafka producer's) cannot be decoded here: its
    /// records are skipped, counted in the second value.
    pub fn read_internal(&mut self, topic: &str, from: i64, max: usize) -> Result<(Vec<crate::batch::Record>, u64), LogError> {
        if self.failed {
            return Err(LogError::Device(crate::dev::Error::Io));
        }
        if self.log.topic(topic).is_none() {
            return Ok((Vec::new(), 0));
        }
        let o = self.log.offsets(topic, 0)?;
        let from = from.clamp(o.log_start, o.high_watermark);
        let bytes = self.log.read(topic, 0, from, 64 * 1024)?;
        let mut out = Vec::new();
        let mut skipped = 0;
        let mut at = 0usize;
        while at + 12 <= bytes.len() && out.len() < max {
            let len = i32::from_be_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]]);
            let Some(end) = usize::try_from(len).ok().and_then(|l| (at + 12).checked_add(l)).filter(|e| *e <= bytes.len()) else { break };
            let b = &bytes[at..end];
            match crate::batch::decode(b) {
                Some(records) => out.extend(records.into_iter().filter(|r| r.offset >= from).take(max - out.len())),
                None => {
                    let info = crate::batch::validate(b).map_err(LogError::Corrupt)?;
                    skipped += (info.next_offset() - info.base_offset.max(from)).max(0) as u64;
                }
            }
            at = end;
        }
        Ok((out, skipped))
    }

    /// The offset an in-system consumer group resumes at on partition 0 of
    /// `topic`: its committed one, else the first record kept.
    pub fn position_internal(&self, group: &str, topic: &str) -> i64 {
        let start = self.log.offsets(topic, 0).map_or(0, |o| o.log_start);
        self.log.committed(group, topic, 0).map_or(start, |c| c.offset.max(start))
    }

    /// Commits `next` (the first record not yet done) for an in-system
    /// consumer group, durably before returning.
    pub fn commit_internal(&mut self, group: &str, topic: &str, next: i64, now: i64) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Device(crate::dev::Error::Io));
        }
        let r = self.log.commit_offsets(group, &[(topic, 0, next, "")], now).and_then(|()| self.log.flush());
        if matches!(r, Err(LogError::Device(_))) {
            self.failed = true;
        }
        r
    }

    /// The log, after the broker (a restart).
    pub fn into_log(self) -> Log<D> {
        self.log
    }

    /// The settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    /// Whether a device error stopped the log.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn ticket(&mut self) -> Ticket {
        let t = self.next_ticket;
        self.next_ticket += 1;
        t
    }

    /// Takes a finished response.
    pub fn take(&mut self, t: Ticket) -> Option<Vec<u8>> {
        self.done.remove(&t)
    }

    /// Forgets a response its connection will never read (closed).
    pub fn cancel(&mut self, t: Ticket) {
        self.done.remove(&t);
        self.waiting.retain(|(x, _)| *x != t);
    }

    /// Whether anything waits on `poll`.
    pub fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.log.needs_flush() || self.groups.values().any(|g| matches!(g.state, GroupState::Preparing { .. }))
    }

    /// Handles one request frame (without its 4-byte length).
    pub fn handle(&mut self, frame: &[u8], now: i64) -> Reply {
        self.stats.requests += 1;
        let mut r = Reader::new(frame);
        let Ok(h) = proto::header(&mut r) else { return Reply::Close };
        let (v, corr) = (h.version, h.correlation);
        let mut w = Writer::response(corr);
        if h.key == API_VERSIONS {
            // Answered whatever the version (and whatever follows the
            // header, which in v3+ is flexible): v0 layout when unsupported.
            if supported(API_VERSIONS, v) {
                write_api_versions(&mut w, v, err::NONE);
            } else {
                write_api_versions(&mut w, 0, err::UNSUPPORTED_VERSION);
            }
            return Reply::Now(w.finish());
        }
        if !supported(h.key, v) {
            return Reply::Close;
        }
        let client = h.client_id.unwrap_or("client");
        let res = match h.key {
            METADATA => parse_metadata(&mut r, v).map(|q| self.metadata(&mut w, v, q, now)),
            PRODUCE => match parse_produce(&mut r, v) {
                Ok(q) => return self.produce(w, v, q),
                Err(e) => Err(e),
            },
            FETCH => match parse_fetch(&mut r, v) {
                Ok(q) => return self.fetch(v, corr, q, now),
                Err(e) => Err(e),
            },
            LIST_OFFSETS => parse_list_offsets(&mut r, v).map(|q| self.list_offsets(&mut w, v, q)),
            CREATE_TOPICS => parse_create_topics(&mut r, v).map(|q| self.create_topics(&mut w, v, q, now)),
            FIND_COORDINATOR => parse_find_coordinator(&mut r, v).map(|(key, kt)| {
                let e = if kt != 0 { err::INVALID_REQUEST } else if key.is_empty() { err::INVALID_GROUP_ID } else { err::NONE };
                write_find_coordinator(&mut w, v, e, self.cfg.node_id, &self.cfg.host, self.cfg.port)
            }),
            JOIN_GROUP => match parse_join(&mut r, v) {
                Ok(q) => return self.join(w, v, corr, client, q, now),
                Err(e) => Err(e),
            },
            SYNC_GROUP => match parse_sync(&mut r, v) {
                Ok(q) => return self.sync(w, v, corr, q, now),
                Err(e) => Err(e),
            },
            HEARTBEAT => parse_heartbeat(&mut r, v).map(|(g, gen, m)| {
                let e = self.heartbeat(&g, gen, &m, now);
                write_error_only(&mut w, v, e)
            }),
            LEAVE_GROUP => parse_leave(&mut r, v).map(|(g, ms)| self.leave(&mut w, v, &g, &ms, now)),
            OFFSET_COMMIT => match parse_offset_commit(&mut r, v) {
                Ok(q) => return self.offset_commit(w, v, q, now),
                Err(e) => Err(e),
            },
            OFFSET_FETCH => parse_offset_fetch(&mut r, v).map(|q| self.offset_fetch(&mut w, v, q)),
            _ => return Reply::Close,
        };
        match res {
            Ok(()) => Reply::Now(w.finish()),
            Err(_) => Reply::Close,
        }
    }

    // ---- topics ---------------------------------------------------------

    fn topic_config(&self, configs: &[(String, Option<String>)]) -> Result<TopicConfig, String> {
        let mut c = self.cfg.default_topic;
        for (k, v) in configs {
            let val = v.as_deref().unwrap_or("");
            let num = || val.parse::<i64>().map_err(|_| format!("config {k}: \"{val}\" is not an integer"));
            match k.as_str() {
                "retention.bytes" => c.retention_bytes = num()?,
                "retention.ms" => c.retention_ms = num()?,
                "flush.ms" => {
                    let ms = num()?;
                    c.flush = if ms <= 0 { FlushPolicy::Strict } else { FlushPolicy::Interval(ms.min(u32::MAX as i64) as u32) };
                }
                "cleanup.policy" if val == "delete" => {}
                _ => return Err(format!("config {k} is not supported (retention.bytes, retention.ms, flush.ms, cleanup.policy=delete are)")),
            }
        }
        Ok(c)
    }

    fn metadata(&mut self, w: &mut Writer, v: i16, q: MetadataReq, now: i64) {
        let names: Vec<String> = match q.topics {
            None => self.log.topics().iter().map(|t| t.name.clone()).collect(),
            Some(t) => t,
        };
        let mut topics = Vec::new();
        for name in names {
            if self.log.topic(&name).is_none() && q.allow_auto_create && self.cfg.auto_create && !self.failed {
                let _ = self.log.create_topic(&name, self.cfg.default_partitions, self.cfg.default_topic, now);
            }
            let t = match self.log.topic(&name) {
                Some(t) => MetaTopic { error: err::NONE, name, partitions: vec![err::NONE; t.partitions as usize] },
                None => {
                    let e = if crate::engine::topic_name_ok(&name) { err::UNKNOWN_TOPIC_OR_PARTITION } else { err::INVALID_TOPIC_EXCEPTION };
                    MetaTopic { error: e, name, partitions: Vec::new() }
                }
            };
            topics.push(t);
        }
        let m = MetadataResp { node_id: self.cfg.node_id, host: self.cfg.host.clone(), port: self.cfg.port, cluster_id: self.cfg.cluster_id.clone(), topics };
        write_metadata(w, v, &m);
    }

    fn create_topics(&mut self, w: &mut Writer, v: i16, q: CreateTopicsReq, now: i64) {
        let mut out = Vec::new();
        for t in q.topics {
            let parts = if t.partitions == -1 { self.cfg.default_partitions as i32 } else { t.partitions };
            let res: Result<(), (i16, String)> = (|| {
                if t.replication != -1 && t.replication != 1 {
                    return Err((err::INVALID_REPLICATION_FACTOR, "replication factor must be 1 (one broker)".to_string()));
                }
                if t.assignments != 0 {
                    return Err((err::INVALID_REQUEST, "manual replica assignment is not supported".to_string()));
                }
                if !(1..=1024).contains(&parts) {
                    return Err((err::INVALID_PARTITIONS, "partitions must be 1..=1024".to_string()));
                }
                let cfg = self.topic_config(&t.configs).map_err(|m| (err::INVALID_CONFIG, m))?;
                if self.log.topic(&t.name).is_some() {
                    return Err((err::TOPIC_ALREADY_EXISTS, format!("topic {} already exists", t.name)));
                }
                if !crate::engine::topic_name_ok(&t.name) {
                    return Err((err::INVALID_TOPIC_EXCEPTION, "a topic name has 1 to 249 of [a-zA-Z0-9._-]".to_string()));
                }
                if q.validate_only {
                    return Ok(());
                }
                self.log.create_topic(&t.name, parts as u32, cfg, now).map_err(|e| (log_error_code(&e), format!("{e:?}")))
            })();
            match res {
                Ok(()) => out.push((t.name, err::NONE, None)),
                Err((e, m)) => out.push((t.name, e, Some(m))),
            }
        }
        write_create_topics(w, v, &out);
    }

    // ---- produce --------------------------------------------------------

    fn produce(&mut self, mut w: Writer, v: i16, q: ProduceReq) -> Reply {
        let acks = q.acks;
        let mut results = Vec::new();
        let mut wait_flush = false;
        for (name, parts) in &q.topics {
            let mut rs = Vec::new();
            let strict = self.log.topic(name).is_none_or(|t| t.config.flush == FlushPolicy::Strict);
            for p in parts {
                let r = if !(acks == 0 || acks == 1 || acks == -1) {
                    Err(err::INVALID_REQUIRED_ACKS)
                } else if self.failed {
                    Err(err::KAFKA_STORAGE_ERROR)
                } else {
                    self.append_set(name, p.index, p.records)
                };
                let start = self.log.offsets(name, p.index.max(0) as u32).map_or(-1, |o| o.log_start);
                match r {
                    Ok(base) => {
                        wait_flush |= strict;
                        rs.push(ProducePartResp { index: p.index, error: err::NONE, base_offset: base, log_start_offset: start })
                    }
                    Err(e) => rs.push(ProducePartResp { index: p.index, error: e, base_offset: -1, log_start_offset: -1 }),
                }
            }
            results.push((name.to_string(), rs));
        }
        if acks == 0 {
            return Reply::Silent;
        }
        write_produce(&mut w, v, &results);
        if !wait_flush {
            return Reply::Now(w.finish());
        }
        let corr = i32::from_be_bytes([w.b[4], w.b[5], w.b[6], w.b[7]]);
        let t = self.ticket();
        self.waiting.push((t, Waiting::Flush { ok: w.finish(), failed: Failed::Produce { v, corr, results } }));
        Reply::Wait(t)
    }

    fn append_set(&mut self, topic: &str, part: i32, records: Option<&[u8]>) -> Result<i64, i16> {
        let t = self.log.topic(topic).ok_or(err::UNKNOWN_TOPIC_OR_PARTITION)?;
        if part < 0 || part as u32 >= t.partitions {
            return Err(err::UNKNOWN_TOPIC_OR_PARTITION);
        }
        let set = records.filter(|r| !r.is_empty()).ok_or(err::CORRUPT_MESSAGE)?;
        let batches = batch::split(set).map_err(|e| log_error_code(&LogError::Corrupt(e)))?;
        for b in &batches {
            batch::validate(b).map_err(|e| log_error_code(&LogError::Corrupt(e)))?;
        }
        let mut first = -1;
        for b in batches {
            let base = self.log.append_validated(topic, part as u32, b).map_err(|e| {
                if matches!(e, LogError::Device(_)) {
                    self.failed = true;
                }
                log_error_code(&e)
            })?;
            if first < 0 {
                first = base;
            }
            self.stats.produced_batches += 1;
        }
        Ok(first)
    }

    // ---- fetch ----------------------------------------------------------

    /// Builds a fetch response; returns it with the record bytes it holds
    /// and whether any partition had an error.
    fn fetch_response(&mut self, v: i16, corr: i32, req: &FetchReq) -> (Vec<u8>, usize, bool) {
        let mut left = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
        let mut total = 0usize;
        let mut any_err = false;
        let mut topics = Vec::new();
        for (name, parts) in &req.topics {
            let mut rs = Vec::new();
            for p in parts {
                let mut r = FetchPartResp { index: p.index, error: err::NONE, high_watermark: -1, log_start_offset: -1, records: Vec::new() };
                if p.index < 0 {
                    r.error = err::UNKNOWN_TOPIC_OR_PARTITION;
                } else {
                    match self.log.offsets(name, p.index as u32) {
                        Err(e) => r.error = log_error_code(&e),
                        Ok(o) => {
                            r.high_watermark = o.high_watermark;
                            r.log_start_offset = o.log_start;
                            let max = (p.max_bytes.max(0) as usize).min(left);
                            if max > 0 || total == 0 {
                                match self.log.read(name, p.index as u32, p.offset, max.max(1)) {
                                    Ok(b) => r.records = b,
                                    Err(e) => r.error = log_error_code(&e),
                                }
                            }
                        }
                    }
                }
                any_err |= r.error != err::NONE;
                total += r.records.len();
                left = left.saturating_sub(r.records.len());
                rs.push(r);
            }
            topics.push((name.clone(), rs));
        }
        let mut w = Writer::response(corr);
        write_fetch(&mut w, v, &topics);
        (w.finish(), total, any_err)
    }

    fn fetch(&mut self, v: i16, corr: i32, req: FetchReq, now: i64) -> Reply {
        self.stats.fetches += 1;
        let (resp, bytes, any_err) = self.fetch_response(v, corr, &req);
        let min = req.min_bytes.max(0) as usize;
        if any_err || bytes >= min.max(1) || req.max_wait_ms <= 0 || self.failed {
            return Reply::Now(resp);
        }
        let deadline = now + (req.max_wait_ms as i64).min(self.cfg.max_wait_ms);
        let t = self.ticket();
        self.waiting.push((t, Waiting::Fetch { v, corr, req, deadline, seen: self.version }));
        Reply::Wait(t)
    }

    fn list_offsets(&mut self, w: &mut Writer, v: i16, q: ListOffsetsReq) {
        let mut out = Vec::new();
        for (name, parts) in q.topics {
            let mut rs = Vec::new();
            for (p, ts) in parts {
                let r = if p < 0 {
                    Err(LogError::UnknownPartition)
                } else {
                    self.log.offsets(&name, p as u32).and_then(|o| match ts {
                        -1 => Ok((-1, o.high_watermark)),
                        -2 => Ok((-1, o.log_start)),
                        ts => Ok(self.log.offset_for_time(&name, p as u32, ts)?.map_or((-1, -1), |(off, t)| (t, off))),
                    })
                };
                rs.push(match r {
                    Ok((t, off)) => (p, err::NONE, t, off),
                    Err(e) => (p, log_error_code(&e), -1, -1),
                });
            }
            out.push((name, rs));
        }
        write_list_offsets(w, v, &out);
    }

    // ---- consumer groups --------------------------------------------------

    fn join(&mut self, mut w: Writer, v: i16, corr: i32, client: &str, q: JoinReq, now: i64) -> Reply {
        let fail = |w: &mut Writer, e: i16, member: &str| {
            write_join(w, v, &JoinResp { error: e, generation: -1, protocol: String::new(), leader: String::new(), member_id: member.to_string(), members: Vec::new() })
        };
        if q.group.is_empty() {
            fail(&mut w, err::INVALID_GROUP_ID, &q.member_id);
            return Reply::Now(w.finish());
        }
        if !(1000..=1_800_000).contains(&q.session_ms) {
            fail(&mut w, err::INVALID_SESSION_TIMEOUT, &q.member_id);
            return Reply::Now(w.finish());
        }
        if q.protocols.is_empty() || q.protocol_type.is_empty() {
            fail(&mut w, err::INCONSISTENT_GROUP_PROTOCOL, &q.member_id);
            return Reply::Now(w.finish());
        }
        if !self.groups.contains_key(&q.group) && self.groups.len() >= MAX_GROUPS {
            self.groups.retain(|_, g| !g.members.is_empty() || !g.pending_ids.is_empty());
            if self.groups.len() >= MAX_GROUPS {
                fail(&mut w, err::COORDINATOR_NOT_AVAILABLE, &q.member_id);
                return Reply::Now(w.finish());
            }
        }
        let g = self.groups.entry(q.group.clone()).or_insert_with(|| Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending_ids: Vec::new(),
        });
        if !g.members.is_empty() {
            let compatible = g.protocol_type == q.protocol_type
                && q.protocols.iter().any(|(n, _)| g.members.values().all(|m| m.protocols.iter().any(|(x, _)| x == n)));
            if !compatible {
                fail(&mut w, err::INCONSISTENT_GROUP_PROTOCOL, &q.member_id);
                return Reply::Now(w.finish());
            }
        }
        if !g.members.contains_key(&q.member_id) && g.members.len() >= MAX_MEMBERS {
            fail(&mut w, err::GROUP_MAX_SIZE_REACHED, &q.member_id);
            return Reply::Now(w.finish());
        }
        let mut member_id = q.member_id.clone();
        if member_id.is_empty() {
            member_id = format!("{}-{}", client, self.next_member);
            self.next_member += 1;
            if v >= 4 {
                if g.pending_ids.len() >= MAX_PENDING_IDS {
                    g.pending_ids.remove(0);
                }
                g.pending_ids.push(member_id.clone());
                fail(&mut w, err::MEMBER_ID_REQUIRED, &member_id);
                return Reply::Now(w.finish());
            }
        } else if !g.members.contains_key(&member_id) {
            if let Some(i) = g.pending_ids.iter().position(|x| *x == member_id) {
                g.pending_ids.swap_remove(i);
            } else {
                fail(&mut w, err::UNKNOWN_MEMBER_ID, &member_id);
                return Reply::Now(w.finish());
            }
        }
        if g.members.is_empty() {
            g.protocol_type = q.protocol_type.clone();
        }
        let t = self.next_ticket;
        self.next_ticket += 1;
        let m = g.members.entry(member_id).or_insert(Member {
            protocols: Vec::new(),
            session_ms: 0,
            rebalance_ms: 0,
            last_seen: now,
            join: None,
            sync: None,
            assignment: Vec::new(),
        });
        if let Some((old, _, _)) = m.join.take() {
            self.done.insert(old, Vec::new());
        }
        m.protocols = q.protocols;
        m.session_ms = q.session_ms as i64;
        m.rebalance_ms = q.rebalance_ms.max(0) as i64;
        m.last_seen = now;
        m.join = Some((t, v, corr));
        let grp = q.group.clone();
        self.begin_rebalance(&grp, now);
        Reply::Wait(t)
    }

    fn begin_rebalance(&mut self, group: &str, now: i64) {
        let Some(g) = self.groups.get_mut(group) else { return };
        if matches!(g.state, GroupState::Preparing { .. }) {
            return;
        }
        let timeout = g.members.values().map(|m| m.rebalance_ms).max().unwrap_or(0);
        g.state = GroupState::Preparing { deadline: now + timeout };
        // Members waiting in SyncGroup learn of the new round.
        for m in g.members.values_mut() {
            if let Some((t, v, corr)) = m.sync.take() {
                let mut w = Writer::response(corr);
                write_sync(&mut w, v, err::REBALANCE_IN_PROGRESS, &[]);
                self.done.insert(t, w.finish());
            }
        }
    }

    /// Ends a rebalance whose members all rejoined (or whose time ran out).
    fn complete_rebalance(&mut self, group: &str, now: i64) {
        let Some(g) = self.groups.get_mut(group) else { return };
        let GroupState::Preparing { deadline } = g.state else { return };
        let all = g.members.values().all(|m| m.join.is_some());
        if !all && now < deadline {
            return;
        }
        g.members.retain(|_, m| m.join.is_some());
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.generation += 1;
            return;
        }
        g.generation += 1;
        if !g.members.contains_key(&g.leader) {
            g.leader = g.members.keys().next().cloned().unwrap_or_default();
        }
        let leader_protos: Vec<String> = g.members[&g.leader].protocols.iter().map(|(n, _)| n.clone()).collect();
        g.protocol = leader_protos
            .into_iter()
            .find(|n| g.members.values().all(|m| m.protocols.iter().any(|(x, _)| x == n)))
            .unwrap_or_default();
        let proto_name = g.protocol.clone();
        let all_members: Vec<(String, Vec<u8>)> = g
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.protocols.iter().find(|(n, _)| *n == proto_name).map(|(_, d)| d.clone()).unwrap_or_default()))
            .collect();
        for (id, m) in g.members.iter_mut() {
            m.assignment.clear();
            m.last_seen = now;
            if let Some((t, v, corr)) = m.join.take() {
                let mut w = Writer::response(corr);
                let members = if *id == g.leader { all_members.clone() } else { Vec::new() };
                write_join(&mut w, v, &JoinResp { error: err::NONE, generation: g.generation, protocol: proto_name.clone(), leader: g.leader.clone(), member_id: id.clone(), members });
                self.done.insert(t, w.finish());
            }
        }
        g.state = GroupState::Completing;
    }

    fn sync(&mut self, mut w: Writer, v: i16, corr: i32, q: SyncReq, now: i64) -> Reply {
        let t = self.next_ticket;
        let Some(g) = self.groups.get_mut(&q.group) else {
            write_sync(&mut w, v, err::UNKNOWN_MEMBER_ID, &[]);
            return Reply::Now(w.finish());
        };
        let e = if !g.members.contains_key(&q.member_id) {
            err::UNKNOWN_MEMBER_ID
        } else if matches!(g.state, GroupState::Preparing { .. }) {
            err::REBALANCE_IN_PROGRESS
        } else if q.generation != g.generation {
            err::ILLEGAL_GENERATION
        } else {
            err::NONE
        };
        if e != err::NONE {
            write_sync(&mut w, v, e, &[]);
            return Reply::Now(w.finish());
        }
        if let Some(m) = g.members.get_mut(&q.member_id) {
            m.last_seen = now;
        }
        match g.state {
            GroupState::Stable => {
                write_sync(&mut w, v, err::NONE, &g.members[&q.member_id].assignment);
                Reply::Now(w.finish())
            }
            _ => {
                self.next_ticket += 1;
                if let Some(m) = g.members.get_mut(&q.member_id) {
                    m.sync = Some((t, v, corr));
                }
                if q.member_id == g.leader {
                    for (id, a) in q.assignments {
                        if let Some(m) = g.members.get_mut(&id) {
                            m.assignment = a;
                        }
                    }
                    g.state = GroupState::Stable;
                    for m in g.members.values_mut() {
                        if let Some((t, v, corr)) = m.sync.take() {
                            let mut w = Writer::response(corr);
                            write_sync(&mut w, v, err::NONE, &m.assignment);
                            self.done.insert(t, w.finish());
                        }
                    }
                }
                Reply::Wait(t)
            }
        }
    }

    fn heartbeat(&mut self, group: &str, gen: i32, member: &str, now: i64) -> i16 {
        let Some(g) = self.groups.get_mut(group) else { return err::UNKNOWN_MEMBER_ID };
        let Some(m) = g.members.get_mut(member) else { return err::UNKNOWN_MEMBER_ID };
        m.last_seen = now;
        if matches!(g.state, GroupState::Preparing { .. }) {
            err::REBALANCE_IN_PROGRESS
        } else if gen != g.generation {
            err::ILLEGAL_GENERATION
        } else {
            err::NONE
        }
    }

    fn leave(&mut self, w: &mut Writer, v: i16, group: &str, members: &[String], now: i64) {
        let mut res = Vec::new();
        let mut any = false;
        if let Some(g) = self.groups.get_mut(group) {
            for id in members {
                match g.members.remove(id) {
                    Some(m) => {
                        for (t, _, _) in [m.join, m.sync].into_iter().flatten() {
                            self.done.insert(t, Vec::new());
                        }
                        any = true;
                        res.push((id.clone(), err::NONE));
                    }
                    None => res.push((id.clone(), err::UNKNOWN_MEMBER_ID)),
                }
            }
        } else {
            res.extend(members.iter().map(|m| (m.clone(), err::UNKNOWN_MEMBER_ID)));
        }
        if any {
            let empty = self.groups.get(group).is_some_and(|g| g.members.is_empty());
            if empty {
                if let Some(g) = self.groups.get_mut(group) {
                    g.state = GroupState::Empty;
                    g.generation += 1;
                }
            } else {
                self.begin_rebalance(group, now);
            }
        }
        let top = if v < 3 { res.first().map_or(err::NONE, |r| r.1) } else { err::NONE };
        write_leave(w, v, top, &res);
    }

    fn offset_commit(&mut self, mut w: Writer, v: i16, q: CommitReq, now: i64) -> Reply {
        let group_err = match self.groups.get(&q.group) {
            _ if q.group.is_empty() => err::INVALID_GROUP_ID,
            _ if self.failed => err::KAFKA_STORAGE_ERROR,
            None if q.generation < 0 => err::NONE,
            None => err::UNKNOWN_MEMBER_ID,
            Some(g) if q.generation < 0 => {
                if g.members.is_empty() {
                    err::NONE
                } else {
                    err::ILLEGAL_GENERATION
                }
            }
            Some(g) if !g.members.contains_key(&q.member_id) => err::UNKNOWN_MEMBER_ID,
            Some(g) if matches!(g.state, GroupState::Preparing { .. }) => err::REBALANCE_IN_PROGRESS,
            Some(g) if g.generation != q.generation => err::ILLEGAL_GENERATION,
            Some(_) => err::NONE,
        };
        if let Some(m) = self.groups.get_mut(&q.group).and_then(|g| g.members.get_mut(&q.member_id)) {
            m.last_seen = now;
        }
        let mut results = Vec::new();
        let mut commits: Vec<(String, u32, i64, String)> = Vec::new();
        for (name, parts) in &q.topics {
            let mut rs = Vec::new();
            for (p, off, meta) in parts {
                let e = if group_err != err::NONE {
                    group_err
                } else if *p < 0 || self.log.offsets(name, *p as u32).is_err() {
                    err::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    commits.push((name.clone(), *p as u32, *off, meta.clone().unwrap_or_default()));
                    err::NONE
                };
                rs.push((*p, e));
            }
            results.push((name.clone(), rs));
        }
        let refs: Vec<(&str, u32, i64, &str)> = commits.iter().map(|(t, p, o, m)| (t.as_str(), *p, *o, m.as_str())).collect();
        let stored = self.log.commit_offsets(&q.group, &refs, now);
        if stored.is_err() {
            self.failed = true;
        }
        let mut failed = results.clone();
        for (_, rs) in failed.iter_mut() {
            for r in rs.iter_mut() {
                if r.1 == err::NONE {
                    r.1 = err::KAFKA_STORAGE_ERROR;
                }
            }
        }
        if stored.is_err() || commits.is_empty() {
            write_offset_commit(&mut w, v, if stored.is_err() { &failed } else { &results });
            return Reply::Now(w.finish());
        }
        let corr = i32::from_be_bytes([w.b[4], w.b[5], w.b[6], w.b[7]]);
        write_offset_commit(&mut w, v, &results);
        let mut f = Writer::response(corr);
        write_offset_commit(&mut f, v, &failed);
        let t = self.ticket();
        self.waiting.push((t, Waiting::Flush { ok: w.finish(), failed: Failed::Bytes(f.finish()) }));
        Reply::Wait(t)
    }

    fn offset_fetch(&mut self, w: &mut Writer, v: i16, q: OffsetFetchReq) {
        let (group, topics) = q;
        let topics: Vec<(String, Vec<i32>)> = match topics {
            Some(t) => t,
            None => {
                let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for t in self.log.topics() {
                    for p in 0..t.partitions {
                        if self.log.committed(&group, &t.name, p).is_some() {
                            all.entry(t.name.clone()).or_default().push(p as i32);
                        }
                    }
                }
                all.into_iter().collect()
            }
        };
        let mut out = Vec::new();
        for (name, parts) in topics {
            let mut rs = Vec::new();
            for p in parts {
                let known = p >= 0 && self.log.offsets(&name, p as u32).is_ok();
                match self.log.committed(&group, &name, p.max(0) as u32).filter(|_| known) {
                    Some(c) => rs.push((p, c.offset, Some(c.metadata.clone()), err::NONE)),
                    None => rs.push((p, -1, Some(String::new()), if known { err::NONE } else { err::UNKNOWN_TOPIC_OR_PARTITION })),
                }
            }
            out.push((name, rs));
        }
        write_offset_fetch(w, v, &out, err::NONE);
    }

    // ---- time -----------------------------------------------------------

    /// Does the work that waits: the group commit, long polls, group timers,
    /// retention. Call it after requests and whenever `next_wake` comes.
    pub fn poll(&mut self, now: i64) {
        let flush_waiters = self.waiting.iter().any(|(_, w)| matches!(w, Waiting::Flush { .. }));
        if self.log.needs_flush() && !self.failed && (flush_waiters || now - self.last_flush >= self.cfg.flush_interval_ms) {
            let ok = self.log.flush().is_ok();
            self.failed |= !ok;
            self.last_flush = now;
            self.stats.flushes += 1;
            self.version += 1;
        }
        if self.failed || !self.log.needs_flush() {
            let mut i = 0;
            while i < self.waiting.len() {
                if matches!(self.waiting[i].1, Waiting::Flush { .. }) {
                    let (t, w) = self.waiting.swap_remove(i);
                    if let Waiting::Flush { ok, failed } = w {
                        self.done.insert(t, if self.failed { failed.build() } else { ok });
                    }
                } else {
                    i += 1;
                }
            }
        }
        // Long polls: answered when data came or time ran out.
        let mut i = 0;
        while i < self.waiting.len() {
            let (t, w) = &self.waiting[i];
            let t = *t;
            if let Waiting::Fetch { v, corr, req, deadline, seen } = w {
                let (v, corr, deadline, seen) = (*v, *corr, *deadline, *seen);
                if seen != self.version || now >= deadline {
                    let req = req.clone();
                    let (resp, bytes, any_err) = self.fetch_response(v, corr, &req);
                    if any_err || bytes >= (req.min_bytes.max(1) as usize) || now >= deadline || self.failed {
                        self.waiting.swap_remove(i);
                        self.done.insert(t, resp);
                        continue;
                    }
                    if let Some((_, Waiting::Fetch { seen, .. })) = self.waiting.get_mut(i) {
                        *seen = self.version;
                    }
                }
            }
            i += 1;
        }
        // Consumer groups: expired sessions, finished rebalances.
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let mut expired = false;
            if let Some(g) = self.groups.get_mut(&name) {
                let before = g.members.len();
                g.members.retain(|_, m| m.join.is_some() || now - m.last_seen <= m.session_ms);
                expired = g.members.len() != before;
                if expired && g.members.is_empty() {
                    g.state = GroupState::Empty;
                    g.generation += 1;
                    expired = false;
                }
            }
            if expired {
                self.begin_rebalance(&name, now);
            }
            self.complete_rebalance(&name, now);
        }
        if now - self.last_retention >= 1000 && !self.failed {
            self.last_retention = now;
            if self.log.enforce_retention(now).is_err() {
                self.failed = true;
            }
        }
    }

    /// The next time `poll` has something to do (absolute ms), if any.
    pub fn next_wake(&self, now: i64) -> i64 {
        let mut t = now + 1000;
        if self.log.needs_flush() {
            t = t.min(self.last_flush + self.cfg.flush_interval_ms);
        }
        for (_, w) in &self.waiting {
            match w {
                Waiting::Flush { .. } => t = now,
                Waiting::Fetch { deadline, .. } => t = t.min(*deadline),
            }
        }
        for g in self.groups.values() {
            if let GroupState::Preparing { deadline } = g.state {
                t = t.min(deadline);
            }
            for m in g.members.values() {
                t = t.min(m.last_seen + m.session_ms + 1);
            }
        }
        t.max(now)
    }
}

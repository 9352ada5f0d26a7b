//! The Kafka protocol subset: API keys, the versions served, and each
//! request's parser and response's writer for every version in range (all
//! non-flexible). Field lists follow Kafka's message schemas; the host tests
//! check them against the `kafka-protocol` crate.

use crate::wire::{Malformed, Reader, Writer};
use alloc::string::String;
use alloc::vec::Vec;

pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const LIST_OFFSETS: i16 = 2;
pub const METADATA: i16 = 3;
pub const OFFSET_COMMIT: i16 = 8;
pub const OFFSET_FETCH: i16 = 9;
pub const FIND_COORDINATOR: i16 = 10;
pub const JOIN_GROUP: i16 = 11;
pub const HEARTBEAT: i16 = 12;
pub const LEAVE_GROUP: i16 = 13;
pub const SYNC_GROUP: i16 = 14;
pub const API_VERSIONS: i16 = 18;
pub const CREATE_TOPICS: i16 = 19;

/// (api key, min version, max version) served.
pub const SUPPORTED: &[(i16, i16, i16)] = &[
    (PRODUCE, 3, 8),
    (FETCH, 4, 11),
    (LIST_OFFSETS, 1, 5),
    (METADATA, 0, 8),
    (OFFSET_COMMIT, 2, 7),
    (OFFSET_FETCH, 1, 5),
    (FIND_COORDINATOR, 0, 2),
    (JOIN_GROUP, 0, 5),
    (HEARTBEAT, 0, 3),
    (LEAVE_GROUP, 0, 3),
    (SYNC_GROUP, 0, 3),
    (API_VERSIONS, 0, 2),
    (CREATE_TOPICS, 0, 4),
];

/// Whether `(key, version)` is served.
pub fn supported(key: i16, version: i16) -> bool {
    SUPPORTED.iter().any(|&(k, lo, hi)| k == key && (lo..=hi).contains(&version))
}

/// Kafka error codes used here.
pub mod err {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const INVALID_RECORD: i16 = 87;
}

/// A request header (v1: key, version, correlation id, client id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: i16,
    pub version: i16,
    pub correlation: i32,
    pub client_id: Option<&'a str>,
}

/// Reads the header; the reader is left at the body.
pub fn header<'a>(r: &mut Reader<'a>) -> Result<Header<'a>, Malformed> {
    Ok(Header { key: r.i16()?, version: r.i16()?, correlation: r.i32()?, client_id: r.nstr()? })
}

// ---- ApiVersions ------------------------------------------------------

/// ApiVersions response: for an unsupported version the answer is v0 with
/// UNSUPPORTED_VERSION and the ranges, so the client retries lower.
pub fn write_api_versions(w: &mut Writer, version: i16, error: i16) {
    w.i16(error);
    w.array(SUPPORTED.len());
    for &(k, lo, hi) in SUPPORTED {
        w.i16(k);
        w.i16(lo);
        w.i16(hi);
    }
    if version >= 1 {
        w.i32(0);
    }
}

// ---- Metadata ---------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataReq {
    /// `None`: every topic.
    pub topics: Option<Vec<String>>,
    pub allow_auto_create: bool,
}

pub fn parse_metadata(r: &mut Reader, v: i16) -> Result<MetadataReq, Malformed> {
    let topics = match r.narray()? {
        None => None,
        Some(0) if v == 0 => None,
        Some(n) => {
            let mut t = Vec::new();
            for _ in 0..n {
                t.push(String::from(r.str()?));
            }
            Some(t)
        }
    };
    let allow_auto_create = if v >= 4 { r.bool()? } else { true };
    if v >= 8 {
        r.bool()?;
        r.bool()?;
    }
    Ok(MetadataReq { topics, allow_auto_create })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaTopic {
    pub error: i16,
    pub name: String,
    pub partitions: Vec<i16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResp {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub cluster_id: String,
    pub topics: Vec<MetaTopic>,
}

pub fn write_metadata(w: &mut Writer, v: i16, m: &MetadataResp) {
    if v >= 3 {
        w.i32(0);
    }
    w.array(1);
    w.i32(m.node_id);
    w.str(&m.host);
    w.i32(m.port);
    if v >= 1 {
        w.nstr(None);
    }
    if v >= 2 {
        w.nstr(Some(&m.cluster_id));
    }
    if v >= 1 {
        w.i32(m.node_id);
    }
    w.array(m.topics.len());
    for t in &m.topics {
        w.i16(t.error);
        w.str(&t.name);
        if v >= 1 {
            w.bool(false);
        }
        w.array(t.partitions.len());
        for (i, e) in t.partitions.iter().enumerate() {
            w.i16(*e);
            w.i32(i as i32);
            w.i32(m.node_id);
            if v >= 7 {
                w.i32(0);
            }
            w.array(1);
            w.i32(m.node_id);
            w.array(1);
            w.i32(m.node_id);
            if v >= 5 {
                w.array(0);
            }
        }
        if v >= 8 {
            w.i32(i32::MIN);
        }
    }
    if v >= 8 {
        w.i32(i32::MIN);
    }
}

// ---- Produce ----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePart<'a> {
    pub index: i32,
    pub records: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceReq<'a> {
    pub transactional_id: Option<&'a str>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<(&'a str, Vec<ProducePart<'a>>)>,
}

pub fn parse_produce<'a>(r: &mut Reader<'a>, _v: i16) -> Result<ProduceReq<'a>, Malformed> {
    let transactional_id = r.nstr()?;
    let acks = r.i16()?;
    let timeout_ms = r.i32()?;
    let topics = r.list(|r| {
        let name = r.str()?;
        let parts = r.list(|r| Ok(ProducePart { index: r.i32()?, records: r.nbytes()? }))?;
        Ok((name, parts))
    })?;
    Ok(ProduceReq { transactional_id, acks, timeout_ms, topics })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartResp {
    pub index: i32,
    pub error: i16,
    pub base_offset: i64,
    pub log_start_offset: i64,
}

pub fn write_produce(w: &mut Writer, v: i16, topics: &[(String, Vec<ProducePartResp>)]) {
    w.array(topics.len());
    for (name, parts) in topics {
        w.str(name);
        w.array(parts.len());
        for p in parts {
            w.i32(p.index);
            w.i16(p.error);
            w.i64(p.base_offset);
            w.i64(-1); // log_append_time_ms: CreateTime topics
            if v >= 5 {
                w.i64(p.log_start_offset);
            }
            if v >= 8 {
                w.array(0);
                w.nstr(None);
            }
        }
    }
    w.i32(0);
}

// ---- Fetch ------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPart {
    pub index: i32,
    pub offset: i64,
    pub max_bytes: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReq {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation_level: i8,
    pub session_id: i32,
    pub session_epoch: i32,
    pub topics: Vec<(String, Vec<FetchPart>)>,
}

pub fn parse_fetch(r: &mut Reader, v: i16) -> Result<FetchReq, Malformed> {
    r.i32()?; // replica id
    let max_wait_ms = r.i32()?;
    let min_bytes = r.i32()?;
    let max_bytes = r.i32()?;
    let isolation_level = r.i8()?;
    let (session_id, session_epoch) = if v >= 7 { (r.i32()?, r.i32()?) } else { (0, -1) };
    let topics = r.list(|r| {
        let name = String::from(r.str()?);
        let parts = r.list(|r| {
            let index = r.i32()?;
            if v >= 9 {
                r.i32()?;
            }
            let offset = r.i64()?;
            if v >= 5 {
                r.i64()?;
            }
            Ok(FetchPart { index, offset, max_bytes: r.i32()? })
        })?;
        Ok((name, parts))
    })?;
    if v >= 7 {
        r.list(|r| {
            r.str()?;
            r.list(|r| r.i32())
        })?;
    }
    if v >= 11 {
        r.str()?;
    }
    Ok(FetchReq { max_wait_ms, min_bytes, max_bytes, isolation_level, session_id, session_epoch, topics })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartResp {
    pub index: i32,
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Vec<u8>,
}

pub fn write_fetch(w: &mut Writer, v: i16, topics: &[(String, Vec<FetchPartResp>)]) {
    w.i32(0);
    if v >= 7 {
        w.i16(0);
        w.i32(0); // no fetch sessions: every fetch is a full one
    }
    w.array(topics.len());
    for (name, parts) in topics {
        w.str(name);
        w.array(parts.len());
        for p in parts {
            w.i32(p.index);
            w.i16(p.error);
            w.i64(p.high_watermark);
            w.i64(p.high_watermark); // last stable offset: no transactions
            if v >= 5 {
                w.i64(p.log_start_offset);
            }
            w.array(0); // aborted transactions
            if v >= 11 {
                w.i32(-1);
            }
            w.bytes(&p.records);
        }
    }
}

// ---- ListOffsets ------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsReq {
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

pub fn parse_list_offsets(r: &mut Reader, v: i16) -> Result<ListOffsetsReq, Malformed> {
    r.i32()?;
    if v >= 2 {
        r.i8()?;
    }
    let topics = r.list(|r| {
        let name = String::from(r.str()?);
        let parts = r.list(|r| {
            let p = r.i32()?;
            if v >= 4 {
                r.i32()?;
            }
            Ok((p, r.i64()?))
        })?;
        Ok((name, parts))
    })?;
    Ok(ListOffsetsReq { topics })
}

/// (partition, error, timestamp, offset)
pub type ListOffsetsPart = (i32, i16, i64, i64);

pub fn write_list_offsets(w: &mut Writer, v: i16, topics: &[(String, Vec<ListOffsetsPart>)]) {
    if v >= 2 {
        w.i32(0);
    }
    w.array(topics.len());
    for (name, parts) in topics {
        w.str(name);
        w.array(parts.len());
        for &(p, e, ts, off) in parts {
            w.i32(p);
            w.i16(e);
            w.i64(ts);
            w.i64(off);
            if v >= 4 {
                w.i32(0);
            }
        }
    }
}

// ---- CreateTopics -----------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: i32,
    pub replication: i16,
    pub assignments: usize,
    pub configs: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicsReq {
    pub topics: Vec<CreateTopic>,
    pub validate_only: bool,
}

pub fn parse_create_topics(r: &mut Reader, v: i16) -> Result<CreateTopicsReq, Malformed> {
    let topics = r.list(|r| {
        let name = String::from(r.str()?);
        let partitions = r.i32()?;
        let replication = r.i16()?;
        let assignments = r
            .list(|r| {
                r.i32()?;
                r.list(|r| r.i32())
            })?
            .len();
        let configs = r.list(|r| Ok((String::from(r.str()?), r.nstr()?.map(String::from))))?;
        Ok(CreateTopic { name, partitions, replication, assignments, configs })
    })?;
    r.i32()?;
    let validate_only = if v >= 1 { r.bool()? } else { false };
    Ok(CreateTopicsReq { topics, validate_only })
}

pub fn write_create_topics(w: &mut Writer, v: i16, topics: &[(String, i16, Option<String>)]) {
    if v >= 2 {
        w.i32(0);
    }
    w.array(topics.len());
    for (name, e, msg) in topics {
        w.str(name);
        w.i16(*e);
        if v >= 1 {
            w.nstr(msg.as_deref());
        }
    }
}

// ---- FindCoordinator --------------------------------------------------

pub fn parse_find_coordinator<'a>(r: &mut Reader<'a>, v: i16) -> Result<(&'a str, i8), Malformed> {
    let key = r.str()?;
    let kt = if v >= 1 { r.i8()? } else { 0 };
    Ok((key, kt))
}

pub fn write_find_coordinator(w: &mut Writer, v: i16, error: i16, node: i32, host: &str, port: i32) {
    if v >= 1 {
        w.i32(0);
    }
    w.i16(error);
    if v >= 1 {
        w.nstr(None);
    }
    w.i32(node);
    w.str(host);
    w.i32(port);
}

// ---- JoinGroup --------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReq {
    pub group: String,
    pub session_ms: i32,
    pub rebalance_ms: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Vec<u8>)>,
}

pub fn parse_join(r: &mut Reader, v: i16) -> Result<JoinReq, Malformed> {
    let group = String::from(r.str()?);
    let session_ms = r.i32()?;
    let rebalance_ms = if v >= 1 { r.i32()? } else { session_ms };
    let member_id = String::from(r.str()?);
    let instance_id = if v >= 5 { r.nstr()?.map(String::from) } else { None };
    let protocol_type = String::from(r.str()?);
    let protocols = r.list(|r| Ok((String::from(r.str()?), Vec::from(r.bytes()?))))?;
    Ok(JoinReq { group, session_ms, rebalance_ms, member_id, instance_id, protocol_type, protocols })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResp {
    pub error: i16,
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<(String, Vec<u8>)>,
}

pub fn write_join(w: &mut Writer, v: i16, j: &JoinResp) {
    if v >= 2 {
        w.i32(0);
    }
    w.i16(j.error);
    w.i32(j.generation);
    w.str(&j.protocol);
    w.str(&j.leader);
    w.str(&j.member_id);
    w.array(j.members.len());
    for (id, meta) in &j.members {
        w.str(id);
        if v >= 5 {
            w.nstr(None);
        }
        w.bytes(meta);
    }
}

// ---- SyncGroup / Heartbeat / LeaveGroup -------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReq {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub assignments: Vec<(String, Vec<u8>)>,
}

pub fn parse_sync(r: &mut Reader, v: i16) -> Result<SyncReq, Malformed> {
    let group = String::from(r.str()?);
    let generation = r.i32()?;
    let member_id = String::from(r.str()?);
    if v >= 3 {
        r.nstr()?;
    }
    let assignments = r.list(|r| Ok((String::from(r.str()?), Vec::from(r.bytes()?))))?;
    Ok(SyncReq { group, generation, member_id, assignments })
}

pub fn write_sync(w: &mut Writer, v: i16, error: i16, assignment: &[u8]) {
    if v >= 1 {
        w.i32(0);
    }
    w.i16(error);
    w.bytes(assignment);
}

/// (group, generation, member)
pub fn parse_heartbeat(r: &mut Reader, v: i16) -> Result<(String, i32, String), Malformed> {
    let g = String::from(r.str()?);
    let gen = r.i32()?;
    let m = String::from(r.str()?);
    if v >= 3 {
        r.nstr()?;
    }
    Ok((g, gen, m))
}

/// Writes a response that is only throttle time (v1+) and an error code.
pub fn write_error_only(w: &mut Writer, v: i16, error: i16) {
    if v >= 1 {
        w.i32(0);
    }
    w.i16(error);
}

/// (group, members leaving)
pub fn parse_leave(r: &mut Reader, v: i16) -> Result<(String, Vec<String>), Malformed> {
    let g = String::from(r.str()?);
    let members = if v >= 3 {
        r.list(|r| {
            let m = String::from(r.str()?);
            r.nstr()?;
            Ok(m)
        })?
    } else {
        alloc::vec![String::from(r.str()?)]
    };
    Ok((g, members))
}

pub fn write_leave(w: &mut Writer, v: i16, error: i16, members: &[(String, i16)]) {
    write_error_only(w, v, error);
    if v >= 3 {
        w.array(members.len());
        for (m, e) in members {
            w.str(m);
            w.nstr(None);
            w.i16(*e);
        }
    }
}

// ---- OffsetCommit / OffsetFetch ---------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReq {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    /// (topic, [(partition, offset, metadata)])
    pub topics: Vec<(String, Vec<CommitPart>)>,
}

/// (partition, offset, metadata)
pub type CommitPart = (i32, i64, Option<String>);

pub fn parse_offset_commit(r: &mut Reader, v: i16) -> Result<CommitReq, Malformed> {
    let group = String::from(r.str()?);
    let generation = r.i32()?;
    let member_id = String::from(r.str()?);
    if (2..=4).contains(&v) {
        r.i64()?;
    }
    if v >= 7 {
        r.nstr()?;
    }
    let topics = r.list(|r| {
        let name = String::from(r.str()?);
        let parts = r.list(|r| {
            let p = r.i32()?;
            let off = r.i64()?;
            if v >= 6 {
                r.i32()?;
            }
            Ok((p, off, r.nstr()?.map(String::from)))
        })?;
        Ok((name, parts))
    })?;
    Ok(CommitReq { group, generation, member_id, topics })
}

pub fn write_offset_commit(w: &mut Writer, v: i16, topics: &[(String, Vec<(i32, i16)>)]) {
    if v >= 3 {
        w.i32(0);
    }
    w.array(topics.len());
    for (name, parts) in topics {
        w.str(name);
        w.array(parts.len());
        for &(p, e) in parts {
            w.i32(p);
            w.i16(e);
        }
    }
}

/// (group, topics: `None` = all committed)
pub type OffsetFetchReq = (String, Option<Vec<(String, Vec<i32>)>>);

pub fn parse_offset_fetch(r: &mut Reader, _v: i16) -> Result<OffsetFetchReq, Malformed> {
    let group = String::from(r.str()?);
    let topics = match r.narray()? {
        None => None,
        Some(n) => {
            let mut t = Vec::new();
            for _ in 0..n {
                let name = String::from(r.str()?);
                t.push((name, r.list(|r| r.i32())?));
            }
            Some(t)
        }
    };
    Ok((group, topics))
}

/// (partition, offset, metadata, error)
pub type OffsetFetchPart = (i32, i64, Option<String>, i16);

pub fn write_offset_fetch(w: &mut Writer, v: i16, topics: &[(String, Vec<OffsetFetchPart>)], error: i16) {
    if v >= 3 {
        w.i32(0);
    }
    w.array(topics.len());
    for (name, parts) in topics {
        w.str(name);
        w.array(parts.len());
        for (p, off, meta, e) in parts {
            w.i32(*p);
            w.i64(*off);
            if v >= 5 {
                w.i32(-1);
            }
            w.nstr(meta.as_deref());
            w.i16(*e);
        }
    }
    if v >= 2 {
        w.i16(error);
    }
}

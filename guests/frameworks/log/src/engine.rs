//! The log engine: topics with partitions, each an ordered chain of
//! append-only segments on a raw block device.
//!
//! Disk layout (512-byte blocks):
//!
//! ```text
//! block 0            superblock: "HLOGSUP1", version, segment size, extents, format id, crc
//! blocks 8..         extents of `segment_blocks` blocks each; an extent is free or one segment:
//!   block 0          segment header: "HLOGSEG1", format id, seq, state, topic, partition, base offset, crc
//!   blocks 1..       frames, packed: len u32 | crc u32 | RecordBatch v2 as received (baseOffset assigned)
//! ```
//!
//! A frame's crc is CRC-32C over the segment's `seq` and the batch's first 21
//! bytes (the part outside the batch's own CRC, which covers the rest): a frame
//! left from an earlier life of the extent never verifies. Topic 0 is the
//! metadata log (topics created, consumer offsets committed), replayed at open.
//! A write is acknowledged only after `flush`; recovery keeps the longest chain
//! of frames that verify, zeroes the torn rest of each partition's last
//! segment, and drops segments that no longer follow on.

use crate::batch::{self, BatchInfo, BatchWriter};
use crate::crc32c::{crc32c, update};
use crate::dev::{self, BlockDevice, BLOCK};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

const SUPER_MAGIC: &[u8; 8] = b"HLOGSUP1";
const SEG_MAGIC: &[u8; 8] = b"HLOGSEG1";
const FIRST_EXTENT_LBA: u64 = 8;
const STATE_LIVE: u32 = 1;
const STATE_FREE: u32 = 2;
/// Frame header: len u32, crc u32.
pub const FRAME: usize = 8;
/// Data between two sparse index entries.
const INDEX_EVERY: u32 = 4096;
/// Buffered bytes of a tail before full blocks go to the device (a
/// segment's worth at the default size: few, large writes).
const WRITE_CHUNK: usize = 1 << 20;
/// Flushes `Log::flush_start` leaves in flight before it waits for the
/// oldest. With one, the appends after a flush wait for the one before it,
/// so a device write can only start once the appends before it are done
/// and the sync before that is: append, write and sync of consecutive
/// intervals do not all overlap. With three they do (a sync, the next
/// interval's write, the appends of the one after).
const MAX_FLUSHES_IN_FLIGHT: usize = 3;
/// Most topics a log holds.
pub const MAX_TOPICS: usize = 4096;
/// The metadata log's topic id.
const META: (u32, u32) = (0, 0);

/// What the log can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    /// The block device failed: the log must be reopened (recovery).
    Device(dev::Error),
    UnknownTopic,
    UnknownPartition,
    TopicExists,
    InvalidTopic(&'static str),
    /// The batch failed validation on arrival.
    Corrupt(batch::BatchError),
    /// The batch does not fit in a segment.
    TooLarge,
    /// No free extent left (retention frees them).
    DiskFull,
    OffsetOutOfRange,
    /// The device is too small or its segment size does not fit.
    BadGeometry,
}

impl From<dev::Error> for LogError {
    fn from(e: dev::Error) -> Self {
        LogError::Device(e)
    }
}

/// When appends become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every acknowledged append is on the medium (flush before ack; appends
    /// arriving together share one flush).
    Strict,
    /// Acknowledged once written; flushed within this many milliseconds.
    Interval(u32),
}

/// Per-topic settings (the manifest's or CreateTopics' configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    /// Bytes kept per partition before the oldest segment goes (-1: no limit).
    pub retention_bytes: i64,
    /// Age of a segment's newest record before it goes (-1: forever).
    pub retention_ms: i64,
    pub flush: FlushPolicy,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig { retention_bytes: -1, retention_ms: -1, flush: FlushPolicy::Strict }
    }
}

/// Engine geometry, used when a blank device is formatted.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    pub segment_bytes: u32,
    /// Distinguishes this format from stale data of an earlier one.
    pub format_id: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { segment_bytes: 1 << 20, format_id: 0x6b61_666b_615f_6c6f }
    }
}

/// A topic.
#[derive(Debug, Clone)]
pub struct Topic {
    pub id: u32,
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    offset: i64,
    pos: u32,
    /// Largest timestamp of the segment's batches before this entry.
    ts_before: i64,
}

#[derive(Debug)]
struct Segment {
    ext: u32,
    seq: u64,
    base: i64,
    next: i64,
    /// Bytes of frames in the data area.
    end: u32,
    max_ts: i64,
    index: Vec<IndexEntry>,
}

#[derive(Debug, Default)]
struct Tail {
    /// Data position of buf[0] (block aligned).
    start: u32,
    buf: Vec<u8>,
    dirty: bool,
}

#[derive(Debug, Default)]
struct Part {
    segs: Vec<Segment>,
    tail: Tail,
    /// The offset up to which everything is on the medium.
    durable: i64,
}

impl Part {
    fn next(&self) -> i64 {
        self.segs.last().map_or(0, |s| s.next)
    }
    fn start(&self) -> i64 {
        self.segs.first().map_or(0, |s| s.base)
    }
    fn bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.end as u64).sum()
    }
}

/// A partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// First offset still kept.
    pub log_start: i64,
    /// What consumers may read up to (exclusive).
    pub high_watermark: i64,
    /// The next offset appends get.
    pub log_end: i64,
}

/// A committed consumer offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub metadata: String,
}

/// What recovery found (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub formatted: bool,
    pub segments: u32,
    pub batches: u64,
    /// Partitions whose last segment ended in a torn or stale frame.
    pub torn_tails: u32,
    /// Segments dropped because they no longer followed on.
    pub dropped_segments: u32,
}

/// A flush started: the device's ticket, and the next offset of each
/// partition it makes durable.
type Started = (u64, Vec<((u32, u32), i64)>);

/// The log engine over a block device.
pub struct Log<D: BlockDevice> {
    dev: D,
    format_id: u64,
    seg_blocks: u32,
    extents: u32,
    free: Vec<u32>,
    next_seq: u64,
    topics: Vec<Topic>,
    parts: BTreeMap<(u32, u32), Part>,
    offsets: BTreeMap<(String, String, u32), Committed>,
    /// Appends not yet flushed.
    unflushed: bool,
    /// Flushes started (`flush_start`) and not yet waited for, oldest
    /// first (two at most): the device's ticket and the offsets each makes
    /// durable, by partition.
    in_flight: alloc::collections::VecDeque<Started>,
    pub report: RecoveryReport,
}

impl<D: BlockDevice> core::fmt::Debug for Log<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Log").field("extents", &self.extents).field("topics", &self.topics.len()).finish()
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn frame_crc(seq: u64, batch: &[u8]) -> u32 {
    update(crc32c(&seq.to_le_bytes()), &batch[..21])
}

/// The frame at `p` of a segment's data, if it verifies and holds `expect`.
fn parse_frame(d: &[u8], p: usize, seq: u64, expect: i64) -> Option<BatchInfo> {
    if p + FRAME + batch::HEADER > d.len() {
        return None;
    }
    let len = le32(d, p) as usize;
    let body = d.get(p + FRAME..(p + FRAME).checked_add(len)?)?;
    if len < batch::HEADER || le32(d, p + 4) != frame_crc(seq, body) {
        return None;
    }
    let info = batch::validate(body).ok()?;
    (info.base_offset == expect).then_some(info)
}

impl<D: BlockDevice> Log<D> {
    /// Opens the log on `dev`, formatting it if it holds no log, and
    /// recovers: the metadata log is replayed, every partition's chain of
    /// segments rebuilt, torn tails truncated.
    pub fn open(mut dev: D, cfg: LogConfig) -> Result<Self, LogError> {
        let mut sb = vec![0u8; BLOCK];
        dev.read(0, &mut sb)?;
        let valid = &sb[..8] == SUPER_MAGIC && le32(&sb, 32) == crc32c(&sb[..32]);
        let mut report = RecoveryReport::default();
        let (seg_blocks, extents, format_id) = if valid {
            (le32(&sb, 12), le32(&sb, 16), le64(&sb, 20))
        } else {
            let seg_blocks = cfg.segment_bytes / BLOCK as u32;
            if seg_blocks < 4 {
                return Err(LogError::BadGeometry);
            }
            let extents = (dev.sectors().saturating_sub(FIRST_EXTENT_LBA) / seg_blocks as u64).min(u32::MAX as u64) as u32;
            if extents < 2 {
                return Err(LogError::BadGeometry);
            }
            sb.fill(0);
            sb[..8].copy_from_slice(SUPER_MAGIC);
            sb[8..12].copy_from_slice(&1u32.to_le_bytes());
            sb[12..16].copy_from_slice(&seg_blocks.to_le_bytes());
            sb[16..20].copy_from_slice(&extents.to_le_bytes());
            sb[20..28].copy_from_slice(&cfg.format_id.to_le_bytes());
            let c = crc32c(&sb[..32]);
            sb[32..36].copy_from_slice(&c.to_le_bytes());
            dev.write(0, &sb)?;
            dev.flush()?;
            report.formatted = true;
            (seg_blocks, extents, cfg.format_id)
        };
        if seg_blocks < 4 || FIRST_EXTENT_LBA + extents as u64 * seg_blocks as u64 > dev.sectors() {
            return Err(LogError::BadGeometry);
        }
        let mut log = Log {
            dev,
            format_id,
            seg_blocks,
            extents,
            free: Vec::new(),
            next_seq: 1,
            topics: Vec::new(),
            parts: BTreeMap::new(),
            offsets: BTreeMap::new(),
            unflushed: false,
            in_flight: alloc::collections::VecDeque::new(),
            report,
        };
        log.recover()?;
        Ok(log)
    }

    /// Gives the device back (tests: crash images).
    pub fn into_device(self) -> D {
        self.dev
    }

    /// The device (benchmarks).
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The device, to arm a simulated power failure (tests).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    fn ext_lba(&self, ext: u32) -> u64 {
        FIRST_EXTENT_LBA + ext as u64 * self.seg_blocks as u64
    }

    /// Bytes of frames a segment holds.
    pub fn segment_capacity(&self) -> usize {
        (self.seg_blocks as usize - 1) * BLOCK
    }

    fn write_header(&mut self, ext: u32, seq: u64, state: u32, key: (u32, u32), base: i64) -> Result<(), LogError> {
        let mut h = vec![0u8; BLOCK];
        h[..8].copy_from_slice(SEG_MAGIC);
        h[8..16].copy_from_slice(&self.format_id.to_le_bytes());
        h[16..24].copy_from_slice(&seq.to_le_bytes());
        h[24..28].copy_from_slice(&state.to_le_bytes());
        h[28..32].copy_from_slice(&key.0.to_le_bytes());
        h[32..36].copy_from_slice(&key.1.to_le_bytes());
        h[36..44].copy_from_slice(&base.to_le_bytes());
        let c = crc32c(&h[..44]);
        h[44..48].copy_from_slice(&c.to_le_bytes());
        let lba = self.ext_lba(ext);
        self.dev.write(lba, &h)?;
        Ok(())
    }

    fn recover(&mut self) -> Result<(), LogError> {
        // Every extent's header: live segments by partition.
        // (base offset, seq, extent) of each live segment, by partition.
        type Found = BTreeMap<(u32, u32), Vec<(i64, u64, u32)>>;
        let mut found: Found = BTreeMap::new();
        let mut h = vec![0u8; BLOCK];
        let mut max_seq = 0u64;
        for ext in 0..self.extents {
            self.dev.read(self.ext_lba(ext), &mut h)?;
            let ok = &h[..8] == SEG_MAGIC && le64(&h, 8) == self.format_id && le32(&h, 44) == crc32c(&h[..44]);
            if !ok {
                self.free.push(ext);
                continue;
            }
            let seq = le64(&h, 16);
            max_seq = max_seq.max(seq);
            if le32(&h, 24) != STATE_LIVE {
                self.free.push(ext);
                continue;
            }
            let key = (le32(&h, 28), le32(&h, 32));
            found.entry(key).or_default().push((le64(&h, 36) as i64, seq, ext));
        }
        self.next_seq = max_seq + 1;
        // The metadata log first: it says which topics exist.
        let mut keys: Vec<(u32, u32)> = found.keys().copied().collect();
        keys.sort_by_key(|k| *k != META);
        let mut to_free = Vec::new();
        for key in keys {
            let mut segs = found.remove(&key).unwrap_or_default();
            if key != META && !self.topics.iter().any(|t| t.id == key.0 && key.1 < t.partitions) {
                to_free.extend(segs.iter().map(|s| s.2));
                continue;
            }
            segs.sort();
            let mut part = Part::default();
            let mut chain_broken = false;
            let mut tail_data = Vec::new();
            for (base, seq, ext) in segs {
                if chain_broken || (!part.segs.is_empty() && part.next() != base) {
                    chain_broken = true;
                    to_free.push(ext);
                    self.report.dropped_segments += 1;
                    continue;
                }
                let (seg, data) = self.scan(ext, seq, base, key == META)?;
                self.report.segments += 1;
                part.segs.push(seg);
                tail_data = data;
            }
            // The last segment: zero whatever follows its last good frame,
            // so no stale frame can ever follow on from a later append.
            if let Some(last) = part.segs.last() {
                let end = last.end as usize;
                if tail_data[end..].iter().any(|&b| b != 0) {
                    self.report.torn_tails += 1;
                    let start = end / BLOCK * BLOCK;
                    let mut zero = tail_data[start..].to_vec();
                    zero[end - start..].fill(0);
                    let lba = self.ext_lba(last.ext) + 1 + (start / BLOCK) as u64;
                    for (i, chunk) in zero.chunks(64 * 1024).enumerate() {
                        self.dev.write(lba + (i * 128) as u64, chunk)?;
                    }
                }
                part.tail = Tail { start: (end / BLOCK * BLOCK) as u32, buf: tail_data[end / BLOCK * BLOCK..end].to_vec(), dirty: false };
            }
            part.durable = part.next();
            self.parts.insert(key, part);
        }
        for ext in to_free {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.write_header(ext, seq, STATE_FREE, (0, 0), 0)?;
            self.free.push(ext);
        }
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        self.dev.flush()?;
        Ok(())
    }

    /// Reads a segment and walks its frames.
    fn scan(&mut self, ext: u32, seq: u64, base: i64, meta: bool) -> Result<(Segment, Vec<u8>), LogError> {
        let mut data = vec![0u8; self.segment_capacity()];
        self.dev.read(self.ext_lba(ext) + 1, &mut data)?;
        let mut seg = Segment { ext, seq, base, next: base, end: 0, max_ts: i64::MIN, index: Vec::new() };
        let mut p = 0usize;
        while let Some(info) = parse_frame(&data, p, seq, seg.next) {
            let len = FRAME + le32(&data, p) as usize;
            if meta {
                self.replay_meta(&data[p + FRAME..p + len]);
            }
            Self::note_batch(&mut seg, p as u32, &info);
            p += len;
            seg.end = p as u32;
            self.report.batches += 1;
        }
        Ok((seg, data))
    }

    fn note_batch(seg: &mut Segment, pos: u32, info: &BatchInfo) {
        let last = seg.index.last().map(|e| e.pos);
        if last.is_none_or(|l| pos - l >= INDEX_EVERY) {
            seg.index.push(IndexEntry { offset: info.base_offset, pos, ts_before: seg.max_ts });
        }
        seg.max_ts = seg.max_ts.max(info.max_timestamp);
        seg.next = info.next_offset();
    }

    fn replay_meta(&mut self, b: &[u8]) {
        for r in batch::decode(b).unwrap_or_default() {
            let (Some(k), Some(v)) = (r.key, r.value) else { continue };
            match k.first() {
                Some(1) => {
                    if let Some(t) = decode_topic(&v) {
                        if !self.topics.iter().any(|x| x.id == t.id) {
                            self.topics.push(t);
                        }
                    }
                }
                Some(2) => {
                    if let Some((g, t, p, c)) = decode_offset(&v) {
                        self.offsets.insert((g, t, p), c);
                    }
                }
                _ => {}
            }
        }
    }

    // ---- topics -------------------------------------------------------

    /// Every topic.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Creates a topic; durable when this returns.
    pub fn create_topic(&mut self, name: &str, partitions: u32, config: TopicConfig, now_ms: i64) -> Result<(), LogError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > 1024 {
            return Err(LogError::InvalidTopic("partitions must be 1..=1024"));
        }
        if self.topic(name).is_some() {
            return Err(LogError::TopicExists);
        }
        if self.topics.len() >= MAX_TOPICS {
            return Err(LogError::InvalidTopic("too many topics (4096)"));
        }
        let id = self.topics.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        let t = Topic { id, name: name.to_string(), partitions, config };
        let v = encode_topic(&t);
        self.append_meta(&[(&[1u8][..], &v[..])], now_ms)?;
        self.flush()?;
        self.topics.push(t);
        Ok(())
    }

    fn key(&self, topic: &str, part: u32) -> Result<(u32, u32), LogError> {
        let t = self.topic(topic).ok_or(LogError::UnknownTopic)?;
        if part >= t.partitions {
            return Err(LogError::UnknownPartition);
        }
        Ok((t.id, part))
    }

    // ---- appends ------------------------------------------------------

    /// Appends one RecordBatch v2 as received (CRC-32C checked, baseOffset
    /// assigned); returns its base offset. Durable after `flush`.
    pub fn append(&mut self, topic: &str, part: u32, batch: &[u8]) -> Result<i64, LogError> {
        let key = self.key(topic, part)?;
        batch::validate(batch).map_err(LogError::Corrupt)?;
        self.append_frame(key, batch)
    }

    /// `append` for a batch the caller has just validated (the broker checks
    /// every batch of a request before appending any): one CRC pass, not two.
    pub(crate) fn append_validated(&mut self, topic: &str, part: u32, batch: &[u8]) -> Result<i64, LogError> {
        let key = self.key(topic, part)?;
        self.append_frame(key, batch)
    }

    fn append_meta(&mut self, recs: &[(&[u8], &[u8])], now_ms: i64) -> Result<(), LogError> {
        let rs: Vec<batch::KeyValue> = recs.iter().map(|(k, v)| (Some(*k), Some(*v))).collect();
        let b = batch::encode(0, now_ms, &rs);
        self.append_frame(META, &b)?;
        Ok(())
    }

    fn append_frame(&mut self, key: (u32, u32), batch: &[u8]) -> Result<i64, LogError> {
        let at = self.open_frame(key, batch.len())?;
        let buf = &mut self.parts.get_mut(&key).ok_or(LogError::UnknownPartition)?.tail.buf;
        buf.extend_from_slice(batch);
        self.close_frame(key, at)
    }

    /// Appends a RecordBatch v2 built in place, in the partition's segment
    /// buffer: `build` pushes its records through the [`BatchWriter`]
    /// (`batch_bytes` bounds the batch, header included; a push past it is
    /// refused), each key and value written straight into the segment.
    /// Nothing is appended if it pushes none. Returns the base offset and
    /// the records appended; durable after `flush`.
    pub fn append_built(
        &mut self,
        topic: &str,
        part: u32,
        timestamp: i64,
        batch_bytes: usize,
        build: impl FnOnce(&mut BatchWriter<'_>),
    ) -> Result<Option<(i64, usize)>, LogError> {
        let key = self.key(topic, part)?;
        let at = self.open_frame(key, batch_bytes)?;
        let p = self.parts.get_mut(&key).ok_or(LogError::UnknownPartition)?;
        // baseOffset is assigned by `close_frame`, as for any batch.
        let mut w = BatchWriter::begin(&mut p.tail.buf, 0, timestamp, batch_bytes);
        build(&mut w);
        let n = w.records();
        if n == 0 {
            p.tail.buf.truncate(at);
            return Ok(None);
        }
        w.finish();
        Ok(Some((self.close_frame(key, at)?, n)))
    }

    /// Makes room for a frame of a batch of at most `max` bytes at the end
    /// of `key`'s last segment (a new segment if it would not fit) and
    /// writes the frame header's place: returns where the frame starts in
    /// the tail buffer. The batch follows; [`Log::close_frame`] ends it.
    fn open_frame(&mut self, key: (u32, u32), max: usize) -> Result<usize, LogError> {
        let need = FRAME.saturating_add(max);
        let cap = self.segment_capacity();
        if need > cap {
            return Err(LogError::TooLarge);
        }
        let roll = match self.parts.get(&key).and_then(|p| p.segs.last()) {
            None => true,
            Some(s) => s.end as usize + need > cap,
        };
        if roll {
            self.roll(key)?;
        }
        let buf = &mut self.parts.get_mut(&key).ok_or(LogError::UnknownPartition)?.tail.buf;
        let at = buf.len();
        buf.extend_from_slice(&[0; FRAME]);
        Ok(at)
    }

    /// Ends the frame [`Log::open_frame`] started at `at`, whose batch is
    /// now in the buffer after it: its baseOffset assigned, the frame's
    /// length and CRC, the segment's index. Returns the base offset.
    fn close_frame(&mut self, key: (u32, u32), at: usize) -> Result<i64, LogError> {
        let part = self.parts.get_mut(&key).ok_or(LogError::UnknownPartition)?;
        let seg = part.segs.last_mut().ok_or(LogError::UnknownPartition)?;
        let base = seg.next;
        let pos = seg.end;
        let buf = &mut part.tail.buf;
        let len = buf.len() - at - FRAME;
        buf[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        let body = &mut buf[at + FRAME..];
        batch::assign_offset(body, base);
        let c = frame_crc(seg.seq, body);
        buf[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
        let info = batch::info(&buf[at + FRAME..]);
        Self::note_batch(seg, pos, &info);
        seg.end += (FRAME + len) as u32;
        part.tail.dirty = true;
        self.unflushed = true;
        if part.tail.buf.len() >= WRITE_CHUNK {
            self.write_tail(key, false)?;
        }
        Ok(base)
    }

    /// Writes a partition's buffered tail: its full blocks, or everything
    /// (the last block padded) when `all`.
    fn write_tail(&mut self, key: (u32, u32), all: bool) -> Result<(), LogError> {
        let Some(part) = self.parts.get_mut(&key) else { return Ok(()) };
        let Some(seg) = part.segs.last() else { return Ok(()) };
        if !part.tail.dirty {
            return Ok(());
        }
        let lba = FIRST_EXTENT_LBA + seg.ext as u64 * self.seg_blocks as u64 + 1 + (part.tail.start as usize / BLOCK) as u64;
        let t = &mut part.tail;
        let len = t.buf.len();
        let full = len / BLOCK * BLOCK;
        // Blocks sent: the full ones, and with `all` the last one padded.
        let send = if all && full < len { full + BLOCK } else { full };
        if send == 0 {
            return Ok(());
        }
        // What stays in the tail (the partial block: written again later)
        // is set aside; the buffer itself goes to the device, which may
        // keep it (`write_owned`) rather than copy it.
        let mut rest = [0u8; BLOCK];
        rest[..len - full].copy_from_slice(&t.buf[full..]);
        t.buf.resize(send, 0);
        let r = self.dev.write_owned(lba, &mut t.buf);
        // On `Ok` the buffer is empty (a fresh one); on `Err` untouched.
        t.buf.truncate(if r.is_ok() { 0 } else { full });
        t.buf.extend_from_slice(&rest[..len - full]);
        r?;
        t.dirty = send < len;
        t.start += full as u32;
        Ok(())
    }

    /// Starts a new segment for `key` at its next offset.
    fn roll(&mut self, key: (u32, u32)) -> Result<(), LogError> {
        self.write_tail(key, true)?;
        let ext = self.free.pop().ok_or(LogError::DiskFull)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let base = self.parts.get(&key).map_or(0, |p| p.next());
        if let Err(e) = self.write_header(ext, seq, STATE_LIVE, key, base) {
            self.free.push(ext);
            return Err(e);
        }
        let part = self.parts.entry(key).or_default();
        part.segs.push(Segment { ext, seq, base, next: base, end: 0, max_ts: i64::MIN, index: Vec::new() });
        // The buffer is kept (cleared) with its allocation: a fresh one
        // would grow by doubling again, copying and faulting in up to a
        // write chunk's pages for every segment.
        let mut buf = core::mem::take(&mut part.tail.buf);
        buf.clear();
        part.tail = Tail { start: 0, buf, dirty: false };
        self.unflushed = true;
        Ok(())
    }

    /// Whether appends wait for a flush.
    pub fn needs_flush(&self) -> bool {
        self.unflushed || !self.in_flight.is_empty()
    }

    /// Makes every append so far durable (one device flush for all of them).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.flush_start()?;
        self.flush_wait()
    }

    /// Starts a flush of every append so far and returns without waiting
    /// for it: appends may go on meanwhile. The buffered tails are handed
    /// to the device and its flush started, then the oldest flushes are
    /// waited for until at most [`MAX_FLUSHES_IN_FLIGHT`] (3) are in flight:
    /// an append is durable and visible (high watermark) at the latest when
    /// the third flush after the one that covers it is started, or at
    /// [`Log::flush_wait`].
    pub fn flush_start(&mut self) -> Result<(), LogError> {
        if !self.unflushed {
            return Ok(());
        }
        let keys: Vec<(u32, u32)> = self.parts.keys().copied().collect();
        for k in &keys {
            self.write_tail(*k, true)?;
        }
        let ticket = self.dev.flush_start()?;
        self.in_flight.push_back((ticket, self.parts.iter().map(|(k, p)| (*k, p.next())).collect()));
        self.unflushed = false;
        while self.in_flight.len() > MAX_FLUSHES_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    /// Waits for every flush [`Log::flush_start`] started.
    pub fn flush_wait(&mut self) -> Result<(), LogError> {
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), LogError> {
        let Some((ticket, done)) = self.in_flight.pop_front() else { return Ok(()) };
        self.dev.flush_wait(ticket)?;
        for (k, next) in done {
            if let Some(p) = self.parts.get_mut(&k) {
                p.durable = p.durable.max(next);
            }
        }
        Ok(())
    }

    // ---- reads --------------------------------------------------------

    /// A partition's offsets.
    pub fn offsets(&self, topic: &str, part: u32) -> Result<Offsets, LogError> {
        let key = self.key(topic, part)?;
        Ok(self.parts.get(&key).map_or(Offsets { log_start: 0, high_watermark: 0, log_end: 0 }, |p| Offsets {
            log_start: p.start(),
            high_watermark: p.durable,
            log_end: p.next(),
        }))
    }

    /// Reads `len` bytes at data position `pos` of segment `si` of `key`.
    fn read_data(&mut self, key: (u32, u32), si: usize, pos: usize, len: usize) -> Result<Vec<u8>, LogError> {
        let part = &self.parts[&key];
        let seg = &part.segs[si];
        let last = si + 1 == part.segs.len();
        let dev_end = if last { (part.tail.start as usize).min(pos + len) } else { pos + len };
        let mut out = Vec::with_capacity(len);
        if pos < dev_end {
            let first = pos / BLOCK;
            let blocks = (dev_end - first * BLOCK).div_ceil(BLOCK);
            let lba = FIRST_EXTENT_LBA + seg.ext as u64 * self.seg_blocks as u64 + 1 + first as u64;
            let mut tmp = vec![0u8; blocks * BLOCK];
            self.dev.read(lba, &mut tmp)?;
            out.extend_from_slice(&tmp[pos - first * BLOCK..dev_end - first * BLOCK]);
        }
        if last && pos + len > dev_end {
            let part = &self.parts[&key];
            let from = pos.max(dev_end) - part.tail.start as usize;
            out.extend_from_slice(&part.tail.buf[from..from + (pos + len - pos.max(dev_end))]);
        }
        Ok(out)
    }

    /// Batches from the one holding `offset`, up to `max_bytes` (at least one
    /// whole batch), never past the high watermark: the bytes as stored.
    pub fn read(&mut self, topic: &str, part: u32, offset: i64, max_bytes: usize) -> Result<Vec<u8>, LogError> {
        let key = self.key(topic, part)?;
        let o = self.offsets(topic, part)?;
        if offset < o.log_start || offset > o.high_watermark {
            return Err(LogError::OffsetOutOfRange);
        }
        let mut out = Vec::new();
        if offset == o.high_watermark {
            return Ok(out);
        }
        let segs = &self.parts[&key].segs;
        let mut si = segs.partition_point(|s| s.base <= offset).saturating_sub(1);
        while si < segs.len() && segs[si].next <= offset {
            si += 1;
        }
        if si == segs.len() {
            return Ok(out);
        }
        let seg = &segs[si];
        let (seq, end) = (seg.seq, seg.end as usize);
        let ii = seg.index.partition_point(|e| e.offset <= offset).saturating_sub(1);
        let (mut pos, mut expect) = seg.index.get(ii).map_or((0, seg.base), |e| (e.pos as usize, e.offset));
        let hw = o.high_watermark;
        while pos < end && expect < hw {
            let want = (max_bytes.saturating_sub(out.len())).max(64 * 1024).min(end - pos);
            let win = self.read_data(key, si, pos, want)?;
            let mut p = 0usize;
            let mut progressed = false;
            while p + FRAME <= win.len() {
                let len = le32(&win, p) as usize;
                if p + FRAME + len > win.len() {
                    break;
                }
                let body = &win[p + FRAME..p + FRAME + len];
                let Some(info) = parse_frame(&win, p, seq, expect) else {
                    return Ok(out); // cannot happen for data we wrote; serve what verified
                };
                let _ = body;
                if info.base_offset >= hw {
                    return Ok(out);
                }
                if info.next_offset() > offset {
                    if !out.is_empty() && out.len() + len > max_bytes {
                        return Ok(out);
                    }
                    out.extend_from_slice(&win[p + FRAME..p + FRAME + len]);
                }
                expect = info.next_offset();
                p += FRAME + len;
                progressed = true;
            }
            if !progressed {
                // One batch larger than the window: read exactly it.
                let hdr = self.read_data(key, si, pos, FRAME)?;
                let len = le32(&hdr, 0) as usize;
                if pos + FRAME + len > end {
                    return Ok(out);
                }
                let whole = self.read_data(key, si, pos, FRAME + len)?;
                let Some(info) = parse_frame(&whole, 0, seq, expect) else { return Ok(out) };
                if info.base_offset >= hw {
                    return Ok(out);
                }
                if info.next_offset() > offset {
                    if !out.is_empty() && out.len() + len > max_bytes {
                        return Ok(out);
                    }
                    out.extend_from_slice(&whole[FRAME..]);
                }
                expect = info.next_offset();
                p = FRAME + len;
            }
            pos += p;
            if out.len() >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The first offset whose record timestamp is at least `ts`, with that
    /// timestamp; `None` when every record is older.
    pub fn offset_for_time(&mut self, topic: &str, part: u32, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let key = self.key(topic, part)?;
        let o = self.offsets(topic, part)?;
        let Some(p) = self.parts.get(&key) else { return Ok(None) };
        let Some(si) = p.segs.iter().position(|s| s.max_ts >= ts) else { return Ok(None) };
        let seg = &p.segs[si];
        let ii = seg.index.iter().rposition(|e| e.ts_before < ts).unwrap_or(0);
        let start = seg.index.get(ii).map_or(seg.base, |e| e.offset);
        let mut off = start;
        while off < o.high_watermark {
            let data = self.read(topic, part, off, 64 * 1024)?;
            if data.is_empty() {
                break;
            }
            for b in batch::split(&data).unwrap_or_default() {
                let info = batch::info(b);
                if info.max_timestamp >= ts {
                    if let Some(recs) = batch::decode(b) {
                        if let Some(r) = recs.iter().find(|r| r.timestamp >= ts) {
                            return Ok(Some((r.offset, r.timestamp)));
                        }
                    }
                    return Ok(Some((info.base_offset, info.max_timestamp)));
                }
                off = info.next_offset();
            }
        }
        Ok(None)
    }

    // ---- consumer offsets ---------------------------------------------

    /// Records committed offsets: durable after `flush`, visible at once.
    pub fn commit_offsets(&mut self, group: &str, commits: &[(&str, u32, i64, &str)], now_ms: i64) -> Result<(), LogError> {
        let vals: Vec<Vec<u8>> = commits.iter().map(|(t, p, o, m)| encode_offset(group, t, *p, *o, m)).collect();
        if vals.is_empty() {
            return Ok(());
        }
        let recs: Vec<(&[u8], &[u8])> = vals.iter().map(|v| (&[2u8][..], &v[..])).collect();
        self.append_meta(&recs, now_ms)?;
        for (t, p, o, m) in commits {
            self.offsets.insert((group.to_string(), t.to_string(), *p), Committed { offset: *o, metadata: m.to_string() });
        }
        self.maybe_compact_meta(now_ms)?;
        Ok(())
    }

    /// A group's committed offset for a partition.
    pub fn committed(&self, group: &str, topic: &str, part: u32) -> Option<&Committed> {
        self.offsets.get(&(group.to_string(), topic.to_string(), part))
    }

    /// When the metadata log spans three segments, its live state is written
    /// again into a fresh segment and the older ones freed.
    fn maybe_compact_meta(&mut self, now_ms: i64) -> Result<(), LogError> {
        if self.parts.get(&META).map_or(0, |p| p.segs.len()) < 3 {
            return Ok(());
        }
        let before = self.parts[&META].segs.len();
        self.roll(META)?;
        let topics: Vec<Vec<u8>> = self.topics.iter().map(encode_topic).collect();
        for v in &topics {
            self.append_meta(&[(&[1u8][..], &v[..])], now_ms)?;
        }
        let offs: Vec<Vec<u8>> = self.offsets.iter().map(|((g, t, p), c)| encode_offset(g, t, *p, c.offset, &c.metadata)).collect();
        for chunk in offs.chunks(64) {
            let recs: Vec<(&[u8], &[u8])> = chunk.iter().map(|v| (&[2u8][..], &v[..])).collect();
            self.append_meta(&recs, now_ms)?;
        }
        // The snapshot is durable before anything it replaces goes.
        self.flush()?;
        for _ in 0..before {
            self.delete_oldest(META)?;
        }
        Ok(())
    }

    /// Frees a partition's oldest segment, durably, before anything newer.
    fn delete_oldest(&mut self, key: (u32, u32)) -> Result<(), LogError> {
        let Some(part) = self.parts.get_mut(&key) else { return Ok(()) };
        if part.segs.len() < 2 {
            return Ok(());
        }
        let seg = part.segs.remove(0);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.write_header(seg.ext, seq, STATE_FREE, (0, 0), 0)?;
        self.dev.flush()?;
        self.free.push(seg.ext);
        Ok(())
    }

    /// Applies every topic's retention; returns the segments freed.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<u32, LogError> {
        let mut freed = 0;
        let topics: Vec<(u32, u32, TopicConfig)> = self.topics.iter().map(|t| (t.id, t.partitions, t.config)).collect();
        for (id, n, cfg) in topics {
            for p in 0..n {
                while let Some(part) = self.parts.get(&(id, p)) {
                    if part.segs.len() < 2 {
                        break;
                    }
                    let oldest = &part.segs[0];
                    let over = cfg.retention_bytes >= 0 && part.bytes() - oldest.end as u64 >= cfg.retention_bytes as u64;
                    let old = cfg.retention_ms >= 0 && oldest.max_ts != i64::MIN && oldest.max_ts < now_ms - cfg.retention_ms;
                    if !(over || old) {
                        break;
                    }
                    self.delete_oldest((id, p))?;
                    freed += 1;
                }
            }
        }
        Ok(freed)
    }

    /// Free extents left.
    pub fn free_segments(&self) -> usize {
        self.free.len()
    }

    /// Segments a partition spans.
    pub fn segment_count(&self, topic: &str, part: u32) -> usize {
        self.key(topic, part).ok().and_then(|k| self.parts.get(&k)).map_or(0, |p| p.segs.len())
    }
}

/// Whether `name` is a legal topic name.
pub fn topic_name_ok(name: &str) -> bool {
    validate_topic_name(name).is_ok()
}

fn validate_topic_name(name: &str) -> Result<(), LogError> {
    if name.is_empty() || name.len() > 249 {
        return Err(LogError::InvalidTopic("a topic name has 1 to 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(LogError::InvalidTopic("a topic name cannot be \".\" or \"..\""));
    }
    if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-') {
        return Err(LogError::InvalidTopic("a topic name uses only ASCII letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

fn encode_topic(t: &Topic) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&t.id.to_be_bytes());
    v.extend_from_slice(&t.partitions.to_be_bytes());
    v.extend_from_slice(&t.config.retention_bytes.to_be_bytes());
    v.extend_from_slice(&t.config.retention_ms.to_be_bytes());
    let f: i32 = match t.config.flush {
        FlushPolicy::Strict => -1,
        FlushPolicy::Interval(ms) => ms as i32,
    };
    v.extend_from_slice(&f.to_be_bytes());
    v.extend_from_slice(t.name.as_bytes());
    v
}

fn decode_topic(v: &[u8]) -> Option<Topic> {
    if v.len() < 28 {
        return None;
    }
    let u = |a: usize| u32::from_be_bytes([v[a], v[a + 1], v[a + 2], v[a + 3]]);
    let i = |a: usize| i64::from_be_bytes(v[a..a + 8].try_into().unwrap_or([0; 8]));
    let f = u(24) as i32;
    Some(Topic {
        id: u(0),
        partitions: u(4),
        config: TopicConfig {
            retention_bytes: i(8),
            retention_ms: i(16),
            flush: if f < 0 { FlushPolicy::Strict } else { FlushPolicy::Interval(f as u32) },
        },
        name: String::from_utf8(v[28..].to_vec()).ok()?,
    })
}

fn encode_offset(group: &str, topic: &str, part: u32, offset: i64, meta: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&part.to_be_bytes());
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(&(group.len() as u16).to_be_bytes());
    v.extend_from_slice(group.as_bytes());
    v.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    v.extend_from_slice(topic.as_bytes());
    v.extend_from_slice(meta.as_bytes());
    v
}

fn decode_offset(v: &[u8]) -> Option<(String, String, u32, Committed)> {
    let part = u32::from_be_bytes(v.get(0..4)?.try_into().ok()?);
    let offset = i64::from_be_bytes(v.get(4..12)?.try_into().ok()?);
    let gl = u16::from_be_bytes(v.get(12..14)?.try_into().ok()?) as usize;
    let g = core::str::from_utf8(v.get(14..14 + gl)?).ok()?;
    let at = 14 + gl;
    let tl = u16::from_be_bytes(v.get(at..at + 2)?.try_into().ok()?) as usize;
    let t = core::str::from_utf8(v.get(at + 2..at + 2 + tl)?).ok()?;
    let m = core::str::from_utf8(v.get(at + 2 + tl..)?).ok()?;
    Some((g.to_string(), t.to_string(), part, Committed { offset, metadata: m.to_string() }))
}

//! The durable store: the keyspace in memory, a write-ahead log of
//! records in group-committed, checksummed groups, and checkpoints, on a
//! [`BlockDevice`]. See `docs/oltp.md` for the format and the argument.
//!
//! Disk layout (512-byte sectors):
//!
//! ```text
//! 0, 1      superblock copies (written alternately; the valid one with the
//!           higher sequence number wins)
//! 2..8      unused
//! mirror    two slots, each the copy of the last group of its parity
//! ckpt[0]   checkpoint slot A  } a checkpoint goes to the slot the
//! ckpt[1]   checkpoint slot B  } current superblock does not name
//! log       the log ring: groups, each starting on a fresh sector
//! ```
//!
//! A write is *committed* ([`Store::commit`]): applied to memory and
//! appended to the pending group, with a ticket. [`Store::sync`] writes the
//! pending group at the log's tail and flushes the device; then every
//! ticket up to the group's last is durable. A sector holding an earlier
//! group is never written again until a checkpoint frees it, so a torn
//! write can only damage the group being written.
//!
//! Recovery ([`Store::open`]) loads the superblock's checkpoint, replays
//! groups from its head while each has the expected sequence number, a
//! valid header and payload checksum, and an epoch no older than the one
//! before it; it stops at the first that does not. It then looks through
//! the whole ring for a valid group that says (its `flushed_through`) that
//! the group recovery stopped at had been made durable: if one exists, the
//! log was damaged after the fact, acknowledged writes are missing, and
//! the store refuses to serve ([`Damage::whole`]). The newest group has
//! no later group to vouch for it, so every group is also written to a
//! mirror slot (same flush): a damaged last group is read from its mirror
//! copy (and the log copy repaired) instead of being lost. Checkpoint blocks carry
//! their own checksums; a damaged block makes its key range unreadable
//! ([`Damage::ranges`]) instead of serving what is left as if it were all.
//! Every open increments the epoch (written to the superblock before any
//! new group), so a stale group left behind a torn tail by an earlier run
//! can never be taken for a new one.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hallows_blockdev::{BlockDevice, Error as DevError, SECTOR};

use crate::codec::{u32_at, u64_at, Reader};
use hallows_blockdev::crc32c::crc32c;
use crate::db::{decode_entry, encode_entry, Keyspace, Op, Record};

const SB_MAGIC: &[u8; 8] = b"HLWSTOR1";
const SB_VERSION: u32 = 1;
const GROUP_MAGIC: u32 = 0x474F_4C48; // "HLOG"
const GROUP_HEADER: usize = 48;
const BLOCK_MAGIC: u32 = 0x504B_4348; // "HCKP"
const BLOCK_HEADER: usize = 48;
/// Checkpoint blocks start on 64 KiB boundaries of their slot.
const BLOCK_SECTORS: u64 = 128;
const BLOCK_BYTES: usize = BLOCK_SECTORS as usize * SECTOR;
/// Most payload bytes in one log group; a record may not exceed it.
pub const MAX_GROUP: usize = 256 << 10;
/// Sectors of one mirror slot (a whole group).
const MIRROR_SECTORS: u64 = (GROUP_HEADER + MAX_GROUP).div_ceil(SECTOR) as u64;
/// Largest record (one command or transaction, encoded).
pub const MAX_RECORD: usize = MAX_GROUP - 8;
/// Sectors read at once when scanning.
const SCAN_SECTORS: u64 = 512;
/// Smallest device: 4 MiB.
pub const MIN_SECTORS: u64 = 8192;
const NO_SLOT: u32 = u32::MAX;

/// When a commit is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Once its group is written and flushed.
    Strict,
    /// At once; the caller syncs at least every `window_us`.
    Group { window_us: u64 },
}

/// Store settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub durability: Durability,
    /// Most bytes the keyspace may hold; writes beyond are refused. Also
    /// bounded by what a checkpoint slot holds.
    pub max_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { durability: Durability::Strict, max_bytes: 64 << 20 }
    }
}

/// Errors of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The device failed; the store stops accepting writes.
    Device(DevError),
    /// The device is smaller than [`MIN_SECTORS`] or than its format says.
    TooSmall,
    /// The write would take the keyspace past its bound (Redis's OOM).
    Full,
    /// A record larger than [`MAX_RECORD`].
    TooLarge,
    /// Writes are refused: the store found damage, or a device write failed.
    ReadOnly(String),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Device(e) => write!(f, "device error: {e}"),
            Error::TooSmall => f.write_str("the device is too small for the store"),
            Error::Full => f.write_str("the store is full"),
            Error::TooLarge => f.write_str("the write is larger than a log group"),
            Error::ReadOnly(why) => write!(f, "writes refused: {why}"),
        }
    }
}

impl From<DevError> for Error {
    fn from(e: DevError) -> Self {
        Error::Device(e)
    }
}

/// A key range, bounds exclusive (`None`: unbounded).
pub type KeyRange = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A group read back: header, payload, and the sectors as written.
type GroupCopy = (GroupHeader, Vec<u8>, Vec<u8>);

/// Damage found at open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// The log lost acknowledged groups, or no superblock is valid: no
    /// key can be trusted; every read and write is refused.
    pub whole: Option<String>,
    /// Key ranges (exclusive bounds; `None` unbounded) a damaged
    /// checkpoint block held: their keys are refused.
    pub ranges: Vec<KeyRange>,
}

impl Damage {
    pub fn is_empty(&self) -> bool {
        self.whole.is_none() && self.ranges.is_empty()
    }
    /// Whether reading `key` must be refused.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.whole.is_some()
            || self.ranges.iter().any(|(lo, hi)| lo.as_deref().is_none_or(|l| key > l) && hi.as_deref().is_none_or(|h| key < h))
    }
}

/// What [`Store::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// A blank device was formatted.
    pub formatted: bool,
    /// Keys loaded from the checkpoint.
    pub checkpoint_keys: u64,
    /// Log groups and records replayed.
    pub groups: u64,
    pub records: u64,
    /// Log groups read from their mirror copy (the log copy was damaged).
    pub repaired: u64,
    /// Why replay stopped (a torn or damaged group, or the end of the log).
    pub stopped: String,
    pub damage: Damage,
    /// The epoch this run writes with.
    pub epoch: u32,
}

/// A commit's place in the durability order.
pub type Ticket = u64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Layout {
    mirror: u64,
    log_start: u64,
    log_sectors: u64,
    ckpt: [u64; 2],
    ckpt_sectors: u64,
}

impl Layout {
    fn for_device(sectors: u64) -> Layout {
        let first = 8 + 2 * MIRROR_SECTORS;
        let rest = sectors - first;
        let log = (rest / 4).max(2 * MIRROR_SECTORS);
        let ckpt_sectors = (rest - log) / 2 / BLOCK_SECTORS * BLOCK_SECTORS;
        let log_start = first + 2 * ckpt_sectors;
        Layout { mirror: 8, log_start, log_sectors: sectors - log_start, ckpt: [first, first + ckpt_sectors], ckpt_sectors }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Superblock {
    epoch: u32,
    seq: u64,
    layout: Layout,
    slot: u32,
    blocks: u32,
    ckpt_id: u64,
    /// The first log group after the checkpoint, and where it starts.
    ckpt_lsn: u64,
    log_head: u64,
    clock: u64,
}

impl Superblock {
    fn encode(&self) -> [u8; SECTOR] {
        let mut b = [0u8; SECTOR];
        b[0..8].copy_from_slice(SB_MAGIC);
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(8, &SB_VERSION.to_le_bytes());
        put(12, &self.epoch.to_le_bytes());
        put(16, &self.seq.to_le_bytes());
        put(24, &self.layout.log_start.to_le_bytes());
        put(32, &self.layout.log_sectors.to_le_bytes());
        put(40, &self.layout.ckpt[0].to_le_bytes());
        put(48, &self.layout.ckpt[1].to_le_bytes());
        put(56, &self.layout.ckpt_sectors.to_le_bytes());
        put(64, &self.slot.to_le_bytes());
        put(68, &self.blocks.to_le_bytes());
        put(72, &self.ckpt_id.to_le_bytes());
        put(80, &self.ckpt_lsn.to_le_bytes());
        put(88, &self.log_head.to_le_bytes());
        put(96, &self.clock.to_le_bytes());
        put(104, &self.layout.mirror.to_le_bytes());
        let crc = crc32c(&b[..SECTOR - 4]);
        b[SECTOR - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Superblock> {
        if &b[0..8] != SB_MAGIC || u32_at(b, 8) != SB_VERSION || crc32c(&b[..SECTOR - 4]) != u32_at(b, SECTOR - 4) {
            return None;
        }
        Some(Superblock {
            epoch: u32_at(b, 12),
            seq: u64_at(b, 16),
            layout: Layout { mirror: u64_at(b, 104), log_start: u64_at(b, 24), log_sectors: u64_at(b, 32), ckpt: [u64_at(b, 40), u64_at(b, 48)], ckpt_sectors: u64_at(b, 56) },
            slot: u32_at(b, 64),
            blocks: u32_at(b, 68),
            ckpt_id: u64_at(b, 72),
            ckpt_lsn: u64_at(b, 80),
            log_head: u64_at(b, 88),
            clock: u64_at(b, 96),
        })
    }

    /// The layout fits a device of `sectors` and is self-consistent.
    fn sane(&self, sectors: u64) -> bool {
        let l = &self.layout;
        let end = |a: u64, n: u64| a.checked_add(n);
        l.mirror >= 8
            && end(l.mirror, 2 * MIRROR_SECTORS).is_some_and(|e| e <= l.ckpt[0])
            && end(l.ckpt[0], l.ckpt_sectors).is_some_and(|e| e <= l.ckpt[1])
            && end(l.ckpt[1], l.ckpt_sectors).is_some_and(|e| e <= l.log_start)
            && end(l.log_start, l.log_sectors).is_some_and(|e| e <= sectors)
            && l.log_sectors >= 2 * MIRROR_SECTORS
            && self.log_head < l.log_sectors
            && (self.slot == NO_SLOT || self.slot < 2)
            && u64::from(self.blocks) * BLOCK_SECTORS <= l.ckpt_sectors.max(BLOCK_SECTORS)
    }
}

/// A parsed group header.
#[derive(Clone, Copy, Debug)]
struct GroupHeader {
    epoch: u32,
    seq: u64,
    len: usize,
    crc: u32,
    flushed_through: u64,
    clock: u64,
    records: u32,
}

impl GroupHeader {
    fn parse(b: &[u8]) -> Option<GroupHeader> {
        if b.len() < GROUP_HEADER || u32_at(b, 0) != GROUP_MAGIC || crc32c(&b[..44]) != u32_at(b, 44) {
            return None;
        }
        let len = u32_at(b, 16) as usize;
        (len <= MAX_GROUP).then_some(GroupHeader {
            epoch: u32_at(b, 4),
            seq: u64_at(b, 8),
            len,
            crc: u32_at(b, 20),
            flushed_through: u64_at(b, 24),
            clock: u64_at(b, 32),
            records: u32_at(b, 40),
        })
    }
    fn sectors(&self) -> u64 {
        (GROUP_HEADER + self.len).div_ceil(SECTOR) as u64
    }
}

/// A checkpoint being written in the background.
#[derive(Debug)]
struct CheckpointJob {
    slot: u32,
    id: u64,
    /// Encoded blocks, each a whole number of sectors.
    blocks: Vec<Vec<u8>>,
    next: usize,
    /// Sectors of the slot written so far.
    at: u64,
    lsn: u64,
    head: u64,
    used_before: u64,
    clock: u64,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub commits: u64,
    pub groups: u64,
    pub flushes: u64,
    pub bytes_logged: u64,
    pub checkpoints: u64,
}

/// The store. See the module docs.
#[derive(Debug)]
pub struct Store<D: BlockDevice> {
    dev: D,
    config: Config,
    sb: Superblock,
    ks: Keyspace,
    damage: Damage,
    /// Why writes are refused (a failed device write), if they are.
    broken: Option<String>,
    /// Next group's sequence number and where the tail is (ring sector).
    next_seq: u64,
    tail: u64,
    /// Ring sectors from the head to the tail.
    used: u64,
    /// Groups below this are durable.
    flushed_through: u64,
    pending: Vec<u8>,
    pending_records: u32,
    pending_clock: u64,
    /// The record being built by `stage`: its operations' encoding.
    staged: Vec<u8>,
    staged_ops: u32,
    staged_now: u64,
    /// Tickets: the last handed out, the last durable.
    ticket: Ticket,
    durable: Ticket,
    job: Option<CheckpointJob>,
    clock: u64,
    stats: Stats,
}

fn dev_io<T>(r: Result<T, DevError>) -> Result<T, Error> {
    r.map_err(Error::Device)
}

impl<D: BlockDevice> Store<D> {
    /// Opens the store on `dev`: formats a blank device, else recovers.
    pub fn open(mut dev: D, config: Config) -> Result<(Self, Recovery), Error> {
        let sectors = dev.sectors();
        if sectors < MIN_SECTORS {
            return Err(Error::TooSmall);
        }
        let mut buf = vec![0u8; 2 * SECTOR];
        dev_io(dev.read(0, &mut buf))?;
        let a = Superblock::decode(&buf[..SECTOR]).filter(|s| s.sane(sectors));
        let b = Superblock::decode(&buf[SECTOR..]).filter(|s| s.sane(sectors));
        let mut rec = Recovery::default();
        let sb = match (a, b) {
            (Some(a), Some(b)) => Some(if a.seq >= b.seq { a } else { b }),
            (a, b) => a.or(b),
        };
        let mut store = Store {
            dev,
            config,
            sb: Superblock::default(),
            ks: Keyspace::new(),
            damage: Damage::default(),
            broken: None,
            next_seq: 1,
            tail: 0,
            used: 0,
            flushed_through: 1,
            pending: Vec::new(),
            pending_records: 0,
            pending_clock: 0,
            staged: Vec::new(),
            staged_ops: 0,
            staged_now: 0,
            ticket: 0,
            durable: 0,
            job: None,
            clock: 0,
            stats: Stats::default(),
        };
        match sb {
            None if buf.iter().all(|&x| x == 0) => {
                store.sb = Superblock { epoch: 0, seq: 0, layout: Layout::for_device(sectors), slot: NO_SLOT, blocks: 0, ckpt_id: 0, ckpt_lsn: 1, log_head: 0, clock: 0 };
                rec.formatted = true;
                rec.stopped = "a blank device: formatted".to_owned();
            }
            None => {
                // Neither copy is valid and the device is not blank: keep
                // everything refused rather than format over the data.
                let why = "no valid superblock (both copies damaged)".to_owned();
                store.damage.whole = Some(why.clone());
                store.sb = Superblock { layout: Layout::for_device(sectors), slot: NO_SLOT, ..Default::default() };
                rec.stopped = why;
                rec.damage = store.damage.clone();
                return Ok((store, rec));
            }
            Some(sb) => {
                store.sb = sb;
                store.recover(&mut rec)?;
            }
        }
        // A new epoch, durable before any group of this run.
        store.sb.epoch += 1;
        store.write_superblock()?;
        rec.epoch = store.sb.epoch;
        rec.damage = store.damage.clone();
        Ok((store, rec))
    }

    fn write_superblock(&mut self) -> Result<(), Error> {
        self.sb.seq += 1;
        let b = self.sb.encode();
        let r = self.dev.write(self.sb.seq % 2, &b).and_then(|_| self.dev.flush());
        self.io(r)
    }

    /// A device result; a failure leaves the store refusing writes.
    fn io<T>(&mut self, r: Result<T, DevError>) -> Result<T, Error> {
        r.map_err(|e| {
            self.broken = Some(format!("a device write failed ({e}); restart the partition to recover"));
            Error::Device(e)
        })
    }

    fn recover(&mut self, rec: &mut Recovery) -> Result<(), Error> {
        let sb = self.sb;
        self.clock = sb.clock;
        if sb.slot != NO_SLOT {
            self.load_checkpoint(sb.layout.ckpt[sb.slot as usize], sb.blocks, sb.ckpt_id, rec)?;
        }
        // Replay.
        let ring = sb.layout.log_sectors;
        let mut pos = sb.log_head;
        let mut seq = sb.ckpt_lsn;
        let mut epoch = 0;
        let mut used = 0u64;
        rec.stopped = "the end of the log".to_owned();
        loop {
            let here = self.read_group(pos, seq, epoch)?;
            let (at, g, payload) = match here {
                Some(x) => (pos, x.0, x.1),
                None => match (pos != 0).then(|| self.read_group(0, seq, epoch)).transpose()?.flatten() {
                    Some(x) => (0, x.0, x.1),
                    None => {
                        // The log copy is torn or damaged: the mirror's?
                        let Some((g, payload, raw)) = self.read_mirror(seq, epoch)? else { break };
                        let at = if pos + g.sectors() > ring { 0 } else { pos };
                        // Repair the log copy before anything else is
                        // written: the mirror slot is reused two groups on.
                        let w = self.dev.write(sb.layout.log_start + at, &raw).and_then(|_| self.dev.flush());
                        self.io(w)?;
                        rec.repaired += 1;
                        (at, g, payload)
                    }
                },
            };
            let skipped = if at == 0 && pos != 0 { ring - pos } else { 0 };
            if used + skipped + g.sectors() >= ring {
                break;
            }
            let mut r = Reader::new(&payload);
            let mut records = Vec::new();
            for _ in 0..g.records {
                match r.bytes().and_then(Record::decode) {
                    Some(x) => records.push(x),
                    None => {
                        self.damage.whole = Some(format!("log group {seq} passed its checksum but does not decode"));
                        return Ok(());
                    }
                }
            }
            for x in &records {
                self.apply_replayed(x);
            }
            rec.groups += 1;
            rec.records += records.len() as u64;
            self.clock = self.clock.max(g.clock);
            used += skipped + g.sectors();
            pos = (at + g.sectors()) % ring;
            seq += 1;
            epoch = g.epoch;
        }
        if rec.groups > 0 || pos != sb.log_head {
            rec.stopped = format!("group {seq} (not written, torn, or damaged) after {} replayed", rec.groups);
        }
        self.next_seq = seq;
        self.flushed_through = seq;
        self.tail = pos;
        self.used = used;
        // Did a later group see group `seq` durable? Then it was lost.
        if let Some(by) = self.find_later_durable(seq)? {
            self.damage.whole = Some(format!(
                "log group {seq} is damaged, but group {by} was written after it had been made durable: acknowledged writes are missing"
            ));
        }
        Ok(())
    }

    fn apply_replayed(&mut self, rec: &Record) {
        if rec.ops.iter().any(|o| matches!(o, Op::Flush)) {
            self.damage.ranges.clear();
        }
        self.ks.apply(rec);
    }

    /// Group `seq` from its mirror slot, if it is there and valid: its
    /// header, payload, and the whole group as written.
    fn read_mirror(&mut self, seq: u64, min_epoch: u32) -> Result<Option<GroupCopy>, Error> {
        let start = self.sb.layout.mirror + (seq % 2) * MIRROR_SECTORS;
        let mut head = vec![0u8; SECTOR];
        dev_io(self.dev.read(start, &mut head))?;
        let Some(g) = GroupHeader::parse(&head) else { return Ok(None) };
        if g.seq != seq || g.epoch < min_epoch || g.epoch > self.sb.epoch || g.sectors() > MIRROR_SECTORS {
            return Ok(None);
        }
        let mut all = vec![0u8; g.sectors() as usize * SECTOR];
        dev_io(self.dev.read(start, &mut all))?;
        let payload = all[GROUP_HEADER..GROUP_HEADER + g.len].to_vec();
        if crc32c(&payload) != g.crc {
            return Ok(None);
        }
        Ok(Some((g, payload, all)))
    }

    /// The group at ring sector `pos` if it is the one replay expects.
    fn read_group(&mut self, pos: u64, seq: u64, min_epoch: u32) -> Result<Option<(GroupHeader, Vec<u8>)>, Error> {
        let l = self.sb.layout;
        let mut head = vec![0u8; SECTOR];
        dev_io(self.dev.read(l.log_start + pos, &mut head))?;
        let Some(g) = GroupHeader::parse(&head) else { return Ok(None) };
        if g.seq != seq || g.epoch < min_epoch || g.epoch > self.sb.epoch || pos + g.sectors() > l.log_sectors {
            return Ok(None);
        }
        let mut all = vec![0u8; g.sectors() as usize * SECTOR];
        dev_io(self.dev.read(l.log_start + pos, &mut all))?;
        let payload = &all[GROUP_HEADER..GROUP_HEADER + g.len];
        if crc32c(payload) != g.crc {
            return Ok(None);
        }
        Ok(Some((g, payload.to_vec())))
    }

    /// Calls `f` with every valid group header in the ring (stale ones
    /// included), in ring order, until it returns `true`.
    fn scan_ring(&mut self, mut f: impl FnMut(&GroupHeader) -> bool) -> Result<(), Error> {
        let l = self.sb.layout;
        let mut buf = vec![0u8; SCAN_SECTORS as usize * SECTOR];
        let mut s = 0;
        while s < l.log_sectors {
            let n = SCAN_SECTORS.min(l.log_sectors - s);
            let chunk = &mut buf[..n as usize * SECTOR];
            dev_io(self.dev.read(l.log_start + s, chunk))?;
            for sector in chunk.chunks(SECTOR) {
                if GroupHeader::parse(sector).is_some_and(|g| f(&g)) {
                    return Ok(());
                }
            }
            s += n;
        }
        Ok(())
    }

    /// A valid group anywhere in the ring, of this or an earlier epoch,
    /// numbered `seq` or later, written after group `seq` was durable.
    fn find_later_durable(&mut self, seq: u64) -> Result<Option<u64>, Error> {
        let epoch = self.sb.epoch;
        let mut found = None;
        self.scan_ring(|g| {
            if g.seq >= seq && g.flushed_through > seq && g.epoch <= epoch {
                found = Some(g.seq);
            }
            found.is_some()
        })?;
        Ok(found)
    }

    fn load_checkpoint(&mut self, start: u64, blocks: u32, id: u64, rec: &mut Recovery) -> Result<(), Error> {
        let slot_sectors = self.sb.layout.ckpt_sectors;
        let mut at = 0u64;
        let mut index = 0u32;
        // The last key of the last good block, and whether a damaged run
        // is open (its upper bound is the next good block's first key).
        let mut last_key: Option<Vec<u8>> = None;
        let mut open_damage = false;
        let mut head = vec![0u8; SECTOR];
        while index < blocks && at < slot_sectors {
            dev_io(self.dev.read(start + at, &mut head))?;
            let h = parse_block_header(&head).filter(|h| h.id == id && h.index >= index && at + h.sectors <= slot_sectors);
            let Some(h) = h else {
                // Not a block start: a damaged header (or the inside of a
                // big block after one). Look at the next boundary.
                open_damage = true;
                at += BLOCK_SECTORS;
                continue;
            };
            if h.index > index {
                open_damage = true;
            }
            let mut all = vec![0u8; h.sectors as usize * SECTOR];
            dev_io(self.dev.read(start + at, &mut all))?;
            let payload = all.get(BLOCK_HEADER..BLOCK_HEADER + h.len);
            let entries = payload.filter(|p| crc32c(p) == h.crc).and_then(|p| {
                let mut r = Reader::new(p);
                let mut out = Vec::with_capacity(h.entries as usize);
                for _ in 0..h.entries {
                    out.push(decode_entry(&mut r)?);
                }
                r.done().then_some(out)
            });
            match entries {
                Some(entries) => {
                    if open_damage {
                        self.damage.ranges.push((last_key.clone(), entries.first().map(|(k, _)| k.clone())));
                        open_damage = false;
                    }
                    if let Some((k, _)) = entries.last() {
                        last_key = Some(k.clone());
                    }
                    rec.checkpoint_keys += entries.len() as u64;
                    for (k, e) in entries {
                        self.ks.load(k, e);
                    }
                }
                None => open_damage = true,
            }
            index = h.index + 1;
            at += h.sectors;
        }
        if open_damage || index < blocks {
            self.damage.ranges.push((last_key, None));
        }
        Ok(())
    }

    // ---- serving ----

    /// The keyspace (reads). Check [`Store::damage`] before trusting a key.
    pub fn keyspace(&self) -> &Keyspace {
        &self.ks
    }

    pub fn damage(&self) -> &Damage {
        &self.damage
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The store clock (ms) recovered at open: the caller's clock starts
    /// here (time the store was down does not count).
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Why writes are refused, if they are.
    pub fn read_only(&self) -> Option<String> {
        if let Some(w) = &self.damage.whole {
            return Some(format!("store damaged: {w}"));
        }
        if !self.damage.ranges.is_empty() {
            return Some("store damaged: a checkpoint block is unreadable (FLUSHDB discards everything and clears it)".to_owned());
        }
        self.broken.clone()
    }

    /// Applies `ops` at time `now` as one record and appends it to the
    /// pending group. The returned ticket is durable once
    /// [`Store::durable`] reaches it. On a damaged store only a lone
    /// [`Op::Flush`] passes: it discards everything and starts afresh.
    pub fn commit(&mut self, now: u64, ops: Vec<Op>) -> Result<Ticket, Error> {
        if self.read_only().is_some() && self.broken.is_none() && ops.len() == 1 && matches!(ops[0], Op::Flush) && self.staged_ops == 0 {
            return self.reset(now);
        }
        self.stage(now, ops)?;
        self.seal()
    }

    /// Applies `ops` at time `now` and adds them to the record being
    /// built (a transaction: several commands, one record); [`Store::seal`]
    /// ends the record. A refused stage changes nothing.
    pub fn stage(&mut self, now: u64, ops: Vec<Op>) -> Result<(), Error> {
        if let Some(why) = self.read_only() {
            return Err(Error::ReadOnly(why));
        }
        let mark = self.staged.len();
        for op in &ops {
            op.encode(&mut self.staged);
        }
        if 12 + self.staged.len() > MAX_RECORD {
            self.staged.truncate(mark);
            return Err(Error::TooLarge);
        }
        // A write that can grow the keyspace past its bound is refused
        // (deletes and pops always pass).
        let grows = ops.iter().any(|o| matches!(o, Op::Set { .. } | Op::HSet { .. } | Op::Push { .. }));
        if grows && self.ks.bytes() + (self.staged.len() - mark) + 64 * ops.len() > self.config.max_bytes {
            self.staged.truncate(mark);
            return Err(Error::Full);
        }
        for op in &ops {
            if matches!(op, Op::Flush) {
                self.damage.ranges.clear();
            }
            self.ks.apply_op(now, op);
        }
        self.staged_ops += ops.len() as u32;
        self.staged_now = self.staged_now.max(now);
        Ok(())
    }

    /// Ends the record [`Store::stage`] built: appends it to the pending
    /// group and returns its ticket (the last ticket if it is empty).
    pub fn seal(&mut self) -> Result<Ticket, Error> {
        if self.staged_ops == 0 {
            return Ok(self.ticket);
        }
        let len = 12 + self.staged.len();
        if self.pending.len() + 4 + len > MAX_GROUP {
            // Written (and made durable) first; the new record then
            // starts the next group, unless a checkpoint (no room in the
            // log) took it in with the rest.
            self.sync()?;
            if self.staged_ops == 0 {
                return Ok(self.ticket);
            }
        }
        let now = self.staged_now;
        self.pending.extend_from_slice(&(len as u32).to_le_bytes());
        self.pending.extend_from_slice(&now.to_le_bytes());
        self.pending.extend_from_slice(&self.staged_ops.to_le_bytes());
        self.pending.extend_from_slice(&self.staged);
        self.staged.clear();
        self.staged_ops = 0;
        self.pending_records += 1;
        self.pending_clock = self.pending_clock.max(now);
        self.clock = self.clock.max(now);
        self.ticket += 1;
        self.stats.commits += 1;
        Ok(self.ticket)
    }

    /// The last ticket handed out, and the last durable one.
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }
    pub fn durable(&self) -> Ticket {
        self.durable
    }

    /// Whether commits wait for [`Store::sync`].
    pub fn has_pending(&self) -> bool {
        self.pending_records > 0
    }

    /// Records waiting for [`Store::sync`].
    pub fn pending_records(&self) -> u32 {
        self.pending_records
    }

    /// Writes the pending group and flushes: every ticket so far is then
    /// durable.
    pub fn sync(&mut self) -> Result<(), Error> {
        if self.pending_records == 0 {
            return Ok(());
        }
        if let Some(b) = &self.broken {
            return Err(Error::ReadOnly(b.clone()));
        }
        let sectors = (GROUP_HEADER + self.pending.len()).div_ceil(SECTOR) as u64;
        let ring = self.sb.layout.log_sectors;
        let (at, skip) = if self.tail + sectors > ring { (0, ring - self.tail) } else { (self.tail, 0) };
        if self.used + skip + sectors + 1 >= ring {
            // No room: a checkpoint now, which absorbs the pending group.
            return self.checkpoint_now();
        }
        let mut buf = vec![0u8; sectors as usize * SECTOR];
        buf[0..4].copy_from_slice(&GROUP_MAGIC.to_le_bytes());
        buf[4..8].copy_from_slice(&self.sb.epoch.to_le_bytes());
        buf[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        buf[16..20].copy_from_slice(&(self.pending.len() as u32).to_le_bytes());
        buf[20..24].copy_from_slice(&crc32c(&self.pending).to_le_bytes());
        buf[24..32].copy_from_slice(&self.flushed_through.to_le_bytes());
        buf[32..40].copy_from_slice(&self.pending_clock.to_le_bytes());
        buf[40..44].copy_from_slice(&self.pending_records.to_le_bytes());
        let hcrc = crc32c(&buf[..44]);
        buf[44..48].copy_from_slice(&hcrc.to_le_bytes());
        buf[GROUP_HEADER..GROUP_HEADER + self.pending.len()].copy_from_slice(&self.pending);
        let start = self.sb.layout.log_start + at;
        let mirror = self.sb.layout.mirror + (self.next_seq % 2) * MIRROR_SECTORS;
        let r = self.dev.write(start, &buf).and_then(|_| self.dev.write(mirror, &buf)).and_then(|_| self.dev.flush());
        self.io(r)?;
        self.stats.groups += 1;
        self.stats.flushes += 1;
        self.stats.bytes_logged += buf.len() as u64;
        self.used += skip + sectors;
        self.tail = (at + sectors) % ring;
        self.next_seq += 1;
        self.flushed_through = self.next_seq;
        self.pending.clear();
        self.pending_records = 0;
        self.durable = self.ticket;
        Ok(())
    }

    /// Log sectors in use and the ring's size.
    pub fn log_use(&self) -> (u64, u64) {
        (self.used, self.sb.layout.log_sectors)
    }

    /// Whether a background checkpoint should start or is running.
    pub fn wants_checkpoint(&self) -> bool {
        self.job.is_some() || (self.read_only().is_none() && self.used * 2 > self.sb.layout.log_sectors)
    }

    /// One step of background work (at most ~256 KiB written): starts a
    /// checkpoint when the log is half full, writes part of it, or
    /// finishes it. Returns whether more work remains.
    pub fn background_step(&mut self) -> Result<bool, Error> {
        if self.job.is_none() {
            if !self.wants_checkpoint() {
                return Ok(false);
            }
            self.sync()?;
            self.start_checkpoint()?;
        }
        self.checkpoint_step(512)
    }

    fn start_checkpoint(&mut self) -> Result<(), Error> {
        let slot = if self.sb.slot == 0 { 1 } else { 0 };
        let id = self.sb.ckpt_id + 1;
        let blocks = encode_checkpoint(&self.ks, id);
        let total: u64 = blocks.iter().map(|b| (b.len() / SECTOR) as u64).sum();
        if total > self.sb.layout.ckpt_sectors {
            self.broken = Some(format!("the dataset ({total} sectors) no longer fits a checkpoint slot"));
            return Err(Error::Full);
        }
        self.job = Some(CheckpointJob { slot, id, blocks, next: 0, at: 0, lsn: self.next_seq, head: self.tail, used_before: self.used, clock: self.clock });
        Ok(())
    }

    fn checkpoint_step(&mut self, max_sectors: u64) -> Result<bool, Error> {
        let Some(job) = self.job.as_mut() else { return Ok(false) };
        let base = self.sb.layout.ckpt[job.slot as usize];
        let mut done = 0;
        let mut result = Ok(());
        while job.next < job.blocks.len() && done < max_sectors {
            let b = &job.blocks[job.next];
            result = self.dev.write(base + job.at, b);
            if result.is_err() {
                break;
            }
            job.at += (b.len() / SECTOR) as u64;
            done += (b.len() / SECTOR) as u64;
            job.next += 1;
        }
        self.io(result)?;
        let job = self.job.as_ref().expect("job");
        if job.next < job.blocks.len() {
            return Ok(true);
        }
        let r = self.dev.flush();
        self.io(r)?;
        let job = self.job.take().expect("job");
        self.sb.slot = job.slot;
        self.sb.blocks = job.blocks.len() as u32;
        self.sb.ckpt_id = job.id;
        self.sb.ckpt_lsn = job.lsn;
        self.sb.log_head = job.head;
        self.sb.clock = job.clock;
        self.write_superblock()?;
        self.used -= job.used_before;
        self.stats.checkpoints += 1;
        Ok(false)
    }

    /// A whole checkpoint now, the pending group (and a record being
    /// staged) included (the log has no room for them): when it returns,
    /// every ticket is durable.
    fn checkpoint_now(&mut self) -> Result<(), Error> {
        // A background checkpoint under way describes an older state.
        self.job = None;
        self.start_checkpoint()?;
        if let Some(job) = self.job.as_mut() {
            // The pending group's records are in the checkpoint: the log
            // starts after them, at the tail.
            job.used_before = self.used;
        }
        while self.checkpoint_step(u64::MAX)? {}
        self.pending.clear();
        self.pending_records = 0;
        // A record being staged is in memory, so in the checkpoint too.
        if self.staged_ops > 0 {
            self.staged.clear();
            self.staged_ops = 0;
            self.ticket += 1;
            self.stats.commits += 1;
        }
        self.durable = self.ticket;
        Ok(())
    }

    /// Discards everything, damage included: an empty checkpoint, and a
    /// log that starts after every group the ring holds.
    fn reset(&mut self, now: u64) -> Result<Ticket, Error> {
        let max_seq = self.max_seq_in_ring()?;
        self.ks = Keyspace::new();
        self.damage = Damage::default();
        self.pending.clear();
        self.pending_records = 0;
        self.next_seq = self.next_seq.max(max_seq + 1);
        self.flushed_through = self.next_seq;
        self.clock = self.clock.max(now);
        self.checkpoint_now()?;
        self.ticket += 1;
        self.durable = self.ticket;
        Ok(self.ticket)
    }

    fn max_seq_in_ring(&mut self) -> Result<u64, Error> {
        let mut max = 0;
        self.scan_ring(|g| {
            max = max.max(g.seq);
            false
        })?;
        Ok(max)
    }

    /// The device (tests and shutdown).
    pub fn into_device(self) -> D {
        self.dev
    }
}

#[derive(Clone, Copy, Debug)]
struct BlockHeader {
    index: u32,
    id: u64,
    sectors: u64,
    entries: u32,
    len: usize,
    crc: u32,
}

fn parse_block_header(b: &[u8]) -> Option<BlockHeader> {
    if u32_at(b, 0) != BLOCK_MAGIC || crc32c(&b[..44]) != u32_at(b, 44) {
        return None;
    }
    let sectors = u64::from(u32_at(b, 16));
    let len = u32_at(b, 24) as usize;
    (sectors > 0 && sectors % BLOCK_SECTORS == 0 && BLOCK_HEADER + len <= sectors as usize * SECTOR).then_some(BlockHeader {
        index: u32_at(b, 4),
        id: u64_at(b, 8),
        sectors,
        entries: u32_at(b, 20),
        len,
        crc: u32_at(b, 28),
    })
}

/// The keyspace as checkpoint blocks: entries in key order, each block
/// about 64 KiB (a bigger entry makes a bigger block), padded to a
/// multiple of 64 KiB.
fn encode_checkpoint(ks: &Keyspace, id: u64) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut payload = Vec::new();
    let mut entries = 0u32;
    let seal = |payload: &mut Vec<u8>, entries: &mut u32, blocks: &mut Vec<Vec<u8>>| {
        let index = blocks.len() as u32;
        let sectors = ((BLOCK_HEADER + payload.len()).div_ceil(BLOCK_BYTES) * BLOCK_SECTORS as usize) as u64;
        let mut b = vec![0u8; sectors as usize * SECTOR];
        b[0..4].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&index.to_le_bytes());
        b[8..16].copy_from_slice(&id.to_le_bytes());
        b[16..20].copy_from_slice(&(sectors as u32).to_le_bytes());
        b[20..24].copy_from_slice(&entries.to_le_bytes());
        b[24..28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b[28..32].copy_from_slice(&crc32c(payload).to_le_bytes());
        let hcrc = crc32c(&b[..44]);
        b[44..48].copy_from_slice(&hcrc.to_le_bytes());
        b[BLOCK_HEADER..BLOCK_HEADER + payload.len()].copy_from_slice(payload);
        blocks.push(b);
        payload.clear();
        *entries = 0;
    };
    for (k, e) in ks.iter() {
        encode_entry(&mut payload, k, e);
        entries += 1;
        if BLOCK_HEADER + payload.len() >= BLOCK_BYTES - 256 {
            seal(&mut payload, &mut entries, &mut blocks);
        }
    }
    if entries > 0 {
        seal(&mut payload, &mut entries, &mut blocks);
    }
    blocks
}

//! Kafka RecordBatch v2: the validation a broker does on arrival, and an
//! encoder/decoder for uncompressed batches (our own internal records, the
//! in-system producers, and tests).
//!
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32
//! 16 magic i8 (2)   | 17 crc u32 (CRC-32C of bytes 21..)
//! 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 records i32 | 61 records...
//! ```

use crate::crc32c::crc32c;
use alloc::vec::Vec;

/// Bytes before the first record.
pub const HEADER: usize = 61;

/// Why a batch was refused (Kafka answers CORRUPT_MESSAGE or INVALID_RECORD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchError {
    /// Shorter than a header, or its batchLength disagrees with its size.
    Truncated,
    /// magic is not 2 (message sets v0/v1 are not stored).
    Magic(i8),
    /// The CRC-32C does not match.
    Crc,
    /// Negative counts or deltas.
    Invalid,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// The fields of a batch header the log uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub records: i32,
    pub attributes: i16,
}

impl BatchInfo {
    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64 + 1
    }
}

/// The header of `b` without checking its CRC (the caller checked the frame).
pub fn info(b: &[u8]) -> BatchInfo {
    BatchInfo {
        base_offset: be64(b, 0) as i64,
        last_offset_delta: be32(b, 23) as i32,
        base_timestamp: be64(b, 27) as i64,
        max_timestamp: be64(b, 35) as i64,
        records: be32(b, 57) as i32,
        attributes: u16::from_be_bytes([b[21], b[22]]) as i16,
    }
}

/// Length of the batch at the start of `b` (from its batchLength field), if
/// the header is there and the length is sane.
pub fn batch_len(b: &[u8]) -> Option<usize> {
    if b.len() < 12 {
        return None;
    }
    let l = be32(b, 8) as i32;
    if l < (HEADER - 12) as i32 {
        return None;
    }
    Some(l as usize + 12)
}

/// Checks a batch exactly as it arrived: length, magic, CRC-32C, counts.
pub fn validate(b: &[u8]) -> Result<BatchInfo, BatchError> {
    if b.len() < HEADER || batch_len(b) != Some(b.len()) {
        return Err(BatchError::Truncated);
    }
    let magic = b[16] as i8;
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    if be32(b, 17) != crc32c(&b[21..]) {
        return Err(BatchError::Crc);
    }
    let i = info(b);
    if i.records < 0 || i.last_offset_delta < 0 || (i.records > 0 && i.last_offset_delta < i.records - 1) {
        return Err(BatchError::Invalid);
    }
    Ok(i)
}

/// Splits a produce request's record set into its batches.
pub fn split(mut set: &[u8]) -> Result<Vec<&[u8]>, BatchError> {
    let mut out = Vec::new();
    while !set.is_empty() {
        let n = batch_len(set).ok_or(BatchError::Truncated)?;
        if n > set.len() {
            return Err(BatchError::Truncated);
        }
        out.push(&set[..n]);
        set = &set[n..];
    }
    Ok(out)
}

/// Sets the broker-assigned fields outside the CRC: baseOffset and the
/// partition leader epoch (0: one broker, one epoch).
pub fn assign_offset(b: &mut [u8], base: i64) {
    b[0..8].copy_from_slice(&base.to_be_bytes());
    b[12..16].copy_from_slice(&0i32.to_be_bytes());
}

/// Appends a zig-zag varint.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Reads a zig-zag varint at `*at`.
pub fn get_varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        z |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// One record of an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A record to encode: (key, value), either null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Encodes an uncompressed RecordBatch v2 (producer id -1) holding `records`
/// as (key, value) pairs, all stamped `timestamp`.
pub fn encode(base_offset: i64, timestamp: i64, records: &[KeyValue]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + records.len() * 16);
    let mut w = BatchWriter::begin(&mut b, base_offset, timestamp, usize::MAX);
    for (k, v) in records {
        w.push(k.map(<[u8]>::len), v.map(<[u8]>::len), |kd, vd| {
            kd.copy_from_slice(k.unwrap_or_default());
            vd.copy_from_slice(v.unwrap_or_default());
        });
    }
    w.finish();
    b
}

/// Bytes of a zig-zag varint.
fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

/// Builds an uncompressed RecordBatch v2 (producer id -1, every record
/// stamped with the batch's timestamp) at the end of a buffer, a record at
/// a time, each key and value written by the caller straight into its place
/// in the batch: the log builds the batches of in-system producers this way
/// in the segment's own buffer.
#[derive(Debug)]
pub struct BatchWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    records: i32,
    max_bytes: usize,
}

impl<'a> BatchWriter<'a> {
    /// Starts a batch at the end of `buf` that will hold at most
    /// `max_bytes` (header included).
    pub fn begin(buf: &'a mut Vec<u8>, base_offset: i64, timestamp: i64, max_bytes: usize) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&base_offset.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes()); // batchLength, at finish
        buf.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
        buf.push(2);
        buf.extend_from_slice(&0u32.to_be_bytes()); // crc, at finish
        buf.extend_from_slice(&0i16.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta, at finish
        buf.extend_from_slice(&timestamp.to_be_bytes());
        buf.extend_from_slice(&timestamp.to_be_bytes());
        buf.extend_from_slice(&(-1i64).to_be_bytes());
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        buf.extend_from_slice(&(-1i32).to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes()); // records, at finish
        BatchWriter { buf, start, records: 0, max_bytes: max_bytes.max(HEADER) }
    }

    /// Records pushed so far.
    pub fn records(&self) -> usize {
        self.records as usize
    }

    /// Bytes of the batch so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends a record whose key and value (`None`: null) have these
    /// lengths; `fill` writes their bytes in place (the slices are zeroed,
    /// a null's is empty). `false`, with nothing written, if the record
    /// would take the batch past its `max_bytes`.
    pub fn push(&mut self, key_len: Option<usize>, value_len: Option<usize>, fill: impl FnOnce(&mut [u8], &mut [u8])) -> bool {
        let (kl, vl) = (key_len.map_or(-1, |n| n as i64), value_len.map_or(-1, |n| n as i64));
        let (kn, vn) = (key_len.unwrap_or(0), value_len.unwrap_or(0));
        let delta = self.records as i64;
        let body = 1 + 1 + varint_len(delta) + varint_len(kl) + kn + varint_len(vl) + vn + 1;
        if self.len() + varint_len(body as i64) + body > self.max_bytes || self.records == i32::MAX {
            return false;
        }
        let b = &mut *self.buf;
        put_varint(b, body as i64);
        b.push(0); // attributes
        put_varint(b, 0); // timestamp delta
        put_varint(b, delta);
        put_varint(b, kl);
        let k0 = b.len();
        b.resize(k0 + kn, 0);
        put_varint(b, vl);
        let v0 = b.len();
        b.resize(v0 + vn, 0);
        b.push(0); // headers
        let (head, tail) = b.split_at_mut(v0);
        fill(&mut head[k0..k0 + kn], &mut tail[..vn]);
        self.records += 1;
        true
    }

    /// Ends the batch: its counts, length and CRC-32C. Returns its length.
    pub fn finish(self) -> usize {
        let b = &mut self.buf[self.start..];
        let len = b.len();
        b[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
        b[23..27].copy_from_slice(&(self.records - 1).max(0).to_be_bytes());
        b[57..61].copy_from_slice(&self.records.to_be_bytes());
        let crc = crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        len
    }
}

fn get_bytes(b: &[u8], at: &mut usize) -> Option<Option<Vec<u8>>> {
    let n = get_varint(b, at)?;
    if n < 0 {
        return Some(None);
    }
    let n = usize::try_from(n).ok()?;
    let end = at.checked_add(n)?;
    let v = b.get(*at..end)?.to_vec();
    *at = end;
    Some(Some(v))
}

/// Decodes the records of one uncompressed batch (`None` if compressed or malformed).
pub fn decode(b: &[u8]) -> Option<Vec<Record>> {
    let i = validate(b).ok()?;
    if i.attributes & 0x7 != 0 {
        return None;
    }
    let mut at = HEADER;
    let mut out = Vec::new();
    for _ in 0..i.records {
        let len = usize::try_from(get_varint(b, &mut at)?).ok()?;
        let end = at.checked_add(len)?;
        let r = b.get(at..end)?;
        let mut p = 1;
        let ts = get_varint(r, &mut p)?;
        let od = get_varint(r, &mut p)?;
        let key = get_bytes(r, &mut p)?;
        let value = get_bytes(r, &mut p)?;
        let nh = get_varint(r, &mut p)?;
        let mut headers = Vec::new();
        for _ in 0..nh.max(0) {
            let hk = get_bytes(r, &mut p)?.unwrap_or_default();
            let hv = get_bytes(r, &mut p)?;
            headers.push((hk, hv));
        }
        out.push(Record { offset: i.base_offset + od, timestamp: i.base_timestamp + ts, key, value, headers });
        at = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_crc() {
        let b = encode(7, 1000, &[(Some(b"k"), Some(b"v1")), (None, Some(b"v2")), (None, None)]);
        let i = validate(&b).unwrap();
        assert_eq!((i.base_offset, i.next_offset(), i.records), (7, 10, 3));
        let r = decode(&b).unwrap();
        assert_eq!(r[1].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(r[2].offset, 9);
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(validate(&bad), Err(BatchError::Crc));
        let mut moved = b.clone();
        assign_offset(&mut moved, 1 << 40);
        assert_eq!(validate(&moved).unwrap().base_offset, 1 << 40);
        assert_eq!(validate(&b[..b.len() - 1]), Err(BatchError::Truncated));
    }

    #[test]
    fn varints() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, i32::MAX as i64, i64::MIN, i64::MAX] {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            let mut at = 0;
            assert_eq!(get_varint(&o, &mut at), Some(v));
            assert_eq!(at, o.len());
        }
        let mut at = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut at), None);
    }
}

//! The store partition's channel front (docs/oltp.md, "Channel front"):
//! the messages of `kv.pt` and what both ends need to speak them.
//!
//! * [`msg`]: the message types, generated from `kv.pt` (the store's spec
//!   and every client's import the same library, so their layout hashes
//!   agree).
//! * request builders ([`get`], [`put`], [`delete`], [`scan`], [`txn_op`],
//!   [`shutdown`]) that refuse keys and values longer than the message
//!   carries, and [`raw_len`] for a receiver that must not trust a length.
//! * with the `rt` feature, [`client`]: the async client other partitions
//!   use (`hallows_kv::client::connect(&boot)`): typed get/put/delete/
//!   scan/txn with timeouts, `ServerRestarted` when the store partition
//!   restarts under a pending request.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "rt")]
extern crate alloc;

#[cfg(feature = "rt")]
pub mod client;

/// Generated from `kv.pt` by the build script.
#[allow(dead_code, unused, clippy::all)]
pub mod msg {
    include!(concat!(env!("OUT_DIR"), "/kv.rs"));
}

pub use msg::{BoundedBytes1024, BoundedBytes128, KvError, KvOp, KvReply, KvRequest, KvStatus};

/// The channel the client sends requests on (store: receiver).
pub const REQUESTS: &str = "kv-requests";
/// The channel the store replies on (client: receiver).
pub const REPLIES: &str = "kv-replies";

/// `Scan`: start after `key` instead of at it.
pub const SCAN_AFTER: u8 = 1;
/// `TxnPut`/`TxnDelete`: the transaction's last operation.
pub const TXN_LAST: u8 = 2;
/// Longest key a message carries.
pub const MAX_KEY: usize = BoundedBytes128::CAPACITY;
/// Longest value a message carries.
pub const MAX_VALUE: usize = BoundedBytes1024::CAPACITY;
/// Most entries in one scan page (a `limit` of 0 asks for [`DEFAULT_SCAN`]).
pub const MAX_SCAN: u16 = 256;
pub const DEFAULT_SCAN: u16 = 64;
/// Most operations in one transaction.
pub const MAX_TXN_OPS: usize = 64;

/// The length field of a bounded-bytes field as the sender wrote it
/// (`as_bytes` clamps it to the capacity; a receiver that validates
/// compares this with the capacity instead).
pub fn raw_len<F: zerocopy::IntoBytes + zerocopy::Immutable>(field: &F) -> usize {
    let b = zerocopy::IntoBytes::as_bytes(field);
    u16::from_ne_bytes([b[0], b[1]]) as usize
}

/// A request of `op` with `key` and `value`, or `None` when either is
/// longer than the message carries.
pub fn request(id: u64, op: KvOp, flags: u8, limit: u16, key: &[u8], value: &[u8]) -> Option<KvRequest> {
    Some(KvRequest::new(id, op, flags, limit, BoundedBytes128::from_bytes(key)?, BoundedBytes1024::from_bytes(value)?))
}

pub fn get(id: u64, key: &[u8]) -> Option<KvRequest> {
    request(id, KvOp::Get, 0, 0, key, &[])
}

pub fn put(id: u64, key: &[u8], value: &[u8]) -> Option<KvRequest> {
    request(id, KvOp::Put, 0, 0, key, value)
}

pub fn delete(id: u64, key: &[u8]) -> Option<KvRequest> {
    request(id, KvOp::Delete, 0, 0, key, &[])
}

/// Up to `limit` keys from `from` (after it when `after`).
pub fn scan(id: u64, from: &[u8], after: bool, limit: u16) -> Option<KvRequest> {
    request(id, KvOp::Scan, if after { SCAN_AFTER } else { 0 }, limit, from, &[])
}

/// Operation `index` (0, 1, ...) of transaction `id`: a put
/// (`Some(value)`) or a delete; `last` on the final one.
pub fn txn_op(id: u64, index: u16, key: &[u8], value: Option<&[u8]>, last: bool) -> Option<KvRequest> {
    let flags = if last { TXN_LAST } else { 0 };
    match value {
        Some(v) => request(id, KvOp::TxnPut, flags, index, key, v),
        None => request(id, KvOp::TxnDelete, flags, index, key, &[]),
    }
}

pub fn shutdown(id: u64) -> KvRequest {
    KvRequest::new(id, KvOp::Shutdown, 0, 0, BoundedBytes128::empty(), BoundedBytes1024::empty())
}

/// A reply (the store's side).
pub fn reply(id: u64, status: KvStatus, error: KvError, count: u32, key: &[u8], value: &[u8]) -> KvReply {
    let key = &key[..key.len().min(MAX_KEY)];
    let value = &value[..value.len().min(MAX_VALUE)];
    KvReply::new(
        id,
        status,
        error,
        msg::Bool8::FALSE,
        count,
        BoundedBytes128::from_bytes(key).unwrap_or_default(),
        BoundedBytes1024::from_bytes(value).unwrap_or_default(),
    )
}

/// Where a message's bounded fields lie: (offset of the length field,
/// capacity), in order. Everything before, between and after them is
/// fixed-size and always copied.
type Bounded = [(usize, usize); 2];
const REQUEST_FIELDS: Bounded = [
    (core::mem::offset_of!(KvRequest, key), MAX_KEY),
    (core::mem::offset_of!(KvRequest, value), MAX_VALUE),
];
const REPLY_FIELDS: Bounded = [
    (core::mem::offset_of!(KvReply, key), MAX_KEY),
    (core::mem::offset_of!(KvReply, value), MAX_VALUE),
];
const _: () = assert!(REQUEST_FIELDS[0].0 + 2 + MAX_KEY == REQUEST_FIELDS[1].0);
const _: () = assert!(REPLY_FIELDS[0].0 + 2 + MAX_KEY == REPLY_FIELDS[1].0);
const _: () = assert!(REQUEST_FIELDS[1].0 + 2 + MAX_VALUE <= core::mem::size_of::<KvRequest>());
const _: () = assert!(REPLY_FIELDS[1].0 + 2 + MAX_VALUE <= core::mem::size_of::<KvReply>());

/// The runs of `len`-byte message bytes a bounded-field message uses,
/// visited in order: the fixed bytes up to and including each bounded
/// field's length, then as many of its bytes as that length says (at most
/// the capacity; the length is read once, from the bytes `run` has just
/// copied), then the fixed bytes after the last field. `run(at, end)`
/// copies `at..end` and says whether it could.
fn used_runs(b: &mut [u8], fields: &Bounded, mut run: impl FnMut(&mut [u8], usize, usize) -> bool) -> bool {
    let mut at = 0;
    for &(off, cap) in fields {
        if !run(b, at, off + 2) {
            return false;
        }
        let n = (u16::from_ne_bytes([b[off], b[off + 1]]) as usize).min(cap);
        if !run(b, off + 2, off + 2 + n) {
            return false;
        }
        at = off + 2 + cap;
    }
    let end = b.len();
    at == end || run(b, at, end)
}

/// Reads a request out of a ring slot into `into`, copying only the bytes
/// it uses: `copy(at, dst)` copies the message's bytes from `at` into
/// `dst` (`hallows_ring::Slot::copy_to`) and says whether it could. Each
/// length field is read once (a hostile sender may change the slot under
/// us) and bounds the bytes copied by the field's capacity; the length
/// itself is kept as sent, so [`raw_len`] still shows one above the
/// capacity to a validating receiver. Bytes past a field's length keep
/// what `into` held before (`as_bytes` never shows them). `false` if a
/// copy failed (`into` then holds a mix: do not use it).
pub fn read_request(into: &mut KvRequest, copy: impl FnMut(usize, &mut [u8]) -> bool) -> bool {
    read_used(zerocopy::IntoBytes::as_mut_bytes(into), &REQUEST_FIELDS, copy)
}

/// [`read_request`] for a reply.
pub fn read_reply(into: &mut KvReply, copy: impl FnMut(usize, &mut [u8]) -> bool) -> bool {
    read_used(zerocopy::IntoBytes::as_mut_bytes(into), &REPLY_FIELDS, copy)
}

fn read_used(b: &mut [u8], fields: &Bounded, mut copy: impl FnMut(usize, &mut [u8]) -> bool) -> bool {
    used_runs(b, fields, |b, at, end| copy(at, &mut b[at..end]))
}

/// Copies the bytes of `src` that it uses into `dst` (a reserved ring
/// slot): the fixed fields, each bounded field's length and that many of
/// its bytes (at most the capacity). The rest of `dst` keeps what the
/// slot held (any bytes are valid there; a reader's `as_bytes` stops at
/// the length).
pub fn write_request(src: &KvRequest, dst: &mut KvRequest) {
    write_used(zerocopy::IntoBytes::as_bytes(src), zerocopy::IntoBytes::as_mut_bytes(dst), &REQUEST_FIELDS);
}

/// [`write_request`] for a reply.
pub fn write_reply(src: &KvReply, dst: &mut KvReply) {
    write_used(zerocopy::IntoBytes::as_bytes(src), zerocopy::IntoBytes::as_mut_bytes(dst), &REPLY_FIELDS);
}

fn write_used(src: &[u8], dst: &mut [u8], fields: &Bounded) {
    // The lengths come from `src` (our own message): copy them first, then
    // read them back from `dst`, which now holds the same bytes.
    used_runs(dst, fields, |d, at, end| {
        d[at..end].copy_from_slice(&src[at..end]);
        true
    });
}

/// Fills `dst` (a reserved ring slot, or a reused buffer) with a request,
/// writing only the bytes it uses; `false` (nothing meaningful written)
/// when `key` or `value` is longer than the message carries.
pub fn fill_request(dst: &mut KvRequest, id: u64, op: KvOp, flags: u8, limit: u16, key: &[u8], value: &[u8]) -> bool {
    if key.len() > MAX_KEY || value.len() > MAX_VALUE {
        return false;
    }
    dst.id = id;
    dst.op = op;
    dst.flags = flags;
    dst.limit = limit;
    let b = zerocopy::IntoBytes::as_mut_bytes(dst);
    for (&(off, _), bytes) in REQUEST_FIELDS.iter().zip([key, value]) {
        b[off..off + 2].copy_from_slice(&(bytes.len() as u16).to_ne_bytes());
        b[off + 2..off + 2 + bytes.len()].copy_from_slice(bytes);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(b: &mut [u8], off: usize, len: u16) {
        b[off..off + 2].copy_from_slice(&len.to_ne_bytes());
    }

    #[test]
    fn read_copies_only_the_used_bytes_and_keeps_the_lengths() {
        let src = put(7, b"key:1", b"xyz").unwrap();
        let mut into = KvRequest::new(0, KvOp::Get, 0, 0, BoundedBytes128::from_bytes(&[0xaa; 128]).unwrap(), BoundedBytes1024::from_bytes(&[0xbb; 1024]).unwrap());
        let s = zerocopy::IntoBytes::as_bytes(&src);
        let mut copied = 0;
        assert!(read_request(&mut into, |at, dst| {
            copied += dst.len();
            dst.copy_from_slice(&s[at..at + dst.len()]);
            true
        }));
        assert_eq!((into.id, into.op, into.key.as_bytes(), into.value.as_bytes()), (7, KvOp::Put, &b"key:1"[..], &b"xyz"[..]));
        assert_eq!(copied, 12 + 2 + 5 + 2 + 3);
    }

    #[test]
    fn a_hostile_length_is_bounded_by_the_capacity_and_kept_for_validation() {
        let mut src = get(1, b"k").unwrap();
        let b = zerocopy::IntoBytes::as_mut_bytes(&mut src);
        raw(b, REQUEST_FIELDS[0].0, u16::MAX);
        raw(b, REQUEST_FIELDS[1].0, 1025);
        let s = zerocopy::IntoBytes::as_bytes(&src).to_vec();
        let mut into = KvRequest::new(0, KvOp::Get, 0, 0, BoundedBytes128::empty(), BoundedBytes1024::empty());
        let mut copied = 0;
        assert!(read_request(&mut into, |at, dst| {
            assert!(at + dst.len() <= s.len());
            copied += dst.len();
            dst.copy_from_slice(&s[at..at + dst.len()]);
            true
        }));
        assert_eq!(copied, core::mem::size_of::<KvRequest>());
        assert_eq!((raw_len(&into.key), raw_len(&into.value)), (u16::MAX as usize, 1025));
        assert_eq!((into.key.len(), into.value.len()), (MAX_KEY, MAX_VALUE));
    }

    #[test]
    fn a_failed_copy_is_reported() {
        let mut into = KvRequest::new(0, KvOp::Get, 0, 0, BoundedBytes128::empty(), BoundedBytes1024::empty());
        let mut calls = 0;
        assert!(!read_request(&mut into, |_, _| {
            calls += 1;
            calls < 2
        }));
    }

    #[test]
    fn write_and_fill_round_trip_over_stale_bytes() {
        let mut slot = reply(0, KvStatus::Value, KvError::None, 9, &[0xcc; 128], &[0xdd; 1024]);
        let r = reply(5, KvStatus::NotFound, KvError::None, 0, b"ab", b"");
        write_reply(&r, &mut slot);
        assert_eq!((slot.id, slot.status, slot.count, slot.key.as_bytes(), slot.value.as_bytes()), (5, KvStatus::NotFound, 0, &b"ab"[..], &b""[..]));
        let mut req = put(3, &[0xee; 128], &[0xee; 1024]).unwrap();
        assert!(fill_request(&mut req, 4, KvOp::Get, 0, 0, b"k", b""));
        assert_eq!((req.id, req.op, req.key.as_bytes(), req.value.as_bytes()), (4, KvOp::Get, &b"k"[..], &b""[..]));
        assert!(!fill_request(&mut req, 4, KvOp::Put, 0, 0, b"k", &[0; MAX_VALUE + 1]));
        let mut w = get(0, b"").unwrap();
        write_request(&req, &mut w);
        assert_eq!(w, get(4, b"k").unwrap());
    }
}

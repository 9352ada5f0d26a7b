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

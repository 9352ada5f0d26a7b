//! The channel front: the store served over a pair of ring channels to
//! other partitions, in the messages of `kv.pt` (`hallows-kv`), beside
//! the RESP front and on the same [`Server`] (the same keyspace, damage
//! checks and durability).
//!
//! [`Front::handle`] takes one request as it came off the ring (any bytes:
//! every field is validated, nothing panics, a malformed request is
//! answered with an `Err` reply and changes nothing) and queues its
//! replies, each with the durable ticket it waits for; [`Front::pop_ready`]
//! hands them out, in order, once the store's durable ticket has reached
//! them: with strict durability a write is acknowledged only once it is
//! durable, and a read only once everything it could have seen is (as
//! the RESP front does).
//!
//! A transaction is a run of `TxnPut`/`TxnDelete` requests of one `id`,
//! numbered from 0 in `limit`, the last flagged `TXN_LAST`: its operations
//! are staged together and sealed as one log record (as `MULTI`/`EXEC`),
//! all or nothing through a power loss. Any other request arriving before
//! the last operation breaks the transaction off (it is answered `Err
//! BadRequest` and nothing of it is applied); so do an invalid operation,
//! a damaged key, more than [`MAX_TXN_OPS`] operations, and an operation
//! numbered out of turn (a transaction whose first operations went to an
//! earlier incarnation of this partition is refused, never half applied).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;

use hallows_blockdev::BlockDevice;
use hallows_kv::{
    raw_len, reply, KvError, KvOp, KvReply, KvRequest, KvStatus, DEFAULT_SCAN, MAX_KEY, MAX_SCAN,
    MAX_TXN_OPS, MAX_VALUE, SCAN_AFTER, TXN_LAST,
};

use crate::cmd::{store_error, Server};
use crate::db::{Entry, Op, Ttl, Value};
use crate::store::{Durability, Ticket};

/// Most bytes of keys and values in one transaction (its record must fit
/// a log group, as for `MULTI`).
pub const MAX_TXN_BYTES: usize = 96 << 10;
/// Replies queued before [`Front::busy`] says to stop taking requests
/// (a scan page queues up to 257 more): about 1.5 MB at most, whatever a
/// client sends without reading its replies.
pub const MAX_QUEUED: usize = 1024;

/// A transaction being received.
#[derive(Debug)]
struct Txn {
    id: u64,
    ops: Vec<Op>,
    /// Operations received (the next one's index).
    seen: u16,
    bytes: usize,
    /// Why it will be refused, once its last operation arrives.
    refused: Option<(KvError, String)>,
}

impl Txn {
    fn new(id: u64) -> Self {
        Txn { id, ops: Vec::new(), seen: 0, bytes: 0, refused: None }
    }
}

/// Counters (printed by the shell).
#[derive(Clone, Copy, Debug, Default)]
pub struct FrontStats {
    pub requests: u64,
    pub refused: u64,
    pub transactions: u64,
}

/// The channel front's state: the open transaction and the replies not
/// yet sent.
#[derive(Debug, Default)]
pub struct Front {
    txn: Option<Txn>,
    out: VecDeque<(Ticket, KvReply)>,
    quit_enabled: bool,
    shutdown: bool,
    pub stats: FrontStats,
}

/// The error class of a message of the store's (RESP-style) error text.
fn class(msg: &str) -> KvError {
    if msg.starts_with("DAMAGED") {
        KvError::Damaged
    } else if msg.starts_with("OOM") {
        KvError::Full
    } else if msg.starts_with("IOERR") {
        KvError::Io
    } else if msg.starts_with("WRONGTYPE") {
        KvError::WrongType
    } else {
        KvError::BadRequest
    }
}

impl Front {
    /// `quit_enabled`: a `Shutdown` request is obeyed (tests); otherwise
    /// refused.
    pub fn new(quit_enabled: bool) -> Self {
        Front {
            quit_enabled,
            ..Front::default()
        }
    }

    /// Whether a `Shutdown` was accepted: stop once its reply is sent.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown
    }

    /// Replies waiting (for durability or for room in the ring).
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Too many replies wait: take no more requests until some are sent.
    pub fn busy(&self) -> bool {
        self.out.len() >= MAX_QUEUED
    }

    /// The durable ticket the first waiting reply needs.
    pub fn next_need(&self) -> Option<Ticket> {
        self.out.front().map(|(t, _)| *t)
    }

    /// The first waiting reply, if the store's durable ticket `durable`
    /// covers it (replies leave in request order).
    pub fn peek_ready(&self, durable: Ticket) -> Option<&KvReply> {
        self.out
            .front()
            .filter(|(t, _)| *t <= durable)
            .map(|(_, r)| r)
    }

    /// Removes and returns the first waiting reply if `durable` covers it.
    pub fn pop_ready(&mut self, durable: Ticket) -> Option<KvReply> {
        if self.out.front().is_some_and(|(t, _)| *t <= durable) {
            self.out.pop_front().map(|(_, r)| r)
        } else {
            None
        }
    }

    /// What a reply must wait for: with strict durability, everything the
    /// store has handed out so far (a write's own ticket included).
    fn need<D: BlockDevice>(srv: &Server<D>) -> Ticket {
        match srv.store.config().durability {
            Durability::Strict => srv.store.ticket(),
            Durability::Group { .. } => 0,
        }
    }

    fn push<D: BlockDevice>(&mut self, srv: &Server<D>, r: KvReply) {
        self.out.push_back((Self::need(srv), r));
    }

    fn error<D: BlockDevice>(&mut self, srv: &Server<D>, id: u64, code: KvError, why: &str) {
        self.stats.refused += 1;
        self.push(srv, reply(id, KvStatus::Err, code, 0, &[], why.as_bytes()));
    }

    /// Handles one request as received from the ring, at store-clock time
    /// `now`, queuing its replies.
    pub fn handle<D: BlockDevice>(&mut self, srv: &mut Server<D>, now: u64, req: &KvRequest) {
        self.stats.requests += 1;
        srv.stats.commands += 1;
        let id = req.id;
        let in_txn = matches!(req.op, KvOp::TxnPut | KvOp::TxnDelete);
        // A transaction is broken off by anything but its own next op.
        if let Some(t) = &self.txn {
            if !in_txn || t.id != id {
                let t = self.txn.take().expect("open transaction");
                self.error(
                    srv,
                    t.id,
                    KvError::BadRequest,
                    "transaction broken off: another request arrived before its last operation",
                );
            }
        }
        if let Err((code, why)) = validate(req) {
            if in_txn {
                // The transaction fails as a whole, at its last op (or
                // now, if this op claims to be the last).
                let t = self.txn.get_or_insert_with(|| Txn::new(id));
                t.refused.get_or_insert((code, why));
                if req.flags & TXN_LAST != 0 {
                    let t = self.txn.take().expect("open transaction");
                    let (code, why) = t.refused.expect("refused");
                    self.error(srv, id, code, &why);
                }
            } else {
                self.error(srv, id, code, &why);
            }
            return;
        }
        let key = req.key.as_bytes();
        match req.op {
            KvOp::Get => match srv.entry(key, now) {
                Err(e) => self.error(srv, id, class(&e), &e),
                Ok(None) => self.push(
                    srv,
                    reply(id, KvStatus::NotFound, KvError::None, 0, key, &[]),
                ),
                Ok(Some(Entry {
                    value: Value::Str(v),
                    ..
                })) if v.len() > MAX_VALUE => {
                    let why = format!(
                        "the value is {} bytes; a reply carries at most {MAX_VALUE}",
                        v.len()
                    );
                    self.error(srv, id, KvError::TooLarge, &why);
                }
                Ok(Some(Entry {
                    value: Value::Str(v),
                    ..
                })) => {
                    let r = reply(id, KvStatus::Value, KvError::None, 1, key, v);
                    self.push(srv, r);
                }
                Ok(Some(_)) => self.error(
                    srv,
                    id,
                    KvError::WrongType,
                    "WRONGTYPE the key holds a hash or a list",
                ),
            },
            KvOp::Put | KvOp::Delete => {
                let op = if req.op == KvOp::Put {
                    Op::Set {
                        key: key.to_vec(),
                        value: req.value.as_bytes().to_vec(),
                        ttl: Ttl::Clear,
                    }
                } else {
                    Op::Del { key: key.to_vec() }
                };
                let existed = match srv.entry(key, now) {
                    Err(e) => return self.error(srv, id, class(&e), &e),
                    Ok(e) => e.is_some(),
                };
                if req.op == KvOp::Delete && !existed {
                    let r = reply(id, KvStatus::Ok, KvError::None, 0, key, &[]);
                    return self.push(srv, r);
                }
                match srv
                    .store
                    .stage(now, alloc::vec![op])
                    .and_then(|()| srv.store.seal())
                {
                    Err(e) => {
                        let e = store_error(e);
                        self.error(srv, id, class(&e), &e);
                    }
                    Ok(_) => self.push(srv, reply(id, KvStatus::Ok, KvError::None, 1, key, &[])),
                }
            }
            KvOp::Scan => self.scan(srv, now, req),
            KvOp::TxnPut | KvOp::TxnDelete => self.txn_op(srv, now, req),
            KvOp::Shutdown => {
                if self.quit_enabled {
                    self.shutdown = true;
                    self.push(srv, reply(id, KvStatus::Ok, KvError::None, 0, &[], &[]));
                } else {
                    self.error(
                        srv,
                        id,
                        KvError::Refused,
                        "shutdown is refused: the store was not booted with `quit`",
                    );
                }
            }
            _ => self.error(srv, id, KvError::BadRequest, "unknown operation"),
        }
    }

    fn scan<D: BlockDevice>(&mut self, srv: &mut Server<D>, now: u64, req: &KvRequest) {
        let id = req.id;
        if let Err(e) = srv.whole_damage() {
            return self.error(srv, id, class(&e), &e);
        }
        let limit = match req.limit {
            0 => DEFAULT_SCAN,
            n => n,
        } as usize;
        let from = req.key.as_bytes();
        let start = if req.flags & SCAN_AFTER != 0 {
            Bound::Excluded(from)
        } else {
            Bound::Included(from)
        };
        let need = Self::need(srv);
        let mut sent = 0u32;
        let mut last: Option<&[u8]> = None;
        let mut more = false;
        // Only strings: hashes and lists (written over RESP) are skipped.
        for (k, e) in srv.store.keyspace().range((start, Bound::Unbounded), now) {
            let Value::Str(v) = &e.value else { continue };
            if sent as usize == limit {
                more = true;
                break;
            }
            let r = if k.len() > MAX_KEY || v.len() > MAX_VALUE {
                // Written over RESP, longer than a message carries: the
                // entry says so (its key cut to the first 128 bytes).
                reply(
                    id,
                    KvStatus::Entry,
                    KvError::TooLarge,
                    v.len() as u32,
                    k,
                    &[],
                )
            } else {
                reply(id, KvStatus::Entry, KvError::None, v.len() as u32, k, v)
            };
            self.out.push_back((need, r));
            sent += 1;
            last = Some(k);
        }
        let cursor = last.unwrap_or(from);
        let mut end = reply(id, KvStatus::ScanEnd, KvError::None, sent, cursor, &[]);
        end.more = more.into();
        self.out.push_back((need, end));
    }

    fn txn_op<D: BlockDevice>(&mut self, srv: &mut Server<D>, now: u64, req: &KvRequest) {
        let id = req.id;
        let key = req.key.as_bytes();
        let t = self.txn.get_or_insert_with(|| Txn::new(id));
        let expected = t.seen;
        t.seen = t.seen.saturating_add(1);
        if t.refused.is_none() {
            t.bytes += key.len() + req.value.len() + 16;
            if req.limit != expected {
                // Its first operations went to this partition's previous
                // incarnation (or were never sent): never half a transaction.
                t.refused = Some((KvError::BadRequest, format!("transaction operation {} arrived where {expected} was expected: its first operations are missing", req.limit)));
            } else if t.ops.len() >= MAX_TXN_OPS || t.bytes > MAX_TXN_BYTES {
                t.refused = Some((KvError::BadRequest, format!("the transaction is too large (at most {MAX_TXN_OPS} operations and {MAX_TXN_BYTES} bytes)")));
            } else if let Err(e) = srv.entry(key, now) {
                t.refused = Some((class(&e), e));
            } else if req.op == KvOp::TxnPut {
                t.ops.push(Op::Set {
                    key: key.to_vec(),
                    value: req.value.as_bytes().to_vec(),
                    ttl: Ttl::Clear,
                });
            } else {
                t.ops.push(Op::Del { key: key.to_vec() });
            }
        }
        if req.flags & TXN_LAST == 0 {
            return;
        }
        let t = self.txn.take().expect("open transaction");
        if let Some((code, why)) = t.refused {
            return self.error(srv, id, code, &why);
        }
        let n = t.ops.len() as u32;
        // One stage, one seal: one record, all or nothing (a refused stage
        // changes nothing).
        match srv.store.stage(now, t.ops).and_then(|()| srv.store.seal()) {
            Err(e) => {
                let e = store_error(e);
                self.error(srv, id, class(&e), &e);
            }
            Ok(_) => {
                self.stats.transactions += 1;
                self.push(srv, reply(id, KvStatus::Ok, KvError::None, n, &[], &[]));
            }
        }
    }
}

/// Checks what the sender controls: the operation, its flags, the lengths.
fn validate(req: &KvRequest) -> Result<(), (KvError, String)> {
    let bad = |why: String| Err((KvError::BadRequest, why));
    let allowed = match req.op {
        KvOp::Get | KvOp::Put | KvOp::Delete | KvOp::Shutdown => 0,
        KvOp::Scan => SCAN_AFTER,
        KvOp::TxnPut | KvOp::TxnDelete => TXN_LAST,
        op => return bad(format!("unknown operation {}", op.0)),
    };
    if req.flags & !allowed != 0 {
        return bad(format!(
            "flags {:#x} are not defined for {:?}",
            req.flags, req.op
        ));
    }
    let (klen, vlen) = (raw_len(&req.key), raw_len(&req.value));
    if klen > MAX_KEY {
        return bad(format!("key length {klen} is above {MAX_KEY}"));
    }
    if vlen > MAX_VALUE {
        return bad(format!("value length {vlen} is above {MAX_VALUE}"));
    }
    if vlen != 0 && !matches!(req.op, KvOp::Put | KvOp::TxnPut) {
        return bad(format!("{:?} carries no value", req.op));
    }
    if req.op == KvOp::Scan && req.limit > MAX_SCAN {
        return bad(format!("scan limit {} is above {MAX_SCAN}", req.limit));
    }
    if !matches!(req.op, KvOp::Scan | KvOp::TxnPut | KvOp::TxnDelete) && req.limit != 0 {
        return bad(format!("{:?} takes no limit", req.op));
    }
    Ok(())
}

//! Redis commands on the store: Redis's semantics and error replies,
//! pipelining (every whole request in the buffer is run in order) and
//! `MULTI`/`EXEC` (the queued commands run as one record: all or nothing
//! through a power loss).
//!
//! [`Server::feed`] runs what a connection sent and appends the replies.
//! With strict durability a connection's replies must be held until the
//! store's durable ticket reaches [`Session::need`]: a write's reply until
//! the write is durable, a read's until everything it could have seen is
//! (nothing is ever served that a power loss could take back).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;

use hallows_blockdev::BlockDevice;

use crate::db::{Entry, Op, Ttl, Value};
use crate::glob;
use crate::resp::{self, array, bulk, int, nil, nil_array, parse_int, simple, Limits};
use crate::store::{Durability, Error as StoreError, Store, Ticket};

/// `(name, arity, flags)` as `COMMAND` reports them (arity < 0: at least).
pub const COMMANDS: &[(&str, i64, &[&str])] = &[
    ("ping", -1, &["fast"]),
    ("echo", 2, &["fast"]),
    ("set", -3, &["write", "denyoom"]),
    ("get", 2, &["readonly", "fast"]),
    ("del", -2, &["write"]),
    ("exists", -2, &["readonly", "fast"]),
    ("incr", 2, &["write", "denyoom", "fast"]),
    ("incrby", 3, &["write", "denyoom", "fast"]),
    ("decr", 2, &["write", "denyoom", "fast"]),
    ("decrby", 3, &["write", "denyoom", "fast"]),
    ("mget", -2, &["readonly", "fast"]),
    ("mset", -3, &["write", "denyoom"]),
    ("expire", -3, &["write", "fast"]),
    ("pexpire", -3, &["write", "fast"]),
    ("persist", 2, &["write", "fast"]),
    ("ttl", 2, &["readonly", "fast"]),
    ("pttl", 2, &["readonly", "fast"]),
    ("type", 2, &["readonly", "fast"]),
    ("keys", 2, &["readonly"]),
    ("scan", -2, &["readonly"]),
    ("dbsize", 1, &["readonly", "fast"]),
    ("flushdb", -1, &["write"]),
    ("flushall", -1, &["write"]),
    ("info", -1, &["loading", "stale"]),
    ("hset", -4, &["write", "denyoom", "fast"]),
    ("hget", 3, &["readonly", "fast"]),
    ("hdel", -3, &["write", "fast"]),
    ("hgetall", 2, &["readonly"]),
    ("hlen", 2, &["readonly", "fast"]),
    ("hexists", 3, &["readonly", "fast"]),
    ("lpush", -3, &["write", "denyoom", "fast"]),
    ("rpush", -3, &["write", "denyoom", "fast"]),
    ("lpop", -2, &["write", "fast"]),
    ("rpop", -2, &["write", "fast"]),
    ("lrange", 4, &["readonly"]),
    ("llen", 2, &["readonly", "fast"]),
    ("multi", 1, &["noscript", "fast"]),
    ("exec", 1, &["noscript"]),
    ("discard", 1, &["noscript", "fast"]),
    ("config", -2, &["admin", "noscript"]),
    ("command", -1, &["loading", "stale"]),
    ("select", 2, &["loading", "fast"]),
    ("client", -2, &["admin", "noscript"]),
    ("quit", -1, &["fast"]),
];

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INT: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";
/// Most arguments of a transaction's queued commands, in bytes: its
/// record must fit a log group.
const MAX_MULTI_BYTES: usize = 96 << 10;
/// Most commands queued in one transaction.
const MAX_MULTI_COMMANDS: usize = 10_000;
/// `SCAN` cursors remembered (the oldest is forgotten first).
const MAX_CURSORS: usize = 4096;

/// One connection's state.
#[derive(Debug, Default)]
pub struct Session {
    /// Commands queued by `MULTI`.
    multi: Option<Vec<Vec<Vec<u8>>>>,
    multi_bytes: usize,
    /// A queued command was refused: `EXEC` aborts.
    multi_dirty: bool,
    /// Replies so far may be sent once the store's durable ticket is here.
    pub need: Ticket,
    /// The connection is to be closed once its replies are sent.
    pub close: bool,
    name: Option<Vec<u8>>,
    /// The arguments of the request being parsed (one vector for all the
    /// connection's requests).
    ranges: Vec<core::ops::Range<usize>>,
}

impl Session {
    /// The name `CLIENT SETNAME` gave the connection.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }
}

/// Counters for `INFO`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerStats {
    pub commands: u64,
    pub connections: u64,
    pub protocol_errors: u64,
}

/// The store behind the Redis protocol.
#[derive(Debug)]
pub struct Server<D: BlockDevice> {
    pub store: Store<D>,
    cursors: BTreeMap<u64, Vec<u8>>,
    next_cursor: u64,
    pub stats: ServerStats,
    started: u64,
    pub limits: Limits,
}

type Reply = Result<(), String>;

fn err<T>(s: &str) -> Result<T, String> {
    Err(String::from(s))
}

fn arity_error(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

fn int_arg(a: &[u8]) -> Result<i64, String> {
    parse_int(a).ok_or_else(|| String::from(NOT_INT))
}

pub(crate) fn store_error(e: StoreError) -> String {
    match e {
        StoreError::Full => String::from("OOM command not allowed when used memory > 'maxmemory'."),
        StoreError::TooLarge => String::from("ERR the write is larger than one log record (256 KiB)"),
        StoreError::ReadOnly(why) => format!("DAMAGED {why}"),
        e => format!("IOERR {e}"),
    }
}

fn lower<'a>(name: &[u8], buf: &'a mut [u8; 16]) -> &'a str {
    if name.len() > buf.len() {
        return "";
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    core::str::from_utf8(&buf[..name.len()]).unwrap_or("")
}

impl<D: BlockDevice> Server<D> {
    /// A server on an opened store; `now` is the store-clock time.
    pub fn new(store: Store<D>, now: u64) -> Self {
        Server { store, cursors: BTreeMap::new(), next_cursor: 1, stats: ServerStats::default(), started: now, limits: Limits::default() }
    }

    /// Runs every whole request at the start of `input`, appending the
    /// replies to `out`; returns the bytes consumed. On a protocol error
    /// it answers it and sets [`Session::close`].
    pub fn feed(&mut self, sess: &mut Session, now: u64, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut at = 0;
        let mut ranges = core::mem::take(&mut sess.ranges);
        while at < input.len() && !sess.close {
            match resp::parse_into(&input[at..], &self.limits, &mut ranges) {
                Ok(Some(len)) => {
                    let req = &input[at..];
                    // Most commands have a few arguments: their slices on
                    // the stack, not in an allocation per request.
                    let mut few: [&[u8]; 8] = [&[]; 8];
                    if ranges.len() > few.len() {
                        let args: Vec<&[u8]> = ranges.iter().map(|r| &req[r.clone()]).collect();
                        self.execute(sess, now, &args, out);
                    } else if !ranges.is_empty() {
                        for (a, r) in few.iter_mut().zip(&ranges) {
                            *a = &req[r.clone()];
                        }
                        self.execute(sess, now, &few[..ranges.len()], out);
                    }
                    at += len;
                }
                Ok(None) => break,
                Err(e) => {
                    self.stats.protocol_errors += 1;
                    resp::error(out, &format!("ERR {}", e.0));
                    sess.close = true;
                    at = input.len();
                }
            }
        }
        sess.ranges = ranges;
        at
    }

    /// Runs one command.
    pub fn execute(&mut self, sess: &mut Session, now: u64, args: &[&[u8]], out: &mut Vec<u8>) {
        self.stats.commands += 1;
        let mut lb = [0u8; 16];
        let name = lower(args[0], &mut lb);
        if let Some(queue) = &mut sess.multi {
            match name {
                "exec" | "discard" | "multi" | "quit" => {}
                _ => {
                    match check_arity(name, args.len()) {
                        Ok(()) => {
                            let bytes: usize = args.iter().map(|a| a.len() + 16).sum();
                            if queue.len() >= MAX_MULTI_COMMANDS || sess.multi_bytes + bytes > MAX_MULTI_BYTES {
                                sess.multi_dirty = true;
                                resp::error(out, "ERR the transaction is too large (at most 10000 commands and 96 KiB of arguments)");
                            } else {
                                sess.multi_bytes += bytes;
                                queue.push(args.iter().map(|a| a.to_vec()).collect());
                                simple(out, "QUEUED");
                            }
                        }
                        Err(e) => {
                            sess.multi_dirty = true;
                            resp::error(out, &e);
                        }
                    }
                    return;
                }
            }
        }
        let r = match name {
            "multi" => {
                if sess.multi.is_some() {
                    err("ERR MULTI calls can not be nested")
                } else {
                    sess.multi = Some(Vec::new());
                    sess.multi_bytes = 0;
                    sess.multi_dirty = false;
                    simple(out, "OK");
                    Ok(())
                }
            }
            "discard" => match sess.multi.take() {
                None => err("ERR DISCARD without MULTI"),
                Some(_) => {
                    simple(out, "OK");
                    Ok(())
                }
            },
            "exec" => match sess.multi.take() {
                None => err("ERR EXEC without MULTI"),
                Some(_) if sess.multi_dirty => err("EXECABORT Transaction discarded because of previous errors."),
                Some(queue) => {
                    array(out, queue.len());
                    for cmd in &queue {
                        let argv: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                        let mut lb = [0u8; 16];
                        let n = lower(argv[0], &mut lb);
                        if let Err(e) = self.run(sess, now, n, &argv, out, true) {
                            resp::error(out, &e);
                        }
                    }
                    self.finish(sess)
                }
            },
            _ => match check_arity(name, args.len()) {
                Err(e) => Err(e),
                Ok(()) => {
                    let r = self.run(sess, now, name, args, out, false);
                    match (r, self.finish(sess)) {
                        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
                        _ => Ok(()),
                    }
                }
            },
        };
        if let Err(e) = r {
            resp::error(out, &e);
        }
    }

    /// Seals the record the command (or transaction) staged and records
    /// what the session's replies wait for.
    fn finish(&mut self, sess: &mut Session) -> Reply {
        let t = self.store.seal().map_err(store_error)?;
        if matches!(self.store.config().durability, Durability::Strict) {
            // Whatever was visible is durable before the reply goes out.
            sess.need = sess.need.max(t).max(self.store.ticket());
        }
        Ok(())
    }

    fn stage(&mut self, now: u64, ops: Vec<Op>) -> Reply {
        self.store.stage(now, ops).map_err(store_error)
    }

    /// A key's live entry, or an error if the store cannot vouch for it.
    pub(crate) fn entry(&self, key: &[u8], now: u64) -> Result<Option<&Entry>, String> {
        if self.store.damage().covers(key) {
            return Err(match &self.store.damage().whole {
                Some(w) => format!("DAMAGED store damaged: {w}"),
                None => String::from("DAMAGED the key lies in a damaged part of the store (FLUSHDB discards everything and clears it)"),
            });
        }
        Ok(self.store.keyspace().get(key, now))
    }

    pub(crate) fn whole_damage(&self) -> Reply {
        match (&self.store.damage().whole, self.store.damage().ranges.is_empty()) {
            (Some(w), _) => Err(format!("DAMAGED store damaged: {w}")),
            (None, false) => err("DAMAGED part of the store is damaged: whole-keyspace commands are refused (FLUSHDB discards everything and clears it)"),
            _ => Ok(()),
        }
    }

    fn string(&self, key: &[u8], now: u64) -> Result<Option<&[u8]>, String> {
        match self.entry(key, now)? {
            None => Ok(None),
            Some(Entry { value: Value::Str(s), .. }) => Ok(Some(s)),
            Some(_) => err(WRONGTYPE),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn run(&mut self, sess: &mut Session, now: u64, name: &str, a: &[&[u8]], out: &mut Vec<u8>, in_exec: bool) -> Reply {
        match name {
            "ping" => match a.len() {
                1 => simple(out, "PONG"),
                _ => bulk(out, a[1]),
            },
            "echo" => bulk(out, a[1]),
            "quit" => {
                simple(out, "OK");
                sess.close = true;
            }
            "select" => {
                if a[1] != b"0" {
                    return err("ERR DB index is out of range");
                }
                simple(out, "OK");
            }
            "get" => match self.string(a[1], now)? {
                Some(v) => bulk(out, v),
                None => nil(out),
            },
            "set" => return self.set(now, a, out),
            "del" => {
                let mut n = 0;
                let mut ops = Vec::new();
                for k in &a[1..] {
                    if self.entry(k, now)?.is_some() && !ops.iter().any(|o: &Op| o.key() == Some(k)) {
                        n += 1;
                        ops.push(Op::Del { key: k.to_vec() });
                    }
                }
                self.stage(now, ops)?;
                int(out, n);
            }
            "exists" => {
                let mut n = 0;
                for k in &a[1..] {
                    n += i64::from(self.entry(k, now)?.is_some());
                }
                int(out, n);
            }
            "incr" | "decr" | "incrby" | "decrby" => {
                let by = match name {
                    "incr" => 1,
                    "decr" => -1,
                    "incrby" => int_arg(a[2])?,
                    _ => int_arg(a[2])?.checked_neg().ok_or_else(|| String::from("ERR decrement would overflow"))?,
                };
                let cur = match self.string(a[1], now)? {
                    None => 0,
                    Some(v) => parse_int(v).ok_or_else(|| String::from(NOT_INT))?,
                };
                let new = cur.checked_add(by).ok_or_else(|| String::from("ERR increment or decrement would overflow"))?;
                let mut v = Vec::new();
                resp_num(&mut v, new);
                self.stage(now, alloc::vec![Op::Set { key: a[1].to_vec(), value: v, ttl: Ttl::Keep }])?;
                int(out, new);
            }
            "mget" => {
                // Refused whole if any key is damaged: checked before the
                // array header is written.
                for k in &a[1..] {
                    self.entry(k, now)?;
                }
                array(out, a.len() - 1);
                for k in &a[1..] {
                    match self.entry(k, now)? {
                        Some(Entry { value: Value::Str(s), .. }) => bulk(out, s),
                        _ => nil(out),
                    }
                }
            }
            "mset" => {
                if a.len() % 2 != 1 {
                    return Err(arity_error("mset"));
                }
                let mut ops = Vec::with_capacity(a.len() / 2);
                for kv in a[1..].chunks(2) {
                    self.entry(kv[0], now)?;
                    ops.push(Op::Set { key: kv[0].to_vec(), value: kv[1].to_vec(), ttl: Ttl::Clear });
                }
                self.stage(now, ops)?;
                simple(out, "OK");
            }
            "expire" | "pexpire" => {
                let n = int_arg(a[2])?;
                let ms = if name == "expire" { n.checked_mul(1000) } else { Some(n) };
                let at = ms.and_then(|ms| (now as i64).checked_add(ms)).ok_or_else(|| format!("ERR invalid expire time in '{name}' command"))?;
                let mut cond = None;
                for opt in &a[3..] {
                    let o = opt.to_ascii_uppercase();
                    match o.as_slice() {
                        b"NX" | b"XX" | b"GT" | b"LT" if cond.is_none() => cond = Some(o),
                        _ => return err(SYNTAX),
                    }
                }
                let Some(e) = self.entry(a[1], now)? else {
                    int(out, 0);
                    return Ok(());
                };
                let cur = e.expire_at;
                let at_ms = at.max(0) as u64;
                let ok = match cond.as_deref() {
                    None => true,
                    Some(b"NX") => cur.is_none(),
                    Some(b"XX") => cur.is_some(),
                    Some(b"GT") => cur.is_some_and(|c| at_ms > c),
                    _ => cur.is_none_or(|c| at_ms < c),
                };
                if !ok {
                    int(out, 0);
                    return Ok(());
                }
                let op = if at <= now as i64 { Op::Del { key: a[1].to_vec() } } else { Op::Expire { key: a[1].to_vec(), at: Some(at_ms) } };
                self.stage(now, alloc::vec![op])?;
                int(out, 1);
            }
            "persist" => match self.entry(a[1], now)? {
                Some(e) if e.expire_at.is_some() => {
                    self.stage(now, alloc::vec![Op::Expire { key: a[1].to_vec(), at: None }])?;
                    int(out, 1);
                }
                _ => int(out, 0),
            },
            "ttl" | "pttl" => match self.entry(a[1], now)? {
                None => int(out, -2),
                Some(Entry { expire_at: None, .. }) => int(out, -1),
                Some(Entry { expire_at: Some(t), .. }) => {
                    let left = t.saturating_sub(now);
                    int(out, if name == "ttl" { left.div_ceil(1000) as i64 } else { left as i64 });
                }
            },
            "type" => match self.entry(a[1], now)? {
                None => simple(out, "none"),
                Some(e) => simple(out, e.value.type_name()),
            },
            "keys" => {
                self.whole_damage()?;
                let keys: Vec<&Vec<u8>> = self.store.keyspace().range((Bound::Unbounded, Bound::Unbounded), now).filter(|(k, _)| glob::matches(a[1], k)).map(|(k, _)| k).collect();
                array(out, keys.len());
                for k in keys {
                    bulk(out, k);
                }
            }
            "scan" => return self.scan(now, a, out),
            "dbsize" => {
                self.whole_damage()?;
                int(out, self.store.keyspace().live(now) as i64);
            }
            "flushdb" | "flushall" => {
                if a.len() > 2 || (a.len() == 2 && !a[1].eq_ignore_ascii_case(b"sync") && !a[1].eq_ignore_ascii_case(b"async")) {
                    return err(SYNTAX);
                }
                if in_exec {
                    self.stage(now, alloc::vec![Op::Flush])?;
                } else {
                    // On a damaged store, this is what starts afresh.
                    let t = self.store.commit(now, alloc::vec![Op::Flush]).map_err(store_error)?;
                    sess.need = sess.need.max(t);
                }
                self.cursors.clear();
                simple(out, "OK");
            }
            "info" => self.info(now, a.get(1).copied(), out),
            "hset" => {
                if !a.len().is_multiple_of(2) {
                    return Err(arity_error("hset"));
                }
                let existing = match self.entry(a[1], now)? {
                    None => None,
                    Some(Entry { value: Value::Hash(h), .. }) => Some(h),
                    Some(_) => return err(WRONGTYPE),
                };
                let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(a.len() / 2 - 1);
                let mut new = 0;
                for fv in a[2..].chunks(2) {
                    if !existing.is_some_and(|h| h.contains_key(fv[0])) && !pairs.iter().any(|(f, _)| f.as_slice() == fv[0]) {
                        new += 1;
                    }
                    pairs.push((fv[0].to_vec(), fv[1].to_vec()));
                }
                self.stage(now, alloc::vec![Op::HSet { key: a[1].to_vec(), pairs }])?;
                int(out, new);
            }
            "hget" | "hexists" => {
                let v = match self.entry(a[1], now)? {
                    None => None,
                    Some(Entry { value: Value::Hash(h), .. }) => h.get(a[2]),
                    Some(_) => return err(WRONGTYPE),
                };
                match (name, v) {
                    ("hget", Some(v)) => bulk(out, v),
                    ("hget", None) => nil(out),
                    (_, v) => int(out, i64::from(v.is_some())),
                }
            }
            "hdel" => {
                let h = match self.entry(a[1], now)? {
                    None => {
                        int(out, 0);
                        return Ok(());
                    }
                    Some(Entry { value: Value::Hash(h), .. }) => h,
                    Some(_) => return err(WRONGTYPE),
                };
                let mut fields: Vec<Vec<u8>> = Vec::new();
                for f in &a[2..] {
                    if h.contains_key(*f) && !fields.iter().any(|x| x.as_slice() == *f) {
                        fields.push(f.to_vec());
                    }
                }
                let n = fields.len() as i64;
                if n > 0 {
                    self.stage(now, alloc::vec![Op::HDel { key: a[1].to_vec(), fields }])?;
                }
                int(out, n);
            }
            "hgetall" | "hlen" => match self.entry(a[1], now)? {
                None if name == "hlen" => int(out, 0),
                None => array(out, 0),
                Some(Entry { value: Value::Hash(h), .. }) => {
                    if name == "hlen" {
                        int(out, h.len() as i64);
                    } else {
                        array(out, h.len() * 2);
                        for (f, v) in h {
                            bulk(out, f);
                            bulk(out, v);
                        }
                    }
                }
                Some(_) => return err(WRONGTYPE),
            },
            "lpush" | "rpush" => {
                let len = match self.entry(a[1], now)? {
                    None => 0,
                    Some(Entry { value: Value::List(l), .. }) => l.len(),
                    Some(_) => return err(WRONGTYPE),
                };
                let values: Vec<Vec<u8>> = a[2..].iter().map(|v| v.to_vec()).collect();
                let n = values.len();
                self.stage(now, alloc::vec![Op::Push { key: a[1].to_vec(), left: name == "lpush", values }])?;
                int(out, (len + n) as i64);
            }
            "lpop" | "rpop" => {
                let count = match a.get(2) {
                    None => None,
                    Some(c) => match parse_int(c) {
                        Some(n) if n >= 0 => Some(n as u64),
                        _ => return err("ERR value is out of range, must be positive"),
                    },
                };
                if a.len() > 3 {
                    return err(SYNTAX);
                }
                let l = match self.entry(a[1], now)? {
                    None => {
                        if count.is_some() {
                            nil_array(out);
                        } else {
                            nil(out);
                        }
                        return Ok(());
                    }
                    Some(Entry { value: Value::List(l), .. }) => l,
                    Some(_) => return err(WRONGTYPE),
                };
                let take = count.unwrap_or(1).min(l.len() as u64) as usize;
                let left = name == "lpop";
                let items: Vec<Vec<u8>> = if left { l.iter().take(take).cloned().collect() } else { l.iter().rev().take(take).cloned().collect() };
                match count {
                    None => bulk(out, &items[0]),
                    Some(_) => {
                        array(out, items.len());
                        for v in &items {
                            bulk(out, v);
                        }
                    }
                }
                if take > 0 {
                    self.stage(now, alloc::vec![Op::Pop { key: a[1].to_vec(), left, count: take as u32 }])?;
                }
            }
            "lrange" => {
                let (start, stop) = (int_arg(a[2])?, int_arg(a[3])?);
                let l = match self.entry(a[1], now)? {
                    None => {
                        array(out, 0);
                        return Ok(());
                    }
                    Some(Entry { value: Value::List(l), .. }) => l,
                    Some(_) => return err(WRONGTYPE),
                };
                let n = l.len() as i64;
                let s = if start < 0 { (n + start).max(0) } else { start };
                let e = if stop < 0 { n + stop } else { stop.min(n - 1) };
                if s > e || s >= n {
                    array(out, 0);
                } else {
                    array(out, (e - s + 1) as usize);
                    for v in l.iter().skip(s as usize).take((e - s + 1) as usize) {
                        bulk(out, v);
                    }
                }
            }
            "llen" => match self.entry(a[1], now)? {
                None => int(out, 0),
                Some(Entry { value: Value::List(l), .. }) => int(out, l.len() as i64),
                Some(_) => return err(WRONGTYPE),
            },
            "config" => return self.config(a, out),
            "command" => return command(a, out),
            "client" => {
                let sub = a[1].to_ascii_lowercase();
                match sub.as_slice() {
                    b"setname" if a.len() == 3 => {
                        sess.name = Some(a[2].to_vec());
                        simple(out, "OK");
                    }
                    b"getname" => match &sess.name {
                        Some(n) => bulk(out, n),
                        None => nil(out),
                    },
                    b"setinfo" => simple(out, "OK"),
                    b"id" => int(out, self.stats.connections as i64),
                    _ => return Err(format!("ERR unknown subcommand '{}'. Try CLIENT HELP.", String::from_utf8_lossy(a[1]))),
                }
            }
            _ => {
                let mut msg = format!("ERR unknown command '{}', with args beginning with: ", String::from_utf8_lossy(&a[0][..a[0].len().min(128)]));
                for x in a.iter().skip(1).take(8) {
                    msg.push_str(&format!("'{}' ", String::from_utf8_lossy(&x[..x.len().min(64)])));
                }
                return Err(msg);
            }
        }
        Ok(())
    }

    fn set(&mut self, now: u64, a: &[&[u8]], out: &mut Vec<u8>) -> Reply {
        let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
        let mut at: Option<u64> = None;
        let mut i = 3;
        while i < a.len() {
            let o = a[i].to_ascii_uppercase();
            match o.as_slice() {
                b"NX" if !xx => nx = true,
                b"XX" if !nx => xx = true,
                b"GET" => get = true,
                b"KEEPTTL" if at.is_none() => keep = true,
                b"EX" | b"PX" | b"EXAT" | b"PXAT" if at.is_none() && !keep && i + 1 < a.len() => {
                    i += 1;
                    let n = int_arg(a[i])?;
                    if n <= 0 {
                        return err("ERR invalid expire time in 'set' command");
                    }
                    let ms = match o.as_slice() {
                        b"EX" => n.checked_mul(1000).and_then(|m| m.checked_add(now as i64)),
                        b"PX" => n.checked_add(now as i64),
                        b"EXAT" => n.checked_mul(1000),
                        _ => Some(n),
                    };
                    at = Some(ms.ok_or_else(|| String::from("ERR invalid expire time in 'set' command"))? as u64);
                }
                _ => return err(SYNTAX),
            }
            i += 1;
        }
        let old = self.entry(a[1], now)?;
        let old_str = match old {
            Some(Entry { value: Value::Str(s), .. }) => Some(s.clone()),
            Some(_) if get => return err(WRONGTYPE),
            _ => None,
        };
        let exists = old.is_some();
        if (nx && exists) || (xx && !exists) {
            if get {
                match old_str {
                    Some(s) => bulk(out, &s),
                    None => nil(out),
                }
            } else {
                nil(out);
            }
            return Ok(());
        }
        let ttl = match (at, keep) {
            (Some(t), _) => Ttl::At(t),
            (None, true) => Ttl::Keep,
            _ => Ttl::Clear,
        };
        // An absolute time already past: Redis sets and expires at once.
        let op = if at.is_some_and(|t| t <= now) { Op::Del { key: a[1].to_vec() } } else { Op::Set { key: a[1].to_vec(), value: a[2].to_vec(), ttl } };
        self.stage(now, alloc::vec![op])?;
        if get {
            match old_str {
                Some(s) => bulk(out, &s),
                None => nil(out),
            }
        } else {
            simple(out, "OK");
        }
        Ok(())
    }

    fn scan(&mut self, now: u64, a: &[&[u8]], out: &mut Vec<u8>) -> Reply {
        self.whole_damage()?;
        let cursor = core::str::from_utf8(a[1]).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| String::from("ERR invalid cursor"))?;
        let (mut pattern, mut count, mut kind): (Option<&[u8]>, usize, Option<Vec<u8>>) = (None, 10, None);
        let mut i = 2;
        while i < a.len() {
            let o = a[i].to_ascii_uppercase();
            if i + 1 >= a.len() {
                return err(SYNTAX);
            }
            match o.as_slice() {
                b"MATCH" => pattern = Some(a[i + 1]),
                b"COUNT" => {
                    let n = int_arg(a[i + 1])?;
                    if n < 1 {
                        return err(SYNTAX);
                    }
                    count = (n as usize).min(100_000);
                }
                b"TYPE" => kind = Some(a[i + 1].to_ascii_lowercase()),
                _ => return err(SYNTAX),
            }
            i += 2;
        }
        let from: Bound<&[u8]> = if cursor == 0 {
            Bound::Unbounded
        } else {
            match self.cursors.get(&cursor) {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => return err("ERR invalid cursor"),
            }
        };
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        let mut visited = 0;
        for (k, e) in self.store.keyspace().range((from, Bound::Unbounded), now) {
            visited += 1;
            last = Some(k.clone());
            if pattern.is_none_or(|p| glob::matches(p, k)) && kind.as_deref().is_none_or(|t| t == e.value.type_name().as_bytes()) {
                keys.push(k.clone());
            }
            if visited >= count {
                break;
            }
        }
        let next = match (visited >= count, last) {
            (true, Some(k)) => {
                let id = self.next_cursor;
                self.next_cursor += 1;
                if self.cursors.len() >= MAX_CURSORS {
                    let oldest = *self.cursors.keys().next().expect("cursor");
                    self.cursors.remove(&oldest);
                }
                self.cursors.insert(id, k);
                id
            }
            _ => 0,
        };
        array(out, 2);
        let mut c = Vec::new();
        resp_num(&mut c, next as i64);
        bulk(out, &c);
        array(out, keys.len());
        for k in &keys {
            bulk(out, k);
        }
        Ok(())
    }

    fn config(&self, a: &[&[u8]], out: &mut Vec<u8>) -> Reply {
        let sub = a[1].to_ascii_lowercase();
        match sub.as_slice() {
            b"get" if a.len() >= 3 => {
                let (fsync, window) = match self.store.config().durability {
                    Durability::Strict => ("always", String::from("0")),
                    Durability::Group { window_us } => ("everysec", format!("{}", window_us / 1000)),
                };
                let maxmem = format!("{}", self.store.config().max_bytes);
                let table: [(&str, &str); 8] = [
                    ("save", ""),
                    ("appendonly", "yes"),
                    ("appendfsync", fsync),
                    ("maxmemory", &maxmem),
                    ("databases", "1"),
                    ("proto-max-bulk-len", "131072"),
                    ("hallows-commit-window-ms", &window),
                    ("maxmemory-policy", "noeviction"),
                ];
                let hits: Vec<&(&str, &str)> = table.iter().filter(|(k, _)| a[2..].iter().any(|p| glob::matches(&p.to_ascii_lowercase(), k.as_bytes()))).collect();
                array(out, hits.len() * 2);
                for (k, v) in hits {
                    bulk(out, k.as_bytes());
                    bulk(out, v.as_bytes());
                }
                Ok(())
            }
            b"get" => Err(arity_error("config|get")),
            b"set" => err("ERR CONFIG SET is not supported: the manifest sets the store's durability (disk.durability) and size"),
            b"resetstat" => {
                simple(out, "OK");
                Ok(())
            }
            _ => Err(format!("ERR unknown subcommand '{}'. Try CONFIG HELP.", String::from_utf8_lossy(a[1]))),
        }
    }

    fn info(&self, now: u64, section: Option<&[u8]>, out: &mut Vec<u8>) {
        let want = |s: &str| section.is_none_or(|x| x.eq_ignore_ascii_case(s.as_bytes()) || x.eq_ignore_ascii_case(b"all") || x.eq_ignore_ascii_case(b"default") || x.eq_ignore_ascii_case(b"everything"));
        let mut t = String::new();
        if want("server") {
            t.push_str(&format!(
                "# Server\r\nredis_version:7.0.0\r\nhallows_store:1\r\nredis_mode:standalone\r\nos:RustHallows partition\r\narch_bits:64\r\nuptime_in_seconds:{}\r\n\r\n",
                now.saturating_sub(self.started) / 1000
            ));
        }
        if want("clients") {
            t.push_str(&format!("# Clients\r\nconnected_clients:{}\r\n\r\n", self.stats.connections));
        }
        if want("memory") {
            t.push_str(&format!("# Memory\r\nused_memory:{}\r\nmaxmemory:{}\r\n\r\n", self.store.keyspace().bytes(), self.store.config().max_bytes));
        }
        if want("persistence") {
            let s = self.store.stats();
            let (used, ring) = self.store.log_use();
            t.push_str(&format!(
                "# Persistence\r\nloading:0\r\naof_enabled:1\r\nhallows_durability:{}\r\nhallows_groups_written:{}\r\nhallows_flushes:{}\r\nhallows_bytes_logged:{}\r\nhallows_checkpoints:{}\r\nhallows_log_used_sectors:{used}\r\nhallows_log_sectors:{ring}\r\nhallows_damaged:{}\r\n\r\n",
                match self.store.config().durability {
                    Durability::Strict => "strict",
                    Durability::Group { .. } => "group",
                },
                s.groups,
                s.flushes,
                s.bytes_logged,
                s.checkpoints,
                if self.store.damage().is_empty() { 0 } else { 1 }
            ));
        }
        if want("stats") {
            t.push_str(&format!(
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nhallows_commits:{}\r\nhallows_protocol_errors:{}\r\n\r\n",
                self.stats.connections,
                self.stats.commands,
                self.store.stats().commits,
                self.stats.protocol_errors
            ));
        }
        if want("keyspace") {
            t.push_str("# Keyspace\r\n");
            let ks = self.store.keyspace();
            let keys = ks.live(now);
            if keys > 0 {
                let expires = ks.range((Bound::Unbounded, Bound::Unbounded), now).filter(|(_, e)| e.expire_at.is_some()).count();
                t.push_str(&format!("db0:keys={keys},expires={expires},avg_ttl=0\r\n"));
            }
        }
        bulk(out, t.as_bytes());
    }
}

fn resp_num(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(format!("{v}").as_bytes());
}

fn check_arity(name: &str, n: usize) -> Reply {
    match COMMANDS.iter().find(|(c, _, _)| *c == name) {
        None => Ok(()), // unknown: answered by `run`
        Some((_, ar, _)) => {
            let ok = if *ar < 0 { n as i64 >= -ar } else { n as i64 == *ar };
            if ok {
                Ok(())
            } else {
                Err(arity_error(name))
            }
        }
    }
}

fn command_entry(out: &mut Vec<u8>, (name, arity, flags): &(&str, i64, &[&str])) {
    array(out, 6);
    bulk(out, name.as_bytes());
    int(out, *arity);
    array(out, flags.len());
    for f in *flags {
        simple(out, f);
    }
    let keyed = !matches!(*name, "ping" | "echo" | "info" | "config" | "command" | "select" | "client" | "quit" | "multi" | "exec" | "discard" | "dbsize" | "flushdb" | "flushall" | "keys" | "scan");
    let last = if matches!(*name, "del" | "exists" | "mget" | "mset") { -1 } else { i64::from(keyed) };
    int(out, i64::from(keyed));
    int(out, last);
    int(out, if *name == "mset" { 2 } else { i64::from(keyed) });
}

fn command(a: &[&[u8]], out: &mut Vec<u8>) -> Reply {
    if a.len() == 1 {
        array(out, COMMANDS.len());
        for c in COMMANDS {
            command_entry(out, c);
        }
        return Ok(());
    }
    let sub = a[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"count" => int(out, COMMANDS.len() as i64),
        b"docs" => array(out, 0),
        b"info" => {
            array(out, a.len() - 2);
            for n in &a[2..] {
                let n = n.to_ascii_lowercase();
                match COMMANDS.iter().find(|(c, _, _)| c.as_bytes() == n.as_slice()) {
                    Some(c) => command_entry(out, c),
                    None => nil_array(out),
                }
            }
        }
        _ => return Err(format!("ERR unknown subcommand '{}'. Try COMMAND HELP.", String::from_utf8_lossy(a[1]))),
    }
    Ok(())
}

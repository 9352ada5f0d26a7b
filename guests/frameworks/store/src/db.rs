//! The keyspace: an ordered map of keys to typed values (strings,
//! hashes, lists) with optional expiry times, and the logged operations
//! that change it.
//!
//! Every change goes through [`Keyspace::apply`] with a [`Record`]: the
//! operations of one command or transaction and the store-clock time they
//! ran at. Replaying the same records from the same state gives the same
//! state (expiry decisions use the record's time, never a clock), which is
//! what recovery relies on. `apply` never fails and never panics, whatever
//! the record says (a record that does not fit the state, which the
//! command layer never produces, changes what it can and skips the rest).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::ops::Bound;

use crate::codec::{put_bytes, put_u32, put_u64, put_u8, Reader};

/// A stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    List(VecDeque<Vec<u8>>),
}

impl Value {
    /// Redis's name of the type (`TYPE`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
        }
    }
    fn bytes(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len() + 32).sum(),
            Value::List(l) => l.iter().map(|v| v.len() + 16).sum(),
        }
    }
}

/// A key's value and expiry (milliseconds on the store clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    pub expire_at: Option<u64>,
}

/// What a string write does to the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// Remove it (`SET` without options).
    Clear,
    /// Keep it (`INCR`, `SET ... KEEPTTL`).
    Keep,
    /// Set it to this store-clock time.
    At(u64),
}

/// One logged change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets a string value.
    Set { key: Vec<u8>, value: Vec<u8>, ttl: Ttl },
    /// Removes a key.
    Del { key: Vec<u8> },
    /// Sets hash fields (creating the hash).
    HSet { key: Vec<u8>, pairs: Vec<(Vec<u8>, Vec<u8>)> },
    /// Removes hash fields (and the key once the hash is empty).
    HDel { key: Vec<u8>, fields: Vec<Vec<u8>> },
    /// Pushes onto a list (creating it), one value after another.
    Push { key: Vec<u8>, left: bool, values: Vec<Vec<u8>> },
    /// Pops up to `count` values (and removes the key once empty).
    Pop { key: Vec<u8>, left: bool, count: u32 },
    /// Sets (`Some`) or removes (`None`) a key's expiry.
    Expire { key: Vec<u8>, at: Option<u64> },
    /// Removes every key.
    Flush,
}

impl Op {
    /// Appends the operation's encoding to `out` (a record is its time,
    /// the number of operations, then each).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Set { key, value, ttl } => {
                put_u8(out, T_SET);
                put_bytes(out, key);
                put_bytes(out, value);
                match ttl {
                    Ttl::Clear => put_u8(out, 0),
                    Ttl::Keep => put_u8(out, 1),
                    Ttl::At(t) => {
                        put_u8(out, 2);
                        put_u64(out, *t);
                    }
                }
            }
            Op::Del { key } => {
                put_u8(out, T_DEL);
                put_bytes(out, key);
            }
            Op::HSet { key, pairs } => {
                put_u8(out, T_HSET);
                put_bytes(out, key);
                put_u32(out, pairs.len() as u32);
                for (f, v) in pairs {
                    put_bytes(out, f);
                    put_bytes(out, v);
                }
            }
            Op::HDel { key, fields } => {
                put_u8(out, T_HDEL);
                put_bytes(out, key);
                put_u32(out, fields.len() as u32);
                for f in fields {
                    put_bytes(out, f);
                }
            }
            Op::Push { key, left, values } => {
                put_u8(out, T_PUSH);
                put_bytes(out, key);
                put_u8(out, *left as u8);
                put_u32(out, values.len() as u32);
                for v in values {
                    put_bytes(out, v);
                }
            }
            Op::Pop { key, left, count } => {
                put_u8(out, T_POP);
                put_bytes(out, key);
                put_u8(out, *left as u8);
                put_u32(out, *count);
            }
            Op::Expire { key, at } => {
                put_u8(out, T_EXPIRE);
                put_bytes(out, key);
                put_u64(out, at.map_or(0, |t| t.saturating_add(1)));
            }
            Op::Flush => put_u8(out, T_FLUSH),
        }
    }

    /// The key the operation changes (`None` for [`Op::Flush`]).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Op::Set { key, .. }
            | Op::Del { key }
            | Op::HSet { key, .. }
            | Op::HDel { key, .. }
            | Op::Push { key, .. }
            | Op::Pop { key, .. }
            | Op::Expire { key, .. } => Some(key),
            Op::Flush => None,
        }
    }
}

/// The operations of one command or transaction, applied atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Store-clock time (ms) the operations ran at.
    pub now: u64,
    pub ops: Vec<Op>,
}

const T_SET: u8 = 1;
const T_DEL: u8 = 2;
const T_HSET: u8 = 3;
const T_HDEL: u8 = 4;
const T_PUSH: u8 = 5;
const T_POP: u8 = 6;
const T_EXPIRE: u8 = 7;
const T_FLUSH: u8 = 8;

impl Record {
    /// Appends the record's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.now);
        put_u32(out, self.ops.len() as u32);
        for op in &self.ops {
            op.encode(out);
        }
    }

    /// Decodes one record (the whole of `buf`); `None` if malformed.
    pub fn decode(buf: &[u8]) -> Option<Record> {
        let mut r = Reader::new(buf);
        let now = r.u64()?;
        let n = r.count(1)?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let op = match r.u8()? {
                T_SET => {
                    let key = r.vec()?;
                    let value = r.vec()?;
                    let ttl = match r.u8()? {
                        0 => Ttl::Clear,
                        1 => Ttl::Keep,
                        2 => Ttl::At(r.u64()?),
                        _ => return None,
                    };
                    Op::Set { key, value, ttl }
                }
                T_DEL => Op::Del { key: r.vec()? },
                T_HSET => {
                    let key = r.vec()?;
                    let n = r.count(8)?;
                    let mut pairs = Vec::with_capacity(n);
                    for _ in 0..n {
                        pairs.push((r.vec()?, r.vec()?));
                    }
                    Op::HSet { key, pairs }
                }
                T_HDEL => {
                    let key = r.vec()?;
                    let n = r.count(4)?;
                    let mut fields = Vec::with_capacity(n);
                    for _ in 0..n {
                        fields.push(r.vec()?);
                    }
                    Op::HDel { key, fields }
                }
                T_PUSH => {
                    let key = r.vec()?;
                    let left = r.u8()? != 0;
                    let n = r.count(4)?;
                    let mut values = Vec::with_capacity(n);
                    for _ in 0..n {
                        values.push(r.vec()?);
                    }
                    Op::Push { key, left, values }
                }
                T_POP => {
                    let key = r.vec()?;
                    let left = r.u8()? != 0;
                    Op::Pop { key, left, count: r.u32()? }
                }
                T_EXPIRE => {
                    let key = r.vec()?;
                    let at = r.u64()?;
                    Op::Expire { key, at: at.checked_sub(1) }
                }
                T_FLUSH => Op::Flush,
                _ => return None,
            };
            ops.push(op);
        }
        r.done().then_some(Record { now, ops })
    }
}

/// Bytes counted per key on top of its key and value.
const ENTRY_OVERHEAD: usize = 64;

/// The ordered keyspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyspace {
    map: BTreeMap<Vec<u8>, Entry>,
    bytes: usize,
}

fn cost(key: &[u8], e: &Entry) -> usize {
    key.len() + e.value.bytes() + ENTRY_OVERHEAD
}

impl Keyspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Approximate bytes held (keys, values, per-entry overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys held, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live entry of `key` at time `now` (an expired one is absent).
    pub fn get(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.map.get(key).filter(|e| e.expire_at.is_none_or(|t| t > now))
    }

    /// Live entries with keys in `range`, in key order.
    pub fn range<'a>(&'a self, range: (Bound<&'a [u8]>, Bound<&'a [u8]>), now: u64) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        self.map
            .range::<[u8], _>(range)
            .filter(move |(_, e)| e.expire_at.is_none_or(|t| t > now))
    }

    /// Live keys (count) at `now`.
    pub fn live(&self, now: u64) -> usize {
        self.map.values().filter(|e| e.expire_at.is_none_or(|t| t > now)).count()
    }

    /// Removes up to `limit` expired keys (memory only: replay recreates
    /// them already expired). Returns how many.
    pub fn sweep(&mut self, now: u64, limit: usize) -> usize {
        let dead: Vec<Vec<u8>> = self
            .map
            .iter()
            .filter(|(_, e)| e.expire_at.is_some_and(|t| t <= now))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            self.remove(k);
        }
        dead.len()
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.bytes = self.bytes.saturating_sub(cost(key, &e));
        Some(e)
    }

    fn insert(&mut self, key: Vec<u8>, e: Entry) {
        self.bytes += cost(&key, &e);
        if let Some(old) = self.map.insert(key.clone(), e) {
            self.bytes = self.bytes.saturating_sub(cost(&key, &old));
        }
    }

    fn adjust(&mut self, delta: isize) {
        self.bytes = self.bytes.saturating_add_signed(delta);
    }

    /// Makes `key` hold a live value of the kind `is` accepts (a new one
    /// from `make`, without expiry, if it is absent, expired or of another
    /// kind), changed in place afterwards; returns the key.
    fn container<'k>(&mut self, key: &'k [u8], now: u64, is: impl Fn(&Value) -> bool, make: impl Fn() -> Value) -> &'k [u8] {
        let keep = self.map.get(key).is_some_and(|e| is(&e.value) && e.expire_at.is_none_or(|t| t > now));
        if !keep {
            self.remove(key);
            self.insert(key.to_vec(), Entry { value: make(), expire_at: None });
        }
        key
    }

    /// Takes `key`'s live entry out (dropping an expired one), for an
    /// operation to change and put back.
    fn take_live(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        let e = self.remove(key)?;
        e.expire_at.is_none_or(|t| t > now).then_some(e)
    }

    /// Applies a record. Never fails (see the module docs).
    pub fn apply(&mut self, rec: &Record) {
        for op in &rec.ops {
            self.apply_op(rec.now, op);
        }
    }

    /// Applies one operation at time `now`.
    pub fn apply_op(&mut self, now: u64, op: &Op) {
        {
            match op {
                Op::Set { key, value, ttl } => {
                    let old = self.take_live(key, now);
                    let expire_at = match ttl {
                        Ttl::Clear => None,
                        Ttl::Keep => old.and_then(|e| e.expire_at),
                        Ttl::At(t) => Some(*t),
                    };
                    self.insert(key.clone(), Entry { value: Value::Str(value.clone()), expire_at });
                }
                Op::Del { key } => {
                    self.remove(key);
                }
                Op::HSet { key, pairs } => {
                    let h = self.container(key, now, |v| matches!(v, Value::Hash(_)), || Value::Hash(BTreeMap::new()));
                    let mut delta = 0isize;
                    if let Some(Entry { value: Value::Hash(h), .. }) = self.map.get_mut(h) {
                        for (f, v) in pairs {
                            delta += (f.len() + v.len() + 32) as isize;
                            if let Some(old) = h.insert(f.clone(), v.clone()) {
                                delta -= (f.len() + old.len() + 32) as isize;
                            }
                        }
                    }
                    self.adjust(delta);
                }
                Op::HDel { key, fields } => {
                    let mut delta = 0isize;
                    let mut empty = false;
                    if let Some(Entry { value: Value::Hash(h), expire_at }) = self.map.get_mut(key.as_slice()) {
                        if expire_at.is_none_or(|t| t > now) {
                            for f in fields {
                                if let Some(old) = h.remove(f) {
                                    delta -= (f.len() + old.len() + 32) as isize;
                                }
                            }
                            empty = h.is_empty();
                        }
                    }
                    self.adjust(delta);
                    if empty {
                        self.remove(key);
                    }
                }
                Op::Push { key, left, values } => {
                    let k = self.container(key, now, |v| matches!(v, Value::List(_)), || Value::List(VecDeque::new()));
                    let mut delta = 0isize;
                    if let Some(Entry { value: Value::List(l), .. }) = self.map.get_mut(k) {
                        for v in values {
                            delta += (v.len() + 16) as isize;
                            if *left {
                                l.push_front(v.clone());
                            } else {
                                l.push_back(v.clone());
                            }
                        }
                    }
                    self.adjust(delta);
                }
                Op::Pop { key, left, count } => {
                    let mut delta = 0isize;
                    let mut empty = false;
                    if let Some(Entry { value: Value::List(l), expire_at }) = self.map.get_mut(key.as_slice()) {
                        if expire_at.is_none_or(|t| t > now) {
                            for _ in 0..*count {
                                let v = if *left { l.pop_front() } else { l.pop_back() };
                                match v {
                                    Some(v) => delta -= (v.len() + 16) as isize,
                                    None => break,
                                }
                            }
                            empty = l.is_empty();
                        }
                    }
                    self.adjust(delta);
                    if empty {
                        self.remove(key);
                    }
                }
                Op::Expire { key, at } => {
                    if let Some(mut e) = self.take_live(key, now) {
                        e.expire_at = *at;
                        // An expiry at or before now deletes (Redis does).
                        if at.is_some_and(|t| t <= now) {
                            return;
                        }
                        self.insert(key.clone(), e);
                    }
                }
                Op::Flush => {
                    self.map.clear();
                    self.bytes = 0;
                }
            }
        }
    }

    /// Every entry, in key order (checkpoints).
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Entry)> {
        self.map.iter()
    }

    /// Adds a decoded entry (checkpoint load).
    pub(crate) fn load(&mut self, key: Vec<u8>, e: Entry) {
        self.insert(key, e);
    }
}

/// Encodes one entry of a checkpoint.
pub(crate) fn encode_entry(out: &mut Vec<u8>, key: &[u8], e: &Entry) {
    put_bytes(out, key);
    put_u64(out, e.expire_at.map_or(0, |t| t.saturating_add(1)));
    match &e.value {
        Value::Str(s) => {
            put_u8(out, 1);
            put_bytes(out, s);
        }
        Value::Hash(h) => {
            put_u8(out, 2);
            put_u32(out, h.len() as u32);
            for (f, v) in h {
                put_bytes(out, f);
                put_bytes(out, v);
            }
        }
        Value::List(l) => {
            put_u8(out, 3);
            put_u32(out, l.len() as u32);
            for v in l {
                put_bytes(out, v);
            }
        }
    }
}

/// Decodes one checkpoint entry.
pub(crate) fn decode_entry(r: &mut Reader<'_>) -> Option<(Vec<u8>, Entry)> {
    let key = r.vec()?;
    let expire_at = r.u64()?.checked_sub(1);
    let value = match r.u8()? {
        1 => Value::Str(r.vec()?),
        2 => {
            let n = r.count(8)?;
            let mut h = BTreeMap::new();
            for _ in 0..n {
                let f = r.vec()?;
                h.insert(f, r.vec()?);
            }
            Value::Hash(h)
        }
        3 => {
            let n = r.count(4)?;
            let mut l = VecDeque::with_capacity(n);
            for _ in 0..n {
                l.push_back(r.vec()?);
            }
            Value::List(l)
        }
        _ => return None,
    };
    Some((key, Entry { value, expire_at }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let rec = Record {
            now: 42,
            ops: vec![
                Op::Set { key: k("a"), value: k("1"), ttl: Ttl::At(99) },
                Op::Set { key: k("b"), value: k(""), ttl: Ttl::Keep },
                Op::Del { key: k("c") },
                Op::HSet { key: k("h"), pairs: vec![(k("f"), k("v"))] },
                Op::HDel { key: k("h"), fields: vec![k("f")] },
                Op::Push { key: k("l"), left: true, values: vec![k("x"), k("y")] },
                Op::Pop { key: k("l"), left: false, count: 3 },
                Op::Expire { key: k("a"), at: None },
                Op::Expire { key: k("a"), at: Some(0) },
                Op::Flush,
            ],
        };
        let mut buf = Vec::new();
        rec.encode(&mut buf);
        assert_eq!(Record::decode(&buf), Some(rec));
        for cut in 0..buf.len() {
            assert!(Record::decode(&buf[..cut]).is_none());
        }
        let mut huge = Vec::new();
        put_u64(&mut huge, 0);
        put_u32(&mut huge, u32::MAX);
        assert!(Record::decode(&huge).is_none());
    }

    #[test]
    fn expiry_uses_the_record_time() {
        let mut ks = Keyspace::new();
        ks.apply(&Record { now: 10, ops: vec![Op::Set { key: k("a"), value: k("1"), ttl: Ttl::At(20) }] });
        assert!(ks.get(b"a", 19).is_some());
        assert!(ks.get(b"a", 20).is_none());
        // A push onto an expired string makes a new list without expiry.
        ks.apply(&Record { now: 25, ops: vec![Op::Push { key: k("a"), left: false, values: vec![k("x")] }] });
        assert_eq!(ks.get(b"a", 1000).unwrap().value, Value::List([k("x")].into()));
        ks.apply(&Record { now: 30, ops: vec![Op::Pop { key: k("a"), left: true, count: 5 }] });
        assert!(ks.is_empty());
        assert_eq!(ks.bytes(), 0);
    }
}

//! Vectorized execution. Rows move in batches of at most [`BATCH`] rows,
//! column by column; every expression is evaluated a whole column at a
//! time. A query is a pipeline driven by the morsels (row groups) of its
//! largest table: scan (zone maps skip row groups, filter columns are read
//! and tested before the others are read at all), hash-join probes into
//! the other tables (each scanned, filtered and hashed first), filters,
//! then a partial hash aggregate or a projection per morsel. Morsels run
//! on whatever [`Executor`] the caller gives (one core, or every core of
//! the partition); partial aggregates merge in morsel order, so the
//! result does not depend on how many cores ran it.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::hash::{BuildHasherDefault, Hasher};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AO};

use hallows_blockdev::BlockDevice;
use spin::Mutex;

use crate::encode::Strs;
use crate::plan::{join_order, AggFn, Arith, BExpr, BKind, JoinStep, Plan};
use crate::sql::{BinOp, Unit};
use crate::storage::{Chunk, Db, Zone};
use crate::types::{add_months, civil_from_days, parse_date, pow10, Error, ErrorKind, Result, Type, Value};

/// Rows per batch.
pub const BATCH: usize = 4096;

/// A column of a batch. `Absent` stands for a scope column this part of
/// the pipeline does not carry.
#[derive(Clone, Debug, PartialEq)]
pub enum Col {
    Absent,
    Num(Vec<i128>),
    Str(Strs),
    Bool(Vec<bool>),
}

impl Col {
    fn len(&self) -> usize {
        match self {
            Col::Absent => 0,
            Col::Num(v) => v.len(),
            Col::Str(v) => v.len(),
            Col::Bool(v) => v.len(),
        }
    }
    pub fn value(&self, i: usize) -> Value {
        match self {
            Col::Absent => Value::Null,
            Col::Num(v) => Value::Num(v[i]),
            Col::Str(v) => Value::Str(v.get(i).clone()),
            Col::Bool(v) => Value::Bool(v[i]),
        }
    }
    fn take(&self, idx: &[u32]) -> Col {
        match self {
            Col::Absent => Col::Absent,
            Col::Num(v) => Col::Num(idx.iter().map(|&i| v[i as usize]).collect()),
            Col::Str(v) => Col::Str(v.take(idx.iter().copied())),
            Col::Bool(v) => Col::Bool(idx.iter().map(|&i| v[i as usize]).collect()),
        }
    }
    fn append(&mut self, other: Col) {
        match (self, other) {
            (Col::Num(a), Col::Num(b)) => a.extend(b),
            (Col::Str(a), Col::Str(b)) => a.append(b),
            (Col::Bool(a), Col::Bool(b)) => a.extend(b),
            (s @ Col::Absent, o) => *s = o,
            _ => {}
        }
    }
    /// A column of `n` copies of `v`.
    fn splat(v: &Value, n: usize) -> Col {
        match v {
            Value::Null => Col::Absent,
            Value::Num(x) => Col::Num(vec![*x; n]),
            Value::Str(s) => Col::Str(Strs { dict: Arc::new(vec![s.clone()]), codes: vec![0; n] }),
            Value::Bool(b) => Col::Bool(vec![*b; n]),
        }
    }
    fn from_values(ty: Type, vals: impl Iterator<Item = Value>) -> Col {
        match ty {
            Type::Text => Col::Str(Strs::from_vec(vals.map(|v| if let Value::Str(s) = v { s } else { Arc::from("") }).collect())),
            Type::Bool => Col::Bool(vals.map(|v| v == Value::Bool(true)).collect()),
            _ => Col::Num(vals.map(|v| if let Value::Num(x) = v { x } else { 0 }).collect()),
        }
    }
}

/// Rows `idx` of a decoded chunk as a batch column.
fn chunk_take(c: &Option<Chunk>, idx: impl Iterator<Item = u32>) -> Col {
    match c {
        None => Col::Absent,
        Some(Chunk::Num(v)) => Col::Num(idx.map(|i| i128::from(v[i as usize])).collect()),
        Some(Chunk::Str(v)) => Col::Str(v.take(idx)),
    }
}

/// Columns of equal length (the absent ones aside).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub cols: Vec<Col>,
    pub rows: usize,
}

impl Batch {
    fn take(&self, idx: &[u32]) -> Batch {
        Batch { cols: self.cols.iter().map(|c| c.take(idx)).collect(), rows: idx.len() }
    }
    fn filter(&self, mask: &[bool]) -> Batch {
        if mask.iter().all(|&m| m) {
            return self.clone();
        }
        let idx: Vec<u32> = (0..self.rows as u32).filter(|&i| mask[i as usize]).collect();
        self.take(&idx)
    }
    fn append(&mut self, o: Batch) {
        self.rows += o.rows;
        for (a, b) in self.cols.iter_mut().zip(o.cols) {
            a.append(b);
        }
    }
}

fn internal(msg: &str) -> Error {
    Error::new(ErrorKind::Data, format!("internal error: {msg}"))
}

fn overflow() -> Error {
    Error::new(ErrorKind::Data, "numeric value out of range")
}

fn nums(c: &Col) -> Result<&[i128]> {
    match c {
        Col::Num(v) => Ok(v),
        _ => Err(internal("expected a number column")),
    }
}

fn strs(c: &Col) -> Result<&Strs> {
    match c {
        Col::Str(v) => Ok(v),
        _ => Err(internal("expected a text column")),
    }
}

fn bools(c: &Col) -> Result<&[bool]> {
    match c {
        Col::Bool(v) => Ok(v),
        _ => Err(internal("expected a condition column")),
    }
}

/// `f` of every value: once per dictionary entry when the dictionary is
/// no larger than the batch, else once per row.
fn per_distinct(x: &Strs, f: impl Fn(&str) -> bool) -> Vec<bool> {
    if x.dict.len() <= x.codes.len() {
        let d: Vec<bool> = x.dict.iter().map(|s| f(s)).collect();
        x.codes.iter().map(|&c| d[c as usize]).collect()
    } else {
        x.iter().map(|s| f(s)).collect()
    }
}

fn map_num(c: &Col, f: impl Fn(i128) -> Result<i128>) -> Result<Col> {
    let mut failed = None;
    let v = nums(c)?
        .iter()
        .map(|&x| {
            f(x).unwrap_or_else(|e| {
                failed.get_or_insert(e);
                0
            })
        })
        .collect();
    match failed {
        Some(e) => Err(e),
        None => Ok(Col::Num(v)),
    }
}

/// `v` divided by `10^k`, rounded half away from zero.
fn div_round(v: i128, k: u8) -> i128 {
    let p = pow10(k);
    let (q, r) = (v / p, v % p);
    if r.abs() * 2 >= p {
        q + v.signum()
    } else {
        q
    }
}

fn cmp_holds(op: BinOp, o: Ordering) -> bool {
    match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::Ne => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::Le => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    }
}

fn compare(op: BinOp, a: &Col, b: &Col) -> Result<Vec<bool>> {
    Ok(match (a, b) {
        (Col::Num(x), Col::Num(y)) => x.iter().zip(y).map(|(p, q)| cmp_holds(op, p.cmp(q))).collect(),
        (Col::Str(x), Col::Str(y)) => x.iter().zip(y.iter()).map(|(p, q)| cmp_holds(op, p.cmp(q))).collect(),
        (Col::Bool(x), Col::Bool(y)) => x.iter().zip(y).map(|(p, q)| cmp_holds(op, p.cmp(q))).collect(),
        _ => return Err(internal("comparison of different types")),
    })
}

/// SQL LIKE: `%` any run of characters, `_` one character. Greedy with
/// one backtrack point: O(len * pattern) at worst, no recursion.
pub fn like(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == '_' || (p[j] != '%' && p[j] == s[i])) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    while j < p.len() && p[j] == '%' {
        j += 1;
    }
    j == p.len()
}

/// Evaluates `e` over `b`.
pub fn eval<'a>(e: &BExpr, b: &'a Batch) -> Result<Cow<'a, Col>> {
    let n = b.rows;
    let col = match &e.kind {
        BKind::Col(i) => {
            let c = b.cols.get(*i).ok_or_else(|| internal("column out of range"))?;
            if matches!(c, Col::Absent) {
                return Err(internal("column not carried"));
            }
            return Ok(Cow::Borrowed(c));
        }
        BKind::Const(v) => Col::splat(v, n),
        BKind::Arith(op, l, r) => {
            // A quotient: (p * 10^k) / q, k bringing it to the result's scale.
            let k = (r.ty.scale() + e.ty.scale()).saturating_sub(l.ty.scale());
            let m = pow10(k);
            let (l, r) = (eval(l, b)?, eval(r, b)?);
            let (x, y) = (nums(&l)?, nums(&r)?);
            let f = |p: i128, q: i128| -> Result<i128> {
                match op {
                    Arith::Div => {
                        if q == 0 {
                            return Err(Error::new(ErrorKind::Data, "division by zero"));
                        }
                        let p = p.checked_mul(m).ok_or_else(overflow)?;
                        let (d, rem) = (p.checked_div(q).ok_or_else(overflow)?, p.checked_rem(q).ok_or_else(overflow)?);
                        Ok(if rem.unsigned_abs() * 2 >= q.unsigned_abs() { d + (p.signum() * q.signum()) } else { d })
                    }
                    Arith::Add => p.checked_add(q).ok_or_else(overflow),
                    Arith::Sub => p.checked_sub(q).ok_or_else(overflow),
                    Arith::Mul => p.checked_mul(q).ok_or_else(overflow),
                    Arith::Mod => {
                        if q == 0 {
                            Err(Error::new(ErrorKind::Data, "division by zero"))
                        } else {
                            Ok(p.wrapping_rem(q))
                        }
                    }
                }
            };
            let mut failed = None;
            let v = x
                .iter()
                .zip(y)
                .map(|(&p, &q)| {
                    f(p, q).unwrap_or_else(|e| {
                        failed.get_or_insert(e);
                        0
                    })
                })
                .collect();
            if let Some(e) = failed {
                return Err(e);
            }
            Col::Num(v)
        }
        BKind::Scale(a, k) => {
            let a = eval(a, b)?;
            if *k >= 0 {
                let m = pow10(*k as u8);
                map_num(&a, |x| x.checked_mul(m).ok_or_else(overflow))?
            } else {
                let k = k.unsigned_abs();
                map_num(&a, |x| Ok(div_round(x, k)))?
            }
        }
        BKind::Cmp(op, l, r) => {
            let l = eval(l, b)?;
            // A column against a constant: no splat.
            if let (BKind::Const(Value::Num(c)), Col::Num(x)) = (&r.kind, &*l) {
                Col::Bool(x.iter().map(|p| cmp_holds(*op, p.cmp(c))).collect())
            } else if let (BKind::Const(Value::Str(c)), Col::Str(x)) = (&r.kind, &*l) {
                Col::Bool(per_distinct(x, |p| cmp_holds(*op, p.cmp(&**c))))
            } else {
                let r = eval(r, b)?;
                Col::Bool(compare(*op, &l, &r)?)
            }
        }
        BKind::And(l, r) | BKind::Or(l, r) => {
            let and = matches!(e.kind, BKind::And(..));
            let l = eval(l, b)?;
            let x = bools(&l)?;
            // Skip the right side when the left decides every row.
            if x.iter().all(|&v| v != and) {
                return Ok(Cow::Owned(Col::Bool(vec![!and; n])));
            }
            let r = eval(r, b)?;
            let y = bools(&r)?;
            Col::Bool(x.iter().zip(y).map(|(&p, &q)| if and { p && q } else { p || q }).collect())
        }
        BKind::Not(a) => Col::Bool(bools(&*eval(a, b)?)?.iter().map(|v| !v).collect()),
        BKind::Neg(a) => map_num(&*eval(a, b)?, |x| x.checked_neg().ok_or_else(overflow))?,
        BKind::DateAdd(a, months, days) => map_num(&*eval(a, b)?, |x| {
            // A stored date may be anything (a damaged image): keep to i32 days.
            let d = i64::from(i32::try_from(x).map_err(|_| overflow())?);
            let d = if *months != 0 { add_months(d, *months).ok_or_else(overflow)? } else { d };
            let d = d.checked_add(*days).ok_or_else(overflow)?;
            if i32::try_from(d).is_err() {
                return Err(overflow());
            }
            Ok(d.into())
        })?,
        BKind::Case(whens, els) => {
            let mut choice = vec![whens.len(); n];
            let mut undecided = n;
            for (k, (c, _)) in whens.iter().enumerate() {
                if undecided == 0 {
                    break;
                }
                let c = eval(c, b)?;
                for (ch, &t) in choice.iter_mut().zip(bools(&c)?) {
                    if *ch == whens.len() && t {
                        *ch = k;
                        undecided -= 1;
                    }
                }
            }
            let mut vals = Vec::with_capacity(whens.len() + 1);
            for (_, v) in whens {
                vals.push(eval(v, b)?);
            }
            vals.push(eval(els, b)?);
            match &*vals[0] {
                Col::Num(_) => Col::Num((0..n).map(|i| nums(&vals[choice[i]]).map(|v| v[i])).collect::<Result<_>>()?),
                Col::Str(_) => Col::Str(Strs::from_vec(
                    (0..n).map(|i| strs(&vals[choice[i]]).map(|v| v.get(i).clone())).collect::<Result<_>>()?,
                )),
                Col::Bool(_) => Col::Bool((0..n).map(|i| bools(&vals[choice[i]]).map(|v| v[i])).collect::<Result<_>>()?),
                Col::Absent => return Err(internal("CASE over nothing")),
            }
        }
        BKind::Like(a, p, neg) => {
            let a = eval(a, b)?;
            Col::Bool(per_distinct(strs(&a)?, |s| like(s, p) != *neg))
        }
        BKind::In(a, set, neg) => {
            let a = eval(a, b)?;
            match &*a {
                Col::Num(x) => {
                    let mut s: Vec<i128> = set.iter().filter_map(|v| if let Value::Num(n) = v { Some(*n) } else { None }).collect();
                    s.sort_unstable();
                    Col::Bool(x.iter().map(|v| s.binary_search(v).is_ok() != *neg).collect())
                }
                Col::Str(x) => Col::Bool(per_distinct(x, |v| set.iter().any(|s| matches!(s, Value::Str(t) if **t == *v)) != *neg)),
                _ => return Err(internal("IN over a condition")),
            }
        }
        BKind::Extract(unit, a) => map_num(&*eval(a, b)?, |x| {
            // A stored date may be anything (a damaged image): keep to i32 days.
            let d = i64::from(i32::try_from(x).map_err(|_| overflow())?);
            let (y, m, dd) = civil_from_days(d);
            Ok(match unit {
                Unit::Year => y.into(),
                Unit::Month => m.into(),
                Unit::Day => dd.into(),
            })
        })?,
        BKind::Concat(l, r) => {
            let (l, r) = (eval(l, b)?, eval(r, b)?);
            let (x, y) = (strs(&l)?, strs(&r)?);
            Col::Str(Strs::from_vec(x.iter().zip(y.iter()).map(|(p, q)| Arc::from(format!("{p}{q}").as_str())).collect()))
        }
        BKind::ToDate(a) => {
            let a = eval(a, b)?;
            Col::Num(
                strs(&a)?
                    .iter()
                    .map(|s| {
                        parse_date(s.trim())
                            .map(i128::from)
                            .ok_or_else(|| Error::new(ErrorKind::Data, format!("invalid date '{s}': use YYYY-MM-DD")))
                    })
                    .collect::<Result<_>>()?,
            )
        }
        BKind::ToText(a) => {
            let ty = a.ty;
            let a = eval(a, b)?;
            Col::Str(Strs::from_vec((0..n).map(|i| Arc::from(a.value(i).render(ty).unwrap_or_default().as_str())).collect()))
        }
    };
    if col.len() != n && !matches!(col, Col::Absent) {
        return Err(internal("column length"));
    }
    Ok(Cow::Owned(col))
}

/// Evaluates an expression without columns (constant folding).
pub fn eval_const(e: &BExpr) -> Result<Value> {
    let b = Batch { cols: Vec::new(), rows: 1 };
    Ok(eval(e, &b)?.value(0))
}

/// Runs tasks `0..n`, on one core or many.
pub trait Executor: Sync {
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync));
}

/// Every task on the calling core, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Executor for Serial {
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        for i in 0..tasks {
            f(i);
        }
    }
}

/// Host threads taking morsels from a shared counter (feature `std`).
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct Threads(pub usize);

#[cfg(feature = "std")]
impl Executor for Threads {
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.0.clamp(1, 256).min(tasks.max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, AO::Relaxed);
                    if i >= tasks {
                        break;
                    }
                    f(i);
                });
            }
        });
    }
}

/// Runs `f` on `0..n` with `ex`; results in task order, or the first error
/// (tasks not yet started when one fails are skipped).
pub fn map<T: Send>(ex: &dyn Executor, n: usize, f: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
    let slots: Vec<Mutex<Option<Result<T>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let failed = AtomicBool::new(false);
    ex.run(n, &|i| {
        if failed.load(AO::Relaxed) {
            return;
        }
        let r = f(i);
        if r.is_err() {
            failed.store(true, AO::Relaxed);
        }
        *slots[i].lock() = Some(r);
    });
    let mut out = Vec::with_capacity(n);
    let mut first_err = None;
    for s in slots {
        match s.into_inner() {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None if out.len() == n => Ok(out),
        None => Err(internal("a task did not run")),
    }
}

/// Bounds on what a query may hold in memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rows of a join's build side, and rows a query returns.
    pub max_rows: usize,
    /// Groups of one aggregation.
    pub max_groups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_rows: 20_000_000, max_groups: 5_000_000 }
    }
}

/// What a query did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Row groups read (any table).
    pub groups_read: usize,
    /// Row groups skipped by their zone maps.
    pub groups_skipped: usize,
}

/// FxHash: fast, not DoS-resistant (keys come from the image, not clients).
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_i128(&mut self, v: i128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut a = [0u8; 8];
            a[..c.len()].copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(a)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

type Map<V> = hashbrown::HashMap<Box<[u8]>, V, BuildHasherDefault<Fx>>;

fn encode_key(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0),
        Value::Num(x) => {
            out.push(1);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(2);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => out.extend_from_slice(&[3, u8::from(*b)]),
    }
}

/// `encode_key` of `c.value(i)`, without making the value.
fn col_key(c: &Col, i: usize, out: &mut Vec<u8>) {
    match c {
        Col::Absent => out.push(0),
        Col::Num(v) => {
            out.push(1);
            out.extend_from_slice(&v[i].to_le_bytes());
        }
        Col::Str(v) => {
            let s = v.get(i);
            out.push(2);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Col::Bool(v) => out.extend_from_slice(&[3, u8::from(v[i])]),
    }
}

fn row_key(cols: &[Cow<'_, Col>], i: usize, out: &mut Vec<u8>) {
    out.clear();
    for c in cols {
        col_key(c, i, out);
    }
}

/// Compares row `i` of `c` with `v` (same type).
fn cmp_col_value(c: &Col, i: usize, v: &Value) -> Ordering {
    match (c, v) {
        (Col::Num(x), Value::Num(y)) => x[i].cmp(y),
        (Col::Str(x), Value::Str(y)) => x.get(i).cmp(y),
        (Col::Bool(x), Value::Bool(y)) => x[i].cmp(y),
        _ => Ordering::Equal,
    }
}

/// A join's build side: its rows and a hash table over its keys.
struct HashTable {
    batch: Batch,
    heads: Heads,
    next: Vec<u32>,
    /// The columns a probe's output carries.
    gather: Vec<bool>,
}

/// The first row of each key: by number when the key is one number (the
/// usual join on an id), else by the key's bytes.
enum Heads {
    Num(hashbrown::HashMap<i128, u32, BuildHasherDefault<Fx>>),
    Bytes(Map<u32>),
}

/// Chains row `i` in under its key's head.
fn chain<K: core::hash::Hash + Eq>(heads: &mut hashbrown::HashMap<K, u32, BuildHasherDefault<Fx>>, key: K, i: usize, nx: &mut u32) {
    match heads.get_mut(&key) {
        Some(h) => {
            *nx = *h;
            *h = i as u32;
        }
        None => {
            heads.insert(key, i as u32);
        }
    }
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Acc {
    sum: i128,
    count: i64,
    min: Option<Value>,
    max: Option<Value>,
}

const ACC0: Acc = Acc { sum: 0, count: 0, min: None, max: None };

fn ord_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Num(x), Value::Num(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        _ => Ordering::Less,
    }
}

impl Acc {
    fn add(&mut self, f: AggFn, v: Option<Value>) -> Result<()> {
        self.count += 1;
        match (f, v) {
            (AggFn::Sum | AggFn::Avg, Some(Value::Num(x))) => self.sum = self.sum.checked_add(x).ok_or_else(overflow)?,
            (AggFn::Min, Some(v)) if self.min.as_ref().is_none_or(|m| ord_values(&v, m) == Ordering::Less) => {
                self.min = Some(v);
            }
            (AggFn::Max, Some(v)) if self.max.as_ref().is_none_or(|m| ord_values(&v, m) == Ordering::Greater) => {
                self.max = Some(v);
            }
            _ => {}
        }
        Ok(())
    }
    fn merge(&mut self, f: AggFn, o: Acc) -> Result<()> {
        self.count += o.count;
        self.sum = self.sum.checked_add(o.sum).ok_or_else(overflow)?;
        if let Some(m) = o.min {
            self.count -= 1;
            self.add(f, Some(m))?;
        }
        if let Some(m) = o.max {
            self.count -= 1;
            self.add(f, Some(m))?;
        }
        Ok(())
    }
}

/// A (partial) hash aggregate.
struct AggTable {
    map: Map<u32>,
    keys: Vec<Vec<Value>>,
    accs: Vec<Acc>,
}

/// One query's run.
struct Run<'a, D> {
    db: &'a Db<D>,
    plan: &'a Plan,
    limits: Limits,
    read: AtomicUsize,
    skipped: AtomicUsize,
}

fn zone_excludes(zone: &Zone, op: BinOp, v: &Value) -> bool {
    let o = |min: Ordering, max: Ordering| match op {
        // min.cmp(v), max.cmp(v)
        BinOp::Eq => min == Ordering::Greater || max == Ordering::Less,
        BinOp::Lt => min != Ordering::Less,
        BinOp::Le => min == Ordering::Greater,
        BinOp::Gt => max != Ordering::Greater,
        BinOp::Ge => max == Ordering::Less,
        BinOp::Ne => min == Ordering::Equal && max == Ordering::Equal,
        _ => false,
    };
    match (zone, v) {
        (Zone::Num { min, max }, Value::Num(x)) => o(i128::from(*min).cmp(x), i128::from(*max).cmp(x)),
        (Zone::Str { min, max }, Value::Str(x)) => o((**min).cmp(&**x), (**max).cmp(&**x)),
        _ => false,
    }
}

fn flip(op: BinOp) -> BinOp {
    match op {
        BinOp::Lt => BinOp::Gt,
        BinOp::Le => BinOp::Ge,
        BinOp::Gt => BinOp::Lt,
        BinOp::Ge => BinOp::Le,
        o => o,
    }
}

impl<D: BlockDevice + Send> Run<'_, D> {
    /// Can the zone maps rule out row group `g` of FROM entry `t`?
    fn pruned(&self, t: usize, g: usize) -> bool {
        let table = &self.db.tables[self.plan.tables[t]];
        let zone = |scope_col: usize| &table.groups[g].chunks[self.plan.scope[scope_col].col].zone;
        self.plan.filters[t].iter().any(|f| match &f.kind {
            BKind::Cmp(op, l, r) => match (&l.kind, &r.kind) {
                (BKind::Col(c), BKind::Const(v)) => zone_excludes(zone(*c), *op, v),
                (BKind::Const(v), BKind::Col(c)) => zone_excludes(zone(*c), flip(*op), v),
                _ => false,
            },
            BKind::In(a, set, false) => match &a.kind {
                BKind::Col(c) => set.iter().all(|v| zone_excludes(zone(*c), BinOp::Eq, v)),
                _ => false,
            },
            BKind::Const(Value::Bool(false)) => true,
            _ => false,
        })
    }

    fn read_col(&self, t: usize, g: usize, scope_col: usize) -> Result<Option<Chunk>> {
        let table = &self.db.tables[self.plan.tables[t]];
        self.db.chunk(table, g, self.plan.scope[scope_col].col).map(Some)
    }

    /// Row group `g` of FROM entry `t`, filtered, in batches.
    /// `keep`: the columns the batches must carry (all read ones if `None`).
    fn scan_group(&self, t: usize, g: usize, keep: Option<&[bool]>) -> Result<Vec<Batch>> {
        if self.pruned(t, g) {
            self.skipped.fetch_add(1, AO::Relaxed);
            return Ok(Vec::new());
        }
        self.read.fetch_add(1, AO::Relaxed);
        let plan = self.plan;
        let table = &self.db.tables[plan.tables[t]];
        let rows = table.groups[g].rows;
        let width = plan.scope.len();
        // Decoded chunks stay as stored (i64); batches are cut from them.
        let mut cols: Vec<Option<Chunk>> = (0..width).map(|_| None).collect();
        let mut fcols = Vec::new();
        for f in &plan.filters[t] {
            f.cols(&mut fcols);
        }
        fcols.sort_unstable();
        fcols.dedup();
        for &c in &fcols {
            cols[c] = self.read_col(t, g, c)?;
        }
        // Test the filters a batch at a time.
        let mut sel: Vec<u32> = Vec::new();
        let mut start = 0;
        while start < rows {
            let end = (start + BATCH).min(rows);
            if plan.filters[t].is_empty() {
                sel.extend(start as u32..end as u32);
            } else {
                let b = Batch { cols: cols.iter().map(|c| chunk_take(c, start as u32..end as u32)).collect(), rows: end - start };
                let mut mask = vec![true; end - start];
                for f in &plan.filters[t] {
                    let m = eval(f, &b)?;
                    for (a, &x) in mask.iter_mut().zip(bools(&m)?) {
                        *a &= x;
                    }
                }
                sel.extend((start..end).filter(|&i| mask[i - start]).map(|i| i as u32));
            }
            start = end;
        }
        if sel.is_empty() {
            return Ok(Vec::new());
        }
        for &c in &plan.needed[t] {
            if cols[c].is_none() {
                cols[c] = self.read_col(t, g, c)?;
            }
        }
        Ok(sel
            .chunks(BATCH)
            .map(|idx| Batch {
                cols: cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| if keep.is_none_or(|k| k[i]) { chunk_take(c, idx.iter().copied()) } else { Col::Absent })
                    .collect(),
                rows: idx.len(),
            })
            .collect())
    }

    fn scan_table(&self, ex: &dyn Executor, t: usize) -> Result<Batch> {
        let groups = self.db.tables[self.plan.tables[t]].groups.len();
        let parts = map(ex, groups, |g| self.scan_group(t, g, None))?;
        let mut out = Batch { cols: vec![Col::Absent; self.plan.scope.len()], rows: 0 };
        for b in parts.into_iter().flatten() {
            out.append(b);
            if out.rows > self.limits.max_rows {
                return Err(Error::new(ErrorKind::Limit, format!("a join input holds more than {} rows", self.limits.max_rows)));
            }
        }
        Ok(out)
    }

    fn build(&self, s: &JoinStep, batch: Batch) -> Result<HashTable> {
        let keys: Vec<Cow<'_, Col>> = if batch.rows == 0 {
            Vec::new()
        } else {
            s.build_keys.iter().map(|k| eval(k, &batch)).collect::<Result<_>>()?
        };
        let mut next = vec![NONE; batch.rows];
        let heads = match &keys[..] {
            [k] if matches!(&**k, Col::Num(_)) => {
                let v = nums(k)?;
                let mut heads = hashbrown::HashMap::default();
                for (i, nx) in next.iter_mut().enumerate() {
                    chain(&mut heads, v[i], i, nx);
                }
                Heads::Num(heads)
            }
            _ => {
                let mut heads = Map::default();
                let mut buf = Vec::new();
                for (i, nx) in next.iter_mut().enumerate() {
                    row_key(&keys, i, &mut buf);
                    chain(&mut heads, buf.clone().into_boxed_slice(), i, nx);
                }
                Heads::Bytes(heads)
            }
        };
        drop(keys);
        Ok(HashTable { batch, heads, next, gather: Vec::new() })
    }

    /// Probes join `k` (of `steps`) with `b` and pushes what matches,
    /// at most [`BATCH`] rows at a time, through the joins after it into
    /// `sink`: a join that multiplies rows never holds more than a batch.
    fn push(&self, steps: &[(JoinStep, HashTable)], b: Batch, sink: &mut dyn FnMut(Batch) -> Result<()>) -> Result<()> {
        let Some(((s, ht), rest)) = steps.split_first() else {
            return if b.rows == 0 { Ok(()) } else { sink(b) };
        };
        if b.rows == 0 {
            return Ok(());
        }
        let keys: Vec<Cow<'_, Col>> = s.probe_keys.iter().map(|k| eval(k, &b)).collect::<Result<_>>()?;
        let (mut pi, mut bi) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
        let mut buf = Vec::new();
        let mut emit = |pi: &mut Vec<u32>, bi: &mut Vec<u32>| -> Result<()> {
            // Only what this join's filters or later steps read goes on.
            let g = &ht.gather;
            let cols = b.cols.iter().enumerate().map(|(c, col)| if g[c] { col.take(pi) } else { Col::Absent }).collect();
            let mut out = Batch { cols, rows: pi.len() };
            for &c in &self.plan.needed[s.table] {
                if g[c] {
                    out.cols[c] = ht.batch.cols[c].take(bi);
                }
            }
            pi.clear();
            bi.clear();
            let out = filter_all(&s.after, out)?;
            self.push(rest, out, sink)
        };
        let num_key = match (&ht.heads, &keys[..]) {
            (Heads::Num(_), [k]) => Some(nums(k)?),
            _ => None,
        };
        for i in 0..b.rows {
            let head = match (&ht.heads, num_key) {
                (Heads::Num(h), Some(v)) => h.get(&v[i]),
                (Heads::Bytes(h), _) => {
                    row_key(&keys, i, &mut buf);
                    h.get(&buf[..])
                }
                _ => return Err(internal("join key types")),
            };
            let mut at = head.copied().unwrap_or(NONE);
            while at != NONE {
                pi.push(i as u32);
                bi.push(at);
                at = ht.next[at as usize];
                if pi.len() == BATCH {
                    emit(&mut pi, &mut bi)?;
                }
            }
        }
        if !pi.is_empty() {
            emit(&mut pi, &mut bi)?;
        }
        Ok(())
    }
}

/// Distinct values of `keys` over `b`.
fn distinct_keys(keys: &[BExpr], b: &Batch) -> Result<usize> {
    if b.rows == 0 {
        return Ok(0);
    }
    let cols: Vec<Cow<'_, Col>> = keys.iter().map(|k| eval(k, b)).collect::<Result<_>>()?;
    if let [k] = &cols[..] {
        if let Col::Num(v) = &**k {
            let mut seen: hashbrown::HashSet<i128, BuildHasherDefault<Fx>> = hashbrown::HashSet::default();
            seen.extend(v.iter().copied());
            return Ok(seen.len());
        }
    }
    let mut seen: Map<()> = Map::default();
    let mut buf = Vec::new();
    for i in 0..b.rows {
        row_key(&cols, i, &mut buf);
        if !seen.contains_key(&buf[..]) {
            seen.insert(buf.clone().into_boxed_slice(), ());
        }
    }
    Ok(seen.len())
}

fn filter_all(fs: &[BExpr], b: Batch) -> Result<Batch> {
    if fs.is_empty() || b.rows == 0 {
        return Ok(b);
    }
    let mut mask = vec![true; b.rows];
    for f in fs {
        let m = eval(f, &b)?;
        for (a, &x) in mask.iter_mut().zip(bools(&m)?) {
            *a &= x;
        }
    }
    Ok(b.filter(&mask))
}

impl AggTable {
    fn new() -> Self {
        AggTable { map: Map::default(), keys: Vec::new(), accs: Vec::new() }
    }

    fn group(&mut self, key: &[u8], vals: impl FnOnce() -> Vec<Value>, naggs: usize, max: usize) -> Result<usize> {
        if let Some(&g) = self.map.get(key) {
            return Ok(g as usize);
        }
        let g = self.keys.len();
        if g >= max {
            return Err(Error::new(ErrorKind::Limit, format!("more than {max} groups")));
        }
        self.map.insert(key.into(), g as u32);
        self.keys.push(vals());
        self.accs.extend(core::iter::repeat_n(ACC0, naggs));
        Ok(g)
    }

    fn update(&mut self, plan: &Plan, b: &Batch, max: usize) -> Result<()> {
        let Some(a) = &plan.agg else { return Ok(()) };
        let keys: Vec<Cow<'_, Col>> = a.keys.iter().map(|k| eval(k, b)).collect::<Result<_>>()?;
        let args: Vec<Option<Cow<'_, Col>>> =
            a.aggs.iter().map(|c| c.arg.as_ref().map(|e| eval(e, b)).transpose()).collect::<Result<_>>()?;
        let n = a.aggs.len();
        let mut buf = Vec::new();
        // Keys that are all dictionary-coded text with few combinations:
        // the batch's groups by code combination, looked up once each.
        let mut radix = Vec::with_capacity(keys.len());
        let mut combos = 1usize;
        for k in &keys {
            match &**k {
                Col::Str(x) if combos.saturating_mul(x.dict.len()) <= BATCH => {
                    radix.push(x);
                    combos *= x.dict.len();
                }
                _ => break,
            }
        }
        let mut local = if radix.len() == keys.len() && !keys.is_empty() { vec![NONE; combos] } else { Vec::new() };
        for i in 0..b.rows {
            let slot = if local.is_empty() {
                None
            } else {
                Some(radix.iter().fold(0usize, |acc, x| acc * x.dict.len() + x.codes[i] as usize))
            };
            let g = match slot.map(|s| local[s]) {
                Some(g) if g != NONE => g as usize,
                _ => {
                    row_key(&keys, i, &mut buf);
                    let g = self.group(&buf, || keys.iter().map(|c| c.value(i)).collect(), n, max)?;
                    if let Some(s) = slot {
                        local[s] = g as u32;
                    }
                    g
                }
            };
            for (j, (call, arg)) in a.aggs.iter().zip(&args).enumerate() {
                let acc = &mut self.accs[g * n + j];
                acc.count += 1;
                let Some(c) = arg.as_deref() else { continue };
                match (call.f, c) {
                    (AggFn::Sum | AggFn::Avg, Col::Num(v)) => acc.sum = acc.sum.checked_add(v[i]).ok_or_else(overflow)?,
                    (AggFn::Min, c) if acc.min.as_ref().is_none_or(|m| cmp_col_value(c, i, m) == Ordering::Less) => {
                        acc.min = Some(c.value(i));
                    }
                    (AggFn::Max, c) if acc.max.as_ref().is_none_or(|m| cmp_col_value(c, i, m) == Ordering::Greater) => {
                        acc.max = Some(c.value(i));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, plan: &Plan, o: AggTable, max: usize) -> Result<()> {
        let Some(a) = &plan.agg else { return Ok(()) };
        let n = a.aggs.len();
        let mut buf = Vec::new();
        let mut accs = o.accs.into_iter();
        for vals in o.keys {
            buf.clear();
            for v in &vals {
                encode_key(v, &mut buf);
            }
            let g = self.group(&buf, || vals, n, max)?;
            for (j, call) in a.aggs.iter().enumerate() {
                let acc = accs.next().ok_or_else(|| internal("accumulators"))?;
                self.accs[g * n + j].merge(call.f, acc)?;
            }
        }
        Ok(())
    }
}

/// What the pipeline gives per morsel.
enum Part {
    Agg(AggTable),
    Rows(Batch),
}

/// A query's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<(String, Type)>,
    pub rows: Vec<Vec<Value>>,
    pub stats: Stats,
}

impl ResultSet {
    /// Every value as text (`None` for NULL), as PostgreSQL sends them.
    pub fn text(&self) -> Vec<Vec<Option<String>>> {
        self.rows
            .iter()
            .map(|r| r.iter().zip(&self.columns).map(|(v, (_, t))| v.render(*t)).collect())
            .collect()
    }
}

fn sort_rows(plan: &Plan, out: &Batch) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..out.rows as u32).collect();
    if plan.order.is_empty() {
        if let Some(l) = plan.limit {
            idx.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        return idx;
    }
    let cmp = |a: &u32, b: &u32| -> Ordering {
        for &(c, desc) in &plan.order {
            let o = match &out.cols[c] {
                Col::Num(v) => v[*a as usize].cmp(&v[*b as usize]),
                Col::Str(v) => v.get(*a as usize).cmp(v.get(*b as usize)),
                Col::Bool(v) => v[*a as usize].cmp(&v[*b as usize]),
                Col::Absent => Ordering::Equal,
            };
            let o = if desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.cmp(b)
    };
    match plan.limit.and_then(|l| usize::try_from(l).ok()) {
        // Top-N: partition around the N-th, then sort the first N.
        Some(l) if l < idx.len() => {
            if l > 0 {
                idx.select_nth_unstable_by(l - 1, cmp);
            }
            idx.truncate(l);
            idx.sort_unstable_by(cmp);
        }
        _ => idx.sort_unstable_by(cmp),
    }
    idx
}

/// Runs a plan.
pub fn run<D: BlockDevice + Send>(db: &Db<D>, plan: &Plan, ex: &dyn Executor, limits: Limits) -> Result<ResultSet> {
    let r = Run { db, plan, limits, read: AtomicUsize::new(0), skipped: AtomicUsize::new(0) };
    // Scan and filter every table but the driver, then order the joins:
    // the smallest fan-out (rows per distinct key) first, then the fewest rows.
    let n = plan.tables.len();
    let mut scanned: Vec<Option<Batch>> = (0..n).map(|_| None).collect();
    for (t, slot) in scanned.iter_mut().enumerate() {
        if t != plan.driver {
            *slot = Some(r.scan_table(ex, t)?);
        }
    }
    let steps = join_order(n, plan.driver, &plan.edges, &plan.multi, &mut |cands| {
        if cands.len() == 1 {
            return Ok(0);
        }
        let mut best = (0, (u128::MAX, usize::MAX));
        for (i, c) in cands.iter().enumerate() {
            let b = scanned[c.table].as_ref().ok_or_else(|| internal("join input"))?;
            let cost = (b.rows as u128 * 1024 / distinct_keys(&c.build_keys, b)?.max(1) as u128, b.rows);
            if cost < best.1 {
                best = (i, cost);
            }
        }
        Ok(best.0)
    })?
    .map_err(|_| internal("a table is not joined"))?;
    // Which columns each stage must carry, from the last back: what the
    // aggregate or the outputs read, then each join's probe keys and filters.
    let width = plan.scope.len();
    let mut live = vec![false; width];
    let mut used = Vec::new();
    match &plan.agg {
        Some(a) => a.keys.iter().chain(a.aggs.iter().filter_map(|c| c.arg.as_ref())).for_each(|e| e.cols(&mut used)),
        None => plan.outputs.iter().for_each(|e| e.cols(&mut used)),
    }
    let mark = |live: &mut Vec<bool>, used: &mut Vec<usize>| {
        for c in used.drain(..) {
            live[c] = true;
        }
    };
    mark(&mut live, &mut used);
    let mut gathers = vec![Vec::new(); steps.len()];
    for (i, s) in steps.iter().enumerate().rev() {
        s.after.iter().for_each(|e| e.cols(&mut used));
        mark(&mut live, &mut used);
        gathers[i] = live.clone();
        s.probe_keys.iter().for_each(|e| e.cols(&mut used));
        mark(&mut live, &mut used);
    }
    let scan_keep = live;
    let mut joins = Vec::with_capacity(steps.len());
    for (s, gather) in steps.into_iter().zip(gathers) {
        let batch = scanned[s.table].take().ok_or_else(|| internal("join input"))?;
        let mut ht = r.build(&s, batch)?;
        ht.gather = gather;
        joins.push((s, ht));
    }
    let groups = db.tables[plan.tables[plan.driver]].groups.len();
    let max_groups = limits.max_groups;
    let parts = map(ex, groups, |g| {
        let mut agg = AggTable::new();
        let mut rows = Batch { cols: vec![Col::Absent; plan.outputs.len()], rows: 0 };
        for b in r.scan_group(plan.driver, g, Some(&scan_keep))? {
            r.push(&joins, b, &mut |b| {
                if plan.agg.is_some() {
                    agg.update(plan, &b, max_groups)
                } else {
                    let cols = plan.outputs.iter().map(|e| eval(e, &b).map(Cow::into_owned)).collect::<Result<Vec<_>>>()?;
                    rows.append(Batch { cols, rows: b.rows });
                    if rows.rows > limits.max_rows {
                        return Err(Error::new(ErrorKind::Limit, format!("more than {} result rows", limits.max_rows)));
                    }
                    Ok(())
                }
            })?;
        }
        Ok(if plan.agg.is_some() { Part::Agg(agg) } else { Part::Rows(rows) })
    })?;
    drop(joins);

    let mut nulls: Vec<bool> = Vec::new();
    let mut nkeys = 0;
    let out = if let Some(a) = &plan.agg {
        let mut all = AggTable::new();
        for p in parts {
            if let Part::Agg(t) = p {
                all.merge(plan, t, max_groups)?;
            }
        }
        nkeys = a.keys.len();
        let n = a.aggs.len();
        if a.keys.is_empty() && all.keys.is_empty() {
            // An aggregate over no rows: one row, NULL but for counts.
            all.group(&[], Vec::new, n, 1)?;
            nulls = a.aggs.iter().map(|c| !matches!(c.f, AggFn::Count | AggFn::CountStar)).collect();
        }
        let groups = all.keys.len();
        let mut cols: Vec<Col> = Vec::with_capacity(nkeys + n);
        for (k, e) in a.keys.iter().enumerate() {
            cols.push(Col::from_values(e.ty, all.keys.iter().map(|g| g[k].clone())));
        }
        for (j, call) in a.aggs.iter().enumerate() {
            let accs = (0..groups).map(|g| &all.accs[g * n + j]);
            let col = match call.f {
                AggFn::Count | AggFn::CountStar => Col::Num(accs.map(|a| i128::from(a.count)).collect()),
                AggFn::Sum => Col::Num(accs.map(|a| a.sum).collect()),
                AggFn::Avg => {
                    let from = call.arg.as_ref().map_or(0, |e| e.ty.scale());
                    let m = pow10(call.ty.scale() - from);
                    Col::Num(
                        accs.map(|a| {
                            let s = a.sum.checked_mul(m).ok_or_else(overflow)?;
                            let c = i128::from(a.count.max(1));
                            let (q, rem) = (s / c, s % c);
                            Ok(if rem.abs() * 2 >= c { q + s.signum() } else { q })
                        })
                        .collect::<Result<_>>()?,
                    )
                }
                AggFn::Min | AggFn::Max => {
                    let pick = |a: &Acc| if call.f == AggFn::Min { a.min.clone() } else { a.max.clone() }.unwrap_or(Value::Null);
                    Col::from_values(call.ty, accs.map(pick))
                }
            };
            cols.push(col);
        }
        let post = Batch { cols, rows: groups };
        let post = match &a.having {
            Some(h) => filter_all(core::slice::from_ref(h), post)?,
            None => post,
        };
        let cols = plan.outputs.iter().map(|e| eval(e, &post).map(Cow::into_owned)).collect::<Result<Vec<_>>>()?;
        Batch { cols, rows: post.rows }
    } else {
        let mut all = Batch { cols: vec![Col::Absent; plan.outputs.len()], rows: 0 };
        for p in parts {
            if let Part::Rows(b) = p {
                all.append(b);
            }
        }
        if all.rows > limits.max_rows {
            return Err(Error::new(ErrorKind::Limit, format!("more than {} result rows", limits.max_rows)));
        }
        all
    };
    let idx = sort_rows(plan, &out);
    // Outputs that read a NULL aggregate are NULL.
    let null_out: Vec<bool> = plan.outputs[..plan.visible]
        .iter()
        .map(|e| {
            let mut c = Vec::new();
            e.cols(&mut c);
            c.iter().any(|&i| i >= nkeys && nulls.get(i - nkeys).copied().unwrap_or(false))
        })
        .collect();
    let rows = idx
        .iter()
        .map(|&i| {
            (0..plan.visible)
                .map(|c| if null_out[c] { Value::Null } else { out.cols[c].value(i as usize) })
                .collect()
        })
        .collect();
    let columns = (0..plan.visible).map(|c| (plan.names[c].clone(), plan.outputs[c].ty)).collect();
    let stats = Stats { groups_read: r.read.load(AO::Relaxed), groups_skipped: r.skipped.load(AO::Relaxed) };
    Ok(ResultSet { columns, rows, stats })
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        assert!(like("PROMO BRUSHED", "PROMO%"));
        assert!(like("abc", "a_c"));
        assert!(like("abc", "%"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("special requests", "%special%requests%"));
        assert!(!like("special request", "%special%requests%"));
        assert!(like("aXbXc", "%b%c"));
        assert!(!like("abc", "ab"));
        assert!(like("héllo", "h_llo"));
        let long = "a".repeat(5000);
        assert!(!like(&long, "%a%a%a%a%b"));
    }
}

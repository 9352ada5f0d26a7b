//! Vectorized execution. Rows move in batches of at most [`BATCH`] rows,
//! column by column (numbers as 64-bit vectors, 128-bit only where a
//! result outgrew 64 bits); every expression is evaluated a whole column
//! at a time. A query is a pipeline driven by the morsels (row groups) of
//! its largest table: scan (zone maps skip row groups; the filters run on
//! the packed chunks into a selection vector, each reading its column only
//! when its turn comes; only the rows kept are unpacked), hash-join probes
//! into the other tables (each scanned and filtered, cut down by
//! semi-joins with its neighbours, then hashed), filters, then a partial
//! hash aggregate or a projection per morsel. Morsels run
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

use crate::encode::{parse_ints, parse_ints_reuse, parse_strs, Cur, Ints, Strs, StrsView};
use crate::plan::{join_order, AggFn, Arith, BExpr, BKind, JoinStep, Plan};
use crate::sql::{BinOp, Unit};
use crate::storage::{Db, Zone};
use crate::types::{add_months, civil_from_days, parse_date, pow10, Error, ErrorKind, Result, Type, Value};

/// Rows per batch.
pub const BATCH: usize = 4096;

/// A column of a batch. Numbers (integers, decimals, dates) are `Int`
/// while every value fits in 64 bits, which is what a scan produces and
/// what arithmetic keeps as long as nothing overflows; `Num` holds 128-bit
/// values, where a result outgrew 64 bits. The two mean the same values:
/// every consumer accepts both. `Absent` stands for a scope column this
/// part of the pipeline does not carry.
#[derive(Clone, Debug, PartialEq)]
pub enum Col {
    Absent,
    Int(Vec<i64>),
    Num(Vec<i128>),
    Str(Strs),
    Bool(Vec<bool>),
}

/// Numbers as `Int` when every one fits in 64 bits, else as `Num`.
fn narrow(v: Vec<i128>) -> Col {
    if v.iter().all(|&x| i64::try_from(x).is_ok()) {
        Col::Int(v.iter().map(|&x| x as i64).collect())
    } else {
        Col::Num(v)
    }
}

impl Col {
    fn len(&self) -> usize {
        match self {
            Col::Absent => 0,
            Col::Int(v) => v.len(),
            Col::Num(v) => v.len(),
            Col::Str(v) => v.len(),
            Col::Bool(v) => v.len(),
        }
    }
    pub fn value(&self, i: usize) -> Value {
        match self {
            Col::Absent => Value::Null,
            Col::Int(v) => Value::Num(v[i].into()),
            Col::Num(v) => Value::Num(v[i]),
            Col::Str(v) => Value::Str(v.get(i).clone()),
            Col::Bool(v) => Value::Bool(v[i]),
        }
    }
    fn take(&self, idx: &[u32]) -> Col {
        match self {
            Col::Absent => Col::Absent,
            Col::Int(v) => Col::Int(idx.iter().map(|&i| v[i as usize]).collect()),
            Col::Num(v) => Col::Num(idx.iter().map(|&i| v[i as usize]).collect()),
            Col::Str(v) => Col::Str(v.take(idx.iter().copied())),
            Col::Bool(v) => Col::Bool(idx.iter().map(|&i| v[i as usize]).collect()),
        }
    }
    fn append(&mut self, other: Col) {
        match (self, other) {
            (Col::Int(a), Col::Int(b)) => a.extend(b),
            (Col::Num(a), Col::Num(b)) => a.extend(b),
            (Col::Num(a), Col::Int(b)) => a.extend(b.into_iter().map(i128::from)),
            (s @ Col::Int(_), Col::Num(b)) => {
                let Col::Int(a) = &*s else { return };
                let mut w: Vec<i128> = a.iter().map(|&x| x.into()).collect();
                w.extend(b);
                *s = Col::Num(w);
            }
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
            Value::Num(x) => match i64::try_from(*x) {
                Ok(y) => Col::Int(vec![y; n]),
                Err(_) => Col::Num(vec![*x; n]),
            },
            Value::Str(s) => Col::Str(Strs { dict: Arc::new(vec![s.clone()]), codes: vec![0; n] }),
            Value::Bool(b) => Col::Bool(vec![*b; n]),
        }
    }
    fn from_values(ty: Type, vals: impl Iterator<Item = Value>) -> Col {
        match ty {
            Type::Text => Col::Str(Strs::from_vec(vals.map(|v| if let Value::Str(s) = v { s } else { Arc::from("") }).collect())),
            Type::Bool => Col::Bool(vals.map(|v| v == Value::Bool(true)).collect()),
            _ => narrow(vals.map(|v| if let Value::Num(x) = v { x } else { 0 }).collect()),
        }
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

/// The numbers of `c` as 128-bit values (borrowed when they are).
fn wide(c: &Col) -> Result<Cow<'_, [i128]>> {
    match c {
        Col::Num(v) => Ok(Cow::Borrowed(v)),
        Col::Int(v) => Ok(Cow::Owned(v.iter().map(|&x| x.into()).collect())),
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
    let v = wide(c)?
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
        None => Ok(narrow(v)),
    }
}

/// An operand of a 64-bit arithmetic kernel: a column or a constant.
#[derive(Clone, Copy)]
enum Opd<'a> {
    Col(&'a [i64]),
    K(i64),
}

/// `f` of each pair of values, `None` if any overflowed (the caller then
/// computes in 128 bits). Monomorphic per operation and operand shape, so
/// the loops vectorize where the operation allows.
#[inline(always)]
fn int_kernel(a: Opd<'_>, b: Opd<'_>, n: usize, f: impl Fn(i64, i64) -> (i64, bool)) -> Option<Vec<i64>> {
    let mut bad = false;
    let mut g = |p: i64, q: i64| {
        let (r, o) = f(p, q);
        bad |= o;
        r
    };
    let v: Vec<i64> = match (a, b) {
        (Opd::Col(x), Opd::Col(y)) => x.iter().zip(y).map(|(&p, &q)| g(p, q)).collect(),
        (Opd::Col(x), Opd::K(q)) => x.iter().map(|&p| g(p, q)).collect(),
        (Opd::K(p), Opd::Col(y)) => y.iter().map(|&q| g(p, q)).collect(),
        (Opd::K(p), Opd::K(q)) => vec![g(p, q); n],
    };
    (!bad).then_some(v)
}

/// `a op b` on 64-bit operands: `None` when some value overflowed or the
/// operation is not one of `+ - *`.
fn int_arith(op: Arith, a: Opd<'_>, b: Opd<'_>, n: usize) -> Option<Vec<i64>> {
    match op {
        Arith::Add => int_kernel(a, b, n, i64::overflowing_add),
        Arith::Sub => int_kernel(a, b, n, i64::overflowing_sub),
        Arith::Mul => int_kernel(a, b, n, i64::overflowing_mul),
        Arith::Div | Arith::Mod => None,
    }
}

/// A constant number that fits in 64 bits.
fn const_i64(e: &BExpr) -> Option<i64> {
    match &e.kind {
        BKind::Const(Value::Num(c)) => i64::try_from(*c).ok(),
        _ => None,
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
        (Col::Int(x), Col::Int(y)) => x.iter().zip(y).map(|(p, q)| cmp_holds(op, p.cmp(q))).collect(),
        (Col::Int(_) | Col::Num(_), Col::Int(_) | Col::Num(_)) => {
            let (x, y) = (wide(a)?, wide(b)?);
            x.iter().zip(y.iter()).map(|(p, q)| cmp_holds(op, p.cmp(q))).collect()
        }
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
            // 64-bit first: a column or a constant on each side.
            let (lk, rk) = (const_i64(l), const_i64(r));
            let lc = if lk.is_none() { Some(eval(l, b)?) } else { None };
            let rc = if rk.is_none() { Some(eval(r, b)?) } else { None };
            fn opd<'c>(k: Option<i64>, c: &'c Option<Cow<'_, Col>>) -> Option<Opd<'c>> {
                match (k, c.as_deref()) {
                    (Some(k), _) => Some(Opd::K(k)),
                    (None, Some(Col::Int(v))) => Some(Opd::Col(v)),
                    _ => None,
                }
            }
            if let (Some(x), Some(y)) = (opd(lk, &lc), opd(rk, &rc)) {
                if let Some(v) = int_arith(*op, x, y, n) {
                    return Ok(Cow::Owned(Col::Int(v)));
                }
            }
            // A quotient: (p * 10^k) / q, k bringing it to the result's scale.
            let k = (r.ty.scale() + e.ty.scale()).saturating_sub(l.ty.scale());
            let m = pow10(k);
            let l = match lc {
                Some(c) => c,
                None => Cow::Owned(Col::splat(&Value::Num(lk.unwrap_or(0).into()), n)),
            };
            let r = match rc {
                Some(c) => c,
                None => Cow::Owned(Col::splat(&Value::Num(rk.unwrap_or(0).into()), n)),
            };
            let (x, y) = (wide(&l)?, wide(&r)?);
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
                .zip(y.iter())
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
            narrow(v)
        }
        BKind::Scale(a, k) => {
            let a = eval(a, b)?;
            if let (Col::Int(x), 0..=18) = (&*a, *k) {
                if let Some(v) = int_arith(Arith::Mul, Opd::Col(x), Opd::K(10i64.pow(*k as u32)), n) {
                    return Ok(Cow::Owned(Col::Int(v)));
                }
            }
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
            if let (Some(c), Col::Int(x)) = (const_i64(r), &*l) {
                Col::Bool(x.iter().map(|p| cmp_holds(*op, p.cmp(&c))).collect())
            } else if let (BKind::Const(Value::Num(c)), Col::Int(_) | Col::Num(_)) = (&r.kind, &*l) {
                Col::Bool(wide(&l)?.iter().map(|p| cmp_holds(*op, p.cmp(c))).collect())
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
        BKind::Neg(a) => {
            let a = eval(a, b)?;
            match &*a {
                Col::Int(x) if !x.contains(&i64::MIN) => Col::Int(x.iter().map(|&v| -v).collect()),
                _ => map_num(&a, |x| x.checked_neg().ok_or_else(overflow))?,
            }
        }
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
                Col::Int(_) | Col::Num(_) => {
                    let w: Vec<Cow<'_, [i128]>> = vals.iter().map(|v| wide(v)).collect::<Result<_>>()?;
                    narrow((0..n).map(|i| w[choice[i]][i]).collect())
                }
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
                Col::Int(_) | Col::Num(_) => {
                    let mut s: Vec<i128> = set.iter().filter_map(|v| if let Value::Num(n) = v { Some(*n) } else { None }).collect();
                    s.sort_unstable();
                    Col::Bool(wide(&a)?.iter().map(|v| s.binary_search(v).is_ok() != *neg).collect())
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
            Col::Int(
                strs(&a)?
                    .iter()
                    .map(|s| {
                        parse_date(s.trim())
                            .map(i64::from)
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
        Col::Int(v) => {
            out.push(1);
            out.extend_from_slice(&i128::from(v[i]).to_le_bytes());
        }
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
        (Col::Int(x), Value::Num(y)) => i128::from(x[i]).cmp(y),
        (Col::Num(x), Value::Num(y)) => x[i].cmp(y),
        (Col::Str(x), Value::Str(y)) => x.get(i).cmp(y),
        (Col::Bool(x), Value::Bool(y)) => x[i].cmp(y),
        _ => Ordering::Equal,
    }
}

/// The keys of a one-number join key as a bit per value of their range,
/// where that range is at most [`BITS_PER_KEY`] values a key: a probe
/// tests one bit (a load and a shift, the bits small enough to stay in
/// cache) before it looks in the hash table, and most probes that find
/// nothing stop there.
struct KeyBits {
    min: i64,
    words: Vec<u64>,
}

/// The widest key range, in values per key, that gets [`KeyBits`].
const BITS_PER_KEY: u128 = 256;

impl KeyBits {
    fn build(keys: &[i64]) -> Option<KeyBits> {
        let (min, max) = (*keys.iter().min()?, *keys.iter().max()?);
        let span = (i128::from(max) - i128::from(min)) as u128 + 1;
        if span > BITS_PER_KEY * keys.len() as u128 + 4096 {
            return None;
        }
        let mut words = vec![0u64; span.div_ceil(64) as usize];
        for &k in keys {
            let d = (k as u64).wrapping_sub(min as u64);
            words[(d >> 6) as usize] |= 1 << (d & 63);
        }
        Some(KeyBits { min, words })
    }
    #[inline]
    fn has(&self, k: i64) -> bool {
        let d = (k as u64).wrapping_sub(self.min as u64);
        self.words.get((d >> 6) as usize).is_some_and(|w| w >> (d & 63) & 1 != 0)
    }
}

/// A join's build side: its rows and a hash table over its keys.
struct HashTable {
    batch: Batch,
    heads: Heads,
    bits: Option<KeyBits>,
    next: Vec<u32>,
    /// The columns a probe's output carries.
    gather: Vec<bool>,
}

/// The first row of each key: by number when the key is one number that
/// fits in 64 bits in every row (the usual join on an id), else by the
/// key's bytes.
enum Heads {
    Int(IntHeads),
    Bytes(Map<u32>),
}

type IntHeads = hashbrown::HashMap<i64, u32, BuildHasherDefault<Fx>>;


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

/// What one aggregate keeps per group, besides the group's row count
/// (columns hold no NULLs, so `count(x)` is the row count too).
#[derive(Debug)]
enum AccCol {
    /// `count(x)`, `count(*)`.
    Count,
    /// `sum`, `avg`: 128-bit sums.
    Sum(Vec<i128>),
    /// `min` (`max: false`) or `max`: the value so far.
    Pick { max: bool, vals: Vec<Option<Value>> },
}

/// Adds each `v[i]` to `sums[gids[i]]`; `false` if a sum overflowed 128
/// bits (the query then fails, nothing wraps).
#[inline(always)]
fn sum_into<T: Copy + Into<i128>>(sums: &mut [i128], gids: &[u32], v: &[T]) -> bool {
    let mut bad = false;
    for (&g, &x) in gids.iter().zip(v) {
        let s = &mut sums[g as usize];
        let (r, o) = s.overflowing_add(x.into());
        *s = r;
        bad |= o;
    }
    !bad
}

/// Groups up to which [`sum_small`] keeps per-batch 64-bit lanes.
const LANE_GROUPS: usize = 256;

/// `sum_into` for 64-bit values when there are at most [`LANE_GROUPS`]
/// groups and at most [`BATCH`] rows each below 2^51 in magnitude (so no
/// 64-bit sum of them can overflow): four interleaved 64-bit partial sums
/// per group, so that rows of the same group do not wait on each other's
/// store, added into the 128-bit sums at the end. `None` when it does not
/// apply.
fn sum_small(sums: &mut [i128], gids: &[u32], v: &[i64], lanes: &mut Vec<i64>) -> Option<bool> {
    let groups = sums.len();
    // The largest magnitude, to within a factor of 2 (an OR of them all: no branch, vectorized).
    if groups > LANE_GROUPS || v.len() > BATCH || gids.len() != v.len() || v.iter().fold(0, |m, x| m | x.unsigned_abs()) >= 1 << 51 {
        return None;
    }
    lanes.clear();
    lanes.resize(4 * groups, 0);
    let (l0, rest) = lanes.split_at_mut(groups);
    let (l1, rest) = rest.split_at_mut(groups);
    let (l2, l3) = rest.split_at_mut(groups);
    let mut g4 = gids.chunks_exact(4);
    let mut v4 = v.chunks_exact(4);
    for (g, x) in (&mut g4).zip(&mut v4) {
        l0[g[0] as usize] += x[0];
        l1[g[1] as usize] += x[1];
        l2[g[2] as usize] += x[2];
        l3[g[3] as usize] += x[3];
    }
    for (&g, &x) in g4.remainder().iter().zip(v4.remainder()) {
        l0[g as usize] += x;
    }
    let mut ok = true;
    for (g, s) in sums.iter_mut().enumerate() {
        let part = i128::from(l0[g]) + i128::from(l1[g]) + i128::from(l2[g]) + i128::from(l3[g]);
        let (r, o) = s.overflowing_add(part);
        *s = r;
        ok &= !o;
    }
    Some(ok)
}

/// A (partial) hash aggregate: per group its key values, its row count,
/// and what each aggregate keeps, one vector per aggregate.
struct AggTable {
    /// Groups by their key's bytes.
    bytes: Map<u32>,
    /// With one number as the only key: the groups whose key fits in 64
    /// bits, by it (the others are in `bytes`).
    ints: hashbrown::HashMap<i64, u32, BuildHasherDefault<Fx>>,
    int_key: bool,
    keys: Vec<Vec<Value>>,
    count: Vec<i64>,
    accs: Vec<AccCol>,
    /// [`sum_small`]'s partial sums.
    lanes: Vec<i64>,
}

/// One query's run.
struct Run<'a, D> {
    db: &'a Db<D>,
    plan: &'a Plan,
    limits: Limits,
    read: AtomicUsize,
    skipped: AtomicUsize,
    /// Per FROM entry, its filters in the form its scan runs them.
    preds: Vec<Vec<Pred>>,
    /// Scan buffers, reused from morsel to morsel (one set per core at work).
    pool: Mutex<Vec<Scratch>>,
}

/// A pushed-down filter in the form the scan runs it.
#[derive(Debug)]
enum Pred {
    /// Comparisons of one number column with constants, merged: the value
    /// lies in `lo..=hi`. Tested on the packed chunk, no decoding.
    Range { col: usize, lo: i64, hi: i64 },
    /// A condition on one text column: on a dictionary chunk it is
    /// evaluated once per entry, then looked up by each row's code.
    Text { col: usize, expr: BExpr },
    /// Anything else: evaluated on batches of the rows still selected.
    Expr(BExpr),
}

/// FROM entry `t`'s filters as the scan runs them.
fn scan_preds(plan: &Plan, t: usize) -> Vec<Pred> {
    let mut ranges: Vec<(usize, i128, i128)> = Vec::new();
    let mut out = Vec::new();
    for f in &plan.filters[t] {
        let cmp = match &f.kind {
            BKind::Cmp(op, l, r) => match (&l.kind, &r.kind) {
                (BKind::Col(c), BKind::Const(Value::Num(v))) => Some((*c, *op, *v)),
                (BKind::Const(Value::Num(v)), BKind::Col(c)) => Some((*c, flip(*op), *v)),
                _ => None,
            },
            _ => None,
        };
        let range = cmp.filter(|&(c, ..)| plan.scope[c].ty != Type::Text).and_then(|(c, op, v)| {
            let (lo, hi) = match op {
                BinOp::Eq => (v, v),
                BinOp::Lt => (i128::MIN, v.saturating_sub(1)),
                BinOp::Le => (i128::MIN, v),
                BinOp::Gt => (v.saturating_add(1), i128::MAX),
                BinOp::Ge => (v, i128::MAX),
                _ => return None,
            };
            Some((c, lo, hi))
        });
        if let Some((c, lo, hi)) = range {
            match ranges.iter_mut().find(|r| r.0 == c) {
                Some(r) => {
                    r.1 = r.1.max(lo);
                    r.2 = r.2.min(hi);
                }
                None => ranges.push((c, lo, hi)),
            }
            continue;
        }
        let mut cols = Vec::new();
        f.cols(&mut cols);
        cols.sort_unstable();
        cols.dedup();
        out.push(match cols[..] {
            [c] if plan.scope[c].ty == Type::Text => Pred::Text { col: c, expr: f.clone() },
            _ => Pred::Expr(f.clone()),
        });
    }
    let mut preds: Vec<Pred> = ranges
        .into_iter()
        .map(|(col, lo, hi)| {
            let (lo, hi) = (lo.max(i64::MIN.into()), hi.min(i64::MAX.into()));
            // Stored values are 64-bit: a range outside them is empty.
            if lo > hi {
                Pred::Range { col, lo: 1, hi: 0 }
            } else {
                Pred::Range { col, lo: lo as i64, hi: hi as i64 }
            }
        })
        .collect();
    preds.extend(out);
    preds
}

/// Scan buffers: per scope column its chunk's bytes (and whether read),
/// and the selection vectors.
#[derive(Default)]
struct Scratch {
    bufs: Vec<Vec<u8>>,
    /// A chunk the cache holds, instead of `bufs`.
    shared: Vec<Option<Arc<[u8]>>>,
    /// A run-length number chunk, expanded once when it was read (when
    /// `expanded_ok`).
    expanded: Vec<Vec<i64>>,
    expanded_ok: Vec<bool>,
    lens: Vec<Option<usize>>,
    sel: Vec<u32>,
    tmp: Vec<u32>,
}

/// A chunk of a row group, read in place.
enum Src<'a> {
    Int(Ints<'a>),
    Str(StrsView<'a>),
}

impl Src<'_> {
    /// Rows `idx` as a batch column.
    fn gather(&self, idx: &[u32]) -> Result<Col> {
        Ok(match self {
            Src::Int(v) => {
                let mut out = Vec::with_capacity(idx.len());
                v.gather_into(idx, &mut out);
                Col::Int(out)
            }
            Src::Str(v) => Col::Str(v.gather(idx)?),
        })
    }
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

    /// Runs `f` with a set of scan buffers from the pool.
    fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut sc = self.pool.lock().pop().unwrap_or_default();
        let r = f(&mut sc);
        self.pool.lock().push(sc);
        r
    }

    /// Reads scope column `c` of row group `g` of FROM entry `t` into its
    /// buffer (once).
    fn load(&self, t: usize, g: usize, c: usize, sc: &mut Scratch) -> Result<()> {
        if sc.lens[c].is_none() {
            let table = &self.db.tables[self.plan.tables[t]];
            let (shared, len) = self.db.load_chunk(table, g, self.plan.scope[c].col, &mut sc.bufs[c])?;
            sc.shared[c] = shared;
            sc.lens[c] = Some(len);
            sc.expanded_ok[c] = false;
            if self.plan.scope[c].ty != Type::Text {
                let bytes = sc.shared[c].as_deref().unwrap_or(&sc.bufs[c]);
                let mut cur = Cur::padded(bytes, len, "column chunk");
                let rows = table.groups[g].rows;
                if parse_ints_reuse(&mut cur, rows, &mut sc.expanded[c])?.is_none() && cur.at_end() {
                    sc.expanded_ok[c] = true;
                }
            }
        }
        Ok(())
    }

    /// The chunk `load` read for scope column `c`, parsed.
    fn view<'b>(&self, t: usize, g: usize, c: usize, sc: &'b Scratch) -> Result<Src<'b>> {
        let len = sc.lens[c].ok_or_else(|| internal("column not read"))?;
        if sc.expanded_ok[c] {
            return Ok(Src::Int(Ints::Plain(Cow::Borrowed(&sc.expanded[c]))));
        }
        let table = &self.db.tables[self.plan.tables[t]];
        let rows = table.groups[g].rows;
        let bytes = sc.shared[c].as_deref().unwrap_or(&sc.bufs[c]);
        let mut cur = Cur::padded(bytes, len, "column chunk");
        let src = if self.plan.scope[c].ty == Type::Text {
            Src::Str(parse_strs(&mut cur, rows)?)
        } else {
            Src::Int(parse_ints(&mut cur, rows)?)
        };
        if !cur.at_end() {
            let name = &table.schema.columns[self.plan.scope[c].col].name;
            return Err(Error::corrupt(format!("column chunk {}.{name}: trailing bytes", table.schema.name)));
        }
        Ok(src)
    }

    /// Of the rows `rows` (every row when `None`), those where `f` holds,
    /// into `out`: `f` evaluated on batches of those rows.
    fn select_expr(&self, t: usize, g: usize, f: &BExpr, rows: Option<&[u32]>, sc: &mut Scratch, out: &mut Vec<u32>) -> Result<()> {
        let n = self.db.tables[self.plan.tables[t]].groups[g].rows;
        let mut cols = Vec::new();
        f.cols(&mut cols);
        for &c in &cols {
            self.load(t, g, c, sc)?;
        }
        let width = self.plan.scope.len();
        let mut views: Vec<Option<Src<'_>>> = (0..width).map(|_| None).collect();
        for &c in &cols {
            if views[c].is_none() {
                views[c] = Some(self.view(t, g, c, sc)?);
            }
        }
        out.clear();
        let all: Vec<u32>;
        let rows = match rows {
            Some(r) => r,
            None => {
                all = (0..n as u32).collect();
                &all
            }
        };
        for idx in rows.chunks(BATCH) {
            let cols = views.iter().map(|v| v.as_ref().map_or(Ok(Col::Absent), |v| v.gather(idx))).collect::<Result<_>>()?;
            let b = Batch { cols, rows: idx.len() };
            let m = eval(f, &b)?;
            out.extend(idx.iter().zip(bools(&m)?).filter(|(_, &k)| k).map(|(&i, _)| i));
        }
        Ok(())
    }

    /// Row group `g` of FROM entry `t`: the filters run one after the
    /// other on the rows the ones before kept (the most selective range
    /// first, by the zone maps), each reading its column only then; the
    /// columns `keep` names are read only if some row is left, and only
    /// those rows are unpacked, a batch at a time into `sink`.
    fn scan_group(&self, t: usize, g: usize, keep: &[bool], sc: &mut Scratch, sink: &mut dyn FnMut(Batch) -> Result<()>) -> Result<()> {
        self.scan_group_probe(t, g, keep, None, sc, sink)
    }

    /// `scan_group`, keeping after the filters only the rows whose value
    /// of column `probe.0` is a key of `probe.1` (a join's build side).
    fn scan_group_probe(
        &self,
        t: usize,
        g: usize,
        keep: &[bool],
        probe: Option<(usize, &HashTable)>,
        sc: &mut Scratch,
        sink: &mut dyn FnMut(Batch) -> Result<()>,
    ) -> Result<()> {
        if self.pruned(t, g) {
            self.skipped.fetch_add(1, AO::Relaxed);
            return Ok(());
        }
        self.read.fetch_add(1, AO::Relaxed);
        let plan = self.plan;
        let table = &self.db.tables[plan.tables[t]];
        let rows = table.groups[g].rows;
        let width = plan.scope.len();
        sc.bufs.resize_with(width, Vec::new);
        sc.shared.clear();
        sc.shared.resize(width, None);
        sc.expanded.resize_with(width, Vec::new);
        sc.expanded_ok.clear();
        sc.expanded_ok.resize(width, false);
        sc.lens.clear();
        sc.lens.resize(width, None);
        let (mut sel, mut tmp) = (core::mem::take(&mut sc.sel), core::mem::take(&mut sc.tmp));
        let preds = &self.preds[t];
        // Ranges by the share of the zone they cover (least first), then the rest in order.
        let mut order: Vec<(u128, usize)> = preds
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Pred::Range { col, lo, hi } => match &table.groups[g].chunks[plan.scope[*col].col].zone {
                    Zone::Num { min, max } => {
                        let span = (i128::from(*max) - i128::from(*min) + 1).max(1) as u128;
                        let (a, b) = (i128::from(*lo).max((*min).into()), i128::from(*hi).min((*max).into()));
                        let overlap = (b - a + 1).max(0) as u128;
                        ((overlap << 20) / span, i)
                    }
                    Zone::Str { .. } => (1 << 20, i),
                },
                _ => (u128::MAX, i),
            })
            .collect();
        order.sort_unstable();
        let mut all = true;
        for &(_, i) in &order {
            if !all && sel.is_empty() {
                break;
            }
            let rows_in = if all { None } else { Some(&sel[..]) };
            let n_in = rows_in.map_or(rows, <[u32]>::len);
            match &preds[i] {
                Pred::Range { col, lo, hi } => {
                    self.load(t, g, *col, sc)?;
                    match self.view(t, g, *col, sc)? {
                        Src::Int(v) => v.select_range(*lo, *hi, rows_in, &mut tmp),
                        Src::Str(_) => return Err(internal("range over text")),
                    }
                }
                Pred::Text { col, expr } => {
                    self.load(t, g, *col, sc)?;
                    let done = match self.view(t, g, *col, sc)? {
                        Src::Str(StrsView::Dict { dict, codes }) if dict.len() <= n_in => {
                            let m = dict.len();
                            let mut cols = vec![Col::Absent; width];
                            cols[*col] = Col::Str(Strs { dict: dict.clone(), codes: (0..m as u32).collect() });
                            let dict_batch = Batch { cols, rows: m };
                            let hit = eval(expr, &dict_batch)?;
                            let hit = bools(&hit)?;
                            let bad = core::cell::Cell::new(None);
                            codes.select_by(rows_in, &mut tmp, |k| match hit.get(k as usize) {
                                Some(&h) if k >= 0 => h,
                                _ => {
                                    bad.set(Some(k));
                                    false
                                }
                            });
                            if let Some(k) = bad.get() {
                                return Err(Error::corrupt(format!("column chunk: dictionary code {k} of {m}")));
                            }
                            true
                        }
                        _ => false,
                    };
                    if !done {
                        self.select_expr(t, g, expr, rows_in, sc, &mut tmp)?;
                    }
                }
                Pred::Expr(f) => self.select_expr(t, g, f, rows_in, sc, &mut tmp)?,
            }
            core::mem::swap(&mut sel, &mut tmp);
            all = false;
        }
        if let Some((c, ht)) = probe.filter(|_| all || !sel.is_empty()) {
            self.load(t, g, c, sc)?;
            let rows_in = if all { None } else { Some(&sel[..]) };
            match (self.view(t, g, c, sc)?, &ht.bits, &ht.heads) {
                (Src::Int(v), Some(bits), _) => v.select_by(rows_in, &mut tmp, |k| bits.has(k)),
                (Src::Int(v), None, Heads::Int(heads)) => v.select_by(rows_in, &mut tmp, |k| heads.contains_key(&k)),
                _ => return Err(internal("join key types")),
            }
            core::mem::swap(&mut sel, &mut tmp);
            all = false;
        }
        if all {
            sel.clear();
            sel.extend(0..rows as u32);
        }
        let result = (|| {
            if sel.is_empty() {
                return Ok(());
            }
            let mut views: Vec<Option<Src<'_>>> = (0..width).map(|_| None).collect();
            for &c in &plan.needed[t] {
                if keep[c] {
                    self.load(t, g, c, sc)?;
                }
            }
            for &c in &plan.needed[t] {
                if keep[c] {
                    views[c] = Some(self.view(t, g, c, sc)?);
                }
            }
            for idx in sel.chunks(BATCH) {
                let cols = views.iter().map(|v| v.as_ref().map_or(Ok(Col::Absent), |v| v.gather(idx))).collect::<Result<_>>()?;
                sink(Batch { cols, rows: idx.len() })?;
            }
            Ok(())
        })();
        sc.sel = sel;
        sc.tmp = tmp;
        result
    }

    fn scan_table(&self, ex: &dyn Executor, t: usize, keep: &[bool]) -> Result<Batch> {
        let groups = self.db.tables[self.plan.tables[t]].groups.len();
        let parts = map(ex, groups, |g| {
            let mut out = Vec::new();
            self.with_scratch(|sc| {
                self.scan_group(t, g, keep, sc, &mut |b| {
                    out.push(b);
                    Ok(())
                })
            })?;
            Ok(out)
        })?;
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
        let mut bits = None;
        let heads = match &keys[..] {
            [k] if matches!(&**k, Col::Int(_)) => {
                let Col::Int(v) = &**k else { return Err(internal("join key")) };
                bits = KeyBits::build(v);
                let mut heads = hashbrown::HashMap::with_capacity_and_hasher(v.len(), BuildHasherDefault::default());
                for (i, nx) in next.iter_mut().enumerate() {
                    chain(&mut heads, v[i], i, nx);
                }
                Heads::Int(heads)
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
        Ok(HashTable { batch, heads, bits, next, gather: Vec::new() })
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
        // A one-number key probes by its 64-bit value; a 128-bit one that
        // does not fit in 64 bits matches no build row.
        let (int_key, wide_key) = match (&ht.heads, &keys[..]) {
            (Heads::Int(_), [k]) => match &**k {
                Col::Int(v) => (Some(&v[..]), None),
                Col::Num(v) => (None, Some(&v[..])),
                _ => return Err(internal("join key types")),
            },
            _ => (None, None),
        };
        for i in 0..b.rows {
            let head = match (&ht.heads, int_key, wide_key) {
                (Heads::Int(_), Some(v), _) if ht.bits.as_ref().is_some_and(|b| !b.has(v[i])) => None,
                (Heads::Int(h), Some(v), _) => h.get(&v[i]),
                (Heads::Int(h), None, Some(v)) => i64::try_from(v[i]).ok().and_then(|x| h.get(&x)),
                (Heads::Bytes(h), _, _) => {
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

/// Semi-join reduction of the tables joined to the driver: for an edge
/// `t1.e1 = t2.e2` between two of them, the rows of `t1` whose key has no
/// match in `t2` cannot be in the result (every join is inner and every
/// edge a conjunct of WHERE), so they are dropped before any hash table is
/// built. Run while a table that was cut down (by its filters or by an
/// earlier reduction) can cut down a neighbour.
fn semi_join_reduce<D: BlockDevice>(plan: &Plan, db: &Db<D>, scanned: &mut [Option<Batch>]) -> Result<()> {
    let width = plan.scope.len();
    let rows = |scanned: &[Option<Batch>], t: usize| scanned[t].as_ref().map_or(0, |b| b.rows);
    // Per edge and direction: the rows of t2 when it last reduced t1.
    let mut done = vec![usize::MAX; plan.edges.len() * 2];
    for _ in 0..=plan.edges.len() * 2 {
        let mut changed = false;
        // The smallest sides first: their key sets are the cheapest to build.
        let mut pairs: Vec<(usize, usize, usize, &BExpr, usize, &BExpr)> = Vec::new();
        for (k, (a, ea, b, eb)) in plan.edges.iter().enumerate() {
            pairs.push((rows(scanned, *b), 2 * k, *a, ea, *b, eb));
            pairs.push((rows(scanned, *a), 2 * k + 1, *b, eb, *a, ea));
        }
        pairs.sort_by_key(|p| (p.0, p.1));
        for (_, slot, t1, e1, t2, e2) in pairs {
            {
                let n2 = rows(scanned, t2);
                if t1 == plan.driver || t2 == plan.driver || t1 == t2 || done[slot] == n2 {
                    continue;
                }
                if n2 as u64 >= db.tables[plan.tables[t2]].rows || rows(scanned, t1) == 0 {
                    continue;
                }
                done[slot] = n2;
                let (Some(left), Some(right)) = (scanned[t1].take(), scanned[t2].as_ref()) else {
                    return Err(internal("join input"));
                };
                let before = left.rows;
                let kept = if n2 == 0 {
                    Batch { cols: vec![Col::Absent; width], rows: 0 }
                } else {
                    let mask = key_in(e1, &left, e2, right)?;
                    if mask.iter().all(|&m| m) {
                        left
                    } else {
                        left.filter(&mask)
                    }
                };
                changed |= kept.rows < before;
                scanned[t1] = Some(kept);
            }
        }
        if !changed {
            break;
        }
    }
    Ok(())
}

/// Per row of `left`: does its `el` equal `er` of some row of `right`?
fn key_in(el: &BExpr, left: &Batch, er: &BExpr, right: &Batch) -> Result<Vec<bool>> {
    let (kl, kr) = (eval(el, left)?, eval(er, right)?);
    if let (Col::Int(l), Col::Int(r)) = (&*kl, &*kr) {
        let mut set: hashbrown::HashSet<i64, BuildHasherDefault<Fx>> = hashbrown::HashSet::default();
        set.extend(r.iter().copied());
        return Ok(l.iter().map(|k| set.contains(k)).collect());
    }
    let mut set: Map<()> = Map::default();
    let mut buf = Vec::new();
    for i in 0..right.rows {
        row_key(core::slice::from_ref(&kr), i, &mut buf);
        if !set.contains_key(&buf[..]) {
            set.insert(buf.clone().into_boxed_slice(), ());
        }
    }
    Ok((0..left.rows)
        .map(|i| {
            row_key(core::slice::from_ref(&kl), i, &mut buf);
            set.contains_key(&buf[..])
        })
        .collect())
}

/// Distinct values of `keys` over `b`.
fn distinct_keys(keys: &[BExpr], b: &Batch) -> Result<usize> {
    if b.rows == 0 {
        return Ok(0);
    }
    let cols: Vec<Cow<'_, Col>> = keys.iter().map(|k| eval(k, b)).collect::<Result<_>>()?;
    if let [k] = &cols[..] {
        if let Col::Int(v) = &**k {
            let mut seen: hashbrown::HashSet<i64, BuildHasherDefault<Fx>> = hashbrown::HashSet::default();
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
    fn new(plan: &Plan) -> Self {
        let (int_key, accs) = match &plan.agg {
            Some(a) => (
                matches!(&a.keys[..], [k] if k.ty.is_numeric() || k.ty == Type::Date),
                a.aggs
                    .iter()
                    .map(|c| match c.f {
                        AggFn::Count | AggFn::CountStar => AccCol::Count,
                        AggFn::Sum | AggFn::Avg => AccCol::Sum(Vec::new()),
                        AggFn::Min | AggFn::Max => AccCol::Pick { max: c.f == AggFn::Max, vals: Vec::new() },
                    })
                    .collect(),
            ),
            None => (false, Vec::new()),
        };
        AggTable { bytes: Map::default(), ints: Default::default(), int_key, keys: Vec::new(), count: Vec::new(), accs, lanes: Vec::new() }
    }

    fn add_group(&mut self, vals: Vec<Value>, max: usize) -> Result<u32> {
        let g = self.keys.len();
        if g >= max {
            return Err(Error::new(ErrorKind::Limit, format!("more than {max} groups")));
        }
        self.keys.push(vals);
        self.count.push(0);
        for a in &mut self.accs {
            match a {
                AccCol::Count => {}
                AccCol::Sum(v) => v.push(0),
                AccCol::Pick { vals, .. } => vals.push(None),
            }
        }
        Ok(g as u32)
    }

    fn group_int(&mut self, k: i64, max: usize) -> Result<u32> {
        if let Some(&g) = self.ints.get(&k) {
            return Ok(g);
        }
        let g = self.add_group(vec![Value::Num(k.into())], max)?;
        self.ints.insert(k, g);
        Ok(g)
    }

    fn group_bytes(&mut self, key: &[u8], vals: impl FnOnce() -> Vec<Value>, max: usize) -> Result<u32> {
        if let Some(&g) = self.bytes.get(key) {
            return Ok(g);
        }
        let g = self.add_group(vals(), max)?;
        self.bytes.insert(key.into(), g);
        Ok(g)
    }

    /// The group of the key `vals` (what `update` finds for the same key).
    fn group_of(&mut self, vals: Vec<Value>, buf: &mut Vec<u8>, max: usize) -> Result<u32> {
        if let (true, [Value::Num(x)]) = (self.int_key, &vals[..]) {
            if let Ok(k) = i64::try_from(*x) {
                return self.group_int(k, max);
            }
        }
        buf.clear();
        for v in &vals {
            encode_key(v, buf);
        }
        self.group_bytes(buf, || vals, max)
    }

    /// Each row's group in `gids`, groups created as they are met.
    fn group_ids(&mut self, keys: &[Cow<'_, Col>], rows: usize, gids: &mut Vec<u32>, max: usize) -> Result<()> {
        gids.clear();
        if keys.is_empty() {
            let g = self.group_bytes(&[], Vec::new, max)?;
            gids.resize(rows, g);
            return Ok(());
        }
        if let (true, [k]) = (self.int_key, keys) {
            match &**k {
                Col::Int(v) => {
                    for &x in v {
                        gids.push(self.group_int(x, max)?);
                    }
                    return Ok(());
                }
                Col::Num(v) => {
                    let mut buf = Vec::new();
                    for &x in v {
                        let g = match i64::try_from(x) {
                            Ok(k) => self.group_int(k, max)?,
                            Err(_) => self.group_of(vec![Value::Num(x)], &mut buf, max)?,
                        };
                        gids.push(g);
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        // Keys that are all dictionary-coded text with few combinations:
        // the batch's groups by code combination, looked up once each.
        let mut radix = Vec::with_capacity(keys.len());
        let mut combos = 1usize;
        for k in keys {
            match &**k {
                Col::Str(x) if combos.saturating_mul(x.dict.len()) <= BATCH => {
                    radix.push(x);
                    combos *= x.dict.len();
                }
                _ => break,
            }
        }
        let mut buf = Vec::new();
        if radix.len() == keys.len() {
            let mut local = vec![NONE; combos];
            // Each row's code combination, key by key over the whole batch.
            let mut slots = vec![0u32; rows];
            for x in &radix {
                let m = x.dict.len() as u32;
                for (s, &c) in slots.iter_mut().zip(&x.codes) {
                    *s = *s * m + c;
                }
            }
            for (i, &slot) in slots.iter().enumerate() {
                let slot = slot as usize;
                let g = match local[slot] {
                    NONE => {
                        row_key(keys, i, &mut buf);
                        let g = self.group_bytes(&buf, || keys.iter().map(|c| c.value(i)).collect(), max)?;
                        local[slot] = g;
                        g
                    }
                    g => g,
                };
                gids.push(g);
            }
            return Ok(());
        }
        for i in 0..rows {
            row_key(keys, i, &mut buf);
            gids.push(self.group_bytes(&buf, || keys.iter().map(|c| c.value(i)).collect(), max)?);
        }
        Ok(())
    }

    fn update(&mut self, plan: &Plan, b: &Batch, gids: &mut Vec<u32>, max: usize) -> Result<()> {
        let Some(a) = &plan.agg else { return Ok(()) };
        let keys: Vec<Cow<'_, Col>> = a.keys.iter().map(|k| eval(k, b)).collect::<Result<_>>()?;
        self.group_ids(&keys, b.rows, gids, max)?;
        drop(keys);
        for &g in gids.iter() {
            self.count[g as usize] += 1;
        }
        for (call, acc) in a.aggs.iter().zip(&mut self.accs) {
            // Every argument is evaluated (it may fail), count's too.
            let Some(arg) = &call.arg else { continue };
            let c = eval(arg, b)?;
            match (acc, &*c) {
                (AccCol::Count, _) => {}
                (AccCol::Sum(s), Col::Int(v)) => {
                    if !sum_small(s, gids, v, &mut self.lanes).unwrap_or_else(|| sum_into(s, gids, v)) {
                        return Err(overflow());
                    }
                }
                (AccCol::Sum(s), Col::Num(v)) => {
                    if !sum_into(s, gids, v) {
                        return Err(overflow());
                    }
                }
                (AccCol::Sum(_), _) => return Err(internal("sum of a non-number")),
                (AccCol::Pick { max, vals }, c) => {
                    let want = if *max { Ordering::Greater } else { Ordering::Less };
                    for (i, &g) in gids.iter().enumerate() {
                        let m = &mut vals[g as usize];
                        if m.as_ref().is_none_or(|m| cmp_col_value(c, i, m) == want) {
                            *m = Some(c.value(i));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, o: AggTable, max: usize) -> Result<()> {
        let mut buf = Vec::new();
        let AggTable { keys, count, accs, .. } = o;
        for (i, vals) in keys.into_iter().enumerate() {
            let g = self.group_of(vals, &mut buf, max)? as usize;
            self.count[g] = self.count[g].checked_add(count[i]).ok_or_else(overflow)?;
            for (mine, theirs) in self.accs.iter_mut().zip(&accs) {
                match (mine, theirs) {
                    (AccCol::Sum(a), AccCol::Sum(b)) => a[g] = a[g].checked_add(b[i]).ok_or_else(overflow)?,
                    (AccCol::Pick { max, vals }, AccCol::Pick { vals: theirs, .. }) => {
                        if let Some(v) = &theirs[i] {
                            let want = if *max { Ordering::Greater } else { Ordering::Less };
                            if vals[g].as_ref().is_none_or(|m| ord_values(v, m) == want) {
                                vals[g] = Some(v.clone());
                            }
                        }
                    }
                    _ => {}
                }
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
                Col::Int(v) => v[*a as usize].cmp(&v[*b as usize]),
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
    let preds = (0..plan.tables.len()).map(|t| scan_preds(plan, t)).collect();
    let r = Run { db, plan, limits, read: AtomicUsize::new(0), skipped: AtomicUsize::new(0), preds, pool: Mutex::new(Vec::new()) };
    // What a joined table's rows must carry: the columns something after
    // its own scan reads (join keys, conditions over several tables, the
    // aggregate or the outputs).
    let width = plan.scope.len();
    let mut later = Vec::new();
    for (_, a, _, b) in &plan.edges {
        a.cols(&mut later);
        b.cols(&mut later);
    }
    plan.multi.iter().for_each(|(_, e)| e.cols(&mut later));
    match &plan.agg {
        Some(a) => a.keys.iter().chain(a.aggs.iter().filter_map(|c| c.arg.as_ref())).for_each(|e| e.cols(&mut later)),
        None => plan.outputs.iter().for_each(|e| e.cols(&mut later)),
    }
    let mut build_keep = vec![false; width];
    for c in later {
        build_keep[c] = true;
    }
    // Scan and filter every table but the driver, then order the joins:
    // the smallest fan-out (rows per distinct key) first, then the fewest rows.
    let n = plan.tables.len();
    let mut scanned: Vec<Option<Batch>> = (0..n).map(|_| None).collect();
    for (t, slot) in scanned.iter_mut().enumerate() {
        if t != plan.driver {
            *slot = Some(r.scan_table(ex, t, &build_keep)?);
        }
    }
    semi_join_reduce(plan, db, &mut scanned)?;
    let steps = join_order(n, plan.driver, &plan.edges, &plan.multi, &mut |cands| {
        if cands.len() == 1 {
            return Ok(0);
        }
        let mut best = (0, (u128::MAX, usize::MAX));
        for (i, c) in cands.iter().enumerate() {
            let b = scanned[c.table].as_ref().ok_or_else(|| internal("join input"))?;
            // The rows a probe row is expected to meet: the fan-out (rows per
            // distinct key) times the share of the table its filters (and
            // semi-joins) kept, the share of keys a probe finds.
            let total = db.tables[plan.tables[c.table]].rows.max(1) as u128;
            let (rows, distinct) = (b.rows as u128, distinct_keys(&c.build_keys, b)?.max(1) as u128);
            let cost = (rows * rows * 1024 / (distinct * total), b.rows);
            if cost < best.1 {
                best = (i, cost);
            }
        }
        Ok(best.0)
    })?
    .map_err(|_| internal("a table is not joined"))?;
    // Which columns each stage must carry, from the last back: what the
    // aggregate or the outputs read, then each join's probe keys and filters.
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
    // The first join's key, when it is a column of the driver and the build
    // side is keyed by number: the scan keeps only rows whose key is there,
    // before it unpacks their other columns.
    let probe = match joins.first() {
        Some((s, ht @ HashTable { heads: Heads::Int(_), .. })) => match &s.probe_keys[..] {
            [BExpr { kind: BKind::Col(c), .. }] if plan.scope[*c].table == plan.driver && plan.scope[*c].ty != Type::Text => Some((*c, ht)),
            _ => None,
        },
        _ => None,
    };
    let groups = db.tables[plan.tables[plan.driver]].groups.len();
    let max_groups = limits.max_groups;
    let parts = map(ex, groups, |g| {
        let mut agg = AggTable::new(plan);
        let mut gids = Vec::new();
        let mut rows = Batch { cols: vec![Col::Absent; plan.outputs.len()], rows: 0 };
        r.with_scratch(|sc| {
            r.scan_group_probe(plan.driver, g, &scan_keep, probe, sc, &mut |b| {
                r.push(&joins, b, &mut |b| {
                    if plan.agg.is_some() {
                        agg.update(plan, &b, &mut gids, max_groups)
                    } else {
                        let cols = plan.outputs.iter().map(|e| eval(e, &b).map(Cow::into_owned)).collect::<Result<Vec<_>>>()?;
                        rows.append(Batch { cols, rows: b.rows });
                        if rows.rows > limits.max_rows {
                            return Err(Error::new(ErrorKind::Limit, format!("more than {} result rows", limits.max_rows)));
                        }
                        Ok(())
                    }
                })
            })
        })?;
        Ok(if plan.agg.is_some() { Part::Agg(agg) } else { Part::Rows(rows) })
    })?;
    drop(joins);

    let mut nulls: Vec<bool> = Vec::new();
    let mut nkeys = 0;
    let out = if let Some(a) = &plan.agg {
        let mut all = AggTable::new(plan);
        for p in parts {
            if let Part::Agg(t) = p {
                all.merge(t, max_groups)?;
            }
        }
        nkeys = a.keys.len();
        let n = a.aggs.len();
        if a.keys.is_empty() && all.keys.is_empty() {
            // An aggregate over no rows: one row, NULL but for counts.
            all.add_group(Vec::new(), 1)?;
            nulls = a.aggs.iter().map(|c| !matches!(c.f, AggFn::Count | AggFn::CountStar)).collect();
        }
        let groups = all.keys.len();
        let mut cols: Vec<Col> = Vec::with_capacity(nkeys + n);
        for (k, e) in a.keys.iter().enumerate() {
            cols.push(Col::from_values(e.ty, all.keys.iter().map(|g| g[k].clone())));
        }
        for (call, acc) in a.aggs.iter().zip(&all.accs) {
            let col = match (call.f, acc) {
                (_, AccCol::Count) => Col::Int(all.count.clone()),
                (AggFn::Avg, AccCol::Sum(sums)) => {
                    let from = call.arg.as_ref().map_or(0, |e| e.ty.scale());
                    let m = pow10(call.ty.scale() - from);
                    narrow(
                        sums.iter()
                            .zip(&all.count)
                            .map(|(&sum, &count)| {
                                let s = sum.checked_mul(m).ok_or_else(overflow)?;
                                let c = i128::from(count.max(1));
                                let (q, rem) = (s / c, s % c);
                                Ok(if rem.abs() * 2 >= c { q + s.signum() } else { q })
                            })
                            .collect::<Result<_>>()?,
                    )
                }
                (_, AccCol::Sum(sums)) => narrow(sums.clone()),
                (_, AccCol::Pick { vals, .. }) => {
                    Col::from_values(call.ty, vals.iter().map(|v| v.clone().unwrap_or(Value::Null)))
                }
            };
            if col.len() != groups {
                return Err(internal("aggregate length"));
            }
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
    use super::*;
    use proptest::prelude::*;

    /// Values with the edges of 64 bits among them.
    fn edgy() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            Just(-1),
            Just(1),
            Just(1 << 32),
            Just(-(1 << 31)),
            any::<i64>(),
            -1000i64..1000,
            (-(1i64 << 51))..(1 << 51),
        ]
    }

    proptest! {
        /// The 64-bit kernels give exactly the 128-bit answer where it fits,
        /// and `None` (the caller then computes in 128 bits) exactly where
        /// some value does not fit.
        #[test]
        fn int_arith_agrees_with_128_bits(
            x in proptest::collection::vec(edgy(), 1..64),
            y in proptest::collection::vec(edgy(), 64),
            k in edgy(),
            op in 0usize..3,
            shape in 0usize..3,
        ) {
            let op = [Arith::Add, Arith::Sub, Arith::Mul][op];
            let n = x.len();
            let y = &y[..n];
            let (a, b) = match shape {
                0 => (Opd::Col(&x), Opd::Col(y)),
                1 => (Opd::Col(&x), Opd::K(k)),
                _ => (Opd::K(k), Opd::Col(y)),
            };
            let at = |o: Opd<'_>, i: usize| i128::from(match o { Opd::Col(v) => v[i], Opd::K(c) => c });
            let want: Vec<i128> = (0..n)
                .map(|i| {
                    let (p, q) = (at(a, i), at(b, i));
                    match op { Arith::Add => p + q, Arith::Sub => p - q, _ => p * q }
                })
                .collect();
            let fits = want.iter().all(|&w| i64::try_from(w).is_ok());
            match int_arith(op, a, b, n) {
                Some(v) => {
                    prop_assert!(fits);
                    prop_assert!(v.iter().zip(&want).all(|(&g, &w)| i128::from(g) == w));
                }
                None => prop_assert!(!fits),
            }
            prop_assert!(int_arith(Arith::Div, a, b, n).is_none());
        }

        /// Summing into groups through 64-bit lanes gives the 128-bit sums
        /// of a plain loop, and declines what it cannot do exactly.
        #[test]
        fn lane_sums_agree_with_a_loop(
            rows in proptest::collection::vec((0u32..300, edgy()), 0..600),
            groups in 1usize..300,
            start in any::<i64>(),
        ) {
            let gids: Vec<u32> = rows.iter().map(|r| r.0 % groups as u32).collect();
            let v: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let mut want = vec![i128::from(start); groups];
            for (&g, &x) in gids.iter().zip(&v) {
                want[g as usize] += i128::from(x);
            }
            let mut sums = vec![i128::from(start); groups];
            let mut lanes = Vec::new();
            match sum_small(&mut sums, &gids, &v, &mut lanes) {
                Some(ok) => {
                    prop_assert!(ok);
                    prop_assert!(v.iter().all(|x| x.unsigned_abs() < 1 << 51));
                    prop_assert_eq!(&sums, &want);
                }
                None => prop_assert!(groups > LANE_GROUPS || v.iter().any(|x| x.unsigned_abs() >= 1 << 51)),
            }
            let mut sums = vec![i128::from(start); groups];
            prop_assert!(sum_into(&mut sums, &gids, &v));
            prop_assert_eq!(sums, want);
        }
    }

    proptest! {
        /// A key's bit is set exactly when the key is among the build keys,
        /// for any probe (below, inside and above the range).
        #[test]
        fn key_bits_match_the_key_set(keys in proptest::collection::vec(-5000i64..5000, 1..300), base in edgy(), probes in proptest::collection::vec(edgy(), 50)) {
            let keys: Vec<i64> = keys.iter().map(|k| base.saturating_add(*k)).collect();
            let span = keys.iter().max().unwrap() - keys.iter().min().unwrap() + 1;
            let Some(bits) = KeyBits::build(&keys) else {
                prop_assert!(span as u128 > BITS_PER_KEY * keys.len() as u128 + 4096);
                return Ok(());
            };
            for p in probes.iter().copied().chain(keys.iter().map(|k| k.wrapping_add(1))).chain(keys.iter().copied()) {
                prop_assert_eq!(bits.has(p), keys.contains(&p), "{}", p);
            }
        }
    }

    #[test]
    fn key_bits_only_for_narrow_ranges() {
        assert!(KeyBits::build(&[]).is_none());
        assert!(KeyBits::build(&[i64::MIN, i64::MAX]).is_none());
        assert!(KeyBits::build(&[0, 1_000_000]).is_none());
        let b = KeyBits::build(&[i64::MAX - 3, i64::MAX]).unwrap();
        assert!(b.has(i64::MAX) && b.has(i64::MAX - 3) && !b.has(i64::MAX - 1) && !b.has(i64::MIN));
    }

    #[test]
    fn sums_past_128_bits_are_refused() {
        let mut sums = vec![i128::MAX - 5];
        assert!(!sum_into(&mut sums, &[0, 0], &[3i64, 3]));
        let mut sums = vec![i128::MAX - 5];
        assert_eq!(sum_small(&mut sums, &[0, 0], &[3, 3], &mut Vec::new()), Some(false));
        let mut sums = vec![i128::MIN + 5];
        assert_eq!(sum_small(&mut sums, &[0, 0], &[-3, -2], &mut Vec::new()), Some(true));
        assert_eq!(sums[0], i128::MIN);
    }

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

//! From the parsed query to a plan: names resolved against the catalog,
//! types checked (decimal scales as DuckDB computes them), constants
//! folded, WHERE split into per-table filters (pushed into the scans and
//! their zone maps), equality join edges and residual filters, a join
//! order, and the aggregation and ordering steps.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::exec;
use crate::sql::{BinOp, Expr, ExprKind, Query, SelectItem, Unit};
use crate::storage::Table;
use crate::types::{parse_date, parse_decimal, Error, ErrorKind, Result, Type, Value, MAX_SCALE};

/// Arithmetic on numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Mod,
    /// Division to the result's scale ([`DIV_SCALE`] or more), rounded
    /// half away from zero.
    Div,
}

/// The least scale of a quotient (DuckDB's `/` gives a double; we keep a
/// decimal of at least this scale, as for `avg`).
pub const DIV_SCALE: u8 = 6;

/// A bound, typed expression. `Col(i)` is column `i` of the batch it is
/// evaluated on: a scope column before aggregation, a group key or an
/// aggregate after it.
#[derive(Clone, Debug, PartialEq)]
pub struct BExpr {
    pub kind: BKind,
    pub ty: Type,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BKind {
    Col(usize),
    Const(Value),
    Arith(Arith, Box<BExpr>, Box<BExpr>),
    /// Times `10^k` (k > 0) or divided by `10^-k`, rounded half away from zero.
    Scale(Box<BExpr>, i8),
    Cmp(BinOp, Box<BExpr>, Box<BExpr>),
    And(Box<BExpr>, Box<BExpr>),
    Or(Box<BExpr>, Box<BExpr>),
    Not(Box<BExpr>),
    Neg(Box<BExpr>),
    DateAdd(Box<BExpr>, i64, i64),
    Case(Vec<(BExpr, BExpr)>, Box<BExpr>),
    Like(Box<BExpr>, Arc<str>, bool),
    In(Box<BExpr>, Vec<Value>, bool),
    Extract(Unit, Box<BExpr>),
    Concat(Box<BExpr>, Box<BExpr>),
    ToDate(Box<BExpr>),
    ToText(Box<BExpr>),
}

impl BExpr {
    fn new(kind: BKind, ty: Type) -> Self {
        BExpr { kind, ty }
    }
    pub fn children(&self) -> Vec<&BExpr> {
        match &self.kind {
            BKind::Col(_) | BKind::Const(_) => vec![],
            BKind::Arith(_, a, b) | BKind::Cmp(_, a, b) | BKind::And(a, b) | BKind::Or(a, b) | BKind::Concat(a, b) => {
                vec![a, b]
            }
            BKind::Scale(a, _)
            | BKind::Not(a)
            | BKind::Neg(a)
            | BKind::DateAdd(a, _, _)
            | BKind::Like(a, _, _)
            | BKind::In(a, _, _)
            | BKind::Extract(_, a)
            | BKind::ToDate(a)
            | BKind::ToText(a) => vec![a],
            BKind::Case(w, e) => w.iter().flat_map(|(c, v)| [c, v]).chain([&**e]).collect(),
        }
    }
    /// Every column the expression reads.
    pub fn cols(&self, out: &mut Vec<usize>) {
        if let BKind::Col(i) = self.kind {
            out.push(i);
        }
        for c in self.children() {
            c.cols(out);
        }
    }
    pub fn constant(&self) -> Option<&Value> {
        match &self.kind {
            BKind::Const(v) => Some(v),
            _ => None,
        }
    }
}

/// An equality between an expression over one table and one over another.
pub type Edge = (usize, BExpr, usize, BExpr);

/// Orders the joins from `driver` on: at each step `pick` chooses among
/// the tables joined by some edge to those so far (as candidate steps).
/// `Ok(Err(t))`: table `t` is joined to none of them.
#[allow(clippy::type_complexity)]
pub fn join_order(
    n: usize,
    driver: usize,
    edges: &[Edge],
    multi: &[(Vec<usize>, BExpr)],
    pick: &mut dyn FnMut(&[JoinStep]) -> Result<usize>,
) -> Result<Result<Vec<JoinStep>, usize>> {
    let mut joined = vec![driver];
    let mut steps: Vec<JoinStep> = Vec::new();
    let mut done_multi = vec![false; multi.len()];
    while joined.len() < n {
        let mut cands = Vec::new();
        for t in (0..n).filter(|t| !joined.contains(t)) {
            let mut step = JoinStep { table: t, probe_keys: Vec::new(), build_keys: Vec::new(), after: Vec::new() };
            for (a, la, bt, rb) in edges {
                if *a == t && joined.contains(bt) {
                    step.probe_keys.push(rb.clone());
                    step.build_keys.push(la.clone());
                } else if *bt == t && joined.contains(a) {
                    step.probe_keys.push(la.clone());
                    step.build_keys.push(rb.clone());
                }
            }
            if !step.probe_keys.is_empty() {
                cands.push(step);
            }
        }
        if cands.is_empty() {
            return Ok(Err((0..n).find(|t| !joined.contains(t)).unwrap_or(0)));
        }
        let i = pick(&cands)?.min(cands.len() - 1);
        let mut step = cands.swap_remove(i);
        joined.push(step.table);
        for (k, (ts, c)) in multi.iter().enumerate() {
            if !done_multi[k] && ts.iter().all(|x| joined.contains(x)) {
                done_multi[k] = true;
                step.after.push(c.clone());
            }
        }
        steps.push(step);
    }
    Ok(Ok(steps))
}

/// Splits ANDs.
pub fn conjuncts(e: BExpr, out: &mut Vec<BExpr>) {
    match e.kind {
        BKind::And(a, b) => {
            conjuncts(*a, out);
            conjuncts(*b, out);
        }
        _ => out.push(e),
    }
}

fn disjuncts(e: BExpr, out: &mut Vec<BExpr>) {
    match e.kind {
        BKind::Or(a, b) => {
            disjuncts(*a, out);
            disjuncts(*b, out);
        }
        _ => out.push(e),
    }
}

/// `(a AND b) OR (a AND c)` as `a` and `b OR c`: conditions every branch
/// of an OR shares become conditions of their own (a join key inside
/// each branch, as in TPC-H Q19, becomes a join edge; a one-table
/// condition, a scan filter).
pub fn factor_or(e: BExpr, out: &mut Vec<BExpr>) {
    if !matches!(e.kind, BKind::Or(..)) {
        out.push(e);
        return;
    }
    let mut branches = Vec::new();
    disjuncts(e, &mut branches);
    let lists: Vec<Vec<BExpr>> = branches
        .into_iter()
        .map(|b| {
            let mut v = Vec::new();
            conjuncts(b, &mut v);
            v
        })
        .collect();
    let mut common: Vec<BExpr> = Vec::new();
    for c in &lists[0] {
        if !common.contains(c) && lists[1..].iter().all(|l| l.contains(c)) {
            common.push(c.clone());
        }
    }
    let and = |a: BExpr, b: BExpr| BExpr::new(BKind::And(Box::new(a), Box::new(b)), Type::Bool);
    let or = |a: BExpr, b: BExpr| BExpr::new(BKind::Or(Box::new(a), Box::new(b)), Type::Bool);
    let mut rest: Option<BExpr> = None;
    let mut implied = false;
    for l in lists {
        match l.into_iter().filter(|c| !common.contains(c)).reduce(and) {
            // A branch that is all common conditions: the OR holds whenever they do.
            None => implied = true,
            Some(r) => rest = Some(match rest.take() {
                None => r,
                Some(x) => or(x, r),
            }),
        }
    }
    out.extend(common);
    if let (false, Some(r)) = (implied, rest) {
        out.push(r);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFn {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    CountStar,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AggCall {
    pub f: AggFn,
    pub arg: Option<BExpr>,
    /// The result's type.
    pub ty: Type,
}

/// Tables one query may join.
pub const MAX_TABLES: usize = 32;
/// The longest LIKE pattern, in characters (matching is O(text * pattern)).
pub const MAX_LIKE: usize = 1024;

/// The scale of `avg` results (DuckDB returns a double; we keep a
/// decimal of at least this scale, rounded half away from zero).
pub const AVG_SCALE: u8 = 6;

/// A column the query can name: column `col` of FROM entry `table`.
#[derive(Clone, Debug)]
pub struct ScopeCol {
    pub table: usize,
    pub qual: String,
    pub name: String,
    pub col: usize,
    pub ty: Type,
}

/// One hash join: the FROM entry `table` (scanned and filtered) is the
/// build side; the rows so far probe it by `probe_keys` = `build_keys`.
#[derive(Clone, Debug)]
pub struct JoinStep {
    pub table: usize,
    pub probe_keys: Vec<BExpr>,
    pub build_keys: Vec<BExpr>,
    /// Filters over several tables that can run once this join is done.
    pub after: Vec<BExpr>,
}

#[derive(Clone, Debug)]
pub struct Aggregation {
    pub keys: Vec<BExpr>,
    pub aggs: Vec<AggCall>,
    pub having: Option<BExpr>,
}

/// A planned query.
#[derive(Clone, Debug)]
pub struct Plan {
    /// FROM entries: catalog table index each.
    pub tables: Vec<usize>,
    pub scope: Vec<ScopeCol>,
    /// Scope columns each FROM entry must read.
    pub needed: Vec<Vec<usize>>,
    /// Per FROM entry, its own filters (conjuncts), pushed into its scan.
    pub filters: Vec<Vec<BExpr>>,
    /// The FROM entry whose morsels drive the pipeline.
    pub driver: usize,
    /// A join order from the catalog's sizes (it proves every table is
    /// joined; the executor orders again with the filtered sizes).
    pub joins: Vec<JoinStep>,
    /// Equalities between two tables: (table, its side, table, its side).
    pub edges: Vec<Edge>,
    /// Conditions over several tables that are not join edges.
    pub multi: Vec<(Vec<usize>, BExpr)>,
    pub agg: Option<Aggregation>,
    /// Output expressions: the select list, then hidden ORDER BY keys.
    pub outputs: Vec<BExpr>,
    pub names: Vec<String>,
    /// How many of `outputs` the client sees.
    pub visible: usize,
    /// (output index, descending).
    pub order: Vec<(usize, bool)>,
    pub limit: Option<u64>,
}

struct Binder<'a> {
    scope: &'a [ScopeCol],
    /// After aggregation: the group keys and the aggregates met so far.
    post: Option<(Vec<BExpr>, Vec<AggCall>)>,
}

fn err(kind: ErrorKind, pos: usize, msg: impl Into<String>) -> Error {
    Error::at(kind, pos, msg)
}

fn is_agg_name(n: &str) -> bool {
    matches!(n, "sum" | "avg" | "min" | "max" | "count")
}

/// Does the AST contain an aggregate call?
fn has_agg(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Func { name, .. } if is_agg_name(name) => true,
        ExprKind::Func { args, .. } => args.iter().any(has_agg),
        ExprKind::Column { .. }
        | ExprKind::Num(_)
        | ExprKind::Str(_)
        | ExprKind::Date(_)
        | ExprKind::Interval { .. } => false,
        ExprKind::Neg(a) | ExprKind::Not(a) | ExprKind::Extract { e: a, .. } | ExprKind::Cast { e: a, .. } => has_agg(a),
        ExprKind::Binary { l, r, .. } => has_agg(l) || has_agg(r),
        ExprKind::Like { e, pat, .. } => has_agg(e) || has_agg(pat),
        ExprKind::InList { e, list, .. } => has_agg(e) || list.iter().any(has_agg),
        ExprKind::Between { e, lo, hi, .. } => has_agg(e) || has_agg(lo) || has_agg(hi),
        ExprKind::Case { operand, whens, els } => {
            operand.as_deref().is_some_and(has_agg)
                || whens.iter().any(|(c, v)| has_agg(c) || has_agg(v))
                || els.as_deref().is_some_and(has_agg)
        }
    }
}

fn rescale(e: BExpr, to: u8) -> BExpr {
    let from = e.ty.scale();
    if from == to && matches!(e.ty, Type::Decimal(_)) {
        return e;
    }
    let ty = Type::Decimal(to);
    if from == to {
        return BExpr { ty, ..e };
    }
    if let Some(Value::Num(v)) = e.constant() {
        if to > from {
            if let Some(x) = v.checked_mul(crate::types::pow10(to - from)) {
                return BExpr::new(BKind::Const(Value::Num(x)), ty);
            }
        }
    }
    BExpr::new(BKind::Scale(Box::new(e), (to as i8) - (from as i8)), ty)
}

/// Brings two numbers to one scale; the type both then have.
fn unify_num(l: BExpr, r: BExpr) -> (BExpr, BExpr, Type) {
    let both_int = !matches!(l.ty, Type::Decimal(_)) && !matches!(r.ty, Type::Decimal(_));
    if both_int {
        return (l, r, Type::Int64);
    }
    let s = l.ty.scale().max(r.ty.scale());
    (rescale(l, s), rescale(r, s), Type::Decimal(s))
}

fn str_to_date(e: BExpr, pos: usize) -> Result<BExpr> {
    match e.constant() {
        Some(Value::Str(s)) => match parse_date(s) {
            Some(d) => Ok(BExpr::new(BKind::Const(Value::Num(d.into())), Type::Date)),
            None => Err(err(ErrorKind::Data, pos, format!("invalid date '{s}': write YYYY-MM-DD"))),
        },
        _ => Err(err(ErrorKind::Type, pos, "cannot compare a date with text: write DATE 'YYYY-MM-DD'")),
    }
}

/// Makes `l` and `r` comparable (for =, <, IN, CASE results).
fn comparable(l: BExpr, r: BExpr, pos: usize, what: &str) -> Result<(BExpr, BExpr)> {
    match (l.ty, r.ty) {
        (a, b) if a.is_numeric() && b.is_numeric() => {
            let (l, r, _) = unify_num(l, r);
            Ok((l, r))
        }
        (Type::Date, Type::Date) | (Type::Text, Type::Text) | (Type::Bool, Type::Bool) => Ok((l, r)),
        (Type::Date, Type::Text) => Ok((l, str_to_date(r, pos)?)),
        (Type::Text, Type::Date) => Ok((str_to_date(l, pos)?, r)),
        (a, b) => Err(err(ErrorKind::Type, pos, format!("cannot {what} {} and {}", a.name(), b.name()))),
    }
}

impl Binder<'_> {
    /// Builds a node, folding it to a constant when its inputs are.
    fn mk(&self, kind: BKind, ty: Type, pos: usize) -> Result<BExpr> {
        let e = BExpr::new(kind, ty);
        if !matches!(e.kind, BKind::Const(_) | BKind::Col(_)) && e.children().iter().all(|c| c.constant().is_some()) {
            let v = exec::eval_const(&e).map_err(|x| Error { offset: Some(pos), ..x })?;
            return Ok(BExpr::new(BKind::Const(v), ty));
        }
        Ok(e)
    }

    fn pre(&self) -> Binder<'_> {
        Binder { scope: self.scope, post: None }
    }

    fn bool_arg(&mut self, e: &Expr) -> Result<BExpr> {
        let b = self.bind(e)?;
        if b.ty != Type::Bool {
            return Err(err(ErrorKind::Type, e.pos, format!("expected a condition, found a {} expression", b.ty.name())));
        }
        Ok(b)
    }

    fn num_arg(&mut self, e: &Expr, what: &str) -> Result<BExpr> {
        let b = self.bind(e)?;
        if !b.ty.is_numeric() {
            return Err(err(ErrorKind::Type, e.pos, format!("{what} takes a number, not {}", b.ty.name())));
        }
        Ok(b)
    }

    fn column(&self, table: Option<&str>, name: &str, pos: usize) -> Result<BExpr> {
        let mut found = self
            .scope
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == name && table.is_none_or(|t| c.qual == t));
        let Some((i, c)) = found.next() else {
            let full = match table {
                Some(t) => format!("{t}.{name}"),
                None => name.to_string(),
            };
            return Err(err(ErrorKind::Undefined, pos, format!("column \"{full}\" does not exist in the tables of FROM")));
        };
        if found.next().is_some() {
            return Err(err(ErrorKind::Undefined, pos, format!("column \"{name}\" is ambiguous: qualify it with its table")));
        }
        Ok(BExpr::new(BKind::Col(i), c.ty))
    }

    fn bind(&mut self, e: &Expr) -> Result<BExpr> {
        if let Some((keys, _)) = &self.post {
            if !has_agg(e) {
                // A group key (or an expression over none at all) as a whole.
                if let Ok(b) = self.pre().bind(e) {
                    if let Some(k) = keys.iter().position(|k| *k == b) {
                        return Ok(BExpr::new(BKind::Col(k), b.ty));
                    }
                    if b.constant().is_some() {
                        return Ok(b);
                    }
                }
            }
        }
        let pos = e.pos;
        match &e.kind {
            ExprKind::Column { table, name } => {
                let b = self.column(table.as_deref(), name, pos)?;
                if self.post.is_some() {
                    return Err(err(
                        ErrorKind::Undefined,
                        pos,
                        format!("column \"{name}\" must appear in GROUP BY or be used in an aggregate function"),
                    ));
                }
                Ok(b)
            }
            ExprKind::Num(n) => {
                if let Some((_, f)) = n.split_once('.') {
                    let scale = u8::try_from(f.len()).unwrap_or(u8::MAX);
                    if scale > MAX_SCALE {
                        return Err(err(ErrorKind::Unsupported, pos, format!("more than {MAX_SCALE} digits after the point")));
                    }
                    let v = parse_decimal(n, scale)
                        .filter(|v| i64::try_from(*v).is_ok())
                        .ok_or_else(|| err(ErrorKind::Data, pos, format!("number {n} out of range")))?;
                    Ok(BExpr::new(BKind::Const(Value::Num(v)), Type::Decimal(scale)))
                } else {
                    let v: i64 = n.parse().map_err(|_| err(ErrorKind::Data, pos, format!("integer {n} out of range")))?;
                    Ok(BExpr::new(BKind::Const(Value::Num(v.into())), Type::Int64))
                }
            }
            ExprKind::Str(s) => Ok(BExpr::new(BKind::Const(Value::Str(Arc::from(s.as_str()))), Type::Text)),
            ExprKind::Date(s) => match parse_date(s) {
                Some(d) => Ok(BExpr::new(BKind::Const(Value::Num(d.into())), Type::Date)),
                None => Err(err(ErrorKind::Data, pos, format!("invalid date '{s}': write DATE 'YYYY-MM-DD'"))),
            },
            ExprKind::Interval { .. } => Err(err(
                ErrorKind::Type,
                pos,
                "an interval can only be added to or subtracted from a date",
            )),
            ExprKind::Neg(a) => {
                let a = self.num_arg(a, "unary minus")?;
                let ty = a.ty;
                self.mk(BKind::Neg(Box::new(a)), ty, pos)
            }
            ExprKind::Not(a) => {
                let a = self.bool_arg(a)?;
                self.mk(BKind::Not(Box::new(a)), Type::Bool, pos)
            }
            ExprKind::Binary { op, l, r } => self.binary(*op, l, r, pos),
            ExprKind::Func { name, args, star, distinct } => self.func(name, args, *star, *distinct, pos),
            ExprKind::Case { operand, whens, els } => {
                let operand = operand.as_deref().map(|o| self.bind(o)).transpose()?;
                let mut conds = Vec::new();
                let mut vals = Vec::new();
                for (c, v) in whens {
                    let cond = match &operand {
                        Some(o) => {
                            let w = self.bind(c)?;
                            let (a, b) = comparable(o.clone(), w, c.pos, "compare")?;
                            self.mk(BKind::Cmp(BinOp::Eq, Box::new(a), Box::new(b)), Type::Bool, c.pos)?
                        }
                        None => self.bool_arg(c)?,
                    };
                    conds.push(cond);
                    vals.push((self.bind(v)?, v.pos));
                }
                let Some(els) = els else {
                    return Err(err(ErrorKind::Unsupported, pos, "CASE without ELSE is not supported (it would give NULL): add an ELSE"));
                };
                vals.push((self.bind(els)?, els.pos));
                let ty = self.unify_all(&mut vals)?;
                let els = vals.pop().map(|v| v.0).unwrap_or_else(|| BExpr::new(BKind::Const(Value::Null), ty));
                let whens = conds.into_iter().zip(vals.into_iter().map(|v| v.0)).collect();
                self.mk(BKind::Case(whens, Box::new(els)), ty, pos)
            }
            ExprKind::Like { e: a, pat, neg } => {
                let a = self.bind(a)?;
                if a.ty != Type::Text {
                    return Err(err(ErrorKind::Type, pos, format!("LIKE takes text, not {}", a.ty.name())));
                }
                let ExprKind::Str(p) = &pat.kind else {
                    return Err(err(ErrorKind::Unsupported, pat.pos, "the LIKE pattern must be a string literal"));
                };
                if p.chars().count() > MAX_LIKE {
                    return Err(err(ErrorKind::Limit, pat.pos, format!("LIKE pattern longer than {MAX_LIKE} characters")));
                }
                self.mk(BKind::Like(Box::new(a), Arc::from(p.as_str()), *neg), Type::Bool, pos)
            }
            ExprKind::InList { e: a, list, neg } => {
                let mut items = vec![(self.bind(a)?, a.pos)];
                for x in list {
                    let b = self.bind(x)?;
                    if b.constant().is_none() {
                        return Err(err(ErrorKind::Unsupported, x.pos, "IN lists hold constants only"));
                    }
                    items.push((b, x.pos));
                }
                self.unify_all(&mut items)?;
                let mut it = items.into_iter();
                let a = it.next().map(|x| x.0).ok_or_else(|| err(ErrorKind::Syntax, pos, "empty IN"))?;
                let vals = it.filter_map(|(b, _)| b.constant().cloned()).collect();
                self.mk(BKind::In(Box::new(a), vals, *neg), Type::Bool, pos)
            }
            ExprKind::Between { e: a, lo, hi, neg } => {
                let ge = Expr { kind: ExprKind::Binary { op: BinOp::Ge, l: a.clone(), r: lo.clone() }, pos };
                let le = Expr { kind: ExprKind::Binary { op: BinOp::Le, l: a.clone(), r: hi.clone() }, pos };
                let both = self.binary(BinOp::And, &ge, &le, pos)?;
                if *neg {
                    self.mk(BKind::Not(Box::new(both)), Type::Bool, pos)
                } else {
                    Ok(both)
                }
            }
            ExprKind::Extract { field, e: a } => {
                let a = self.bind(a)?;
                if a.ty != Type::Date {
                    return Err(err(ErrorKind::Type, pos, format!("EXTRACT takes a date, not {}", a.ty.name())));
                }
                self.mk(BKind::Extract(*field, Box::new(a)), Type::Int64, pos)
            }
            ExprKind::Cast { e: a, ty } => {
                let a = self.bind(a)?;
                match (a.ty, *ty) {
                    (f, Type::Decimal(s)) if f.is_numeric() => Ok(self.fold(rescale(a, s), pos)?),
                    (f, Type::Int32 | Type::Int64) if f.is_numeric() => {
                        let s = a.ty.scale();
                        let e = if s == 0 { a } else { BExpr::new(BKind::Scale(Box::new(a), -(s as i8)), Type::Int64) };
                        self.fold(BExpr { ty: *ty, ..e }, pos)
                    }
                    (Type::Text, Type::Date) => self.mk(BKind::ToDate(Box::new(a)), Type::Date, pos),
                    (Type::Date, Type::Date) | (Type::Text, Type::Text) => Ok(a),
                    (_, Type::Text) => self.mk(BKind::ToText(Box::new(a)), Type::Text, pos),
                    (f, t) => Err(err(ErrorKind::Type, pos, format!("cannot cast {} to {}", f.name(), t.name()))),
                }
            }
        }
    }

    fn fold(&self, e: BExpr, pos: usize) -> Result<BExpr> {
        let BExpr { kind, ty } = e;
        self.mk(kind, ty, pos)
    }

    /// Brings values to one type (CASE results, IN lists); returns it.
    fn unify_all(&self, vals: &mut [(BExpr, usize)]) -> Result<Type> {
        let first = vals[0].0.ty;
        if vals.iter().all(|(v, _)| v.ty.is_numeric()) {
            let ints = vals.iter().all(|(v, _)| !matches!(v.ty, Type::Decimal(_)));
            if ints {
                return Ok(Type::Int64);
            }
            let s = vals.iter().map(|(v, _)| v.ty.scale()).max().unwrap_or(0);
            for (v, pos) in vals.iter_mut() {
                let b = core::mem::replace(v, BExpr::new(BKind::Const(Value::Null), Type::Bool));
                *v = self.fold(rescale(b, s), *pos)?;
            }
            return Ok(Type::Decimal(s));
        }
        for (v, pos) in vals.iter_mut() {
            if v.ty != first {
                if first == Type::Date && v.ty == Type::Text {
                    let b = core::mem::replace(v, BExpr::new(BKind::Const(Value::Null), Type::Bool));
                    *v = str_to_date(b, *pos)?;
                } else {
                    return Err(err(ErrorKind::Type, *pos, format!("expected {}, found {}", first.name(), v.ty.name())));
                }
            }
        }
        Ok(first)
    }

    fn binary(&mut self, op: BinOp, l: &Expr, r: &Expr, pos: usize) -> Result<BExpr> {
        match op {
            BinOp::And | BinOp::Or => {
                let (a, b) = (self.bool_arg(l)?, self.bool_arg(r)?);
                let kind = if op == BinOp::And { BKind::And(Box::new(a), Box::new(b)) } else { BKind::Or(Box::new(a), Box::new(b)) };
                self.mk(kind, Type::Bool, pos)
            }
            BinOp::Add | BinOp::Sub if matches!(r.kind, ExprKind::Interval { .. }) || matches!(l.kind, ExprKind::Interval { .. }) => {
                let (d, iv) = if let ExprKind::Interval { n, unit } = r.kind {
                    (l, (n, unit))
                } else if let (ExprKind::Interval { n, unit }, BinOp::Add) = (&l.kind, op) {
                    (r, (*n, *unit))
                } else {
                    return Err(err(ErrorKind::Type, pos, "subtract an interval from a date, not a date from an interval"));
                };
                let d = self.bind(d)?;
                if d.ty != Type::Date {
                    return Err(err(ErrorKind::Type, pos, format!("an interval is added to a date, not to {}", d.ty.name())));
                }
                let n = if op == BinOp::Sub { iv.0.checked_neg() } else { Some(iv.0) }
                    .ok_or_else(|| err(ErrorKind::Data, pos, "interval out of range"))?;
                let (months, days) = match iv.1 {
                    Unit::Day => (0, n),
                    Unit::Month => (n, 0),
                    Unit::Year => (n.checked_mul(12).ok_or_else(|| err(ErrorKind::Data, pos, "interval out of range"))?, 0),
                };
                self.mk(BKind::DateAdd(Box::new(d), months, days), Type::Date, pos)
            }
            BinOp::Concat => {
                let (a, b) = (self.bind(l)?, self.bind(r)?);
                if a.ty != Type::Text || b.ty != Type::Text {
                    return Err(err(ErrorKind::Type, pos, "|| joins text: CAST the other side AS text"));
                }
                self.mk(BKind::Concat(Box::new(a), Box::new(b)), Type::Text, pos)
            }
            BinOp::Div => {
                let (a, b) = (self.num_arg(l, "/")?, self.num_arg(r, "/")?);
                let ty = Type::Decimal(a.ty.scale().max(DIV_SCALE));
                if b.ty.scale() + ty.scale() > 2 * MAX_SCALE {
                    return Err(err(ErrorKind::Unsupported, pos, "a quotient of too many decimal places"));
                }
                self.mk(BKind::Arith(Arith::Div, Box::new(a), Box::new(b)), ty, pos)
            }
            op if op.is_comparison() => {
                let (a, b) = (self.bind(l)?, self.bind(r)?);
                let (mut a, mut b) = comparable(a, b, pos, "compare")?;
                // `x = y` and `y = x` bind alike (so ORs can share them).
                if matches!(op, BinOp::Eq | BinOp::Ne) && format!("{a:?}") > format!("{b:?}") {
                    core::mem::swap(&mut a, &mut b);
                }
                self.mk(BKind::Cmp(op, Box::new(a), Box::new(b)), Type::Bool, pos)
            }
            _ => {
                let what = op.symbol();
                let (a, b) = (self.bind(l)?, self.bind(r)?);
                if op == BinOp::Sub && a.ty == Type::Date && b.ty == Type::Date {
                    return self.mk(BKind::Arith(Arith::Sub, Box::new(a), Box::new(b)), Type::Int64, pos);
                }
                if !a.ty.is_numeric() || !b.ty.is_numeric() {
                    return Err(err(ErrorKind::Type, pos, format!("operator {what} takes numbers, not {} and {}", a.ty.name(), b.ty.name())));
                }
                let (kind, ty) = match op {
                    BinOp::Add | BinOp::Sub => {
                        let (a, b, ty) = unify_num(a, b);
                        let ar = if op == BinOp::Add { Arith::Add } else { Arith::Sub };
                        (BKind::Arith(ar, Box::new(a), Box::new(b)), ty)
                    }
                    BinOp::Mul => {
                        let s = a.ty.scale() + b.ty.scale();
                        if s > MAX_SCALE {
                            return Err(err(ErrorKind::Unsupported, pos, format!("a product of more than {MAX_SCALE} decimal places")));
                        }
                        let ty = if matches!(a.ty, Type::Decimal(_)) || matches!(b.ty, Type::Decimal(_)) { Type::Decimal(s) } else { Type::Int64 };
                        (BKind::Arith(Arith::Mul, Box::new(a), Box::new(b)), ty)
                    }
                    _ => {
                        if a.ty.scale() != 0 || b.ty.scale() != 0 {
                            return Err(err(ErrorKind::Unsupported, pos, "% takes integers"));
                        }
                        (BKind::Arith(Arith::Mod, Box::new(a), Box::new(b)), Type::Int64)
                    }
                };
                self.mk(kind, ty, pos)
            }
        }
    }

    fn func(&mut self, name: &str, args: &[Expr], star: bool, distinct: bool, pos: usize) -> Result<BExpr> {
        if !is_agg_name(name) {
            return Err(err(ErrorKind::Undefined, pos, format!("function {name}() does not exist: the engine knows sum, avg, min, max and count")));
        }
        if self.post.is_none() {
            return Err(err(ErrorKind::Syntax, pos, format!("aggregate {name}() is not allowed here (WHERE, GROUP BY, JOIN .. ON or inside another aggregate)")));
        }
        if distinct {
            return Err(err(ErrorKind::Unsupported, pos, format!("{name}(DISTINCT ..) is not supported yet")));
        }
        let call = if star {
            if name != "count" {
                return Err(err(ErrorKind::Syntax, pos, format!("{name}(*) is not a function: only count(*)")));
            }
            AggCall { f: AggFn::CountStar, arg: None, ty: Type::Int64 }
        } else {
            let [arg] = args else {
                return Err(err(ErrorKind::Syntax, pos, format!("{name}() takes one argument")));
            };
            let a = self.pre().bind(arg)?;
            let (f, ty) = match name {
                "count" => (AggFn::Count, Type::Int64),
                "min" | "max" => (if name == "min" { AggFn::Min } else { AggFn::Max }, a.ty),
                _ => {
                    if !a.ty.is_numeric() {
                        return Err(err(ErrorKind::Type, arg.pos, format!("{name}() takes a number, not {}", a.ty.name())));
                    }
                    match (name, a.ty) {
                        ("sum", Type::Decimal(s)) => (AggFn::Sum, Type::Decimal(s)),
                        ("sum", _) => (AggFn::Sum, Type::Int64),
                        _ => (AggFn::Avg, Type::Decimal(a.ty.scale().max(AVG_SCALE))),
                    }
                }
            };
            if a.ty == Type::Bool {
                return Err(err(ErrorKind::Type, arg.pos, format!("{name}() of a condition")));
            }
            AggCall { f, arg: Some(a), ty }
        };
        let Some((keys, aggs)) = &mut self.post else { unreachable!() };
        let ty = call.ty;
        let i = match aggs.iter().position(|a| *a == call) {
            Some(i) => i,
            None => {
                aggs.push(call);
                aggs.len() - 1
            }
        };
        Ok(BExpr::new(BKind::Col(keys.len() + i), ty))
    }
}

/// A name for an output column without an alias.
fn default_name(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Column { name, .. } => name.clone(),
        ExprKind::Func { name, star: true, .. } => format!("{name}_star"),
        ExprKind::Func { name, .. } => name.clone(),
        ExprKind::Extract { .. } => "extract".into(),
        ExprKind::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

/// Plans `q` against `tables` (the catalog).
pub fn plan(q: &Query, catalog: &[Table]) -> Result<Plan> {
    if q.from.len() > MAX_TABLES {
        return Err(err(ErrorKind::Limit, q.from[MAX_TABLES].pos, format!("more than {MAX_TABLES} tables in FROM")));
    }
    // FROM: resolve tables, build the scope.
    let mut tables = Vec::new();
    let mut scope = Vec::new();
    for (i, t) in q.from.iter().enumerate() {
        let ti = catalog
            .iter()
            .position(|c| c.schema.name.eq_ignore_ascii_case(&t.name))
            .ok_or_else(|| err(ErrorKind::Undefined, t.pos, format!("table \"{}\" does not exist", t.name)))?;
        let qual = t.alias.clone().unwrap_or_else(|| t.name.clone());
        if q.from[..i].iter().any(|o| o.alias.as_ref().unwrap_or(&o.name) == &qual) {
            return Err(err(ErrorKind::Syntax, t.pos, format!("table name \"{qual}\" given twice: add an alias")));
        }
        tables.push(ti);
        for (c, def) in catalog[ti].schema.columns.iter().enumerate() {
            scope.push(ScopeCol { table: i, qual: qual.clone(), name: def.name.to_ascii_lowercase(), col: c, ty: def.ty });
        }
    }
    let mut b = Binder { scope: &scope, post: None };

    // WHERE, split.
    let mut conds = Vec::new();
    if let Some(f) = &q.filter {
        let w = b.bool_arg(f)?;
        let mut raw = Vec::new();
        conjuncts(w, &mut raw);
        for c in raw {
            factor_or(c, &mut conds);
        }
    }
    let tables_of = |e: &BExpr| -> Vec<usize> {
        let mut cols = Vec::new();
        e.cols(&mut cols);
        let mut t: Vec<usize> = cols.iter().map(|&c| scope[c].table).collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    let n = tables.len();
    let mut filters: Vec<Vec<BExpr>> = vec![Vec::new(); n];
    let mut edges: Vec<(usize, BExpr, usize, BExpr)> = Vec::new();
    let mut multi: Vec<(Vec<usize>, BExpr)> = Vec::new();
    for c in conds {
        let ts = tables_of(&c);
        match ts.len() {
            0 => filters[0].push(c),
            1 => filters[ts[0]].push(c),
            _ => {
                if let BKind::Cmp(BinOp::Eq, l, r) = &c.kind {
                    let (tl, tr) = (tables_of(l), tables_of(r));
                    if tl.len() == 1 && tr.len() == 1 && tl != tr {
                        edges.push((tl[0], (**l).clone(), tr[0], (**r).clone()));
                        continue;
                    }
                }
                multi.push((ts, c));
            }
        }
    }

    // Join keys of different types: bring both sides to one.
    for (_, l, _, r) in &mut edges {
        let (a, c) = comparable(l.clone(), r.clone(), 0, "join on")?;
        *l = a;
        *r = c;
    }
    // The largest table drives. The order of the joins is settled when the
    // query runs and the filtered sizes are known; here, the same greedy
    // order on catalog sizes checks that every table is joined.
    let rows = |i: usize| catalog[tables[i]].rows;
    let driver = (0..n).max_by_key(|&i| (rows(i), core::cmp::Reverse(i))).unwrap_or(0);
    let joins = match join_order(n, driver, &edges, &multi, &mut |c| {
        Ok((0..c.len()).min_by_key(|&i| (rows(c[i].table), c[i].table)).unwrap_or(0))
    })? {
        Ok(j) => j,
        Err(t) => {
            return Err(err(
                ErrorKind::Unsupported,
                q.from[t].pos,
                format!("table \"{}\" is not joined to the others by an equality: cross joins are not supported", q.from[t].name),
            ))
        }
    };

    // Aggregation?
    let aggregate = !q.group_by.is_empty()
        || q.having.is_some()
        || q.select.iter().any(|s| matches!(s, SelectItem::Expr { e, .. } if has_agg(e)));
    let mut names = Vec::new();
    let mut outputs = Vec::new();
    let mut keys = Vec::new();
    for g in &q.group_by {
        if has_agg(g) {
            return Err(err(ErrorKind::Syntax, g.pos, "aggregates are not allowed in GROUP BY"));
        }
        // GROUP BY 1 or GROUP BY alias.
        let target = match &g.kind {
            ExprKind::Num(n) => {
                let k: usize = n.parse().map_err(|_| err(ErrorKind::Syntax, g.pos, "GROUP BY position out of range"))?;
                match q.select.get(k.wrapping_sub(1)) {
                    Some(SelectItem::Expr { e, .. }) => e,
                    _ => return Err(err(ErrorKind::Syntax, g.pos, format!("GROUP BY position {k} is not in the select list"))),
                }
            }
            ExprKind::Column { table: None, name } if b.column(None, name, g.pos).is_err() => q
                .select
                .iter()
                .find_map(|s| match s {
                    SelectItem::Expr { e, alias: Some(a) } if a == name => Some(e),
                    _ => None,
                })
                .unwrap_or(g),
            _ => g,
        };
        keys.push(b.bind(target)?);
    }
    if aggregate {
        b.post = Some((keys, Vec::new()));
    }
    for s in &q.select {
        match s {
            SelectItem::Star(pos) => {
                if aggregate {
                    return Err(err(ErrorKind::Syntax, *pos, "SELECT * cannot be used with GROUP BY or aggregates"));
                }
                for (i, c) in scope.iter().enumerate() {
                    outputs.push(BExpr::new(BKind::Col(i), c.ty));
                    names.push(c.name.clone());
                }
            }
            SelectItem::Expr { e, alias } => {
                outputs.push(b.bind(e)?);
                names.push(alias.clone().unwrap_or_else(|| default_name(e)));
            }
        }
    }
    let visible = outputs.len();
    let having = match &q.having {
        Some(h) => Some(b.bool_arg(h)?),
        None => None,
    };
    let mut order = Vec::new();
    for o in &q.order_by {
        let idx = match &o.e.kind {
            ExprKind::Num(k) => {
                let k: usize = k.parse().unwrap_or(0);
                if k == 0 || k > visible {
                    return Err(err(ErrorKind::Syntax, o.e.pos, format!("ORDER BY position {k} is not in the select list")));
                }
                k - 1
            }
            ExprKind::Column { table: None, name } if names[..visible].iter().any(|n| n == name) => {
                let mut hits = (0..visible).filter(|&i| names[i] == *name);
                let i = hits.next().unwrap_or(0);
                if hits.next().is_some() && q.select.iter().any(|s| matches!(s, SelectItem::Expr { alias: Some(a), .. } if a == name)) {
                    return Err(err(ErrorKind::Syntax, o.e.pos, format!("ORDER BY \"{name}\" is ambiguous")));
                }
                i
            }
            _ => {
                let e = b.bind(&o.e)?;
                match outputs.iter().position(|x| *x == e) {
                    Some(i) => i,
                    None => {
                        outputs.push(e);
                        names.push(String::new());
                        outputs.len() - 1
                    }
                }
            }
        };
        order.push((idx, o.desc));
    }
    let agg = b.post.take().map(|(keys, aggs)| Aggregation { keys, aggs, having });

    // Columns each table must read.
    let mut used = Vec::new();
    for e in filters.iter().flatten() {
        e.cols(&mut used);
    }
    for s in &joins {
        for e in s.probe_keys.iter().chain(&s.build_keys).chain(&s.after) {
            e.cols(&mut used);
        }
    }
    match &agg {
        Some(a) => {
            for e in a.keys.iter().chain(a.aggs.iter().filter_map(|c| c.arg.as_ref())) {
                e.cols(&mut used);
            }
        }
        None => {
            for e in &outputs {
                e.cols(&mut used);
            }
        }
    }
    used.sort_unstable();
    used.dedup();
    let mut needed = vec![Vec::new(); n];
    for c in used {
        needed[scope[c].table].push(c);
    }
    Ok(Plan {
        tables,
        scope,
        needed,
        filters,
        driver,
        joins,
        edges,
        multi,
        agg,
        outputs,
        names,
        visible,
        order,
        limit: q.limit,
    })
}

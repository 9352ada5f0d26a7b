//! The SQL subset's lexer and recursive-descent parser. Every token and
//! every expression node keeps its byte offset in the query, so an error
//! anywhere (parse, binding, types) names the line and column.
//!
//! Grammar (keywords case-insensitive):
//!
//! ```text
//! query   := SELECT item {, item} FROM table {(, | [INNER] JOIN) table [ON expr]}
//!            [WHERE expr] [GROUP BY expr {, expr}] [HAVING expr]
//!            [ORDER BY expr [ASC|DESC] {, ...}] [LIMIT n] [;]
//! item    := * | expr [[AS] name]
//! table   := name [[AS] alias]
//! expr    := OR / AND / NOT / comparison (= <> != < <= > >=, [NOT] LIKE,
//!            [NOT] IN (list), [NOT] BETWEEN a AND b) / + - / * / % / unary -
//! primary := number | 'string' | DATE 'yyyy-mm-dd' | INTERVAL 'n' unit
//!          | INTERVAL 'n unit' | name[.name] | func([DISTINCT] args | *)
//!          | CASE [e] WHEN .. THEN .. [ELSE ..] END | EXTRACT(field FROM e)
//!          | CAST(e AS type) | (expr)
//! ```

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::types::{Error, ErrorKind, Result, Type};

/// Nesting deeper than this is refused (a bound on the parser's stack).
pub const MAX_DEPTH: usize = 64;
/// Longest query accepted.
pub const MAX_QUERY: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Num(String),
    Str(String),
    Sym(&'static str),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Quoted(s) => format!("\"{s}\""),
        Tok::Num(s) => format!("number {s}"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::End => "the end of the query".into(),
    }
}

fn lex(q: &str) -> Result<Vec<(Tok, usize)>> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= b.len() {
                    return Err(Error::at(ErrorKind::Syntax, start, "comment is not closed: add */"));
                }
                if b[i] == b'*' && b[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(q[start..i].to_ascii_lowercase()), start));
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
                return Err(Error::at(ErrorKind::Syntax, i, "a number runs into a name: put a space between them"));
            }
            let text = &q[start..i];
            if text.matches('.').count() > 1 {
                return Err(Error::at(ErrorKind::Syntax, start, format!("malformed number {text}")));
            }
            out.push((Tok::Num(text.to_string()), start));
        } else if c == b'\'' || c == b'"' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(ch) = q[i..].chars().next() else {
                    let what = if c == b'\'' { "string" } else { "quoted name" };
                    return Err(Error::at(ErrorKind::Syntax, start, format!("{what} is not closed: add {}", c as char)));
                };
                i += ch.len_utf8();
                if ch == c as char {
                    if b.get(i) == Some(&c) {
                        s.push(ch);
                        i += 1;
                        continue;
                    }
                    break;
                }
                s.push(ch);
            }
            out.push((if c == b'\'' { Tok::Str(s) } else { Tok::Quoted(s) }, start));
        } else {
            const SYMS: [&str; 17] = ["<>", "!=", "<=", ">=", "||", "(", ")", ",", ".", ";", "*", "+", "-", "/", "%", "=", "<"];
            let sym = SYMS
                .iter()
                .find(|s| q[i..].starts_with(**s))
                .copied()
                .or(if c == b'>' { Some(">") } else { None });
            match sym {
                Some(s) => {
                    i += s.len();
                    out.push((Tok::Sym(s), start));
                }
                None => {
                    let ch = q[i..].chars().next().unwrap_or('?');
                    return Err(Error::at(ErrorKind::Syntax, start, format!("unexpected character '{ch}'")));
                }
            }
        }
    }
    out.push((Tok::End, q.len()));
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "OR",
            BinOp::And => "AND",
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Concat => "||",
        }
    }
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Day,
    Month,
    Year,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    /// Byte offset of the expression's first (or operator) token.
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Column { table: Option<String>, name: String },
    Num(String),
    Str(String),
    Date(String),
    Interval { n: i64, unit: Unit },
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary { op: BinOp, l: Box<Expr>, r: Box<Expr> },
    Func { name: String, args: Vec<Expr>, star: bool, distinct: bool },
    Case { operand: Option<Box<Expr>>, whens: Vec<(Expr, Expr)>, els: Option<Box<Expr>> },
    Like { e: Box<Expr>, pat: Box<Expr>, neg: bool },
    InList { e: Box<Expr>, list: Vec<Expr>, neg: bool },
    Between { e: Box<Expr>, lo: Box<Expr>, hi: Box<Expr>, neg: bool },
    Extract { field: Unit, e: Box<Expr> },
    Cast { e: Box<Expr>, ty: Type },
}

#[derive(Clone, Debug, PartialEq)]
pub enum SelectItem {
    Star(usize),
    Expr { e: Expr, alias: Option<String> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableRef {
    pub name: String,
    pub alias: Option<String>,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderItem {
    pub e: Expr,
    pub desc: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub from: Vec<TableRef>,
    /// WHERE and every JOIN .. ON condition, ANDed.
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<u64>,
}

const RESERVED: &[&str] = &[
    "select", "from", "where", "group", "by", "having", "order", "limit", "join", "inner", "on", "as", "and", "or",
    "not", "asc", "desc", "case", "when", "then", "else", "end", "in", "like", "between", "left", "right", "full",
    "outer", "cross", "union", "offset", "is", "null",
];

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn pos(&self) -> usize {
        self.toks[self.i].1
    }
    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == kw)
    }
    fn kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Tok::Sym(t) if *t == s) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::at(ErrorKind::Syntax, self.pos(), msg)
    }
    fn expected(&self, what: &str) -> Error {
        self.err(format!("expected {what}, found {}", describe(self.peek())))
    }
    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.kw(kw) {
            Ok(())
        } else {
            Err(self.expected(&kw.to_ascii_uppercase()))
        }
    }
    fn expect_sym(&mut self, s: &str) -> Result<()> {
        if self.sym(s) {
            Ok(())
        } else {
            Err(self.expected(&format!("'{s}'")))
        }
    }
    fn name(&mut self, what: &str) -> Result<String> {
        match self.peek().clone() {
            Tok::Ident(s) if !RESERVED.contains(&s.as_str()) => {
                self.bump();
                Ok(s)
            }
            Tok::Quoted(s) => {
                self.bump();
                Ok(s)
            }
            _ => Err(self.expected(what)),
        }
    }
    fn alias(&mut self) -> Result<Option<String>> {
        if self.kw("as") {
            return self.name("a name after AS").map(Some);
        }
        match self.peek() {
            Tok::Ident(s) if !RESERVED.contains(&s.as_str()) => self.name("alias").map(Some),
            Tok::Quoted(_) => self.name("alias").map(Some),
            _ => Ok(None),
        }
    }

    fn query(&mut self) -> Result<Query> {
        if !self.is_kw("select") {
            return Err(self.expected("SELECT (only queries are supported)"));
        }
        self.bump();
        let mut select = Vec::new();
        loop {
            if matches!(self.peek(), Tok::Sym("*")) {
                select.push(SelectItem::Star(self.pos()));
                self.bump();
            } else {
                let e = self.expr()?;
                let alias = self.alias()?;
                select.push(SelectItem::Expr { e, alias });
            }
            if !self.sym(",") {
                break;
            }
        }
        self.expect_kw("from")?;
        let mut from = Vec::new();
        let mut conds = Vec::new();
        loop {
            let pos = self.pos();
            let name = self.name("a table name")?;
            let alias = self.alias()?;
            from.push(TableRef { name, alias, pos });
            loop {
                if self.is_kw("left") || self.is_kw("right") || self.is_kw("full") || self.is_kw("cross") {
                    return Err(self.err("only inner joins are supported: write JOIN .. ON or list the tables with commas"));
                }
                if self.kw("inner") {
                    self.expect_kw("join")?;
                } else if !self.kw("join") {
                    break;
                }
                let pos = self.pos();
                let name = self.name("a table name")?;
                let alias = self.alias()?;
                from.push(TableRef { name, alias, pos });
                self.expect_kw("on")?;
                conds.push(self.expr()?);
            }
            if !self.sym(",") {
                break;
            }
        }
        let mut filter = None;
        if self.kw("where") {
            filter = Some(self.expr()?);
        }
        for c in conds {
            filter = Some(match filter {
                None => c,
                Some(f) => {
                    let pos = c.pos;
                    Expr { kind: ExprKind::Binary { op: BinOp::And, l: Box::new(f), r: Box::new(c) }, pos }
                }
            });
        }
        let mut group_by = Vec::new();
        if self.kw("group") {
            self.expect_kw("by")?;
            loop {
                group_by.push(self.expr()?);
                if !self.sym(",") {
                    break;
                }
            }
        }
        let having = if self.kw("having") { Some(self.expr()?) } else { None };
        let mut order_by = Vec::new();
        if self.kw("order") {
            self.expect_kw("by")?;
            loop {
                let e = self.expr()?;
                let desc = if self.kw("desc") {
                    true
                } else {
                    self.kw("asc");
                    false
                };
                if self.is_kw("nulls") {
                    return Err(self.err("NULLS FIRST/LAST is not supported"));
                }
                order_by.push(OrderItem { e, desc });
                if !self.sym(",") {
                    break;
                }
            }
        }
        let mut limit = None;
        if self.kw("limit") {
            match self.peek().clone() {
                Tok::Num(n) => match n.parse::<u64>() {
                    Ok(v) => {
                        self.bump();
                        limit = Some(v);
                    }
                    Err(_) => return Err(self.err("LIMIT takes a whole number")),
                },
                _ => return Err(self.expected("a number after LIMIT")),
            }
        }
        self.sym(";");
        if !matches!(self.peek(), Tok::End) {
            return Err(self.err(format!("unexpected {} after the end of the query", describe(self.peek()))));
        }
        Ok(Query { select, from, filter, group_by, having, order_by, limit })
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("expression nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr> {
        self.enter()?;
        let r = self.or();
        self.depth -= 1;
        r
    }

    fn bin(op: BinOp, l: Expr, r: Expr, pos: usize) -> Expr {
        Expr { kind: ExprKind::Binary { op, l: Box::new(l), r: Box::new(r) }, pos }
    }

    /// A left-deep chain `next (op next)*`; each operator counts as a
    /// nesting level, so a long chain is bounded like parentheses are.
    fn chain(&mut self, op_of: fn(&Tok) -> Option<BinOp>, next: fn(&mut Self) -> Result<Expr>) -> Result<Expr> {
        let mut l = next(self)?;
        let depth = self.depth;
        while let Some(op) = op_of(self.peek()) {
            let pos = self.bump().1;
            self.enter()?;
            let r = next(self)?;
            l = Self::bin(op, l, r, pos);
        }
        self.depth = depth;
        Ok(l)
    }

    fn or(&mut self) -> Result<Expr> {
        self.chain(|t| matches!(t, Tok::Ident(s) if s == "or").then_some(BinOp::Or), Self::and)
    }

    fn and(&mut self) -> Result<Expr> {
        self.chain(|t| matches!(t, Tok::Ident(s) if s == "and").then_some(BinOp::And), Self::not)
    }

    fn not(&mut self) -> Result<Expr> {
        if self.is_kw("not") {
            let pos = self.bump().1;
            self.enter()?;
            let e = self.not();
            self.depth -= 1;
            return Ok(Expr { kind: ExprKind::Not(Box::new(e?)), pos });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr> {
        let l = self.additive()?;
        let pos = self.pos();
        let op = match self.peek() {
            Tok::Sym("=") => Some(BinOp::Eq),
            Tok::Sym("<>") | Tok::Sym("!=") => Some(BinOp::Ne),
            Tok::Sym("<") => Some(BinOp::Lt),
            Tok::Sym("<=") => Some(BinOp::Le),
            Tok::Sym(">") => Some(BinOp::Gt),
            Tok::Sym(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let r = self.additive()?;
            return Ok(Self::bin(op, l, r, pos));
        }
        let neg = self.is_kw("not");
        if neg {
            self.bump();
        }
        if self.kw("like") {
            let pat = self.additive()?;
            return Ok(Expr { kind: ExprKind::Like { e: Box::new(l), pat: Box::new(pat), neg }, pos });
        }
        if self.kw("in") {
            self.expect_sym("(")?;
            if self.is_kw("select") {
                return Err(self.err("subqueries are not supported"));
            }
            let mut list = Vec::new();
            loop {
                list.push(self.expr()?);
                if !self.sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
            return Ok(Expr { kind: ExprKind::InList { e: Box::new(l), list, neg }, pos });
        }
        if self.kw("between") {
            let lo = self.additive()?;
            self.expect_kw("and")?;
            let hi = self.additive()?;
            return Ok(Expr { kind: ExprKind::Between { e: Box::new(l), lo: Box::new(lo), hi: Box::new(hi), neg }, pos });
        }
        if neg {
            return Err(self.expected("LIKE, IN or BETWEEN after NOT"));
        }
        if self.is_kw("is") {
            return Err(self.err("IS [NOT] NULL is not supported (stored columns hold no NULLs)"));
        }
        Ok(l)
    }

    fn additive(&mut self) -> Result<Expr> {
        self.chain(
            |t| match t {
                Tok::Sym("+") => Some(BinOp::Add),
                Tok::Sym("-") => Some(BinOp::Sub),
                Tok::Sym("||") => Some(BinOp::Concat),
                _ => None,
            },
            Self::multiplicative,
        )
    }

    fn multiplicative(&mut self) -> Result<Expr> {
        self.chain(
            |t| match t {
                Tok::Sym("*") => Some(BinOp::Mul),
                Tok::Sym("/") => Some(BinOp::Div),
                Tok::Sym("%") => Some(BinOp::Mod),
                _ => None,
            },
            Self::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr> {
        if matches!(self.peek(), Tok::Sym("-")) {
            let pos = self.bump().1;
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            return Ok(Expr { kind: ExprKind::Neg(Box::new(e?)), pos });
        }
        if matches!(self.peek(), Tok::Sym("+")) {
            self.bump();
        }
        self.primary()
    }

    fn unit(&mut self) -> Result<Unit> {
        let u = match self.peek() {
            Tok::Ident(s) => match s.as_str() {
                "day" | "days" => Unit::Day,
                "month" | "months" => Unit::Month,
                "year" | "years" => Unit::Year,
                _ => return Err(self.expected("DAY, MONTH or YEAR")),
            },
            _ => return Err(self.expected("DAY, MONTH or YEAR")),
        };
        self.bump();
        Ok(u)
    }

    fn primary(&mut self) -> Result<Expr> {
        let (tok, pos) = self.bump();
        let kind = match tok {
            Tok::Num(n) => ExprKind::Num(n),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Sym("(") => {
                if self.is_kw("select") {
                    return Err(self.err("subqueries are not supported"));
                }
                let e = self.expr()?;
                self.expect_sym(")")?;
                return Ok(e);
            }
            Tok::Ident(ref kw) if kw == "date" && matches!(self.peek(), Tok::Str(_)) => {
                let Tok::Str(s) = self.bump().0 else { unreachable!() };
                ExprKind::Date(s)
            }
            Tok::Ident(ref kw) if kw == "interval" => {
                let spos = self.pos();
                let Tok::Str(s) = self.peek().clone() else {
                    return Err(self.expected("a quoted amount after INTERVAL, as in INTERVAL '90' DAY"));
                };
                self.bump();
                let mut parts = s.split_whitespace();
                let num = parts.next().unwrap_or("");
                let n: i64 = num
                    .parse()
                    .map_err(|_| Error::at(ErrorKind::Syntax, spos, format!("interval amount '{num}' is not a whole number")))?;
                let unit = match parts.next() {
                    Some(u) => match u.to_ascii_lowercase().as_str() {
                        "day" | "days" => Unit::Day,
                        "month" | "months" => Unit::Month,
                        "year" | "years" => Unit::Year,
                        _ => return Err(Error::at(ErrorKind::Syntax, spos, format!("unknown interval unit '{u}': use day, month or year"))),
                    },
                    None => self.unit()?,
                };
                if parts.next().is_some() {
                    return Err(Error::at(ErrorKind::Syntax, spos, "an interval takes one amount and one unit"));
                }
                ExprKind::Interval { n, unit }
            }
            Tok::Ident(ref kw) if kw == "case" => {
                let operand = if self.is_kw("when") { None } else { Some(Box::new(self.expr()?)) };
                let mut whens = Vec::new();
                while self.kw("when") {
                    let c = self.expr()?;
                    self.expect_kw("then")?;
                    whens.push((c, self.expr()?));
                }
                if whens.is_empty() {
                    return Err(self.expected("WHEN"));
                }
                let els = if self.kw("else") { Some(Box::new(self.expr()?)) } else { None };
                self.expect_kw("end")?;
                ExprKind::Case { operand, whens, els }
            }
            Tok::Ident(ref kw) if kw == "extract" && matches!(self.peek(), Tok::Sym("(")) => {
                self.bump();
                let field = self.unit()?;
                self.expect_kw("from")?;
                let e = self.expr()?;
                self.expect_sym(")")?;
                ExprKind::Extract { field, e: Box::new(e) }
            }
            Tok::Ident(ref kw) if kw == "cast" && matches!(self.peek(), Tok::Sym("(")) => {
                self.bump();
                let e = self.expr()?;
                self.expect_kw("as")?;
                let tpos = self.pos();
                let tname = self.name("a type name")?;
                let ty = match tname.as_str() {
                    "int" | "integer" | "int4" => Type::Int32,
                    "bigint" | "int8" => Type::Int64,
                    "date" => Type::Date,
                    "text" | "varchar" => Type::Text,
                    "decimal" | "numeric" => {
                        self.expect_sym("(")?;
                        let _precision = self.number_u8()?;
                        let scale = if self.sym(",") { self.number_u8()? } else { 0 };
                        self.expect_sym(")")?;
                        if scale > crate::types::MAX_SCALE {
                            return Err(Error::at(ErrorKind::Unsupported, tpos, format!("decimal scale above {}", crate::types::MAX_SCALE)));
                        }
                        Type::Decimal(scale)
                    }
                    other => return Err(Error::at(ErrorKind::Unsupported, tpos, format!("cannot cast to {other}: use int, bigint, decimal(p,s), date or text"))),
                };
                self.expect_sym(")")?;
                ExprKind::Cast { e: Box::new(e), ty }
            }
            Tok::Ident(ref s) | Tok::Quoted(ref s) if !RESERVED.contains(&s.as_str()) || matches!(tok, Tok::Quoted(_)) => {
                let name = s.clone();
                if matches!(tok, Tok::Ident(_)) && self.sym("(") {
                    let mut args = Vec::new();
                    let mut star = false;
                    let distinct = self.kw("distinct");
                    if self.sym("*") {
                        star = true;
                    } else if !matches!(self.peek(), Tok::Sym(")")) {
                        loop {
                            args.push(self.expr()?);
                            if !self.sym(",") {
                                break;
                            }
                        }
                    }
                    self.expect_sym(")")?;
                    ExprKind::Func { name, args, star, distinct }
                } else if self.sym(".") {
                    let col = self.name("a column name after '.'")?;
                    ExprKind::Column { table: Some(name), name: col }
                } else {
                    ExprKind::Column { table: None, name }
                }
            }
            t => {
                self.i = self.i.saturating_sub(usize::from(!matches!(t, Tok::End)));
                return Err(Error::at(ErrorKind::Syntax, pos, format!("expected an expression, found {}", describe(&t))));
            }
        };
        Ok(Expr { kind, pos })
    }

    fn number_u8(&mut self) -> Result<u8> {
        match self.peek().clone() {
            Tok::Num(n) => match n.parse::<u8>() {
                Ok(v) => {
                    self.bump();
                    Ok(v)
                }
                Err(_) => Err(self.err("expected a small whole number")),
            },
            _ => Err(self.expected("a number")),
        }
    }
}

/// Parses one SELECT query.
pub fn parse(q: &str) -> Result<Query> {
    if q.len() > MAX_QUERY {
        return Err(Error::new(ErrorKind::Limit, format!("query longer than {MAX_QUERY} bytes")));
    }
    let toks = lex(q)?;
    Parser { toks, i: 0, depth: 0 }.query()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> (usize, usize, String) {
        let e = parse(q).unwrap_err().locate(q);
        let (l, c) = e.line_col.unwrap();
        (l, c, e.msg)
    }

    #[test]
    fn parses_tpch_shapes() {
        let q = parse(
            "select l_returnflag, sum(l_extendedprice * (1 - l_discount)) as revenue, count(*) from lineitem l \
             join orders o on l.l_orderkey = o.o_orderkey, customer \
             where l_shipdate <= date '1998-12-01' - interval '90' day and c_mktsegment like 'BUILD%' \
             and l_discount between 0.05 and 0.07 and r_name in ('ASIA', 'EUROPE') \
             group by l_returnflag order by revenue desc, l_returnflag limit 10;",
        )
        .unwrap();
        assert_eq!(q.from.len(), 3);
        assert_eq!(q.from[0].alias.as_deref(), Some("l"));
        assert_eq!(q.order_by.len(), 2);
        assert!(q.order_by[0].desc);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.group_by.len(), 1);
        let p = parse("select a from t join u on a = b join v on b = c").unwrap();
        assert_eq!(p.from.len(), 3);
    }

    #[test]
    fn errors_have_positions() {
        assert_eq!(err("select a\nform t").0, 2);
        let (l, c, m) = err("select a from t\n where a = = 3");
        assert_eq!((l, c), (2, 12));
        assert!(m.contains("expected an expression"), "{m}");
        let (l, c, m) = err("select 'abc from t");
        assert_eq!((l, c), (1, 8));
        assert!(m.contains("not closed"), "{m}");
        let (_, c, _) = err("select a from t limit x");
        assert_eq!(c, 23);
        let (_, c, m) = err("select a from t where a is null");
        assert_eq!(c, 25);
        assert!(m.contains("NULL"));
        let (_, c, _) = err("select a from t left join u on a = b");
        assert_eq!(c, 17);
        assert!(err("select interval '3' week from t").2.contains("DAY, MONTH or YEAR"));
    }

    #[test]
    fn depth_is_bounded() {
        use alloc::vec;
        let q = format!("select {}1{} from t", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&q).unwrap_err().msg.contains("nested"));
        let q = format!("select {}1 from t", "-".repeat(10_000));
        assert!(parse(&q).is_err());
        let q = format!("select {}1 from t", "not ".repeat(10_000));
        assert!(parse(&q).is_err());
        let q = format!("select 1{} from t", "+1".repeat(10_000));
        assert!(parse(&q).unwrap_err().msg.contains("nested"));
        let q = format!("select 1 from t where {}", vec!["a = 1"; 10_000].join(" and "));
        assert!(parse(&q).unwrap_err().msg.contains("nested"));
        let q = format!("select 1{} from t", "+1".repeat(40));
        assert!(parse(&q).is_ok());
    }
}

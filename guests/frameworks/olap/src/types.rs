//! Column types, scalar values, dates and fixed-point decimals, and the
//! engine's error type.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use core::fmt;

/// A column type, stored and computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// 32-bit integer (PostgreSQL `int4`).
    Int32,
    /// 64-bit integer (`int8`); also the type of integer expressions.
    Int64,
    /// Fixed point: the integer value is scaled by `10^scale`.
    Decimal(u8),
    /// Days since 1970-01-01.
    Date,
    /// UTF-8 text.
    Text,
    /// A predicate's result (never stored).
    Bool,
}

/// The largest decimal scale the engine computes with.
pub const MAX_SCALE: u8 = 18;

impl Type {
    /// Integers and decimals. In batches these and dates are 64-bit
    /// numbers, 128-bit where a result outgrew 64 bits.
    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int32 | Type::Int64 | Type::Decimal(_))
    }
    /// The decimal scale of a number type (0 for integers).
    pub fn scale(self) -> u8 {
        match self {
            Type::Decimal(s) => s,
            _ => 0,
        }
    }
    /// The SQL name (in errors and docs).
    pub fn name(self) -> String {
        match self {
            Type::Int32 => "integer".into(),
            Type::Int64 => "bigint".into(),
            Type::Decimal(s) => format!("decimal(18,{s})"),
            Type::Date => "date".into(),
            Type::Text => "text".into(),
            Type::Bool => "boolean".into(),
        }
    }
}

/// One value of a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Only from an aggregate over no rows (`sum`, `avg`, `min`, `max`).
    Null,
    /// A number or date, scaled as its column's type says.
    Num(i128),
    Str(Arc<str>),
    Bool(bool),
}

impl Value {
    /// The value as text in the column's type (PostgreSQL's text format).
    pub fn render(&self, ty: Type) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Num(v) => Some(match ty {
                Type::Decimal(s) => format_decimal(*v, s),
                Type::Date => match i32::try_from(*v) {
                    Ok(d) => format_date(d),
                    Err(_) => v.to_string(),
                },
                _ => v.to_string(),
            }),
            Value::Str(s) => Some(s.to_string()),
            Value::Bool(b) => Some(if *b { "t".into() } else { "f".into() }),
        }
    }
}

/// Error classes, each with the SQLSTATE a PostgreSQL front reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query does not parse (42601).
    Syntax,
    /// Unknown table or column (42P01 / 42703 share 42703 here).
    Undefined,
    /// Types that do not fit (42804).
    Type,
    /// Valid SQL the engine does not support yet (0A000).
    Unsupported,
    /// Overflow, division by zero, bad literal (22000 family).
    Data,
    /// A disk image that fails a checksum or a structural check (XX001).
    Corrupt,
    /// The block device failed (58030).
    Io,
    /// A limit (rows, memory) was hit (54000).
    Limit,
    /// Loader input that does not fit the schema (22P02).
    Input,
}

impl ErrorKind {
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "42601",
            ErrorKind::Undefined => "42703",
            ErrorKind::Type => "42804",
            ErrorKind::Unsupported => "0A000",
            ErrorKind::Data => "22000",
            ErrorKind::Corrupt => "XX001",
            ErrorKind::Io => "58030",
            ErrorKind::Limit => "54000",
            ErrorKind::Input => "22P02",
        }
    }
}

/// An engine error: what went wrong, and for SQL errors where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub msg: String,
    /// Byte offset into the query of the offending token.
    pub offset: Option<usize>,
    /// 1-based line and column (in characters) of `offset`, once the
    /// error has met its query ([`Error::locate`]).
    pub line_col: Option<(usize, usize)>,
}

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
            offset: None,
            line_col: None,
        }
    }
    pub fn at(kind: ErrorKind, offset: usize, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
            offset: Some(offset),
            line_col: None,
        }
    }
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, msg)
    }
    /// Fills in line and column from the query text.
    pub fn locate(mut self, query: &str) -> Self {
        if let Some(off) = self.offset {
            let off = off.min(query.len());
            let before = query.get(..off).unwrap_or(query);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            self.line_col = Some((line, col));
        }
        self
    }
    /// The 1-based character position PostgreSQL's ErrorResponse `P` field carries.
    pub fn position(&self, query: &str) -> Option<usize> {
        let off = self.offset?.min(query.len());
        Some(query.get(..off).map_or(0, |s| s.chars().count()) + 1)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((l, c)) => write!(f, "line {l}, column {c}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl From<hallows_blockdev::Error> for Error {
    fn from(e: hallows_blockdev::Error) -> Self {
        Error::new(ErrorKind::Io, format!("block device: {e}"))
    }
}

pub type Result<T, E = Error> = core::result::Result<T, E>;

/// 10^n for n <= 38.
pub fn pow10(n: u8) -> i128 {
    10i128.pow(u32::from(n.min(38)))
}

/// Parses `-12.345` into an integer scaled by `10^scale`; more fraction
/// digits than `scale` is an error (no silent rounding), fewer are padded.
pub fn parse_decimal(s: &str, scale: u8) -> Option<i128> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > usize::from(scale)
        || int.len() > 30
    {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let pad = usize::from(scale) - frac.len();
    v = v.checked_mul(pow10(pad as u8))?;
    Some(if neg { -v } else { v })
}

/// Renders a scaled integer with exactly `scale` fraction digits.
pub fn format_decimal(v: i128, scale: u8) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let p = pow10(scale);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let p = p as u128;
    format!("{sign}{}.{:0width$}", a / p, a % p, width = usize::from(scale))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` of year `y`.
pub fn month_days(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `YYYY-MM-DD` (years 1..=9999) into days since the epoch.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > month_days(i64::from(y), m) {
        return None;
    }
    i32::try_from(days_from_civil(i64::from(y), m, d)).ok()
}

/// `YYYY-MM-DD` of days since the epoch.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A date plus `months` calendar months, the day clamped to the month's
/// end (PostgreSQL and DuckDB: 1995-01-31 + 1 month = 1995-02-28).
pub fn add_months(days: i64, months: i64) -> Option<i64> {
    let (y, m, d) = civil_from_days(days);
    let total = y.checked_mul(12)?.checked_add(i64::from(m) - 1)?.checked_add(months)?;
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    if !(1..=9999).contains(&ny) {
        return None;
    }
    Some(days_from_civil(ny, nm, d.min(month_days(ny, nm))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for d in [-719_162, -1, 0, 1, 10_000, 2_932_896] {
            let s = format_date(d);
            assert_eq!(parse_date(&s), Some(d), "{s}");
        }
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1998-12-01"), Some(10_561));
        assert_eq!(parse_date("1996-02-30"), None);
        assert_eq!(parse_date("1996-2-03"), None);
        assert_eq!(parse_date("+996-02-03"), None);
        assert_eq!(add_months(parse_date("1995-01-31").unwrap().into(), 1), Some(parse_date("1995-02-28").unwrap().into()));
        assert_eq!(add_months(parse_date("1996-01-31").unwrap().into(), 13), Some(parse_date("1997-02-28").unwrap().into()));
        assert_eq!(add_months(parse_date("1994-01-01").unwrap().into(), 12), Some(parse_date("1995-01-01").unwrap().into()));
        // The extremes of i32 days and of months stay in range or give None.
        for d in [i64::from(i32::MIN), i64::from(i32::MAX)] {
            let _ = civil_from_days(d);
            assert_eq!(add_months(d, 1), None);
        }
        assert_eq!(add_months(0, i64::MAX), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("24710.35", 2), Some(2_471_035));
        assert_eq!(parse_decimal("-0.5", 2), Some(-50));
        assert_eq!(parse_decimal("7", 2), Some(700));
        assert_eq!(parse_decimal("0.123", 2), None);
        assert_eq!(parse_decimal("1e3", 2), None);
        assert_eq!(parse_decimal("", 2), None);
        assert_eq!(parse_decimal(".", 2), None);
        assert_eq!(format_decimal(-50, 2), "-0.50");
        assert_eq!(format_decimal(2_471_035, 2), "24710.35");
        assert_eq!(format_decimal(5, 4), "0.0005");
        assert_eq!(format_decimal(i128::MIN, 2), "-1701411834604692317316873037158841057.28");
    }

    #[test]
    fn error_position() {
        let q = "select\n  foo from t";
        let e = Error::at(ErrorKind::Undefined, 9, "x").locate(q);
        assert_eq!(e.line_col, Some((2, 3)));
        assert_eq!(e.position(q), Some(10));
    }
}

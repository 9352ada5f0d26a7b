//! RESP2, Redis's protocol: requests (arrays of bulk strings, or inline
//! commands as a terminal sends them) in, replies out.
//!
//! The parser is incremental and bounded: it works on whatever bytes a
//! connection has buffered, returns `Ok(None)` until a whole request is
//! there, and refuses (with Redis's own protocol-error text, after which
//! the connection is closed, as Redis does) anything over the limits
//! below, so no client can make the server hold more than
//! [`Limits::max_request`] bytes for a connection.

use alloc::vec::Vec;
use core::ops::Range;

/// Bounds on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most arguments in one request.
    pub max_args: usize,
    /// Longest argument (Redis's `proto-max-bulk-len`).
    pub max_bulk: usize,
    /// Longest inline request line.
    pub max_inline: usize,
    /// Most bytes of one request in all.
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_args: 4096, max_bulk: 128 << 10, max_inline: 64 << 10, max_request: 192 << 10 }
    }
}

/// A protocol error: the text Redis sends (after `-ERR `), then it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoError(pub &'static str);

/// A parsed request: argument ranges in the buffer, and bytes consumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub args: Vec<Range<usize>>,
    pub len: usize,
}

fn line(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, ProtoError> {
    // The index of the '\r' ending the line that starts at `from`.
    let end = buf.len().min(from.saturating_add(max + 2));
    match buf[from..end].windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(from + i)),
        None if end - from >= max + 2 => Err(ProtoError("Protocol error: too big inline request")),
        None => Ok(None),
    }
}

fn number(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// Parses one request from the start of `buf`.
pub fn parse(buf: &[u8], lim: &Limits) -> Result<Option<Request>, ProtoError> {
    let mut args = Vec::new();
    Ok(parse_into(buf, lim, &mut args)?.map(|len| Request { args, len }))
}

/// [`parse`] into the caller's `args` (cleared first; a connection reuses
/// one vector for all its requests): the request's length, if whole.
pub fn parse_into(buf: &[u8], lim: &Limits, args: &mut Vec<Range<usize>>) -> Result<Option<usize>, ProtoError> {
    args.clear();
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf, lim, args);
    }
    let Some(end) = line(buf, 1, 32).map_err(|_| ProtoError("Protocol error: invalid multibulk length"))? else { return Ok(None) };
    let n = number(&buf[1..end]).ok_or(ProtoError("Protocol error: invalid multibulk length"))?;
    if n > lim.max_args as i64 {
        return Err(ProtoError("Protocol error: invalid multibulk length"));
    }
    let mut at = end + 2;
    if n <= 0 {
        return Ok(Some(at));
    }
    args.reserve(n as usize);
    for _ in 0..n {
        if at >= buf.len() {
            return Ok(None);
        }
        if buf[at] != b'$' {
            return Err(ProtoError("Protocol error: expected '$'"));
        }
        let Some(end) = line(buf, at + 1, 32).map_err(|_| ProtoError("Protocol error: invalid bulk length"))? else { return Ok(None) };
        let len = number(&buf[at + 1..end]).ok_or(ProtoError("Protocol error: invalid bulk length"))?;
        if len < 0 || len as usize > lim.max_bulk {
            return Err(ProtoError("Protocol error: invalid bulk length"));
        }
        let start = end + 2;
        let stop = start + len as usize;
        if stop > lim.max_request {
            return Err(ProtoError("Protocol error: request too large"));
        }
        if buf.len() < stop + 2 {
            return Ok(None);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(ProtoError("Protocol error: expected '\\r\\n' after a bulk string"));
        }
        args.push(start..stop);
        at = stop + 2;
    }
    Ok(Some(at))
}

fn parse_inline(buf: &[u8], lim: &Limits, args: &mut Vec<Range<usize>>) -> Result<Option<usize>, ProtoError> {
    // A terminal may end lines with a bare '\n'.
    let Some(nl) = buf.iter().take(lim.max_inline + 2).position(|&c| c == b'\n') else {
        return if buf.len() > lim.max_inline { Err(ProtoError("Protocol error: too big inline request")) } else { Ok(None) };
    };
    let end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    let mut i = 0;
    while i < end {
        while i < end && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= end {
            break;
        }
        if buf[i] == b'"' || buf[i] == b'\'' {
            // Quoted argument (no escapes inside): up to the matching quote.
            let q = buf[i];
            let start = i + 1;
            let Some(close) = buf[start..end].iter().position(|&c| c == q) else {
                return Err(ProtoError("Protocol error: unbalanced quotes in request"));
            };
            args.push(start..start + close);
            i = start + close + 1;
        } else {
            let start = i;
            while i < end && !buf[i].is_ascii_whitespace() {
                i += 1;
            }
            args.push(start..i);
        }
        if args.len() > lim.max_args {
            return Err(ProtoError("Protocol error: invalid multibulk length"));
        }
    }
    Ok(Some(nl + 1))
}

// ---- replies ----

fn push_num(out: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&tmp[i..]);
}

/// `+OK`-style status reply.
pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An error reply; `s` starts with its code (`ERR`, `WRONGTYPE`, ...).
pub fn error(out: &mut Vec<u8>, s: &str) {
    out.push(b'-');
    // An error line must not contain CR or LF.
    out.extend(s.bytes().map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
    out.extend_from_slice(b"\r\n");
}

pub fn int(out: &mut Vec<u8>, v: i64) {
    out.push(b':');
    push_num(out, v);
    out.extend_from_slice(b"\r\n");
}

pub fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'$');
    push_num(out, b.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

pub fn nil_array(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*-1\r\n");
}

pub fn array(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_num(out, n as i64);
    out.extend_from_slice(b"\r\n");
}

/// Parses a decimal integer argument as Redis does (no spaces, no `+`).
pub fn parse_int(s: &[u8]) -> Option<i64> {
    if s.len() > 1 && (s[0] == b'0' || (s[0] == b'-' && s[1] == b'0')) {
        return None;
    }
    number(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn args(buf: &[u8]) -> Vec<&[u8]> {
        let r = parse(buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(r.len, buf.len());
        r.args.iter().map(|a| &buf[a.clone()]).collect()
    }

    #[test]
    fn multibulk_and_inline() {
        assert_eq!(args(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), vec![&b"GET"[..], b"k"]);
        assert_eq!(args(b"*1\r\n$0\r\n\r\n"), vec![&b""[..]]);
        assert_eq!(args(b"PING\r\n"), vec![&b"PING"[..]]);
        assert_eq!(args(b"set a \"b c\"\n"), vec![&b"set"[..], b"a", b"b c"]);
        assert_eq!(args(b"\r\n"), Vec::<&[u8]>::new());
        assert_eq!(args(b"*0\r\n"), Vec::<&[u8]>::new());
    }

    #[test]
    fn incomplete_requests_wait() {
        let full = b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut], &Limits::default()), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn bad_requests_are_protocol_errors() {
        let l = Limits::default();
        assert!(parse(b"*x\r\n", &l).is_err());
        assert!(parse(b"*1\r\n:3\r\n", &l).is_err());
        assert!(parse(b"*1\r\n$-5\r\n", &l).is_err());
        assert!(parse(b"*1\r\n$3\r\nabcXY", &l).is_err());
        assert!(parse(b"*99999999\r\n", &l).is_err());
        assert!(parse(b"*1\r\n$999999999\r\n", &l).is_err());
        assert!(parse(b"*1\r\n$99999999999999999999999\r\n", &l).is_err());
        assert!(parse(&[b'a'; 70_000], &l).is_err());
        assert!(parse(b"set a \"b\n", &l).is_err());
    }

    #[test]
    fn replies() {
        let mut o = Vec::new();
        simple(&mut o, "OK");
        int(&mut o, -12);
        int(&mut o, i64::MIN);
        bulk(&mut o, b"hi");
        nil(&mut o);
        array(&mut o, 2);
        error(&mut o, "ERR a\r\nb");
        assert_eq!(o, b"+OK\r\n:-12\r\n:-9223372036854775808\r\n$2\r\nhi\r\n$-1\r\n*2\r\n-ERR a  b\r\n");
        assert_eq!(parse_int(b"10"), Some(10));
        assert_eq!(parse_int(b"-3"), Some(-3));
        assert_eq!(parse_int(b"007"), None);
        assert_eq!(parse_int(b"1.5"), None);
        assert_eq!(parse_int(b"9223372036854775808"), None);
    }
}

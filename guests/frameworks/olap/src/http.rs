//! The HTTP front, sans I/O: `POST /query` with the SQL as the body,
//! answered with JSON. One request a connection (`Connection: close`).
//!
//! ```text
//! 200 {"columns":[{"name":"n","type":"bigint"}],"rows":[[3]],"row_count":1}
//! 400 {"error":{"sqlstate":"42703","message":"...","line":1,"column":8}}
//! ```
//!
//! Integers and decimals are JSON numbers written at their column's
//! scale (`12.50`), dates and text are strings, NULL is `null`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::exec::ResultSet;
use crate::types::{Error, Type};

/// The largest request (head and body) accepted.
pub const MAX_REQUEST: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// More bytes are needed.
    Incomplete,
    /// `POST /query`: the SQL text.
    Query(String),
    /// Anything else: the status and a message to answer with.
    Bad(u16, &'static str),
}

fn find(h: &[u8], pat: &[u8]) -> Option<usize> {
    h.windows(pat.len()).position(|w| w == pat)
}

/// Parses the request `buf` holds so far.
pub fn parse(buf: &[u8]) -> Request {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > 16 << 10 { Request::Bad(431, "request head too large") } else { Request::Incomplete };
    };
    let Ok(head) = core::str::from_utf8(&buf[..end]) else {
        return Request::Bad(400, "request head is not UTF-8");
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let mut len = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { return Request::Bad(400, "malformed header") };
        if k.trim().eq_ignore_ascii_case("content-length") {
            match v.trim().parse::<usize>() {
                Ok(n) => len = Some(n),
                Err(_) => return Request::Bad(400, "bad Content-Length"),
            }
        } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Request::Bad(411, "chunked bodies are not supported: send Content-Length");
        }
    }
    if path.split('?').next() != Some("/query") {
        return Request::Bad(404, "the only resource is POST /query");
    }
    if method != "POST" {
        return Request::Bad(405, "use POST /query with the SQL as the body");
    }
    let Some(len) = len else { return Request::Bad(411, "send Content-Length") };
    if len > MAX_REQUEST {
        return Request::Bad(413, "query too large");
    }
    let body = &buf[end + 4..];
    if body.len() < len {
        return Request::Incomplete;
    }
    match core::str::from_utf8(&body[..len]) {
        Ok(q) => Request::Query(String::from(q)),
        Err(_) => Request::Bad(400, "the query is not UTF-8"),
    }
}

/// `s` as a JSON string.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A result as JSON.
pub fn result_json(rs: &ResultSet) -> String {
    let mut o = String::from("{\"columns\":[");
    for (i, (name, ty)) in rs.columns.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        json_str(&mut o, name);
        o.push_str(",\"type\":");
        json_str(&mut o, &ty.name());
        o.push('}');
    }
    o.push_str("],\"rows\":[");
    for (r, row) in rs.rows.iter().enumerate() {
        o.push_str(if r > 0 { ",[" } else { "[" });
        for (i, (v, (_, ty))) in row.iter().zip(&rs.columns).enumerate() {
            if i > 0 {
                o.push(',');
            }
            match v.render(*ty) {
                None => o.push_str("null"),
                Some(s) if ty.is_numeric() => o.push_str(&s),
                Some(s) if *ty == Type::Bool => o.push_str(if s == "t" { "true" } else { "false" }),
                Some(s) => json_str(&mut o, &s),
            }
        }
        o.push(']');
    }
    let _ = write!(o, "],\"row_count\":{}}}", rs.rows.len());
    o
}

/// An error as JSON (with line and column when it is about the query).
pub fn error_json(e: &Error) -> String {
    let mut o = String::from("{\"error\":{\"sqlstate\":");
    json_str(&mut o, e.kind.sqlstate());
    o.push_str(",\"message\":");
    json_str(&mut o, &e.msg);
    if let Some((l, c)) = e.line_col {
        let _ = write!(o, ",\"line\":{l},\"column\":{c}");
    }
    o.push_str("}}");
    o
}

/// A whole response.
pub fn response(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The response to a bad request.
pub fn bad(status: u16, msg: &str) -> Vec<u8> {
    let mut o = String::from("{\"error\":{\"message\":");
    json_str(&mut o, msg);
    o.push_str("}}");
    response(status, &o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests() {
        assert_eq!(parse(b"POST /query HTTP/1.1\r\nContent-Length: 8\r\n\r\nselect"), Request::Incomplete);
        assert_eq!(parse(b"POST /query HTTP/1.1\r\ncontent-length: 8\r\n\r\nselect 1"), Request::Query("select 1".into()));
        assert_eq!(parse(b"GET /query HTTP/1.1\r\n\r\n"), Request::Bad(405, "use POST /query with the SQL as the body"));
        assert!(matches!(parse(b"POST /x HTTP/1.1\r\n\r\n"), Request::Bad(404, _)));
        assert!(matches!(parse(b"POST /query HTTP/1.1\r\n\r\n"), Request::Bad(411, _)));
        assert!(matches!(parse(b"POST /query HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"), Request::Bad(413, _)));
        let mut s = String::new();
        json_str(&mut s, "a\"b\\\n\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\\\n\\u0001é\"");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&b);
            let mut with_head = b"POST /query HTTP/1.1\r\nContent-Length: 5\r\n\r\n".to_vec();
            with_head.extend(&b);
            let _ = parse(&with_head);
        }
    }
}

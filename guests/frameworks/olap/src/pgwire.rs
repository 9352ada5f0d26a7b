//! The PostgreSQL v3 protocol, server side, simple query flow, sans I/O:
//! bytes in ([`Conn::feed`]), events out ([`Conn::next_event`]), bytes to
//! send ([`Conn::take_output`]). A transport (a host TCP socket, the
//! partition's network stack) only moves bytes.
//!
//! Startup: SSLRequest and GSSENCRequest are answered `N` (no
//! encryption); a v3.0 StartupMessage gets AuthenticationOk (no password),
//! ParameterStatus (server_version, server_encoding, client_encoding,
//! DateStyle, integer_datetimes, standard_conforming_strings),
//! BackendKeyData and ReadyForQuery. Then each Query gives
//! [`Event::Query`]; the caller answers with [`Conn::send_result`] or
//! [`Conn::send_error`], which end with ReadyForQuery. Terminate ends
//! the connection. The extended protocol (Parse/Bind/...) is refused with
//! an ErrorResponse until Sync. Messages longer than [`MAX_MESSAGE`] and
//! malformed ones end the connection with a FATAL ErrorResponse.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::exec::ResultSet;
use crate::types::{Error, Type};

/// The longest message accepted (a query's text, mostly).
pub const MAX_MESSAGE: usize = 1 << 20;
const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const V3: u32 = 196_608;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A simple Query's text.
    Query(String),
    /// The client said Terminate, or the connection must close (the
    /// reason, if any, is already in the output).
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Startup,
    Ready,
    /// After an extended-protocol message, until Sync.
    Skipping,
    Closed,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Conn {
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    key: (u32, u32),
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    // A NUL inside would end the string early on the client's side.
    out.extend(s.bytes().filter(|&b| b != 0));
    out.push(0);
}

/// Starts message `tag`; returns where its length goes.
fn begin(out: &mut Vec<u8>, tag: u8) -> usize {
    out.push(tag);
    let at = out.len();
    put_u32(out, 0);
    at
}

fn end(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The type OID, length and modifier PostgreSQL gives a column type.
pub fn type_info(t: Type) -> (u32, i16, i32) {
    match t {
        Type::Int32 => (23, 4, -1),
        Type::Int64 => (20, 8, -1),
        Type::Decimal(s) => (1700, -1, ((38 << 16) | i32::from(s)) + 4),
        Type::Date => (1082, 4, -1),
        Type::Text => (25, -1, -1),
        Type::Bool => (16, 1, -1),
    }
}

impl Conn {
    /// A new connection; `key` is the BackendKeyData (process id, secret).
    pub fn new(key: (u32, u32)) -> Self {
        Conn { state: State::Startup, input: Vec::new(), output: Vec::new(), key }
    }

    /// Bytes from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state != State::Closed {
            self.input.extend_from_slice(bytes);
        }
    }

    /// Bytes for the client (taken).
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn fatal(&mut self, code: &str, msg: &str) -> Event {
        self.error_fields("FATAL", code, msg, None);
        self.state = State::Closed;
        self.input.clear();
        Event::Close
    }

    fn error_fields(&mut self, severity: &str, code: &str, msg: &str, position: Option<usize>) {
        let o = &mut self.output;
        let at = begin(o, b'E');
        for (f, v) in [(b'S', severity), (b'V', severity), (b'C', code), (b'M', msg)] {
            o.push(f);
            put_cstr(o, v);
        }
        if let Some(p) = position {
            o.push(b'P');
            put_cstr(o, &format!("{p}"));
        }
        o.push(0);
        end(o, at);
    }

    fn ready(&mut self) {
        let at = begin(&mut self.output, b'Z');
        self.output.push(b'I');
        end(&mut self.output, at);
    }

    fn startup(&mut self, body: &[u8]) -> Option<Event> {
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        match code {
            SSL_REQUEST | GSS_REQUEST => {
                self.output.push(b'N');
                None
            }
            CANCEL_REQUEST => {
                self.state = State::Closed;
                Some(Event::Close)
            }
            V3 => {
                // Parameters: name NUL value NUL ... NUL; checked, not used.
                let params = &body[4..];
                if params.last() != Some(&0) {
                    return Some(self.fatal("08P01", "malformed startup message"));
                }
                let o = &mut self.output;
                let at = begin(o, b'R');
                put_u32(o, 0);
                end(o, at);
                for (k, v) in [
                    ("server_version", "16.0 (hallows-olap)"),
                    ("server_encoding", "UTF8"),
                    ("client_encoding", "UTF8"),
                    ("DateStyle", "ISO, MDY"),
                    ("integer_datetimes", "on"),
                    ("standard_conforming_strings", "on"),
                ] {
                    let at = begin(o, b'S');
                    put_cstr(o, k);
                    put_cstr(o, v);
                    end(o, at);
                }
                let at = begin(o, b'K');
                put_u32(o, self.key.0);
                put_u32(o, self.key.1);
                end(o, at);
                self.ready();
                self.state = State::Ready;
                None
            }
            v => Some(self.fatal("0A000", &format!("protocol version {}.{} is not supported: use 3.0", v >> 16, v & 0xffff))),
        }
    }

    /// The next event the input holds, if a whole message is there.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.state == State::Closed {
                return None;
            }
            let startup = self.state == State::Startup;
            let head = if startup { 4 } else { 5 };
            if self.input.len() < head {
                return None;
            }
            let l = &self.input[head - 4..head];
            let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
            let max = if startup { 10_240 } else { MAX_MESSAGE };
            if len < 4 || len > max || (startup && len < 8) {
                return Some(self.fatal("08P01", &format!("invalid message length {len}")));
            }
            let total = head - 4 + len;
            if self.input.len() < total {
                return None;
            }
            let msg: Vec<u8> = self.input.drain(..total).collect();
            let body = &msg[head..];
            if startup {
                match self.startup(body) {
                    Some(e) => return Some(e),
                    None => continue,
                }
            }
            let tag = msg[0];
            match (self.state, tag) {
                (_, b'X') => {
                    self.state = State::Closed;
                    return Some(Event::Close);
                }
                (State::Skipping, b'S') => {
                    self.state = State::Ready;
                    self.ready();
                }
                (State::Skipping, _) => {}
                (_, b'Q') => {
                    let Some((&0, text)) = body.split_last() else {
                        return Some(self.fatal("08P01", "query not terminated by NUL"));
                    };
                    let Ok(q) = core::str::from_utf8(text) else {
                        self.error_fields("ERROR", "22021", "query is not valid UTF-8", None);
                        self.ready();
                        continue;
                    };
                    if q.trim().trim_matches(';').trim().is_empty() {
                        let at = begin(&mut self.output, b'I');
                        end(&mut self.output, at);
                        self.ready();
                        continue;
                    }
                    return Some(Event::Query(String::from(q)));
                }
                (_, b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'F') => {
                    self.error_fields("ERROR", "0A000", "only the simple query protocol is supported", None);
                    self.state = State::Skipping;
                }
                (_, b'S') => self.ready(),
                (_, t) => {
                    let shown = if t.is_ascii_graphic() { t as char } else { '?' };
                    return Some(self.fatal("08P01", &format!("unexpected message type '{shown}'")));
                }
            }
        }
    }

    /// Answers a query with its rows (RowDescription, DataRow...,
    /// CommandComplete, ReadyForQuery).
    pub fn send_result(&mut self, rs: &ResultSet) {
        let o = &mut self.output;
        let at = begin(o, b'T');
        put_i16(o, rs.columns.len() as i16);
        for (name, ty) in &rs.columns {
            put_cstr(o, name);
            put_u32(o, 0);
            put_i16(o, 0);
            let (oid, len, typmod) = type_info(*ty);
            put_u32(o, oid);
            put_i16(o, len);
            put_u32(o, typmod as u32);
            put_i16(o, 0);
        }
        end(o, at);
        for row in &rs.rows {
            let at = begin(o, b'D');
            put_i16(o, row.len() as i16);
            for (v, (_, ty)) in row.iter().zip(&rs.columns) {
                match v.render(*ty) {
                    None => put_u32(o, u32::MAX),
                    Some(s) => {
                        put_u32(o, s.len() as u32);
                        o.extend_from_slice(s.as_bytes());
                    }
                }
            }
            end(o, at);
        }
        let at = begin(o, b'C');
        put_cstr(o, &format!("SELECT {}", rs.rows.len()));
        end(o, at);
        self.ready();
    }

    /// Answers a query with an error (SQLSTATE, message, position).
    pub fn send_error(&mut self, e: &Error, query: &str) {
        self.error_fields("ERROR", e.kind.sqlstate(), &e.msg, e.position(query));
        self.ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn startup_msg() -> Vec<u8> {
        let mut body = Vec::new();
        put_u32(&mut body, V3);
        for s in ["user", "x", "database", "y", ""] {
            put_cstr(&mut body, s);
        }
        let mut m = Vec::new();
        put_u32(&mut m, body.len() as u32 + 4);
        m.extend(body);
        m
    }

    fn query_msg(q: &str) -> Vec<u8> {
        let mut m = vec![b'Q'];
        put_u32(&mut m, q.len() as u32 + 5);
        put_cstr(&mut m, q);
        m
    }

    /// Splits the output into (tag, body) messages.
    fn messages(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while b.len() >= 5 {
            let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            v.push((b[0], b[5..1 + len].to_vec()));
            b = &b[1 + len..];
        }
        assert!(b.is_empty());
        v
    }

    #[test]
    fn ssl_then_startup_then_query() {
        let mut c = Conn::new((7, 9));
        c.feed(&[0, 0, 0, 8, 4, 210, 22, 47]);
        assert_eq!(c.next_event(), None);
        assert_eq!(c.take_output(), b"N");
        c.feed(&startup_msg());
        assert_eq!(c.next_event(), None);
        let out = c.take_output();
        let tags: Vec<u8> = messages(&out).iter().map(|m| m.0).collect();
        assert_eq!(tags, b"RSSSSSSKZ");
        c.feed(&query_msg("select 1"));
        c.feed(&query_msg(" ; "));
        assert_eq!(c.next_event(), Some(Event::Query("select 1".into())));
        assert_eq!(c.next_event(), None);
        let tags: Vec<u8> = messages(&c.take_output()).iter().map(|m| m.0).collect();
        assert_eq!(tags, b"IZ");
        let e = Error::at(crate::ErrorKind::Undefined, 7, "no").locate("select nope");
        c.send_error(&e, "select nope");
        let m = messages(&c.take_output());
        assert_eq!(m[0].0, b'E');
        let body = String::from_utf8_lossy(&m[0].1).into_owned();
        assert!(body.contains("C42703\0") && body.contains("P8\0"), "{body:?}");
        c.feed(b"X\0\0\0\x04");
        assert_eq!(c.next_event(), Some(Event::Close));
        assert!(c.is_closed());
    }

    #[test]
    fn extended_protocol_refused_until_sync() {
        let mut c = Conn::new((1, 1));
        c.feed(&startup_msg());
        assert_eq!(c.next_event(), None);
        c.take_output();
        c.feed(b"P\0\0\0\x08ab\0\0");
        c.feed(b"B\0\0\0\x04");
        c.feed(b"S\0\0\0\x04");
        assert_eq!(c.next_event(), None);
        let tags: Vec<u8> = messages(&c.take_output()).iter().map(|m| m.0).collect();
        assert_eq!(tags, b"EZ");
    }

    #[test]
    fn hostile_lengths_close() {
        let mut c = Conn::new((1, 1));
        c.feed(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.next_event(), Some(Event::Close));
        let mut c = Conn::new((1, 1));
        c.feed(&startup_msg());
        c.next_event();
        c.feed(&[b'Q', 0x7f, 0, 0, 0]);
        assert_eq!(c.next_event(), Some(Event::Close));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(a in proptest::collection::vec(any::<u8>(), 0..300), b in proptest::collection::vec(any::<u8>(), 0..300)) {
            for start in [false, true] {
                let mut c = Conn::new((1, 2));
                if start {
                    c.feed(&startup_msg());
                    c.next_event();
                }
                c.feed(&a);
                while let Some(e) = c.next_event() {
                    if e == Event::Close { break; }
                }
                c.feed(&b);
                while c.next_event().is_some() {}
            }
        }

        #[test]
        fn any_split_gives_the_same_events(cut in 0usize..200) {
            let mut all = startup_msg();
            all.extend(query_msg("select a from t"));
            all.extend(query_msg("select 2"));
            let cut = cut.min(all.len());
            let mut c = Conn::new((1, 2));
            let mut events = Vec::new();
            for part in [&all[..cut], &all[cut..]] {
                c.feed(part);
                while let Some(e) = c.next_event() {
                    events.push(e);
                }
            }
            prop_assert_eq!(events, vec![Event::Query("select a from t".into()), Event::Query("select 2".into())]);
        }
    }
}

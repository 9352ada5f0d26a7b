//! Basilisk's HTTP/1.1 server engine, sans I/O (`no_std` + `alloc`).
//!
//! A [`Conn`] is one connection's protocol state. It owns no socket: the
//! caller reads bytes into [`Conn::read_buf`] and reports them with
//! [`Conn::filled`], asks [`Conn::next`] what to do, answers each request
//! with [`Conn::respond`], and writes [`Conn::output`] to the peer,
//! reporting it with [`Conn::written`]. So the same engine serves a
//! partition's own NIC (`hallows-net`), a connection behind the gateway,
//! or a host socket in a test or benchmark.
//!
//! ```text
//! loop {
//!     match conn.next(now) {
//!         Event::Request(req) => { let r = app(&req); conn.respond(r.status, &r.headers, &r.body); }
//!         Event::Write => { let n = sock.write(conn.output()); conn.written(n); }
//!         Event::Read => match read_with_timeout(conn.read_buf(), conn.deadline() - now) {
//!             Ok(0) => break,                          // the peer closed
//!             Ok(n) => conn.filled(n, now),
//!             Err(timeout) => conn.timed_out(now),     // 408 mid-request, else close
//!         },
//!         Event::Close => break,
//!     }
//! }
//! ```
//!
//! What it does: keep-alive (HTTP/1.1 by default, HTTP/1.0 on request),
//! pipelining (requests already received are answered in order, several
//! per read), `Content-Length` and chunked request bodies (trailers read and
//! dropped), `HEAD` (the body is not sent, its length is), `Expect:
//! 100-continue`, origin-form and absolute-form targets. What it refuses,
//! each with a JSON body `{"error": "..."}` and then closing the
//! connection, since the stream can no longer be trusted:
//!
//! | status | when |
//! |---|---|
//! | 400 | a malformed request line, header or chunk; both `Content-Length` and `Transfer-Encoding`; differing `Content-Length`s |
//! | 408 | the request not received whole within [`Limits::request_timeout`] of its first byte |
//! | 411 | `POST`, `PUT` or `PATCH` with neither `Content-Length` nor `Transfer-Encoding` |
//! | 413 | a body over [`Limits::max_body`] |
//! | 414 | a target over [`Limits::max_uri`] |
//! | 417 | an `Expect` other than `100-continue` |
//! | 431 | a head over [`Limits::max_head`] bytes or [`Limits::max_headers`] fields |
//! | 501 | a transfer coding other than `chunked` |
//! | 503 | [`Conn::refuse`] (the server is overloaded) |
//! | 505 | an HTTP version other than 1.0 and 1.1 |
//!
//! 404, 405 and 500 are the application's (it has the routes); the
//! helpers [`error_body`] and [`reason`] give the same shape.
//!
//! Memory is bounded by the limits: the input buffer never exceeds
//! `max_head + 2 × max_body` (chunk framing counts), and no further
//! pipelined request is parsed while more than [`Limits::max_output`]
//! bytes of answers wait to be written.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::ops::Range;

/// What a connection accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line and header fields, in bytes (431 beyond).
    pub max_head: usize,
    /// Header fields (431 beyond); at most [`MAX_HEADERS`].
    pub max_headers: usize,
    /// The request target (414 beyond).
    pub max_uri: usize,
    /// A request body, de-chunked (413 beyond).
    pub max_body: usize,
    /// From a request's first byte to its last (408 beyond), in the
    /// caller's clock unit (nanoseconds in the guests).
    pub request_timeout: u64,
    /// Between requests on a kept-alive connection (closed silently beyond).
    pub idle_timeout: u64,
    /// Answers waiting to be written beyond which no further request is
    /// parsed (a client pipelining without reading stalls itself).
    pub max_output: usize,
}

/// Most header fields [`Limits::max_headers`] may allow.
pub const MAX_HEADERS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            max_headers: 48,
            max_uri: 2 * 1024,
            max_body: 1024 * 1024,
            request_timeout: 10_000_000_000,
            idle_timeout: 30_000_000_000,
            max_output: 256 * 1024,
        }
    }
}

/// What the caller does next.
#[derive(Debug)]
pub enum Event<'a> {
    /// Answer this request with [`Conn::respond`] (asking again without
    /// answering returns it again).
    Request(Request<'a>),
    /// Read from the peer into [`Conn::read_buf`] until [`Conn::deadline`].
    Read,
    /// Write [`Conn::output`] to the peer.
    Write,
    /// Close the connection (everything owed was written).
    Close,
}

/// One request, borrowed from the connection's buffers.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// As sent (origin-form `/path?query`; an absolute-form target is
    /// reduced to its path and query).
    pub target: &'a str,
    /// The target up to `?`, still percent-encoded.
    pub path: &'a str,
    /// After `?` (empty if none).
    pub query: &'a str,
    /// The whole body, de-chunked.
    pub body: &'a [u8],
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// 0 or 1 (HTTP/1.0 or HTTP/1.1).
    pub minor_version: u8,
    buf: &'a [u8],
    headers: &'a [(Range<usize>, Range<usize>)],
}

impl<'a> Request<'a> {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Every header field, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        let buf = self.buf;
        self.headers.iter().map(move |(n, v)| (core::str::from_utf8(&buf[n.clone()]).unwrap_or(""), &buf[v.clone()]))
    }
}

/// Where the request handed out lives in the buffers.
#[derive(Clone, Debug, Default)]
struct Parsed {
    method: Range<usize>,
    target: Range<usize>,
    /// In the input buffer, or (chunked) the whole of `decoded`.
    body: Option<Range<usize>>,
    /// Input bytes the request takes (head, body and framing).
    consumed: usize,
    keep_alive: bool,
    head: bool,
    minor_version: u8,
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    limits: Limits,
    input: Vec<u8>,
    have: usize,
    out: Vec<u8>,
    /// Header fields of the request handed out.
    headers: Vec<(Range<usize>, Range<usize>)>,
    /// The de-chunked body of the request handed out.
    decoded: Vec<u8>,
    pending: Option<Parsed>,
    /// When the request being received started (its first byte).
    started: Option<u64>,
    idle_since: u64,
    sent_continue: bool,
    /// Close once the output is written.
    closing: bool,
    /// Requests answered.
    pub answered: u64,
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// `{"error":"message"}` (the message must need no JSON escaping: the
/// engine's own messages are plain ASCII without quotes or backslashes).
pub fn error_body(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"error\":\"");
    for b in message.bytes() {
        out.push(if b == b'"' || b == b'\\' || b < 0x20 { b'?' } else { b });
    }
    out.extend_from_slice(b"\"}");
}

/// Why a request is refused: status and message.
type Refusal = (u16, &'static str);

/// The read buffer grows in steps of at least this much.
const READ_CHUNK: usize = 4096;

fn push_usize(out: &mut Vec<u8>, mut v: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    // Both are slices of `buf`: `part` starts inside it.
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize).min(buf.len());
    start..(start + part.len()).min(buf.len())
}

impl Conn {
    pub fn new(limits: Limits, now: u64) -> Conn {
        let limits = Limits { max_headers: limits.max_headers.min(MAX_HEADERS), ..limits };
        Conn {
            limits,
            input: Vec::new(),
            have: 0,
            out: Vec::new(),
            headers: Vec::new(),
            decoded: Vec::new(),
            pending: None,
            started: None,
            idle_since: now,
            sent_continue: false,
            closing: false,
            answered: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The most input the connection holds at once.
    fn input_cap(&self) -> usize {
        self.limits.max_head.saturating_add(self.limits.max_body.saturating_mul(2))
    }

    /// Where to read into (empty when the connection reads nothing more:
    /// closing, or the buffer is full, which [`Conn::next`] answers).
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.closing {
            return &mut [];
        }
        let cap = self.input_cap();
        if self.input.len() - self.have < READ_CHUNK && self.input.len() < cap {
            let want = (self.input.len() * 2).max(self.have + READ_CHUNK).min(cap);
            self.input.resize(want, 0);
        }
        &mut self.input[self.have..]
    }

    /// `n` bytes were read into [`Conn::read_buf`] at `now`.
    pub fn filled(&mut self, n: usize, now: u64) {
        let n = n.min(self.input.len() - self.have);
        if n > 0 && self.started.is_none() {
            self.started = Some(now);
        }
        self.have += n;
    }

    /// `bytes` were received at `now` (copies them in; what does not fit
    /// is dropped and the request is refused as too large).
    pub fn received(&mut self, mut bytes: &[u8], now: u64) {
        while !bytes.is_empty() {
            let buf = self.read_buf();
            if buf.is_empty() {
                return;
            }
            let n = buf.len().min(bytes.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            self.filled(n, now);
            bytes = &bytes[n..];
        }
    }

    /// Bytes to write to the peer.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Conn::output`] were written.
    pub fn written(&mut self, n: usize) {
        let n = n.min(self.out.len());
        self.out.drain(..n);
    }

    /// Until when the next read may wait: the request's deadline once it
    /// started, the idle deadline between requests, `u64::MAX` while a
    /// request is with the application.
    pub fn deadline(&self) -> u64 {
        if self.pending.is_some() {
            return u64::MAX;
        }
        match self.started {
            Some(t) => t.saturating_add(self.limits.request_timeout),
            None => self.idle_since.saturating_add(self.limits.idle_timeout),
        }
    }

    /// The read waited until [`Conn::deadline`]: a request under way is
    /// answered 408; an idle connection is closed.
    pub fn timed_out(&mut self, now: u64) {
        if self.pending.is_some() || now < self.deadline() {
            return;
        }
        if self.started.is_some() {
            self.refusal((408, "the request was not received in time"));
        } else {
            self.closing = true;
        }
    }

    /// Answers 503 and closes (the server sheds this connection).
    pub fn refuse(&mut self) {
        self.pending = None;
        self.refusal((503, "the server is overloaded; try again later"));
    }

    /// Bytes the connection holds: its input buffer's size and the output
    /// owed (what the limits bound).
    pub fn footprint(&self) -> (usize, usize) {
        (self.input.len(), self.out.len())
    }

    /// Whether the connection will close once its output is written.
    pub fn closing(&self) -> bool {
        self.closing
    }

    fn refusal(&mut self, (status, message): Refusal) {
        let mut body = Vec::with_capacity(message.len() + 12);
        error_body(message, &mut body);
        self.write_head(status, &[("Content-Type", b"application/json")], body.len(), false);
        self.out.extend_from_slice(&body);
        self.closing = true;
        self.have = 0;
        self.started = None;
    }

    fn write_head(&mut self, status: u16, headers: &[(&str, &[u8])], body_len: usize, keep_alive: bool) {
        let o = &mut self.out;
        o.extend_from_slice(b"HTTP/1.1 ");
        push_usize(o, status as usize);
        o.push(b' ');
        o.extend_from_slice(reason(status).as_bytes());
        o.extend_from_slice(b"\r\n");
        for (k, v) in headers {
            // A value with a line break would split the response: dropped.
            if v.iter().any(|&b| b == b'\r' || b == b'\n') || k.bytes().any(|b| b <= b' ' || b == b':') {
                continue;
            }
            o.extend_from_slice(k.as_bytes());
            o.extend_from_slice(b": ");
            o.extend_from_slice(v);
            o.extend_from_slice(b"\r\n");
        }
        if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            o.extend_from_slice(b"Content-Length: ");
            push_usize(o, body_len);
            o.extend_from_slice(b"\r\n");
        }
        o.extend_from_slice(if keep_alive { b"Connection: keep-alive\r\n\r\n" } else { b"Connection: close\r\n\r\n" });
    }

    /// Answers the request [`Conn::next`] handed out: `headers` as given
    /// (`Content-Type` and the like; a value holding a line break is
    /// dropped), then `Content-Length` and `Connection`, then `body`
    /// (not for `HEAD`). Does nothing if no request is waiting.
    pub fn respond(&mut self, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
        let Some(p) = self.pending.take() else { return };
        let keep_alive = p.keep_alive && !self.closing;
        self.write_head(status, headers, body.len(), keep_alive);
        if !p.head {
            self.out.extend_from_slice(body);
        }
        self.answered += 1;
        if !keep_alive {
            self.closing = true;
        }
        // The next pipelined request starts where this one ended.
        self.input.copy_within(p.consumed..self.have, 0);
        self.have -= p.consumed;
        self.started = None;
        self.sent_continue = false;
        self.decoded.clear();
        self.headers.clear();
    }

    /// What to do next, at time `now`.
    pub fn next(&mut self, now: u64) -> Event<'_> {
        if self.pending.is_some() {
            return Event::Request(self.view());
        }
        if self.closing {
            return if self.out.is_empty() { Event::Close } else { Event::Write };
        }
        if self.out.len() > self.limits.max_output {
            return Event::Write;
        }
        if self.have == 0 {
            self.idle_since = self.idle_since.max(now);
            self.started = None;
            return if self.out.is_empty() { Event::Read } else { Event::Write };
        }
        self.started.get_or_insert(now);
        match self.parse() {
            Ok(Some(p)) => {
                self.pending = Some(p);
                Event::Request(self.view())
            }
            Ok(None) => {
                if self.out.is_empty() {
                    Event::Read
                } else {
                    Event::Write
                }
            }
            Err(r) => {
                self.refusal(r);
                Event::Write
            }
        }
    }

    fn view(&self) -> Request<'_> {
        let p = self.pending.as_ref();
        let (method, target, body) = match p {
            Some(p) => (p.method.clone(), p.target.clone(), p.body.clone()),
            None => (0..0, 0..0, Some(0..0)),
        };
        let buf = &self.input[..self.have];
        let target = core::str::from_utf8(&buf[target]).unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: core::str::from_utf8(&buf[method]).unwrap_or(""),
            target,
            path,
            query,
            body: match body {
                Some(r) => &buf[r],
                None => &self.decoded,
            },
            keep_alive: p.is_some_and(|p| p.keep_alive),
            minor_version: p.map_or(1, |p| p.minor_version),
            buf,
            headers: &self.headers,
        }
    }

    /// Parses the request at the start of the input: `Ok(None)` while
    /// incomplete (more must be read).
    fn parse(&mut self) -> Result<Option<Parsed>, Refusal> {
        let full = self.have >= self.input_cap();
        let buf = &self.input[..self.have];
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots[..self.limits.max_headers]);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                // A request line still without its end, longer than any
                // acceptable target: 414 without waiting for the rest.
                let line_end = buf.windows(2).position(|w| w == b"\r\n");
                if line_end.is_none() && buf.len() > self.limits.max_uri + 32 {
                    return Err((414, "the request target is too long"));
                }
                if buf.len() >= self.limits.max_head || full {
                    return Err((431, "the request head is too large"));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err((431, "too many header fields")),
            Err(httparse::Error::Version) => return Err((505, "only HTTP/1.0 and HTTP/1.1 are served")),
            Err(_) => return Err((400, "malformed request")),
        };
        if head_len > self.limits.max_head {
            return Err((431, "the request head is too large"));
        }
        let (Some(method), Some(mut target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err((400, "malformed request"));
        };
        if target.len() > self.limits.max_uri {
            return Err((414, "the request target is too long"));
        }
        // Absolute-form (RFC 9112 3.2.2): served as its path and query.
        for scheme in ["http://", "https://"] {
            if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
                let rest = &target[scheme.len()..];
                target = rest.find(['/', '?']).map_or("/", |i| &rest[i..]);
            }
        }
        if !(target.starts_with('/') || (target == "*" && method == "OPTIONS")) {
            return Err((400, "the request target must be a path"));
        }
        let mut keep_alive = minor == 1;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut expect_continue = false;
        self.headers.clear();
        for h in req.headers.iter() {
            let name = h.name;
            let value = trim(h.value);
            if name.eq_ignore_ascii_case("content-length") {
                let n = core::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<usize>().ok());
                match (n, length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => return Err((400, "invalid Content-Length")),
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if minor == 0 {
                    return Err((400, "Transfer-Encoding in an HTTP/1.0 request"));
                }
                for coding in value.split(|&b| b == b',').map(trim) {
                    if chunked {
                        // Anything after chunked: the body length is unknowable.
                        return Err((400, "chunked must be the last transfer coding"));
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        return Err((501, "the only transfer coding served is chunked"));
                    }
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for t in value.split(|&b| b == b',').map(trim) {
                    if t.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("expect") {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = minor == 1;
                } else {
                    return Err((417, "the only expectation served is 100-continue"));
                }
            }
            self.headers.push((span(buf, name.as_bytes()), span(buf, h.value)));
        }
        if chunked && length.is_some() {
            return Err((400, "both Content-Length and Transfer-Encoding"));
        }
        let method_r = span(buf, method.as_bytes());
        let target_r = span(buf, target.as_bytes());
        let head = method == "HEAD";
        let mut parsed = Parsed { method: method_r, target: target_r, body: None, consumed: head_len, keep_alive, head, minor_version: minor };
        if !chunked {
            let n = match length {
                Some(n) => n,
                None if matches!(method, "POST" | "PUT" | "PATCH") => return Err((411, "a body needs a Content-Length or chunked encoding")),
                None => 0,
            };
            if n > self.limits.max_body {
                return Err((413, "the body is too large"));
            }
            if self.have - head_len < n {
                self.continue_if(expect_continue);
                return Ok(None);
            }
            parsed.body = Some(head_len..head_len + n);
            parsed.consumed = head_len + n;
            return Ok(Some(parsed));
        }
        // Chunked: decode from the start each time (the input is bounded).
        self.decoded.clear();
        let mut pos = head_len;
        loop {
            let rest = &self.input[pos..self.have];
            let (skip, size) = match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete(c)) => c,
                Ok(httparse::Status::Partial) => {
                    if full {
                        return Err((413, "the body is too large"));
                    }
                    self.continue_if(expect_continue);
                    return Ok(None);
                }
                Err(_) => return Err((400, "malformed chunk size")),
            };
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > self.limits.max_body.saturating_sub(self.decoded.len()) {
                return Err((413, "the body is too large"));
            }
            pos += skip;
            if size == 0 {
                break;
            }
            if self.have - pos < size + 2 {
                if full {
                    return Err((413, "the body is too large"));
                }
                self.continue_if(expect_continue);
                return Ok(None);
            }
            if &self.input[pos + size..pos + size + 2] != b"\r\n" {
                return Err((400, "a chunk does not end with CRLF"));
            }
            self.decoded.extend_from_slice(&self.input[pos..pos + size]);
            pos += size + 2;
        }
        // Trailer fields, then the empty line: read and dropped.
        loop {
            let rest = &self.input[pos..self.have];
            match rest.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    pos += 2;
                    break;
                }
                Some(i) => {
                    if !rest[..i].contains(&b':') {
                        return Err((400, "malformed trailer field"));
                    }
                    pos += i + 2;
                }
                None => {
                    if rest.len() > self.limits.max_head || full {
                        return Err((431, "the trailer fields are too large"));
                    }
                    return Ok(None);
                }
            }
        }
        parsed.consumed = pos;
        Ok(Some(parsed))
    }

    fn continue_if(&mut self, expect: bool) {
        if expect && !self.sent_continue {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.sent_continue = true;
        }
    }
}

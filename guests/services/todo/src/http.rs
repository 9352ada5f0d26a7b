//! The HTTP/1.1 side of a connection: requests parsed with `httparse`,
//! answered in order (keep-alive and pipelining), within limits.
//!
//! Limits, so that no client holds memory or a task for long: a head of at
//! most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers (431), a body of at
//! most [`MAX_BODY`] bytes (413), a target of at most [`MAX_URI`] bytes
//! (414); [`IDLE`] to start a request, [`REQUEST_TIME`] to receive it whole
//! (408), [`WRITE_TIME`] to hand the answer to a client that does not read.
//! Chunked request bodies are refused with 411 (send Content-Length).
//! Every error is a JSON body `{"error": ...}` and closes the connection.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;

use hallows_basilisk::lock::Lock;
use hallows_basilisk::{Method, Request, Response};
use hallows_net::{with_timeout, TcpStream};
use hallows_rt::time;

use crate::{Shared, QUIT};

pub const MAX_HEAD: usize = 8192;
pub const MAX_HEADERS: usize = 32;
pub const MAX_BODY: usize = 16 * 1024;
pub const MAX_URI: usize = 2048;
pub const IDLE: Duration = Duration::from_secs(10);
pub const REQUEST_TIME: Duration = Duration::from_secs(10);
pub const WRITE_TIME: Duration = Duration::from_secs(10);

/// One parsed request head: what the rest of the handling needs, as
/// positions into the buffer (the buffer is read into again for the body).
struct Head {
    len: usize,
    method: Method,
    target: (usize, usize),
    authorization: Option<(usize, usize)>,
    body: usize,
    keep_alive: bool,
    head_only: bool,
}

fn span(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

/// Parses the head at the start of `buf`: `Ok(None)` when incomplete.
fn parse(buf: &[u8]) -> Result<Option<Head>, Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Response::error(431, "too many header fields")),
        Err(_) => return Err(Response::error(400, "malformed request")),
    };
    let (Some(m), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Response::error(400, "malformed request"));
    };
    if path.len() > MAX_URI {
        return Err(Response::error(414, "the request target is too long"));
    }
    if !path.starts_with('/') {
        return Err(Response::error(400, "the request target must be a path"));
    }
    let mut keep_alive = version == 1;
    let mut body = None;
    let mut authorization = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = core::str::from_utf8(h.value).ok().filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).and_then(|v| v.parse::<usize>().ok());
            match (n, body) {
                (Some(n), None) => body = Some(n),
                (Some(n), Some(b)) if n == b => {}
                _ => return Err(Response::error(400, "bad Content-Length")),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(411, "send the body with a Content-Length"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(span(buf, h.value));
        }
    }
    let body = body.unwrap_or(0);
    if body > MAX_BODY {
        return Err(Response::error(413, "the body is too large"));
    }
    let method = Method::parse(m);
    Ok(Some(Head { len, method, target: span(buf, path.as_bytes()), authorization, body, keep_alive, head_only: method == Method::Head }))
}

fn encode(r: &Response, keep_alive: bool, head_only: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", r.status, r.reason()).as_bytes());
    if r.status != 204 {
        out.extend_from_slice(format!("Content-Type: {}\r\nContent-Length: {}\r\n", r.content_type, r.body.len()).as_bytes());
    }
    for (k, v) in &r.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(if keep_alive { b"Connection: keep-alive\r\n\r\n" } else { b"Connection: close\r\n\r\n" });
    if !head_only {
        out.extend_from_slice(&r.body);
    }
}

/// Serves one connection until the client closes it, an error, or a limit.
pub async fn conn(mut s: TcpStream, shared: Arc<Lock<Shared>>, quit_enabled: bool) {
    let client = u64::from(u32::from(*s.peer_addr().ip()));
    let mut buf = vec![0u8; MAX_HEAD + MAX_BODY];
    let mut have = 0usize;
    let mut out = Vec::with_capacity(1024);
    loop {
        // A request: its head, then its body, within REQUEST_TIME of its
        // first byte (IDLE until that byte).
        let mut started = (have > 0).then(time::now);
        let head = loop {
            match parse(&buf[..have]) {
                Ok(Some(h)) if have >= h.len + h.body => break Ok(h),
                Ok(Some(_)) => {}
                Ok(None) if have >= MAX_HEAD => break Err(Response::error(431, "the request head is too large")),
                Ok(None) => {}
                Err(r) => break Err(r),
            }
            let limit = match started {
                None => IDLE,
                Some(t) => (t + REQUEST_TIME).saturating_sub(time::now()),
            };
            match with_timeout(limit, s.read(&mut buf[have..])).await {
                Ok(Ok(n)) if n > 0 => {
                    have += n;
                    started.get_or_insert_with(time::now);
                }
                Ok(_) => return s.abort(),
                Err(_) if started.is_some() => break Err(Response::error(408, "the request took too long")),
                Err(_) => {
                    let _ = s.close().await;
                    return;
                }
            }
        };
        out.clear();
        let (keep_alive, quitting) = match head {
            Err(resp) => {
                encode(&resp, false, false, &mut out);
                (false, false)
            }
            Ok(h) => {
                let target = core::str::from_utf8(&buf[h.target.0..h.target.1]).unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let req = Request {
                    method: h.method,
                    path,
                    query,
                    authorization: h.authorization.map(|(a, b)| &buf[a..b]),
                    body: &buf[h.len..h.len + h.body],
                    client,
                };
                let quitting = quit_enabled && h.method == Method::Post && path == "/quit";
                let resp = if quitting {
                    let g = shared.lock().await;
                    if g.app.tokens.accepts(req.authorization) {
                        Response::json(200, b"{\"bye\":true}".to_vec())
                    } else {
                        hallows_basilisk::auth::Tokens::challenge()
                    }
                } else {
                    Shared::answer(&shared, &req).await
                };
                let quitting = quitting && resp.status == 200;
                let keep_alive = h.keep_alive && !quitting;
                encode(&resp, keep_alive, h.head_only, &mut out);
                let used = h.len + h.body;
                buf.copy_within(used..have, 0);
                have -= used;
                (keep_alive, quitting)
            }
        };
        // Pipelined requests already here are answered before this one is
        // written only if they are complete; simpler and in order: write now.
        if !matches!(with_timeout(WRITE_TIME, s.write_all(&out)).await, Ok(Ok(()))) {
            return s.abort();
        }
        if quitting {
            QUIT.store(true, Ordering::Release);
        }
        if !keep_alive {
            let _ = s.close().await;
            return;
        }
    }
}

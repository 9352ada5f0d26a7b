//! A connection: the socket on one side, `hallows-http` (the sans-I/O
//! HTTP/1.1 engine: keep-alive, pipelining, chunked bodies, limits and
//! their status codes) on the other, the application in between.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;

use hallows_basilisk::lock::Lock;
use hallows_basilisk::{Method, Request, Response};
use hallows_http::{Conn, Event, Limits};
use hallows_net::{with_timeout, TcpStream};
use hallows_rt::time;

use crate::{Shared, QUIT};

/// What one connection may send: heads of 8 KiB and 48 fields, targets of
/// 2 KiB, bodies of 16 KiB; 10 s to send a request whole, 10 s idle
/// between requests.
pub const LIMITS: Limits = Limits {
    max_head: 8 * 1024,
    max_headers: 48,
    max_uri: 2 * 1024,
    max_body: 16 * 1024,
    request_timeout: 10_000_000_000,
    idle_timeout: 10_000_000_000,
    max_output: 64 * 1024,
};

/// Time to hand owed bytes to a client that does not read.
pub const WRITE_TIME: Duration = Duration::from_secs(10);

/// Serves one connection until the client closes it, an error, or a limit.
pub async fn conn(mut s: TcpStream, shared: Arc<Lock<Shared>>, quit_enabled: bool) {
    let client = u64::from(u32::from(*s.peer_addr().ip()));
    let mut c = Conn::new(LIMITS, time::now_nanos());
    loop {
        let now = time::now_nanos();
        match c.next(now) {
            Event::Request(r) => {
                let req = Request { method: Method::parse(r.method), path: r.path, query: r.query, authorization: r.header("authorization"), body: r.body, client };
                let quitting = quit_enabled && req.method == Method::Post && req.path == "/quit";
                let resp = if quitting { quit(&shared, &req).await } else { Shared::answer(&shared, &req).await };
                let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(1 + resp.headers.len());
                headers.push(("Content-Type", resp.content_type.as_bytes()));
                headers.extend(resp.headers.iter().map(|(k, v)| (*k, v.as_bytes())));
                c.respond(resp.status, &headers, &resp.body);
                if quitting && resp.status == 200 {
                    QUIT.store(true, Ordering::Release);
                }
            }
            Event::Write => match with_timeout(WRITE_TIME, s.write(c.output())).await {
                Ok(Ok(n)) if n > 0 => c.written(n),
                _ => return s.abort(),
            },
            Event::Read => {
                let wait = Duration::from_nanos(c.deadline().saturating_sub(now));
                match with_timeout(wait, s.read(c.read_buf())).await {
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => c.filled(n, time::now_nanos()),
                    Ok(Err(_)) => return s.abort(),
                    Err(_) => c.timed_out(time::now_nanos()),
                }
            }
            Event::Close => break,
        }
    }
    let _ = s.close().await;
}

/// `POST /quit` (boot argument `quit`): with a valid token, the guest ends.
async fn quit(shared: &Lock<Shared>, req: &Request<'_>) -> Response {
    let g = shared.lock().await;
    if g.app.tokens.accepts(req.authorization) {
        Response::json(200, b"{\"bye\":true}".to_vec())
    } else {
        hallows_basilisk::auth::Tokens::challenge()
    }
}

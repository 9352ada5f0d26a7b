//! Serving an application over HTTP/1.1 on the partition's network
//! (feature `rt`): the socket on one side (`hallows-net`: the partition's
//! own NIC or a connection relayed by a gateway partition), `hallows-http`
//! (the sans-I/O engine: keep-alive, pipelining, chunked bodies, limits and
//! their status codes) on the other, the application in between.
//!
//! A guest's shell binds with [`bind`], accepts with [`accept_until`] and
//! serves each connection on a task of its own with [`serve_conn`]. The
//! handler a connection is given is any `async` closure from a [`Request`]
//! to a [`Response`], so the caller decides how connections share the
//! application: one behind a [`crate::lock::Lock`] (the todo demo: one
//! store client for the partition), or an `App` of its own per connection.
//!
//! ```ignore
//! let (mut listener, port) = server::bind(&boot)?;
//! let app = Arc::new(Lock::new((App::new(Handlers, tokens), store)));
//! server::accept_until(&mut listener, &Stop::default(), |s| {
//!     let app = app.clone();
//!     spawn(server::serve_conn(s, server::LIMITS, async move |req: &Request<'_>| {
//!         let mut g = app.lock().await;
//!         let (app, store) = &mut *g;
//!         app.handle(req, store, time::now_nanos).await
//!     }));
//! })
//! .await;
//! ```

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::AsyncFnMut;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use hallows_http::{Conn, Event};
use hallows_net::{with_timeout, TcpListener, TcpStream};
use hallows_rt::{time, Boot};

pub use hallows_http::Limits;

use crate::{Method, Request, Response};

/// What one connection may send: heads of 8 KiB and 48 fields, targets of
/// 2 KiB, bodies of 16 KiB; 10 s to send a request whole, 10 s idle
/// between requests; 64 KiB of answers waiting before no further
/// pipelined request is read.
pub const LIMITS: Limits = Limits {
    max_head: 8 * 1024,
    max_headers: 48,
    max_uri: 2 * 1024,
    max_body: 16 * 1024,
    request_timeout: 10_000_000_000,
    idle_timeout: 10_000_000_000,
    max_output: 64 * 1024,
};

/// Time to hand owed bytes to a client that does not read: beyond it the
/// connection is aborted.
pub const WRITE_TIME: Duration = Duration::from_secs(10);

/// How often [`accept_until`] looks at its [`Stop`] while no client comes.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// How long [`accept_until`] lets the last answers go out once stopped.
pub const LINGER: Duration = Duration::from_millis(200);

/// The port a partition serves on: the manifest's first `listen` port,
/// else 80.
pub fn port(boot: &Boot) -> u16 {
    let net = &boot.info().net;
    if net.listen_count > 0 && net.listen[0] != 0 {
        net.listen[0]
    } else {
        80
    }
}

/// Listens on [`port`] (the network must be up: `hallows_net::init`).
/// The error says which port could not be had.
pub fn bind(boot: &Boot) -> Result<(TcpListener, u16), String> {
    let port = port(boot);
    TcpListener::bind(port)
        .map(|l| (l, port))
        .map_err(|_| format!("cannot listen on port {port}"))
}

/// Tells [`accept_until`] to stop accepting (a handler's `POST /quit`, a
/// supervisor's order). Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Accepts connections and hands each to `conn` (which spawns its task:
/// the caller's executor, class and handler) until `stop` is set, looked
/// at every [`STOP_CHECK`]; then waits [`LINGER`] for the last answers to
/// leave. A failed accept is skipped.
pub async fn accept_until(
    listener: &mut TcpListener,
    stop: &Stop,
    mut conn: impl FnMut(TcpStream),
) {
    loop {
        if let Ok(Ok(s)) = with_timeout(STOP_CHECK, listener.accept()).await {
            conn(s);
        }
        if stop.stopped() {
            break;
        }
    }
    time::sleep(LINGER).await;
}

/// Serves one connection until the client closes it, an error, or a
/// limit: each request the engine parses goes to `handler` (its
/// [`Request::client`] is the peer's IPv4 address), each answer back in
/// request order. A client that does not read its answers within
/// [`WRITE_TIME`], or a socket error, aborts the connection; the engine's
/// own refusals (400, 408, 413, ...) are answered, then the connection
/// closes.
pub async fn serve_conn(
    mut s: TcpStream,
    limits: Limits,
    mut handler: impl AsyncFnMut(&Request<'_>) -> Response,
) {
    let client = u64::from(u32::from(*s.peer_addr().ip()));
    let mut c = Conn::new(limits, time::now_nanos());
    loop {
        let now = time::now_nanos();
        match c.next(now) {
            Event::Request(r) => {
                let req = Request {
                    method: Method::parse(r.method),
                    path: r.path,
                    query: r.query,
                    authorization: r.header("authorization"),
                    body: r.body,
                    client,
                };
                let resp = handler(&req).await;
                let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(1 + resp.headers.len());
                headers.push(("Content-Type", resp.content_type.as_bytes()));
                headers.extend(resp.headers.iter().map(|(k, v)| (*k, v.as_bytes())));
                c.respond(resp.status, &headers, &resp.body);
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

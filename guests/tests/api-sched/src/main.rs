//! Test guest: does one slow request hold up fast ones?
//!
//! `sched.pt` declares `GET /fast` (answers at once) and `GET /slow/{ms}`
//! (computes for `ms` milliseconds, at most 5,000, without awaiting:
//! CPU-bound work a handler runs with `spawn_preemptible`, on its own
//! stack with interrupts open, so the scheduler can stop it anywhere).
//! Every connection is a task with its own `App` (no lock between
//! requests). `POST /quit` ends the guest with status 0.
//!
//! Boot arguments: `policy=api` (default: the spec's `api` scheduler,
//! Shinjuku-style: a request that has run a quantum while another waits is
//! preempted) or `policy=fifo` (the runtime's FIFO; with `quantum_ms=0`
//! every task runs to completion: the baseline the test compares with).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use hallows_basilisk::store::MemStore;
use hallows_basilisk::{Method, Request, Response};
use hallows_http::{Conn, Event, Limits};
use hallows_net::{with_timeout, TcpListener, TcpStream};
use hallows_rt::task::{spawn, spawn_preemptible};
use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

#[allow(dead_code, clippy::all, unused_imports, unused_variables)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/sched.rs"));
}
use spec::web::{App, Routes};

/// Longest computation `GET /slow/{ms}` does.
const MAX_SLOW_MS: u64 = 5_000;

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    match boot.arg("policy").unwrap_or("api") {
        "fifo" => hallows_rt::task::run(boot, serve(b, "fifo")),
        "api" => match spec::Policy::new(spec::scheduler_config()) {
            Ok(policy) => hallows_rt::task::run_with(boot, Box::new(policy), serve(b, "api")),
            Err(e) => {
                println!("api-sched: the spec's scheduler configuration was refused: {e:?}");
                1
            }
        },
        other => {
            println!("api-sched: unknown policy={other} (api or fifo)");
            2
        }
    }
}

struct Handlers;

impl<S: hallows_basilisk::store::Store> Routes<S> for Handlers {
    async fn fast(&mut self, _store: &mut S, _req: &Request<'_>) -> Response {
        Response::json(200, b"{\"fast\":true}".to_vec())
    }

    async fn slow(&mut self, _store: &mut S, _req: &Request<'_>, ms: u64) -> Response {
        if ms > MAX_SLOW_MS {
            return Response::error(422, "ms must be at most 5000");
        }
        let spun = spawn_preemptible(move || {
            let start = time::now_nanos();
            let end = start + ms * 1_000_000;
            let mut x = 0u64;
            while time::now_nanos() < end {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
            }
            core::hint::black_box(x);
            time::now_nanos() - start
        })
        .await;
        Response::json(
            200,
            format!("{{\"ms\":{ms},\"ran_us\":{}}}", spun / 1000).into_bytes(),
        )
    }
}

static QUIT: AtomicBool = AtomicBool::new(false);

const LIMITS: Limits = Limits {
    max_head: 4096,
    max_headers: 32,
    max_uri: 1024,
    max_body: 1024,
    request_timeout: 10_000_000_000,
    idle_timeout: 30_000_000_000,
    max_output: 16 * 1024,
};

async fn serve(boot: Boot, policy: &'static str) -> u64 {
    if let Err(e) = hallows_net::init(&boot) {
        println!("api-sched: net init failed: {e}");
        return 1;
    }
    let net = &boot.info().net;
    let port = if net.listen_count > 0 && net.listen[0] != 0 {
        net.listen[0]
    } else {
        80
    };
    let Ok(mut listener) = TcpListener::bind(port) else {
        println!("api-sched: cannot listen on port {port}");
        return 1;
    };
    println!("api-sched: ready on port {port}, policy {policy}");
    while !QUIT.load(Ordering::Acquire) {
        // Woken every 100 ms to notice POST /quit.
        if let Ok(Ok(s)) = with_timeout(Duration::from_millis(100), listener.accept()).await {
            spawn(conn(s));
        }
    }
    time::sleep(Duration::from_millis(200)).await;
    println!("api-sched: bye");
    0
}

/// One connection: `hallows-http` on the socket, its own `App`.
async fn conn(mut s: TcpStream) {
    let mut app = App::new(Handlers, hallows_basilisk::auth::Tokens::default());
    let mut store = MemStore::default();
    let mut c = Conn::new(LIMITS, time::now_nanos());
    loop {
        let now = time::now_nanos();
        match c.next(now) {
            Event::Request(r) => {
                let req = Request {
                    method: Method::parse(r.method),
                    path: r.path,
                    query: r.query,
                    authorization: None,
                    body: r.body,
                    client: 0,
                };
                let resp = if req.method == Method::Post && req.path == "/quit" {
                    QUIT.store(true, Ordering::Release);
                    Response::json(200, b"{\"bye\":true}".to_vec())
                } else {
                    app.handle(&req, &mut store, time::now_nanos).await
                };
                let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(1 + resp.headers.len());
                headers.push(("Content-Type", resp.content_type.as_bytes()));
                headers.extend(resp.headers.iter().map(|(k, v)| (*k, v.as_bytes())));
                c.respond(resp.status, &headers, &resp.body);
            }
            Event::Write => {
                match with_timeout(Duration::from_secs(10), s.write(c.output())).await {
                    Ok(Ok(n)) if n > 0 => c.written(n),
                    _ => return s.abort(),
                }
            }
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

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

use hallows_basilisk::auth::Tokens;
use hallows_basilisk::server::{self, Limits, Stop};
use hallows_basilisk::store::MemStore;
use hallows_basilisk::{Method, Request, Response};
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

/// Smaller than a service's ([`server::LIMITS`]): the test sends tiny
/// requests.
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
    let (mut listener, port) = match server::bind(&boot) {
        Ok(l) => l,
        Err(e) => {
            println!("api-sched: {e}");
            return 1;
        }
    };
    println!("api-sched: ready on port {port}, policy {policy}");
    let stop = Stop::default();
    server::accept_until(&mut listener, &stop, |s| {
        // Each connection its own `App` (no lock between requests).
        let stop = stop.clone();
        let mut app = App::new(Handlers, Tokens::default());
        let mut store = MemStore::default();
        let handler = async move |req: &Request<'_>| {
            if req.method == Method::Post && req.path == "/quit" {
                stop.stop();
                Response::json(200, b"{\"bye\":true}".to_vec())
            } else {
                app.handle(req, &mut store, time::now_nanos).await
            }
        };
        spawn(server::serve_conn(s, LIMITS, handler));
    })
    .await;
    println!("api-sched: bye");
    0
}

//! The Basilisk demo: a todo-list REST API.
//!
//! `todo.pt` declares the API (a `todo` resource with validations, a
//! `Rename` body, three hand-written routes, bearer tokens, a rate limit);
//! this file is the rest: the handlers, and the shell that serves the
//! generated application with `hallows_basilisk::server` (HTTP/1.1 on the
//! partition's NIC, a task per connection), its records in the store
//! partition over the "kv-requests"/"kv-replies" channels.
//!
//! Boot arguments: `tokens=a,b` (the accepted bearer tokens; none: every
//! request is 401), `quit` (test endpoint: `POST /quit` with a valid token
//! answers, then the guest asks the store to shut down, prints its route
//! statistics and exits 0),
//! `log` (a request log line per request), `events` (each record
//! `POST /todos` creates is also an event `created` with `ID TITLE` on the
//! log partition's in-system topic, the job queue's channels; the 201
//! goes out once the log has it durable, or without it when the log did
//! not take it in time, counted in the summary), `no_rate_limit` (the spec's
//! rate limit off: benchmarks, whose clients all share the host's address).
//! `metrics_ms=N` (see `calls`). The port is the manifest's
//! first `listen` port (else 80). Where the manifest connects them, the
//! API also answers calls from another partition over "api-calls" and
//! sends its figures on "metrics" (`calls.rs`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;

use hallows_basilisk::auth::Tokens;
use hallows_basilisk::lock::Lock;
use hallows_basilisk::server::{self, Stop};
use hallows_basilisk::store::{KvStore, Store};
use hallows_basilisk::{rest, Method, Request, Response};
use hallows_rt::task::spawn;
use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

#[allow(dead_code, clippy::all, unused_imports, unused_variables)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/todo.rs"));
}
use spec::web::{App, Rename, Routes, Todo, ROUTES};

mod calls;
mod jobs;

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    // The spec's `api` scheduler (Shinjuku-style: a preemptible task that
    // has run its quantum while another waits is preempted; futures run
    // to their next await). Preemption needs the timer, which a core with
    // a poll-mode NIC leaves off (docs/basilisk.md#scheduling).
    match spec::Policy::new(spec::scheduler_config()) {
        Ok(policy) => hallows_rt::task::run_with(boot, alloc::boxed::Box::new(policy), serve(b)),
        Err(e) => {
            println!("todo: the spec's scheduler configuration was refused: {e:?}");
            1
        }
    }
}

/// The hand-written routes of `todo.pt`.
struct Handlers {
    /// The background-job queue (`None`: no log partition in this system).
    jobs: Option<jobs::Queue>,
}

/// How long `POST /todos/{id}/remind` waits for the log's acknowledgement.
const ENQUEUE_TIME: Duration = Duration::from_secs(5);

impl<S: Store> Routes<S> for Handlers {
    async fn health(&mut self, _store: &mut S, _req: &Request<'_>) -> Response {
        Response::json(200, b"{\"ok\":true}".to_vec())
    }

    /// A one-field PATCH through the resource's own validation.
    async fn rename(&mut self, store: &mut S, _req: &Request<'_>, id: u64, body: Rename) -> Response {
        let mut patch = Vec::new();
        body.to_json(&mut patch);
        rest::update::<Todo, S>(store, id, &patch, true).await
    }

    /// Enqueues a reminder job for todo `id` (the worker partition prints
    /// it): 202 with the job's offset once it is durable in the log.
    async fn remind(&mut self, store: &mut S, _req: &Request<'_>, id: u64) -> Response {
        let shown = rest::show::<Todo, S>(store, id).await;
        if shown.status != 200 {
            return shown;
        }
        let Some(queue) = self.jobs.as_mut() else {
            return Response::error(503, "this system has no job queue (no log partition)");
        };
        let record = hallows_basilisk::serde_json::from_slice::<hallows_basilisk::serde_json::Value>(&shown.body);
        let title = record.ok().and_then(|r| r.get("title").and_then(|t| t.as_str()).map(String::from)).unwrap_or_default();
        // `ID TITLE`, cut to the record's 100 bytes.
        let arg = cut(alloc::format!("{id} {title}"), 100);
        match queue.enqueue(b"remind", arg.as_bytes(), ENQUEUE_TIME).await {
            Ok(offset) => Response::json(202, alloc::format!("{{\"job\":{offset},\"kind\":\"remind\",\"todo\":{id}}}").into_bytes()),
            Err(jobs::Refused::NoAck) => Response::error(504, "the job queue did not acknowledge in time"),
            Err(e) => Response::error(
                503,
                match e {
                    jobs::Refused::NotReady => "the job queue is not ready",
                    jobs::Refused::Full => "the job queue is full",
                    _ => "the job queue failed",
                },
            )
            .with_header("Retry-After", String::from("1")),
        }
    }

    /// The first 255 todos with this tag.
    async fn by_tag(&mut self, store: &mut S, _req: &Request<'_>, tag: String) -> Response {
        let page = match store.scan(b"todo/", None, 255).await {
            Ok(p) => p,
            Err(e) => return e.response(),
        };
        let mut out = Vec::from(&b"{\"data\":["[..]);
        let mut first = true;
        for (_, v) in &page.entries {
            let tagged = hallows_basilisk::serde_json::from_slice::<hallows_basilisk::serde_json::Value>(v)
                .is_ok_and(|t| t.get("tag").and_then(|t| t.as_str()) == Some(tag.as_str()));
            if tagged {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(v);
            }
        }
        out.extend_from_slice(b"]}");
        Response::json(200, out)
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// What the connection tasks share.
pub struct Shared {
    app: App<Handlers>,
    store: calls::Counted<KvStore>,
    log: bool,
    /// `events`: creations go to the log too.
    events: bool,
    figures: Arc<calls::Figures>,
}

impl Shared {
    /// Answers one request (the lock is held for its whole handling: the
    /// store client serves one request at a time anyway).
    pub async fn answer(shared: &Lock<Shared>, req: &Request<'_>) -> Response {
        let mut g = shared.lock().await;
        let s = &mut *g;
        let resp = s.app.handle(req, &mut s.store, time::now_nanos).await;
        s.figures.requests.fetch_add(1, Ordering::Relaxed);
        if s.log {
            println!("{}", hallows_basilisk::stats::log_line(req.method.as_str(), req.path, resp.status, s.app.last_ns));
        }
        if s.events && resp.status == 201 && req.method == Method::Post && req.path == "/todos" {
            s.created(&resp).await;
        }
        resp
    }

    /// `events`: the record a `POST /todos` created, as event `created`
    /// (`ID TITLE`, cut to the record's 100 bytes) on the log's topic.
    async fn created(&mut self, resp: &Response) {
        let Some(queue) = self.app.routes.jobs.as_mut() else {
            return;
        };
        let record = hallows_basilisk::serde_json::from_slice::<hallows_basilisk::serde_json::Value>(&resp.body);
        let title = record.ok().and_then(|r| r.get("title").and_then(|t| t.as_str()).map(String::from)).unwrap_or_default();
        let arg = cut(alloc::format!("{} {title}", calls::body_id(resp)), 100);
        match queue.enqueue(b"created", arg.as_bytes(), ENQUEUE_TIME).await {
            Ok(_) => self.figures.events.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.figures.events_failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

async fn serve(boot: Boot) -> u64 {
    let cfg = match hallows_net::init(&boot) {
        Ok(c) => c,
        Err(e) => {
            println!("todo: net init failed: {e}");
            return 1;
        }
    };
    let store = match KvStore::connect(&boot, Duration::from_secs(120)).await {
        Ok(s) => s,
        Err(e) => {
            println!("todo: {e}");
            return 1;
        }
    };
    let tokens = Tokens::parse(boot.arg("tokens").unwrap_or(""));
    if tokens.is_empty() {
        println!("todo: no tokens= boot argument: every request will be answered 401");
    }
    let jobs = match jobs::Queue::connect(&boot) {
        Ok(q) => q,
        Err(e) => {
            println!("todo: the job queue's channels: {e}");
            return 1;
        }
    };
    if jobs.is_some() {
        println!("todo: background jobs go to the log partition");
    }
    let mut app = App::new(Handlers { jobs }, tokens);
    if boot.has("no_rate_limit") {
        // Benchmarks from one host address: every client is 10.0.2.2.
        app.limiter = None;
        println!("todo: no rate limit (boot argument no_rate_limit)");
    }
    let figures = Arc::new(calls::Figures::default());
    let store = calls::Counted { inner: store, ops: figures.store_ops.clone() };
    let events = boot.has("events");
    if events && app.routes.jobs.is_none() {
        println!("todo: `events` without the job queue's channels: no events");
    }
    let shared = Arc::new(Lock::new(Shared { app, store, log: boot.has("log"), events, figures: figures.clone() }));
    spawn(calls::serve(boot.clone(), shared.clone()));
    spawn(calls::metrics(boot.clone(), figures.clone()));
    let (mut listener, port) = match server::bind(&boot) {
        Ok(l) => l,
        Err(e) => {
            println!("todo: {e}");
            return 1;
        }
    };
    let quit_enabled = boot.has("quit");
    let stop = Stop::default();
    println!("todo: ready on {}:{port} ({} routes)", cfg.address, ROUTES.len());
    server::accept_until(&mut listener, &stop, |s| {
        let (shared, stop) = (shared.clone(), stop.clone());
        let handler = async move |req: &Request<'_>| {
            if quit_enabled && req.method == Method::Post && req.path == "/quit" {
                quit(&shared, req, &stop).await
            } else {
                Shared::answer(&shared, req).await
            }
        };
        spawn(server::serve_conn(s, server::LIMITS, handler));
    })
    .await;
    // The last answers have gone out (`accept_until` lingers): report.
    let mut g = shared.lock().await;
    // The store ends with us (it serves no one else in this system).
    if let Err(e) = g.store.inner.kv.shutdown().await {
        println!("todo: the store refused to shut down: {e}");
    }
    for (name, s) in ROUTES.iter().zip(g.app.stats.iter()) {
        if s.requests > 0 {
            println!("todo: route {name}: {} requests, {} errors, mean {} us, max {} us", s.requests, s.errors, s.mean_ns() / 1000, s.max_ns / 1000);
        }
    }
    if g.events {
        let f = &g.figures;
        println!("todo: events: {} logged, {} not taken by the log in time", f.events.load(Ordering::Relaxed), f.events_failed.load(Ordering::Relaxed));
    }
    println!("todo: {}", hallows_net::stats());
    println!("todo: bye");
    0
}

/// `POST /quit` (boot argument `quit`): with a valid token, the guest ends
/// once the answer is out.
async fn quit(shared: &Lock<Shared>, req: &Request<'_>, stop: &Stop) -> Response {
    let g = shared.lock().await;
    if g.app.tokens.accepts(req.authorization) {
        stop.stop();
        Response::json(200, b"{\"bye\":true}".to_vec())
    } else {
        Tokens::challenge()
    }
}

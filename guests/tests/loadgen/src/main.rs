//! The flagship system's load generator (docs/demo.md): calls the todo
//! API over the ring channels "api-calls"/"api-replies" (`loadgen.pt`) at
//! a fixed rate, and checks every reply.
//!
//! Each period it makes one call, in a cycle of four: three `POST /todos`
//! (title `load N`, tag `work`) and one `GET /todos/ID` of the last record
//! it created. A create must answer 201 with an id, a read 200 with the
//! same id; anything else, or no reply within [`REPLY_TIME`], is a
//! failure, counted and printed. At most [`IN_FLIGHT`] calls wait for
//! their replies at once; while that many wait, no call is made (the
//! period is skipped, counted).
//!
//! Boot arguments: `rate=N` (calls per second, default 4, 1..=1000),
//! `token=T` (the API's bearer token), `calls=N` (exit after N calls
//! answered, 0 if none failed: tests; default: for ever), `report_s=N`
//! (a summary line every N seconds, default 10). The dashboard's
//! Pause/Resume of its source 0 stops and restarts the calls ("control");
//! other sources are not this partition's and are counted as refused.
//!
//! Every line it prints starts `loadgen:`; the summary line is
//! `loadgen: N calls, N created, N read, N failed, N skipped, last id N`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use core::time::Duration;

use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// Generated from `loadgen.pt` by the build script.
#[allow(dead_code)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/loadgen.rs"));
}

use spec::{ApiCall, ApiReply, BoundedBytes240, BoundedBytes64, BoundedBytes96, Control};

/// How long a call may wait for its reply.
const REPLY_TIME: Duration = Duration::from_secs(10);
/// Calls waiting for replies at most.
const IN_FLIGHT: usize = 16;

/// What a call was, to check its reply.
#[derive(Clone, Copy)]
enum Sent {
    Create,
    Read(u64),
}

#[derive(Default)]
struct Calls {
    /// seq -> (what, when sent)
    waiting: BTreeMap<u64, (Sent, Duration)>,
    created: u64,
    read: u64,
    failed: u64,
    last_id: u64,
    paused: bool,
    refused_controls: u64,
    /// Replies naming no call waiting (late, or another partition's error).
    stray: u64,
}

impl Calls {
    fn fail(&mut self, seq: u64, why: &str) {
        self.failed += 1;
        // Only the first few: a broken API must not flood the console.
        if self.failed <= 10 {
            println!("loadgen: call {seq} failed: {why}");
        }
    }
}

impl spec::Handlers for Calls {
    type Endpoints = Boot;

    fn replied(&mut self, r: ApiReply, _send: &mut spec::Senders<Boot>) {
        let Some((sent, _)) = self.waiting.remove(&r.seq) else {
            self.stray += 1;
            return;
        };
        match sent {
            Sent::Create if r.status == 201 && r.id != 0 => {
                self.created += 1;
                self.last_id = self.last_id.max(r.id);
            }
            Sent::Read(id) if r.status == 200 && r.id == id => self.read += 1,
            Sent::Create => self.fail(r.seq, &format!("POST /todos answered {} (id {})", r.status, r.id)),
            Sent::Read(id) => self.fail(r.seq, &format!("GET /todos/{id} answered {} (id {})", r.status, r.id)),
        }
    }

    fn on_control(&mut self, c: Control, _send: &mut spec::Senders<Boot>) {
        if c.source != 0 {
            self.refused_controls += 1;
            return;
        }
        let paused = c.paused.get();
        if paused != self.paused {
            self.paused = paused;
            println!("loadgen: {}", if paused { "paused from the dashboard" } else { "resumed from the dashboard" });
        }
    }
}

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    hallows_rt::task::run(boot, generate(b))
}

fn summary(c: &Calls, calls: u64, skipped: u64) {
    println!(
        "loadgen: {calls} calls, {} created, {} read, {} failed, {skipped} skipped, last id {}",
        c.created, c.read, c.failed, c.last_id
    );
}

async fn generate(boot: Boot) -> u64 {
    let rate = boot.arg("rate").and_then(|s| s.parse::<u64>().ok()).unwrap_or(4).clamp(1, 1000);
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let report = Duration::from_secs(boot.arg("report_s").and_then(|s| s.parse().ok()).unwrap_or(10).max(1));
    let stop_after: Option<u64> = boot.arg("calls").and_then(|s| s.parse().ok());
    let token = format!("Bearer {}", boot.arg("token").unwrap_or(""));
    let Some(auth) = BoundedBytes64::from_bytes(token.as_bytes()) else {
        println!("loadgen: the token is over 57 bytes");
        return 1;
    };
    let mut svc = match spec::Service::connect(Calls::default(), &boot) {
        Ok(s) => s,
        Err(e) => {
            println!("loadgen: {e}");
            return 1;
        }
    };
    println!("loadgen: {rate} calls/s to the API over \"api-calls\"");
    let (mut seq, mut skipped) = (0u64, 0u64);
    let start = time::now();
    let mut next = start;
    let mut next_report = start + report;
    loop {
        svc.turn(time::now_nanos());
        let now = time::now();
        // Calls unanswered for too long.
        let late: alloc::vec::Vec<u64> =
            svc.handlers.waiting.iter().filter(|(_, (_, at))| now - *at > REPLY_TIME).map(|(s, _)| *s).collect();
        for s in late {
            svc.handlers.waiting.remove(&s);
            svc.handlers.fail(s, "no reply in time");
        }
        let answered = svc.handlers.created + svc.handlers.read + svc.handlers.failed;
        if stop_after.is_some_and(|n| answered >= n) {
            summary(&svc.handlers, seq, skipped);
            return if svc.handlers.failed == 0 { 0 } else { 1 };
        }
        if now >= next_report {
            summary(&svc.handlers, seq, skipped);
            next_report += report;
        }
        if now < next {
            time::sleep_until(next.min(now + Duration::from_millis(5))).await;
            continue;
        }
        next += period;
        if svc.handlers.paused || stop_after.is_some_and(|n| seq >= n) {
            continue;
        }
        if svc.handlers.waiting.len() >= IN_FLIGHT {
            skipped += 1;
            continue;
        }
        let last = svc.handlers.last_id;
        let (sent, method, target, body) = if seq % 4 == 3 && last != 0 {
            (Sent::Read(last), 1, format!("/todos/{last}"), alloc::string::String::new())
        } else {
            (Sent::Create, 2, alloc::string::String::from("/todos"), format!("{{\"title\":\"load {seq}\",\"tag\":\"work\"}}"))
        };
        let (Some(t), Some(b)) = (BoundedBytes96::from_bytes(target.as_bytes()), BoundedBytes240::from_bytes(body.as_bytes())) else {
            println!("loadgen: call {seq} does not fit its message");
            return 1;
        };
        let call = ApiCall::new(seq, method, t, auth, b);
        if spec::Port::port(&mut svc.send.api_calls).try_send(&call).is_err() {
            skipped += 1;
            continue;
        }
        svc.flush();
        svc.handlers.waiting.insert(seq, (sent, now));
        seq += 1;
    }
}

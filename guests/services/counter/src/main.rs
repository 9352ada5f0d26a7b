//! A compute-bound guest: counts primes below a bound (boot argument
//! `limit`, default 20000) and logs its progress; then, where the manifest
//! connects it, serves the Parseltongue (Basilisk) service `counter`
//! (`counter.pt`): one counting job per request, the count as the reply.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

/// Generated from `counter.pt` by the build script (the whole service API;
/// this guest uses part of it).
#[allow(dead_code)]
mod counter {
    include!(concat!(env!("OUT_DIR"), "/counter.rs"));
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

fn count_primes(limit: u32) -> u32 {
    (0..limit).filter(|&n| is_prime(n)).count() as u32
}

/// The handlers of `counter`.
struct Counter {
    served: u32,
    /// `crash_at=N` on the first run: the N-th request crashes the
    /// partition (a panic) after it was taken and before it is answered
    /// (for the restart tests).
    crash_at: Option<u32>,
}

impl counter::Handlers for Counter {
    type Endpoints = Boot;
    fn count_primes(&mut self, request: counter::CountJob, _send: &mut counter::Senders<Boot>) -> counter::PrimeCount {
        self.served += 1;
        if self.crash_at == Some(self.served) {
            panic!("crashing on purpose while serving job {}", request.job);
        }
        counter::PrimeCount { job: request.job, limit: request.limit, count: count_primes(request.limit) }
    }
}

fn main(boot: &Boot) -> u64 {
    let limit: u32 = boot.arg("limit").and_then(|s| s.parse().ok()).unwrap_or(20_000);
    log::info!("counting primes below {limit}");
    let step = (limit / 4).max(1);
    let mut count = 0;
    for n in 0..limit {
        if is_prime(n) {
            count += 1;
        }
        if n > 0 && n % step == 0 {
            log::info!("{n}: {count} primes so far");
        }
    }
    println!("{count} primes below {limit}");
    let expect: Option<u32> = boot.arg("expect").and_then(|s| s.parse().ok());
    if let Some(e) = expect {
        if e != count {
            println!("expected {e}");
            return 1;
        }
    }
    let crash_at = boot.arg("crash_at").and_then(|s| s.parse().ok()).filter(|_| boot.restart_count() == 0);
    match counter::Service::connect(Counter { served: 0, crash_at }, boot) {
        Ok(service) => serve(boot, service),
        // Not connected: the count above was the whole job.
        Err(counter::ConnectError::MissingChannel(_)) => 0,
        // Another message layout at the other end, or a refused scheduler
        // configuration: a fault with the reason, never garbage replies.
        Err(e) => panic!("{e}"),
    }
}

/// Serves `jobs` (boot argument, default 1) requests, then exits. After a
/// restart caused by `crash_at=N`, the jobs before the N-th were served by
/// the first run, so N - 1 fewer are left.
fn serve(boot: &Boot, mut service: counter::Service<Counter>) -> u64 {
    let mut jobs: u32 = boot.arg("jobs").and_then(|s| s.parse().ok()).unwrap_or(1);
    if boot.restart_count() > 0 {
        let crashed: u32 = boot.arg("crash_at").and_then(|s| s.parse().ok()).unwrap_or(1);
        jobs = jobs.saturating_sub(crashed.saturating_sub(1));
    }
    // The api policy only orders requests here (no deadlines), so a turn
    // counter serves as `now`; the runtime's clock (`hallows_rt::time::now`)
    // is there for a service that needs real time.
    let mut now = 0u64;
    while service.handlers.served < jobs {
        let turn = service.turn(now);
        if turn.corrupt != 0 {
            println!("jobs channel corrupt");
            return 1;
        }
        now += 1;
        if turn.handled == 0 {
            // Nothing pending: sleep until the frontend rings (a doorbell
            // channel), or poll again at once (a poll channel).
            service.wait();
        }
        hallows_rt::relax();
    }
    println!("served {} job(s)", service.handlers.served);
    0
}

//! Both ends of `make bench` comparison (C), a mixed burst
//! (tools/bench/compare-c-burst, tests/systems/bench-burst-api.toml):
//!
//! - `role=client`: on its own core, sends the requests of the seeded
//!   schedule (`hallows_burst::Schedule`; boot arguments `seed`, `count`,
//!   `short`, `long`, `long_per_mille`, `gap_ns`) on channel `requests`,
//!   each at its scheduled time (open loop: a late answer does not delay
//!   the next request), and times every answer on channel `answers` from
//!   the request's *scheduled* arrival to the answer's receipt. It marks
//!   the window (`hallows_rt::bench_mark`) before the first request and
//!   after the last answer, prints the latencies (`burst: lat ...`) and
//!   `burst: done N requests checksum 0x... window NS ns`, tells the
//!   server to stop and exits 0 (1 if an answer was missing, duplicated,
//!   refused or unknown).
//! - `role=server`: on the partition's cores, runs every request as a
//!   preemptible task (`spawn_preemptible`: its own stack, interrupts
//!   open, so the scheduler can stop it anywhere) doing the request's
//!   work (`hallows_burst::work`) and answers it. `policy=api` (default):
//!   the `api` domain scheduler (Shinjuku-style: a request that has run
//!   `quantum_us` (default 20) while another waits is preempted and
//!   demoted; demoted ones share in `demoted_us` (default 200) turns);
//!   `policy=fifo`: the runtime's FIFO, run to completion (`quantum_ms=0`)
//!   unless given a quantum.
//!
//! Both channels should have doorbells: the client sleeps between
//! arrivals, the server's cores sleep while no request waits.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use hallows_burst::{
    work, Answer, Arrival, LatencyLine, Params, Request, Schedule, MAX_UNITS, QUIT, REFUSED,
};
use hallows_rt::channel::{self, Endpoint, RingError, Sender};
use hallows_rt::task::{spawn, spawn_preemptible, yield_now};
use hallows_rt::{println, time, Boot};
use hallows_sched::{Api, ApiConfig};

hallows_rt::entry!(main);

fn main(boot: &Boot) -> u64 {
    match boot.arg("role") {
        Some("client") => client(boot),
        Some("server") => server(boot),
        other => {
            println!("burst: FAILED: role={other:?} (client or server)");
            2
        }
    }
}

fn num(boot: &Boot, key: &str, default: u64) -> Result<u64, u64> {
    match boot.arg(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            println!("burst: FAILED: {key}={v} is not a number");
            2
        }),
    }
}

// ---------------------------------------------------------------- client

fn client(boot: &Boot) -> u64 {
    let params = match Params::parse(|k| boot.arg(k)) {
        Ok(p) => p,
        Err(key) => {
            println!("burst: FAILED: bad {key}=");
            return 2;
        }
    };
    let (tx, rx) = match (
        channel::sender::<Request>(boot, "requests"),
        channel::receiver::<Answer>(boot, "answers"),
    ) {
        (Ok(t), Ok(r)) => (t, r),
        (t, r) => {
            println!(
                "burst: FAILED: channels requests {:?} answers {:?}",
                t.err(),
                r.err()
            );
            return 1;
        }
    };
    hallows_rt::task::run(boot, run_client(params, tx, rx))
}

/// What the receiving task found.
struct Received {
    /// Per request: (long, emulated ns from the scheduled arrival to the answer).
    latency: Vec<Option<(bool, u64)>>,
    checksum: u64,
    error: Option<&'static str>,
}

async fn run_client(
    params: Params,
    mut tx: Endpoint<Sender<Request>>,
    mut rx: Endpoint<channel::Receiver<Answer>>,
) -> u64 {
    let arrivals: Arc<Vec<Arrival>> = Arc::new(Schedule::new(params).collect());
    let n = arrivals.len();
    // The schedule starts 1 ms from now (the server is up: it opened its
    // channel ends before the client's first request can arrive, and a
    // request sent earlier waits in the ring).
    let t0 = Arc::new(AtomicU64::new(time::now_nanos() + 1_000_000));
    let receiver = {
        let (arrivals, t0) = (arrivals.clone(), t0.clone());
        spawn(async move {
            let mut got = Received {
                latency: vec![None; n],
                checksum: 0,
                error: None,
            };
            let mut answered = 0;
            while answered < n {
                let a = match rx.recv().await {
                    Ok(a) => a,
                    Err(RingError::PeerRestarted) => {
                        got.error = Some("the server restarted");
                        break;
                    }
                    Err(_) => {
                        got.error = Some("the answers channel is corrupt");
                        break;
                    }
                };
                let now = time::now_nanos();
                let Some(slot) = usize::try_from(a.id)
                    .ok()
                    .and_then(|i| got.latency.get_mut(i))
                else {
                    got.error = Some("an answer to an unknown request");
                    break;
                };
                if slot.is_some() {
                    got.error = Some("a second answer to a request");
                    break;
                }
                if a.result == REFUSED {
                    got.error = Some("the server refused a request");
                    break;
                }
                let arrival = arrivals[a.id as usize];
                let due = t0.load(Ordering::Relaxed) + arrival.at_ns;
                *slot = Some((arrival.long, now.saturating_sub(due)));
                // Order-independent: the same on any side that did the same work.
                got.checksum = got.checksum.wrapping_add(a.result);
                answered += 1;
            }
            got
        })
    };
    let start = t0.load(Ordering::Relaxed);
    hallows_rt::bench_mark();
    for (id, a) in arrivals.iter().enumerate() {
        time::sleep_until(Duration::from_nanos(start + a.at_ns)).await;
        if tx
            .send(&Request {
                id: id as u64,
                units: a.units,
            })
            .await
            .is_err()
        {
            println!("burst: FAILED: the requests channel failed");
            return 1;
        }
    }
    let got = receiver.await;
    let end = time::now_nanos();
    hallows_rt::bench_mark();
    let _ = tx.send(&Request { id: QUIT, units: 0 }).await;
    if let Some(e) = got.error {
        println!("burst: FAILED: {e}");
        return 1;
    }
    let lat: Vec<(bool, u64)> = got
        .latency
        .iter()
        .map(|l| l.unwrap_or((false, u64::MAX)))
        .collect();
    LatencyLine::emit(&lat, 8, |line| println!("{line}"));
    println!(
        "burst: done {n} requests checksum {:#018x} window {} ns",
        got.checksum,
        end - start
    );
    0
}

// ---------------------------------------------------------------- server

fn server(boot: &Boot) -> u64 {
    let (rx, tx) = match (
        channel::receiver::<Request>(boot, "requests"),
        channel::sender::<Answer>(boot, "answers"),
    ) {
        (Ok(r), Ok(t)) => (r, t),
        (r, t) => {
            println!(
                "burst: FAILED: channels requests {:?} answers {:?}",
                r.err(),
                t.err()
            );
            return 1;
        }
    };
    let cores = (boot.vcpu_count() as usize).max(1);
    match boot.arg("policy").unwrap_or("api") {
        "fifo" => hallows_rt::task::run(boot, serve(rx, tx, "fifo")),
        "api" => {
            let (Ok(q), Ok(d)) = (num(boot, "quantum_us", 20), num(boot, "demoted_us", 200)) else {
                return 2;
            };
            let config = ApiConfig {
                quantum: q.saturating_mul(1_000),
                demoted_quantum: d.saturating_mul(1_000),
                ..ApiConfig::new(cores)
            };
            match Api::<256>::new(config) {
                Ok(policy) => {
                    hallows_rt::task::run_with(boot, Box::new(policy), serve(rx, tx, "api"))
                }
                Err(e) => {
                    println!("burst: FAILED: the api scheduler refused quantum_us={q} demoted_us={d}: {e:?}");
                    2
                }
            }
        }
        other => {
            println!("burst: FAILED: unknown policy={other} (api or fifo)");
            2
        }
    }
}

async fn serve(
    mut rx: Endpoint<channel::Receiver<Request>>,
    tx: Endpoint<Sender<Answer>>,
    policy: &'static str,
) -> u64 {
    println!("burst: server ready, policy {policy}");
    let tx = Arc::new(spin::Mutex::new(tx));
    let mut served = 0u64;
    loop {
        let req = match rx.recv().await {
            Ok(r) => r,
            Err(e) => {
                println!("burst: FAILED: the requests channel: {e:?}");
                return 1;
            }
        };
        if req.id == QUIT {
            break;
        }
        served += 1;
        let tx = tx.clone();
        spawn(async move {
            // The client is not trusted: a request for more work than any
            // schedule asks is refused at once.
            let result = if req.units > MAX_UNITS {
                REFUSED
            } else {
                spawn_preemptible(move || work(req.id, req.units)).await
            };
            let answer = Answer { id: req.id, result };
            loop {
                let sent = {
                    let mut tx = tx.lock();
                    let r = tx.try_send(&answer);
                    if r.is_ok() {
                        tx.flush();
                    }
                    r
                };
                match sent {
                    Err(RingError::Full) => yield_now().await,
                    _ => break,
                }
            }
        });
    }
    println!("burst: server done, {served} requests");
    0
}

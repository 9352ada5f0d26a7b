//! The Linux side of `make bench` comparison (C), a mixed burst
//! (tools/bench/compare-c-burst): the same seeded schedule and the same
//! work as the RustHallows guest (`hallows_burst`), served by a thread
//! pool.
//!
//! A client thread sends every request at its scheduled time (open loop)
//! into one shared queue (a `Mutex<VecDeque>` and a `Condvar`: shared
//! memory and futex, the cheapest hand-off between threads of one process
//! that sleeps when idle; a Unix socket costs a system call per message on
//! top); `workers` threads take requests from it, do the work, and put the
//! answer into the answers queue, waking the client. The client times each
//! answer from the request's scheduled arrival to its receipt on
//! `CLOCK_MONOTONIC` (the emulated machine's clock) and waits for the
//! next arrival with a futex timeout; its timer slack is set to 1 ns so the
//! kernel does not defer its wake-ups by the default 50 us.
//!
//! `pin`: the client on CPU 0, worker `i` on CPU `1 + i % (CPUs - 1)`
//! (tuned: the server's CPUs are the others); otherwise wherever the
//! scheduler puts them (defaults).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hallows_burst::{work, Answer, Params, Request, Schedule, MAX_UNITS, REFUSED};
use linux_ipc_bench::sys;

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Per request, in request order: (long, ns from its scheduled arrival to its answer).
    pub latency: Vec<(bool, u64)>,
    /// Wrapping sum of the answers' results (order-independent).
    pub checksum: u64,
    /// From the first scheduled arrival to the last answer, ns.
    pub window_ns: u64,
    /// CPUs the client and the workers last ran on.
    pub cpus: Vec<i64>,
}

/// A queue and its condition variable; `.1`: no more items will come.
struct Queue<T> {
    items: Mutex<(VecDeque<T>, bool)>,
    ready: Condvar,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            items: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
        }
    }
}

/// Runs the schedule of `params` against `workers` threads.
pub fn run(params: Params, workers: usize, pin: bool) -> Result<Outcome, String> {
    if workers == 0 {
        return Err("at least one worker is needed".into());
    }
    let arrivals: Vec<_> = Schedule::new(params).collect();
    let requests: Arc<Queue<Request>> = Arc::default();
    let answers: Arc<Queue<Answer>> = Arc::default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if pin && cpus < 2 {
        return Err(format!("pinning needs two CPUs or more, {cpus} online"));
    }
    let mut pool = Vec::new();
    for w in 0..workers {
        let (requests, answers) = (requests.clone(), answers.clone());
        pool.push(std::thread::spawn(move || -> Result<i64, String> {
            if pin {
                sys::pin_to(1 + w % (cpus - 1))?;
            }
            loop {
                let req = {
                    let mut q = requests.items.lock().map_err(|_| "a poisoned lock")?;
                    loop {
                        if let Some(r) = q.0.pop_front() {
                            break r;
                        }
                        if q.1 {
                            return Ok(sys::current_cpu());
                        }
                        q = requests.ready.wait(q).map_err(|_| "a poisoned lock")?;
                    }
                };
                let result = if req.units > MAX_UNITS {
                    REFUSED
                } else {
                    work(req.id, req.units)
                };
                answers
                    .items
                    .lock()
                    .map_err(|_| "a poisoned lock")?
                    .0
                    .push_back(Answer { id: req.id, result });
                answers.ready.notify_one();
            }
        }));
    }
    if pin {
        sys::pin_to(0)?;
    }
    sys::set_timer_slack_ns(1)?;
    let n = arrivals.len();
    let mut latency: Vec<Option<(bool, u64)>> = vec![None; n];
    let mut checksum = 0u64;
    let mut answered = 0usize;
    let start = Instant::now() + Duration::from_millis(1);
    sys::mark();
    let mut collect = |deadline: Option<Instant>, answered: &mut usize| -> Result<(), String> {
        let mut q = answers.items.lock().map_err(|_| "a poisoned lock")?;
        loop {
            while let Some(a) = q.0.pop_front() {
                let now = Instant::now();
                let slot = usize::try_from(a.id)
                    .ok()
                    .and_then(|i| latency.get_mut(i))
                    .ok_or("an answer to an unknown request")?;
                if slot.is_some() {
                    return Err("a second answer to a request".into());
                }
                if a.result == REFUSED {
                    return Err("a refused request".into());
                }
                let arr = arrivals[a.id as usize];
                let due = start + Duration::from_nanos(arr.at_ns);
                *slot = Some((
                    arr.long,
                    now.saturating_duration_since(due).as_nanos() as u64,
                ));
                checksum = checksum.wrapping_add(a.result);
                *answered += 1;
            }
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(());
                    }
                    q = answers
                        .ready
                        .wait_timeout(q, d - now)
                        .map_err(|_| "a poisoned lock")?
                        .0;
                }
                None if *answered == n => return Ok(()),
                None => q = answers.ready.wait(q).map_err(|_| "a poisoned lock")?,
            }
        }
    };
    for (id, a) in arrivals.iter().enumerate() {
        collect(Some(start + Duration::from_nanos(a.at_ns)), &mut answered)?;
        requests
            .items
            .lock()
            .map_err(|_| "a poisoned lock")?
            .0
            .push_back(Request {
                id: id as u64,
                units: a.units,
            });
        requests.ready.notify_one();
    }
    collect(None, &mut answered)?;
    let end = Instant::now();
    sys::mark();
    requests.items.lock().map_err(|_| "a poisoned lock")?.1 = true;
    requests.ready.notify_all();
    let mut cpus = vec![sys::current_cpu()];
    for w in pool {
        cpus.push(w.join().map_err(|_| "a worker panicked")??);
    }
    Ok(Outcome {
        latency: latency
            .into_iter()
            .map(|l| l.unwrap_or((false, u64::MAX)))
            .collect(),
        checksum,
        window_ns: end.saturating_duration_since(start).as_nanos() as u64,
        cpus,
    })
}

//! Baselines that a runtime would not ship but the comparison needs: per-core
//! FCFS queues (RSS-style spreading, no stealing) as a [`Scheduler`], and an
//! ideal processor-sharing model with zero switching cost, which is not a
//! dispatchable policy and so is simulated directly.
use alloc::vec::Vec;

use hallows_sched::{
    Admission, CoreId, Decision, Fifo, FifoConfig, Nanos, Pick, Scheduler, TaskClass, TaskId,
};

use crate::engine::{Run, TaskRecord};
use crate::workload::{Arrivals, Generator, Workload};

/// One FCFS queue per core; a task goes to the queue its id hashes to, as a
/// NIC's receive-side scaling would spread requests.
pub struct PerCoreFcfs<const N: usize> {
    queues: Vec<Fifo<N>>,
}

impl<const N: usize> PerCoreFcfs<N> {
    /// Per-core FCFS on `cores` cores.
    pub fn new(cores: usize) -> Self {
        let one = FifoConfig {
            cores: 1,
            quantum: None,
        };
        Self {
            queues: (0..cores)
                .map(|_| Fifo::new(one).expect("one core is valid"))
                .collect(),
        }
    }
}

impl<const N: usize> Scheduler for PerCoreFcfs<N> {
    fn task_arrived(&mut self, task: TaskId, class: TaskClass, now: Nanos) -> Admission {
        // Fibonacci hashing of the id: deterministic and evenly spread.
        let hash = (u64::from(task.0).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        let core = hash % self.queues.len();
        self.queues[core].task_arrived(task, class, now)
    }

    fn pick_next(&mut self, core: CoreId, now: Nanos) -> Pick {
        self.queues[core].pick_next(0, now)
    }

    fn tick(&mut self, core: CoreId, running: TaskId, now: Nanos) -> Decision {
        self.queues[core].tick(0, running, now)
    }

    fn task_done(&mut self, core: CoreId, task: TaskId, now: Nanos) {
        self.queues[core].task_done(0, task, now)
    }
}

/// Ideal processor sharing on `w.cores` cores: `n` tasks each progress at
/// `min(1, cores / n)`, with no preemption or switch cost. Open-loop sources
/// only (backlog sources are ignored); arrivals and service times are the
/// same as the engine's for the same workload.
pub fn simulate_ps(w: &Workload) -> Run {
    let n = w.sources.len();
    let mut gens: Vec<Generator> = (0..n).map(|i| Generator::new(w, i)).collect();
    let mut tasks: Vec<TaskRecord> = Vec::new();
    // (task index, remaining work in ns)
    let mut active: Vec<(usize, f64)> = Vec::new();
    let mut now = 0.0_f64;
    let end = w.horizon.saturating_add(w.drain) as f64;
    let open = |s: usize| !matches!(w.sources[s].arrivals, Arrivals::Backlog { .. });
    loop {
        let next_arrival = (0..n)
            .filter(|&s| open(s))
            .filter_map(|s| gens[s].next_at.map(|t| (t, s)))
            .min();
        let rate = if active.is_empty() {
            0.0
        } else {
            (w.cores as f64 / active.len() as f64).min(1.0)
        };
        let next_done = active
            .iter()
            .map(|a| a.1)
            .min_by(f64::total_cmp)
            .map(|r| now + r / rate);
        let arrival_first = match (next_arrival, next_done) {
            (Some((t, _)), Some(d)) => (t as f64) <= d,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let t = if arrival_first {
            next_arrival.map_or(0.0, |a| a.0 as f64)
        } else {
            next_done.unwrap_or(0.0)
        };
        if t > end {
            break;
        }
        for a in &mut active {
            a.1 -= (t - now) * rate;
        }
        now = t;
        if arrival_first {
            let (at, s) = next_arrival.unwrap_or_default();
            let src = &w.sources[s];
            // Same draw order as the engine: next gap, then this task's service.
            gens[s].advance(src, w.horizon);
            let service = gens[s].service(src);
            let (_, deadline) = src.kind.class_at(at);
            tasks.push(TaskRecord {
                source: s as u16,
                arrival: at,
                service,
                deadline,
                done: None,
                rejected: false,
            });
            active.push((tasks.len() - 1, service as f64));
        } else {
            // The task that reached zero completes, with any others within
            // rounding of zero: `now` is large, so the subtraction is inexact.
            let first = active
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map_or(0, |m| m.0);
            active[first].1 = 0.0;
            active.retain(|&(i, left)| {
                if left > 1e-3 {
                    return true;
                }
                tasks[i].done = Some(libm::ceil(now) as Nanos);
                false
            });
        }
    }
    Run {
        tasks,
        busy: alloc::vec![0; n],
        batches: alloc::vec![0; n],
        preemptions: 0,
        ticks: 0,
        kicks: 0,
    }
}

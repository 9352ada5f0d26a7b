//! The discrete-event engine: drives any [`Scheduler`] through the same
//! protocol a guest runtime uses (arrival, pick on a free core, tick on
//! timer or kick, done), charging preemption, dispatch and batch costs on the
//! simulated cores. It owns simulated time and task bookkeeping; it never
//! decides what runs. Events at equal times are ordered by creation sequence,
//! so a run is a pure function of the workload and the policy.
use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use hallows_sched::{Admission, Decision, Nanos, Pick, Scheduler, TaskId};

use crate::workload::{Arrivals, Generator, Workload};

/// What happened to one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// Index of its source in the workload.
    pub source: u16,
    /// Arrival time.
    pub arrival: Nanos,
    /// Intrinsic service time (without costs).
    pub service: Nanos,
    /// Absolute deadline, if the simulator checks one.
    pub deadline: Option<Nanos>,
    /// Completion time; `None` if rejected or unfinished at the end.
    pub done: Option<Nanos>,
    /// The policy rejected it (queue full).
    pub rejected: bool,
}

/// The raw result of a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Every task, in arrival order.
    pub tasks: Vec<TaskRecord>,
    /// Core time spent on each source's work inside the measurement window.
    pub busy: Vec<Nanos>,
    /// Dispatches per source that opened a new batch (did not join one).
    pub batches: Vec<u64>,
    /// Preemptions.
    pub preemptions: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival { source: usize },
    Finish { core: usize, epoch: u64 },
    Tick { core: usize, epoch: u64 },
    Ready { core: usize, epoch: u64 },
}

#[derive(Clone, Copy, Debug)]
enum State {
    Idle,
    Busy { task: u32, run_from: Nanos },
    Switching,
}

#[derive(Clone, Copy, Debug)]
struct Core {
    state: State,
    /// Bumped on every state change; events of an older epoch are stale.
    epoch: u64,
}

struct Sim<'a> {
    w: &'a Workload,
    sched: &'a mut dyn Scheduler,
    now: Nanos,
    seq: u64,
    events: BinaryHeap<Reverse<(Nanos, u64, Event)>>,
    cores: Vec<Core>,
    gens: Vec<Generator>,
    tasks: Vec<TaskRecord>,
    remaining: Vec<Nanos>,
    run: Run,
}

/// Simulates `workload` under `sched`, which must be fresh and configured
/// for `workload.cores` cores.
pub fn simulate(workload: &Workload, sched: &mut dyn Scheduler) -> Run {
    let n = workload.sources.len();
    let mut sim = Sim {
        w: workload,
        sched,
        now: 0,
        seq: 0,
        events: BinaryHeap::new(),
        cores: alloc::vec![Core { state: State::Idle, epoch: 0 }; workload.cores],
        gens: (0..n).map(|i| Generator::new(workload, i)).collect(),
        tasks: Vec::new(),
        remaining: Vec::new(),
        run: Run {
            tasks: Vec::new(),
            busy: alloc::vec![0; n],
            batches: alloc::vec![0; n],
            preemptions: 0,
        },
    };
    sim.start();
    sim.run();
    let mut run = sim.run;
    run.tasks = sim.tasks;
    run
}

impl Sim<'_> {
    fn schedule(&mut self, at: Nanos, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn start(&mut self) {
        for source in 0..self.w.sources.len() {
            if let Arrivals::Backlog { depth } = self.w.sources[source].arrivals {
                for _ in 0..depth {
                    self.new_task(source);
                }
            } else if let Some(t) = self.gens[source].next_at {
                self.schedule(t, Event::Arrival { source });
            }
        }
    }

    fn run(&mut self) {
        let end = self.w.horizon.saturating_add(self.w.drain);
        while let Some(Reverse((at, _, event))) = self.events.pop() {
            if at > end {
                break;
            }
            self.now = at;
            match event {
                Event::Arrival { source } => {
                    let src = &self.w.sources[source];
                    self.gens[source].advance(src, self.w.horizon);
                    if let Some(next) = self.gens[source].next_at {
                        self.schedule(next, Event::Arrival { source });
                    }
                    self.new_task(source);
                }
                Event::Finish { core, epoch } if self.cores[core].epoch == epoch => {
                    self.finish(core)
                }
                Event::Tick { core, epoch } if self.cores[core].epoch == epoch => self.tick(core),
                Event::Ready { core, epoch } if self.cores[core].epoch == epoch => {
                    self.cores[core].state = State::Idle;
                    self.dispatch(core);
                }
                _ => {} // stale: the core changed state since
            }
        }
    }

    fn new_task(&mut self, source: usize) {
        let src = &self.w.sources[source];
        let service = self.gens[source].service(src);
        let (class, deadline) = src.kind.class_at(self.now);
        let id = self.tasks.len() as u32;
        self.tasks.push(TaskRecord {
            source: source as u16,
            arrival: self.now,
            service,
            deadline,
            done: None,
            rejected: false,
        });
        self.remaining.push(service);
        match self.sched.task_arrived(TaskId(id), class, self.now) {
            Admission::Queued => {}
            Admission::Kick(core) => self.tick(core),
            Admission::Rejected => self.tasks[id as usize].rejected = true,
        }
        self.dispatch_idle();
    }

    fn dispatch_idle(&mut self) {
        for core in 0..self.cores.len() {
            if matches!(self.cores[core].state, State::Idle) {
                self.dispatch(core);
            }
        }
    }

    fn dispatch(&mut self, core: usize) {
        self.cores[core].epoch += 1;
        let epoch = self.cores[core].epoch;
        match self.sched.pick_next(core, self.now) {
            Pick::Run {
                task,
                joins_batch,
                tick_at,
            } => {
                let source = self.tasks[task.0 as usize].source as usize;
                let mut overhead = self.w.switch_cost;
                if !joins_batch {
                    overhead += self.w.sources[source].batch_cost;
                    self.run.batches[source] += 1;
                }
                let run_from = self.now + overhead;
                self.cores[core].state = State::Busy {
                    task: task.0,
                    run_from,
                };
                self.schedule(
                    run_from + self.remaining[task.0 as usize],
                    Event::Finish { core, epoch },
                );
                if let Some(t) = tick_at {
                    self.schedule(t.max(self.now + 1), Event::Tick { core, epoch });
                }
            }
            Pick::Idle { wake_at } => {
                self.cores[core].state = State::Idle;
                if let Some(t) = wake_at {
                    self.schedule(t.max(self.now + 1), Event::Ready { core, epoch });
                }
            }
        }
    }

    /// Charges `[from, to)` of work on `task` to its source, inside the window.
    fn account(&mut self, task: u32, from: Nanos, to: Nanos) {
        let lo = from.max(self.w.warmup);
        let hi = to.min(self.w.horizon);
        if hi > lo {
            self.run.busy[self.tasks[task as usize].source as usize] += hi - lo;
        }
    }

    fn finish(&mut self, core: usize) {
        let State::Busy { task, run_from } = self.cores[core].state else {
            return;
        };
        self.account(task, run_from, self.now);
        self.remaining[task as usize] = 0;
        self.tasks[task as usize].done = Some(self.now);
        self.sched.task_done(core, TaskId(task), self.now);
        self.cores[core].state = State::Idle;
        self.cores[core].epoch += 1;
        let source = self.tasks[task as usize].source as usize;
        if matches!(self.w.sources[source].arrivals, Arrivals::Backlog { .. })
            && self.now < self.w.horizon
        {
            self.new_task(source);
        }
        self.dispatch_idle();
    }

    fn tick(&mut self, core: usize) {
        let State::Busy { task, run_from } = self.cores[core].state else {
            return;
        };
        let left = self.remaining[task as usize];
        if self.now >= run_from + left {
            return; // its Finish event is due at this very time
        }
        let epoch = self.cores[core].epoch;
        match self.sched.tick(core, TaskId(task), self.now) {
            Decision::Continue { tick_at } => {
                if let Some(t) = tick_at {
                    self.schedule(t.max(self.now + 1), Event::Tick { core, epoch });
                }
            }
            Decision::Preempt => {
                let done = self.now.saturating_sub(run_from);
                self.account(task, run_from, self.now.max(run_from));
                self.remaining[task as usize] = left - done;
                self.run.preemptions += 1;
                self.cores[core].epoch += 1;
                if self.w.preempt_cost == 0 {
                    self.cores[core].state = State::Idle;
                    self.dispatch(core);
                } else {
                    self.cores[core].state = State::Switching;
                    let epoch = self.cores[core].epoch;
                    self.schedule(self.now + self.w.preempt_cost, Event::Ready { core, epoch });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::ServiceDist;
    use crate::workload::{Kind, Source};
    use hallows_sched::{Api, ApiConfig, Fifo, FifoConfig, Messaging, MessagingConfig};

    fn periodic(service: Nanos, period: Nanos, batch_cost: Nanos) -> Workload {
        let mut s = Source::new(
            "t",
            Kind::Request,
            Arrivals::Periodic { period, phase: 0 },
            ServiceDist::Fixed(service),
        );
        s.batch_cost = batch_cost;
        Workload {
            cores: 1,
            sources: vec![s],
            horizon: 3 * period,
            warmup: 0,
            drain: 1_000_000,
            preempt_cost: 0,
            switch_cost: 0,
            seed: 1,
        }
    }

    fn done(run: &Run) -> Vec<Option<Nanos>> {
        run.tasks.iter().map(|t| t.done).collect()
    }

    #[test]
    fn fcfs_queues_back_to_back() {
        // Tasks of 30 at 0, 10, 20 on one core finish at 30, 60, 90.
        let w = periodic(30, 10, 0);
        let run = simulate(
            &w,
            &mut Fifo::<8>::new(FifoConfig {
                cores: 1,
                quantum: None,
            })
            .unwrap(),
        );
        assert_eq!(done(&run), vec![Some(30), Some(60), Some(90)]);
        assert_eq!(run.busy, vec![30]); // window [0, 30)
    }

    #[test]
    fn preemption_cost_delays_everyone() {
        // Long task 0..; a second task arrives at 100 and preempts after the quantum.
        let long = Source::new(
            "long",
            Kind::Request,
            Arrivals::Periodic {
                period: 1_000_000,
                phase: 0,
            },
            ServiceDist::Fixed(10_000),
        );
        let short = Source::new(
            "short",
            Kind::Request,
            Arrivals::Periodic {
                period: 1_000_000,
                phase: 100,
            },
            ServiceDist::Fixed(500),
        );
        let w = Workload {
            cores: 1,
            sources: vec![long, short],
            horizon: 1_000,
            warmup: 0,
            drain: 1_000_000,
            preempt_cost: 1_000,
            switch_cost: 0,
            seed: 1,
        };
        let cfg = ApiConfig {
            quantum: 2_000,
            ..ApiConfig::new(1)
        };
        let run = simulate(&w, &mut Api::<8>::new(cfg).unwrap());
        // Kick at 2000 (quantum used), 1000 of preemption cost, short runs 3000..3500,
        // long resumes with 8000 left: done at 11500.
        assert_eq!(done(&run), vec![Some(11_500), Some(3_500)]);
        assert_eq!(run.preemptions, 1);
    }

    #[test]
    fn batch_cost_is_paid_once_per_batch() {
        // Three messages at 0, 10, 20; the policy lingers and sends one batch.
        let mut w = periodic(2_000, 10, 20_000);
        w.sources[0].kind = Kind::Message;
        let cfg = MessagingConfig::new(1, 100_000, 20_000, 2_000);
        let run = simulate(&w, &mut Messaging::<8>::new(cfg).unwrap());
        // Released at 50_000 (half the bound): 20_000 flush, then 3 x 2_000.
        assert_eq!(done(&run), vec![Some(72_000), Some(74_000), Some(76_000)]);
        assert_eq!(run.batches, vec![1]);
    }
}

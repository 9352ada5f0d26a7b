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
    /// Timer ticks that reached a busy core (each charged `costs.tick`).
    pub ticks: u64,
    /// Kicks that reached a busy core (each charged `costs.kick`).
    pub kicks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival { source: usize },
    Finish { core: usize, epoch: u64 },
    Tick { core: usize, epoch: u64, timer: u64 },
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
    /// Bumped whenever the core's one timer is armed: arming it replaces
    /// the deadline armed before, as on a real core.
    timer: u64,
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
        cores: alloc::vec![
            Core {
                state: State::Idle,
                epoch: 0,
                timer: 0,
            };
            workload.cores
        ],
        gens: (0..n).map(|i| Generator::new(workload, i)).collect(),
        tasks: Vec::new(),
        remaining: Vec::new(),
        run: Run {
            tasks: Vec::new(),
            busy: alloc::vec![0; n],
            batches: alloc::vec![0; n],
            preemptions: 0,
            ticks: 0,
            kicks: 0,
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
                Event::Tick { core, epoch, timer }
                    if self.cores[core].epoch == epoch && self.cores[core].timer == timer =>
                {
                    self.tick(core, Interrupt::Timer)
                }
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
            Admission::Kick(core) => self.tick(core, Interrupt::Kick),
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
                let mut overhead = self.w.costs.dispatch;
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
                    self.arm(core, t);
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

    /// Arms `core`'s timer for `at` (at the earliest the next nanosecond),
    /// replacing any deadline armed before.
    fn arm(&mut self, core: usize, at: Nanos) {
        self.cores[core].timer += 1;
        let (epoch, timer) = (self.cores[core].epoch, self.cores[core].timer);
        self.schedule(at.max(self.now + 1), Event::Tick { core, epoch, timer });
    }

    /// A timer tick or a kick reaches `core`: the core loses the
    /// interrupt's cost, then the policy decides whether its task goes on.
    fn tick(&mut self, core: usize, why: Interrupt) {
        let State::Busy { task, run_from } = self.cores[core].state else {
            return;
        };
        let left = self.remaining[task as usize];
        if self.now >= run_from + left {
            return; // its Finish event is due at this very time
        }
        let cost = match why {
            Interrupt::Timer => {
                self.run.ticks += 1;
                self.w.costs.tick
            }
            Interrupt::Kick => {
                self.run.kicks += 1;
                self.w.costs.kick
            }
        };
        // The work done so far (none while the core is still paying an
        // earlier cost: `run_from` is then in the future).
        let done = self.now.saturating_sub(run_from);
        self.account(task, run_from, self.now.max(run_from));
        let left = left - done;
        self.remaining[task as usize] = left;
        match self.sched.tick(core, TaskId(task), self.now) {
            Decision::Continue { tick_at } => {
                if cost > 0 {
                    // The task resumes once the interrupt has been paid for.
                    let run_from = self.now.max(run_from) + cost;
                    self.cores[core].epoch += 1;
                    let epoch = self.cores[core].epoch;
                    self.cores[core].state = State::Busy { task, run_from };
                    self.schedule(run_from + left, Event::Finish { core, epoch });
                } else {
                    // Nothing lost: the pending Finish event stands.
                    self.cores[core].state = State::Busy {
                        task,
                        run_from: self.now.max(run_from),
                    };
                }
                match tick_at {
                    Some(t) => self.arm(core, t),
                    None => self.cores[core].timer += 1, // disarmed
                }
            }
            Decision::Preempt => {
                self.run.preemptions += 1;
                self.cores[core].epoch += 1;
                let lost = self.now.max(run_from) - self.now + cost + self.w.costs.preempt;
                if lost == 0 {
                    self.cores[core].state = State::Idle;
                    self.dispatch(core);
                } else {
                    self.cores[core].state = State::Switching;
                    let epoch = self.cores[core].epoch;
                    self.schedule(self.now + lost, Event::Ready { core, epoch });
                }
            }
        }
    }
}

/// What interrupts a busy core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    Timer,
    Kick,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::ServiceDist;
    use crate::workload::{Costs, Kind, Source};
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
            costs: Costs::ZERO,
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
            costs: Costs {
                preempt: 1_000,
                ..Costs::ZERO
            },
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

    fn one_core(sources: Vec<Source>, costs: Costs) -> Workload {
        Workload {
            cores: 1,
            sources,
            horizon: 5_000,
            warmup: 0,
            drain: 1_000_000,
            costs,
            seed: 1,
        }
    }

    fn once(name: &'static str, at: Nanos, service: Nanos) -> Source {
        Source::new(
            name,
            Kind::Request,
            Arrivals::Periodic {
                period: 1_000_000,
                phase: at,
            },
            ServiceDist::Fixed(service),
        )
    }

    fn api(quantum: Nanos) -> Api<8> {
        Api::<8>::new(ApiConfig {
            quantum,
            ..ApiConfig::new(1)
        })
        .unwrap()
    }

    #[test]
    fn every_tick_on_a_busy_core_costs_its_time() {
        // One 10_000 task alone, ticked every 2_000 of wall time (the api
        // quantum): ticks at 2_000, 4_000, 6_000, 8_000 and 10_000 each stall
        // it 100, so it finishes at 10_000 + 5 * 100.
        let costs = Costs {
            tick: 100,
            ..Costs::ZERO
        };
        let run = simulate(
            &one_core(vec![once("t", 0, 10_000)], costs),
            &mut api(2_000),
        );
        assert_eq!(done(&run), vec![Some(10_500)]);
        assert_eq!((run.ticks, run.kicks, run.preemptions), (5, 0, 0));
        // Without the cost, the same ticks are free.
        let run = simulate(
            &one_core(vec![once("t", 0, 10_000)], Costs::ZERO),
            &mut api(2_000),
        );
        assert_eq!(done(&run), vec![Some(10_000)]);
    }

    #[test]
    fn a_kick_costs_its_time_and_a_preemption_on_top() {
        let costs = Costs {
            tick: 100,
            kick: 300,
            preempt: 1_000,
            dispatch: 0,
        };
        let w = one_core(
            vec![once("long", 0, 10_000), once("short", 3_000, 500)],
            costs,
        );
        let run = simulate(&w, &mut api(2_000));
        // long: works 0..2_000, tick (continues) stalls it to 2_100, works
        // to 3_000 (2_900 done). short arrives at 3_000: kick, 300 + 1_000
        // lost, short runs 4_300..4_800. long resumes with 7_100 left at
        // 4_800; ticks at 6_800, 8_800, 10_800 stall it 100 each: done at
        // 4_800 + 7_100 + 300.
        assert_eq!(done(&run), vec![Some(12_200), Some(4_800)]);
        assert_eq!((run.ticks, run.kicks, run.preemptions), (4, 1, 1));
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

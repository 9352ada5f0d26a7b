//! What a simulation runs: the partition's cores, its costs, and its task
//! sources (arrival process, service-time distribution, class). It owns the
//! deterministic generation of each source's tasks and nothing about policies.
use alloc::vec::Vec;

use hallows_sched::{Nanos, TaskClass};

use crate::dist::ServiceDist;
use crate::rng::Rng;

/// How a source's tasks arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrivals {
    /// Open-loop Poisson arrivals at this mean rate (tasks per second).
    Poisson {
        /// Mean arrival rate, tasks per second.
        per_sec: f64,
    },
    /// One task every `period`, the first at `phase`.
    Periodic {
        /// Release period.
        period: Nanos,
        /// First release.
        phase: Nanos,
    },
    /// Sporadic: gaps of at least `min_gap`, plus an exponential extra gap.
    Sporadic {
        /// Minimum gap between two tasks.
        min_gap: Nanos,
        /// Mean of the exponential part of the gap.
        mean_extra: f64,
    },
    /// Closed loop: `depth` tasks always present; each completion brings a new
    /// one. Models background work that saturates whatever it is given.
    Backlog {
        /// Tasks kept in the system.
        depth: u32,
    },
}

/// The class of a source's tasks, with the deadline the simulator checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RPC request.
    Request,
    /// Input event; counted as missed if not done `deadline` after arrival.
    Input {
        /// Relative deadline used to count misses.
        deadline: Nanos,
    },
    /// Frame due `deadline` after its release.
    Frame {
        /// Relative deadline.
        deadline: Nanos,
    },
    /// Database commit or log write.
    Commit,
    /// Database read.
    Read,
    /// Background compaction.
    Background,
    /// Message to publish.
    Message,
}

impl Kind {
    /// The class the policy sees and the absolute deadline the simulator checks.
    pub fn class_at(self, release: Nanos) -> (TaskClass, Option<Nanos>) {
        match self {
            Kind::Request => (TaskClass::Request, None),
            Kind::Input { deadline } => (TaskClass::Input, Some(release + deadline)),
            Kind::Frame { deadline } => (
                TaskClass::Frame {
                    deadline: release + deadline,
                },
                Some(release + deadline),
            ),
            Kind::Commit => (TaskClass::Commit, None),
            Kind::Read => (TaskClass::Read, None),
            Kind::Background => (TaskClass::Background, None),
            Kind::Message => (TaskClass::Message, None),
        }
    }
}

/// A stream of tasks of one kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// Name used in tables.
    pub name: &'static str,
    /// Class and deadline.
    pub kind: Kind,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Service-time distribution.
    pub service: ServiceDist,
    /// Extra time paid by a dispatch that does not join the previous task's
    /// batch (the flush of a message batch); zero for most sources.
    pub batch_cost: Nanos,
    /// Tasks whose service time is at least this form the source's `long`
    /// class, the others its `short` class; `None`: one class. The
    /// statistics report each class's tail beside the source's.
    pub long_from: Option<Nanos>,
}

impl Source {
    /// A source without batch cost.
    pub fn new(name: &'static str, kind: Kind, arrivals: Arrivals, service: ServiceDist) -> Self {
        Self {
            name,
            kind,
            arrivals,
            service,
            batch_cost: 0,
            long_from: None,
        }
    }

    /// Long-run utilization this source offers, in cores (`None` for a backlog).
    pub fn offered(&self) -> Option<f64> {
        let rate_per_ns = match self.arrivals {
            Arrivals::Poisson { per_sec } => per_sec / 1e9,
            Arrivals::Periodic { period, .. } => 1.0 / period as f64,
            Arrivals::Sporadic {
                min_gap,
                mean_extra,
            } => 1.0 / (min_gap as f64 + mean_extra),
            Arrivals::Backlog { .. } => return None,
        };
        Some(rate_per_ns * self.service.mean())
    }
}

/// Core time the partition loses to scheduling itself, each charged on the
/// core concerned as time in which no task progresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Costs {
    /// A timer tick that reaches a busy core (`Scheduler::tick` on a
    /// `tick_at`): the hypervisor's trap and injection plus the guest's
    /// interrupt handler. Charged whether or not the tick preempts.
    pub tick: Nanos,
    /// A kick (`Admission::Kick`) that reaches a busy core: the
    /// inter-processor interrupt, sent and delivered, plus the guest's
    /// handler. Charged whether or not the kick preempts.
    pub kick: Nanos,
    /// A preemption, on top of the tick or kick that decided it: saving the
    /// task's context, requeueing it and switching to the next (context
    /// switch, cache refill).
    pub preempt: Nanos,
    /// Every dispatch (switching a task in).
    pub dispatch: Nanos,
}

impl Costs {
    /// No cost at all.
    pub const ZERO: Costs = Costs {
        tick: 0,
        kick: 0,
        preempt: 0,
        dispatch: 0,
    };
}

/// One simulation: a partition and what arrives at it.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Cores of the partition.
    pub cores: usize,
    /// Task sources.
    pub sources: Vec<Source>,
    /// No task arrives at or after this time.
    pub horizon: Nanos,
    /// Tasks arriving before this time warm the system up and are not measured.
    pub warmup: Nanos,
    /// How long after `horizon` the simulation runs to let measured tasks finish.
    pub drain: Nanos,
    /// Core time lost to the partition's own overheads.
    pub costs: Costs,
    /// Seed of every random stream.
    pub seed: u64,
}

/// Deterministic generator of one source's tasks.
#[derive(Clone, Debug)]
pub(crate) struct Generator {
    rng: Rng,
    /// Release time of the next task (open-loop sources).
    pub(crate) next_at: Option<Nanos>,
}

impl Generator {
    pub(crate) fn new(w: &Workload, index: usize) -> Self {
        let mut rng = Rng::new(w.seed, index as u64);
        let source = &w.sources[index];
        let first = match source.arrivals {
            Arrivals::Periodic { phase, .. } => Some(phase),
            Arrivals::Backlog { .. } => None,
            _ => Some(gap(&source.arrivals, &mut rng)),
        };
        Self {
            rng,
            next_at: first.filter(|&t| t < w.horizon),
        }
    }

    /// Service time of the next task of this source.
    pub(crate) fn service(&mut self, source: &Source) -> Nanos {
        source.service.sample(&mut self.rng)
    }

    /// Moves `next_at` to the release after the current one.
    pub(crate) fn advance(&mut self, source: &Source, horizon: Nanos) {
        self.next_at = self
            .next_at
            .map(|t| t + gap(&source.arrivals, &mut self.rng))
            .filter(|&t| t < horizon);
    }
}

fn gap(arrivals: &Arrivals, rng: &mut Rng) -> Nanos {
    match *arrivals {
        Arrivals::Poisson { per_sec } => {
            let mean = 1e9 / per_sec;
            (libm::round(-mean * libm::log(rng.unit_open())) as Nanos).max(1)
        }
        Arrivals::Periodic { period, .. } => period,
        Arrivals::Sporadic {
            min_gap,
            mean_extra,
        } => min_gap + libm::round(-mean_extra * libm::log(rng.unit_open())) as Nanos,
        Arrivals::Backlog { .. } => 0,
    }
}

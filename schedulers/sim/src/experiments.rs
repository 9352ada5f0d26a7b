//! The experiments of the scheduler study, as pure functions from a
//! [`Setup`] (scale, seeds, overhead costs) to results: `api` against FCFS,
//! per-core FCFS, Shinjuku's single queue and processor sharing on
//! heavy-tailed RPC; `ui` deadline misses against utilization; `db` commit
//! latency under saturating compaction; `messaging` throughput against the
//! latency bound. Every point runs once per seed; each experiment is a list
//! of independent [`Point`]s handed to an evaluator, so the host runner may
//! evaluate them in parallel without changing a single output byte.
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hallows_sched::{
    Api, ApiConfig, Db, DbConfig, Fifo, FifoConfig, Messaging, MessagingConfig, Nanos, Scheduler,
    Ui, UiConfig,
};

use crate::baseline::{simulate_ps, PerCoreFcfs};
use crate::dist::ServiceDist;
use crate::engine::simulate;
use crate::rng::Rng;
use crate::stats::{summarize, SourceStats, Spread};
use crate::table::{num, Table};
use crate::workload::{Arrivals, Costs, Kind, Source, Workload};

/// Queue capacity of every policy in the simulator.
pub const QUEUE: usize = 4096;
const US: Nanos = 1_000;
const MS: Nanos = 1_000_000;

/// The p99 slowdown target of the `api` capacity comparison.
pub const API_SLOWDOWN_TARGET: f64 = 10.0;
/// The commit latency budget of the `db` experiment.
pub const COMMIT_BUDGET: Nanos = 50 * US;

/// A scheduling policy under test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// Centralized FCFS ([`Fifo`] without quantum).
    Fcfs,
    /// One FCFS queue per core, tasks spread by hash.
    PerCoreFcfs,
    /// Central round-robin ([`Fifo`] with a quantum).
    RoundRobin(Nanos),
    /// Shinjuku's single queue: [`Api`] without demotion or preemption on arrival.
    ShinjukuSq(Nanos),
    /// The `api` policy with this quantum.
    Api(Nanos),
    /// Ideal processor sharing, zero cost.
    Ps,
    /// The `ui` policy.
    Ui,
    /// The `db` policy.
    Db,
    /// The `messaging` policy with this configuration (cores are overridden).
    Messaging(MessagingConfig),
}

impl Policy {
    /// Name used in tables and plots.
    pub fn name(&self) -> String {
        match *self {
            Policy::Fcfs => "fcfs".into(),
            Policy::PerCoreFcfs => "per-core-fcfs".into(),
            Policy::RoundRobin(q) => format!("rr-{}us", q / US),
            Policy::ShinjukuSq(q) => format!("shinjuku-sq-{}us", q / US),
            Policy::Api(q) => format!("api-{}us", q / US),
            Policy::Ps => "ps-ideal".into(),
            Policy::Ui => "ui-edf".into(),
            Policy::Db => "db".into(),
            Policy::Messaging(_) => "messaging".into(),
        }
    }

    /// The scheduler for `cores` cores; `None` for the processor-sharing model.
    pub fn build(&self, cores: usize) -> Option<Box<dyn Scheduler + Send>> {
        const BAD: &str = "experiment configurations are valid";
        Some(match *self {
            Policy::Fcfs => Box::new(
                Fifo::<QUEUE>::new(FifoConfig {
                    cores,
                    quantum: None,
                })
                .expect(BAD),
            ),
            Policy::PerCoreFcfs => Box::new(PerCoreFcfs::<QUEUE>::new(cores)),
            Policy::RoundRobin(q) => Box::new(
                Fifo::<QUEUE>::new(FifoConfig {
                    cores,
                    quantum: Some(q),
                })
                .expect(BAD),
            ),
            Policy::ShinjukuSq(q) => {
                let c = ApiConfig {
                    quantum: q,
                    demote_preempted: false,
                    preempt_on_arrival: false,
                    ..ApiConfig::new(cores)
                };
                Box::new(Api::<QUEUE>::new(c).expect(BAD))
            }
            Policy::Api(q) => Box::new(
                Api::<QUEUE>::new(ApiConfig {
                    quantum: q,
                    ..ApiConfig::new(cores)
                })
                .expect(BAD),
            ),
            Policy::Ps => return None,
            Policy::Ui => Box::new(Ui::<QUEUE>::new(UiConfig::new(cores)).expect(BAD)),
            Policy::Db => Box::new(Db::<QUEUE>::new(DbConfig::new(cores)).expect(BAD)),
            Policy::Messaging(c) => {
                Box::new(Messaging::<QUEUE>::new(MessagingConfig { cores, ..c }).expect(BAD))
            }
        })
    }
}

/// One simulation to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// What arrives.
    pub workload: Workload,
    /// Who schedules it.
    pub policy: Policy,
}

/// Runs one point: per-source statistics.
pub fn evaluate(point: &Point) -> Vec<SourceStats> {
    let w = &point.workload;
    let run = match point.policy.build(w.cores) {
        Some(mut sched) => simulate(w, sched.as_mut()),
        None => simulate_ps(w),
    };
    summarize(w, &run)
}

/// Evaluates points one after the other.
pub fn sequential(points: &[Point]) -> Vec<Vec<SourceStats>> {
    points.iter().map(evaluate).collect()
}

/// An evaluator: per-source statistics of each point, in point order.
pub type Eval<'a> = &'a dyn Fn(&[Point]) -> Vec<Vec<SourceStats>>;

/// How much to simulate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Arrivals per `api` point.
    pub api_arrivals: f64,
    /// Simulated time per `ui` point.
    pub ui_horizon: Nanos,
    /// Simulated time per `db` point.
    pub db_horizon: Nanos,
    /// Simulated time per `messaging` point.
    pub messaging_horizon: Nanos,
}

impl Scale {
    /// What `make sim` runs, per seed (ten seeds by default: 2 million
    /// requests per `api` point in all).
    pub const FULL: Scale = Scale {
        api_arrivals: 200_000.0,
        ui_horizon: 10_000 * MS,
        db_horizon: 1_000 * MS,
        messaging_horizon: 200 * MS,
    };
    /// Small but meaningful: what the tests run.
    pub const QUICK: Scale = Scale {
        api_arrivals: 40_000.0,
        ui_horizon: 2_000 * MS,
        db_horizon: 200 * MS,
        messaging_horizon: 50 * MS,
    };
}

/// Instruction counts measured on the hypervisor and the runtime, and the
/// rate that turns them into simulated core time: where the default
/// [`Costs`] come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// Instructions a core retires per microsecond.
    pub instructions_per_us: f64,
    /// A timer tick: the hypervisor's trap and injection plus the guest's
    /// interrupt handler.
    pub tick_instructions: f64,
    /// A kick: an inter-processor interrupt sent and delivered (both
    /// hypervisor traps) plus the guest's interrupt handler.
    pub kick_instructions: f64,
    /// A preemption on top of the tick or kick that decided it (context
    /// switch, requeue, caches refilled by the resumed task), nanoseconds.
    /// Not measured: an assumption.
    pub preempt_ns: Nanos,
}

/// EL2 instructions per guest timer interrupt, aarch64: `hallows el2-cost`
/// (deterministic, `-icount`) on `tests/systems/timer-cost.toml` (200
/// ticks) and `timer-cost-400.toml` (400): (97,536 - 94,536) / 200. The
/// timer is forwarded in the exception vector.
pub const EL2_TICK_INSTRUCTIONS: f64 = 15.0;
/// Guest (EL1) instructions per timer interrupt in the same two runs: all
/// instructions less the hypervisor's, ((184,012 - 97,536) - (142,812 -
/// 94,536)) / 200: the runtime's interrupt entry, handler and exit, and
/// the test's wait loop around them.
pub const GUEST_TICK_INSTRUCTIONS: f64 = 191.0;
/// EL2 instructions per doorbell, the sender's trap (38, answered in the
/// exception vector) plus delivery on the receiver's core (113):
/// `hallows el2-cost` on `tests/systems/doorbell-cost.toml` against
/// `doorbell-cost-half.toml` (docs/architecture.md): the hypervisor's part
/// of an inter-processor interrupt.
pub const EL2_KICK_INSTRUCTIONS: f64 = 151.0;

impl CostModel {
    /// The measured counts at 1,000 instructions per microsecond, and a
    /// 1 us preemption.
    pub const MEASURED: CostModel = CostModel {
        instructions_per_us: 1_000.0,
        tick_instructions: EL2_TICK_INSTRUCTIONS + GUEST_TICK_INSTRUCTIONS,
        kick_instructions: EL2_KICK_INSTRUCTIONS + GUEST_TICK_INSTRUCTIONS,
        preempt_ns: US,
    };

    /// The simulated costs (dispatch free: a pick is part of the switch).
    pub fn costs(&self) -> Costs {
        let ns = |instructions: f64| -> Nanos {
            libm::round(instructions * 1e3 / self.instructions_per_us) as Nanos
        };
        Costs {
            tick: ns(self.tick_instructions),
            kick: ns(self.kick_instructions),
            preempt: self.preempt_ns,
            dispatch: 0,
        }
    }
}

/// What every experiment shares: how much to simulate, with which seeds,
/// at which overhead costs.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// Simulated size of each point.
    pub scale: Scale,
    /// Every point runs once per seed.
    pub seeds: Vec<u64>,
    /// Overheads charged on the simulated cores.
    pub costs: Costs,
}

impl Setup {
    /// `count` consecutive seeds from `first`, at `scale`, with the
    /// measured costs.
    pub fn new(scale: Scale, first: u64, count: u64) -> Self {
        Self {
            scale,
            seeds: (first..first + count).collect(),
            costs: CostModel::MEASURED.costs(),
        }
    }
}

/// The largest `xs[i]` such that `ok` holds for it and every smaller one
/// (`xs` ascending); 0 if the first fails.
pub fn sustained(xs: &[f64], ok: &[bool]) -> f64 {
    xs.iter()
        .zip(ok)
        .take_while(|(_, ok)| **ok)
        .last()
        .map_or(0.0, |(x, _)| *x)
}

/// `lo, lo+step, ..., <= hi`, computed from integers so the grid is exact.
pub fn grid(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let n = libm::round((hi - lo) / step) as usize;
    (0..=n)
        .map(|i| libm::round((lo + i as f64 * step) * 1e6) / 1e6)
        .collect()
}

/// `points` for every combination of `outer` x `inner` x seed, in that
/// order, and their results reshaped as `[outer][inner][seed]`.
fn run_grid<A: Copy, B: Copy>(
    outer: &[A],
    inner: &[B],
    seeds: &[u64],
    point: impl Fn(A, B, u64) -> Point,
    eval: Eval,
) -> Vec<Vec<Vec<Vec<SourceStats>>>> {
    let mut points = Vec::new();
    for &a in outer {
        for &b in inner {
            for &seed in seeds {
                points.push(point(a, b, seed));
            }
        }
    }
    let mut results = eval(&points).into_iter();
    outer
        .iter()
        .map(|_| {
            inner
                .iter()
                .map(|_| results.by_ref().take(seeds.len()).collect())
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------- api

/// The policies of the `api` comparison.
pub fn api_policies() -> Vec<Policy> {
    vec![
        Policy::Fcfs,
        Policy::PerCoreFcfs,
        Policy::ShinjukuSq(2 * US),
        Policy::ShinjukuSq(5 * US),
        Policy::Api(2 * US),
        Policy::Api(5 * US),
        Policy::Ps,
    ]
}

/// RPC on `cores` cores: Poisson arrivals at `load` (fraction of capacity),
/// split into a short and a long class at [`ServiceDist::long_from`].
pub fn api_workload(
    dist: ServiceDist,
    cores: usize,
    load: f64,
    scale: &Scale,
    costs: Costs,
    seed: u64,
) -> Workload {
    let per_sec = load * cores as f64 * 1e9 / dist.mean();
    let horizon = (scale.api_arrivals / per_sec * 1e9) as Nanos;
    let mut request = Source::new(
        "request",
        Kind::Request,
        Arrivals::Poisson { per_sec },
        dist,
    );
    request.long_from = dist.long_from();
    Workload {
        cores,
        sources: vec![request],
        horizon,
        warmup: horizon / 10,
        drain: horizon / 2,
        costs,
        seed,
    }
}

/// Which tails the sustained-load search holds to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The p99 over all requests.
    Overall,
    /// The p99 over all requests and the p99 of each class (short, long).
    EachClass,
}

/// Whether `s` meets p99 slowdown <= `target` under `which`, with every
/// measured request completed.
pub fn meets(s: &SourceStats, target: f64, which: Target) -> bool {
    let overall = s.slowdown.p99 <= target && s.completed == s.measured;
    match (which, s.classes) {
        (Target::EachClass, Some(c)) => {
            // A class with no measured request has nothing to hold.
            let holds = |x: &crate::stats::ClassStats| x.measured == 0 || x.slowdown.p99 <= target;
            overall && holds(&c.short) && holds(&c.long)
        }
        _ => overall,
    }
}

/// Result of an `api` sweep: request statistics per policy, load and seed.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiSweep {
    /// The distribution swept.
    pub dist: ServiceDist,
    /// Cores of the partition.
    pub cores: usize,
    /// The policies, in order.
    pub policies: Vec<Policy>,
    /// The loads, ascending.
    pub loads: Vec<f64>,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// `[policy][load][seed]`: the requests' statistics.
    pub stats: Vec<Vec<Vec<SourceStats>>>,
}

impl ApiSweep {
    /// Per policy, per seed: the highest load at which it and every lower
    /// grid load hold p99 slowdown <= `target` under `which`, with every
    /// measured request completed.
    pub fn capacity(&self, target: f64, which: Target) -> Vec<Vec<f64>> {
        self.stats
            .iter()
            .map(|by_load| {
                (0..self.seeds.len())
                    .map(|s| {
                        let ok: Vec<bool> = by_load
                            .iter()
                            .map(|seeds| meets(&seeds[s], target, which))
                            .collect();
                        sustained(&self.loads, &ok)
                    })
                    .collect()
            })
            .collect()
    }

    /// Index of the load closest to `load`.
    pub fn load_index(&self, load: f64) -> usize {
        (0..self.loads.len())
            .min_by(|&a, &b| {
                libm::fabs(self.loads[a] - load).total_cmp(&libm::fabs(self.loads[b] - load))
            })
            .unwrap_or(0)
    }

    /// One figure of every seed at policy `p`, load index `l`, as a spread.
    pub fn spread(&self, p: usize, l: usize, f: impl Fn(&SourceStats) -> f64) -> Spread {
        let v: Vec<f64> = self.stats[p][l].iter().map(f).collect();
        Spread::of(&v)
    }

    /// Every point and seed as CSV rows.
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!("api_{}", self.dist.name()),
            &[
                "dist",
                "cores",
                "policy",
                "load",
                "seed",
                "p50_slowdown",
                "p99_slowdown",
                "p999_slowdown",
                "p50_us",
                "p99_us",
                "p999_us",
                "short_p99_slowdown",
                "short_p99_us",
                "short_p999_us",
                "long_p99_slowdown",
                "long_p99_us",
                "long_p999_us",
                "rejected",
                "unfinished",
            ],
        );
        let class = |s: &SourceStats, long: bool, f: &dyn Fn(&crate::stats::ClassStats) -> f64| {
            s.classes.map_or(String::from("-"), |c| {
                num(f(if long { &c.long } else { &c.short }), 3)
            })
        };
        for (p, policy) in self.policies.iter().enumerate() {
            for (l, &load) in self.loads.iter().enumerate() {
                for (k, s) in self.stats[p][l].iter().enumerate() {
                    table.push(vec![
                        self.dist.name().into(),
                        format!("{}", self.cores),
                        policy.name(),
                        num(load, 3),
                        format!("{}", self.seeds[k]),
                        num(s.slowdown.p50, 3),
                        num(s.slowdown.p99, 3),
                        num(s.slowdown.p999, 3),
                        num(s.latency.p50 / 1e3, 3),
                        num(s.latency.p99 / 1e3, 3),
                        num(s.latency.p999 / 1e3, 3),
                        class(s, false, &|c| c.slowdown.p99),
                        class(s, false, &|c| c.latency.p99 / 1e3),
                        class(s, false, &|c| c.latency.p999 / 1e3),
                        class(s, true, &|c| c.slowdown.p99),
                        class(s, true, &|c| c.latency.p99 / 1e3),
                        class(s, true, &|c| c.latency.p999 / 1e3),
                        format!("{}", s.rejected),
                        format!("{}", s.measured - s.completed),
                    ]);
                }
            }
        }
        table
    }

    /// Per load and policy, the median over the seeds of `f` (for plots).
    pub fn medians(&self, f: impl Fn(&SourceStats) -> f64) -> Vec<(String, Vec<(f64, f64)>)> {
        self.policies
            .iter()
            .enumerate()
            .map(|(p, policy)| {
                let line = (0..self.loads.len())
                    .map(|l| (self.loads[l], self.spread(p, l, &f).median))
                    .collect();
                (policy.name(), line)
            })
            .collect()
    }
}

/// Latency and slowdown against load for each policy, over every seed.
pub fn api_sweep(
    dist: ServiceDist,
    cores: usize,
    loads: &[f64],
    policies: &[Policy],
    setup: &Setup,
    eval: Eval,
) -> ApiSweep {
    let stats = run_grid(
        policies,
        loads,
        &setup.seeds,
        |policy, load, seed| Point {
            workload: api_workload(dist, cores, load, &setup.scale, setup.costs, seed),
            policy,
        },
        eval,
    );
    ApiSweep {
        dist,
        cores,
        policies: policies.to_vec(),
        loads: loads.to_vec(),
        seeds: setup.seeds.clone(),
        stats: stats
            .into_iter()
            .map(|l| {
                l.into_iter()
                    .map(|s| s.into_iter().map(|mut v| v.swap_remove(0)).collect())
                    .collect()
            })
            .collect(),
    }
}

// ---------------------------------------------------------------- ui

/// The policies of the `ui` comparison.
pub fn ui_policies() -> Vec<Policy> {
    vec![Policy::Ui, Policy::Fcfs, Policy::RoundRobin(500 * US)]
}

/// Input events: at most one per millisecond (a 1 kHz HID poll), 50 us each.
const INPUT_SERVICE: Nanos = 50 * US;
const INPUT_MIN_GAP: Nanos = MS;
const INPUT_MEAN_EXTRA: f64 = 4e6;
/// Deadline the simulator checks for input events (the `ui` default).
const INPUT_DEADLINE: Nanos = 2 * MS;

/// Periodic frame streams, per core two at 60 Hz and two at 120 Hz, with
/// random phases and fixed frame costs, plus sporadic input, at total
/// utilization `util` (fraction of all cores).
pub fn ui_workload(cores: usize, util: f64, scale: &Scale, costs: Costs, seed: u64) -> Workload {
    let input = Source::new(
        "input",
        Kind::Input {
            deadline: INPUT_DEADLINE,
        },
        Arrivals::Sporadic {
            min_gap: INPUT_MIN_GAP,
            mean_extra: INPUT_MEAN_EXTRA,
        },
        ServiceDist::Fixed(INPUT_SERVICE),
    );
    let input_util = input.offered().unwrap_or(0.0);
    let periods: Vec<Nanos> = (0..cores)
        .flat_map(|_| [16_666_667, 16_666_667, 8_333_333, 8_333_333])
        .collect();
    let per_stream = (util * cores as f64 - input_util) / periods.len() as f64;
    let mut phases = Rng::new(seed, 0xF4A3E);
    let mut sources = vec![input];
    for &period in &periods {
        let cost = (per_stream * period as f64) as Nanos;
        let phase = (phases.unit() * period as f64) as Nanos;
        sources.push(Source::new(
            if period > 10 * MS {
                "frame60"
            } else {
                "frame120"
            },
            Kind::Frame { deadline: period },
            Arrivals::Periodic { period, phase },
            ServiceDist::Fixed(cost),
        ));
    }
    Workload {
        cores,
        sources,
        horizon: scale.ui_horizon,
        warmup: 100 * MS,
        drain: 50 * MS,
        costs,
        seed,
    }
}

/// Frame and input deadline misses against utilization, over every seed.
#[derive(Clone, Debug, PartialEq)]
pub struct UiSweep {
    /// Cores of the partition.
    pub cores: usize,
    /// The policies, in order.
    pub policies: Vec<Policy>,
    /// The utilizations, ascending.
    pub utils: Vec<f64>,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// `[policy][util][seed]`: per source (input first, then the frame streams).
    pub stats: Vec<Vec<Vec<Vec<SourceStats>>>>,
}

impl UiSweep {
    /// (frames measured, frames missed) at policy `p`, utilization `u`, seed `k`.
    pub fn frames(&self, p: usize, u: usize, k: usize) -> (usize, usize) {
        let s = &self.stats[p][u][k][1..];
        (
            s.iter().map(|x| x.with_deadline).sum(),
            s.iter().map(|x| x.missed).sum(),
        )
    }

    /// The input source's statistics at `p`, `u`, seed `k`.
    pub fn input(&self, p: usize, u: usize, k: usize) -> &SourceStats {
        &self.stats[p][u][k][0]
    }

    /// Every point and seed as CSV rows.
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!("ui_{}core", self.cores),
            &[
                "cores",
                "policy",
                "utilization",
                "seed",
                "frames",
                "frames_missed",
                "frame_miss_rate",
                "input_miss_rate",
                "input_p99_us",
            ],
        );
        for (p, policy) in self.policies.iter().enumerate() {
            for (u, &util) in self.utils.iter().enumerate() {
                for (k, &seed) in self.seeds.iter().enumerate() {
                    let (frames, missed) = self.frames(p, u, k);
                    let input = self.input(p, u, k);
                    table.push(vec![
                        format!("{}", self.cores),
                        policy.name(),
                        num(util, 3),
                        format!("{seed}"),
                        format!("{frames}"),
                        format!("{missed}"),
                        num(missed as f64 / frames.max(1) as f64, 5),
                        num(input.miss_rate(), 5),
                        num(input.latency.p99 / 1e3, 1),
                    ]);
                }
            }
        }
        table
    }
}

/// Frame and input deadline misses against utilization.
pub fn ui_sweep(
    cores: usize,
    utils: &[f64],
    policies: &[Policy],
    setup: &Setup,
    eval: Eval,
) -> UiSweep {
    let stats = run_grid(
        policies,
        utils,
        &setup.seeds,
        |policy, u, seed| Point {
            workload: ui_workload(cores, u, &setup.scale, setup.costs, seed),
            policy,
        },
        eval,
    );
    UiSweep {
        cores,
        policies: policies.to_vec(),
        utils: utils.to_vec(),
        seeds: setup.seeds.clone(),
        stats,
    }
}

// ---------------------------------------------------------------- db

/// The policies of the `db` comparison.
pub fn db_policies() -> Vec<Policy> {
    vec![Policy::Db, Policy::Fcfs, Policy::RoundRobin(50 * US)]
}

/// Load offered by commits in the `db` experiment (fraction of all cores).
pub const DB_COMMIT_LOAD: f64 = 0.1;

/// Two cores; commits (exponential, 5 us) at 10 % load, reads (lognormal,
/// 20 us mean) at `read_load`, and compaction that always has one 200 us
/// chunk per core ready: background saturates whatever is left.
pub fn db_workload(read_load: f64, scale: &Scale, costs: Costs, seed: u64) -> Workload {
    let cores = 2;
    let commit = ServiceDist::Exponential { mean: 5_000.0 };
    let read = ServiceDist::Lognormal {
        mean: 20_000.0,
        sigma: 1.0,
    };
    let rate = |load: f64, d: ServiceDist| load * cores as f64 * 1e9 / d.mean();
    Workload {
        cores,
        sources: vec![
            Source::new(
                "commit",
                Kind::Commit,
                Arrivals::Poisson {
                    per_sec: rate(DB_COMMIT_LOAD, commit),
                },
                commit,
            ),
            Source::new(
                "read",
                Kind::Read,
                Arrivals::Poisson {
                    per_sec: rate(read_load, read),
                },
                read,
            ),
            Source::new(
                "compaction",
                Kind::Background,
                Arrivals::Backlog {
                    depth: cores as u32,
                },
                ServiceDist::Fixed(200 * US),
            ),
        ],
        horizon: scale.db_horizon,
        warmup: scale.db_horizon / 10,
        drain: scale.db_horizon / 10,
        costs,
        seed,
    }
}

/// Commit and read latency, and core shares, against read load, over every seed.
#[derive(Clone, Debug, PartialEq)]
pub struct DbSweep {
    /// The policies, in order.
    pub policies: Vec<Policy>,
    /// The read loads, ascending.
    pub read_loads: Vec<f64>,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// `[policy][read load][seed]`: commit, read, compaction.
    pub stats: Vec<Vec<Vec<Vec<SourceStats>>>>,
}

impl DbSweep {
    /// One figure of every seed at policy `p`, read load index `r`.
    pub fn spread(&self, p: usize, r: usize, f: impl Fn(&[SourceStats]) -> f64) -> Spread {
        let v: Vec<f64> = self.stats[p][r].iter().map(|s| f(s)).collect();
        Spread::of(&v)
    }

    /// Every point and seed as CSV rows.
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            "db",
            &[
                "policy",
                "read_load",
                "seed",
                "commit_p50_us",
                "commit_p99_us",
                "commit_p999_us",
                "commit_budget_us",
                "read_p99_us",
                "commit_share",
                "read_share",
                "background_share",
                "total_util",
            ],
        );
        for (p, policy) in self.policies.iter().enumerate() {
            for (r, &read_load) in self.read_loads.iter().enumerate() {
                for (k, s) in self.stats[p][r].iter().enumerate() {
                    table.push(vec![
                        policy.name(),
                        num(read_load, 3),
                        format!("{}", self.seeds[k]),
                        num(s[0].latency.p50 / 1e3, 2),
                        num(s[0].latency.p99 / 1e3, 2),
                        num(s[0].latency.p999 / 1e3, 2),
                        num(COMMIT_BUDGET as f64 / 1e3, 0),
                        num(s[1].latency.p99 / 1e3, 2),
                        num(s[0].core_share, 4),
                        num(s[1].core_share, 4),
                        num(s[2].core_share, 4),
                        num(total_util(s), 4),
                    ]);
                }
            }
        }
        table
    }
}

/// Fraction of the partition's core time spent on tasks (all sources).
pub fn total_util(s: &[SourceStats]) -> f64 {
    s.iter().map(|x| x.core_share).sum()
}

/// Commit and read latency, and core shares, against read load.
pub fn db_sweep(read_loads: &[f64], policies: &[Policy], setup: &Setup, eval: Eval) -> DbSweep {
    let stats = run_grid(
        policies,
        read_loads,
        &setup.seeds,
        |policy, r, seed| Point {
            workload: db_workload(r, &setup.scale, setup.costs, seed),
            policy,
        },
        eval,
    );
    DbSweep {
        policies: policies.to_vec(),
        read_loads: read_loads.to_vec(),
        seeds: setup.seeds.clone(),
        stats,
    }
}

// ---------------------------------------------------------------- messaging

/// Fixed cost of one batch (the flush) in the `messaging` experiment.
pub const BATCH_COST: Nanos = 20 * US;
/// Cost of one message.
pub const MESSAGE_COST: Nanos = 2 * US;

/// Two cores publishing fixed-cost messages arriving as Poisson at `per_sec`.
pub fn messaging_workload(per_sec: f64, scale: &Scale, costs: Costs, seed: u64) -> Workload {
    let mut source = Source::new(
        "message",
        Kind::Message,
        Arrivals::Poisson { per_sec },
        ServiceDist::Fixed(MESSAGE_COST),
    );
    source.batch_cost = BATCH_COST;
    Workload {
        cores: 2,
        sources: vec![source],
        horizon: scale.messaging_horizon,
        warmup: scale.messaging_horizon / 10,
        drain: scale.messaging_horizon / 2,
        costs,
        seed,
    }
}

/// Result of the `messaging` sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct MessagingSweep {
    /// One row per bound, policy, rate and seed.
    pub table: Table,
    /// Per bound and seed: highest sustained rate unbatched and batched
    /// (p99 <= bound at that rate and every lower one).
    pub capacity: Table,
    /// The bounds, in order.
    pub bounds: Vec<Nanos>,
    /// `[bound][seed]`: (unbatched, batched) sustained rate.
    pub sustained: Vec<Vec<(f64, f64)>>,
}

/// Latency against rate for each bound, batched (`messaging`) and unbatched
/// (FCFS: every message pays the flush), and the sustained rate per bound,
/// over every seed.
pub fn messaging_sweep(
    bounds: &[Nanos],
    batched_rates: &[f64],
    unbatched_rates: &[f64],
    setup: &Setup,
    eval: Eval,
) -> MessagingSweep {
    let point = |policy: Policy, rate: f64, seed: u64| Point {
        workload: messaging_workload(rate, &setup.scale, setup.costs, seed),
        policy,
    };
    let unbatched = run_grid(&[Policy::Fcfs], unbatched_rates, &setup.seeds, point, eval);
    let configs: Vec<Policy> = bounds
        .iter()
        .map(|&b| Policy::Messaging(MessagingConfig::new(2, b, BATCH_COST, MESSAGE_COST)))
        .collect();
    let batched = run_grid(&configs, batched_rates, &setup.seeds, point, eval);
    let mut table = Table::new(
        "messaging",
        &[
            "policy",
            "bound_us",
            "rate_per_s",
            "seed",
            "p50_us",
            "p99_us",
            "p999_us",
            "mean_batch",
            "core_util",
            "meets_bound",
        ],
    );
    let mut capacity = Table::new(
        "messaging_capacity",
        &[
            "bound_us",
            "seed",
            "unbatched_max_rate",
            "batched_max_rate",
            "gain",
        ],
    );
    let mut sustained_all = Vec::new();
    for (b, &bound) in bounds.iter().enumerate() {
        let mut per_seed = Vec::new();
        for (k, &seed) in setup.seeds.iter().enumerate() {
            let mut best = [0.0; 2];
            for (i, (rates, rows, name)) in [
                (unbatched_rates, &unbatched[0], "fcfs-unbatched"),
                (batched_rates, &batched[b], "messaging"),
            ]
            .into_iter()
            .enumerate()
            {
                let ok: Vec<bool> = rows
                    .iter()
                    .map(|s| s[k][0].latency.p99 <= bound as f64)
                    .collect();
                best[i] = sustained(rates, &ok);
                for ((rate, s), meets) in rates.iter().zip(rows).zip(&ok) {
                    let s = &s[k][0];
                    table.push(vec![
                        name.into(),
                        format!("{}", bound / US),
                        num(*rate, 0),
                        format!("{seed}"),
                        num(s.latency.p50 / 1e3, 2),
                        num(s.latency.p99 / 1e3, 2),
                        num(s.latency.p999 / 1e3, 2),
                        num(s.mean_batch, 2),
                        num(s.core_share, 4),
                        format!("{meets}"),
                    ]);
                }
            }
            capacity.push(vec![
                format!("{}", bound / US),
                format!("{seed}"),
                num(best[0], 0),
                num(best[1], 0),
                num(gain(best[0], best[1]), 2),
            ]);
            per_seed.push((best[0], best[1]));
        }
        sustained_all.push(per_seed);
    }
    MessagingSweep {
        table,
        capacity,
        bounds: bounds.to_vec(),
        sustained: sustained_all,
    }
}

/// `batched / unbatched`, infinite when nothing was sustained unbatched.
pub fn gain(unbatched: f64, batched: f64) -> f64 {
    if unbatched > 0.0 {
        batched / unbatched
    } else {
        f64::INFINITY
    }
}

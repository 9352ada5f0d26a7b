//! The experiments of the scheduler study, as pure functions from a scale and
//! a seed to tables: `api` against FCFS, per-core FCFS, Shinjuku's single
//! queue and processor sharing on heavy-tailed RPC; `ui` deadline misses
//! against utilization; `db` commit latency under saturating compaction;
//! `messaging` throughput against the latency bound. Each experiment is a
//! list of independent [`Point`]s handed to an evaluator, so the host runner
//! may evaluate them in parallel without changing a single output byte.
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
use crate::stats::{summarize, SourceStats};
use crate::table::{num, Table};
use crate::workload::{Arrivals, Kind, Source, Workload};

/// Queue capacity of every policy in the simulator.
pub const QUEUE: usize = 4096;
const US: Nanos = 1_000;
const MS: Nanos = 1_000_000;

/// The p99 slowdown target of the `api` capacity comparison.
pub const API_SLOWDOWN_TARGET: f64 = 10.0;
/// Preemption cost of the `api`, `ui` and `db` experiments.
pub const PREEMPT_COST: Nanos = US;
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
    /// What `make sim` runs.
    pub const FULL: Scale = Scale {
        api_arrivals: 300_000.0,
        ui_horizon: 20_000 * MS,
        db_horizon: 2_000 * MS,
        messaging_horizon: 400 * MS,
    };
    /// Small but meaningful: what the tests run.
    pub const QUICK: Scale = Scale {
        api_arrivals: 40_000.0,
        ui_horizon: 2_000 * MS,
        db_horizon: 200 * MS,
        messaging_horizon: 50 * MS,
    };
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

/// RPC on `cores` cores: Poisson arrivals at `load` (fraction of capacity).
pub fn api_workload(
    dist: ServiceDist,
    cores: usize,
    load: f64,
    scale: &Scale,
    seed: u64,
) -> Workload {
    let per_sec = load * cores as f64 * 1e9 / dist.mean();
    let horizon = (scale.api_arrivals / per_sec * 1e9) as Nanos;
    Workload {
        cores,
        sources: vec![Source::new(
            "request",
            Kind::Request,
            Arrivals::Poisson { per_sec },
            dist,
        )],
        horizon,
        warmup: horizon / 10,
        drain: horizon / 2,
        preempt_cost: PREEMPT_COST,
        switch_cost: 0,
        seed,
    }
}

/// Result of an `api` sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiSweep {
    /// One row per policy and load.
    pub table: Table,
    /// Per policy: the highest load at which it and every lower grid load keep
    /// p99 slowdown <= target with every measured request completed.
    pub capacity: Vec<(String, f64)>,
}

/// Latency and slowdown against load for each policy.
pub fn api_sweep(
    dist: ServiceDist,
    cores: usize,
    loads: &[f64],
    policies: &[Policy],
    scale: &Scale,
    seed: u64,
    eval: &dyn Fn(&[Point]) -> Vec<Vec<SourceStats>>,
) -> ApiSweep {
    let points: Vec<Point> = policies
        .iter()
        .flat_map(|&policy| loads.iter().map(move |&load| (policy, load)))
        .map(|(policy, load)| Point {
            workload: api_workload(dist, cores, load, scale, seed),
            policy,
        })
        .collect();
    let results = eval(&points);
    let mut table = Table::new(
        format!("api_{}", dist.name()),
        &[
            "dist",
            "cores",
            "policy",
            "load",
            "p50_slowdown",
            "p99_slowdown",
            "p999_slowdown",
            "p50_us",
            "p99_us",
            "p999_us",
            "rejected",
        ],
    );
    let mut capacity = Vec::new();
    for (p, policy) in policies.iter().enumerate() {
        let mut ok = Vec::new();
        for (l, &load) in loads.iter().enumerate() {
            let s = &results[p * loads.len() + l][0];
            // Sustained: the target holds and every measured request finished.
            ok.push(s.slowdown.p99 <= API_SLOWDOWN_TARGET && s.completed == s.measured);
            table.push(vec![
                dist.name().into(),
                format!("{cores}"),
                policy.name(),
                num(load, 3),
                num(s.slowdown.p50, 3),
                num(s.slowdown.p99, 3),
                num(s.slowdown.p999, 3),
                num(s.latency.p50 / 1e3, 3),
                num(s.latency.p99 / 1e3, 3),
                num(s.latency.p999 / 1e3, 3),
                format!("{}", s.rejected),
            ]);
        }
        capacity.push((policy.name(), sustained(loads, &ok)));
    }
    ApiSweep { table, capacity }
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
pub fn ui_workload(cores: usize, util: f64, scale: &Scale, seed: u64) -> Workload {
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
        preempt_cost: PREEMPT_COST,
        switch_cost: 0,
        seed,
    }
}

/// Frame and input deadline misses against utilization.
pub fn ui_sweep(
    cores: usize,
    utils: &[f64],
    policies: &[Policy],
    scale: &Scale,
    seed: u64,
    eval: &dyn Fn(&[Point]) -> Vec<Vec<SourceStats>>,
) -> Table {
    let points: Vec<Point> = policies
        .iter()
        .flat_map(|&policy| utils.iter().map(move |&u| (policy, u)))
        .map(|(policy, u)| Point {
            workload: ui_workload(cores, u, scale, seed),
            policy,
        })
        .collect();
    let results = eval(&points);
    let mut table = Table::new(
        format!("ui_{cores}core"),
        &[
            "cores",
            "policy",
            "utilization",
            "frames",
            "frames_missed",
            "frame_miss_rate",
            "input_miss_rate",
            "input_p99_us",
        ],
    );
    for (i, point) in points.iter().enumerate() {
        let stats = &results[i];
        let frames: usize = stats[1..].iter().map(|s| s.with_deadline).sum();
        let missed: usize = stats[1..].iter().map(|s| s.missed).sum();
        let u = utils[i % utils.len()];
        table.push(vec![
            format!("{cores}"),
            point.policy.name(),
            num(u, 3),
            format!("{frames}"),
            format!("{missed}"),
            num(missed as f64 / frames.max(1) as f64, 5),
            num(stats[0].miss_rate(), 5),
            num(stats[0].latency.p99 / 1e3, 1),
        ]);
    }
    table
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
pub fn db_workload(read_load: f64, scale: &Scale, seed: u64) -> Workload {
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
        preempt_cost: PREEMPT_COST,
        switch_cost: 0,
        seed,
    }
}

/// Commit and read latency, and core shares, against read load.
pub fn db_sweep(
    read_loads: &[f64],
    policies: &[Policy],
    scale: &Scale,
    seed: u64,
    eval: &dyn Fn(&[Point]) -> Vec<Vec<SourceStats>>,
) -> Table {
    let points: Vec<Point> = policies
        .iter()
        .flat_map(|&policy| read_loads.iter().map(move |&r| (policy, r)))
        .map(|(policy, r)| Point {
            workload: db_workload(r, scale, seed),
            policy,
        })
        .collect();
    let results = eval(&points);
    let mut table = Table::new(
        "db",
        &[
            "policy",
            "read_load",
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
    for (i, point) in points.iter().enumerate() {
        let s = &results[i];
        let total: f64 = s.iter().map(|x| x.core_share).sum();
        table.push(vec![
            point.policy.name(),
            num(read_loads[i % read_loads.len()], 3),
            num(s[0].latency.p50 / 1e3, 2),
            num(s[0].latency.p99 / 1e3, 2),
            num(s[0].latency.p999 / 1e3, 2),
            num(COMMIT_BUDGET as f64 / 1e3, 0),
            num(s[1].latency.p99 / 1e3, 2),
            num(s[0].core_share, 4),
            num(s[1].core_share, 4),
            num(s[2].core_share, 4),
            num(total, 4),
        ]);
    }
    table
}

// ---------------------------------------------------------------- messaging

/// Fixed cost of one batch (the flush) in the `messaging` experiment.
pub const BATCH_COST: Nanos = 20 * US;
/// Cost of one message.
pub const MESSAGE_COST: Nanos = 2 * US;

/// Two cores publishing fixed-cost messages arriving as Poisson at `per_sec`.
pub fn messaging_workload(per_sec: f64, scale: &Scale, seed: u64) -> Workload {
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
        preempt_cost: PREEMPT_COST,
        switch_cost: 0,
        seed,
    }
}

/// Result of the `messaging` sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct MessagingSweep {
    /// One row per bound, policy and rate.
    pub table: Table,
    /// Per bound: highest sustained rate unbatched and batched (p99 <= bound).
    pub capacity: Table,
}

/// Latency against rate for each bound, batched (`messaging`) and unbatched
/// (FCFS: every message pays the flush), and the sustained rate per bound.
pub fn messaging_sweep(
    bounds: &[Nanos],
    batched_rates: &[f64],
    unbatched_rates: &[f64],
    scale: &Scale,
    seed: u64,
    eval: &dyn Fn(&[Point]) -> Vec<Vec<SourceStats>>,
) -> MessagingSweep {
    let mut points: Vec<Point> = unbatched_rates
        .iter()
        .map(|&r| Point {
            workload: messaging_workload(r, scale, seed),
            policy: Policy::Fcfs,
        })
        .collect();
    for &bound in bounds {
        let config = MessagingConfig::new(2, bound, BATCH_COST, MESSAGE_COST);
        for &r in batched_rates {
            points.push(Point {
                workload: messaging_workload(r, scale, seed),
                policy: Policy::Messaging(config),
            });
        }
    }
    let results = eval(&points);
    let mut table = Table::new(
        "messaging",
        &[
            "policy",
            "bound_us",
            "rate_per_s",
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
        &["bound_us", "unbatched_max_rate", "batched_max_rate", "gain"],
    );
    let unbatched = &results[..unbatched_rates.len()];
    for (b, &bound) in bounds.iter().enumerate() {
        let batched =
            &results[unbatched_rates.len() + b * batched_rates.len()..][..batched_rates.len()];
        let mut best = [0.0; 2];
        for (k, (rates, rows, name)) in [
            (unbatched_rates, unbatched, "fcfs-unbatched"),
            (batched_rates, batched, "messaging"),
        ]
        .into_iter()
        .enumerate()
        {
            let ok: Vec<bool> = rows
                .iter()
                .map(|s| s[0].latency.p99 <= bound as f64)
                .collect();
            best[k] = sustained(rates, &ok);
            for ((rate, s), meets) in rates.iter().zip(rows).zip(&ok) {
                table.push(vec![
                    name.into(),
                    format!("{}", bound / US),
                    num(*rate, 0),
                    num(s[0].latency.p50 / 1e3, 2),
                    num(s[0].latency.p99 / 1e3, 2),
                    num(s[0].latency.p999 / 1e3, 2),
                    num(s[0].mean_batch, 2),
                    num(s[0].core_share, 4),
                    format!("{meets}"),
                ]);
            }
        }
        let gain = if best[0] > 0.0 {
            best[1] / best[0]
        } else {
            f64::INFINITY
        };
        capacity.push(vec![
            format!("{}", bound / US),
            num(best[0], 0),
            num(best[1], 0),
            num(gain, 2),
        ]);
    }
    MessagingSweep { table, capacity }
}

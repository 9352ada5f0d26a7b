//! Turns a [`Run`] into per-source figures: latency and slowdown percentiles,
//! deadline misses, throughput, core share and batch sizes. Tasks that were
//! rejected or never finished count as infinitely late, so an overloaded
//! point can never look good. A source split into a short and a long class
//! (by service time) also gets each class's tail, and [`Spread`] sums up
//! one figure over several seeds.
use alloc::vec::Vec;

use crate::engine::Run;
use crate::workload::Workload;

/// p50, p99 and p99.9 of a sample (nearest rank); `inf` beyond what finished.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Percentiles {
    /// Percentiles of `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Self {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| -> f64 {
            if values.is_empty() {
                return f64::NAN;
            }
            let rank = libm::ceil(p * values.len() as f64) as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// Latency and slowdown of one class of a source's measured tasks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassStats {
    /// Measured tasks of the class.
    pub measured: usize,
    /// Latency, nanoseconds.
    pub latency: Percentiles,
    /// Latency divided by intrinsic service time.
    pub slowdown: Percentiles,
}

impl ClassStats {
    fn of(latencies: &mut [f64], slowdowns: &mut [f64]) -> Self {
        Self {
            measured: latencies.len(),
            latency: Percentiles::of(latencies),
            slowdown: Percentiles::of(slowdowns),
        }
    }
}

/// A source's tasks split at [`Source::long_from`](crate::Source::long_from).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Classes {
    /// Tasks with service time below the split.
    pub short: ClassStats,
    /// Tasks with service time at or above it.
    pub long: ClassStats,
}

/// Figures for the measured tasks of one source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStats {
    /// Tasks that arrived inside the measurement window.
    pub measured: usize,
    /// Of those, finished.
    pub completed: usize,
    /// Of those, rejected by the policy.
    pub rejected: usize,
    /// Latency (arrival to completion), nanoseconds.
    pub latency: Percentiles,
    /// Latency divided by intrinsic service time.
    pub slowdown: Percentiles,
    /// Measured tasks with a deadline.
    pub with_deadline: usize,
    /// Of those, finished late or not at all.
    pub missed: usize,
    /// Completions per second inside the window.
    pub throughput: f64,
    /// Fraction of the partition's core time this source used inside the window.
    pub core_share: f64,
    /// Mean tasks per batch (completions per batch-opening dispatch).
    pub mean_batch: f64,
    /// Per-class tails, if the source splits its tasks into classes.
    pub classes: Option<Classes>,
}

impl SourceStats {
    /// Fraction of deadline tasks that missed (0 when none had a deadline).
    pub fn miss_rate(&self) -> f64 {
        if self.with_deadline == 0 {
            0.0
        } else {
            self.missed as f64 / self.with_deadline as f64
        }
    }
}

/// Per-source figures of `run`, in source order.
pub fn summarize(w: &Workload, run: &Run) -> Vec<SourceStats> {
    let window = w.horizon.saturating_sub(w.warmup).max(1) as f64;
    (0..w.sources.len())
        .map(|source| {
            let long_from = w.sources[source].long_from;
            let mut latencies = Vec::new();
            let mut slowdowns = Vec::new();
            // Per class: (latencies, slowdowns); index 1 is the long class.
            let mut by_class: [(Vec<f64>, Vec<f64>); 2] = Default::default();
            let (mut rejected, mut completed, mut with_deadline, mut missed, mut all_done) =
                (0, 0, 0, 0, 0u64);
            for t in run.tasks.iter().filter(|t| t.source as usize == source) {
                all_done += u64::from(t.done.is_some());
                if t.arrival < w.warmup || t.arrival >= w.horizon {
                    continue;
                }
                rejected += usize::from(t.rejected);
                let latency = t.done.map_or(f64::INFINITY, |d| (d - t.arrival) as f64);
                completed += usize::from(t.done.is_some());
                latencies.push(latency);
                slowdowns.push(latency / t.service as f64);
                if let Some(split) = long_from {
                    let class = &mut by_class[usize::from(t.service >= split)];
                    class.0.push(latency);
                    class.1.push(latency / t.service as f64);
                }
                if let Some(deadline) = t.deadline {
                    with_deadline += 1;
                    missed += usize::from(t.done.is_none_or(|d| d > deadline));
                }
            }
            let measured = latencies.len();
            SourceStats {
                measured,
                completed,
                rejected,
                latency: Percentiles::of(&mut latencies),
                slowdown: Percentiles::of(&mut slowdowns),
                with_deadline,
                missed,
                throughput: completed as f64 / window * 1e9,
                core_share: run.busy[source] as f64 / (window * w.cores as f64),
                mean_batch: if run.batches[source] == 0 {
                    0.0
                } else {
                    all_done as f64 / run.batches[source] as f64
                },
                classes: long_from.map(|_| {
                    let [(sl, ss), (ll, ls)] = &mut by_class;
                    Classes {
                        short: ClassStats::of(sl, ss),
                        long: ClassStats::of(ll, ls),
                    }
                }),
            }
        })
        .collect()
}

/// One figure over several seeds: its median (the mean of the two middle
/// values for an even count) and its range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Median over the seeds.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (NaN everywhere if empty). Infinite values
    /// (unfinished tasks) sort last and make a median infinite only if they
    /// reach the middle.
    pub fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        // Two equal middle values (both infinite, say) are the median as they are.
        let median = if n % 2 == 1 || v[n / 2 - 1] == v[n / 2] {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p99, p.p999), (500.0, 990.0, 999.0));
        let mut with_inf: Vec<f64> = (1..=99).map(f64::from).chain([f64::INFINITY]).collect();
        assert_eq!(Percentiles::of(&mut with_inf).p99, 99.0);
        assert!(Percentiles::of(&mut with_inf).p999.is_infinite());
    }

    #[test]
    fn per_class_tails_by_hand() {
        use crate::dist::ServiceDist;
        use crate::engine::TaskRecord;
        use crate::workload::{Arrivals, Costs, Kind, Source};
        let mut source = Source::new(
            "r",
            Kind::Request,
            Arrivals::Poisson { per_sec: 1.0 },
            ServiceDist::Fixed(1),
        );
        source.long_from = Some(100);
        let w = Workload {
            cores: 1,
            sources: alloc::vec![source],
            horizon: 1_000_000,
            warmup: 10,
            drain: 0,
            costs: Costs::ZERO,
            seed: 1,
        };
        let task = |arrival, service, latency: Option<u64>| TaskRecord {
            source: 0,
            arrival,
            service,
            deadline: None,
            done: latency.map(|l| arrival + l),
            rejected: false,
        };
        let mut tasks = Vec::new();
        // Short (service 10): latencies 10, 20, ..., 1000 (100 tasks).
        for i in 1..=100 {
            tasks.push(task(100 + i, 10, Some(10 * i)));
        }
        // Long (service 100 and 400): latencies 1000, 2000, 3000, and one never done.
        tasks.push(task(500, 100, Some(1_000)));
        tasks.push(task(600, 400, Some(2_000)));
        tasks.push(task(700, 100, Some(3_000)));
        tasks.push(task(800, 100, None));
        // Before the warm-up: not measured.
        tasks.push(task(5, 500, Some(999_999)));
        let run = Run {
            tasks,
            busy: alloc::vec![0],
            batches: alloc::vec![0],
            preemptions: 0,
            ticks: 0,
            kicks: 0,
        };
        let s = &summarize(&w, &run)[0];
        assert_eq!((s.measured, s.completed), (104, 103));
        let c = s.classes.expect("the source is split");
        assert_eq!((c.short.measured, c.long.measured), (100, 4));
        // Short: nearest rank, p50 = 50th value, p99 = 99th, p99.9 = 100th.
        assert_eq!(
            (
                c.short.latency.p50,
                c.short.latency.p99,
                c.short.latency.p999
            ),
            (500.0, 990.0, 1_000.0)
        );
        assert_eq!(c.short.slowdown.p99, 99.0);
        // Long: sorted 1000, 2000, 3000, inf; p50 = 2nd, p99 = 4th.
        assert_eq!(c.long.latency.p50, 2_000.0);
        assert!(c.long.latency.p99.is_infinite());
        // Slowdowns 10, 5, 30, inf: p50 is the 2nd smallest.
        assert_eq!(c.long.slowdown.p50, 10.0);
        // Over all 104 requests the p99 (103rd) is a long one: 3000; the
        // unfinished one only shows at p99.9.
        assert_eq!(s.latency.p99, 3_000.0);
        assert!(s.latency.p999.is_infinite());
        // Without a split, no classes.
        let mut one = w.clone();
        one.sources[0].long_from = None;
        assert!(summarize(&one, &run)[0].classes.is_none());
    }

    #[test]
    fn spread_of_seeds() {
        let s = Spread::of(&[0.78, 0.72, 0.74, 0.76]);
        assert_eq!((s.min, s.max), (0.72, 0.78));
        assert!((s.median - 0.75).abs() < 1e-12);
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]).median, 2.0);
        let inf = Spread::of(&[1.0, f64::INFINITY, f64::INFINITY]);
        assert!(inf.median.is_infinite() && inf.min == 1.0);
        assert_eq!(Spread::of(&[f64::INFINITY; 2]).median, f64::INFINITY);
    }
}

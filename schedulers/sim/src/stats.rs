//! Turns a [`Run`] into per-source figures: latency and slowdown percentiles,
//! deadline misses, throughput, core share and batch sizes. Tasks that were
//! rejected or never finished count as infinitely late, so an overloaded
//! point can never look good.
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
            let mut latencies = Vec::new();
            let mut slowdowns = Vec::new();
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
            }
        })
        .collect()
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
}

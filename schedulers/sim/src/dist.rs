//! Service-time distributions of the workloads: fixed, exponential, bimodal
//! and lognormal. Sampling uses `libm`, not the host's math library, so the
//! same seed yields the same nanoseconds on every machine.
use crate::rng::Rng;
use hallows_sched::Nanos;

/// A service-time distribution; all times in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServiceDist {
    /// Always `ns`.
    Fixed(Nanos),
    /// Exponential with this mean.
    Exponential {
        /// Mean service time.
        mean: f64,
    },
    /// `long` with probability `p_long`, else `short`.
    Bimodal {
        /// Probability of a long task.
        p_long: f64,
        /// Short service time.
        short: Nanos,
        /// Long service time.
        long: Nanos,
    },
    /// Lognormal with this mean and shape `sigma` (of the underlying normal).
    Lognormal {
        /// Mean service time.
        mean: f64,
        /// Standard deviation of the underlying normal.
        sigma: f64,
    },
}

impl ServiceDist {
    /// The bimodal workload of the acceptance criteria: 99.5 % 0.5 us, 0.5 % 500 us.
    pub const BIMODAL: ServiceDist = ServiceDist::Bimodal {
        p_long: 0.005,
        short: 500,
        long: 500_000,
    };

    /// Mean service time in nanoseconds.
    pub fn mean(&self) -> f64 {
        match *self {
            ServiceDist::Fixed(ns) => ns as f64,
            ServiceDist::Exponential { mean } | ServiceDist::Lognormal { mean, .. } => mean,
            ServiceDist::Bimodal {
                p_long,
                short,
                long,
            } => p_long * long as f64 + (1.0 - p_long) * short as f64,
        }
    }

    /// One service time, at least 1 ns.
    pub fn sample(&self, rng: &mut Rng) -> Nanos {
        let ns = match *self {
            ServiceDist::Fixed(ns) => return ns.max(1),
            ServiceDist::Exponential { mean } => -mean * libm::log(rng.unit_open()),
            ServiceDist::Bimodal {
                p_long,
                short,
                long,
            } => {
                return if rng.unit() < p_long { long } else { short }.max(1);
            }
            ServiceDist::Lognormal { mean, sigma } => {
                let mu = libm::log(mean) - sigma * sigma / 2.0;
                libm::exp(mu + sigma * standard_normal(rng))
            }
        };
        (libm::round(ns) as Nanos).max(1)
    }

    /// Where the `long` class of this distribution starts (see
    /// [`Source::long_from`](crate::Source::long_from)): the long mode of a
    /// bimodal distribution; the slowest 1 % of an exponential or lognormal
    /// one (its 99th percentile); `None` for fixed service (one class).
    pub fn long_from(&self) -> Option<Nanos> {
        /// The standard normal's 99th percentile.
        const Z99: f64 = 2.326_347_874_040_841;
        let ns = match *self {
            ServiceDist::Fixed(_) => return None,
            ServiceDist::Bimodal { short, long, .. } => return (long > short).then_some(long),
            ServiceDist::Exponential { mean } => mean * libm::log(100.0),
            ServiceDist::Lognormal { mean, sigma } => {
                libm::exp(libm::log(mean) - sigma * sigma / 2.0 + sigma * Z99)
            }
        };
        Some(libm::ceil(ns) as Nanos)
    }

    /// Short name for tables and file names.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceDist::Fixed(_) => "fixed",
            ServiceDist::Exponential { .. } => "exponential",
            ServiceDist::Bimodal { .. } => "bimodal",
            ServiceDist::Lognormal { .. } => "lognormal",
        }
    }
}

/// Box-Muller; one of the pair is discarded to keep the stream stateless.
fn standard_normal(rng: &mut Rng) -> f64 {
    let r = libm::sqrt(-2.0 * libm::log(rng.unit_open()));
    r * libm::cos(2.0 * core::f64::consts::PI * rng.unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empirical_mean(d: ServiceDist) -> f64 {
        let mut rng = Rng::new(3, 0);
        (0..200_000).map(|_| d.sample(&mut rng) as f64).sum::<f64>() / 200_000.0
    }

    #[test]
    fn sample_means_match() {
        for d in [
            ServiceDist::Fixed(1_000),
            ServiceDist::Exponential { mean: 1_000.0 },
            ServiceDist::BIMODAL,
            ServiceDist::Lognormal {
                mean: 1_000.0,
                sigma: 1.0,
            },
        ] {
            let m = empirical_mean(d);
            assert!(
                (m / d.mean() - 1.0).abs() < 0.05,
                "{} mean {m} vs {}",
                d.name(),
                d.mean()
            );
        }
    }

    #[test]
    fn long_class_is_the_slowest_percent() {
        for d in [
            ServiceDist::Exponential { mean: 1_000.0 },
            ServiceDist::Lognormal {
                mean: 1_000.0,
                sigma: 1.5,
            },
        ] {
            let split = d.long_from().unwrap();
            let mut rng = Rng::new(5, 0);
            let long = (0..200_000).filter(|_| d.sample(&mut rng) >= split).count();
            assert!((1_800..2_200).contains(&long), "{}: {long}", d.name());
        }
        assert_eq!(ServiceDist::BIMODAL.long_from(), Some(500_000));
        assert_eq!(ServiceDist::Fixed(7).long_from(), None);
    }

    #[test]
    fn bimodal_is_two_valued() {
        let mut rng = Rng::new(9, 0);
        let long = (0..100_000)
            .map(|_| ServiceDist::BIMODAL.sample(&mut rng))
            .inspect(|&s| assert!(s == 500 || s == 500_000))
            .filter(|&s| s == 500_000)
            .count();
        assert!((300..700).contains(&long), "{long} long tasks");
    }
}

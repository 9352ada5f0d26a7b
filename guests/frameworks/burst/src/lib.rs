//! The workload of `make bench` comparison (C), a mixed burst
//! (tools/bench/compare-c-burst): the same code on both sides, so both
//! serve the same requests at the same emulated times.
//!
//! - [`Schedule`]: a fixed, seeded arrival schedule: `count` requests,
//!   `long_per_mille` of them long (`long_work` units of work), the others
//!   short (`short_work`), with exponential gaps of mean `mean_gap_ns`
//!   (Poisson arrivals) between them. SplitMix64 and an IEEE-only
//!   logarithm: the same seed gives the same schedule on every target.
//! - [`work`]: one request's work, `units` rounds of a 64-bit LCG (a
//!   handful of instructions each, no memory traffic).
//! - [`Request`] and [`Answer`]: the messages (fixed layout, no padding).
//! - [`LatencyLine`]: the output both sides print, parsed by the compare
//!   script.
#![no_std]
#![forbid(unsafe_code)]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A request: its number and the units of work it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Request {
    pub id: u64,
    pub units: u64,
}

/// The answer: the request's number and its work's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Answer {
    pub id: u64,
    pub result: u64,
}

/// The request number that tells the server to stop (after every answer).
pub const QUIT: u64 = u64::MAX;

/// The most units a server accepts in one request (a client is not
/// trusted: a larger request is answered with [`REFUSED`] at once).
pub const MAX_UNITS: u64 = 100_000_000;

/// The result of a refused request.
pub const REFUSED: u64 = u64::MAX;

/// One request's work: `units` rounds of a 64-bit LCG, seeded by `id`.
#[inline(never)]
pub fn work(id: u64, units: u64) -> u64 {
    let mut x = id ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..units {
        x = core::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// The schedule's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub seed: u64,
    pub count: u64,
    pub short_work: u64,
    pub long_work: u64,
    /// Long requests per thousand.
    pub long_per_mille: u64,
    /// Mean gap between arrivals, emulated nanoseconds.
    pub mean_gap_ns: u64,
}

impl Params {
    /// The comparison's defaults (the compare script passes them explicitly).
    pub const DEFAULT: Params = Params {
        seed: 23,
        count: 2_000,
        short_work: 1_000,
        long_work: 50_000,
        long_per_mille: 50,
        mean_gap_ns: 40_000,
    };

    /// Reads `key=value` pairs (`seed`, `count`, `short`, `long`,
    /// `long_per_mille`, `gap_ns`) over the defaults; the error names the
    /// first bad pair.
    pub fn parse<'a>(mut arg: impl FnMut(&str) -> Option<&'a str>) -> Result<Params, &'static str> {
        let mut p = Params::DEFAULT;
        let fields: [(&str, &mut u64); 6] = [
            ("seed", &mut p.seed),
            ("count", &mut p.count),
            ("short", &mut p.short_work),
            ("long", &mut p.long_work),
            ("long_per_mille", &mut p.long_per_mille),
            ("gap_ns", &mut p.mean_gap_ns),
        ];
        for (key, slot) in fields {
            if let Some(v) = arg(key) {
                *slot = v.parse().map_err(|_| key)?;
            }
        }
        if p.count == 0 || p.count == QUIT {
            return Err("count");
        }
        if p.short_work > MAX_UNITS {
            return Err("short");
        }
        if p.long_work > MAX_UNITS {
            return Err("long");
        }
        if p.long_per_mille > 1000 {
            return Err("long_per_mille");
        }
        if p.mean_gap_ns == 0 || p.mean_gap_ns > 1_000_000_000 {
            return Err("gap_ns");
        }
        Ok(p)
    }
}

/// One arrival: when (nanoseconds after the first), whether long, its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub at_ns: u64,
    pub long: bool,
    pub units: u64,
}

/// The arrivals of [`Params`], in order.
#[derive(Clone, Debug)]
pub struct Schedule {
    p: Params,
    state: u64,
    at_ns: u64,
    n: u64,
}

impl Schedule {
    pub fn new(p: Params) -> Schedule {
        Schedule {
            p,
            state: p.seed,
            at_ns: 0,
            n: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Iterator for Schedule {
    type Item = Arrival;
    fn next(&mut self) -> Option<Arrival> {
        if self.n == self.p.count {
            return None;
        }
        if self.n > 0 {
            // Exponential gap: -ln(u) * mean, u uniform in (0, 1].
            let u = ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let gap = -ln(u) * self.p.mean_gap_ns as f64;
            self.at_ns += gap as u64;
        }
        self.n += 1;
        let long = self.next_u64() % 1000 < self.p.long_per_mille;
        Some(Arrival {
            at_ns: self.at_ns,
            long,
            units: if long {
                self.p.long_work
            } else {
                self.p.short_work
            },
        })
    }
}

/// Natural logarithm of `x` in (0, 1] with IEEE arithmetic only (no libm:
/// the same bits on every target): x = m 2^e with m in [1, 2), ln m =
/// 2 atanh((m - 1) / (m + 1)) by its series (|z| <= 1/3, error below 1e-7).
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 20.0 {
        sum += term / k;
        term *= z2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * core::f64::consts::LN_2
}

/// Formats the latencies as the lines both sides print:
/// `burst: lat s123 l4567 ...` (s: short, l: long; emulated nanoseconds
/// from the scheduled arrival to the answer's receipt), `per_line` per line.
pub struct LatencyLine;

impl LatencyLine {
    /// Calls `emit` with each line's text (no newline).
    pub fn emit(lat: &[(bool, u64)], per_line: usize, mut emit: impl FnMut(&str)) {
        let mut buf = [0u8; 1024];
        for chunk in lat.chunks(per_line.max(1)) {
            let mut w = Writer {
                buf: &mut buf,
                len: 0,
            };
            let _ = core::fmt::Write::write_str(&mut w, "burst: lat");
            for &(long, ns) in chunk {
                let _ = core::fmt::write(
                    &mut w,
                    format_args!(" {}{}", if long { 'l' } else { 's' }, ns),
                );
            }
            let len = w.len;
            emit(core::str::from_utf8(&buf[..len]).unwrap_or(""));
        }
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn ln_matches_std() {
        for &x in &[1.0, 0.5, 0.1, 1e-3, 1e-9, 0.999_999, 0.3] {
            assert!(
                (ln(x) - x.ln()).abs() < 1e-7,
                "{x}: {} vs {}",
                ln(x),
                x.ln()
            );
        }
    }

    #[test]
    fn schedule_is_seeded_and_has_the_mix_and_the_rate() {
        let p = Params {
            count: 20_000,
            ..Params::DEFAULT
        };
        let a: Vec<Arrival> = Schedule::new(p).collect();
        assert_eq!(a, Schedule::new(p).collect::<Vec<_>>());
        assert_ne!(
            a,
            Schedule::new(Params { seed: 24, ..p }).collect::<Vec<_>>()
        );
        assert_eq!(a.len(), 20_000);
        assert!(a.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
        let long = a.iter().filter(|x| x.long).count();
        assert!((800..1200).contains(&long), "{long} long of 20000");
        assert!(a
            .iter()
            .all(|x| x.units == if x.long { p.long_work } else { p.short_work }));
        let mean = a.last().unwrap().at_ns as f64 / (a.len() - 1) as f64;
        assert!(
            (mean / p.mean_gap_ns as f64 - 1.0).abs() < 0.05,
            "mean gap {mean}"
        );
    }

    #[test]
    fn params_refuse_bad_values() {
        let get = |k: &'static str, v: &'static str| move |key: &str| (key == k).then_some(v);
        assert_eq!(Params::parse(|_| None), Ok(Params::DEFAULT));
        assert_eq!(Params::parse(get("count", "0")), Err("count"));
        assert_eq!(Params::parse(get("long", "x")), Err("long"));
        assert_eq!(Params::parse(get("long", "100000001")), Err("long"));
        assert_eq!(
            Params::parse(get("long_per_mille", "1001")),
            Err("long_per_mille")
        );
        assert_eq!(Params::parse(get("gap_ns", "0")), Err("gap_ns"));
        assert_eq!(Params::parse(get("seed", "7")).map(|p| p.seed), Ok(7));
    }

    #[test]
    fn work_depends_on_id_and_units() {
        assert_ne!(work(1, 10), work(2, 10));
        assert_ne!(work(1, 10), work(1, 11));
        assert_eq!(work(5, 0), 5 ^ 0x9e37_79b9_7f4a_7c15);
    }

    #[test]
    fn latency_lines() {
        let mut out = Vec::new();
        LatencyLine::emit(&[(false, 5), (true, 70), (false, 9)], 2, |l| {
            out.push(std::string::String::from(l))
        });
        assert_eq!(out, ["burst: lat s5 l70", "burst: lat s9"]);
    }
}

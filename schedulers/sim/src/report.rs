//! The markdown tables of `docs/schedulers.md`, rendered from the sweeps'
//! results, and [`splice`], which replaces the doc's generated sections
//! (between `<!-- sim:NAME -->` and `<!-- /sim:NAME -->`) with them, so
//! every figure in those sections comes from a run of the simulator.
//!
//! A figure over several seeds reads `median (min–max)`; a single number
//! means every seed gave it.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::experiments::{
    gain, total_util, ApiSweep, CostModel, DbSweep, MessagingSweep, Policy, Setup, Target, UiSweep,
    API_SLOWDOWN_TARGET, COMMIT_BUDGET,
};
use crate::stats::{SourceStats, Spread};

/// A duration given in nanoseconds, with a unit that keeps it short.
pub fn duration(ns: f64) -> String {
    if ns.is_infinite() {
        return String::from("unfinished");
    }
    if ns.is_nan() {
        return String::from("—");
    }
    let (v, unit) = if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e3, "us")
    };
    format!("{} {unit}", sig3(v))
}

/// Three significant digits (no more decimals than that), e.g. 0.752, 3.41, 123.
fn sig3(v: f64) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3
    };
    format!("{v:.digits$}")
}

/// `median (min–max)` of a spread, each part formatted by `f`; the median
/// alone when every seed gave the same value.
pub fn spread(s: Spread, f: impl Fn(f64) -> String) -> String {
    let (med, lo, hi) = (f(s.median), f(s.min), f(s.max));
    if lo == hi {
        return med;
    }
    // A unit the three share is written once: `24.5 us (24.4–24.6)`.
    let unit = |x: &str| x.rsplit_once(' ').map(|(_, u)| String::from(u));
    match (unit(&med), unit(&lo), unit(&hi)) {
        (Some(a), Some(b), Some(c)) if a == b && b == c && a.parse::<f64>().is_err() => {
            let strip = |x: &str| String::from(&x[..x.len() - a.len() - 1]);
            format!("{med} ({}–{})", strip(&lo), strip(&hi))
        }
        _ => format!("{med} ({lo}–{hi})"),
    }
}

fn fixed(digits: usize) -> impl Fn(f64) -> String {
    move |v: f64| {
        if v.is_infinite() {
            String::from("inf")
        } else {
            format!("{v:.digits$}")
        }
    }
}

/// A sustained load of a grid from `first` to `top`: `≥ top` at the top
/// (the search found no limit), `< first` when even the first point fails.
fn load(first: f64, top: f64) -> impl Fn(f64) -> String {
    move |v: f64| {
        if v >= top - 1e-9 {
            format!("≥ {v:.2}")
        } else if v == 0.0 {
            format!("< {first:.2}")
        } else {
            format!("{v:.2}")
        }
    }
}

fn grid_load(sweep: &ApiSweep) -> impl Fn(f64) -> String {
    let first = sweep.loads.first().copied().unwrap_or(0.0);
    let top = sweep.loads.last().copied().unwrap_or(f64::INFINITY);
    load(first, top)
}

fn policy_label(p: &Policy) -> String {
    match *p {
        Policy::Fcfs => String::from("centralized FCFS"),
        Policy::PerCoreFcfs => String::from("per-core FCFS"),
        Policy::ShinjukuSq(q) => format!("Shinjuku single queue, {} us quantum", q / 1_000),
        Policy::Api(q) => format!("`api`, {} us quantum", q / 1_000),
        Policy::Ps => String::from("processor sharing, zero cost (ideal)"),
        Policy::RoundRobin(q) => format!("round-robin, {} us quantum", q / 1_000),
        Policy::Ui => String::from("`ui`"),
        Policy::Db => String::from("`db`"),
        Policy::Messaging(_) => String::from("`messaging`"),
    }
}

/// What the figures were run with.
pub fn setup(setup: &Setup, model: &CostModel) -> String {
    let c = setup.costs;
    let seeds = match (setup.seeds.first(), setup.seeds.last()) {
        (Some(a), Some(b)) if a != b => format!("seeds {a} to {b}"),
        (Some(a), _) => format!("seed {a}"),
        _ => String::from("no seed"),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Every figure below is over {} runs ({seeds}) of each point. Overheads charged on the simulated cores, \
         at {:.0} instructions per microsecond:",
        setup.seeds.len(),
        model.instructions_per_us
    );
    let _ = writeln!(out);
    let derived = model.costs();
    let count = |instructions: f64, used: u64, from: u64| {
        if used == from {
            format!("{instructions:.0}")
        } else {
            String::from("— (set on the command line)")
        }
    };
    let _ = writeln!(out, "| Overhead | Instructions | Simulated core time |");
    let _ = writeln!(out, "|---|---|---|");
    let _ = writeln!(
        out,
        "| timer tick (every `tick_at` that reaches a busy core) | {} | {} ns |",
        count(model.tick_instructions, c.tick, derived.tick),
        c.tick
    );
    let _ = writeln!(
        out,
        "| kick (every `Kick` that reaches a busy core) | {} | {} ns |",
        count(model.kick_instructions, c.kick, derived.kick),
        c.kick
    );
    let _ = writeln!(
        out,
        "| preemption, on top of its tick or kick | not measured{} | {} ns |",
        if c.preempt == derived.preempt {
            " (assumed)"
        } else {
            " (set on the command line)"
        },
        c.preempt
    );
    let _ = writeln!(out, "| dispatch | 0 | {} ns |", c.dispatch);
    out
}

/// Sustained load of each policy under both definitions of the target.
pub fn api_capacity(sweep: &ApiSweep) -> String {
    let overall = sweep.capacity(API_SLOWDOWN_TARGET, Target::Overall);
    let each = sweep.capacity(API_SLOWDOWN_TARGET, Target::EachClass);
    let fcfs = sweep
        .policies
        .iter()
        .position(|p| *p == Policy::Fcfs)
        .map(|i| Spread::of(&overall[i]).median);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Policy | Sustained load, p99 of all requests | vs FCFS (medians) | Sustained load, p99 of each class too |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (p, policy) in sweep.policies.iter().enumerate() {
        let o = Spread::of(&overall[p]);
        let e = Spread::of(&each[p]);
        let top = sweep.loads.last().copied().unwrap_or(f64::INFINITY);
        let ratio = match fcfs {
            Some(f) if f > 0.0 && o.median >= top - 1e-9 => format!("≥ {:.2}x", o.median / f),
            Some(f) if f > 0.0 => format!("{:.2}x", o.median / f),
            _ => String::from("—"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            policy_label(policy),
            spread(o, grid_load(sweep)),
            ratio,
            spread(e, grid_load(sweep))
        );
    }
    out
}

/// Per-class tails of some policies at some loads.
pub fn api_tails(sweep: &ApiSweep, policies: &[Policy], loads: &[f64]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Load | Policy | p99 slowdown, all | short p99 | long p99 | long p99.9 | long p99 slowdown |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let class =
        |s: &SourceStats, long: bool| s.classes.map(|c| if long { c.long } else { c.short });
    for &load in loads {
        let l = sweep.load_index(load);
        for policy in policies {
            let Some(p) = sweep.policies.iter().position(|x| x == policy) else {
                continue;
            };
            let nan = f64::NAN;
            let cell = |f: &dyn Fn(&SourceStats) -> f64, fmt: &dyn Fn(f64) -> String| {
                spread(sweep.spread(p, l, f), fmt)
            };
            let _ = writeln!(
                out,
                "| {:.2} | {} | {} | {} | {} | {} | {} |",
                sweep.loads[l],
                policy.name(),
                cell(&|s| s.slowdown.p99, &fixed(1)),
                cell(
                    &|s| class(s, false).map_or(nan, |c| c.latency.p99),
                    &duration
                ),
                cell(
                    &|s| class(s, true).map_or(nan, |c| c.latency.p99),
                    &duration
                ),
                cell(
                    &|s| class(s, true).map_or(nan, |c| c.latency.p999),
                    &duration
                ),
                cell(
                    &|s| class(s, true).map_or(nan, |c| c.slowdown.p99),
                    &fixed(1)
                ),
            );
        }
    }
    out
}

/// Sustained loads of every distribution, both definitions, in one table.
pub fn api_other(sweeps: &[&ApiSweep]) -> String {
    let mut out = String::new();
    let _ = write!(out, "| Policy |");
    for s in sweeps {
        let _ = write!(out, " {} |", s.dist.name());
    }
    let _ = writeln!(out);
    let _ = write!(out, "|---|");
    for _ in sweeps {
        let _ = write!(out, "---|");
    }
    let _ = writeln!(out);
    let Some(first) = sweeps.first() else {
        return out;
    };
    for (p, policy) in first.policies.iter().enumerate() {
        let _ = write!(out, "| {} |", policy.name());
        for s in sweeps {
            let o = Spread::of(&s.capacity(API_SLOWDOWN_TARGET, Target::Overall)[p]);
            let e = Spread::of(&s.capacity(API_SLOWDOWN_TARGET, Target::EachClass)[p]);
            let _ = write!(
                out,
                " {} / {} |",
                spread(o, grid_load(s)),
                spread(e, grid_load(s))
            );
        }
        let _ = writeln!(out);
    }
    out
}

/// p99 latency of some policies at some loads of one sweep.
pub fn api_latency(sweep: &ApiSweep, policies: &[Policy], loads: &[f64]) -> String {
    let mut out = String::new();
    let _ = write!(out, "| Load |");
    for p in policies {
        let _ = write!(out, " {} p99 |", p.name());
    }
    let _ = writeln!(out);
    let _ = write!(out, "|---|");
    for _ in policies {
        let _ = write!(out, "---|");
    }
    let _ = writeln!(out);
    for &load in loads {
        let l = sweep.load_index(load);
        let _ = write!(out, "| {:.2} |", sweep.loads[l]);
        for policy in policies {
            let cell = sweep
                .policies
                .iter()
                .position(|x| x == policy)
                .map_or(String::from("—"), |p| {
                    spread(sweep.spread(p, l, |s| s.latency.p99), duration)
                });
            let _ = write!(out, " {cell} |");
        }
        let _ = writeln!(out);
    }
    out
}

/// Frame misses (summed over seeds) and input misses per utilization.
pub fn ui(sweeps: &[&UiSweep], utils: &[f64]) -> String {
    let mut out = String::new();
    let _ = write!(out, "| Utilization |");
    for s in sweeps {
        for p in &s.policies {
            let _ = write!(
                out,
                " {} ({} core{}) |",
                p.name(),
                s.cores,
                if s.cores > 1 { "s" } else { "" }
            );
        }
    }
    let _ = writeln!(out);
    let _ = write!(out, "|---|");
    for s in sweeps {
        for _ in &s.policies {
            let _ = write!(out, "---|");
        }
    }
    let _ = writeln!(out);
    for &util in utils {
        let _ = write!(out, "| {util:.2} |");
        for s in sweeps {
            let Some(u) = s.utils.iter().position(|&x| libm::fabs(x - util) < 1e-9) else {
                continue;
            };
            for p in 0..s.policies.len() {
                let (mut frames, mut missed, mut worst) = (0, 0, 0);
                let mut input = Vec::new();
                for k in 0..s.seeds.len() {
                    let (f, m) = s.frames(p, u, k);
                    frames += f;
                    missed += m;
                    worst = worst.max(m);
                    input.push(s.input(p, u, k).miss_rate() * 100.0);
                }
                let input = Spread::of(&input);
                let input = if input.max == 0.0 {
                    String::from("none")
                } else {
                    format!("{} %", spread(input, fixed(1)))
                };
                let worst = if missed == 0 {
                    String::new()
                } else {
                    format!(" (worst seed {worst})")
                };
                let _ = write!(out, " {missed} / {frames}{worst}; input: {input} |");
            }
        }
        let _ = writeln!(out);
    }
    out
}

/// Input p99 latency under one policy, over every utilization up to `max`.
pub fn ui_input_p99(sweep: &UiSweep, policy: &Policy, max: f64) -> Spread {
    let p = sweep.policies.iter().position(|x| x == policy).unwrap_or(0);
    let mut all = Vec::new();
    for (u, &util) in sweep.utils.iter().enumerate() {
        if util <= max + 1e-9 {
            for k in 0..sweep.seeds.len() {
                all.push(sweep.input(p, u, k).latency.p99);
            }
        }
    }
    Spread::of(&all)
}

/// Commit and read tails, shares, against read load.
pub fn db(sweep: &DbSweep, read_loads: &[f64]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Read load | Policy | commit p99 | read p99 | background share | utilization |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for &r in read_loads {
        let Some(ri) = sweep
            .read_loads
            .iter()
            .position(|&x| libm::fabs(x - r) < 1e-9)
        else {
            continue;
        };
        for (p, policy) in sweep.policies.iter().enumerate() {
            let commit = sweep.spread(p, ri, |s| s[0].latency.p99);
            let within = if commit.max <= COMMIT_BUDGET as f64 {
                " (within budget)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {r:.1} | {} | {}{within} | {} | {} | {} |",
                policy.name(),
                spread(commit, duration),
                spread(sweep.spread(p, ri, |s| s[1].latency.p99), duration),
                spread(sweep.spread(p, ri, |s| s[2].core_share), fixed(2)),
                spread(sweep.spread(p, ri, total_util), fixed(3)),
            );
        }
    }
    out
}

/// Sustained message rates per latency bound.
pub fn messaging(sweep: &MessagingSweep, grid_top: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Latency bound (p99) | Unbatched sustained (msg/s) | `messaging` sustained (msg/s) | Gain (per seed) |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    let rate = |v: f64| {
        if v >= grid_top {
            format!("≥ {v:.0}")
        } else {
            format!("{v:.0}")
        }
    };
    for (b, &bound) in sweep.bounds.iter().enumerate() {
        let s = &sweep.sustained[b];
        let un: Vec<f64> = s.iter().map(|x| x.0).collect();
        let ba: Vec<f64> = s.iter().map(|x| x.1).collect();
        let g: Vec<f64> = s.iter().map(|x| gain(x.0, x.1)).collect();
        let _ = writeln!(
            out,
            "| {} us | {} | {} | {} |",
            bound / 1_000,
            spread(Spread::of(&un), rate),
            spread(Spread::of(&ba), rate),
            spread(Spread::of(&g), |v| format!("{v:.1}x")),
        );
    }
    out
}

/// The generated sections of `docs/schedulers.md`, in the order the host
/// runner renders them.
pub const SECTIONS: &[&str] = &[
    "setup",
    "api-bimodal-capacity",
    "api-bimodal-tails",
    "api-other",
    "api-lognormal-latency",
    "ui-1core",
    "ui-2core",
    "ui-input",
    "db",
    "messaging",
];

/// Why [`splice`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// The doc has no `<!-- sim:NAME -->` ... `<!-- /sim:NAME -->` pair for this section.
    Missing(String),
    /// The doc has a generated section nobody rendered.
    Unknown(String),
}

/// A section found in a text: NAME, the byte offset just after the opening
/// marker, the offset of the closing marker, and the offset just after it.
type Found<'a> = (&'a str, usize, usize, usize);

/// The first `<!-- sim:NAME -->` ... `<!-- /sim:NAME -->` section of `text`.
fn next_section(text: &str) -> Option<Result<Found<'_>, SpliceError>> {
    const OPEN: &str = "<!-- sim:";
    const END: &str = " -->";
    let start = text.find(OPEN)? + OPEN.len();
    let Some(name_len) = text[start..].find(END) else {
        return Some(Err(SpliceError::Unknown(String::from(&text[start..]))));
    };
    let name = &text[start..start + name_len];
    let body = start + name_len + END.len();
    let close = format!("<!-- /sim:{name} -->");
    Some(match text[body..].find(&close) {
        Some(at) => Ok((name, body, body + at, body + at + close.len())),
        None => Err(SpliceError::Missing(String::from(name))),
    })
}

/// The sections of a text made of `<!-- sim:NAME -->` ... `<!-- /sim:NAME -->`
/// pairs (the runner's `tables.md`): (NAME, body) in order.
pub fn sections(text: &str) -> Result<Vec<(String, String)>, SpliceError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(found) = next_section(rest) {
        let (name, body, close, end) = found?;
        out.push((String::from(name), String::from(rest[body..close].trim())));
        rest = &rest[end..];
    }
    Ok(out)
}

/// `doc` with the body of each `<!-- sim:NAME -->` ... `<!-- /sim:NAME -->`
/// section replaced by the text rendered for NAME. Every section of the doc
/// must be rendered and every rendered section must be in the doc.
pub fn splice(doc: &str, sections: &[(String, String)]) -> Result<String, SpliceError> {
    let mut out = String::new();
    let mut rest = doc;
    let mut seen = Vec::new();
    while let Some(found) = next_section(rest) {
        let (name, body, close, end) = found?;
        let text = sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| SpliceError::Unknown(String::from(name)))?;
        out.push_str(&rest[..body]);
        out.push('\n');
        out.push_str(text.trim_end());
        out.push('\n');
        out.push_str(&rest[close..end]);
        seen.push(String::from(name));
        rest = &rest[end..];
    }
    out.push_str(rest);
    if let Some((name, _)) = sections.iter().find(|(n, _)| !seen.contains(n)) {
        return Err(SpliceError::Missing(name.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_marked_sections() {
        let doc = "a\n<!-- sim:x -->\nold\n<!-- /sim:x -->\nb <!-- sim:y -->z<!-- /sim:y -->\n";
        let sections = [
            (String::from("x"), String::from("new x\n")),
            (String::from("y"), String::from("new y")),
        ];
        assert_eq!(
            splice(doc, &sections).unwrap(),
            "a\n<!-- sim:x -->\nnew x\n<!-- /sim:x -->\nb <!-- sim:y -->\nnew y\n<!-- /sim:y -->\n"
        );
        // Idempotent.
        let once = splice(doc, &sections).unwrap();
        assert_eq!(splice(&once, &sections).unwrap(), once);
        assert_eq!(
            splice(doc, &sections[..1]),
            Err(SpliceError::Unknown(String::from("y")))
        );
        let more = [
            sections[0].clone(),
            sections[1].clone(),
            (String::from("w"), String::new()),
        ];
        assert_eq!(
            splice(doc, &more),
            Err(SpliceError::Missing(String::from("w")))
        );
        assert_eq!(
            splice("<!-- sim:x -->open", &sections[..1]),
            Err(SpliceError::Missing(String::from("x")))
        );
        // What the runner writes to tables.md reads back as the same sections.
        let tables =
            "<!-- sim:x -->\nnew x\n<!-- /sim:x -->\n\n<!-- sim:y -->\nnew y\n<!-- /sim:y -->\n";
        let read = super::sections(tables).unwrap();
        assert_eq!(splice(doc, &read).unwrap(), once);
        assert_eq!(
            super::sections("<!-- sim:z -->\nz"),
            Err(SpliceError::Missing(String::from("z")))
        );
    }

    #[test]
    fn formats() {
        assert_eq!(duration(752.0), "0.752 us");
        assert_eq!(duration(3_410.0), "3.41 us");
        assert_eq!(duration(123_000_000.0), "123 ms");
        assert_eq!(duration(f64::INFINITY), "unfinished");
        let s = Spread {
            median: 0.76,
            min: 0.72,
            max: 0.78,
        };
        assert_eq!(spread(s, fixed(2)), "0.76 (0.72–0.78)");
        let one = Spread {
            median: 0.5,
            min: 0.5,
            max: 0.5,
        };
        assert_eq!(spread(one, fixed(2)), "0.50");
        let us = Spread {
            median: 24_500.0,
            min: 24_400.0,
            max: 24_600.0,
        };
        assert_eq!(spread(us, duration), "24.5 us (24.4–24.6)");
        let mixed = Spread {
            median: 900_000.0,
            min: 800_000.0,
            max: 1_200_000.0,
        };
        assert_eq!(spread(mixed, duration), "900 us (800 us–1.20 ms)");
    }
}

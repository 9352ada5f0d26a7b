//! `burst-bench`: the Linux side of `make bench` comparison (C); see the
//! library's documentation.
//!
//! ```text
//! burst-bench [--workers N] [--pin] [--seed S] [--count N] [--short UNITS] [--long UNITS]
//!             [--long-per-mille K] [--gap-ns NS]
//! ```
//!
//! Prints the latencies (`burst: lat s123 l4567 ...`, as the RustHallows
//! guest does), `burst: cpus C W1 W2 ...` and `burst: done N requests
//! checksum 0x... window NS ns`, or `burst: FAILED: why` and exits 1.
#![forbid(unsafe_code)]

use hallows_burst::{LatencyLine, Params};

fn usage(why: &str) -> ! {
    eprintln!(
        "burst-bench: {why}\nusage: burst-bench [--workers N] [--pin] [--seed S] [--count N] [--short UNITS] [--long UNITS] [--long-per-mille K] [--gap-ns NS]"
    );
    std::process::exit(2);
}

fn main() {
    let (mut workers, mut pin) = (2usize, false);
    let mut kv: Vec<(&'static str, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--workers" => {
                workers = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--workers needs a number"))
            }
            "--pin" => pin = true,
            "--seed" => kv.push(("seed", val())),
            "--count" => kv.push(("count", val())),
            "--short" => kv.push(("short", val())),
            "--long" => kv.push(("long", val())),
            "--long-per-mille" => kv.push(("long_per_mille", val())),
            "--gap-ns" => kv.push(("gap_ns", val())),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let params = Params::parse(|k| {
        kv.iter()
            .rev()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    })
    .unwrap_or_else(|k| usage(&format!("bad value for {k}")));
    match linux_burst_bench::run(params, workers, pin) {
        Ok(o) => {
            LatencyLine::emit(&o.latency, 8, |line| println!("{line}"));
            println!(
                "burst: cpus {}",
                o.cpus
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            println!(
                "burst: done {} requests checksum {:#018x} window {} ns",
                o.latency.len(),
                o.checksum,
                o.window_ns
            );
        }
        Err(e) => {
            println!("burst: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

//! `ipc-bench`: the Linux side of `make bench` comparison (B); see the
//! library's documentation.
//!
//! ```text
//! ipc-bench [--mode pipe|unix|tcp|futex|spin|all] [--count N] [--warmup W] [--placement pinned|unpinned|both]
//! ```
//!
//! For each mechanism it prints one line
//! `ipc-bench: MODE pinned|unpinned ok N round trips window NS ns cpus A,B checksum 0x...`
//! or `ipc-bench: MODE ... FAILED: why`, and exits 1 if any failed.
#![forbid(unsafe_code)]

use linux_ipc_bench::{run, Config, Mechanism};

fn usage(why: &str) -> ! {
    eprintln!("ipc-bench: {why}\nusage: ipc-bench [--mode pipe|unix|tcp|futex|spin|all] [--count N] [--warmup W] [--placement pinned|unpinned|both]");
    std::process::exit(2);
}

fn main() {
    let mut modes: Vec<Mechanism> = Mechanism::ALL.to_vec();
    let (mut count, mut warmup, mut pins) = (10_000u64, 100u64, vec![true]);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |what: &str| args.next().unwrap_or_else(|| usage(&format!("{a} needs {what}")));
        match a.as_str() {
            "--mode" => {
                let v = val("a mechanism");
                modes = if v == "all" {
                    Mechanism::ALL.to_vec()
                } else {
                    v.split(',').map(|m| Mechanism::parse(m).unwrap_or_else(|| usage(&format!("unknown mechanism {m}")))).collect()
                };
            }
            "--count" => count = val("a number").parse().unwrap_or_else(|_| usage("--count needs a number")),
            "--warmup" => warmup = val("a number").parse().unwrap_or_else(|_| usage("--warmup needs a number")),
            "--placement" => {
                pins = match val("pinned, unpinned or both").as_str() {
                    "pinned" => vec![true],
                    "unpinned" => vec![false],
                    "both" => vec![false, true],
                    p => usage(&format!("unknown placement {p}")),
                }
            }
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if count == 0 {
        usage("--count must be at least 1");
    }
    if modes.contains(&Mechanism::Tcp) {
        // The loopback interface is down in a fresh initramfs.
        let _ = std::process::Command::new("ifconfig").args(["lo", "127.0.0.1", "up"]).status();
    }
    let mut failed = 0;
    for (pin, mech) in pins.iter().flat_map(|&p| modes.iter().map(move |&m| (p, m))) {
        let placement = if pin { "pinned" } else { "unpinned" };
        match run(Config { mech, count, warmup, pin }) {
            Ok(o) => println!(
                "ipc-bench: {} {placement} ok {count} round trips window {} ns cpus {},{} checksum {:#018x}",
                mech.name(),
                o.window_ns,
                o.cpus.0,
                o.cpus.1,
                o.checksum
            ),
            Err(e) => {
                println!("ipc-bench: {} {placement} FAILED: {e}", mech.name());
                failed += 1;
            }
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

//! `ring-peer`: the Linux end of the ring-peer exchange (docs/linux.md,
//! "The channel program and its protocol").
//!
//! ```text
//! ring-peer [--count N] [--role initiate|respond] [--tx NAME] [--rx NAME]
//!           [--timeout-s S] [--dt DIR] [--mem FILE]
//! ```
//!
//! Finds its two channels under `DIR/hallows` (default
//! `/proc/device-tree`): the one it produces on (`--tx`, or the only one)
//! and the one it consumes (`--rx`), maps them through `FILE` (default
//! `/dev/mem`), exchanges N messages (default 100,000) and prints
//! `ring-peer: ok N messages checksum 0x...`, or `ring-peer: FAILED: ...`
//! and exits 1.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hallows_peer::{Blocked, Link, Msg, LAYOUT_HASH, MSG_SIZE};
use linux_ring_peer::dt::{self, Role};
use linux_ring_peer::mem::{self, Mapping};

struct Args {
    count: u64,
    initiate: bool,
    tx: Option<String>,
    rx: Option<String>,
    timeout: Duration,
    dt: PathBuf,
    mem: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        count: 100_000,
        initiate: true,
        tx: None,
        rx: None,
        timeout: Duration::from_secs(60),
        dt: "/proc/device-tree".into(),
        mem: "/dev/mem".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--role" => {
                a.initiate = match value()?.as_str() {
                    "initiate" => true,
                    "respond" => false,
                    r => return Err(format!("--role {r}: expected initiate or respond")),
                }
            }
            "--tx" => a.tx = Some(value()?),
            "--rx" => a.rx = Some(value()?),
            "--timeout-s" => a.timeout = Duration::from_secs(value()?.parse().map_err(|e| format!("--timeout-s: {e}"))?),
            "--dt" => a.dt = value()?.into(),
            "--mem" => a.mem = value()?.into(),
            "-h" | "--help" => {
                return Err("usage: ring-peer [--count N] [--role initiate|respond] [--tx NAME] [--rx NAME] [--timeout-s S] [--dt DIR] [--mem FILE]".into())
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(a)
}

/// Spins, then yields, then sleeps (50 us doubling to 1 ms) while idle;
/// rings the tx channel's doorbell page after each publication.
struct LinuxLink {
    doorbell: Option<Mapping>,
    timeout: Duration,
    since: Instant,
}

impl Link for LinuxLink {
    fn notify(&mut self) {
        if let Some(d) = &self.doorbell {
            d.ring();
        }
    }

    fn idle(&mut self, _why: Blocked, rounds: u64) -> bool {
        if rounds == 0 {
            self.since = Instant::now();
        }
        if rounds < 64 {
            std::hint::spin_loop();
        } else if rounds < 1024 {
            std::thread::yield_now();
        } else {
            let us = 50u64 << ((rounds - 1024) / 64).min(4);
            std::thread::sleep(Duration::from_micros(us.min(1000)));
        }
        rounds % 64 != 63 || self.since.elapsed() < self.timeout
    }
}

fn run(a: &Args) -> Result<String, String> {
    let channels = dt::channels(&a.dt).map_err(|e| e.to_string())?;
    let tx = dt::pick(&channels, Role::Producer, a.tx.as_deref())?;
    let rx = dt::pick(&channels, Role::Consumer, a.rx.as_deref())?;
    for c in [tx, rx] {
        if c.layout.slot_size() < MSG_SIZE {
            return Err(format!("channel {:?}: slots of {} bytes, the protocol's messages take {MSG_SIZE}", c.name, c.layout.slot_size()));
        }
        if c.layout_hash != 0 && c.layout_hash != LAYOUT_HASH {
            return Err(format!(
                "channel {:?}: the system records message layout hash {:#018x}, this program's is {LAYOUT_HASH:#018x}",
                c.name, c.layout_hash
            ));
        }
    }
    let describe = |c: &dt::Channel| {
        format!("{}@{:#x} ({} slots of {} bytes, {}{})", c.name, c.ipa, c.layout.slot_count(), c.layout.slot_size(), c.layout.tuning(),
            c.doorbell.map_or(String::from(", polled"), |d| format!(", doorbell {d:#x}")))
    };
    println!("ring-peer: {} {} messages: tx {}, rx {}", if a.initiate { "initiating" } else { "answering" }, a.count, describe(tx), describe(rx));
    let mut t = mem::sender::<Msg>(&a.mem, tx.ipa, tx.layout).map_err(|e| e.to_string())?;
    let mut r = mem::receiver::<Msg>(&a.mem, rx.ipa, rx.layout).map_err(|e| e.to_string())?;
    let doorbell = match tx.doorbell {
        Some(d) => Some(Mapping::doorbell(&a.mem, d).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut link = LinuxLink { doorbell, timeout: a.timeout, since: Instant::now() };
    // A new sender starts an epoch the receiver must acknowledge: wake it.
    link.notify();
    let started = Instant::now();
    let report = if a.initiate {
        hallows_peer::initiate(&mut t.endpoint, &mut r.endpoint, a.count, &mut link)
    } else {
        hallows_peer::respond(&mut r.endpoint, &mut t.endpoint, a.count, &mut link)
    }
    .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!("ring-peer: {} notifies, {} idle rounds, {secs:.3} s", report.notifies, report.idle_rounds);
    Ok(report.to_string())
}

fn main() -> ExitCode {
    let outcome = parse().and_then(|a| run(&a));
    match outcome {
        Ok(line) => {
            println!("ring-peer: {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("ring-peer: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

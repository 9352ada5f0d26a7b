//! Either end of the ring-peer exchange (`hallows_peer`, docs/linux.md):
//!
//! - `role=respond tx=NAME rx=NAME count=N`: the Rust partition a Linux
//!   partition's `ring-peer` program talks to: answers N requests from
//!   channel `rx` on channel `tx`.
//! - `role=initiate ...`: the Linux program's side, run by a Rust partition
//!   (proves the protocol between two Rust partitions).
//!
//! - `window=W` (initiator): at most W requests unanswered (default: the
//!   rings' capacity); `window=1` is the messaging bench's ping-pong.
//! - `single=1`: one message at a time (`hallows_peer::initiate_one`,
//!   `respond_one`: a one-slot reservation to send, `try_recv` to
//!   receive); the bench's ping-pong.
//! - `spin=K`: idle rounds polled before sleeping on the doorbell (default
//!   256; 0 sleeps at once).
//! - `bench_warmup=W` (initiator): prints `ring-peer: bench window NS ns
//!   for M round trips`, the monotonic clock from the W-th answer to the
//!   last (`make bench`, tools/bench/compare-b-messaging; under `-icount
//!   shift=0` one nanosecond is one instruction of the whole machine).
//!
//! Prints `ring-peer: ok N messages checksum 0x...` and exits 0, or
//! `ring-peer: FAILED: ...` and exits 1. While the peer is silent it polls,
//! then sleeps until an interrupt (its doorbell, or a 10 ms tick that
//! bounds each sleep), and gives up after `timeout_s` (default 600) seconds
//! without progress.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::time::Duration;

use hallows_peer::{Blocked, Link, Msg};
use hallows_rt::abi::call;
use hallows_rt::{channel, println, time, Boot};

hallows_rt::entry!(main);

/// Rings the outgoing channel's doorbell with the NOTIFY hypercall (the
/// endpoint itself is lent to the exchange) and idles as described above.
struct RtLink {
    /// Directory index of the outgoing channel, if it has a doorbell.
    notify: Option<u64>,
    /// Whether the incoming channel has a doorbell to sleep on.
    sleep: bool,
    timeout: Duration,
    since: Duration,
    failed_rings: u64,
    /// Idle rounds polled before sleeping.
    spin: u64,
    /// The bench window: opened at this many answers.
    warmup: Option<u64>,
    opened: Option<Duration>,
}

impl Link for RtLink {
    #[inline]
    fn notify(&mut self) {
        if let Some(i) = self.notify {
            let (r, _) = hallows_rt::raw_hypercall(call::NOTIFY, [i, 0, 0, 0, 0]);
            if (r as i64) < 0 {
                self.failed_rings += 1;
            }
        }
    }

    #[inline]
    fn idle(&mut self, why: Blocked, rounds: u64) -> bool {
        if rounds >= self.spin && why == Blocked::Incoming && self.sleep {
            time::wait_for_interrupt();
        } else {
            hallows_rt::relax();
        }
        // The clock is read only once a wait lasts (the timeout counts from
        // the 64th idle round): in a ping-pong every message waits a round
        // or two, and a clock read costs more than the round (about 40
        // instructions a message, measured by `make bench`).
        match rounds {
            63 => {
                self.since = time::now();
                true
            }
            r if r % 64 == 63 => time::now() - self.since < self.timeout,
            _ => true,
        }
    }

    fn answered(&mut self, received: u64) {
        if self.opened.is_none() && self.warmup.is_some_and(|w| received >= w) {
            self.opened = Some(time::now());
        }
    }
}

/// The directory index of channel `name` (what NOTIFY takes).
fn index_of(boot: &Boot, name: &str) -> Option<u64> {
    let info = boot.info();
    let n = (info.channel_count as usize).min(info.channels.len());
    info.channels[..n].iter().position(|c| {
        let len = c.name.iter().position(|&b| b == 0).unwrap_or(c.name.len());
        &c.name[..len] == name.as_bytes()
    }).map(|i| i as u64)
}

fn main(boot: &Boot) -> u64 {
    match run(boot) {
        Ok(()) => 0,
        // Already said (a line naming the channel or the exchange's error).
        Err(Printed) => 1,
        Err(Usage(e)) => {
            println!("ring-peer: FAILED: {e}");
            1
        }
    }
}

/// Why `run` failed: a usage error to print, or a failure it printed.
enum Failure {
    Usage(&'static str),
    Printed,
}
use Failure::{Printed, Usage};

impl From<&'static str> for Failure {
    fn from(s: &'static str) -> Failure {
        Usage(s)
    }
}

fn run(boot: &Boot) -> Result<(), Failure> {
    let initiate = match boot.arg("role") {
        Some("initiate") => true,
        Some("respond") => false,
        _ => return Err(Usage("role=initiate or role=respond expected")),
    };
    let count: u64 = boot.arg("count").map_or(Some(100_000), |s| s.parse().ok()).ok_or("count= is not a number")?;
    let timeout: u64 = boot.arg("timeout_s").map_or(Some(600), |s| s.parse().ok()).ok_or("timeout_s= is not a number")?;
    let window: Option<u64> = boot.arg("window").map(|s| s.parse().ok().filter(|&w| w > 0).ok_or("window= is not a positive number")).transpose()?;
    let single = boot.arg("single") == Some("1");
    let spin: u64 = boot.arg("spin").map_or(Some(256), |s| s.parse().ok()).ok_or("spin= is not a number")?;
    let warmup: Option<u64> = boot.arg("bench_warmup").map(|s| s.parse().ok().filter(|&w| w < count).ok_or("bench_warmup= is not a number below count=")).transpose()?;
    let (txn, rxn) = (boot.arg("tx").ok_or("tx=NAME expected")?, boot.arg("rx").ok_or("rx=NAME expected")?);
    let mut tx = channel::sender_typed::<Msg>(boot, txn, hallows_peer::LAYOUT_HASH).map_err(|e| {
        println!("ring-peer: FAILED: cannot open {txn} to send: {e}");
        Printed
    })?;
    let mut rx = channel::receiver_typed::<Msg>(boot, rxn, hallows_peer::LAYOUT_HASH).map_err(|e| {
        println!("ring-peer: FAILED: cannot open {rxn} to receive: {e}");
        Printed
    })?;
    let notify = if tx.has_doorbell() { index_of(boot, txn) } else { None };
    let sleep = rx.has_doorbell();
    if sleep {
        time::set_periodic(Some(Duration::from_millis(10)));
    }
    let mut link = RtLink { notify, sleep, timeout: Duration::from_secs(timeout), since: time::now(), failed_rings: 0, spin, warmup, opened: None };
    let report = if initiate {
        let r = if single {
            hallows_peer::initiate_one(&mut tx, &mut rx, count, &mut link)
        } else {
            let window = window.unwrap_or_else(|| hallows_peer::window(&tx, &rx));
            hallows_peer::initiate_window(&mut tx, &mut rx, count, window, &mut link)
        };
        if let (Ok(_), Some(w), Some(t0)) = (&r, warmup, link.opened) {
            println!("ring-peer: bench window {} ns for {} round trips", (time::now() - t0).as_nanos(), count - w);
        }
        r
    } else if single {
        hallows_peer::respond_one(&mut rx, &mut tx, count, &mut link)
    } else {
        hallows_peer::respond(&mut rx, &mut tx, count, &mut link)
    };
    time::set_periodic(None);
    match report {
        Ok(r) if link.failed_rings == 0 => {
            println!("ring-peer: {} {} notifies, {} idle rounds", if initiate { "initiated:" } else { "answered:" }, r.notifies, r.idle_rounds);
            println!("ring-peer: {r}");
            Ok(())
        }
        Ok(_) => {
            println!("ring-peer: FAILED: {} doorbell rings refused by the hypervisor", link.failed_rings);
            Err(Printed)
        }
        Err(e) => {
            println!("ring-peer: FAILED: {e}");
            Err(Printed)
        }
    }
}

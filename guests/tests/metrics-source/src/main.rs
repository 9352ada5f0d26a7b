//! A load generator for the dashboard (`source.pt`): `sources=N` (boot
//! argument, default 3, at most 8) simulated generators, each adding a
//! changing number of requests every `period_ms` (default 100) unless
//! paused, publish `Metrics` on "metrics"; `Control` messages on
//! "control" pause and resume them (each change is printed, so a test
//! sees the dashboard's click reach this partition). Runs until stopped,
//! or for `ticks=N` periods.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::time::Duration;

use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// Generated from `source.pt` by the build script.
#[allow(dead_code)]
mod source {
    include!(concat!(env!("OUT_DIR"), "/source.rs"));
}

const MAX_SOURCES: usize = 8;

struct Generators {
    count: usize,
    paused: [bool; MAX_SOURCES],
    /// Pause/resume requests that named no generator.
    refused: u64,
}

impl source::Handlers for Generators {
    type Endpoints = Boot;
    fn on_control(&mut self, message: source::Control, _send: &mut source::Senders<Boot>) {
        // The dashboard is another partition: its index is checked.
        let i = message.source as usize;
        if i >= self.count {
            self.refused += 1;
            return;
        }
        let paused = message.paused.get();
        if self.paused[i] != paused {
            self.paused[i] = paused;
            println!("metrics-source: source {i} {}", if paused { "paused" } else { "resumed" });
        }
    }
}

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    hallows_rt::task::run(boot, generate(b))
}

async fn generate(boot: Boot) -> u64 {
    let count = boot.arg("sources").and_then(|s| s.parse::<usize>().ok()).unwrap_or(3).clamp(1, MAX_SOURCES);
    let period = Duration::from_millis(boot.arg("period_ms").and_then(|s| s.parse().ok()).unwrap_or(100).max(1));
    let ticks: Option<u64> = boot.arg("ticks").and_then(|s| s.parse().ok());
    let mut svc = match source::Service::connect(Generators { count, paused: [false; MAX_SOURCES], refused: 0 }, &boot) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    println!("metrics-source: {count} sources every {} ms", period.as_millis());
    let mut requests = [0u64; MAX_SOURCES];
    let mut seed: u32 = 0x2545_f491;
    let mut next = time::now();
    let mut seq = 0u64;
    while ticks.is_none_or(|t| seq < t) {
        svc.turn(time::now_nanos());
        for (i, total) in requests.iter_mut().enumerate().take(count) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let paused = svc.handlers.paused[i];
            // A rate that wanders around a per-source level.
            let rate = if paused { 0 } else { (200 + 300 * i as u32) + seed % (100 + 50 * i as u32) };
            *total += rate as u64;
            let m = source::Metrics::new(i as u32, paused.into(), seq, *total, rate);
            // A full ring (the dashboard is behind): drop this sample, the
            // next one carries the running total.
            let _ = svc.send.metrics.try_send(&m);
        }
        seq += 1;
        next += period;
        time::sleep_until(next).await;
    }
    println!("metrics-source: {seq} ticks, {} refused controls", svc.handlers.refused);
    0
}

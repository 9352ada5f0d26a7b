//! Runtime test guest (both architectures). `test=` picks what it checks:
//!
//! * `ticks period_us=N ms=M`: every core of the partition takes a periodic
//!   timer interrupt every N µs for M ms and reports how many arrived
//!   (`core C: K ticks in T us`); exits 1 if any core took more than 10%
//!   too many, or fewer than half: a fire late by a whole period (the
//!   emulator's vCPU thread starved by a loaded host) drops the periods it
//!   overran, by the timer hypercall's rule (`next_periodic_deadline`).
//! * `count ticks=N period_us=P`: one core takes exactly N periodic timer
//!   interrupts, sleeping in between (the EL2-cost measurement).
//! * `count-busy ticks=N period_us=P`: the same, but the core computes
//!   (interrupts open, in a preemptible task) instead of sleeping: the
//!   interrupt's cost alone, without the idle wait's.
//! * `preempt`: a long computation (a preemptible task, 400 ms) and, after
//!   it, a short async task that sleeps 5 ms; the short one must finish
//!   long before the long one (one core: only preemption allows it).
//! * `echo-client count=N` / `echo-server`: async channel waits. The client
//!   sends N numbers over channel `request` (awaiting `send`), awaits each
//!   doubled answer on `reply` (`recv`: the task sleeps until the doorbell)
//!   and sleeps 1 ms between round trips; then `u64::MAX` ends the server.
//! * `alloc`: `Vec`, `BTreeMap`, `String`, `Box<dyn Fn>` on the heap.
//! * `overflow`: 48 tasks spawned at once under a FIFO policy whose queue
//!   holds 4: the policy refuses most arrivals, and every task must still
//!   run (the runtime keeps refused tasks in line and offers them again).
//! * `parallel rounds=R`: `task::parallel_for` from an async task, R
//!   rounds of 64 tasks over data borrowed from the round's own frame
//!   (freed when the round ends): every task must run exactly once and
//!   see its data, the caller must return only after all have run, and
//!   on a partition of several cores some tasks must run on another
//!   core; prints `parallel: ...` and exits 1 otherwise.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

fn main(boot: &Boot) -> u64 {
    let test = boot.arg("test").unwrap_or("alloc");
    let arg = |k: &str, d: u64| boot.arg(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (heap_start, heap_size) = hallows_rt::mm::heap_range();
    log::debug!("heap {heap_start:#x} + {heap_size:#x}, {} core(s)", boot.vcpu_count());
    match test {
        "ticks" => tests::ticks(boot, arg("period_us", 1000), arg("ms", 200)),
        "count" => tests::count(boot, arg("ticks", 100), arg("period_us", 1000)),
        "count-busy" => tests::count_busy(boot, arg("ticks", 100), arg("period_us", 1000)),
        "preempt" => tests::preempt(boot),
        "alloc" => tests::alloc(),
        "overflow" => tests::overflow(boot),
        "parallel" => tests::parallel(boot, arg("rounds", 200)),
        "echo-client" => tests::echo_client(boot, arg("count", 100)),
        "echo-server" => tests::echo_server(boot),
        other => {
            println!("unknown test {other}");
            2
        }
    }
}

mod tests {
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::fmt::Write;
    use core::time::Duration;

    use hallows_rt::task::{self, spawn, spawn_preemptible};
    use hallows_rt::time::{self, now};
    use hallows_rt::{println, Boot};

    /// One preemptible task per core, each measuring its own core's ticks.
    pub fn ticks(boot: &Boot, period_us: u64, ms: u64) -> u64 {
        let cores = boot.vcpu_count() as usize;
        // Run to completion (quantum 0 in the manifest): each task keeps its core.
        let results = task::run(boot, async move {
            let handles: Vec<_> = (0..cores)
                .map(|_| {
                    spawn_preemptible(move || {
                        let core = task::current_core();
                        let t0 = now();
                        let k0 = time::ticks();
                        time::set_periodic(Some(Duration::from_micros(period_us)));
                        time::spin_for(Duration::from_millis(ms));
                        let k = time::ticks() - k0;
                        time::set_periodic(None);
                        (core, k, (now() - t0).as_micros() as u64)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await);
            }
            out
        });
        let mut status = 0;
        let mut seen = Vec::new();
        for (core, k, us) in results {
            let expected = us / period_us;
            println!("core {core}: {k} ticks in {us} us (expected {expected})");
            if k * 2 < expected || k * 10 > expected * 11 {
                status = 1;
            }
            seen.push(core);
        }
        seen.sort();
        seen.dedup();
        println!("ticks measured on {} core(s)", seen.len());
        if seen.len() != cores {
            status = 1;
        }
        status
    }

    /// Exactly `n` periodic ticks on this core, asleep (`wfi`) in
    /// between: every timer interrupt is a tick (no executor, no sleepers).
    pub fn count(_boot: &Boot, n: u64, period_us: u64) -> u64 {
        let k0 = time::ticks();
        time::set_periodic(Some(Duration::from_micros(period_us)));
        while time::ticks() - k0 < n {
            time::wait_for_interrupt();
        }
        time::set_periodic(None);
        let k = time::ticks() - k0;
        println!("took {k} ticks ({} timer interrupts)", time::interrupts());
        (k != n) as u64
    }

    /// Exactly `n` periodic ticks on this core while it computes
    /// (interrupts open), so that nothing but the tick leaves the guest.
    pub fn count_busy(boot: &Boot, n: u64, period_us: u64) -> u64 {
        let (k, irqs) = task::run(boot, async move {
            spawn_preemptible(move || {
                let k0 = time::ticks();
                time::set_periodic(Some(Duration::from_micros(period_us)));
                while time::ticks() - k0 < n {
                    hallows_rt::relax();
                }
                time::set_periodic(None);
                (time::ticks() - k0, time::interrupts())
            })
            .await
        });
        println!("took {k} ticks ({irqs} timer interrupts) while busy");
        (k != n) as u64
    }

    pub fn echo_client(boot: &Boot, n: u64) -> u64 {
        let b = boot.clone();
        let r = task::run(boot, async move {
            let mut tx = hallows_rt::channel::sender::<u64>(&b, "request").map_err(|e| alloc::format!("request: {e:?}"))?;
            let mut rx = hallows_rt::channel::receiver::<u64>(&b, "reply").map_err(|e| alloc::format!("reply: {e:?}"))?;
            let t0 = now();
            let mut seen = BTreeMap::new();
            for i in 0..n {
                tx.send(&i).await.map_err(|e| alloc::format!("send {i}: {e}"))?;
                let got = rx.recv().await.map_err(|e| alloc::format!("recv {i}: {e}"))?;
                if got != 2 * i {
                    return Err(alloc::format!("answer {got} to {i}"));
                }
                seen.insert(i, got);
                time::sleep(Duration::from_millis(1)).await;
            }
            tx.send(&u64::MAX).await.map_err(|e| alloc::format!("end: {e}"))?;
            Ok((seen.len(), (now() - t0).as_millis()))
        });
        match r {
            Ok((k, ms)) => {
                // At least 1 ms asleep per round trip.
                println!("echo: {k} round trips answered, {}", if ms as u64 >= n { "slept between them" } else { "too fast" });
                ((ms as u64) < n) as u64
            }
            Err(e) => {
                println!("echo failed: {e}");
                1
            }
        }
    }

    pub fn echo_server(boot: &Boot) -> u64 {
        let b = boot.clone();
        let r = task::run(boot, async move {
            let mut rx = hallows_rt::channel::receiver::<u64>(&b, "request").map_err(|e| alloc::format!("request: {e:?}"))?;
            let mut tx = hallows_rt::channel::sender::<u64>(&b, "reply").map_err(|e| alloc::format!("reply: {e:?}"))?;
            let mut n = 0u64;
            loop {
                match rx.recv().await {
                    Ok(u64::MAX) => return Ok(n),
                    Ok(v) => {
                        tx.send(&(2 * v)).await.map_err(|e| alloc::format!("send: {e}"))?;
                        n += 1;
                    }
                    // The client's sender attaching: not a message.
                    Err(hallows_rt::channel::RingError::PeerRestarted) => {}
                    Err(e) => return Err(alloc::format!("recv: {e}")),
                }
            }
        });
        match r {
            Ok(n) => {
                println!("echo server answered {n}");
                0
            }
            Err(e) => {
                println!("echo server failed: {e}");
                1
            }
        }
    }

    pub fn preempt(boot: &Boot) -> u64 {
        let (long_end, short_end, start) = task::run(boot, async {
            let start = now();
            let long = spawn_preemptible(|| {
                // A computation that never yields: 400 ms of work.
                let mut x = 0u64;
                let end = now() + Duration::from_millis(400);
                while now() < end {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                }
                core::hint::black_box(x);
                now()
            });
            let short = spawn(async {
                time::sleep(Duration::from_millis(5)).await;
                now()
            });
            let short_end = short.await;
            let long_end = long.await;
            (long_end, short_end, start)
        });
        let short_ms = (short_end - start).as_millis();
        let long_ms = (long_end - start).as_millis();
        println!("short task done after {short_ms} ms, long task after {long_ms} ms");
        if short_end < long_end && short_ms < 200 {
            println!("the short task was not blocked by the long one");
            0
        } else {
            1
        }
    }

    pub fn overflow(boot: &Boot) -> u64 {
        let policy = match hallows_sched::Fifo::<4>::new(hallows_sched::FifoConfig { cores: 1, quantum: None }) {
            Ok(p) => p,
            Err(e) => {
                println!("overflow: policy refused: {e:?}");
                return 1;
            }
        };
        let sum = task::run_with(boot, Box::new(policy), async {
            let handles: Vec<_> = (0..48u64)
                .map(|i| {
                    spawn(async move {
                        time::sleep(Duration::from_millis(1 + i % 3)).await;
                        i
                    })
                })
                .collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await;
            }
            sum
        });
        if sum == (0..48).sum::<u64>() {
            println!("overflow: 48 tasks through a queue of 4, all done");
            0
        } else {
            println!("overflow: sum {sum}");
            1
        }
    }

    pub fn alloc() -> u64 {
        let mut v: Vec<u64> = (0..10_000).collect();
        v.retain(|x| x % 3 == 0);
        let sum: u64 = v.iter().sum();
        let mut m = BTreeMap::new();
        for i in 0..1000u32 {
            m.insert((i * 7919) % 1000, i);
        }
        let mut s = String::new();
        for (k, _) in m.iter().take(5) {
            let _ = write!(s, "{k},");
        }
        let f: Box<dyn Fn(u64) -> u64> = Box::new(move |x| x + sum);
        let big: Vec<u8> = alloc::vec![7u8; 1 << 20];
        println!(
            "vec sum {sum}, map {} keys, first {s} closure {}, 1 MiB block sum {}, heap in use {} bytes",
            m.len(),
            f(1),
            big.iter().map(|&b| b as u64).sum::<u64>(),
            hallows_rt::mm::heap_used()
        );
        let ok = sum == 16_668_333 && m.len() == 1000 && s == "0,1,2,3,4," && f(1) == 16_668_334;
        println!("alloc {}", if ok { "ok" } else { "WRONG" });
        (!ok) as u64
    }

    pub fn parallel(boot: &Boot, rounds: u64) -> u64 {
        use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
        const N: usize = 64;
        let helpers = (boot.vcpu_count() as usize).saturating_sub(1);
        let (bad, elsewhere, on_other) = task::run(boot, async move {
            let (mut bad, mut elsewhere) = (0u64, 0usize);
            let other = AtomicU32::new(0);
            let caller = task::current_core();
            for r in 0..rounds {
                // Borrowed by the closure, dropped at the end of the round.
                let data: Vec<u64> = (0..N as u64).map(|i| i * 1000 + r).collect();
                let runs: Vec<AtomicU32> = (0..N).map(|_| AtomicU32::new(0)).collect();
                let out: Vec<AtomicU64> = (0..N).map(|_| AtomicU64::new(0)).collect();
                elsewhere += task::parallel_for(N, helpers, &|i| {
                    // Some work, so that a helper gets a share.
                    time::spin_for(Duration::from_micros(20));
                    runs[i].fetch_add(1, Ordering::Relaxed);
                    out[i].store(data[i] * 3, Ordering::Relaxed);
                    if task::current_core() != caller {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                });
                for i in 0..N {
                    if runs[i].load(Ordering::Relaxed) != 1 || out[i].load(Ordering::Relaxed) != data[i] * 3 {
                        bad += 1;
                    }
                }
            }
            (bad, elsewhere, other.load(Ordering::Relaxed))
        });
        println!("parallel: {rounds} rounds of {N} tasks on {} core(s): {bad} wrong, {elsewhere} run by helpers, {on_other} on another core", helpers + 1);
        let ok = bad == 0 && (helpers == 0 || (elsewhere > 0 && on_other > 0));
        (!ok) as u64
    }
}

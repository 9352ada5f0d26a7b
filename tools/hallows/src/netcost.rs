//! `hallows net-cost`: instructions per keep-alive HTTP request, for the
//! hypervisor (EL2) and for the guest that serves the request, split by
//! the part of the stack that ran them.
//!
//! Method: the system runs under QEMU with every instruction in the
//! measured ranges logged (`-singlestep -d exec,nochain -dfilter`, each
//! line naming the core that ran it). The tool sends `base` keep-alive
//! requests on one connection, then `base + n` in a second run of the same
//! system, and reports the difference divided by `n`: boot, the readiness
//! probe and the connection's set-up and tear-down cancel out. Idle time
//! does not: a poll-mode partition spins while it waits for the client, so
//! its *guest* count grows with wall time (measure the guest's cost in
//! interrupt mode, where an idle core sleeps); the hypervisor count of a
//! poll-mode partition is exact either way, since the spin never traps.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmm_config::System;

use crate::qemu;

/// Where the guest's instructions went.
pub const PARTS: &[&str] = &["driver (virtio)", "tcp/ip (smoltcp)", "net glue (hallows-net)", "gateway link", "runtime", "library (core/alloc)", "application", "other"];

fn part_of(symbol: &str) -> usize {
    let s = symbol.trim_start_matches('<').trim_start_matches('&');
    let first = s.split("::").next().unwrap_or("");
    match first {
        "virtio_drivers" => 0,
        "smoltcp" => 1,
        "hallows_net" => 2,
        "hallows_link" | "hallows_ring" => 3,
        "hallows_rt" | "hallows_sched" | "buddy_system_allocator" | "spin" => 4,
        "core" | "alloc" | "compiler_builtins" | "memcpy" | "memset" | "memmove" | "memcmp" | "bcmp" => 5,
        "?" | "" => 7,
        _ => 6,
    }
}

/// Instructions of one traced run.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Hypervisor instructions, all cores.
    pub el2: u64,
    /// Guest instructions of each measured partition, by [`PARTS`].
    pub guest: Vec<[u64; 8]>,
}

/// One partition whose guest instructions are counted.
pub struct Measured {
    pub name: String,
    /// Its board cores (QEMU CPU indices).
    pub cores: Vec<usize>,
    /// Its guest's code.
    pub text: Range<u64>,
    /// Its guest's symbols, sorted by address, demangled.
    pub symbols: Vec<(u64, String)>,
}

/// What to measure: the hypervisor image and the partitions that serve.
pub struct Target<'a> {
    pub hv: Range<u64>,
    pub partitions: Vec<Measured>,
    pub host_port: u16,
    pub path: &'a str,
}

/// Sends `n` GET requests on one keep-alive connection and reads each
/// response whole (by its Content-Length).
pub fn keep_alive_requests(port: u16, path: &str, n: u64) -> Result<()> {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_nodelay(true)?;
    let mut r = std::io::BufReader::new(s.try_clone()?);
    for i in 0..n {
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!("request {i}: {line:?}");
        }
        let mut len = 0usize;
        loop {
            line.clear();
            r.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().context("Content-Length")?;
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
    }
    Ok(())
}

/// Boots `image` with the measured ranges traced, waits for the service
/// to answer, sends `n` keep-alive requests, stops the machine and counts.
pub fn traced_run(sys: &System, image: &Path, t: &Target<'_>, n: u64) -> Result<Counts> {
    let log = image.with_extension(format!("net{n}.log"));
    let mut filter = vec![format!("{:#x}+{:#x}", t.hv.start, t.hv.end - t.hv.start)];
    filter.extend(t.partitions.iter().map(|m| format!("{:#x}+{:#x}", m.text.start, m.text.end - m.text.start)));
    let extra: Vec<String> = vec![
        "-singlestep".into(),
        "-d".into(),
        "exec,nochain".into(),
        "-dfilter".into(),
        filter.join(","),
        "-D".into(),
        log.display().to_string(),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, system, img) = (stop.clone(), sys.clone(), image.to_path_buf());
    let machine = std::thread::spawn(move || qemu::run_until(&system, &img, Some(Duration::from_secs(900)), &flag, true, &extra));
    let deadline = Instant::now() + Duration::from_secs(600);
    let answered = {
        let give_up = AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                while Instant::now() < deadline && !machine.is_finished() && !give_up.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(200));
                }
                give_up.store(true, Ordering::Release);
            });
            let ok = qemu::wait_for_answer(t.host_port, &give_up);
            give_up.store(true, Ordering::Release);
            ok
        })
    };
    let sent = if answered { keep_alive_requests(t.host_port, t.path, n) } else { Err(anyhow::anyhow!("the service never answered")) };
    // Let the last ACKs and timers settle the same way in every run.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let out = machine.join().map_err(|_| anyhow::anyhow!("QEMU thread panicked"))??;
    if let Err(e) = sent {
        let _ = std::fs::remove_file(&log);
        bail!("{e:#}\n{}", out.output);
    }
    let counts = count(&log, t);
    let _ = std::fs::remove_file(&log);
    counts
}

fn count(log: &Path, t: &Target<'_>) -> Result<Counts> {
    let file = std::fs::File::open(log).with_context(|| format!("reading {}", log.display()))?;
    let mut c = Counts { el2: 0, guest: vec![[0; 8]; t.partitions.len()] };
    let mut by_pc: Vec<HashMap<u64, u64>> = vec![HashMap::new(); t.partitions.len()];
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Some(rest) = line.strip_prefix("Trace ") else { continue };
        let Some((cpu, rest)) = rest.split_once(':') else { continue };
        let (Ok(cpu), Some(pc)) = (
            cpu.parse::<usize>(),
            rest.split_once('[').and_then(|(_, f)| f.split('/').nth(1)).and_then(|p| u64::from_str_radix(p, 16).ok()),
        ) else {
            continue;
        };
        if t.hv.contains(&pc) {
            c.el2 += 1;
        } else if let Some(i) = t.partitions.iter().position(|m| m.cores.contains(&cpu) && m.text.contains(&pc)) {
            *by_pc[i].entry(pc).or_default() += 1;
        }
    }
    for (i, m) in t.partitions.iter().enumerate() {
        for (pc, n) in &by_pc[i] {
            let k = m.symbols.partition_point(|(a, _)| a <= pc);
            let name = if k == 0 { "?" } else { m.symbols[k - 1].1.as_str() };
            c.guest[i][part_of(name)] += n;
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_fall_into_their_part_of_the_stack() {
        assert_eq!(PARTS[part_of("<smoltcp::iface::interface::Interface>::poll")], "tcp/ip (smoltcp)");
        assert_eq!(PARTS[part_of("virtio_drivers::device::net::dev_raw::VirtIONetRaw<H,T,_>::receive_begin")], "driver (virtio)");
        assert_eq!(PARTS[part_of("hallows_rt::task::run_loop")], "runtime");
        assert_eq!(PARTS[part_of("memcpy")], "library (core/alloc)");
        assert_eq!(PARTS[part_of("web::http::parse")], "application");
        assert_eq!(PARTS[part_of("?")], "other");
    }
}

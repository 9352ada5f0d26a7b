//! `hallows linux-cost`: EL2 instructions per Linux timer tick and per IPI
//! between a Linux partition's vCPUs, and the number of traps of each
//! kind, in a window Linux's init chooses (docs/linux.md, "Measured").
//!
//! Tracing a whole Linux boot instruction by instruction takes far longer
//! than the boot (about 770 million instructions), so the machine boots
//! untraced. QEMU starts with the hypervisor's text as its log filter
//! (`-dfilter`) and a log file, logging off, and a QMP socket that only
//! this tool holds (a Unix socket under `target/hallows/qmp/`; no
//! partition can reach QMP). Linux's init, in `hallows.test=cost` mode,
//! prints `hallows-cost: trace on`; the tool then turns on one instruction
//! per block and the execution log (`singlestep on`, `log exec,nochain`),
//! so every hypervisor instruction from then on is logged with the core
//! that ran it. Init waits a second, runs its windows (a busy loop pinned
//! to each CPU: periodic ticks; two processes on CPUs 0 and 1 passing a
//! line back and forth over FIFOs: reschedule IPIs), prints its own
//! `/proc/interrupts` deltas for each, and `hallows-cost: trace off`, on
//! which the tool turns both off again.
//!
//! The trace is cut into traps, per core: a trap starts at one of the
//! lower-EL vector entries (`el2_vectors` + 0x400, 0x480, 0x500, 0x580)
//! and runs to the `eret` before the next; what it is follows from the
//! functions it ran (the DWARF's inlined functions: the emulation is
//! inlined into `rust_trap_lower` and `rust_irq_lower`), checked in the
//! order of [`KINDS`]. So the cost of a tick or an IPI does not depend on
//! when the tool turned the trace on or off: only the traps it cut at
//! either end are incomplete, and they are left out and reported. Linux's
//! counts cross-check the trace: it must hold at least as many timer
//! interrupts and IPIs as Linux counted in its windows, or the trace missed
//! part of them (the tool then fails).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmm_config::System;

use crate::{image, qemu, qmp, symbolize};

/// The line init prints before its windows.
pub const TRACE_ON: &str = "hallows-cost: trace on";
/// The line init prints after them.
pub const TRACE_OFF: &str = "hallows-cost: trace off";

/// The kinds of trap, each named by a function (a path suffix) that a trap
/// of that kind runs and the earlier kinds' traps do not; tried in order.
/// Every function named here must be in the hypervisor's DWARF or symbol
/// table (checked: a renamed function is an error, not a silent
/// "other").
pub const KINDS: &[(&str, &str)] = &[
    ("vdev::send_sgi", "IPI sent: ICC_SGI1R_EL1 trapped, SGI made pending, doorbell SGI to the target's core"),
    ("timer_forward", "timer interrupt, forwarded in the vector (a list-register write)"),
    ("gic::release_held", "maintenance interrupt (list registers were full)"),
    ("vdev::deliver_sgis", "IPI received: doorbell SGI, the virtual SGI put in a list register"),
    ("gic::forward", "interrupt forwarded in Rust (timer without a free list register, or a device's)"),
    ("vdev::uart", "console output (emulated PL011)"),
    ("vdev::mmio", "other emulated device access (GIC distributor, redistributor, doorbell page)"),
    ("vdev::sysreg", "other trapped system register"),
];
/// A synchronous trap of none of [`KINDS`].
pub const OTHER_SYNC: &str = "other synchronous trap (hypercall, PSCI call, fault)";
/// An interrupt of none of [`KINDS`].
pub const OTHER_IRQ: &str = "other interrupt";

const SENT: usize = 0;
const TIMER: usize = 1;
const RECEIVED: usize = 3;
const TIMER_SLOW: usize = 4;

/// `eret`.
const ERET: u32 = 0xd69f_03e0;

/// Traps of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindCount {
    pub traps: u64,
    pub instructions: u64,
    pub min: u64,
    pub max: u64,
}

impl KindCount {
    fn add(&mut self, n: u64) {
        self.min = if self.traps == 0 { n } else { self.min.min(n) };
        self.max = self.max.max(n);
        self.traps += 1;
        self.instructions += n;
    }

    /// Instructions per trap.
    pub fn mean(&self) -> f64 {
        if self.traps == 0 {
            0.0
        } else {
            self.instructions as f64 / self.traps as f64
        }
    }
}

/// The traced traps on the measured cores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traps {
    /// Per entry of [`KINDS`], then [`OTHER_SYNC`], then [`OTHER_IRQ`].
    pub kinds: Vec<KindCount>,
    /// Traps the trace's ends cut (no vector entry at their start, or no
    /// `eret` at their end), and their instructions: left out.
    pub cut: (u64, u64),
    /// Blocks QEMU logged twice in a row, having left the first without
    /// running it (see [`crate::trace`]): counted once; and repeats at
    /// addresses whose code the tool does not have, kept.
    pub repeats: u64,
    pub unknown: u64,
    /// Per kind, instructions by the innermost function that ran them.
    pub functions: Vec<HashMap<String, u64>>,
}

/// What the trace is cut and classified by: the hypervisor's vector
/// table, its instructions, and the functions each address is in.
pub struct Classifier {
    vectors: u64,
    /// Per instruction address: which of [`KINDS`] it belongs to (the
    /// first whose function it is in), if any.
    kind_of: HashMap<u64, Option<usize>>,
    /// Per instruction address: the innermost function it is in (an index
    /// into `names`).
    innermost: HashMap<u64, usize>,
    names: Vec<String>,
    erets: std::collections::HashSet<u64>,
}

impl Classifier {
    /// From the hypervisor's ELF: `el2_vectors`, the `eret`s in its text,
    /// and for each address in `addresses` the kind its functions (the
    /// DWARF's inline chain, else the symbol it follows) name.
    pub fn new(elf: &image::Elf, dwarf: Option<&symbolize::Symbolizer>, addresses: impl IntoIterator<Item = u64>) -> Result<Classifier> {
        let vectors = elf.symbol("el2_vectors").context("the hypervisor has no `el2_vectors` symbol")?;
        let text = text_range(elf)?;
        let symbols = crate::cost::symbols_in(elf, &text);
        let mut erets = std::collections::HashSet::new();
        for seg in &elf.segments {
            for (i, w) in seg.data.chunks_exact(4).enumerate() {
                if u32::from_le_bytes([w[0], w[1], w[2], w[3]]) == ERET {
                    erets.insert(seg.addr + 4 * i as u64);
                }
            }
        }
        let functions = |pc: u64| -> Vec<String> {
            let mut names = dwarf.map(|d| d.inlined_functions(pc)).unwrap_or_default();
            let i = symbols.partition_point(|(a, _)| *a <= pc);
            if i > 0 {
                names.push(symbols[i - 1].1.clone());
            }
            names
        };
        let (mut kind_of, mut innermost, mut names) = (HashMap::new(), HashMap::new(), Vec::<String>::new());
        let mut index: HashMap<String, usize> = HashMap::new();
        for pc in addresses {
            if kind_of.contains_key(&pc) {
                continue;
            }
            let fns = functions(pc);
            kind_of.insert(pc, KINDS.iter().position(|(f, _)| fns.iter().any(|n| names_function(n, f))));
            let inner = fns.into_iter().next().unwrap_or_else(|| "?".into());
            let i = *index.entry(inner.clone()).or_insert_with(|| {
                names.push(inner);
                names.len() - 1
            });
            innermost.insert(pc, i);
        }
        Ok(Classifier { vectors, kind_of, innermost, names, erets })
    }

    /// Whether every function [`KINDS`] names is somewhere in the
    /// hypervisor (its DWARF or symbols); the missing ones otherwise.
    pub fn missing_functions(elf: &image::Elf, dwarf: Option<&symbolize::Symbolizer>) -> Result<Vec<&'static str>> {
        let text = text_range(elf)?;
        let mut seen: Vec<bool> = vec![false; KINDS.len()];
        let symbols = crate::cost::symbols_in(elf, &text);
        for (_, name) in &symbols {
            for (k, (f, _)) in KINDS.iter().enumerate() {
                seen[k] |= names_function(name, f);
            }
        }
        if let Some(d) = dwarf {
            for pc in (text.start..text.end).step_by(4) {
                if seen.iter().all(|&s| s) {
                    break;
                }
                for name in d.inlined_functions(pc) {
                    for (k, (f, _)) in KINDS.iter().enumerate() {
                        seen[k] |= names_function(&name, f);
                    }
                }
            }
        }
        Ok(KINDS.iter().zip(seen).filter(|(_, s)| !s).map(|((f, _), _)| *f).collect())
    }

    /// The lower-EL vector entry `pc` is: 0 synchronous, 1 IRQ, 2 FIQ,
    /// 3 SError.
    fn entry(&self, pc: u64) -> Option<usize> {
        let off = pc.checked_sub(self.vectors)?;
        ((0x400..0x600).contains(&off) && off % 0x80 == 0).then(|| ((off - 0x400) / 0x80) as usize)
    }

    /// Cuts `trace` (one core's instructions that ran, in order: see
    /// [`read_trace`]) into traps and adds each to `traps`.
    pub fn count(&self, trace: &[u64], traps: &mut Traps) {
        if traps.kinds.is_empty() {
            traps.kinds = vec![KindCount::default(); KINDS.len() + 2];
            traps.functions = vec![HashMap::new(); KINDS.len() + 2];
        }
        let mut start = 0;
        while start < trace.len() {
            let end = (start + 1..trace.len()).find(|&i| self.entry(trace[i]).is_some()).unwrap_or(trace.len());
            let trap = &trace[start..end];
            let n = trap.len() as u64;
            match (self.entry(trap[0]), trap.last().is_some_and(|pc| self.erets.contains(pc))) {
                (Some(entry), true) => {
                    let kind = trap.iter().filter_map(|pc| self.kind_of.get(pc).copied().flatten()).min();
                    let k = kind.unwrap_or(if entry == 0 { KINDS.len() } else { KINDS.len() + 1 });
                    traps.kinds[k].add(n);
                    for pc in trap {
                        let f = self.innermost.get(pc).map_or("?", |&i| self.names[i].as_str());
                        *traps.functions[k].entry(f.to_owned()).or_default() += 1;
                    }
                }
                _ => {
                    traps.cut.0 += 1;
                    traps.cut.1 += n;
                }
            }
            start = end;
        }
    }
}

/// Whether `name` (a demangled path, or a bare DWARF name) is the function
/// `f` (a path suffix such as `vdev::send_sgi`).
fn names_function(name: &str, f: &str) -> bool {
    name == f || name.ends_with(&format!("::{f}")) || f.rsplit("::").next() == Some(name) && !f.contains("::")
}

/// The hypervisor's text: the loaded segment that holds `el2_vectors`.
pub fn text_range(elf: &image::Elf) -> Result<Range<u64>> {
    let v = elf.symbol("el2_vectors").context("the hypervisor has no `el2_vectors` symbol")?;
    elf.segments
        .iter()
        .map(|s| s.addr..s.addr + s.mem_size)
        .find(|r| r.contains(&v))
        .context("`el2_vectors` is in no loaded segment of the hypervisor")
}

/// One of init's windows: `hallows-cost: window NAME PARAMS timer=A,B
/// ipi=C,D` (Linux's `/proc/interrupts` deltas per vCPU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub name: String,
    /// What the window ran (`seconds=2`, `rounds=200`).
    pub params: String,
    pub timer: Vec<u64>,
    pub ipi: Vec<u64>,
}

/// The windows partition `name` reported on the console (only its own
/// lines: the hypervisor prefixes each partition's).
pub fn windows(output: &str, name: &str) -> Result<Vec<Window>> {
    let prefix = format!("[{name}] hallows-cost: window ");
    let mut out = Vec::new();
    for line in output.lines().filter_map(|l| l.trim_end_matches('\r').strip_prefix(prefix.as_str())) {
        let mut words = line.split_whitespace();
        let wname = words.next().unwrap_or_default().to_owned();
        let (mut params, mut timer, mut ipi) = (Vec::new(), None, None);
        for w in words {
            let list = |v: &str| v.split(',').map(|n| n.parse::<u64>()).collect::<Result<Vec<_>, _>>();
            match w.split_once('=') {
                Some(("timer", v)) => timer = Some(list(v).with_context(|| format!("window line `{line}`: timer counts"))?),
                Some(("ipi", v)) => ipi = Some(list(v).with_context(|| format!("window line `{line}`: IPI counts"))?),
                _ => params.push(w),
            }
        }
        let (Some(timer), Some(ipi)) = (timer, ipi) else { bail!("window line `{line}` lacks timer= or ipi=") };
        out.push(Window { name: wname, params: params.join(" "), timer, ipi });
    }
    Ok(out)
}

/// The measurement's result.
pub struct LinuxCost {
    pub partition: String,
    /// Functions listed per kind of trap in the report.
    pub top: usize,
    pub cores: Vec<usize>,
    pub windows: Vec<Window>,
    pub traps: Traps,
}

impl LinuxCost {
    /// Timer interrupts the trace holds (both paths).
    pub fn timer_traps(&self) -> u64 {
        self.traps.kinds[TIMER].traps + self.traps.kinds[TIMER_SLOW].traps
    }

    /// EL2 instructions per timer tick: the timer interrupts' instructions
    /// over their number (both paths).
    pub fn per_tick(&self) -> f64 {
        let (t, s) = (&self.traps.kinds[TIMER], &self.traps.kinds[TIMER_SLOW]);
        (t.instructions + s.instructions) as f64 / (t.traps + s.traps).max(1) as f64
    }

    /// EL2 instructions per IPI: the sender's trap and the receiver's
    /// interrupt, over the IPIs sent.
    pub fn per_ipi(&self) -> f64 {
        let (s, r) = (&self.traps.kinds[SENT], &self.traps.kinds[RECEIVED]);
        (s.instructions + r.instructions) as f64 / s.traps.max(1) as f64
    }

    /// Fails unless the trace holds timer interrupts and IPIs, and at least
    /// as many as Linux counted in its windows.
    pub fn check(&self) -> Result<()> {
        let linux_timer: u64 = self.windows.iter().flat_map(|w| &w.timer).sum();
        let linux_ipi: u64 = self.windows.iter().flat_map(|w| &w.ipi).sum();
        if self.windows.is_empty() {
            bail!("partition {} reported no `hallows-cost: window` lines", self.partition);
        }
        if self.timer_traps() == 0 || self.traps.kinds[SENT].traps == 0 || self.traps.kinds[RECEIVED].traps == 0 {
            bail!(
                "the trace holds {} timer interrupts, {} IPIs sent and {} received: nothing to divide by\n{}",
                self.timer_traps(),
                self.traps.kinds[SENT].traps,
                self.traps.kinds[RECEIVED].traps,
                self.report()
            );
        }
        if self.timer_traps() < linux_timer || self.traps.kinds[SENT].traps < linux_ipi {
            bail!(
                "the trace missed part of the windows: it holds {} timer interrupts and {} IPIs sent, Linux counted {linux_timer} and {linux_ipi} \
                 (the trace was turned on late: a loaded machine?)\n{}",
                self.timer_traps(),
                self.traps.kinds[SENT].traps,
                self.report()
            );
        }
        Ok(())
    }

    /// The report `hallows linux-cost` prints.
    pub fn report(&self) -> String {
        let mut r = String::new();
        let cores: Vec<String> = self.cores.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(r, "Linux's own counts in its windows (/proc/interrupts deltas, per vCPU):");
        for w in &self.windows {
            let join = |v: &[u64]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" + ");
            let _ = writeln!(r, "  {} ({}): timer interrupts {}, IPIs {}", w.name, w.params, join(&w.timer), join(&w.ipi));
        }
        let _ = writeln!(r, "EL2 traps on the cores of partition `{}` ({}) while traced, by kind (vector entry to eret):", self.partition, cores.join(", "));
        let _ = writeln!(r, "  {:>7}  {:>12}  {:>9}  {:>11}  kind", "traps", "instructions", "per trap", "min-max");
        let names = KINDS.iter().map(|(_, k)| *k).chain([OTHER_SYNC, OTHER_IRQ]);
        for (i, (k, name)) in self.traps.kinds.iter().zip(names).enumerate() {
            if k.traps > 0 {
                let _ = writeln!(r, "  {:>7}  {:>12}  {:>9.1}  {:>11}  {name}", k.traps, k.instructions, k.mean(), format!("{}-{}", k.min, k.max));
                let mut fns: Vec<(&String, &u64)> = self.traps.functions.get(i).map(|f| f.iter().collect()).unwrap_or_default();
                fns.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                for (f, n) in fns.into_iter().take(self.top) {
                    let _ = writeln!(r, "  {:>7}  {:>12}  {:>9.1}  {:>11}    {f}", "", "", *n as f64 / k.traps as f64, "");
                }
            }
        }
        let _ = writeln!(
            r,
            "  ({} traps cut by the trace's start or end, {} instructions: left out; {} instructions logged twice in a row, counted once{})",
            self.traps.cut.0,
            self.traps.cut.1,
            self.traps.repeats,
            if self.traps.unknown > 0 { format!("; {} repeats at addresses whose code the tool does not have, counted twice", self.traps.unknown) } else { String::new() }
        );
        let (s, rcv) = (&self.traps.kinds[SENT], &self.traps.kinds[RECEIVED]);
        let _ = writeln!(r, "per Linux timer tick: {:.1} EL2 instructions ({} timer interrupts traced)", self.per_tick(), self.timer_traps());
        let _ = writeln!(
            r,
            "per IPI between its vCPUs: {:.1} EL2 instructions (sender's trap {:.1} x {}, receiver's interrupt {:.1} x {}; over the IPIs sent)",
            self.per_ipi(),
            s.mean(),
            s.traps,
            rcv.mean(),
            rcv.traps
        );
        r
    }
}

/// Reads QEMU's `-d exec` log: per core in `cores`, the addresses of the
/// instructions that ran, in order (a block QEMU logged and left without
/// running it is dropped, by the instruction bytes in `code`: see
/// [`crate::trace`]); and the reader's counts of repeats dropped and of
/// repeats kept at addresses whose code `code` does not hold.
pub fn read_trace(log: &Path, cores: &[usize], code: &crate::trace::Code) -> Result<(HashMap<usize, Vec<u64>>, u64, u64)> {
    let file = std::fs::File::open(log).with_context(|| format!("reading the trace {}", log.display()))?;
    let mut per_core: HashMap<usize, Vec<u64>> = cores.iter().map(|&c| (c, Vec::new())).collect();
    let mut reader = crate::trace::Reader::new(code);
    let (mut repeats, mut unknown) = (0, 0);
    for line in std::io::BufReader::new(file).lines() {
        let Some((cpu, pc)) = crate::trace::line(&line?) else { continue };
        let Some(t) = per_core.get_mut(&cpu) else { continue };
        let (r, u) = (reader.repeats, reader.unknown);
        if reader.ran(cpu, pc) {
            t.push(pc);
        }
        repeats += reader.repeats - r;
        unknown += reader.unknown - u;
    }
    Ok((per_core, repeats, unknown))
}

/// Waits until `control` has seen the whole line `line` of partition
/// `name` (its prefix is the hypervisor's: no other partition can print
/// it), or the machine ended, or `timeout` passed.
fn wait_for_line(control: &qemu::Control, name: &str, line: &str, done: &dyn Fn() -> bool, timeout: Duration) -> bool {
    let want = format!("[{name}] {line}");
    // Whole lines only: the text after the last newline may still grow.
    let seen = || {
        let out = control.output();
        let whole = out.rfind('\n').map_or("", |i| &out[..i]);
        whole.lines().any(|l| l.trim_end_matches('\r') == want)
    };
    let start = Instant::now();
    while start.elapsed() < timeout && !done() {
        if seen() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen()
}

/// Boots `image` of `sys` untraced, traces the hypervisor on the cores of
/// Linux partition `name` between its init's two lines, and counts what
/// the trace holds.
pub fn measure(sys: &System, image: &Path, hv_elf: &Path, name: &str, qmp_socket: &Path, top: usize, timeout: Duration) -> Result<(qemu::Outcome, LinuxCost)> {
    let p = sys.partition(name).with_context(|| format!("the manifest has no partition `{name}`"))?;
    if p.linux.is_none() {
        bail!("partition `{name}` is not a Linux partition (it has no `linux`)");
    }
    let cores: Vec<usize> = p.cores.iter().map(|&c| c as usize).collect();
    let elf = image::Elf::parse(&std::fs::read(hv_elf).with_context(|| format!("reading {}", hv_elf.display()))?)?;
    let dwarf = symbolize::Symbolizer::open(hv_elf, None);
    let missing = Classifier::missing_functions(&elf, dwarf.as_ref())?;
    if !missing.is_empty() {
        bail!(
            "the hypervisor ({}) has none of the functions {} that `hallows linux-cost` tells traps apart by: \
             renamed? update KINDS in tools/hallows/src/linuxcost.rs",
            hv_elf.display(),
            missing.join(", ")
        );
    }
    let text = text_range(&elf)?;
    let log = image.with_extension("linuxcost.log");
    let _ = std::fs::remove_file(&log);
    qmp::prepare_socket(qmp_socket)?;
    let extra: Vec<String> = vec!["-dfilter".into(), format!("{:#x}..{:#x}", text.start, text.end - 1), "-D".into(), log.display().to_string()];
    let own: Vec<String> = vec!["-qmp".into(), format!("unix:{},server=on,wait=off", qmp_socket.display())];
    let control = Arc::new(qemu::Control::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (sys2, img, ctl, flag) = (sys.clone(), image.to_path_buf(), control.clone(), stop.clone());
    let machine = std::thread::spawn(move || qemu::run_controlled(&sys2, &img, Some(timeout), &flag, true, &extra, &own, Some(ctl)));
    let traced = (|| -> Result<()> {
        let mut q = qmp::Qmp::connect(qmp_socket, (0, 0), Duration::from_secs(60))?;
        let done = || machine.is_finished();
        if !wait_for_line(&control, name, TRACE_ON, &done, timeout) {
            bail!("partition {name} never printed `{TRACE_ON}` (does its command line have hallows.test=cost?)");
        }
        q.hmp("singlestep on")?;
        q.hmp("log exec,nochain")?;
        let off = wait_for_line(&control, name, TRACE_OFF, &done, timeout);
        // Off in any case: the rest of the run need not crawl.
        let _ = q.hmp("log none");
        let _ = q.hmp("singlestep off");
        if !off {
            bail!("partition {name} never printed `{TRACE_OFF}`");
        }
        Ok(())
    })();
    if traced.is_err() {
        stop.store(true, Ordering::Release);
    }
    let out = machine.join().map_err(|_| anyhow::anyhow!("the QEMU thread panicked"))??;
    let _ = std::fs::remove_file(qmp_socket);
    if let Err(e) = traced {
        let _ = std::fs::remove_file(&log);
        bail!("{e:#}\n{}", out.output);
    }
    let mut code = crate::trace::Code::new(sys.board.arch.into());
    code.add_elf(&elf, None);
    let trace = read_trace(&log, &cores, &code);
    // HALLOWS_LINUXCOST_LOG=FILE keeps the trace there (to look at a trap
    // instruction by instruction).
    match std::env::var_os("HALLOWS_LINUXCOST_LOG") {
        Some(keep) => std::fs::rename(&log, &keep).with_context(|| format!("moving the trace to {}", Path::new(&keep).display()))?,
        None => {
            let _ = std::fs::remove_file(&log);
        }
    }
    let (trace, repeats, unknown) = trace?;
    let pcs: std::collections::HashSet<u64> = trace.values().flatten().copied().collect();
    let classifier = Classifier::new(&elf, dwarf.as_ref(), pcs)?;
    let mut traps = Traps { repeats, unknown, ..Traps::default() };
    for c in &cores {
        classifier.count(&trace[c], &mut traps);
    }
    if traps.kinds.is_empty() {
        traps.kinds = vec![KindCount::default(); KINDS.len() + 2];
        traps.functions = vec![HashMap::new(); KINDS.len() + 2];
    }
    let windows = windows(&out.output, name)?;
    Ok((out, LinuxCost { partition: name.to_owned(), top, cores, windows, traps }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_lines_of_the_partition_only_are_read() {
        let out = "[linux] hallows-cost: trace on\n\
                   [linux] hallows-cost: window busy seconds=2 timer=501,500 ipi=3,2\r\n\
                   [hello] hallows-cost: window forged seconds=1 timer=1,1 ipi=1,1\n\
                   [linux] hallows-cost: window pingpong rounds=200 timer=40,38 ipi=199,201\n";
        let w = windows(out, "linux").unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], Window { name: "busy".into(), params: "seconds=2".into(), timer: vec![501, 500], ipi: vec![3, 2] });
        assert_eq!(w[1].ipi, vec![199, 201]);
        assert!(windows("[linux] hallows-cost: window busy timer=1,x ipi=1\n", "linux").is_err());
        assert!(windows("[linux] hallows-cost: window busy timer=1\n", "linux").is_err());
    }

    #[test]
    fn function_names_match_by_path_suffix() {
        assert!(names_function("hallows_hv::arch::aarch64::vdev::send_sgi", "vdev::send_sgi"));
        assert!(names_function("timer_forward", "timer_forward"));
        assert!(!names_function("hallows_hv::arch::aarch64::vdev::send_sgis", "vdev::send_sgi"));
        assert!(!names_function("hallows_hv::other::send_sgi", "vdev::send_sgi"));
        assert!(!names_function("my_timer_forward", "timer_forward"));
    }

    /// A made-up hypervisor: vectors at 0x1000, an `eret` at 0x2000 and
    /// 0x3000; 0x2xxx is timer code, 0x3xxx sends SGIs.
    fn classifier() -> Classifier {
        let kind_of = [(0x2000, Some(TIMER)), (0x2004, Some(TIMER)), (0x3000, Some(SENT)), (0x3004, Some(SENT)), (0x1400, None), (0x1480, None), (0x4000, None)];
        Classifier {
            vectors: 0x1000,
            innermost: kind_of.iter().map(|&(pc, _)| (pc, (pc >> 12) as usize - 1)).collect(),
            names: ["vectors", "timer", "send", "other"].map(String::from).to_vec(),
            kind_of: kind_of.into_iter().collect(),
            erets: [0x2000, 0x3000, 0x4000].into_iter().collect(),
        }
    }

    #[test]
    fn branches_to_themselves_are_recognized() {
        // b ., bl ., b.ne ., cbnz w7, ., tbnz x1, #0, .
        for w in [0x1400_0000, 0x9400_0000, 0x5400_0001, 0x3500_0007, 0x3700_0001] {
            assert!(crate::trace::branches_to_itself(w), "{w:#x}");
        }
        // b .+4, b.ne .-4, cbnz w7, .-8 (the exclusive loop), eret, nop
        for w in [0x1400_0001, 0x54ff_ffe1, 0x35ff_ffc7, ERET, 0xd503_201f] {
            assert!(!crate::trace::branches_to_itself(w), "{w:#x}");
        }
    }

    #[test]
    fn the_trace_is_read_per_core_without_repeats() {
        // 0x1480 nop, 0x3004 b . (cores 2 and 3); core 0 is not measured.
        let mut code = crate::trace::Code::new(crate::trace::Isa::A64);
        code.add(0x1480, 0xd503_201f_u32.to_le_bytes().to_vec(), None);
        code.add(0x3004, 0x1400_0000_u32.to_le_bytes().to_vec(), None);
        let line = |c: usize, pc: u64| format!("Trace {c}: 0x7f0000000000 [00000000/{pc:016x}/00000000/ff200000] \n");
        let log: String = [(2, 0x1480), (3, 0x1480), (2, 0x1480), (0, 0x1480), (0, 0x1480), (3, 0x3004), (3, 0x3004), (2, 0x9000), (2, 0x9000)]
            .iter()
            .map(|&(c, pc)| line(c, pc))
            .collect();
        let path = std::env::temp_dir().join(format!("hallows-linuxcost-test-{}.log", std::process::id()));
        std::fs::write(&path, log).unwrap();
        let got = read_trace(&path, &[2, 3], &code);
        let _ = std::fs::remove_file(&path);
        let (per_core, repeats, unknown) = got.unwrap();
        assert_eq!(per_core[&2], [0x1480, 0x9000, 0x9000]);
        assert_eq!(per_core[&3], [0x1480, 0x3004, 0x3004]);
        assert_eq!((repeats, unknown), (1, 1));
    }

    #[test]
    fn the_trace_is_cut_into_traps_and_the_cut_ends_left_out() {
        let c = classifier();
        let mut t = Traps::default();
        // Cut at the start (no vector entry), a tick (3), an SGI sent (4,
        // a branch to itself run twice), a synchronous trap of no kind
        // (2), a tick cut at the end.
        let trace = [0x3000, 0x1480, 0x2004, 0x2000, 0x1400, 0x3004, 0x3004, 0x3000, 0x1400, 0x4000, 0x1480, 0x2004];
        c.count(&trace, &mut t);
        assert_eq!(t.kinds[TIMER], KindCount { traps: 1, instructions: 3, min: 3, max: 3 });
        assert_eq!(t.kinds[SENT], KindCount { traps: 1, instructions: 4, min: 4, max: 4 });
        assert_eq!(t.kinds[KINDS.len()].traps, 1);
        assert_eq!(t.kinds[KINDS.len()].instructions, 2);
        assert_eq!(t.cut, (2, 3));
        assert_eq!(t.functions[SENT], [("vectors".to_owned(), 1), ("send".to_owned(), 3)].into_iter().collect());
    }

    #[test]
    fn per_tick_and_per_ipi_come_from_the_traps_and_are_checked_against_linux() {
        let mut traps = Traps { kinds: vec![KindCount::default(); KINDS.len() + 2], functions: vec![HashMap::new(); KINDS.len() + 2], ..Traps::default() };
        traps.functions[TIMER].insert("timer_forward".into(), 150);
        for _ in 0..10 {
            traps.kinds[TIMER].add(15);
        }
        traps.kinds[TIMER_SLOW].add(125);
        for n in [300, 320] {
            traps.kinds[SENT].add(n);
        }
        traps.kinds[RECEIVED].add(200);
        let w = |timer: u64, ipi: u64| Window { name: "w".into(), params: String::new(), timer: vec![timer, 0], ipi: vec![ipi, 0] };
        let c = LinuxCost { partition: "linux".into(), top: 3, cores: vec![2, 3], windows: vec![w(11, 2)], traps };
        assert_eq!(c.per_tick(), 25.0);
        assert_eq!(c.per_ipi(), 410.0);
        c.check().unwrap();
        assert!(c.report().contains("per Linux timer tick: 25.0 EL2 instructions (11 timer interrupts traced)"), "{}", c.report());
        assert!(c.report().contains("15.0                 timer_forward"), "{}", c.report());
        let late = LinuxCost { windows: vec![w(12, 2)], ..c };
        assert!(late.check().unwrap_err().to_string().contains("missed part of the windows"));
        let none = LinuxCost { windows: vec![], ..late };
        assert!(none.check().is_err());
    }
}

//! `hallows el2-cost`: instructions per core of a whole run, and the
//! hypervisor functions they were spent in.
//!
//! The run is deterministic: QEMU counts instructions as its clock
//! (`-icount shift=0,sleep=off`), so it runs the cores in turn on one
//! thread, switches between them at points fixed by the instruction count
//! (a timer deadline, or a core that waits with `wfe`, `wfi` or `yield`),
//! and never waits in real time. Two runs of one image execute the same
//! instructions on the same cores and the report is identical, bit for bit
//! (`tests/tests/cost.rs`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use vmm_config::{Arch, System};

use crate::{image, qemu, trace};

/// Where the image is loaded: 2 MiB into the hypervisor's reservation on
/// aarch64 (an arm64 Image), the reservation's start on x86_64.
pub fn image_base(sys: &System) -> u64 {
    match sys.board.arch {
        Arch::Aarch64 => sys.board.hypervisor.base + 0x20_0000,
        Arch::X86_64 => sys.board.hypervisor.base,
    }
}

/// The symbols of `elf` inside `range`, demangled, sorted by address.
pub fn symbols_in(elf: &image::Elf, range: &Range<u64>) -> Vec<(u64, String)> {
    let mut symbols: Vec<(u64, String)> = elf
        .symbols
        .iter()
        .filter(|(name, addr)| !name.is_empty() && range.contains(addr))
        .map(|(name, addr)| (*addr, format!("{:#}", rustc_demangle::demangle(name))))
        .collect();
    symbols.sort();
    symbols
}

/// One traced run.
pub struct El2Cost {
    /// The machine's own outcome and output.
    pub outcome: qemu::Outcome,
    /// Per core: all instructions, the hypervisor's, and the `top`
    /// hypervisor functions by instructions (most first, then by name).
    pub report: String,
    /// Every hypervisor instruction address executed, per core:
    /// `core address count function` lines, by core then address.
    pub pcs: String,
}

/// Runs `image` of `sys` with every instruction traced (at most `timeout`)
/// and attributes the hypervisor's instructions to the functions of its
/// ELF `hv_elf`. `guest` gives a guest's ELF by its name (for the
/// instruction bytes that tell a block QEMU left without running it from a
/// branch to itself: [`trace::system_code`]).
pub fn el2_cost(sys: &System, image: &Path, hv_elf: &Path, guest: impl Fn(&str) -> std::path::PathBuf, top: usize, timeout: Duration) -> Result<El2Cost> {
    let base = image_base(sys);
    let len = std::fs::metadata(image).with_context(|| format!("reading {}", image.display()))?.len();
    let hv: Range<u64> = base..base + len;
    let elf = image::Elf::parse(&std::fs::read(hv_elf).with_context(|| format!("reading {}", hv_elf.display()))?)?;
    let code = trace::system_code(sys, &elf, guest);
    let (outcome, cores) = qemu::instructions_per_core(sys, image, hv.clone(), &code, timeout)?;
    let symbols = symbols_in(&elf, &hv);
    let mut report = String::new();
    let mut pcs = String::new();
    for (core, c) in cores.iter().enumerate() {
        let unknown = if c.unknown > 0 { format!("; {} repeats at addresses whose code the tool does not have, counted twice", c.unknown) } else { String::new() };
        let _ = writeln!(
            report,
            "core {core}: {} instructions, {} in the hypervisor ({} logged twice in a row, counted once{unknown})",
            c.all, c.hypervisor, c.repeats
        );
        let mut by_fn: HashMap<&str, u64> = HashMap::new();
        let mut by_pc: Vec<(u64, u64)> = c.by_pc.iter().map(|(&pc, &n)| (pc, n)).collect();
        by_pc.sort_unstable();
        for (pc, n) in &by_pc {
            let i = symbols.partition_point(|(a, _)| a <= pc);
            let name = if i == 0 { "?" } else { symbols[i - 1].1.as_str() };
            *by_fn.entry(name).or_default() += n;
            let _ = writeln!(pcs, "{core} {pc:#x} {n} {name}");
        }
        let mut by_fn: Vec<_> = by_fn.into_iter().collect();
        by_fn.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (name, n) in by_fn.iter().take(top) {
            let _ = writeln!(report, "  {n:>10}  {name}");
        }
    }
    Ok(El2Cost { outcome, report, pcs })
}

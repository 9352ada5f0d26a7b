//! `bench-mark`: runs the marker instruction once and exits 0.
//!
//! The bench runs (tools/bench, docs/benchmarks.md) load QEMU with the
//! `insn-count` plugin, which snapshots every vCPU's instruction counts
//! whenever a core executes `hint #0x7f`. The architecture defines every
//! unallocated hint as a NOP, so without the plugin (or on hardware) the
//! program does nothing. The init script's bench modes run it between
//! phases of a workload.

fn main() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `hint #0x7f` is an unallocated hint instruction, which the
    // architecture executes as a NOP: it reads and writes no register or
    // memory.
    unsafe {
        core::arch::asm!("hint #0x7f", options(nomem, nostack, preserves_flags));
    }
}

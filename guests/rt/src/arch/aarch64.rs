//! aarch64 EL1: `_start`, the EL1 vector table and `hvc`.

use core::arch::{asm, global_asm};

use hallows_abi::{fault_kind, VCPU_STACK_SIZE};

// Entry: x0 = boot information (guest-physical), x1 = vCPU index. Each
// vCPU's stack ends just below the boot information, VCPU_STACK_SIZE apart.
global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    mov x19, x0",
    "    mov x9, #{stack}",
    "    msub x10, x1, x9, x0",
    "    and sp, x10, #~15",
    "    adrp x9, __hallows_vectors",
    "    add x9, x9, :lo12:__hallows_vectors",
    "    msr vbar_el1, x9",
    // FP/SIMD on at EL1 and EL0 (Rust uses it freely).
    "    mov x9, #(3 << 20)",
    "    msr cpacr_el1, x9",
    "    isb",
    "    mov x0, x19",
    "    bl __hallows_main",
    "1:  b 1b",
    stack = const VCPU_STACK_SIZE,
);

// Any exception at EL1 is fatal for a guest that installs no handlers of
// its own: report it (ELR and ESR) and let the partition's policy decide.
global_asm!(
    ".section .text",
    ".balign 0x800",
    ".global __hallows_vectors",
    "__hallows_vectors:",
    ".rept 16",
    ".balign 0x80",
    "    mrs x1, elr_el1",
    "    mrs x2, esr_el1",
    "    b {report}",
    ".endr",
    report = sym report_exception,
);

extern "C" fn report_exception(_x0: u64, elr: u64, esr: u64) -> ! {
    crate::fault(fault_kind::EXCEPTION, elr, esr)
}

/// `hvc #0` with the function id in x0 and arguments in x1..x5; returns x0, x1.
pub fn hypercall(function: u64, args: [u64; 5]) -> (u64, u64) {
    let (mut x0, mut x1) = (function, args[0]);
    // SAFETY: `hvc` traps to the hypervisor, which only reads our memory
    // through checked hypercall arguments and writes back x0..x3 at most.
    unsafe {
        asm!(
            "hvc #0",
            inout("x0") x0,
            inout("x1") x1,
            inout("x2") args[1] => _,
            inout("x3") args[2] => _,
            in("x4") args[3],
            in("x5") args[4],
            options(nostack),
        );
    }
    (x0, x1)
}

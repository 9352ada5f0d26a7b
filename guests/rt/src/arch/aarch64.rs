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
    // System-register access to the (virtual) GIC CPU interface.
    "    mrs x9, icc_sre_el1",
    "    orr x9, x9, #1",
    "    msr icc_sre_el1, x9",
    "    isb",
    "    mov x0, x19",
    "    bl __hallows_main",
    "1:  b 1b",
    stack = const VCPU_STACK_SIZE,
);

// EL1 vectors. IRQs (virtual: doorbells) taken from EL1 with SP_EL1 are
// handled; any other exception is fatal for a guest that installs no
// handlers of its own: it is reported (ELR and ESR) and the partition's
// fault policy decides.
global_asm!(
    ".section .text",
    ".balign 0x800",
    ".global __hallows_vectors",
    "__hallows_vectors:",
    ".rept 5",
    ".balign 0x80",
    "    mrs x1, elr_el1",
    "    mrs x2, esr_el1",
    "    b {report}",
    ".endr",
    // Current EL with SP_ELx, IRQ.
    ".balign 0x80",
    "    stp x29, x30, [sp, #-16]!",
    "    stp x0, x1, [sp, #-16]!",
    "    stp x2, x3, [sp, #-16]!",
    "    stp x4, x5, [sp, #-16]!",
    "    stp x6, x7, [sp, #-16]!",
    "    stp x8, x9, [sp, #-16]!",
    "    stp x10, x11, [sp, #-16]!",
    "    stp x12, x13, [sp, #-16]!",
    "    stp x14, x15, [sp, #-16]!",
    "    stp x16, x17, [sp, #-16]!",
    "    b __hallows_irq_rest",
    ".rept 10",
    ".balign 0x80",
    "    mrs x1, elr_el1",
    "    mrs x2, esr_el1",
    "    b {report}",
    ".endr",
    "__hallows_irq_rest:",
    "    str x18, [sp, #-16]!",
    "    bl {irq}",
    "    ldr x18, [sp], #16",
    "    ldp x16, x17, [sp], #16",
    "    ldp x14, x15, [sp], #16",
    "    ldp x12, x13, [sp], #16",
    "    ldp x10, x11, [sp], #16",
    "    ldp x8, x9, [sp], #16",
    "    ldp x6, x7, [sp], #16",
    "    ldp x4, x5, [sp], #16",
    "    ldp x2, x3, [sp], #16",
    "    ldp x0, x1, [sp], #16",
    "    ldp x29, x30, [sp], #16",
    "    eret",
    report = sym report_exception,
    irq = sym handle_irq,
);

/// A virtual interrupt: acknowledge it on the virtual CPU interface, record
/// the doorbell it stands for, end it.
extern "C" fn handle_irq() {
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 (the virtual interface, since the
    // hypervisor routes IRQs to itself) acknowledges the interrupt.
    unsafe { asm!("mrs {0}, icc_iar1_el1", out(reg) iar, options(nostack)) };
    let intid = (iar & 0xff_ffff) as u32;
    if intid >= 1020 {
        return;
    }
    if let Some(index) = intid.checked_sub(hallows_abi::DOORBELL_INTID_BASE) {
        crate::channel::doorbell_rang(index);
    }
    // SAFETY: ends the interrupt acknowledged above.
    unsafe { asm!("msr icc_eoir1_el1, {0}", in(reg) iar, options(nostack)) };
}

/// Sleeps until an interrupt is pending, then lets it be taken. IRQs stay
/// masked everywhere else, so handlers only run here (no lost wake-ups:
/// `wfi` returns for a pending interrupt even while it is masked).
pub fn wait_for_interrupt() {
    // SAFETY: waits, then opens a window for pending IRQs to be taken.
    unsafe { asm!("wfi", "msr daifclr, #2", "isb", "msr daifset, #2", options(nostack)) };
}

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

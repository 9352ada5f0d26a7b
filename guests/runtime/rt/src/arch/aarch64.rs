//! aarch64 EL1: `_start` (boot and secondary vCPUs), the EL1 vector table,
//! interrupt entry with the full register state (so a timer interrupt can
//! preempt any code), the context switch between a preemptible task's
//! stack and its core's scheduler loop, the stage-1 MMU, the virtual timer
//! registers and `hvc`.

use core::arch::{asm, global_asm};

use hallows_abi::{fault_kind, VCPU_STACK_SIZE};

// Entry: x0 = boot information (guest-physical), x1 = vCPU index. Each
// vCPU's stack ends just below the boot information, VCPU_STACK_SIZE apart.
// vCPU 0 runs the guest's `main`; the others (started by the runtime with
// PSCI CPU_ON at this same address, context = the boot information) enter
// the runtime's per-core scheduler loop.
global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    mov x19, x0",
    "    mov x20, x1",
    "    mov x9, #{stack}",
    "    msub x10, x1, x9, x0",
    "    and sp, x10, #~15",
    // SP_EL0 (unused otherwise: the runtime runs on SP_EL1) holds the top
    // of this vCPU's exception stack, at the bottom of its stack region,
    // for the fatal vectors (see `mm`).
    "    mov x9, #{exc_below}",
    "    sub x10, x10, x9",
    "    msr sp_el0, x10",
    "    msr tpidr_el1, x1",
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
    "    mov x1, x20",
    "    cbnz x20, 2f",
    "    bl __hallows_main",
    "1:  b 1b",
    "2:  bl {secondary}",
    "    b 1b",
    stack = const VCPU_STACK_SIZE,
    exc_below = const VCPU_STACK_SIZE - crate::mm::EXCEPTION_STACK_SIZE,
    secondary = sym secondary_entry,
);

/// Bytes of the interrupt frame: x0..x30, ELR, SPSR, FPCR, FPSR (288,
/// rounded to 16), then q0..q31.
const IRQ_FRAME: usize = 288 + 512;

/// Bytes of the fatal-exception frame ([`FatalFrame`]).
const FATAL_FRAME: usize = 8 * 38;

// EL1 vectors. IRQs (virtual: timer, doorbells, device interrupts) taken
// from EL1 with SP_EL1 save the whole interrupted state on its stack,
// FP/SIMD included, so the handler may switch to another context (a
// preemption) and resume this one later. Any other exception is fatal for a
// guest that installs no handlers of its own: it must not run on the
// stack it came from (that stack may have overflowed into its guard page),
// so it switches to this vCPU's exception stack (its top is kept in
// SP_EL0), saves the general registers there (x0 and the old SP pass
// through TPIDR_EL0 and TPIDRRO_EL0, which the runtime does not use
// otherwise) and is reported with a post-mortem; the partition's fault
// policy decides.
global_asm!(
    ".macro hallows_fatal slot",
    ".balign 0x80",
    "    msr tpidr_el0, x0",
    "    mov x0, sp",
    "    msr tpidrro_el0, x0",
    "    mrs x0, sp_el0",
    "    mov sp, x0",
    "    sub sp, sp, #{fatal}",
    "    stp x1, x2, [sp, #8]",
    "    mov x1, #\\slot",
    "    b __hallows_fatal_entry",
    ".endm",
    ".section .text",
    ".balign 0x800",
    ".global __hallows_vectors",
    "__hallows_vectors:",
    "    hallows_fatal 0",
    "    hallows_fatal 1",
    "    hallows_fatal 2",
    "    hallows_fatal 3",
    "    hallows_fatal 4",
    // Current EL with SP_ELx, IRQ.
    ".balign 0x80",
    "    sub sp, sp, #{frame}",
    "    stp x0, x1, [sp, #0]",
    "    b __hallows_irq_entry",
    "    hallows_fatal 6",
    "    hallows_fatal 7",
    "    hallows_fatal 8",
    "    hallows_fatal 9",
    "    hallows_fatal 10",
    "    hallows_fatal 11",
    "    hallows_fatal 12",
    "    hallows_fatal 13",
    "    hallows_fatal 14",
    "    hallows_fatal 15",
    // x0..x30, sp, elr, esr, far, spsr, the vector slot (x1 now).
    "__hallows_fatal_entry:",
    "    str x1, [sp, #288]",
    "    stp x3, x4, [sp, #24]",
    "    stp x5, x6, [sp, #40]",
    "    stp x7, x8, [sp, #56]",
    "    stp x9, x10, [sp, #72]",
    "    stp x11, x12, [sp, #88]",
    "    stp x13, x14, [sp, #104]",
    "    stp x15, x16, [sp, #120]",
    "    stp x17, x18, [sp, #136]",
    "    stp x19, x20, [sp, #152]",
    "    stp x21, x22, [sp, #168]",
    "    stp x23, x24, [sp, #184]",
    "    stp x25, x26, [sp, #200]",
    "    stp x27, x28, [sp, #216]",
    "    stp x29, x30, [sp, #232]",
    "    mrs x0, tpidr_el0",
    "    str x0, [sp, #0]",
    "    mrs x0, tpidrro_el0",
    "    str x0, [sp, #248]",
    "    mrs x0, elr_el1",
    "    mrs x1, esr_el1",
    "    stp x0, x1, [sp, #256]",
    "    mrs x0, far_el1",
    "    mrs x1, spsr_el1",
    "    stp x0, x1, [sp, #272]",
    "    mov x0, sp",
    "    bl {report}",
    "1:  b 1b",
    ".purgem hallows_fatal",
    "__hallows_irq_entry:",
    "    stp x2, x3, [sp, #16]",
    "    stp x4, x5, [sp, #32]",
    "    stp x6, x7, [sp, #48]",
    "    stp x8, x9, [sp, #64]",
    "    stp x10, x11, [sp, #80]",
    "    stp x12, x13, [sp, #96]",
    "    stp x14, x15, [sp, #112]",
    "    stp x16, x17, [sp, #128]",
    "    stp x18, x19, [sp, #144]",
    "    stp x20, x21, [sp, #160]",
    "    stp x22, x23, [sp, #176]",
    "    stp x24, x25, [sp, #192]",
    "    stp x26, x27, [sp, #208]",
    "    stp x28, x29, [sp, #224]",
    "    mrs x0, elr_el1",
    "    stp x30, x0, [sp, #240]",
    "    mrs x0, spsr_el1",
    "    mrs x1, fpcr",
    "    stp x0, x1, [sp, #256]",
    "    mrs x0, fpsr",
    "    str x0, [sp, #272]",
    "    add x0, sp, #288",
    "    stp q0, q1, [x0, #0]",
    "    stp q2, q3, [x0, #32]",
    "    stp q4, q5, [x0, #64]",
    "    stp q6, q7, [x0, #96]",
    "    stp q8, q9, [x0, #128]",
    "    stp q10, q11, [x0, #160]",
    "    stp q12, q13, [x0, #192]",
    "    stp q14, q15, [x0, #224]",
    "    stp q16, q17, [x0, #256]",
    "    stp q18, q19, [x0, #288]",
    "    stp q20, q21, [x0, #320]",
    "    stp q22, q23, [x0, #352]",
    "    stp q24, q25, [x0, #384]",
    "    stp q26, q27, [x0, #416]",
    "    stp q28, q29, [x0, #448]",
    "    stp q30, q31, [x0, #480]",
    "    bl {irq}",
    "    add x0, sp, #288",
    "    ldp q0, q1, [x0, #0]",
    "    ldp q2, q3, [x0, #32]",
    "    ldp q4, q5, [x0, #64]",
    "    ldp q6, q7, [x0, #96]",
    "    ldp q8, q9, [x0, #128]",
    "    ldp q10, q11, [x0, #160]",
    "    ldp q12, q13, [x0, #192]",
    "    ldp q14, q15, [x0, #224]",
    "    ldp q16, q17, [x0, #256]",
    "    ldp q18, q19, [x0, #288]",
    "    ldp q20, q21, [x0, #320]",
    "    ldp q22, q23, [x0, #352]",
    "    ldp q24, q25, [x0, #384]",
    "    ldp q26, q27, [x0, #416]",
    "    ldp q28, q29, [x0, #448]",
    "    ldp q30, q31, [x0, #480]",
    "    ldr x0, [sp, #272]",
    "    msr fpsr, x0",
    "    ldp x0, x1, [sp, #256]",
    "    msr spsr_el1, x0",
    "    msr fpcr, x1",
    "    ldp x30, x0, [sp, #240]",
    "    msr elr_el1, x0",
    "    ldp x2, x3, [sp, #16]",
    "    ldp x4, x5, [sp, #32]",
    "    ldp x6, x7, [sp, #48]",
    "    ldp x8, x9, [sp, #64]",
    "    ldp x10, x11, [sp, #80]",
    "    ldp x12, x13, [sp, #96]",
    "    ldp x14, x15, [sp, #112]",
    "    ldp x16, x17, [sp, #128]",
    "    ldp x18, x19, [sp, #144]",
    "    ldp x20, x21, [sp, #160]",
    "    ldp x22, x23, [sp, #176]",
    "    ldp x24, x25, [sp, #192]",
    "    ldp x26, x27, [sp, #208]",
    "    ldp x28, x29, [sp, #224]",
    "    ldp x0, x1, [sp, #0]",
    "    add sp, sp, #{frame}",
    "    eret",
    report = sym report_exception,
    irq = sym handle_irq,
    frame = const IRQ_FRAME,
    fatal = const FATAL_FRAME,
);

// switch(save: *mut Context, load: *const Context): saves the callee-saved
// state (x19..x30, sp, d8..d15) of the caller into `save` and resumes the
// context in `load`. A fresh context starts at `__hallows_thread_start`
// with x19 = its argument.
global_asm!(
    ".section .text",
    ".global __hallows_switch",
    "__hallows_switch:",
    "    mov x9, sp",
    "    stp x19, x20, [x0, #0]",
    "    stp x21, x22, [x0, #16]",
    "    stp x23, x24, [x0, #32]",
    "    stp x25, x26, [x0, #48]",
    "    stp x27, x28, [x0, #64]",
    "    stp x29, x30, [x0, #80]",
    "    str x9, [x0, #96]",
    "    stp d8, d9, [x0, #104]",
    "    stp d10, d11, [x0, #120]",
    "    stp d12, d13, [x0, #136]",
    "    stp d14, d15, [x0, #152]",
    "    ldp x19, x20, [x1, #0]",
    "    ldp x21, x22, [x1, #16]",
    "    ldp x23, x24, [x1, #32]",
    "    ldp x25, x26, [x1, #48]",
    "    ldp x27, x28, [x1, #64]",
    "    ldp x29, x30, [x1, #80]",
    "    ldr x9, [x1, #96]",
    "    mov sp, x9",
    "    ldp d8, d9, [x1, #104]",
    "    ldp d10, d11, [x1, #120]",
    "    ldp d12, d13, [x1, #136]",
    "    ldp d14, d15, [x1, #152]",
    "    ret",
    ".global __hallows_thread_start",
    "__hallows_thread_start:",
    "    mov x0, x19",
    "    msr daifclr, #2",
    "    bl {body}",
    "1:  b 1b",
    body = sym crate::task::thread_body,
);

extern "C" {
    fn __hallows_switch(save: *mut Context, load: *const Context);
    fn __hallows_thread_start();
    fn _start();
}

/// The callee-saved state of a suspended execution context.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Context {
    x19_x30: [u64; 12],
    sp: u64,
    d8_d15: [u64; 8],
}

impl Context {
    /// A context that, when switched to, runs `crate::task::thread_body(arg)`
    /// with interrupts enabled on the stack ending at `stack_top`.
    pub fn new_thread(stack_top: u64, arg: u64) -> Context {
        let mut c = Context::default();
        c.x19_x30[0] = arg;
        c.x19_x30[11] = __hallows_thread_start as *const () as u64;
        c.sp = stack_top & !15;
        c
    }
}

/// Saves the running context into `save` and resumes `load`.
///
/// # Safety
/// `load` must be a context saved by `switch` (or made by
/// `Context::new_thread`) whose stack is still alive, not running on any
/// core; both pointers must stay valid until this context is resumed.
pub unsafe fn switch(save: *mut Context, load: *const Context) {
    // SAFETY: the caller's contract; the assembly only saves and loads
    // callee-saved registers and sp, as a function call may clobber the rest.
    unsafe { __hallows_switch(save, load) }
}

extern "C" fn secondary_entry(info_ipa: u64, vcpu: u64) -> ! {
    crate::mm::enable_mmu();
    crate::task::secondary_loop(info_ipa, vcpu as usize)
}

/// The index of the vCPU running this code (kept in TPIDR_EL1 from entry).
pub fn core_id() -> usize {
    let v: u64;
    // SAFETY: reads this core's TPIDR_EL1.
    unsafe { asm!("mrs {0}, tpidr_el1", out(reg) v, options(nomem, nostack)) };
    v as usize
}

/// The guest-physical address of `_start`, for PSCI CPU_ON.
pub fn start_address() -> u64 {
    _start as *const () as u64
}

/// A virtual interrupt: acknowledge it on the virtual CPU interface, hand
/// it to its owner (timer, doorbell, device), end it, then let the timer
/// preempt the interrupted task if the scheduling policy said so.
extern "C" fn handle_irq() {
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 (the virtual interface, since the
    // hypervisor routes IRQs to itself) acknowledges the interrupt.
    unsafe { asm!("mrs {0}, icc_iar1_el1", out(reg) iar, options(nostack)) };
    let intid = (iar & 0xff_ffff) as u32;
    if intid >= 1020 {
        return;
    }
    let mut preempt = false;
    if intid == hallows_abi::VIRTUAL_TIMER_INTID {
        preempt = crate::time::on_timer_interrupt();
    } else if let Some(index) =
        intid.checked_sub(hallows_abi::DOORBELL_INTID_BASE).filter(|i| (*i as usize) < hallows_abi::MAX_CHANNELS)
    {
        crate::channel::doorbell_rang(index);
    } else {
        crate::irq::dispatch(intid);
    }
    // SAFETY: ends the interrupt acknowledged above (for a hardware-linked
    // one this also deactivates the physical interrupt).
    unsafe { asm!("msr icc_eoir1_el1, {0}", in(reg) iar, options(nostack)) };
    if preempt {
        crate::task::preempt_current();
    }
}

/// Sleeps until an interrupt is pending, then lets it be taken. IRQs stay
/// masked everywhere else in the scheduler loop, so handlers only run here
/// or in preemptible tasks (no lost wake-ups: `wfi` returns for a pending
/// interrupt even while it is masked).
pub fn wait_for_interrupt() {
    // SAFETY: waits, then opens a window for pending IRQs to be taken.
    unsafe { asm!("wfi", "msr daifclr, #2", "isb", "msr daifset, #2", options(nostack)) };
}

/// Like `wait_for_interrupt`, but also returns when another core signals
/// an event (`send_event`): the idle wait of a multi-core partition, where
/// another core may queue work for this one. IRQs are open during the
/// wait: a masked interrupt would not end a `wfe`.
pub fn wait_for_event_or_interrupt() {
    // SAFETY: waits with IRQs unmasked, masks them again.
    unsafe { asm!("msr daifclr, #2", "wfe", "msr daifset, #2", options(nostack)) };
}

/// One turn of a busy wait for another core (a spin lock, a polled
/// channel, a flag): `yield`. On hardware it is a hint, as cheap as the
/// `isb` of `core::hint::spin_loop`; QEMU with `-icount` runs every core in
/// turn on one thread and moves to the next core on `yield` (or `wfe`),
/// whereas a core spinning on `isb` keeps the emulator until the next
/// timer deadline and the cores after it in QEMU's list get no time at all
/// (QEMU 7.2 does not share the budget): the peer it waits for never runs.
pub fn relax() {
    // SAFETY: a hint; no memory or register effects.
    unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// The bench marker (docs/benchmarks.md): `hint #0x7f`, an unallocated
/// hint and so a NOP, on which tools/bench's counting plugin snapshots
/// every core's instruction counts.
pub fn bench_mark() {
    // SAFETY: an unallocated hint executes as a NOP: no memory or register
    // effects.
    unsafe { asm!("hint #0x7f", options(nomem, nostack, preserves_flags)) };
}

/// Wakes cores waiting in `wait_for_event_or_interrupt`.
pub fn send_event() {
    // SAFETY: orders earlier stores, then signals an event.
    unsafe { asm!("dsb ish", "sev", options(nostack)) };
}

/// Runs `f` with IRQs masked on this core (restoring the previous mask):
/// for locks that a preemptible task and its core's scheduler loop share.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let daif: u64;
    // SAFETY: reads and sets this core's interrupt mask.
    unsafe { asm!("mrs {0}, daif", "msr daifset, #2", out(reg) daif, options(nostack)) };
    let r = f();
    if daif & (1 << 7) == 0 {
        // SAFETY: restores the unmasked state found at entry.
        unsafe { asm!("msr daifclr, #2", options(nostack)) };
    }
    r
}

/// The virtual counter (CNTVCT_EL0) and its frequency.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reads the virtual counter; the barrier keeps it in order.
    unsafe { asm!("isb", "mrs {0}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn counter_frequency() -> u64 {
    let v: u64;
    // SAFETY: reads CNTFRQ_EL0.
    unsafe { asm!("mrs {0}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Arms this core's virtual timer for counter value `at`, or stops it.
/// `_period` is x86's hint (the hypervisor re-arms there); the virtual
/// timer is re-armed without a trap.
pub fn set_timer(at: Option<u64>, _period: u64) {
    // SAFETY: programs this core's EL1 virtual timer.
    unsafe {
        match at {
            Some(cval) => asm!("msr cntv_cval_el0, {0}", "msr cntv_ctl_el0, {1}", "isb", in(reg) cval, in(reg) 1u64, options(nostack)),
            None => asm!("msr cntv_ctl_el0, {0}", "isb", in(reg) 0u64, options(nostack)),
        }
    }
}

/// Turns on the stage-1 MMU with the identity map `root` (the same
/// tables on every vCPU): MAIR index 0 Normal write-back, 1 Device-nGnRE;
/// 39-bit addresses starting at level 1; TTBR1 walks off.
pub fn enable_mmu(root: u64) {
    let mair: u64 = 0xff | (0x04 << 8);
    let tcr: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32);
    // SAFETY: the map is an identity map of everything this code touches
    // (RAM, channels, devices), so turning it on changes no address.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {root}",
            "dsb ish",
            "isb",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, #1",        // M
            "orr {t}, {t}, #(1 << 2)", // C
            "orr {t}, {t}, #(1 << 12)", // I
            "msr sctlr_el1, {t}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            root = in(reg) root,
            t = out(reg) _,
            options(nostack)
        );
    }
}

/// What the fatal vectors save on the exception stack.
#[repr(C)]
pub struct FatalFrame {
    x: [u64; 31],
    sp: u64,
    elr: u64,
    esr: u64,
    far: u64,
    spsr: u64,
    slot: u64,
    _pad: u64,
}

const REG_NAMES: [&str; 32] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16",
    "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30", "sp",
];

/// Exception classes whose FAR_EL1 holds the faulting address: instruction
/// and data aborts, PC and SP alignment faults.
fn far_valid(esr: u64) -> bool {
    matches!(esr >> 26, 0x20 | 0x21 | 0x22 | 0x24 | 0x25 | 0x26)
}

extern "C" fn report_exception(frame: &FatalFrame) -> ! {
    let far = far_valid(frame.esr).then_some(frame.far);
    let mut regs = [("", 0u64); 32];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = (REG_NAMES[i], if i < 31 { frame.x[i] } else { frame.sp });
    }
    let fault = crate::postmortem::Fault {
        pc: frame.elr,
        fp: frame.x[29],
        lr: Some(frame.x[30]),
        address: far,
        what: crate::postmortem::What::Aarch64 { esr: frame.esr, slot: frame.slot, spsr: frame.spsr },
        regs: &regs,
    };
    match crate::postmortem::report(&fault) {
        Some(address) => crate::fault(fault_kind::STACK_OVERFLOW, address, frame.elr),
        None => crate::fault(fault_kind::EXCEPTION, frame.elr, frame.esr),
    }
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

//! x86_64: `_start` (boot and secondary vCPUs), the guest's GDT and IDT,
//! interrupt entry (so a timer interrupt can preempt any code), the context
//! switch between a preemptible task's stack and its core's scheduler
//! loop, the TSC clock, the timer and wake-up hypercalls, and
//! `vmcall`/`vmmcall`.
//!
//! The hypervisor enters `_start` already in 64-bit mode, on identity page
//! tables of its own (covering the first 8 GiB of guest-physical space with
//! write-back 2 MiB pages), with rdi = boot information and rsi = vCPU
//! index; a secondary vCPU (started with PSCI `CPU_ON` at `_start`) gets
//! its `CPU_ON` context, the boot information, in rdi. The runtime
//! installs its own GDT (the one the segment registers were loaded from is
//! not in our memory) and an IDT whose exceptions are reported to the
//! hypervisor, which applies the partition's fault policy, and whose
//! vectors 32..95 are the virtual interrupts the hypervisor injects:
//! doorbells, the timer, device interrupts (`hallows_abi`). There is no
//! virtual local APIC: a handler sends no end of interrupt.
//!
//! The image is linked position-independent at its load address, so the
//! only relocations are `R_X86_64_RELATIVE` ones whose addend is already the
//! final value; vCPU 0's `_start` applies them before any Rust code runs.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hallows_abi::{
    call, fault_kind, BootInfo, DEVICE_VECTOR_BASE, DOORBELL_VECTOR_BASE, MAX_CHANNELS, MAX_DEVICES, MAX_VCPUS,
    TIMER_VECTOR, VCPU_STACK_SIZE,
};

global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    cli",
    "    mov r12, rdi",
    "    mov r13, rsi",
    // Relocations (vCPU 0 only: the others start later, on the relocated
    // image): r_offset at +0, r_info at +8 (type in the low half),
    // r_addend at +16. Anything but RELATIVE (8) is a broken image.
    "    test r13, r13",
    "    jnz 3f",
    "    lea rsi, [rip + __rela_start]",
    "    lea rdi, [rip + __rela_end]",
    "2:  cmp rsi, rdi",
    "    jae 3f",
    "    cmp dword ptr [rsi + 8], 8",
    "    jne 4f",
    "    mov rcx, [rsi]",
    "    mov rdx, [rsi + 16]",
    "    mov [rcx], rdx",
    "    add rsi, 24",
    "    jmp 2b",
    "4:  ud2",
    // Stack: VCPU_STACK_SIZE per vCPU, ending just below the boot information.
    "3:  mov rax, r13",
    "    imul rax, rax, {stack}",
    "    mov rsp, r12",
    "    sub rsp, rax",
    "    and rsp, -16",
    // Our own GDT: 0x08 64-bit code, 0x10 data.
    "    lea rax, [rip + __hallows_gdt]",
    "    mov [rip + __hallows_gdtr + 2], rax",
    "    lgdt [rip + __hallows_gdtr]",
    "    lea rax, [rip + 5f]",
    "    push 0x08",
    "    push rax",
    "    retfq",
    "5:  mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    mov rdi, r12",
    "    mov rsi, r13",
    "    call {setup}",
    "    mov rdi, r12",
    "    mov rsi, r13",
    "    test r13, r13",
    "    jnz 7f",
    "    call __hallows_main",
    "6:  jmp 6b",
    "7:  call {secondary}",
    "    jmp 6b",
    stack = const VCPU_STACK_SIZE,
    setup = sym setup,
    secondary = sym secondary_entry,
);

// The GDT: null, code, data, then one TSS descriptor (16 bytes) per vCPU,
// which `setup` fills in; writable, as `ltr` marks a TSS busy.
global_asm!(
    ".section .data",
    ".balign 16",
    ".global __hallows_gdt",
    "__hallows_gdt:",
    "    .quad 0",
    "    .quad 0x00AF9A000000FFFF",
    "    .quad 0x00CF92000000FFFF",
    "    .fill {tss_words}, 8, 0",
    ".balign 16",
    "__hallows_gdtr:",
    "    .word {gdt_limit}",
    "    .quad 0",
    tss_words = const 2 * MAX_VCPUS,
    gdt_limit = const 8 * (3 + 2 * MAX_VCPUS) - 1,
);

/// GDT index of vCPU 0's TSS descriptor.
const FIRST_TSS: usize = 3;

// Exception stubs, 16 bytes apart: vectors without an error code push a
// zero in its place, then every stub pushes its vector number.
global_asm!(
    ".section .text",
    ".balign 16",
    ".global __hallows_stubs",
    "__hallows_stubs:",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".balign 16",
    ".if (\\v == 8) || (\\v >= 10 && \\v <= 14) || (\\v == 17) || (\\v == 21) || (\\v == 29) || (\\v == 30)",
    "    push \\v",
    ".else",
    "    push 0",
    "    push \\v",
    ".endif",
    "    jmp {common}",
    ".endr",
    common = sym exception_common,
);

/// The first vector and the number of virtual-interrupt vectors.
const FIRST_IRQ: usize = 32;
const IRQS: usize = 64;

// Virtual-interrupt stubs for vectors 32..95, 16 bytes apart: each pushes
// its vector.
global_asm!(
    ".section .text",
    ".balign 16",
    ".global __hallows_irq_stubs",
    "__hallows_irq_stubs:",
    ".irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95",
    ".balign 16",
    "    push \\v",
    "    jmp {common}",
    ".endr",
    common = sym irq_common,
);

/// Saves what a C call may clobber (the target has no SSE state and no red
/// zone), runs the handler, returns. After the 5-quadword frame, the vector
/// and 9 registers, 8 more bytes align the call. A preemption switches
/// away inside the handler with all of this on the interrupted task's
/// stack, and returns here when the task is resumed.
#[unsafe(naked)]
extern "C" fn irq_common() {
    core::arch::naked_asm!(
        "push rax",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "mov rdi, [rsp + 72]",
        "sub rsp, 8",
        "call {handle}",
        "add rsp, 8",
        // Interrupted just before the idle `hlt` (the `sti` shadow should
        // prevent it, but an emulator that drops the shadow across a VM
        // entry delivers it there): return past the `hlt`, or the vCPU
        // would sleep with its interrupt already handled.
        "lea rax, [rip + __hallows_idle_hlt]",
        "cmp [rsp + 80], rax",
        "jne 2f",
        "add qword ptr [rsp + 80], 1",
        "2:",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rax",
        "add rsp, 8",
        "iretq",
        handle = sym handle_irq,
    )
}

/// A virtual interrupt (interrupts masked): hands it to its owner (timer,
/// doorbell, device), then lets the timer preempt the interrupted task if
/// the scheduling policy said so.
extern "C" fn handle_irq(vector: u64) {
    let v = vector as u8;
    let mut preempt = false;
    if v == TIMER_VECTOR {
        preempt = crate::time::on_timer_interrupt();
    } else if let Some(i) = v.checked_sub(DOORBELL_VECTOR_BASE).filter(|i| (*i as usize) < MAX_CHANNELS) {
        crate::channel::doorbell_rang(i as u32);
    } else if v.checked_sub(DEVICE_VECTOR_BASE).is_some_and(|i| (i as usize) < MAX_DEVICES) {
        crate::irq::dispatch(v as u32);
    }
    if preempt {
        crate::task::preempt_current();
    }
}

/// Exceptions run on the vCPU's exception stack (IST 1 of its TSS, see
/// `setup`): the stack they came from may have overflowed into its guard
/// page. The general registers are saved there for the post-mortem, after
/// the vector, error code and the CPU's frame ([`FatalFrame`]).
#[unsafe(naked)]
extern "C" fn exception_common() -> ! {
    core::arch::naked_asm!(
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {report}",
        "ud2",
        report = sym report_exception,
    )
}

/// What `exception_common` leaves on the exception stack.
#[repr(C)]
pub struct FatalFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const PAGE_FAULT: u64 = 14;

extern "C" fn report_exception(f: &FatalFrame) -> ! {
    let address = (f.vector == PAGE_FAULT).then(|| {
        let cr2: u64;
        // SAFETY: reads CR2, the page-fault address.
        unsafe { asm!("mov {0}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
        cr2
    });
    let regs = [
        ("rax", f.rax),
        ("rbx", f.rbx),
        ("rcx", f.rcx),
        ("rdx", f.rdx),
        ("rsi", f.rsi),
        ("rdi", f.rdi),
        ("rbp", f.rbp),
        ("rsp", f.rsp),
        ("r8", f.r8),
        ("r9", f.r9),
        ("r10", f.r10),
        ("r11", f.r11),
        ("r12", f.r12),
        ("r13", f.r13),
        ("r14", f.r14),
        ("r15", f.r15),
        ("rflags", f.rflags),
    ];
    let fault = crate::postmortem::Fault {
        pc: f.rip,
        fp: f.rbp,
        lr: None,
        address,
        what: crate::postmortem::What::X86 { vector: f.vector, error: f.error },
        regs: &regs,
    };
    match crate::postmortem::report(&fault) {
        Some(address) => crate::fault(fault_kind::STACK_OVERFLOW, address, f.rip),
        None => crate::fault(fault_kind::EXCEPTION, f.rip, f.vector | (f.error << 32)),
    }
}

// switch(save: *mut Context, load: *const Context): saves the callee-saved
// registers and the stack pointer of the caller into `save` and resumes
// the context in `load` (at its `rip`: after the call for a context saved
// here, `__hallows_thread_start` for a fresh one).
global_asm!(
    ".section .text",
    ".global __hallows_switch",
    "__hallows_switch:",
    "    mov [rdi + 0], rbx",
    "    mov [rdi + 8], rbp",
    "    mov [rdi + 16], r12",
    "    mov [rdi + 24], r13",
    "    mov [rdi + 32], r14",
    "    mov [rdi + 40], r15",
    "    mov [rdi + 48], rsp",
    "    lea rax, [rip + 2f]",
    "    mov [rdi + 56], rax",
    "    mov rbx, [rsi + 0]",
    "    mov rbp, [rsi + 8]",
    "    mov r12, [rsi + 16]",
    "    mov r13, [rsi + 24]",
    "    mov r14, [rsi + 32]",
    "    mov r15, [rsi + 40]",
    "    mov rsp, [rsi + 48]",
    "    jmp qword ptr [rsi + 56]",
    "2:  ret",
    ".global __hallows_thread_start",
    "__hallows_thread_start:",
    "    mov rdi, r12",
    "    sti",
    "    call {body}",
    "    ud2",
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
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rsp: u64,
    rip: u64,
}

impl Context {
    /// A context that, when switched to, runs `crate::task::thread_body(arg)`
    /// with interrupts enabled on the stack ending at `stack_top`.
    pub fn new_thread(stack_top: u64, arg: u64) -> Context {
        Context {
            r12: arg,
            rsp: stack_top & !15,
            rip: __hallows_thread_start as *const () as u64,
            ..Context::default()
        }
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
    // callee-saved registers, rsp and the resume address, as a function
    // call may clobber the rest (rax is caller-saved).
    unsafe { __hallows_switch(save, load) }
}

extern "C" fn secondary_entry(info_ipa: u64, vcpu: u64) -> ! {
    crate::task::secondary_loop(info_ipa, vcpu as usize)
}

/// Each vCPU's index, one word each: a vCPU's GS base points at its own,
/// so `core_id` is one load.
static CORE_INDEX: [u64; MAX_VCPUS] = {
    let mut a = [0u64; MAX_VCPUS];
    let mut i = 0;
    while i < MAX_VCPUS {
        a[i] = i as u64;
        i += 1;
    }
    a
};

/// The index of the vCPU running this code.
pub fn core_id() -> usize {
    let v: u64;
    // SAFETY: GS base points at this vCPU's `CORE_INDEX` word (`setup`).
    unsafe { asm!("mov {0}, gs:[0]", out(reg) v, options(nostack, readonly, preserves_flags)) };
    v as usize
}

/// The guest-physical address of `_start`, for PSCI CPU_ON.
pub fn start_address() -> u64 {
    _start as *const () as u64
}

/// Exceptions, then the virtual interrupts.
const VECTORS: usize = FIRST_IRQ + IRQS;

#[repr(C, align(16))]
struct Idt(UnsafeCell<[[u64; 2]; VECTORS]>);
// SAFETY: written in `setup` by each vCPU as it starts, before it loads
// it; every vCPU writes the same values.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; VECTORS]));

/// A 64-bit TSS: only IST 1 is used (the exception stack).
#[repr(C, align(16))]
struct Tss([u32; 26]);

struct Tsses(UnsafeCell<[Tss; MAX_VCPUS]>);
// SAFETY: each vCPU writes only its own TSS, in `setup`, before loading it.
unsafe impl Sync for Tsses {}
static TSS: Tsses = Tsses(UnsafeCell::new([const { Tss([0; 26]) }; MAX_VCPUS]));

/// Whether the CPU is AMD's (`vmmcall`) rather than Intel's (`vmcall`).
static AMD: AtomicBool = AtomicBool::new(false);
/// The boot information (guest-physical = virtual).
static BOOT_INFO: AtomicU64 = AtomicU64::new(0);

const MSR_GS_BASE: u32 = 0xC000_0101;

extern "C" fn setup(info: u64, vcpu: u64) {
    extern "C" {
        static __hallows_stubs: u8;
        static __hallows_irq_stubs: u8;
        static mut __hallows_gdt: u64;
    }
    BOOT_INFO.store(info, Ordering::Relaxed);
    let index = &CORE_INDEX[(vcpu as usize).min(MAX_VCPUS - 1)] as *const u64 as u64;
    // SAFETY: the GS base is this vCPU's own (not intercepted: it is part
    // of the guest state the hypervisor switches); nothing else uses GS.
    unsafe { asm!("wrmsr", in("ecx") MSR_GS_BASE, in("eax") index as u32, in("edx") (index >> 32) as u32, options(nostack)) };
    let me = (vcpu as usize).min(MAX_VCPUS - 1);
    // This vCPU's TSS: IST 1 is its exception stack; no I/O bitmap.
    let ist = crate::mm::exception_stack_top(info, me as u64);
    // SAFETY: this vCPU's own TSS (see `Tsses`).
    let tss = unsafe { &mut (*TSS.0.get())[me] };
    tss.0[9] = ist as u32;
    tss.0[10] = (ist >> 32) as u32;
    tss.0[25] = 104 << 16;
    let base = tss as *const Tss as u64;
    let low = 103 | (base & 0xff_ffff) << 16 | 0x89 << 40 | ((base >> 24) & 0xff) << 56;
    let slot = FIRST_TSS + 2 * me;
    // SAFETY: this vCPU's own descriptor slots in the GDT (writable .data,
    // sized for MAX_VCPUS), then `ltr` of the descriptor just written.
    unsafe {
        let gdt = core::ptr::addr_of_mut!(__hallows_gdt);
        gdt.add(slot).write_volatile(low);
        gdt.add(slot + 1).write_volatile(base >> 32);
        asm!("ltr {0:x}", in(reg) (slot * 8) as u16, options(nostack, preserves_flags));
    }
    let stubs = core::ptr::addr_of!(__hallows_stubs) as u64;
    let irqs = core::ptr::addr_of!(__hallows_irq_stubs) as u64;
    // SAFETY: see `Idt`.
    let idt = unsafe { &mut *IDT.0.get() };
    for (v, gate) in idt.iter_mut().enumerate() {
        let h = match v.checked_sub(FIRST_IRQ) {
            Some(i) => irqs + 16 * i as u64,
            None => stubs + 16 * v as u64,
        };
        // Interrupt gate, present, DPL 0, selector 0x08; exceptions on IST 1.
        let ist = if v < FIRST_IRQ { 1u64 } else { 0 };
        gate[0] = (h & 0xffff) | (0x08 << 16) | (ist << 32) | (0x8E00u64 << 32) | ((h >> 16) & 0xffff) << 48;
        gate[1] = h >> 32;
    }
    let base = IDT.0.get() as u64;
    let mut idtr = [0u8; 10];
    idtr[..2].copy_from_slice(&((VECTORS * 16 - 1) as u16).to_le_bytes());
    idtr[2..].copy_from_slice(&base.to_le_bytes());
    // SAFETY: loads the IDT just built, which lives for the program's life.
    unsafe { asm!("lidt [{0}]", in(reg) idtr.as_ptr(), options(nostack, readonly)) };
    let v = core::arch::x86_64::__cpuid(0);
    // "AuthenticAMD"
    AMD.store(v.ebx == 0x6874_7541 && v.edx == 0x6974_6e65 && v.ecx == 0x444d_4163, Ordering::Relaxed);
}

fn boot_info() -> Option<&'static BootInfo> {
    let p = BOOT_INFO.load(Ordering::Relaxed) as *const BootInfo;
    // SAFETY: set in `setup` from the hypervisor's boot information pointer,
    // which lies in our RAM for the partition's life (`lib.rs` checks its
    // magic before `main`).
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Sleeps until an interrupt is pending, then lets it be taken. Interrupts
/// stay masked in the scheduler loop, so handlers run here or in
/// preemptible tasks, and none is lost: `sti` opens them only after `hlt`
/// has started, and one the hypervisor holds for us ends the `hlt` at once.
pub fn wait_for_interrupt() {
    // SAFETY: `__hallows_wait` (below) opens interrupts for its `hlt` only
    // and clobbers nothing; the handlers preserve every register they use.
    unsafe { __hallows_wait() };
}

extern "C" {
    fn __hallows_wait();
}

// `sti; hlt; cli` with a label on the `hlt`, so that the interrupt entry
// can tell an interrupt taken just *before* the `hlt` (see `irq_common`).
global_asm!(
    ".section .text",
    ".global __hallows_wait",
    "__hallows_wait:",
    "    sti",
    ".global __hallows_idle_hlt",
    "__hallows_idle_hlt:",
    "    hlt",
    "    cli",
    "    ret",
);

/// The bench marker (docs/benchmarks.md); the counting plugin exists
/// for aarch64 only, so nothing here.
pub fn bench_mark() {}

/// One turn of a busy wait for another core: `pause`, which QEMU's
/// one-thread (`-icount`) scheduler already takes as a reason to run the
/// next core.
pub fn relax() {
    core::hint::spin_loop();
}

/// Per vCPU: it waits in `wait_for_event_or_interrupt`, and another vCPU
/// signalled an event for it (`send_event`). x86 has no `wfe`/`sev`: these
/// two words are the event register, and `WAKE` the wake-up.
static IDLE: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];
static EVENT: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];

/// Like `wait_for_interrupt`, but also returns when another vCPU signals
/// an event (`send_event`): the idle wait of a multi-core partition, where
/// another core may queue work for this one. No event is lost: this vCPU
/// publishes that it waits before it looks for an event, and a sender
/// publishes the event before it looks whether to wake it (both
/// sequentially consistent), so one of the two sees the other.
pub fn wait_for_event_or_interrupt() {
    let me = core_id().min(MAX_VCPUS - 1);
    IDLE[me].store(true, Ordering::SeqCst);
    if !EVENT[me].swap(false, Ordering::SeqCst) {
        wait_for_interrupt();
    }
    IDLE[me].store(false, Ordering::SeqCst);
    EVENT[me].store(false, Ordering::SeqCst);
}

/// Wakes the partition's other vCPUs waiting in
/// `wait_for_event_or_interrupt` (a `WAKE` hypercall for each that
/// sleeps; the others find the event when they next wait).
pub fn send_event() {
    let me = core_id();
    let n = boot_info().map_or(1, |b| b.vcpu_count as usize).min(MAX_VCPUS);
    for c in (0..n).filter(|&c| c != me) {
        EVENT[c].store(true, Ordering::SeqCst);
        if IDLE[c].load(Ordering::SeqCst) {
            hypercall(call::WAKE, [c as u64, 0, 0, 0, 0]);
        }
    }
}

/// Runs `f` with interrupts masked on this vCPU (restoring the previous
/// state): for locks that a preemptible task and its core's scheduler loop
/// share.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let flags: u64;
    // SAFETY: reads RFLAGS and masks interrupts.
    unsafe { asm!("pushfq", "pop {0}", "cli", out(reg) flags) };
    let r = f();
    if flags & (1 << 9) != 0 {
        // SAFETY: restores the unmasked state found at entry.
        // Not `nomem`: `f`'s stores must not move past the `sti`, where an
        // interrupt handler could see them half done.
        unsafe { asm!("sti", options(nostack)) };
    }
    r
}

/// The TSC (the hypervisor does not offset it: every partition reads the
/// machine's) and its frequency, which the hypervisor measured at boot.
pub fn counter() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `lfence` orders the read after earlier instructions; `rdtsc`
    // is not intercepted.
    unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (hi as u64) << 32 | lo as u64
}

pub fn counter_frequency() -> u64 {
    boot_info().map_or(0, |b| b.tsc_hz)
}

/// Arms this vCPU's timer for TSC value `at`, or stops it. `period`: the
/// caller will ask for `at + period` next (a periodic tick), which the
/// hypervisor then arms itself at the fire. No call when the deadline
/// asked for is the one armed (`BootInfo::timer_armed`).
pub fn set_timer(at: Option<u64>, period: u64) {
    let want = at.map_or(0, |a| a.max(1));
    let period = if want == 0 { 0 } else { period };
    let me = core_id().min(MAX_VCPUS - 1);
    // The period asked for with the deadline armed: the same deadline with
    // another period (one-shot to periodic, or back) still needs the call.
    let same_period = LAST_PERIOD[me].swap(period, Ordering::Relaxed) == period;
    if let Some(b) = boot_info() {
        // SAFETY: a word of the boot information, which the hypervisor
        // writes only while this vCPU is out of the guest.
        let armed = unsafe { core::ptr::read_volatile(&b.timer_armed[me]) };
        if armed == want && same_period {
            return;
        }
    }
    hypercall(call::SET_TIMER, [want, period, 0, 0, 0]);
}

/// Per vCPU: the period of its last `SET_TIMER`.
static LAST_PERIOD: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// The physical address of the page-table root this vCPU runs on.
pub fn page_table_root() -> u64 {
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {0}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    cr3
}

/// Drops the translations of the page at `va` (and of any large page
/// holding it) from this vCPU's TLB.
pub fn flush_tlb_page(va: u64) {
    // SAFETY: `invlpg` only invalidates TLB entries.
    unsafe { asm!("invlpg [{0}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// `vmmcall` (AMD) or `vmcall` (Intel) with the function id in rax and
/// arguments in rdi, rsi, rdx, r10, r8; returns rax, rdi.
pub fn hypercall(function: u64, args: [u64; 5]) -> (u64, u64) {
    let (mut x0, mut x1) = (function, args[0]);
    // SAFETY: the instruction traps to the hypervisor, which only reads our
    // memory through checked hypercall arguments and writes back rax and
    // rdi (and leaves rsi, rdx, r10, r8 as they were or as results).
    unsafe {
        if AMD.load(Ordering::Relaxed) {
            asm!(
                "vmmcall",
                inout("rax") x0,
                inout("rdi") x1,
                inout("rsi") args[1] => _,
                inout("rdx") args[2] => _,
                inout("r10") args[3] => _,
                inout("r8") args[4] => _,
                options(nostack),
            );
        } else {
            asm!(
                "vmcall",
                inout("rax") x0,
                inout("rdi") x1,
                inout("rsi") args[1] => _,
                inout("rdx") args[2] => _,
                inout("r10") args[3] => _,
                inout("r8") args[4] => _,
                options(nostack),
            );
        }
    }
    (x0, x1)
}

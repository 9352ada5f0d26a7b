//! The hypervisor's own IDT, loaded on every core before anything else
//! runs there (and the host IDT of every VMCS; SVM keeps it in the host
//! save area).
//!
//! * Exceptions (vectors 0..31 but NMI): a hypervisor bug. The handler
//!   reports vector, error code, RIP and CR2 on the console and stops the
//!   machine with status 3, as a panic does, instead of triple-faulting.
//! * NMI: ignored. The hypervisor has no use for NMIs; guests'
//!   NMIs exit to the hypervisor and are absorbed there.
//! * `#DB`: disarmed and resumed. The hypervisor never arms a breakpoint
//!   nor sets `RFLAGS.TF`, and it loads DR7 = 0x400 at every VM exit, so a
//!   `#DB` here could only come from debug state a guest left behind (an
//!   emulator that does not reset DR7, a path that missed it). Stopping the
//!   machine would hand every partition a way to stop all the others, so
//!   the handler clears DR7 (and DR6), clears TF and sets RF in the
//!   interrupted frame (RF: an instruction breakpoint the CPU or an emulator
//!   still holds does not fire again on the same instruction; QEMU TCG
//!   keeps a guest's breakpoints registered after `#VMEXIT` even with DR7
//!   = 0x400) and returns. It prints nothing (the interrupted code may hold
//!   the console lock); it counts, and `exit_machine` reports the count.
//! * Interrupts (32..255): the only one the hypervisor sends is the doorbell
//!   IPI ([`apic::DOORBELL_VECTOR`]); assigned devices raise vectors
//!   0x80..0xBF through the I/O APICs (`ioapic.rs`), which become their
//!   partition's virtual vectors, queued for its boot vCPU. Each is ended
//!   at the local APIC (the spurious vector needs no EOI). The doorbell IPI
//!   and the APIC timer (the interrupts of every doorbell and tick) have
//!   short handlers of their own (`hv_doorbell_interrupt`,
//!   `hv_timer_interrupt`). They are taken only where the
//!   hypervisor opens a window for them (`svm.rs`/`vmx.rs`: after an
//!   external-interrupt exit, and while a vCPU idles in `hlt`): anywhere
//!   else the host runs with interrupts masked.
//!
//! Stacks: interrupts and ordinary exceptions run on the interrupted stack
//! (the core's own: they are taken only where the hypervisor opens a
//! window, at a known depth). The three that can arrive anywhere, or that
//! mean the current stack cannot be trusted, switch to a stack of their
//! own through the interrupt stack table of the core's TSS
//! ([`load_tss`]): double fault (IST 1), NMI (IST 2), machine check
//! (IST 3), each 8 KiB per core. A double fault from a corrupt or
//! exhausted stack is reported (status 3) instead of becoming a triple
//! fault, and an NMI (SVM's kick, taken in the hypervisor once GIF opens)
//! or a machine check that lands in the middle of a handler does not grow
//! the interrupted stack. Each handler knows its stack by address: an NMI
//! taken on its IST stack is counted (`exit_machine` reports the count,
//! which the tests check), an exception report says which stack it ran
//! on. (The per-core stacks themselves have no guard page yet: an
//! overflow of one runs into the next core's stack rather than faulting.)

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{apic, ioapic};
use crate::MAX_CORES;

#[repr(C, align(16))]
struct Idt(UnsafeCell<[[u64; 2]; 256]>);
// SAFETY: written once by core 0 (`init`) before any other core starts;
// read-only afterwards.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; 256]));

// One stub per vector, 16 bytes apart: vectors for which the CPU pushes no
// error code push a zero in its place; every stub then pushes its vector.
global_asm!(
    ".section .text",
    ".balign 16",
    ".global hv_idt_stubs",
    "hv_idt_stubs:",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130,131,132,133,134,135,136,137,138,139,140,141,142,143,144,145,146,147,148,149,150,151,152,153,154,155,156,157,158,159,160,161,162,163,164,165,166,167,168,169,170,171,172,173,174,175,176,177,178,179,180,181,182,183,184,185,186,187,188,189,190,191,192,193,194,195,196,197,198,199,200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216,217,218,219,220,221,222,223,224,225,226,227,228,229,230,231,232,233,234,235,236,237,238,239,240,241,242,243,244,245,246,247,248,249,250,251,252,253,254,255",
    ".balign 16",
    ".if (\\v == 8) || (\\v >= 10 && \\v <= 14) || (\\v == 17) || (\\v == 21) || (\\v == 29) || (\\v == 30)",
    "    push \\v",
    ".else",
    "    push 0",
    "    push \\v",
    ".endif",
    "    jmp hv_idt_common",
    ".endr",
    "hv_idt_common:",
    // [rsp] vector, [rsp + 8] error code, [rsp + 16] rip, [rsp + 32]
    // rflags. #DB: TF off, RF on (see the module documentation).
    "    cmp qword ptr [rsp], 1",
    "    jne 3f",
    "    and qword ptr [rsp + 32], ~0x100",
    "    or qword ptr [rsp + 32], 0x10000",
    "    jmp 2f",
    "3:  cmp qword ptr [rsp], 2",
    "    je 2f",
    "    cmp qword ptr [rsp], 32",
    "    jae 2f",
    "    pop rdi",
    "    pop rsi",
    "    mov rdx, [rsp]",
    "    mov rcx, cr2",
    "    and rsp, -16",
    "    call {exception}",
    "    ud2",
    // NMI and interrupts: save what a C call may clobber (no SSE state: the
    // hypervisor is built soft-float), handle, return. 9 pushes after the
    // 7-quadword frame keep the call 16-byte aligned.
    "2:  push rax",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    mov rdi, [rsp + 72]",
    "    call {interrupt}",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    add rsp, 16",
    "    iretq",
    exception = sym exception,
    interrupt = sym interrupt,
);

extern "C" fn exception(vector: u64, error: u64, rip: u64, cr2: u64) -> ! {
    let stack = match on_ist() {
        Some(i) => ["", " (on its own stack, IST 1)", " (on its own stack, IST 2)", " (on its own stack, IST 3)"][i],
        None => "",
    };
    crate::console::hv_print(format_args!(
        "hypervisor exception on core {}: vector {vector:#x}, error code {error:#x}, rip {rip:#x}, cr2 {cr2:#x}{stack}\n",
        super::this_core()
    ));
    super::exit_machine(3)
}

/// Bytes of each IST stack.
const IST_SIZE: usize = 8 * 1024;
/// Interrupt stack table slots (1-based, as in the gate): double fault,
/// NMI, machine check.
const IST_DF: usize = 1;
const IST_NMI: usize = 2;
const IST_MC: usize = 3;

#[repr(C, align(16))]
struct IstStacks(UnsafeCell<[[[u8; IST_SIZE]; 3]; MAX_CORES]>);
// SAFETY: core `i`'s TSS points only at row `i`, which only core `i`'s
// CPU switches to.
unsafe impl Sync for IstStacks {}
#[link_section = ".noinit.stacks"]
static IST_STACKS: IstStacks = IstStacks(UnsafeCell::new([[[0; IST_SIZE]; 3]; MAX_CORES]));

/// The IST slot (1..=3) of the stack the caller runs on, if it is one.
fn on_ist() -> Option<usize> {
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    let offset = rsp.wrapping_sub(IST_STACKS.0.get() as u64) as usize;
    (offset < IST_SIZE * 3 * MAX_CORES).then_some(offset / IST_SIZE % 3 + 1)
}

/// Each core's GDT (null, code64, data, code32, a 16-byte TSS descriptor)
/// and 64-bit TSS (104 bytes: the IST pointers at 0x24 + 8 * (i - 1), the
/// I/O map base at 0x66 past the limit, so no I/O bitmap).
#[repr(C, align(16))]
struct CoreDesc(UnsafeCell<[[u64; 6]; MAX_CORES]>);
// SAFETY: entry `i` is only touched by core `i`.
unsafe impl Sync for CoreDesc {}
static GDTS: CoreDesc = CoreDesc(UnsafeCell::new([[0; 6]; MAX_CORES]));
#[repr(C, align(16))]
struct Tss(UnsafeCell<[[u8; 128]; MAX_CORES]>);
// SAFETY: entry `i` is only touched by core `i`.
unsafe impl Sync for Tss {}
static TSS: Tss = Tss(UnsafeCell::new([[0; 128]; MAX_CORES]));

/// The TSS's selector in every core's GDT.
pub const TSS_SELECTOR: u16 = 0x20;

/// This core's GDT and TSS (their addresses: the VMCS host state).
pub fn gdt_and_tss(core: usize) -> (u64, u64) {
    assert!(core < MAX_CORES, "core index");
    // SAFETY: addresses only.
    unsafe { ((*GDTS.0.get())[core].as_ptr() as u64, (*TSS.0.get())[core].as_ptr() as u64) }
}

/// Loads core `core`'s own GDT (the boot GDT's descriptors at the same
/// selectors, plus its TSS) and its TSS, whose interrupt stack table
/// points at the core's three IST stacks. Every core, right after
/// [`load`], before it can take an NMI or a machine check. VMX names the
/// same TSS as the host TR; under SVM the host's TR is restored after
/// every `#VMEXIT` by `vmload` from the host state saved here (`svm.rs`).
pub fn load_tss(core: usize) {
    assert!(core < MAX_CORES, "core index");
    // SAFETY: entry `core` of the GDT, TSS and IST arrays belongs to this core.
    let (gdt, tss, ist) = unsafe { (&mut (*GDTS.0.get())[core], &mut (*TSS.0.get())[core], &(*IST_STACKS.0.get())[core]) };
    tss.fill(0);
    for slot in [IST_DF, IST_NMI, IST_MC] {
        let top = ist[slot - 1].as_ptr() as u64 + IST_SIZE as u64;
        let at = 0x24 + 8 * (slot - 1);
        tss[at..at + 8].copy_from_slice(&top.to_le_bytes());
    }
    tss[0x66..0x68].copy_from_slice(&0x68u16.to_le_bytes());
    let base = tss.as_ptr() as u64;
    gdt[0] = 0;
    gdt[1] = 0x00AF_9A00_0000_FFFF;
    gdt[2] = 0x00CF_9200_0000_FFFF;
    gdt[3] = 0x00CF_9A00_0000_FFFF;
    // Available 64-bit TSS, limit 0x67.
    gdt[4] = 0x67 | ((base & 0xff_ffff) << 16) | (0x89 << 40) | (((base >> 24) & 0xff) << 56);
    gdt[5] = base >> 32;
    let mut gdtr = [0u8; 10];
    gdtr[..2].copy_from_slice(&((6 * 8 - 1) as u16).to_le_bytes());
    gdtr[2..].copy_from_slice(&(gdt.as_ptr() as u64).to_le_bytes());
    // SAFETY: the new GDT has the same code and data descriptors at the same
    // selectors as the boot GDT, so the loaded segments stay valid; TR is
    // the TSS just written (available, so `ltr` may mark it busy).
    unsafe { asm!("lgdt [{0}]", "ltr {1:x}", in(reg) gdtr.as_ptr(), in(reg) TSS_SELECTOR, options(nostack)) };
}

/// NMIs the hypervisor took, all cores, and how many of them ran on their
/// IST stack (all of them, unless the TSS or the gate were wrong).
static NMIS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// `(taken, on the IST stack)` NMIs in the hypervisor.
pub fn nmis() -> (u64, u64) {
    (NMIS[0].load(Ordering::Relaxed), NMIS[1].load(Ordering::Relaxed))
}

/// `#DB`s the hypervisor took and disarmed, all cores (see the module
/// documentation): single-step traps (DR6.BS), and the rest (breakpoints).
/// Reported by `exit_machine` when not 0.
static DEBUG_TRAPS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// `(single-step, other)` `#DB`s taken in the hypervisor.
pub fn debug_traps() -> (u64, u64) {
    (DEBUG_TRAPS[0].load(Ordering::Relaxed), DEBUG_TRAPS[1].load(Ordering::Relaxed))
}

extern "C" fn interrupt(vector: u64) {
    if vector == 1 {
        let dr6: u64;
        // SAFETY: reads the debug status.
        unsafe { asm!("mov {0}, dr6", out(reg) dr6, options(nomem, nostack)) };
        DEBUG_TRAPS[if dr6 & (1 << 14) != 0 { 0 } else { 1 }].fetch_add(1, Ordering::Relaxed);
        // SAFETY: disarms every breakpoint (DR7 = 0x400) and clears the
        // status; the hypervisor uses neither.
        unsafe { asm!("mov dr7, {0}", "mov dr6, {1}", in(reg) 0x400u64, in(reg) 0xffff_0ff0u64, options(nomem, nostack)) };
        return;
    }
    if vector == 2 {
        NMIS[0].fetch_add(1, Ordering::Relaxed);
        if on_ist() == Some(IST_NMI) {
            NMIS[1].fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    if vector == ioapic::CONSOLE_VECTOR as u64 {
        super::CONSOLE_PENDING.store(true, Ordering::Release);
    }
    // A device interrupt (an I/O APIC pin routed to this core, the boot
    // core of the partition that owns the device): the partition's virtual
    // vector is queued for its vCPU here, injected at the next entry where
    // the guest takes interrupts. The guest acknowledges the device; the
    // pin is edge-triggered, so ending it here is all the I/O APIC needs.
    if ioapic::is_device_vector(vector) {
        let core = super::this_core();
        if let Some(virtual_vector) = ioapic::take(vector, core) {
            super::guest::queue_vector(core, virtual_vector);
        }
    }
    // NMIs (2) and the spurious vector need no end of interrupt.
    if vector != 2 && vector != apic::SPURIOUS_VECTOR as u64 {
        apic::eoi();
    }
}

/// The end of interrupt of the short handlers below, at the local APIC in
/// the mode the firmware left (`apic::X2APIC`, `apic::BASE`: the same on
/// every core, set before any core takes an interrupt); uses rax, rcx, rdx.
macro_rules! eoi_asm {
    () => {
        concat!(
            "    cmp byte ptr [rip + {x2}], 0\n",
            "    jne 8f\n",
            "    mov rax, [rip + {base}]\n",
            "    mov dword ptr [rax + {eoi}], 0\n",
            "    jmp 9f\n",
            "8:  mov ecx, {eoi_msr}\n",
            "    xor eax, eax\n",
            "    xor edx, edx\n",
            "    wrmsr\n",
            "9:\n",
        )
    };
}

// Short handlers for the two interrupts of every exit path, instead of the
// generic one (`hv_idt_common`, which saves every register a Rust call may
// clobber and dispatches in `interrupt`); each does exactly what
// `interrupt` does for its vector, saving the registers it uses:
// * the doorbell IPI (`apic::DOORBELL_VECTOR`): only ended at the APIC.
//   What it announces (a doorbell, a `WAKE`, a kick) is read from memory by
//   the code that opened the interrupt window (`svm.rs`/`vmx.rs`);
// * the APIC timer (`timer::TIMER_VECTOR`): notes the fire for this core
//   (`timer::FIRED[this_core()]`, the core from the stack it interrupted, as
//   `this_core` finds it: the timer is only taken on a core's own stack)
//   and ends it.
global_asm!(
    ".global hv_doorbell_interrupt",
    "hv_doorbell_interrupt:",
    "    push rax",
    "    push rcx",
    "    push rdx",
    eoi_asm!(),
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    iretq",
    ".global hv_timer_interrupt",
    "hv_timer_interrupt:",
    "    push rax",
    "    push rcx",
    "    push rdx",
    "    mov rax, rsp",
    "    lea rcx, [rip + {stacks}]",
    "    sub rax, rcx",
    "    shr rax, {stack_shift}",
    "    cmp rax, {max_cores}",
    "    jae 3f",
    "    lea rcx, [rip + {fired}]",
    "    mov byte ptr [rcx + rax], 1",
    "3:",
    eoi_asm!(),
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    iretq",
    x2 = sym apic::X2APIC,
    base = sym apic::BASE,
    eoi = const apic::EOI,
    eoi_msr = const apic::X2APIC_MSR + apic::EOI / 16,
    stacks = sym super::boot::HV_STACKS,
    stack_shift = const super::boot::STACK_SIZE.trailing_zeros(),
    fired = sym super::timer::FIRED,
    max_cores = const crate::MAX_CORES,
);

extern "C" {
    fn hv_doorbell_interrupt();
    fn hv_timer_interrupt();
}

/// An interrupt gate (present, DPL 0) to `handler` in code segment 0x08.
pub const fn gate(handler: u64) -> [u64; 2] {
    gate_ist(handler, 0)
}

/// An interrupt gate that switches to IST slot `ist` (0: none).
pub const fn gate_ist(handler: u64, ist: usize) -> [u64; 2] {
    [
        (handler & 0xffff) | (0x08 << 16) | ((ist as u64 & 7) << 32) | (0x8E00 << 32) | (((handler >> 16) & 0xffff) << 48),
        handler >> 32,
    ]
}

/// Fills the IDT (core 0, first thing at boot).
pub fn init() {
    extern "C" {
        static hv_idt_stubs: u8;
    }
    let stubs = core::ptr::addr_of!(hv_idt_stubs) as u64;
    // SAFETY: see `Idt`: core 0, before any other core runs or loads it.
    let idt = unsafe { &mut *IDT.0.get() };
    for (v, g) in idt.iter_mut().enumerate() {
        let ist = match v {
            2 => IST_NMI,
            8 => IST_DF,
            18 => IST_MC,
            _ => 0,
        };
        *g = gate_ist(stubs + 16 * v as u64, ist);
    }
    // The doorbell IPI and the timer: their own short handlers.
    idt[apic::DOORBELL_VECTOR as usize] = gate(hv_doorbell_interrupt as *const () as u64);
    idt[super::timer::TIMER_VECTOR as usize] = gate(hv_timer_interrupt as *const () as u64);
}

/// The IDT's address (for the VMCS host state).
pub fn base() -> u64 {
    IDT.0.get() as u64
}

/// Loads the IDT on this core.
pub fn load() {
    let mut idtr = [0u8; 10];
    idtr[..2].copy_from_slice(&(256u16 * 16 - 1).to_le_bytes());
    idtr[2..].copy_from_slice(&base().to_le_bytes());
    // SAFETY: the IDT is filled (`init` ran on core 0 before any core
    // loads it) and lives for the whole run.
    unsafe { asm!("lidt [{0}]", in(reg) idtr.as_ptr(), options(nostack, readonly)) };
}

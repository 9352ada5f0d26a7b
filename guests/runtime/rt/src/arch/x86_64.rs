//! x86_64: `_start`, the guest's GDT and IDT, and `vmcall`/`vmmcall`.
//!
//! The hypervisor enters `_start` already in 64-bit mode, on identity page
//! tables of its own (read-only to us, covering the first 4 GiB of
//! guest-physical space), with rdi = boot information and rsi = vCPU index.
//! The runtime installs its own GDT (the one the segment registers were
//! loaded from is not in our memory) and an IDT whose every exception is
//! reported to the hypervisor, which applies the partition's fault policy,
//! and whose vectors `DOORBELL_VECTOR_BASE + i` record doorbells (taken
//! only inside `wait_for_interrupt`).
//!
//! The image is linked position-independent at its load address, so the
//! only relocations are `R_X86_64_RELATIVE` ones whose addend is already the
//! final value; `_start` applies them before any Rust code runs.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use hallows_abi::{fault_kind, DOORBELL_VECTOR_BASE, MAX_CHANNELS, VCPU_STACK_SIZE};

global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    cli",
    "    mov r12, rdi",
    "    mov r13, rsi",
    // Relocations: r_offset at +0, r_info at +8 (type in the low half),
    // r_addend at +16. Anything but RELATIVE (8) is a broken image.
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
    "    call {setup}",
    "    mov rdi, r12",
    "    call __hallows_main",
    "6:  jmp 6b",
    stack = const VCPU_STACK_SIZE,
    setup = sym setup,
);

global_asm!(
    ".section .rodata",
    ".balign 16",
    "__hallows_gdt:",
    "    .quad 0",
    "    .quad 0x00AF9A000000FFFF",
    "    .quad 0x00CF92000000FFFF",
    ".section .data",
    ".balign 16",
    "__hallows_gdtr:",
    "    .word 23",
    "    .quad 0",
);

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

// Doorbell stubs, 16 bytes apart, for vectors DOORBELL_VECTOR_BASE + i
// (i < MAX_CHANNELS): each pushes its index.
global_asm!(
    ".section .text",
    ".balign 16",
    ".global __hallows_doorbell_stubs",
    "__hallows_doorbell_stubs:",
    ".irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
    ".balign 16",
    "    push \\i",
    "    jmp {common}",
    ".endr",
    common = sym doorbell_common,
);

/// Saves what a C call may clobber (the target has no SSE state and no red
/// zone), records the doorbell, returns. After the 5-quadword frame, the
/// index and 9 registers, 8 more bytes align the call. No end of interrupt: the
/// hypervisor injects doorbells without a virtual local APIC.
#[unsafe(naked)]
extern "C" fn doorbell_common() {
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
        "call {rang}",
        "add rsp, 8",
        // Interrupted just before the idle `hlt` (the `sti` shadow should
        // prevent it, but an emulator that drops the shadow across a VM
        // entry delivers it there): return past the `hlt`, or the vCPU
        // would sleep with its doorbell already recorded.
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
        rang = sym doorbell,
    )
}

extern "C" fn doorbell(index: u64) {
    crate::channel::doorbell_rang(index as u32);
}

#[unsafe(naked)]
extern "C" fn exception_common() -> ! {
    core::arch::naked_asm!(
        "pop rdi",          // vector
        "pop rsi",          // error code
        "mov rdx, [rsp]",   // faulting rip
        "and rsp, -16",
        "call {report}",
        "ud2",
        report = sym report_exception,
    )
}

extern "C" fn report_exception(vector: u64, error: u64, rip: u64) -> ! {
    crate::fault(fault_kind::EXCEPTION, rip, vector | (error << 32))
}

/// Exceptions, then the doorbells.
const VECTORS: usize = DOORBELL_VECTOR_BASE as usize + MAX_CHANNELS;

#[repr(C, align(16))]
struct Idt(UnsafeCell<[[u64; 2]; VECTORS]>);
// SAFETY: written once per vCPU in `setup` before anything can fault on
// purpose; all vCPUs write the same values.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; VECTORS]));

/// Whether the CPU is AMD's (`vmmcall`) rather than Intel's (`vmcall`).
static AMD: AtomicBool = AtomicBool::new(false);

extern "C" fn setup() {
    extern "C" {
        static __hallows_stubs: u8;
        static __hallows_doorbell_stubs: u8;
    }
    let stubs = core::ptr::addr_of!(__hallows_stubs) as u64;
    let doorbells = core::ptr::addr_of!(__hallows_doorbell_stubs) as u64;
    // SAFETY: see `Idt`; the table is ours and not yet loaded.
    let idt = unsafe { &mut *IDT.0.get() };
    for (v, gate) in idt.iter_mut().enumerate() {
        let h = match v.checked_sub(DOORBELL_VECTOR_BASE as usize) {
            Some(i) => doorbells + 16 * i as u64,
            None if v < 32 => stubs + 16 * v as u64,
            // Vectors between the exceptions and the doorbells (none while
            // the base is 32) would report themselves as exceptions.
            None => stubs,
        };
        // Interrupt gate, present, DPL 0, selector 0x08.
        gate[0] = (h & 0xffff) | (0x08 << 16) | (0x8E00u64 << 32) | ((h >> 16) & 0xffff) << 48;
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

/// Sleeps until an interrupt (a doorbell) is pending, then lets it be
/// taken. Interrupts stay masked everywhere else, so handlers only run
/// here, and none is lost: `sti` opens them only after `hlt` has started,
/// and one the hypervisor holds for us ends the `hlt` at once.
pub fn wait_for_interrupt() {
    // SAFETY: `__hallows_wait` (below) opens interrupts for its `hlt` only
    // and clobbers nothing; the doorbell handler preserves every register
    // it uses.
    unsafe { __hallows_wait() };
}

extern "C" {
    fn __hallows_wait();
}

// `sti; hlt; cli` with a label on the `hlt`, so that the doorbell handler
// can tell an interrupt taken just *before* the `hlt` (see
// `doorbell_common`).
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

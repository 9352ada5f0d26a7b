//! x86_64: UEFI runs the loader in long mode on an identity map. The
//! hypervisor's entry is the 32-bit one multiboot loaders use (`_start32`:
//! protected mode, paging off), so the loader leaves long mode on the way
//! out, from code, data and a stack below 4 GiB.

use core::arch::global_asm;

use alloc::format;
use alloc::string::String;
use hallows_table::handoff::HANDOFF_EAX;
use hallows_table::MemRange;

pub const ARCH: u32 = hallows_table::arch::X86_64;
const FOUR_GIB: u64 = 1 << 32;

/// Nothing is required of the loader's own CPU mode (SVM or VMX is the
/// hypervisor's to check and report); the exception level is 0 on x86_64.
pub fn check_cpu() -> Result<u32, String> {
    Ok(0)
}

/// The way out runs in 32-bit mode: its code, the hand-off and the stack
/// must lie below 4 GiB (identity-mapped, as UEFI maps all memory).
pub fn check_entry(handoff: u64, stack_top: u64) -> Result<(), String> {
    let code = hallows_uefi_enter as *const () as u64;
    if code >= FOUR_GIB - 4096 || handoff >= FOUR_GIB || stack_top > FOUR_GIB {
        return Err(format!(
            "the loader ({code:#x}), the hand-off ({handoff:#x}) and the entry stack ({stack_top:#x}) must lie below 4 GiB"
        ));
    }
    Ok(())
}

// hallows_uefi_enter(entry rdi, handoff rsi, stack top rdx) (System V
// arguments): interrupts off, CR4.PCIDE off (clearing CR0.PG with it set
// faults), a GDT with flat 32-bit code (0x08) and data (0x10) segments, a
// far return into 32-bit compatibility mode, paging off, EFER.LME off: now
// in protected mode as a multiboot loader leaves the machine, with eax =
// HANDOFF_EAX, ebx = the hand-off, on the entry stack, jump to the entry.
global_asm!(
    r#"
.section .text.hallows_enter, "ax"
.code64
.global hallows_uefi_enter
hallows_uefi_enter:
    cli
    mov     rax, cr4
    and     rax, ~(1 << 17)
    mov     cr4, rax
    mov     ebx, esi                    // hand-off
    mov     esi, edx                    // entry stack
    // edi: entry
    lea     rax, [rip + 3f]
    sub     rsp, 16
    mov     word ptr [rsp], 23
    mov     [rsp + 2], rax
    lgdt    [rsp]
    lea     rax, [rip + 2f]
    push    0x08
    push    rax
    .byte   0x48, 0xcb                  // retfq
.code32
2:  mov     ax, 0x10
    mov     ds, ax
    mov     es, ax
    mov     ss, ax
    mov     fs, ax
    mov     gs, ax
    mov     eax, cr0
    and     eax, 0x7fffffff
    mov     cr0, eax
    mov     ecx, 0xC0000080
    rdmsr
    and     eax, ~(1 << 8)
    wrmsr
    mov     esp, esi
    mov     eax, {magic}
    jmp     edi
.balign 8
3:  .quad   0
    .quad   0x00cf9a000000ffff
    .quad   0x00cf92000000ffff
.global hallows_uefi_enter_end
hallows_uefi_enter_end:
.code64
"#,
    magic = const HANDOFF_EAX,
);

extern "sysv64" {
    fn hallows_uefi_enter(entry: u64, handoff: u64, stack_top: u64) -> !;
}
extern "C" {
    static hallows_uefi_enter_end: u8;
}

/// Where the exit path (`hallows_uefi_enter`) lies: `hallows boot-cost
/// --uefi` counts instructions from its first one.
pub fn exit_path() -> (u64, u64) {
    (hallows_uefi_enter as *const () as u64, core::ptr::addr_of!(hallows_uefi_enter_end) as u64)
}

/// Enters the hypervisor.
///
/// # Safety
/// Boot services are gone; the image is at its link address (below 4 GiB,
/// the board's reservation) and `entry` is its 32-bit entry point;
/// `check_entry` accepted the addresses.
pub unsafe fn enter(entry: u64, handoff: u64, stack_top: u64, _image: MemRange) -> ! {
    // SAFETY: per the contract.
    unsafe { hallows_uefi_enter(entry, handoff, stack_top) }
}

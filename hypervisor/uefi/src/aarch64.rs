//! aarch64: the loader must run at EL2 (the hypervisor's level; AAVMF on
//! QEMU starts EFI applications there with `-M virt,virtualization=on`),
//! and leaves it with the MMU and caches off, as QEMU's `-kernel` enters the
//! image.

use core::arch::{asm, global_asm};

use alloc::format;
use alloc::string::String;
use hallows_table::MemRange;

pub const ARCH: u32 = hallows_table::arch::AARCH64;

/// The exception level, which must be 2.
pub fn check_cpu() -> Result<u32, String> {
    let el: u64;
    // SAFETY: reading CurrentEL has no side effect.
    unsafe { asm!("mrs {0}, CurrentEL", out(reg) el, options(nomem, nostack)) };
    let el = ((el >> 2) & 3) as u32;
    if el != 2 {
        return Err(format!(
            "the firmware started this loader at EL{el}; the hypervisor needs EL2 \
             (QEMU: -M virt,virtualization=on; a server: firmware that hands over at EL2)"
        ));
    }
    Ok(el)
}

/// Nothing to check on aarch64: the entry takes the hand-off in x0.
pub fn check_entry(_handoff: u64, _stack_top: u64) -> Result<(), String> {
    Ok(())
}

// hallows_uefi_enter(entry x0, handoff x1, start x2, end x3): with the MMU on
// (UEFI's identity map), clean and invalidate [start, end) to the point of
// coherency (the image with its .bss, stacks and page-table pool, the
// hand-off and the device tree copy: all the hypervisor reads or writes
// with its MMU off, so that no line, dirty or stale, covers them), then this
// routine's own code, then turn the MMU and caches off and jump to the
// entry with x0 = the hand-off. HCR_EL2 is reset to 0 (no VHE: the
// hypervisor's EL2 translation regime is the non-E2H one), as after reset.
global_asm!(
    r#"
.section .text.hallows_enter, "ax"
.global hallows_uefi_enter
.balign 64
hallows_uefi_enter:
    msr     daifset, #0xf
    mrs     x9, ctr_el0
    ubfx    x9, x9, #16, #4             // DminLine: log2(words)
    mov     x10, #4
    lsl     x10, x10, x9                // line size in bytes
    sub     x11, x10, #1
    bic     x2, x2, x11
1:  dc      civac, x2
    add     x2, x2, x10
    cmp     x2, x3
    b.lo    1b
    adr     x2, hallows_uefi_enter
    adr     x3, hallows_uefi_enter_end
    bic     x2, x2, x11
2:  dc      civac, x2
    add     x2, x2, x10
    cmp     x2, x3
    b.lo    2b
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    mrs     x9, sctlr_el2
    bic     x9, x9, #1                  // M
    bic     x9, x9, #(1 << 2)           // C
    bic     x9, x9, #(1 << 12)          // I
    msr     sctlr_el2, x9
    isb
    msr     hcr_el2, xzr
    isb
    tlbi    alle2
    dsb     sy
    isb
    mov     x9, x0
    mov     x0, x1
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    br      x9
hallows_uefi_enter_end:
"#
);

extern "C" {
    fn hallows_uefi_enter(entry: u64, handoff: u64, start: u64, end: u64) -> !;
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
/// Boot services are gone; the image is at its link address `image.base`
/// and `entry` is its entry point; `image.base..end` holds the image, the
/// hand-off and the device tree copy.
pub unsafe fn enter(entry: u64, handoff: u64, end: u64, image: MemRange) -> ! {
    // SAFETY: per the contract; the routine runs from UEFI's identity map
    // and needs no stack.
    unsafe { hallows_uefi_enter(entry, handoff, image.base, end) }
}

//! Thin wrappers over the x86 instructions the hypervisor uses: port I/O,
//! MSRs, CPUID. Each is a single instruction with no memory effects beyond
//! the device or register it names.

use core::arch::asm;

pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O to a port the caller owns (COM1, the PIC, debug exit).
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as `outb`; reading a UART status register has no side effect.
    unsafe { asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for architectural MSRs the CPU has (checked via
    // CPUID by the caller where they are optional).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: as `rdmsr`; callers write only the virtualization MSRs
    // (EFER.SVME, VM_HSAVE_PA) whose meaning they own.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack, preserves_flags))
    };
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

pub fn cpuid(leaf: u32, sub: u32) -> Cpuid {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    Cpuid { eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx }
}

/// This core's initial local APIC id.
pub fn apic_id() -> u64 {
    (cpuid(1, 0).ebx >> 24) as u64
}

pub fn vendor_is_amd() -> bool {
    let c = cpuid(0, 0);
    // "AuthenticAMD" in EBX, EDX, ECX.
    c.ebx == 0x6874_7541 && c.edx == 0x6974_6e65 && c.ecx == 0x444d_4163
}

pub const EFER: u32 = 0xC000_0080;

pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Ends any blocking of NMIs on this core (an NMI blocks further ones until
/// the next `iretq`): an `iretq` to the next instruction, same stack, same
/// flags.
pub fn unblock_nmi() {
    // SAFETY: builds an interrupt frame for the very next instruction with
    // this core's own SS, RSP, RFLAGS and CS, and returns through it: no
    // state changes but the end of NMI blocking.
    unsafe {
        core::arch::asm!(
            "mov {t}, ss",
            "push {t}",
            "lea {t}, [rsp + 8]",
            "push {t}",
            "pushfq",
            "mov {t}, cs",
            "push {t}",
            "lea {t}, [rip + 2f]",
            "push {t}",
            "iretq",
            "2:",
            t = out(reg) _,
        )
    }
}

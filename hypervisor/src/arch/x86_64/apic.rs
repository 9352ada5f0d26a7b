//! The local APIC, as far as doorbells need it: software-enable it on each
//! core, send the doorbell IPI to another core, end an interrupt. x2APIC
//! (MSRs) wherever CPUID offers it (the hypervisor switches every core to
//! it, or keeps it where the firmware already did), else xAPIC (MMIO at the
//! base `IA32_APIC_BASE` gives, identity-mapped uncacheable by the boot
//! tables). In x2APIC mode an IPI is one `wrmsr` to the ICR: no
//! delivery-status polling, no second register for the destination.
//! Partitions reach neither: the APIC page is in no nested table and the
//! x2APIC MSRs are outside the MSR allow-list.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::cpu::{rdmsr, wrmsr};

/// The physical vector of the doorbell IPI (hypervisor to hypervisor; a
/// partition only ever sees the virtual vectors of `hallows_abi`).
pub const DOORBELL_VECTOR: u8 = 0xF0;
/// The spurious-interrupt vector: needs no EOI.
pub const SPURIOUS_VECTOR: u8 = 0xFF;

const APIC_BASE_MSR: u32 = 0x1B;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const X2APIC_ENABLE: u64 = 1 << 10;
/// CPUID leaf 1, ECX: the CPU implements x2APIC mode.
const CPUID_X2APIC: u32 = 1 << 21;
pub(super) const X2APIC_MSR: u32 = 0x800;

/// Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset / 16).
const TPR: u32 = 0x80;
pub(super) const EOI: u32 = 0xB0;
const SVR: u32 = 0xF0;
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;

pub(super) static X2APIC: AtomicBool = AtomicBool::new(false);
pub(super) static BASE: AtomicU64 = AtomicU64::new(0xFEE0_0000);

fn x2() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

pub(super) fn write(reg: u32, v: u32) {
    if x2() {
        wrmsr(X2APIC_MSR + reg / 16, v as u64);
    } else {
        // SAFETY: a register of this core's local APIC page, below 4 GiB and
        // mapped uncacheable by the boot tables; no partition maps it.
        unsafe { core::ptr::write_volatile((BASE.load(Ordering::Relaxed) + reg as u64) as *mut u32, v) }
    }
}

pub(super) fn read(reg: u32) -> u32 {
    if x2() {
        super::cpu::rdmsr(X2APIC_MSR + reg / 16) as u32
    } else {
        // SAFETY: as in `write`.
        unsafe { core::ptr::read_volatile((BASE.load(Ordering::Relaxed) + reg as u64) as *const u32) }
    }
}

/// Per core, first thing (before it takes or sends any interrupt): x2APIC
/// mode where CPUID offers it (the same on every core: one CPU model), else
/// the mode the firmware left; software-enabled with the spurious vector,
/// every priority accepted.
///
/// The switch from xAPIC to x2APIC (both enable bits set from the enabled
/// xAPIC state) is the architectural one and keeps the APIC's state; a core
/// that is still in xAPIC mode (an application processor before it runs
/// this) is addressed by the same id from an x2APIC core (QEMU, Bochs and
/// real CPUs with fewer than 255 cores give both modes the same ids).
pub fn init_core() {
    let mut base = rdmsr(APIC_BASE_MSR);
    if base & X2APIC_ENABLE == 0 && super::cpu::cpuid(1, 0).ecx & CPUID_X2APIC != 0 {
        base |= APIC_GLOBAL_ENABLE | X2APIC_ENABLE;
        wrmsr(APIC_BASE_MSR, base);
    }
    X2APIC.store(base & X2APIC_ENABLE != 0, Ordering::Relaxed);
    BASE.store(base & 0x000f_ffff_ffff_f000, Ordering::Relaxed);
    write(SVR, (read(SVR) & !0xff) | (1 << 8) | SPURIOUS_VECTOR as u32);
    write(TPR, 0);
}

/// The physical base of the local APIC's page (xAPIC; under x2APIC the
/// page the base MSR names, which no partition may map either).
pub fn base() -> u64 {
    BASE.load(Ordering::Relaxed)
}

/// Sends the doorbell IPI (fixed delivery, physical destination) to the
/// core whose local APIC id is `apic_id`.
pub fn send_doorbell(apic_id: u64) {
    send_icr(apic_id, DOORBELL_VECTOR as u32 | (1 << 14));
}

/// Whether this core's APIC is in x2APIC mode (boot log).
pub fn x2apic() -> bool {
    x2()
}

/// Sends an IPI with ICR low word `low` to `apic_id` (also INIT and
/// start-up, `boot::start_ap`).
pub(super) fn send_icr(apic_id: u64, low: u32) {
    if x2() {
        // One MSR write sends it; the fence orders the caller's pending-bit
        // store before the IPI (WRMSR to the x2APIC ICR is not serializing).
        core::sync::atomic::fence(Ordering::SeqCst);
        wrmsr(X2APIC_MSR + ICR_LOW / 16, ((apic_id & 0xffff_ffff) << 32) | low as u64);
    } else {
        let base = BASE.load(Ordering::Relaxed);
        let reg = |r: u32| (base + r as u64) as *mut u32;
        // SAFETY: registers of this core's local APIC page, below 4 GiB and
        // mapped uncacheable by the boot tables; no partition maps it.
        unsafe {
            // Wait for a previous IPI from this core to be accepted.
            for _ in 0..1_000_000 {
                if core::ptr::read_volatile(reg(ICR_LOW)) & (1 << 12) == 0 {
                    break;
                }
                core::hint::spin_loop();
            }
            core::ptr::write_volatile(reg(ICR_HIGH), ((apic_id & 0xff) as u32) << 24);
            core::ptr::write_volatile(reg(ICR_LOW), low);
        }
    }
}

/// Sends an NMI (delivery mode 100b, physical destination) to the core
/// whose local APIC id is `apic_id`.
pub fn send_nmi(apic_id: u64) {
    send_icr(apic_id, (0b100 << 8) | (1 << 14));
}

/// Ends the interrupt in service.
pub fn eoi() {
    write(EOI, 0);
}

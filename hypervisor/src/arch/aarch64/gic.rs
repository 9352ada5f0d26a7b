//! GICv3 at EL2: just enough to deliver doorbells.
//!
//! The physical GIC belongs to the hypervisor (`HCR_EL2.IMO/FMO`): a
//! partition sees only its virtual CPU interface, and its attempts to send
//! SGIs trap. A doorbell is a physical SGI from the sender's core to the
//! receiver's, taken at EL2 there and turned into a virtual interrupt with a
//! list register. Only two physical interrupts are ever enabled per core:
//! the doorbell SGI and the maintenance interrupt (used when more doorbells
//! are pending than there are list registers).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::*;

/// The SGI the hypervisor uses to signal a core that a doorbell is pending.
pub const DOORBELL_SGI: u32 = 1;
/// GIC maintenance interrupt (a PPI).
pub const MAINTENANCE_PPI: u32 = 25;
/// Spurious: nothing to acknowledge.
pub const SPURIOUS: u32 = 1020;

static DIST: AtomicU64 = AtomicU64::new(0);

const GICD_CTLR: u64 = 0x0;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICR_FRAME: u64 = 0x2_0000;
const GICR_WAKER: u64 = 0x14;
const GICR_TYPER: u64 = 0x8;
const SGI_BASE: u64 = 0x1_0000;
const GICR_IGROUPR0: u64 = SGI_BASE + 0x80;
const GICR_ISENABLER0: u64 = SGI_BASE + 0x100;
const GICR_IPRIORITYR: u64 = SGI_BASE + 0x400;

fn read32(addr: u64) -> u32 {
    // SAFETY: callers pass registers of the GIC ranges from the validated
    // table, mapped as Device memory at EL2.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write32(addr: u64, v: u32) {
    // SAFETY: as in `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

fn read64(addr: u64) -> u64 {
    // SAFETY: as in `read32`; GICR_TYPER is a 64-bit register.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Enables affinity routing and both groups at the distributor (once, on
/// the boot core, before other cores start).
pub fn init_distributor(dist: u64) {
    DIST.store(dist, Ordering::Relaxed);
    // ARE (bit 4), EnableGrp1 (bit 1), EnableGrp0 (bit 0), single security state.
    write32(dist + GICD_CTLR, (1 << 4) | (1 << 1) | 1);
    for _ in 0..1_000_000 {
        if read32(dist + GICD_CTLR) & GICD_CTLR_RWP == 0 {
            break;
        }
    }
}

/// Wakes the redistributor of the core with affinity `hwid` and routes the
/// doorbell SGI and the maintenance interrupt to group 1, enabled. Done by
/// the boot core for every core before any partition starts: an SGI sent to
/// a redistributor whose group is not yet configured is dropped, and a
/// dropped doorbell would never be re-sent (doorbells coalesce).
pub fn init_redistributor(hwid: u64, redist: hallows_table::MemRange) -> Result<(), &'static str> {
    let want = (hwid & 0xff_ffff) | (((hwid >> 32) & 0xff) << 24);
    let mut frame = redist.base;
    let end = redist.end().ok_or("redistributor range wraps")?;
    let rd = loop {
        if frame + GICR_FRAME > end {
            return Err("no redistributor for this core");
        }
        let typer = read64(frame + GICR_TYPER);
        if typer >> 32 == want {
            break frame;
        }
        if typer & (1 << 4) != 0 {
            return Err("no redistributor for this core");
        }
        // GICv4 redistributors have two more frames (VLPI).
        frame += if typer & (1 << 1) != 0 { 2 * GICR_FRAME } else { GICR_FRAME };
    };
    // Wake the redistributor.
    write32(rd + GICR_WAKER, read32(rd + GICR_WAKER) & !(1 << 1));
    for _ in 0..1_000_000 {
        if read32(rd + GICR_WAKER) & (1 << 2) == 0 {
            break;
        }
    }
    let bits = (1 << DOORBELL_SGI) | (1 << MAINTENANCE_PPI);
    write32(rd + GICR_IGROUPR0, 0xffff_ffff);
    for intid in [DOORBELL_SGI, MAINTENANCE_PPI] {
        let reg = rd + GICR_IPRIORITYR + (intid as u64 & !3);
        let shift = (intid % 4) * 8;
        write32(reg, (read32(reg) & !(0xff << shift)) | (0x80 << shift));
    }
    write32(rd + GICR_ISENABLER0, bits);
    Ok(())
}

/// Brings up this core's CPU interfaces: physical for the hypervisor,
/// virtual for the partition.
pub fn init_cpu_interface() {
    // Physical CPU interface at EL2: system registers, all priorities, group 1.
    // ICC_SRE_EL2: SRE, DFB, DIB, and Enable (EL1 may use its own ICC_SRE_EL1).
    ICC_SRE_EL2.set(0xf);
    // SAFETY: GICv3 CPU-interface system registers of this core.
    unsafe {
        asm!("isb", "msr icc_pmr_el1, {pmr}", "msr icc_igrpen1_el1, {one}", "isb", pmr = in(reg) 0xffu64, one = in(reg) 1u64, options(nostack));
    }
    reset_virtual();
}

/// Puts the virtual CPU interface into its reset state for a (re)starting
/// vCPU: no list register in use, group 1 enabled, all priorities unmasked.
pub fn reset_virtual() {
    let lrs = (ICH_VTR_EL2.get() & 0x1f) as usize + 1;
    for i in 0..lrs.min(4) {
        write_lr(i, 0);
    }
    // ICH_VMCR_EL2: VPMR = 0xff, VENG1.
    ICH_VMCR_EL2.set((0xff << 24) | (1 << 1));
    // ICH_HCR_EL2: En.
    ICH_HCR_EL2.set(1);
}

/// Sends the doorbell SGI to the core with affinity `hwid`.
pub fn send_doorbell(hwid: u64) {
    let aff0 = hwid & 0xff;
    let v = (((hwid >> 32) & 0xff) << 48)
        | (((hwid >> 16) & 0xff) << 32)
        | ((DOORBELL_SGI as u64) << 24)
        | ((aff0 >> 4) << 44)
        | (((hwid >> 8) & 0xff) << 16)
        | (1 << (aff0 & 0xf));
    // SAFETY: generates an SGI to one core; the barrier publishes the
    // pending bit the receiver will read.
    unsafe { asm!("dsb ish", "msr icc_sgi1r_el1, {v}", "isb", v = in(reg) v, options(nostack)) };
}

/// Acknowledges the highest-priority pending physical interrupt.
pub fn ack() -> u32 {
    let v: u64;
    // SAFETY: reading IAR acknowledges an interrupt of this core.
    unsafe { asm!("mrs {v}, icc_iar1_el1", v = out(reg) v, options(nostack)) };
    (v & 0xff_ffff) as u32
}

/// Ends (priority drop and deactivation) an acknowledged interrupt.
pub fn eoi(intid: u32) {
    // SAFETY: completes an interrupt this core acknowledged.
    unsafe { asm!("msr icc_eoir1_el1, {v}", v = in(reg) intid as u64, options(nostack)) };
}

/// Makes virtual interrupt `vintid` pending for this core's vCPU. `false`
/// when every list register is busy.
pub fn inject(vintid: u32) -> bool {
    let empty: u64;
    // SAFETY: reads which list registers are free.
    unsafe { asm!("mrs {v}, ich_elrsr_el2", v = out(reg) empty, options(nostack)) };
    let lrs = (ICH_VTR_EL2.get() & 0x1f) as u32 + 1;
    let free = (empty as u32) & ((1u32 << lrs.min(4)) - 1);
    if free == 0 {
        return false;
    }
    // State pending (62), group 1 (60), priority 0xa0, virtual INTID.
    let lr = (1u64 << 62) | (1 << 60) | (0xa0 << 48) | vintid as u64;
    write_lr(free.trailing_zeros() as usize, lr);
    true
}

/// Asks for a maintenance interrupt when at most one list register is in
/// use (ICH_HCR_EL2.UIE), so pending doorbells that did not fit get in.
pub fn set_underflow_interrupt(on: bool) {
    ICH_HCR_EL2.set(1 | if on { 1 << 1 } else { 0 });
}

fn write_lr(i: usize, v: u64) {
    match i {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        _ => ICH_LR3_EL2.set(v),
    }
}

//! GICv3 at EL2: doorbells, the partition's virtual timer and its devices.
//!
//! The physical GIC belongs to the hypervisor (`HCR_EL2.IMO/FMO`): a
//! partition sees only its virtual CPU interface, and its attempts to send
//! SGIs trap. Physical interrupts enabled per core: the doorbell SGI, the
//! maintenance interrupt, the EL1 virtual timer PPI, the EL2 physical
//! timer PPI (the hypervisor's, for watchdogs), and the SPIs of the
//! devices of the partition whose boot core it is (routed there at boot).
//!
//! * A doorbell is a physical SGI from the sender's core to the receiver's,
//!   taken at EL2 there and turned into a software virtual interrupt with a
//!   list register; EL2 ends the physical SGI itself.
//! * The timer and device interrupts are hardware-linked: EL2 only drops
//!   the running priority (`ICC_CTLR_EL1.EOImode = 1`) and writes a list
//!   register with `HW = 1`, virtual INTID = physical INTID. The guest's
//!   own end of interrupt deactivates the physical interrupt, so each one
//!   costs a single trap and no maintenance interrupt; until the guest has
//!   handled it, the physical interrupt stays active and cannot fire again.
//! * When every list register is busy a hardware interrupt is held:
//!   disabled at the GIC and deactivated, and re-enabled by the maintenance
//!   interrupt once list registers free up (level-triggered sources fire
//!   again then). Doorbells leave one list register free for them.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hallows_table::MAX_CORES;

use aarch64_cpu::registers::*;

/// The SGI the hypervisor uses to signal a core that a doorbell is pending.
pub const DOORBELL_SGI: u32 = 1;
/// GIC maintenance interrupt (a PPI).
pub const MAINTENANCE_PPI: u32 = 25;
/// The EL2 physical timer (CNTHP, a PPI): the hypervisor's own, for
/// partition watchdogs.
pub const HYP_TIMER_PPI: u32 = 26;
/// Spurious: nothing to acknowledge.
pub const SPURIOUS: u32 = 1020;

/// The EL1 virtual timer (PPI), delivered to every partition core.
pub const VIRTUAL_TIMER_PPI: u32 = hallows_abi::VIRTUAL_TIMER_INTID;

static DIST: AtomicU64 = AtomicU64::new(0);
/// The console UART's SPI (0: none), routed to the control core.
static CONSOLE_SPI: AtomicU32 = AtomicU32::new(0);

/// Routes the console's receive interrupt `intid` to the core `hwid` (the
/// control core). Boot core, before any partition runs.
pub fn route_console(intid: u32, hwid: u64) {
    if (32..1020).contains(&intid) {
        CONSOLE_SPI.store(intid, Ordering::Relaxed);
        route_spi(intid, hwid);
    }
}

/// Whether `intid` is the console's interrupt.
pub fn is_console(intid: u32) -> bool {
    intid != 0 && intid == CONSOLE_SPI.load(Ordering::Relaxed)
}

/// The control core has nothing left to run: only the console's
/// interrupt may wake it (its SGIs and PPIs are disabled at its
/// redistributor; the priority mask stays open).
pub fn only_console(core: usize) {
    let rd = REDIST.get(core).map_or(0, |r| r.load(Ordering::Relaxed));
    if rd != 0 {
        write32(rd + GICR_ICENABLER0, 0xffff_ffff);
    }
}
/// Each core's redistributor frame (set at boot by the boot core).
static REDIST: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
/// Per core: hardware interrupts held back for want of a list register
/// (bit i of word w: INTID 32 * w + i). Only the owning core touches its row.
static HELD: [[AtomicU32; 32]; MAX_CORES] = [const { [const { AtomicU32::new(0) }; 32] }; MAX_CORES];
/// Per core: bit w set when word w of its `HELD` row may be non-zero, so
/// the doorbell path checks one word, not 32.
static HELD_WORDS: [AtomicU32; MAX_CORES] = [const { AtomicU32::new(0) }; MAX_CORES];

const GICD_IGROUPR: u64 = 0x80;
const GICD_ISENABLER: u64 = 0x100;
const GICD_ICENABLER: u64 = 0x180;
const GICD_ICACTIVER: u64 = 0x380;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_IROUTER: u64 = 0x6000;
const GICR_ICENABLER0: u64 = SGI_BASE + 0x180;
const GICR_ICACTIVER0: u64 = SGI_BASE + 0x380;

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
pub fn init_redistributor(core: usize, hwid: u64, redist: hallows_table::MemRange) -> Result<(), &'static str> {
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
    if let Some(slot) = REDIST.get(core) {
        slot.store(rd, Ordering::Relaxed);
    }
    let bits = (1 << DOORBELL_SGI) | (1 << MAINTENANCE_PPI) | (1 << VIRTUAL_TIMER_PPI) | (1 << HYP_TIMER_PPI);
    write32(rd + GICR_IGROUPR0, 0xffff_ffff);
    for intid in [DOORBELL_SGI, MAINTENANCE_PPI, VIRTUAL_TIMER_PPI, HYP_TIMER_PPI] {
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
        // EOImode = 1: an EOI at EL2 only drops the priority; deactivation
        // is separate (ICC_DIR_EL1, or the guest's EOI of a hardware-linked
        // virtual interrupt).
        let ctlr: u64;
        asm!("mrs {c}, icc_ctlr_el1", c = out(reg) ctlr, options(nostack));
        asm!("msr icc_ctlr_el1, {c}", "isb", c = in(reg) ctlr | (1 << 1), options(nostack));
    }
    reset_virtual();
}

/// Routes shared peripheral interrupt `intid` (a device of a partition) to
/// the core with affinity `hwid`, group 1, enabled. Boot core, before any
/// partition runs.
pub fn route_spi(intid: u32, hwid: u64) {
    let dist = DIST.load(Ordering::Relaxed);
    if dist == 0 || !(32..1020).contains(&intid) {
        return;
    }
    let (word, bit) = ((intid / 32) as u64 * 4, 1u32 << (intid % 32));
    write32(dist + GICD_IGROUPR + word, read32(dist + GICD_IGROUPR + word) | bit);
    let reg = dist + GICD_IPRIORITYR + (intid as u64 & !3);
    let shift = (intid % 4) * 8;
    write32(reg, (read32(reg) & !(0xff << shift)) | (0x80 << shift));
    let aff = (hwid & 0xff_ffff) | (((hwid >> 32) & 0xff) << 32);
    // SAFETY: as in `read32`; GICD_IROUTER<n> is a 64-bit register of an SPI.
    unsafe { core::ptr::write_volatile((dist + GICD_IROUTER + 8 * intid as u64) as *mut u64, aff) };
    write32(dist + GICD_ISENABLER + word, bit);
}

/// Enables (`set`) or disables the SPIs `bits` of the 32-interrupt word
/// at byte offset `word` of GICD_ISENABLER/GICD_ICENABLER: a Linux
/// partition's own device SPIs, as its virtual distributor was told
/// (`vdev.rs` filters the bits).
pub fn enable_spis(word: u64, bits: u32, set: bool) {
    let dist = DIST.load(Ordering::Relaxed);
    if dist == 0 || word == 0 || word >= 0x80 {
        return;
    }
    write32(dist + if set { GICD_ISENABLER } else { GICD_ICENABLER } + word, bits);
}

/// Clears the active state of a partition's hardware interrupt on this
/// core (the timer PPI, or one of its SPIs), for a vCPU that (re)starts
/// while the previous run had not ended it.
pub fn deactivate(core: usize, intid: u32) {
    let (word, bit) = ((intid / 32) as u64 * 4, 1u32 << (intid % 32));
    if intid < 32 {
        let rd = REDIST.get(core).map_or(0, |r| r.load(Ordering::Relaxed));
        if rd != 0 {
            write32(rd + GICR_ICACTIVER0, bit);
        }
    } else if intid < 1020 {
        let dist = DIST.load(Ordering::Relaxed);
        if dist != 0 {
            write32(dist + GICD_ICACTIVER + word, bit);
        }
    }
}

/// Ends the physical SGI or PPI `intid` at EL2 (priority drop, then
/// deactivation): doorbells and the maintenance interrupt.
pub fn end(intid: u32) {
    // SAFETY: completes an interrupt this core acknowledged (EOImode = 1:
    // EOIR drops the priority, DIR deactivates).
    unsafe {
        asm!("msr icc_eoir1_el1, {v}", "msr icc_dir_el1, {v}", v = in(reg) intid as u64, options(nostack));
    }
}

/// Makes the hardware interrupt `intid` pending for this core's vCPU as
/// the same virtual INTID, hardware-linked; EL2 has only dropped its
/// priority. With no free list register it is held (see the module doc).
pub fn forward(core: usize, intid: u32) {
    // SAFETY: priority drop of the interrupt this core just acknowledged.
    unsafe { asm!("msr icc_eoir1_el1, {v}", v = in(reg) intid as u64, options(nostack)) };
    let empty: u64;
    // SAFETY: reads which list registers are free.
    unsafe { asm!("mrs {v}, ich_elrsr_el2", v = out(reg) empty, options(nostack)) };
    let free = (empty as u32) & LR_MASK;
    if free != 0 {
        write_lr(free.trailing_zeros() as usize, hw_list_register(intid));
        return;
    }
    hold(core, intid);
}

/// The list register that makes hardware interrupt `intid` pending for
/// the vCPU as the same virtual INTID: pending (62), HW (61), group 1
/// (60), priority 0xa0, pINTID, vINTID. (`vectors.S` forwards the timer
/// PPI with this value.)
pub const fn hw_list_register(intid: u32) -> u64 {
    (1u64 << 62) | (1 << 61) | (1 << 60) | (0xa0 << 48) | ((intid as u64) << 32) | intid as u64
}

/// Only list registers 0..4 are used (every GICv3 has at least four).
pub const LR_MASK: u32 = 0xf;

fn hold(core: usize, intid: u32) {
    let Some(row) = HELD.get(core) else { return };
    let (word, bit) = ((intid / 32) as usize, 1u32 << (intid % 32));
    if word >= row.len() {
        return;
    }
    row[word].fetch_or(bit, Ordering::Relaxed);
    HELD_WORDS[core].fetch_or(1 << word, Ordering::Relaxed);
    if intid < 32 {
        let rd = REDIST.get(core).map_or(0, |r| r.load(Ordering::Relaxed));
        write32(rd + GICR_ICENABLER0, bit);
    } else {
        write32(DIST.load(Ordering::Relaxed) + GICD_ICENABLER + word as u64 * 4, bit);
    }
    // SAFETY: deactivates the interrupt acknowledged (and priority-dropped) above.
    unsafe { asm!("msr icc_dir_el1, {v}", v = in(reg) intid as u64, options(nostack)) };
    ICH_HCR_EL2.set(ICH_HCR_EL2.get() | (1 << 1));
}

/// Re-enables the hardware interrupts held on this core (maintenance
/// interrupt: list registers have freed up).
pub fn release_held(core: usize) {
    let Some(row) = HELD.get(core) else { return };
    let mut words = HELD_WORDS[core].swap(0, Ordering::Relaxed);
    while words != 0 {
        let word = words.trailing_zeros() as usize;
        words &= words - 1;
        let bits = row[word].swap(0, Ordering::Relaxed);
        if bits == 0 {
            continue;
        }
        if word == 0 {
            let rd = REDIST.get(core).map_or(0, |r| r.load(Ordering::Relaxed));
            write32(rd + GICR_ISENABLER0, bits);
        } else {
            write32(DIST.load(Ordering::Relaxed) + GICD_ISENABLER + word as u64 * 4, bits);
        }
    }
}

fn any_held(core: usize) -> bool {
    HELD_WORDS.get(core).is_some_and(|w| w.load(Ordering::Relaxed) != 0)
}

/// Puts the virtual CPU interface into its reset state for a (re)starting
/// vCPU: no list register in use, group 1 enabled, all priorities unmasked.
pub fn reset_virtual() {
    for i in 0..4 {
        write_lr(i, 0);
    }
    // A hardware interrupt the previous run left active (or held) would
    // never fire again: the list register that linked it is gone.
    let core = super::this_core();
    release_held(core);
    deactivate(core, VIRTUAL_TIMER_PPI);
    // ICH_VMCR_EL2: VPMR = 0xff, VENG1.
    ICH_VMCR_EL2.set((0xff << 24) | (1 << 1));
    // ICH_HCR_EL2: En.
    ICH_HCR_EL2.set(1);
}

/// The `ICC_SGI1R_EL1` value that sends the doorbell SGI to the core with
/// affinity `hwid`.
pub fn doorbell_sgi(hwid: u64) -> u64 {
    let aff0 = hwid & 0xff;
    (((hwid >> 32) & 0xff) << 48)
        | (((hwid >> 16) & 0xff) << 32)
        | ((DOORBELL_SGI as u64) << 24)
        | ((aff0 >> 4) << 44)
        | (((hwid >> 8) & 0xff) << 16)
        | (1 << (aff0 & 0xf))
}

/// Sends the doorbell SGI to the core with affinity `hwid`.
pub fn send_doorbell(hwid: u64) {
    // SAFETY: generates an SGI to one core; the barrier publishes the
    // pending bit the receiver will read, the `isb` makes the write take
    // effect before this core goes on (it may wait for the receiver).
    unsafe { asm!("dsb ishst", "msr icc_sgi1r_el1, {v}", "isb", v = in(reg) doorbell_sgi(hwid), options(nostack)) };
}

/// Acknowledges the highest-priority pending physical interrupt.
pub fn ack() -> u32 {
    let v: u64;
    // SAFETY: reading IAR acknowledges an interrupt of this core.
    unsafe { asm!("mrs {v}, icc_iar1_el1", v = out(reg) v, options(nostack)) };
    (v & 0xff_ffff) as u32
}


/// Makes software virtual interrupt `vintid` (a doorbell) pending for
/// this core's vCPU. `false` when fewer than two list registers are free:
/// the last one is kept for hardware interrupts.
pub fn inject(vintid: u32) -> bool {
    let empty: u64;
    // SAFETY: reads which list registers are free.
    unsafe { asm!("mrs {v}, ich_elrsr_el2", v = out(reg) empty, options(nostack)) };
    let free = (empty as u32) & LR_MASK;
    if free & free.wrapping_sub(1) == 0 {
        // Fewer than two set bits.
        return false;
    }
    // State pending (62), group 1 (60), priority 0xa0, virtual INTID.
    let lr = (1u64 << 62) | (1 << 60) | (0xa0 << 48) | vintid as u64;
    write_lr(free.trailing_zeros() as usize, lr);
    true
}

/// Asks for a maintenance interrupt when at most one list register is in
/// use (ICH_HCR_EL2.UIE), so pending doorbells that did not fit get in.
pub fn set_underflow_interrupt(core: usize, on: bool) {
    ICH_HCR_EL2.set(1 | if on || any_held(core) || super::vdev::sgis_pending(core) { 1 << 1 } else { 0 });
}

fn write_lr(i: usize, v: u64) {
    match i {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        _ => ICH_LR3_EL2.set(v),
    }
}

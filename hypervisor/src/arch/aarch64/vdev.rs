//! The devices a Linux partition (`boot_kind::LINUX`) sees besides its RAM,
//! emulated at EL2: a GICv3 distributor and one redistributor per vCPU, a
//! PL011 UART, and its channels' doorbell pages (`hallows_table::linux`
//! has their IPAs; `hallows build` describes them in its device tree).
//! None of them is mapped at stage 2, so every access is a data abort
//! that lands here.
//!
//! The virtual GIC is a full emulation of the distributor's and
//! redistributors' programming model over a small per-partition register
//! file, filtered to the partition's own interrupts: its SGIs (between its
//! own vCPUs only), its virtual timer PPI, its assigned devices' SPIs and
//! the UART's (virtual) SPI. Registers of any other interrupt read as zero
//! and ignore writes. The only state that reaches the hardware is the
//! enable bit of the partition's own device SPIs (forwarded to the
//! physical distributor); routing stays as the hypervisor set it (each
//! device SPI to the partition's boot core). Interrupts are delivered as
//! before, through the list registers (`gic.rs`); SGIs, which Linux sends
//! through `ICC_SGI1R_EL1` (a write that traps to EL2 with
//! `HCR_EL2.IMO`), are made pending on the target vCPU's core and signalled
//! with the hypervisor's doorbell SGI. docs/linux.md argues the design.
//!
//! Every access is validated before it is emulated: the syndrome must
//! describe it (ISV), its width must be one the register allows, it must
//! be naturally aligned and it must fall inside a window the partition
//! has. Anything else is refused ([`Mmio::Refused`]): the partition's
//! fault policy applies, as for any access outside its memory.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hallows_table::{linux, PartitionDesc, MAX_CORES, MAX_PARTITIONS};

use crate::system::{self, CoreRole, System};
use crate::{console, partition};

/// INTIDs the virtual distributor describes (`GICD_TYPER.ITLinesNumber`
/// at most 7): devices of the `virt` board are below 96.
const MAX_VINTID: u32 = 256;
const BLOCKS: usize = (MAX_VINTID / 32) as usize;

/// The stored fields of the per-interrupt registers, `N` blocks of 32
/// interrupts (the distributor: all of them, block 0 unused; a
/// redistributor: block 0, its SGIs and PPIs).
struct Regs<const N: usize> {
    group: [AtomicU32; N],
    enable: [AtomicU32; N],
    grpmod: [AtomicU32; N],
    cfg: [[AtomicU32; 2]; N],
    prio: [[AtomicU32; 8]; N],
}

impl<const N: usize> Regs<N> {
    const fn new() -> Self {
        Regs {
        group: [const { AtomicU32::new(0) }; N],
        enable: [const { AtomicU32::new(0) }; N],
        grpmod: [const { AtomicU32::new(0) }; N],
        cfg: [const { [const { AtomicU32::new(0) }; 2] }; N],
        prio: [const { [const { AtomicU32::new(0) }; 8] }; N],
        }
    }

    fn clear(&self) {
        for b in 0..N {
            for w in [&self.group[b], &self.enable[b], &self.grpmod[b]] {
                w.store(0, Ordering::Relaxed);
            }
            for w in self.cfg[b].iter().chain(self.prio[b].iter()) {
                w.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Per partition: the distributor's control register and interrupt fields.
struct VDist {
    ctlr: AtomicU32,
    regs: Regs<BLOCKS>,
}

static DIST: [VDist; MAX_PARTITIONS] = [const { VDist { ctlr: AtomicU32::new(0), regs: Regs::new() } }; MAX_PARTITIONS];
/// Per core (= per vCPU: a core runs one): its redistributor's fields and
/// `GICR_WAKER.ProcessorSleep`.
static REDIST: [Regs<1>; MAX_CORES] = [const { Regs::new() }; MAX_CORES];
static WAKER: [AtomicU32; MAX_CORES] = [const { AtomicU32::new(0) }; MAX_CORES];
/// Per core: SGIs (bit = INTID) sent to its vCPU and not yet in a list register.
static SGI_PENDING: [AtomicU32; MAX_CORES] = [const { AtomicU32::new(0) }; MAX_CORES];

/// Per partition, over all its runs: emulated device accesses, emulated
/// system-register accesses, and SGIs sent between its vCPUs (what a
/// Linux partition cost the hypervisor, printed when it ends).
struct Counts {
    mmio: AtomicU64,
    sysreg: AtomicU64,
    sgis: AtomicU64,
}

static COUNTS: [Counts; MAX_PARTITIONS] =
    [const { Counts { mmio: AtomicU64::new(0), sysreg: AtomicU64::new(0), sgis: AtomicU64::new(0) } }; MAX_PARTITIONS];

/// Prints partition `index`'s counts (a Linux partition that ended).
pub fn report(index: usize, name: &str) {
    let Some(c) = COUNTS.get(index) else { return };
    crate::console::hv_print(format_args!(
        "linux: {name}: {} emulated device accesses, {} emulated system-register accesses, {} SGIs between its vCPUs\n",
        c.mmio.load(Ordering::Relaxed),
        c.sysreg.load(Ordering::Relaxed),
        c.sgis.load(Ordering::Relaxed)
    ));
}

/// Per partition: the emulated PL011's programmable registers.
struct VUart {
    cr: AtomicU32,
    imsc: AtomicU32,
    lcr_h: AtomicU32,
    ibrd: AtomicU32,
    fbrd: AtomicU32,
    ifls: AtomicU32,
}

static UART: [VUart; MAX_PARTITIONS] = [const {
    VUart {
        cr: AtomicU32::new(0x300),
        imsc: AtomicU32::new(0),
        lcr_h: AtomicU32::new(0),
        ibrd: AtomicU32::new(0),
        fbrd: AtomicU32::new(0),
        ifls: AtomicU32::new(0x12),
    }
}; MAX_PARTITIONS];

/// The outcome of a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mmio {
    /// Emulated: the guest resumes after the instruction.
    Done,
    /// Not a window of an emulated device, or an access the device does
    /// not allow: the partition's fault policy applies.
    Refused,
}

/// A decoded access.
#[derive(Clone, Copy, Debug)]
struct Access {
    /// Offset in the device's window.
    off: u64,
    /// Bytes: 1, 2, 4 or 8.
    size: u64,
    write: bool,
    /// The value written (writes).
    value: u64,
}

/// Whether `intid` is one of partition `p`'s interrupts as its vCPUs see
/// them: every SGI, the virtual timer, the UART's SPI, its devices' SPIs.
fn owned(p: &PartitionDesc, intid: u32) -> bool {
    match intid {
        0..16 => true,
        hallows_abi::VIRTUAL_TIMER_INTID => true,
        16..=31 => false,
        linux::UART_INTID => true,
        i => i < MAX_VINTID && hardware_spi(p, i),
    }
}

/// Whether `intid` is the SPI of one of `p`'s assigned devices.
fn hardware_spi(p: &PartitionDesc, intid: u32) -> bool {
    p.devices[..(p.device_count as usize).min(p.devices.len())].iter().any(|d| d.irq == intid)
}

/// Bits of word `word` (of a register with `bits` bits per interrupt, the
/// word's first INTID at `first`) that belong to `p`'s interrupts.
fn owned_mask(p: &PartitionDesc, first: u32, bits: u32) -> u32 {
    let per_word = 32 / bits;
    let field = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
    (0..per_word).filter(|i| owned(p, first + i)).fold(0, |m, i| m | (field << (i * bits)))
}

/// `GICD_TYPER.ITLinesNumber`: enough 32-INTID blocks for the partition's
/// highest interrupt.
fn it_lines(p: &PartitionDesc) -> u32 {
    let top = p.devices[..(p.device_count as usize).min(p.devices.len())]
        .iter()
        .map(|d| d.irq)
        .filter(|&i| i < MAX_VINTID)
        .fold(linux::UART_INTID, u32::max);
    top / 32
}

/// Handles a data abort at `ipa` from the Linux partition `role.partition`
/// `esr` is its syndrome, `regs` the guest's registers (a read's
/// result goes into the one the syndrome names).
pub fn mmio(sys: &System, role: CoreRole, esr: u64, ipa: u64, regs: &mut [u64; 31]) -> Mmio {
    let p = &sys.table.partitions()[role.partition];
    // ISV: the syndrome describes a single load or store of a general
    // register; S1PTW: a stage-1 table walk hit the window (never legal).
    if esr & (1 << 24) == 0 || esr & (1 << 7) != 0 {
        return Mmio::Refused;
    }
    let size = 1u64 << ((esr >> 22) & 3);
    let srt = ((esr >> 16) & 0x1f) as usize;
    let write = esr & (1 << 6) != 0;
    if !ipa.is_multiple_of(size) {
        return Mmio::Refused;
    }
    let reg = |regs: &[u64; 31]| if srt == 31 { 0 } else { regs[srt] };
    let value = if write { reg(regs) & width_mask(size) } else { 0 };
    let within = |base: u64, len: u64| ipa.checked_sub(base).filter(|&off| off < len);
    let result = if let Some(off) = within(linux::GICD_IPA, linux::GICD_SIZE) {
        dist(p, role.partition, Access { off, size, write, value })
    } else if let Some(off) = within(linux::GICR_IPA, linux::GICR_FRAME * system::vcpu_count(p) as u64) {
        let vcpu = (off / linux::GICR_FRAME) as usize;
        redist(p, vcpu, p.vcpu_core[vcpu] as usize, Access { off: off % linux::GICR_FRAME, size, write, value })
    } else if let Some(off) = within(linux::UART_IPA, linux::UART_SIZE) {
        uart(p, role.partition, Access { off, size, write, value })
    } else if let Some(off) = within(linux::DOORBELL_IPA, linux::DOORBELL_STRIDE * hallows_table::MAX_CHANNELS as u64) {
        doorbell(sys, role.partition, Access { off, size, write, value })
    } else {
        None
    };
    match result {
        Some(read) => {
            COUNTS[role.partition].mmio.fetch_add(1, Ordering::Relaxed);
            if !write && srt != 31 {
                regs[srt] = extend(esr, read & width_mask(size), size);
            }
            Mmio::Done
        }
        None => Mmio::Refused,
    }
}

fn width_mask(size: u64) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// A load's value as the register receives it: sign-extended (SSE) and
/// cut to 32 bits for a `w` register (SF clear).
fn extend(esr: u64, v: u64, size: u64) -> u64 {
    let mut v = v;
    if esr & (1 << 21) != 0 && size < 8 {
        let shift = 64 - size * 8;
        v = (((v << shift) as i64) >> shift) as u64;
    }
    if esr & (1 << 15) == 0 {
        v &= 0xffff_ffff;
    }
    v
}

/// Register classes of the per-interrupt registers, the same offsets in
/// the distributor and in a redistributor's SGI frame: (base, bits per
/// interrupt, words).
const IGROUPR: u64 = 0x080;
const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICACTIVER_END: u64 = 0x400;
const IPRIORITYR: u64 = 0x400;
const ICFGR: u64 = 0xc00;
const IGRPMODR: u64 = 0xd00;
const NSACR: u64 = 0xe00;
/// `GICD_PIDR2` / `GICR_PIDR2`: ArchRev 3 (GICv3).
const PIDR2: u64 = 0xffe8;
const PIDR2_GICV3: u64 = 0x3b;

/// One per-interrupt register of `regs` (word index `w` of its class,
/// counted from INTID 0) for partition `p`: reads and writes it, masked to
/// `p`'s interrupts. `None` for an access the register does not allow.
/// `forward` is called with the bits of `p`'s device SPIs a write to an
/// enable register sets or clears (`true`: ISENABLER).
fn per_irq<const N: usize>(
    p: &PartitionDesc,
    regs: &Regs<N>,
    a: Access,
    block0: bool,
    forward: &dyn Fn(u64, u32, bool),
) -> Option<u64> {
    let word_off = a.off & !3;
    let lane = (a.off & 3) * 8;
    let (class, bits) = match word_off {
        IGROUPR..ISENABLER => (IGROUPR, 1),
        ISENABLER..ICENABLER => (ISENABLER, 1),
        ICENABLER..ISPENDR => (ICENABLER, 1),
        ISPENDR..ICACTIVER_END => (ISPENDR, 1),
        IPRIORITYR..0x800 => (IPRIORITYR, 8),
        ICFGR..IGRPMODR => (ICFGR, 2),
        IGRPMODR..0xd80 => (IGRPMODR, 1),
        NSACR..0xf00 => (NSACR, 2),
        _ => return Some(0),
    };
    // Widths: 32 bits everywhere; bytes for the priorities.
    if !(a.size == 4 || (a.size == 1 && class == IPRIORITYR)) {
        return None;
    }
    let w = ((word_off - class) / 4) as u32;
    let first = w * 32 / bits;
    let block = (first / 32) as usize;
    if first >= MAX_VINTID || block >= N || (block0 != (block == 0)) {
        // Past what this frame holds: the distributor's SGI/PPI words are
        // RAZ/WI under affinity routing, as are INTIDs past ITLinesNumber.
        return Some(0);
    }
    let field = match class {
        IGROUPR => &regs.group[block],
        ISENABLER | ICENABLER => &regs.enable[block],
        IPRIORITYR => &regs.prio[block][(w % 8) as usize],
        ICFGR => &regs.cfg[block][(w % 2) as usize],
        IGRPMODR => &regs.grpmod[block],
        // Pending and active state lives in the list registers; NSACR is
        // for a secure world the partition does not have.
        _ => return Some(0),
    };
    let mask = owned_mask(p, first, bits) & ((width_mask(a.size) as u32) << lane);
    if !a.write {
        return Some(u64::from((field.load(Ordering::Relaxed) & mask) >> lane));
    }
    let v = ((a.value as u32) << lane) & mask;
    match class {
        ISENABLER => {
            field.fetch_or(v, Ordering::Relaxed);
        }
        ICENABLER => {
            field.fetch_and(!v, Ordering::Relaxed);
        }
        _ => {
            let _ = field.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| Some((old & !mask) | v));
        }
    }
    if matches!(class, ISENABLER | ICENABLER) && first >= 32 {
        let hw = (0..32).filter(|i| v & (1 << i) != 0 && hardware_spi(p, first + i)).fold(0u32, |m, i| m | 1 << i);
        if hw != 0 {
            forward(u64::from(w) * 4, hw, class == ISENABLER);
        }
    }
    Some(0)
}

/// The distributor (`GICD_*`), for partition `index`.
fn dist(p: &PartitionDesc, index: usize, a: Access) -> Option<u64> {
    let d = &DIST[index];
    match a.off {
        // IROUTER<n>: routing is the hypervisor's (each device SPI to the
        // partition's boot core); 64-bit or 32-bit halves, RAZ/WI.
        0x6100..0x7fe0 if a.size == 8 || a.size == 4 => Some(0),
        _ if a.size == 8 => None,
        // CTLR: ARE_NS (RAO), DS (single security state, RAO), the group
        // enables as written; RWP never set.
        0x0000 if a.size == 4 => {
            if a.write {
                d.ctlr.store(a.value as u32 & 0x3, Ordering::Relaxed);
            }
            Some(u64::from(d.ctlr.load(Ordering::Relaxed)) | (1 << 4) | (1 << 6))
        }
        // TYPER: ITLinesNumber, IDbits = 9 (10-bit INTIDs), no LPIs, no
        // extended SPIs, no security extensions.
        0x0004 if a.size == 4 => Some(u64::from(it_lines(p)) | (9 << 19)),
        // IIDR: Arm, GICv3.
        0x0008 if a.size == 4 => Some(0x0300_043b),
        PIDR2 if a.size == 4 => Some(PIDR2_GICV3),
        0x0080..0x0f00 => per_irq(p, &d.regs, a, false, &|word, bits, set| {
            super::gic::enable_spis(word, bits, set);
        }),
        // Everything else (STATUSR, SGIR, message-based SPIs, identification
        // registers): RAZ/WI, 32-bit.
        _ if a.size == 4 => Some(0),
        _ => None,
    }
}

/// Redistributor frame of vCPU `vcpu` (running on `core`) of `p`.
fn redist(p: &PartitionDesc, vcpu: usize, core: usize, a: Access) -> Option<u64> {
    const SGI_BASE: u64 = 0x1_0000;
    let last = vcpu + 1 == system::vcpu_count(p);
    // TYPER: affinity = the vCPU's virtual MPIDR (Aff0 = vCPU number),
    // processor number, Last; no LPIs.
    let typer = ((vcpu as u64) << 32) | ((vcpu as u64) << 8) | (u64::from(last) << 4);
    let waker = WAKER.get(core)?;
    let regs = REDIST.get(core)?;
    match (a.off, a.size) {
        (0x0008, 8) => Some(typer),
        (0x0008, 4) => Some(typer & 0xffff_ffff),
        (0x000c, 4) => Some(typer >> 32),
        // PROPBASER, PENDBASER (LPIs are absent): RAZ/WI.
        (0x0070 | 0x0078, 8 | 4) => Some(0),
        (_, 8) => None,
        (0x0004, 4) => Some(0x0300_043b),
        // WAKER: ProcessorSleep as written, ChildrenAsleep follows it at once.
        (0x0014, 4) => {
            if a.write {
                waker.store(a.value as u32 & 0x2, Ordering::Relaxed);
            }
            let sleep = waker.load(Ordering::Relaxed);
            Some(u64::from(sleep | (sleep << 1)))
        }
        (PIDR2, 4) => Some(PIDR2_GICV3),
        (off, _) if (SGI_BASE + 0x80..SGI_BASE + 0xf00).contains(&off) => {
            // SGIs and PPIs: virtual state only (the timer PPI is always
            // forwarded; SGIs are the hypervisor's to deliver).
            per_irq(p, regs, Access { off: off - SGI_BASE, ..a }, true, &|_, _, _| {})
        }
        (_, 4) => Some(0),
        _ => None,
    }
}

/// The PL011 subset Linux's `amba-pl011` driver and its earlycon use:
/// output only. Transmission never waits (TXFF never set, TXFE always set,
/// never busy); there is no input (RXFE always set) and no interrupt.
fn uart(p: &PartitionDesc, index: usize, a: Access) -> Option<u64> {
    if a.size == 8 {
        return None;
    }
    let u = &UART[index];
    let stored = |r: &AtomicU32, mask: u32| {
        if a.write {
            r.store(a.value as u32 & mask, Ordering::Relaxed);
        }
        Some(u64::from(r.load(Ordering::Relaxed)))
    };
    match a.off {
        0x000 => {
            // Carriage returns are dropped: the console ends lines itself
            // (and would show a CR as an escape).
            if a.write && a.value as u8 != b'\r' {
                console::partition_write(index, p.name(), &[a.value as u8]);
            }
            Some(0)
        }
        // FR: TXFE | RXFE.
        0x018 => Some((1 << 7) | (1 << 4)),
        0x024 => stored(&u.ibrd, 0xffff),
        0x028 => stored(&u.fbrd, 0x3f),
        0x02c => stored(&u.lcr_h, 0xff),
        0x030 => stored(&u.cr, 0xffff),
        0x034 => stored(&u.ifls, 0x3f),
        0x038 => stored(&u.imsc, 0x7ff),
        // PeriphID0..3 (PL011 r1p5: 0x00341011) and PrimeCellID0..3.
        0xfe0 => Some(0x11),
        0xfe4 => Some(0x10),
        0xfe8 => Some(0x34),
        0xfec => Some(0x00),
        0xff0 => Some(0x0d),
        0xff4 => Some(0xf0),
        0xff8 => Some(0x05),
        0xffc => Some(0xb1),
        // RSR/ECR, ILPR, RIS, MIS, ICR, DMACR and the rest: RAZ/WI.
        _ => Some(0),
    }
}

/// A channel's doorbell page: a 32-bit write to entry `off / stride` of
/// the partition's channel directory rings the peer (as `NOTIFY` does);
/// reads are zero; a write to an entry that is not a doorbell channel of
/// the partition does nothing.
fn doorbell(sys: &System, index: usize, a: Access) -> Option<u64> {
    if a.size != 4 {
        return None;
    }
    if a.write {
        let entry = (a.off / linux::DOORBELL_STRIDE) as usize;
        if let Some(target) = partition::doorbell_target(sys, index, entry) {
            partition::ring_doorbell(sys, target);
        }
    }
    Some(0)
}

/// A trapped `msr`/`mrs` (EC 0x18) from a Linux partition: `ICC_SGI1R_EL1`
/// sends an SGI to its own vCPUs; every other register that traps (the
/// PMU, debug and OS-lock registers, `ACTLR_EL1`, implementation-defined
/// ones, group-0 and alias SGI registers) reads as zero and ignores
/// writes, so Linux finds no PMU and no debug hardware but goes on.
pub fn sysreg(sys: &System, role: CoreRole, core: usize, esr: u64, regs: &mut [u64; 31]) {
    COUNTS[role.partition].sysreg.fetch_add(1, Ordering::Relaxed);
    let read = esr & 1 != 0;
    let rt = ((esr >> 5) & 0x1f) as usize;
    let (op0, op2, op1, crn, crm) = ((esr >> 20) & 3, (esr >> 17) & 7, (esr >> 14) & 7, (esr >> 10) & 0xf, (esr >> 1) & 0xf);
    if read {
        if rt != 31 {
            regs[rt] = 0;
        }
        return;
    }
    let value = if rt == 31 { 0 } else { regs[rt] };
    if (op0, op1, crn, crm, op2) == (3, 0, 12, 11, 5) {
        send_sgi(sys, role, core, value);
    }
}

/// `ICC_SGI1R_EL1` written with `value` by vCPU `role.vcpu`: the SGI goes
/// to the named vCPUs of the same partition (virtual MPIDRs: Aff0 = vCPU
/// number, higher levels 0), or with IRM to all its other vCPUs; targets
/// outside the partition are ignored.
fn send_sgi(sys: &System, role: CoreRole, core: usize, value: u64) {
    let p = &sys.table.partitions()[role.partition];
    let intid = ((value >> 24) & 0xf) as u32;
    let irm = value & (1 << 40) != 0;
    let upper_affinity = (value >> 16) & 0xff != 0 || (value >> 32) & 0xff != 0 || (value >> 48) & 0xff != 0 || (value >> 44) & 0xf != 0;
    let vcpus = system::vcpu_count(p).min(16);
    let targets: u32 = if irm {
        ((1u32 << vcpus) - 1) & !(1 << role.vcpu)
    } else if upper_affinity {
        0
    } else {
        (value as u32 & 0xffff) & ((1u32 << vcpus) - 1)
    };
    let mut rest = targets;
    while rest != 0 {
        let v = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let target = p.vcpu_core[v] as usize;
        let Some(pending) = SGI_PENDING.get(target) else { continue };
        COUNTS[role.partition].sgis.fetch_add(1, Ordering::Relaxed);
        pending.fetch_or(1 << intid, Ordering::AcqRel);
        if target == core {
            deliver_sgis(core);
        } else {
            super::gic::send_doorbell(sys.table.board.core_hwid[target]);
        }
    }
}

/// Moves the SGIs pending for this core's vCPU into list registers (on the
/// doorbell SGI and the maintenance interrupt); what does not fit waits for
/// the next maintenance interrupt.
pub fn deliver_sgis(core: usize) {
    let Some(pending) = SGI_PENDING.get(core) else { return };
    let mut sgis = pending.swap(0, Ordering::AcqRel);
    while sgis != 0 {
        let intid = sgis.trailing_zeros();
        if !super::gic::inject(intid) {
            pending.fetch_or(sgis, Ordering::AcqRel);
            super::gic::set_underflow_interrupt(core, true);
            return;
        }
        sgis &= sgis - 1;
    }
}

/// Whether SGIs wait for a list register on `core`.
pub fn sgis_pending(core: usize) -> bool {
    SGI_PENDING.get(core).is_some_and(|p| p.load(Ordering::Relaxed) != 0)
}

/// A vCPU of a Linux partition is (re)entered on `core`: its redistributor
/// and pending SGIs start afresh; for the boot vCPU (the partition is
/// starting or restarting) so do the distributor and the UART, and its
/// device SPIs are disabled until Linux enables them.
pub fn reset(sys: &System, role: CoreRole, core: usize) {
    if let (Some(r), Some(w), Some(s)) = (REDIST.get(core), WAKER.get(core), SGI_PENDING.get(core)) {
        r.clear();
        w.store(0, Ordering::Relaxed);
        s.store(0, Ordering::Relaxed);
    }
    if role.vcpu != 0 {
        return;
    }
    let p = &sys.table.partitions()[role.partition];
    let d = &DIST[role.partition];
    d.ctlr.store(0, Ordering::Relaxed);
    d.regs.clear();
    let u = &UART[role.partition];
    for (r, v) in [(&u.cr, 0x300), (&u.imsc, 0), (&u.lcr_h, 0), (&u.ibrd, 0), (&u.fbrd, 0), (&u.ifls, 0x12)] {
        r.store(v, Ordering::Relaxed);
    }
    for dev in &p.devices[..(p.device_count as usize).min(p.devices.len())] {
        if (32..MAX_VINTID).contains(&dev.irq) {
            super::gic::enable_spis(u64::from(dev.irq / 32) * 4, 1 << (dev.irq % 32), false);
        }
    }
}

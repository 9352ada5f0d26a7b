//! The validated system: the table as the hypervisor trusts it after
//! checking it, and the per-partition runtime facts computed at boot.
//!
//! The table was produced by our own tool, but the hypervisor still checks
//! every range it will act on before it maps or writes anything: a
//! corrupted or hand-edited image must fail to boot, never alias memory.

use core::fmt;

use hallows_abi::{BOOT_INFO_FROM_END, VCPU_STACK_SIZE};
use hallows_paging::{Attr, MapError, MemKind, PageTable, Stage2, PAGE_SIZE};
use hallows_ring::{Access, ChannelLayout, Tuning};
use hallows_table::{
    fault_policy, notify, perm, region_kind, ChannelDesc, MemRange, PartitionDesc, Region, SystemTable, TableError,
    MAX_CHANNELS, MAX_CORES, MAX_DEVICES, MAX_PARTITIONS, MAX_RAM_RANGES, MAX_REGIONS, MAX_SEGMENTS,
};

use crate::arch::GuestRam;

/// Why the machine did not boot.
#[derive(Debug)]
pub enum BootError {
    Table(TableError),
    PayloadTooLarge,
    BadBoard,
    Map(MapError),
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    DeviceTree(&'static str),
    /// The UEFI loader's hand-off is unusable.
    Firmware(&'static str),
    Board(&'static str, u64),
    /// A partition's core (index, hardware id) is not among the `reported`
    /// cores the firmware describes (`source`).
    MissingCore { core: usize, id: &'static str, hwid: u64, reported: usize, source: &'static str },
    Partition { index: usize, what: &'static str },
    Channel { index: usize, what: &'static str },
    Load(hallows_abi::Error),
    CpuOn { core: usize, status: i64 },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Table(e) => write!(f, "invalid system table: {e:?}"),
            BootError::PayloadTooLarge => write!(f, "the payload does not fit the board's hypervisor reservation"),
            BootError::BadBoard => write!(f, "the board description in the table is inconsistent"),
            BootError::Map(e) => write!(f, "page-table construction failed: {e:?}"),
            BootError::DeviceTree(e) => write!(f, "device tree: {e}"),
            BootError::Firmware(e) => write!(f, "firmware: {e}"),
            BootError::MissingCore { core, id, hwid, reported, source } => write!(
                f,
                "the manifest asks for core {core} ({id} {hwid:#x}); the firmware reports {reported} core{} ({source}): \
                 give the partitions fewer cores or boot a machine with more",
                if *reported == 1 { "" } else { "s" }
            ),
            BootError::Board(what, value) => write!(f, "the machine does not match the manifest's board: {what} {value:#x}"),
            BootError::Partition { index, what } => write!(f, "partition #{index}: {what}"),
            BootError::Channel { index, what } => write!(f, "channel #{index}: {what}"),
            BootError::Load(e) => write!(f, "loading a guest failed: {e:?}"),
            BootError::CpuOn { core, status } => write!(f, "firmware refused to start core {core} (PSCI status {status})"),
        }
    }
}

/// What the hypervisor keeps for a partition after boot.
#[derive(Clone, Copy, Debug)]
pub struct PartitionRt {
    pub ram: GuestRam,
    pub stage2_root: u64,
    pub vmid: u16,
}

/// Runtime facts being assembled at boot.
#[derive(Debug)]
pub struct Loaded {
    pub partitions: [Option<PartitionRt>; MAX_PARTITIONS],
}

impl Loaded {
    pub const EMPTY: Loaded = Loaded { partitions: [None; MAX_PARTITIONS] };
}

/// What a core does: run vCPU `vcpu` of partition `partition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreRole {
    pub partition: usize,
    pub vcpu: usize,
}

/// The validated system, immutable after boot.
#[derive(Debug)]
pub struct System {
    pub table: &'static SystemTable,
    pub payload: &'static [u8],
    pub parts: [Option<PartitionRt>; MAX_PARTITIONS],
    pub core_map: [Option<CoreRole>; MAX_CORES],
    /// Per partition, per entry of its channel directory: where that
    /// channel's doorbell rings (peer partition, entry in the peer's
    /// directory); `None` for poll-mode channels and unused entries.
    pub doorbells: [[Option<(u8, u8)>; MAX_CHANNELS]; MAX_PARTITIONS],
}

static SYSTEM: spin::Once<System> = spin::Once::new();

/// Publishes the system (once, on the primary core, before other cores start).
pub fn install(table: &'static SystemTable, payload: &'static [u8], loaded: Loaded) -> &'static System {
    let mut core_map = [None; MAX_CORES];
    for (index, p) in table.partitions().iter().enumerate() {
        for (vcpu, core) in cores(p).enumerate() {
            core_map[core] = Some(CoreRole { partition: index, vcpu });
        }
    }
    let mut doorbells = [[None; MAX_CHANNELS]; MAX_PARTITIONS];
    for (index, routes) in doorbells.iter_mut().enumerate().take(table.partitions().len()) {
        for (route, (id, c)) in routes.iter_mut().zip(directory(table, index)) {
            if c.notify != notify::DOORBELL {
                continue;
            }
            let peer = if c.producer as usize == index { c.consumer } else { c.producer } as usize;
            if let Some(slot) = directory(table, peer).position(|(other, _)| other == id) {
                *route = Some((peer as u8, slot as u8));
            }
        }
    }
    SYSTEM.call_once(|| System { table, payload, parts: loaded.partitions, core_map, doorbells })
}

/// The installed system. Only called on paths that run after `install`.
pub fn get() -> &'static System {
    SYSTEM.get().expect("system used before boot finished")
}

/// The board core index of each vCPU of a partition, in vCPU order (vCPU
/// 0 boots first). `validate` proves these are exactly the mask's cores.
pub fn cores(p: &PartitionDesc) -> impl Iterator<Item = usize> + '_ {
    p.vcpu_core[..vcpu_count(p).min(MAX_CORES)].iter().map(|&c| c as usize)
}

pub fn vcpu_count(p: &PartitionDesc) -> usize {
    p.core_mask.count_ones() as usize
}

/// The guest-physical address of a partition's boot information.
pub fn boot_info_ipa(p: &PartitionDesc) -> u64 {
    p.ram_ipa + p.ram_size - BOOT_INFO_FROM_END
}

/// What the boot vCPU of a partition gets in `x0`: a RustHallows guest its
/// boot information, a Linux kernel its device tree.
pub fn boot_context(p: &PartitionDesc) -> u64 {
    if p.is_linux() {
        p.dtb_ipa
    } else {
        boot_info_ipa(p)
    }
}

pub fn region_attr(r: &Region) -> Attr {
    Attr {
        read: r.perm & perm::READ != 0,
        write: r.perm & perm::WRITE != 0,
        exec: r.perm & perm::EXEC != 0,
        kind: if r.kind == region_kind::DEVICE { MemKind::Device } else { MemKind::Normal },
    }
}

/// Checks the machine the firmware describes against the table's board
/// (aarch64: from the device tree, whose PSCI must use SMC).
#[cfg(target_arch = "aarch64")]
pub fn check_board(table: &SystemTable, dt_ram: &[MemRange], dt_cpus: &[u64], psci_smc: bool, source: &'static str) -> Result<(), BootError> {
    if !psci_smc {
        return Err(BootError::DeviceTree("PSCI is not reachable through SMC (need -M virt,virtualization=on)"));
    }
    check_machine(table, dt_ram, dt_cpus, source)
}

/// Checks the firmware's RAM ranges and core hardware ids (aarch64: from
/// the device tree; x86_64: the multiboot memory map and the ACPI MADT)
/// against the table's board.
/// `source` names where the cores were listed (the device tree, the ACPI
/// MADT), for the message.
pub fn check_machine(table: &SystemTable, dt_ram: &[MemRange], dt_cpus: &[u64], source: &'static str) -> Result<(), BootError> {
    let in_dt_ram = |r: &MemRange| dt_ram.iter().any(|d| d.contains(r));
    if !in_dt_ram(&table.board.hypervisor) {
        return Err(BootError::Board("the hypervisor reservation is not RAM here, at", table.board.hypervisor.base));
    }
    for p in table.partitions() {
        if !in_dt_ram(&p.ram()) {
            return Err(BootError::Board("partition RAM is not RAM on this machine, at", p.ram_pa));
        }
        for core in cores(p) {
            let hwid = table.board.core_hwid[core];
            if !dt_cpus.contains(&hwid) {
                let id = if table.board.arch == hallows_table::arch::X86_64 { "local APIC id" } else { "MPIDR" };
                return Err(BootError::MissingCore { core, id, hwid, reported: dt_cpus.len(), source });
            }
        }
    }
    Ok(())
}

/// x86_64: the highest GSI a device interrupt may have (the board names
/// I/O APIC pins by GSI; `hallows check` applies the same bound).
pub const MAX_GSI: u32 = 255;

/// Validates everything the hypervisor will act on. `payload` is where the
/// payload lies, `image` the whole hypervisor image including it.
pub fn validate(table: &SystemTable, payload: MemRange, image: MemRange) -> Result<(), BootError> {
    let board = &table.board;
    if board.core_count as usize > MAX_CORES
        || board.ram_count as usize > MAX_RAM_RANGES
        || table.partition_count as usize > MAX_PARTITIONS
    {
        return Err(BootError::BadBoard);
    }
    let ram = &board.ram[..board.ram_count as usize];
    let in_ram = |r: &MemRange| ram.iter().any(|b| b.contains(r));
    if !in_ram(&board.hypervisor) || !board.hypervisor.contains(&image) {
        return Err(BootError::BadBoard);
    }
    let parts = table.partitions();
    let mut owned = 0u64;
    for (index, p) in parts.iter().enumerate() {
        let bad = |what| Err(BootError::Partition { index, what });
        // The console frames each partition's lines with its name: only
        // names that cannot pass for the hypervisor's `[hallows]` or break
        // the framing (what `hallows check` allows).
        let name = p.name();
        if name.is_empty()
            || name == hallows_abi::console::HYPERVISOR
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return bad("invalid name");
        }
        if p.core_mask == 0 || (board.core_count < 64 && p.core_mask >> board.core_count != 0) {
            return bad("owns a core the board does not have");
        }
        if vcpu_count(p) > MAX_CORES || cores(p).fold(0u64, |m, c| m | 1u64.checked_shl(c as u32).unwrap_or(0)) != p.core_mask {
            return bad("vCPU core list does not match the core mask");
        }
        if owned & p.core_mask != 0 {
            return bad("owns a core another partition owns");
        }
        owned |= p.core_mask;
        let r = p.ram();
        let window = MemRange { base: p.ram_ipa, size: p.ram_size };
        if r.size == 0 || r.base % PAGE_SIZE != 0 || r.size % PAGE_SIZE != 0 || p.ram_ipa % PAGE_SIZE != 0 {
            return bad("RAM not page aligned");
        }
        if !in_ram(&r) || window.end().is_none_or(|e| e > PageTable::<Stage2>::INPUT_SPAN) {
            return bad("RAM outside the board's RAM or the stage-2 input range");
        }
        if r.overlaps(&board.hypervisor) {
            return bad("RAM overlaps the hypervisor");
        }
        if parts[..index].iter().any(|q| q.ram().overlaps(&r)) {
            return bad("RAM overlaps another partition");
        }
        // A Linux partition's RAM is all Linux's: no boot information, no
        // stacks of ours.
        let reserved = match p.boot_kind {
            hallows_table::boot_kind::RUST => BOOT_INFO_FROM_END + VCPU_STACK_SIZE * vcpu_count(p) as u64,
            hallows_table::boot_kind::LINUX => 0,
            _ => return bad("unknown boot kind"),
        };
        if r.size <= reserved {
            return bad("RAM too small for boot information and stacks");
        }
        let loadable = MemRange { base: p.ram_ipa, size: p.ram_size - reserved };
        if p.segment_count as usize > MAX_SEGMENTS || p.region_count as usize > MAX_REGIONS {
            return bad("too many segments or regions");
        }
        for s in &p.segments[..p.segment_count as usize] {
            if s.file_size > s.mem_size || !loadable.contains(&MemRange { base: s.ipa, size: s.mem_size }) {
                return bad("a guest segment lies outside its RAM");
            }
            let end = s.payload_offset.checked_add(s.file_size);
            if end.is_none_or(|e| e > payload.size) {
                return bad("a guest segment lies outside the payload");
            }
        }
        if !loadable.contains(&MemRange { base: p.entry, size: 4 }) {
            return bad("entry point outside its RAM");
        }
        if p.is_linux() && (p.dtb_ipa % 8 != 0 || !loadable.contains(&MemRange { base: p.dtb_ipa, size: 8 })) {
            return bad("device tree outside its RAM or misaligned");
        }
        if p.is_linux() && vcpu_count(p) > crate::arch::MAX_LINUX_VCPUS {
            return bad("more vCPUs than the virtual GIC describes");
        }
        for g in &p.regions[..p.region_count as usize] {
            let target = MemRange { base: g.pa, size: g.size };
            if g.size == 0 || g.pa % PAGE_SIZE != 0 || g.ipa % PAGE_SIZE != 0 || g.size % PAGE_SIZE != 0 {
                return bad("a region is not page aligned");
            }
            if (MemRange { base: g.ipa, size: g.size }).overlaps(&window) {
                return bad("a region overlaps its RAM window");
            }
            if target.overlaps(&board.hypervisor) || parts.iter().any(|q| q.ram().overlaps(&target)) {
                return bad("a region maps hypervisor or partition RAM");
            }
            if g.kind == region_kind::NORMAL && !in_ram(&target) {
                return bad("a memory region is not RAM");
            }
        }
        for g in &p.regions[..p.region_count as usize] {
            // A device region must be MMIO the hypervisor does not keep for
            // itself: never RAM, never the console or the GIC.
            let target = MemRange { base: g.pa, size: g.size };
            if g.kind == region_kind::DEVICE
                && (in_ram(&target) || [board.console, board.gic_dist, board.gic_redist].iter().any(|h| h.overlaps(&target)))
            {
                return bad("a device region maps RAM or the hypervisor's own devices");
            }
        }
        if p.device_count as usize > MAX_DEVICES || p.dma > 1 {
            return bad("too many devices, or an unknown DMA mode");
        }
        for d in &p.devices[..p.device_count as usize] {
            let mmio = MemRange { base: d.base, size: d.size };
            let mapped = p.regions[..p.region_count as usize].iter().any(|g| {
                g.kind == region_kind::DEVICE && (MemRange { base: g.ipa, size: g.size }).contains(&mmio) && g.ipa == g.pa
            });
            if !mapped {
                return bad("a device's registers are not in one of its device regions");
            }
            if d.irq != 0 {
                if board.arch == hallows_table::arch::X86_64 {
                    // A GSI (an I/O APIC pin; whether this machine has it
                    // is checked against the MADT when it is routed).
                    if d.irq > MAX_GSI {
                        return bad("a device interrupt is not a GSI the hypervisor routes (1..=255)");
                    }
                } else {
                    let doorbells = hallows_abi::DOORBELL_INTID_BASE..hallows_abi::DOORBELL_INTID_BASE + MAX_CHANNELS as u32;
                    if !(32..1020).contains(&d.irq) || doorbells.contains(&d.irq) {
                        return bad("a device interrupt is not an SPI outside the doorbell INTIDs");
                    }
                }
                let taken = parts[..index]
                    .iter()
                    .chain(core::iter::once(p))
                    .flat_map(|q| q.devices[..(q.device_count as usize).min(MAX_DEVICES)].iter())
                    .filter(|o| o.irq == d.irq)
                    .count();
                if taken > 1 {
                    return bad("a device interrupt is assigned twice");
                }
            }
        }
        if !matches!(p.fault_policy, fault_policy::STOP | fault_policy::RESTART | fault_policy::HALT) {
            return bad("unknown fault policy");
        }
    }
    validate_channels(table)
}

/// The channels partition `partition` is an end of, in table order, with
/// their table index: the partition's channel directory. Entry `i` is what
/// the guest calls channel `i` (`NOTIFY`, doorbell INTIDs).
pub fn directory(table: &SystemTable, partition: usize) -> impl Iterator<Item = (usize, &ChannelDesc)> {
    let p = partition as u32;
    table.channels().iter().enumerate().filter(move |(_, c)| c.producer == p || c.consumer == p)
}

/// The layout both ends of channel `c` build: its geometry with its
/// tuning. `None` for a geometry the ring refuses or an unknown tuning code.
pub fn channel_layout(c: &ChannelDesc) -> Option<ChannelLayout> {
    let tuning = Tuning::from_code(c.tuning)?;
    let layout = ChannelLayout::new(c.slot_size as usize, c.slot_count as usize).ok()?;
    Some(layout.tuned(tuning))
}

/// The stage-2 mappings of channel `c` for one of its ends: the ring
/// crate's layout decides which region each side may write, so direction is
/// enforced by the hardware, not by the guests' good manners.
pub fn channel_mappings(c: &ChannelDesc, producer: bool) -> Option<[(u64, u64, u64, Attr); 3]> {
    let layout = channel_layout(c)?;
    Some(layout.regions().map(|r| {
        let access = if producer { r.producer } else { r.consumer };
        let attr = match access {
            Access::ReadOnly => Attr::RO,
            Access::ReadWrite => Attr::RW,
        };
        (c.ipa + r.offset as u64, c.pa + r.offset as u64, r.size as u64, attr)
    }))
}

/// Validates the channel table against the (already validated) partitions.
pub fn validate_channels(table: &SystemTable) -> Result<(), BootError> {
    if table.channel_count as usize > MAX_CHANNELS {
        return Err(BootError::Channel { index: MAX_CHANNELS, what: "too many channels" });
    }
    let board = &table.board;
    let ram = &board.ram[..board.ram_count as usize];
    let parts = table.partitions();
    let chans = table.channels();
    for (index, c) in chans.iter().enumerate() {
        let bad = |what| Err(BootError::Channel { index, what });
        let (prod, cons) = (c.producer as usize, c.consumer as usize);
        if prod >= parts.len() || cons >= parts.len() || prod == cons {
            return bad("its ends are not two distinct partitions");
        }
        let Ok(layout) = ChannelLayout::new(c.slot_size as usize, c.slot_count as usize) else {
            return bad("invalid geometry");
        };
        let Some(tuning) = Tuning::from_code(c.tuning) else {
            return bad("unknown ring tuning");
        };
        // The tuning moves the stamps, never the memory or its regions.
        let layout = layout.tuned(tuning);
        if layout.total_size() as u64 != c.size || c.pa % PAGE_SIZE != 0 || c.ipa % PAGE_SIZE != 0 {
            return bad("size or alignment does not match its layout");
        }
        let mem = MemRange { base: c.pa, size: c.size };
        let window = MemRange { base: c.ipa, size: c.size };
        if !ram.iter().any(|r| r.contains(&mem)) {
            return bad("memory outside the board's RAM");
        }
        if mem.overlaps(&board.hypervisor) || parts.iter().any(|p| p.ram().overlaps(&mem)) {
            return bad("memory overlaps the hypervisor or a partition's RAM");
        }
        if window.end().is_none_or(|e| e > PageTable::<Stage2>::INPUT_SPAN)
            || parts.iter().any(|p| (MemRange { base: p.ram_ipa, size: p.ram_size }).overlaps(&window))
        {
            return bad("guest-physical window overlaps partition RAM or is out of range");
        }
        for o in &chans[..index] {
            if (MemRange { base: o.pa, size: o.size }).overlaps(&mem)
                || (MemRange { base: o.ipa, size: o.size }).overlaps(&window)
            {
                return bad("overlaps another channel");
            }
        }
        if !matches!(c.notify, notify::POLL | notify::DOORBELL) {
            return bad("unknown notification mode");
        }
    }
    Ok(())
}

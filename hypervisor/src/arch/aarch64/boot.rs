//! Boot: the primary core validates the system, builds every table and
//! loads every partition, then starts the other cores; each core then
//! enters the partition that owns it and never returns to boot code.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::*;
use hallows_paging::{Attr, El2Stage1, PageTable, Stage2};
use hallows_table::{MemRange, SystemTable, TableError};

use super::phys::{self, GuestRam, TablePool};
use super::{dtb, gic, regs, uart, virtio};
use crate::system::{self, Loaded};
use crate::{console, partition, MAX_CORES};

/// EL2 stack per core.
const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
pub struct Stacks(UnsafeCell<[[u8; STACK_SIZE]; MAX_CORES]>);
// SAFETY: core `i` only ever uses slice `i` (boot.S indexes by core index).
unsafe impl Sync for Stacks {}

#[no_mangle]
#[link_section = ".noinit.stacks"]
static HV_STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; MAX_CORES]));

global_asm!(include_str!("boot.S"), HV_STACK_SIZE = const STACK_SIZE);

extern "C" {
    static __hv_start: u8;
    static __text_end: u8;
    static __hv_end: u8;
    fn secondary_entry();
    fn enter_guest(frame: *const super::trap::TrapFrame) -> !;
}

/// Cores that have come up and wait to enter their partitions, and how
/// many the boot core started.
static ONLINE: AtomicU64 = AtomicU64::new(0);
static STARTED: AtomicU64 = AtomicU64::new(0);
static GO: AtomicU64 = AtomicU64::new(0);

/// Every partition starts only once every core is up: the boot core waits
/// for the cores it started, then releases them together. Waiting is
/// `wfe`, never a bare spin (an emulator may run cores one at a time).
fn start_barrier(primary: bool) {
    if primary {
        while ONLINE.load(Ordering::Acquire) < STARTED.load(Ordering::Acquire) {
            wait_for_event();
        }
        GO.store(1, Ordering::Release);
        send_event();
    } else {
        ONLINE.fetch_add(1, Ordering::AcqRel);
        send_event();
        while GO.load(Ordering::Acquire) == 0 {
            wait_for_event();
        }
    }
}

/// TTBR0_EL2 value the secondaries load, published by the primary (and
/// cleaned to memory: secondaries read it with their MMU off).
static EL2_ROOT: AtomicU64 = AtomicU64::new(0);

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// The core index of the caller (kept in TPIDR_EL2 from entry on).
pub fn this_core() -> usize {
    TPIDR_EL2.get() as usize
}

#[no_mangle]
extern "C" fn rust_core_entry(dtb: u64, core: u64) -> ! {
    TPIDR_EL2.set(core);
    if core == 0 {
        match primary(dtb) {
            Ok(()) => {}
            Err(msg) => {
                console::hv_print(format_args!("boot failed: {msg}\n"));
                exit_machine(2);
            }
        }
    } else {
        enable_mmu(EL2_ROOT.load(Ordering::Acquire));
    }
    gic::init_cpu_interface();
    start_barrier(core == 0);
    partition::run_core(core as usize)
}

fn primary(dtb: u64) -> Result<(), system::BootError> {
    // The payload: a header-sized look first to learn its size, bounded by
    // the board's reservation for the hypervisor.
    // SAFETY: the header lies right after the image, inside the reservation.
    let head = unsafe { phys::payload(core::mem::size_of::<SystemTable>()) };
    let table = hallows_table::table_from_payload(head).or_else(|e| match e {
        // The header-only view is too short for the size check; redo below.
        TableError::BadSize => {
            let (t, _) = <SystemTable as zerocopy::FromBytes>::ref_from_prefix(head).map_err(|_| TableError::TooShort)?;
            Ok(t)
        }
        e => Err(e),
    });
    let table = table.map_err(system::BootError::Table)?;
    // SAFETY: reading symbols' addresses only.
    let (hv_start, text_end, hv_end) = unsafe { (sym(&__hv_start), sym(&__text_end), sym(&__hv_end)) };
    let reserved = table.board.hypervisor;
    let payload_end = hv_end.checked_add(table.payload_size).ok_or(system::BootError::PayloadTooLarge)?;
    if !reserved.contains(&MemRange { base: hv_start, size: payload_end - hv_start }) {
        return Err(system::BootError::PayloadTooLarge);
    }
    // SAFETY: the whole payload lies inside the hypervisor's reservation
    // (checked above), which no partition may overlap (validated below
    // before anything else is written).
    let payload = unsafe { phys::payload(table.payload_size as usize) };
    let table = hallows_table::table_from_payload(payload).map_err(system::BootError::Table)?;
    uart::set_base(table.board.console.base);
    console::hv_print(format_args!(
        "RustHallows hypervisor, table v{}, {} partition(s), image {:#x}..{:#x}\n",
        table.version,
        table.partition_count,
        hv_start,
        payload_end
    ));

    // Our own map: RAM (text read-only executable, the rest RW, never
    // both), the console and the GIC as Device memory.
    let mut pool = TablePool;
    let mut el2 = PageTable::<El2Stage1>::new(&mut pool).map_err(system::BootError::Map)?;
    let text = MemRange { base: hv_start, size: text_end - hv_start };
    let board = &table.board;
    for ram in &board.ram[..(board.ram_count as usize).min(board.ram.len())] {
        map_split(&mut el2, &mut pool, *ram, text)?;
    }
    let rx = Attr { read: true, write: false, exec: true, kind: hallows_paging::MemKind::Normal };
    el2.map(&mut pool, text.base, text.base, text.size, rx).map_err(system::BootError::Map)?;
    for dev in [board.console, board.gic_dist, board.gic_redist] {
        if dev.size != 0 {
            el2.map(&mut pool, dev.base, dev.base, dev.size, Attr::DEVICE).map_err(system::BootError::Map)?;
        }
    }
    // Assigned virtio devices, so that the hypervisor can reset one whose
    // owner ends (`quiesce_device`): each page once (devices share pages).
    let assigned_virtio = || {
        table.partitions().iter().flat_map(|p| p.devices[..(p.device_count as usize).min(p.devices.len())].iter()).filter(|d| virtio::is_virtio_mmio(d))
    };
    for (i, d) in assigned_virtio().enumerate() {
        let pages = |d: &hallows_table::DeviceDesc| {
            let start = d.base & !0xfff;
            (start..d.base.saturating_add(d.size)).step_by(4096)
        };
        for page in pages(d) {
            if !assigned_virtio().take(i).any(|e| pages(e).any(|q| q == page)) {
                el2.map(&mut pool, page, page, 4096, Attr::DEVICE).map_err(system::BootError::Map)?;
            }
        }
    }
    enable_mmu(el2.root());
    EL2_ROOT.store(el2.root(), Ordering::Release);
    clean_dcache_line(&EL2_ROOT as *const AtomicU64 as u64);

    let ram = &board.ram[..(board.ram_count as usize).min(board.ram.len())];
    let facts = dtb::read(dtb, ram).map_err(system::BootError::DeviceTree)?;
    system::check_board(table, &facts.ram[..facts.ram_count], &facts.cpus[..facts.cpu_count], facts.psci_smc)?;
    let payload_range = MemRange { base: hv_end, size: table.payload_size };
    system::validate(table, payload_range, MemRange { base: hv_start, size: payload_end - hv_start })?;

    // Partitions: stage-2 tables, guest images, boot information.
    let mut loaded = Loaded::EMPTY;
    for (i, p) in table.partitions().iter().enumerate() {
        let mut s2 = PageTable::<Stage2>::new(&mut pool).map_err(system::BootError::Map)?;
        s2.map(&mut pool, p.ram_ipa, p.ram_pa, p.ram_size, Attr::RWX).map_err(system::BootError::Map)?;
        for r in &p.regions[..p.region_count as usize] {
            s2.map(&mut pool, r.ipa, r.pa, r.size, system::region_attr(r)).map_err(system::BootError::Map)?;
        }
        for (index, c) in system::directory(table, i) {
            let maps = system::channel_mappings(c, c.producer as usize == i)
                .ok_or(system::BootError::Channel { index, what: "invalid geometry" })?;
            for (ipa, pa, size, attr) in maps {
                s2.map(&mut pool, ipa, pa, size, attr).map_err(system::BootError::Map)?;
            }
        }
        // SAFETY: `system::validate` proved this RAM lies in board RAM, is
        // disjoint from the hypervisor reservation and from every other
        // partition, and EL2 maps all board RAM.
        let guest = unsafe { GuestRam::new(p.ram_ipa, p.ram_pa, p.ram_size) };
        loaded.partitions[i] = Some(system::PartitionRt { ram: guest, stage2_root: s2.root(), vmid: (i + 1) as u16 });
    }
    console::hv_print(format_args!("{} page-table pages used\n", TablePool::used()));
    let sys = system::install(table, payload, loaded);
    super::trap::install_notify_routes(sys);
    gic::init_distributor(board.gic_dist.base);
    for core in 0..(board.core_count as usize).min(MAX_CORES) {
        if sys.core_map[core].is_some() || core == crate::control::CONTROL_CORE {
            gic::init_redistributor(core, board.core_hwid[core], board.gic_redist).map_err(system::BootError::DeviceTree)?;
        }
    }
    // Device interrupts go to their owner's boot core (validated: SPIs,
    // each owned once).
    for p in table.partitions() {
        let boot_core = p.vcpu_core[0] as usize;
        for d in &p.devices[..(p.device_count as usize).min(p.devices.len())] {
            if d.irq != 0 && boot_core < MAX_CORES {
                gic::route_spi(d.irq, board.core_hwid[boot_core]);
            }
        }
    }
    // The operator's commands: the console's receive interrupt, to the
    // control core.
    if board.console_irq != 0 {
        gic::route_console(board.console_irq, board.core_hwid[crate::control::CONTROL_CORE]);
        uart::enable_rx_interrupt();
    }
    for (i, _) in table.partitions().iter().enumerate() {
        partition::load(sys, i, 0).map_err(system::BootError::Load)?;
    }

    // Start every other core that some partition owns.
    // SAFETY: taking the address of an assembly entry point.
    let entry = secondary_entry as *const () as u64;
    for core in 1..(board.core_count as usize).min(MAX_CORES) {
        if sys.core_map[core].is_some() {
            let status = psci_cpu_on(board.core_hwid[core], entry, core as u64);
            if status != 0 {
                return Err(system::BootError::CpuOn { core, status });
            }
            STARTED.fetch_add(1, Ordering::AcqRel);
        }
    }
    Ok(())
}

/// Maps `ram` read-write, execute-never, leaving out `hole` (the text).
fn map_split(
    el2: &mut PageTable<El2Stage1>,
    pool: &mut TablePool,
    ram: MemRange,
    hole: MemRange,
) -> Result<(), system::BootError> {
    let (start, end) = (ram.base, ram.end().ok_or(system::BootError::BadBoard)?);
    let mut pieces = [(start, end), (0, 0)];
    if hole.overlaps(&ram) {
        pieces = [(start, hole.base.max(start)), (hole.end().unwrap_or(end).min(end), end)];
    }
    for (a, b) in pieces {
        if b > a {
            el2.map(pool, a, a, b - a, Attr::RW).map_err(system::BootError::Map)?;
        }
    }
    Ok(())
}

fn enable_mmu(root: u64) {
    MAIR_EL2.set(El2Stage1::MAIR);
    TCR_EL2.set(regs::TCR);
    TTBR0_EL2.set(root);
    // SAFETY: standard MMU enable sequence; the map is an identity map that
    // covers this code, its stack and everything it touches next.
    unsafe {
        asm!("dsb ish", "tlbi alle2", "dsb ish", "isb", options(nostack));
    }
    SCTLR_EL2.set(regs::SCTLR_EL2);
    // SAFETY: synchronises the SCTLR write before the next instruction fetch.
    unsafe { asm!("isb", options(nostack)) };
}

fn clean_dcache_line(addr: u64) {
    // SAFETY: cache maintenance by VA on a mapped address has no other effect.
    unsafe { asm!("dc cvac, {0}", "dsb ish", in(reg) addr, options(nostack)) };
}

/// PSCI CPU_ON to the firmware (EL3): starts `hwid` at `entry` in EL2 with
/// `x0 = context`.
fn psci_cpu_on(hwid: u64, entry: u64, context: u64) -> i64 {
    let mut x0: u64 = hallows_abi::psci::CPU_ON_64;
    // SAFETY: an SMC to the firmware's PSCI implementation; it only starts
    // the named core at our own entry point.
    unsafe {
        asm!("smc #0", inout("x0") x0, in("x1") hwid, in("x2") entry, in("x3") context, options(nostack));
    }
    x0 as i64
}

/// Enters vCPU `vcpu` of partition `p` at `entry` with `x0`, `x1` on this
/// core, with fresh EL1 state. Never returns: the next time this core runs
/// hypervisor code is its next trap.
pub fn enter_vcpu(stage2_root: u64, vmid: u16, vcpu: u64, entry: u64, x0: u64, x1: u64) -> ! {
    let sys = crate::system::get();
    let role = sys.core_map.get(this_core()).copied().flatten();
    let linux = role.filter(|r| sys.table.partitions()[r.partition].is_linux());
    HCR_EL2.set(if linux.is_some() { regs::hcr::LINUX } else { regs::hcr::GUEST });
    VTCR_EL2.set(regs::VTCR);
    VTTBR_EL2.set(stage2_root | ((vmid as u64) << 48));
    CNTHCTL_EL2.set(regs::CNTHCTL);
    CNTVOFF_EL2.set(0);
    if linux.is_some() {
        allow_sve_sme();
    } else {
        CPTR_EL2.set(regs::CPTR);
    }
    trap_pmu_and_debug();
    VMPIDR_EL2.set((1 << 31) | vcpu);
    VPIDR_EL2_set(MIDR_EL1.get());
    reset_el1();
    gic::reset_virtual();
    if let Some(role) = linux {
        super::vdev::reset(sys, role, this_core());
    }
    super::watchdog_arm(crate::partition::watchdog_next(this_core()));
    // SAFETY: invalidates this VMID's stale EL1 translations (the partition
    // may be restarting) with VTTBR_EL2 already pointing at it.
    unsafe { asm!("isb", "tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };

    let core = this_core();
    let top = (HV_STACKS.0.get() as u64) + ((core + 1) * STACK_SIZE) as u64;
    let frame = (top - core::mem::size_of::<super::trap::TrapFrame>() as u64) as *mut super::trap::TrapFrame;
    let mut f = super::trap::TrapFrame::zeroed();
    f.x[0] = x0;
    f.x[1] = x1;
    f.elr = entry;
    f.spsr = regs::SPSR_EL1H_MASKED;
    // SAFETY: `frame` is the top of this core's own EL2 stack; everything
    // below it is abandoned (we never return), and `enter_guest` loads the
    // frame and `eret`s into the partition.
    unsafe {
        frame.write(f);
        enter_guest(frame)
    }
}

/// A Linux partition may use SVE and SME, as the ID registers it reads
/// tell it it can (Linux probes both at boot): `CPTR_EL2` stops trapping
/// them, and the vector lengths are not limited below what the core has.
/// The core is the partition's alone and the hypervisor (soft-float)
/// never touches these registers, so no state crosses partitions.
fn allow_sve_sme() {
    let (pfr0, pfr1): (u64, u64);
    // SAFETY: reads of ID registers; no side effects.
    unsafe { asm!("mrs {0}, id_aa64pfr0_el1", "mrs {1}, id_aa64pfr1_el1", out(reg) pfr0, out(reg) pfr1, options(nomem, nostack)) };
    let sve = (pfr0 >> 32) & 0xf != 0;
    let sme = (pfr1 >> 24) & 0xf != 0;
    let mut cptr = regs::CPTR;
    if sve {
        cptr &= !regs::CPTR_TZ;
    }
    if sme {
        cptr &= !regs::CPTR_TSM;
    }
    CPTR_EL2.set(cptr);
    // SAFETY: ZCR_EL2 / SMCR_EL2 exist when the feature does (checked
    // above); LEN = 0xf: no EL2 limit on EL1's vector length. The `isb`
    // makes the CPTR_EL2 write take effect before they are accessed.
    unsafe {
        asm!("isb", options(nostack));
        if sve {
            asm!("msr S3_4_C1_C2_0, {v}", v = in(reg) 0xfu64, options(nostack)); // ZCR_EL2
        }
        if sme {
            asm!("msr S3_4_C1_C2_6, {v}", v = in(reg) 0xfu64, options(nostack)); // SMCR_EL2
        }
        asm!("isb", options(nostack));
    }
}

#[allow(non_snake_case)]
fn VPIDR_EL2_set(v: u64) {
    // SAFETY: VPIDR_EL2 only changes what EL1 reads from MIDR_EL1.
    unsafe { asm!("msr vpidr_el2, {0}", in(reg) v, options(nostack)) };
}

/// Puts the EL1 system registers a partition can observe into their reset
/// state, so a restarted partition inherits nothing of its previous run.
fn reset_el1() {
    SCTLR_EL1.set(regs::SCTLR_EL1_RESET);
    VBAR_EL1.set(0);
    TCR_EL1.set(0);
    TTBR0_EL1.set(0);
    TTBR1_EL1.set(0);
    MAIR_EL1.set(0);
    CPACR_EL1.set(0);
    CONTEXTIDR_EL1.set(0);
    TPIDR_EL1.set(0);
    TPIDR_EL0.set(0);
    TPIDRRO_EL0.set(0);
    SP_EL0.set(0);
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
    CNTKCTL_EL1.set(0);
}

/// The partition owning device `d` has ended or is restarting, and none of
/// its vCPUs runs: a virtio-mmio device is reset (`virtio::reset_virtio_mmio`).
pub fn quiesce_device(d: &hallows_table::DeviceDesc) {
    // SAFETY: assigned virtio-mmio devices are mapped as Device memory in
    // the EL2 map (boot), and `d` comes from the validated table.
    unsafe { virtio::reset_virtio_mmio(d) }
}

/// A vCPU left its partition: whatever the partition armed on this core
/// (its timers) must not wake the core while it waits in the hypervisor.
pub fn quiesce() {
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
    super::watchdog_arm(0);
}

/// Stops this core for good. `wfi` rather than `wfe`: a parked core is
/// idle (an emulator stops running it), and the interrupts that may still
/// arrive (a doorbell for an ended partition) stay masked at EL2.
pub fn park() -> ! {
    // Whatever the partition left armed (its timer, a device interrupt)
    // must not wake this core again: stop the timer and mask every
    // priority at the CPU interface, so `wfi` really sleeps.
    quiesce();
    if this_core() == crate::control::CONTROL_CORE {
        // The control core keeps taking the operator's commands: only the
        // console's interrupt stays enabled for it.
        gic::only_console(this_core());
        loop {
            // SAFETY: waits for an interrupt (masked at EL2: it is
            // acknowledged below, not taken); no memory effects.
            unsafe { asm!("wfi", options(nomem, nostack)) };
            let intid = gic::ack();
            if intid < gic::SPURIOUS {
                gic::end(intid);
                if gic::is_console(intid) {
                    crate::control::poll();
                }
            }
        }
    }
    // SAFETY: masks all physical interrupts of this core at its CPU interface.
    unsafe { asm!("msr icc_pmr_el1, {z}", "isb", z = in(reg) 0u64, options(nostack)) };
    loop {
        // SAFETY: waits for an interrupt; no memory effects.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

/// Wakes cores waiting in `wait_for_event`.
pub fn send_event() {
    // SAFETY: `sev` only signals an event; the barrier orders prior stores.
    unsafe { asm!("dsb ish", "sev", options(nostack)) };
}

/// Waits until an event (or spuriously); used by cores polling a flag.
pub fn wait_for_event() {
    // SAFETY: waits for an event; no memory effects.
    unsafe { asm!("wfe", options(nomem, nostack)) };
}

/// Ends the machine: prints the status line (`[hallows] machine exit
/// status N`, the one `hallows run` reads: only the hypervisor writes the
/// console, and no partition can print a line that starts like it), then
/// powers off through PSCI SYSTEM_OFF (QEMU then exits 0 whatever the
/// status). Semihosting is not used: QEMU would honour its trap from a
/// partition's EL1 as well, handing every partition the host.
pub fn exit_machine(code: u32) -> ! {
    crate::console::hv_print(format_args!("{}{code}\n", hallows_abi::console::EXIT_STATUS));
    // SAFETY: PSCI SYSTEM_OFF at the firmware (the SMC conduit from EL2)
    // does not return; if it does (no firmware PSCI), the core parks.
    unsafe { asm!("smc #0", in("x0") hallows_abi::psci::SYSTEM_OFF, options(nostack)) };
    park()
}

/// The partition may touch neither the PMU nor the debug registers
/// (`regs::MDCR`: its accesses trap and stop it); HPMN keeps its reset
/// value, every counter.
fn trap_pmu_and_debug() {
    let pmcr: u64;
    // SAFETY: reads this core's PMU configuration; no memory effects.
    unsafe { asm!("mrs {0}, pmcr_el0", out(reg) pmcr, options(nomem, nostack)) };
    MDCR_EL2.set(regs::MDCR | ((pmcr >> 11) & 0x1f));
}

//! Boot on x86_64: core 0 (the bootstrap processor) validates the system,
//! builds every nested table and loads every partition, then starts the
//! application processors its partitions own; each core then enters the
//! partition that owns it and never returns to boot code.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, Ordering};

use hallows_paging::{Attr, Ept, Npt, PageTable};
use hallows_table::{MemRange, SystemTable, TableError};

use super::guest::{self, Exit, Gprs};
use super::phys::{self, GuestRam, TablePool};
use super::{apic, cpu, firmware, highmem, idt, ioapic, serial, svm, timer, vmx};
use crate::partition::{self, Trap};
use crate::system::{self, Loaded};
use crate::{console, MAX_CORES};

/// Stack per core.
pub(super) const STACK_SIZE: usize = 32 * 1024;
const _: () = assert!(STACK_SIZE.is_power_of_two());

#[repr(C, align(16))]
pub struct Stacks(pub(super) UnsafeCell<[[u8; STACK_SIZE]; MAX_CORES]>);
// SAFETY: core `i` only ever uses slice `i`.
unsafe impl Sync for Stacks {}

#[no_mangle]
#[link_section = ".noinit.stacks"]
pub(super) static HV_STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; MAX_CORES]));

/// The boot page tables (PML4, PDPT, 4 page directories), filled by
/// `boot.S` before paging is on: the first 4 GiB, identity-mapped.
#[repr(C, align(4096))]
pub struct BootTables(UnsafeCell<[[u64; 512]; 6]>);
// SAFETY: written only by `boot.S` on core 0 before anything else runs.
unsafe impl Sync for BootTables {}

#[no_mangle]
#[link_section = ".noinit.boot_tables"]
static BOOT_TABLES: BootTables = BootTables(UnsafeCell::new([[0; 512]; 6]));

global_asm!(include_str!("boot.S"), HV_STACK_SIZE = const STACK_SIZE);

extern "C" {
    static __hv_start: u8;
    static __hv_end: u8;
}

/// The virtualization extension this machine offers, chosen at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Virt {
    Svm = 1,
    Vmx = 2,
}

static VIRT: AtomicU8 = AtomicU8::new(0);

pub(super) fn virt() -> Virt {
    if VIRT.load(Ordering::Relaxed) == Virt::Vmx as u8 {
        Virt::Vmx
    } else {
        Virt::Svm
    }
}

/// Core index of each local APIC id (0xff: none), filled as cores come up.
pub(super) static CORE_OF_APIC: [AtomicU8; 256] = [const { AtomicU8::new(0xff) }; 256];

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// The core index of the caller: from the stack it runs on (core `i`
/// always runs on slice `i` of `HV_STACKS`: `boot.S` and the AP trampoline
/// start each core there, `enter_vcpu` resets to its top, and interrupts
/// are taken on the interrupted stack), a subtraction and a shift instead
/// of a CPUID (an intercept-free but serializing instruction, and a VM exit
/// of its own should the hypervisor ever run nested). Outside the stacks
/// (never, today) from the APIC id as before.
#[inline]
pub fn this_core() -> usize {
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    let offset = rsp.wrapping_sub(HV_STACKS.0.get() as u64) as usize;
    if offset < STACK_SIZE * MAX_CORES {
        return offset / STACK_SIZE;
    }
    match CORE_OF_APIC[cpu::apic_id() as usize & 0xff].load(Ordering::Relaxed) {
        0xff => 0,
        c => c as usize,
    }
}

#[no_mangle]
extern "C" fn rust_core_entry(magic: u64, mbi: u64, core: u64) -> ! {
    // Core 0 fills the IDT before it starts any other core; from here on a
    // fault in the hypervisor is reported (status 3), not a triple fault.
    if core == 0 {
        idt::init();
    }
    idt::load();
    idt::load_tss(core as usize);
    CORE_OF_APIC[cpu::apic_id() as usize & 0xff].store(core as u8, Ordering::Relaxed);
    if core == 0 {
        mask_legacy_pic();
        apic::init_core();
        if let Err(msg) = primary(magic, mbi) {
            console::hv_print(format_args!("boot failed: {msg}\n"));
            exit_machine(2);
        }
    } else {
        // The local APIC accepts IPIs only once software-enabled: before
        // this core reports, so that no doorbell sent to it is dropped.
        apic::init_core();
        AP_UP.store(1, Ordering::Release);
    }
    match virt() {
        Virt::Svm => svm::init_core(core as usize),
        Virt::Vmx => {
            if !vmx::init_core(core as usize) {
                console::hv_print(format_args!("core {core}: VMXON failed\n"));
                exit_machine(2);
            }
        }
    }
    // No partition starts before every core is up (`primary` returned
    // after each reported): a doorbell to a core that is not is lost.
    if core == 0 {
        GO.store(1, Ordering::Release);
    } else {
        while GO.load(Ordering::Acquire) == 0 {
            core::hint::spin_loop();
        }
    }
    partition::run_core(core as usize)
}

fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

/// Set by core 0 once every core is up: partitions may start.
static GO: AtomicU8 = AtomicU8::new(0);

/// The 8259s: the BIOS may leave the timer unmasked; nothing here wants it.
fn mask_legacy_pic() {
    cpu::outb(0x21, 0xff);
    cpu::outb(0xa1, 0xff);
}

fn primary(magic: u64, mbi: u64) -> Result<(), system::BootError> {
    // SAFETY: the header lies right after the image, inside the reservation.
    let head = unsafe { phys::payload(core::mem::size_of::<SystemTable>()) };
    let table = hallows_table::table_from_payload(head).or_else(|e| match e {
        TableError::BadSize => {
            let (t, _) = <SystemTable as zerocopy::FromBytes>::ref_from_prefix(head).map_err(|_| TableError::TooShort)?;
            Ok(t)
        }
        e => Err(e),
    });
    let table = table.map_err(system::BootError::Table)?;
    // SAFETY: reading symbols' addresses only.
    let (hv_start, hv_end) = unsafe { (sym(&__hv_start), sym(&__hv_end)) };
    let reserved = table.board.hypervisor;
    let payload_end = hv_end.checked_add(table.payload_size).ok_or(system::BootError::PayloadTooLarge)?;
    if !reserved.contains(&MemRange { base: hv_start, size: payload_end - hv_start }) {
        return Err(system::BootError::PayloadTooLarge);
    }
    // SAFETY: the whole payload lies inside the hypervisor's reservation
    // (checked above), which no partition may overlap (validated below).
    let payload = unsafe { phys::payload(table.payload_size as usize) };
    let table = hallows_table::table_from_payload(payload).map_err(system::BootError::Table)?;
    let console = table.board.console;
    if console.base + console.size > 0x1_0000 {
        return Err(system::BootError::BadBoard);
    }
    serial::init(console.base as u16);
    let board = &table.board;
    if board.arch != hallows_table::arch::X86_64 {
        return Err(system::BootError::Board("the table was built for another architecture:", board.arch as u64));
    }
    // One image for both vendors: the extension is picked from CPUID.
    let virt = if svm::supported() {
        Virt::Svm
    } else if vmx::supported() {
        Virt::Vmx
    } else {
        return Err(system::BootError::Board(
            "this CPU offers neither AMD SVM with nested paging nor Intel VMX with EPT; CPUID vendor AMD =",
            cpu::vendor_is_amd() as u64,
        ));
    };
    VIRT.store(virt as u8, Ordering::Relaxed);
    console::hv_print(format_args!(
        "RustHallows hypervisor (x86_64, {}), table v{}, {} partition(s), image {:#x}..{:#x}\n",
        if virt == Virt::Svm { "AMD SVM" } else { "Intel VMX" },
        table.version,
        table.partition_count,
        hv_start,
        payload_end
    ));
    let (hz, source) = timer::calibrate();
    console::hv_print(format_args!(
        "TSC {}.{:03} MHz ({}); guest timers in {} mode\n",
        hz / 1_000_000,
        hz / 1_000 % 1_000,
        match source {
            timer::Source::Cpuid15 => "CPUID leaf 0x15",
            timer::Source::Pit => "measured against the PIT",
        },
        if timer::tsc_deadline_mode() { "TSC-deadline" } else { "one-shot" }
    ));

    console::hv_print(format_args!(
        "local APIC: {}\n",
        if apic::x2apic() { "x2APIC (MSRs)" } else { "xAPIC (MMIO; this CPU has no x2APIC)" }
    ));
    if virt == Virt::Vmx {
        console::hv_print(format_args!(
            "guest TLB: {}\n",
            if vmx::vpid_enabled() { "VPID per partition (kept across exits)" } else { "no VPID (flushed at every VM transition)" }
        ));
    }
    let facts = firmware::read(magic, mbi).map_err(system::BootError::Firmware)?;
    system::check_machine(table, &facts.ram[..facts.ram_count], &facts.cpus[..facts.cpu_count], "ACPI MADT")?;
    let payload_range = MemRange { base: hv_end, size: table.payload_size };
    system::validate(table, payload_range, MemRange { base: hv_start, size: payload_end - hv_start })?;
    device_interrupts(table, &facts.ioapics[..facts.ioapic_count])?;
    highmem::map(table).map_err(|e| match e {
        highmem::Error::TooHigh => system::BootError::Board(
            "board RAM above 32 GiB: the hypervisor maps RAM only up to",
            highmem::LIMIT,
        ),
        highmem::Error::Shape => system::BootError::Board("the boot page tables are not as boot.S builds them; CR3 =", cr3()),
    })?;

    match virt {
        Virt::Svm => svm::init_global(),
        Virt::Vmx => vmx::init_global(),
    }
    let mut pool = TablePool;
    let mut loaded = Loaded::EMPTY;
    for (i, p) in table.partitions().iter().enumerate() {
        let root = match virt {
            Virt::Svm => nested_tables::<Npt>(table, i, &mut pool)?,
            Virt::Vmx => nested_tables::<Ept>(table, i, &mut pool)?,
        };
        if p.ram().end().is_none_or(|e| e > highmem::LIMIT) {
            return Err(system::BootError::Partition { index: i, what: "RAM above 32 GiB is not mapped by the hypervisor" });
        }
        // SAFETY: `system::validate` proved this RAM lies in board RAM, is
        // disjoint from the hypervisor reservation and from every other
        // partition; the boot map identity-maps the first 4 GiB and
        // `highmem::map` every board RAM range above (up to its limit,
        // checked just above).
        let guest = unsafe { GuestRam::new(p.ram_ipa, p.ram_pa, p.ram_size) };
        if p.ram_pa >= 1 << 32 {
            console::hv_print(format_args!(
                "partition {}: RAM at host-physical {:#x}..{:#x} (above 4 GiB)\n",
                p.name(),
                p.ram_pa,
                p.ram_pa + p.ram_size
            ));
        }
        loaded.partitions[i] = Some(system::PartitionRt { ram: guest, stage2_root: root, vmid: (i + 1) as u16 });
    }
    finish_boot(table, payload, loaded)
}

/// The interrupt controllers stay the hypervisor's: no partition's device
/// region may cover the local APIC page or an I/O APIC. Then every I/O
/// APIC pin is masked and each partition's device interrupts are routed to
/// its boot core, masked until that partition starts (`ioapic.rs`).
fn device_interrupts(table: &SystemTable, ioapics: &[firmware::Ioapic]) -> Result<(), system::BootError> {
    let lapic = MemRange { base: apic::base(), size: 4096 };
    for (index, p) in table.partitions().iter().enumerate() {
        for r in &p.regions[..(p.region_count as usize).min(p.regions.len())] {
            let target = MemRange { base: r.pa, size: r.size };
            if target.overlaps(&lapic) || ioapic::overlaps(ioapics, &target) {
                return Err(system::BootError::Partition { index, what: "a device region maps the local APIC or an I/O APIC" });
            }
        }
    }
    ioapic::init(ioapics);
    // The operator's commands: the console's receive interrupt, to the
    // control core.
    let control_apic = table.board.core_hwid[crate::control::CONTROL_CORE];
    if table.board.console_irq != 0 && ioapic::route_console(table.board.console_irq, control_apic) {
        serial::enable_rx_interrupt();
    }
    ioapic::route_all(table).map_err(|e| match e {
        ioapic::RouteError::NoIoapic(gsi) => {
            system::BootError::Board("a device interrupt is on no I/O APIC of this machine's MADT: GSI", gsi as u64)
        }
        ioapic::RouteError::TooMany(gsi) => system::BootError::Board(
            "more device interrupts than the hypervisor has vectors for (64); the first left over is GSI",
            gsi as u64,
        ),
        ioapic::RouteError::ApicId(id) => system::BootError::Board(
            "a partition with device interrupts boots on a core whose local APIC id an I/O APIC cannot address (above 255):",
            id,
        ),
    })
}

/// Partition `i`'s nested tables in format `F` (NPT or EPT): its RAM, its
/// regions, its channels, its initial guest page tables. Returns the root.
fn nested_tables<F: hallows_paging::Format>(
    table: &'static SystemTable,
    i: usize,
    pool: &mut TablePool,
) -> Result<u64, system::BootError> {
    let p = &table.partitions()[i];
    let mut npt = PageTable::<F>::new(pool).map_err(system::BootError::Map)?;
    let pool = &mut *pool;
    {
        npt.map(pool, p.ram_ipa, p.ram_pa, p.ram_size, Attr::RWX).map_err(system::BootError::Map)?;
        for r in &p.regions[..p.region_count as usize] {
            npt.map(pool, r.ipa, r.pa, r.size, system::region_attr(r)).map_err(system::BootError::Map)?;
        }
        for (index, c) in system::directory(table, i) {
            let maps = system::channel_mappings(c, c.producer as usize == i)
                .ok_or(system::BootError::Channel { index, what: "invalid geometry" })?;
            for (ipa, pa, size, attr) in maps {
                npt.map(pool, ipa, pa, size, attr).map_err(system::BootError::Map)?;
            }
        }
        guest::map_guest_tables((i + 1) as u16, &mut npt, pool).map_err(system::BootError::Map)?;
    }
    Ok(npt.root())
}

fn finish_boot(table: &'static SystemTable, payload: &'static [u8], loaded: Loaded) -> Result<(), system::BootError> {
    let board = &table.board;
    console::hv_print(format_args!("{} page-table pages used\n", TablePool::used()));
    let sys = system::install(table, payload, loaded);
    guest::install_notify_routes(sys);
    for (i, _) in table.partitions().iter().enumerate() {
        partition::load(sys, i, 0).map_err(system::BootError::Load)?;
    }
    // Start every other core some partition owns, one at a time.
    for core in 1..(board.core_count as usize).min(MAX_CORES) {
        if sys.core_map[core].is_some() {
            start_ap(core, board.core_hwid[core])?;
        }
    }
    Ok(())
}

/// Where the AP trampoline is copied: page 8, SIPI vector 0x08.
const AP_TRAMPOLINE: u64 = 0x8000;

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    fn ap_long_entry();
}

/// Set by each application processor once it runs Rust code.
static AP_UP: AtomicU8 = AtomicU8::new(0);

fn delay(iterations: u32) {
    for _ in 0..iterations {
        core::hint::spin_loop();
    }
}

/// INIT-SIPI-SIPI to the core with local APIC id `apic`, which enters
/// `rust_core_entry` as core `core`; waits until it is up.
fn start_ap(core: usize, apic: u64) -> Result<(), system::BootError> {
    // SAFETY: reading symbols' addresses only.
    let (start, end) = unsafe { (sym(&ap_trampoline_start), sym(&ap_trampoline_end)) };
    let len = (end - start) as usize;
    if len > 4096 || apic > 0xff {
        return Err(system::BootError::CpuOn { core, status: -1 });
    }
    let params = [
        BOOT_TABLES.0.get() as u64,
        HV_STACKS.0.get() as u64 + ((core + 1) * STACK_SIZE) as u64,
        core as u64,
        ap_long_entry as *const () as u64,
    ];
    // SAFETY: page 0x8000 is conventional memory below 1 MiB, outside the
    // board's RAM (so no partition's) and outside the image; the boot map
    // covers it. The trampoline is position-dependent code for exactly this
    // page, and no other core runs it while we write it (we wait for each).
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, AP_TRAMPOLINE as *mut u8, len);
        for (i, p) in params.iter().enumerate() {
            core::ptr::write_volatile((AP_TRAMPOLINE + 8 + 8 * i as u64) as *mut u64, *p);
        }
    }
    AP_UP.store(0, Ordering::Release);
    // INIT, then two start-ups with vector 0x08 (address 0x8000), through
    // this core's local APIC in whichever mode `apic::init_core` chose
    // (software-enabled there).
    apic::send_icr(apic, 0x0000_4500);
    delay(100_000);
    for _ in 0..2 {
        apic::send_icr(apic, 0x0000_4600 | (AP_TRAMPOLINE >> 12) as u32);
        delay(10_000);
        if AP_UP.load(Ordering::Acquire) != 0 {
            return Ok(());
        }
    }
    for _ in 0..50_000_000u32 {
        if AP_UP.load(Ordering::Acquire) != 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(system::BootError::CpuOn { core, status: -1 })
}


/// Enters vCPU `vcpu` of a partition on this core at `entry` in 64-bit
/// mode, with rdi = `x0` (the boot information) and rsi = `x1`, with fresh
/// state. Never returns: the stack is reset, and the loop below runs the
/// vCPU until the portable code ends it.
pub fn enter_vcpu(npt_root: u64, asid: u16, vcpu: u64, entry: u64, x0: u64, x1: u64) -> ! {
    let core = this_core();
    if vcpu == 0 {
        guest::reset_guest_tables(asid);
    }
    timer::reset(core);
    timer::set_watch(core, crate::partition::watchdog_next(core));
    guest::note_wake_sources(core);
    guest::forget_decodes(core);
    match virt() {
        Virt::Svm => svm::setup_vcpu(core, npt_root, asid, entry),
        Virt::Vmx => {
            if vmx::setup_vcpu(core, npt_root, asid, entry).is_err() {
                // The CPU lacks a control the policy needs (checked once,
                // on the first entry): nothing can run confined.
                console::hv_print(format_args!("core {core}: this CPU's VMX cannot enforce the partition policy\n"));
                exit_machine(2);
            }
        }
    }
    if vcpu == 0 {
        // The partition (re)starts: its device interrupts may reach this
        // core from now on (masked at boot and whenever it ended). After
        // the setup above, which emptied this core's queue of virtual
        // interrupts: one that was pending at the I/O APIC is delivered now
        // and kept for the new run.
        let sys = system::get();
        if let Some(role) = sys.core_map.get(core).copied().flatten() {
            ioapic::unmask_partition(&sys.table.partitions()[role.partition]);
        }
    }
    let top = HV_STACKS.0.get() as u64 + ((core + 1) * STACK_SIZE) as u64;
    // SAFETY: switches to the top of this core's own stack (everything on it
    // is abandoned: we never return) and calls the run loop.
    unsafe {
        asm!(
            "mov rsp, rax",
            "xor ebp, ebp",
            "call {run}",
            "ud2",
            run = sym vcpu_loop,
            in("rax") top,
            in("rdi") core,
            in("rsi") vcpu,
            in("rdx") x0,
            in("rcx") x1,
            options(noreturn)
        )
    }
}

extern "C" fn vcpu_loop(core: usize, vcpu: u64, x0: u64, x1: u64) -> ! {
    let mut g = Gprs { rdi: x0, rsi: x1, ..Gprs::default() };
    let virt = virt();
    // The portable hypercall code's register array, zeroed once: each call
    // fills x0..x5 (`call_args`), the only registers a call reads; the
    // rest stay 0.
    let mut regs = [0u64; 31];
    loop {
        let exit = match virt {
            Virt::Svm => svm::run(core, vcpu, &mut g),
            Virt::Vmx => vmx::run(core, vcpu, &mut g),
        };
        match exit {
            Exit::Call => {
                match virt {
                    Virt::Svm => svm::call_args(core, &g, &mut regs),
                    Virt::Vmx => vmx::call_args(&g, &mut regs),
                }
                partition::handle_trap(core, Trap::Call, &mut regs);
                match virt {
                    Virt::Svm => svm::finish_call(core, &mut g, &regs),
                    Virt::Vmx => vmx::finish_call(&mut g, &regs),
                }
            }
            Exit::Trap(t) => {
                let mut regs = [0u64; 31];
                partition::handle_trap(core, t, &mut regs);
            }
        }
    }
}

/// Stops this core for good.
pub fn park() -> ! {
    if this_core() == crate::control::CONTROL_CORE {
        // The control core keeps taking the operator's commands: it sleeps
        // with interrupts on (its timer was stopped when its vCPU left) and
        // runs them when the console's interrupt comes. Under SVM the
        // hypervisor runs with GIF clear (`svm.rs`: set only while it takes
        // interrupts), and a core whose partition ended comes here from an
        // exit: GIF must be set too, or no interrupt ever ends the `hlt`
        // (seen: after `stop` of the partition on the control core, no
        // later operator command ran).
        let svm = VIRT.load(Ordering::Relaxed) == Virt::Svm as u8 && cpu::rdmsr(cpu::EFER) & (1 << 12) != 0;
        loop {
            if svm {
                // SAFETY: EFER.SVME is set on this core, so `stgi`/`clgi`
                // are defined; halts with GIF and IF set until an
                // interrupt, taken by `idt.rs`'s handlers, which save what
                // they use; closes both again.
                unsafe { asm!("stgi", "sti", "hlt", "cli", "clgi", options(nomem, nostack)) };
            } else {
                // SAFETY: halts until an interrupt, taken by `idt.rs`'s
                // handlers, which save what they use.
                unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
            }
            super::console_poll();
        }
    }
    loop {
        // SAFETY: halts with interrupts off; nothing wakes the core but NMI/INIT.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// x86 has no `sev`: cores waiting for a flag poll it (see `wait_for_event`).
pub fn send_event() {}

/// One polling step of a core waiting for a flag.
pub fn wait_for_event() {
    core::hint::spin_loop();
}

/// Ends the emulated machine with `code` (0 all partitions exited 0, 1 some
/// did not, 2 boot failed, 3 hypervisor panic), after printing it: the
/// status line is what the Bochs runner reads (Bochs' own exit status says
/// nothing; a partition's lines start with its own name, which the
/// manifest check never lets be `hallows`). QEMU: isa-debug-exit at port 0xf4 exits with `((0x10 +
/// code) << 1) | 1`, which `hallows` maps back. Bochs: its shutdown port
/// (0x8900), for every status (no magic breakpoint: a guest can execute
/// `xchg bx, bx` too). Partitions reach neither port: every port is
/// intercepted. On hardware with neither, the core halts.
pub fn exit_machine(code: u32) -> ! {
    let (single_step, breakpoints) = idt::debug_traps();
    if single_step + breakpoints > 0 {
        console::hv_print(format_args!(
            "debug exceptions taken in the hypervisor and disarmed: {breakpoints} breakpoint, {single_step} single-step\n"
        ));
    }
    let (nmis, on_ist) = idt::nmis();
    if nmis > 0 {
        console::hv_print(format_args!("NMIs taken in the hypervisor: {nmis}, on their own stack (IST): {on_ist}\n"));
    }
    console::hv_print(format_args!("machine exit status {code}\n"));
    cpu::outb(0xf4, 0x10 + code as u8);
    for b in b"Shutdown" {
        cpu::outb(0x8900, *b);
    }
    park()
}

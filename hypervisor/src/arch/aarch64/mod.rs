//! aarch64 at EL2 (non-VHE): boot, EL2 MMU, stage-2 setup, traps, PSCI to
//! firmware, the PL011 console and the PSCI power-off exit.

mod acpi;
mod boot;
mod dtb;
mod gic;
use super::phys;
use super::virtio;
mod regs;
mod trap;
mod uart;
mod vdev;

/// What a Linux partition that ended cost the hypervisor (`vdev::report`).
pub fn linux_report(index: usize, name: &str) {
    vdev::report(index, name)
}

/// Most vCPUs of a Linux partition (SGI target lists and the virtual
/// redistributors address 16).
pub const MAX_LINUX_VCPUS: usize = 16;

pub use boot::{enter_vcpu, exit_machine, park, quiesce, quiesce_device, send_event, this_core, wait_for_event};
pub use phys::GuestRam;
pub use uart::write_bytes as console_write;

/// The next byte the host sent on the console (operator commands).
pub fn console_read() -> Option<u8> {
    uart::read_byte()
}

/// Makes virtual interrupt `vintid` pending for this core's vCPU; `false`
/// when no list register is free.
fn inject_virtual(vintid: u32) -> bool {
    gic::inject(vintid)
}

/// Makes the doorbells of `pending` (bit i: doorbell slot i) pending for
/// this core's vCPU, lowest first, one list register each; returns those
/// that found none free, and asks for a maintenance interrupt for them
/// (cancelled when all fit).
pub fn inject_doorbells(_core: usize, mut pending: u32) -> u32 {
    while pending != 0 {
        let slot = pending.trailing_zeros();
        if !inject_virtual(hallows_abi::DOORBELL_INTID_BASE + slot) {
            set_underflow_interrupt(true);
            return pending;
        }
        pending &= pending - 1;
    }
    set_underflow_interrupt(false);
    0
}

/// Asks for a maintenance interrupt once list registers free up.
fn set_underflow_interrupt(on: bool) {
    gic::set_underflow_interrupt(this_core(), on)
}

/// Clears the active state of a device interrupt (SPI) of a partition
/// that restarts: the previous run may have left it unended.
pub fn reset_device_interrupt(intid: u32) {
    gic::deactivate(this_core(), intid)
}

/// What a partition finds in `DeviceInfo::irq` for entry `index` of its
/// device directory: the device's INTID itself (delivered as the same
/// virtual INTID).
pub fn guest_device_irq(_index: usize, irq: u32) -> u32 {
    irq
}

/// Interrupts the core with hardware id `hwid` so it delivers doorbells.
pub fn send_doorbell(hwid: u64) {
    gic::send_doorbell(hwid)
}

/// Takes the vCPU running on core `hwid` out of its guest (its partition is
/// ending): the doorbell SGI, which traps to EL2 whatever the guest masks.
pub fn kick(hwid: u64) {
    gic::send_doorbell(hwid)
}

/// What the `detail` of a guest-reported exception is (`FAULT` hypercall).
pub const GUEST_FAULT_DETAIL: &str = "ESR_EL1";

/// Table pages in the pool: the EL2 map and every partition's stage-2 tables.
pub const TABLE_POOL_PAGES: usize = 192;

/// The TSC's frequency: none on aarch64 (guests read CNTFRQ_EL0).
pub fn tsc_hz() -> u64 {
    0
}

/// `SET_TIMER` is x86's: aarch64 guests program their EL1 virtual timer
/// themselves.
pub fn set_timer(_deadline: u64, _period: u64) -> bool {
    false
}

/// The counter the watchdog deadlines are kept in: the physical count.
pub fn now() -> u64 {
    use aarch64_cpu::registers::{Readable, CNTPCT_EL0};
    CNTPCT_EL0.get()
}

/// Ticks of [`now`] per second.
pub fn counter_hz() -> u64 {
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0};
    CNTFRQ_EL0.get()
}

/// Arms this core's EL2 physical timer (CNTHP) to interrupt at counter
/// value `at`, whatever the guest does (it cannot reach this timer; its
/// interrupt traps to EL2 like every physical interrupt); 0 disarms it.
pub fn watchdog_arm(at: u64) {
    // SAFETY: CNTHP_CVAL_EL2 / CNTHP_CTL_EL2 are the hypervisor's own
    // timer; ENABLE = 1, IMASK = 0 (or all clear to stop it).
    unsafe {
        if at == 0 {
            core::arch::asm!("msr cnthp_ctl_el2, xzr", "isb", options(nostack));
        } else {
            core::arch::asm!("msr cnthp_cval_el2, {v}", "msr cnthp_ctl_el2, {one}", "isb", v = in(reg) at, one = in(reg) 1u64, options(nostack));
        }
    }
}

/// `WAKE` is x86's: aarch64 guests wake each other with `sev`.
pub fn wake(_core: usize, _hwid: u64) -> bool {
    false
}

/// Pages of the page-table pool in use (boot prints the same figure).
pub fn table_pages_used() -> usize {
    phys::TablePool::used()
}

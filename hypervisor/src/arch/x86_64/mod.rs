//! x86_64: boot from multiboot into long mode, the COM1 console, the
//! firmware's facts (multiboot memory map, ACPI MADT), device interrupts
//! through the I/O APICs, and the two
//! virtualization drivers, AMD SVM (VMCB, NPT) and Intel VMX (VMCS, EPT),
//! enforcing one intercept policy (`guest.rs`). One image: the extension
//! is picked at run time from CPUID.

mod apic;
mod boot;
mod cpu;
mod firmware;
mod guest;
mod highmem;
mod idt;
mod ioapic;
use super::phys;
use super::virtio;
mod serial;
mod svm;
mod timer;
mod vmx;

pub use boot::{enter_vcpu, exit_machine, park, send_event, this_core, wait_for_event};

/// A vCPU left its partition: the timer it armed must not wake this core
/// while it waits in the hypervisor.
pub fn quiesce() {
    timer::reset(boot::this_core());
}

/// The partition owning device `d` has ended or is restarting, and none of
/// its vCPUs runs: its interrupt is masked at its I/O APIC (until the
/// partition's boot vCPU is entered again) and a virtio-mmio device is
/// reset (`virtio::reset_virtio_mmio`).
pub fn quiesce_device(d: &hallows_table::DeviceDesc) {
    if d.irq != 0 {
        ioapic::mask(d.irq);
    }
    if d.base.checked_add(d.size).is_some_and(|end| end <= 1 << 32) {
        // SAFETY: the boot map identity-maps the first 4 GiB, uncacheable
        // above 3 GiB where device MMIO lies (boot refuses a device region
        // that is RAM), and `d` comes from the validated table.
        unsafe { virtio::reset_virtio_mmio(d) }
    }
}

/// What a partition finds in `DeviceInfo::irq` for entry `index` of its
/// device directory, whose interrupt is `irq` (a GSI; 0 for none): the
/// virtual vector the hypervisor injects for it,
/// `hallows_abi::DEVICE_VECTOR_BASE + index`.
pub fn guest_device_irq(index: usize, irq: u32) -> u32 {
    if irq == 0 {
        0
    } else {
        hallows_abi::DEVICE_VECTOR_BASE as u32 + index as u32
    }
}
pub use phys::GuestRam;
pub use serial::write_bytes as console_write;

/// The console's receive interrupt came (the IDT notes it; the exit path
/// and the control core's park loop run the commands).
static CONSOLE_PENDING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// After interrupts were taken: runs the operator's commands if the
/// console's receive interrupt came (a load on other exits).
#[inline(always)]
pub fn console_poll() {
    if CONSOLE_PENDING.load(core::sync::atomic::Ordering::Relaxed)
        && CONSOLE_PENDING.swap(false, core::sync::atomic::Ordering::AcqRel)
    {
        crate::control::poll();
    }
}

/// The next byte the host sent on the console (operator commands).
pub fn console_read() -> Option<u8> {
    serial::read_byte()
}

/// What the `detail` of a guest-reported exception is (`FAULT` hypercall):
/// the runtime passes the vector number (and the error code above bit 32).
pub const GUEST_FAULT_DETAIL: &str = "vector";

/// Linux partitions are aarch64-only so far: none may have a vCPU here.
pub const MAX_LINUX_VCPUS: usize = 0;

/// No Linux partitions on x86_64 (`MAX_LINUX_VCPUS`): nothing to report.
pub fn linux_report(_index: usize, _name: &str) {}

/// Queues the doorbells of `pending` (bit i: doorbell slot i) for `core`'s
/// vCPU (the running core) at once: one bit each in its word of queued
/// vectors, which never overflows. Returns 0 (none left over).
pub fn inject_doorbells(core: usize, pending: u32) -> u32 {
    guest::queue_doorbells(core, pending);
    0
}

/// Sends the doorbell IPI to the core whose local APIC id is `hwid`.
pub fn send_doorbell(hwid: u64) {
    apic::send_doorbell(hwid)
}

/// Takes the vCPU running on the core whose local APIC id is `hwid` out of
/// its guest (its partition is ending). SVM: an NMI, which the NMI
/// intercept turns into an exit whatever the guest's interrupt flag (an
/// ordinary IPI would do on hardware, but Bochs (2.7) does not exit for
/// one while the guest runs with interrupts off). VMX: the doorbell IPI
/// (external-interrupt exiting), with the VMX-preemption timer as the net
/// for the same Bochs limitation (`vmx::PREEMPT_TSC`).
pub fn kick(hwid: u64) {
    match boot::virt() {
        boot::Virt::Svm => apic::send_nmi(hwid),
        boot::Virt::Vmx => apic::send_doorbell(hwid),
    }
}

/// Table pages in the pool: every partition's nested tables and its initial guest page tables (10 pages each).
pub const TABLE_POOL_PAGES: usize = 512;

pub use timer::{set_timer, tsc_hz, wake};

/// The counter the watchdog deadlines are kept in: the TSC.
pub fn now() -> u64 {
    cpu::rdtsc()
}

/// Ticks of [`now`] per second (calibrated at boot).
pub fn counter_hz() -> u64 {
    timer::tsc_hz()
}

/// Pages of the page-table pool in use (boot prints the same figure).
pub fn table_pages_used() -> usize {
    phys::TablePool::used()
}

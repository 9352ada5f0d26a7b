//! x86_64: boot from multiboot into long mode, the COM1 console, the
//! firmware's facts (multiboot memory map, ACPI MADT), and the two
//! virtualization drivers, AMD SVM (VMCB, NPT) and Intel VMX (VMCS, EPT),
//! enforcing one intercept policy (`guest.rs`). One image: the extension
//! is picked at run time from CPUID.

mod apic;
mod boot;
mod cpu;
mod firmware;
mod guest;
mod idt;
use super::phys;
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

/// x86 partitions own no devices yet: nothing to reset.
pub fn quiesce_device(_d: &hallows_table::DeviceDesc) {}
pub use phys::GuestRam;
pub use serial::write_bytes as console_write;

/// What the `detail` of a guest-reported exception is (`FAULT` hypercall):
/// the runtime passes the vector number (and the error code above bit 32).
pub const GUEST_FAULT_DETAIL: &str = "vector";

/// Hypervisor instructions retired on this core: not counted on x86 (the
/// portable code reports costs only where this is non-zero).
#[allow(dead_code)]
pub fn el2_instructions() -> u64 {
    0
}

/// Queues the doorbell for virtual interrupt `vintid` (a
/// `DOORBELL_INTID_BASE + i`, the portable numbering) for this core's vCPU:
/// it is injected as vector `hallows_abi::DOORBELL_VECTOR_BASE + i` at the
/// next entry where the guest can take it (`guest::inject`). Never full: one
/// pending bit per channel.
pub fn inject_virtual(vintid: u32) -> bool {
    guest::queue_doorbell(this_core(), vintid);
    true
}

/// Nothing to ask for: queued doorbells never overflow (see
/// [`inject_virtual`]); the drivers ask for an interrupt window themselves.
pub fn set_underflow_interrupt(_on: bool) {}

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

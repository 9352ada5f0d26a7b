//! x86_64: boot from multiboot into long mode, the COM1 console, the
//! firmware's facts (multiboot memory map, ACPI MADT), and the two
//! virtualization drivers, AMD SVM (VMCB, NPT) and Intel VMX (VMCS, EPT),
//! enforcing one intercept policy (`guest.rs`). One image: the extension
//! is picked at run time from CPUID.

mod boot;
mod cpu;
mod firmware;
mod guest;
mod phys;
mod serial;
mod svm;
mod vmx;

pub use boot::{enter_vcpu, exit_machine, park, send_event, this_core, wait_for_event};
pub use phys::GuestRam;
pub use serial::write_bytes as console_write;

/// What the `detail` of a guest-reported exception is (`FAULT` hypercall):
/// the runtime passes the vector number (and the error code above bit 32).
pub const GUEST_FAULT_DETAIL: &str = "vector";

/// Hypervisor instructions retired on this core: not counted on x86 (the
/// portable code reports costs only where this is non-zero).
pub fn el2_instructions() -> u64 {
    0
}

/// Channel doorbells (virtual interrupts) are not delivered on x86 yet:
/// `hallows build` refuses `notify = "doorbell"` channels for x86 boards, so
/// no partition on x86 can ring one. Polled channels need no interrupt.
pub fn inject_virtual(_vintid: u32) -> bool {
    false
}

/// See [`inject_virtual`]: nothing to ask for without virtual interrupts.
pub fn set_underflow_interrupt(_on: bool) {}

/// See [`inject_virtual`]: no doorbell reaches x86 partitions yet.
pub fn send_doorbell(_hwid: u64) {}

//! Architecture glue: entry, exception vectors and the hypercall
//! instruction. The only `unsafe` in the runtime lives here.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

/// Stores `value` in the boot information's heartbeat word at `addr`
/// (`BootInfo::heartbeat`), which the hypervisor reads when the
/// partition's watchdog deadline comes (see [`crate::watchdog`]).
pub fn store_heartbeat(addr: u64, value: u64) {
    if addr == 0 || !addr.is_multiple_of(8) {
        return;
    }
    // SAFETY: `addr` is the heartbeat field of this partition's own boot
    // information page (`watchdog::init` derives it from the address the
    // hypervisor passed at entry; identity-mapped, inside our RAM, 8-byte
    // aligned). Only the guest writes this word; the hypervisor reads it.
    // Volatile: the store must happen even though nothing here reads it.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

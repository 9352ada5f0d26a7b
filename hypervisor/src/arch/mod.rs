//! Architecture support: the only code that touches system registers, raw
//! physical memory and assembly. Each architecture exports the same names;
//! the portable modules use nothing else.

/// Raw physical memory (table pool, partition RAM): the same on every
/// architecture, since the hypervisor identity-maps RAM on all of them.
mod phys;
/// Resetting assigned virtio-mmio devices: the same on every architecture.
mod virtio;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

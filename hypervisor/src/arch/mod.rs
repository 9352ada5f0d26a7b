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

/// Whether a partition may run Linux on this architecture (false on
/// x86_64, where `MAX_LINUX_VCPUS` is 0): checks for Linux partitions
/// compile away where there can be none.
pub const LINUX_PARTITIONS: bool = MAX_LINUX_VCPUS != 0;

/// Storage of the console's per-partition output queues (`crate::console`).
pub use phys::{console_queue, CONSOLE_QUEUE_WORDS};

/// One turn of a busy wait for another core: `yield` on aarch64, `pause`
/// on x86_64. Both are hints on hardware; QEMU with `-icount` (one thread
/// running the cores in turn) moves to the next core on either, whereas
/// on `core::hint::spin_loop`'s `isb` a waiting core keeps the thread
/// until the next timer deadline and the core it waits for, if it comes
/// later in QEMU's list, never runs (QEMU 7.2 gives it no budget).
#[inline(always)]
pub fn relax() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a hint; no memory or register effects.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// How the hypervisor's spin locks wait: [`relax`].
pub struct Relax;

impl spin::RelaxStrategy for Relax {
    fn relax() {
        relax();
    }
}

/// A spin lock whose waiters [`relax`]: the hypervisor's locks shared
/// between cores.
pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;

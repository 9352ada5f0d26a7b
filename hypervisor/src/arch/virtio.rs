//! Quietening an assigned virtio-mmio device whose owner has ended or is
//! restarting: the same on every architecture, given that the hypervisor
//! maps the device's registers for itself (aarch64: its EL2 map; x86_64:
//! the boot map, uncacheable above 3 GiB).

use hallows_table::DeviceDesc;

/// `virt`, the first register of a virtio-mmio transport.
const MAGIC: u32 = 0x7472_6976;
/// The device status register; writing 0 resets the device.
const STATUS: usize = 0x70;

pub fn is_virtio_mmio(d: &DeviceDesc) -> bool {
    d.compatible() == "virtio,mmio"
}

/// Resets virtio-mmio device `d` (status register 0), so it processes no
/// more of the requests its owner queued (no more DMA into memory the
/// owner no longer runs in, or that a restart reloads) and raises no more
/// interrupts. Any other device is left as it is (a driver resets it at
/// its next start).
///
/// # Safety
///
/// `d`'s registers must be mapped at their physical address as device
/// memory in the hypervisor's own map, and `d` must be a device the
/// manifest assigned (so the page holds that device, nobody else's
/// memory).
pub unsafe fn reset_virtio_mmio(d: &DeviceDesc) {
    if !is_virtio_mmio(d) || d.size < 0x100 {
        return;
    }
    let base = d.base as *mut u32;
    // SAFETY: the caller's contract: the registers are mapped; reading the
    // magic and writing the status register touch no memory.
    unsafe {
        if core::ptr::read_volatile(base) == MAGIC {
            core::ptr::write_volatile(base.add(STATUS / 4), 0);
        }
    }
}

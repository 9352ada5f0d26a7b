//! PL011 transmit path. The hypervisor keeps the board's console UART for
//! itself: no partition's stage-2 tables map it.

use core::sync::atomic::{AtomicU64, Ordering};

const DR: u64 = 0x00;
const FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// Base address of the console, set once at boot from the system table.
static BASE: AtomicU64 = AtomicU64::new(0x0900_0000);

pub fn set_base(base: u64) {
    BASE.store(base, Ordering::Relaxed);
}

/// Writes raw bytes. Callers serialise through `console`.
pub fn write_bytes(bytes: &[u8]) {
    let base = BASE.load(Ordering::Relaxed);
    for &b in bytes {
        // SAFETY: `base` is the console UART from the validated system table,
        // mapped as Device memory in the EL2 tables (or the MMU is still
        // off); FR and DR are its flag and data registers.
        unsafe {
            while core::ptr::read_volatile((base + FR) as *const u32) & FR_TXFF != 0 {}
            core::ptr::write_volatile((base + DR) as *mut u32, b as u32);
        }
    }
}

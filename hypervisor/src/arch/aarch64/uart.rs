//! PL011 transmit path. The hypervisor keeps the board's console UART for
//! itself: no partition's stage-2 tables map it.

use core::sync::atomic::{AtomicU64, Ordering};

const DR: u64 = 0x00;
const FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;
const IMSC: u64 = 0x38;
/// Receive and receive-timeout interrupts.
const IMSC_RX: u32 = (1 << 4) | (1 << 6);

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

/// The next byte the host sent on the console, if any.
pub fn read_byte() -> Option<u8> {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `write_bytes`; reading DR pops the receive FIFO.
    unsafe {
        if core::ptr::read_volatile((base + FR) as *const u32) & FR_RXFE != 0 {
            return None;
        }
        Some(core::ptr::read_volatile((base + DR) as *const u32) as u8)
    }
}

/// Raises the UART's interrupt when the host sends something (the
/// operator's commands: `control.rs`).
pub fn enable_rx_interrupt() {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `write_bytes`; IMSC is the interrupt mask register.
    unsafe {
        let m = core::ptr::read_volatile((base + IMSC) as *const u32);
        core::ptr::write_volatile((base + IMSC) as *mut u32, m | IMSC_RX);
    }
}

//! The hypervisor's console on x86: a 16550 UART at an I/O port base (COM1,
//! 0x3f8, on the PC boards), polled.

use core::sync::atomic::{AtomicU16, Ordering};

use super::cpu::{inb, outb};

static BASE: AtomicU16 = AtomicU16::new(0x3f8);

/// Sets the UART's port base (from the board) and programs 115200 8N1.
pub fn init(base: u16) {
    BASE.store(base, Ordering::Relaxed);
    outb(base + 1, 0x00); // no interrupts
    outb(base + 3, 0x80); // DLAB
    outb(base, 0x01); // divisor 1: 115200 baud
    outb(base + 1, 0x00);
    outb(base + 3, 0x03); // 8N1
    outb(base + 2, 0xC7); // FIFO on, cleared
    outb(base + 4, 0x03); // DTR, RTS
}

pub fn write_bytes(bytes: &[u8]) {
    let base = BASE.load(Ordering::Relaxed);
    for &b in bytes {
        if b == b'\n' {
            put(base, b'\r');
        }
        put(base, b);
    }
}

fn put(base: u16, b: u8) {
    // Bounded wait for "transmit holding register empty": a missing UART
    // must not hang the hypervisor.
    for _ in 0..100_000 {
        if inb(base + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(base, b);
}

/// The next byte the host sent on the console, if any.
pub fn read_byte() -> Option<u8> {
    let base = BASE.load(Ordering::Relaxed);
    // Line status bit 0: data ready.
    (inb(base + 5) & 0x01 != 0).then(|| inb(base))
}

/// Raises the UART's interrupt when the host sends something (the
/// operator's commands: `control.rs`): receive-data interrupt, and OUT2,
/// which gates the UART's interrupt line on PC boards.
pub fn enable_rx_interrupt() {
    let base = BASE.load(Ordering::Relaxed);
    outb(base + 1, 0x01);
    outb(base + 4, 0x0B);
}

//! Interrupt handlers for device interrupts, on both architectures. The
//! timer and doorbells are the runtime's own; a device's interrupt runs the
//! handler registered for the number in its device directory entry
//! (`Boot::devices`, `DeviceInfo::irq`), on the partition's boot vCPU, with
//! interrupts masked.
//!
//! * aarch64: the number is the device's INTID; the runtime ends the
//!   interrupt after the handler. A level-triggered device must be
//!   quietened by the handler (acknowledged at the device), or it fires
//!   again at once.
//! * x86_64: the number is the vector the hypervisor injects,
//!   `DEVICE_VECTOR_BASE + i` for directory entry `i`; there is no
//!   virtual local APIC and so no end of interrupt. The hypervisor programs
//!   the device's I/O APIC pin edge-triggered: the handler acknowledges the
//!   device (which lowers its line) so that its next event is a new edge.

use core::sync::atomic::{AtomicU64, Ordering};

const MAX_HANDLERS: usize = 16;

type Handlers = [(u32, Option<fn(u32)>); MAX_HANDLERS];

static HANDLERS: crate::sync::Mutex<Handlers> = crate::sync::Mutex::new([(0, None); MAX_HANDLERS]);
static UNHANDLED: AtomicU64 = AtomicU64::new(0);

/// Runs `handler(intid)` for every interrupt `intid` (a `DeviceInfo::irq`).
/// `false` if all handler slots are taken.
pub fn register(intid: u32, handler: fn(u32)) -> bool {
    crate::arch::without_interrupts(|| {
        let mut h = HANDLERS.lock();
        if let Some(slot) = h.iter_mut().find(|(i, f)| *i == intid || f.is_none()) {
            *slot = (intid, Some(handler));
            true
        } else {
            false
        }
    })
}

/// Interrupts that arrived with no handler registered.
pub fn unhandled() -> u64 {
    UNHANDLED.load(Ordering::Relaxed)
}

pub(crate) fn dispatch(intid: u32) {
    let handler = HANDLERS.lock().iter().find(|(i, f)| *i == intid && f.is_some()).and_then(|(_, f)| *f);
    match handler {
        Some(f) => f(intid),
        None => {
            UNHANDLED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

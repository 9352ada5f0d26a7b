//! Interrupt handlers for device interrupts (aarch64). The timer and
//! doorbells are the runtime's own; a device's interrupt (its INTID is in
//! the device directory, `Boot::devices`) runs the handler registered for
//! it, on the partition's boot vCPU, with IRQs masked, before the runtime
//! ends the interrupt. A level-triggered device must be quietened by the
//! handler (acknowledged at the device), or it fires again at once.

use core::sync::atomic::{AtomicU64, Ordering};

const MAX_HANDLERS: usize = 16;

type Handlers = [(u32, Option<fn(u32)>); MAX_HANDLERS];

static HANDLERS: spin::Mutex<Handlers> = spin::Mutex::new([(0, None); MAX_HANDLERS]);
static UNHANDLED: AtomicU64 = AtomicU64::new(0);

/// Runs `handler(intid)` for every interrupt `intid`. `false` if all
/// handler slots are taken.
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

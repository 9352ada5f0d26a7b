//! The partition's watchdog (manifest `watchdog = "100 ms"`).
//!
//! When the manifest gives a partition a watchdog, the hypervisor expects
//! to hear from it at least once per period and applies the partition's
//! fault policy (`on_fault`) when it does not: a partition that spins,
//! sleeps forever or loops in its exception vectors is stopped or
//! restarted like one that faulted. There are two ways to pet it:
//!
//! * [`beat`]: one store to the heartbeat word in the boot information. No
//!   trap; the hypervisor looks at the word only when the deadline comes,
//!   so a hang is caught within two periods.
//! * [`pet`]: the `WATCHDOG_PET` hypercall, one trap; the deadline becomes
//!   exactly one period from now.
//!
//! Neither is on any message path: pet from the main loop or a periodic
//! task, as often as is convenient and at least once a period. See
//! docs/supervision.md.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use hallows_abi::{call, BootInfo, Error};

/// Address of `BootInfo::heartbeat` (0 before `init`).
static HEARTBEAT: AtomicU64 = AtomicU64::new(0);
/// The last value stored there.
static BEATS: AtomicU64 = AtomicU64::new(0);
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn init(info_ipa: u64, info: &BootInfo) {
    HEARTBEAT.store(info_ipa + core::mem::offset_of!(BootInfo, heartbeat) as u64, Ordering::Relaxed);
    BEATS.store(info.heartbeat, Ordering::Relaxed);
    PERIOD_NS.store(info.watchdog_ns, Ordering::Relaxed);
}

/// The watchdog's period, if the manifest gives this partition one.
pub fn period() -> Option<Duration> {
    match PERIOD_NS.load(Ordering::Relaxed) {
        0 => None,
        ns => Some(Duration::from_nanos(ns)),
    }
}

/// Pets the watchdog without a trap: writes a new value to the heartbeat
/// word. A no-op (one store nobody reads) without a watchdog.
pub fn beat() {
    let n = BEATS.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    crate::arch::store_heartbeat(HEARTBEAT.load(Ordering::Relaxed), n);
}

/// Pets the watchdog with the `WATCHDOG_PET` hypercall: its deadline
/// becomes one period from now. `Err(NotSupported)` without a watchdog.
pub fn pet() -> Result<(), Error> {
    let (r, _) = crate::arch::hypercall(call::WATCHDOG_PET, [0; 5]);
    match r as i64 {
        0 => Ok(()),
        -2 => Err(Error::InvalidAddress),
        -3 => Err(Error::InvalidArgument),
        _ => Err(Error::NotSupported),
    }
}

//! Locks for code that runs on several cores of a partition.
//!
//! [`Mutex`] is `spin`'s mutex waiting with [`crate::relax`] rather than
//! `core::hint::spin_loop`: a core waiting for a lock held by another
//! lets an emulator that runs the cores in turn (QEMU with `-icount`) run
//! the holder. Use it, not `spin::Mutex`, for anything two vCPUs share.

/// How a [`Mutex`] waits: [`crate::relax`].
pub struct Relax;

impl spin::RelaxStrategy for Relax {
    fn relax() {
        crate::arch::relax();
    }
}

/// A spin lock whose waiters relax with [`crate::relax`].
pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;

//! Atomics used for the channel headers and stamps: `core`'s in normal
//! builds, loom's under `--cfg loom` so the protocol can be model-checked
//! unchanged.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

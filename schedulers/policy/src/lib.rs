//! Domain schedulers for RustHallows partitions.
//!
//! This crate owns the contract between a guest runtime and its scheduling
//! policy (the [`Scheduler`] trait) and the policies themselves: a default
//! FIFO / round-robin policy ([`Fifo`]) and four domain policies —
//! [`Api`] (Shinjuku-style centralized queue with preemption for heavy-tailed
//! RPC), [`Ui`] (EDF on frame deadlines with input events first), [`Db`]
//! (commit > read > compaction with a guaranteed compaction budget) and
//! [`Messaging`] (batching under an explicit latency bound).
//!
//! It must never allocate, never use `unsafe`, and never read a clock: every
//! call carries `now`, so the same policy code runs in the guest and, unchanged,
//! in the deterministic simulator (`hallows-sim`). Queues are fixed-capacity
//! (`heapless`); a full queue rejects the arrival instead of growing.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod cores;
mod db;
mod fifo;
mod messaging;
mod ui;

pub use api::{Api, ApiConfig};
pub use db::{Db, DbConfig};
pub use fifo::{Fifo, FifoConfig};
pub use messaging::{Messaging, MessagingConfig, MAX_BATCH};
pub use ui::{Ui, UiConfig};

/// Time in nanoseconds, on whatever monotonic clock the runtime uses.
pub type Nanos = u64;

/// Index of a core inside the partition, `0..cores`.
pub type CoreId = usize;

/// Most cores one partition's scheduler manages.
pub const MAX_CORES: usize = 16;

/// Runtime-chosen identifier of a task (a request, a frame, a message...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u32);

/// What the runtime knows about a task when it arrives. Each policy reads the
/// classes of its domain and documents how it treats the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskClass {
    /// A request of a request/response service (`api`).
    Request,
    /// A user-input event (`ui`): must be handled before frame work.
    Input,
    /// Frame work that must finish by an absolute `deadline` (`ui`).
    Frame {
        /// Absolute completion deadline.
        deadline: Nanos,
    },
    /// A commit or log write (`db`): latency-critical.
    Commit,
    /// A read or query (`db`).
    Read,
    /// Background work such as compaction (`db`): must progress, never hurt commits.
    Background,
    /// A message to publish (`messaging`): may be batched with others.
    Message,
}

/// The policy's answer to an arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Queued; idle cores should call [`Scheduler::pick_next`].
    Queued,
    /// Queued, and the task running on this core should be reconsidered now:
    /// the runtime interrupts the core (IPI) and calls [`Scheduler::tick`].
    Kick(CoreId),
    /// The queue is full; the task was not accepted.
    Rejected,
}

/// The policy's answer to [`Scheduler::pick_next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Run `task` on the core.
    Run {
        /// The task to run.
        task: TaskId,
        /// `true` when the task continues the batch the previous task on this
        /// core opened, so the runtime shares one flush (per-batch cost).
        joins_batch: bool,
        /// Call [`Scheduler::tick`] for this core at this time if the task still runs.
        tick_at: Option<Nanos>,
    },
    /// Nothing to run now.
    Idle {
        /// Call `pick_next` again at this time even if nothing arrives.
        wake_at: Option<Nanos>,
    },
}

/// The policy's answer to [`Scheduler::tick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep running the task.
    Continue {
        /// Next time [`Scheduler::tick`] is wanted for this core.
        tick_at: Option<Nanos>,
    },
    /// Stop the task. The policy has already put it back in its queue; the
    /// runtime saves its context and calls [`Scheduler::pick_next`].
    Preempt,
}

/// The interface a guest runtime drives. All calls for one partition are
/// serialized by the runtime (one dispatcher, or a lock); `now` never goes back.
///
/// Protocol: `task_arrived` for every new task; `pick_next` for a core that
/// runs nothing (after arrivals, completions, preemptions and requested
/// wake-ups); `tick` when a requested tick time passes or after a
/// [`Admission::Kick`]; `task_done` when the running task of a core finishes.
pub trait Scheduler {
    /// A task became runnable.
    fn task_arrived(&mut self, task: TaskId, class: TaskClass, now: Nanos) -> Admission;
    /// Choose what `core` (which runs nothing) runs next. With no task
    /// queued (every arrival picked or rejected) the answer is
    /// `Pick::Idle { wake_at: None }`: the runtime does not ask then.
    fn pick_next(&mut self, core: CoreId, now: Nanos) -> Pick;
    /// Timer tick or kick on `core`, which runs `running`: keep it or preempt it.
    fn tick(&mut self, core: CoreId, running: TaskId, now: Nanos) -> Decision;
    /// `task`, which was running on `core`, finished.
    fn task_done(&mut self, core: CoreId, task: TaskId, now: Nanos);
}

/// A policy configuration that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `cores` must be in `1..=MAX_CORES`.
    Cores,
    /// A time parameter that must be positive is zero.
    ZeroTime,
    /// A share or batch size is out of range.
    Range,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::Cores => "cores must be in 1..=MAX_CORES",
            ConfigError::ZeroTime => "a time parameter that must be positive is zero",
            ConfigError::Range => "a share or batch size is out of range",
        })
    }
}

fn check_cores(cores: usize) -> Result<(), ConfigError> {
    if cores == 0 || cores > MAX_CORES {
        Err(ConfigError::Cores)
    } else {
        Ok(())
    }
}

//! `messaging`: Kafka-style batching of messages to maximize throughput under
//! an explicit latency bound.
//!
//! A batch pays one fixed cost (the flush: a syscall, a network send, an
//! fsync) plus a per-message cost, so larger batches raise throughput. The
//! policy forms batches from the central FIFO:
//! - it never makes a batch whose estimated completion
//!   (`batch_cost + k * message_cost` from now) would take its oldest message
//!   past `latency_bound`, but always takes at least one message;
//! - on an idle core it lingers, like Kafka's `linger.ms`, for at most
//!   `max_linger` after the oldest message arrived and never past the point
//!   where the batch could still meet the bound, unless `max_batch` messages
//!   are already waiting;
//! - once the bound is already lost (overload), it takes `max_batch` messages:
//!   shrinking batches then would cut throughput exactly when it is needed.
//!
//! A released batch is reserved for its core, which runs it back to back;
//! every message after the first is dispatched with `joins_batch` so the
//! runtime pays the flush once. Messages are never preempted.
use heapless::Deque;

use crate::cores::{CoreTable, Slot};
use crate::{
    check_cores, Admission, ConfigError, CoreId, Decision, Nanos, Pick, Scheduler, TaskClass,
    TaskId, MAX_CORES,
};

/// Largest batch the policy forms.
pub const MAX_BATCH: usize = 64;

/// Configuration of [`Messaging`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessagingConfig {
    /// Cores of the partition.
    pub cores: usize,
    /// Target bound on a message's latency, arrival to completion.
    pub latency_bound: Nanos,
    /// Most messages in one batch, `1..=MAX_BATCH`.
    pub max_batch: usize,
    /// Estimated fixed cost of one batch (the flush).
    pub batch_cost: Nanos,
    /// Estimated cost of one message in a batch.
    pub message_cost: Nanos,
    /// Longest an idle core waits for a batch to fill.
    pub max_linger: Nanos,
}

impl MessagingConfig {
    /// A configuration for `latency_bound` with `max_linger` at half the bound.
    pub const fn new(
        cores: usize,
        latency_bound: Nanos,
        batch_cost: Nanos,
        message_cost: Nanos,
    ) -> Self {
        Self {
            cores,
            latency_bound,
            max_batch: MAX_BATCH,
            batch_cost,
            message_cost,
            max_linger: latency_bound / 2,
        }
    }

    /// Estimated time to run a batch of `k` messages.
    pub const fn batch_time(&self, k: usize) -> Nanos {
        self.batch_cost + k as Nanos * self.message_cost
    }
}

#[derive(Clone, Copy, Default)]
struct Waiting {
    task: TaskId,
    since: Nanos,
}

#[derive(Clone, Copy)]
struct Running(TaskId);

impl Slot for Running {
    fn task(&self) -> TaskId {
        self.0
    }
}

/// Latency-bounded batching. `N` is the queue capacity.
pub struct Messaging<const N: usize> {
    config: MessagingConfig,
    queue: Deque<Waiting, N>,
    /// Messages of the batch each core is running, after the current one.
    batches: [Deque<TaskId, MAX_BATCH>; MAX_CORES],
    cores: CoreTable<Running>,
}

impl<const N: usize> Messaging<N> {
    /// A `messaging` policy; fails on a bad core count, batch size or bound.
    pub fn new(config: MessagingConfig) -> Result<Self, ConfigError> {
        check_cores(config.cores)?;
        if config.max_batch == 0 || config.max_batch > MAX_BATCH {
            return Err(ConfigError::Range);
        }
        if config.latency_bound == 0 {
            return Err(ConfigError::ZeroTime);
        }
        Ok(Self {
            config,
            queue: Deque::new(),
            batches: core::array::from_fn(|_| Deque::new()),
            cores: CoreTable::new(config.cores),
        })
    }

    /// Messages waiting, not yet in a batch.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// How many of the waiting messages the next batch may take at `now`.
    fn batch_size(&self, oldest: Nanos, now: Nanos) -> usize {
        let c = &self.config;
        let waited = now.saturating_sub(oldest);
        let available = self.queue.len().min(c.max_batch);
        if waited + c.batch_time(1) > c.latency_bound {
            return available; // the bound is lost: throughput first
        }
        let room = (c.latency_bound - waited - c.batch_cost) / c.message_cost.max(1);
        available.min(room as usize).max(1)
    }
}

impl<const N: usize> Scheduler for Messaging<N> {
    fn task_arrived(&mut self, task: TaskId, _class: TaskClass, now: Nanos) -> Admission {
        match self.queue.push_back(Waiting { task, since: now }) {
            Ok(()) => Admission::Queued,
            Err(_) => Admission::Rejected,
        }
    }

    fn pick_next(&mut self, core: CoreId, now: Nanos) -> Pick {
        if let Some(task) = self.batches[..self.cores.cores()][core].pop_front() {
            self.cores.set(core, Running(task));
            return Pick::Run {
                task,
                joins_batch: true,
                tick_at: None,
            };
        }
        let Some(oldest) = self.queue.front().map(|w| w.since) else {
            return Pick::Idle { wake_at: None };
        };
        let k = self.batch_size(oldest, now);
        if k < self.config.max_batch {
            let slack = self
                .config
                .latency_bound
                .saturating_sub(self.config.batch_time(k));
            let release_at = oldest + slack.min(self.config.max_linger);
            if now < release_at {
                return Pick::Idle {
                    wake_at: Some(release_at),
                };
            }
        }
        let first = self.queue.pop_front().map(|w| w.task).unwrap_or_default();
        for _ in 1..k {
            match self.queue.pop_front() {
                // Cannot fail: k <= max_batch <= MAX_BATCH and the batch was empty.
                Some(w) => drop(self.batches[core].push_back(w.task)),
                None => break,
            }
        }
        self.cores.set(core, Running(first));
        Pick::Run {
            task: first,
            joins_batch: false,
            tick_at: None,
        }
    }

    fn tick(&mut self, _core: CoreId, _running: TaskId, _now: Nanos) -> Decision {
        Decision::Continue { tick_at: None }
    }

    fn task_done(&mut self, core: CoreId, task: TaskId, _now: Nanos) {
        self.cores.take(core, task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Nanos = 1_000;

    fn cfg(bound: Nanos) -> MessagingConfig {
        MessagingConfig::new(1, bound, 20 * US, 2 * US)
    }

    fn run(s: &mut Messaging<256>, now: Nanos) -> (TaskId, bool) {
        match s.pick_next(0, now) {
            Pick::Run {
                task, joins_batch, ..
            } => {
                s.task_done(0, task, now);
                (task, joins_batch)
            }
            Pick::Idle { .. } => panic!("expected a message"),
        }
    }

    #[test]
    fn lingers_then_releases_one_batch() {
        let mut s = Messaging::<256>::new(cfg(200 * US)).unwrap();
        s.task_arrived(TaskId(1), TaskClass::Message, 0);
        // Linger capped at half the bound.
        assert_eq!(
            s.pick_next(0, 0),
            Pick::Idle {
                wake_at: Some(100 * US)
            }
        );
        s.task_arrived(TaskId(2), TaskClass::Message, 10 * US);
        s.task_arrived(TaskId(3), TaskClass::Message, 20 * US);
        assert_eq!(
            s.pick_next(0, 20 * US),
            Pick::Idle {
                wake_at: Some(100 * US)
            }
        );
        assert_eq!(run(&mut s, 100 * US), (TaskId(1), false));
        assert_eq!(run(&mut s, 101 * US), (TaskId(2), true));
        assert_eq!(run(&mut s, 102 * US), (TaskId(3), true));
        assert_eq!(s.pick_next(0, 103 * US), Pick::Idle { wake_at: None });
    }

    #[test]
    fn a_tight_bound_shortens_the_linger() {
        // 40 us bound: one message (22 us) leaves 18 us of slack.
        let mut s = Messaging::<256>::new(cfg(40 * US)).unwrap();
        s.task_arrived(TaskId(1), TaskClass::Message, 0);
        assert_eq!(
            s.pick_next(0, 0),
            Pick::Idle {
                wake_at: Some(18 * US)
            }
        );
        s.task_arrived(TaskId(2), TaskClass::Message, US);
        // Two messages need 24 us: release by 16 us.
        assert_eq!(
            s.pick_next(0, US),
            Pick::Idle {
                wake_at: Some(16 * US)
            }
        );
    }

    #[test]
    fn full_batch_goes_at_once_and_is_capped() {
        let mut s = Messaging::<256>::new(MessagingConfig {
            max_batch: 4,
            ..cfg(1_000 * US)
        })
        .unwrap();
        for i in 0..6 {
            s.task_arrived(TaskId(i), TaskClass::Message, 0);
        }
        let flags: [bool; 4] = core::array::from_fn(|_| run(&mut s, 0).1);
        assert_eq!(flags, [false, true, true, true]);
        assert_eq!(s.queued(), 2);
    }

    #[test]
    fn batch_never_breaks_the_bound_while_it_can_be_met() {
        // 60 us bound, oldest has waited 20 us: 40 - 20 (flush) leaves room for 10 messages.
        let mut s = Messaging::<256>::new(cfg(60 * US)).unwrap();
        for i in 0..30 {
            s.task_arrived(TaskId(i), TaskClass::Message, 0);
        }
        assert_eq!(run(&mut s, 20 * US), (TaskId(0), false));
        assert_eq!(s.queued(), 20);
    }

    #[test]
    fn overload_takes_full_batches() {
        let mut s = Messaging::<256>::new(cfg(60 * US)).unwrap();
        for i in 0..100 {
            s.task_arrived(TaskId(i), TaskClass::Message, 0);
        }
        run(&mut s, 100 * US);
        assert_eq!(s.queued(), 100 - MAX_BATCH);
    }

    #[test]
    fn batches_are_reserved_per_core() {
        let mut s = Messaging::<256>::new(MessagingConfig {
            cores: 2,
            max_batch: 2,
            ..cfg(1_000 * US)
        })
        .unwrap();
        for i in 0..4 {
            s.task_arrived(TaskId(i), TaskClass::Message, 0);
        }
        assert!(matches!(
            s.pick_next(0, 0),
            Pick::Run {
                task: TaskId(0),
                joins_batch: false,
                ..
            }
        ));
        assert!(matches!(
            s.pick_next(1, 0),
            Pick::Run {
                task: TaskId(2),
                joins_batch: false,
                ..
            }
        ));
        s.task_done(0, TaskId(0), 1);
        assert!(matches!(
            s.pick_next(0, 1),
            Pick::Run {
                task: TaskId(1),
                joins_batch: true,
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_config() {
        let bad = MessagingConfig {
            max_batch: MAX_BATCH + 1,
            ..cfg(US)
        };
        assert_eq!(Messaging::<4>::new(bad).err(), Some(ConfigError::Range));
    }
}

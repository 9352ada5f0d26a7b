//! The default policy a runtime can ship with: one central FIFO queue for all
//! cores, run to completion, or round-robin when a quantum is set (a preempted
//! task goes to the tail). It knows nothing about classes; it is also the
//! "centralized FCFS" baseline of the simulator.
use heapless::Deque;

use crate::cores::{CoreTable, Slot};
use crate::{
    check_cores, Admission, ConfigError, CoreId, Decision, Nanos, Pick, Scheduler, TaskClass,
    TaskId,
};

/// Configuration of [`Fifo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FifoConfig {
    /// Cores of the partition.
    pub cores: usize,
    /// Round-robin quantum; `None` runs every task to completion (FCFS).
    pub quantum: Option<Nanos>,
}

#[derive(Clone, Copy)]
struct Running {
    task: TaskId,
    since: Nanos,
}

impl Slot for Running {
    fn task(&self) -> TaskId {
        self.task
    }
}

/// Central FIFO (FCFS), or round-robin with a quantum. `N` is the queue capacity.
pub struct Fifo<const N: usize> {
    quantum: Option<Nanos>,
    queue: Deque<TaskId, N>,
    cores: CoreTable<Running>,
}

impl<const N: usize> Fifo<N> {
    /// A FIFO policy; fails on a bad core count or a zero quantum.
    pub fn new(config: FifoConfig) -> Result<Self, ConfigError> {
        check_cores(config.cores)?;
        if config.quantum == Some(0) {
            return Err(ConfigError::ZeroTime);
        }
        Ok(Self {
            quantum: config.quantum,
            queue: Deque::new(),
            cores: CoreTable::new(config.cores),
        })
    }

    /// Tasks waiting (not running).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

impl<const N: usize> Scheduler for Fifo<N> {
    fn task_arrived(&mut self, task: TaskId, _class: TaskClass, _now: Nanos) -> Admission {
        match self.queue.push_back(task) {
            Ok(()) => Admission::Queued,
            Err(_) => Admission::Rejected,
        }
    }

    fn pick_next(&mut self, core: CoreId, now: Nanos) -> Pick {
        match self.queue.pop_front() {
            Some(task) => {
                self.cores.set(core, Running { task, since: now });
                Pick::Run {
                    task,
                    joins_batch: false,
                    tick_at: self.quantum.map(|q| now + q),
                }
            }
            None => Pick::Idle { wake_at: None },
        }
    }

    fn tick(&mut self, core: CoreId, running: TaskId, now: Nanos) -> Decision {
        let (Some(quantum), Some(slot)) = (self.quantum, self.cores.get(core).copied()) else {
            return Decision::Continue { tick_at: None };
        };
        debug_assert_eq!(slot.task, running);
        let expiry = slot.since + quantum;
        if now < expiry {
            return Decision::Continue {
                tick_at: Some(expiry),
            };
        }
        // Preempting with nobody waiting would only burn the switch cost.
        if self.queue.is_empty() {
            return Decision::Continue {
                tick_at: Some(now + quantum),
            };
        }
        self.cores.take(core, running);
        // Cannot fail: the task came out of this queue, which is not fuller than then.
        let _ = self.queue.push_back(running);
        Decision::Preempt
    }

    fn task_done(&mut self, core: CoreId, task: TaskId, _now: Nanos) {
        self.cores.take(core, task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: Pick) -> TaskId {
        match p {
            Pick::Run { task, .. } => task,
            Pick::Idle { .. } => panic!("expected a task"),
        }
    }

    #[test]
    fn serves_in_arrival_order_across_cores() {
        let mut s = Fifo::<4>::new(FifoConfig {
            cores: 2,
            quantum: None,
        })
        .unwrap();
        for i in 0..3 {
            assert_eq!(
                s.task_arrived(TaskId(i), TaskClass::Request, i as u64),
                Admission::Queued
            );
        }
        assert_eq!(run(s.pick_next(1, 5)), TaskId(0));
        assert_eq!(run(s.pick_next(0, 5)), TaskId(1));
        s.task_done(1, TaskId(0), 9);
        assert_eq!(run(s.pick_next(1, 9)), TaskId(2));
        assert_eq!(s.pick_next(0, 9), Pick::Idle { wake_at: None });
    }

    #[test]
    fn rejects_when_full() {
        let mut s = Fifo::<2>::new(FifoConfig {
            cores: 1,
            quantum: None,
        })
        .unwrap();
        assert_eq!(
            s.task_arrived(TaskId(0), TaskClass::Request, 0),
            Admission::Queued
        );
        assert_eq!(
            s.task_arrived(TaskId(1), TaskClass::Request, 0),
            Admission::Queued
        );
        assert_eq!(
            s.task_arrived(TaskId(2), TaskClass::Request, 0),
            Admission::Rejected
        );
    }

    #[test]
    fn fcfs_never_preempts() {
        let mut s = Fifo::<4>::new(FifoConfig {
            cores: 1,
            quantum: None,
        })
        .unwrap();
        s.task_arrived(TaskId(0), TaskClass::Request, 0);
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        assert_eq!(
            s.pick_next(0, 0),
            Pick::Run {
                task: TaskId(0),
                joins_batch: false,
                tick_at: None
            }
        );
        assert_eq!(
            s.tick(0, TaskId(0), 1_000_000),
            Decision::Continue { tick_at: None }
        );
    }

    #[test]
    fn round_robin_preempts_to_tail_only_when_someone_waits() {
        let mut s = Fifo::<4>::new(FifoConfig {
            cores: 1,
            quantum: Some(10),
        })
        .unwrap();
        s.task_arrived(TaskId(0), TaskClass::Request, 0);
        assert_eq!(
            s.pick_next(0, 0),
            Pick::Run {
                task: TaskId(0),
                joins_batch: false,
                tick_at: Some(10)
            }
        );
        assert_eq!(
            s.tick(0, TaskId(0), 4),
            Decision::Continue { tick_at: Some(10) }
        );
        assert_eq!(
            s.tick(0, TaskId(0), 10),
            Decision::Continue { tick_at: Some(20) }
        );
        s.task_arrived(TaskId(1), TaskClass::Request, 12);
        assert_eq!(s.tick(0, TaskId(0), 20), Decision::Preempt);
        assert_eq!(run(s.pick_next(0, 21)), TaskId(1));
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn rejects_bad_config() {
        assert_eq!(
            Fifo::<4>::new(FifoConfig {
                cores: 0,
                quantum: None
            })
            .err(),
            Some(ConfigError::Cores)
        );
        assert_eq!(
            Fifo::<4>::new(FifoConfig {
                cores: 1,
                quantum: Some(0)
            })
            .err(),
            Some(ConfigError::ZeroTime)
        );
    }
}

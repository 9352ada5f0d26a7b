//! `ui`: earliest-deadline-first on frame deadlines (60/120 Hz rendering),
//! preemptive, with input events first.
//!
//! Input events get a deadline `input_deadline` after their arrival rather
//! than a strict priority: with short input deadlines they overtake frame work,
//! and, unlike a fixed priority level, they stay inside EDF's schedulability
//! argument, so a burst of input cannot make a frame miss while total
//! utilization stays below the core count's bound. At equal deadlines input goes
//! first. Tasks without a deadline (any other class) run only when no frame or
//! input work is ready, in arrival order.
use core::cmp::Ordering;

use heapless::binary_heap::{BinaryHeap, Min};

use crate::cores::{CoreTable, Slot};
use crate::{
    check_cores, Admission, ConfigError, CoreId, Decision, Nanos, Pick, Scheduler, TaskClass,
    TaskId,
};

/// Configuration of [`Ui`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UiConfig {
    /// Cores of the partition.
    pub cores: usize,
    /// Relative deadline given to an input event (from its arrival).
    pub input_deadline: Nanos,
}

impl UiConfig {
    /// Defaults: input handled within 2 ms, well inside one 120 Hz frame.
    pub const fn new(cores: usize) -> Self {
        Self {
            cores,
            input_deadline: 2_000_000,
        }
    }
}

/// Heap key: earliest deadline, then input before frames before the rest,
/// then arrival order (`seq`), which makes every tie deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    deadline: Nanos,
    rank: u8,
    seq: u32,
    task: TaskId,
}

#[derive(Clone, Copy)]
struct Running(Ready);

impl Slot for Running {
    fn task(&self) -> TaskId {
        self.0.task
    }
}

/// Preemptive global EDF. `N` is the ready-queue capacity.
pub struct Ui<const N: usize> {
    config: UiConfig,
    ready: BinaryHeap<Ready, Min, N>,
    seq: u32,
    cores: CoreTable<Running>,
}

impl<const N: usize> Ui<N> {
    /// A `ui` policy; fails on a bad core count or a zero input deadline.
    pub fn new(config: UiConfig) -> Result<Self, ConfigError> {
        check_cores(config.cores)?;
        if config.input_deadline == 0 {
            return Err(ConfigError::ZeroTime);
        }
        Ok(Self {
            config,
            ready: BinaryHeap::new(),
            seq: 0,
            cores: CoreTable::new(config.cores),
        })
    }

    /// Tasks ready but not running.
    pub fn queued(&self) -> usize {
        self.ready.len()
    }
}

impl<const N: usize> Scheduler for Ui<N> {
    fn task_arrived(&mut self, task: TaskId, class: TaskClass, now: Nanos) -> Admission {
        let (deadline, rank) = match class {
            TaskClass::Input => (now.saturating_add(self.config.input_deadline), 0),
            TaskClass::Frame { deadline } => (deadline, 1),
            _ => (Nanos::MAX, 2),
        };
        let ready = Ready {
            deadline,
            rank,
            seq: self.seq,
            task,
        };
        self.seq = self.seq.wrapping_add(1);
        if self.ready.push(ready).is_err() {
            return Admission::Rejected;
        }
        if self.ready.len() <= self.cores.free() {
            return Admission::Queued;
        }
        // The newcomer preempts the running task with the latest deadline, if later than its own.
        let latest = self
            .cores
            .running()
            .max_by(|(ca, a), (cb, b)| a.0.cmp(&b.0).then(cb.cmp(ca)));
        match latest {
            Some((core, r)) if ready.cmp(&r.0) == Ordering::Less => Admission::Kick(core),
            _ => Admission::Queued,
        }
    }

    fn pick_next(&mut self, core: CoreId, _now: Nanos) -> Pick {
        match self.ready.pop() {
            Some(ready) => {
                self.cores.set(core, Running(ready));
                Pick::Run {
                    task: ready.task,
                    joins_batch: false,
                    tick_at: None,
                }
            }
            None => Pick::Idle { wake_at: None },
        }
    }

    fn tick(&mut self, core: CoreId, running: TaskId, _now: Nanos) -> Decision {
        let Some(Running(current)) = self.cores.get(core).copied() else {
            return Decision::Continue { tick_at: None };
        };
        debug_assert_eq!(current.task, running);
        let earlier_waits = self.ready.peek().is_some_and(|head| *head < current);
        if !earlier_waits || self.ready.push(current).is_err() {
            return Decision::Continue { tick_at: None };
        }
        self.cores.take(core, running);
        Decision::Preempt
    }

    fn task_done(&mut self, core: CoreId, task: TaskId, _now: Nanos) {
        self.cores.take(core, task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ui(cores: usize) -> Ui<16> {
        Ui::new(UiConfig::new(cores)).unwrap()
    }

    fn task(p: Pick) -> TaskId {
        match p {
            Pick::Run { task, .. } => task,
            Pick::Idle { .. } => panic!("expected a task"),
        }
    }

    fn frame(deadline: Nanos) -> TaskClass {
        TaskClass::Frame { deadline }
    }

    #[test]
    fn earliest_deadline_first() {
        let mut s = ui(1);
        s.task_arrived(TaskId(1), frame(16_666_667), 0);
        s.task_arrived(TaskId(2), frame(8_333_333), 0);
        s.task_arrived(TaskId(3), TaskClass::Background, 0);
        s.task_arrived(TaskId(4), frame(12_000_000), 0);
        let mut order = [TaskId(0); 4];
        for slot in &mut order {
            *slot = task(s.pick_next(0, 0));
            s.task_done(0, *slot, 0);
        }
        assert_eq!(order, [TaskId(2), TaskId(4), TaskId(1), TaskId(3)]);
    }

    #[test]
    fn input_goes_before_frames_and_wins_ties() {
        let mut s = ui(1);
        s.task_arrived(TaskId(1), frame(8_000_000), 0);
        // Input at 6 ms: deadline 8 ms, equal to the frame's; input wins the tie.
        s.task_arrived(TaskId(2), TaskClass::Input, 6_000_000);
        assert_eq!(task(s.pick_next(0, 6_000_000)), TaskId(2));
    }

    #[test]
    fn earlier_deadline_arrival_kicks_latest_running_core() {
        let mut s = ui(2);
        s.task_arrived(TaskId(1), frame(16_000_000), 0);
        s.task_arrived(TaskId(2), frame(10_000_000), 0);
        task(s.pick_next(0, 0));
        task(s.pick_next(1, 0));
        assert_eq!(
            s.task_arrived(TaskId(3), frame(20_000_000), 1),
            Admission::Queued
        );
        assert_eq!(
            s.task_arrived(TaskId(4), TaskClass::Input, 2),
            Admission::Kick(1)
        );
        // Core 1 runs task 1 (deadline 16 ms): preempted for the input.
        assert_eq!(s.tick(1, TaskId(1), 3), Decision::Preempt);
        assert_eq!(task(s.pick_next(1, 3)), TaskId(4));
        // Core 0 runs task 2 (10 ms) and nothing earlier waits.
        assert_eq!(
            s.tick(0, TaskId(2), 4),
            Decision::Continue { tick_at: None }
        );
        s.task_done(1, TaskId(4), 5);
        assert_eq!(task(s.pick_next(1, 5)), TaskId(1));
    }

    #[test]
    fn no_kick_while_a_core_is_free() {
        let mut s = ui(2);
        s.task_arrived(TaskId(1), frame(16_000_000), 0);
        task(s.pick_next(0, 0));
        assert_eq!(
            s.task_arrived(TaskId(2), TaskClass::Input, 1),
            Admission::Queued
        );
    }

    #[test]
    fn background_never_preempts_frames() {
        let mut s = ui(1);
        s.task_arrived(TaskId(1), frame(16_000_000), 0);
        task(s.pick_next(0, 0));
        assert_eq!(
            s.task_arrived(TaskId(2), TaskClass::Background, 1),
            Admission::Queued
        );
        assert_eq!(
            s.tick(0, TaskId(1), 2),
            Decision::Continue { tick_at: None }
        );
    }
}

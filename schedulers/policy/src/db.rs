//! `db`: priority classes for a database partition (Seastar-style scheduling
//! groups): commits and log writes before reads before background compaction,
//! with a CPU budget that keeps compaction from starving.
//!
//! - A commit preempts any non-commit work at once (kick on arrival), so its
//!   latency is its own service time plus one preemption, whatever the
//!   background load; commits are never preempted.
//! - Background work earns credit at `background_share` of the partition's
//!   cores (a token bucket, at most `burst` banked). While it has credit it
//!   runs before reads ("guaranteed" mode) for slices of `slice`, so it never
//!   starves; without credit it runs only on cores nothing else wants
//!   ("spare" mode), where any read or commit arrival preempts it. Guaranteed
//!   background may overdraw its credit by at most one slice per core.
//! - A task preempted for a higher class goes back to the head of its queue,
//!   keeping FIFO order within the class.
//!
//! The commit guarantee holds while commits alone fit in the cores; commits are
//! absolute priority and the compaction budget is taken from reads, not commits.
use heapless::Deque;

use crate::cores::{CoreTable, Slot};
use crate::{
    check_cores, Admission, ConfigError, CoreId, Decision, Nanos, Pick, Scheduler, TaskClass,
    TaskId,
};

/// The longest interval [`Db`] accounts at once (about 18 minutes):
/// `MAX_INTERVAL * MAX_CORES * 1000` fits an `i64`.
const MAX_INTERVAL: Nanos = 1 << 40;

/// Configuration of [`Db`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbConfig {
    /// Cores of the partition.
    pub cores: usize,
    /// Longest a background task runs before the policy reconsiders it.
    pub slice: Nanos,
    /// Share of the partition's CPU guaranteed to background work, per mille.
    pub background_share_permille: u32,
    /// Most credit background work can bank while it has nothing to run.
    pub burst: Nanos,
}

impl DbConfig {
    /// Defaults: 50 us background slices, 10 % guaranteed, 200 us burst.
    pub const fn new(cores: usize) -> Self {
        Self {
            cores,
            slice: 50_000,
            background_share_permille: 100,
            burst: 200_000,
        }
    }
}

/// Why a core runs what it runs; ordered by how readily it is preempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    Spare,
    Guaranteed,
    Read,
    Commit,
}

#[derive(Clone, Copy)]
struct Running {
    task: TaskId,
    lane: Lane,
    since: Nanos,
}

impl Slot for Running {
    fn task(&self) -> TaskId {
        self.task
    }
}

/// Commit > read > background, with a background CPU budget. `N` is the
/// capacity of each class queue.
pub struct Db<const N: usize> {
    config: DbConfig,
    commits: Deque<TaskId, N>,
    reads: Deque<TaskId, N>,
    background: Deque<TaskId, N>,
    /// Core-nanoseconds background may still use ahead of reads.
    credit: i64,
    accounted_to: Nanos,
    cores: CoreTable<Running>,
}

impl<const N: usize> Db<N> {
    /// A `db` policy; fails on a bad core count, zero slice or share above 1000.
    pub fn new(config: DbConfig) -> Result<Self, ConfigError> {
        check_cores(config.cores)?;
        if config.slice == 0 {
            return Err(ConfigError::ZeroTime);
        }
        if config.background_share_permille > 1000 || config.burst > i64::MAX as u64 {
            return Err(ConfigError::Range);
        }
        Ok(Self {
            config,
            commits: Deque::new(),
            reads: Deque::new(),
            background: Deque::new(),
            credit: 0,
            accounted_to: 0,
            cores: CoreTable::new(config.cores),
        })
    }

    /// Background credit left, in core-nanoseconds (negative: overdrawn).
    pub fn background_credit(&self) -> i64 {
        self.credit
    }

    /// Brings the credit up to `now`: earn the share, pay for guaranteed runs.
    ///
    /// 64-bit arithmetic (this runs on every arrival, pick and completion):
    /// an interval is counted as at most [`MAX_INTERVAL`], which moves the
    /// credit from any reachable value to its bound (the burst, or the
    /// overdraft of guaranteed slices that run past their tick) already.
    fn account(&mut self, now: Nanos) {
        let dt = now.saturating_sub(self.accounted_to);
        if dt == 0 {
            return;
        }
        self.accounted_to = now;
        let dt = dt.min(MAX_INTERVAL) as i64;
        let rate = self.config.cores as i64 * i64::from(self.config.background_share_permille);
        let guaranteed = self
            .cores
            .running()
            .filter(|(_, r)| r.lane == Lane::Guaranteed)
            .count() as i64;
        let change = dt * rate / 1000 - dt * guaranteed;
        self.credit = self
            .credit
            .saturating_add(change)
            .min(self.config.burst as i64);
    }

    fn set_lane(&mut self, core: CoreId, lane: Lane) {
        if let Some(mut r) = self.cores.get(core).copied() {
            self.cores.take(core, r.task);
            r.lane = lane;
            self.cores.set(core, r);
        }
    }

    /// The running core to preempt for work of `lane`, least valuable first.
    fn victim(&self, lane: Lane) -> Option<CoreId> {
        let preemptible = |r: &Running| match lane {
            Lane::Commit => r.lane != Lane::Commit,
            Lane::Read => r.lane == Lane::Spare,
            Lane::Guaranteed | Lane::Spare => false,
        };
        self.cores
            .running()
            .filter(|(_, r)| preemptible(r))
            .min_by_key(|(core, r)| (r.lane, r.since, *core))
            .map(|(core, _)| core)
    }
}

impl<const N: usize> Scheduler for Db<N> {
    fn task_arrived(&mut self, task: TaskId, class: TaskClass, now: Nanos) -> Admission {
        self.account(now);
        let (queue, lane) = match class {
            TaskClass::Commit => (&mut self.commits, Lane::Commit),
            TaskClass::Background => (&mut self.background, Lane::Spare),
            _ => (&mut self.reads, Lane::Read),
        };
        if queue.push_back(task).is_err() {
            return Admission::Rejected;
        }
        let ahead = match lane {
            Lane::Commit => self.commits.len(),
            Lane::Read => self.commits.len() + self.reads.len(),
            Lane::Guaranteed | Lane::Spare => return Admission::Queued,
        };
        if ahead <= self.cores.free() {
            return Admission::Queued;
        }
        match self.victim(lane) {
            Some(core) => Admission::Kick(core),
            None => Admission::Queued,
        }
    }

    fn pick_next(&mut self, core: CoreId, now: Nanos) -> Pick {
        self.account(now);
        let slice = Some(now + self.config.slice);
        let (task, lane, tick_at) = if let Some(t) = self.commits.pop_front() {
            (t, Lane::Commit, None)
        } else if self.credit > 0 && !self.background.is_empty() {
            (
                self.background.pop_front().unwrap_or_default(),
                Lane::Guaranteed,
                slice,
            )
        } else if let Some(t) = self.reads.pop_front() {
            (t, Lane::Read, None)
        } else if let Some(t) = self.background.pop_front() {
            let lane = if self.credit > 0 {
                Lane::Guaranteed
            } else {
                Lane::Spare
            };
            (t, lane, slice)
        } else {
            return Pick::Idle { wake_at: None };
        };
        self.cores.set(
            core,
            Running {
                task,
                lane,
                since: now,
            },
        );
        Pick::Run {
            task,
            joins_batch: false,
            tick_at,
        }
    }

    fn tick(&mut self, core: CoreId, running: TaskId, now: Nanos) -> Decision {
        self.account(now);
        let Some(r) = self.cores.get(core).copied() else {
            return Decision::Continue { tick_at: None };
        };
        debug_assert_eq!(r.task, running);
        let commits_wait = !self.commits.is_empty();
        let reads_wait = !self.reads.is_empty();
        let next_slice = Some(now + self.config.slice);
        let preempt = match r.lane {
            Lane::Commit => false,
            Lane::Read => commits_wait,
            Lane::Guaranteed | Lane::Spare if commits_wait => true,
            Lane::Guaranteed | Lane::Spare => {
                let lane = if self.credit > 0 {
                    Lane::Guaranteed
                } else {
                    Lane::Spare
                };
                if lane == Lane::Spare && reads_wait {
                    true
                } else {
                    self.set_lane(core, lane);
                    false
                }
            }
        };
        if !preempt {
            let tick_at = if r.lane >= Lane::Read {
                None
            } else {
                next_slice
            };
            return Decision::Continue { tick_at };
        }
        let queue = if r.lane == Lane::Read {
            &mut self.reads
        } else {
            &mut self.background
        };
        if queue.push_front(running).is_err() {
            return Decision::Continue {
                tick_at: next_slice,
            };
        }
        self.cores.take(core, running);
        Decision::Preempt
    }

    fn task_done(&mut self, core: CoreId, task: TaskId, now: Nanos) {
        self.account(now);
        self.cores.take(core, task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(cores: usize) -> Db<16> {
        Db::new(DbConfig::new(cores)).unwrap()
    }

    fn task(p: Pick) -> TaskId {
        match p {
            Pick::Run { task, .. } => task,
            Pick::Idle { .. } => panic!("expected a task"),
        }
    }

    #[test]
    fn commit_before_read_before_background_without_credit() {
        let mut s = db(1);
        s.task_arrived(TaskId(1), TaskClass::Background, 0);
        s.task_arrived(TaskId(2), TaskClass::Read, 0);
        s.task_arrived(TaskId(3), TaskClass::Commit, 0);
        let mut order = [TaskId(0); 3];
        for slot in &mut order {
            *slot = task(s.pick_next(0, 0));
            s.task_done(0, *slot, 0);
        }
        assert_eq!(order, [TaskId(3), TaskId(2), TaskId(1)]);
    }

    #[test]
    fn commit_kicks_background_before_reads() {
        let mut s = db(2);
        s.task_arrived(TaskId(1), TaskClass::Read, 0);
        s.task_arrived(TaskId(2), TaskClass::Background, 0);
        task(s.pick_next(0, 0));
        task(s.pick_next(1, 0));
        assert_eq!(
            s.task_arrived(TaskId(3), TaskClass::Commit, 10),
            Admission::Kick(1)
        );
        assert_eq!(s.tick(1, TaskId(2), 10), Decision::Preempt);
        assert_eq!(task(s.pick_next(1, 11)), TaskId(3));
        // Another commit while core 1 runs a commit: the read gives way.
        assert_eq!(
            s.task_arrived(TaskId(4), TaskClass::Commit, 12),
            Admission::Kick(0)
        );
        assert_eq!(s.tick(0, TaskId(1), 12), Decision::Preempt);
        // Commits are never preempted.
        assert_eq!(
            s.task_arrived(TaskId(5), TaskClass::Commit, 13),
            Admission::Queued
        );
        assert_eq!(
            s.tick(1, TaskId(3), 13),
            Decision::Continue { tick_at: None }
        );
    }

    #[test]
    fn read_kicks_spare_background_but_not_reads() {
        let mut s = db(1);
        s.task_arrived(TaskId(1), TaskClass::Background, 0);
        assert!(matches!(
            s.pick_next(0, 0),
            Pick::Run {
                task: TaskId(1),
                tick_at: Some(_),
                ..
            }
        ));
        // Credit was zero at dispatch: spare mode. Tick before credit builds up.
        assert_eq!(
            s.task_arrived(TaskId(2), TaskClass::Read, 0),
            Admission::Kick(0)
        );
        assert_eq!(s.tick(0, TaskId(1), 0), Decision::Preempt);
        assert_eq!(task(s.pick_next(0, 1)), TaskId(2));
        assert_eq!(
            s.task_arrived(TaskId(3), TaskClass::Read, 2),
            Admission::Queued
        );
        s.task_done(0, TaskId(2), 3);
        // Preempted background keeps its place at the head of its class... but reads go first.
        assert_eq!(task(s.pick_next(0, 3)), TaskId(3));
    }

    #[test]
    fn background_gets_its_share_under_read_saturation() {
        // One core, reads always waiting, one endless background task.
        let cfg = DbConfig {
            cores: 1,
            slice: 10_000,
            background_share_permille: 200,
            burst: 20_000,
        };
        let mut s = Db::<64>::new(cfg).unwrap();
        s.task_arrived(TaskId(1000), TaskClass::Background, 0);
        let mut now = 0;
        let mut next = 0;
        let mut background_ns = 0;
        let mut running: Option<(TaskId, Nanos)> = None;
        while now < 1_000_000 {
            while s.reads.len() < 4 {
                s.task_arrived(TaskId(next), TaskClass::Read, now);
                next += 1;
            }
            match running {
                None => {
                    let t = task(s.pick_next(0, now));
                    running = Some((t, now));
                }
                Some((t, _)) if t == TaskId(1000) => {
                    now += 1_000;
                    background_ns += 1_000;
                    if s.tick(0, t, now) == Decision::Preempt {
                        running = None;
                    }
                }
                Some((t, _)) => {
                    now += 5_000;
                    s.task_done(0, t, now);
                    running = None;
                }
            }
        }
        // 20 % guaranteed, give or take one slice of overdraft.
        let share = background_ns as f64 / now as f64;
        assert!((0.18..=0.23).contains(&share), "background share {share}");
    }

    #[test]
    fn rejects_bad_config() {
        let cfg = DbConfig {
            background_share_permille: 1001,
            ..DbConfig::new(1)
        };
        assert_eq!(Db::<4>::new(cfg).err(), Some(ConfigError::Range));
        assert_eq!(
            Db::<4>::new(DbConfig {
                slice: 0,
                ..DbConfig::new(1)
            })
            .err(),
            Some(ConfigError::ZeroTime)
        );
    }
}

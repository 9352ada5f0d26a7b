//! `api`: the policy for request/response services with heavy-tailed service
//! times (Shinjuku, Concord). One central queue across the partition's cores
//! avoids the head-of-line blocking of per-core queues; a request that has run
//! for a quantum while others wait is preempted, so a 500 us request cannot
//! hold a core that 0.5 us requests need.
//!
//! Two refinements over Shinjuku's single queue, both configurable:
//! - demotion: a preempted request waits in a second queue behind requests
//!   that have not run yet (two-level least-attained-service), so short
//!   requests never queue behind the remaining work of long ones; a demoted
//!   request that has waited `max_defer` goes first again, so none starves;
//!   demoted requests take turns among themselves only every
//!   `demoted_quantum`, so long requests do not pay a preemption every
//!   `quantum` just to share the cores with each other;
//! - preemption on arrival: when a request arrives and no core is free, the
//!   core whose request has run longest past its quantum is kicked at once
//!   instead of at its next timer tick, and a request is only preempted when
//!   someone waits, so preemption costs are paid only when they buy latency.
use heapless::Deque;

use crate::cores::{CoreTable, Slot};
use crate::{
    check_cores, Admission, ConfigError, CoreId, Decision, Nanos, Pick, Scheduler, TaskClass,
    TaskId,
};

/// Configuration of [`Api`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// Cores of the partition.
    pub cores: usize,
    /// Run time after which a request is preempted if others wait.
    pub quantum: Nanos,
    /// Preempted requests wait behind fresh ones (`false`: Shinjuku's single
    /// queue, a preempted request goes to its tail).
    pub demote_preempted: bool,
    /// Run time after which a demoted request yields to another demoted one.
    pub demoted_quantum: Nanos,
    /// Kick a core past its quantum when a request arrives and no core is free.
    pub preempt_on_arrival: bool,
    /// A demoted request that has waited this long runs before fresh ones.
    pub max_defer: Nanos,
}

impl ApiConfig {
    /// Defaults for microsecond-scale RPC: 2 us quantum (a short request
    /// then waits at most a quantum plus one preemption), demotion with a
    /// 50 us quantum among demoted requests, preemption on arrival, 1 ms
    /// bound on deferral.
    pub const fn new(cores: usize) -> Self {
        Self {
            cores,
            quantum: 2_000,
            demote_preempted: true,
            demoted_quantum: 50_000,
            preempt_on_arrival: true,
            max_defer: 1_000_000,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Waiting {
    task: TaskId,
    since: Nanos,
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

/// Centralized preemptive request scheduler. `N` is the capacity of each queue.
pub struct Api<const N: usize> {
    config: ApiConfig,
    fresh: Deque<Waiting, N>,
    demoted: Deque<Waiting, N>,
    cores: CoreTable<Running>,
    /// The last pick was a demoted request that had waited `max_defer`:
    /// the next goes to a fresh one if any waits. Without this, two or
    /// more long requests whose turns exceed `max_defer` would always be
    /// overdue and fresh requests would never run.
    last_overdue: bool,
}

impl<const N: usize> Api<N> {
    /// An `api` policy; fails on a bad core count or zero quantum.
    pub fn new(config: ApiConfig) -> Result<Self, ConfigError> {
        check_cores(config.cores)?;
        if config.quantum == 0 || config.max_defer == 0 || config.demoted_quantum == 0 {
            return Err(ConfigError::ZeroTime);
        }
        Ok(Self {
            config,
            fresh: Deque::new(),
            demoted: Deque::new(),
            cores: CoreTable::new(config.cores),
            last_overdue: false,
        })
    }

    /// Requests waiting: (not yet run, preempted).
    pub fn queued(&self) -> (usize, usize) {
        (self.fresh.len(), self.demoted.len())
    }

    /// Whether a request that has run `elapsed` (at least a quantum) should
    /// give way to a waiting one.
    fn should_yield(&self, elapsed: Nanos) -> bool {
        if !self.config.demote_preempted {
            return !self.fresh.is_empty();
        }
        !self.fresh.is_empty()
            || (!self.demoted.is_empty() && elapsed >= self.config.demoted_quantum)
    }
}

impl<const N: usize> Scheduler for Api<N> {
    fn task_arrived(&mut self, task: TaskId, _class: TaskClass, now: Nanos) -> Admission {
        if self.fresh.push_back(Waiting { task, since: now }).is_err() {
            return Admission::Rejected;
        }
        if !self.config.preempt_on_arrival || self.fresh.len() <= self.cores.free() {
            return Admission::Queued;
        }
        let quantum = self.config.quantum;
        let victim = self
            .cores
            .running()
            .filter(|(_, r)| now - r.since >= quantum)
            .max_by_key(|(core, r)| (now - r.since, core::cmp::Reverse(*core)));
        match victim {
            Some((core, _)) => Admission::Kick(core),
            None => Admission::Queued,
        }
    }

    fn pick_next(&mut self, core: CoreId, now: Nanos) -> Pick {
        let overdue = (self.fresh.is_empty() || !self.last_overdue)
            && self
                .demoted
                .front()
                .is_some_and(|w| now - w.since >= self.config.max_defer);
        self.last_overdue = overdue;
        let next = if overdue {
            self.demoted.pop_front()
        } else {
            self.fresh.pop_front().or_else(|| self.demoted.pop_front())
        };
        match next {
            Some(w) => {
                self.cores.set(
                    core,
                    Running {
                        task: w.task,
                        since: now,
                    },
                );
                Pick::Run {
                    task: w.task,
                    joins_batch: false,
                    tick_at: Some(now + self.config.quantum),
                }
            }
            None => Pick::Idle { wake_at: None },
        }
    }

    fn tick(&mut self, core: CoreId, running: TaskId, now: Nanos) -> Decision {
        let Some(slot) = self.cores.get(core).copied() else {
            return Decision::Continue { tick_at: None };
        };
        debug_assert_eq!(slot.task, running);
        let expiry = slot.since + self.config.quantum;
        if now < expiry {
            return Decision::Continue {
                tick_at: Some(expiry),
            };
        }
        if !self.should_yield(now - slot.since) {
            return Decision::Continue {
                tick_at: Some(now + self.config.quantum),
            };
        }
        let waiting = Waiting {
            task: running,
            since: now,
        };
        let queue = if self.config.demote_preempted {
            &mut self.demoted
        } else {
            &mut self.fresh
        };
        if queue.push_back(waiting).is_err() {
            // No room to park it: keep running rather than lose the request.
            return Decision::Continue {
                tick_at: Some(now + self.config.quantum),
            };
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

    const Q: Nanos = ApiConfig::new(1).quantum;

    fn api(cores: usize) -> Api<8> {
        Api::new(ApiConfig::new(cores)).unwrap()
    }

    fn task(p: Pick) -> TaskId {
        match p {
            Pick::Run { task, .. } => task,
            Pick::Idle { .. } => panic!("expected a task"),
        }
    }

    #[test]
    fn preempts_after_quantum_only_if_someone_waits() {
        let mut s = api(1);
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        assert_eq!(
            s.pick_next(0, 0),
            Pick::Run {
                task: TaskId(1),
                joins_batch: false,
                tick_at: Some(Q)
            }
        );
        assert_eq!(
            s.tick(0, TaskId(1), Q - 1),
            Decision::Continue { tick_at: Some(Q) }
        );
        assert_eq!(
            s.tick(0, TaskId(1), Q),
            Decision::Continue {
                tick_at: Some(2 * Q)
            }
        );
        s.task_arrived(TaskId(2), TaskClass::Request, Q + 1);
        assert_eq!(s.tick(0, TaskId(1), 2 * Q), Decision::Preempt);
        assert_eq!(s.queued(), (1, 1));
        assert_eq!(task(s.pick_next(0, 2 * Q)), TaskId(2));
    }

    #[test]
    fn fresh_requests_go_before_preempted_ones() {
        let mut s = api(1);
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        task(s.pick_next(0, 0));
        s.task_arrived(TaskId(2), TaskClass::Request, 1);
        assert_eq!(s.tick(0, TaskId(1), Q), Decision::Preempt);
        s.task_arrived(TaskId(3), TaskClass::Request, Q + 1);
        assert_eq!(task(s.pick_next(0, Q + 1)), TaskId(2));
        s.task_done(0, TaskId(2), Q + 2);
        assert_eq!(task(s.pick_next(0, Q + 2)), TaskId(3));
        s.task_done(0, TaskId(3), Q + 3);
        assert_eq!(task(s.pick_next(0, Q + 3)), TaskId(1));
    }

    #[test]
    fn demoted_requests_take_turns_only_every_demoted_quantum() {
        let mut s = api(1);
        let dq = ApiConfig::new(1).demoted_quantum;
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        task(s.pick_next(0, 0));
        s.task_arrived(TaskId(2), TaskClass::Request, 1);
        assert_eq!(s.tick(0, TaskId(1), Q), Decision::Preempt);
        assert_eq!(task(s.pick_next(0, Q)), TaskId(2));
        // Task 2 used its quantum; only the demoted task 1 waits.
        assert!(matches!(
            s.tick(0, TaskId(2), 2 * Q),
            Decision::Continue { .. }
        ));
        assert!(matches!(
            s.tick(0, TaskId(2), Q + dq - 1),
            Decision::Continue { .. }
        ));
        assert_eq!(s.tick(0, TaskId(2), Q + dq), Decision::Preempt);
        assert_eq!(task(s.pick_next(0, Q + dq)), TaskId(1));
    }

    #[test]
    fn single_queue_mode_sends_preempted_to_the_tail() {
        let mut s = Api::<8>::new(ApiConfig {
            demote_preempted: false,
            ..ApiConfig::new(1)
        })
        .unwrap();
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        task(s.pick_next(0, 0));
        s.task_arrived(TaskId(2), TaskClass::Request, 1);
        assert_eq!(s.tick(0, TaskId(1), Q), Decision::Preempt);
        s.task_arrived(TaskId(3), TaskClass::Request, Q + 1);
        assert_eq!(task(s.pick_next(0, Q + 1)), TaskId(2));
        s.task_done(0, TaskId(2), Q + 2);
        // Task 1 was requeued at Q, before task 3 arrived.
        assert_eq!(task(s.pick_next(0, Q + 2)), TaskId(1));
    }

    #[test]
    fn arrival_kicks_the_core_longest_past_its_quantum() {
        let mut s = api(2);
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        s.task_arrived(TaskId(2), TaskClass::Request, 0);
        task(s.pick_next(0, 0));
        task(s.pick_next(1, 100));
        // Neither core is past its quantum: queue, no kick.
        assert_eq!(
            s.task_arrived(TaskId(3), TaskClass::Request, Q - 1),
            Admission::Queued
        );
        // Both are; core 0 has run longer.
        assert_eq!(
            s.task_arrived(TaskId(4), TaskClass::Request, 2 * Q),
            Admission::Kick(0)
        );
        assert_eq!(s.tick(0, TaskId(1), 2 * Q), Decision::Preempt);
        assert_eq!(task(s.pick_next(0, 2 * Q)), TaskId(3));
    }

    #[test]
    fn no_kick_while_a_core_is_free() {
        let mut s = api(2);
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        task(s.pick_next(0, 0));
        assert_eq!(
            s.task_arrived(TaskId(2), TaskClass::Request, 10 * Q),
            Admission::Queued
        );
    }

    #[test]
    fn no_kick_when_disabled() {
        let mut s = Api::<8>::new(ApiConfig {
            preempt_on_arrival: false,
            ..ApiConfig::new(1)
        })
        .unwrap();
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        task(s.pick_next(0, 0));
        assert_eq!(
            s.task_arrived(TaskId(2), TaskClass::Request, 10 * Q),
            Admission::Queued
        );
    }

    #[test]
    fn demoted_request_does_not_starve() {
        let cfg = ApiConfig {
            max_defer: 20_000,
            ..ApiConfig::new(1)
        };
        let mut s = Api::<8>::new(cfg).unwrap();
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        task(s.pick_next(0, 0));
        s.task_arrived(TaskId(2), TaskClass::Request, 1);
        assert_eq!(s.tick(0, TaskId(1), Q), Decision::Preempt);
        // A steady stream of fresh requests...
        let mut now = Q;
        let mut next_id = 3;
        let mut served = [false; 64];
        while now < Q + 30_000 {
            s.task_arrived(TaskId(next_id), TaskClass::Request, now);
            next_id += 1;
            let t = task(s.pick_next(0, now));
            served[t.0 as usize] = true;
            now += 1_000;
            s.task_done(0, t, now);
        }
        // ...still lets the demoted request through once it waited max_defer.
        assert!(served[1]);
    }

    #[test]
    fn fresh_requests_do_not_starve_behind_overdue_demoted_ones() {
        // Long requests take turns in slices longer than max_defer, so the
        // one waiting is always overdue when the other is preempted.
        let cfg = ApiConfig {
            quantum: 1_000_000,
            demoted_quantum: 10_000_000,
            max_defer: 1_000_000,
            ..ApiConfig::new(1)
        };
        let mut s = Api::<8>::new(cfg).unwrap();
        s.task_arrived(TaskId(1), TaskClass::Request, 0);
        s.task_arrived(TaskId(2), TaskClass::Request, 0);
        // Both long requests preempted once: they share the core in
        // demoted turns.
        assert_eq!(task(s.pick_next(0, 0)), TaskId(1));
        assert_eq!(s.tick(0, TaskId(1), 1_000_000), Decision::Preempt);
        assert_eq!(task(s.pick_next(0, 1_000_000)), TaskId(2));
        assert_eq!(s.tick(0, TaskId(2), 11_000_000), Decision::Preempt);
        assert_eq!(s.queued(), (0, 2));
        let mut now = 11_000_000;
        let mut running = task(s.pick_next(0, now));
        let mut fresh_waited = 0;
        for next_id in 3..53 {
            // A short request arrives while a long one runs.
            now += 3_000_000;
            s.task_arrived(TaskId(next_id), TaskClass::Request, now);
            assert_eq!(s.tick(0, running, now), Decision::Preempt);
            // At most one overdue long request goes before it.
            let mut picks = 0;
            loop {
                picks += 1;
                let t = task(s.pick_next(0, now));
                if t == TaskId(next_id) {
                    now += 100_000;
                    s.task_done(0, t, now);
                    break;
                }
                assert!(
                    picks < 2,
                    "the short request waited behind {picks} long turns"
                );
                now += 1_000_000;
                assert_eq!(s.tick(0, t, now), Decision::Preempt);
            }
            fresh_waited = fresh_waited.max(picks);
            running = task(s.pick_next(0, now));
        }
        assert!(fresh_waited <= 2);
    }

    #[test]
    fn rejects_bad_config() {
        assert_eq!(
            Api::<8>::new(ApiConfig::new(17)).err(),
            Some(ConfigError::Cores)
        );
        assert_eq!(
            Api::<8>::new(ApiConfig {
                quantum: 0,
                ..ApiConfig::new(1)
            })
            .err(),
            Some(ConfigError::ZeroTime)
        );
    }
}

//! Time (aarch64): a monotonic clock on the virtual counter, `sleep`
//! futures, a periodic tick per core, and the timer interrupt that drives
//! them and the scheduler's preemption ticks.
//!
//! Each vCPU has its own EL1 virtual timer (INTID 27), delivered by the
//! hypervisor as a hardware-linked virtual interrupt: one trap per
//! interrupt. The runtime keeps it armed for the earliest of what this core
//! waits for: its sleepers, its periodic tick, and the scheduler's tick for
//! the task it runs; when none is pending it is off.

use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use crate::arch;
use crate::task::MAX_VCPUS;

/// Nanoseconds since the machine started (the virtual counter, which the
/// hypervisor does not offset).
pub fn now() -> Duration {
    Duration::from_nanos(now_nanos())
}

/// [`now`] in nanoseconds.
pub fn now_nanos() -> u64 {
    to_nanos(arch::counter())
}

fn freq() -> u64 {
    static FREQ: AtomicU64 = AtomicU64::new(0);
    match FREQ.load(Ordering::Relaxed) {
        0 => {
            let f = arch::counter_frequency().max(1);
            FREQ.store(f, Ordering::Relaxed);
            f
        }
        f => f,
    }
}

/// Nanoseconds per counter tick when the frequency divides a second (as
/// QEMU's 62.5 MHz does): the conversions then take no 128-bit division.
/// Worked out once (0: not yet; `u64::MAX`: the frequency does not).
fn tick_nanos() -> Option<u64> {
    static TICK: AtomicU64 = AtomicU64::new(0);
    let k = match TICK.load(Ordering::Relaxed) {
        0 => {
            let f = freq();
            let k = if 1_000_000_000 % f == 0 { 1_000_000_000 / f } else { u64::MAX };
            TICK.store(k, Ordering::Relaxed);
            k
        }
        k => k,
    };
    (k != u64::MAX).then_some(k)
}

fn to_nanos(count: u64) -> u64 {
    match tick_nanos() {
        Some(k) if count <= u64::MAX / k => count * k,
        _ => (count as u128 * 1_000_000_000 / freq() as u128) as u64,
    }
}

/// The counter `d` from now (saturating), without going through nanoseconds
/// since boot.
fn count_after(d: Duration) -> u64 {
    arch::counter().saturating_add(to_count(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
}

/// `d` since the machine started, in counter units (saturating).
fn count_at(d: Duration) -> u64 {
    to_count(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn to_count(nanos: u64) -> u64 {
    match tick_nanos() {
        Some(k) => nanos.div_ceil(k),
        None => (nanos as u128 * freq() as u128).div_ceil(1_000_000_000) as u64,
    }
}

struct CoreTimer {
    /// Deadline (counter units), the [`Sleep`]'s key, its waker.
    sleepers: Vec<(u64, u64, Waker)>,
    /// Periodic tick: period and next expiry, in counter units (0: off).
    period: u64,
    next_periodic: u64,
    /// Scheduler tick for the running task (counter units; 0: none).
    sched_tick: u64,
}

static TIMERS: [crate::sync::Mutex<CoreTimer>; MAX_VCPUS] = [const {
    crate::sync::Mutex::new(CoreTimer { sleepers: Vec::new(), period: 0, next_periodic: 0, sched_tick: 0 })
}; MAX_VCPUS];
/// Cores whose timer is left off: they call [`poll_timers`] themselves.
static POLLED: [core::sync::atomic::AtomicBool; MAX_VCPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_VCPUS];
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
/// Per core: the earliest deadline of its sleepers (counter units; may be
/// early, never late), so that [`poll_timers`] locks only when one is due.
static NEXT_DUE: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_VCPUS];
static TICKS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
static INTERRUPTS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

fn with_timer<R>(f: impl FnOnce(&mut CoreTimer) -> R) -> R {
    let core = arch::core_id().min(MAX_VCPUS - 1);
    arch::without_interrupts(|| f(&mut TIMERS[core].lock()))
}

/// Re-arms this core's timer for the earliest thing it waits for.
fn arm(t: &CoreTimer) {
    let core = arch::core_id().min(MAX_VCPUS - 1);
    let due = earliest_sleeper(t);
    NEXT_DUE[core].store(due, Ordering::Relaxed);
    if POLLED[core].load(Ordering::Relaxed) {
        arch::set_timer(None, 0);
        return;
    }
    let mut at = due;
    if t.period != 0 {
        at = at.min(t.next_periodic);
    }
    if t.sched_tick != 0 {
        at = at.min(t.sched_tick);
    }
    // The periodic tick is next: its period lets x86's hypervisor re-arm
    // the timer itself at the fire (one exit per tick, not two).
    let period = if t.period != 0 && at == t.next_periodic { t.period } else { 0 };
    arch::set_timer((at != u64::MAX).then_some(at), period);
}

fn earliest_sleeper(t: &CoreTimer) -> u64 {
    t.sleepers.iter().map(|e| e.0).min().unwrap_or(u64::MAX)
}

/// Starts (or, with `None`, stops) a periodic timer interrupt on this core
/// every `period`; [`ticks`] counts them.
pub fn set_periodic(period: Option<Duration>) {
    with_timer(|t| {
        match period {
            Some(p) => {
                t.period = to_count(p.as_nanos() as u64).max(1);
                t.next_periodic = arch::counter() + t.period;
            }
            None => t.period = 0,
        }
        arm(t);
    });
}

/// Periodic ticks taken on this core since the runtime started.
pub fn ticks() -> u64 {
    TICKS[arch::core_id().min(MAX_VCPUS - 1)].load(Ordering::Relaxed)
}

/// Timer interrupts taken on this core (ticks, wake-ups and scheduler ticks).
pub fn interrupts() -> u64 {
    INTERRUPTS[arch::core_id().min(MAX_VCPUS - 1)].load(Ordering::Relaxed)
}

/// Per core: whether a scheduler tick is asked for (`sched_tick != 0`),
/// so that clearing none takes no lock: the scheduler loop clears it
/// whenever a core goes idle.
static SCHED_TICK_SET: [core::sync::atomic::AtomicBool; MAX_VCPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_VCPUS];

/// Asks for a scheduler tick on this core at `at` (nanoseconds; `None`: none).
pub(crate) fn set_sched_tick(at: Option<u64>) {
    let core = arch::core_id().min(MAX_VCPUS - 1);
    // Only this core (IRQs masked, or its own interrupt handler) sets it.
    if at.is_none() && !SCHED_TICK_SET[core].load(Ordering::Relaxed) {
        return;
    }
    SCHED_TICK_SET[core].store(at.is_some(), Ordering::Relaxed);
    with_timer(|t| {
        t.sched_tick = at.map_or(0, |n| to_count(n).max(1));
        arm(t);
    });
}

/// Leaves this core's timer off (`true`) while the caller polls: a core
/// that never idles (a network stack in poll mode) calls [`poll_timers`]
/// in its loop instead, and takes no timer interrupt, hence no trap to
/// the hypervisor. Periodic ticks and preemption of `spawn_preemptible`
/// tasks need the interrupt and do not happen on a polled core. `false`
/// re-arms the timer.
pub fn set_polled(polled: bool) {
    POLLED[arch::core_id().min(MAX_VCPUS - 1)].store(polled, Ordering::Relaxed);
    with_timer(|t| arm(t));
}

/// Whether this core is polled ([`set_polled`]): it takes no interrupt
/// while it runs tasks, so a doorbell is noticed only by looking.
pub fn is_polled() -> bool {
    POLLED[arch::core_id().min(MAX_VCPUS - 1)].load(Ordering::Relaxed)
}

/// Wakes the sleepers whose deadline has passed, on every core (reading
/// the clock; no interrupt needed). Returns how many were woken. Cheap
/// when none is due: a counter read and one atomic load per core.
pub fn poll_timers() -> usize {
    let now = arch::counter();
    let mut n = 0;
    // Every core's sleepers: on a multi-core partition the polling task may
    // have moved, and a busy core (IRQs masked) takes no timer interrupt.
    for (core, due) in NEXT_DUE.iter().enumerate() {
        if due.load(Ordering::Relaxed) > now {
            continue;
        }
        let woken = arch::without_interrupts(|| {
            let mut t = TIMERS[core].lock();
            let woken = take_expired(&mut t, now);
            due.store(earliest_sleeper(&t), Ordering::Relaxed);
            woken
        });
        n += woken.len();
        for w in woken {
            w.wake();
        }
    }
    n
}

fn take_expired(t: &mut CoreTimer, now: u64) -> Vec<Waker> {
    let mut woken = Vec::new();
    let mut i = 0;
    while i < t.sleepers.len() {
        if t.sleepers[i].0 <= now {
            woken.push(t.sleepers.swap_remove(i).2);
        } else {
            i += 1;
        }
    }
    woken
}

/// The virtual timer interrupt on this core (IRQs masked). Returns whether
/// the running task is to be preempted.
pub(crate) fn on_timer_interrupt() -> bool {
    let core = arch::core_id().min(MAX_VCPUS - 1);
    INTERRUPTS[core].fetch_add(1, Ordering::Relaxed);
    let now = arch::counter();
    let woken: Vec<Waker>;
    let sched_due = {
        let mut t = TIMERS[core].lock();
        if t.period != 0 && now >= t.next_periodic {
            TICKS[core].fetch_add(1, Ordering::Relaxed);
            // Next period from the last expiry, not from now: the rate
            // holds even when an interrupt is taken late.
            t.next_periodic += t.period;
        }
        woken = take_expired(&mut t, now);
        let due = t.sched_tick != 0 && t.sched_tick <= now;
        if due {
            t.sched_tick = 0;
            SCHED_TICK_SET[core].store(false, Ordering::Relaxed);
        }
        // Masks the (level-triggered) timer until something is due.
        arm(&t);
        due
    };
    for w in woken {
        w.wake();
    }
    sched_due && crate::task::tick(to_nanos(now))
}

/// A future that completes at a deadline. It stays registered with one
/// core's timer while pending (polling it again replaces its waker) and
/// is removed from it when dropped, so abandoned timeouts cost nothing.
///
/// A deadline moved later ([`Sleep::reset`], a connection's idle timeout
/// after each request) keeps the registration: the entry fires at the old
/// deadline, and the poll it causes registers the new one. A poll by the
/// same task on the same core before the entry fires takes no lock.
#[derive(Debug)]
pub struct Sleep {
    deadline: u64,
    /// Key of its entry in `core`'s sleepers; 0: not registered.
    key: u64,
    /// The entry's deadline (at most `deadline`) and waker.
    registered: u64,
    waker: Option<Waker>,
    core: usize,
}

/// Completes once `duration` has passed.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep { deadline: count_after(duration), key: 0, registered: 0, waker: None, core: 0 }
}

/// Completes at `deadline` ([`now`]'s clock).
pub fn sleep_until(deadline: Duration) -> Sleep {
    Sleep { deadline: count_at(deadline), key: 0, registered: 0, waker: None, core: 0 }
}

impl Sleep {
    /// Completes once `duration` has passed from now instead.
    pub fn reset(&mut self, duration: Duration) {
        self.set(count_after(duration));
    }

    /// Completes at `deadline` instead. A later deadline than the
    /// registered one costs no timer operation.
    pub fn reset_until(&mut self, deadline: Duration) {
        self.set(count_at(deadline));
    }

    fn set(&mut self, deadline: u64) {
        self.deadline = deadline;
        if self.key != 0 && deadline < self.registered {
            self.deregister();
        }
    }
}

impl Sleep {
    /// Moves the deadline to `after` from now (`None`: never), registration included (a
    /// timer operation, not a wake-up of the owner at the old deadline).
    /// `false` if the owner must poll again for the new deadline to count
    /// (it was not registered, or is registered on another core and the
    /// deadline moved earlier): wake it.
    pub fn reschedule(&mut self, after: Option<Duration>) -> bool {
        let at = after.map_or(u64::MAX, count_after);
        self.deadline = at;
        if self.key == 0 {
            return false;
        }
        let core = arch::core_id().min(MAX_VCPUS - 1);
        if self.core != core && at < self.registered {
            self.deregister();
            return false;
        }
        let key = self.key;
        let found = arch::without_interrupts(|| {
            let mut t = TIMERS[self.core].lock();
            let Some(e) = t.sleepers.iter_mut().find(|e| e.1 == key) else { return false };
            e.0 = at;
            if self.core == core {
                arm(&t);
            } else {
                // Later, on another core: its timer fires early and re-arms.
                NEXT_DUE[self.core].store(earliest_sleeper(&t), Ordering::Relaxed);
            }
            true
        });
        if found {
            self.registered = at;
        } else {
            // It fired: the owner has been woken and registers again.
            self.key = 0;
        }
        found
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = arch::counter();
        if now >= self.deadline {
            return Poll::Ready(());
        }
        // Registered on the core that polls it (moved there if it was
        // registered on another one).
        let core = arch::core_id().min(MAX_VCPUS - 1);
        if self.key != 0 {
            let same_waker = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if self.core == core && now < self.registered && same_waker {
                // Not due yet: the entry is still there, with this waker.
                return Poll::Pending;
            }
            // Moved, due (it fired, or is about to), or another waker:
            // registered afresh.
            self.deregister();
        }
        let deadline = self.deadline;
        let waker = cx.waker().clone();
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        with_timer(|t| {
            t.sleepers.push((deadline, key, waker.clone()));
            arm(t);
        });
        self.key = key;
        self.registered = deadline;
        self.waker = Some(waker);
        self.core = core;
        Poll::Pending
    }
}

impl Sleep {
    fn deregister(&mut self) {
        let key = core::mem::replace(&mut self.key, 0);
        if key != 0 {
            arch::without_interrupts(|| {
                let mut t = TIMERS[self.core].lock();
                if let Some(i) = t.sleepers.iter().position(|e| e.1 == key) {
                    t.sleepers.swap_remove(i);
                }
            });
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// Sleeps (`wfi`) until an interrupt has been taken on this core: the
/// idle wait for code that runs outside the executor, with IRQs masked.
pub fn wait_for_interrupt() {
    arch::wait_for_interrupt();
}

/// Busy-waits for `duration` (the caller keeps its core; a preemptible
/// task may still be preempted meanwhile).
pub fn spin_for(duration: Duration) {
    let end = now_nanos() + duration.as_nanos() as u64;
    while now_nanos() < end {
        crate::relax();
    }
}

//! Tasks (aarch64): an async executor and preemptible tasks, on every core
//! of the partition, scheduled by a `hallows_sched::Scheduler` policy.
//!
//! * [`spawn`] runs a future. Futures are cooperative: each `poll` runs to
//!   its next `.await` with interrupts masked.
//! * [`spawn_preemptible`] runs a closure on its own stack with interrupts
//!   enabled. When the policy's tick time passes, the timer interrupt asks
//!   the policy ([`Scheduler::tick`]); on `Preempt` the interrupt handler
//!   switches from the task's stack back to its core's scheduler loop, and
//!   the task resumes later, on whichever core picks it, exactly where it
//!   was interrupted.
//! * [`run`] starts the partition's other vCPUs (PSCI `CPU_ON`), runs the
//!   scheduler loop on every core until the root future completes, and
//!   returns its output. An idle core sleeps (`wfi` on a one-core
//!   partition; `wfe` with interrupts open on a multi-core one, woken by
//!   `sev` when work arrives).
//!
//! The policy sees every runnable task through `task_arrived`, gives each
//! idle core its next task through `pick_next`, decides preemption in
//! `tick`, and hears `task_done` when a task stops running (a future that
//! returned `Pending` arrives again when its waker fires). Every lock here
//! is taken with interrupts masked.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::{Context as TaskContext, Poll, RawWaker, RawWakerVTable, Waker};

use hallows_sched::{Fifo, FifoConfig, Pick, Scheduler, TaskClass, TaskId};

use crate::arch::{self, Context};
use crate::{time, Boot};

pub use hallows_sched;

/// Most vCPUs a partition's runtime drives.
pub const MAX_VCPUS: usize = hallows_sched::MAX_CORES;
/// Stack of each preemptible task.
pub const TASK_STACK_SIZE: usize = 64 * 1024;
/// The lowest bytes of a preemptible task's stack hold a known pattern,
/// checked whenever the task leaves its core: a task that ran into them
/// overflowed its stack (these stacks are heap memory, without the guard
/// page a vCPU's stack has), and the partition stops with a stack-overflow
/// fault instead of running on with a corrupted heap. Detection, not
/// prevention: a frame that skips past the pattern, or writes below it
/// before the check, is not caught in time.
const CANARY_WORDS: usize = 64;
const CANARY: u128 = 0x5AFE_57AC_CA7A_5AFE_57AC_CA7A_5AFE_57AC;
/// Scheduler quantum of the default policy unless `quantum_ms=` says otherwise.
pub const DEFAULT_QUANTUM_MS: u64 = 10;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Thread {
    context: Context,
    _stack: Vec<u128>,
    body: Option<Box<dyn FnOnce() + Send>>,
    done: bool,
}

enum Work {
    Future(BoxFuture),
    Thread(Box<Thread>),
}

enum Slot {
    /// Not runnable until its waker fires.
    Waiting(Work),
    /// Handed to the policy, not yet picked.
    Queued(Work),
    /// Running on some core; `notified` if woken meanwhile.
    Running { notified: bool },
}

/// A live task: its state, and its class, which it keeps every time it is
/// runnable again (the policy orders by it).
struct Entry {
    generation: u16,
    class: TaskClass,
    slot: Slot,
    /// In `Executor::refused`: the policy had no room when it arrived.
    refused: bool,
}

/// Task ids: the index of the task's entry in the low 16 bits, the entry's
/// generation above (a stale waker of a finished task finds another
/// generation there, or nothing).
const INDEX_BITS: u32 = 16;

struct Executor {
    policy: Box<dyn Scheduler + Send>,
    /// Live tasks by index (a slab: no search, no rebalancing per wake-up).
    tasks: Vec<Option<Entry>>,
    /// Free indices of `tasks`, and the generation each was last used with.
    free: Vec<(u16, u16)>,
    /// Tasks whose arrival the policy refused (its queue was full), oldest
    /// first: offered again, in this order, before each pick.
    refused: alloc::collections::VecDeque<u32>,
}

impl Executor {
    fn entry(&mut self, id: u32) -> Option<&mut Entry> {
        let e = self.tasks.get_mut((id & ((1 << INDEX_BITS) - 1)) as usize)?.as_mut()?;
        (u32::from(e.generation) == id >> INDEX_BITS).then_some(e)
    }

    /// A new entry's id, or `None` when every index is in use.
    fn insert(&mut self, class: TaskClass, slot: Slot) -> Option<u32> {
        let (index, generation) = match self.free.pop() {
            // Generations start at 1: no task has id 0.
            Some((i, g)) => (i, g.wrapping_add(1).max(1)),
            None if self.tasks.len() < 1 << INDEX_BITS => {
                self.tasks.push(None);
                ((self.tasks.len() - 1) as u16, 1)
            }
            None => return None,
        };
        self.tasks[index as usize] = Some(Entry { generation, class, slot, refused: false });
        Some(u32::from(generation) << INDEX_BITS | u32::from(index))
    }

    /// Offers task `id`, whose slot holds its work (`Waiting`), to the
    /// policy: queued, or (refused: a full queue) kept waiting, in line in
    /// `refused`, so that it is never lost.
    fn offer(&mut self, id: u32, now: u64) {
        let Some(class) = self.entry(id).map(|e| e.class) else { return };
        let admitted = !matches!(self.policy.task_arrived(TaskId(id), class, now), hallows_sched::Admission::Rejected);
        let Some(entry) = self.entry(id) else { return };
        if admitted {
            if let Slot::Waiting(w) = core::mem::replace(&mut entry.slot, Slot::Running { notified: false }) {
                entry.slot = Slot::Queued(w);
                QUEUED.fetch_add(1, Ordering::Relaxed);
            }
        } else if !entry.refused {
            entry.refused = true;
            self.refused.push_back(id);
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Offers the refused tasks again, oldest first, while the policy
    /// takes them.
    fn readmit(&mut self, now: u64) {
        while let Some(&id) = self.refused.front() {
            let waiting = self.entry(id).is_some_and(|e| matches!(e.slot, Slot::Waiting(_)));
            if waiting {
                if let Some(e) = self.entry(id) {
                    e.refused = false;
                }
                self.offer(id, now);
                if self.entry(id).is_some_and(|e| e.refused) {
                    // Still no room: it went to the back; put it first again.
                    self.refused.pop_back();
                    REFUSED.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
            } else if let Some(e) = self.entry(id) {
                e.refused = false;
            }
            self.refused.pop_front();
            REFUSED.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn remove(&mut self, id: u32) {
        let index = (id & ((1 << INDEX_BITS) - 1)) as usize;
        if let Some(e) = self.tasks.get_mut(index).and_then(Option::take) {
            self.free.push((index as u16, e.generation));
        }
    }
}

static EXEC: crate::sync::Mutex<Option<Executor>> = crate::sync::Mutex::new(None);
static SHUTDOWN: AtomicBool = AtomicBool::new(false);
static MULTICORE: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicU32 = AtomicU32::new(0);
/// Tasks in the `Queued` state (changed under the executor's lock): with
/// none, no policy has anything to pick, and an idle core does not ask.
static QUEUED: AtomicU32 = AtomicU32::new(0);
/// Tasks waiting in `Executor::refused`.
static REFUSED: AtomicU32 = AtomicU32::new(0);

fn with_exec<R>(f: impl FnOnce(&mut Executor) -> R) -> Option<R> {
    arch::without_interrupts(|| EXEC.lock().as_mut().map(f))
}

/// Per-core state of the scheduler loop: its own saved context while a
/// preemptible task runs, and which task that is.
struct CoreLocal {
    loop_context: UnsafeCell<Context>,
    running: UnsafeCell<Option<(u32, *mut Thread)>>,
}

// SAFETY: entry `i` is only touched by vCPU `i`, with IRQs masked (the
// scheduler loop, and the timer interrupt handler of that same core).
unsafe impl Sync for CoreLocal {}

static CORES: [CoreLocal; MAX_VCPUS] = [const {
    CoreLocal { loop_context: UnsafeCell::new(unsafe_zero_context()), running: UnsafeCell::new(None) }
}; MAX_VCPUS];

const fn unsafe_zero_context() -> Context {
    // A zeroed context is never resumed: `loop_context` is written by the
    // switch before anything switches to it.
    // SAFETY: `Context` is plain integers; all-zero is a valid value.
    unsafe { core::mem::zeroed() }
}

fn core_local() -> &'static CoreLocal {
    &CORES[arch::core_id().min(MAX_VCPUS - 1)]
}

/// Queues a new task.
fn admit(work: Work, class: TaskClass) -> u32 {
    let id = with_exec(|e| {
        let id = e.insert(class, Slot::Waiting(work)).expect("at most 65,536 live tasks");
        LIVE.fetch_add(1, Ordering::AcqRel);
        // A rejected arrival (full queue) waits in line and is offered again
        // before each pick: spawned work is never dropped.
        e.offer(id, time::now_nanos());
        id
    })
    .expect("task::spawn before task::run");
    arch::send_event();
    id
}

fn wake(id: u32) {
    with_exec(|e| {
        let Some(entry) = e.entry(id) else { return };
        match &mut entry.slot {
            // Already in line for the policy: offered in its turn.
            Slot::Waiting(_) if entry.refused => {}
            Slot::Waiting(_) => e.offer(id, time::now_nanos()),
            Slot::Running { notified } => *notified = true,
            Slot::Queued(_) => {}
        }
    });
    arch::send_event();
}

fn waker(id: u32) -> Waker {
    fn clone(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE)
    }
    fn wake_raw(p: *const ()) {
        wake(p as usize as u32)
    }
    fn drop_raw(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake_raw, wake_raw, drop_raw);
    // SAFETY: the vtable functions treat the data pointer as a plain
    // integer (the task id) and never dereference it.
    unsafe { Waker::from_raw(RawWaker::new(id as usize as *const (), &VTABLE)) }
}

/// A task's output, its joiner's waker, and whether the output is there
/// (readable without the lock: the scheduler loop checks its root task
/// on every turn).
struct Join<T> {
    done: AtomicBool,
    inner: crate::sync::Mutex<(Option<T>, Option<Waker>)>,
}

type JoinState<T> = Arc<Join<T>>;

/// The result of a spawned task: a future that completes with its output.
pub struct JoinHandle<T> {
    state: JoinState<T>,
}

impl<T> core::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("JoinHandle")
    }
}

impl<T> JoinHandle<T> {
    fn new() -> (Self, JoinState<T>) {
        let state = Arc::new(Join { done: AtomicBool::new(false), inner: crate::sync::Mutex::new((None, None)) });
        (JoinHandle { state: state.clone() }, state)
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.done.load(Ordering::Acquire)
    }
}

fn complete<T>(state: &Join<T>, value: T) {
    let w = arch::without_interrupts(|| {
        let mut s = state.inner.lock();
        s.0 = Some(value);
        state.done.store(true, Ordering::Release);
        s.1.take()
    });
    if let Some(w) = w {
        w.wake();
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<T> {
        arch::without_interrupts(|| {
            let mut s = self.state.inner.lock();
            match s.0.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    s.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

/// Runs `future` as a task (class [`TaskClass::Request`]).
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_with_class(TaskClass::Request, future)
}

/// Runs `future` as a task of the given class (what the policy sees).
pub fn spawn_with_class<F>(class: TaskClass, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (handle, state) = JoinHandle::new();
    admit(Work::Future(Box::pin(async move { complete(&state, future.await) })), class);
    handle
}

/// Finished preemptible tasks' stacks, kept for the next ones (at most
/// [`STACK_POOL`]): a fresh stack is a 64 KiB allocation zeroed whole
/// (about 24,000 instructions, more than a short request's work in the
/// mixed-burst benchmark, docs/benchmarks.md (C)). A reused stack holds
/// what an earlier task of this partition left there, nothing another
/// partition can see. Taken and given back with interrupts masked: a
/// task preempted holding the lock would stop its core's scheduler loop.
static STACKS: crate::sync::Mutex<Vec<Vec<u128>>> = crate::sync::Mutex::new(Vec::new());
/// Most stacks [`STACKS`] keeps (the rest are freed).
const STACK_POOL: usize = 8;

/// A stack for a preemptible task, its canary written.
fn take_stack() -> Vec<u128> {
    let reused = arch::without_interrupts(|| STACKS.lock().pop());
    let mut stack = reused.unwrap_or_else(|| vec![0u128; TASK_STACK_SIZE / 16]);
    stack[..CANARY_WORDS].fill(CANARY);
    stack
}

/// Keeps a finished task's stack for the next one, if the pool has room.
fn give_back_stack(stack: Vec<u128>) {
    let spare = arch::without_interrupts(|| {
        let mut pool = STACKS.lock();
        if pool.len() < STACK_POOL {
            pool.push(stack);
            None
        } else {
            Some(stack)
        }
    });
    // Freed outside the lock.
    drop(spare);
}

/// Runs the closure `f` as a preemptible task on its own stack
/// ([`TASK_STACK_SIZE`]): a long computation the policy can interrupt on
/// a timer tick.
pub fn spawn_preemptible<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (handle, state) = JoinHandle::new();
    let stack = take_stack();
    let mut thread = Box::new(Thread {
        context: Context::default(),
        _stack: stack,
        body: Some(Box::new(move || complete(&state, f()))),
        done: false,
    });
    let top = thread._stack.as_ptr() as u64 + TASK_STACK_SIZE as u64;
    let arg = &mut *thread as *mut Thread as u64;
    thread.context = Context::new_thread(top, arg);
    admit(Work::Thread(thread), TaskClass::Request);
    handle
}

/// First code of a preemptible task, on its own stack, IRQs enabled.
pub(crate) extern "C" fn thread_body(arg: u64) -> ! {
    let thread = arg as *mut Thread;
    // SAFETY: `arg` is the boxed Thread the scheduler loop switched into;
    // it stays alive (owned by the loop) until the loop sees `done`.
    let body = arch::without_interrupts(|| unsafe { (*thread).body.take() });
    if let Some(body) = body {
        body();
    }
    arch::without_interrupts(|| {
        // SAFETY: as above; after `done` the loop drops the thread without
        // ever switching back to it.
        unsafe { (*thread).done = true };
        switch_to_loop(thread);
    });
    unreachable!("a finished task was resumed")
}

fn switch_to_loop(thread: *mut Thread) {
    let local = core_local();
    // SAFETY: this core's loop context was saved when the loop switched
    // into `thread`; IRQs are masked (callers), so nothing else touches
    // this core's state until the switch completes.
    unsafe { arch::switch(&mut (*thread).context, local.loop_context.get()) };
}

/// Timer interrupt on this core, the scheduler's tick time has passed:
/// asks the policy. `true`: preempt the running task.
pub(crate) fn tick(now: u64) -> bool {
    let local = core_local();
    // SAFETY: this core's state, IRQs masked (interrupt handler).
    let Some((id, _)) = (unsafe { *local.running.get() }) else { return false };
    let core = arch::core_id();
    let decision = with_exec(|e| e.policy.tick(core, TaskId(id), now));
    match decision {
        Some(hallows_sched::Decision::Preempt) => true,
        Some(hallows_sched::Decision::Continue { tick_at }) => {
            time::set_sched_tick(tick_at);
            false
        }
        None => false,
    }
}

/// Whether this core is running a preemptible task (an interrupt handler
/// then runs on that task's stack, with the task stopped anywhere).
pub(crate) fn in_preemptible() -> bool {
    let local = core_local();
    // SAFETY: this core's state, read with IRQs masked (interrupt handlers
    // and the scheduler loop, its only writers, run on this core).
    arch::without_interrupts(|| unsafe { (*local.running.get()).is_some() })
}

/// From the timer interrupt handler, after the interrupt has ended: leaves
/// the running preemptible task (its state stays on its own stack) and
/// returns to this core's scheduler loop.
pub(crate) fn preempt_current() {
    let local = core_local();
    // SAFETY: this core's state, IRQs masked (interrupt handler).
    if let Some((_, thread)) = unsafe { *local.running.get() } {
        switch_to_loop(thread);
    }
}

/// One turn of the scheduler loop on core `core`. Returns `false` when the
/// core found nothing to run.
fn turn(core: usize) -> bool {
    // Nothing runnable: a policy answers `Idle { wake_at: None }` (its
    // queues are empty), so the lock and the call are skipped. A task
    // queued meanwhile signals an event (or comes from an interrupt, which
    // ends the idle wait).
    if QUEUED.load(Ordering::Relaxed) == 0 && REFUSED.load(Ordering::Relaxed) == 0 {
        time::set_sched_tick(None);
        return false;
    }
    let now = time::now_nanos();
    let Some(pick) = with_exec(|e| {
        if !e.refused.is_empty() {
            e.readmit(now);
        }
        let pick = e.policy.pick_next(core, now);
        if let Pick::Run { task, .. } = pick {
            let work = match e.entry(task.0).map(|entry| &mut entry.slot) {
                Some(slot @ Slot::Queued(_)) => match core::mem::replace(slot, Slot::Running { notified: false }) {
                    Slot::Queued(w) => {
                        QUEUED.fetch_sub(1, Ordering::Relaxed);
                        Some(w)
                    }
                    _ => None,
                },
                _ => None,
            };
            match work {
                Some(w) => {
                    return (pick, Some(w));
                }
                // Not ours to run (stale id): tell the policy it is done.
                None => e.policy.task_done(core, task, now),
            }
        }
        (pick, None)
    }) else {
        return false;
    };
    let (Pick::Run { task, tick_at, .. }, Some(work)) = pick else {
        if let (Pick::Idle { wake_at }, _) = pick {
            time::set_sched_tick(wake_at);
        }
        return matches!(pick, (Pick::Run { .. }, _));
    };
    let id = task.0;
    match work {
        Work::Future(mut fut) => {
            let w = waker(id);
            let mut cx = TaskContext::from_waker(&w);
            let ready = fut.as_mut().poll(&mut cx).is_ready();
            finish_turn(core, id, if ready { None } else { Some(Work::Future(fut)) }, false);
        }
        Work::Thread(mut thread) => {
            time::set_sched_tick(tick_at);
            let local = &CORES[core];
            let ptr: *mut Thread = &mut *thread;
            // SAFETY: this core's state, IRQs masked. The thread's context
            // is either fresh or was saved when it was preempted, and it is
            // running nowhere else (it was `Queued` until we took it).
            unsafe {
                *local.running.get() = Some((id, ptr));
                arch::switch(local.loop_context.get(), &(*ptr).context);
                *local.running.get() = None;
            }
            time::set_sched_tick(None);
            if thread._stack[..CANARY_WORDS].iter().any(|w| *w != CANARY) {
                let base = thread._stack.as_ptr() as u64;
                crate::fault(hallows_abi::fault_kind::STACK_OVERFLOW, base, 0);
            }
            let done = thread.done;
            if done {
                // Its last switch away is behind it: nothing runs on the
                // stack any more.
                give_back_stack(core::mem::take(&mut thread._stack));
            }
            finish_turn(core, id, if done { None } else { Some(Work::Thread(thread)) }, !done);
        }
    }
    true
}

/// After a task ran: gone (`None`), waiting for its waker, or — preempted —
/// queued again (the policy re-queued it itself when it said `Preempt`).
fn finish_turn(core: usize, id: u32, work: Option<Work>, preempted: bool) {
    with_exec(|e| {
        let now = time::now_nanos();
        let Some(w) = work else {
            e.remove(id);
            e.policy.task_done(core, TaskId(id), now);
            LIVE.fetch_sub(1, Ordering::AcqRel);
            return;
        };
        // The slot is `Running` (its entry lives until the task is done).
        let Some(entry) = e.entry(id) else { return };
        let notified = matches!(entry.slot, Slot::Running { notified: true });
        if preempted {
            entry.slot = Slot::Queued(w);
            QUEUED.fetch_add(1, Ordering::Relaxed);
        } else if notified {
            entry.slot = Slot::Waiting(w);
            e.policy.task_done(core, TaskId(id), now);
            e.offer(id, now);
        } else {
            entry.slot = Slot::Waiting(w);
            e.policy.task_done(core, TaskId(id), now);
        }
    });
}

/// Work a driver does when its core has nothing to run, before the core
/// sleeps ([`set_before_idle`]).
pub type IdleWork = fn() -> bool;

static BEFORE_IDLE: crate::sync::Mutex<Option<IdleWork>> = crate::sync::Mutex::new(None);

/// Has `work` run whenever a core finds nothing to run, before it sleeps:
/// bookkeeping that only matters once the core idles (the network stack's
/// next deadline after a burst of packets), done once per burst instead
/// of per event. `work` returns `true` if it queued a task (the core then
/// looks again instead of sleeping). One hook per partition.
pub fn set_before_idle(work: IdleWork) {
    arch::without_interrupts(|| *BEFORE_IDLE.lock() = Some(work));
}

fn before_idle() -> bool {
    let work = arch::without_interrupts(|| *BEFORE_IDLE.lock());
    work.is_some_and(|f| f())
}

fn idle() {
    if MULTICORE.load(Ordering::Relaxed) {
        arch::wait_for_event_or_interrupt();
    } else {
        arch::wait_for_interrupt();
    }
}

/// Runs `root` to completion with the default policy: [`Fifo`] over all
/// of the partition's cores, round-robin with a quantum of `quantum_ms=`
/// (boot argument; default [`DEFAULT_QUANTUM_MS`], `0` for run to
/// completion).
pub fn run<F>(boot: &Boot, root: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let ms = boot.arg("quantum_ms").and_then(|s| s.parse::<u64>().ok()).unwrap_or(DEFAULT_QUANTUM_MS);
    let cores = (boot.vcpu_count() as usize).clamp(1, MAX_VCPUS);
    let policy = Fifo::<256>::new(FifoConfig { cores, quantum: (ms > 0).then_some(ms * 1_000_000) })
        .expect("a valid FIFO configuration");
    run_with(boot, Box::new(policy), root)
}

/// Runs `root` to completion under `policy` (which must manage
/// `boot.vcpu_count()` cores).
pub fn run_with<F>(boot: &Boot, policy: Box<dyn Scheduler + Send>, root: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    arch::without_interrupts(|| {
        *EXEC.lock() = Some(Executor { policy, tasks: Vec::new(), free: Vec::new(), refused: Default::default() });
    });
    SHUTDOWN.store(false, Ordering::Release);
    let cores = (boot.vcpu_count() as usize).clamp(1, MAX_VCPUS);
    MULTICORE.store(cores > 1, Ordering::Relaxed);
    let handle = spawn(root);
    for vcpu in 1..cores {
        let info = boot.info() as *const hallows_abi::BootInfo as u64;
        let (r, _) =
            arch::hypercall(hallows_abi::psci::CPU_ON_64, [vcpu as u64, arch::start_address(), info, 0, 0]);
        if r as i64 != 0 && r as i64 != hallows_abi::psci::ALREADY_ON {
            log::warn!("vCPU {vcpu} did not start (PSCI {})", r as i64);
        }
    }
    // The root may complete on another core while this one idles: its
    // completion signals an event (the waker below), or this core could
    // sleep on (x86 halts in `hlt`; an emulated `wfe` merely yields).
    // Polled once to leave that waker; afterwards the loop reads the
    // handle's flag, and polls again only once the output is there.
    let w = event_waker();
    let mut cx = TaskContext::from_waker(&w);
    let mut handle = handle;
    let mut poll_root = true;
    let out = loop {
        if poll_root || handle.is_finished() {
            if let Poll::Ready(v) = Pin::new(&mut handle).poll(&mut cx) {
                break v;
            }
            poll_root = false;
        }
        if !turn(0) && !handle.is_finished() && !before_idle() {
            idle();
        }
    };
    SHUTDOWN.store(true, Ordering::Release);
    arch::send_event();
    out
}

/// A waker that signals an event to the partition's other cores.
fn event_waker() -> Waker {
    fn clone(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE)
    }
    fn wake(_: *const ()) {
        arch::send_event();
    }
    fn drop_raw(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop_raw);
    // SAFETY: the vtable never dereferences the (null) data pointer.
    unsafe { Waker::from_raw(RawWaker::new(core::ptr::null(), &VTABLE)) }
}

/// The scheduler loop of a secondary vCPU: runs tasks until the root task
/// of [`run`] completes, then turns the vCPU off.
pub(crate) fn secondary_loop(_info: u64, core: usize) -> ! {
    while !SHUTDOWN.load(Ordering::Acquire) {
        if !turn(core) && !before_idle() {
            idle();
        }
    }
    time::set_periodic(None);
    arch::hypercall(hallows_abi::psci::CPU_OFF, [0; 5]);
    loop {
        arch::wait_for_interrupt();
    }
}

/// The index of the core (vCPU) running the caller, `0..vcpu_count`.
pub fn current_core() -> usize {
    arch::core_id()
}

/// Tasks spawned and not yet finished.
pub fn live_tasks() -> u32 {
    LIVE.load(Ordering::Acquire)
}

/// Gives other tasks a turn: completes on its second poll.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            // A task that yields is often waiting for another core (a
            // full or empty polled channel): let an emulator that runs
            // cores in turn run it (see `crate::relax`).
            crate::relax();
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A parallel for over borrowed data: [`parallel_for`]'s shared state.
/// `f` is the caller's closure with its lifetime erased; it is called only
/// by a helper counted in `active` while `closed` was false (see the
/// SAFETY argument in [`parallel_for`]).
struct ForScope {
    f: *const (dyn Fn(usize) + Sync + 'static),
    tasks: usize,
    next: core::sync::atomic::AtomicUsize,
    /// Tasks run by helpers (not by the caller).
    by_helpers: core::sync::atomic::AtomicUsize,
    /// (closed: no helper may start using `f`; helpers using `f` now).
    state: crate::sync::Mutex<(bool, usize)>,
}

// SAFETY: the only non-Send/Sync field is `f`, a pointer to a closure that
// is `Sync` (so calling it from several cores at once is allowed) and that
// is called only while the caller of `parallel_for` keeps it alive (see
// there); the other fields are atomics and a lock.
unsafe impl Send for ForScope {}
// SAFETY: as for `Send`.
unsafe impl Sync for ForScope {}

impl ForScope {
    /// Takes the next task index and runs it until none is left; how many
    /// this call ran.
    fn drain(&self, f: &(dyn Fn(usize) + Sync)) -> usize {
        let mut ran = 0;
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= self.tasks {
                return ran;
            }
            f(i);
            ran += 1;
        }
    }

    /// A helper's whole work: enter unless the caller has closed the
    /// scope, run tasks, leave.
    fn help(&self) {
        let entered = arch::without_interrupts(|| {
            let mut s = self.state.lock();
            if !s.0 {
                s.1 += 1;
            }
            !s.0
        });
        if !entered {
            return;
        }
        // SAFETY: this helper is counted in `active` (entered above while
        // the scope was open), and `parallel_for` does not return before
        // `active` is back to 0 after closing, so the closure `f` points
        // to is alive for this whole call.
        let f = unsafe { &*self.f };
        let ran = self.drain(f);
        self.by_helpers.fetch_add(ran, Ordering::AcqRel);
        arch::without_interrupts(|| self.state.lock().1 -= 1);
    }
}

/// Runs `f(0)`, ..., `f(tasks - 1)` on the calling core and on up to
/// `helpers` other tasks of this partition (any free core picks them),
/// and returns when all have run, with how many ran on helpers. A scoped
/// parallel for: `f` may borrow from the caller's stack. Tasks are taken
/// from a shared counter, so the caller runs whatever the helpers have
/// not begun; a helper that starts after the caller has taken the last
/// task leaves at once. The caller waits (spinning) only for helpers that
/// are running tasks at that moment; async tasks are never preempted
/// (they run with interrupts masked), so those are running on other
/// cores and finish. With no other core free, everything runs on the
/// caller. Call it inside [`run`] (it spawns tasks). `f` must not wait
/// for other tasks of the partition (it runs with interrupts masked when
/// called from a future). A panic in `f`
/// stops the partition (no unwinding), so no helper outlives a caller
/// that unwinds.
pub fn parallel_for(tasks: usize, helpers: usize, f: &(dyn Fn(usize) + Sync)) -> usize {
    if tasks == 0 {
        return 0;
    }
    let helpers = helpers.min(tasks - 1);
    if helpers == 0 {
        for i in 0..tasks {
            f(i);
        }
        return 0;
    }
    // SAFETY: only the lifetime is changed (same fat pointer). The erased
    // pointer is dereferenced only in `ForScope::help`, by a helper that
    // entered while the scope was open; below, the scope is closed and
    // this function spins until no helper is inside, before returning,
    // so every call of `f` through it ends before the borrow of `f` does.
    // Helpers that run later find the scope closed and never dereference it.
    let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
        core::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(f as *const _)
    };
    let scope = Arc::new(ForScope {
        f: erased,
        tasks,
        next: core::sync::atomic::AtomicUsize::new(0),
        by_helpers: core::sync::atomic::AtomicUsize::new(0),
        state: crate::sync::Mutex::new((false, 0)),
    });
    for _ in 0..helpers {
        let s = scope.clone();
        spawn(async move { s.help() });
    }
    scope.drain(f);
    arch::without_interrupts(|| scope.state.lock().0 = true);
    while arch::without_interrupts(|| scope.state.lock().1) != 0 {
        crate::relax();
    }
    scope.by_helpers.load(Ordering::Acquire)
}

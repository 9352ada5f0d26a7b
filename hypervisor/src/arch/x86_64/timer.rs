//! Guest timers and wake-ups on x86.
//!
//! A partition's cores are its own, so each core's local APIC timer serves
//! exactly one vCPU. The guest asks for a deadline in TSC ticks with the
//! `SET_TIMER` hypercall (it has no APIC of its own: the APIC could send
//! IPIs to other partitions' cores); the hypervisor programs the physical
//! timer (TSC-deadline mode where the CPU has it, else one-shot mode with
//! the APIC timer's rate measured at boot), takes its interrupt as an
//! external-interrupt exit and injects [`hallows_abi::TIMER_VECTOR`].
//! With a period the hypervisor re-arms the timer itself at the fire, so
//! a periodic tick costs one exit: without APIC virtualization (absent
//! under QEMU TCG and Bochs) an interrupt cannot reach a guest without one.
//! The deadline armed is published in the guest's boot information
//! (`BootInfo::timer_armed`) so the guest skips the call when its next
//! deadline is already armed.
//!
//! The TSC's frequency, which the guest needs to turn ticks into time, is
//! measured once at boot: CPUID leaf 0x15 where it names the crystal, else
//! against the 8254 PIT (channel 2, gate through port 0x61, 50 ms; channel
//! 0 and its read-back status on machines without port 0x61, QEMU's
//! `microvm`).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hallows_table::MAX_CORES;

use super::apic;
use super::cpu::{cpuid, inb, outb, rdtsc, wrmsr};

/// The physical vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0xEF;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// APIC timer ticks (divide by 1) per 2^32 TSC ticks; one-shot mode only.
static APIC_PER_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);

/// Per core: the deadline armed (0: none), the period, whether the timer
/// interrupt came, and whether a `WAKE` is pending.
static DEADLINE: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
static PERIOD: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
/// (`FIRED[core]` is set by the timer interrupt's handler, `idt.rs`'s
/// `hv_timer_interrupt`, on that core, and taken by [`collect`].)
pub(super) static FIRED: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
static WAKE: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
/// Per core: when the hypervisor must next look at the partition's
/// watchdog (a TSC value; 0: no watchdog). The APIC timer is armed for
/// the earlier of this and the guest's deadline.
static WATCH: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];

const MSR_TSC_DEADLINE: u32 = 0x6E0;
const LVT_TIMER: u32 = 0x320;
const INITIAL_COUNT: u32 = 0x380;
const CURRENT_COUNT: u32 = 0x390;
const DIVIDE: u32 = 0x3E0;
const LVT_MASKED: u32 = 1 << 16;
const MODE_TSC_DEADLINE: u32 = 0b10 << 17;
/// Divide configuration "by 1".
const DIVIDE_BY_1: u32 = 0b1011;

/// The 8254's input clock.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 50 ms of PIT ticks (fits its 16-bit counter).
const PIT_TICKS: u64 = PIT_HZ / 20;

/// Where the TSC frequency came from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    Cpuid15,
    Pit,
}

/// Core 0, at boot: measures the TSC's frequency (and, without
/// TSC-deadline mode, the APIC timer's) and picks the timer mode.
pub fn calibrate() -> (u64, Source) {
    TSC_DEADLINE.store(cpuid(1, 0).ecx & (1 << 24) != 0, Ordering::Relaxed);
    let max_leaf = cpuid(0, 0).eax;
    let leaf15 = if max_leaf >= 0x15 { cpuid(0x15, 0) } else { Default::default() };
    // The APIC timer runs through the PIT window in any case: one-shot
    // mode needs its rate.
    apic::write(DIVIDE, DIVIDE_BY_1);
    apic::write(LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    // Port 0x61 (channel 2's gate and output) is a PC chipset register;
    // QEMU's `microvm` has none (the port reads 0xff). There the window is
    // timed on channel 0 instead, whose gate is always on, reading its
    // output with the read-back command (IRQ 0 stays masked: the 8259s
    // are, and the I/O APIC pins are masked before anything is taken).
    let port61 = inb(0x61) != 0xff;
    let (channel, control) = if port61 { (0x42, 0xB0) } else { (0x40, 0x30) };
    if port61 {
        // Channel 2 gate on, speaker off.
        outb(0x61, (inb(0x61) & !0x02) | 0x01);
    }
    // Mode 0, binary, low then high byte.
    outb(0x43, control);
    outb(channel, (PIT_TICKS & 0xff) as u8);
    outb(channel, (PIT_TICKS >> 8) as u8);
    // The counter's output rises when the count reaches zero: OUT2 is port
    // 0x61 bit 5; channel 0's is bit 7 of its status (read-back command
    // 0xE2: latch the status of counter 0).
    let out = || {
        if port61 {
            inb(0x61) & 0x20 != 0
        } else {
            outb(0x43, 0xE2);
            inb(0x40) & 0x80 != 0
        }
    };
    apic::write(INITIAL_COUNT, u32::MAX);
    let t0 = rdtsc();
    // A PIT that never counts (none on this machine) must not hang the
    // boot: give up after ~2^28 polls and keep the CPUID or a nominal
    // figure.
    let mut polls = 0u64;
    while !out() && polls < 1 << 28 {
        polls += 1;
    }
    let t1 = rdtsc();
    let apic_ticks = u32::MAX - apic::read(CURRENT_COUNT);
    apic::write(INITIAL_COUNT, 0);
    let tsc_window = t1.wrapping_sub(t0).max(1);
    let pit_hz = tsc_window.saturating_mul(PIT_HZ) / PIT_TICKS;
    APIC_PER_TSC.store(((apic_ticks as u64) << 32) / tsc_window, Ordering::Relaxed);
    let (hz, source) = if leaf15.eax != 0 && leaf15.ebx != 0 && leaf15.ecx != 0 {
        (leaf15.ecx as u64 * leaf15.ebx as u64 / leaf15.eax as u64, Source::Cpuid15)
    } else {
        (pit_hz.max(1), Source::Pit)
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    (hz, source)
}

/// Whether the timer runs in TSC-deadline mode.
pub fn tsc_deadline_mode() -> bool {
    TSC_DEADLINE.load(Ordering::Relaxed)
}

/// The TSC's frequency in Hz (0 before [`calibrate`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Programs this core's APIC timer for the guest's `deadline` (0: none)
/// or the watchdog's next look, whichever comes first.
fn program(deadline: u64) {
    let watch = WATCH.get(super::this_core()).map_or(0, |w| w.load(Ordering::Relaxed));
    program_at(match (deadline, watch) {
        (0, w) => w,
        (d, 0) => d,
        (d, w) => d.min(w),
    })
}

/// Arms (or with 0 disarms) the watchdog's look on this core: `at` is a
/// TSC value ([`crate::partition::watchdog_next`]).
pub fn set_watch(core: usize, at: u64) {
    let Some(w) = WATCH.get(core) else { return };
    w.store(at, Ordering::Relaxed);
    program(DEADLINE[core].load(Ordering::Relaxed));
}

/// The TSC value of this core's next watchdog look (0: none).
pub fn watch(core: usize) -> u64 {
    WATCH.get(core).map_or(0, |w| w.load(Ordering::Relaxed))
}

/// At an exit that took interrupts (or a wake-up in `idle`, or a
/// VMX-preemption-timer exit): if the watchdog's look is due, takes it
/// (`partition::watchdog_expired`, which applies the fault policy on a
/// miss and then does not return) and re-arms for the next. A load and a
/// compare on other exits; nothing at all on the channels' data path.
#[inline(always)]
pub fn watchdog(core: usize) {
    let at = watch(core);
    if at == 0 || rdtsc() < at {
        return;
    }
    let next = crate::partition::watchdog_expired(core);
    set_watch(core, next);
}

/// Programs this core's APIC timer to fire at TSC value `deadline` (0:
/// stop it).
fn program_at(deadline: u64) {
    if tsc_deadline_mode() {
        apic::write(LVT_TIMER, MODE_TSC_DEADLINE | TIMER_VECTOR as u32);
        // A deadline already passed fires at once; 0 disarms.
        wrmsr(MSR_TSC_DEADLINE, deadline);
        return;
    }
    apic::write(LVT_TIMER, TIMER_VECTOR as u32);
    apic::write(DIVIDE, DIVIDE_BY_1);
    if deadline == 0 {
        apic::write(INITIAL_COUNT, 0);
        return;
    }
    let delta = deadline.saturating_sub(rdtsc());
    // Rounded up, at least one tick; a delay beyond the 32-bit counter
    // fires early and is re-armed for the rest (`collect`).
    let ticks = ((delta as u128 * APIC_PER_TSC.load(Ordering::Relaxed) as u128) >> 32) as u64 + 1;
    apic::write(INITIAL_COUNT, ticks.min(u32::MAX as u64) as u32);
}

/// `SET_TIMER` from the vCPU on this core: arms (or with 0 stops) its
/// timer, and publishes the deadline now armed to the guest. Always
/// supported on x86.
pub fn set_timer(deadline: u64, period: u64) -> bool {
    let core = super::this_core();
    // A period below 10 µs is raised to it: a guest asking for a tick per
    // TSC cycle would only flood its own core with exits.
    let period = match period {
        0 => 0,
        p => p.max(hallows_abi::min_timer_period(tsc_hz())),
    };
    DEADLINE[core].store(deadline, Ordering::Relaxed);
    PERIOD[core].store(if deadline == 0 { 0 } else { period }, Ordering::Relaxed);
    if deadline != 0 && rdtsc() >= deadline {
        // Already due (a guest catching up on late ticks): fired now,
        // without a round trip through the APIC (under QEMU a timer
        // interrupt, however soon, waits for the emulator's main loop).
        // `collect` counts a passed deadline as fired, re-arms and publishes.
        collect(core);
        return true;
    }
    program(deadline);
    crate::hypercall::publish_timer(core, deadline);
    true
}


/// After interrupts were taken on `core` (an exit, or a wake-up in `idle`):
/// if its vCPU's deadline has passed, queues the timer's virtual interrupt
/// and re-arms for the next period (or stops); an early fire (one-shot
/// rounding, a delay beyond the counter) re-arms for the same deadline.
///
/// A deadline that has passed counts as fired even if its interrupt has not
/// been taken: QEMU TCG can strand an interrupt in the APIC while the core
/// is in `vmrun` (see `svm::idle`); the next interrupt exit, or the `hlt` that would
/// otherwise sleep on it, delivers the tick. (An interrupt that does arrive
/// later finds the next deadline in the future and only re-arms.)
pub fn collect(core: usize) {
    let Some(fired) = FIRED.get(core) else { return };
    let fired = fired.swap(false, Ordering::Relaxed);
    let deadline = DEADLINE[core].load(Ordering::Relaxed);
    if deadline == 0 {
        return;
    }
    let now = rdtsc();
    if !fired && now < deadline {
        return;
    }
    if now < deadline {
        program(deadline);
        return;
    }
    super::guest::queue_vector(core, hallows_abi::TIMER_VECTOR);
    let period = PERIOD[core].load(Ordering::Relaxed);
    let next = if period == 0 { 0 } else { hallows_abi::next_periodic_deadline(deadline, period, now) };
    DEADLINE[core].store(next, Ordering::Relaxed);
    program(next);
    crate::hypercall::publish_timer(core, next);
}

/// Whether the vCPU on `core` has a timer armed (its own, or the
/// watchdog's: a partition with a watchdog halted with nothing else to
/// wake it sleeps until the watchdog expires).
pub fn armed(core: usize) -> bool {
    DEADLINE.get(core).is_some_and(|d| d.load(Ordering::Relaxed) != 0) || watch(core) != 0
}

/// `WAKE`: the vCPU on `core` (local APIC id `hwid`) leaves its `hlt`, or
/// its next `hlt` returns at once.
pub fn wake(core: usize, hwid: u64) -> bool {
    let Some(w) = WAKE.get(core) else { return false };
    w.store(true, Ordering::Release);
    if core != super::this_core() {
        apic::send_doorbell(hwid);
    }
    true
}

/// Takes a pending `WAKE` of `core`'s vCPU.
pub fn take_wake(core: usize) -> bool {
    WAKE.get(core).is_some_and(|w| w.swap(false, Ordering::Acquire))
}

/// This core's vCPU left its partition or is entered afresh: stops its
/// timer and forgets what it armed, fired or was woken for.
pub fn reset(core: usize) {
    if let Some(d) = DEADLINE.get(core) {
        d.store(0, Ordering::Relaxed);
        PERIOD[core].store(0, Ordering::Relaxed);
        FIRED[core].store(false, Ordering::Relaxed);
        WAKE[core].store(false, Ordering::Relaxed);
        WATCH[core].store(0, Ordering::Relaxed);
    }
    // The guest's copy too: a vCPU turned off and on again (PSCI) keeps its
    // boot information, and a stale "armed" there would make it skip the
    // call for a deadline nothing arms.
    crate::hypercall::publish_timer(core, 0);
    if tsc_deadline_mode() {
        wrmsr(MSR_TSC_DEADLINE, 0);
    } else {
        apic::write(INITIAL_COUNT, 0);
    }
    apic::write(LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
}

//! The few things std does not offer: pinning a thread to a CPU, futex
//! wait and wake, the `yield` spin hint, the timer slack, and the bench
//! window marker.
#![allow(unsafe_code)]

use std::sync::atomic::AtomicU32;

/// Pins the calling thread to `cpu`; the error names the CPU and errno.
pub fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of `set`, a valid cpu_set_t; `cpu` is
    // bounded by the set's size below (libc's CPU_SET does not check).
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(format!("CPU {cpu} is out of range"));
    }
    // SAFETY: as above, `cpu` is inside the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 = this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(format!("sched_setaffinity to CPU {cpu}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`): how long
/// the kernel may defer its timed wake-ups to merge them with others
/// (default 50 us). Comparison (C)'s client sets 1 ns to send on time.
pub fn set_timer_slack_ns(ns: u64) -> Result<(), String> {
    // SAFETY: PR_SET_TIMERSLACK takes a number and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(format!("prctl(PR_SET_TIMERSLACK, {ns}): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The CPU the calling thread runs on now.
pub fn current_cpu() -> i64 {
    // SAFETY: sched_getcpu takes nothing and returns a number or -1.
    i64::from(unsafe { libc::sched_getcpu() })
}

/// Sleeps while `*word == expected` (FUTEX_WAIT, private): returns at once
/// if the value differs, on a wake, or spuriously; the caller re-checks.
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live, aligned u32 for the whole call; a null
    // timeout waits without limit; FUTEX_WAIT only reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one thread sleeping on `word` (FUTEX_WAKE, private).
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access it.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
    }
}

/// The spin-wait hint: `yield` on aarch64, as Linux's `cpu_relax()` and the
/// RustHallows runtime's `relax()` use (and the instruction QEMU's
/// `-icount` round robin leaves a core on; `std::hint::spin_loop` is `isb`,
/// which it does not).
#[inline(always)]
pub fn relax() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `yield` is a hint with no effect on memory or registers.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    std::hint::spin_loop();
}

/// The bench window marker `hint #0x7f`: an unallocated hint, a NOP to the
/// architecture, that an instruction-counting TCG plugin can look for at
/// the start and the end of the measured window.
#[inline(always)]
pub fn mark() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: an unallocated hint executes as a NOP.
    unsafe {
        core::arch::asm!("hint #0x7f", options(nomem, nostack, preserves_flags))
    };
}

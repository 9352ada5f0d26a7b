//! `action=leak` and `action=sink`: the "stopped means stopped" test.
//!
//! `leak` (two vCPUs): vCPU 0 opens the sending end of channel `leak`,
//! starts vCPU 1 (PSCI CPU_ON at [`leak_entry`], on a stack of its own),
//! which sends numbered messages in a loop that never traps, waits until
//! it has sent some, and executes an undefined instruction. The partition
//! is stopped; if its vCPU 1 ran on, the messages would keep coming.
//!
//! `sink` receives on channel `leak` and reports once the stream has been
//! quiet for a while (exit 0), or gives up after `limit` messages that
//! never went quiet (exit 1).
//!
//! `vcpu1_fault`: vCPU 1 is started and faults (see `fault_main`): the
//! fault is on the partition's second core (the restart policy must
//! restart the whole partition from there).
//!
//! `pair_spin`: both vCPUs spin until the watchdog restarts the partition
//! (see [`pair_spin`]).
//!
//! `cpu_off_on`: vCPU 1 is started, turns itself off (PSCI CPU_OFF), and
//! is started again; it must run again (exit 0), not stay "pending".

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use hallows_rt::channel::{self, Endpoint, RingError, Sender};
use hallows_rt::{println, Boot};

/// What vCPU 1 needs, at a fixed place vCPU 0 fills in before starting it.
#[repr(C)]
struct Shared {
    /// Top of vCPU 1's stack and what it runs (read by `probe_vcpu_entry`).
    stack_top: UnsafeCell<u64>,
    main: UnsafeCell<extern "C" fn(&'static Shared) -> !>,
    tx: UnsafeCell<Option<Endpoint<Sender<u64>>>>,
    sent: AtomicU64,
    runs: AtomicU64,
}

// SAFETY: vCPU 0 writes `stack_top` and `tx` before it starts vCPU 1 and
// never touches them again; from then on only vCPU 1 uses them. `sent` is
// atomic.
unsafe impl Sync for Shared {}

static SHARED: Shared = Shared {
    stack_top: UnsafeCell::new(0),
    main: UnsafeCell::new(leak_main),
    tx: UnsafeCell::new(None),
    sent: AtomicU64::new(0),
    runs: AtomicU64::new(0),
};

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; 16384]>);

// SAFETY: only vCPU 1 uses it, as its stack.
unsafe impl Sync for Stack {}

static STACK: Stack = Stack(UnsafeCell::new([0; 16384]));

// vCPU 1 enters here (PSCI CPU_ON) with x0/rdi = &SHARED, the MMU off on
// aarch64 (the runtime's map is the identity, so addresses are the same),
// the hypervisor's page tables on x86_64.
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".section .text",
    ".balign 16",
    ".global probe_vcpu_entry",
    "probe_vcpu_entry:",
    "    ldr x9, [x0]",
    "    mov sp, x9",
    "    ldr x9, [x0, #8]",
    "    blr x9",
    "1:  b 1b",
);

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".section .text",
    ".balign 16",
    ".global probe_vcpu_entry",
    "probe_vcpu_entry:",
    "    mov rsp, [rdi]",
    "    call [rdi + 8]",
    "2:  jmp 2b",
);

extern "C" {
    fn probe_vcpu_entry();
}

/// Starts vCPU 1 running `main` on its own stack; the PSCI result.
fn start_vcpu1(main: extern "C" fn(&'static Shared) -> !) -> i64 {
    // SAFETY: vCPU 1 is not running (it has not started, or it is off):
    // nothing reads these until the CPU_ON below.
    unsafe {
        *SHARED.main.get() = main;
        *SHARED.stack_top.get() = STACK.0.get() as u64 + 16384;
    }
    let entry = probe_vcpu_entry as *const () as u64;
    crate::smc(hallows_rt::abi::psci::CPU_ON_64, 1, entry, &SHARED as *const Shared as u64) as i64
}

extern "C" fn leak_main(shared: &'static Shared) -> ! {
    // SAFETY: vCPU 0 filled `tx` before starting us and no longer uses it.
    let tx = unsafe { &mut *shared.tx.get() };
    let Some(tx) = tx.as_mut() else {
        loop {
            hallows_rt::relax()
        }
    };
    let mut n = 0u64;
    loop {
        match tx.try_send(&n) {
            Ok(()) => {
                n += 1;
                shared.sent.store(n, Ordering::Release);
            }
            Err(RingError::Full) | Err(_) => hallows_rt::relax(),
        }
    }
}

pub fn leak(boot: &Boot) -> u64 {
    let tx = match channel::sender::<u64>(boot, "leak") {
        Ok(tx) => tx,
        Err(e) => {
            println!("cannot open leak: {e:?}");
            return 3;
        }
    };
    // SAFETY: vCPU 1 is not running yet; nothing else references `tx`.
    unsafe { *SHARED.tx.get() = Some(tx) };
    let r = start_vcpu1(leak_main);
    if r != 0 {
        println!("vCPU 1 did not start: {r}");
        return 4;
    }
    while SHARED.sent.load(Ordering::Acquire) < 10_000 {
        hallows_rt::relax();
    }
    println!("probe: vCPU 1 is sending; vCPU 0 faults now");
    crate::undefined_instruction();
    println!("UNCONTAINED leak");
    2
}

pub fn sink(boot: &Boot) -> u64 {
    let limit: u64 = boot.arg("limit").and_then(|s| s.parse().ok()).unwrap_or(20_000_000);
    let quiet: u64 = boot.arg("quiet").and_then(|s| s.parse().ok()).unwrap_or(5_000_000);
    // A refused open leaves the end free: first with a message type that
    // does not fit the 8-byte slots, then with the right one.
    match channel::receiver::<[u64; 2]>(boot, "leak") {
        Ok(_) => {
            println!("sink: a 16-byte type was accepted for 8-byte slots");
            return 4;
        }
        Err(e) => println!("sink: wrong type refused: {e:?}"),
    }
    let mut rx = match channel::receiver::<u64>(boot, "leak") {
        Ok(rx) => rx,
        Err(e) => {
            println!("cannot open leak: {e:?}");
            return 3;
        }
    };
    let (mut got, mut idle) = (0u64, 0u64);
    loop {
        match rx.recv_batch(64) {
            Ok(b) => {
                for m in b.iter() {
                    if m != got {
                        println!("sink: message {got} arrived as {m}");
                        return 2;
                    }
                    got += 1;
                }
                b.release();
                idle = 0;
            }
            Err(_) => idle += 1,
        }
        if got > 0 && idle >= quiet {
            println!("sink: quiet after {got} messages");
            return 0;
        }
        if got >= limit {
            println!("sink: still receiving after {got} messages");
            return 1;
        }
    }
}

extern "C" fn off_main(shared: &'static Shared) -> ! {
    shared.runs.fetch_add(1, Ordering::AcqRel);
    crate::smc(hallows_rt::abi::psci::CPU_OFF, 0, 0, 0);
    loop {
        hallows_rt::relax()
    }
}

/// PSCI AFFINITY_INFO of vCPU 1: 0 on, 1 off, 2 on pending.
fn vcpu1_state() -> i64 {
    crate::smc(hallows_rt::abi::psci::AFFINITY_INFO_64, 1, 0, 0) as i64
}

pub fn cpu_off_on(_boot: &Boot) -> u64 {
    for run in 1..=2u64 {
        let r = start_vcpu1(off_main);
        if r != 0 {
            println!("CPU_ON #{run} returned {r}");
            return 4;
        }
        // Generous bounds: vCPU 1 runs on another emulated core, which the
        // host may not schedule for a while.
        let mut spins = 0u64;
        while SHARED.runs.load(Ordering::Acquire) < run && spins < 200_000_000 {
            spins += 1;
            hallows_rt::relax();
        }
        let mut polls = 0u64;
        while vcpu1_state() != 1 && polls < 1_000_000 {
            polls += 1;
        }
        if SHARED.runs.load(Ordering::Acquire) < run || vcpu1_state() != 1 {
            println!(
                "vCPU 1 did not run and turn off after CPU_ON #{run}: runs {}, AFFINITY_INFO {}",
                SHARED.runs.load(Ordering::Acquire),
                vcpu1_state()
            );
            return 1;
        }
        println!("probe: vCPU 1 ran and turned off (CPU_ON #{run})");
    }
    0
}

extern "C" fn fault_main(_shared: &'static Shared) -> ! {
    // aarch64: an undefined instruction, taken at EL1 through vectors this
    // vCPU never set up (VBAR_EL1 is 0): a stage-2 fault at 0x200. x86_64:
    // a denied I/O port (without an IDT an exception would triple-fault,
    // which Bochs' SVM turns into an emulator panic instead of an exit).
    #[cfg(target_arch = "x86_64")]
    // SAFETY: deliberately hostile: no port is assigned to us.
    unsafe {
        core::arch::asm!("out 0x80, al", in("al") 0u8, options(nomem, nostack))
    };
    crate::undefined_instruction();
    loop {
        hallows_rt::relax()
    }
}

pub fn vcpu1_fault(_boot: &Boot) -> u64 {
    let r = start_vcpu1(fault_main);
    if r != 0 {
        println!("CPU_ON returned {r}");
        return 4;
    }
    // vCPU 0 waits; the partition ends (or restarts) from vCPU 1's fault.
    loop {
        hallows_rt::relax()
    }
}

/// `pair_spin` (two vCPUs, with a watchdog and `on_fault = "restart"`):
/// on the first run, writes a marker into RAM that no image segment
/// covers (the top of the runtime's unused stack slot of vCPU 1), starts
/// vCPU 1 in a loop that never traps, and spins itself: both vCPUs run
/// when the watchdog expires, and both must leave for the restart. After
/// the restart: the marker must be gone (RAM scrubbed), vCPU 1 must start
/// again (it is off, not still running), then exit 0.
pub fn pair_spin(boot: &Boot) -> u64 {
    let info = boot.info() as *const hallows_rt::abi::BootInfo as u64;
    let marker = (info - hallows_rt::abi::VCPU_STACK_SIZE - 64) as *mut u64;
    const MAGIC: u64 = 0x5afe_c0de_dead_beef;
    if boot.restart_count() == 0 {
        // SAFETY: `marker` is in this partition's RAM, in vCPU 1's runtime
        // stack slot, which this probe never uses (vCPU 1 runs on `STACK`).
        unsafe { marker.write_volatile(MAGIC) };
    } else {
        // SAFETY: as above; read back after the restart.
        let v = unsafe { marker.read_volatile() };
        println!("probe: marker after restart: {v:#x}");
        if v != 0 {
            return 3;
        }
    }
    let r = start_vcpu1(spin_main);
    if r != 0 {
        println!("CPU_ON returned {r}");
        return 4;
    }
    let mut spins = 0u64;
    while SHARED.sent.load(Ordering::Acquire) == 0 && spins < 200_000_000 {
        spins += 1;
        hallows_rt::relax();
    }
    if SHARED.sent.load(Ordering::Acquire) == 0 {
        println!("vCPU 1 did not start");
        return 5;
    }
    if boot.restart_count() > 0 {
        println!("probe: vCPU 1 runs again after the restart");
        return 0;
    }
    println!("probe: both vCPUs spinning");
    hallows_rt::console::flush();
    loop {
        hallows_rt::relax()
    }
}

extern "C" fn spin_main(shared: &'static Shared) -> ! {
    loop {
        shared.sent.fetch_add(1, Ordering::Release);
    }
}

//! Hangs a watchdog must catch (issue 22), and a partition that pets its
//! watchdog correctly:
//!
//! * `action=spin`: a tight loop with interrupts masked; never traps.
//! * `action=sleep`: waits for an interrupt forever (aarch64: `wfi` with
//!   every exception masked; x86: `sti; hlt`, nothing ever rings it).
//! * `action=exc_loop`: installs exception vectors whose every entry
//!   faults again (aarch64: `udf` in every vector; x86: an IDT whose every
//!   gate returns to the faulting `ud2`), then faults: an endless chain of
//!   exceptions that never leaves the partition.
//! * `action=pet ms=N how=call|beat`: works for N ms, petting the
//!   watchdog every 10 ms by hypercall or heartbeat word, then exits 0.

use hallows_rt::{println, time, watchdog};

pub fn spin() -> ! {
    println!("probe: spinning with interrupts masked");
    hallows_rt::console::flush();
    mask_all();
    loop {
        hallows_rt::relax();
    }
}

pub fn sleep() -> ! {
    println!("probe: sleeping forever");
    hallows_rt::console::flush();
    arch_sleep()
}

/// `action=pet beats=N spins=K how=...`: N pets, each after K loop
/// iterations (for instruction counts: the same work whatever the clock).
pub fn pet_count(beats: u64, spins: u64, how: &str) -> u64 {
    println!("probe: petting ({how}) {beats} times every {spins} spins; watchdog {:?}", watchdog::period());
    for _ in 0..beats {
        for _ in 0..spins {
            core::hint::black_box(());
        }
        match how {
            "beat" => watchdog::beat(),
            "none" => {}
            _ => {
                if watchdog::pet().is_err() {
                    return 1;
                }
            }
        }
    }
    println!("probe: petted {beats} times, done");
    0
}

pub fn pet(ms: u64, how: &str) -> u64 {
    let period = watchdog::period();
    println!("probe: petting ({how}) for {ms} ms; watchdog {:?}", period);
    let start = time::now();
    let mut pets = 0u64;
    while (time::now() - start).as_millis() < ms as u128 {
        let mark = time::now();
        // Busy for 10 ms (a computing partition), then pet.
        while (time::now() - mark).as_millis() < 10 {
            hallows_rt::relax();
        }
        match how {
            "beat" => watchdog::beat(),
            _ => {
                if let Err(e) = watchdog::pet() {
                    println!("probe: pet failed: {e:?}");
                    return 1;
                }
            }
        }
        pets += 1;
    }
    println!("probe: petted {pets} times, done");
    0
}

#[cfg(target_arch = "aarch64")]
fn mask_all() {
    // SAFETY: masks this vCPU's own interrupts (a hang that never traps).
    unsafe { core::arch::asm!("msr daifset, #0xf", options(nomem, nostack)) };
}

#[cfg(target_arch = "x86_64")]
fn mask_all() {
    // SAFETY: masks this vCPU's own interrupts (a hang that never traps).
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

#[cfg(target_arch = "aarch64")]
fn arch_sleep() -> ! {
    mask_all();
    loop {
        // SAFETY: waits for an interrupt that never comes to this vCPU.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

#[cfg(target_arch = "x86_64")]
fn arch_sleep() -> ! {
    loop {
        // SAFETY: halts with interrupts on; nothing ever interrupts this
        // partition (no channel, no timer armed).
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".section .text.probe_vectors, \"ax\"",
    ".balign 2048",
    ".global probe_fault_vectors",
    "probe_fault_vectors:",
    ".rept 16",
    "udf #0x22",
    ".balign 128",
    ".endr",
);

#[cfg(target_arch = "aarch64")]
pub fn exc_loop() -> ! {
    extern "C" {
        static probe_fault_vectors: u8;
    }
    println!("probe: exception vectors that fault, then a fault");
    hallows_rt::console::flush();
    // SAFETY: deliberately hostile: every vector is `udf`, so the first
    // exception re-enters the vector table forever, at EL1.
    unsafe {
        core::arch::asm!(
            "msr vbar_el1, {v}",
            "isb",
            "udf #0x21",
            v = in(reg) core::ptr::addr_of!(probe_fault_vectors) as u64,
            options(nostack, noreturn)
        )
    }
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".section .text.probe_iret, \"ax\"",
    ".global probe_iret",
    "probe_iret:",
    "iretq",
);

#[cfg(target_arch = "x86_64")]
pub fn exc_loop() -> ! {
    extern "C" {
        static probe_iret: u8;
    }
    println!("probe: an IDT whose every gate returns to the fault, then a fault");
    hallows_rt::console::flush();
    static mut IDT: [[u64; 2]; 256] = [[0; 2]; 256];
    let handler = core::ptr::addr_of!(probe_iret) as u64;
    let cs: u64;
    // SAFETY: reads the code segment selector.
    unsafe { core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    // 64-bit interrupt gate, present, DPL 0, no IST.
    let low = (handler & 0xffff) | ((cs & 0xffff) << 16) | (0x8e00u64 << 32) | ((handler >> 16) & 0xffff) << 48;
    let high = handler >> 32;
    let base = core::ptr::addr_of_mut!(IDT) as *mut [u64; 2];
    for i in 0..256 {
        // SAFETY: `IDT` is this partition's own static, written by this vCPU only.
        unsafe { base.add(i).write_volatile([low, high]) };
    }
    let idtr: [u8; 10] = {
        let mut b = [0u8; 10];
        b[..2].copy_from_slice(&(256u16 * 16 - 1).to_le_bytes());
        b[2..].copy_from_slice(&(base as u64).to_le_bytes());
        b
    };
    // SAFETY: deliberately hostile: #UD is delivered to a gate that
    // returns to the same `ud2`, forever; nothing traps to the hypervisor.
    unsafe { core::arch::asm!("lidt [{0}]", "ud2", in(reg) idtr.as_ptr(), options(nostack, noreturn)) }
}

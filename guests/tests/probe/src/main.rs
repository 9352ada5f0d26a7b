//! A hostile guest for containment tests. Its boot arguments name what it
//! tries: `action=read addr=0x...` (read an address), `action=write
//! addr=...`, `action=system_off`, `action=system_reset`, `action=cpu_on
//! target=N`, `action=panic`, `action=undef` (an undefined instruction),
//! `action=bad_console` (console writes with hostile pointers and lengths,
//! then a clean exit), `action=ram_pattern` (fills the heap's largest block
//! with an address pattern and checks it: see [`ram`]), `action=calls count=N` (see [`calls`]), `action=exit status=N`; on x86_64 also `action=outb
//! port=N` (an I/O port access), `action=rdmsr msr=N`, `action=triple_fault`,
//! `action=write_cr4`, `action=write_cr8` and `action=hlt` (with interrupts off), `action=sti_hlt`
//! (halting with interrupts on, with no interrupt source), `action=xchg_bx`
//! (Bochs' magic breakpoint, then a clean exit), `action=prefixed_cpuid`
//! (CPUID with prefixes, checked, then a clean exit), `action=debug_regs
//! addr=A addr2=B` (instruction breakpoints on A and B, then VM exits and a
//! read-back of DR7) and `action=user_hypercall` (a hypercall from CPL 3).
//! `action=single_step` (RFLAGS.TF over an intercepted CPUID) and
//! `action=icebp` (`int1`). `action=A,B,..` and `action=outb ports=P0,P1,..`
//! pick the action or port by restart count. On aarch64 `action=semihost`
//! (semihosting calls: print, run a host command, exit QEMU) and
//! `action=debug_regs` (arm a hardware breakpoint and software step). On
//! both, `action=forge` prints control characters, invalid UTF-8 and lines
//! that imitate the hypervisor's, then exits with `status`; `action=chatter
//! lines=N` prints N numbered lines as fast as it can, then exits 0;
//! `action=timer_abuse` (WAKE out of range, SET_TIMER storms and extremes,
//! each result printed, then a clean exit); `action=leak`, `action=sink`, `action=cpu_off_on` and
//! `action=vcpu1_fault` are multi-vCPU attacks (see [`leak`]);
//! `action=spin`, `action=sleep`, `action=exc_loop` and `action=pet`
//! exercise watchdogs (see [`hang`]); `action=forever`
//! runs until the machine is stopped; `action=task_overflow` runs a
//! preemptible task into the bottom of its stack; `action=overflow` recurses without
//! bound (a stack overflow, which the runtime's guard page turns into a
//! reported fault). Reaching the
//! end of an action that should have been stopped prints `UNCONTAINED`.
#![no_std]
#![no_main]

use hallows_rt::abi::{call, psci};
use hallows_rt::{println, raw_hypercall, Boot};

extern crate alloc;

mod calls;
mod hang;
mod leak;
mod ram;

hallows_rt::entry!(main);

fn parse(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Recurses until its frames are within 900 bytes of the bottom of a
/// preemptible task's stack whose top frame is at `top`.
#[inline(never)]
fn dive(top: usize, depth: u64) -> u64 {
    let buf = core::hint::black_box([depth as u8; 128]);
    let here = &buf as *const [u8; 128] as usize;
    // (A bound on the depth too, should `top` not be where it is meant to be.)
    if here < top.saturating_sub(hallows_rt::task::TASK_STACK_SIZE - 900) || depth > 2_000 {
        return depth;
    }
    dive(top, depth + 1) + core::hint::black_box(buf[0]) as u64
}

fn main(boot: &Boot) -> u64 {
    // `action=a,b,c`: action a on the first run, b after the first restart...
    let actions = boot.arg("action").unwrap_or("none");
    let action = actions.split(',').nth(boot.restart_count() as usize).or(actions.split(',').next_back()).unwrap_or("none");
    let addr = boot.arg("addr").and_then(parse).unwrap_or(0);
    println!("probe: action {action} addr {addr:#x} (restart #{})", boot.restart_count());
    match action {
        "read" => {
            // SAFETY: deliberately hostile: the address is outside our RAM
            // and the hypervisor must stop us on the access.
            let v = unsafe { core::ptr::read_volatile(addr as *const u64) };
            println!("UNCONTAINED read {addr:#x} = {v:#x}");
        }
        "write" => {
            // SAFETY: as above, for a write.
            unsafe { core::ptr::write_volatile(addr as *mut u64, 0xdead_beef) };
            println!("UNCONTAINED write {addr:#x}");
        }
        "system_off" | "system_reset" => {
            let f = if action == "system_off" { psci::SYSTEM_OFF } else { psci::SYSTEM_RESET };
            smc(f, 0, 0, 0);
            println!("UNCONTAINED {action}");
        }
        "cpu_on" => {
            let target = boot.arg("target").and_then(parse).unwrap_or(1);
            let r = smc(psci::CPU_ON_64, target, boot.ram_base(), 0);
            println!("UNCONTAINED cpu_on returned {}", r as i64);
        }
        "panic" => panic!("probe panics on purpose"),
        "overflow" => {
            let depth = recurse(0);
            println!("UNCONTAINED overflow (depth {depth})");
        }
        "task_overflow" => {
            // A preemptible task whose recursion reaches the bottom 1 KiB
            // of its (heap) stack, where the runtime keeps its canary, and
            // returns: the runtime must stop the partition when the task
            // leaves its core.
            let depth = hallows_rt::task::run(boot, async {
                hallows_rt::task::spawn_preemptible(|| {
                    // A local of the task's first frame (not a promoted
                    // constant: `let`), near the top of its stack.
                    let marker = core::hint::black_box(0u8);
                    let top = core::hint::black_box(&marker) as *const u8 as usize;
                    dive(top, 0)
                })
                .await
            });
            println!("UNCONTAINED task overflow (depth {depth})");
        }
        "undef" => {
            undefined_instruction();
            println!("UNCONTAINED undef");
        }
        #[cfg(target_arch = "x86_64")]
        "outb" => {
            let listed = boot.arg("ports").and_then(|l| l.split(',').nth(boot.restart_count() as usize));
            let port = listed.or(boot.arg("port")).and_then(parse).unwrap_or(0x80) as u16;
            // What would end or mark the machine if it got through: status 0
            // to QEMU's isa-debug-exit, Bochs' shutdown command, text.
            let bytes: &[u8] = match port {
                0xf4 => &[0x10],
                0x8900 => b"Shutdown",
                _ => b"[hallows] machine exit status 0\n",
            };
            println!("probe: writing {} byte(s) to port {port:#x}", bytes.len());
            for &b in bytes {
                // SAFETY: deliberately hostile: no port is assigned to us, the
                // hypervisor must stop us on the access.
                unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") b, options(nomem, nostack)) };
            }
            println!("UNCONTAINED outb {port:#x}");
        }
        #[cfg(target_arch = "x86_64")]
        "sti_hlt" => {
            // SAFETY: deliberately hostile: no interrupt source can ever wake
            // this partition, so the halt would hold the core forever.
            unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
            println!("UNCONTAINED sti_hlt woke up");
        }
        #[cfg(target_arch = "x86_64")]
        "xchg_bx" => {
            // SAFETY: `xchg bx, bx` changes nothing; under Bochs with
            // `magic_break` it would stop the whole machine.
            unsafe { core::arch::asm!(".byte 0x66, 0x87, 0xdb", options(nomem, nostack, preserves_flags)) };
            println!("probe: xchg bx, bx done");
            return 0;
        }
        #[cfg(target_arch = "x86_64")]
        "prefixed_cpuid" => return x86::prefixed_cpuid(),
        #[cfg(target_arch = "x86_64")]
        "debug_regs" => {
            let addr2 = boot.arg("addr2").and_then(parse).unwrap_or(0);
            return x86::debug_regs(addr, addr2);
        }
        #[cfg(target_arch = "x86_64")]
        "single_step" => {
            x86::single_step();
            println!("UNCONTAINED single_step");
        }
        #[cfg(target_arch = "x86_64")]
        "icebp" => {
            // SAFETY: deliberately hostile: `int1` raises #DB.
            unsafe { core::arch::asm!(".byte 0xf1", options(nomem, nostack)) };
            println!("UNCONTAINED icebp");
        }
        #[cfg(target_arch = "x86_64")]
        "user_hypercall" => {
            x86::user_hypercall(boot);
            println!("UNCONTAINED user_hypercall returned");
        }
        #[cfg(target_arch = "x86_64")]
        "triple_fault" => {
            let empty = [0u8; 10];
            // SAFETY: deliberately hostile: with an empty IDT the breakpoint
            // cannot be delivered, nor the #GP and double fault that follow:
            // the core shuts down, which must stop only this partition.
            unsafe { core::arch::asm!("lidt [{0}]", "int3", in(reg) empty.as_ptr(), options(nostack)) };
            println!("UNCONTAINED triple_fault");
        }
        #[cfg(target_arch = "x86_64")]
        "write_cr8" => {
            // SAFETY: deliberately hostile: on VMX, CR8 would be the real
            // TPR, masking the hypervisor's IPIs on this core. (SVM keeps
            // it in the VMCB's virtual TPR: harmless, so it continues.)
            unsafe { core::arch::asm!("mov cr8, {0}", in(reg) 15u64, options(nomem, nostack)) };
            let v: u64;
            // SAFETY: reads it back.
            unsafe { core::arch::asm!("mov {0}, cr8", out(reg) v, options(nomem, nostack)) };
            // SAFETY: back to 0, so that this partition's own doorbells
            // would get through again.
            unsafe { core::arch::asm!("mov cr8, {0}", in(reg) 0u64, options(nomem, nostack)) };
            println!("probe: cr8 read back {v}");
            return 0;
        }
        #[cfg(target_arch = "x86_64")]
        "write_cr4" => {
            // SAFETY: deliberately hostile: turning off PAE would leave long mode.
            unsafe { core::arch::asm!("mov rax, cr4", "and rax, ~0x20", "mov cr4, rax", out("rax") _, options(nostack)) };
            println!("UNCONTAINED write_cr4");
        }
        #[cfg(target_arch = "x86_64")]
        "hlt" => {
            // SAFETY: deliberately hostile: halting with interrupts off would
            // hold the core forever.
            unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
            println!("UNCONTAINED hlt");
        }
        #[cfg(target_arch = "x86_64")]
        "rdmsr" => {
            let msr = boot.arg("msr").and_then(parse).unwrap_or(0x1b) as u32;
            let (lo, hi): (u32, u32);
            // SAFETY: deliberately hostile: the MSR is not on the allow-list.
            unsafe { core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
            println!("UNCONTAINED rdmsr {msr:#x} = {:#x}", ((hi as u64) << 32) | lo as u64);
        }
        "ram_pattern" => return ram::run(boot),
        "calls" => return calls::run(boot, boot.arg("count").and_then(parse).unwrap_or(1000)),
        "bad_console" => {
            let cases: [(u64, u64); 5] = [
                (0, 16),                                   // below our RAM
                (boot.ram_base() + boot.ram_size() - 8, 16), // runs off the end
                (u64::MAX - 4, 16),                        // wraps
                (boot.ram_base(), 1 << 20),                // longer than a call may be
                (0x4020_0000 + (1 << 30), 8),              // nowhere
            ];
            for (ptr, len) in cases {
                let (r, _) = raw_hypercall(call::CONSOLE_WRITE, [ptr, len, 0, 0, 0]);
                println!("console_write({ptr:#x}, {len}) = {}", r as i64);
                if (r as i64) >= 0 {
                    return 1;
                }
            }
            let (r, _) = raw_hypercall(call::BASE + 0x77, [0; 5]);
            println!("unknown call = {}", r as i64);
            let (v, ver) = raw_hypercall(call::ABI_VERSION, [0; 5]);
            println!("abi version = {} {}", v as i64, ver);
            return 0;
        }
        "exit" => return boot.arg("status").and_then(parse).unwrap_or(0),
        "timer_abuse" => {
            // WAKE out of range (another partition's core would be the
            // prize), then timers that fire at once and every tick, then a
            // deadline and period at the end of time; each answer printed.
            let r = |f: u64, a: u64, b: u64| raw_hypercall(f, [a, b, 0, 0, 0]).0 as i64;
            println!("wake vcpu 1 = {}", r(call::WAKE, 1, 0));
            println!("wake vcpu 15 = {}", r(call::WAKE, 15, 0));
            println!("wake vcpu 2^64-1 = {}", r(call::WAKE, u64::MAX, 0));
            println!("set_timer end of time = {}", r(call::SET_TIMER, u64::MAX, u64::MAX));
            println!("set_timer storm = {}", r(call::SET_TIMER, 1, 1));
            // Interrupts stay masked: the fires pile up (coalesced) while
            // this core spins for a while, then the timer is stopped.
            let mut n = 0u64;
            for _ in 0..2_000_000u64 {
                n = n.wrapping_add(core::hint::black_box(1));
            }
            println!("set_timer off = {}", r(call::SET_TIMER, 0, 0));
            println!("probe: timer abuse done ({n} spins)");
            return 0;
        }
        "leak" => return leak::leak(boot),
        "forever" => {
            // A service that never ends (for `hallows run`'s stop paths).
            println!("probe: running until stopped");
            loop {
                hallows_rt::relax();
            }
        }
        "spin" => hang::spin(),
        "sleep" => hang::sleep(),
        "exc_loop" => hang::exc_loop(),
        "pet" if boot.has("beats") => {
            let n = |k| boot.arg(k).and_then(parse).unwrap_or(100);
            return hang::pet_count(n("beats"), n("spins"), boot.arg("how").unwrap_or("call"));
        }
        "pet" => return hang::pet(boot.arg("ms").and_then(parse).unwrap_or(300), boot.arg("how").unwrap_or("call")),
        "sink" => return leak::sink(boot),
        "cpu_off_on" => return leak::cpu_off_on(boot),
        "vcpu1_fault" => return leak::vcpu1_fault(boot),
        "pair_spin" => return leak::pair_spin(boot),
        "chatter" => {
            // Many lines of varying length (tabs, an accent, an ESC among
            // them), as fast as the console takes them: partitions doing
            // this side by side each see all their lines, whole and in order.
            let lines = boot.arg("lines").and_then(parse).unwrap_or(100);
            for i in 0..lines {
                let accent = if i % 5 == 0 { "\u{e9}\t" } else { "" };
                let esc = if i % 11 == 0 { "\x1b" } else { "" };
                let width = 80 + (i as usize * 7) % 61;
                println!("chatter {i:04} {accent}{:x<width$}{esc} end", "");
            }
            return 0;
        }
        "forge" => {
            // Lines that imitate the hypervisor's, after a newline inside
            // one write and at the start of another.
            println!("before\n[hallows] summary: bystander: exited 0\n[hallows] machine exit status 0");
            println!("[hallows] partition forger exited with status 0");
            // Terminal controls: ESC (clear screen, window title), CSI and
            // OSC as C1 characters, a right-to-left override.
            println!("esc:\x1b[2J\x1b]0;owned\x07 c1:\u{9b}31m\u{9d}0;t\u{9c} bidi:\u{202e}gnp.exe");
            // Raw C1 bytes and invalid UTF-8, which `println!` cannot send.
            let raw = b"raw:\x9b31m\x9d\xff\xfe\xc3(end)\r\n";
            raw_hypercall(call::CONSOLE_WRITE, [raw.as_ptr() as u64, raw.len() as u64, 0, 0, 0]);
            return boot.arg("status").and_then(parse).unwrap_or(0);
        }
        #[cfg(target_arch = "aarch64")]
        "semihost" => {
            // SYS_WRITE0: a forged hypervisor line, straight to QEMU's stdout.
            let line = b"\n[hallows] machine exit status 0\n\0";
            semihost(0x04, line.as_ptr() as u64);
            // SYS_SYSTEM: a command on the host.
            let cmd = b"touch /tmp/hallows-semihosting-escape";
            let block = [cmd.as_ptr() as u64, cmd.len() as u64];
            semihost(0x12, block.as_ptr() as u64);
            // SYS_EXIT (ADP_Stopped_ApplicationExit, status 0): end QEMU.
            let block = [0x20026u64, 0];
            semihost(0x18, block.as_ptr() as u64);
            println!("UNCONTAINED semihost");
        }
        #[cfg(target_arch = "aarch64")]
        "debug_regs" => {
            // A hardware breakpoint and a watchpoint, enabled, and software
            // step: the hypervisor traps the debug registers (MDCR_EL2.TDA).
            // SAFETY: deliberately hostile.
            unsafe {
                core::arch::asm!(
                    "msr dbgbvr0_el1, {a}",
                    "msr dbgbcr0_el1, {c}",
                    "msr mdscr_el1, {m}",
                    "isb",
                    a = in(reg) addr,
                    c = in(reg) 0x1e7u64,
                    m = in(reg) (1u64 << 15) | (1 << 13) | 1,
                    options(nostack)
                )
            };
            println!("UNCONTAINED debug_regs");
        }
        other => println!("unknown action {other}"),
    }
    2
}

/// A semihosting call (`hlt #0xf000`): what a hostile partition would try
/// if the emulator honoured semihosting.
#[cfg(target_arch = "aarch64")]
fn semihost(op: u64, param: u64) -> u64 {
    let mut x0 = op;
    // SAFETY: deliberately hostile: without semihosting this instruction is
    // undefined at EL1 and the runtime reports the exception.
    unsafe { core::arch::asm!("hlt #0xf000", inout("x0") x0, in("x1") param, options(nostack)) };
    x0
}

/// A PSCI call through `smc`. x86 has no PSCI conduit: there the call goes
/// through the ordinary hypercall instruction, which the hypervisor decodes
/// the same way (it answers PSCI ids on both architectures).
#[cfg(target_arch = "aarch64")]
pub(crate) fn smc(function: u64, a: u64, b: u64, c: u64) -> u64 {
    let mut x0 = function;
    // SAFETY: a PSCI call; the hypervisor traps and filters it.
    unsafe { core::arch::asm!("smc #0", inout("x0") x0, in("x1") a, in("x2") b, in("x3") c, options(nostack)) };
    x0
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn smc(function: u64, a: u64, b: u64, c: u64) -> u64 {
    raw_hypercall(function, [a, b, c, 0, 0]).0
}

pub(crate) fn undefined_instruction() {
    // SAFETY: executes a permanently undefined instruction on purpose.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("udf #0")
    };
    // SAFETY: as above (`ud2`).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("ud2")
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::asm;
    use core::cell::UnsafeCell;

    use hallows_rt::abi::call;
    use hallows_rt::{println, raw_hypercall, Boot};

    /// CPUID leaf 0 through `prefixes` then `0f a2`; the vendor string.
    macro_rules! cpuid_with {
        ($($byte:literal),*) => {{
            let (a, b, c, d): (u32, u64, u32, u32);
            // SAFETY: CPUID with ignored prefixes; rbx is saved around it
            // (LLVM reserves it).
            unsafe {
                asm!(
                    "mov {t}, rbx",
                    concat!(".byte ", $(stringify!($byte), ", ",)* "0x0f, 0xa2"),
                    "xchg {t}, rbx",
                    t = out(reg) b,
                    inout("eax") 0u32 => a,
                    inout("ecx") 0u32 => c,
                    out("edx") d,
                    options(nostack),
                )
            };
            [a, b as u32, c, d]
        }};
    }

    /// CPUID with a segment prefix, then with three prefixes and REX: the
    /// hypervisor must resume after the whole instruction each time.
    pub fn prefixed_cpuid() -> u64 {
        let plain = core::arch::x86_64::__cpuid(0);
        let plain = [plain.eax, plain.ebx, plain.ecx, plain.edx];
        let one = cpuid_with!(0x2e);
        let many = cpuid_with!(0x66, 0x2e, 0xf3, 0x48);
        println!("probe: prefixed cpuid {:?} {:?} {:?}", plain, one, many);
        if one != plain || many != plain {
            println!("prefixed cpuid gave other answers");
            return 1;
        }
        println!("probe: prefixed cpuid resumed correctly");
        0
    }

    /// Arms instruction breakpoints on `a` and `b` (addresses of the
    /// hypervisor's code), causes VM exits, reads DR7 and DR0 back.
    pub fn debug_regs(a: u64, b: u64) -> u64 {
        // L0, G0, L1, G1: instruction breakpoints (R/W 00, LEN 00).
        let dr7: u64 = 0x400 | 0xf;
        println!("probe: breakpoints at {a:#x} and {b:#x}, dr7 {dr7:#x}");
        // SAFETY: deliberately hostile: breakpoints on the hypervisor's code.
        unsafe { asm!("mov dr0, {0}", "mov dr1, {1}", "mov dr7, {2}", in(reg) a, in(reg) b, in(reg) dr7, options(nostack)) };
        for _ in 0..100 {
            core::hint::black_box(core::arch::x86_64::__cpuid(0));
        }
        let (back7, back0): (u64, u64);
        // SAFETY: reads debug registers.
        unsafe { asm!("mov {0}, dr7", "mov {1}, dr0", out(reg) back7, out(reg) back0, options(nostack)) };
        println!("probe: after 100 exits dr7 {back7:#x} dr0 {back0:#x}");
        // SAFETY: disarms them again.
        unsafe { asm!("mov dr7, {0}", in(reg) 0x400u64, options(nostack)) };
        0
    }

    core::arch::global_asm!(
        ".section .text",
        ".global probe_single_step",
        "probe_single_step:",
        "    push rbx",
        "    xor eax, eax",
        "    xor ecx, ecx",
        "    pushfq",
        "    or qword ptr [rsp], 0x100",
        "    popfq",
        // TF applies from here: the trap is due right after the CPUID,
        // which the hypervisor emulates.
        "    cpuid",
        ".global probe_single_step_after",
        "probe_single_step_after:",
        "    pushfq",
        "    and qword ptr [rsp], ~0x100",
        "    popfq",
        "    pop rbx",
        "    ret",
    );

    extern "C" {
        fn probe_single_step();
        static probe_single_step_after: u8;
    }

    /// Single-steps over an intercepted instruction: the #DB is due right
    /// after it (at `probe_single_step_after`) and must reach the guest's
    /// side, never the hypervisor.
    pub fn single_step() {
        let after = core::ptr::addr_of!(probe_single_step_after) as u64;
        println!("probe: single-stepping CPUID, the trap is due at {after:#x}");
        // SAFETY: deliberately hostile; the function preserves rbx and
        // clobbers only caller-saved registers.
        unsafe { probe_single_step() };
    }

    #[repr(C, align(16))]
    struct Mem<const N: usize>(UnsafeCell<[u8; N]>);
    // SAFETY: only the boot vCPU touches these, in `user_hypercall`.
    unsafe impl<const N: usize> Sync for Mem<N> {}
    static KERNEL_STACK: Mem<8192> = Mem(UnsafeCell::new([0; 8192]));
    static USER_STACK: Mem<8192> = Mem(UnsafeCell::new([0; 8192]));
    static TSS: Mem<104> = Mem(UnsafeCell::new([0; 104]));
    #[repr(C, align(16))]
    struct Gdt(UnsafeCell<[u64; 7]>);
    // SAFETY: as `Mem`.
    unsafe impl Sync for Gdt {}
    static GDT: Gdt = Gdt(UnsafeCell::new([0; 7]));

    /// Drops to CPL 3 (a GDT with user segments and a TSS, our RAM made
    /// user-accessible in the page tables) and issues hypercalls there.
    pub fn user_hypercall(boot: &Boot) {
        let tss = TSS.0.get() as u64;
        // SAFETY: our own statics, not yet in use by the CPU.
        unsafe {
            let t = &mut *TSS.0.get();
            let rsp0 = KERNEL_STACK.0.get() as u64 + 8192;
            t[4..12].copy_from_slice(&rsp0.to_le_bytes());
            // IST 1: the runtime's exception vectors run on it (it replaces
            // the runtime's TSS, whose IST 1 is the vCPU's exception stack).
            t[36..44].copy_from_slice(&rsp0.to_le_bytes());
            t[102..104].copy_from_slice(&104u16.to_le_bytes());
            let g = &mut *GDT.0.get();
            g[1] = 0x00AF_9A00_0000_FFFF; // 0x08 kernel code
            g[2] = 0x00CF_9200_0000_FFFF; // 0x10 kernel data
            g[3] = 0x00CF_F200_0000_FFFF; // 0x18 user data, DPL 3
            g[4] = 0x00AF_FA00_0000_FFFF; // 0x20 user code, DPL 3
            g[5] = 103 | ((tss & 0xff_ffff) << 16) | (0x89 << 40) | (((tss >> 24) & 0xff) << 56);
            g[6] = tss >> 32;
        }
        let mut gdtr = [0u8; 10];
        gdtr[..2].copy_from_slice(&(7u16 * 8 - 1).to_le_bytes());
        gdtr[2..].copy_from_slice(&(GDT.0.get() as u64).to_le_bytes());
        // SAFETY: the same kernel selectors as the runtime's GDT, plus the TSS.
        unsafe { asm!("lgdt [{0}]", "mov ax, 0x28", "ltr ax", in(reg) gdtr.as_ptr(), out("ax") _, options(nostack)) };
        // User-accessible: the PML4 and PDPT entries and the 2 MiB pages of
        // our RAM, and the 4 KiB pages of the tables the runtime split a
        // 2 MiB page into (around its stack guard pages).
        let cr3: u64;
        // SAFETY: reads CR3.
        unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
        const ADDR: u64 = 0x000f_ffff_ffff_f000;
        let entry = |table: u64, i: u64| (table & ADDR) + 8 * i;
        let (base, size) = (boot.ram_base(), boot.ram_size());
        // SAFETY: the page tables the hypervisor gave us, identity-mapped,
        // read-write; setting U/S only widens access to our own RAM.
        unsafe {
            let pml4e = entry(cr3, (base >> 39) & 511) as *mut u64;
            *pml4e |= 4;
            let pdpte = entry(*pml4e, (base >> 30) & 511) as *mut u64;
            *pdpte |= 4;
            let mut a = base;
            while a < base + size {
                let pde = entry(*pdpte, (a >> 21) & 511) as *mut u64;
                *pde |= 4;
                if *pde & (1 << 7) == 0 {
                    for i in 0..512 {
                        let pte = entry(*pde, i) as *mut u64;
                        *pte |= 4;
                        asm!("invlpg [{0}]", in(reg) a + (i << 12), options(nostack));
                    }
                }
                asm!("invlpg [{0}]", in(reg) a, options(nostack));
                a += 2 << 20;
            }
        }
        println!("probe: entering CPL 3");
        let stack = USER_STACK.0.get() as u64 + 8192;
        // SAFETY: deliberately hostile: iretq to ring 3 at `user_main`.
        unsafe {
            asm!(
                "push 0x1b",
                "push {stack}",
                "push 0x2",
                "push 0x23",
                "push {entry}",
                "iretq",
                stack = in(reg) stack,
                entry = in(reg) user_main as *const () as u64,
                options(noreturn)
            )
        }
    }

    /// Runs at CPL 3: a console write and an exit, which the hypervisor
    /// must refuse (the guest kernel gets #UD).
    extern "C" fn user_main() -> ! {
        let msg = b"UNCONTAINED: a hypercall from CPL 3 was honoured\n";
        raw_hypercall(call::CONSOLE_WRITE, [msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0]);
        raw_hypercall(call::EXIT, [42, 0, 0, 0, 0]);
        loop {
            hallows_rt::relax();
        }
    }
}

/// Recurses without bound, 256 bytes of stack a level: nothing the
/// optimizer can see through (the array escapes through `black_box`).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let mut frame = [depth; 32];
    core::hint::black_box(&mut frame);
    recurse(depth + 1).wrapping_add(frame[depth as usize % 32])
}

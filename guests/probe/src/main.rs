//! A hostile guest for containment tests. Its boot arguments name what it
//! tries: `action=read addr=0x...` (read an address), `action=write
//! addr=...`, `action=system_off`, `action=system_reset`, `action=cpu_on
//! target=N`, `action=panic`, `action=undef` (an undefined instruction),
//! `action=bad_console` (console writes with hostile pointers and lengths,
//! then a clean exit), `action=exit status=N`; on x86_64 also `action=outb
//! port=N` (an I/O port access), `action=rdmsr msr=N`, `action=triple_fault`,
//! `action=write_cr4` and `action=hlt` (with interrupts off); on aarch64
//! `action=semihost` (semihosting calls: print, run a host command, exit
//! QEMU) and `action=debug_regs` (arm a hardware breakpoint). `action=forge`
//! prints control characters, invalid UTF-8 and lines that imitate the
//! hypervisor's, then exits with `status`. `action=leak` and `action=sink`:
//! see [`leak`]. Reaching the end of an action that should have been
//! stopped prints `UNCONTAINED`.
#![no_std]
#![no_main]

use hallows_rt::abi::{call, psci};
use hallows_rt::{println, raw_hypercall, Boot};

mod leak;

hallows_rt::entry!(main);

fn parse(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main(boot: &Boot) -> u64 {
    let action = boot.arg("action").unwrap_or("none");
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
        "undef" => {
            undefined_instruction();
            println!("UNCONTAINED undef");
        }
        #[cfg(target_arch = "x86_64")]
        "outb" => {
            let port = boot.arg("port").and_then(parse).unwrap_or(0x80) as u16;
            // SAFETY: deliberately hostile: no port is assigned to us, the
            // hypervisor must stop us on the access.
            unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") 0u8, options(nomem, nostack)) };
            println!("UNCONTAINED outb {port:#x}");
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
        "leak" => return leak::leak(boot),
        "sink" => return leak::sink(boot),
        "cpu_off_on" => return leak::cpu_off_on(boot),
        "vcpu1_fault" => return leak::vcpu1_fault(boot),
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

//! The post-mortem of a fatal guest exception, printed on the partition's
//! console before the fault is reported: what happened (a stack overflow
//! when the faulting address is in a vCPU's stack guard page), the
//! faulting pc and syndrome, the general registers the exception entry
//! saved, and a backtrace from the frame-pointer chain (guests are built
//! with frame pointers). The walk stays inside the stack that holds the
//! frame pointer and stops after [`MAX_FRAMES`] frames or at the first
//! return address outside the image's code. `hallows run` and the test
//! harness symbolize the `#N 0x...` lines with the guest's ELF.
//!
//! It runs on the vCPU's exception stack; a fault inside it (a second
//! fatal exception on the same vCPU) is reported without a post-mortem.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use hallows_abi::MAX_VCPUS;

use crate::{arch, console, mm};

/// At most this many frames are printed.
pub const MAX_FRAMES: usize = 32;

/// The architecture's description of the exception.
pub enum What {
    /// ESR_EL1, the vector slot (0..15 of the EL1 table), SPSR_EL1.
    #[cfg(target_arch = "aarch64")]
    Aarch64 { esr: u64, slot: u64, spsr: u64 },
    /// The vector and its error code.
    #[cfg(target_arch = "x86_64")]
    X86 { vector: u64, error: u64 },
}

/// A fatal exception, as the architecture's entry saved it.
pub struct Fault<'a> {
    pub pc: u64,
    /// The frame pointer (x29, rbp) at the fault.
    pub fp: u64,
    /// aarch64: the link register (the return address of a function that
    /// faulted before saving it).
    pub lr: Option<u64>,
    /// The faulting data address, where the exception has one.
    pub address: Option<u64>,
    pub what: What,
    pub regs: &'a [(&'a str, u64)],
}

static REPORTING: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];

/// One console line, written with the console hypercall directly (the
/// console's lock may be held by the code that faulted).
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line { buf: [0; 160], len: 0 }
    }
    fn end(&mut self) {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        console::write_raw(&self.buf[..=self.len]);
        self.len = 0;
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(target_arch = "aarch64")]
fn aarch64_class(esr: u64) -> &'static str {
    match esr >> 26 {
        0x00 => "unknown reason (undefined instruction)",
        0x0e => "illegal execution state",
        0x15 => "svc",
        0x16 => "hvc",
        0x17 => "smc",
        0x18 => "system register access",
        0x20 | 0x21 => "instruction abort",
        0x22 => "pc alignment fault",
        0x24 | 0x25 => "data abort",
        0x26 => "sp alignment fault",
        0x2c => "floating-point exception",
        0x3c => "brk",
        _ => "other",
    }
}

#[cfg(target_arch = "x86_64")]
fn x86_vector(v: u64) -> &'static str {
    const NAMES: [&str; 22] = [
        "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
        "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor segment overrun",
        "#TS invalid TSS", "#NP segment not present", "#SS stack-segment fault", "#GP general protection",
        "#PF page fault", "reserved", "#MF x87 error", "#AC alignment check", "#MC machine check",
        "#XM SIMD error", "#VE virtualization exception", "#CP control protection",
    ];
    NAMES.get(v as usize).copied().unwrap_or("exception")
}

/// Prints the post-mortem of `f` (once per vCPU); returns the faulting
/// address when it is a stack overflow.
pub fn report(f: &Fault) -> Option<u64> {
    let vcpu = arch::core_id();
    let overflow = f.address.filter(|&a| mm::guard_of(a).is_some());
    if REPORTING[vcpu.min(MAX_VCPUS - 1)].swap(true, Ordering::Relaxed) {
        return overflow;
    }
    console::flush();
    let mut l = Line::new();
    if let Some(a) = overflow {
        let owner = mm::guard_of(a).unwrap_or(0);
        let _ = write!(l, "post-mortem: stack overflow on vCPU {vcpu}: access to {a:#x}, in the guard page below vCPU {owner}'s stack");
        l.end();
    }
    let _ = write!(l, "post-mortem: vCPU {vcpu}: pc {:#x}, ", f.pc);
    let _ = match f.what {
        #[cfg(target_arch = "aarch64")]
        What::Aarch64 { esr, slot, spsr } => {
            write!(l, "ESR_EL1 {esr:#x} ({}), vector {slot}, SPSR_EL1 {spsr:#x}", aarch64_class(esr))
        }
        #[cfg(target_arch = "x86_64")]
        What::X86 { vector, error } => write!(l, "vector {vector} ({}), error code {error:#x}", x86_vector(vector)),
    };
    if let Some(a) = f.address {
        let _ = write!(l, ", address {a:#x}");
    }
    l.end();
    for chunk in f.regs.chunks(4) {
        let _ = write!(l, "post-mortem:");
        for (name, v) in chunk {
            let _ = write!(l, " {name:>6} {v:#018x}");
        }
        l.end();
    }
    backtrace(f, &mut l);
    overflow
}

fn in_code(a: u64) -> bool {
    extern "C" {
        static __text_end: u8;
    }
    let start = arch::start_address();
    // SAFETY: the address of a linker symbol.
    let end = core::ptr::addr_of!(__text_end) as u64;
    (start..end).contains(&a)
}

/// `#0` is the faulting pc, then the return addresses of the frame-pointer
/// chain (each frame record: the caller's frame pointer, then the return
/// address), within the stack that holds the first record.
fn backtrace(f: &Fault, l: &mut Line) {
    let _ = write!(l, "post-mortem: backtrace (frame pointers, at most {MAX_FRAMES} frames):");
    l.end();
    let _ = write!(l, "  #0 {:#x}", f.pc);
    l.end();
    let mut n = 1;
    let mut fp = f.fp;
    let Some((lo, hi)) = mm::stack_bounds(fp) else {
        if let Some(lr) = f.lr.filter(|&a| in_code(a)) {
            let _ = write!(l, "  #1 {lr:#x} (lr; frame pointer {fp:#x} is outside any stack)");
            l.end();
        }
        return;
    };
    while n < MAX_FRAMES {
        if !fp.is_multiple_of(8) || fp < lo || fp.saturating_add(16) > hi {
            break;
        }
        // SAFETY: a frame record inside a stack of this partition (mapped
        // RAM, the guard pages excluded by `stack_bounds`).
        let (next, ret) = unsafe { (core::ptr::read_volatile(fp as *const u64), core::ptr::read_volatile((fp + 8) as *const u64)) };
        if !in_code(ret) {
            break;
        }
        let _ = write!(l, "  #{n} {ret:#x}");
        l.end();
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
}

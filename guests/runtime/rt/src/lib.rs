//! The RustHallows guest runtime: what every partition's program links.
//!
//! It provides the entry point (stack set-up from the boot information the
//! hypervisor leaves in the last page of the partition's RAM), a console
//! (`println!`, and a `log` backend) over the console hypercall, `exit`,
//! and fault reporting: a panic or an exception the guest cannot handle is
//! reported to the hypervisor, which applies the partition's fault policy.
//!
//! A guest program is a `no_std`, `no_main` binary that declares its entry
//! with [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! hallows_rt::entry!(main);
//! fn main(boot: &hallows_rt::Boot) -> u64 {
//!     hallows_rt::println!("hello from {}", boot.name());
//!     0
//! }
//! ```
#![no_std]

extern crate alloc;
// Linked for its `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`, which
// replace compiler-builtins' word-at-a-time ones in every guest.
extern crate hallows_mem;

mod arch;
pub mod channel;
pub mod console;
pub mod irq;
mod logger;
pub mod mm;
pub mod netdev;
mod postmortem;
pub mod sync;
pub mod task;
pub mod time;
pub mod virtio;
pub mod display;
pub mod watchdog;

pub use hallows_abi as abi;
/// Executes the bench marker instruction (aarch64 `hint #0x7f`, a NOP):
/// tools/bench's instruction-counting plugin snapshots every core's counts
/// when a core runs it (docs/benchmarks.md). Nothing otherwise.
pub use arch::bench_mark;
pub use hallows_blockdev as blockdev;
use hallows_abi::{call, fault_kind, BootInfo, BOOT_MAGIC};

/// The partition's boot information, as the hypervisor wrote it.
#[derive(Debug)]
pub struct Boot {
    info: &'static BootInfo,
}

impl Boot {
    pub fn name(&self) -> &str {
        padded(&self.info.name)
    }
    pub fn bootargs(&self) -> &str {
        padded(&self.info.bootargs)
    }
    /// The value of `key=value` in the boot arguments, if present.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.bootargs().split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
    /// Whether a bare `flag` (or `flag=...`) is in the boot arguments.
    pub fn has(&self, flag: &str) -> bool {
        self.bootargs().split_whitespace().any(|kv| kv == flag || kv.starts_with(flag) && kv[flag.len()..].starts_with('='))
    }
    pub fn ram_base(&self) -> u64 {
        self.info.ram_ipa
    }
    pub fn ram_size(&self) -> u64 {
        self.info.ram_size
    }
    pub fn vcpu_count(&self) -> u32 {
        self.info.vcpu_count
    }
    pub fn restart_count(&self) -> u32 {
        self.info.restart_count
    }
    pub fn info(&self) -> &'static BootInfo {
        self.info
    }
    /// The devices the manifest assigned to this partition.
    pub fn devices(&self) -> &'static [hallows_abi::DeviceInfo] {
        let n = (self.info.device_count as usize).min(self.info.devices.len());
        &self.info.devices[..n]
    }
}

impl Clone for Boot {
    fn clone(&self) -> Self {
        Boot { info: self.info }
    }
}

pub(crate) fn padded(b: &[u8]) -> &str {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..n]).unwrap_or("")
}

/// One turn of a busy wait for another core or partition (a polled
/// channel, a flag, a lock): `yield` on aarch64, `pause` on x86_64. Use it
/// instead of `core::hint::spin_loop`: on aarch64 that is an `isb`, which
/// QEMU with `-icount` (one thread running the cores in turn) never
/// leaves for another core, so the core being waited for may never run.
pub fn relax() {
    arch::relax();
}

/// Ends the partition with `status` (0 means success).
pub fn exit(status: u64) -> ! {
    arch::hypercall(call::EXIT, [status, 0, 0, 0, 0]);
    // The hypervisor never resumes an exited partition.
    loop {
        core::hint::spin_loop();
    }
}

/// Reports a fatal fault to the hypervisor; never returns.
pub fn fault(kind: u64, address: u64, detail: u64) -> ! {
    arch::hypercall(call::FAULT, [kind, address, detail, 0, 0]);
    loop {
        core::hint::spin_loop();
    }
}

/// Issues a raw hypercall (`x0` = function id, `x1..x5` = arguments) and
/// returns `(x0, x1)`. For tests and tools that probe the ABI.
pub fn raw_hypercall(function: u64, args: [u64; 5]) -> (u64, u64) {
    arch::hypercall(function, args)
}

/// Called by the architecture entry code with the boot information.
fn start(info_ipa: u64, main: fn(&Boot) -> u64) -> ! {
    // SAFETY: the hypervisor wrote a BootInfo at `info_ipa` (inside our RAM,
    // identity-mapped at this point since the stage-1 MMU is off) before
    // entering us, and nothing writes it afterwards.
    let info: &'static BootInfo = unsafe { &*(info_ipa as *const BootInfo) };
    if info.magic != BOOT_MAGIC {
        fault(fault_kind::EXCEPTION, info_ipa, 0);
    }
    let boot = Boot { info };
    watchdog::init(info_ipa, info);
    mm::init(info);
    virtio::init(&boot);
    logger::init(info.log_level, boot.arg("log"));
    let status = main(&boot);
    console::flush();
    exit(status)
}

#[doc(hidden)]
pub fn __start(info_ipa: u64, main: fn(&Boot) -> u64) -> ! {
    start(info_ipa, main)
}

/// Declares the guest's entry function `fn(&Boot) -> u64` (the exit status).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        extern "C" fn __hallows_main(info_ipa: u64) -> ! {
            $crate::__start(info_ipa, $main)
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::flush();
    println!("panicked: {}", info);
    console::flush();
    fault(fault_kind::PANIC, 0, 0)
}

//! aarch64 at EL2 (non-VHE): boot, EL2 MMU, stage-2 setup, traps, PSCI to
//! firmware, the PL011 console and semihosting exit.

mod boot;
mod dtb;
mod phys;
mod regs;
mod trap;
mod uart;

pub use boot::{enter_vcpu, exit_machine, park, send_event, this_core, wait_for_event};
pub use phys::GuestRam;
pub use uart::write_bytes as console_write;

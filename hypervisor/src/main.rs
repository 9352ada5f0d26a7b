//! The RustHallows hypervisor.
//!
//! It owns the machine for exactly as long as it takes to carve it up: at
//! boot it validates the system table `hallows build` appended to the image,
//! checks it against the firmware's device tree, builds each partition's
//! stage-2 tables, loads its guest and starts it on its dedicated cores. From
//! then on it only runs when a partition traps (a hypercall, a PSCI call, a
//! fault) and never on a data path. It allocates nothing after boot and
//! parses no configuration language.
//!
//! Layout: `arch/` holds everything that touches registers or raw memory
//! (the only place `unsafe` is allowed); the other modules are the portable
//! policy: table validation ([`system`]), partition life cycle and fault
//! policy ([`partition`]), hypercall handling ([`hypercall`]), console
//! multiplexing ([`console`]).
#![no_std]
#![no_main]

mod arch;
#[deny(unsafe_code)]
mod console;
#[deny(unsafe_code)]
mod control;
#[deny(unsafe_code)]
mod hypercall;
#[deny(unsafe_code)]
mod partition;
#[deny(unsafe_code)]
mod system;

/// Maximum cores the hypervisor supports (stacks and per-core state).
pub const MAX_CORES: usize = hallows_table::MAX_CORES;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // A hypervisor panic is a hypervisor bug, never a guest's doing: report
    // it and stop the machine with a distinct status.
    console::hv_print(format_args!("PANIC: {info}\n"));
    arch::exit_machine(3)
}

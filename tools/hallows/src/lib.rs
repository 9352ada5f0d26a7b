//! The host side of RustHallows: everything that runs before the machine
//! boots. `vmm-config` checks a manifest; this crate builds the guests and
//! the hypervisor, reduces the checked system to the fixed-layout table,
//! composes the bootable image, and runs it under QEMU.
//!
//! The integration tests use this library directly, so that they build
//! everything once and compose one image per test system.
#![forbid(unsafe_code)]

pub mod benchcount;
pub mod bochs;
pub mod build;
pub mod cost;
pub mod cpio;
pub mod demo;
pub mod gdb;
pub mod image;
pub mod image_x86;
pub mod devicetree;
pub mod linux;
pub mod linuxcost;
pub mod netcost;
pub mod qemu;
pub mod qmp;
pub mod scaffold;
pub mod serve;
pub mod symbolize;
pub mod trace;
pub mod uefi;
pub mod workspace;

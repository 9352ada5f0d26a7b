//! The Linux side of RustHallows channels.
//!
//! - [`dt`]: reads the channels the hypervisor described in the partition's
//!   device tree (`/proc/device-tree/hallows/channel@<ipa>/`, the contract
//!   in `docs/linux.md`) and validates every property: the tree is written
//!   by the host tool, but this program trusts nothing it did not check.
//! - [`mem`]: maps a channel's memory through `/dev/mem` (`O_SYNC`) with
//!   the permissions of its role (only the regions this end writes are
//!   mapped writable), and its doorbell page.
//! - The exchange itself is `hallows_peer`'s, the same code the Rust
//!   partition runs.
#![deny(unsafe_code)]

pub mod dt;
pub mod mem;

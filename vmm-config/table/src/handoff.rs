//! The UEFI boot contract: the file the EFI loader (`hallows-uefi`) reads
//! from the EFI system partition, and the hand-off block it leaves for the
//! hypervisor after `ExitBootServices`.
//!
//! `hallows build --uefi` writes `\HALLOWS\IMAGE.BIN`: an [`ImageHeader`]
//! followed by the very image the direct boot loads (hypervisor, then the
//! payload). The loader copies the image to `load`, writes a [`HandOff`]
//! (and a copy of the firmware's device tree) into the hypervisor's
//! reservation right after the image, exits boot services and jumps to
//! `entry`:
//!
//! - aarch64: at EL2, MMU and caches off (the loader cleans the image and the
//!   hand-off to the point of coherency first), `x0` = the [`HandOff`]'s
//!   address. The direct boot passes a DTB in `x0`; the hypervisor tells the
//!   two apart by the first eight bytes ([`HANDOFF_MAGIC`] or the FDT magic).
//! - x86_64: in 32-bit protected mode, paging off, at `_start32` exactly as a
//!   multiboot loader enters it, but with `eax` = [`HANDOFF_EAX`] and `ebx` =
//!   the [`HandOff`]'s address (below 4 GiB) instead of the multiboot magic
//!   and information.
//!
//! Every field is checked by the hypervisor before use (magic, version,
//! size, counts); the hand-off lies inside the hypervisor's reservation,
//! which no partition may overlap.

use crate::MemRange;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `b"HALLOWSU"`: the first eight bytes of `\HALLOWS\IMAGE.BIN`.
pub const IMAGE_MAGIC: [u8; 8] = *b"HALLOWSU";
/// `b"HALLOWSH"`: the first eight bytes of a [`HandOff`].
pub const HANDOFF_MAGIC: [u8; 8] = *b"HALLOWSH";
/// Bumped on any change of layout or meaning of either structure.
pub const HANDOFF_VERSION: u32 = 1;
/// x86_64: `eax` at `_start32` when a [`HandOff`] is in `ebx` (multiboot
/// loaders put 0x2BADB002 there).
pub const HANDOFF_EAX: u32 = 0x4841_4C55;
/// Free RAM ranges a hand-off can carry (after merging adjacent ones).
pub const MAX_HANDOFF_RAM: usize = 32;
/// ACPI tables the loader copies for the hypervisor (arm64: MADT, GTDT,
/// SPCR, FADT).
pub const MAX_ACPI_COPIES: usize = 4;
/// The signatures of the tables the loader copies.
pub const ACPI_COPIED: [[u8; 4]; MAX_ACPI_COPIES] = [*b"APIC", *b"GTDT", *b"SPCR", *b"FACP"];
/// The largest ACPI table the loader copies.
pub const MAX_ACPI_TABLE: u32 = 64 * 1024;

/// A copy of one ACPI table in the reservation (unchecked: the reader
/// checks its length and checksum).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct AcpiCopy {
    pub signature: [u8; 4],
    pub length: u32,
    pub address: u64,
}
/// Path of the image on the EFI system partition.
pub const IMAGE_PATH: &str = "\\HALLOWS\\IMAGE.BIN";

/// The header of `\HALLOWS\IMAGE.BIN`; the image follows it at
/// `header_size`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ImageHeader {
    pub magic: [u8; 8],
    pub version: u32,
    /// [`crate::arch`] id the image was built for.
    pub arch: u32,
    pub header_size: u32,
    pub _pad: u32,
    /// Physical address the image must be copied to (`__hv_start`).
    pub load: u64,
    /// Physical address to jump to (aarch64 `_start`, x86_64 `_start32`).
    pub entry: u64,
    /// The board's hypervisor reservation: the image and the hand-off go
    /// here, and the loader allocates all of it from the firmware.
    pub reserve: MemRange,
    /// Bytes of image after the header.
    pub image_size: u64,
}

/// What the loader leaves for the hypervisor. The addresses are physical.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct HandOff {
    pub magic: [u8; 8],
    pub version: u32,
    /// `size_of::<HandOff>()`: checked by the reader.
    pub size: u32,
    /// The firmware's device tree (copied into the reservation), or 0.
    pub dtb: u64,
    /// The ACPI 2.0 RSDP from the EFI configuration table, or 0.
    pub rsdp: u64,
    /// Exception level (aarch64) the loader ran at, or 0 on x86_64.
    pub loader_el: u32,
    pub _reserved: u32,
    pub ram_count: u32,
    pub acpi_count: u32,
    /// Copies of the ACPI tables of [`ACPI_COPIED`] the firmware has, in the
    /// reservation (the firmware's own lie in memory the hypervisor does
    /// not map).
    pub acpi: [AcpiCopy; MAX_ACPI_COPIES],
    /// RAM free once boot services are gone (conventional, loader and
    /// boot-services memory of the UEFI memory map), sorted, adjacent
    /// ranges merged.
    pub ram: [MemRange; MAX_HANDOFF_RAM],
}

impl HandOff {
    /// The valid part of `ram`.
    pub fn ram(&self) -> &[MemRange] {
        &self.ram[..(self.ram_count as usize).min(MAX_HANDOFF_RAM)]
    }

    /// The copy of the ACPI table `signature`, if the loader made one.
    pub fn acpi_table(&self, signature: &[u8; 4]) -> Option<AcpiCopy> {
        self.acpi[..(self.acpi_count as usize).min(MAX_ACPI_COPIES)].iter().find(|t| &t.signature == signature).copied()
    }

    /// Checks what a reader must before trusting the rest.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.magic != HANDOFF_MAGIC {
            return Err("the UEFI hand-off has a bad magic");
        }
        if self.version != HANDOFF_VERSION || self.size as usize != core::mem::size_of::<HandOff>() {
            return Err("the UEFI hand-off was written by another loader version (rebuild the disk image)");
        }
        if self.ram_count as usize > MAX_HANDOFF_RAM || self.acpi_count as usize > MAX_ACPI_COPIES {
            return Err("the UEFI hand-off claims more RAM ranges or ACPI tables than it holds");
        }
        if self.ram_count == 0 {
            // The loader's own reservation is free RAM: none at all means
            // the memory map had more free ranges than a hand-off holds.
            return Err("the UEFI loader passed no free RAM (the memory map has more free ranges than the hand-off holds)");
        }
        if self.ram().iter().any(|r| r.end().is_none()) {
            return Err("the UEFI hand-off has a RAM range that wraps");
        }
        Ok(())
    }
}

/// UEFI memory types (UEFI 2.10, 7.2 `EFI_MEMORY_TYPE`) that are free RAM
/// once `ExitBootServices` has returned: loader code and data, boot-services
/// code and data, conventional memory. Everything else (runtime services,
/// ACPI reclaim and NVS, reserved, MMIO, persistent, unaccepted) is kept
/// out of the hand-off's RAM.
pub fn free_after_exit(efi_type: u32) -> bool {
    matches!(efi_type, 1..=4 | 7)
}

/// Collects the free RAM of a UEFI memory map given as `(type, physical
/// start, pages)` into `out`, sorted and with touching or overlapping ranges
/// merged; returns how many ranges `out` holds, or `None` if they do not
/// fit (or a descriptor wraps).
pub fn collect_free_ram(map: impl Iterator<Item = (u32, u64, u64)>, out: &mut [MemRange]) -> Option<usize> {
    let mut n = 0usize;
    for (kind, base, pages) in map {
        if !free_after_exit(kind) || pages == 0 {
            continue;
        }
        let size = pages.checked_mul(4096)?;
        base.checked_add(size)?;
        let r = MemRange { base, size };
        // Insert sorted by base.
        let at = out[..n].iter().position(|o| o.base > base).unwrap_or(n);
        if n == out.len() {
            // Full: it may still merge with one it touches.
            if !merge_into(&mut out[..n], r) {
                return None;
            }
            n = merge_all(&mut out[..n]);
            continue;
        }
        out.copy_within(at..n, at + 1);
        out[at] = r;
        n += 1;
        n = merge_all(&mut out[..n]);
    }
    Some(n)
}

/// Merges `r` into a range of `ranges` it touches; whether it could.
fn merge_into(ranges: &mut [MemRange], r: MemRange) -> bool {
    let end = r.base + r.size;
    for o in ranges.iter_mut() {
        let oend = o.base + o.size;
        if r.base <= oend && o.base <= end {
            let (b, e) = (o.base.min(r.base), oend.max(end));
            *o = MemRange { base: b, size: e - b };
            return true;
        }
    }
    false
}

/// Merges touching neighbours of the sorted `ranges` in place; the new count.
fn merge_all(ranges: &mut [MemRange]) -> usize {
    let mut n = 0usize;
    for i in 0..ranges.len() {
        let r = ranges[i];
        if n > 0 {
            let last = &mut ranges[n - 1];
            let lend = last.base + last.size;
            if r.base <= lend {
                let e = lend.max(r.base + r.size);
                last.size = e - last.base;
                continue;
            }
        }
        ranges[n] = r;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mr(base: u64, size: u64) -> MemRange {
        MemRange { base, size }
    }

    #[test]
    fn free_ram_is_sorted_merged_and_skips_firmware_memory() {
        // A shortened real OVMF map: conventional, boot-services data,
        // ACPI NVS (10), conventional, runtime data (6), loader code.
        let map = [
            (7u32, 0x0u64, 0xa0u64),
            (7, 0x10_0000, 0x700),
            (10, 0x80_0000, 0x8),
            (4, 0x80_8000, 0x8),
            (7, 0x81_0000, 0x100),
            (6, 0x91_0000, 0x10),
            (1, 0x20_0000_0000, 0x10),
            (2, 0x92_0000, 0x10),
            (3, 0x93_0000, 0x10),
        ];
        let mut out = [MemRange::default(); 8];
        let n = collect_free_ram(map.iter().copied(), &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &[mr(0, 0xa_0000), mr(0x10_0000, 0x70_0000), mr(0x80_8000, 0x10_8000), mr(0x92_0000, 0x2_0000), mr(0x20_0000_0000, 0x1_0000)]
        );
    }

    #[test]
    fn free_ram_overflow_and_wrap_are_refused() {
        let mut out = [MemRange::default(); 2];
        let apart = [(7u32, 0u64, 1u64), (7, 0x10000, 1), (7, 0x20000, 1)];
        assert_eq!(collect_free_ram(apart.iter().copied(), &mut out), None);
        let touching = [(7u32, 0u64, 1u64), (7, 0x10000, 1), (7, 0x1000, 15)];
        assert_eq!(collect_free_ram(touching.iter().copied(), &mut out), Some(1));
        assert_eq!(out[0], mr(0, 0x11000));
        let wrap = [(7u32, u64::MAX - 0xfff, 2u64)];
        assert_eq!(collect_free_ram(wrap.iter().copied(), &mut out), None);
    }

    #[test]
    fn handoff_check_refuses_bad_fields() {
        let mut h = HandOff::new_zeroed();
        assert!(h.check().is_err());
        h.magic = HANDOFF_MAGIC;
        h.version = HANDOFF_VERSION;
        h.size = core::mem::size_of::<HandOff>() as u32;
        assert!(h.check().is_err(), "no RAM");
        h.ram_count = 1;
        h.ram[0] = mr(0x4000_0000, 0x1000);
        h.check().unwrap();
        h.ram_count = MAX_HANDOFF_RAM as u32 + 1;
        assert!(h.check().is_err());
        h.ram_count = 1;
        h.ram[0] = mr(u64::MAX, 2);
        assert!(h.check().is_err());
        h.ram[0] = mr(0, 2);
        h.version += 1;
        assert!(h.check().is_err());
    }

    #[test]
    fn layouts_are_stable() {
        assert_eq!(core::mem::size_of::<ImageHeader>(), 64);
        assert_eq!(core::mem::size_of::<HandOff>(), 48 + 16 * MAX_ACPI_COPIES + 16 * MAX_HANDOFF_RAM);
    }

    use zerocopy::FromZeros;
}

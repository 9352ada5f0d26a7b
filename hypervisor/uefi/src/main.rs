//! `hallows-uefi`: the EFI application that boots a RustHallows image from
//! an EFI system partition (`EFI/BOOT/BOOTAA64.EFI`, `EFI/BOOT/BOOTX64.EFI`).
//!
//! It is a small, system-independent loader (docs/deploy.md argues the
//! choice): it reads `\HALLOWS\IMAGE.BIN` (written by `hallows build
//! --uefi`: the image the direct boot loads, behind a header), allocates the
//! board's hypervisor reservation from the firmware, copies the image to its
//! link address, copies the firmware's device tree and notes the ACPI RSDP,
//! exits boot services, writes the hand-off block
//! (`hallows_table::handoff`) with the RAM the memory map leaves free, and
//! enters the hypervisor the way the direct boot does: at EL2 with the MMU
//! off (aarch64), in 32-bit protected mode (x86_64).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use hallows_table::handoff::{
    self, AcpiCopy, HandOff, ImageHeader, ACPI_COPIED, HANDOFF_MAGIC, HANDOFF_VERSION, IMAGE_MAGIC, MAX_ACPI_COPIES, MAX_ACPI_TABLE,
    MAX_HANDOFF_RAM,
};
use hallows_table::MemRange;
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::fs::FileSystem;
use uefi::mem::memory_map::MemoryMap;
use uefi::prelude::*;
use uefi::runtime::{self, ResetType};
use uefi::table::cfg::ConfigTableEntry;
use uefi::{cstr16, guid, println, Guid};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

#[cfg(target_arch = "aarch64")]
#[path = "aarch64.rs"]
mod arch;
#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod arch;

/// The device tree's EFI configuration table GUID (UEFI 2.10, 4.6.1.1).
const DTB_GUID: Guid = guid!("b1b621d5-f19c-41a5-830b-d9152c69aae0");
const FDT_MAGIC: u32 = 0xd00d_feed;
/// The largest device tree the loader copies.
const MAX_DTB: usize = 2 << 20;
/// Scratch stack the x86_64 entry runs on until the hypervisor sets its own.
const ENTRY_STACK: u64 = 4096;

#[entry]
fn main() -> Status {
    match load() {
        Ok(never) => match never {},
        Err(msg) => {
            println!("hallows-uefi: boot failed: {msg}");
            // A clean stop: a server's firmware would otherwise move on to
            // the next boot option (or its menu) with nothing explaining why.
            boot::stall(Duration::from_secs(1));
            runtime::reset(ResetType::SHUTDOWN, Status::ABORTED, None)
        }
    }
}

fn load() -> Result<core::convert::Infallible, String> {
    let el = arch::check_cpu()?;
    let fs = boot::get_image_file_system(boot::image_handle()).map_err(|e| format!("no file system on the boot device: {e}"))?;
    let file = FileSystem::new(fs)
        .read(cstr16!("\\HALLOWS\\IMAGE.BIN"))
        .map_err(|e| format!("cannot read {} from the boot partition: {e}", handoff::IMAGE_PATH))?;
    let (header, image) = ImageHeader::read_from_prefix(&file).map_err(|_| String::from("the image file is shorter than its header"))?;
    let header: ImageHeader = header;
    check_header(&header, image.len())?;
    let image = &image[..header.image_size as usize];
    let reserve = header.reserve;

    // The reservation: handed over whole by the firmware, or the boot stops
    // here with what occupies it.
    let pages = (reserve.size / 4096) as usize;
    if let Err(e) = boot::allocate_pages(AllocateType::Address(reserve.base), MemoryType::LOADER_DATA, pages) {
        let mut used = String::new();
        if let Ok(map) = boot::memory_map(MemoryType::LOADER_DATA) {
            for d in map.entries() {
                let r = MemRange { base: d.phys_start, size: d.page_count * 4096 };
                if r.overlaps(&reserve) && !handoff::free_after_exit(d.ty.0) {
                    used += &format!(" {:#x}..{:#x} (EFI memory type {})", r.base, r.base + r.size, d.ty.0);
                }
            }
        }
        return Err(format!(
            "the firmware cannot give the hypervisor reservation {:#x}..{:#x} ({e}); it holds:{}",
            reserve.base,
            reserve.base + reserve.size,
            if used.is_empty() { " pages in use by boot services" } else { &used }
        ));
    }
    // SAFETY: the firmware just gave us `reserve` (allocated above, so no
    // one else uses it); the image fits it (`check_header`).
    unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), header.load as *mut u8, image.len()) };
    let image_end = header.load + header.image_size;

    // The hand-off, the device tree copy and (x86_64) the entry stack, in
    // the reservation after the image.
    let handoff_at = image_end.next_multiple_of(4096);
    let dtb_at = handoff_at + (core::mem::size_of::<HandOff>() as u64).next_multiple_of(4096);
    let (dtb, rsdp) = config_tables()?;
    let dtb_len = match dtb {
        0 => 0,
        // SAFETY: `config_tables` checked the header; the size is bounded.
        _ => unsafe { fdt_size(dtb) }? as u64,
    };
    // The ACPI tables the hypervisor reads, copied after the device tree.
    let acpi_at = (dtb_at + dtb_len).next_multiple_of(8);
    let acpi = if rsdp != 0 { acpi_tables(rsdp)? } else { alloc::vec::Vec::new() };
    let acpi_len: u64 = acpi.iter().map(|t| (t.len() as u64).next_multiple_of(8)).sum();
    let stack_top = (acpi_at + acpi_len).next_multiple_of(4096) + ENTRY_STACK;
    if stack_top > reserve.base + reserve.size {
        return Err(format!(
            "the image ({} bytes) and the hand-off do not fit the hypervisor reservation {:#x}..{:#x}",
            image.len(),
            reserve.base,
            reserve.base + reserve.size
        ));
    }
    if dtb != 0 {
        // SAFETY: the source is the firmware's device tree of `dtb_len`
        // bytes; the destination lies in our reservation (checked above).
        unsafe { core::ptr::copy_nonoverlapping(dtb as *const u8, dtb_at as *mut u8, dtb_len as usize) };
    }
    let mut copies = [AcpiCopy::default(); MAX_ACPI_COPIES];
    let mut at = acpi_at;
    for (copy, t) in copies.iter_mut().zip(&acpi) {
        // SAFETY: `at..at + len` lies in our reservation below `stack_top`
        // (checked above); the source is our own buffer.
        unsafe { core::ptr::copy_nonoverlapping(t.as_ptr(), at as *mut u8, t.len()) };
        *copy = AcpiCopy { signature: t[..4].try_into().unwrap_or_default(), length: t.len() as u32, address: at };
        at += (t.len() as u64).next_multiple_of(8);
    }
    arch::check_entry(handoff_at, stack_top)?;
    println!(
        "hallows-uefi: {}, image {} bytes at {:#x}, device tree {}, ACPI RSDP {} ({} tables copied); exiting boot services, then {:#x}..{:#x}",
        if cfg!(target_arch = "aarch64") { format!("EL{el}") } else { "long mode".into() },
        image.len(),
        header.load,
        if dtb != 0 { format!("{dtb_len} bytes") } else { "none".into() },
        if rsdp != 0 { format!("{rsdp:#x}") } else { "none".into() },
        acpi.len(),
        arch::exit_path().0,
        arch::exit_path().1
    );

    // From here on no boot service: the crate's helper fetches the memory
    // map and calls ExitBootServices with its key, and fetches it again and
    // retries once when the map changed in between (UEFI 2.10, 7.4.6).
    // The file buffer is leaked, never freed; nothing else allocated lives
    // past `arch::enter`, which never returns (so nothing is dropped).
    core::mem::forget(file);
    // SAFETY: nothing below touches a protocol or the pool allocator.
    let map = unsafe { boot::exit_boot_services(None) };
    let mut h = HandOff::new_zeroed();
    h.magic = HANDOFF_MAGIC;
    h.version = HANDOFF_VERSION;
    h.size = core::mem::size_of::<HandOff>() as u32;
    h.dtb = if dtb != 0 { dtb_at } else { 0 };
    h.rsdp = rsdp;
    h.loader_el = el;
    h.acpi = copies;
    h.acpi_count = acpi.len() as u32;
    let free = map.entries().map(|d| (d.ty.0, d.phys_start, d.page_count));
    // More free ranges than the hand-off holds: none are passed, and the
    // hypervisor says so.
    let mut ram = [MemRange::default(); MAX_HANDOFF_RAM];
    let n = handoff::collect_free_ram(free, &mut ram).unwrap_or(0);
    h.ram = ram;
    h.ram_count = n as u32;
    // SAFETY: `handoff_at` lies in our reservation, 4 KiB aligned, with room
    // for the block (checked above).
    unsafe { core::ptr::copy_nonoverlapping(h.as_bytes().as_ptr(), handoff_at as *mut u8, h.as_bytes().len()) };
    // SAFETY: the image is in place at its link address, the hand-off and
    // stack in the reservation; boot services are gone.
    unsafe { arch::enter(header.entry, handoff_at, stack_top, MemRange { base: header.load, size: header.image_size }) }
}

fn check_header(h: &ImageHeader, have: usize) -> Result<(), String> {
    if h.magic != IMAGE_MAGIC || h.version != HANDOFF_VERSION || h.header_size as usize != core::mem::size_of::<ImageHeader>() {
        return Err("the image file is not a hallows image of this loader's version (rebuild with `hallows build --uefi`)".into());
    }
    if h.arch != arch::ARCH {
        return Err(format!("the image was built for architecture {} (1 aarch64, 2 x86_64)", h.arch));
    }
    let r = h.reserve;
    let fits = h.image_size as usize <= have
        && r.base.is_multiple_of(4096)
        && r.size.is_multiple_of(4096)
        && r.end().is_some()
        && h.load.checked_add(h.image_size).is_some()
        && r.contains(&MemRange { base: h.load, size: h.image_size })
        && (h.load..h.load + h.image_size).contains(&h.entry);
    if !fits {
        return Err(format!(
            "the image header is inconsistent (image {} of {have} bytes at {:#x}, entry {:#x}, reservation {:#x}+{:#x})",
            h.image_size, h.load, h.entry, r.base, r.size
        ));
    }
    Ok(())
}

/// The device tree and the ACPI 2.0 RSDP of the configuration table (0 when
/// absent).
fn config_tables() -> Result<(u64, u64), String> {
    let (mut dtb, mut rsdp) = (0u64, 0u64);
    uefi::system::with_config_table(|entries| {
        for e in entries {
            match e.guid {
                DTB_GUID => dtb = e.address as u64,
                ConfigTableEntry::ACPI2_GUID => rsdp = e.address as u64,
                _ => {}
            }
        }
    });
    if dtb != 0 {
        // SAFETY: the firmware's configuration table names a device tree
        // here; its 8-byte header is readable (identity-mapped firmware
        // memory).
        let magic = unsafe { u32::from_be(core::ptr::read_unaligned(dtb as *const u32)) };
        if magic != FDT_MAGIC {
            return Err(format!("the firmware's device tree at {dtb:#x} has a bad magic {magic:#x}"));
        }
    }
    Ok((dtb, rsdp))
}

/// Firmware memory at `pa`, `len` bytes, as a slice.
///
/// # Safety
/// `pa..pa + len` is readable (firmware memory, identity-mapped while boot
/// services run) and nothing writes it while the slice lives.
unsafe fn firmware_bytes<'a>(pa: u64, len: usize) -> &'a [u8] {
    // SAFETY: per the contract.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

/// The tables of [`ACPI_COPIED`] the firmware's XSDT lists, each checked
/// (length, checksum) and copied into a buffer.
fn acpi_tables(rsdp: u64) -> Result<alloc::vec::Vec<alloc::vec::Vec<u8>>, String> {
    let bad = |what: &str, e: hallows_acpi::Error| format!("the firmware's ACPI {what} is malformed ({e:?})");
    // SAFETY: the configuration table names an RSDP here; an ACPI 2.0 RSDP
    // is 36 bytes.
    let r = hallows_acpi::rsdp(unsafe { firmware_bytes(rsdp, 36) }).map_err(|e| bad("RSDP", e))?;
    if r.xsdt == 0 {
        return Err("the firmware's ACPI RSDP names no XSDT".into());
    }
    let table_at = |pa: u64| -> Result<&[u8], String> {
        // SAFETY: an ACPI table header (36 bytes) lies at every address the
        // RSDP and XSDT name; its length is bounded before the whole is read.
        let len = hallows_acpi::sdt_length(unsafe { firmware_bytes(pa, hallows_acpi::HEADER) }).unwrap_or(0);
        if !(hallows_acpi::HEADER as u32..=MAX_ACPI_TABLE).contains(&len) {
            return Err(format!("the ACPI table at {pa:#x} claims {len} bytes"));
        }
        // SAFETY: as above, `len` bytes as the header says, bounded.
        Ok(unsafe { firmware_bytes(pa, len as usize) })
    };
    let xsdt = hallows_acpi::sdt(table_at(r.xsdt)?, b"XSDT").map_err(|e| bad("XSDT", e))?;
    let mut out = alloc::vec::Vec::new();
    for pa in hallows_acpi::xsdt_entries(xsdt) {
        let t = table_at(pa)?;
        let Some(sig) = ACPI_COPIED.iter().find(|s| t[..4] == s[..]) else { continue };
        let t = hallows_acpi::sdt(t, sig).map_err(|e| bad(core::str::from_utf8(sig).unwrap_or("table"), e))?;
        if out.len() < MAX_ACPI_COPIES && !out.iter().any(|o: &alloc::vec::Vec<u8>| o[..4] == sig[..]) {
            out.push(t.to_vec());
        }
    }
    Ok(out)
}

/// The total size of the device tree at `dtb`, bounded.
///
/// # Safety
/// `dtb` points at a readable FDT header.
unsafe fn fdt_size(dtb: u64) -> Result<usize, String> {
    // SAFETY: per the contract, the header (8 bytes and more) is readable.
    let total = u32::from_be(unsafe { core::ptr::read_unaligned((dtb + 4) as *const u32) }) as usize;
    if !(40..=MAX_DTB).contains(&total) {
        return Err(format!("the firmware's device tree claims {total} bytes"));
    }
    Ok(total)
}

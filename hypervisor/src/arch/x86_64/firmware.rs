//! What the firmware tells us about the machine: the RAM ranges of the
//! multiboot memory map, and from the ACPI MADT the local APIC ids and the
//! I/O APICs (their MMIO base and first GSI). All are copied out at boot
//! (the structures may lie where partitions go).
//!
//! The RSDP is searched where ACPI says it may be: the first KiB of the
//! EBDA and the BIOS area 0xE0000..0xFFFFF, on 16-byte boundaries. From
//! revision 2 on it names an XSDT (64-bit entries), which is used when
//! present: QEMU's `microvm` firmware gives an XSDT only (its RSDT address
//! is 0), the PC BIOSes of QEMU and Bochs an RSDT only.

use hallows_table::MemRange;

pub const MAX_FACTS: usize = 16;
/// I/O APICs the hypervisor keeps track of.
pub const MAX_IOAPICS: usize = 8;

pub const MULTIBOOT_MAGIC: u64 = 0x2BAD_B002;

/// One I/O APIC of the MADT: its registers at `base` (4 KiB of MMIO),
/// its pins are GSIs `gsi_base..`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ioapic {
    pub id: u8,
    pub base: u64,
    pub gsi_base: u32,
}

#[derive(Debug)]
pub struct Facts {
    pub ram: [MemRange; MAX_FACTS],
    pub ram_count: usize,
    pub cpus: [u64; MAX_FACTS],
    pub cpu_count: usize,
    pub ioapics: [Ioapic; MAX_IOAPICS],
    pub ioapic_count: usize,
}

fn read32(pa: u64) -> u32 {
    // SAFETY: the boot map identity-maps the first 4 GiB; callers only pass
    // addresses below 4 GiB inside firmware structures they have bounded.
    unsafe { core::ptr::read_unaligned(pa as *const u32) }
}

fn read64(pa: u64) -> u64 {
    // SAFETY: as `read32`.
    unsafe { core::ptr::read_unaligned(pa as *const u64) }
}

fn read16(pa: u64) -> u16 {
    // SAFETY: as `read32`.
    unsafe { core::ptr::read_unaligned(pa as *const u16) }
}

fn read8(pa: u64) -> u8 {
    // SAFETY: as `read32`.
    unsafe { core::ptr::read_volatile(pa as *const u8) }
}

const FOUR_GIB: u64 = 1 << 32;

/// Reads the multiboot memory map (type 1 = available RAM) and the MADT.
pub fn read(magic: u64, mbi: u64) -> Result<Facts, &'static str> {
    let mut f = Facts {
        ram: [MemRange::default(); MAX_FACTS],
        ram_count: 0,
        cpus: [0; MAX_FACTS],
        cpu_count: 0,
        ioapics: [Ioapic::default(); MAX_IOAPICS],
        ioapic_count: 0,
    };
    if magic == hallows_table::handoff::HANDOFF_EAX as u64 {
        // The UEFI loader: RAM from the UEFI memory map, the MADT through
        // the RSDP of the EFI configuration table (UEFI firmware need not
        // leave one in the BIOS area).
        let h = super::phys::handoff(mbi, &[MemRange { base: 0, size: FOUR_GIB }])
            .ok_or("eax names the UEFI hand-off, but ebx points at none")??;
        for r in h.ram().iter().take(MAX_FACTS) {
            f.ram[f.ram_count] = *r;
            f.ram_count += 1;
        }
        f.cpus[0] = super::cpu::apic_id();
        f.cpu_count = 1;
        if let Some(madt) = find_madt(Some(h.rsdp).filter(|&r| r != 0)) {
            read_madt(madt, &mut f);
        }
        return Ok(f);
    }
    if magic != MULTIBOOT_MAGIC {
        return Err("not started by a multiboot loader (no memory map)");
    }
    if mbi == 0 || mbi + 52 > FOUR_GIB {
        return Err("multiboot information out of range");
    }
    if read32(mbi) & (1 << 6) == 0 {
        return Err("the loader gave no memory map");
    }
    let len = read32(mbi + 44) as u64;
    let addr = read32(mbi + 48) as u64;
    if addr + len > FOUR_GIB || len > 64 * 1024 {
        return Err("memory map out of range");
    }
    let mut at = addr;
    while at + 24 <= addr + len {
        let size = read32(at) as u64;
        let base = read64(at + 4);
        let length = read64(at + 12);
        let kind = read32(at + 20);
        if kind == 1 && f.ram_count < MAX_FACTS {
            f.ram[f.ram_count] = MemRange { base, size: length };
            f.ram_count += 1;
        }
        if size < 20 {
            break;
        }
        at += size + 4;
    }
    f.cpus[0] = super::cpu::apic_id();
    f.cpu_count = 1;
    if let Some(madt) = find_madt(None) {
        read_madt(madt, &mut f);
    }
    Ok(f)
}

fn checksum_ok(pa: u64, len: u64) -> bool {
    (0..len).fold(0u8, |s, i| s.wrapping_add(read8(pa + i))) == 0
}

/// The RSDP: in the first KiB of the EBDA (its segment at 0x40E) or in
/// 0xE0000..0xFFFFF, 16-byte aligned, with a valid checksum.
fn find_rsdp() -> Option<u64> {
    let ebda = (read16(0x40E) as u64) << 4;
    let ebda = (0x8_0000..0xA_0000).contains(&ebda).then_some(ebda..ebda + 1024);
    ebda.into_iter()
        .flatten()
        .step_by(16)
        .chain((0xE_0000u64..0x10_0000).step_by(16))
        .find(|&a| read64(a) == u64::from_le_bytes(*b"RSD PTR ") && checksum_ok(a, 20))
}

/// A system description table at `pa` with signature `sig`, whole and with
/// a valid checksum: its length.
fn table(pa: u64, sig: &[u8; 4]) -> Option<u64> {
    if pa == 0 || pa + 36 > FOUR_GIB || &read32(pa).to_le_bytes() != sig {
        return None;
    }
    let len = read32(pa + 4) as u64;
    (36..=64 * 1024).contains(&len).then_some(len).filter(|&l| pa + l <= FOUR_GIB && checksum_ok(pa, l))
}

/// The MADT ("APIC"), through the XSDT where the RSDP (revision 2 or
/// later) names one, else through the RSDT. The RSDP is `given` (by the
/// UEFI loader; checked here like a found one) or searched for.
fn find_madt(given: Option<u64>) -> Option<u64> {
    let rsdp = match given {
        Some(r) => Some(r).filter(|&r| r + 36 <= FOUR_GIB && read64(r) == u64::from_le_bytes(*b"RSD PTR ") && checksum_ok(r, 20))?,
        None => find_rsdp()?,
    };
    let xsdt = if read8(rsdp + 15) >= 2 && checksum_ok(rsdp, (read32(rsdp + 20) as u64).clamp(36, 64)) {
        read64(rsdp + 24)
    } else {
        0
    };
    let (root, sig, entry) = if xsdt != 0 && xsdt < FOUR_GIB { (xsdt, b"XSDT", 8) } else { (read32(rsdp + 16) as u64, b"RSDT", 4) };
    let len = table(root, sig)?;
    (0..(len - 36) / entry).find_map(|i| {
        let at = root + 36 + i * entry;
        let t = if entry == 8 { read64(at) } else { read32(at) as u64 };
        table(t, b"APIC").map(|_| t)
    })
}

/// Adds the enabled local APICs (type 0) and the I/O APICs (type 1) of the
/// MADT at `t` to `f`.
fn read_madt(t: u64, f: &mut Facts) {
    let Some(len) = table(t, b"APIC") else { return };
    let mut at = t + 44;
    while at + 2 <= t + len {
        let (kind, elen) = (read8(at), read8(at + 1) as u64);
        if elen < 2 || at + elen > t + len {
            break;
        }
        match kind {
            // Processor local APIC: ACPI id, APIC id, flags (bit 0 enabled).
            0 if elen >= 8 && read32(at + 4) & 1 != 0 => {
                let id = read8(at + 3) as u64;
                if !f.cpus[..f.cpu_count].contains(&id) && f.cpu_count < MAX_FACTS {
                    f.cpus[f.cpu_count] = id;
                    f.cpu_count += 1;
                }
            }
            // I/O APIC: id, reserved, address, GSI base.
            1 if elen >= 12 && f.ioapic_count < MAX_IOAPICS => {
                f.ioapics[f.ioapic_count] = Ioapic { id: read8(at + 2), base: read32(at + 4) as u64, gsi_base: read32(at + 8) };
                f.ioapic_count += 1;
            }
            _ => {}
        }
        at += elen;
    }
}

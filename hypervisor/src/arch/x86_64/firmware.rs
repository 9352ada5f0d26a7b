//! What the firmware tells us about the machine: the RAM ranges of the
//! multiboot memory map and the local APIC ids of the ACPI MADT. Both are
//! copied out at boot (the structures may lie where partitions go).

use hallows_table::MemRange;

pub const MAX_FACTS: usize = 16;

pub const MULTIBOOT_MAGIC: u64 = 0x2BAD_B002;

#[derive(Debug)]
pub struct Facts {
    pub ram: [MemRange; MAX_FACTS],
    pub ram_count: usize,
    pub cpus: [u64; MAX_FACTS],
    pub cpu_count: usize,
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

fn read8(pa: u64) -> u8 {
    // SAFETY: as `read32`.
    unsafe { core::ptr::read_volatile(pa as *const u8) }
}

const FOUR_GIB: u64 = 1 << 32;

/// Reads the multiboot memory map (type 1 = available RAM) and the MADT.
pub fn read(magic: u64, mbi: u64) -> Result<Facts, &'static str> {
    let mut f = Facts { ram: [MemRange::default(); MAX_FACTS], ram_count: 0, cpus: [0; MAX_FACTS], cpu_count: 0 };
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
    madt_cpus(&mut f);
    Ok(f)
}

fn checksum_ok(pa: u64, len: u64) -> bool {
    (0..len).fold(0u8, |s, i| s.wrapping_add(read8(pa + i))) == 0
}

/// Adds the enabled local APICs of the MADT (if ACPI is there) to `f.cpus`.
fn madt_cpus(f: &mut Facts) {
    let Some(rsdp) = (0xE_0000u64..0x10_0000).step_by(16).find(|&a| read64(a) == u64::from_le_bytes(*b"RSD PTR "))
    else {
        return;
    };
    if !checksum_ok(rsdp, 20) {
        return;
    }
    let rsdt = read32(rsdp + 16) as u64;
    if rsdt == 0 || rsdt + 36 > FOUR_GIB || &read32(rsdt).to_le_bytes() != b"RSDT" {
        return;
    }
    let rsdt_len = (read32(rsdt + 4) as u64).min(4096);
    for i in 0..(rsdt_len.saturating_sub(36) / 4) {
        let t = read32(rsdt + 36 + i * 4) as u64;
        if t == 0 || t + 44 > FOUR_GIB || &read32(t).to_le_bytes() != b"APIC" {
            continue;
        }
        let len = (read32(t + 4) as u64).min(64 * 1024);
        let mut at = t + 44;
        while at + 2 <= t + len {
            let (kind, elen) = (read8(at), read8(at + 1) as u64);
            if elen < 2 {
                break;
            }
            // Type 0: processor local APIC (ACPI id, APIC id, flags).
            if kind == 0 && elen >= 8 && read32(at + 4) & 1 != 0 {
                let id = read8(at + 3) as u64;
                if !f.cpus[..f.cpu_count].contains(&id) && f.cpu_count < MAX_FACTS {
                    f.cpus[f.cpu_count] = id;
                    f.cpu_count += 1;
                }
            }
            at += elen;
        }
        return;
    }
}

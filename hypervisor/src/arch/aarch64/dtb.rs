//! What the firmware's device tree says about the machine, read once at
//! boot (the DTB may sit where a partition's RAM goes, so nothing keeps
//! pointing into it afterwards).

use fdt::Fdt;
use hallows_table::{MemRange, MAX_CORES, MAX_RAM_RANGES};

/// Facts extracted from the DTB, copied out of it.
#[derive(Debug, Default)]
pub struct DtFacts {
    pub ram: [MemRange; MAX_RAM_RANGES],
    pub ram_count: usize,
    pub cpus: [u64; MAX_CORES],
    pub cpu_count: usize,
    pub psci_smc: bool,
}

const FDT_MAGIC: u32 = 0xd00d_feed;

/// Reads the DTB at physical `dtb`, which must lie inside `ram` (the board's
/// RAM as the system table gives it; EL2 maps all of it).
pub fn read(dtb: u64, ram: &[MemRange]) -> Result<DtFacts, &'static str> {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return Err("no device tree was passed in x0");
    }
    let header = MemRange { base: dtb, size: 8 };
    if !ram.iter().any(|r| r.contains(&header)) {
        return Err("the device tree pointer is outside the board's RAM");
    }
    // SAFETY: the 8 header bytes lie in RAM mapped by EL2 (checked above).
    let (magic, total) = unsafe {
        let p = dtb as *const u32;
        (u32::from_be(core::ptr::read_volatile(p)), u32::from_be(core::ptr::read_volatile(p.add(1))))
    };
    if magic != FDT_MAGIC {
        return Err("x0 does not point at a device tree (bad magic)");
    }
    let whole = MemRange { base: dtb, size: total as u64 };
    if !ram.iter().any(|r| r.contains(&whole)) {
        return Err("the device tree extends past the board's RAM");
    }
    // SAFETY: `[dtb, dtb + total)` lies in EL2-mapped RAM (checked above)
    // and nothing writes it until every partition has been loaded, after
    // the last use of these facts' source.
    let bytes = unsafe { core::slice::from_raw_parts(dtb as *const u8, total as usize) };
    let fdt = Fdt::new(bytes).map_err(|_| "the device tree is malformed")?;
    let mut facts = DtFacts::default();
    for region in fdt.memory().regions() {
        if facts.ram_count == MAX_RAM_RANGES {
            break;
        }
        facts.ram[facts.ram_count] =
            MemRange { base: region.starting_address as u64, size: region.size.unwrap_or(0) as u64 };
        facts.ram_count += 1;
    }
    for cpu in fdt.cpus() {
        if facts.cpu_count == MAX_CORES {
            break;
        }
        facts.cpus[facts.cpu_count] = cpu.ids().first() as u64;
        facts.cpu_count += 1;
    }
    facts.psci_smc = fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|p| p.as_str())
        .is_some_and(|m| m == "smc");
    Ok(facts)
}

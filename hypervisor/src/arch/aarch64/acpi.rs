//! arm64 machine facts from ACPI, for firmware that gives ACPI tables and
//! no device tree (AAVMF by default, arm64 servers): the UEFI loader copies
//! the MADT, GTDT, SPCR and FADT into the hypervisor's reservation
//! (`hallows_table::handoff`); `hallows_acpi` reads them with every length
//! and checksum checked. The cores are the MADT's enabled GIC CPU
//! interfaces; the GIC, the timer interrupts and the console must be the
//! board's; PSCI must be reachable through SMC (FADT).

use hallows_table::handoff::{HandOff, MAX_ACPI_TABLE};
use hallows_table::{Board, MemRange, MAX_CORES, MAX_RAM_RANGES};

use super::dtb::DtFacts;
use super::gic::{HYP_TIMER_PPI, VIRTUAL_TIMER_PPI};
use crate::system::BootError;

/// The loader's copy of table `sig`, if it made one.
fn table(h: &HandOff, sig: &[u8; 4], ram: &[MemRange]) -> Result<Option<&'static [u8]>, BootError> {
    let Some(c) = h.acpi_table(sig) else { return Ok(None) };
    let r = MemRange { base: c.address, size: c.length as u64 };
    if c.length > MAX_ACPI_TABLE || !ram.iter().any(|m| m.contains(&r)) {
        return Err(BootError::Firmware("an ACPI table's copy lies outside the board's RAM"));
    }
    // SAFETY: the copy lies in RAM EL2 maps (checked above), in the
    // hypervisor's reservation after the payload, which nothing writes.
    Ok(Some(unsafe { core::slice::from_raw_parts(c.address as *const u8, c.length as usize) }))
}

/// The cores and PSCI conduit from the ACPI tables, once the GIC, timer and
/// console they describe are checked against `board`.
pub fn facts(h: &HandOff, ram: &[MemRange], board: &Board) -> Result<DtFacts, BootError> {
    let madt = table(h, b"APIC", ram)?.ok_or(BootError::Firmware("the firmware gives neither a device tree nor an ACPI MADT"))?;
    let m = hallows_acpi::arm_madt(madt).map_err(|_| BootError::Firmware("the ACPI MADT is malformed"))?;
    match m.gicd {
        None => return Err(BootError::Firmware("the ACPI MADT lists no GIC distributor")),
        Some((base, _)) if base != board.gic_dist.base => {
            return Err(BootError::Board("the firmware's GIC distributor (ACPI MADT) is not the board's; it is at", base))
        }
        // Version 0: not given; 3 or 4: GICv3 and later.
        Some((_, v)) if !matches!(v, 0 | 3 | 4) => return Err(BootError::Board("the firmware's GIC (ACPI MADT) is not GICv3 but version", v as u64)),
        Some(_) => {}
    }
    if !m.gicr[..m.gicr_count].iter().any(|&(base, _)| base == board.gic_redist.base) {
        return Err(BootError::Board("the firmware's GIC redistributors (ACPI MADT) are not the board's; the first is at", m.gicr[0].0));
    }
    if let Some(t) = table(h, b"GTDT", ram)? {
        let g = hallows_acpi::gtdt(t).map_err(|_| BootError::Firmware("the ACPI GTDT is malformed"))?;
        if g.el2_physical != HYP_TIMER_PPI || g.el1_virtual != VIRTUAL_TIMER_PPI {
            return Err(BootError::Board("the firmware's timer interrupts (ACPI GTDT) are not the architected PPIs; EL2 timer", g.el2_physical as u64));
        }
    }
    if let Some(t) = table(h, b"SPCR", ram)? {
        let s = hallows_acpi::spcr(t).map_err(|_| BootError::Firmware("the ACPI SPCR is malformed"))?;
        if s.space == 0 && s.base != board.console.base {
            return Err(BootError::Board("the firmware's console UART (ACPI SPCR) is not the board's; it is at", s.base));
        }
    }
    let psci = match table(h, b"FACP", ram)? {
        Some(t) => hallows_acpi::fadt_arm_psci(t).map_err(|_| BootError::Firmware("the ACPI FADT is malformed"))?,
        None => None,
    };
    let mut f = DtFacts { ram: [MemRange::default(); MAX_RAM_RANGES], ram_count: 0, cpus: [0; MAX_CORES], cpu_count: 0, psci_smc: psci == Some(false) };
    for &mpidr in m.mpidr[..m.cpu_count].iter().take(MAX_CORES) {
        f.cpus[f.cpu_count] = mpidr;
        f.cpu_count += 1;
    }
    Ok(f)
}

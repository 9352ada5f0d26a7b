//! Readers of the ACPI tables the hypervisor takes machine facts from, on
//! byte slices: every length, offset and checksum is checked, and a bad
//! table is an [`Error`], never a panic or a read out of bounds
//! (`tests/tables.rs`: tables dumped from QEMU's firmware, and corrupted
//! ones). No allocation; fixed-size results.
//!
//! - [`rsdp`] and [`xsdt_entries`]: the root pointer (ACPI 2.0+) and the
//!   64-bit table list.
//! - [`sdt`]: any system description table, whole and with a valid
//!   checksum.
//! - [`arm_madt`]: arm64's GIC CPU interfaces (MPIDRs of enabled cores),
//!   distributor and redistributor ranges; [`gtdt`]: the generic timer's
//!   interrupts; [`spcr`]: the console UART; [`fadt_arm_psci`]: whether
//!   PSCI is implemented and through which call.
#![no_std]
#![forbid(unsafe_code)]

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the structure's fixed part.
    TooShort,
    /// Not the signature asked for.
    BadSignature,
    /// The length field is below the header's size or beyond the bytes.
    BadLength,
    /// The bytes do not sum to 0 (mod 256).
    BadChecksum,
    /// A sub-structure's length is too small for its type or runs past the
    /// table.
    BadEntry,
    /// More entries of a kind than a reader holds.
    TooMany,
}

/// Size of the common header of every system description table.
pub const HEADER: usize = 36;

fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Whether `b` sums to 0 modulo 256.
pub fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x)) == 0
}

/// The length field of the table header at the start of `b`, if the header
/// is there (for a reader that must learn how much to copy).
pub fn sdt_length(b: &[u8]) -> Option<u32> {
    (b.len() >= HEADER).then(|| u32_at(b, 4)).flatten()
}

/// The table with signature `sig` at the start of `b` (which may be
/// longer): its bytes, `length` long, once the length and the checksum
/// are checked.
pub fn sdt<'a>(b: &'a [u8], sig: &[u8; 4]) -> Result<&'a [u8], Error> {
    if b.len() < HEADER {
        return Err(Error::TooShort);
    }
    if &b[..4] != sig {
        return Err(Error::BadSignature);
    }
    let len = u32_at(b, 4).ok_or(Error::TooShort)? as usize;
    if len < HEADER || len > b.len() {
        return Err(Error::BadLength);
    }
    let t = &b[..len];
    if !checksum_ok(t) {
        return Err(Error::BadChecksum);
    }
    Ok(t)
}

/// The root system description pointer (ACPI 2.0 or later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    pub revision: u8,
    pub rsdt: u32,
    /// 0 before revision 2.
    pub xsdt: u64,
}

/// Reads the RSDP at the start of `b`: signature, the ACPI 1.0 checksum
/// over 20 bytes and, from revision 2 on, the length and the extended
/// checksum.
pub fn rsdp(b: &[u8]) -> Result<Rsdp, Error> {
    if b.len() < 20 {
        return Err(Error::TooShort);
    }
    if &b[..8] != b"RSD PTR " {
        return Err(Error::BadSignature);
    }
    if !checksum_ok(&b[..20]) {
        return Err(Error::BadChecksum);
    }
    let revision = b[15];
    let rsdt = u32_at(b, 16).ok_or(Error::TooShort)?;
    if revision < 2 {
        return Ok(Rsdp { revision, rsdt, xsdt: 0 });
    }
    let len = u32_at(b, 20).ok_or(Error::TooShort)? as usize;
    if !(36..=b.len()).contains(&len) {
        return Err(Error::BadLength);
    }
    if !checksum_ok(&b[..len]) {
        return Err(Error::BadChecksum);
    }
    Ok(Rsdp { revision, rsdt, xsdt: u64_at(b, 24).ok_or(Error::TooShort)? })
}

/// The table addresses of a checked XSDT (`sdt(b, b"XSDT")`).
pub fn xsdt_entries(xsdt: &[u8]) -> impl Iterator<Item = u64> + '_ {
    xsdt.get(HEADER..).unwrap_or(&[]).chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
}

/// The interrupt controller structures of a checked MADT: `(type, bytes)`,
/// each whole; a structure whose length is under 2 or runs past the table
/// ends the walk with [`Error::BadEntry`].
pub fn madt_entries(madt: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), Error>> + '_ {
    let mut at = HEADER + 8;
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed || at >= madt.len() {
            return None;
        }
        let (kind, len) = match (u8_at(madt, at), u8_at(madt, at + 1)) {
            (Some(k), Some(l)) => (k, l as usize),
            _ => {
                failed = true;
                return Some(Err(Error::BadEntry));
            }
        };
        let Some(entry) = madt.get(at..at + len).filter(|_| len >= 2) else {
            failed = true;
            return Some(Err(Error::BadEntry));
        };
        at += len;
        Some(Ok((kind, entry)))
    })
}

/// Cores, GIC redistributor ranges a reader holds.
pub const MAX_CPUS: usize = 64;
pub const MAX_GICR: usize = 8;

/// What arm64's MADT says about the GIC and the cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArmMadt {
    /// MPIDRs (affinity fields) of the enabled GIC CPU interfaces.
    pub mpidr: [u64; MAX_CPUS],
    pub cpu_count: usize,
    /// The distributor's base and GIC version (3 = GICv3), if listed.
    pub gicd: Option<(u64, u8)>,
    /// Redistributor discovery ranges (base, length).
    pub gicr: [(u64, u32); MAX_GICR],
    pub gicr_count: usize,
}

/// GICC flags bit 0: the core is enabled; bit 3 (ACPI 6.5): online capable.
const GICC_ENABLED: u32 = 1;

/// Reads a checked (or unchecked: it is checked here) MADT for arm64.
pub fn arm_madt(b: &[u8]) -> Result<ArmMadt, Error> {
    let t = sdt(b, b"APIC")?;
    if t.len() < HEADER + 8 {
        return Err(Error::TooShort);
    }
    let mut m = ArmMadt { mpidr: [0; MAX_CPUS], cpu_count: 0, gicd: None, gicr: [(0, 0); MAX_GICR], gicr_count: 0 };
    for e in madt_entries(t) {
        let (kind, e) = e?;
        match kind {
            // GIC CPU interface (GICC): flags at 12, MPIDR at 68 (ACPI 5.1+:
            // at least 76 bytes).
            0x0b => {
                let (Some(flags), Some(mpidr)) = (u32_at(e, 12), u64_at(e, 68)) else { return Err(Error::BadEntry) };
                if e.len() < 76 {
                    return Err(Error::BadEntry);
                }
                if flags & GICC_ENABLED != 0 {
                    if m.cpu_count == MAX_CPUS {
                        return Err(Error::TooMany);
                    }
                    m.mpidr[m.cpu_count] = mpidr & 0xff_00ff_ffff;
                    m.cpu_count += 1;
                }
            }
            // GIC distributor (GICD): base at 8, version at 20.
            0x0c => {
                let (Some(base), Some(version)) = (u64_at(e, 8), u8_at(e, 20)) else { return Err(Error::BadEntry) };
                if e.len() < 24 {
                    return Err(Error::BadEntry);
                }
                m.gicd = Some((base, version));
            }
            // GIC redistributor (GICR): base at 4, length at 12.
            0x0e => {
                let (Some(base), Some(len)) = (u64_at(e, 4), u32_at(e, 12)) else { return Err(Error::BadEntry) };
                if e.len() < 16 {
                    return Err(Error::BadEntry);
                }
                if m.gicr_count == MAX_GICR {
                    return Err(Error::TooMany);
                }
                m.gicr[m.gicr_count] = (base, len);
                m.gicr_count += 1;
            }
            _ => {}
        }
    }
    Ok(m)
}

/// The generic timer's interrupts (GSIVs: PPIs 16..31) from the GTDT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gtdt {
    pub el1_physical: u32,
    pub el1_virtual: u32,
    /// The non-secure EL2 physical timer: the hypervisor's own.
    pub el2_physical: u32,
}

/// Reads the GTDT's non-secure EL1, virtual and EL2 timer interrupts.
pub fn gtdt(b: &[u8]) -> Result<Gtdt, Error> {
    let t = sdt(b, b"GTDT")?;
    let (Some(el1_physical), Some(el1_virtual), Some(el2_physical)) = (u32_at(t, 56), u32_at(t, 64), u32_at(t, 72)) else {
        return Err(Error::TooShort);
    };
    Ok(Gtdt { el1_physical, el1_virtual, el2_physical })
}

/// The console the SPCR names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spcr {
    /// Interface type (3 = ARM PL011, 0 = 16550, 0x0e = ARM SBSA generic).
    pub interface: u8,
    /// Address space of `base` (0 = memory, 1 = I/O ports).
    pub space: u8,
    pub base: u64,
    /// The UART's interrupt (GSIV), if the table gives one (interrupt type
    /// bit 3: GIC).
    pub gsiv: Option<u32>,
}

/// Reads the SPCR's UART.
pub fn spcr(b: &[u8]) -> Result<Spcr, Error> {
    let t = sdt(b, b"SPCR")?;
    let (Some(interface), Some(space), Some(base), Some(kind), Some(gsiv)) = (u8_at(t, 36), u8_at(t, 40), u64_at(t, 44), u8_at(t, 52), u32_at(t, 54)) else {
        return Err(Error::TooShort);
    };
    Ok(Spcr { interface, space, base, gsiv: (kind & 0x08 != 0).then_some(gsiv) })
}

/// PSCI as the FADT's ARM boot architecture flags tell it (ACPI 5.1+, at
/// offset 129): `None` if PSCI is not implemented, else whether calls use
/// HVC (`true`) or SMC (`false`).
pub fn fadt_arm_psci(b: &[u8]) -> Result<Option<bool>, Error> {
    let t = sdt(b, b"FACP")?;
    let flags = u16_at(t, 129).ok_or(Error::TooShort)?;
    Ok((flags & 1 != 0).then_some(flags & 2 != 0))
}

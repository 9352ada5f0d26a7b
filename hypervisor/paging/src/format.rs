//! Descriptor encodings (VMSAv8-64, 4 KiB granule).
//!
//! Bit positions are from the Arm ARM, D8.3 "Translation table descriptor
//! formats". Both formats here use 3 levels (39 bits of input address):
//! enough for every board we describe, and it keeps a partition's tables to a
//! handful of pages.

use crate::{Attr, Format, MemKind};

const VALID: u64 = 1 << 0;
/// Table descriptor above the last level; page descriptor at the last level.
const TABLE_OR_PAGE: u64 = 1 << 1;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

fn leaf_bits(level: usize, levels: usize) -> Option<u64> {
    match levels - 1 - level {
        0 => Some(VALID | TABLE_OR_PAGE),
        // 2 MiB and 1 GiB blocks.
        1 | 2 => Some(VALID),
        _ => None,
    }
}

/// Aarch64 stage-2 (IPA to PA) descriptors, as used by VTTBR_EL2.
#[derive(Debug)]
pub enum Stage2 {}

mod s2 {
    /// MemAttr[5:2]: 0b1111 Normal outer/inner write-back; 0b0001 Device-nGnRE.
    pub const MEMATTR_NORMAL: u64 = 0b1111 << 2;
    pub const MEMATTR_DEVICE: u64 = 0b0001 << 2;
    pub const MEMATTR_MASK: u64 = 0b1111 << 2;
    /// S2AP[7:6]: bit 6 read, bit 7 write.
    pub const S2AP_R: u64 = 1 << 6;
    pub const S2AP_W: u64 = 1 << 7;
    /// XN[54:53] = 0b10: not executable at EL1 or EL0.
    pub const XN: u64 = 0b10 << 53;
}

impl Format for Stage2 {
    const LEVELS: usize = 3;

    fn table(pa: u64) -> u64 {
        (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE
    }

    fn leaf(pa: u64, level: usize, attr: Attr) -> Option<u64> {
        let mut d = leaf_bits(level, Self::LEVELS)? | (pa & ADDR_MASK) | AF;
        d |= match attr.kind {
            MemKind::Normal => s2::MEMATTR_NORMAL | SH_INNER,
            MemKind::Device => s2::MEMATTR_DEVICE,
        };
        if attr.read {
            d |= s2::S2AP_R;
        }
        if attr.write {
            d |= s2::S2AP_W;
        }
        if !attr.exec {
            d |= s2::XN;
        }
        Some(d)
    }

    fn is_valid(desc: u64) -> bool {
        desc & VALID != 0
    }

    fn is_table(desc: u64, level: usize) -> bool {
        level + 1 < Self::LEVELS && desc & TABLE_OR_PAGE != 0
    }

    fn address(desc: u64) -> u64 {
        desc & ADDR_MASK
    }

    fn attr(desc: u64) -> Attr {
        Attr {
            read: desc & s2::S2AP_R != 0,
            write: desc & s2::S2AP_W != 0,
            exec: desc & s2::XN == 0,
            kind: if desc & s2::MEMATTR_MASK == s2::MEMATTR_NORMAL { MemKind::Normal } else { MemKind::Device },
        }
    }
}

/// Aarch64 stage-1 descriptors of the (non-VHE) EL2 translation regime.
///
/// Memory attributes index MAIR_EL2: index 0 must be Normal write-back
/// (0xff), index 1 Device-nGnRE (0x04). See [`El2Stage1::MAIR`].
#[derive(Debug)]
pub enum El2Stage1 {}

impl El2Stage1 {
    /// The MAIR_EL2 value these descriptors assume.
    pub const MAIR: u64 = 0xff | (0x04 << 8);
}

mod s1 {
    pub const ATTR_NORMAL: u64 = 0 << 2;
    pub const ATTR_DEVICE: u64 = 1 << 2;
    pub const ATTR_MASK: u64 = 0b111 << 2;
    /// AP[1] is RES1 in the EL2 regime; AP[2] (bit 7) makes the page read-only.
    pub const AP1: u64 = 1 << 6;
    pub const AP_RO: u64 = 1 << 7;
    /// XN (bit 54) in a single-privilege regime.
    pub const XN: u64 = 1 << 54;
}

impl Format for El2Stage1 {
    const LEVELS: usize = 3;

    fn table(pa: u64) -> u64 {
        (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE
    }

    fn leaf(pa: u64, level: usize, attr: Attr) -> Option<u64> {
        if !attr.read {
            // Stage 1 cannot express "no access" on a valid entry.
            return None;
        }
        let mut d = leaf_bits(level, Self::LEVELS)? | (pa & ADDR_MASK) | AF | s1::AP1;
        d |= match attr.kind {
            MemKind::Normal => s1::ATTR_NORMAL | SH_INNER,
            MemKind::Device => s1::ATTR_DEVICE,
        };
        if !attr.write {
            d |= s1::AP_RO;
        }
        if !attr.exec {
            d |= s1::XN;
        }
        Some(d)
    }

    fn is_valid(desc: u64) -> bool {
        desc & VALID != 0
    }

    fn is_table(desc: u64, level: usize) -> bool {
        level + 1 < Self::LEVELS && desc & TABLE_OR_PAGE != 0
    }

    fn address(desc: u64) -> u64 {
        desc & ADDR_MASK
    }

    fn attr(desc: u64) -> Attr {
        Attr {
            read: true,
            write: desc & s1::AP_RO == 0,
            exec: desc & s1::XN == 0,
            kind: if desc & s1::ATTR_MASK == s1::ATTR_NORMAL { MemKind::Normal } else { MemKind::Device },
        }
    }
}

/// x86-64 4-level entries shared by NPT (which uses the ordinary long-mode
/// format) and, for the table layout, EPT.
const X86_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// PS: a 2 MiB or 1 GiB leaf above the last level (both formats).
const X86_PS: u64 = 1 << 7;

/// Which levels of a 4-level x86 table may hold a leaf: 4 KiB pages and
/// 2 MiB blocks. 1 GiB pages are left out: not every CPU that has nested
/// paging supports them, and partitions are small.
fn x86_leaf_level(level: usize, levels: usize) -> Option<bool> {
    match levels - 1 - level {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// AMD nested page tables (NPT, SVM): the long-mode page-table format,
/// 4 levels (48 bits of guest-physical address).
///
/// Nested walks are user accesses, so every entry sets U/S; execute-never
/// is bit 63, which needs `EFER.NXE` set on the host. Memory type comes
/// from the host PAT index (PWT, PCD): 0 is write-back with the power-on PAT,
/// PCD|PWT uncacheable. NPT cannot express "present but unreadable", so a
/// mapping without `read` is refused.
#[derive(Debug)]
pub enum Npt {}

mod npt {
    pub const P: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const US: u64 = 1 << 2;
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    /// Accessed and dirty preset: the walker never writes the tables.
    pub const A: u64 = 1 << 5;
    pub const D: u64 = 1 << 6;
    pub const NX: u64 = 1 << 63;
}

impl Format for Npt {
    const LEVELS: usize = 4;

    fn table(pa: u64) -> u64 {
        (pa & X86_ADDR_MASK) | npt::P | npt::RW | npt::US | npt::A
    }

    fn leaf(pa: u64, level: usize, attr: Attr) -> Option<u64> {
        if !attr.read {
            return None;
        }
        let large = x86_leaf_level(level, Self::LEVELS)?;
        let mut d = (pa & X86_ADDR_MASK) | npt::P | npt::US | npt::A | npt::D;
        if large {
            d |= X86_PS;
        }
        if attr.write {
            d |= npt::RW;
        }
        if !attr.exec {
            d |= npt::NX;
        }
        if attr.kind == MemKind::Device {
            d |= npt::PCD | npt::PWT;
        }
        Some(d)
    }

    fn is_valid(desc: u64) -> bool {
        desc & npt::P != 0
    }

    fn is_table(desc: u64, level: usize) -> bool {
        level + 1 < Self::LEVELS && desc & X86_PS == 0
    }

    fn address(desc: u64) -> u64 {
        desc & X86_ADDR_MASK
    }

    fn attr(desc: u64) -> Attr {
        Attr {
            read: true,
            write: desc & npt::RW != 0,
            exec: desc & npt::NX == 0,
            kind: if desc & npt::PCD != 0 { MemKind::Device } else { MemKind::Normal },
        }
    }
}

/// Intel extended page tables (EPT, VMX): 4 levels, read/write/execute bits
/// 0..2, the memory type in bits 3..5 of a leaf (6 write-back, 0
/// uncacheable) with "ignore PAT" (bit 6) set so the guest cannot weaken
/// it. Write without read is a misconfiguration, so it is refused (the
/// builder already refuses it for every format); execute-only mappings need
/// a CPU capability the hypervisor does not check, so they are refused too.
#[derive(Debug)]
pub enum Ept {}

mod ept {
    pub const R: u64 = 1 << 0;
    pub const W: u64 = 1 << 1;
    pub const X: u64 = 1 << 2;
    pub const MT_WB: u64 = 6 << 3;
    pub const MT_UC: u64 = 0;
    pub const MT_MASK: u64 = 7 << 3;
    pub const IGNORE_PAT: u64 = 1 << 6;
}

impl Format for Ept {
    const LEVELS: usize = 4;

    fn table(pa: u64) -> u64 {
        (pa & X86_ADDR_MASK) | ept::R | ept::W | ept::X
    }

    fn leaf(pa: u64, level: usize, attr: Attr) -> Option<u64> {
        if !attr.read {
            return None;
        }
        let large = x86_leaf_level(level, Self::LEVELS)?;
        let mut d = (pa & X86_ADDR_MASK) | ept::R | ept::IGNORE_PAT;
        if large {
            d |= X86_PS;
        }
        if attr.write {
            d |= ept::W;
        }
        if attr.exec {
            d |= ept::X;
        }
        d |= match attr.kind {
            MemKind::Normal => ept::MT_WB,
            MemKind::Device => ept::MT_UC,
        };
        Some(d)
    }

    fn is_valid(desc: u64) -> bool {
        desc & (ept::R | ept::W | ept::X) != 0
    }

    fn is_table(desc: u64, level: usize) -> bool {
        level + 1 < Self::LEVELS && desc & X86_PS == 0
    }

    fn address(desc: u64) -> u64 {
        desc & X86_ADDR_MASK
    }

    fn attr(desc: u64) -> Attr {
        Attr {
            read: desc & ept::R != 0,
            write: desc & ept::W != 0,
            exec: desc & ept::X != 0,
            kind: if desc & ept::MT_MASK == ept::MT_WB { MemKind::Normal } else { MemKind::Device },
        }
    }
}

//! Host tests against emulated physical memory: table pages live in a
//! `Vec`, addressed by fake physical addresses.

extern crate std;
use std::vec::Vec;

use super::*;
use proptest::prelude::*;

/// Table pages at fake physical addresses `BASE + i * PAGE_SIZE`.
struct FakeMem {
    pages: Vec<[u64; ENTRIES]>,
    limit: usize,
}

const BASE: u64 = 0x8000_0000;

impl FakeMem {
    fn new(limit: usize) -> Self {
        FakeMem { pages: Vec::new(), limit }
    }
    fn page(&self, pa: u64) -> usize {
        assert_eq!(pa % PAGE_SIZE, 0, "table address not page aligned");
        ((pa - BASE) / PAGE_SIZE) as usize
    }
}

impl TableMemory for FakeMem {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.pages.len() == self.limit {
            return None;
        }
        self.pages.push([0; ENTRIES]);
        Some(BASE + (self.pages.len() as u64 - 1) * PAGE_SIZE)
    }
    fn read(&self, table: u64, index: usize) -> u64 {
        self.pages[self.page(table)][index]
    }
    fn write(&mut self, table: u64, index: usize, desc: u64) {
        let p = self.page(table);
        self.pages[p][index] = desc;
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[test]
fn maps_ram_with_blocks_and_translates() {
    let mut mem = FakeMem::new(64);
    let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
    t.map(&mut mem, 0x4000_0000, 0x4200_0000, 16 * MIB, Attr::RWX).unwrap();
    // Root + one level-1 table; 2 MiB blocks need no last-level table.
    assert_eq!(mem.pages.len(), 2);
    assert_eq!(t.translate(&mem, 0x4000_0000), Some((0x4200_0000, Attr::RWX)));
    assert_eq!(t.translate(&mem, 0x40ff_fff8).unwrap().0, 0x42ff_fff8);
    assert_eq!(t.translate(&mem, 0x4100_0000), None);
    assert_eq!(t.translate(&mem, 0x3fff_f000), None);
}

#[test]
fn uses_gib_blocks_when_aligned() {
    let mut mem = FakeMem::new(8);
    let mut t = PageTable::<El2Stage1>::new(&mut mem).unwrap();
    t.map(&mut mem, GIB, GIB, 2 * GIB, Attr::RWX).unwrap();
    assert_eq!(mem.pages.len(), 1, "two 1 GiB blocks live in the root");
    assert_eq!(t.translate(&mem, GIB + 12345).unwrap().0, GIB + 12345);
}

#[test]
fn unaligned_ranges_fall_back_to_pages() {
    let mut mem = FakeMem::new(64);
    let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
    // 4 KiB-aligned output forces 4 KiB pages even where the input is 2 MiB aligned.
    t.map(&mut mem, 0x4000_0000, 0x5000_1000, 2 * MIB, Attr::RW).unwrap();
    assert_eq!(mem.pages.len(), 3);
    assert_eq!(t.translate(&mem, 0x401f_f000).unwrap().0, 0x5020_0000);
}

#[test]
fn permissions_are_encoded() {
    let mut mem = FakeMem::new(64);
    let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
    t.map(&mut mem, 0x1000, 0x9000_0000, 0x1000, Attr::RO).unwrap();
    t.map(&mut mem, 0x0900_0000, 0x0900_0000, 0x1000, Attr::DEVICE).unwrap();
    assert_eq!(t.translate(&mem, 0x1000).unwrap().1, Attr::RO);
    assert_eq!(t.translate(&mem, 0x0900_0000).unwrap().1, Attr::DEVICE);
    let mut s1 = PageTable::<El2Stage1>::new(&mut mem).unwrap();
    s1.map(&mut mem, 0x2000, 0x2000, 0x1000, Attr::RO).unwrap();
    assert_eq!(s1.translate(&mem, 0x2000).unwrap().1, Attr::RO);
}

#[test]
fn rejects_misaligned_requests() {
    let mut mem = FakeMem::new(8);
    let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
    assert_eq!(t.map(&mut mem, 0x1001, 0, 0x1000, Attr::RW), Err(MapError::Misaligned));
    assert_eq!(t.map(&mut mem, 0x1000, 0x10, 0x1000, Attr::RW), Err(MapError::Misaligned));
    assert_eq!(t.map(&mut mem, 0x1000, 0, 0x800, Attr::RW), Err(MapError::Misaligned));
    assert_eq!(t.map(&mut mem, 0x1000, 0, 0, Attr::RW), Err(MapError::Misaligned));
}

#[test]
fn rejects_out_of_range_and_bad_attributes() {
    let mut mem = FakeMem::new(8);
    let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
    let span = PageTable::<Stage2>::INPUT_SPAN;
    assert_eq!(span, 1 << 39);
    assert_eq!(t.map(&mut mem, span - 0x1000, 0, 0x2000, Attr::RW), Err(MapError::OutOfRange));
    assert_eq!(t.map(&mut mem, !0xfff_u64, 0, 0x2000, Attr::RW), Err(MapError::OutOfRange));
    let write_only = Attr { read: false, write: true, exec: false, kind: MemKind::Normal };
    assert_eq!(t.map(&mut mem, 0x1000, 0, 0x1000, write_only), Err(MapError::BadAttr));
}

#[test]
fn rejects_overlap_and_changes_nothing() {
    let mut mem = FakeMem::new(64);
    let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
    t.map(&mut mem, 0x4020_0000, 0x6000_0000, 2 * MIB, Attr::RW).unwrap();
    let before = mem.pages.clone();
    // Starts in a hole and runs into the block.
    assert_eq!(
        t.map(&mut mem, 0x4010_0000, 0x7000_0000, 2 * MIB, Attr::RW),
        Err(MapError::Overlap { at: 0x4020_0000 })
    );
    assert_eq!(mem.pages, before);
    // A 4 KiB page inside an existing block.
    assert_eq!(t.map(&mut mem, 0x4030_0000, 0, 0x1000, Attr::RW), Err(MapError::Overlap { at: 0x4030_0000 }));
    // A block over existing pages.
    t.map(&mut mem, 0x4060_1000, 0x1000, 0x1000, Attr::RW).unwrap();
    assert_eq!(t.map(&mut mem, 0x4060_0000, 0x20_0000, 2 * MIB, Attr::RW), Err(MapError::Overlap { at: 0x4060_1000 }));
}

#[test]
fn reports_pool_exhaustion() {
    let mut mem = FakeMem::new(2);
    let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
    t.map(&mut mem, 0, 0, 2 * MIB, Attr::RW).unwrap();
    assert_eq!(t.map(&mut mem, 0x4000_1000, 0, 0x1000, Attr::RW), Err(MapError::OutOfTables));
}

proptest! {
    /// Random non-overlapping requests translate exactly as requested, and
    /// every address outside them stays unmapped.
    #[test]
    fn random_mappings_translate_exactly(reqs in proptest::collection::vec((0u64..64, 1u64..40, 0u64..4096), 1..12)) {
        let mut mem = FakeMem::new(512);
        let mut t = PageTable::<Stage2>::new(&mut mem).unwrap();
        let mut mapped: Vec<(u64, u64, u64)> = Vec::new();
        for (slot, pages, out) in reqs {
            // Inputs in 1 MiB-aligned slots of a 64 MiB window, some sizes spanning 2 MiB blocks.
            let ia = 0x4000_0000 + slot * MIB;
            let size = pages * 0x1_0000;
            let oa = 0x1_0000_0000 + out * 2 * MIB + (slot % 2) * 0x1000;
            let overlaps = mapped.iter().any(|&(a, _, s)| ia < a + s && a < ia + size);
            let r = t.map(&mut mem, ia, oa, size, Attr::RW);
            if overlaps {
                let is_overlap = matches!(r, Err(MapError::Overlap { .. }));
                prop_assert!(is_overlap);
            } else {
                prop_assert_eq!(r, Ok(()));
                mapped.push((ia, oa, size));
            }
        }
        for probe in (0x4000_0000u64..0x4000_0000 + 128 * MIB).step_by(0x7_f000) {
            let expect = mapped.iter().find(|&&(a, _, s)| probe >= a && probe < a + s).map(|&(a, o, _)| o + (probe - a));
            prop_assert_eq!(t.translate(&mem, probe).map(|x| x.0), expect);
        }
    }
}

#[test]
fn npt_and_ept_use_four_levels_and_2mib_blocks() {
    assert_eq!(PageTable::<Npt>::INPUT_SPAN, 1 << 48);
    assert_eq!(PageTable::<Ept>::INPUT_SPAN, 1 << 48);
    for (ept, name) in [(false, "npt"), (true, "ept")] {
        let mut mem = FakeMem::new(64);
        let (root, pages) = if ept {
            let mut t = PageTable::<Ept>::new(&mut mem).unwrap();
            t.map(&mut mem, 0x4000_0000, 0x0120_0000, 16 * MIB, Attr::RWX).unwrap();
            assert_eq!(t.translate(&mem, 0x40ff_fff8), Some((0x021f_fff8, Attr::RWX)), "{name}");
            assert_eq!(t.translate(&mem, 0x4100_0000), None);
            (t.root(), mem.pages.len())
        } else {
            let mut t = PageTable::<Npt>::new(&mut mem).unwrap();
            t.map(&mut mem, 0x4000_0000, 0x0120_0000, 16 * MIB, Attr::RWX).unwrap();
            assert_eq!(t.translate(&mem, 0x40ff_fff8), Some((0x021f_fff8, Attr::RWX)), "{name}");
            assert_eq!(t.translate(&mem, 0x4100_0000), None);
            (t.root(), mem.pages.len())
        };
        // PML4, PDPT, PD: 2 MiB blocks need no page table.
        assert_eq!(pages, 3, "{name}");
        assert_eq!(root, BASE);
    }
}

#[test]
fn npt_entries_are_user_present_with_nx_and_preset_accessed_dirty() {
    let mut mem = FakeMem::new(64);
    let mut t = PageTable::<Npt>::new(&mut mem).unwrap();
    t.map(&mut mem, 0x4000_0000, 0x0120_0000, 2 * MIB, Attr::RW).unwrap();
    t.map(&mut mem, 0x5000_0000, 0xfee0_0000, 0x1000, Attr::DEVICE).unwrap();
    t.map(&mut mem, 0x6000_0000, 0x0300_0000, 0x1000, Attr::RO).unwrap();
    let pml4 = mem.pages[0][0];
    assert_eq!(pml4 & 0x7, 0x7, "tables: present, writable, user");
    let pdpt = &mem.pages[((pml4 & X86_MASK) - BASE) as usize / PAGE_SIZE as usize];
    let pd = &mem.pages[((pdpt[1] & X86_MASK) - BASE) as usize / PAGE_SIZE as usize];
    let block = pd[0];
    assert_eq!(block & X86_MASK, 0x0120_0000);
    assert_eq!(block & 0xff, 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80, "P RW US A D PS");
    assert_ne!(block & (1 << 63), 0, "not executable");
    assert_eq!(t.translate(&mem, 0x5000_0000).unwrap().1, Attr::DEVICE);
    assert_eq!(t.translate(&mem, 0x6000_0000).unwrap().1, Attr::RO);
    let unreadable = Attr { read: false, write: false, exec: true, kind: MemKind::Normal };
    assert_eq!(t.map(&mut mem, 0x7000_0000, 0, 0x1000, unreadable), Err(MapError::BadAttr));
}

#[test]
fn ept_entries_carry_rwx_and_memory_type() {
    let mut mem = FakeMem::new(64);
    let mut t = PageTable::<Ept>::new(&mut mem).unwrap();
    t.map(&mut mem, 0x4000_0000, 0x0120_0000, 2 * MIB, Attr::RWX).unwrap();
    t.map(&mut mem, 0x5000_0000, 0xfee0_0000, 0x1000, Attr::DEVICE).unwrap();
    t.map(&mut mem, 0x6000_0000, 0x0300_0000, 0x1000, Attr::RO).unwrap();
    let pml4 = mem.pages[0][0];
    assert_eq!(pml4 & 0x7, 0x7);
    let pdpt = &mem.pages[((pml4 & X86_MASK) - BASE) as usize / PAGE_SIZE as usize];
    let pd = &mem.pages[((pdpt[1] & X86_MASK) - BASE) as usize / PAGE_SIZE as usize];
    assert_eq!(pd[0] & 0xff, 0x7 | (6 << 3) | 0x40 | 0x80, "RWX, WB, ignore PAT, large");
    assert_eq!(t.translate(&mem, 0x5000_0000).unwrap().1, Attr::DEVICE);
    assert_eq!(t.translate(&mem, 0x6000_0000).unwrap().1, Attr::RO);
    let exec_only = Attr { read: false, write: false, exec: true, kind: MemKind::Normal };
    assert_eq!(t.map(&mut mem, 0x7000_0000, 0, 0x1000, exec_only), Err(MapError::BadAttr));
    // A 4 KiB page beside a block, and an overlap refused as for stage 2.
    t.map(&mut mem, 0x4020_1000, 0x0400_0000, 0x1000, Attr::RW).unwrap();
    assert_eq!(t.map(&mut mem, 0x4010_0000, 0, 0x1000, Attr::RW), Err(MapError::Overlap { at: 0x4010_0000 }));
}

const X86_MASK: u64 = 0x000f_ffff_ffff_f000;

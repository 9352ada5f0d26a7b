//! Portable page-table construction.
//!
//! The hypervisor builds every translation table it uses with this crate: the
//! aarch64 stage-2 tables that confine a partition, its own EL2 stage-1 map,
//! and (with the x86 port) EPT and NPT tables. The walking and splitting logic
//! is written once, generic over
//!
//! * a [`Format`]: how a descriptor is encoded for one kind of table, and
//! * a [`TableMemory`]: where table pages come from and how they are read and
//!   written (raw physical memory in the hypervisor, a `Vec` on the host).
//!
//! This crate never touches memory itself and contains no `unsafe`: the
//! hypervisor's `TableMemory` owns that. It refuses, rather than repairs, any
//! request that would silently change an existing mapping: a mapping that
//! overlaps one already present is an error, so a bug in placement can never
//! alias two partitions' memory.
#![no_std]
#![forbid(unsafe_code)]

pub mod format;

pub use format::{El2Stage1, Ept, Npt, Stage2};

/// Size of a translation granule and of a table page.
pub const PAGE_SIZE: u64 = 4096;
/// Descriptors in one table page.
pub const ENTRIES: usize = 512;

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Normal, write-back cacheable, inner shareable.
    Normal,
    /// Device-nGnRE: MMIO.
    Device,
}

/// Access rights and memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub kind: MemKind,
}

impl Attr {
    pub const RWX: Attr = Attr { read: true, write: true, exec: true, kind: MemKind::Normal };
    pub const RW: Attr = Attr { read: true, write: true, exec: false, kind: MemKind::Normal };
    pub const RO: Attr = Attr { read: true, write: false, exec: false, kind: MemKind::Normal };
    pub const DEVICE: Attr = Attr { read: true, write: true, exec: false, kind: MemKind::Device };
}

/// The encoding of one kind of translation table.
///
/// Levels are numbered from the root (`0`) to the leaf (`LEVELS - 1`); each
/// level resolves 9 bits of the input address above the 12-bit page offset.
pub trait Format {
    /// Number of levels walked (3 covers 39 bits of input address, 4 covers 48).
    const LEVELS: usize;
    /// Descriptor pointing at a next-level table page.
    fn table(pa: u64) -> u64;
    /// Leaf descriptor at `level`: a page at the last level, a block above it.
    /// `None` where the format has no block of that size.
    fn leaf(pa: u64, level: usize, attr: Attr) -> Option<u64>;
    /// Whether a descriptor is valid at all.
    fn is_valid(desc: u64) -> bool;
    /// Whether a valid descriptor above the last level points at a table.
    fn is_table(desc: u64, level: usize) -> bool;
    /// The output (or next-table) address of a valid descriptor.
    fn address(desc: u64) -> u64;
    /// Decodes a leaf's attributes (for inspection and tests).
    fn attr(desc: u64) -> Attr;
}

/// Where table pages live.
pub trait TableMemory {
    /// A fresh, zeroed, page-aligned table page; `None` when the pool is empty.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Reads descriptor `index` of the table page at `table`.
    fn read(&self, table: u64, index: usize) -> u64;
    /// Writes descriptor `index` of the table page at `table`.
    fn write(&mut self, table: u64, index: usize, desc: u64);
}

/// Why a mapping request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Input, output address or size not page aligned, or size zero.
    Misaligned,
    /// Input range beyond what the table translates, or wrapping.
    OutOfRange,
    /// Part of the range is already mapped.
    Overlap { at: u64 },
    /// The table-page pool is exhausted (some of the range may be mapped).
    OutOfTables,
    /// The attributes cannot be expressed (for example write without read).
    BadAttr,
}

/// A translation table of format `F`, rooted at one table page.
#[derive(Debug)]
pub struct PageTable<F: Format> {
    root: u64,
    _format: core::marker::PhantomData<F>,
}

/// Bytes covered by one descriptor at `level` of a table with `levels` levels.
pub const fn level_size(levels: usize, level: usize) -> u64 {
    PAGE_SIZE << (9 * (levels - 1 - level))
}

fn index_at(levels: usize, level: usize, addr: u64) -> usize {
    ((addr / level_size(levels, level)) % ENTRIES as u64) as usize
}

impl<F: Format> PageTable<F> {
    /// Bytes of input address space the table translates.
    pub const INPUT_SPAN: u64 = level_size(F::LEVELS, 0) * ENTRIES as u64;

    /// Allocates an empty root table.
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfTables)?;
        Ok(Self::from_root(root))
    }

    /// Wraps an existing root table page.
    pub fn from_root(root: u64) -> Self {
        PageTable { root, _format: core::marker::PhantomData }
    }

    /// Physical address of the root table page (what goes in TTBR/VTTBR/EPTP).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `[input, input + size)` to `[output, output + size)` with `attr`,
    /// using the largest blocks that alignment allows. Refuses any overlap
    /// with an existing mapping; on `Overlap` nothing has been mapped.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        input: u64,
        output: u64,
        size: u64,
        attr: Attr,
    ) -> Result<(), MapError> {
        if size == 0 || !input.is_multiple_of(PAGE_SIZE) || !output.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let end = input.checked_add(size).ok_or(MapError::OutOfRange)?;
        output.checked_add(size).ok_or(MapError::OutOfRange)?;
        if end > Self::INPUT_SPAN {
            return Err(MapError::OutOfRange);
        }
        if attr.write && !attr.read {
            return Err(MapError::BadAttr);
        }
        // Check the whole range first so that a refused request changes nothing.
        self.check_free(mem, self.root, 0, input, end)?;
        self.map_level(mem, self.root, 0, input, end, output, attr)
    }

    /// Fails with `Overlap` if any address of `[start, end)` below `table`
    /// (a table at `level`) is mapped. Skips holes a whole entry at a time.
    fn check_free(&self, mem: &impl TableMemory, table: u64, level: usize, start: u64, end: u64) -> Result<(), MapError> {
        let span = level_size(F::LEVELS, level);
        // The entries of this table the range touches (it lies within the
        // table: the caller's range is at most one entry of the level above).
        let first = index_at(F::LEVELS, level, start);
        let last = index_at(F::LEVELS, level, end - 1);
        let base = start - start % span - first as u64 * span;
        for idx in first..=last {
            let desc = mem.read(table, idx);
            if F::is_valid(desc) {
                let entry = base + idx as u64 * span;
                let (from, to) = (entry.max(start), (entry + span).min(end));
                if level + 1 < F::LEVELS && F::is_table(desc, level) {
                    self.check_free(mem, F::address(desc), level + 1, from, to)?;
                } else {
                    return Err(MapError::Overlap { at: from });
                }
            }
        }
        Ok(())
    }

    /// Maps `[start, end)` (known to be free) below `table` at `level`, with
    /// `start` going to `oa`: a leaf wherever an entry is wholly covered and
    /// aligned, a next-level table otherwise. Consecutive entries of one
    /// table are filled without walking from the root again.
    #[allow(clippy::too_many_arguments)]
    fn map_level(
        &mut self,
        mem: &mut impl TableMemory,
        table: u64,
        level: usize,
        start: u64,
        end: u64,
        oa: u64,
        attr: Attr,
    ) -> Result<(), MapError> {
        let span = level_size(F::LEVELS, level);
        let mut addr = start;
        while addr < end {
            let chunk_end = ((addr / span + 1) * span).min(end);
            let out = oa + (addr - start);
            let idx = index_at(F::LEVELS, level, addr);
            let whole = addr.is_multiple_of(span) && chunk_end - addr == span && out.is_multiple_of(span);
            match F::leaf(out, level, attr) {
                Some(leaf) if whole => {
                    // This entry and the whole ones after it in this table
                    // (a run of pages or blocks) differ only by their
                    // address: built once, then stepped by the span, unless
                    // the address would carry out of its field (checked on
                    // the run's last entry; then one entry at a time).
                    let run = (((end - addr) / span) as usize).min(ENTRIES - idx);
                    let last = (run as u64 - 1) * span;
                    let run = if F::leaf(out + last, level, attr) == Some(leaf + last) { run } else { 1 };
                    let mut desc = leaf;
                    for i in idx..idx + run {
                        mem.write(table, i, desc);
                        desc += span;
                    }
                    addr += run as u64 * span;
                    continue;
                }
                None if level + 1 == F::LEVELS => return Err(MapError::BadAttr),
                _ => {
                    let desc = mem.read(table, idx);
                    let next = if F::is_valid(desc) {
                        F::address(desc)
                    } else {
                        let next = mem.alloc_table().ok_or(MapError::OutOfTables)?;
                        mem.write(table, idx, F::table(next));
                        next
                    };
                    self.map_level(mem, next, level + 1, addr, chunk_end, out, attr)?;
                }
            }
            addr = chunk_end;
        }
        Ok(())
    }

    fn walk(&self, mem: &impl TableMemory, addr: u64) -> Walk {
        let mut table = self.root;
        for level in 0..F::LEVELS {
            let desc = mem.read(table, index_at(F::LEVELS, level, addr));
            if !F::is_valid(desc) {
                return Walk::Hole;
            }
            if level + 1 == F::LEVELS || !F::is_table(desc, level) {
                return Walk::Mapped { desc, level };
            }
            table = F::address(desc);
        }
        Walk::Hole
    }

    /// Translates one input address: its output address and attributes.
    pub fn translate(&self, mem: &impl TableMemory, addr: u64) -> Option<(u64, Attr)> {
        if addr >= Self::INPUT_SPAN {
            return None;
        }
        match self.walk(mem, addr) {
            Walk::Mapped { desc, level } => {
                let span = level_size(F::LEVELS, level);
                Some((F::address(desc) + addr % span, F::attr(desc)))
            }
            Walk::Hole => None,
        }
    }
}

enum Walk {
    Mapped { desc: u64, level: usize },
    Hole,
}

#[cfg(test)]
mod tests;

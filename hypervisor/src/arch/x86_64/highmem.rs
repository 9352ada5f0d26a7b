//! RAM above 4 GiB: the boot map (`boot.S`) identity-maps only the first
//! 4 GiB, which is where firmware structures, the APICs and the
//! hypervisor's own image lie. A board may also list RAM above 4 GiB (real
//! servers have most of theirs there; QEMU `pc` with more than about 3 GiB
//! puts the rest at 4 GiB): before any partition is loaded, core 0 extends
//! the identity map it runs on, and which every other core will run on
//! (the same CR3), to every board RAM range above 4 GiB, with 2 MiB
//! write-back, non-executable pages. Partitions reach such RAM only
//! through their nested tables like any other (NPT and EPT take any
//! host-physical address); the hypervisor needs it mapped to load their
//! images, read hypercall buffers and walk their page tables.

use core::cell::UnsafeCell;

use hallows_table::SystemTable;

/// How far up the hypervisor can map: 32 GiB (28 page directories of
/// 2 MiB pages above the first 4 GiB). A board with RAM beyond it is
/// refused at boot.
pub const LIMIT: u64 = 32 << 30;
const FOUR_GIB: u64 = 1 << 32;
const GIB: u64 = 1 << 30;
const PDS: usize = ((LIMIT - FOUR_GIB) / GIB) as usize;

#[repr(C, align(4096))]
struct Directories(UnsafeCell<[[u64; 512]; PDS]>);
// SAFETY: written only by core 0 in `map`, before any other core starts;
// read by the MMU afterwards.
unsafe impl Sync for Directories {}
#[link_section = ".noinit.boot_tables"]
static HIGH_PDS: Directories = Directories(UnsafeCell::new([[0; 512]; PDS]));

const PRESENT_RW: u64 = 0x3;
const LARGE: u64 = 1 << 7;
const NX: u64 = 1 << 63;

/// Why the map could not be extended.
#[derive(Debug)]
pub enum Error {
    /// A board RAM range ends above [`LIMIT`].
    TooHigh,
    /// The running page tables do not have the shape `boot.S` builds (a
    /// PML4 whose first entry leads to a page-directory-pointer table).
    Shape,
}

/// Identity-maps every board RAM range that lies (partly) above 4 GiB.
/// Core 0, at boot, after `system::check_machine` has confirmed the
/// firmware reports that RAM and before any partition is loaded. Returns
/// the number of bytes mapped above 4 GiB.
pub fn map(table: &SystemTable) -> Result<u64, Error> {
    let board = &table.board;
    let ranges = &board.ram[..(board.ram_count as usize).min(board.ram.len())];
    let mut mapped = 0;
    for r in ranges {
        let end = r.base.checked_add(r.size).ok_or(Error::TooHigh)?;
        if end <= FOUR_GIB {
            continue;
        }
        if end > LIMIT {
            return Err(Error::TooHigh);
        }
        let start = r.base.max(FOUR_GIB) & !((2 << 20) - 1);
        let mut at = start;
        while at < end {
            map_2mib(at)?;
            at += 2 << 20;
        }
        mapped += end - r.base.max(FOUR_GIB);
    }
    if mapped != 0 {
        // SAFETY: reloading CR3 with its own value flushes the TLB; the
        // tables only gained entries, nothing the core runs on changed.
        unsafe { core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) };
    }
    Ok(mapped)
}

/// Maps the 2 MiB page at `pa` (above 4 GiB, below [`LIMIT`]) to itself.
fn map_2mib(pa: u64) -> Result<(), Error> {
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    let pml4 = (cr3 & 0x000f_ffff_ffff_f000) as *mut u64;
    // SAFETY: the PML4 the core runs on, identity-mapped by itself (the
    // boot tables lie in the hypervisor's image, below 4 GiB).
    let e0 = unsafe { pml4.read_volatile() };
    if e0 & 1 == 0 || e0 & LARGE != 0 {
        return Err(Error::Shape);
    }
    let pdpt = (e0 & 0x000f_ffff_ffff_f000) as *mut u64;
    let gib = (pa / GIB) as usize;
    let pd_index = gib - (FOUR_GIB / GIB) as usize;
    // SAFETY: core 0 alone, before any other core starts (see `Directories`).
    let pd = unsafe { &mut (*HIGH_PDS.0.get())[pd_index] };
    // SAFETY: entry `gib` (4..32) of the PDPT that maps the first 512 GiB;
    // the boot map uses entries 0..4 only.
    let entry = unsafe { pdpt.add(gib).read_volatile() };
    let pd_pa = pd.as_ptr() as u64;
    if entry & 1 == 0 {
        pd.fill(0);
        // SAFETY: as above; the directory is zeroed (nothing present) and
        // lives for the whole run.
        unsafe { pdpt.add(gib).write_volatile(pd_pa | PRESENT_RW) };
    } else if entry & 0x000f_ffff_ffff_f000 != pd_pa || entry & LARGE != 0 {
        // Someone else mapped this GiB: leave it alone, but it must be ours.
        return Err(Error::Shape);
    }
    pd[((pa >> 21) & 511) as usize] = pa | PRESENT_RW | LARGE | NX;
    Ok(())
}

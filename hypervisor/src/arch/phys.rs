//! Raw physical memory: the page-table pool and the few copies the
//! hypervisor makes into and out of partition RAM.
//!
//! EL2 identity-maps the board's RAM, so a physical address is usable as a
//! pointer once the MMU is on. Every function here takes ranges the caller
//! has already checked against the validated system table; each still
//! re-checks what it needs to be sound on its own.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hallows_abi::{Error, GuestRange};
use hallows_table::MAX_PARTITIONS;
use hallows_paging::{TableMemory, ENTRIES, PAGE_SIZE};
use zerocopy::{Immutable, IntoBytes};

/// Table pages for the hypervisor's own map and every partition's
/// second-stage tables (and, on x86, its initial guest page tables): how
/// many each architecture needs is its `TABLE_POOL_PAGES`.
const POOL_PAGES: usize = super::TABLE_POOL_PAGES;

#[repr(C, align(4096))]
struct Pool(UnsafeCell<[[u64; ENTRIES]; POOL_PAGES]>);

// SAFETY: pages are handed out at most once (an atomic bump index), and each
// page is then written only through the page-table code of the one core that
// owns the table being built (core 0 at boot).
unsafe impl Sync for Pool {}

#[link_section = ".noinit.pool"]
static POOL: Pool = Pool(UnsafeCell::new([[0; ENTRIES]; POOL_PAGES]));
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Words (8 bytes) of each partition's console output queue.
pub const CONSOLE_QUEUE_WORDS: usize = 512;

/// The console's output queues (`crate::console`), one per partition:
/// never zeroed (the console reads only words it wrote first), so they
/// add nothing to the boot's `.bss` clearing.
#[link_section = ".noinit.console"]
static CONSOLE_QUEUES: [[AtomicU64; CONSOLE_QUEUE_WORDS]; MAX_PARTITIONS] =
    [const { [const { AtomicU64::new(0) }; CONSOLE_QUEUE_WORDS] }; MAX_PARTITIONS];

/// The words of partition `index`'s console queue.
pub fn console_queue(index: usize) -> Option<&'static [AtomicU64; CONSOLE_QUEUE_WORDS]> {
    CONSOLE_QUEUES.get(index)
}

/// The page-table pool. Zero-sized handle: all state is in the statics.
#[derive(Debug)]
pub struct TablePool;

impl TablePool {
    /// Pages handed out so far (reported at boot).
    pub fn used() -> usize {
        NEXT.load(Ordering::Relaxed)
    }

    fn check(table: u64, index: usize) -> *mut u64 {
        let base = POOL.0.get() as u64;
        assert!(
            index < ENTRIES && table >= base && table < base + (POOL_PAGES as u64) * PAGE_SIZE && table.is_multiple_of(PAGE_SIZE),
            "table address outside the pool"
        );
        (table as *mut u64).wrapping_add(index)
    }
}

impl TableMemory for TablePool {
    fn alloc_table(&mut self) -> Option<u64> {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        if i >= POOL_PAGES {
            NEXT.store(POOL_PAGES, Ordering::Relaxed);
            return None;
        }
        // SAFETY: index `i` is in bounds and handed out exactly once.
        let page = unsafe { &mut (*POOL.0.get())[i] };
        // SAFETY: the page is a whole, exclusively owned, page-aligned pool
        // page (the zeroing is an opaque write: never elided before the
        // walker sees it).
        unsafe { zero_bytes(page.as_mut_ptr() as *mut u8, PAGE_SIZE as usize) };
        Some(page.as_ptr() as u64)
    }

    fn read(&self, table: u64, index: usize) -> u64 {
        let p = Self::check(table, index);
        // SAFETY: `check` proved `p` is an aligned descriptor slot in the pool.
        unsafe { core::ptr::read_volatile(p) }
    }

    fn write(&mut self, table: u64, index: usize, desc: u64) {
        let p = Self::check(table, index);
        // SAFETY: as in `read`; table pages are only written at boot by the
        // core building them, before any core walks them.
        unsafe { core::ptr::write_volatile(p, desc) }
    }
}

/// One partition's RAM as the hypervisor sees it. Only boot code can
/// create one (it is `unsafe` to construct); after that every access is
/// bounds-checked against the guest-physical window, so the portable code
/// that handles guest requests needs no `unsafe`.
#[derive(Clone, Copy, Debug)]
pub struct GuestRam {
    range: GuestRange,
}

impl GuestRam {
    /// # Safety
    /// `[pa, pa + size)` must be RAM that the EL2 map covers, that belongs to
    /// exactly one partition, and that overlaps neither the hypervisor image
    /// nor its payload, nor any other partition.
    pub unsafe fn new(ipa: u64, pa: u64, size: u64) -> Self {
        GuestRam { range: GuestRange { ipa, pa, size } }
    }

    /// Copies guest bytes at `ipa` into `buf`, byte by byte with volatile
    /// reads: the guest may be changing them concurrently, and each byte is
    /// read exactly once (no time-of-check/time-of-use).
    pub fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), Error> {
        let pa = self.range.check(ipa, buf.len() as u64)?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `check` proved the byte lies in this partition's RAM,
            // which EL2 maps (constructor contract).
            *b = unsafe { core::ptr::read_volatile((pa + i as u64) as *const u8) };
        }
        Ok(())
    }

    /// The host-physical address of the 8-byte word at `ipa`, which must
    /// be 8-aligned and inside this partition's RAM: the x86 hypervisor's
    /// reads of guest page tables and instruction bytes (no NRIP save).
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    pub fn word_address(&self, ipa: u64) -> Result<u64, Error> {
        if !ipa.is_multiple_of(8) {
            return Err(Error::InvalidAddress);
        }
        self.range.check(ipa, 8)
    }

    /// Copies `bytes` to `ipa` and zeroes the rest of `mem_size`. Only used
    /// while the partition is not running.
    pub fn load(&self, ipa: u64, bytes: &[u8], mem_size: u64) -> Result<(), Error> {
        if (bytes.len() as u64) > mem_size {
            return Err(Error::InvalidArgument);
        }
        let pa = self.range.check(ipa, mem_size)?;
        // SAFETY: `check` proved the destination lies in this partition's
        // RAM; `bytes` is hypervisor memory (the payload), which by the
        // constructor contract cannot overlap it.
        unsafe {
            copy_bytes(pa as *mut u8, bytes.as_ptr(), bytes.len());
            zero_bytes((pa + bytes.len() as u64) as *mut u8, (mem_size - bytes.len() as u64) as usize);
        }
        Ok(())
    }

    /// Writes a plain-data value at `ipa` (8-byte aligned).
    pub fn write<T: IntoBytes + Immutable>(&self, ipa: u64, value: &T) -> Result<(), Error> {
        self.load(ipa, value.as_bytes(), value.as_bytes().len() as u64)
    }

    /// Zeroes the whole RAM before a restart, so nothing of the previous run
    /// survives.
    pub fn scrub(&self) {
        // SAFETY: the whole window is this partition's RAM (constructor
        // contract); callers only scrub a partition with no running vCPU.
        unsafe { zero_bytes(self.range.pa as *mut u8, self.range.size as usize) };
    }
}

/// Copies `len` bytes from `src` to `dst`. On aarch64 a 64-byte
/// `ldp`/`stp` loop (the compiler's `memcpy` for a soft-float target moves
/// a word at a time); the accesses may be unaligned, so only for Normal
/// memory (the EL2 MMU on).
///
/// # Safety
/// As `core::ptr::copy_nonoverlapping`.
unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads `[src, src + len)` and writes `[dst, dst + len)`, which
    // the caller guarantees are valid and disjoint; no other effect.
    unsafe {
        core::arch::asm!(
            "2: cmp {n}, #64",
            "b.lo 3f",
            "ldp {a}, {b}, [{s}]",
            "ldp {c}, {d}, [{s}, #16]",
            "stp {a}, {b}, [{t}]",
            "stp {c}, {d}, [{t}, #16]",
            "ldp {a}, {b}, [{s}, #32]",
            "ldp {c}, {d}, [{s}, #48]",
            "add {s}, {s}, #64",
            "sub {n}, {n}, #64",
            "stp {a}, {b}, [{t}, #32]",
            "stp {c}, {d}, [{t}, #48]",
            "add {t}, {t}, #64",
            "b 2b",
            "3: cbz {n}, 4f",
            "ldrb {a:w}, [{s}], #1",
            "strb {a:w}, [{t}], #1",
            "sub {n}, {n}, #1",
            "b 3b",
            "4:",
            s = inout(reg) src => _, t = inout(reg) dst => _, n = inout(reg) len => _,
            a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
            options(nostack),
        );
    }
    #[cfg(not(target_arch = "aarch64"))]
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::copy_nonoverlapping(src, dst, len)
    }
}

/// Zeroes `len` bytes at `dst`: on aarch64 with `stp xzr, xzr` 64 bytes
/// at a time once `dst` is 16-byte aligned (aligned stores: also usable
/// before the EL2 MMU is on, when memory is Device memory, on the
/// page-aligned table pool).
///
/// # Safety
/// As `core::ptr::write_bytes`.
unsafe fn zero_bytes(dst: *mut u8, len: usize) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: writes only `[dst, dst + len)`, which the caller guarantees
    // is valid for writes.
    unsafe {
        core::arch::asm!(
            "2: cbz {n}, 5f",
            "tst {t}, #15",
            "b.eq 3f",
            "strb wzr, [{t}], #1",
            "sub {n}, {n}, #1",
            "b 2b",
            "3: cmp {n}, #64",
            "b.lo 4f",
            "stp xzr, xzr, [{t}]",
            "stp xzr, xzr, [{t}, #16]",
            "stp xzr, xzr, [{t}, #32]",
            "stp xzr, xzr, [{t}, #48]",
            "add {t}, {t}, #64",
            "sub {n}, {n}, #64",
            "b 3b",
            "4: cbz {n}, 5f",
            "strb wzr, [{t}], #1",
            "sub {n}, {n}, #1",
            "b 4b",
            "5:",
            t = inout(reg) dst => _, n = inout(reg) len => _,
            options(nostack),
        );
    }
    #[cfg(not(target_arch = "aarch64"))]
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::write_bytes(dst, 0, len)
    }
}

/// The payload appended to the image: the system table and guest images.
///
/// # Safety
/// Must be called once, at boot, before anything writes near `__hv_end`;
/// the returned slice covers memory that nothing ever writes again.
pub unsafe fn payload(len: usize) -> &'static [u8] {
    extern "C" {
        static __hv_end: u8;
    }
    // SAFETY: `__hv_end` is where `hallows build` appended the payload; the
    // caller bounds `len` by the board's hypervisor reservation.
    unsafe { core::slice::from_raw_parts(core::ptr::addr_of!(__hv_end), len) }
}

/// The UEFI loader's hand-off block at physical `pa`
/// (`hallows_table::handoff`), copied out and checked; `None` if `pa` holds
/// something else (the direct boot's device tree) or lies outside `mapped`
/// (the memory the caller's current map covers).
pub fn handoff(pa: u64, mapped: &[hallows_table::MemRange]) -> Option<Result<hallows_table::handoff::HandOff, &'static str>> {
    use hallows_table::handoff::{HandOff, HANDOFF_MAGIC};
    let size = core::mem::size_of::<HandOff>() as u64;
    let whole = hallows_table::MemRange { base: pa, size };
    if pa == 0 || !pa.is_multiple_of(8) || !mapped.iter().any(|r| r.contains(&whole)) {
        return None;
    }
    // SAFETY: the block lies inside memory the caller maps (checked above),
    // 8-aligned; `HandOff` is plain data valid for any bytes, read by value.
    let h: HandOff = unsafe { core::ptr::read_volatile(pa as *const HandOff) };
    if h.magic != HANDOFF_MAGIC {
        return None;
    }
    Some(h.check().map(|()| h))
}

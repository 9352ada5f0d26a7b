//! Memory: the stage-1 identity map every vCPU runs on (aarch64), and the
//! heap behind `alloc` (both architectures).
//!
//! On x86_64 the hypervisor enters the guest on identity page tables of its
//! own (the first 8 GiB, write-back 2 MiB pages), which the runtime keeps.
//! On aarch64 the map is one level-1 table of 1 GiB blocks covering the whole 39-bit
//! guest-physical space: the first gigabyte (where QEMU `virt` puts its
//! MMIO) as Device-nGnRE, the rest as Normal write-back memory (RAM at
//! `0x4000_0000`, channel windows above 4 GiB). Mapping everything changes
//! nothing the hypervisor enforces: an address outside the partition's
//! stage-2 map still stops the partition, as it did with the MMU off; what
//! the MMU adds is caches, unaligned accesses and exclusives on RAM.
//!
//! Each vCPU's `VCPU_STACK_SIZE` region below the boot information holds,
//! from its bottom: the vCPU's exception stack (`EXCEPTION_STACK_SIZE`),
//! one unmapped guard page, then the stack the vCPU runs on. A stack
//! overflow touches the guard page and faults; the fault is taken on the
//! exception stack (aarch64: the fatal vectors switch to it; x86_64: an
//! IST stack in the vCPU's TSS), which reports it as a stack overflow. The
//! guard pages are split out of the large pages around them (aarch64: our
//! own tables, 1 GiB blocks split down to 4 KiB pages around the stacks;
//! x86_64: the hypervisor's 2 MiB pages around the stacks split into page
//! tables of ours).
//!
//! The heap is the RAM between the end of the image (`__guest_end`) and
//! the lowest vCPU stack, managed by a buddy allocator; every heap
//! operation runs with IRQs masked, so a task preempted while it holds the
//! heap lock cannot deadlock its core.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hallows_abi::{BootInfo, VCPU_STACK_SIZE};

use crate::arch;

#[cfg(target_arch = "aarch64")]
#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: written once by vCPU 0 before any other vCPU starts (they are
// started by the runtime afterwards) and only read by the MMU afterwards.
#[cfg(target_arch = "aarch64")]
unsafe impl Sync for Table {}

#[cfg(target_arch = "aarch64")]
static LEVEL1: Table = Table(UnsafeCell::new([0; 512]));


/// Block descriptor bits: valid block, AF, inner shareable.
#[cfg(target_arch = "aarch64")]
const BLOCK: u64 = 0b01 | (1 << 10) | (3 << 8);
#[cfg(target_arch = "aarch64")]
const DEVICE: u64 = (1 << 2) | (1 << 53) | (1 << 54); // MAIR index 1, never executable
#[cfg(target_arch = "aarch64")]
const GIB: u64 = 1 << 30;

/// Builds the identity map (vCPU 0, once, MMU off) with the stack guard
/// pages left out, turns it on, then sets up the heap.
#[cfg(target_arch = "aarch64")]
pub fn init(info: &BootInfo) {
    let table = LEVEL1.0.get();
    for i in 0..512u64 {
        let desc = (i * GIB) | BLOCK | if i == 0 { DEVICE } else { 0 };
        // SAFETY: `table` is our own static, not yet in use by the MMU.
        unsafe { (*table)[i as usize] = desc };
    }
    init_stacks(info);
    enable_mmu();
    init_heap(info);
}

/// Sets up the stack guard pages in the hypervisor's identity tables, then
/// the heap (vCPU 0, once).
#[cfg(target_arch = "x86_64")]
pub fn init(info: &BootInfo) {
    init_stacks(info);
    init_heap(info);
}

/// Turns on the MMU with the map vCPU 0 built.
#[cfg(target_arch = "aarch64")]
pub fn enable_mmu() {
    arch::enable_mmu(LEVEL1.0.get() as u64);
}

extern "C" {
    static __guest_end: u8;
}

/// Bytes of each vCPU's exception stack, at the bottom of its stack region.
pub const EXCEPTION_STACK_SIZE: u64 = 8 * 1024;
/// Bytes of the unmapped guard page above it, below the vCPU's stack.
pub const GUARD_SIZE: u64 = 4096;

/// The bottom of vCPU `vcpu`'s stack region.
pub const fn stack_region(info_ipa: u64, vcpu: u64) -> u64 {
    info_ipa - (vcpu + 1) * VCPU_STACK_SIZE
}

/// The top of vCPU `vcpu`'s exception stack.
pub const fn exception_stack_top(info_ipa: u64, vcpu: u64) -> u64 {
    stack_region(info_ipa, vcpu) + EXCEPTION_STACK_SIZE
}

/// vCPU `vcpu`'s guard page (start).
pub const fn guard_page(info_ipa: u64, vcpu: u64) -> u64 {
    stack_region(info_ipa, vcpu) + EXCEPTION_STACK_SIZE
}

/// vCPU `vcpu`'s stack: (lowest address, top).
pub const fn vcpu_stack(info_ipa: u64, vcpu: u64) -> (u64, u64) {
    (guard_page(info_ipa, vcpu) + GUARD_SIZE, info_ipa - vcpu * VCPU_STACK_SIZE)
}

/// The boot information and vCPU count the guards were set up for.
static STACKS: AtomicU64 = AtomicU64::new(0);
static STACK_VCPUS: AtomicU64 = AtomicU64::new(0);

/// Whether the guard pages are in place (the MMU maps them out).
static GUARDED: AtomicU64 = AtomicU64::new(0);

/// The vCPU whose guard page holds `address`, if the guards are in place.
pub fn guard_of(address: u64) -> Option<u64> {
    if GUARDED.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let info = STACKS.load(Ordering::Relaxed);
    (0..STACK_VCPUS.load(Ordering::Relaxed)).find(|&v| (guard_page(info, v)..guard_page(info, v) + GUARD_SIZE).contains(&address))
}

/// The stack (lowest address, top) that holds `address`: a vCPU's stack or
/// exception stack, or else the heap (where task stacks live).
pub fn stack_bounds(address: u64) -> Option<(u64, u64)> {
    let info = STACKS.load(Ordering::Relaxed);
    for v in 0..STACK_VCPUS.load(Ordering::Relaxed) {
        let (lo, hi) = vcpu_stack(info, v);
        if (lo..hi).contains(&address) {
            return Some((lo, hi));
        }
        let (lo, hi) = (stack_region(info, v), exception_stack_top(info, v));
        if (lo..hi).contains(&address) {
            return Some((lo, hi));
        }
    }
    let (start, size) = heap_range();
    (start..start + size).contains(&address).then_some((start, start + size))
}

/// Maps out each vCPU's guard page (vCPU 0, once, before any other vCPU
/// starts). A partition whose boot information is not page-aligned, or
/// whose tables cannot be split, runs without guards (and says so).
fn init_stacks(info: &BootInfo) {
    let info_ipa = info as *const BootInfo as u64;
    let n = (info.vcpu_count as u64).min(hallows_abi::MAX_VCPUS as u64);
    STACKS.store(info_ipa, Ordering::Relaxed);
    STACK_VCPUS.store(n, Ordering::Relaxed);
    if !info_ipa.is_multiple_of(GUARD_SIZE) {
        crate::println!("hallows-rt: boot information at {info_ipa:#x} is not page-aligned: no stack guard pages");
        return;
    }
    for v in 0..n {
        if let Err(e) = unmap_page(guard_page(info_ipa, v)) {
            crate::println!("hallows-rt: no stack guard page for vCPU {v}: {e}");
            return;
        }
    }
    GUARDED.store(1, Ordering::Relaxed);
}

/// Page tables the splits take their tables from (static, page-aligned).
#[repr(C, align(4096))]
struct SplitTables(UnsafeCell<[[u64; 512]; SPLIT_TABLES]>);
const SPLIT_TABLES: usize = 4;
// SAFETY: written by vCPU 0 in `init_stacks` before any other vCPU starts,
// then only read by the MMU.
unsafe impl Sync for SplitTables {}
static SPLIT: SplitTables = SplitTables(UnsafeCell::new([[0; 512]; SPLIT_TABLES]));
static SPLIT_USED: AtomicUsize = AtomicUsize::new(0);

/// A fresh split table (its address), or an error when all are used.
fn split_table() -> Result<*mut [u64; 512], &'static str> {
    let i = SPLIT_USED.fetch_add(1, Ordering::Relaxed);
    if i >= SPLIT_TABLES {
        return Err("out of page tables to split large pages with");
    }
    // SAFETY: index in bounds; each table is handed out once.
    Ok(unsafe { (SPLIT.0.get() as *mut [u64; 512]).add(i) })
}

/// aarch64 descriptor bits: valid, table (or page at level 3); the
/// attribute bits a block passes on to the entries it is split into.
#[cfg(target_arch = "aarch64")]
const ATTRS: u64 = 0xfff0_0000_0000_0ffc;

/// Leaves the 4 KiB page at `va` unmapped in our stage-1 identity map
/// (MMU still off), splitting the 1 GiB and 2 MiB blocks around it.
#[cfg(target_arch = "aarch64")]
fn unmap_page(va: u64) -> Result<(), &'static str> {
    let l1 = LEVEL1.0.get();
    // SAFETY: our own tables, not yet in use by the MMU (it is off).
    unsafe {
        let l2 = split_block(&mut (*l1)[((va >> 30) & 511) as usize], 30, 0b01)?;
        let l3 = split_block(&mut (*l2)[((va >> 21) & 511) as usize], 21, 0b11)?;
        (*l3)[((va >> 12) & 511) as usize] = 0;
    }
    Ok(())
}

/// The next-level table under the entry `e`: a block of `1 << shift`
/// bytes is first replaced by a table of 512 entries (of type `kind`:
/// blocks, or pages at level 3) that map the same memory the same way.
#[cfg(target_arch = "aarch64")]
fn split_block(e: &mut u64, shift: u32, kind: u64) -> Result<*mut [u64; 512], &'static str> {
    if *e & 0b11 == 0b01 {
        let t = split_table()?;
        let base = *e & 0x0000_ffff_ffff_f000 & !((1u64 << shift) - 1);
        // SAFETY: a split table of ours that nothing uses yet.
        for (i, d) in unsafe { (*t).iter_mut() }.enumerate() {
            *d = (base + ((i as u64) << (shift - 9))) | (*e & ATTRS) | kind;
        }
        *e = t as u64 | 0b11;
    }
    Ok((*e & 0x0000_ffff_ffff_f000) as *mut [u64; 512])
}

/// x86 page-table bits: present, writable, page size (a 2 MiB or 1 GiB
/// page), the large page's PAT bit, and the address field.
#[cfg(target_arch = "x86_64")]
const PRESENT: u64 = 1;
#[cfg(target_arch = "x86_64")]
const PS: u64 = 1 << 7;
#[cfg(target_arch = "x86_64")]
const PAT_LARGE: u64 = 1 << 12;
#[cfg(target_arch = "x86_64")]
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Leaves the 4 KiB page at `va` unmapped in the identity tables we run
/// on (the hypervisor's, which are ours to change), splitting the 2 MiB
/// page around it into a page table of ours, then drops it from the TLB.
#[cfg(target_arch = "x86_64")]
fn unmap_page(va: u64) -> Result<(), &'static str> {
    let mut table = arch::page_table_root() & ADDR;
    for shift in [39u64, 30] {
        // SAFETY: the tables CR3 points at are identity-mapped RAM of this
        // partition (the hypervisor maps them read-write for us).
        let e = unsafe { *(table as *const u64).add(((va >> shift) & 511) as usize) };
        if e & PRESENT == 0 {
            return Err("its address is not mapped");
        }
        if e & PS != 0 {
            return Err("it lies in a 1 GiB page");
        }
        table = e & ADDR;
    }
    let pde = (table as *mut u64).wrapping_add(((va >> 21) & 511) as usize);
    // SAFETY: as above: an entry of our page directory.
    let e = unsafe { *pde };
    if e & PRESENT == 0 {
        return Err("its address is not mapped");
    }
    let pt = if e & PS != 0 {
        let t = split_table()?;
        let flags = (e & !ADDR & !PS & !PAT_LARGE) | if e & PAT_LARGE != 0 { PS } else { 0 };
        let base = e & 0x000f_ffff_ffe0_0000;
        // SAFETY: a table of ours that nothing uses yet.
        for (i, d) in unsafe { (*t).iter_mut() }.enumerate() {
            *d = (base + ((i as u64) << 12)) | flags;
        }
        // The directory entry keeps its permissions (present, writable,
        // user, accessed); the page entries carry the memory type.
        let dir = (e & 0x7 & !PS) | (1 << 5) | t as u64;
        // SAFETY: the 2 MiB page becomes a table mapping the same pages.
        unsafe { *pde = dir };
        t
    } else {
        (e & ADDR) as *mut [u64; 512]
    };
    // SAFETY: an entry of a page table of this partition; the page (a
    // stack guard) is not in use.
    unsafe { (*pt)[((va >> 12) & 511) as usize] = 0 };
    arch::flush_tlb_page(va);
    Ok(())
}

static HEAP_START: AtomicU64 = AtomicU64::new(0);
static HEAP_SIZE: AtomicU64 = AtomicU64::new(0);

fn init_heap(info: &BootInfo) {
    // SAFETY: taking the address of a linker symbol.
    let start = core::ptr::addr_of!(__guest_end) as u64;
    let info_ipa = info as *const BootInfo as u64;
    let stacks = info_ipa - VCPU_STACK_SIZE * info.vcpu_count as u64;
    if stacks <= start {
        return;
    }
    HEAP_START.store(start, Ordering::Relaxed);
    HEAP_SIZE.store(stacks - start, Ordering::Relaxed);
    arch::without_interrupts(|| {
        // SAFETY: [start, stacks) is RAM of this partition that nothing else
        // uses: above the loaded image, below the stacks and boot information.
        unsafe { HEAP.heap.lock().init(start as usize, (stacks - start) as usize) };
    });
}

/// The heap's range (guest-physical start, bytes).
pub fn heap_range() -> (u64, u64) {
    (HEAP_START.load(Ordering::Relaxed), HEAP_SIZE.load(Ordering::Relaxed))
}

/// Bytes currently allocated.
pub fn heap_used() -> usize {
    USED.load(Ordering::Relaxed)
}

static USED: AtomicUsize = AtomicUsize::new(0);

struct Heap {
    heap: crate::sync::Mutex<buddy_system_allocator::Heap<32>>,
}

#[global_allocator]
static HEAP: Heap = Heap { heap: crate::sync::Mutex::new(buddy_system_allocator::Heap::empty()) };

// SAFETY: delegates to the buddy allocator under its lock; IRQs are masked
// while the lock is held, so the lock is never re-entered on one core.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        arch::without_interrupts(|| match self.heap.lock().alloc(layout) {
            Ok(p) => {
                USED.fetch_add(layout.size(), Ordering::Relaxed);
                p.as_ptr()
            }
            Err(()) => core::ptr::null_mut(),
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            arch::without_interrupts(|| {
                USED.fetch_sub(layout.size(), Ordering::Relaxed);
                self.heap.lock().dealloc(p, layout)
            });
        }
    }
}

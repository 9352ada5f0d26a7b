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
//! The heap is the RAM between the end of the image (`__guest_end`) and
//! the lowest vCPU stack, managed by a buddy allocator; every heap
//! operation runs with IRQs masked, so a task preempted while it holds the
//! heap lock cannot deadlock its core.

use core::alloc::{GlobalAlloc, Layout};
#[cfg(target_arch = "aarch64")]
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

/// Builds the identity map (vCPU 0, once, MMU off) and turns it on, then
/// sets up the heap.
#[cfg(target_arch = "aarch64")]
pub fn init(info: &BootInfo) {
    let table = LEVEL1.0.get();
    for i in 0..512u64 {
        let desc = (i * GIB) | BLOCK | if i == 0 { DEVICE } else { 0 };
        // SAFETY: `table` is our own static, not yet in use by the MMU.
        unsafe { (*table)[i as usize] = desc };
    }
    enable_mmu();
    init_heap(info);
}

/// Sets up the heap (vCPU 0, once): the hypervisor's identity tables stay.
#[cfg(target_arch = "x86_64")]
pub fn init(info: &BootInfo) {
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
    heap: spin::Mutex<buddy_system_allocator::Heap<32>>,
}

#[global_allocator]
static HEAP: Heap = Heap { heap: spin::Mutex::new(buddy_system_allocator::Heap::empty()) };

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

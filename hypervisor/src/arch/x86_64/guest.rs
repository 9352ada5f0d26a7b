//! What every x86 partition sees, whichever of SVM or VMX runs it: the
//! 64-bit entry state, the identity page tables it starts on, the filtered
//! CPUID and the MSR allow-list. Kept apart from the two drivers so both
//! enforce one policy.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use hallows_paging::{Attr, MapError, PageTable, TableMemory};
use hallows_table::{MAX_CORES, MAX_PARTITIONS};

use super::phys::TablePool;

use super::cpu::{cpuid as host_cpuid, Cpuid};

/// Guest-physical address of a partition's initial page tables (10 pages
/// just below the RAM window at 0x4000_0000): a PML4, a PDPT and 8 page
/// directories identity-mapping the first 8 GiB with 2 MiB pages (RAM at
/// 1 GiB, channels from 4 GiB), so the
/// guest can start in 64-bit mode and every guest-physical address it
/// touches goes through its nested tables. Each partition has its own copy
/// (pages of the hypervisor's table pool, mapped read-write into that
/// partition only: QEMU's nested walker asks for write access even with
/// accessed/dirty preset), rebuilt whenever its boot vCPU is (re)entered.
pub const GUEST_PT_GPA: u64 = 0x3FFF_6000;
const GUEST_PT_PAGES: usize = 10;
const GUEST_PDS: u64 = GUEST_PT_PAGES as u64 - 2;

/// The power-on PAT.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// Each partition's (by VMID) guest page-table pages.
static GUEST_PT: [[AtomicU64; GUEST_PT_PAGES]; MAX_PARTITIONS + 1] =
    [const { [const { AtomicU64::new(0) }; GUEST_PT_PAGES] }; MAX_PARTITIONS + 1];

/// Allocates partition `vmid`'s guest page tables and maps them into its
/// nested tables `t` (core 0, at boot).
pub fn map_guest_tables<F: hallows_paging::Format>(
    vmid: u16,
    t: &mut PageTable<F>,
    pool: &mut TablePool,
) -> Result<(), MapError> {
    let slot = GUEST_PT.get(vmid as usize).ok_or(MapError::OutOfRange)?;
    for (i, page) in slot.iter().enumerate() {
        let pa = pool.alloc_table().ok_or(MapError::OutOfTables)?;
        t.map(pool, GUEST_PT_GPA + (i as u64) * 4096, pa, 4096, Attr::RW)?;
        page.store(pa, Ordering::Relaxed);
    }
    Ok(())
}

/// Writes partition `vmid`'s initial guest page tables afresh (its boot
/// vCPU is about to be entered; no vCPU of it runs).
pub fn reset_guest_tables(vmid: u16) {
    const P_RW_A_D: u64 = 1 | 2 | (1 << 5) | (1 << 6);
    let Some(slot) = GUEST_PT.get(vmid as usize) else { return };
    let pages: [u64; GUEST_PT_PAGES] = core::array::from_fn(|i| slot[i].load(Ordering::Relaxed));
    if pages.contains(&0) {
        return;
    }
    let mut pool = TablePool;
    for &p in &pages {
        for i in 0..512 {
            pool.write(p, i, 0);
        }
    }
    pool.write(pages[0], 0, (GUEST_PT_GPA + 0x1000) | P_RW_A_D);
    for i in 0..GUEST_PDS {
        pool.write(pages[1], i as usize, (GUEST_PT_GPA + 0x2000 + i * 0x1000) | P_RW_A_D);
        for j in 0..512u64 {
            pool.write(pages[2 + i as usize], j as usize, (i << 30) | (j << 21) | P_RW_A_D | (1 << 7));
        }
    }
}

/// The architectural state a vCPU starts with: 64-bit mode, paging on the
/// tables above, interrupts off; rdi = boot information, rsi = vCPU index.
#[derive(Debug)]
pub struct EntryState {
    pub cs: u16,
    pub ds: u16,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

pub fn entry_state() -> EntryState {
    EntryState {
        cs: 0x08,
        ds: 0x10,
        // PE, MP, ET, NE, WP, PG.
        cr0: 0x8001_0033,
        cr3: GUEST_PT_GPA,
        // PAE.
        cr4: 1 << 5,
        // LME, LMA.
        efer: (1 << 8) | (1 << 10),
    }
}

/// Guest general registers besides rax and rsp (which the VMCB/VMCS hold).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Gprs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// rax: VMX keeps it here (SVM keeps it in the VMCB and ignores this).
    pub rax: u64,
    /// SVM only, for `svm_run` (offsets 120 and 128): the physical
    /// addresses of this core's VMCB and of the hypervisor's own `vmload`
    /// state. Not guest registers; set by `svm::run`.
    pub vmcb: u64,
    pub host: u64,
}

impl Gprs {
    /// General register `i` in the encoding's numbering (1 rcx, 2 rdx, 3
    /// rbx, 5 rbp, 6 rsi, 7 rdi, 8..15 r8..r15); `None` for rax (0) and rsp
    /// (4), which the VMCB/VMCS hold, and anything above 15.
    pub fn reg(&mut self, i: usize) -> Option<&mut u64> {
        Some(match i {
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            15 => &mut self.r15,
            _ => return None,
        })
    }
    /// Hypercall arguments x1..x5 (x0 is rax): rdi, rsi, rdx, r10, r8.
    pub fn store_args(&self, regs: &mut [u64; 31]) {
        regs[1] = self.rdi;
        regs[2] = self.rsi;
        regs[3] = self.rdx;
        regs[4] = self.r10;
        regs[5] = self.r8;
    }
    pub fn load_args(&mut self, regs: &[u64; 31]) {
        self.rdi = regs[1];
        self.rsi = regs[2];
        self.rdx = regs[3];
        self.r10 = regs[4];
        self.r8 = regs[5];
    }
}

/// What a vCPU's run loop hands back to the portable code.
#[derive(Debug)]
pub enum Exit {
    /// A hypercall: x0..x5 are rax (in the VMCB/VMCS) and rdi, rsi, rdx,
    /// r10, r8.
    Call,
    Trap(crate::partition::Trap),
}

/// "RustHallows\0" in EBX, ECX, EDX of leaf 0x4000_0000.
const SIGNATURE: [u32; 3] = [0x7473_7552, 0x6c6c_6148, 0x0073_776f];

/// CPUID as a partition sees it: the host's answer with virtualization
/// hidden (no VMX, no SVM, nothing of leaf 0x8000_000A), MONITOR/MWAIT and
/// x2APIC hidden (neither is virtualized), the hypervisor bit set, and the
/// APIC ids replaced by the vCPU index. Every vCPU of every partition gets
/// the same answers except for its own index.
pub fn cpuid(leaf: u32, sub: u32, vcpu: u64) -> Cpuid {
    match leaf {
        0x4000_0000 => Cpuid { eax: 0x4000_0000, ebx: SIGNATURE[0], ecx: SIGNATURE[1], edx: SIGNATURE[2] },
        0x4000_0001..=0x4000_00ff | 0x8000_000A | 5 => Cpuid::default(),
        _ => {
            let mut r = host_cpuid(leaf, sub);
            match leaf {
                1 => {
                    r.ecx &= !((1 << 5) | (1 << 3) | (1 << 21));
                    r.ecx |= 1 << 31;
                    r.ebx = (r.ebx & 0x00ff_ffff) | ((vcpu as u32 & 0xff) << 24);
                }
                0xB | 0x1F => r.edx = vcpu as u32,
                0x8000_0001 => r.ecx &= !(1 << 2),
                _ => {}
            }
            r
        }
    }
}

pub enum MsrResult {
    Read(u64),
    Pat(u64),
}

const MSR_TSC: u32 = 0x10;
const MSR_PAT: u32 = 0x277;
const MSR_EFER: u32 = 0xC000_0080;

/// The MSR allow-list: reads of the TSC, EFER (the guest's own) and PAT;
/// writes of PAT with valid memory types. `None`: denied.
pub fn msr(msr: u32, write: bool, value: u64, pat: u64, efer: u64) -> Option<MsrResult> {
    match (msr, write) {
        (MSR_TSC, false) => Some(MsrResult::Read(super::cpu::rdtsc())),
        (MSR_EFER, false) => Some(MsrResult::Read(efer)),
        (MSR_PAT, false) => Some(MsrResult::Read(pat)),
        (MSR_PAT, true) => {
            // Each byte one of UC, WC, WT, WP, WB, UC-.
            let valid = (0..8).all(|i| matches!((value >> (i * 8)) & 0xff, 0 | 1 | 4 | 5 | 6 | 7));
            valid.then_some(MsrResult::Pat(value))
        }
        _ => None,
    }
}

/// Per core: virtual interrupts for its vCPU not yet injected, one bit per
/// vector from 32 (bit `v - 32`): doorbells (`partition::deliver_doorbells`
/// → `inject_doorbells`), its timer (`timer.rs`), its partition's device
/// interrupts. Only the core itself touches its word.
static QUEUED: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];

/// The lowest and one past the highest vector `QUEUED` can hold.
const FIRST_VECTOR: u8 = 32;
const END_VECTOR: u16 = FIRST_VECTOR as u16 + 64;

const DOORBELLS: u32 = hallows_abi::MAX_CHANNELS as u32;
const _: () = assert!(hallows_abi::DOORBELL_VECTOR_BASE as u32 + DOORBELLS <= 256);
const _: () = assert!(hallows_abi::DOORBELL_VECTOR_BASE >= FIRST_VECTOR);
const _: () = assert!(hallows_abi::TIMER_VECTOR >= FIRST_VECTOR && (hallows_abi::TIMER_VECTOR as u16) < END_VECTOR);
const _: () = assert!(hallows_abi::DEVICE_VECTOR_BASE as u16 + hallows_abi::MAX_DEVICES as u16 <= END_VECTOR);

/// Queues the doorbells of slots `slots` (bit i: slot i, vector
/// `DOORBELL_VECTOR_BASE + i`) for `core`'s vCPU with one atomic OR; bits
/// past the last slot are ignored.
pub fn queue_doorbells(core: usize, slots: u32) {
    let bits = u64::from(slots & DOORBELL_SLOTS) << (hallows_abi::DOORBELL_VECTOR_BASE - FIRST_VECTOR);
    if bits != 0 {
        if let Some(q) = QUEUED.get(core) {
            q.fetch_or(bits, Ordering::Relaxed);
        }
    }
}

/// The slot bits `queue_doorbells` takes.
const DOORBELL_SLOTS: u32 = if DOORBELLS >= 32 { u32::MAX } else { (1 << DOORBELLS) - 1 };
const _: () = assert!(hallows_abi::DOORBELL_VECTOR_BASE as u16 + DOORBELLS as u16 <= END_VECTOR);

/// Queues virtual interrupt `vector` (32..95) for `core`'s vCPU; others
/// are ignored.
pub fn queue_vector(core: usize, vector: u8) {
    if let (Some(bit), Some(q)) = (vector.checked_sub(FIRST_VECTOR).filter(|b| (*b as u16) < END_VECTOR - FIRST_VECTOR as u16), QUEUED.get(core)) {
        q.fetch_or(1 << bit, Ordering::Relaxed);
    }
}

/// Whether a virtual interrupt waits to be injected into `core`'s vCPU.
pub fn doorbell_queued(core: usize) -> bool {
    QUEUED.get(core).is_some_and(|q| q.load(Ordering::Relaxed) != 0)
}

/// Takes the lowest queued virtual interrupt of `core`: its vector.
pub fn take_doorbell(core: usize) -> Option<u8> {
    let q = QUEUED.get(core)?;
    let bits = q.load(Ordering::Relaxed);
    if bits == 0 {
        return None;
    }
    let bit = bits.trailing_zeros();
    q.fetch_and(!(1 << bit), Ordering::Relaxed);
    Some(FIRST_VECTOR + bit as u8)
}

/// Puts back a virtual interrupt whose delivery a VM exit interrupted (the
/// CPU reports it in EXITINTINFO / the IDT-vectoring information).
pub fn requeue_vector(core: usize, vector: u8) {
    queue_vector(core, vector);
}

/// Forgets what was queued for `core` (its vCPU is entered afresh).
pub fn clear_doorbells(core: usize) {
    if let Some(q) = QUEUED.get(core) {
        q.store(0, Ordering::Relaxed);
    }
}

pub(super) const PAGE: usize = 4096;

/// Page-aligned arrays of pages for the VMX and SVM control structures
/// (VMCS, VMXON, VMCB, host-save area, permission bitmaps).
#[repr(C, align(4096))]
pub(super) struct Pages<const N: usize>(pub(super) UnsafeCell<[[u8; PAGE]; N]>);
// SAFETY: page `i` of a per-core array is only touched by core `i`; the
// shared permission bitmaps are written once by core 0 before any other
// core starts and only read (by the processor) afterwards.
unsafe impl<const N: usize> Sync for Pages<N> {}

/// Address (identity-mapped, so also physical) of page `i` of `p`.
pub(super) fn page_pa<const N: usize>(p: &Pages<N>, i: usize) -> u64 {
    p.0.get() as u64 + (i * PAGE) as u64
}

/// The guest-physical memory the hypervisor reads on behalf of the
/// partition running on a core: its RAM and its initial page tables (the
/// two kinds of memory it may read for it; channels and device regions
/// are not read). Looked up once per decoded instruction. Every word read
/// is noted (host address and value) in `reads`, for [`Memo`].
struct GuestMem {
    ram: super::GuestRam,
    tables: &'static [AtomicU64; GUEST_PT_PAGES],
    reads: [(u64, u64); MEMO_READS],
    /// Words read; more than `MEMO_READS` means not all were noted.
    count: usize,
}

impl GuestMem {
    /// The memory of the partition running on `core`.
    fn of(core: usize) -> Option<GuestMem> {
        let sys = crate::system::get();
        let role = sys.core_map.get(core).copied().flatten()?;
        let rt = sys.parts.get(role.partition).copied().flatten()?;
        Some(GuestMem { ram: rt.ram, tables: GUEST_PT.get(rt.vmid as usize)?, reads: [(0, 0); MEMO_READS], count: 0 })
    }

    /// The host address of the 8-byte word at `gpa` (8-aligned): in the
    /// initial page tables, else in the RAM. `None` anywhere else.
    fn locate(&self, gpa: u64) -> Option<u64> {
        let off = gpa.wrapping_sub(GUEST_PT_GPA);
        if off < (GUEST_PT_PAGES * 4096) as u64 {
            // One of this partition's initial page-table pages: allocated
            // from the hypervisor's table pool at boot (`map_guest_tables`:
            // 4 KiB-aligned, identity-mapped, never freed).
            let page = self.tables[(off / 4096) as usize].load(Ordering::Relaxed);
            return (page != 0 && off.is_multiple_of(8)).then_some(page + off % 4096);
        }
        self.ram.word_address(gpa).ok()
    }

    /// The 8-byte word at `gpa` (8-aligned), read once. `None` outside
    /// the partition's RAM and initial page tables.
    fn word(&mut self, gpa: u64) -> Option<u64> {
        let at = self.locate(gpa)?;
        // SAFETY: `locate` returned an aligned word of this partition's RAM
        // or of its initial page tables, both identity-mapped hypervisor
        // memory that stays this partition's for the life of the system.
        let value = unsafe { core::ptr::read_volatile(at as *const u64) };
        if let Some(r) = self.reads.get_mut(self.count) {
            *r = (at, value);
        }
        self.count += 1;
        Some(value)
    }

    /// The guest-physical address of linear address `la` under the guest's
    /// 4-level page tables rooted at `cr3` (the only paging mode a
    /// partition can be in: CR0 and CR4 writes are denied). Permissions are
    /// not checked: the CPU has already fetched from there.
    fn translate(&mut self, cr3: u64, la: u64) -> Option<u64> {
        const ADDR: u64 = 0x000f_ffff_ffff_f000;
        let mut table = cr3 & ADDR;
        for level in (0..4u32).rev() {
            let shift = 12 + 9 * level;
            let e = self.word(table + 8 * ((la >> shift) & 511))?;
            if e & 1 == 0 {
                return None;
            }
            // A 1 GiB or 2 MiB page (PS in a PDPT or PD entry), or a 4 KiB one.
            if level == 0 || (e & (1 << 7) != 0 && level <= 2) {
                let size = 1u64 << shift;
                return Some((e & ADDR & !(size - 1)) | (la & (size - 1)));
            }
            table = e & ADDR;
        }
        None
    }
}

/// Longest x86 instruction.
pub const MAX_INSTRUCTION: usize = 15;

/// The bytes at a guest linear address, fetched as decoding asks for them,
/// one aligned 8-byte word at a time: each word read once, each page
/// translated through the guest's page tables when decoding first reaches
/// it (an instruction may cross a page). The guest controls these bytes
/// and tables: anything unreadable is `None`.
struct Fetch {
    mem: GuestMem,
    cr3: u64,
    rip: u64,
    /// Bytes `first..first + count` of the instruction, byte `first` in
    /// the low 8 bits.
    bytes: u64,
    first: usize,
    count: usize,
    /// The linear page last translated (`u64::MAX`: none) and its
    /// guest-physical address.
    page: u64,
    page_gpa: u64,
}

impl Fetch {
    fn new(mem: GuestMem, cr3: u64, rip: u64) -> Fetch {
        Fetch { mem, cr3, rip, bytes: 0, first: 0, count: 0, page: u64::MAX, page_gpa: 0 }
    }

    /// Byte `i` of the instruction.
    #[inline(always)]
    fn byte(&mut self, i: usize) -> Option<u8> {
        let k = i.wrapping_sub(self.first);
        if k < self.count {
            return Some((self.bytes >> (k * 8)) as u8);
        }
        self.refill(i)
    }

    /// Reads the word holding byte `i` (the rest of it up to its end).
    #[inline(never)]
    fn refill(&mut self, i: usize) -> Option<u8> {
        if i >= MAX_INSTRUCTION {
            return None;
        }
        let la = self.rip.wrapping_add(i as u64);
        if la & !0xfff != self.page {
            self.page_gpa = self.mem.translate(self.cr3, la & !0xfff)?;
            self.page = la & !0xfff;
        }
        let gpa = self.page_gpa | (la & 0xfff);
        let skip = (gpa & 7) as usize;
        self.bytes = self.mem.word(gpa - skip as u64)? >> (skip * 8);
        self.first = i;
        self.count = 8 - skip;
        Some(self.bytes as u8)
    }
}

/// An intercepted instruction, decoded far enough to emulate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Its length, prefixes included.
    pub len: u64,
    /// The REX prefix (0 if none).
    pub rex: u8,
    /// The ModRM byte, where `modrm` was asked for.
    pub modrm: u8,
}

/// Words a remembered decode may depend on: two page walks of four levels
/// and the instruction's words (at most three for 15 bytes).
const MEMO_READS: usize = 11;
/// Remembered decodes per core.
const MEMOS: usize = 4;

/// A decode remembered with everything it read: the guest's `cr3`, the
/// instruction's address, what was asked for (`key`), and the host address
/// and value of every page-table entry and instruction word read. A decode
/// is a function of exactly these (the walk reads each entry at an address
/// computed from `cr3`, the linear address and the entries before it; the
/// decoder reads only the words noted), so while every one of them still
/// holds its value, decoding again would give the same result: the memo
/// re-reads them all (each once) and compares instead. Any difference, in
/// an entry, a word, `cr3` or `rip`, and the instruction is decoded afresh.
/// Nothing is trusted from an earlier exit but host addresses the
/// hypervisor itself computed and checked.
#[derive(Clone, Copy)]
struct Memo {
    cr3: u64,
    rip: u64,
    key: u64,
    reads: [(u64, u64); MEMO_READS],
    count: usize,
    decoded: Decoded,
}

/// One core's remembered decodes (`count` 0: empty), the next slot to
/// replace, and the slot last used (looked at first: a vCPU that calls
/// the hypervisor in a loop exits at the same instruction every time, and
/// its memo need not be the first of the row).
#[derive(Clone, Copy)]
struct Row {
    memos: [Memo; MEMOS],
    next: usize,
    last: usize,
}

/// Per core: its [`Row`]. Only that core touches its row.
struct Memos(UnsafeCell<[Row; MAX_CORES]>);
// SAFETY: row `i` is only accessed by core `i` (`decode`, `forget_decodes`
// run on the core whose vCPU they serve), never concurrently.
unsafe impl Sync for Memos {}
const NO_MEMO: Memo = Memo {
    cr3: 0,
    rip: 0,
    key: 0,
    reads: [(0, 0); MEMO_READS],
    count: 0,
    decoded: Decoded { len: 0, rex: 0, modrm: 0 },
};
const NO_ROW: Row = Row { memos: [NO_MEMO; MEMOS], next: 0, last: 0 };
static MEMOS_OF: Memos = Memos(UnsafeCell::new([NO_ROW; MAX_CORES]));

/// This core's vCPU is entered afresh: nothing remembered of an earlier one.
pub fn forget_decodes(core: usize) {
    // SAFETY: see `Memos`: called on `core` itself.
    if let Some(row) = unsafe { (*MEMOS_OF.0.get()).get_mut(core) } {
        *row = NO_ROW;
    }
}

/// Decodes the instruction at guest linear address `rip` of the partition
/// on `core` (page tables at `cr3`) as legacy prefixes (0x26, 0x2e, 0x36,
/// 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3) and REX prefixes in any
/// number, then `opcode`, then a ModRM byte if `modrm`. `None` if the bytes
/// are not that instruction (another vCPU rewrote them since the exit), any
/// byte of it is unreadable, or it would be longer than 15 bytes (the CPU
/// would have raised #GP instead). Bytes are fetched only as far as the
/// instruction goes (an unprefixed `hlt` reads one word). Must run on
/// `core`. A decode whose every input is unchanged since the last time is
/// answered from [`Memo`].
#[inline(always)]
pub fn decode(core: usize, cr3: u64, rip: u64, opcode: &[u8], modrm: bool) -> Option<Decoded> {
    // (A constant where the opcode is: inlined into each exit's handling.)
    let key = opcode.iter().fold(opcode.len() as u64 | (modrm as u64) << 4, |k, &b| (k << 8) | b as u64);
    // SAFETY: see `Memos`: this runs on `core`, at its vCPU's exit.
    let row = unsafe { (*MEMOS_OF.0.get()).get_mut(core)? };
    let hit = |m: &Memo| m.count != 0 && m.rip == rip && m.cr3 == cr3 && m.key == key;
    let last = row.last % MEMOS;
    let found = if hit(&row.memos[last]) { Some(last) } else { row.memos.iter().position(hit) };
    let slot = match found {
        Some(i) => {
            let m = &row.memos[i];
            // SAFETY: every address was returned by `GuestMem::locate` when
            // the memo was made: an aligned word of this partition's RAM or
            // initial page tables (see `GuestMem::word`); the row is cleared
            // whenever a vCPU is entered afresh on this core.
            if m.reads[..m.count].iter().all(|&(at, value)| unsafe { core::ptr::read_volatile(at as *const u64) } == value) {
                row.last = i;
                return Some(m.decoded);
            }
            i
        }
        None => {
            let i = row.next;
            row.next = (i + 1) % MEMOS;
            i
        }
    };
    row.last = slot;
    decode_afresh(core, cr3, rip, opcode, key, modrm, &mut row.memos[slot])
}

/// [`decode`] from guest memory, remembered in `memo`.
#[inline(never)]
fn decode_afresh(core: usize, cr3: u64, rip: u64, opcode: &[u8], key: u64, modrm: bool, memo: &mut Memo) -> Option<Decoded> {
    let mut f = Fetch::new(GuestMem::of(core)?, cr3, rip);
    let mut rex = 0;
    let mut i = 0;
    loop {
        match f.byte(i)? {
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 => rex = 0,
            // A REX prefix counts only right before the opcode.
            b @ 0x40..=0x4f => rex = b,
            _ => break,
        }
        i += 1;
    }
    for (k, &b) in opcode.iter().enumerate() {
        if f.byte(i + k)? != b {
            return None;
        }
    }
    let end = i + opcode.len();
    let (len, modrm) = if modrm { (end + 1, f.byte(end)?) } else { (end, 0) };
    if len > MAX_INSTRUCTION {
        return None;
    }
    let decoded = Decoded { len: len as u64, rex, modrm };
    if f.mem.count <= MEMO_READS {
        *memo = Memo { cr3, rip, key, reads: f.mem.reads, count: f.mem.count, decoded };
    } else {
        memo.count = 0;
    }
    Some(decoded)
}

/// Per core: whether the configuration of the partition whose vCPU runs
/// there can wake it from a `hlt` (it has another vCPU that may `WAKE` it,
/// or, for the boot vCPU, a doorbell channel ringing its partition or a
/// device of its own with an interrupt). Fixed for the system; set when
/// the vCPU is entered ([`note_wake_sources`]).
static CONFIG_WAKES: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];

/// A vCPU is being entered on `core`: notes whether its partition's
/// configuration can wake it (see [`can_be_woken`]), so that a `hlt` exit
/// does not walk the system's channels each time.
pub fn note_wake_sources(core: usize) {
    let sys = crate::system::get();
    let Some(flag) = CONFIG_WAKES.get(core) else { return };
    let Some(role) = sys.core_map.get(core).copied().flatten() else {
        flag.store(false, Ordering::Relaxed);
        return;
    };
    let p = &sys.table.partitions()[role.partition];
    let devices = || p.devices[..(p.device_count as usize).min(p.devices.len())].iter().any(|d| d.irq != 0);
    let wakes = crate::system::vcpu_count(p) > 1
        || role.vcpu == 0
            && (devices()
                || sys.doorbells.iter().flatten().any(|route| route.is_some_and(|(peer, _)| peer as usize == role.partition)));
    flag.store(wakes, Ordering::Relaxed);
}

/// Whether the vCPU on `core` can ever leave a `hlt`: its timer is armed,
/// an interrupt or a wake-up is already queued, or its partition's
/// configuration can wake it: another vCPU of its partition may wake it
/// (`WAKE`), or, for the boot vCPU, some channel's doorbell rings its
/// partition or it owns a device with an interrupt ([`note_wake_sources`]).
pub fn can_be_woken(core: usize) -> bool {
    // The configuration first: it is fixed while the vCPU runs, and true
    // for every vCPU a doorbell or another vCPU can wake (the common case
    // of `svm::inject`'s question, asked before every entry).
    CONFIG_WAKES.get(core).is_some_and(|f| f.load(Ordering::Relaxed)) || super::timer::armed(core) || doorbell_queued(core)
}

/// Where `NOTIFY` on one channel rings, per core and entry of its
/// partition's channel directory: the peer partition's pending-doorbell
/// word (null: not a doorbell channel of the caller), the channel's bit in
/// it, and the local APIC id of the peer's boot core. The same routes the
/// portable `NOTIFY` takes (`partition::doorbell_target`), computed once at
/// boot ([`install_notify_routes`]) so that the drivers answer `NOTIFY`
/// at the exit itself (`svm::run`, `vmx::run`), as aarch64's exception
/// vector does (`NOTIFY_ROUTES` in `arch/aarch64/vectors.S`).
struct NotifyRoute {
    pending: AtomicPtr<AtomicU32>,
    bit: AtomicU32,
    hwid: AtomicU32,
}

/// Written by core 0 before any other core starts, read-only afterwards.
static NOTIFY_ROUTES: [[NotifyRoute; hallows_abi::MAX_CHANNELS]; MAX_CORES] = [const {
    [const { NotifyRoute { pending: AtomicPtr::new(core::ptr::null_mut()), bit: AtomicU32::new(0), hwid: AtomicU32::new(0) } };
        hallows_abi::MAX_CHANNELS]
}; MAX_CORES];

/// Fills [`NOTIFY_ROUTES`] from the installed system: for each core that
/// runs a vCPU, each doorbell channel of its partition. Core 0, at boot,
/// before any other core starts.
pub fn install_notify_routes(sys: &crate::system::System) {
    for (core, routes) in NOTIFY_ROUTES.iter().enumerate() {
        let Some(role) = sys.core_map.get(core).copied().flatten() else { continue };
        for (channel, route) in routes.iter().enumerate() {
            if let Some((pending, bit, target)) = crate::partition::doorbell_target(sys, role.partition, channel) {
                let Some(&hwid) = sys.table.board.core_hwid.get(target) else { continue };
                route.bit.store(bit, Ordering::Relaxed);
                route.hwid.store(hwid as u32, Ordering::Relaxed);
                route.pending.store(pending as *const AtomicU32 as *mut AtomicU32, Ordering::Release);
            }
        }
    }
}

/// `NOTIFY(channel)` from `core`'s vCPU, answered at the exit: sets the
/// channel's bit in the peer's pending word and sends the doorbell IPI to
/// the peer's boot core unless the bit was already set (doorbells
/// coalesce), exactly as `partition::ring_doorbell`. False (nothing done)
/// when `channel` (a guest value) is not a doorbell channel of the
/// caller's partition: the portable path then answers the error.
#[inline(always)]
pub fn notify(core: usize, channel: u64) -> bool {
    let Some(route) = NOTIFY_ROUTES.get(core).and_then(|r| r.get(usize::try_from(channel).ok()?)) else { return false };
    let pending = route.pending.load(Ordering::Acquire);
    if pending.is_null() {
        return false;
    }
    // SAFETY: a non-null `pending` was stored by `install_notify_routes`
    // from `partition::doorbell_target`: a `&'static AtomicU32`.
    let pending = unsafe { &*pending };
    let bit = route.bit.load(Ordering::Relaxed);
    if pending.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
        super::apic::send_doorbell(route.hwid.load(Ordering::Relaxed) as u64);
    }
    true
}

//! What every x86 partition sees, whichever of SVM or VMX runs it: the
//! 64-bit entry state, the identity page tables it starts on, the filtered
//! CPUID and the MSR allow-list. Kept apart from the two drivers so both
//! enforce one policy.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

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
/// → `inject_virtual`), its timer (`timer.rs`), its partition's device
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

/// Queues the doorbell of portable virtual INTID `vintid` for `core`'s vCPU.
pub fn queue_doorbell(core: usize, vintid: u32) {
    let Some(slot) = vintid.checked_sub(hallows_abi::DOORBELL_INTID_BASE) else { return };
    if slot < DOORBELLS {
        queue_vector(core, hallows_abi::DOORBELL_VECTOR_BASE + slot as u8);
    }
}

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

/// Reads guest-physical bytes of the partition running on `core`: from its
/// RAM or from its initial page tables (the two kinds of memory the
/// hypervisor may read on its behalf; channels and device regions are not
/// read). `None` if any byte lies elsewhere.
fn read_gpa(core: usize, gpa: u64, buf: &mut [u8]) -> Option<()> {
    let rt = partition_rt(core)?;
    if rt.ram.read(gpa, buf).is_ok() {
        return Some(());
    }
    for (i, b) in buf.iter_mut().enumerate() {
        let off = gpa.checked_add(i as u64)?.checked_sub(GUEST_PT_GPA)?;
        *b = (initial_table_word(rt.vmid, off)? >> ((off % 8) * 8)) as u8;
    }
    Some(())
}

/// One page-table entry at `gpa` (8-aligned): from the partition's initial
/// tables with one read of the table pool, else from its RAM.
fn read_entry(core: usize, gpa: u64) -> Option<u64> {
    if let Some(off) = gpa.checked_sub(GUEST_PT_GPA).filter(|off| *off < (GUEST_PT_PAGES as u64) * 4096) {
        return initial_table_word(partition_rt(core)?.vmid, off);
    }
    let mut e = [0u8; 8];
    read_gpa(core, gpa, &mut e)?;
    Some(u64::from_le_bytes(e))
}

/// The partition running on `core`.
fn partition_rt(core: usize) -> Option<crate::system::PartitionRt> {
    let sys = crate::system::get();
    let role = sys.core_map.get(core).copied().flatten()?;
    sys.parts.get(role.partition).copied().flatten()
}

/// The 8-byte word holding byte `off` of partition `vmid`'s initial page
/// tables (`None` past them).
fn initial_table_word(vmid: u16, off: u64) -> Option<u64> {
    let page = GUEST_PT.get(vmid as usize)?.get((off / 4096) as usize)?.load(Ordering::Relaxed);
    (page != 0).then(|| TablePool.read(page, ((off % 4096) / 8) as usize))
}

/// The guest-physical address of linear address `la` under the guest's
/// 4-level page tables rooted at `cr3` (the only paging mode a partition
/// can be in: CR0 and CR4 writes are denied). Permissions are not checked:
/// the CPU has already fetched from there.
fn translate(core: usize, cr3: u64, la: u64) -> Option<u64> {
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let mut table = cr3 & ADDR;
    for level in (0..4u32).rev() {
        let shift = 12 + 9 * level;
        let e = read_entry(core, table + 8 * ((la >> shift) & 511))?;
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

/// Longest x86 instruction.
pub const MAX_INSTRUCTION: usize = 15;

/// Fetches the (up to) 15 bytes at guest linear address `rip` of the
/// partition on `core`, through its page tables (`cr3`). Each byte is
/// translated on its own, so an instruction may cross a page. The guest
/// controls these bytes and tables: anything unreadable is `None`.
pub fn fetch(core: usize, cr3: u64, rip: u64) -> Option<[u8; MAX_INSTRUCTION]> {
    let mut out = [0u8; MAX_INSTRUCTION];
    let mut i = 0;
    while i < MAX_INSTRUCTION {
        let la = rip.wrapping_add(i as u64);
        let gpa = translate(core, cr3, la)?;
        // The rest of this page, at most.
        let n = ((4096 - (la & 0xfff)) as usize).min(MAX_INSTRUCTION - i);
        // Bytes past the end of readable memory may not belong to the
        // instruction: keep what was read.
        if read_gpa(core, gpa, &mut out[i..i + n]).is_none() {
            return (i > 0).then_some(out);
        }
        i += n;
    }
    Some(out)
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

/// Decodes `bytes` as legacy prefixes (0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65,
/// 0x66, 0x67, 0xf0, 0xf2, 0xf3) and REX prefixes in any number, then
/// `opcode`, then a ModRM byte if `modrm`. `None` if the bytes are not that
/// instruction (another vCPU rewrote them since the exit) or it would be
/// longer than 15 bytes (the CPU would have raised #GP instead).
pub fn decode(bytes: &[u8], opcode: &[u8], modrm: bool) -> Option<Decoded> {
    let mut rex = 0;
    let mut i = 0;
    loop {
        match *bytes.get(i)? {
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 => rex = 0,
            // A REX prefix counts only right before the opcode.
            b @ 0x40..=0x4f => rex = b,
            _ => break,
        }
        i += 1;
    }
    let end = i + opcode.len();
    if bytes.get(i..end)? != opcode {
        return None;
    }
    let (len, modrm) = if modrm { (end + 1, *bytes.get(end)?) } else { (end, 0) };
    (len <= MAX_INSTRUCTION).then_some(Decoded { len: len as u64, rex, modrm })
}

/// Whether the vCPU on `core` can ever leave a `hlt`: its timer is armed,
/// an interrupt or a wake-up is already queued, another vCPU of its
/// partition may wake it (`WAKE`), or, for the boot vCPU, some channel's
/// doorbell rings its partition or it owns a device with an interrupt.
pub fn can_be_woken(core: usize) -> bool {
    let sys = crate::system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { return false };
    let p = &sys.table.partitions()[role.partition];
    let devices = || p.devices[..(p.device_count as usize).min(p.devices.len())].iter().any(|d| d.irq != 0);
    super::timer::armed(core)
        || doorbell_queued(core)
        || crate::system::vcpu_count(p) > 1
        || role.vcpu == 0
            && (devices()
                || sys.doorbells.iter().flatten().any(|route| route.is_some_and(|(peer, _)| peer as usize == role.partition)))
}

//! What every x86 partition sees, whichever of SVM or VMX runs it: the
//! 64-bit entry state, the identity page tables it starts on, the filtered
//! CPUID and the MSR allow-list. Kept apart from the two drivers so both
//! enforce one policy.

use core::cell::UnsafeCell;

use hallows_paging::{Attr, MapError, PageTable, TableMemory};

use super::cpu::{cpuid as host_cpuid, Cpuid};

/// Guest-physical address of the guest's initial page tables (6 pages just
/// below the RAM window at 0x4000_0000): a PML4, a PDPT and 4 page
/// directories identity-mapping the first 4 GiB with 2 MiB pages. The
/// hypervisor owns them; each partition's nested tables map them
/// read-only, with accessed and dirty bits preset so the walker never needs
/// to write them. A guest that wants other mappings builds its own tables.
pub const GUEST_PT_GPA: u64 = 0x3FFF_A000;
const GUEST_PT_PAGES: usize = 6;

/// The power-on PAT.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

#[repr(C, align(4096))]
struct GuestTables(UnsafeCell<[[u64; 512]; GUEST_PT_PAGES]>);
// SAFETY: written once by core 0 at boot, before any partition runs; read
// only by guests (through read-only nested mappings) afterwards.
unsafe impl Sync for GuestTables {}

#[link_section = ".noinit.guest_pt"]
static GUEST_PT: GuestTables = GuestTables(UnsafeCell::new([[0; 512]; GUEST_PT_PAGES]));

/// Builds the shared guest page tables (core 0, once).
pub fn build_guest_tables() {
    const P_RW_A_D: u64 = 1 | 2 | (1 << 5) | (1 << 6);
    // SAFETY: core 0 at boot; nothing else references the tables yet.
    let t = unsafe { &mut *GUEST_PT.0.get() };
    for page in t.iter_mut() {
        page.fill(0);
    }
    t[0][0] = (GUEST_PT_GPA + 0x1000) | P_RW_A_D;
    for i in 0..4u64 {
        t[1][i as usize] = (GUEST_PT_GPA + 0x2000 + i * 0x1000) | P_RW_A_D;
        for j in 0..512u64 {
            t[2 + i as usize][j as usize] = ((i << 30) | (j << 21)) | P_RW_A_D | (1 << 7);
        }
    }
}

/// Maps the shared guest page tables into a partition's nested tables.
pub fn map_guest_tables<F: hallows_paging::Format>(
    t: &mut PageTable<F>,
    pool: &mut impl TableMemory,
) -> Result<(), MapError> {
    let pa = GUEST_PT.0.get() as u64;
    t.map(pool, GUEST_PT_GPA, pa, (GUEST_PT_PAGES * 4096) as u64, Attr::RO)
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
}

impl Gprs {
    /// Hypercall arguments x1..x5 (x0 is rax): rdi, rsi, rdx, r10, r8.
    pub fn to_args(&self, regs: &mut [u64; 31]) {
        regs[1] = self.rdi;
        regs[2] = self.rsi;
        regs[3] = self.rdx;
        regs[4] = self.r10;
        regs[5] = self.r8;
    }
    pub fn from_args(&mut self, regs: &[u64; 31]) {
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
    /// A hypercall, with x0..x5 marshalled into the portable register array.
    Call([u64; 31]),
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

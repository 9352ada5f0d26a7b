//! AMD SVM: the VMCB of each core, the intercept policy, `vmrun` and the
//! decoding of `#VMEXIT`s into portable traps.
//!
//! Layouts and exit codes are from the AMD64 APM vol. 2, appendix B and
//! chapter 15 (the `x86` crate has nothing for SVM). The policy is the
//! same as VMX's (see `docs/x86.md`): every I/O port and every MSR outside a
//! short allow-list is intercepted and stops the partition, CPUID is
//! filtered, CR0/CR4 writes, task switches, SVM instructions and shutdowns
//! stop it, `hlt` with interrupts off stops it. One difference: a vCPU
//! that something can wake executes its `hlt` in place (not intercepted,
//! see `inject`), where VMX intercepts every `hlt`.
//!
//! Debug registers: DR0-3 are not switched by `vmrun`, so a guest must
//! never load them. Every DR read and write is intercepted and emulated
//! from a per-core shadow; the VMCB keeps DR7 = 0x400 (nothing armed), so a
//! guest's breakpoints never arm (its own reads see what it wrote). The
//! host's DR7 is set to 0x400 again right after every `#VMEXIT`.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::cpu::{self, cpuid, rdmsr, wrmsr};
use super::guest::{self, page_pa, Exit, Gprs, Pages, PAGE};
use hallows_abi::call;

use crate::partition::{StopReason, Trap};
use crate::MAX_CORES;


#[link_section = ".noinit.svm"]
static VMCBS: Pages<MAX_CORES> = Pages(UnsafeCell::new([[0; PAGE]; MAX_CORES]));
#[link_section = ".noinit.svm"]
static HOST_SAVE: Pages<MAX_CORES> = Pages(UnsafeCell::new([[0; PAGE]; MAX_CORES]));
/// The hypervisor's own `vmload` state per core (TR with its TSS, FS, GS,
/// LDTR, kernel GS base, the syscall/sysenter MSRs), saved once by
/// `init_core` and loaded back after every `#VMEXIT` (see `svm_run`).
#[link_section = ".noinit.svm"]
static HOST_VMLOAD: Pages<MAX_CORES> = Pages(UnsafeCell::new([[0; PAGE]; MAX_CORES]));
/// I/O permission map: 12 KiB, one bit per port (plus the spill-over page).
#[link_section = ".noinit.svm"]
static IOPM: Pages<3> = Pages(UnsafeCell::new([[0; PAGE]; 3]));
/// MSR permission map: 8 KiB, two bits (read, write) per MSR.
#[link_section = ".noinit.svm"]
static MSRPM: Pages<2> = Pages(UnsafeCell::new([[0; PAGE]; 2]));

const VM_HSAVE_PA: u32 = 0xC001_0117;
const EFER_SVME: u64 = 1 << 12;

/// VMCB control area offsets.
mod ctl {
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_DR: usize = 0x004;
    pub const INTERCEPT_EXC: usize = 0x008;
    pub const INTERCEPT_MISC1: usize = 0x00C;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05C;
    pub const INT_CTL: usize = 0x060;
    pub const INT_STATE: usize = 0x068;
    pub const EXITCODE: usize = 0x070;
    pub const EXITINFO1: usize = 0x078;
    pub const EXITINFO2: usize = 0x080;
    pub const EXITINTINFO: usize = 0x088;
    pub const NP_ENABLE: usize = 0x090;
    pub const EVENTINJ: usize = 0x0A8;
    pub const N_CR3: usize = 0x0B0;
    pub const NRIP: usize = 0x0C8;
}

/// VMCB state-save area offsets.
mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4CB;
    pub const EFER: usize = 0x4D0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5D8;
    pub const RAX: usize = 0x5F8;
    pub const G_PAT: usize = 0x668;
}

mod exit {
    pub const CR0_WRITE: u64 = 0x10;
    /// Reads of DR0..DR15, then writes of DR0..DR15.
    pub const DR_FIRST: u64 = 0x20;
    pub const DR_WRITE: u64 = 0x30;
    pub const DR_LAST: u64 = 0x3F;
    pub const CR4_WRITE: u64 = 0x14;
    pub const EXCP_DB: u64 = 0x41;
    pub const EXCP_AC: u64 = 0x51;
    pub const INTR: u64 = 0x60;
    pub const VINTR: u64 = 0x64;
    pub const NMI: u64 = 0x61;
    pub const INIT: u64 = 0x63;
    pub const CPUID: u64 = 0x72;
    pub const INVD: u64 = 0x76;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    pub const TASK_SWITCH: u64 = 0x7D;
    pub const SHUTDOWN: u64 = 0x7F;
    pub const VMMCALL: u64 = 0x81;
    pub const NPF: u64 = 0x400;
}

/// Whether this CPU has SVM with nested paging. (`VM_CR.SVMDIS`, the
/// firmware's lock, is not read: Bochs does not implement that MSR, and a
/// disabled SVM makes setting `EFER.SVME` fault, which stops the boot.)
pub fn supported() -> bool {
    let ext = cpuid(0x8000_0000, 0).eax;
    ext >= 0x8000_000A && cpuid(0x8000_0001, 0).ecx & (1 << 2) != 0 && cpuid(0x8000_000A, 0).edx & 1 != 0
}

/// Whether the CPU saves the next RIP at intercepts (NRIP save), read once
/// at boot (`init_global`) rather than with a CPUID per exit.
static NRIP_SAVE: AtomicBool = AtomicBool::new(false);

fn nrip_save() -> bool {
    NRIP_SAVE.load(Ordering::Relaxed)
}

/// One-time set-up on core 0: the permission maps. All ones: every port and
/// every MSR is intercepted, except the three MSRs `vmload`/`vmsave` switch
/// with the guest (FS, GS and kernel GS base), which a guest owns outright.
pub fn init_global() {
    // SAFETY: core 0, before any other core runs or any VMCB points here.
    let (io, msr) = unsafe { (&mut *IOPM.0.get(), &mut *MSRPM.0.get()) };
    NRIP_SAVE.store(cpuid(0x8000_000A, 0).edx & (1 << 3) != 0, Ordering::Relaxed);
    io.iter_mut().for_each(|p| p.fill(0xff));
    msr.iter_mut().for_each(|p| p.fill(0xff));
    for m in [0xC000_0100u32, 0xC000_0101, 0xC000_0102] {
        // Range 0xC000_0000..0xC000_1FFF starts at byte 0x800; 2 bits each.
        let bit = (m - 0xC000_0000) as usize * 2;
        let byte = 0x800 + bit / 8;
        msr[byte / PAGE][byte % PAGE] &= !(0b11 << (bit % 8));
    }
}

/// Per-core set-up: EFER.SVME, the host save area, and the hypervisor's
/// own `vmload` state (its TR, loaded by `idt::load_tss`, above all).
pub fn init_core(core: usize) {
    wrmsr(cpu::EFER, rdmsr(cpu::EFER) | EFER_SVME);
    wrmsr(VM_HSAVE_PA, page_pa(&HOST_SAVE, core));
    let host = page_pa(&HOST_VMLOAD, core);
    // SAFETY: `vmsave` writes this core's own page (4 KiB aligned, VMCB
    // format) with the CPU's current FS/GS/TR/LDTR and MSR state.
    unsafe { core::arch::asm!("vmsave rax", in("rax") host, options(nostack)) };
}

/// This core's VMCB (identity-mapped: the address is also its physical one).
struct Vmcb(u64);

impl Vmcb {
    fn of(core: usize) -> Vmcb {
        assert!(core < MAX_CORES, "core index");
        Vmcb(page_pa(&VMCBS, core))
    }
    fn w64(&self, off: usize, v: u64) {
        debug_assert!(off + 8 <= PAGE);
        // SAFETY: `off` is a field offset inside this core's own VMCB page.
        unsafe { core::ptr::write_volatile((self.0 + off as u64) as *mut u64, v) }
    }
    fn w32(&self, off: usize, v: u32) {
        // SAFETY: as `w64`.
        unsafe { core::ptr::write_volatile((self.0 + off as u64) as *mut u32, v) }
    }
    fn w16(&self, off: usize, v: u16) {
        // SAFETY: as `w64`.
        unsafe { core::ptr::write_volatile((self.0 + off as u64) as *mut u16, v) }
    }
    fn w8(&self, off: usize, v: u8) {
        // SAFETY: as `w64`.
        unsafe { core::ptr::write_volatile((self.0 + off as u64) as *mut u8, v) }
    }
    fn r64(&self, off: usize) -> u64 {
        // SAFETY: as `w64`.
        unsafe { core::ptr::read_volatile((self.0 + off as u64) as *const u64) }
    }
    fn r8(&self, off: usize) -> u8 {
        // SAFETY: as `w64`.
        unsafe { core::ptr::read_volatile((self.0 + off as u64) as *const u8) }
    }
    fn seg(&self, off: usize, sel: u16, attr: u16, limit: u32, base: u64) {
        self.w16(off, sel);
        self.w16(off + 2, attr);
        self.w32(off + 4, limit);
        self.w64(off + 8, base);
    }
}

/// Intercepts (offset 0x0C) always on; VINTR (bit 4) is added while a
/// doorbell waits for the guest to open an interrupt window, HLT (bit 24)
/// whenever the guest's `hlt` must be seen (see `inject`).
const MISC1: u32 = (1u32 << 0) // INTR
    | (1 << 1) // NMI
    | (1 << 3) // INIT
    | (1 << 18) // CPUID
    | (1 << 22) // INVD
    | (1 << 26) // INVLPGA
    | (1 << 27) // IOIO
    | (1 << 28) // MSR
    | (1 << 29) // task switch
    | (1 << 31); // shutdown
const MISC1_VINTR: u32 = 1 << 4;
const MISC1_HLT: u32 = 1 << 24;

/// INT_CTL: V_INTR_MASKING (24): the guest's IF masks only virtual
/// interrupts; physical ones are masked by the host's IF at `vmrun` (set,
/// so that they exit). V_IRQ (8) with V_IGN_TPR (20) and priority 15 is
/// only used to ask for an interrupt window (VINTR intercept).
const V_INTR_MASKING: u64 = 1 << 24;
const V_IRQ_WINDOW: u64 = (1 << 8) | (1 << 20) | (0xf << 16);
/// EVENTINJ / EXITINTINFO: valid (31), type (8..10: 0 external interrupt,
/// 2 NMI, 3 exception, 4 software interrupt), error code valid (11).
const EVENT_VALID: u64 = 1 << 31;
const EVENT_EXCEPTION: u64 = 3 << 8;
const EVENT_ERROR_CODE: u64 = 1 << 11;
const VECTOR_UD: u64 = 6;
const VECTOR_GP: u64 = 13;
const RFLAGS_TF: u64 = 1 << 8;

/// DR6 and DR7 as after reset.
const DR6_RESET: u64 = 0xffff_0ff0;
const DR7_RESET: u64 = 0x400;

/// The guest's debug registers as it wrote them (DR0..DR3, DR6, DR7), per
/// core; only that core touches its row. Never loaded into the CPU.
static DEBUG: [[AtomicU64; 6]; MAX_CORES] = [const { [const { AtomicU64::new(0) }; 6] }; MAX_CORES];

/// Fills this core's VMCB for a fresh vCPU entering 64-bit mode at `entry`.
pub fn setup_vcpu(core: usize, npt_root: u64, asid: u16, entry: u64) {
    let v = Vmcb::of(core);
    // SAFETY: this core's own VMCB page, not in use (we are not in a guest).
    unsafe { core::ptr::write_bytes(v.0 as *mut u8, 0, PAGE) };
    // CR0 and CR4 writes (bits 16 + n).
    v.w32(ctl::INTERCEPT_CR, (1 << 16) | (1 << 20));
    // Every debug-register read and write (emulated: `debug_register`).
    v.w32(ctl::INTERCEPT_DR, 0xffff_ffff);
    for (i, r) in DEBUG[core].iter().enumerate() {
        r.store([0, 0, 0, 0, DR6_RESET, DR7_RESET][i], Ordering::Relaxed);
    }
    // #DB and #AC: the two exceptions a guest can make recur forever inside
    // microcode (CVE-2015-5307, CVE-2015-8104).
    v.w32(ctl::INTERCEPT_EXC, (1 << 1) | (1 << 17));
    v.w32(ctl::INTERCEPT_MISC1, MISC1 | MISC1_HLT);
    // VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT.
    v.w32(ctl::INTERCEPT_MISC2, 0x7f);
    v.w64(ctl::IOPM_BASE, page_pa(&IOPM, 0));
    v.w64(ctl::MSRPM_BASE, page_pa(&MSRPM, 0));
    v.w32(ctl::ASID, asid as u32);
    v.w8(ctl::TLB_CONTROL, 1); // flush everything on this entry
    v.w64(ctl::INT_CTL, V_INTR_MASKING);
    INTERCEPTS[core].store(HLT_SEEN, Ordering::Relaxed);
    v.w64(ctl::NP_ENABLE, 1);
    v.w64(ctl::N_CR3, npt_root);
    guest::clear_doorbells(core);

    let s = guest::entry_state();
    // Attributes: descriptor bits 40..47 in 0..7, 52..55 in 8..11.
    v.seg(save::CS, s.cs, 0xA9B, 0xffff_ffff, 0);
    for off in [save::ES, save::SS, save::DS, save::FS, save::GS] {
        v.seg(off, s.ds, 0xC93, 0xffff_ffff, 0);
    }
    v.seg(save::GDTR, 0, 0, 0, 0);
    v.seg(save::IDTR, 0, 0, 0, 0);
    v.seg(save::LDTR, 0, 0x82, 0, 0);
    v.seg(save::TR, 0, 0x8B, 0x67, 0);
    v.w8(save::CPL, 0);
    // The guest's EFER must have SVME set for vmrun; CPUID and RDMSR hide it.
    v.w64(save::EFER, s.efer | EFER_SVME);
    v.w64(save::CR0, s.cr0);
    v.w64(save::CR3, s.cr3);
    v.w64(save::CR4, s.cr4);
    v.w64(save::DR6, DR6_RESET);
    v.w64(save::DR7, DR7_RESET);
    v.w64(save::RFLAGS, 0x2);
    v.w64(save::RIP, entry);
    v.w64(save::RSP, 0);
    v.w64(save::RAX, 0);
    v.w64(save::G_PAT, guest::PAT_RESET);
    // The state `vmload` loads (FS, GS, TR, LDTR, kernel GS base, the
    // syscall and sysenter MSRs) comes from this zeroed VMCB at the first
    // entry: nothing of an earlier vCPU of this core survives.
}

extern "C" {
    /// Enters the guest of VMCB `gprs.vmcb` with the registers of `gprs`;
    /// returns at its next `#VMEXIT`, the registers saved.
    ///
    /// `vmrun` and `#VMEXIT` do not switch FS, GS, TR, LDTR, the kernel GS
    /// base and the syscall/sysenter MSRs: the guest's are loaded from its
    /// VMCB with `vmload` before `vmrun`, saved back with `vmsave` after
    /// the exit, and the hypervisor's (`host`, saved by `init_core`) loaded
    /// again at once. The hypervisor's TR matters: its TSS holds the IST
    /// stacks of the double fault, NMI and machine-check gates
    /// (`idt::load_tss`), and with a guest's TR loaded an NMI taken in the
    /// hypervisor would switch to a stack address the guest chose. Until
    /// the host `vmload` the hypervisor runs with GIF clear (no NMI) and
    /// executes only the register saves below. (After the exit IF stays
    /// set, as `vmrun` restored it: GIF, cleared by `#VMEXIT`, is what
    /// holds interrupts off, and every window that sets GIF clears IF
    /// again itself: `take_interrupts`, `idle`.)
    fn svm_run(gprs: *mut Gprs);
}

global_asm!(
    ".global svm_run",
    "svm_run:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    push rdi",
    "    mov rsi, rdi",
    "    mov rax, [rsi + 120]",
    "    vmload rax",
    "    mov rbx, [rsi + 0]",
    "    mov rcx, [rsi + 8]",
    "    mov rdx, [rsi + 16]",
    "    mov rdi, [rsi + 32]",
    "    mov rbp, [rsi + 40]",
    "    mov r8,  [rsi + 48]",
    "    mov r9,  [rsi + 56]",
    "    mov r10, [rsi + 64]",
    "    mov r11, [rsi + 72]",
    "    mov r12, [rsi + 80]",
    "    mov r13, [rsi + 88]",
    "    mov r14, [rsi + 96]",
    "    mov r15, [rsi + 104]",
    "    mov rsi, [rsi + 24]",
    // GIF off first, then the host's IF on: `vmrun` records it, and with
    // V_INTR_MASKING it is what lets physical interrupts reach the guest
    // (as INTR exits). The hypervisor itself never runs with GIF set but
    // in `take_interrupts`/`idle`, so nothing is taken here.
    "    clgi",
    "    sti",
    "    vmrun rax",
    // The hypervisor's DR7 first (nothing armed), whatever the CPU or an
    // emulator left there, before any other instruction of ours runs:
    // rax is free (the guest's is in the VMCB).
    "    mov eax, 0x400",
    "    mov dr7, rax",
    "    mov rax, [rsp]",
    "    mov [rax + 0], rbx",
    "    mov [rax + 8], rcx",
    "    mov [rax + 16], rdx",
    "    mov [rax + 24], rsi",
    "    mov [rax + 32], rdi",
    "    mov [rax + 40], rbp",
    "    mov [rax + 48], r8",
    "    mov [rax + 56], r9",
    "    mov [rax + 64], r10",
    "    mov [rax + 72], r11",
    "    mov [rax + 80], r12",
    "    mov [rax + 88], r13",
    "    mov [rax + 96], r14",
    "    mov [rax + 104], r15",
    // The guest's `vmload` state back into its VMCB, the hypervisor's into
    // the CPU.
    "    mov rsi, rax",
    "    mov rax, [rsi + 120]",
    "    vmsave rax",
    "    mov rax, [rsi + 128]",
    "    vmload rax",
    "    pop rdi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    ret",
);

/// Runs the guest on this core until its next exit the portable code must
/// see, handling the rest (CPUID, allowed MSRs, interrupts) here.
pub fn run(core: usize, vcpu: u64, g: &mut Gprs) -> Exit {
    let v = Vmcb::of(core);
    let nrip = nrip_save();
    g.vmcb = v.0;
    g.host = page_pa(&HOST_VMLOAD, core);
    loop {
        let window = inject(&v, core);
        // SAFETY: the VMCB was set up by `setup_vcpu` for this core, EFER.SVME
        // and VM_HSAVE_PA are set and the host's `vmload` state saved
        // (`init_core`), and `g` is this core's own register block;
        // `svm_run` preserves the host's callee-saved state.
        unsafe { svm_run(g) };
        v.w8(ctl::TLB_CONTROL, 0);
        if window {
            // QEMU TCG can lose an IPI to this core during a `vmrun` that
            // asks for a window (see `idle`): the pending words are
            // collected after every such run, whatever the exit, so a
            // doorbell rung meanwhile is not left for a `hlt` the guest may
            // now execute in place.
            crate::partition::deliver_doorbells(core);
        }
        // An event whose delivery the exit interrupted: a doorbell goes
        // back to the queue, an exception is delivered again.
        let interrupted = v.r64(ctl::EXITINTINFO);
        v.w64(ctl::EVENTINJ, 0);
        if interrupted & EVENT_VALID != 0 {
            match (interrupted >> 8) & 7 {
                0 => guest::requeue_vector(core, interrupted as u8),
                3 => v.w64(ctl::EVENTINJ, interrupted),
                _ => {}
            }
        }
        let code = v.r64(ctl::EXITCODE);
        // Read where an exit uses them (volatile reads: not for exits that
        // need none, such as the interrupts of every doorbell and tick).
        macro_rules! info1 {
            () => {
                v.r64(ctl::EXITINFO1)
            };
        }
        macro_rules! info2 {
            () => {
                v.r64(ctl::EXITINFO2)
            };
        }
        macro_rules! rip {
            () => {
                v.r64(save::RIP)
            };
        }
        // Past the intercepted instruction (`opcode`, after any prefixes).
        // (A macro rather than a closure: `skip` is inlined with the opcode
        // a constant.)
        macro_rules! advance {
            ($opcode:expr) => {
                skip(&v, core, nrip, rip!(), $opcode, None)
            };
        }
        let trap = match code {
            exit::VMMCALL => {
                if v.r8(save::CPL) != 0 {
                    // Only the guest's kernel may call the hypervisor: code
                    // at CPL > 0 gets #UD, as if the instruction did not
                    // exist, and the call is not made.
                    inject_exception(&v, VECTOR_UD, None);
                    continue;
                }
                if let Err(r) = advance!(&[0x0f, 0x01, 0xd9]) {
                    return Exit::Trap(Trap::Stop(r));
                }
                // The two calls of every doorbell and every probe of the
                // ABI, answered here (see `guest::notify`); any other call,
                // or a NOTIFY the routes do not know (the error is the
                // portable path's), goes to the portable code.
                match v.r64(save::RAX) {
                    call::NOTIFY if guest::notify(core, g.rdi) => v.w64(save::RAX, 0),
                    call::ABI_VERSION => {
                        v.w64(save::RAX, 0);
                        g.rdi = hallows_abi::ABI_VERSION;
                    }
                    _ => return Exit::Call,
                }
                continue;
            }
            exit::DR_FIRST..=exit::DR_LAST => match debug_register(&v, core, nrip, g, rip!(), code) {
                Ok(()) => continue,
                Err(r) => Trap::Stop(r),
            },
            exit::NPF => Trap::Stage2Fault { ipa: info2!(), write: info1!() & 2 != 0, instr: info1!() & 0x10 != 0, pc: rip!() },
            exit::CPUID => {
                let r = guest::cpuid(v.r64(save::RAX) as u32, g.rcx as u32, vcpu);
                v.w64(save::RAX, r.eax as u64);
                g.rbx = r.ebx as u64;
                g.rcx = r.ecx as u64;
                g.rdx = r.edx as u64;
                match advance!(&[0x0f, 0xa2]) {
                    Ok(()) => continue,
                    Err(r) => Trap::Stop(r),
                }
            }
            exit::MSR => {
                let msr = g.rcx as u32;
                let write = info1!() == 1;
                let value = (g.rdx << 32) | (v.r64(save::RAX) & 0xffff_ffff);
                let pat = v.r64(save::G_PAT);
                match guest::msr(msr, write, value, pat, v.r64(save::EFER) & !EFER_SVME) {
                    Some(guest::MsrResult::Read(x)) => {
                        v.w64(save::RAX, x & 0xffff_ffff);
                        g.rdx = x >> 32;
                    }
                    Some(guest::MsrResult::Pat(p)) => v.w64(save::G_PAT, p),
                    None => return Exit::Trap(Trap::Stop(StopReason::Msr { msr, write, pc: rip!() })),
                }
                match advance!(if write { &[0x0f, 0x30] } else { &[0x0f, 0x32] }) {
                    Ok(()) => continue,
                    Err(r) => Trap::Stop(r),
                }
            }
            exit::IOIO => {
                let port = (info1!() >> 16) as u16;
                Trap::Stop(StopReason::IoPort { port, write: info1!() & 1 == 0, pc: rip!() })
            }
            exit::HLT => {
                if v.r64(save::RFLAGS) & (1 << 9) == 0 {
                    Trap::Stop(StopReason::Halted { pc: rip!() })
                } else if !guest::can_be_woken(core) {
                    // Nothing can interrupt this vCPU: it would sleep forever.
                    Trap::Stop(StopReason::HaltedNoSource { pc: rip!() })
                } else {
                    // Sleeps here until a virtual interrupt (a doorbell, its
                    // timer, a device) is queued for it or a `WAKE` comes.
                    if let Err(r) = advance!(&[0xf4]) {
                        return Exit::Trap(Trap::Stop(r));
                    }
                    idle(core);
                    continue;
                }
            }
            exit::INVD => {
                // Discarding caches shared with other partitions is not
                // theirs to do: treated as a write-back (a no-op here).
                match advance!(&[0x0f, 0x08]) {
                    Ok(()) => continue,
                    Err(r) => Trap::Stop(r),
                }
            }
            exit::INTR => {
                take_interrupts();
                super::timer::collect(core);
                super::timer::watchdog(core);
                super::console_poll();
                crate::partition::deliver_doorbells(core);
                continue;
            }
            // The guest opened the interrupt window asked for (`inject`).
            exit::VINTR => continue,
            // An NMI is the hypervisor's: the kick of a partition that is
            // ending (`kick`). Pending until GIF is set, it is taken (and
            // ignored) by the hypervisor's IDT here; an emulator that took
            // it with the exit instead may leave NMIs blocked, which an
            // `iretq` ends (the next kick must get through). Then this
            // core leaves if its partition is ending.
            exit::NMI => {
                take_interrupts();
                super::cpu::unblock_nmi();
                super::timer::collect(core);
                super::timer::watchdog(core);
                super::console_poll();
                crate::partition::deliver_doorbells(core);
                continue;
            }
            exit::INIT => continue,
            exit::CR0_WRITE => Trap::Stop(StopReason::ControlRegister { cr: 0, pc: rip!() }),
            exit::CR4_WRITE => Trap::Stop(StopReason::ControlRegister { cr: 4, pc: rip!() }),
            exit::SHUTDOWN => Trap::Stop(StopReason::TripleFault { pc: rip!() }),
            exit::EXCP_DB | exit::EXCP_AC => {
                Trap::Stop(StopReason::Exception { pc: rip!(), esr: code - 0x40 })
            }
            exit::TASK_SWITCH => Trap::Stop(StopReason::UnexpectedExit { code, info: info1!(), pc: rip!() }),
            _ => Trap::Stop(StopReason::UnexpectedExit { code, info: info1!(), pc: rip!() }),
        };
        return Exit::Trap(trap);
    }
}

/// Moves the guest past the intercepted instruction at `rip`: to the
/// CPU's next RIP where it saves one (NRIP save), else past the
/// instruction's true length, prefixes included, decoded from guest memory
/// (`decoded`, or fetched here and checked to be `opcode`). A guest
/// single-stepping (`RFLAGS.TF`) would take #DB after it, which stops the
/// partition like any #DB; it never reaches the hypervisor.
#[inline(always)]
fn skip(v: &Vmcb, core: usize, nrip: bool, rip: u64, opcode: &[u8], decoded: Option<guest::Decoded>) -> Result<(), StopReason> {
    let saved = if nrip { v.r64(ctl::NRIP) } else { 0 };
    let next = if saved != 0 {
        saved
    } else {
        let d = match decoded {
            Some(d) => d,
            None => guest::decode(core, v.r64(save::CR3), rip, opcode, false).ok_or(StopReason::Undecodable { pc: rip })?,
        };
        rip.wrapping_add(d.len)
    };
    v.w64(save::RIP, next);
    // The `sti` shadow covered at most the skipped instruction.
    v.w64(ctl::INT_STATE, 0);
    if v.r64(save::RFLAGS) & RFLAGS_TF != 0 {
        return Err(StopReason::Exception { pc: next, esr: 1 });
    }
    Ok(())
}

/// Makes the next `vmrun` deliver exception `vector` to the guest.
fn inject_exception(v: &Vmcb, vector: u64, error: Option<u32>) {
    let error = error.map_or(0, |e| EVENT_ERROR_CODE | (e as u64) << 32);
    v.w64(ctl::EVENTINJ, EVENT_VALID | EVENT_EXCEPTION | vector | error);
}

/// Emulates the intercepted `mov` from (exit `0x20 + n`) or to (`0x30 +
/// n`) debug register n against this core's shadow: the instruction
/// (`0f 21 /r` or `0f 23 /r`) is decoded from guest memory for its
/// register operand. As the CPU would: #GP(0) at CPL > 0 or for a DR6/DR7
/// value above 32 bits, #UD for DR8 and up; DR4/DR5 are DR6/DR7 (CR4.DE is
/// off). Bits that are fixed in DR6/DR7 read as fixed.
fn debug_register(v: &Vmcb, core: usize, nrip: bool, g: &mut Gprs, rip: u64, code: u64) -> Result<(), StopReason> {
    let write = code >= exit::DR_WRITE;
    let opcode: &[u8] = if write { &[0x0f, 0x23] } else { &[0x0f, 0x21] };
    let undecodable = StopReason::Undecodable { pc: rip };
    let d = guest::decode(core, v.r64(save::CR3), rip, opcode, true).ok_or(undecodable)?;
    let dr = ((d.modrm >> 3) & 7) as u64 | if d.rex & 4 != 0 { 8 } else { 0 };
    let gpr = (d.modrm & 7) as usize | if d.rex & 1 != 0 { 8 } else { 0 };
    if v.r8(save::CPL) != 0 {
        inject_exception(v, VECTOR_GP, Some(0));
        return Ok(());
    }
    let slot = match dr {
        0..=3 => dr as usize,
        4 | 6 => 4,
        5 | 7 => 5,
        _ => {
            inject_exception(v, VECTOR_UD, None);
            return Ok(());
        }
    };
    // The exit said which register; the bytes must agree.
    if dr != code & 0xf {
        return Err(undecodable);
    }
    let shadow = &DEBUG[core][slot];
    if write {
        let value = match gpr {
            0 => v.r64(save::RAX),
            4 => v.r64(save::RSP),
            i => *g.reg(i).ok_or(undecodable)?,
        };
        let value = match slot {
            4 | 5 if value >> 32 != 0 => {
                inject_exception(v, VECTOR_GP, Some(0));
                return Ok(());
            }
            4 => (value & 0xe00f) | DR6_RESET,
            5 => (value & 0xffff_23ff) | DR7_RESET,
            _ => value,
        };
        shadow.store(value, Ordering::Relaxed);
    } else {
        let value = shadow.load(Ordering::Relaxed);
        match gpr {
            0 => v.w64(save::RAX, value),
            4 => v.w64(save::RSP, value),
            i => *g.reg(i).ok_or(undecodable)? = value,
        }
    }
    skip(v, core, nrip, rip, opcode, Some(d))
}

/// Before each entry: injects the lowest queued doorbell if the guest can
/// take an interrupt now (IF set, no `sti`/`mov ss` shadow, no event being
/// re-delivered), and asks for an interrupt window (V_IRQ + VINTR
/// intercept) while any remains queued.
///
/// Then whether the guest's `hlt` is intercepted: only while a window is
/// asked for or nothing could wake the vCPU (`guest::can_be_woken`: no
/// timer armed, nothing queued, no doorbell channel ringing it, one vCPU,
/// no device interrupt). Otherwise the guest halts in place and the next
/// physical interrupt for its core (a doorbell or `WAKE` IPI, its timer, a
/// device, the NMI of a kick) exits as an INTR or NMI exit, whose handling
/// queues and injects what came: one exit per wake-up instead of a `hlt`
/// exit, a halt in the hypervisor and a second pass (see `docs/x86.md`,
/// "Doorbells"). A vCPU whose `hlt` nothing could end is still stopped at
/// it, and a `hlt` while a window is asked for still goes through `idle`,
/// whose check of the pending words catches a doorbell whose IPI QEMU lost
/// during such a `vmrun` (see `idle`).
///
/// The VMCB fields change only when the window or the `hlt` intercept do
/// (`INTERCEPTS` remembers what this core's VMCB holds). Returns whether
/// the window is asked for.
fn inject(v: &Vmcb, core: usize) -> bool {
    let mut window = false;
    if guest::doorbell_queued(core) {
        let free = v.r64(ctl::EVENTINJ) & EVENT_VALID == 0;
        let open = v.r64(save::RFLAGS) & (1 << 9) != 0 && v.r64(ctl::INT_STATE) & 1 == 0;
        if free && open {
            if let Some(vector) = guest::take_doorbell(core) {
                v.w64(ctl::EVENTINJ, EVENT_VALID | vector as u64);
            }
        }
        window = guest::doorbell_queued(core);
    }
    let hlt = window || !guest::can_be_woken(core);
    let want = if window { WINDOW_ASKED } else { 0 } | if hlt { HLT_SEEN } else { 0 };
    let Some(current) = INTERCEPTS.get(core) else { return window };
    if current.load(Ordering::Relaxed) != want {
        current.store(want, Ordering::Relaxed);
        v.w64(ctl::INT_CTL, V_INTR_MASKING | if window { V_IRQ_WINDOW } else { 0 });
        v.w32(ctl::INTERCEPT_MISC1, MISC1 | if window { MISC1_VINTR } else { 0 } | if hlt { MISC1_HLT } else { 0 });
    }
    window
}

/// Per core: what its VMCB asks for besides the fixed intercepts
/// (`inject`): an interrupt window, the `hlt` intercept. A fresh VMCB
/// (`setup_vcpu`) intercepts `hlt` and asks for no window.
static INTERCEPTS: [AtomicU8; MAX_CORES] = [const { AtomicU8::new(HLT_SEEN) }; MAX_CORES];
const WINDOW_ASKED: u8 = 1;
const HLT_SEEN: u8 = 2;

/// After an INTR exit: takes the pending physical interrupts through the
/// hypervisor's IDT (SVM does not acknowledge them on exit), which ends
/// them at the local APIC.
fn take_interrupts() {
    // SAFETY: opens GIF and IF for one instruction so that pending
    // interrupts are taken by `idt.rs`'s handlers, which save what they
    // use; closes both again.
    unsafe { core::arch::asm!("stgi", "sti", "nop", "cli", "clgi", options(nostack)) };
}

/// The vCPU executed `hlt` with interrupts on: sleeps until a virtual
/// interrupt is queued for it (a doorbell, its timer, a device) or another
/// vCPU of its partition wakes it (`WAKE`).
///
/// The partition's pending word (`partition::deliver_doorbells`), not the
/// IPI, says whether a doorbell waits: the IPI only wakes this core. So the
/// word is collected before every halt, not only after a wake-up. This is
/// needed under QEMU TCG (7.2), which can lose an IPI's wake-up, most likely
/// (read from QEMU's source, not instrumented) because the sender's
/// APIC write flags this vCPU with `cpu_interrupt(CPU_INTERRUPT_POLL)` under
/// QEMU's global lock, while `vmrun` with `V_IRQ` set (an interrupt window
/// asked for by `inject`) does `interrupt_request |= CPU_INTERRUPT_VIRQ`
/// without it; when the two race, the POLL flag is overwritten, the vector
/// stays in the APIC's IRR and this vCPU never looks at it (seen at the
/// hang: halted here with IF and GIF set, IRR 0xF0, PPR 0, the pending bit
/// set and the sender coalescing every later ring onto it). An IPI can be
/// lost that way only while this core executes `vmrun`, so its bit was set
/// before the next `idle` and the check below collects it; a bit set after
/// the check sends an IPI that reaches this core here, outside `vmrun`, and
/// ends the `hlt`. The stranded IRR bit is harmless: the next IPI makes
/// QEMU poll the APIC again and it costs one spurious wake-up.
fn idle(core: usize) {
    loop {
        super::timer::collect(core);
        super::timer::watchdog(core);
        super::console_poll();
        crate::partition::deliver_doorbells(core);
        if guest::doorbell_queued(core) || super::timer::take_wake(core) {
            return;
        }
        // SAFETY: as `take_interrupts`, but halting until an interrupt
        // (`sti` delays interrupts by one instruction, so one arriving
        // before `hlt` still wakes it).
        unsafe { core::arch::asm!("stgi", "sti", "hlt", "cli", "clgi", options(nostack)) };
    }
}

/// The hypercall's x0..x5, into the portable register array.
pub fn call_args(core: usize, g: &Gprs, regs: &mut [u64; 31]) {
    regs[0] = Vmcb::of(core).r64(save::RAX);
    g.store_args(regs);
}

/// Writes back what the portable hypercall code changed (x0..x5).
pub fn finish_call(core: usize, g: &mut Gprs, regs: &[u64; 31]) {
    Vmcb::of(core).w64(save::RAX, regs[0]);
    g.load_args(regs);
}

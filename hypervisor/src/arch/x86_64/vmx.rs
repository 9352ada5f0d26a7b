//! Intel VMX: VMXON, the VMCS of each core, the same intercept policy as
//! SVM (see `svm.rs` and `docs/x86.md`), `vmlaunch`/`vmresume`, and the
//! decoding of VM exits into portable traps.
//!
//! Field encodings and exit reasons are from the Intel SDM vol. 3C,
//! appendices B and C. Controls are adjusted to what the CPU allows with the
//! (true) capability MSRs; a control the policy needs but the CPU forces
//! off fails the boot rather than running a partition unconfined.
//!
//! Debug registers: the guest owns DR0-3 and DR6 of its dedicated core
//! (the hypervisor uses none and clears them for each fresh vCPU); DR7 and
//! IA32_DEBUGCTL are switched by the VMCS ("load debug controls" on entry,
//! "save debug controls" on exit), and every exit leaves the host with DR7
//! = 0x400 (by the CPU, and written again by `vmx_exit`), so a guest's
//! breakpoints fire only in the guest, where #DB stops the partition.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

use super::cpu::{self, cpuid, rdmsr, wrmsr};
use super::guest::{self, page_pa, Exit, Gprs, Pages, PAGE};
use hallows_abi::call;

use crate::partition::{StopReason, Trap};
use crate::MAX_CORES;

const KERNEL_GS_BASE: u32 = 0xC000_0102;

#[link_section = ".noinit.vmx"]
static VMXON: Pages<MAX_CORES> = Pages(UnsafeCell::new([[0; PAGE]; MAX_CORES]));
#[link_section = ".noinit.vmx"]
static VMCS: Pages<MAX_CORES> = Pages(UnsafeCell::new([[0; PAGE]; MAX_CORES]));
#[link_section = ".noinit.vmx"]
static MSR_BITMAP: Pages<1> = Pages(UnsafeCell::new([[0; PAGE]; 1]));

mod msr {
    pub const FEATURE_CONTROL: u32 = 0x3A;
    pub const BASIC: u32 = 0x480;
    pub const PINBASED: u32 = 0x481;
    pub const PROCBASED: u32 = 0x482;
    pub const EXIT: u32 = 0x483;
    pub const ENTRY: u32 = 0x484;
    pub const CR0_FIXED0: u32 = 0x486;
    pub const CR0_FIXED1: u32 = 0x487;
    pub const CR4_FIXED0: u32 = 0x488;
    pub const CR4_FIXED1: u32 = 0x489;
    pub const PROCBASED2: u32 = 0x48B;
    pub const EPT_VPID_CAP: u32 = 0x48C;
    pub const TRUE_PINBASED: u32 = 0x48D;
    pub const TRUE_PROCBASED: u32 = 0x48E;
    pub const TRUE_EXIT: u32 = 0x48F;
    pub const TRUE_ENTRY: u32 = 0x490;
    pub const MISC: u32 = 0x485;
    pub const PAT: u32 = 0x277;
}

/// VMCS field encodings.
mod f {
    pub const VPID: u64 = 0x0000;
    pub const GUEST_ES_SEL: u64 = 0x800;
    pub const HOST_ES_SEL: u64 = 0xC00;
    pub const HOST_CS_SEL: u64 = 0xC02;
    pub const HOST_SS_SEL: u64 = 0xC04;
    pub const HOST_DS_SEL: u64 = 0xC06;
    pub const HOST_FS_SEL: u64 = 0xC08;
    pub const HOST_GS_SEL: u64 = 0xC0A;
    pub const HOST_TR_SEL: u64 = 0xC0C;
    pub const MSR_BITMAP: u64 = 0x2004;
    pub const EPT_POINTER: u64 = 0x201A;
    pub const GUEST_PHYS_ADDR: u64 = 0x2400;
    pub const VMCS_LINK: u64 = 0x2800;
    pub const GUEST_DEBUGCTL: u64 = 0x2802;
    pub const GUEST_PAT: u64 = 0x2804;
    pub const GUEST_EFER: u64 = 0x2806;
    pub const HOST_PAT: u64 = 0x2C00;
    pub const HOST_EFER: u64 = 0x2C02;
    pub const PIN: u64 = 0x4000;
    pub const PROC: u64 = 0x4002;
    pub const EXC_BITMAP: u64 = 0x4004;
    pub const CR3_TARGET_COUNT: u64 = 0x400A;
    pub const EXIT_CTLS: u64 = 0x400C;
    pub const ENTRY_CTLS: u64 = 0x4012;
    pub const ENTRY_INTR_INFO: u64 = 0x4016;
    pub const ENTRY_EXC_ERROR: u64 = 0x4018;
    pub const PROC2: u64 = 0x401E;
    pub const INSTR_ERROR: u64 = 0x4400;
    pub const EXIT_REASON: u64 = 0x4402;
    pub const EXIT_INTR_INFO: u64 = 0x4404;
    pub const IDT_VECTORING_INFO: u64 = 0x4408;
    pub const IDT_VECTORING_ERROR: u64 = 0x440A;
    pub const EXIT_INSTR_LEN: u64 = 0x440C;
    pub const GUEST_ES_LIMIT: u64 = 0x4800;
    pub const GUEST_GDTR_LIMIT: u64 = 0x4810;
    pub const GUEST_IDTR_LIMIT: u64 = 0x4812;
    pub const GUEST_ES_AR: u64 = 0x4814;
    pub const GUEST_SS_AR: u64 = 0x4818;
    pub const GUEST_INTERRUPTIBILITY: u64 = 0x4824;
    pub const GUEST_PREEMPTION_TIMER: u64 = 0x482E;
    pub const GUEST_ACTIVITY: u64 = 0x4826;
    pub const GUEST_SYSENTER_CS: u64 = 0x482A;
    pub const HOST_SYSENTER_CS: u64 = 0x4C00;
    pub const CR0_MASK: u64 = 0x6000;
    pub const CR4_MASK: u64 = 0x6002;
    pub const CR0_SHADOW: u64 = 0x6004;
    pub const CR4_SHADOW: u64 = 0x6006;
    pub const QUALIFICATION: u64 = 0x6400;
    pub const GUEST_CR0: u64 = 0x6800;
    pub const GUEST_CR3: u64 = 0x6802;
    pub const GUEST_CR4: u64 = 0x6804;
    pub const GUEST_ES_BASE: u64 = 0x6806;
    pub const GUEST_GDTR_BASE: u64 = 0x6816;
    pub const GUEST_IDTR_BASE: u64 = 0x6818;
    pub const GUEST_DR7: u64 = 0x681A;
    pub const GUEST_RSP: u64 = 0x681C;
    pub const GUEST_RIP: u64 = 0x681E;
    pub const GUEST_RFLAGS: u64 = 0x6820;
    pub const GUEST_PENDING_DBG: u64 = 0x6822;
    pub const GUEST_SYSENTER_ESP: u64 = 0x6824;
    pub const GUEST_SYSENTER_EIP: u64 = 0x6826;
    pub const HOST_CR0: u64 = 0x6C00;
    pub const HOST_CR3: u64 = 0x6C02;
    pub const HOST_CR4: u64 = 0x6C04;
    pub const HOST_FS_BASE: u64 = 0x6C06;
    pub const HOST_GS_BASE: u64 = 0x6C08;
    pub const HOST_TR_BASE: u64 = 0x6C0A;
    pub const HOST_GDTR_BASE: u64 = 0x6C0C;
    pub const HOST_IDTR_BASE: u64 = 0x6C0E;
    pub const HOST_SYSENTER_ESP: u64 = 0x6C10;
    pub const HOST_SYSENTER_EIP: u64 = 0x6C12;
    pub const HOST_RIP: u64 = 0x6C16;
}

mod exit {
    pub const EXCEPTION: u64 = 0;
    pub const EXTERNAL_INTERRUPT: u64 = 1;
    pub const TRIPLE_FAULT: u64 = 2;
    pub const INTERRUPT_WINDOW: u64 = 7;
    pub const INIT: u64 = 3;
    pub const SIPI: u64 = 4;
    pub const CPUID: u64 = 10;
    pub const HLT: u64 = 12;
    pub const INVD: u64 = 13;
    pub const VMCALL: u64 = 18;
    pub const CR_ACCESS: u64 = 28;
    pub const IO: u64 = 30;
    pub const RDMSR: u64 = 31;
    pub const WRMSR: u64 = 32;
    pub const EPT_VIOLATION: u64 = 48;
    pub const PREEMPTION_TIMER: u64 = 52;
}

/// Whether this CPU has VMX with EPT (4 levels, write-back) that the
/// firmware has not locked away.
pub fn supported() -> bool {
    if cpuid(1, 0).ecx & (1 << 5) == 0 {
        return false;
    }
    let fc = rdmsr(msr::FEATURE_CONTROL);
    if fc & 1 != 0 && fc & (1 << 2) == 0 {
        return false;
    }
    let proc = rdmsr(msr::PROCBASED);
    if (proc >> 32) & (1 << 31) == 0 {
        return false;
    }
    let proc2 = rdmsr(msr::PROCBASED2);
    let ept = rdmsr(msr::EPT_VPID_CAP);
    (proc2 >> 32) & (1 << 1) != 0 && ept & (1 << 6) != 0 && ept & (1 << 14) != 0
}

/// One-time set-up on core 0: the MSR bitmap, all ones (every MSR exits)
/// except FS and GS base, which the VMCS switches with the guest, and the
/// kernel GS base, which VMX does not switch: the partition owns the real
/// MSR of its dedicated core (the hypervisor never uses it), and
/// `setup_vcpu` clears it so a restarted partition inherits nothing. The
/// same three are the guest's own under SVM.
pub fn init_global() {
    // SAFETY: core 0, before any other core runs or any VMCS points here.
    let bm = unsafe { &mut (*MSR_BITMAP.0.get())[0] };
    bm.fill(0xff);
    for m in [0xC000_0100u32, 0xC000_0101, KERNEL_GS_BASE] {
        let bit = (m - 0xC000_0000) as usize;
        // Read-high at 0x400, write-high at 0xC00.
        for base in [0x400, 0xC00] {
            bm[base + bit / 8] &= !(1 << (bit % 8));
        }
    }
}

fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reads a control register.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}
fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reads a control register.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}
fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reads a control register.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

/// Per-core set-up: CR0/CR4 as VMX requires, VMXON (the GDT with this
/// core's TSS, VMX's non-zero host TR, is loaded by `idt::load_tss`).
/// Returns false if VMXON fails.
pub fn init_core(core: usize) -> bool {
    assert!(core < MAX_CORES, "core index");
    let fc = rdmsr(msr::FEATURE_CONTROL);
    if fc & 1 == 0 {
        wrmsr(msr::FEATURE_CONTROL, fc | 1 | (1 << 2));
    }
    let cr0 = (read_cr0() | rdmsr(msr::CR0_FIXED0)) & rdmsr(msr::CR0_FIXED1);
    let cr4 = (read_cr4() | (1 << 13) | rdmsr(msr::CR4_FIXED0)) & rdmsr(msr::CR4_FIXED1);
    // SAFETY: sets the bits VMX requires (CR0.NE, CR4.VMXE) within what the
    // CPU allows; paging and protection stay as they are.
    unsafe { asm!("mov cr0, {}", "mov cr4, {}", in(reg) cr0, in(reg) cr4, options(nostack)) };
    let region = page_pa(&VMXON, core);
    let rev = rdmsr(msr::BASIC) as u32 & 0x7fff_ffff;
    // SAFETY: this core's own VMXON page.
    unsafe {
        core::ptr::write_bytes(region as *mut u8, 0, PAGE);
        core::ptr::write_volatile(region as *mut u32, rev);
    }
    let ok: u8;
    // SAFETY: VMXON with a 4 KiB-aligned region carrying the revision id;
    // CF/ZF report failure.
    unsafe { asm!("vmxon [{0}]", "setna {1}", in(reg) &region, out(reg_byte) ok, options(nostack)) };
    ok == 0
}

fn vmwrite(field: u64, value: u64) {
    // SAFETY: writes a field of the current VMCS (this core's own, loaded by
    // `setup_vcpu`); a bad field only sets the VM-instruction error.
    unsafe { asm!("vmwrite {0}, {1}", in(reg) field, in(reg) value, options(nostack)) };
}

fn vmread(field: u64) -> u64 {
    let v: u64;
    // SAFETY: reads a field of the current VMCS.
    unsafe { asm!("vmread {0}, {1}", out(reg) v, in(reg) field, options(nostack)) };
    v
}

/// `desired` adjusted to a capability MSR (low half: must be one, high
/// half: may be one); `None` if a bit in `required` cannot be set.
fn adjust(cap: u32, desired: u32, required: u32) -> Option<u32> {
    let v = rdmsr(cap);
    let out = (desired | v as u32) & (v >> 32) as u32;
    (out & required == required).then_some(out)
}

#[derive(Debug)]
pub struct SetupError;

/// Secondary processor-based control 5: enable VPID.
const PROC2_VPID: u32 = 1 << 5;

/// Whether VPIDs can be used: the secondary control may be set and the CPU
/// has INVVPID with the single-context type (`IA32_VMX_EPT_VPID_CAP` bits
/// 32 and 41), which a fresh vCPU needs to drop the previous run's
/// translations. Without it the CPU flushes the guest's linear
/// translations at every VM entry and exit (VPID 0), as before.
fn vpid_usable() -> bool {
    let cap = rdmsr(msr::EPT_VPID_CAP);
    (rdmsr(msr::PROCBASED2) >> 32) as u32 & PROC2_VPID != 0 && cap & (1 << 32) != 0 && cap & (1 << 41) != 0
}

/// Whether this core's vCPU runs with a VPID (boot log, `docs/x86.md`).
pub fn vpid_enabled() -> bool {
    vpid_usable()
}

/// Invalidates every translation tagged with `vpid` on this core
/// (INVVPID type 1, single context).
fn invvpid_single(vpid: u16) {
    let descriptor: [u64; 2] = [vpid as u64, 0];
    // SAFETY: INVVPID with a valid type (1, offered: `vpid_usable`) and a
    // non-zero VPID only drops cached translations; the descriptor is a
    // 16-byte memory operand on this stack.
    unsafe { asm!("invvpid {0}, [{1}]", in(reg) 1u64, in(reg) descriptor.as_ptr(), options(nostack, readonly)) };
}

/// Loads and fills this core's VMCS for a fresh vCPU entering 64-bit mode
/// at `entry` on nested tables `ept_root`, tagged `vpid` (the partition's
/// VMID, never 0) where the CPU has VPIDs.
pub fn setup_vcpu(core: usize, ept_root: u64, vpid: u16, entry: u64) -> Result<(), SetupError> {
    let vmcs = page_pa(&VMCS, core);
    let basic = rdmsr(msr::BASIC);
    // SAFETY: this core's own VMCS page, not current on any core.
    unsafe {
        core::ptr::write_bytes(vmcs as *mut u8, 0, PAGE);
        core::ptr::write_volatile(vmcs as *mut u32, basic as u32 & 0x7fff_ffff);
    }
    let ok: u8;
    // SAFETY: VMCLEAR then VMPTRLD of that page make it this core's current,
    // launch-state-clear VMCS.
    unsafe { asm!("vmclear [{0}]", "vmptrld [{0}]", "setna {1}", in(reg) &vmcs, out(reg_byte) ok, options(nostack)) };
    if ok != 0 {
        return Err(SetupError);
    }
    let true_caps = basic & (1 << 55) != 0;
    let cap = |plain, tru| if true_caps { tru } else { plain };
    // External interrupts and NMIs exit (they belong to the host); the
    // VMX-preemption timer (6) where offered (see `PREEMPT_TSC`).
    let pin = adjust(cap(msr::PINBASED, msr::TRUE_PINBASED), 1 | (1 << 3) | (1 << 6), 1 | (1 << 3)).ok_or(SetupError)?;
    let shift = rdmsr(msr::MISC) & 0x1f;
    PREEMPT_SHIFT[core].store(shift, core::sync::atomic::Ordering::Relaxed);
    PREEMPT[core].store(
        if pin & (1 << 6) != 0 { (PREEMPT_TSC >> shift).max(1) } else { 0 },
        core::sync::atomic::Ordering::Relaxed,
    );
    // HLT (7), unconditional I/O (24), MSR bitmaps (28), secondary (31);
    // interrupt-window exiting (2) must be available, set while a doorbell
    // waits (`inject`).
    // CR8-load and CR8-store exiting (19, 20): without them a guest's
    // `mov cr8` is the real TPR, and a partition could mask the
    // hypervisor's own IPIs on its core (doorbells, the kick that stops
    // it, the wake-up of a halted core).
    let want = (1 << 7) | (1 << 19) | (1 << 20) | (1 << 24) | (1 << 28) | (1 << 31);
    let proc = adjust(cap(msr::PROCBASED, msr::TRUE_PROCBASED), want | PROC_WINDOW, want | PROC_WINDOW)
        .ok_or(SetupError)?
        & !PROC_WINDOW;
    // EPT (1); RDTSCP (3) and INVPCID (12) where offered; VPID (5) where
    // offered with a single-context INVVPID (see `vpid_usable`).
    let vpid_on = vpid != 0 && vpid_usable();
    let want2 = (1 << 1) | (1 << 3) | (1 << 12) | if vpid_on { PROC2_VPID } else { 0 };
    let proc2 = adjust(msr::PROCBASED2, want2, 1 << 1).ok_or(SetupError)?;
    // Exit: save debug controls (2), 64-bit host (9), save/load PAT (18,
    // 19), save/load EFER (20, 21).
    let want = (1 << 2) | (1 << 9) | (1 << 18) | (1 << 19) | (1 << 20) | (1 << 21);
    let exit_ctls = adjust(cap(msr::EXIT, msr::TRUE_EXIT), want, want).ok_or(SetupError)?;
    // Entry: load debug controls (2), 64-bit guest (9), load PAT (14), load
    // EFER (15).
    let want = (1 << 2) | (1 << 9) | (1 << 14) | (1 << 15);
    let entry_ctls = adjust(cap(msr::ENTRY, msr::TRUE_ENTRY), want, want).ok_or(SetupError)?;
    vmwrite(f::PIN, pin as u64);
    vmwrite(f::PROC, proc as u64);
    vmwrite(f::PROC2, proc2 as u64);
    if proc2 & PROC2_VPID != 0 {
        // The partition's tag (never 0, the host's): this core's TLB keeps
        // the guest's translations across exits and entries. A fresh vCPU
        // (boot, restart, CPU_ON) must not find the previous run's: its
        // guest page tables were rebuilt and its CR3 is new.
        vmwrite(f::VPID, vpid as u64);
        invvpid_single(vpid);
    }
    vmwrite(f::EXIT_CTLS, exit_ctls as u64);
    vmwrite(f::ENTRY_CTLS, entry_ctls as u64);
    vmwrite(f::ENTRY_INTR_INFO, 0);
    // #DB and #AC (see svm.rs).
    vmwrite(f::EXC_BITMAP, (1 << 1) | (1 << 17));
    vmwrite(f::CR3_TARGET_COUNT, 0);
    vmwrite(f::MSR_BITMAP, page_pa(&MSR_BITMAP, 0));
    // Write-back, 4-level walk.
    vmwrite(f::EPT_POINTER, ept_root | (3 << 3) | 6);

    let s = guest::entry_state();
    let cr0 = (s.cr0 | rdmsr(msr::CR0_FIXED0)) & rdmsr(msr::CR0_FIXED1);
    let cr4 = (s.cr4 | rdmsr(msr::CR4_FIXED0)) & rdmsr(msr::CR4_FIXED1);
    // Every CR0/CR4 bit is owned by the hypervisor: changing one exits.
    vmwrite(f::CR0_MASK, u64::MAX);
    vmwrite(f::CR4_MASK, u64::MAX);
    vmwrite(f::CR0_SHADOW, s.cr0);
    vmwrite(f::CR4_SHADOW, s.cr4);
    vmwrite(f::GUEST_CR0, cr0);
    vmwrite(f::GUEST_CR3, s.cr3);
    vmwrite(f::GUEST_CR4, cr4);
    // Segments ES, CS, SS, DS, FS, GS, LDTR, TR: selector, limit, rights, base.
    for i in 0..8u64 {
        let (sel, ar, limit) = match i {
            1 => (s.cs, 0xA09B, 0xffff_ffff),
            6 => (0, 0x1_0000, 0),
            7 => (0, 0x8B, 0x67),
            _ => (s.ds, 0xC093, 0xffff_ffff),
        };
        vmwrite(f::GUEST_ES_SEL + 2 * i, sel as u64);
        vmwrite(f::GUEST_ES_LIMIT + 2 * i, limit);
        vmwrite(f::GUEST_ES_AR + 2 * i, ar);
        vmwrite(f::GUEST_ES_BASE + 2 * i, 0);
    }
    vmwrite(f::GUEST_GDTR_BASE, 0);
    vmwrite(f::GUEST_GDTR_LIMIT, 0);
    vmwrite(f::GUEST_IDTR_BASE, 0);
    vmwrite(f::GUEST_IDTR_LIMIT, 0);
    vmwrite(f::GUEST_DR7, 0x400);
    vmwrite(f::GUEST_DEBUGCTL, 0);
    // Nothing of a previous run's breakpoints survives.
    // SAFETY: DR0-3 and DR6 are the guest's alone on this core (the
    // hypervisor never arms a breakpoint: its DR7 is 0x400).
    unsafe {
        asm!(
            "mov dr0, {0}", "mov dr1, {0}", "mov dr2, {0}", "mov dr3, {0}", "mov dr6, {1}",
            in(reg) 0u64, in(reg) 0xffff_0ff0u64, options(nomem, nostack)
        )
    };
    vmwrite(f::GUEST_RSP, 0);
    vmwrite(f::GUEST_RIP, entry);
    vmwrite(f::GUEST_RFLAGS, 0x2);
    vmwrite(f::GUEST_PENDING_DBG, 0);
    vmwrite(f::GUEST_INTERRUPTIBILITY, 0);
    vmwrite(f::GUEST_ACTIVITY, 0);
    vmwrite(f::GUEST_SYSENTER_CS, 0);
    vmwrite(f::GUEST_SYSENTER_ESP, 0);
    vmwrite(f::GUEST_SYSENTER_EIP, 0);
    vmwrite(f::VMCS_LINK, u64::MAX);
    vmwrite(f::GUEST_PAT, guest::PAT_RESET);
    vmwrite(f::GUEST_EFER, s.efer);

    // The host: this core as it is now.
    vmwrite(f::HOST_CR0, read_cr0());
    vmwrite(f::HOST_CR3, read_cr3());
    vmwrite(f::HOST_CR4, read_cr4());
    vmwrite(f::HOST_CS_SEL, 0x08);
    for sel in [f::HOST_ES_SEL, f::HOST_SS_SEL, f::HOST_DS_SEL] {
        vmwrite(sel, 0x10);
    }
    vmwrite(f::HOST_FS_SEL, 0);
    vmwrite(f::HOST_GS_SEL, 0);
    vmwrite(f::HOST_TR_SEL, super::idt::TSS_SELECTOR as u64);
    vmwrite(f::HOST_FS_BASE, 0);
    vmwrite(f::HOST_GS_BASE, 0);
    let (gdt, tss) = super::idt::gdt_and_tss(core);
    vmwrite(f::HOST_TR_BASE, tss);
    vmwrite(f::HOST_GDTR_BASE, gdt);
    vmwrite(f::HOST_IDTR_BASE, super::idt::base());
    vmwrite(f::HOST_SYSENTER_CS, 0);
    vmwrite(f::HOST_SYSENTER_ESP, 0);
    vmwrite(f::HOST_SYSENTER_EIP, 0);
    vmwrite(f::HOST_PAT, rdmsr(msr::PAT));
    vmwrite(f::HOST_EFER, rdmsr(cpu::EFER));
    vmwrite(f::HOST_RIP, vmx_exit as *const () as u64);
    wrmsr(KERNEL_GS_BASE, 0);
    LAUNCHED[core].store(false, core::sync::atomic::Ordering::Relaxed);
    guest::clear_doorbells(core);
    Ok(())
}

static LAUNCHED: [core::sync::atomic::AtomicBool; MAX_CORES] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_CORES];

/// TSC cycles between the VMX-preemption timer's exits (2^24: about 6 ms
/// at 3 GHz). A safety net, not a scheduler: the core that ends a
/// partition takes its other vCPUs out with an IPI, which exits whatever
/// the guest's interrupt flag, but Bochs (2.7) ignores external-interrupt
/// exiting for a guest running with interrupts off; and an emulator may
/// lose an IPI. The timer bounds how long such a vCPU runs on. Its cost:
/// one exit per period per core.
const PREEMPT_TSC: u64 = 1 << 24;

/// Per core: the VMX-preemption timer value loaded at each entry (0: the
/// CPU has no preemption timer).
static PREEMPT: [core::sync::atomic::AtomicU64; MAX_CORES] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CORES];

/// Per core: the VMX-preemption timer's rate, as a right shift of the TSC
/// (`IA32_VMX_MISC` bits 4:0).
static PREEMPT_SHIFT: [core::sync::atomic::AtomicU64; MAX_CORES] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CORES];

extern "C" {
    /// Enters the guest (`vmlaunch` if `launched` is 0, else `vmresume`);
    /// returns 0 after a VM exit, 1 if the entry itself failed.
    fn vmx_run(gprs: *mut Gprs, launched: u64) -> u64;
    fn vmx_exit();
}

global_asm!(
    ".global vmx_run",
    ".global vmx_exit",
    "vmx_run:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    push rdi",
    "    mov rax, 0x6C14",
    "    vmwrite rax, rsp",
    "    mov rax, rsi",
    "    mov rbx, [rdi + 0]",
    "    mov rcx, [rdi + 8]",
    "    mov rdx, [rdi + 16]",
    "    mov rsi, [rdi + 24]",
    "    mov rbp, [rdi + 40]",
    "    mov r8,  [rdi + 48]",
    "    mov r9,  [rdi + 56]",
    "    mov r10, [rdi + 64]",
    "    mov r11, [rdi + 72]",
    "    mov r12, [rdi + 80]",
    "    mov r13, [rdi + 88]",
    "    mov r14, [rdi + 96]",
    "    mov r15, [rdi + 104]",
    "    test rax, rax",
    "    mov rax, [rdi + 112]",
    "    mov rdi, [rdi + 32]",
    "    jnz 2f",
    "    vmlaunch",
    "    jmp 3f",
    "2:  vmresume",
    "3:  pop rdi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    mov eax, 1",
    "    ret",
    "vmx_exit:",
    // DR7 is 0x400 after every exit (the guest's was saved in the VMCS);
    // written again so that no emulator's omission can arm the guest's
    // breakpoints in the hypervisor. rdi is restored from the stack below.
    "    push rdi",
    "    mov edi, 0x400",
    "    mov dr7, rdi",
    "    mov rdi, [rsp + 8]",
    "    mov [rdi + 112], rax",
    "    mov [rdi + 0], rbx",
    "    mov [rdi + 8], rcx",
    "    mov [rdi + 16], rdx",
    "    mov [rdi + 24], rsi",
    "    mov [rdi + 40], rbp",
    "    mov [rdi + 48], r8",
    "    mov [rdi + 56], r9",
    "    mov [rdi + 64], r10",
    "    mov [rdi + 72], r11",
    "    mov [rdi + 80], r12",
    "    mov [rdi + 88], r13",
    "    mov [rdi + 96], r14",
    "    mov [rdi + 104], r15",
    "    pop rax",
    "    mov [rdi + 32], rax",
    "    pop rdi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    xor eax, eax",
    "    ret",
);

/// Runs the guest on this core until its next exit the portable code must
/// see (see `svm::run`).
pub fn run(core: usize, vcpu: u64, g: &mut Gprs) -> Exit {
    // An exception whose delivery an exit interrupted, to deliver again.
    let mut redeliver: Option<(u64, u64)> = None;
    loop {
        inject(core, redeliver.take());
        let mut preempt = PREEMPT[core].load(core::sync::atomic::Ordering::Relaxed);
        if preempt != 0 {
            // A watchdog look due sooner than the safety net shortens it:
            // under Bochs a guest spinning with interrupts off never exits
            // for the APIC timer (see `PREEMPT_TSC`).
            let watch = super::timer::watch(core);
            if watch != 0 {
                let shift = PREEMPT_SHIFT[core].load(core::sync::atomic::Ordering::Relaxed);
                preempt = preempt.min((watch.saturating_sub(super::cpu::rdtsc()) >> shift) + 1);
            }
            vmwrite(f::GUEST_PREEMPTION_TIMER, preempt.min(u32::MAX as u64));
        }
        let launched = LAUNCHED[core].swap(true, core::sync::atomic::Ordering::Relaxed);
        // SAFETY: this core's VMCS is current and complete (`setup_vcpu`),
        // VMX is on (`init_core`), `g` is this core's register block, and
        // `vmx_run` preserves the host's callee-saved state.
        let failed = unsafe { vmx_run(g, launched as u64) };
        if failed != 0 {
            let code = vmread(f::INSTR_ERROR);
            return Exit::Trap(Trap::Stop(StopReason::UnexpectedExit { code: 0xffff, info: code, pc: vmread(f::GUEST_RIP) }));
        }
        let reason = vmread(f::EXIT_REASON);
        let basic = reason & 0xffff;
        let rip = vmread(f::GUEST_RIP);
        let qual = vmread(f::QUALIFICATION);
        // Past the intercepted instruction. A guest single-stepping
        // (`RFLAGS.TF`) would take #DB after it, which stops the partition
        // like any #DB; it never reaches the hypervisor.
        let skip = || {
            let next = rip.wrapping_add(vmread(f::EXIT_INSTR_LEN));
            vmwrite(f::GUEST_RIP, next);
            // The `sti`/`mov ss` shadow covered at most the skipped instruction.
            let blocking = vmread(f::GUEST_INTERRUPTIBILITY);
            if blocking & 3 != 0 {
                vmwrite(f::GUEST_INTERRUPTIBILITY, blocking & !3);
            }
            if vmread(f::GUEST_RFLAGS) & (1 << 8) != 0 {
                return Err(StopReason::Exception { pc: next, esr: 1 });
            }
            Ok(())
        };
        if reason & (1 << 31) != 0 {
            // A failed entry (invalid guest state, MSR loading).
            return Exit::Trap(Trap::Stop(StopReason::UnexpectedExit { code: reason, info: qual, pc: rip }));
        }
        // An event whose delivery the exit interrupted: a doorbell goes
        // back to the queue, a hardware exception is delivered again.
        let interrupted = vmread(f::IDT_VECTORING_INFO);
        if interrupted & EVENT_VALID != 0 {
            match (interrupted >> 8) & 7 {
                0 => guest::requeue_vector(core, interrupted as u8),
                3 => redeliver = Some((interrupted & !(1 << 12), vmread(f::IDT_VECTORING_ERROR))),
                _ => {}
            }
        }
        let trap = match basic {
            exit::VMCALL => {
                if (vmread(f::GUEST_SS_AR) >> 5) & 3 != 0 {
                    // Only the guest's kernel may call the hypervisor: code
                    // at CPL > 0 (SS.DPL) gets #UD, as if the instruction
                    // did not exist, and the call is not made.
                    redeliver = Some((EVENT_VALID | (3 << 8) | 6, 0));
                    continue;
                }
                if let Err(r) = skip() {
                    return Exit::Trap(Trap::Stop(r));
                }
                // NOTIFY and ABI_VERSION answered here, as under SVM
                // (`svm::run`, `guest::notify`).
                match g.rax {
                    call::NOTIFY if guest::notify(core, g.rdi) => g.rax = 0,
                    call::ABI_VERSION => {
                        g.rax = 0;
                        g.rdi = hallows_abi::ABI_VERSION;
                    }
                    _ => return Exit::Call,
                }
                continue;
            }
            exit::EPT_VIOLATION => Trap::Stage2Fault {
                ipa: vmread(f::GUEST_PHYS_ADDR),
                write: qual & 2 != 0,
                instr: qual & 4 != 0,
                pc: rip,
            },
            exit::CPUID => {
                let r = guest::cpuid(g.rax as u32, g.rcx as u32, vcpu);
                g.rax = r.eax as u64;
                g.rbx = r.ebx as u64;
                g.rcx = r.ecx as u64;
                g.rdx = r.edx as u64;
                match skip() {
                    Ok(()) => continue,
                    Err(r) => Trap::Stop(r),
                }
            }
            exit::RDMSR | exit::WRMSR => {
                let msr = g.rcx as u32;
                let write = basic == exit::WRMSR;
                let value = (g.rdx << 32) | (g.rax & 0xffff_ffff);
                match guest::msr(msr, write, value, vmread(f::GUEST_PAT), vmread(f::GUEST_EFER)) {
                    Some(guest::MsrResult::Read(x)) => {
                        g.rax = x & 0xffff_ffff;
                        g.rdx = x >> 32;
                    }
                    Some(guest::MsrResult::Pat(p)) => vmwrite(f::GUEST_PAT, p),
                    None => return Exit::Trap(Trap::Stop(StopReason::Msr { msr, write, pc: rip })),
                }
                match skip() {
                    Ok(()) => continue,
                    Err(r) => Trap::Stop(r),
                }
            }
            exit::IO => Trap::Stop(StopReason::IoPort { port: (qual >> 16) as u16, write: qual & 8 == 0, pc: rip }),
            exit::HLT => {
                if vmread(f::GUEST_RFLAGS) & (1 << 9) == 0 {
                    Trap::Stop(StopReason::Halted { pc: rip })
                } else if !guest::can_be_woken(core) {
                    // Nothing can interrupt this vCPU: it would sleep forever.
                    Trap::Stop(StopReason::HaltedNoSource { pc: rip })
                } else {
                    // As under SVM: sleeps until a virtual interrupt is
                    // queued for it or a `WAKE` comes.
                    if let Err(r) = skip() {
                        return Exit::Trap(Trap::Stop(r));
                    }
                    idle(core);
                    continue;
                }
            }
            exit::INVD => match skip() {
                Ok(()) => continue,
                Err(r) => Trap::Stop(r),
            },
            exit::EXTERNAL_INTERRUPT => {
                take_interrupts();
                super::timer::collect(core);
                super::timer::watchdog(core);
                super::console_poll();
                crate::partition::deliver_doorbells(core);
                continue;
            }
            // The guest opened the interrupt window asked for (`inject`).
            exit::INTERRUPT_WINDOW => continue,
            // The safety net: a core whose partition is ending leaves it
            // (`deliver_doorbells` checks), else the guest resumes.
            exit::PREEMPTION_TIMER => {
                super::timer::collect(core);
                super::timer::watchdog(core);
                super::console_poll();
                crate::partition::deliver_doorbells(core);
                continue;
            }
            exit::INIT | exit::SIPI => continue,
            exit::CR_ACCESS => Trap::Stop(StopReason::ControlRegister { cr: (qual & 0xf) as u8, pc: rip }),
            exit::TRIPLE_FAULT => Trap::Stop(StopReason::TripleFault { pc: rip }),
            exit::EXCEPTION => {
                let vector = vmread(f::EXIT_INTR_INFO) & 0xff;
                Trap::Stop(StopReason::Exception { pc: rip, esr: vector })
            }
            _ => Trap::Stop(StopReason::UnexpectedExit { code: basic, info: qual, pc: rip }),
        };
        return Exit::Trap(trap);
    }
}

/// Interrupt-window exiting (primary processor-based control 2).
const PROC_WINDOW: u32 = 1 << 2;
/// Interruption information: valid (31), type (8..10: 0 external
/// interrupt, 3 hardware exception), error code valid (11).
const EVENT_VALID: u64 = 1 << 31;

/// Before each entry: re-delivers an interrupted exception, else injects
/// the lowest queued doorbell if the guest can take an interrupt now (IF
/// set, no `sti`/`mov ss` blocking), and turns interrupt-window exiting on
/// while any remains queued. (VM exits clear the entry's valid bit.)
fn inject(core: usize, redeliver: Option<(u64, u64)>) {
    if let Some((info, error)) = redeliver {
        vmwrite(f::ENTRY_INTR_INFO, info);
        if info & (1 << 11) != 0 {
            vmwrite(f::ENTRY_EXC_ERROR, error);
        }
    } else if guest::doorbell_queued(core)
        && vmread(f::GUEST_RFLAGS) & (1 << 9) != 0
        && vmread(f::GUEST_INTERRUPTIBILITY) & 3 == 0
    {
        if let Some(vector) = guest::take_doorbell(core) {
            vmwrite(f::ENTRY_INTR_INFO, EVENT_VALID | vector as u64);
        }
    }
    let proc = vmread(f::PROC) as u32;
    let want = if guest::doorbell_queued(core) { proc | PROC_WINDOW } else { proc & !PROC_WINDOW };
    if want != proc {
        vmwrite(f::PROC, want as u64);
    }
}

/// After an external-interrupt exit: takes the pending interrupts through
/// the hypervisor's IDT (no acknowledge-on-exit), which ends them at the
/// local APIC.
fn take_interrupts() {
    // SAFETY: opens IF for one instruction so that pending interrupts are
    // taken by `idt.rs`'s handlers, which save what they use.
    unsafe { asm!("sti", "nop", "cli", options(nostack)) };
}

/// The vCPU executed `hlt` with interrupts on: sleeps until a virtual
/// interrupt is queued for it or a `WAKE` comes. The protocol of `svm::idle`: the pending word, not the
/// IPI, says whether a doorbell waits, so it is collected before every halt
/// and a lost IPI wake-up (QEMU TCG loses some around SVM's `vmrun`; no
/// emulator of VMX is known to) cannot leave this core asleep.
fn idle(core: usize) {
    loop {
        super::timer::collect(core);
        super::timer::watchdog(core);
        super::console_poll();
        crate::partition::deliver_doorbells(core);
        if guest::doorbell_queued(core) || super::timer::take_wake(core) {
            return;
        }
        // SAFETY: halts with IF open until an interrupt is taken (`sti`
        // delays interrupts by one instruction, so one arriving before
        // `hlt` still wakes it).
        unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
    }
}

/// The hypercall's x0..x5, into the portable register array.
pub fn call_args(g: &Gprs, regs: &mut [u64; 31]) {
    regs[0] = g.rax;
    g.store_args(regs);
}

/// Writes back what the portable hypercall code changed (x0..x5).
pub fn finish_call(g: &mut Gprs, regs: &[u64; 31]) {
    g.rax = regs[0];
    g.load_args(regs);
}

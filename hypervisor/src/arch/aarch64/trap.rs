//! Trap entry from the EL2 vectors (`vectors.S`): the hypercalls and the
//! interrupt the vectors answer themselves, the tables they read, and for
//! every other trap the syndrome decoded into a portable [`Trap`] for the
//! partition logic.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::*;
use hallows_abi::{call, MAX_CHANNELS};

use crate::partition::{self, Trap};
use crate::system::System;
use crate::MAX_CORES;

/// Hypercalls whose id - `call::BASE` is below this go through the
/// vectors' branch table (`fast_calls`): ABI_VERSION and NOTIFY are
/// answered there, the others take the full path.
const FAST_CALLS: u64 = call::NOTIFY - call::BASE + 1;
const _: () = assert!(call::BASE & 0xffff == 0 && call::BASE >> 32 == 0 && call::ABI_VERSION == call::BASE);

/// Where `NOTIFY` on one channel rings, as the vectors read it: the
/// address of the peer partition's pending-doorbell word (0: the entry is
/// not a doorbell channel of the caller), the channel's bit in it, and the
/// `ICC_SGI1R_EL1` value that interrupts the peer's boot core.
#[repr(C, align(32))]
pub struct NotifyRoute {
    pending: AtomicU64,
    bit: AtomicU64,
    sgi: AtomicU64,
}

const ROUTE_SHIFT: u32 = 5;
const ROUTES_CORE_SHIFT: u32 = ROUTE_SHIFT + MAX_CHANNELS.trailing_zeros();
const _: () = assert!(
    core::mem::size_of::<NotifyRoute>() == 1 << ROUTE_SHIFT && MAX_CHANNELS.is_power_of_two()
);

/// Per core, per entry of its partition's channel directory. Written by the
/// boot core before any other core starts ([`install_notify_routes`]),
/// read-only afterwards.
#[no_mangle]
static NOTIFY_ROUTES: [[NotifyRoute; MAX_CHANNELS]; MAX_CORES] = [const {
    [const { NotifyRoute { pending: AtomicU64::new(0), bit: AtomicU64::new(0), sgi: AtomicU64::new(0) } }; MAX_CHANNELS]
}; MAX_CORES];

global_asm!(
    include_str!("vectors.S"),
    EC_HVC64 = const ec::HVC64,
    CALL_BASE_HI = const call::BASE >> 16,
    FAST_CALLS = const FAST_CALLS,
    ABI_VERSION = const hallows_abi::ABI_VERSION,
    MAX_CHANNELS = const MAX_CHANNELS,
    ROUTE_SHIFT = const ROUTE_SHIFT,
    ROUTES_CORE_SHIFT = const ROUTES_CORE_SHIFT,
    TIMER_PPI = const super::gic::VIRTUAL_TIMER_PPI,
    LR_MASK = const super::gic::LR_MASK,
    TIMER_LR = const super::gic::hw_list_register(super::gic::VIRTUAL_TIMER_PPI),
);

/// Fills [`NOTIFY_ROUTES`] from the installed system: for each core that
/// runs a vCPU, each doorbell channel of its partition
/// (`partition::doorbell_target`, the same routes `NOTIFY`'s full path
/// takes). Boot core, before any other core starts.
pub fn install_notify_routes(sys: &System) {
    for (core, routes) in NOTIFY_ROUTES.iter().enumerate() {
        let Some(role) = sys.core_map.get(core).copied().flatten() else { continue };
        for (channel, route) in routes.iter().enumerate() {
            if let Some((pending, bit, target)) = partition::doorbell_target(sys, role.partition, channel) {
                let hwid = sys.table.board.core_hwid[target];
                route.bit.store(bit as u64, Ordering::Relaxed);
                route.sgi.store(super::gic::doorbell_sgi(hwid), Ordering::Relaxed);
                route.pending.store(pending.as_ptr() as u64, Ordering::Release);
            }
        }
    }
}

/// Guest general registers and return state, as `vectors.S` saves them
/// for the traps it hands to [`rust_trap_lower`] (and `enter_guest` loads).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub _pad: u64,
}

impl TrapFrame {
    pub const fn zeroed() -> Self {
        TrapFrame { x: [0; 31], elr: 0, spsr: 0, _pad: 0 }
    }
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 34 * 8);

mod ec {
    pub const HVC64: u64 = 0x16;
    pub const SMC64: u64 = 0x17;
    pub const SYSREG: u64 = 0x18;
    pub const IABT_LOWER: u64 = 0x20;
    pub const DABT_LOWER: u64 = 0x24;
}

#[no_mangle]
extern "C" fn rust_trap_lower(frame: &mut TrapFrame, kind: u64) {
    handle_lower(frame, kind, super::this_core());
}

/// A physical interrupt that `vectors.S` acknowledged and did not forward
/// itself. The timer PPI (when no list register was free) and device SPIs
/// (routed only to their owner's boot core) go to the guest,
/// hardware-linked; the doorbell SGI, the maintenance interrupt, the
/// watchdog's timer and the console's interrupt are the hypervisor's.
#[no_mangle]
extern "C" fn rust_irq_lower(iar: u64) {
    use super::gic;
    let intid = (iar & 0xff_ffff) as u32;
    let core = super::this_core();
    match intid {
        gic::DOORBELL_SGI | gic::MAINTENANCE_PPI => {
            gic::end(intid);
            if intid == gic::MAINTENANCE_PPI {
                gic::release_held(core);
            }
            super::vdev::deliver_sgis(core);
            partition::deliver_doorbells(core);
        }
        gic::HYP_TIMER_PPI => {
            // The watchdog's check (`partition::watchdog_expired`):
            // re-armed for the next look, or the partition's fault
            // policy applies and this does not return.
            super::watchdog_arm(0);
            gic::end(intid);
            let next = partition::watchdog_expired(core);
            super::watchdog_arm(next);
        }
        i if gic::is_console(i) => {
            // The operator typed a command (`control.rs`); one for this
            // core's own partition is taken on the way back.
            gic::end(intid);
            crate::control::poll();
            partition::deliver_doorbells(core);
        }
        gic::VIRTUAL_TIMER_PPI | 32..gic::SPURIOUS => gic::forward(core, intid),
        gic::SPURIOUS.. => {}
        // Nothing else is enabled; end it rather than leave it active.
        _ => gic::end(intid),
    }
}

fn handle_lower(frame: &mut TrapFrame, kind: u64, core: usize) {
    let esr = ESR_EL2.get();
    let pc = frame.elr;
    // Only data aborts and system-register traps may be a Linux
    // partition's emulated devices: hypercalls do not look.
    if kind == 0 && matches!((esr >> 26) & 0x3f, ec::DABT_LOWER | ec::SYSREG) && linux_trap(frame, esr, core) {
        return;
    }
    let trap = if kind != 0 {
        // FIQ/SError while a partition runs: none is enabled, so any is
        // unexpected; it is attributed to the running partition.
        Trap::Unexpected { esr: kind << 32, pc }
    } else {
        match (esr >> 26) & 0x3f {
            ec::HVC64 => Trap::Call,
            ec::SMC64 => {
                // A trapped SMC leaves ELR on the instruction itself.
                frame.elr += 4;
                Trap::Call
            }
            ec::DABT_LOWER | ec::IABT_LOWER => {
                let hpfar = HPFAR_EL2.get();
                let far = FAR_EL2.get();
                let ipa = ((hpfar >> 4) << 12) | (far & 0xfff);
                let instr = (esr >> 26) & 0x3f == ec::IABT_LOWER;
                let write = !instr && esr & (1 << 6) != 0;
                Trap::Stage2Fault { ipa, write, instr, pc }
            }
            ec::SYSREG if is_set_way_maintenance(esr) => {
                // DC ISW/CSW/CISW: with SWIO and inner-shareable
                // coherency there is nothing a partition needs these for
                // that is safe to do on shared caches. Skip the instruction.
                frame.elr += 4;
                return;
            }
            _ => Trap::Unexpected { esr, pc },
        }
    };
    partition::handle_trap(core, trap, &mut frame.x);
}

/// The traps a Linux partition takes that are emulated rather than
/// faults: an access to one of its emulated devices (`vdev::mmio`) and a
/// trapped system register (`vdev::sysreg`). `true`: handled, the guest
/// resumes after the instruction.
fn linux_trap(frame: &mut TrapFrame, esr: u64, core: usize) -> bool {
    let sys = crate::system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { return false };
    if !sys.table.partitions()[role.partition].is_linux() {
        return false;
    }
    match (esr >> 26) & 0x3f {
        ec::DABT_LOWER => {
            let ipa = ((HPFAR_EL2.get() >> 4) << 12) | (FAR_EL2.get() & 0xfff);
            if super::vdev::mmio(sys, role, esr, ipa, &mut frame.x) != super::vdev::Mmio::Done {
                return false;
            }
        }
        ec::SYSREG if !is_set_way_maintenance(esr) => super::vdev::sysreg(sys, role, core, esr, &mut frame.x),
        _ => return false,
    }
    frame.elr += 4;
    true
}

/// ESR ISS of a trapped `sys` instruction: Op0 = 1, Op1 = 0, CRn = 7, CRm in
/// {6, 10, 14}, Op2 = 2 are DC ISW, DC CSW, DC CISW.
fn is_set_way_maintenance(esr: u64) -> bool {
    let op0 = (esr >> 20) & 3;
    let op2 = (esr >> 17) & 7;
    let op1 = (esr >> 14) & 7;
    let crn = (esr >> 10) & 0xf;
    let crm = (esr >> 1) & 0xf;
    op0 == 1 && op1 == 0 && crn == 7 && op2 == 2 && matches!(crm, 6 | 10 | 14)
}

#[no_mangle]
extern "C" fn rust_trap_current(frame: &mut TrapFrame, kind: u64) -> ! {
    let esr = ESR_EL2.get();
    let far = FAR_EL2.get();
    crate::console::hv_print(format_args!(
        "hypervisor exception (kind {kind}) ESR {esr:#x} ELR {:#x} FAR {far:#x}\n",
        frame.elr
    ));
    super::exit_machine(3)
}

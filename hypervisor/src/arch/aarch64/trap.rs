//! Trap entry from the EL2 vectors: decode the syndrome into a portable
//! [`Trap`] and hand it to the partition logic.

use aarch64_cpu::registers::*;

use crate::partition::{self, Trap};

/// Guest general registers and return state, as `vectors.S` saves them.
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

/// Instructions of a trap outside the measured window of
/// `rust_trap_lower`: the vector's register save and `bl` (23), the restore
/// and `eret` (22). The measured window includes this function's own
/// prologue and epilogue and the two counter reads.
const VECTOR_INSTRUCTIONS: u64 = 45;

#[no_mangle]
extern "C" fn rust_trap_lower(frame: &mut TrapFrame, kind: u64) {
    let start = super::el2_instructions();
    let core = super::this_core();
    handle_lower(frame, kind, core);
    // Only traps that return to the guest get here.
    let spent = super::el2_instructions().wrapping_sub(start);
    partition::account(core, if start == 0 && spent == 0 { 0 } else { spent + VECTOR_INSTRUCTIONS });
}

fn handle_lower(frame: &mut TrapFrame, kind: u64, core: usize) {
    if kind == 1 {
        // A physical IRQ. The timer PPI and device SPIs (routed only to
        // their owner's boot core) go straight to the guest,
        // hardware-linked; the doorbell SGI and the maintenance interrupt
        // are the hypervisor's.
        use super::gic;
        let intid = gic::ack();
        match intid {
            gic::DOORBELL_SGI | gic::MAINTENANCE_PPI => {
                gic::end(intid);
                if intid == gic::MAINTENANCE_PPI {
                    gic::release_held(core);
                }
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
        return;
    }
    let esr = ESR_EL2.get();
    let pc = frame.elr;
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

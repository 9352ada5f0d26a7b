//! Hypercall and PSCI handling: everything a partition can ask for.
//!
//! Arguments come from guest registers and are decoded by
//! `hallows_abi::decode`; pointers are checked against the caller's own RAM
//! window before a single byte is read. A bad argument is an error returned
//! to the guest; only requests that are violations of the partition's
//! boundaries (powering off the machine, starting a core it does not own)
//! stop the partition.

use hallows_abi::{fault_kind, psci, Error, Hypercall, PsciCall, CONSOLE_MAX};

use crate::partition::{self, StopReason, Vcpu};
use crate::system::{self, CoreRole, System};
use crate::console;

/// What the trap handler does after a call.
#[derive(Debug)]
pub enum Action {
    Resume,
    /// This vCPU is off (PSCI CPU_OFF) but the partition runs on.
    Park,
    Exit(u64),
    Stop(StopReason),
}

/// PSCI 1.1.
const PSCI_VERSION: u64 = 0x0001_0001;

pub fn handle(sys: &System, role: CoreRole, regs: &mut [u64; 31]) -> Action {
    let index = role.partition;
    let p = &sys.table.partitions()[index];
    let Some(rt) = sys.parts[index] else { return Action::Stop(StopReason::Unexpected { esr: 0, pc: 0 }) };
    let args = [regs[0], regs[1], regs[2], regs[3], regs[4], regs[5]];
    let call = match hallows_abi::decode(args) {
        Ok(c) => c,
        Err(e) => {
            regs[0] = e.code();
            return Action::Resume;
        }
    };
    let ret = |regs: &mut [u64; 31], v: i64| {
        regs[0] = v as u64;
        Action::Resume
    };
    match call {
        Hypercall::AbiVersion => {
            regs[1] = hallows_abi::ABI_VERSION;
            ret(regs, 0)
        }
        Hypercall::ConsoleWrite { ptr, len } => {
            let mut buf = [0u8; CONSOLE_MAX as usize];
            let buf = &mut buf[..len as usize];
            match rt.ram.read(ptr, buf) {
                Ok(()) => {
                    console::partition_write(index, p.name(), buf);
                    ret(regs, len as i64)
                }
                Err(e) => ret(regs, e as i64),
            }
        }
        Hypercall::Exit { status } => Action::Exit(status),
        Hypercall::Fault { kind, address, detail } => Action::Stop(match kind {
            fault_kind::PANIC => StopReason::Panic,
            fault_kind::STACK_OVERFLOW => StopReason::StackOverflow { vcpu: role.vcpu as u32, address, pc: detail },
            _ => StopReason::Exception { pc: address, esr: detail },
        }),
        Hypercall::Notify { channel } => match partition::doorbell_target(sys, index, channel as usize) {
            Some(target) => {
                partition::ring_doorbell(sys, target);
                ret(regs, 0)
            }
            // Not a doorbell channel of this partition.
            None => ret(regs, Error::InvalidArgument as i64),
        },
        Hypercall::SetTimer { deadline, period } => {
            if crate::arch::set_timer(deadline, period) {
                ret(regs, 0)
            } else {
                ret(regs, Error::NotSupported as i64)
            }
        }
        Hypercall::Wake { vcpu } => {
            if vcpu >= system::vcpu_count(p) as u64 {
                return ret(regs, Error::InvalidArgument as i64);
            }
            match p.vcpu_core.get(vcpu as usize) {
                Some(&core) if crate::arch::wake(core as usize, sys.table.board.core_hwid[core as usize]) => ret(regs, 0),
                Some(_) => ret(regs, Error::NotSupported as i64),
                None => ret(regs, Error::InvalidArgument as i64),
            }
        }
        Hypercall::WatchdogPet => {
            if partition::watchdog_pet(index) {
                ret(regs, 0)
            } else {
                ret(regs, Error::NotSupported as i64)
            }
        }
        Hypercall::Psci(c) => psci_call(sys, role, c, regs),
    }
}

/// Writes the deadline the calling vCPU's timer is armed for (0: none)
/// into its partition's boot information (`BootInfo::timer_armed`), where
/// the guest reads it without a call. The boot information is the
/// partition's own RAM: what the guest does to it only misleads itself.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
pub fn publish_timer(core: usize, at: u64) {
    let sys = system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { return };
    let p = &sys.table.partitions()[role.partition];
    let Some(rt) = sys.parts[role.partition] else { return };
    let Some(off) = core::mem::offset_of!(hallows_abi::BootInfo, timer_armed).checked_add(role.vcpu * 8) else { return };
    if role.vcpu < hallows_abi::MAX_VCPUS {
        let _ = rt.ram.write(system::boot_info_ipa(p) + off as u64, &at);
    }
}

fn psci_call(sys: &System, role: CoreRole, c: PsciCall, regs: &mut [u64; 31]) -> Action {
    let p = &sys.table.partitions()[role.partition];
    let vcpus = system::vcpu_count(p) as u64;
    let ret = |regs: &mut [u64; 31], v: i64| {
        regs[0] = v as u64;
        Action::Resume
    };
    match c {
        PsciCall::Version => ret(regs, PSCI_VERSION as i64),
        PsciCall::Features { function } => {
            let supported = matches!(
                function,
                psci::VERSION
                    | psci::FEATURES
                    | psci::CPU_ON_32
                    | psci::CPU_ON_64
                    | psci::CPU_OFF
                    | psci::AFFINITY_INFO_32
                    | psci::AFFINITY_INFO_64
                    | psci::SYSTEM_OFF
                    | psci::SYSTEM_RESET
                    | psci::MIGRATE_INFO_TYPE
                    | psci::CPU_SUSPEND_32
                    | psci::CPU_SUSPEND_64
            );
            // CPU_SUSPEND's feature flags: 0 (the original power-state
            // format, no OS-initiated mode), like every other supported call.
            ret(regs, if supported { psci::SUCCESS } else { psci::NOT_SUPPORTED })
        }
        PsciCall::CpuOn { target, entry, context } => {
            // Virtual MPIDRs number the partition's vCPUs 0..n in Aff0.
            let vcpu = target & 0xff_00ff_ffff;
            if vcpu >= vcpus {
                return Action::Stop(StopReason::CpuOnNotOwned { target });
            }
            if !entry_in_image(p, entry) {
                return ret(regs, psci::INVALID_PARAMETERS);
            }
            let mut st = partition::state(role.partition);
            match st.vcpus[vcpu as usize] {
                Vcpu::Off => {
                    st.vcpus[vcpu as usize] = Vcpu::Pending { entry, context };
                    drop(st);
                    partition::wake_vcpu(p, vcpu as usize);
                    ret(regs, psci::SUCCESS)
                }
                _ => ret(regs, psci::ALREADY_ON),
            }
        }
        PsciCall::CpuOff => {
            let mut st = partition::state(role.partition);
            st.vcpus[role.vcpu] = Vcpu::Off;
            let any_on = st.vcpus[..vcpus as usize].iter().any(|v| *v != Vcpu::Off);
            drop(st);
            if any_on {
                Action::Park
            } else {
                Action::Exit(0)
            }
        }
        PsciCall::AffinityInfo { target, level } => {
            let vcpu = target & 0xff_00ff_ffff;
            if level != 0 || vcpu >= vcpus {
                return ret(regs, psci::INVALID_PARAMETERS);
            }
            let state = match partition::state(role.partition).vcpus[vcpu as usize] {
                Vcpu::On => 0,
                Vcpu::Off => 1,
                Vcpu::Pending { .. } => 2,
            };
            ret(regs, state)
        }
        // A Linux partition powering off or resetting "the machine" powers
        // off or resets itself, and only itself: SYSTEM_OFF ends it with
        // status 0 (`poweroff`), SYSTEM_RESET ends it as a fault, so its
        // manifest policy restarts or stops it (`reboot`, a panic with
        // `panic=-1`). A RustHallows guest has its own EXIT; for it both
        // are denied attempts on the machine.
        PsciCall::SystemOff if p.is_linux() => Action::Exit(0),
        PsciCall::SystemReset if p.is_linux() => Action::Stop(StopReason::Reset),
        PsciCall::SystemOff => Action::Stop(StopReason::SystemOff),
        PsciCall::SystemReset => Action::Stop(StopReason::SystemReset),
        PsciCall::MigrateInfoType => ret(regs, psci::TOS_NOT_PRESENT_MP),
        // Standby and power-down alike return at once, as a wake-up would
        // (PSCI allows it: a core may wake for any reason). The core is
        // the partition's own; `wfi` already idles it.
        PsciCall::CpuSuspend { state, entry, .. } => {
            // StateType (bit 16) set: a power-down state, with an entry point.
            if state & (1 << 16) != 0 && !entry_in_image(p, entry) {
                ret(regs, psci::INVALID_PARAMETERS)
            } else {
                ret(regs, psci::SUCCESS)
            }
        }
        PsciCall::Other { .. } => ret(regs, psci::NOT_SUPPORTED),
    }
}

/// Whether `entry` may start a vCPU of `p` (CPU_ON, CPU_SUSPEND): inside
/// its RAM, 4-byte aligned, and for a RustHallows guest below its boot
/// information (the stacks and boot information hold no code).
fn entry_in_image(p: &hallows_table::PartitionDesc, entry: u64) -> bool {
    let end = if p.is_linux() { p.ram_ipa.saturating_add(p.ram_size) } else { system::boot_info_ipa(p) };
    entry >= p.ram_ipa && entry < end && entry.is_multiple_of(4)
}

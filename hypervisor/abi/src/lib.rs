//! The contract between a partition and the hypervisor: hypercall ABI
//! version 4, the PSCI subset partitions may use, and the boot information
//! page a guest finds at entry.
//!
//! Both sides link this crate: the guest runtime to issue calls, the
//! hypervisor to decode them. Decoding lives here, in plain safe Rust, so the
//! handling of every guest-chosen register value is tested on the host.
//! This crate never trusts its input: [`decode`] accepts any six registers
//! and [`GuestRange::check`] any pointer and length.
//!
//! Calling convention (aarch64, SMCCC style): `hvc #0` with the function id
//! in `x0` and arguments in `x1..x5`; the result comes back in `x0` (a
//! non-negative value, or a negative [`Error`]) and `x1`. On x86 the same
//! numbers travel in `rax`, `rdi`, `rsi`, `rdx`, `r10`, `r8` through
//! `vmcall`/`vmmcall`.
#![no_std]
#![forbid(unsafe_code)]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Version of the ABI described here, returned by [`call::ABI_VERSION`].
pub const ABI_VERSION: u64 = 5;

pub mod console;

/// Function ids: SMCCC fast calls, SMC64, owner 6 (vendor-specific
/// hypervisor service), so they never collide with PSCI or other standard
/// services a future Linux guest may issue.
pub mod call {
    pub const BASE: u64 = 0xC600_0000;
    /// `() -> (0, ABI_VERSION)`.
    pub const ABI_VERSION: u64 = BASE;
    /// `(ptr, len) -> bytes written`: writes UTF-8 text to the partition's console.
    pub const CONSOLE_WRITE: u64 = BASE + 1;
    /// `(status)`: the partition has finished; never returns.
    pub const EXIT: u64 = BASE + 2;
    /// `(kind, address, detail)`: the guest caught a fatal fault of its own
    /// (a panic, an exception it cannot handle); the hypervisor applies the
    /// partition's fault policy. Never returns.
    pub const FAULT: u64 = BASE + 3;
    /// `(channel)`: rings the doorbell of channel `channel` (its index in
    /// the caller's [`BootInfo`] channel directory): the peer partition gets
    /// a virtual interrupt. Only for channels with `notify = "doorbell"`.
    pub const NOTIFY: u64 = BASE + 4;
    /// x86_64: `(deadline, period)`: arms the calling vCPU's timer to raise
    /// [`TIMER_VECTOR`](super::TIMER_VECTOR) once the TSC reaches
    /// `deadline` (0: disarms it). With `period` non-zero the hypervisor
    /// re-arms it itself after each expiry, at the previous deadline plus
    /// `period` (or one period from now if that has passed), so a periodic
    /// tick costs one exit, not two. The deadline armed now is published in
    /// [`BootInfo::timer_armed`](super::BootInfo::timer_armed)`[vcpu]`
    /// (0: none), so a guest whose next deadline is already armed need not
    /// call. aarch64 guests program the EL1 virtual timer themselves:
    /// `NotSupported` there.
    pub const SET_TIMER: u64 = BASE + 5;
    /// x86_64: `(vcpu)`: vCPU `vcpu` of the caller's own partition stops
    /// waiting in `hlt` (or its next `hlt` returns at once): how a core that
    /// queues work for an idle one wakes it (aarch64 uses `sev`).
    /// `InvalidArgument` for a vCPU the partition does not have.
    pub const WAKE: u64 = BASE + 6;
    /// `()`: pets the partition's watchdog (manifest `watchdog`): its
    /// deadline becomes one period from now. `NotSupported` for a partition
    /// without a watchdog. Writing a new value to
    /// [`BootInfo::heartbeat`](super::BootInfo::heartbeat) pets it too,
    /// without a call.
    pub const WATCHDOG_PET: u64 = BASE + 7;
}

/// Kinds of guest-reported faults ([`call::FAULT`]).
pub mod fault_kind {
    /// The guest's panic handler ran; the message went to the console first.
    pub const PANIC: u64 = 1;
    /// A synchronous exception the guest could not handle: `address` is the
    /// faulting instruction, `detail` the syndrome (ESR_EL1 on aarch64).
    pub const EXCEPTION: u64 = 2;
    /// A vCPU ran off the bottom of its stack into the unmapped guard page
    /// below it: `address` is the faulting data address (in the guard
    /// page), `detail` the faulting instruction.
    pub const STACK_OVERFLOW: u64 = 3;
}

/// PSCI function ids (SMC32 and SMC64 forms) the hypervisor recognises.
pub mod psci {
    pub const VERSION: u64 = 0x8400_0000;
    pub const CPU_SUSPEND_32: u64 = 0x8400_0001;
    pub const CPU_OFF: u64 = 0x8400_0002;
    pub const CPU_ON_32: u64 = 0x8400_0003;
    pub const AFFINITY_INFO_32: u64 = 0x8400_0004;
    pub const SYSTEM_OFF: u64 = 0x8400_0008;
    pub const SYSTEM_RESET: u64 = 0x8400_0009;
    pub const FEATURES: u64 = 0x8400_000A;
    pub const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
    /// MIGRATE_INFO_TYPE's answer: no Trusted OS that needs migrating.
    pub const TOS_NOT_PRESENT_MP: i64 = 2;
    pub const CPU_SUSPEND_64: u64 = 0xC400_0001;
    pub const CPU_ON_64: u64 = 0xC400_0003;
    pub const AFFINITY_INFO_64: u64 = 0xC400_0004;

    /// PSCI return codes.
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const DENIED: i64 = -3;
    pub const ALREADY_ON: i64 = -4;
}

/// Errors returned in `x0` as negative numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Error {
    /// Unknown function id.
    NotSupported = -1,
    /// A pointer/length outside the caller's memory, or wrapping.
    InvalidAddress = -2,
    /// An argument out of range.
    InvalidArgument = -3,
}

impl Error {
    pub const fn code(self) -> u64 {
        self as i64 as u64
    }
}

/// The longest console write accepted in one call; longer writes are split
/// by the runtime. Bounds the hypervisor's copy.
pub const CONSOLE_MAX: u64 = 256;

/// A decoded, argument-checked call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    AbiVersion,
    ConsoleWrite { ptr: u64, len: u64 },
    Exit { status: u64 },
    Fault { kind: u64, address: u64, detail: u64 },
    Notify { channel: u64 },
    SetTimer { deadline: u64, period: u64 },
    Wake { vcpu: u64 },
    WatchdogPet,
    Psci(PsciCall),
}

/// The PSCI calls the hypervisor emulates for partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciCall {
    Version,
    Features { function: u64 },
    CpuOn { target: u64, entry: u64, context: u64 },
    CpuOff,
    AffinityInfo { target: u64, level: u64 },
    SystemOff,
    SystemReset,
    MigrateInfoType,
    /// CPU_SUSPEND (power state, entry point, context).
    CpuSuspend { state: u64, entry: u64, context: u64 },
    /// A PSCI id we do not implement: answered NOT_SUPPORTED.
    Other { function: u64 },
}

/// Decodes a trapped `hvc` (or `smc`) from its argument registers `x0..x5`.
/// Any register values are accepted; unknown ids come back as errors.
pub fn decode(regs: [u64; 6]) -> Result<Hypercall, Error> {
    let [x0, x1, x2, x3, _, _] = regs;
    // SMC32 calls pass 32-bit values: the upper half of x0 is ignored.
    let fid = if x0 & (1 << 30) == 0 { x0 & 0xffff_ffff } else { x0 };
    Ok(match fid {
        call::ABI_VERSION => Hypercall::AbiVersion,
        call::CONSOLE_WRITE => {
            if x2 > CONSOLE_MAX {
                return Err(Error::InvalidArgument);
            }
            Hypercall::ConsoleWrite { ptr: x1, len: x2 }
        }
        call::EXIT => Hypercall::Exit { status: x1 },
        call::FAULT => Hypercall::Fault { kind: x1, address: x2, detail: x3 },
        call::NOTIFY => {
            if x1 >= MAX_CHANNELS as u64 {
                return Err(Error::InvalidArgument);
            }
            Hypercall::Notify { channel: x1 }
        }
        call::SET_TIMER => Hypercall::SetTimer { deadline: x1, period: x2 },
        call::WAKE => {
            if x1 >= MAX_VCPUS as u64 {
                return Err(Error::InvalidArgument);
            }
            Hypercall::Wake { vcpu: x1 }
        }
        call::WATCHDOG_PET => Hypercall::WatchdogPet,
        psci::VERSION => Hypercall::Psci(PsciCall::Version),
        psci::FEATURES => Hypercall::Psci(PsciCall::Features { function: x1 & 0xffff_ffff }),
        psci::CPU_ON_64 => Hypercall::Psci(PsciCall::CpuOn { target: x1, entry: x2, context: x3 }),
        psci::CPU_ON_32 => Hypercall::Psci(PsciCall::CpuOn {
            target: x1 & 0xffff_ffff,
            entry: x2 & 0xffff_ffff,
            context: x3 & 0xffff_ffff,
        }),
        psci::CPU_OFF => Hypercall::Psci(PsciCall::CpuOff),
        psci::AFFINITY_INFO_64 => Hypercall::Psci(PsciCall::AffinityInfo { target: x1, level: x2 }),
        psci::AFFINITY_INFO_32 => Hypercall::Psci(PsciCall::AffinityInfo { target: x1 & 0xffff_ffff, level: x2 & 0xffff_ffff }),
        psci::SYSTEM_OFF => Hypercall::Psci(PsciCall::SystemOff),
        psci::SYSTEM_RESET => Hypercall::Psci(PsciCall::SystemReset),
        psci::MIGRATE_INFO_TYPE => Hypercall::Psci(PsciCall::MigrateInfoType),
        psci::CPU_SUSPEND_64 => Hypercall::Psci(PsciCall::CpuSuspend { state: x1, entry: x2, context: x3 }),
        psci::CPU_SUSPEND_32 => Hypercall::Psci(PsciCall::CpuSuspend {
            state: x1 & 0xffff_ffff,
            entry: x2 & 0xffff_ffff,
            context: x3 & 0xffff_ffff,
        }),
        f if (0x8400_0000..=0x8400_001F).contains(&f) || (0xC400_0000..=0xC400_001F).contains(&f) => {
            Hypercall::Psci(PsciCall::Other { function: f })
        }
        _ => return Err(Error::NotSupported),
    })
}

/// A window of guest-physical memory a partition owns (its RAM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    /// Guest-physical base.
    pub ipa: u64,
    /// Host-physical base it is mapped to.
    pub pa: u64,
    pub size: u64,
}

impl GuestRange {
    /// Checks that `[ptr, ptr + len)` lies inside this window and returns
    /// the host-physical address of `ptr`. Overflow-safe for any inputs.
    pub fn check(&self, ptr: u64, len: u64) -> Result<u64, Error> {
        let offset = ptr.checked_sub(self.ipa).ok_or(Error::InvalidAddress)?;
        let end = offset.checked_add(len).ok_or(Error::InvalidAddress)?;
        if end > self.size {
            return Err(Error::InvalidAddress);
        }
        Ok(self.pa + offset)
    }
}

/// `b"HLWSBOOT"`: first bytes of [`BootInfo`].
pub const BOOT_MAGIC: [u8; 8] = *b"HLWSBOOT";

/// What a guest finds at entry: `x0` holds the guest-physical address of
/// this structure, `x1` the index of the vCPU being started (0 for the boot
/// vCPU). It lives in the last page of the partition's RAM; the runtime puts
/// its stacks just below it.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BootInfo {
    pub magic: [u8; 8],
    pub abi_version: u64,
    /// Index of the partition in the system table.
    pub partition_index: u32,
    /// Number of cores (vCPUs) the partition owns.
    pub vcpu_count: u32,
    pub ram_ipa: u64,
    pub ram_size: u64,
    /// How many times the partition has been restarted by its fault policy.
    pub restart_count: u32,
    pub _pad: u32,
    /// NUL-padded partition name.
    pub name: [u8; 32],
    /// NUL-padded boot arguments from the manifest.
    pub bootargs: [u8; 128],
    /// Valid entries of `channels`.
    pub channel_count: u32,
    pub _pad2: u32,
    /// The channels this partition is an end of.
    pub channels: [ChannelInfo; MAX_CHANNELS],
    /// Log level from the manifest's `log` key ([`log_level`]); 0 when
    /// the manifest leaves it to the guest (the runtime then reads `log=`
    /// from the boot arguments).
    pub log_level: u32,
    /// Valid entries of `devices`.
    pub device_count: u32,
    /// [`dma::TRUSTED`] when the manifest lets this partition program
    /// DMA-capable devices (`dma = "trusted"`); 0 otherwise.
    pub dma: u32,
    pub _pad3: u32,
    /// With [`dma::TRUSTED`]: host-physical minus guest-physical address
    /// of the partition's RAM (wrapping), the offset a driver adds to a
    /// buffer's guest-physical address to give a device its bus address.
    /// 0 otherwise.
    pub dma_offset: u64,
    /// The devices assigned to this partition.
    pub devices: [DeviceInfo; MAX_DEVICES],
    /// The partition's network configuration from the manifest (its `nic`,
    /// `listen` and `routes` keys); all zero when it has none. The
    /// hypervisor copies it from the system table without reading it.
    pub net: NetInfo,
    /// x86_64: the frequency of the TSC in Hz, calibrated by the hypervisor
    /// at boot (CPUID leaf 0x15 where it gives one, else against the PIT);
    /// `time::now` divides by it. 0 on aarch64 (CNTFRQ_EL0 says it).
    pub tsc_hz: u64,
    /// x86_64: per vCPU, the TSC deadline its timer is armed for now (0:
    /// none), written by the hypervisor whenever it arms or re-arms it
    /// ([`call::SET_TIMER`]). Unused on aarch64.
    pub timer_armed: [u64; MAX_VCPUS],
    /// The partition's watchdog period in nanoseconds (manifest
    /// `watchdog`); 0 when it has none. Since ABI 4.
    pub watchdog_ns: u64,
    /// Heartbeat word (since ABI 4): the guest writes any new value here
    /// at least once per watchdog period; the hypervisor reads it only
    /// when the watchdog's deadline is reached, so a beat costs one store
    /// and no trap. A partition that neither changes it nor calls
    /// [`call::WATCHDOG_PET`] within a period misses its watchdog (see
    /// docs/supervision.md: caught within two periods when petted this
    /// way, one with the call).
    pub heartbeat: u64,
}

/// vCPUs a partition can have (one per dedicated core).
pub const MAX_VCPUS: usize = 16;

/// [`call::SET_TIMER`]'s rule for a periodic timer: after the fire of
/// `deadline` at `now`, the next deadline is `deadline + period`, or, if
/// that has passed (the fire was late by a period or more), one period
/// from `now`. Never in the past, never wraps (saturates at `u64::MAX`).
/// The hypervisor applies it; a guest may use it to predict what
/// [`BootInfo::timer_armed`] will say.
pub fn next_periodic_deadline(deadline: u64, period: u64, now: u64) -> u64 {
    match deadline.checked_add(period) {
        Some(n) if n > now => n,
        _ => now.saturating_add(period),
    }
}

/// [`call::SET_TIMER`]'s shortest period: 10 µs of a TSC running at
/// `tsc_hz` (at least one tick). A shorter one is raised to it: a guest
/// asking for a fire per cycle would only flood its own core with exits.
pub fn min_timer_period(tsc_hz: u64) -> u64 {
    (tsc_hz / 100_000).max(1)
}

/// Values of [`NetInfo::mode`].
pub mod net_mode {
    /// No network.
    pub const NONE: u32 = 0;
    /// Owns a NIC; its core polls the device queues (no device interrupt).
    pub const POLL: u32 = 1;
    /// Owns a NIC; the device interrupts the partition.
    pub const INTERRUPT: u32 = 2;
    /// Owns no NIC: reached through the gateway partition named in
    /// [`NetInfo::upstream`](super::NetInfo::upstream) over the channels
    /// `<gateway>-<self>` (to this partition) and `<self>-<gateway>`.
    pub const GATEWAY: u32 = 3;
}

/// Slot size, in bytes, the manifest check requires of a gateway link's
/// channels (`<gateway>-<service>` and back): one link frame per slot. A
/// contract between the tool and the gateway protocol (`hallows-link`,
/// whose frame size is this).
pub const LINK_SLOT_SIZE: usize = 2048;
/// Fewest slots the manifest check accepts for a gateway link's channel.
pub const LINK_MIN_SLOTS: usize = 16;

/// Ports a partition can declare in its `listen` key.
pub const MAX_LISTEN: usize = 8;
/// Routes a gateway partition can have.
pub const MAX_ROUTES: usize = 8;

/// A partition's network configuration ([`BootInfo::net`]).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetInfo {
    /// One of [`net_mode`].
    pub mode: u32,
    /// Prefix length of `address` (its subnet), with a NIC.
    pub prefix_len: u32,
    /// IPv4 address of the partition's NIC (network byte order).
    pub address: [u8; 4],
    /// Default router (network byte order); all zero for none.
    pub router: [u8; 4],
    /// Valid entries of `listen`.
    pub listen_count: u32,
    /// Valid entries of `routes` (a gateway partition).
    pub route_count: u32,
    /// TCP ports the partition's services accept connections on.
    pub listen: [u16; MAX_LISTEN],
    /// A gateway partition: which TCP port goes to which partition.
    pub routes: [NetRoute; MAX_ROUTES],
    /// With [`net_mode::GATEWAY`]: the NUL-padded name of the gateway
    /// partition that forwards this partition's connections.
    pub upstream: [u8; 32],
}

/// One route of a gateway partition: connections to `port` go to the
/// partition `to` over the channels `<gateway>-<to>` and `<to>-<gateway>`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetRoute {
    pub port: u16,
    pub _pad: [u8; 6],
    /// NUL-padded partition name.
    pub to: [u8; 32],
}

/// Log levels of [`BootInfo::log_level`] (the `log` crate's order).
pub mod log_level {
    pub const UNSET: u32 = 0;
    pub const OFF: u32 = 1;
    pub const ERROR: u32 = 2;
    pub const WARN: u32 = 3;
    pub const INFO: u32 = 4;
    pub const DEBUG: u32 = 5;
    pub const TRACE: u32 = 6;
}

/// Values of [`BootInfo::dma`].
pub mod dma {
    /// The partition may program DMA-capable devices with physical
    /// addresses. Without an IOMMU such a device reaches any physical
    /// address: the partition is trusted with the whole machine's memory.
    pub const TRUSTED: u32 = 1;
}

/// Devices a partition can have in its directory.
pub const MAX_DEVICES: usize = 16;

/// One entry of the device directory in [`BootInfo`]: a board device
/// assigned to the partition, mapped at its physical address
/// (guest-physical == physical for MMIO) and with its interrupt delivered
/// as the same virtual INTID.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DeviceInfo {
    /// NUL-padded board name of the device (`virtio31`).
    pub name: [u8; 32],
    /// NUL-padded compatible string (`virtio,mmio`).
    pub compatible: [u8; 32],
    /// Guest-physical (= physical) base of its MMIO registers.
    pub base: u64,
    pub size: u64,
    /// Its interrupt (INTID; 0 for none).
    pub irq: u32,
    pub _pad: u32,
}

/// Channels a partition can have in its directory.
pub const MAX_CHANNELS: usize = 16;

/// Virtual interrupt (INTID) a doorbell raises in the receiving partition
/// for entry `i` of *its* channel directory: `DOORBELL_INTID_BASE + i`.
/// Virtual only: no physical interrupt with these numbers reaches a partition.
pub const DOORBELL_INTID_BASE: u32 = 32;

/// x86_64: the interrupt vector a doorbell raises in the receiving
/// partition for entry `i` of its channel directory:
/// `DOORBELL_VECTOR_BASE + i` (vectors 32..47, the first after the
/// exceptions). Injected by the hypervisor as an external interrupt; there
/// is no virtual local APIC, so the guest sends no end of interrupt.
pub const DOORBELL_VECTOR_BASE: u8 = 32;

/// x86_64: the vector of a vCPU's timer ([`call::SET_TIMER`]), injected
/// as an external interrupt like a doorbell (no end of interrupt).
pub const TIMER_VECTOR: u8 = 48;

/// x86_64: the vector an assigned device's interrupt raises in its
/// partition: `DEVICE_VECTOR_BASE + i` for entry `i` of the device
/// directory ([`BootInfo::devices`]); [`DeviceInfo::irq`] holds it (on
/// aarch64 it holds the device's INTID). Up to 64 + MAX_DEVICES.
pub const DEVICE_VECTOR_BASE: u8 = 64;
const _: () = assert!(DOORBELL_VECTOR_BASE as usize + MAX_CHANNELS <= TIMER_VECTOR as usize);
const _: () = assert!((DEVICE_VECTOR_BASE as usize) + MAX_DEVICES <= 96);

/// aarch64: the INTID of the EL1 virtual timer (a PPI). The hypervisor
/// delivers it to the partition on every core it owns as the same virtual
/// INTID, hardware-linked: the guest's end of interrupt deactivates the
/// physical one.
pub const VIRTUAL_TIMER_INTID: u32 = 27;

/// Role of a partition on a channel in its [`ChannelInfo`].
pub mod role {
    pub const PRODUCER: u32 = 1;
    pub const CONSUMER: u32 = 2;
}

/// One entry of the channel directory in [`BootInfo`].
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ChannelInfo {
    /// NUL-padded channel name from the manifest.
    pub name: [u8; 32],
    /// Guest-physical base of the channel memory.
    pub ipa: u64,
    pub slot_size: u32,
    pub slot_count: u32,
    /// [`role::PRODUCER`] or [`role::CONSUMER`].
    pub role: u32,
    /// 0 poll, 1 doorbell. (ABI 5: notify was a u32; the same bytes on a
    /// little-endian machine for every value it took.)
    pub notify: u16,
    /// What the ring's layout is tuned for, a `hallows_ring::Tuning::code()`
    /// (0 latency, 1 throughput): the channel's `ChannelLayout` is
    /// `new(slot_size, slot_count).tuned(..)` of it, as at the other end.
    /// Since ABI 5.
    pub tuning: u16,
    /// The layout hash of the channel's message type as the system's
    /// specs declare it (Parseltongue's `TYPE::LAYOUT_HASH`), written by
    /// the tool; 0 when no spec types the channel (unchecked). A runtime
    /// refuses to open the channel with a type of another hash. (ABI 3:
    /// this was padding in ABI 2.)
    pub layout_hash: u64,
}

/// Size of the stack the runtime carves for each vCPU below the boot info page
/// (128 KiB: an `async` service's poll frame can take tens of KiB, and the
/// log broker's recovery overflowed 64 KiB).
pub const VCPU_STACK_SIZE: u64 = 128 * 1024;
/// Offset of [`BootInfo`] from the end of the partition's RAM.
pub const BOOT_INFO_FROM_END: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_known_calls() {
        assert_eq!(decode([call::ABI_VERSION, 0, 0, 0, 0, 0]), Ok(Hypercall::AbiVersion));
        assert_eq!(
            decode([call::CONSOLE_WRITE, 0x4000_0000, 12, 0, 0, 0]),
            Ok(Hypercall::ConsoleWrite { ptr: 0x4000_0000, len: 12 })
        );
        assert_eq!(decode([call::EXIT, 7, 0, 0, 0, 0]), Ok(Hypercall::Exit { status: 7 }));
        assert_eq!(decode([call::NOTIFY, 3, 0, 0, 0, 0]), Ok(Hypercall::Notify { channel: 3 }));
        assert_eq!(decode([call::NOTIFY, MAX_CHANNELS as u64, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(decode([call::SET_TIMER, 5, 7, 0, 0, 0]), Ok(Hypercall::SetTimer { deadline: 5, period: 7 }));
        assert_eq!(decode([call::WAKE, 3, 0, 0, 0, 0]), Ok(Hypercall::Wake { vcpu: 3 }));
        assert_eq!(decode([call::WAKE, MAX_VCPUS as u64, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(decode([call::WATCHDOG_PET, 9, 9, 9, 9, 9]), Ok(Hypercall::WatchdogPet));
        assert_eq!(decode([psci::SYSTEM_OFF, 0, 0, 0, 0, 0]), Ok(Hypercall::Psci(PsciCall::SystemOff)));
        assert_eq!(
            decode([psci::CPU_ON_64, 2, 0x4000_1000, 5, 0, 0]),
            Ok(Hypercall::Psci(PsciCall::CpuOn { target: 2, entry: 0x4000_1000, context: 5 }))
        );
    }

    proptest! {
        #[test]
        fn periodic_deadlines_move_forward_by_a_period_or_from_now(d in any::<u64>(), p in 1u64.., now in any::<u64>()) {
            let n = next_periodic_deadline(d, p, now);
            // Never in the past (unless the clock is at the end of time).
            prop_assert!(n > now || n == u64::MAX);
            match d.checked_add(p) {
                // On time: phase kept, no drift.
                Some(on_time) if on_time > now => prop_assert_eq!(n, on_time),
                // Late by a period or more: one period from now.
                _ => prop_assert_eq!(n, now.saturating_add(p)),
            }
        }
    }

    #[test]
    fn timer_periods_have_a_floor_of_10_us() {
        assert_eq!(min_timer_period(2_600_000_000), 26_000);
        assert_eq!(min_timer_period(4_000_000), 40);
        assert_eq!(min_timer_period(0), 1);
    }

    #[test]
    fn smc32_ids_ignore_the_upper_half_and_truncate_arguments() {
        let x0 = 0xdead_beef_0000_0000 | psci::CPU_ON_32;
        assert_eq!(
            decode([x0, 0x1_0000_0002, 0xffff_ffff_4000_0000, 0, 0, 0]),
            Ok(Hypercall::Psci(PsciCall::CpuOn { target: 2, entry: 0x4000_0000, context: 0 }))
        );
    }

    #[test]
    fn rejects_unknown_and_oversized() {
        assert_eq!(decode([0, 0, 0, 0, 0, 0]), Err(Error::NotSupported));
        assert_eq!(decode([call::BASE + 99, 0, 0, 0, 0, 0]), Err(Error::NotSupported));
        assert_eq!(decode([call::CONSOLE_WRITE, 0, CONSOLE_MAX + 1, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(
            decode([0x8400_0010, 0, 0, 0, 0, 0]),
            Ok(Hypercall::Psci(PsciCall::Other { function: 0x8400_0010 }))
        );
    }

    #[test]
    fn guest_range_checks() {
        let r = GuestRange { ipa: 0x4000_0000, pa: 0x4200_0000, size: 0x20_0000 };
        assert_eq!(r.check(0x4000_0000, 16), Ok(0x4200_0000));
        assert_eq!(r.check(0x401f_fff0, 16), Ok(0x421f_fff0));
        assert_eq!(r.check(0x401f_fff1, 16), Err(Error::InvalidAddress));
        assert_eq!(r.check(0x3fff_ffff, 1), Err(Error::InvalidAddress));
        assert_eq!(r.check(u64::MAX, 2), Err(Error::InvalidAddress));
        assert_eq!(r.check(0x4000_0000, u64::MAX), Err(Error::InvalidAddress));
    }

    #[test]
    fn boot_info_layout() {
        assert_eq!(core::mem::size_of::<ChannelInfo>(), 64);
        // ABI 5: `notify` became a u16 and `tuning` took its high half.
        assert_eq!(core::mem::offset_of!(ChannelInfo, notify), 52);
        assert_eq!(core::mem::offset_of!(ChannelInfo, tuning), 54);
        assert_eq!(core::mem::offset_of!(ChannelInfo, layout_hash), 56);
        assert_eq!(core::mem::size_of::<DeviceInfo>(), 88);
        assert_eq!(core::mem::size_of::<NetInfo>(), 40 + 40 * MAX_ROUTES + 32);
        assert_eq!(core::mem::size_of::<BootInfo>(), 216 + 64 * MAX_CHANNELS + 24 + 88 * MAX_DEVICES + 392 + 8 + 8 * MAX_VCPUS + 16);
        assert!(core::mem::size_of::<BootInfo>() as u64 <= BOOT_INFO_FROM_END);
        assert_eq!(core::mem::size_of::<NetInfo>(), 392);
    }

    proptest! {
        #[test]
        fn decode_never_panics(regs in proptest::array::uniform6(any::<u64>())) {
            let _ = decode(regs);
        }

        #[test]
        fn checked_ranges_stay_inside(ptr in any::<u64>(), len in any::<u64>(), size in 0u64..1 << 40) {
            let r = GuestRange { ipa: 0x4000_0000, pa: 0x8000_0000, size };
            if let Ok(pa) = r.check(ptr, len) {
                prop_assert!(pa >= r.pa);
                prop_assert!(pa - r.pa + len <= size);
            }
        }
    }
}

//! The system table: what the host tool hands the hypervisor.
//!
//! `hallows build` reduces a checked manifest to one [`SystemTable`] and
//! appends it, followed by the guest images it refers to, to the hypervisor
//! image. The hypervisor reads it in place with `zerocopy`: no parsing, no
//! heap. Every layout here is `repr(C)`, explicitly padded, and versioned by
//! [`TABLE_VERSION`]; a hypervisor refuses a table of any other version.
//!
//! This crate must never grow logic that the hypervisor would need to trust:
//! it only describes bytes. Validation of a table's contents (ranges inside
//! the board's RAM, no overlaps) is done by the tool before it writes one and
//! again by the hypervisor before it uses one.
#![no_std]
#![forbid(unsafe_code)]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `b"HALLOWS\0"`: the first eight bytes of a payload.
pub const TABLE_MAGIC: [u8; 8] = *b"HALLOWS\0";
/// Bumped on any change of layout or meaning.
pub const TABLE_VERSION: u32 = 8;

pub const MAX_PARTITIONS: usize = 16;
pub const MAX_CORES: usize = 16;
pub const MAX_SEGMENTS: usize = 8;
pub const MAX_REGIONS: usize = 16;
pub const MAX_RAM_RANGES: usize = 4;
pub const MAX_CHANNELS: usize = 16;
pub const NAME_LEN: usize = 32;
pub const BOOTARGS_LEN: usize = 128;
pub const MAX_DEVICES: usize = 16;
/// Length of a device's compatible string in the table (NUL-padded).
pub const COMPATIBLE_LEN: usize = 32;
/// Size of [`PartitionDesc::net`]: `hallows_abi::NetInfo`, which the
/// hypervisor copies into the partition's boot information unread.
pub const NET_INFO_LEN: usize = 392;

/// The UEFI loader's image file and hand-off block.
pub mod handoff;

/// Architecture of the board a table was built for.
pub mod arch {
    pub const AARCH64: u32 = 1;
    pub const X86_64: u32 = 2;
}

/// What the hypervisor does when a partition faults.
pub mod fault_policy {
    /// Stop the partition; the others run on.
    pub const STOP: u32 = 0;
    /// Reload and restart the partition, at most `max_restarts` times, then stop it.
    pub const RESTART: u32 = 1;
    /// Stop the whole system with a failure status.
    pub const HALT: u32 = 2;
}

/// Stage-2 permission bits of a [`Region`] and a [`Segment`].
pub mod perm {
    pub const READ: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const EXEC: u32 = 1 << 2;
}

/// Memory type of a [`Region`].
pub mod region_kind {
    /// Normal write-back memory (RAM, channel memory).
    pub const NORMAL: u32 = 0;
    /// Device memory (MMIO).
    pub const DEVICE: u32 = 1;
}

/// A physical address range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct MemRange {
    pub base: u64,
    pub size: u64,
}

impl MemRange {
    /// One past the last byte, or `None` if the range wraps.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &MemRange) -> bool {
        match (self.end(), other.end()) {
            (Some(end), Some(oend)) => other.base >= self.base && oend <= end,
            _ => false,
        }
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &MemRange) -> bool {
        match (self.end(), other.end()) {
            (Some(end), Some(oend)) => self.size != 0 && other.size != 0 && self.base < oend && other.base < end,
            _ => true,
        }
    }
}

/// The board the table was built for, as far as the hypervisor needs it.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Board {
    /// One of [`arch`].
    pub arch: u32,
    /// Number of valid entries in `core_hwid`.
    pub core_count: u32,
    /// Hardware id of each core index (MPIDR affinity on aarch64, APIC id on x86).
    pub core_hwid: [u64; MAX_CORES],
    /// Number of valid entries in `ram`.
    pub ram_count: u32,
    /// The console's interrupt (aarch64: an SPI INTID; x86_64: an I/O APIC
    /// GSI); 0: none. The hypervisor takes the operator's commands from
    /// the console's receive side with it.
    pub console_irq: u32,
    /// The board's RAM.
    pub ram: [MemRange; MAX_RAM_RANGES],
    /// Physical range reserved for the hypervisor (its image, payload and boot data).
    pub hypervisor: MemRange,
    /// The console the hypervisor keeps for itself (PL011 on aarch64, 16550 port on x86).
    pub console: MemRange,
    /// Interrupt controller: distributor and redistributor (GICv3) bases.
    pub gic_dist: MemRange,
    pub gic_redist: MemRange,
}

/// One loadable piece of a guest image, resolved by the tool from its ELF.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Segment {
    /// Guest-physical (IPA) address the segment is loaded at.
    pub ipa: u64,
    /// Offset of its bytes from the start of the payload.
    pub payload_offset: u64,
    /// Bytes copied from the payload.
    pub file_size: u64,
    /// Bytes the segment occupies; the tail past `file_size` is zeroed.
    pub mem_size: u64,
}

/// One extra stage-2 mapping of a partition besides its RAM (device MMIO, channel memory).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Region {
    pub ipa: u64,
    pub pa: u64,
    pub size: u64,
    /// [`perm`] bits.
    pub perm: u32,
    /// One of [`region_kind`].
    pub kind: u32,
}

/// One partition, fully resolved: nothing here needs the manifest.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct PartitionDesc {
    /// NUL-padded UTF-8 name.
    pub name: [u8; NAME_LEN],
    /// Bit `i` set: board core index `i` belongs to this partition.
    pub core_mask: u64,
    /// Board core index of each vCPU, in order; vCPU 0 is the boot vCPU.
    /// The first `core_mask.count_ones()` entries are valid.
    pub vcpu_core: [u8; MAX_CORES],
    /// The partition's RAM: guest-physical base, host-physical base, size.
    pub ram_ipa: u64,
    pub ram_pa: u64,
    pub ram_size: u64,
    /// Guest entry point (IPA).
    pub entry: u64,
    /// One of [`fault_policy`].
    pub fault_policy: u32,
    /// With [`fault_policy::RESTART`]: how many restarts before the partition is stopped.
    pub max_restarts: u32,
    pub segment_count: u32,
    pub region_count: u32,
    pub segments: [Segment; MAX_SEGMENTS],
    pub regions: [Region; MAX_REGIONS],
    /// NUL-padded boot arguments handed to the guest in its boot information.
    pub bootargs: [u8; BOOTARGS_LEN],
    /// `hallows_abi::log_level` value from the manifest's `log` key (0: unset).
    pub log_level: u32,
    /// 1: `dma = "trusted"` (the partition learns its RAM's physical
    /// offset and may program DMA-capable devices); 0: no DMA.
    pub dma: u32,
    pub device_count: u32,
    pub _pad1: u32,
    /// The assigned devices (their MMIO pages are among `regions`).
    pub devices: [DeviceDesc; MAX_DEVICES],
    /// The partition's network configuration, laid out as
    /// `hallows_abi::NetInfo` by the tool and copied unread into the boot
    /// information.
    pub net: [u8; NET_INFO_LEN],
    /// Watchdog period in nanoseconds (manifest `watchdog`); 0: none.
    pub watchdog_ns: u64,
    /// Delay before the first restart in nanoseconds, doubled for each
    /// later one (manifest `restart_backoff`); 0: restart at once.
    pub restart_backoff_ns: u64,
    /// One of [`boot_kind`]: what `entry` is and what the boot vCPU gets.
    pub boot_kind: u32,
    pub _pad2: u32,
    /// [`boot_kind::LINUX`]: the guest-physical address of the partition's
    /// device tree blob (one of `segments`), handed to the boot vCPU in `x0`.
    pub dtb_ipa: u64,
}

/// How a partition's boot vCPU is entered.
pub mod boot_kind {
    /// A RustHallows guest: `x0` = its boot information, `x1` = 0; the
    /// hypercall ABI of `hallows_abi`.
    pub const RUST: u32 = 0;
    /// An unmodified Linux arm64 kernel (Documentation/arm64/booting.rst):
    /// EL1h, MMU and caches off, DAIF masked, `x0` = the device tree's
    /// IPA, `x1..x3` = 0. The hypervisor emulates a GICv3 distributor and
    /// redistributors, a PL011 and channel doorbell pages at the IPAs of
    /// [`linux`] for it, and answers PSCI over HVC and SMC.
    pub const LINUX: u32 = 1;
}

/// The guest-physical layout the hypervisor emulates for a Linux partition
/// ([`boot_kind::LINUX`]) and `hallows build` writes into its device tree:
/// one definition for both. None of these is mapped at stage 2: every
/// access traps and is emulated (or refused).
pub mod linux {
    /// The virtual GICv3 distributor (64 KiB).
    pub const GICD_IPA: u64 = 0x0800_0000;
    pub const GICD_SIZE: u64 = 0x1_0000;
    /// The virtual redistributors: one 128 KiB frame (RD + SGI) per vCPU,
    /// in vCPU order.
    pub const GICR_IPA: u64 = 0x080A_0000;
    pub const GICR_FRAME: u64 = 0x2_0000;
    /// The emulated PL011 console UART (4 KiB).
    pub const UART_IPA: u64 = 0x0900_0000;
    pub const UART_SIZE: u64 = 0x1000;
    /// The UART's interrupt (INTID; SPI 1). Virtual only: the emulated
    /// UART never raises it (transmission never waits, there is no
    /// input), but Linux's driver needs one to open the port.
    pub const UART_INTID: u32 = 33;
    /// Channel doorbell pages: entry `i` of the partition's channel
    /// directory rings its peer by a 32-bit write to
    /// `DOORBELL_IPA + i * DOORBELL_STRIDE`.
    pub const DOORBELL_IPA: u64 = 0x0b00_0000;
    pub const DOORBELL_STRIDE: u64 = 0x1000;
    /// The architected timer's PPIs (INTIDs) as QEMU's `virt` describes
    /// them: secure physical, non-secure physical, virtual, hypervisor.
    /// Linux at EL1 uses the virtual timer, which the hypervisor forwards.
    pub const TIMER_INTIDS: [u32; 4] = [29, 30, 27, 26];
    /// The fixed clock the PL011 is described with (Hz).
    pub const UART_CLOCK_HZ: u32 = 24_000_000;
}

/// A board device assigned to a partition: what its guest is told, and
/// the interrupt the hypervisor routes to the partition's boot core.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DeviceDesc {
    pub name: [u8; NAME_LEN],
    pub compatible: [u8; COMPATIBLE_LEN],
    /// Physical (= guest-physical) MMIO base and size.
    pub base: u64,
    pub size: u64,
    /// Shared peripheral interrupt (INTID 32..1019), or 0 for none.
    pub irq: u32,
    pub _pad: u32,
}

impl DeviceDesc {
    /// The board's name for the device (`"?"` if not UTF-8).
    pub fn name(&self) -> &str {
        str_from_padded(&self.name)
    }

    /// The device-tree `compatible` string (`"?"` if not UTF-8).
    pub fn compatible(&self) -> &str {
        str_from_padded(&self.compatible)
    }
}

impl PartitionDesc {
    /// The name as a string (`"?"` if the tool wrote invalid UTF-8).
    pub fn name(&self) -> &str {
        str_from_padded(&self.name)
    }

    pub fn bootargs(&self) -> &str {
        str_from_padded(&self.bootargs)
    }

    /// Whether the partition runs an unmodified Linux kernel.
    pub fn is_linux(&self) -> bool {
        self.boot_kind == boot_kind::LINUX
    }

    /// The partition's RAM as a host-physical range.
    pub fn ram(&self) -> MemRange {
        MemRange { base: self.ram_pa, size: self.ram_size }
    }
}

/// Notification mode of a [`ChannelDesc`].
pub mod notify {
    /// The consumer polls; the hypervisor is never involved.
    pub const POLL: u32 = 0;
    /// The `NOTIFY` hypercall raises a virtual interrupt on the peer.
    pub const DOORBELL: u32 = 1;
}

/// A channel between two partitions. The hypervisor maps its memory into
/// both, with the direction enforced by stage-2 permissions derived from
/// `hallows_ring::ChannelLayout` (the single source of truth for the layout).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ChannelDesc {
    /// NUL-padded name, as in the manifest.
    pub name: [u8; NAME_LEN],
    /// Host-physical base of the channel memory (page aligned).
    pub pa: u64,
    /// Guest-physical base, the same in both partitions.
    pub ipa: u64,
    /// Bytes: `ChannelLayout::total_size()`.
    pub size: u64,
    pub slot_size: u32,
    pub slot_count: u32,
    /// Partition indices of the two ends.
    pub producer: u32,
    pub consumer: u32,
    /// One of [`notify`].
    pub notify: u32,
    /// What the ring's layout is tuned for: a `hallows_ring::Tuning::code()`
    /// (0 latency, 1 throughput). Both ends build their `ChannelLayout`
    /// with it, and the ring refuses to connect two different layouts; the
    /// memory (`size`) is the same for every tuning. (Table 8: was padding.)
    pub tuning: u32,
    /// Layout hash of the message type both ends' specs agree on (0: no
    /// spec types the channel); copied into each end's `ChannelInfo`.
    pub layout_hash: u64,
}

impl ChannelDesc {
    pub fn name(&self) -> &str {
        str_from_padded(&self.name)
    }
}

/// The whole table. Fixed size: partitions past `partition_count` are zero.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SystemTable {
    pub magic: [u8; 8],
    pub version: u32,
    /// `size_of::<SystemTable>()` as the tool saw it: a second guard on layout drift.
    pub table_size: u32,
    /// Total payload size in bytes (table plus guest images).
    pub payload_size: u64,
    pub board: Board,
    pub partition_count: u32,
    pub _pad0: u32,
    pub partitions: [PartitionDesc; MAX_PARTITIONS],
    pub channel_count: u32,
    pub _pad1: u32,
    pub channels: [ChannelDesc; MAX_CHANNELS],
}

impl SystemTable {
    /// The channels actually described (never more than [`MAX_CHANNELS`]).
    pub fn channels(&self) -> &[ChannelDesc] {
        let n = (self.channel_count as usize).min(MAX_CHANNELS);
        &self.channels[..n]
    }

    /// The partitions actually described (never more than [`MAX_PARTITIONS`]).
    pub fn partitions(&self) -> &[PartitionDesc] {
        let n = (self.partition_count as usize).min(MAX_PARTITIONS);
        &self.partitions[..n]
    }
}

/// Why a payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    TooShort,
    BadMagic,
    BadVersion(u32),
    BadSize,
}

/// Reads the table at the start of a payload, checking magic, version and size.
pub fn table_from_payload(payload: &[u8]) -> Result<&SystemTable, TableError> {
    let (table, _) = SystemTable::ref_from_prefix(payload).map_err(|_| TableError::TooShort)?;
    if table.magic != TABLE_MAGIC {
        return Err(TableError::BadMagic);
    }
    if table.version != TABLE_VERSION {
        return Err(TableError::BadVersion(table.version));
    }
    if table.table_size as usize != core::mem::size_of::<SystemTable>()
        || table.payload_size as usize > payload.len()
        || (table.payload_size as usize) < core::mem::size_of::<SystemTable>()
    {
        return Err(TableError::BadSize);
    }
    Ok(table)
}

/// Copies `s` into a NUL-padded fixed buffer; `None` if it does not fit with a NUL.
pub fn padded<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if s.len() >= N {
        return None;
    }
    out[..s.len()].copy_from_slice(s.as_bytes());
    Some(out)
}

fn str_from_padded(bytes: &[u8]) -> &str {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..len]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn layout_is_stable_and_aligned() {
        assert_eq!(core::mem::size_of::<MemRange>(), 16);
        assert_eq!(core::mem::size_of::<Segment>(), 32);
        assert_eq!(core::mem::size_of::<Region>(), 32);
        assert_eq!(core::mem::size_of::<SystemTable>() % 8, 0);
        // Table 8: the tuning took the padding after `notify`.
        assert_eq!(core::mem::size_of::<ChannelDesc>(), 88);
        assert_eq!(core::mem::offset_of!(ChannelDesc, notify), 72);
        assert_eq!(core::mem::offset_of!(ChannelDesc, tuning), 76);
        assert_eq!(core::mem::offset_of!(ChannelDesc, layout_hash), 80);
    }

    #[test]
    fn round_trip_through_bytes() {
        let mut t = SystemTable::new_zeroed();
        t.magic = TABLE_MAGIC;
        t.version = TABLE_VERSION;
        t.table_size = core::mem::size_of::<SystemTable>() as u32;
        t.payload_size = t.table_size as u64;
        t.partition_count = 1;
        t.partitions[0].name = padded("api").unwrap();
        let bytes = t.as_bytes();
        let back = table_from_payload(bytes).unwrap();
        assert_eq!(back.partitions().len(), 1);
        assert_eq!(back.partitions()[0].name(), "api");
    }

    #[test]
    fn rejects_bad_headers() {
        let mut t = SystemTable::new_zeroed();
        assert_eq!(table_from_payload(t.as_bytes()).unwrap_err(), TableError::BadMagic);
        t.magic = TABLE_MAGIC;
        t.version = 99;
        assert_eq!(table_from_payload(t.as_bytes()).unwrap_err(), TableError::BadVersion(99));
        t.version = TABLE_VERSION;
        t.table_size = 3;
        assert_eq!(table_from_payload(t.as_bytes()).unwrap_err(), TableError::BadSize);
        assert_eq!(table_from_payload(&[0u8; 4]).unwrap_err(), TableError::TooShort);
    }

    #[test]
    fn partition_count_is_clamped() {
        let mut t = SystemTable::new_zeroed();
        t.partition_count = u32::MAX;
        assert_eq!(t.partitions().len(), MAX_PARTITIONS);
    }

    #[test]
    fn ranges() {
        let a = MemRange { base: 0x1000, size: 0x1000 };
        let b = MemRange { base: 0x1800, size: 0x1000 };
        let c = MemRange { base: 0x2000, size: 0x1000 };
        assert!(a.overlaps(&b) && !a.overlaps(&c));
        assert!(MemRange { base: 0, size: 0x10000 }.contains(&a));
        assert!(!a.contains(&b));
        assert!(MemRange { base: u64::MAX, size: 2 }.end().is_none());
    }
}

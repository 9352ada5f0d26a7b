//! The RustHallows system manifest: one TOML file that declares the board,
//! the partitions and the channels between them.
//!
//! This crate owns reading a manifest (and the board file it names), checking
//! it completely, and resolving it into a [`System`] in which every physical
//! address is fixed: partitions and channel memory are placed here, once, so
//! the table writer (`hallows build`) and the inspector print the same layout.
//! Every problem found becomes one entry of [`Diagnostics`], pointing at the
//! offending value with file, line and column; loading never stops at the
//! first problem and never panics on any input.
//!
//! It must never emit the binary table itself (that is `hallows-table` plus
//! the tool) and never touch guest images.
#![forbid(unsafe_code)]

mod board;
mod check;
pub mod cli;
mod diag;
mod disk;
pub mod display;
mod linux;
mod duration;
mod net;
mod place;
mod raw;
mod shape;
mod size;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostics, Located};
pub use disk::{qemu_args as disk_qemu_args, parse_duration};
pub use display::{qemu_args as display_qemu_args, Display, DisplayHost, DisplayMode};
pub use linux::{image_header, ImageHeader, MAX_CMDLINE_LEN};
pub use net::{qemu_args as net_qemu_args, LINK_MIN_SLOT_SIZE};
pub use hallows_source::{MAX_ECHO_COLUMNS, MAX_ERRORS, MAX_SOURCE_SIZE};
/// A channel's layout tuning (`tuning = "latency" | "throughput"`).
pub use hallows_ring::Tuning;
pub use size::{format_size, parse_size};
pub use duration::format_duration;

/// Everything a check needs besides the manifest itself.
#[derive(Clone, Debug, Default)]
pub struct CheckContext {
    /// Guest program names that exist (the workspace's packages with a binary that use `hallows-rt`); `None` skips the check.
    pub guests: Option<Vec<String>>,
    /// The project directory: files the manifest names (a board file, a
    /// spec) must lie inside it, so a manifest cannot make the tool read
    /// (and echo) other files. `None` allows any path.
    pub root: Option<PathBuf>,
}

/// The manifest format version this crate reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Partition RAM granule: sizes and bases are multiples of this.
pub const RAM_ALIGN: u64 = 2 << 20;
/// Page size for channel memory.
pub const PAGE_SIZE: u64 = 4096;
/// Longest partition or channel name in bytes (the table keeps a NUL).
pub const MAX_NAME_LEN: usize = hallows_table::NAME_LEN - 1;
/// Longest boot argument string in bytes (the table keeps a NUL).
pub const MAX_BOOTARGS_LEN: usize = hallows_table::BOOTARGS_LEN - 1;
/// Largest channel slot in bytes.
pub const MAX_SLOT_SIZE: u64 = 64 << 10;
/// Most slots in one channel.
pub const MAX_SLOTS: u64 = 1 << 16;
/// Longest device `compatible` string in bytes (the table keeps a NUL).
pub const MAX_COMPATIBLE_LEN: usize = hallows_table::COMPATIBLE_LEN - 1;
/// Partition names the hypervisor keeps: it prints its own console lines as
/// `[hallows] ...`, and partitions' lines carry their name the same way.
pub const RESERVED_PARTITION_NAMES: &[&str] = &[hallows_abi::console::HYPERVISOR];
/// Virtual interrupt IDs the hypervisor gives a partition for its channel
/// doorbells (`DOORBELL_INTID_BASE + i`); no device may use one.
pub const DOORBELL_INTIDS: std::ops::Range<u32> = hallows_abi::DOORBELL_INTID_BASE
    ..hallows_abi::DOORBELL_INTID_BASE + hallows_table::MAX_CHANNELS as u32;
/// x86_64: the highest GSI a device's interrupt may be (the hypervisor's bound).
pub const MAX_GSI: u32 = 255;
/// x86_64: MMIO the hypervisor keeps for the interrupt controllers, which
/// no board device may overlap: the I/O APICs (0xFEC00000..0xFECFFFFF)
/// and the local APICs (0xFEE00000..0xFEEFFFFF).
pub const X86_INTERRUPT_CONTROLLERS: [(&str, u64, u64); 2] =
    [("the I/O APICs", 0xFEC0_0000, 0x10_0000), ("the local APICs", 0xFEE0_0000, 0x10_0000)];
/// Most `[[forward]]` entries in a manifest.
pub const MAX_FORWARDS: usize = 64;
/// Restarts allowed by `on_fault = "restart"` when `max_restarts` is absent.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// Shortest `watchdog` period accepted: 1 ms.
pub const MIN_WATCHDOG_NS: u64 = 1_000_000;
/// Longest `watchdog` period accepted: 1 hour.
pub const MAX_WATCHDOG_NS: u64 = 3_600_000_000_000;
/// Longest `restart_backoff` accepted: 10 s (it doubles per restart, up to
/// [`MAX_BACKOFF_NS`]).
pub const MAX_BACKOFF_NS: u64 = 10_000_000_000;

/// A fully checked and placed system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    pub version: u32,
    pub board: Board,
    /// In manifest order.
    pub partitions: Vec<Partition>,
    /// In manifest order.
    pub channels: Vec<Channel>,
    /// Host ports forwarded to partitions, in manifest order.
    pub forwards: Vec<Forward>,
    /// How the host shows a partition's display and reaches QEMU's QMP
    /// (not from the manifest: `hallows run --display`, tests).
    pub display_host: DisplayHost,
}

/// A `[[forward]]`, resolved: host port `host` on 127.0.0.1 reaches TCP
/// port `port` of the NIC-owning partition `nic_owner` (the partition
/// named in the manifest, or the gateway that routes the port to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    /// The partition named in the manifest.
    pub to: String,
    pub port: u16,
    /// The partition whose NIC receives the connections.
    pub nic_owner: String,
    /// What the service behind it speaks, if the manifest says
    /// (`protocol = "redis"`); `hallows serve` otherwise goes by the
    /// partition's port ([`Protocol::of_forward`]).
    pub protocol: Option<Protocol>,
}

/// The application protocol a forwarded service speaks: how `hallows
/// serve` checks that it answers and which host client it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (`curl`).
    Http,
    /// Redis's RESP (`redis-cli`).
    Redis,
    /// Kafka's wire protocol (`kcat`).
    Kafka,
    /// PostgreSQL's frontend/backend protocol (`psql`).
    Postgres,
    /// Some other protocol over TCP: only that the service answers.
    Tcp,
}

impl Protocol {
    /// Its name in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Redis => "redis",
            Protocol::Kafka => "kafka",
            Protocol::Postgres => "postgres",
            Protocol::Tcp => "tcp",
        }
    }

    /// The protocol behind `f`: the manifest's `protocol`, else the one
    /// whose clients default to the partition's port (6379 Redis, 9092
    /// Kafka, 5432 PostgreSQL, 80, 443 and 8000..=8999 HTTP), else plain
    /// TCP.
    pub fn of_forward(f: &Forward) -> Protocol {
        f.protocol.unwrap_or(match f.port {
            6379 => Protocol::Redis,
            9092 => Protocol::Kafka,
            5432 => Protocol::Postgres,
            80 | 443 | 8000..=8999 => Protocol::Http,
            _ => Protocol::Tcp,
        })
    }
}

/// How a NIC-owning partition learns of packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicMode {
    /// Its core polls the device queues: no device interrupt.
    Poll,
    /// The device interrupts the partition.
    Interrupt,
}

/// A partition's NIC: a virtio-net device on a virtio-mmio transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub address: std::net::Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<std::net::Ipv4Addr>,
    pub mode: NicMode,
    /// The board device (virtio-mmio transport) the NIC sits on.
    pub device: String,
    /// Its QEMU bus (`virtio-mmio-bus.N`).
    pub qemu_bus: String,
    /// The NIC's MAC address (locally administered, unique in the system).
    pub mac: [u8; 6],
}

/// A partition's disk: a virtio-blk device on a virtio-mmio transport,
/// backed by a host file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Capacity in bytes (a multiple of 512).
    pub size: u64,
    /// The image file: `file` resolved against the manifest's directory,
    /// or the default under the project's `target/hallows/disks/`.
    pub path: PathBuf,
    /// The board device (virtio-mmio transport) the disk sits on.
    pub device: String,
    /// Its QEMU bus (`virtio-mmio-bus.N`).
    pub qemu_bus: String,
    pub durability: Durability,
}

/// When a storage partition acknowledges a write (its `disk`'s
/// `durability`); passed to the guest as boot arguments
/// (`disk_durability=strict|group disk_window_us=N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Once the write is on stable storage (a device flush completed).
    Strict,
    /// At once; made stable within `window_us` microseconds.
    Group { window_us: u64 },
}

/// A gateway route: connections to `port` go to partition `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub port: u16,
    pub to: String,
}

/// A partition's network configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Net {
    pub nic: Option<Nic>,
    /// Ports its services accept on.
    pub listen: Vec<u16>,
    /// As a gateway: which port goes to which partition.
    pub routes: Vec<Route>,
    /// Behind a gateway: the gateway partition.
    pub upstream: Option<String>,
}

impl Net {
    /// The `hallows_abi::NetInfo` the partition's guest is given.
    pub fn to_abi(&self) -> hallows_abi::NetInfo {
        use zerocopy::FromZeros;
        let mut n = hallows_abi::NetInfo::new_zeroed();
        if let Some(nic) = &self.nic {
            n.mode = match nic.mode {
                NicMode::Poll => hallows_abi::net_mode::POLL,
                NicMode::Interrupt => hallows_abi::net_mode::INTERRUPT,
            };
            n.prefix_len = u32::from(nic.prefix_len);
            n.address = nic.address.octets();
            n.router = nic.router.map_or([0; 4], |r| r.octets());
        } else if let Some(up) = &self.upstream {
            n.mode = hallows_abi::net_mode::GATEWAY;
            n.upstream = padded(up);
        }
        n.listen_count = self.listen.len().min(hallows_abi::MAX_LISTEN) as u32;
        for (slot, port) in n.listen.iter_mut().zip(&self.listen) {
            *slot = *port;
        }
        n.route_count = self.routes.len().min(hallows_abi::MAX_ROUTES) as u32;
        for (slot, r) in n.routes.iter_mut().zip(&self.routes) {
            slot.port = r.port;
            slot.to = padded(&r.to);
        }
        n
    }
}

fn padded(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = s.len().min(31);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Aarch64,
    X86_64,
}

impl Arch {
    /// The value for `hallows_table::Board::arch`.
    pub fn table_id(self) -> u32 {
        match self {
            Arch::Aarch64 => hallows_table::arch::AARCH64,
            Arch::X86_64 => hallows_table::arch::X86_64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::X86_64 => "x86_64",
        }
    }
}

/// A physical address range. Ranges in a loaded [`System`] never wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub const fn new(base: u64, size: u64) -> Self {
        Range { base, size }
    }

    /// One past the last byte (saturating: only unchecked ranges can wrap).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.size != 0 && other.size != 0 && self.base < other.end() && other.base < self.end()
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Range) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }

    /// Whether the address lies inside `self`.
    pub fn contains_addr(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// The same range in the table's representation.
    pub fn to_table(&self) -> hallows_table::MemRange {
        hallows_table::MemRange {
            base: self.base,
            size: self.size,
        }
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#012x}..{:#012x}", self.base, self.end())
    }
}

/// The hardware a system runs on, read from a board file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Board {
    pub name: String,
    pub arch: Arch,
    /// Hardware id (MPIDR affinity on aarch64, APIC id on x86) of each core index.
    pub cores: Vec<u64>,
    /// The board's RAM, sorted by address, non-overlapping.
    pub ram: Vec<Range>,
    /// Physical range reserved for the hypervisor image and payload.
    pub hypervisor: Range,
    /// MMIO of the UART the hypervisor keeps for itself.
    pub console: Range,
    /// Board name of the console device (partitions may not claim it).
    pub console_name: String,
    /// Interrupts of the console.
    pub console_irqs: Vec<u32>,
    pub gic_dist: Range,
    pub gic_redist: Range,
    /// Devices that may be assigned to partitions, in board-file order.
    pub devices: Vec<Device>,
    /// How to run this board under QEMU; `binary` is empty for boards QEMU does not model.
    pub qemu: QemuSpec,
}

impl Board {
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// `None` for boards that only exist as real hardware.
    pub fn qemu(&self) -> Option<&QemuSpec> {
        (!self.qemu.binary.is_empty()).then_some(&self.qemu)
    }

    /// Total bytes of RAM.
    pub fn ram_total(&self) -> u64 {
        self.ram
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(r.size))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    /// Device-tree style compatible string (`arm,pl031`, `virtio,mmio`).
    pub compatible: String,
    pub mmio: Range,
    pub irqs: Vec<u32>,
    /// The QEMU bus the device is, for devices the tool plugs in itself (NICs).
    pub qemu_bus: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QemuSpec {
    pub binary: String,
    pub machine: String,
    pub cpu: String,
    pub memory_mib: u64,
    pub smp: u32,
    pub extra: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPolicy {
    Stop,
    Restart { max_restarts: u32 },
    Halt,
}

impl FaultPolicy {
    /// `(hallows_table::fault_policy::*, max_restarts)` for the table.
    pub fn to_table(self) -> (u32, u32) {
        match self {
            FaultPolicy::Stop => (hallows_table::fault_policy::STOP, 0),
            FaultPolicy::Restart { max_restarts } => {
                (hallows_table::fault_policy::RESTART, max_restarts)
            }
            FaultPolicy::Halt => (hallows_table::fault_policy::HALT, 0),
        }
    }
}

impl std::fmt::Display for FaultPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultPolicy::Stop => f.write_str("stop"),
            FaultPolicy::Restart { max_restarts } => write!(f, "restart (max {max_restarts})"),
            FaultPolicy::Halt => f.write_str("halt"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// `[a-z][a-z0-9_-]*`, at most [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Board core indices; the first is the core the partition boots on.
    pub cores: Vec<u32>,
    /// Bytes, a multiple of [`RAM_ALIGN`].
    pub ram_size: u64,
    /// Placed physical base, [`RAM_ALIGN`] aligned.
    pub ram_pa: u64,
    /// Whether `ram_pa` was fixed by the manifest (`ram_base`) rather than placed.
    pub ram_fixed: bool,
    /// Guest program name (the package name of a guest crate anywhere in the workspace).
    pub guest: String,
    /// At most [`MAX_BOOTARGS_LEN`] bytes.
    pub bootargs: String,
    pub on_fault: FaultPolicy,
    /// Board device names assigned to this partition.
    pub devices: Vec<String>,
    /// Parseltongue spec path as written (relative to the manifest), if any.
    pub spec: Option<String>,
    /// The manifest's `log` level for the guest runtime, if given.
    pub log: Option<LogLevel>,
    /// `dma = "trusted"`: the partition may program DMA-capable devices.
    pub dma_trusted: bool,
    /// Its NIC, listening ports, gateway routes or upstream gateway.
    pub net: Net,
    /// Its disk, if it has one.
    pub disk: Option<Disk>,
    /// Its display, keyboard and pointer, if it has them.
    pub display: Option<Display>,
    /// Supervision: watchdog period and restart backoff in nanoseconds (0: none).
    pub supervision: Supervision,
    /// An unmodified Linux kernel instead of a guest program (`guest` is
    /// then empty).
    pub linux: Option<LinuxGuest>,
}

/// A partition's Linux kernel, initramfs and command line, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxGuest {
    /// The arm64 `Image` (resolved against the manifest's directory).
    pub kernel: PathBuf,
    /// Its size in bytes.
    pub kernel_size: u64,
    /// From the Image header: where in a 2 MiB-aligned RAM block the
    /// image goes, and how much memory it needs from there (bss included).
    pub text_offset: u64,
    pub image_size: u64,
    pub initrd: Option<PathBuf>,
    pub initrd_size: u64,
    pub cmdline: String,
}

/// Where a Linux partition's pieces go, as offsets from its RAM's base
/// (see [`LinuxGuest::layout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxLayout {
    pub kernel: u64,
    pub dtb: u64,
    pub initrd: u64,
    /// One past the initrd: the RAM the layout needs.
    pub end: u64,
}

impl LinuxGuest {
    /// Largest device tree `hallows build` writes for a partition.
    pub const DTB_MAX: u64 = 64 << 10;

    /// The kernel at the RAM's (2 MiB-aligned) base plus `text_offset`;
    /// the device tree at the next 2 MiB boundary past the kernel's
    /// `image_size` (Linux wants it 8-byte aligned, in the first 512 MiB,
    /// clear of the image); the initramfs right after the device tree's
    /// 64 KiB.
    pub fn layout(&self) -> LinuxLayout {
        let kernel = self.text_offset;
        let dtb = kernel.saturating_add(self.image_size).div_ceil(RAM_ALIGN).saturating_mul(RAM_ALIGN);
        let initrd = dtb.saturating_add(Self::DTB_MAX);
        LinuxLayout { kernel, dtb, initrd, end: initrd.saturating_add(self.initrd_size) }
    }

    /// Bytes the image's payload grows by for this partition: its kernel,
    /// initramfs and device tree, kept there so that a restart reloads
    /// them (the hypervisor's reservation grows by this, 2 MiB-rounded).
    pub fn payload_size(&self) -> u64 {
        self.kernel_size.saturating_add(self.initrd_size).saturating_add(Self::DTB_MAX).div_ceil(RAM_ALIGN).saturating_mul(RAM_ALIGN)
    }
}

/// A partition's `watchdog` and `restart_backoff` keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Supervision {
    /// Nanoseconds; 0: no watchdog.
    pub watchdog_ns: u64,
    /// Delay before the first restart, doubled for each later one (capped
    /// at [`MAX_BACKOFF_NS`]); 0: restart at once.
    pub restart_backoff_ns: u64,
}

/// A partition's `log` level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The value for `hallows_table::PartitionDesc::log_level` (and the
    /// guest's `hallows_abi::BootInfo::log_level`).
    pub fn table_id(self) -> u32 {
        match self {
            LogLevel::Off => 1,
            LogLevel::Error => 2,
            LogLevel::Warn => 3,
            LogLevel::Info => 4,
            LogLevel::Debug => 5,
            LogLevel::Trace => 6,
        }
    }
}

/// The interrupt a partition gets with `dev` (0: none), or why the device
/// cannot be assigned. The hypervisor routes one interrupt per device,
/// never the interrupt of its own console. On aarch64 it is a shared
/// peripheral interrupt (INTIDs 32..1020) outside the doorbell INTIDs it
/// gives partitions; on x86_64 a GSI (an I/O APIC pin, 1..=255; GSI 0 is
/// the timer, and 0 means "none" in the table), which the hypervisor turns
/// into the partition's own vector. `hallows check` and the table writer
/// both ask this.
pub fn assignable_irq(board: &Board, dev: &Device) -> Result<u32, String> {
    let irq = match dev.irqs.as_slice() {
        [] => return Ok(0),
        [irq] => *irq,
        more => {
            return Err(format!(
                "device `{}` has {} interrupts; the hypervisor routes one per device",
                dev.name,
                more.len()
            ))
        }
    };
    if board.console_irqs.contains(&irq) {
        return Err(format!(
            "interrupt {irq} of device `{}` is the interrupt of the hypervisor's console",
            dev.name
        ));
    }
    match board.arch {
        Arch::X86_64 if !(1..=MAX_GSI).contains(&irq) => Err(format!(
            "interrupt {irq} of device `{}` is not a GSI the hypervisor routes (1..={MAX_GSI})",
            dev.name
        )),
        Arch::X86_64 => Ok(irq),
        Arch::Aarch64 if !(32..1020).contains(&irq) => Err(format!(
            "interrupt {irq} of device `{}` is not a shared peripheral interrupt (INTIDs 32..1020)",
            dev.name
        )),
        Arch::Aarch64 if DOORBELL_INTIDS.contains(&irq) => Err(format!(
            "interrupt {irq} of device `{}` is one of the doorbell INTIDs {}..{} the hypervisor gives partitions",
            dev.name, DOORBELL_INTIDS.start, DOORBELL_INTIDS.end
        )),
        Arch::Aarch64 => Ok(irq),
    }
}

/// Whether a device with this compatible string can master DMA (and so,
/// without an IOMMU, reach any physical address).
pub fn dma_capable(compatible: &str) -> bool {
    compatible.starts_with("virtio")
}

impl Partition {
    pub fn ram(&self) -> Range {
        Range::new(self.ram_pa, self.ram_size)
    }

    /// The core the partition boots on.
    pub fn boot_core(&self) -> u32 {
        self.cores.first().copied().unwrap_or(0)
    }

    /// Bit `i` set for each board core index `i` (the table's `core_mask`).
    pub fn core_mask(&self) -> u64 {
        self.cores
            .iter()
            .filter(|&&c| c < 64)
            .fold(0, |m, &c| m | (1u64 << c))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    Poll,
    Doorbell,
}

impl std::fmt::Display for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Notify::Poll => "poll",
            Notify::Doorbell => "doorbell",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    /// Producer partition.
    pub from: String,
    /// Consumer partition.
    pub to: String,
    pub slot_size: u32,
    /// A power of two.
    pub slots: u32,
    pub notify: Notify,
    /// What the ring's layout is tuned for (`tuning`, default latency).
    /// Both ends build their layout with it; it changes the capacity, not
    /// the memory.
    pub tuning: hallows_ring::Tuning,
    /// Placed physical base, page aligned.
    pub pa: u64,
    /// Bytes, a multiple of [`PAGE_SIZE`]; see [`channel_size`].
    pub size: u64,
}

impl Channel {
    pub fn memory(&self) -> Range {
        Range::new(self.pa, self.size)
    }

    /// The ring layout both ends of the channel build: its geometry with
    /// its tuning. Never fails for a channel of a loaded system.
    pub fn layout(&self) -> Result<hallows_ring::ChannelLayout, hallows_ring::LayoutError> {
        hallows_ring::ChannelLayout::new(self.slot_size as usize, self.slots as usize)
            .map(|l| l.tuned(self.tuning))
    }
}

/// Bytes of shared memory a channel needs, from the ring protocol's own
/// layout (two header pages, then the slots rounded up to whole pages), or
/// why the ring refuses this geometry.
pub fn channel_size(slot_size: u32, slots: u32) -> Result<u64, hallows_ring::LayoutError> {
    hallows_ring::ChannelLayout::new(slot_size as usize, slots as usize)
        .map(|l| l.total_size() as u64)
}

/// What occupies one range of the physical memory map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOwner {
    Hypervisor,
    Partition(String),
    Channel(String),
    Console,
    GicDist,
    GicRedist,
    /// A board device, with the partition it is assigned to, if any.
    Device {
        name: String,
        partition: Option<String>,
    },
    /// Board RAM nobody uses.
    FreeRam,
}

impl System {
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// The whole physical memory map, sorted by address: every RAM range
    /// (split into hypervisor, partitions, channels and free gaps) and every MMIO range.
    pub fn memory_map(&self) -> Vec<(Range, MapOwner)> {
        let mut used: Vec<(Range, MapOwner)> = vec![(self.board.hypervisor, MapOwner::Hypervisor)];
        used.extend(
            self.partitions
                .iter()
                .map(|p| (p.ram(), MapOwner::Partition(p.name.clone()))),
        );
        used.extend(
            self.channels
                .iter()
                .map(|c| (c.memory(), MapOwner::Channel(c.name.clone()))),
        );
        let mut map = Vec::new();
        for ram in &self.board.ram {
            let mut inside: Vec<&(Range, MapOwner)> =
                used.iter().filter(|(r, _)| ram.overlaps(r)).collect();
            inside.sort_by_key(|(r, _)| r.base);
            let mut cursor = ram.base;
            for (r, _) in &inside {
                if r.base > cursor {
                    map.push((Range::new(cursor, r.base - cursor), MapOwner::FreeRam));
                }
                cursor = cursor.max(r.end());
            }
            if cursor < ram.end() {
                map.push((Range::new(cursor, ram.end() - cursor), MapOwner::FreeRam));
            }
        }
        map.extend(used);
        map.push((self.board.console, MapOwner::Console));
        // x86_64 boards have no GIC (the ranges are empty).
        if self.board.gic_dist.size != 0 {
            map.push((self.board.gic_dist, MapOwner::GicDist));
        }
        if self.board.gic_redist.size != 0 {
            map.push((self.board.gic_redist, MapOwner::GicRedist));
        }
        for d in &self.board.devices {
            let partition = self
                .partitions
                .iter()
                .find(|p| p.devices.contains(&d.name))
                .map(|p| p.name.clone());
            map.push((
                d.mmio,
                MapOwner::Device {
                    name: d.name.clone(),
                    partition,
                },
            ));
        }
        map.sort_by_key(|(r, _)| (r.base, r.size));
        map
    }
}

/// Checks that the hypervisor reservation, every partition's RAM and every
/// channel's memory lie inside board RAM, are aligned, and are pairwise disjoint.
pub(crate) fn verify_layout(
    board: &Board,
    partitions: &[Partition],
    channels: &[Channel],
) -> Result<(), String> {
    let mut used: Vec<(Range, String, u64)> = vec![(
        board.hypervisor,
        "the hypervisor reservation".to_owned(),
        PAGE_SIZE,
    )];
    used.extend(partitions.iter().map(|p| {
        (
            p.ram(),
            format!("the RAM of partition `{}`", p.name),
            RAM_ALIGN,
        )
    }));
    used.extend(channels.iter().map(|c| {
        (
            c.memory(),
            format!("the memory of channel `{}`", c.name),
            PAGE_SIZE,
        )
    }));
    for (i, (r, what, align)) in used.iter().enumerate() {
        if r.base % align != 0 || r.size % align != 0 || r.size == 0 {
            return Err(format!(
                "{what} ({r}) is empty or not aligned to {align:#x}"
            ));
        }
        if r.base.checked_add(r.size).is_none() || !board.ram.iter().any(|ram| ram.contains(r)) {
            return Err(format!("{what} ({r}) is outside board RAM"));
        }
        if let Some((o, owhat, _)) = used[..i].iter().find(|(o, _, _)| o.overlaps(r)) {
            return Err(format!("{what} ({r}) overlaps {owhat} ({o})"));
        }
    }
    Ok(())
}

impl System {
    /// Re-checks the placed layout (see `verify_layout`): a second guard for
    /// the table writer, which must never emit overlapping memory.
    pub fn verify_layout(&self) -> Result<(), String> {
        verify_layout(&self.board, &self.partitions, &self.channels)
    }
}

/// Reads, checks and places the manifest at `path` (and the board file it names).
/// Only a regular file of at most [`MAX_SOURCE_SIZE`] bytes is read.
pub fn load(path: &Path, ctx: &CheckContext) -> Result<System, Diagnostics> {
    match hallows_source::read(path) {
        Ok(src) => check::load_manifest(&path.display().to_string(), path.parent(), &src, ctx),
        Err(e) => Err(Diagnostics::io_error(format!(
            "cannot read manifest {}: {e}",
            path.display()
        ))),
    }
}

/// [`load`] for a manifest held in memory; `name` is used in diagnostics and
/// its directory resolves a board given as a path.
pub fn load_str(name: &str, src: &str, ctx: &CheckContext) -> Result<System, Diagnostics> {
    check::load_manifest(name, Path::new(name).parent(), src, ctx)
}

/// Names of the built-in boards.
pub fn builtin_boards() -> Vec<&'static str> {
    board::BUILTIN.iter().map(|(name, _)| *name).collect()
}

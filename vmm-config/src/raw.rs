//! The manifest and board file shapes, as serde and JSON Schema see them.
//!
//! These types are the single description of which keys exist, which are
//! required and what type each value has: the loader derives its unknown-key
//! and missing-key checks from the JSON Schema generated from them, and
//! `hallows schema` prints that same schema. They carry spans so every later
//! check can point at a value. Required keys of partitions and channels are
//! `Option` here (and required in the schema) so that an item missing one,
//! or with one of the wrong type, is still checked for everything else.
//! They must never hold meaning beyond shape:
//! ranges, ownership and placement are checked in `check`.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::duration::Duration;
use crate::size::Size;

/// A RustHallows system manifest (version 1).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "RustHallows manifest")]
#[allow(dead_code)] // Only the schema is built from this type; the loader reads items one by one.
pub(crate) struct RawManifest {
    /// Manifest format version; must be 1.
    pub version: u32,
    /// A built-in board name, or a path to a board TOML file relative to the manifest.
    pub board: String,
    /// The partitions, in boot-table order.
    #[serde(default)]
    pub partition: Vec<RawPartition>,
    /// One-way shared-memory channels between partitions.
    #[serde(default)]
    pub channel: Vec<RawChannel>,
    /// Host TCP ports that reach a partition's port when the system runs
    /// under QEMU (user-mode networking, bound to 127.0.0.1).
    #[serde(default)]
    pub forward: Vec<RawForward>,
}

/// One `[[forward]]`: host port `host` (on 127.0.0.1) reaches TCP port
/// `port` of partition `to`, which owns a NIC and listens on it, routes it
/// as a gateway, or sits behind a gateway that routes it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForward {
    /// Host TCP port, 1 to 65535.
    #[schemars(with = "u16", range(min = 1))]
    pub host: Option<Spanned<u64>>,
    /// The partition the connections go to.
    #[schemars(with = "String")]
    pub to: Option<Spanned<String>>,
    /// Its TCP port, 1 to 65535.
    #[schemars(with = "u16", range(min = 1))]
    pub port: Option<Spanned<u64>>,
    /// What the service speaks, for `hallows serve`'s readiness check and
    /// the client it names: `"http"`, `"redis"`, `"kafka"`, `"postgres"`
    /// or `"tcp"`. Default: by the port (6379 redis, 9092 kafka, 5432
    /// postgres, 80, 443 and 8000 to 8999 http, else tcp).
    #[serde(default)]
    #[schemars(with = "Option<ProtocolName>")]
    pub protocol: Option<Spanned<ProtocolName>>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProtocolName {
    Http,
    Redis,
    Kafka,
    Postgres,
    Tcp,
}

/// A partition's `nic`: it owns a virtio-net device and runs its own TCP/IP stack.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNic {
    /// IPv4 address with prefix length, e.g. `"10.0.2.15/24"`.
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    /// Default router, inside the address's subnet (optional).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub router: Option<Spanned<String>>,
    /// `"poll"`: the partition's core polls the device (no interrupt);
    /// `"interrupt"`: the device interrupts the partition. Default poll.
    #[serde(default)]
    #[schemars(with = "Option<NicModeName>")]
    pub mode: Option<Spanned<NicModeName>>,
    /// The virtio-mmio transport the NIC sits on; placed automatically
    /// (a 4 KiB page of transports no other partition uses) when absent.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub device: Option<Spanned<String>>,
}

/// A partition's `display`: a virtio-gpu framebuffer with a virtio
/// keyboard and a virtio tablet (absolute pointer).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDisplay {
    /// Width in pixels (default 1024; 320 to 3840).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub width: Option<Spanned<u64>>,
    /// Height in pixels (default 768; 200 to 2160).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub height: Option<Spanned<u64>>,
}

/// A partition's `linux`: the kernel and what it boots with.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLinux {
    /// The kernel: an uncompressed arm64 `Image`, relative to the manifest.
    #[schemars(with = "String")]
    pub kernel: Spanned<String>,
    /// An initramfs (newc cpio, optionally compressed), relative to the manifest.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub initrd: Option<Spanned<String>>,
    /// The kernel command line (`/chosen/bootargs`), at most 1023
    /// printable ASCII characters.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cmdline: Option<Spanned<String>>,
}

/// A partition's `disk`: a virtio-blk device backed by a host file.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDisk {
    /// Capacity, e.g. `"64 MiB"`: a multiple of 512 bytes, 1 MiB to 1 TiB.
    /// The image file is created this size when missing (sparse).
    #[schemars(with = "Size")]
    pub size: Spanned<Size>,
    /// The image file, relative to the manifest's directory; default
    /// `target/hallows/disks/<manifest name>/<partition>.img` in the project.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// The virtio-mmio transport the disk sits on; placed automatically
    /// when absent (next to the partition's NIC, else on a free page).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub device: Option<Spanned<String>>,
    /// `"strict"` (default): a write is acknowledged once it is on stable
    /// storage; `"group"`: writes are acknowledged at once and made stable
    /// within `commit_window` (a power loss keeps a prefix of them).
    #[serde(default)]
    #[schemars(with = "Option<DurabilityName>")]
    pub durability: Option<Spanned<DurabilityName>>,
    /// With `durability = "group"`: the longest an acknowledged write waits
    /// to be made stable, e.g. `"10 ms"` (default 10 ms; 1 ms to 10 s).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub commit_window: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DurabilityName {
    Strict,
    Group,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NicModeName {
    Poll,
    Interrupt,
}

/// One gateway route: connections to `port` go to partition `to`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    /// TCP port the gateway accepts on, 1 to 65535.
    #[schemars(with = "u16", range(min = 1))]
    pub port: Spanned<u64>,
    /// The service partition (it declares the port in `listen`).
    #[schemars(with = "String")]
    pub to: Spanned<String>,
}

/// One `[[partition]]`: exactly one of `guest` and `linux`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["guest"] }, { "required": ["linux"] }]))]
pub(crate) struct RawPartition {
    /// `[a-z][a-z0-9_-]*`, at most 31 bytes, unique.
    #[schemars(
        with = "String",
        regex(pattern = r"^[a-z][a-z0-9_-]*$"),
        length(max = 31)
    )]
    pub name: Option<Spanned<String>>,
    /// Board core indices; the first is the core the partition boots on.
    #[schemars(with = "Vec<u32>", length(min = 1))]
    pub cores: Option<Spanned<Vec<Spanned<u64>>>>,
    /// RAM size: a multiple of 2 MiB.
    #[schemars(with = "Size")]
    pub ram: Option<Spanned<Size>>,
    /// Fixed physical base of the RAM (2 MiB aligned); placed automatically when absent.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub ram_base: Option<Spanned<u64>>,
    /// Guest program: the package name of a guest crate anywhere in the workspace
    /// (this repository's or a user's own, docs/first-system.md). Every
    /// partition has either a `guest` or a `linux`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub guest: Option<Spanned<String>>,
    /// An unmodified Linux arm64 kernel instead of a `guest` (docs/linux.md):
    /// its device tree is generated from the manifest.
    #[serde(default)]
    #[schemars(with = "Option<RawLinux>")]
    pub linux: Option<Spanned<RawLinux>>,
    /// Boot arguments handed to the guest, at most 127 bytes.
    #[serde(default)]
    #[schemars(with = "Option<String>", length(max = 127))]
    pub bootargs: Option<Spanned<String>>,
    /// What the hypervisor does when the partition faults.
    #[schemars(with = "OnFault")]
    pub on_fault: Option<Spanned<OnFault>>,
    /// Restarts before the partition is stopped; only with `on_fault = "restart"` (default 3).
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_restarts: Option<Spanned<u32>>,
    /// Watchdog period (e.g. "100 ms", 1 ms to 1 hour): the partition must pet
    /// it at least once per period, or its fault policy applies.
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub watchdog: Option<Spanned<Duration>>,
    /// Delay before a restart (e.g. "10 ms"), doubled for each further
    /// restart, at most 10 s; only with `on_fault = "restart"` (default: none).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub restart_backoff: Option<Spanned<Duration>>,
    /// Board devices assigned to the partition.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub devices: Vec<Spanned<String>>,
    /// Log level of the guest runtime's `log` backend (default: the guest's
    /// `log=` boot argument, else info).
    #[serde(default)]
    #[schemars(with = "Option<LogName>")]
    pub log: Option<Spanned<LogName>>,
    /// `"trusted"`: the partition may program DMA-capable devices (virtio)
    /// with physical addresses. Without an IOMMU such a device can reach
    /// any physical address, so this must be explicit.
    #[serde(default)]
    #[schemars(with = "Option<DmaName>")]
    pub dma: Option<Spanned<DmaName>>,
    /// Parseltongue service spec (`.pt`) the partition's guest implements,
    /// relative to the manifest; `hallows check` cross-checks it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub spec: Option<Spanned<String>>,
    /// The partition owns a NIC (virtio-net) and runs its own TCP/IP stack.
    #[serde(default)]
    #[schemars(with = "Option<RawNic>")]
    pub nic: Option<Spanned<RawNic>>,
    /// The partition owns a disk: a virtio-blk device backed by a host file.
    #[serde(default)]
    #[schemars(with = "Option<RawDisk>")]
    pub disk: Option<Spanned<RawDisk>>,
    /// The partition owns a display (virtio-gpu) with a keyboard and a
    /// pointer (virtio-input): `display = { width = 1024, height = 768 }`.
    #[serde(default)]
    #[schemars(with = "Option<RawDisplay>")]
    pub display: Option<Spanned<RawDisplay>>,
    /// TCP ports the partition's services accept connections on (through
    /// its own NIC, or through the gateway that routes them).
    #[serde(default)]
    #[schemars(with = "Vec<u16>")]
    pub listen: Vec<Spanned<u64>>,
    /// With a `nic`: act as a gateway, handing connections to these ports
    /// to service partitions over channels.
    #[serde(default)]
    #[schemars(with = "Vec<RawRoute>")]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogName {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DmaName {
    Trusted,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnFault {
    Stop,
    Restart,
    Halt,
}

/// One `[[channel]]`: a one-way ring of fixed-size slots in shared memory.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChannel {
    /// `[a-z][a-z0-9_-]*`, at most 31 bytes, unique among channels.
    #[schemars(
        with = "String",
        regex(pattern = r"^[a-z][a-z0-9_-]*$"),
        length(max = 31)
    )]
    pub name: Option<Spanned<String>>,
    /// Producer partition.
    #[schemars(with = "String")]
    pub from: Option<Spanned<String>>,
    /// Consumer partition.
    #[schemars(with = "String")]
    pub to: Option<Spanned<String>>,
    /// Bytes per slot, 1 to 65536.
    #[schemars(with = "u32", range(min = 1, max = 65536))]
    pub slot_size: Option<Spanned<u64>>,
    /// Number of slots: a power of two, 2 to 65536. One slot of every block
    /// carries the block's publication stamp, so fewer messages fit.
    #[schemars(with = "u32", range(min = 2, max = 65536))]
    pub slots: Option<Spanned<u64>>,
    /// How the consumer learns of new messages.
    #[schemars(with = "NotifyName")]
    pub notify: Option<Spanned<NotifyName>>,
    /// What the ring's layout is tuned for: `"latency"` (default), a
    /// publication stamp in every cache line, so a message costs one line
    /// transfer (request/reply); `"throughput"`, one stamp per quarter of
    /// the ring, so messages fill whole lines (streams, bulk transfer).
    /// Same memory either way; the capacity differs.
    #[serde(default)]
    #[schemars(with = "Option<TuningName>")]
    pub tuning: Option<Spanned<TuningName>>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NotifyName {
    Poll,
    Doorbell,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TuningName {
    Latency,
    Throughput,
}

/// A board file: the hardware facts a system is built against.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "RustHallows board")]
pub(crate) struct RawBoard {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "ArchName")]
    pub arch: Spanned<ArchName>,
    /// Hardware id (MPIDR affinity / APIC id) of each core index.
    #[schemars(with = "Vec<u64>")]
    pub cores: Spanned<Vec<Spanned<u64>>>,
    #[schemars(with = "Vec<RawRange>")]
    pub ram: Spanned<Vec<Spanned<RawRange>>>,
    /// Physical range reserved for the hypervisor image and payload.
    #[schemars(with = "RawRange")]
    pub hypervisor: Spanned<RawRange>,
    /// The UART the hypervisor keeps for itself: MMIO on aarch64, an I/O
    /// port range (`base` = first port, `size` = number of ports) on x86_64.
    #[schemars(with = "RawDevice")]
    pub console: Spanned<RawDevice>,
    /// The GICv3 (aarch64 only; x86_64 boards have none).
    #[serde(default)]
    pub gic: Option<RawGic>,
    #[serde(default)]
    #[schemars(with = "Vec<RawDevice>")]
    pub device: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    pub qemu: Option<RawQemu>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArchName {
    Aarch64,
    #[serde(rename = "x86_64")]
    X86_64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRange {
    pub base: u64,
    #[schemars(with = "Size")]
    pub size: Size,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGic {
    #[schemars(with = "RawRange")]
    pub dist: Spanned<RawRange>,
    #[schemars(with = "RawRange")]
    pub redist: Spanned<RawRange>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    pub compatible: String,
    pub base: u64,
    #[schemars(with = "Size")]
    pub size: Size,
    #[serde(default)]
    pub irqs: Vec<u32>,
    /// The QEMU bus this device is (`virtio-mmio-bus.31`): where `hallows
    /// run` plugs a NIC it placed on this device.
    #[serde(default)]
    pub qemu_bus: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQemu {
    pub binary: String,
    pub machine: String,
    pub cpu: String,
    pub memory_mib: u64,
    pub smp: u32,
    #[serde(default)]
    pub extra: Vec<String>,
}

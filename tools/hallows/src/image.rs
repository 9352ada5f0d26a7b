//! Composing the bootable image: the hypervisor's flat binary followed by
//! the payload (the system table, then each guest's loadable bytes).
//!
//! Everything the hypervisor will need is resolved here, on the host: guest
//! ELF files are reduced to (address, bytes, size) segments and checked to
//! fit their partition, so the hypervisor parses no ELF and no TOML.

use anyhow::{bail, Context, Result};
use hallows_abi::{BOOT_INFO_FROM_END, VCPU_STACK_SIZE};
use hallows_table::{
    notify, padded, perm, region_kind, Board, ChannelDesc, DeviceDesc, MemRange, PartitionDesc, Region, Segment,
    SystemTable, MAX_CHANNELS, MAX_CORES, MAX_DEVICES, MAX_PARTITIONS, MAX_RAM_RANGES, MAX_REGIONS, MAX_SEGMENTS,
    TABLE_MAGIC, TABLE_VERSION,
};
use object::elf::{FileHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};
use vmm_config::System;
use zerocopy::{FromZeros, IntoBytes};

/// Guest-physical base of every partition's RAM: each guest links here.
pub const GUEST_RAM_IPA: u64 = 0x4000_0000;
/// Guest-physical base of the channel window: channel `i` sits at the same
/// guest-physical address in both of its partitions, above every
/// partition's RAM window.
pub const CHANNEL_IPA_BASE: u64 = 0x1_0000_0000;
/// Offset of the image-size field in the arm64 Image header.
const IMAGE_SIZE_OFFSET: usize = 16;

/// A loadable segment read from an ELF file.
#[derive(Debug)]
pub struct ElfSegment {
    pub addr: u64,
    pub data: Vec<u8>,
    pub mem_size: u64,
}

/// An ELF file reduced to what a loader needs.
#[derive(Debug)]
pub struct Elf {
    pub entry: u64,
    pub segments: Vec<ElfSegment>,
    pub symbols: Vec<(String, u64)>,
}

impl Elf {
    pub fn parse(bytes: &[u8]) -> Result<Elf> {
        let header = FileHeader64::<Endianness>::parse(bytes).context("not a 64-bit ELF file")?;
        let endian = header.endian()?;
        let mut segments = Vec::new();
        for ph in header.program_headers(endian, bytes)? {
            if ph.p_type(endian) != PT_LOAD || ph.p_memsz(endian) == 0 {
                continue;
            }
            let data = ph.data(endian, bytes).map_err(|()| anyhow::anyhow!("segment data out of bounds"))?;
            segments.push(ElfSegment { addr: ph.p_paddr(endian), data: data.to_vec(), mem_size: ph.p_memsz(endian) });
        }
        let file = object::File::parse(bytes)?;
        let symbols = file
            .symbols()
            .filter_map(|s| Some((s.name().ok()?.to_string(), s.address())))
            .collect();
        Ok(Elf { entry: header.e_entry(endian), segments, symbols })
    }

    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|(n, _)| n == name).map(|&(_, a)| a)
    }
}

/// What `compose` produced, for reports and tests.
#[derive(Debug)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub load_address: u64,
    pub payload_offset: usize,
    pub table: Box<SystemTable>,
}

/// Builds the image for `sys` from the hypervisor ELF and a way to read each
/// guest's ELF by name; no channel's message type is recorded (see
/// [`compose_typed`]).
pub fn compose(sys: &System, hypervisor: &[u8], guest_elf: &dyn Fn(&str) -> Result<Vec<u8>>) -> Result<Image> {
    compose_typed(sys, hypervisor, guest_elf, &[])
}

/// As [`compose`], recording for each channel named in `layout_hashes`
/// the layout hash of its message type (`parseltongue::manifest::layout_hashes`
/// of the checked specs): each end's runtime compares it with the type it
/// opens the channel with and refuses a mismatch.
pub fn compose_typed(sys: &System, hypervisor: &[u8], guest_elf: &dyn Fn(&str) -> Result<Vec<u8>>, layout_hashes: &[(String, u64)]) -> Result<Image> {
    let hv = Elf::parse(hypervisor).context("reading the hypervisor ELF")?;
    let start = hv.symbol("__hv_start").context("hypervisor has no __hv_start")?;
    let end = hv.symbol("__hv_end").context("hypervisor has no __hv_end")?;
    let mut bytes = vec![0u8; (end - start) as usize];
    for s in &hv.segments {
        if s.addr < start || s.addr + s.mem_size > end {
            bail!("hypervisor segment at {:#x} lies outside {start:#x}..{end:#x}", s.addr);
        }
        let off = (s.addr - start) as usize;
        bytes[off..off + s.data.len()].copy_from_slice(&s.data);
    }

    let mut table = SystemTable::new_zeroed();
    table.magic = TABLE_MAGIC;
    table.version = TABLE_VERSION;
    table.table_size = std::mem::size_of::<SystemTable>() as u32;
    table.board = board(sys)?;
    if sys.partitions.len() > MAX_PARTITIONS {
        bail!("{} partitions; at most {MAX_PARTITIONS} are supported", sys.partitions.len());
    }
    table.partition_count = sys.partitions.len() as u32;
    let mut blobs: Vec<u8> = Vec::new();
    let blob_base = std::mem::size_of::<SystemTable>() as u64;
    for (i, p) in sys.partitions.iter().enumerate() {
        table.partitions[i] = match &p.linux {
            Some(linux) => linux_partition(sys, p, linux, &mut blobs, blob_base)?,
            None => {
                let elf = Elf::parse(&guest_elf(&p.guest)?).with_context(|| format!("reading guest `{}`", p.guest))?;
                partition(sys, p, &elf, &mut blobs, blob_base)?
            }
        };
    }
    channels(sys, &mut table, layout_hashes)?;
    // Device trees last: they describe the channels as placed.
    for (i, p) in sys.partitions.iter().enumerate() {
        let Some(linux) = &p.linux else { continue };
        let dtb = crate::devicetree::device_tree(p, linux, &table.partitions[i], i, &table)?;
        let d = &mut table.partitions[i];
        let ipa = d.ram_ipa + linux.layout().dtb;
        push_segment(d, &mut blobs, blob_base, ipa, &dtb, vmm_config::LinuxGuest::DTB_MAX)?;
        d.dtb_ipa = ipa;
    }
    let mut payload = table.as_bytes().to_vec();
    payload.extend_from_slice(&blobs);
    table.payload_size = payload.len() as u64;
    payload[..std::mem::size_of::<SystemTable>()].copy_from_slice(table.as_bytes());

    let payload_offset = bytes.len();
    bytes.extend_from_slice(&payload);
    let total = bytes.len() as u64;
    let reserved = sys.board.hypervisor;
    if start < reserved.base || start + total > reserved.end() {
        bail!(
            "the image ({total} bytes at {start:#x}) does not fit the board's hypervisor reservation {reserved}; \
             give partitions smaller guests or enlarge the reservation in the board file"
        );
    }
    match sys.board.arch {
        vmm_config::Arch::Aarch64 => bytes[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&total.to_le_bytes()),
        vmm_config::Arch::X86_64 => {
            crate::image_x86::check_header(&bytes, start)?;
        }
    }
    Ok(Image { bytes, load_address: start, payload_offset, table: Box::new(table) })
}

fn board(sys: &System) -> Result<Board> {
    let b = &sys.board;
    let mut out = Board::new_zeroed();
    out.arch = b.arch.table_id();
    if b.cores.len() > MAX_CORES || b.ram.len() > MAX_RAM_RANGES {
        bail!("board {} has more cores or RAM ranges than the table holds", b.name);
    }
    out.core_count = b.cores.len() as u32;
    out.core_hwid[..b.cores.len()].copy_from_slice(&b.cores);
    out.ram_count = b.ram.len() as u32;
    for (o, r) in out.ram.iter_mut().zip(&b.ram) {
        *o = r.to_table();
    }
    out.hypervisor = b.hypervisor.to_table();
    out.console = b.console.to_table();
    out.console_irq = b.console_irqs.first().copied().unwrap_or(0);
    out.gic_dist = b.gic_dist.to_table();
    out.gic_redist = b.gic_redist.to_table();
    Ok(out)
}

/// What every partition's table entry holds, whatever it runs.
fn common(p: &vmm_config::Partition) -> Result<PartitionDesc> {
    let mut d = PartitionDesc::new_zeroed();
    d.name = padded(&p.name).context("partition name too long")?;
    d.bootargs = padded(&p.bootargs).context("boot arguments too long")?;
    d.core_mask = p.core_mask();
    for (slot, &core) in d.vcpu_core.iter_mut().zip(&p.cores) {
        *slot = u8::try_from(core).context("core index")?;
    }
    d.ram_ipa = GUEST_RAM_IPA;
    d.ram_pa = p.ram_pa;
    d.ram_size = p.ram_size;
    (d.fault_policy, d.max_restarts) = p.on_fault.to_table();
    d.watchdog_ns = p.supervision.watchdog_ns;
    d.restart_backoff_ns = p.supervision.restart_backoff_ns;
    Ok(d)
}

/// Appends `bytes` to the payload as the next segment of `d`, loaded at
/// `ipa` and occupying `mem_size` bytes there.
fn push_segment(d: &mut PartitionDesc, blobs: &mut Vec<u8>, blob_base: u64, ipa: u64, bytes: &[u8], mem_size: u64) -> Result<()> {
    let i = d.segment_count as usize;
    if i >= MAX_SEGMENTS {
        bail!("partition `{}` needs more than {MAX_SEGMENTS} segments", d.name());
    }
    while !blobs.len().is_multiple_of(16) {
        blobs.push(0);
    }
    d.segments[i] = Segment { ipa, payload_offset: blob_base + blobs.len() as u64, file_size: bytes.len() as u64, mem_size: mem_size.max(bytes.len() as u64) };
    d.segment_count += 1;
    blobs.extend_from_slice(bytes);
    Ok(())
}

/// A Linux partition: its kernel and initramfs as segments (the device
/// tree follows once channels are placed), entered at the kernel's first
/// instruction (`boot_kind::LINUX`).
fn linux_partition(
    sys: &System,
    p: &vmm_config::Partition,
    linux: &vmm_config::LinuxGuest,
    blobs: &mut Vec<u8>,
    blob_base: u64,
) -> Result<PartitionDesc> {
    let mut d = common(p)?;
    d.boot_kind = hallows_table::boot_kind::LINUX;
    for (ipa, bytes, mem_size) in crate::devicetree::images(p, linux, d.ram_ipa)? {
        push_segment(&mut d, blobs, blob_base, ipa, &bytes, mem_size)?;
    }
    d.entry = d.ram_ipa + linux.layout().kernel;
    devices(sys, p, &mut d)?;
    for dev in &d.devices[..d.device_count as usize] {
        if dev.irq >= 256 {
            bail!("device `{}` of Linux partition `{}` has interrupt {}: the virtual GIC describes INTIDs below 256", dev.name(), p.name, dev.irq);
        }
    }
    Ok(d)
}

fn partition(
    sys: &System,
    p: &vmm_config::Partition,
    elf: &Elf,
    blobs: &mut Vec<u8>,
    blob_base: u64,
) -> Result<PartitionDesc> {
    let mut d = common(p)?;
    let reserved = BOOT_INFO_FROM_END + VCPU_STACK_SIZE * p.cores.len() as u64;
    let loadable = MemRange { base: GUEST_RAM_IPA, size: p.ram_size.saturating_sub(reserved) };
    if elf.segments.len() > MAX_SEGMENTS {
        bail!("guest `{}` has {} loadable segments; at most {MAX_SEGMENTS}", p.guest, elf.segments.len());
    }
    d.segment_count = elf.segments.len() as u32;
    for (slot, s) in d.segments.iter_mut().zip(&elf.segments) {
        let range = MemRange { base: s.addr, size: s.mem_size };
        if !loadable.contains(&range) {
            bail!(
                "guest `{}` of partition `{}` needs {:#x}..{:#x}, but the partition's {} MiB of RAM leave \
                 {:#x}..{:#x} for the program (the rest holds stacks and boot information): give it more `ram`",
                p.guest,
                p.name,
                s.addr,
                s.addr + s.mem_size,
                p.ram_size >> 20,
                loadable.base,
                loadable.base + loadable.size
            );
        }
        while !blobs.len().is_multiple_of(16) {
            blobs.push(0);
        }
        *slot = Segment {
            ipa: s.addr,
            payload_offset: blob_base + blobs.len() as u64,
            file_size: s.data.len() as u64,
            mem_size: s.mem_size,
        };
        blobs.extend_from_slice(&s.data);
    }
    if !loadable.contains(&MemRange { base: elf.entry, size: 4 }) {
        bail!("guest `{}` has its entry point {:#x} outside its RAM", p.guest, elf.entry);
    }
    d.entry = elf.entry;
    d.log_level = p.log.map_or(0, |l| l.table_id());
    d.dma = p.dma_trusted as u32;
    d.net = zerocopy::transmute!(p.net.to_abi());
    devices(sys, p, &mut d)?;
    Ok(d)
}

/// Device assignment: each device's MMIO pages become Device regions of
/// its owner (stage-2 maps whole pages; `vmm-config` has checked that the
/// partition owns every device of each page), its interrupt is routed to
/// the owner, and the guest finds both in its device directory.
fn devices(sys: &System, p: &vmm_config::Partition, d: &mut PartitionDesc) -> Result<()> {
    if p.devices.is_empty() {
        return Ok(());
    }
    if p.devices.len() > MAX_DEVICES {
        bail!("partition `{}` has {} devices; at most {MAX_DEVICES}", p.name, p.devices.len());
    }
    for (slot, name) in d.devices.iter_mut().zip(&p.devices) {
        let dev = sys.board.device(name).with_context(|| format!("no board device `{name}`"))?;
        // The same rule `hallows check` applies (vmm-config), asked again
        // so the table never holds a device the check would refuse.
        let irq = vmm_config::assignable_irq(&sys.board, dev)
            .map_err(|why| anyhow::anyhow!("device `{name}` of partition `{}` cannot be assigned: {why}", p.name))?;
        *slot = DeviceDesc {
            name: padded(name).context("device name too long")?,
            compatible: padded(&dev.compatible).context("compatible string too long")?,
            base: dev.mmio.base,
            size: dev.mmio.size,
            irq,
            _pad: 0,
        };
        let first = dev.mmio.base & !(PAGE - 1);
        let end = (dev.mmio.end() + PAGE - 1) & !(PAGE - 1);
        let mut page = first;
        while page < end {
            let regions = &d.regions[..d.region_count as usize];
            if !regions.iter().any(|r| r.ipa <= page && page < r.ipa + r.size) {
                let i = d.region_count as usize;
                if i >= MAX_REGIONS {
                    bail!("partition `{}` needs more than {MAX_REGIONS} device pages", p.name);
                }
                d.regions[i] = Region {
                    ipa: page,
                    pa: page,
                    size: PAGE,
                    perm: perm::READ | perm::WRITE,
                    kind: region_kind::DEVICE,
                };
                d.region_count += 1;
            }
            page += PAGE;
        }
    }
    d.device_count = p.devices.len() as u32;
    Ok(())
}

const PAGE: u64 = 4096;

fn channels(sys: &System, table: &mut SystemTable, layout_hashes: &[(String, u64)]) -> Result<()> {
    if sys.channels.len() > MAX_CHANNELS {
        bail!("{} channels; at most {MAX_CHANNELS} are supported", sys.channels.len());
    }
    let index = |name: &str| {
        sys.partitions.iter().position(|p| p.name == name).with_context(|| format!("no partition `{name}`"))
    };
    let mut ipa = CHANNEL_IPA_BASE;
    for (slot, c) in table.channels.iter_mut().zip(&sys.channels) {
        // Both ends build this layout again from the table (the hypervisor,
        // a Rust partition's runtime, a Linux partition's device tree).
        let layout = c.layout().map_err(|e| anyhow::anyhow!("channel `{}`: {e}", c.name))?;
        if layout.total_size() as u64 != c.size {
            bail!("channel `{}`: placed size {:#x} differs from its layout {:#x}", c.name, c.size, layout.total_size());
        }
        *slot = ChannelDesc {
            name: padded(&c.name).context("channel name too long")?,
            pa: c.pa,
            ipa,
            size: c.size,
            slot_size: c.slot_size,
            slot_count: c.slots,
            producer: index(&c.from)? as u32,
            consumer: index(&c.to)? as u32,
            notify: match c.notify {
                vmm_config::Notify::Poll => notify::POLL,
                vmm_config::Notify::Doorbell => notify::DOORBELL,
            },
            tuning: layout.tuning().code(),
            layout_hash: layout_hashes.iter().find(|(n, _)| *n == c.name).map_or(0, |(_, h)| *h),
        };
        ipa += c.size;
    }
    table.channel_count = sys.channels.len() as u32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(board: &str, notify: &str) -> System {
        let mut m = format!("version = 1\nboard = \"{board}\"\n");
        for (name, core) in [("a", 0), ("b", 1)] {
            m += &format!("[[partition]]\nname = \"{name}\"\ncores = [{core}]\nram = \"2 MiB\"\nguest = \"hello\"\non_fault = \"stop\"\n");
        }
        m += &format!("[[channel]]\nname = \"c\"\nfrom = \"a\"\nto = \"b\"\nslot_size = 64\nslots = 16\nnotify = \"{notify}\"\n");
        vmm_config::load_str("channel.toml", &m, &vmm_config::CheckContext::default()).unwrap_or_else(|d| panic!("{d}"))
    }

    /// Doorbell and polled channels reach the table on both architectures
    /// (x86 boards refused doorbells until the x86 hypervisor delivered them).
    #[test]
    fn channels_keep_their_notify_mode_on_every_board() {
        for board in ["qemu-x86_64", "qemu-virt-aarch64"] {
            for (mode, want) in [("doorbell", notify::DOORBELL), ("poll", notify::POLL)] {
                let mut table = SystemTable::new_zeroed();
                channels(&system(board, mode), &mut table, &[]).unwrap();
                assert_eq!(table.channel_count, 1);
                assert_eq!(table.channels[0].notify, want, "{board} {mode}");
                assert_eq!((table.channels[0].producer, table.channels[0].consumer), (0, 1));
                assert_eq!(table.channels[0].layout_hash, 0, "untyped without specs");
            }
        }
    }

    /// The manifest's `tuning` reaches the table as its code (default
    /// latency); the memory is the same for every tuning.
    #[test]
    fn channels_carry_their_tuning() {
        let mut table = SystemTable::new_zeroed();
        let sys = system("qemu-virt-aarch64", "poll");
        channels(&sys, &mut table, &[]).unwrap();
        assert_eq!(table.channels[0].tuning, hallows_ring::Tuning::Latency.code());
        let size = table.channels[0].size;
        let mut sys = sys;
        sys.channels[0].tuning = hallows_ring::Tuning::Throughput;
        channels(&sys, &mut table, &[]).unwrap();
        assert_eq!(table.channels[0].tuning, hallows_ring::Tuning::Throughput.code());
        assert_eq!(table.channels[0].size, size);
    }

    /// The layout hash of a channel's message type reaches its table entry
    /// (the runtime compares it at open); channels no spec types keep 0.
    #[test]
    fn channels_carry_the_layout_hash_of_their_message_type() {
        let mut table = SystemTable::new_zeroed();
        channels(&system("qemu-virt-aarch64", "poll"), &mut table, &[("c".into(), 0x1234_5678_9abc_def0), ("other".into(), 7)]).unwrap();
        assert_eq!(table.channels[0].layout_hash, 0x1234_5678_9abc_def0);
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    fn system(devices: &str, dma: bool) -> System {
        let m = format!(
            "version = 1\nboard = \"qemu-virt-aarch64\"\n[[partition]]\nname = \"disk\"\ncores = [1]\nram = \"8 MiB\"\n\
             guest = \"disk\"\non_fault = \"stop\"\ndevices = [{devices}]\n{}",
            if dma { "dma = \"trusted\"\n" } else { "" }
        );
        vmm_config::load_str("devices.toml", &m, &vmm_config::CheckContext::default()).unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn a_page_of_virtio_transports_is_one_device_region_with_eight_interrupts() {
        let names: Vec<String> = (24..32).map(|i| format!("\"virtio{i}\"")).collect();
        let sys = system(&names.join(", "), true);
        let mut d = PartitionDesc::new_zeroed();
        devices(&sys, &sys.partitions[0], &mut d).unwrap();
        assert_eq!(d.region_count, 1);
        let r = d.regions[0];
        assert_eq!((r.ipa, r.pa, r.size, r.kind, r.perm), (0xa00_3000, 0xa00_3000, 4096, region_kind::DEVICE, perm::READ | perm::WRITE));
        assert_eq!(d.device_count, 8);
        assert_eq!(d.devices[7].base, 0xa00_3e00);
        assert_eq!(d.devices[7].irq, 79);
        assert_eq!(hallows_table::padded::<32>("virtio31").unwrap(), d.devices[7].name);
    }

    /// x86_64 (`qemu-microvm`): the same page rule, and the interrupts are
    /// GSIs (transport i on GSI 24 + i), which the hypervisor routes.
    #[test]
    fn x86_devices_are_device_regions_with_their_gsis() {
        let names: Vec<String> = (16..24).map(|i| format!("\"virtio{i}\"")).collect();
        let m = format!(
            "version = 1\nboard = \"qemu-microvm\"\n[[partition]]\nname = \"disk\"\ncores = [1]\nram = \"8 MiB\"\n\
             guest = \"disk\"\non_fault = \"stop\"\ndevices = [{}]\ndma = \"trusted\"\n",
            names.join(", ")
        );
        let sys = vmm_config::load_str("devices.toml", &m, &vmm_config::CheckContext::default()).unwrap_or_else(|d| panic!("{d}"));
        let mut d = PartitionDesc::new_zeroed();
        devices(&sys, &sys.partitions[0], &mut d).unwrap();
        assert_eq!(d.region_count, 1);
        let r = d.regions[0];
        assert_eq!((r.ipa, r.pa, r.size, r.kind), (0xfeb0_2000, 0xfeb0_2000, 4096, region_kind::DEVICE));
        assert_eq!(d.device_count, 8);
        assert_eq!((d.devices[7].base, d.devices[7].irq), (0xfeb0_2e00, 47));
    }

    /// `hallows check` refuses such a device (vmm-config); the table writer
    /// asks the same rule again rather than trusting its caller.
    #[test]
    fn an_interrupt_among_the_doorbell_intids_is_refused() {
        let names: Vec<String> = (24..32).map(|i| format!("\"virtio{i}\"")).collect();
        let mut sys = system(&names.join(", "), true);
        let mut rtc = sys.board.device("virtio24").unwrap().clone();
        rtc.irqs = vec![34];
        sys.board.devices.retain(|d| d.name != "virtio24");
        sys.board.devices.push(rtc);
        let mut d = PartitionDesc::new_zeroed();
        let err = devices(&sys, &sys.partitions[0], &mut d).unwrap_err().to_string();
        assert!(err.contains("device `virtio24` of partition `disk` cannot be assigned: interrupt 34"), "{err}");
    }
}

#[cfg(test)]
mod linux_tests {
    use super::*;
    use hallows_table::linux as vipa;

    /// A Linux partition with 2 vCPUs, a page of virtio transports and two
    /// channels (a doorbell one it produces, a polled one tuned for
    /// throughput it consumes)
    /// beside a Rust partition, with a fake 3 MiB Image and an initrd.
    fn system(dir: &std::path::Path) -> System {
        let mut image = vec![0u8; 64];
        image[16..24].copy_from_slice(&(3u64 << 20).to_le_bytes());
        image[24..32].copy_from_slice(&0xau64.to_le_bytes());
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        std::fs::write(dir.join("Image"), &image).unwrap();
        std::fs::write(dir.join("initrd.cpio"), vec![7u8; 5000]).unwrap();
        let m = "version = 1\nboard = \"qemu-virt-aarch64\"\n\
            [[partition]]\nname = \"peer\"\ncores = [0]\nram = \"2 MiB\"\nguest = \"hello\"\non_fault = \"stop\"\n\
            [[partition]]\nname = \"linux\"\ncores = [2, 3]\nram = \"64 MiB\"\non_fault = \"restart\"\ndma = \"trusted\"\n\
            devices = [\"virtio24\", \"virtio25\", \"virtio26\", \"virtio27\", \"virtio28\", \"virtio29\", \"virtio30\", \"virtio31\"]\n\
            linux = { kernel = \"Image\", initrd = \"initrd.cpio\", cmdline = \"console=ttyAMA0 panic=-1\" }\n\
            [[channel]]\nname = \"up\"\nfrom = \"linux\"\nto = \"peer\"\nslot_size = 64\nslots = 16\nnotify = \"doorbell\"\n\
            [[channel]]\nname = \"down\"\nfrom = \"peer\"\nto = \"linux\"\nslot_size = 128\nslots = 8\nnotify = \"poll\"\ntuning = \"throughput\"\n";
        vmm_config::load_str(dir.join("linux.toml").to_str().unwrap(), m, &vmm_config::CheckContext::default()).unwrap_or_else(|d| panic!("{d}"))
    }

    fn u64_at(b: &[u8], i: usize) -> u64 {
        u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
    }

    fn u32s(b: &[u8]) -> Vec<u32> {
        b.chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
    }

    /// Every node of the generated device tree, parsed back, says what the
    /// manifest and the table say: memory, CPUs, PSCI, GIC, timer, UART,
    /// devices, channels, /chosen; the payload's segments put kernel,
    /// device tree and initrd where the layout says.
    #[test]
    fn the_device_tree_matches_the_manifest() {
        let dir = std::env::temp_dir().join(format!("hallows-dt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sys = system(&dir);
        let p = &sys.partitions[1];
        let linux = p.linux.as_ref().expect("a Linux partition");
        let mut blobs = Vec::new();
        let mut table = SystemTable::new_zeroed();
        table.partition_count = 2;
        table.partitions[1] = linux_partition(&sys, p, linux, &mut blobs, 0).unwrap();
        channels(&sys, &mut table, &[]).unwrap();
        let d = table.partitions[1];
        assert_eq!(d.boot_kind, hallows_table::boot_kind::LINUX);
        assert_eq!(d.entry, GUEST_RAM_IPA);
        assert_eq!(d.segment_count, 2, "kernel and initrd (the device tree comes later)");
        let layout = linux.layout();
        assert_eq!((d.segments[0].ipa, d.segments[0].mem_size), (GUEST_RAM_IPA, 3 << 20));
        assert_eq!((d.segments[1].ipa, d.segments[1].file_size), (GUEST_RAM_IPA + layout.initrd, 5000));
        let blob = crate::devicetree::device_tree(p, linux, &d, 1, &table).unwrap();
        let fdt = fdt::Fdt::new(&blob).expect("a valid device tree");

        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.property("bootargs").unwrap().as_str(), Some("console=ttyAMA0 panic=-1"));
        assert_eq!(chosen.property("stdout-path").unwrap().as_str(), Some("/pl011@9000000"));
        let start = u64_at(chosen.property("linux,initrd-start").unwrap().value, 0);
        let end = u64_at(chosen.property("linux,initrd-end").unwrap().value, 0);
        assert_eq!((start, end), (GUEST_RAM_IPA + layout.initrd, GUEST_RAM_IPA + layout.initrd + 5000));

        let regions: Vec<_> = fdt.memory().regions().collect();
        assert_eq!(regions.len(), 1);
        assert_eq!((regions[0].starting_address as u64, regions[0].size), (GUEST_RAM_IPA, Some(64 << 20)));

        let cpus: Vec<_> = fdt.cpus().collect();
        assert_eq!(cpus.iter().map(|c| c.ids().first()).collect::<Vec<_>>(), vec![0, 1]);
        for c in &cpus {
            assert_eq!(c.property("enable-method").unwrap().as_str(), Some("psci"));
        }
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        assert!(psci.compatible().unwrap().all().any(|c| c == "arm,psci-1.0"));

        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let reg: Vec<_> = gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap() as u64)).collect();
        assert_eq!(reg, vec![(vipa::GICD_IPA, vipa::GICD_SIZE), (vipa::GICR_IPA, 2 * vipa::GICR_FRAME)]);
        assert!(gic.property("interrupt-controller").is_some());
        assert_eq!(fdt.root().property("interrupt-parent").unwrap().as_usize(), gic.property("phandle").unwrap().as_usize());

        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        assert_eq!(u32s(timer.property("interrupts").unwrap().value), vec![1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);

        let uart = fdt.find_node("/pl011@9000000").unwrap();
        assert!(uart.compatible().unwrap().all().eq(["arm,pl011", "arm,primecell"]));
        assert_eq!(u32s(uart.property("interrupts").unwrap().value), vec![0, vipa::UART_INTID - 32, 4]);
        let clk = fdt.find_compatible(&["fixed-clock"]).unwrap();
        assert_eq!(clk.property("clock-frequency").unwrap().as_usize(), Some(vipa::UART_CLOCK_HZ as usize));

        for i in 0..8u64 {
            let virtio = fdt.find_node(&format!("/virtio_mmio@{:x}", 0xa00_3000 + i * 0x200)).unwrap();
            assert_eq!(virtio.compatible().unwrap().first(), "virtio,mmio");
            assert_eq!(virtio.reg().unwrap().next().map(|r| (r.starting_address as u64, r.size)), Some((0xa00_3000 + i * 0x200, Some(0x200))));
            assert_eq!(u32s(virtio.property("interrupts").unwrap().value), vec![0, 72 + i as u32 - 32, 1]);
        }

        let hallows = fdt.find_node("/hallows").unwrap();
        assert_eq!(hallows.compatible().unwrap().first(), crate::devicetree::CHANNELS_COMPATIBLE);
        let chans: Vec<_> = hallows.children().collect();
        assert_eq!(chans.len(), 2);
        for (node, c, role, doorbell, tuning) in [
            (&chans[0], &table.channels[0], "producer", true, "latency"),
            (&chans[1], &table.channels[1], "consumer", false, "throughput"),
        ] {
            assert_eq!(node.compatible().unwrap().first(), crate::devicetree::CHANNEL_COMPATIBLE);
            assert_eq!(node.reg().unwrap().next().map(|r| (r.starting_address as u64, r.size.map(|s| s as u64))), Some((c.ipa, Some(c.size))));
            assert_eq!(node.property("hallows,name").unwrap().as_str(), Some(c.name()));
            assert_eq!(node.property("hallows,role").unwrap().as_str(), Some(role));
            assert_eq!(node.property("hallows,slot-size").unwrap().as_usize(), Some(c.slot_size as usize));
            assert_eq!(node.property("hallows,slot-count").unwrap().as_usize(), Some(c.slot_count as usize));
            assert_eq!(u64_at(node.property("hallows,layout-hash").unwrap().value, 0), c.layout_hash);
            // The tuning by name (the table's code), always present.
            assert_eq!(node.property("hallows,tuning").unwrap().as_str(), Some(tuning));
            assert_eq!(hallows_ring::Tuning::from_code(c.tuning).map(|t| t.name()), Some(tuning));
            // The doorbell page of its entry in the partition's channel directory.
            let bell = node.property("hallows,doorbell").map(|p| u64_at(p.value, 0));
            assert_eq!(bell, doorbell.then_some(vipa::DOORBELL_IPA));
            // Channel memory is not in /memory (so /dev/mem may map it).
            assert!(c.ipa >= GUEST_RAM_IPA + (64 << 20));
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The hypervisor's reservation grows by each Linux partition's
    /// payload, and partitions are placed past it.
    #[test]
    fn the_reservation_grows_for_linux_images() {
        let dir = std::env::temp_dir().join(format!("hallows-res-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sys = system(&dir);
        let linux = sys.partitions[1].linux.as_ref().unwrap();
        assert_eq!(sys.board.hypervisor.size, (16 << 20) + linux.payload_size());
        for p in &sys.partitions {
            assert!(p.ram_pa >= sys.board.hypervisor.end(), "{} placed in the reservation", p.name);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

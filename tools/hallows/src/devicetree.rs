//! Linux partitions in the image: the kernel, initramfs and the device
//! tree generated from the manifest (docs/linux.md). The device tree is
//! written here, from the same checked [`System`] and the same table
//! entries the hypervisor boots from, so the two cannot disagree.

use anyhow::{bail, Context, Result};
use hallows_table::{linux as ipa, notify, ChannelDesc, PartitionDesc, SystemTable};
use vm_fdt::FdtWriter;
use vmm_config::{LinuxGuest, Partition};

/// `compatible` of the `/hallows` node and of each channel under it (the
/// contract with Linux programs, docs/linux.md).
pub const CHANNELS_COMPATIBLE: &str = "hallows,channels";
pub const CHANNEL_COMPATIBLE: &str = "hallows,channel";
/// Phandles of the GIC and the UART's clock.
const GIC_PHANDLE: u32 = 1;
const CLOCK_PHANDLE: u32 = 2;
/// GIC interrupt specifier cells: type (0 SPI, 1 PPI), number, flags.
const SPI: u32 = 0;
const PPI: u32 = 1;
const LEVEL_HIGH: u32 = 4;
const EDGE_RISING: u32 = 1;

/// The device tree of Linux partition `p` (table entry `d`, index `index`
/// in `table`, whose channels are already placed),
/// whose RAM starts at `d.ram_ipa`: its memory, its vCPUs (PSCI over HVC),
/// the virtual GICv3, the timer, the emulated PL011, its assigned devices
/// and its channels; `/chosen` with the command line and the initramfs.
pub fn device_tree(p: &Partition, linux: &LinuxGuest, d: &PartitionDesc, index: usize, table: &SystemTable) -> Result<Vec<u8>> {
    let layout = linux.layout();
    let vcpus = p.cores.len() as u64;
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_string("compatible", "linux,dummy-virt")?;
    f.property_string("model", &format!("RustHallows partition {}", p.name))?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", &linux.cmdline)?;
    f.property_string("stdout-path", &format!("/pl011@{:x}", ipa::UART_IPA))?;
    if linux.initrd.is_some() {
        let start = d.ram_ipa + layout.initrd;
        f.property_u64("linux,initrd-start", start)?;
        f.property_u64("linux,initrd-end", start + linux.initrd_size)?;
    }
    f.end_node(chosen)?;

    let mem = f.begin_node(&format!("memory@{:x}", d.ram_ipa))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &[d.ram_ipa, d.ram_size])?;
    f.end_node(mem)?;

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    for v in 0..vcpus {
        // The virtual MPIDR (VMPIDR_EL2): Aff0 = the vCPU's number.
        let cpu = f.begin_node(&format!("cpu@{v:x}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "arm,armv8")?;
        f.property_u32("reg", v as u32)?;
        f.property_string("enable-method", "psci")?;
        f.end_node(cpu)?;
    }
    f.end_node(cpus)?;

    let psci = f.begin_node("psci")?;
    f.property_string_list("compatible", vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()])?;
    f.property_string("method", "hvc")?;
    f.end_node(psci)?;

    let gic = f.begin_node(&format!("intc@{:x}", ipa::GICD_IPA))?;
    f.property_string("compatible", "arm,gic-v3")?;
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_u32("#redistributor-regions", 1)?;
    f.property_array_u64("reg", &[ipa::GICD_IPA, ipa::GICD_SIZE, ipa::GICR_IPA, ipa::GICR_FRAME * vcpus])?;
    f.property_phandle(GIC_PHANDLE)?;
    f.end_node(gic)?;

    let timer = f.begin_node("timer")?;
    f.property_string("compatible", "arm,armv8-timer")?;
    let cells: Vec<u32> = ipa::TIMER_INTIDS.iter().flat_map(|&intid| [PPI, intid - 16, LEVEL_HIGH]).collect();
    f.property_array_u32("interrupts", &cells)?;
    f.property_null("always-on")?;
    f.end_node(timer)?;

    let clk = f.begin_node("apb-pclk")?;
    f.property_string("compatible", "fixed-clock")?;
    f.property_u32("#clock-cells", 0)?;
    f.property_u32("clock-frequency", ipa::UART_CLOCK_HZ)?;
    f.property_string("clock-output-names", "clk24mhz")?;
    f.property_phandle(CLOCK_PHANDLE)?;
    f.end_node(clk)?;

    let uart = f.begin_node(&format!("pl011@{:x}", ipa::UART_IPA))?;
    f.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()])?;
    f.property_array_u64("reg", &[ipa::UART_IPA, ipa::UART_SIZE])?;
    f.property_array_u32("interrupts", &[SPI, ipa::UART_INTID - 32, LEVEL_HIGH])?;
    f.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
    f.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
    f.end_node(uart)?;

    for dev in &d.devices[..d.device_count as usize] {
        let node = f.begin_node(&format!("{}@{:x}", node_name(dev.compatible()), dev.base))?;
        f.property_string("compatible", dev.compatible())?;
        f.property_array_u64("reg", &[dev.base, dev.size])?;
        if dev.irq != 0 {
            let flags = if dev.compatible() == "virtio,mmio" { EDGE_RISING } else { LEVEL_HIGH };
            f.property_array_u32("interrupts", &[SPI, dev.irq - 32, flags])?;
        }
        if dev.compatible() == "virtio,mmio" {
            f.property_null("dma-coherent")?;
        }
        f.end_node(node)?;
    }

    let mine: Vec<(usize, &ChannelDesc)> =
        table.channels().iter().filter(|c| c.producer as usize == index || c.consumer as usize == index).enumerate().collect();
    if !mine.is_empty() {
        let hallows = f.begin_node("hallows")?;
        f.property_string("compatible", CHANNELS_COMPATIBLE)?;
        f.property_u32("#address-cells", 2)?;
        f.property_u32("#size-cells", 2)?;
        for (entry, c) in mine {
            let node = f.begin_node(&format!("channel@{:x}", c.ipa))?;
            f.property_string("compatible", CHANNEL_COMPATIBLE)?;
            f.property_array_u64("reg", &[c.ipa, c.size])?;
            f.property_string("hallows,name", c.name())?;
            f.property_string("hallows,role", if c.producer as usize == index { "producer" } else { "consumer" })?;
            f.property_u32("hallows,slot-size", c.slot_size)?;
            f.property_u32("hallows,slot-count", c.slot_count)?;
            let Some(tuning) = hallows_ring::Tuning::from_code(c.tuning) else {
                bail!("channel `{}`: unknown ring tuning code {}", c.name(), c.tuning);
            };
            f.property_string("hallows,tuning", tuning.name())?;
            f.property_u64("hallows,layout-hash", c.layout_hash)?;
            if c.notify == notify::DOORBELL {
                f.property_u64("hallows,doorbell", ipa::DOORBELL_IPA + entry as u64 * ipa::DOORBELL_STRIDE)?;
            }
            f.end_node(node)?;
        }
        f.end_node(hallows)?;
    }
    f.end_node(root)?;
    let blob = f.finish()?;
    if blob.len() as u64 > LinuxGuest::DTB_MAX {
        bail!("partition `{}`: its device tree is {} bytes, more than {}", p.name, blob.len(), LinuxGuest::DTB_MAX);
    }
    Ok(blob)
}

/// A node name for a device of compatible `c`: `virtio_mmio` (as QEMU
/// names them), else the part after the vendor (`arm,pl031` -> `pl031`).
fn node_name(c: &str) -> String {
    if c == "virtio,mmio" {
        return "virtio_mmio".into();
    }
    c.rsplit(',').next().unwrap_or(c).chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' }).collect()
}

/// The pieces of a Linux partition's RAM the hypervisor loads (kernel,
/// device tree, initramfs), as (IPA, bytes, memory size) in load order.
pub fn images(p: &Partition, linux: &LinuxGuest, ram_ipa: u64) -> Result<Vec<(u64, Vec<u8>, u64)>> {
    let layout = linux.layout();
    let kernel = std::fs::read(&linux.kernel).with_context(|| format!("reading the kernel of partition `{}` ({})", p.name, linux.kernel.display()))?;
    let header = vmm_config::image_header(&kernel).map_err(|why| anyhow::anyhow!("kernel {}: {why}", linux.kernel.display()))?;
    if kernel.len() as u64 != linux.kernel_size || header.text_offset != linux.text_offset {
        bail!("the kernel {} changed since the manifest was checked; run the command again", linux.kernel.display());
    }
    let mut out = vec![(ram_ipa + layout.kernel, kernel, linux.image_size)];
    if let Some(path) = &linux.initrd {
        let initrd = std::fs::read(path).with_context(|| format!("reading the initrd of partition `{}` ({})", p.name, path.display()))?;
        if initrd.len() as u64 != linux.initrd_size {
            bail!("the initrd {} changed since the manifest was checked; run the command again", path.display());
        }
        let size = initrd.len() as u64;
        out.push((ram_ipa + layout.initrd, initrd, size));
    }
    Ok(out)
}

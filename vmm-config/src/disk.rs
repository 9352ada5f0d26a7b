//! Disks: a partition's `disk` key. A disk is a virtio-blk device on a
//! virtio-mmio transport the partition owns (placed like a NIC: beside the
//! partition's NIC on its page of transports, else on a free page),
//! backed by a host file that the tool creates when missing. Its
//! durability setting reaches the guest as boot arguments.

use std::ops::Range as Span;
use std::path::Path;

use hallows_table::MAX_REGIONS;

use crate::diag::{did_you_mean, Diagnostics, FileId};
use crate::raw::{DurabilityName, RawPartition};
use crate::{Board, Channel, Disk, Durability, Partition, MAX_BOOTARGS_LEN, PAGE_SIZE};

/// Smallest and largest disk.
const MIN_DISK: u64 = 1 << 20;
const MAX_DISK: u64 = 1 << 40;
/// Default and bounds of `commit_window`, microseconds.
const DEFAULT_WINDOW_US: u64 = 10_000;
const MIN_WINDOW_US: u64 = 1_000;
const MAX_WINDOW_US: u64 = 10_000_000;

/// Parses a duration as written in a manifest: `"<integer> <unit>"`, unit
/// `us`, `ms` or `s`. Returns microseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '_')).unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    if num.is_empty() {
        return Err(format!("duration \"{text}\" does not start with a number"));
    }
    let n: u64 = num.replace('_', "").parse().map_err(|_| format!("duration \"{text}\" is too large"))?;
    let mult = match unit.trim() {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        u => return Err(format!("duration \"{text}\" has unknown unit \"{u}\"; units are us, ms, s")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("duration \"{text}\" is too large"))
}

/// The board transport a `device` key names, if it can hold a virtio
/// device (`what`: "a disk", "a NIC") that QEMU plugs in; else a
/// diagnostic at the key.
pub(crate) fn named_transport(d: &mut Diagnostics, file: FileId, board: &Board, dv: &toml::Spanned<String>, what: &str) -> Option<crate::Device> {
    let dname = dv.get_ref();
    let Some(dev) = board.device(dname) else {
        let diag = d.error(file, dv.span(), format!("device `{dname}` is not on board \"{}\"", board.name)).label("no such device");
        if let Some(best) = did_you_mean(dname, board.devices.iter().map(|x| x.name.as_str())) {
            diag.help(format!("did you mean `{best}`?"));
        }
        return None;
    };
    if !crate::dma_capable(&dev.compatible) || dev.qemu_bus.is_none() {
        d.error(file, dv.span(), format!("device `{dname}` cannot hold {what}: it is not a virtio-mmio transport with a QEMU bus"))
            .help("name a `virtio,mmio` device of the board, or leave `device` out to have one placed");
        return None;
    }
    Some(dev.clone())
}

fn page_of(board: &Board, name: &str) -> Option<u64> {
    board.device(name).map(|d| d.mmio.base & !(PAGE_SIZE - 1))
}

/// Checks every partition's `disk` and fills [`Partition::disk`]; runs
/// after the NICs are placed. `manifest` names the manifest (its stem
/// names the default image directory), `dir` is its directory and `root`
/// the project's.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    d: &mut Diagnostics,
    file: FileId,
    manifest: &str,
    dir: Option<&Path>,
    root: Option<&Path>,
    board: &Board,
    raws: &[&RawPartition],
    partitions: &mut [Partition],
    channels: &[Channel],
) {
    let stem = Path::new(manifest).file_stem().and_then(|s| s.to_str()).unwrap_or("system").to_owned();
    for (i, raw) in raws.iter().enumerate() {
        let Some(disk) = &raw.disk else { continue };
        let span: Span<usize> = disk.span();
        let disk = disk.get_ref();
        let name = partitions[i].name.clone();
        let size = disk.size.get_ref().0;
        if !(MIN_DISK..=MAX_DISK).contains(&size) || !size.is_multiple_of(512) {
            d.error(file, disk.size.span(), format!("disk size {} is out of range", crate::format_size(size)))
                .help("a disk is 1 MiB to 1 TiB, a whole number of 512-byte sectors");
            continue;
        }
        if raw.dma.is_none() {
            d.error(file, span.clone(), format!("partition `{name}` owns a disk (a virtio device that masters DMA) but does not declare dma = \"trusted\""))
                .help("without an IOMMU a disk controller can read and write any physical address; add dma = \"trusted\" if you trust this partition's guest with the whole machine's memory");
            continue;
        }
        let durability = match (disk.durability.as_ref().map(|x| *x.get_ref()), &disk.commit_window) {
            (Some(DurabilityName::Group), w) => {
                let window_us = match w {
                    None => DEFAULT_WINDOW_US,
                    Some(w) => match parse_duration(w.get_ref()) {
                        Ok(us) if (MIN_WINDOW_US..=MAX_WINDOW_US).contains(&us) => us,
                        Ok(_) => {
                            d.error(file, w.span(), format!("commit_window \"{}\" is out of range", w.get_ref().escape_debug()))
                                .help("a commit window is 1 ms to 10 s");
                            continue;
                        }
                        Err(e) => {
                            d.error(file, w.span(), e).help("write it like \"10 ms\"");
                            continue;
                        }
                    },
                };
                Durability::Group { window_us }
            }
            (_, Some(w)) => {
                d.error(file, w.span(), "commit_window is only for durability = \"group\"")
                    .help("with strict durability every write is stable before it is acknowledged: remove commit_window, or set durability = \"group\"");
                continue;
            }
            _ => Durability::Strict,
        };
        // Where the image lives: inside the project.
        let path = match &disk.file {
            Some(f) => {
                let p = dir.unwrap_or(Path::new("")).join(f.get_ref());
                if let Some(root) = root {
                    if !hallows_source::is_inside(&p, root) {
                        d.error(file, f.span(), format!("disk file \"{}\" is outside the project directory", f.get_ref().escape_debug()))
                            .label("outside the project")
                            .help(format!("disk images must lie inside the project, so that a manifest cannot make hallows write other files: move it into {}, or leave `file` out for the default under target/hallows/disks/", root.display()));
                        continue;
                    }
                }
                p
            }
            None => root.or(dir).unwrap_or(Path::new("")).join("target/hallows/disks").join(&stem).join(format!("{name}.img")),
        };
        // Placement.
        let nic_devices: Vec<String> = partitions.iter().filter_map(|p| p.net.nic.as_ref().map(|n| n.device.clone())).collect();
        let disk_devices: Vec<String> = partitions.iter().filter_map(|p| p.disk.as_ref().map(|x| x.device.clone())).collect();
        let in_use = |n: &str| nic_devices.iter().chain(disk_devices.iter()).any(|x| x == n);
        let transport = if let Some(dv) = &disk.device {
            let dname = dv.get_ref();
            let Some(dev) = named_transport(d, file, board, dv, "a disk") else { continue };
            if in_use(dname) {
                d.error(file, dv.span(), format!("device `{dname}` already holds another partition's NIC or disk"))
                    .help("leave `device` out to have a free transport placed");
                continue;
            }
            let page = page_of(board, dname).unwrap_or(0);
            if let Some(owner) = partitions.iter().find(|p| p.name != name && p.devices.iter().any(|n| page_of(board, n) == Some(page))) {
                d.error(file, dv.span(), format!("device `{dname}` shares the 4 KiB page {page:#x} with devices of partition `{}`", owner.name))
                    .help("stage-2 maps whole pages: pick a transport on a page nobody else uses, or leave `device` out to have one placed");
                continue;
            }
            dev
        } else {
            // A free transport on a page the partition already owns (its
            // NIC's), highest first; else the lowest page nobody owns.
            let mine: Vec<u64> = partitions[i].devices.iter().filter_map(|n| page_of(board, n)).collect();
            let taken: Vec<u64> = partitions.iter().flat_map(|p| p.devices.iter()).filter_map(|n| page_of(board, n)).collect();
            let usable = |x: &&crate::Device| crate::dma_capable(&x.compatible) && x.qemu_bus.is_some() && !in_use(&x.name);
            let own = board.devices.iter().filter(usable).filter(|x| mine.contains(&(x.mmio.base & !(PAGE_SIZE - 1)))).max_by_key(|x| x.mmio.base);
            let chosen = own.or_else(|| {
                let page = board.devices.iter().filter(usable).map(|x| x.mmio.base & !(PAGE_SIZE - 1)).filter(|p| !taken.contains(p)).min()?;
                board.devices.iter().filter(usable).filter(|x| x.mmio.base & !(PAGE_SIZE - 1) == page).max_by_key(|x| x.mmio.base)
            });
            let Some(x) = chosen else {
                d.error(file, span.clone(), format!("no free virtio-mmio transport is left on board \"{}\" for the disk of partition `{name}`", board.name))
                    .help("every partition with virtio devices owns whole 4 KiB pages of transports: give fewer partitions disks or devices");
                continue;
            };
            x.clone()
        };
        let page = crate::Range::new(transport.mmio.base & !(PAGE_SIZE - 1), PAGE_SIZE);
        for x in board.devices.iter().filter(|x| x.mmio.overlaps(&page)) {
            if !partitions[i].devices.contains(&x.name) {
                partitions[i].devices.push(x.name.clone());
            }
        }
        let ends = channels.iter().filter(|c| c.from == name || c.to == name).count() as u64;
        let regions = crate::check::device_pages(board, &partitions[i].devices) + ends;
        if regions > MAX_REGIONS as u64 {
            d.error(file, span.clone(), format!("with its disk, partition `{name}` needs {regions} memory regions (device pages and channel ends); the system table holds at most {MAX_REGIONS}"))
                .help("connect fewer channels to this partition");
            continue;
        }
        let args = match durability {
            Durability::Strict => "disk_durability=strict".to_owned(),
            Durability::Group { window_us } => format!("disk_durability=group disk_window_us={window_us}"),
        };
        let bootargs = if partitions[i].bootargs.is_empty() { args.clone() } else { format!("{} {args}", partitions[i].bootargs) };
        if bootargs.len() > MAX_BOOTARGS_LEN {
            d.error(file, span.clone(), format!("with the disk's settings (`{args}`), partition `{name}`'s boot arguments are {} bytes; at most {MAX_BOOTARGS_LEN} fit", bootargs.len()))
                .help("shorten `bootargs`");
            continue;
        }
        partitions[i].bootargs = bootargs;
        partitions[i].disk = Some(Disk { size, path, device: transport.name.clone(), qemu_bus: transport.qemu_bus.clone().unwrap_or_default(), durability });
    }
}

/// QEMU arguments for the system's disks: each image as a raw drive on the
/// QEMU bus of its transport. The images must exist (the tool creates
/// missing ones, [`Disk::size`] bytes, before it starts QEMU).
pub fn qemu_args(partitions: &[Partition]) -> Vec<String> {
    let mut args = Vec::new();
    for p in partitions {
        let Some(disk) = &p.disk else { continue };
        // QEMU's -drive splits on commas: a comma in a path is doubled.
        let file = disk.path.display().to_string().replace(',', ",,");
        args.extend([
            "-drive".to_owned(),
            format!("file={file},if=none,format=raw,id=disk-{},cache=writeback", p.name),
            "-device".to_owned(),
            format!("virtio-blk-device,drive=disk-{},bus={}", p.name, disk.qemu_bus),
        ]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use crate::{load_str, CheckContext, Durability};

    fn manifest(disk: &str, extra: &str) -> String {
        format!(
            "version = 1\nboard = \"qemu-virt-aarch64\"\n[[partition]]\nname = \"store\"\ncores = [1]\nram = \"8 MiB\"\nguest = \"store\"\non_fault = \"stop\"\ndma = \"trusted\"\n{extra}disk = {disk}\n"
        )
    }

    fn load(src: &str) -> Result<crate::System, String> {
        load_str("dir/sys.toml", src, &CheckContext::default()).map_err(|d| d.to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10 ms"), Ok(10_000));
        assert_eq!(parse_duration("2s"), Ok(2_000_000));
        assert_eq!(parse_duration("1_500 us"), Ok(1_500));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("10 min").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("99999999999999999999 s").is_err());
    }

    #[test]
    fn a_disk_is_placed_and_configured() {
        let s = load(&manifest("{ size = \"64 MiB\" }", "")).unwrap();
        let p = &s.partitions[0];
        let disk = p.disk.as_ref().unwrap();
        assert_eq!(disk.size, 64 << 20);
        assert_eq!(disk.durability, Durability::Strict);
        assert_eq!(disk.path, std::path::Path::new("dir/target/hallows/disks/sys/store.img"));
        assert!(p.devices.contains(&disk.device));
        assert_eq!(p.devices.len(), 8, "{:?}", p.devices);
        assert_eq!(p.bootargs, "disk_durability=strict");
        let args = super::qemu_args(&s.partitions);
        assert_eq!(args[1], "file=dir/target/hallows/disks/sys/store.img,if=none,format=raw,id=disk-store,cache=writeback");
        assert!(args[3].starts_with("virtio-blk-device,drive=disk-store,bus=virtio-mmio-bus."), "{args:?}");
    }

    #[test]
    fn a_disk_sits_beside_the_nic() {
        let s = load(&manifest("{ size = \"1 MiB\", durability = \"group\", commit_window = \"5 ms\" }", "nic = { address = \"10.0.2.15/24\" }\nbootargs = \"x=1\"\n")).unwrap();
        let p = &s.partitions[0];
        let disk = p.disk.as_ref().unwrap();
        assert_ne!(disk.device, p.net.nic.as_ref().unwrap().device);
        assert_eq!(p.devices.len(), 8, "one page of transports: {:?}", p.devices);
        assert_eq!(disk.durability, Durability::Group { window_us: 5000 });
        assert_eq!(p.bootargs, "x=1 disk_durability=group disk_window_us=5000");
    }

    #[test]
    fn bad_disks_are_refused_precisely() {
        let e = load(&manifest("{ size = \"100 KiB\" }", "")).unwrap_err();
        assert!(e.contains("disk size 100 KiB is out of range"), "{e}");
        let e = load(&manifest("{ size = \"1 MiB\", commit_window = \"5 ms\" }", "")).unwrap_err();
        assert!(e.contains("commit_window is only for durability = \"group\""), "{e}");
        let e = load(&manifest("{ size = \"1 MiB\", durability = \"group\", commit_window = \"5 min\" }", "")).unwrap_err();
        assert!(e.contains("unknown unit"), "{e}");
        let e = load(&manifest("{ size = \"1 MiB\", durability = \"group\", commit_window = \"20 s\" }", "")).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = load(&manifest("{ size = \"1 MiB\", durability = \"eventual\" }", "")).unwrap_err();
        assert!(e.contains("eventual"), "{e}");
        let e = load(&manifest("{ size = \"1 MiB\", device = \"virtio99\" }", "")).unwrap_err();
        assert!(e.contains("device `virtio99` is not on board"), "{e}");
        let e = load(&manifest("{ size = \"1 MiB\", device = \"uart0\" }", "")).unwrap_err();
        assert!(e.contains("cannot hold a disk") || e.contains("not on board"), "{e}");
        let e = load(&manifest("{ size = \"1 MiB\", colour = \"red\" }", "")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let no_dma = manifest("{ size = \"1 MiB\" }", "").replace("dma = \"trusted\"\n", "");
        assert!(load(&no_dma).unwrap_err().contains("does not declare dma = \"trusted\""));
    }

    #[test]
    fn a_disk_file_outside_the_project_is_refused() {
        let root = std::env::temp_dir().join(format!("hallows-disk-root-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let ctx = CheckContext { root: Some(root.clone()), ..Default::default() };
        let src = manifest("{ size = \"1 MiB\", file = \"../../etc/passwd\" }", "");
        let e = load_str(&root.join("sys.toml").display().to_string(), &src, &ctx).unwrap_err().to_string();
        assert!(e.contains("outside the project directory"), "{e}");
        let ok = manifest("{ size = \"1 MiB\", file = \"data/store.img\" }", "");
        let s = load_str(&root.join("sys.toml").display().to_string(), &ok, &ctx).unwrap();
        assert_eq!(s.partitions[0].disk.as_ref().unwrap().path, root.join("data/store.img"));
        std::fs::remove_dir_all(root).unwrap();
    }
}

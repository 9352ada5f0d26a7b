//! Displays: a partition's `display` key. A display is three virtio
//! devices on virtio-mmio transports the partition owns: a `virtio-gpu`
//! framebuffer (scanout `width` x `height`), a `virtio-keyboard` and a
//! `virtio-tablet` (absolute pointer). They take a 4 KiB page of
//! transports of their own (or free transports on a page the partition
//! already owns: its NIC's or disk's), like a disk. The GPU masters DMA
//! (it reads the framebuffer from guest memory), so the partition must be
//! `dma = "trusted"`.
//!
//! How the host shows the display is not the manifest's business:
//! [`DisplayHost`] (set by `hallows run --display`, or by a test) says
//! whether QEMU serves it over VNC on 127.0.0.1 and where QEMU's QMP socket
//! (a Unix socket, never TCP) lies for screenshots and input injection.

use std::ops::Range as Span;
use std::path::PathBuf;

use hallows_table::MAX_REGIONS;

use crate::diag::{Diagnostics, FileId};
use crate::raw::RawPartition;
use crate::{Board, Channel, Partition, PAGE_SIZE};

/// Default scanout size.
pub const DEFAULT_WIDTH: u32 = 1024;
pub const DEFAULT_HEIGHT: u32 = 768;
const WIDTHS: std::ops::RangeInclusive<u64> = 320..=3840;
const HEIGHTS: std::ops::RangeInclusive<u64> = 200..=2160;

/// A partition's display, keyboard and pointer, each on a board transport
/// (`(device name, QEMU bus)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Display {
    pub width: u32,
    pub height: u32,
    pub gpu: (String, String),
    pub keyboard: (String, String),
    pub tablet: (String, String),
}

/// How QEMU shows the display on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DisplayMode {
    /// Not shown (screenshots through QMP still work).
    #[default]
    None,
    /// QEMU's VNC server on 127.0.0.1, display number `n` (TCP port
    /// 5900 + n), no other address.
    Vnc(u16),
}

/// The host's side of the system's display (not part of the manifest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisplayHost {
    pub mode: DisplayMode,
    /// QEMU's QMP server, a Unix socket at this path (QEMU creates it);
    /// none: no QMP.
    pub qmp: Option<PathBuf>,
}

/// Checks every partition's `display` and fills [`Partition::display`];
/// runs after the NICs and disks are placed.
pub(crate) fn check(d: &mut Diagnostics, file: FileId, board: &Board, raws: &[&RawPartition], partitions: &mut [Partition], channels: &[Channel]) {
    let mut seen_display = false;
    for (i, raw) in raws.iter().enumerate() {
        let Some(disp) = &raw.display else { continue };
        let span: Span<usize> = disp.span();
        let disp = disp.get_ref();
        let name = partitions[i].name.clone();
        if seen_display {
            d.error(file, span.clone(), format!("partition `{name}` declares a second display"))
                .help("QEMU shows one virtio-gpu scanout and its input devices reach every display: give one partition the display");
            continue;
        }
        seen_display = true;
        let mut dim = |v: &Option<toml::Spanned<u64>>, range: std::ops::RangeInclusive<u64>, default: u32, what: &str| -> Option<u32> {
            match v {
                None => Some(default),
                Some(x) if range.contains(x.get_ref()) => Some(*x.get_ref() as u32),
                Some(x) => {
                    d.error(file, x.span(), format!("display {what} {} is out of range", x.get_ref()))
                        .help(format!("a display is {}..={} pixels {what}", range.start(), range.end()));
                    None
                }
            }
        };
        let (Some(width), Some(height)) = (dim(&disp.width, WIDTHS, DEFAULT_WIDTH, "width"), dim(&disp.height, HEIGHTS, DEFAULT_HEIGHT, "height")) else {
            continue;
        };
        if raw.dma.is_none() {
            d.error(file, span.clone(), format!("partition `{name}` owns a display (virtio-gpu reads the framebuffer by DMA) but does not declare dma = \"trusted\""))
                .help("without an IOMMU a virtio device can read and write any physical address; add dma = \"trusted\" if you trust this partition's guest with the whole machine's memory");
            continue;
        }
        // Transports already holding someone's NIC or disk.
        let in_use: Vec<String> = partitions
            .iter()
            .flat_map(|p| p.net.nic.as_ref().map(|n| n.device.clone()).into_iter().chain(p.disk.as_ref().map(|x| x.device.clone())))
            .collect();
        let page_of = |x: &crate::Device| x.mmio.base & !(PAGE_SIZE - 1);
        let usable = |x: &&crate::Device| crate::dma_capable(&x.compatible) && x.qemu_bus.is_some() && !in_use.contains(&x.name);
        let mine: Vec<u64> = partitions[i].devices.iter().filter_map(|n| board.device(n)).map(page_of).collect();
        let taken: Vec<u64> = partitions.iter().flat_map(|p| p.devices.iter()).filter_map(|n| board.device(n)).map(page_of).collect();
        // Three free transports: on a page the partition owns, else on the
        // lowest page nobody owns; the highest transports of the page.
        let mut pages: Vec<u64> = board.devices.iter().filter(usable).map(page_of).filter(|p| mine.contains(p)).collect();
        pages.sort_unstable();
        pages.dedup();
        let mut free: Vec<u64> = board.devices.iter().filter(usable).map(page_of).filter(|p| !taken.contains(p)).collect();
        free.sort_unstable();
        free.dedup();
        pages.extend(free);
        let chosen = pages.iter().find_map(|&page| {
            let mut on: Vec<&crate::Device> = board.devices.iter().filter(usable).filter(|x| page_of(x) == page).collect();
            on.sort_by_key(|x| std::cmp::Reverse(x.mmio.base));
            (on.len() >= 3).then(|| (page, [on[0].clone(), on[1].clone(), on[2].clone()]))
        });
        let Some((page, [gpu, keyboard, tablet])) = chosen else {
            d.error(file, span.clone(), format!("no three free virtio-mmio transports are left on board \"{}\" for the display of partition `{name}`", board.name))
                .help("a display takes a GPU, a keyboard and a tablet transport; every partition with virtio devices owns whole 4 KiB pages of transports: give fewer partitions devices");
            continue;
        };
        let page = crate::Range::new(page, PAGE_SIZE);
        for x in board.devices.iter().filter(|x| x.mmio.overlaps(&page)) {
            if !partitions[i].devices.contains(&x.name) {
                partitions[i].devices.push(x.name.clone());
            }
        }
        let ends = channels.iter().filter(|c| c.from == name || c.to == name).count() as u64;
        let regions = crate::check::device_pages(board, &partitions[i].devices) + ends;
        if regions > MAX_REGIONS as u64 {
            d.error(file, span.clone(), format!("with its display, partition `{name}` needs {regions} memory regions (device pages and channel ends); the system table holds at most {MAX_REGIONS}"))
                .help("connect fewer channels to this partition");
            continue;
        }
        let bus = |x: &crate::Device| (x.name.clone(), x.qemu_bus.clone().unwrap_or_default());
        partitions[i].display = Some(Display { width, height, gpu: bus(&gpu), keyboard: bus(&keyboard), tablet: bus(&tablet) });
    }
}

/// QEMU arguments for the system's display devices and for `host`: the
/// virtio-gpu, keyboard and tablet on their buses; VNC on 127.0.0.1 only;
/// QMP on a Unix socket only. Nothing when no partition has a display
/// (then `host` is ignored: there is nothing to show or inject into).
pub fn qemu_args(partitions: &[Partition], host: &DisplayHost) -> Vec<String> {
    let mut args = Vec::new();
    let Some((name, disp)) = partitions.iter().find_map(|p| p.display.as_ref().map(|d| (&p.name, d))) else {
        return args;
    };
    args.extend([
        "-device".to_owned(),
        format!("virtio-gpu-device,bus={},xres={},yres={},id=gpu-{name}", disp.gpu.1, disp.width, disp.height),
        "-device".to_owned(),
        format!("virtio-keyboard-device,bus={},id=kbd-{name}", disp.keyboard.1),
        "-device".to_owned(),
        format!("virtio-tablet-device,bus={},id=tablet-{name}", disp.tablet.1),
    ]);
    if let DisplayMode::Vnc(n) = host.mode {
        // 127.0.0.1 only; no password is needed on a loopback-only port
        // the user asked for, but nothing else can reach it.
        args.extend(["-vnc".to_owned(), format!("127.0.0.1:{n}")]);
    }
    args.extend(qmp_args(host));
    args
}

/// QEMU's QMP server on the Unix socket `host.qmp` asks for (nothing if
/// none): never TCP; the socket file's permissions guard it. QEMU doubles
/// no commas here, so a comma in the path is refused by the caller.
pub fn qmp_args(host: &DisplayHost) -> Vec<String> {
    host.qmp.iter().flat_map(|sock| ["-qmp".to_owned(), format!("unix:{},server=on,wait=off", sock.display())]).collect()
}

#[cfg(test)]
mod tests {
    use super::{qemu_args, DisplayHost, DisplayMode};
    use crate::{load_str, CheckContext};

    fn load(part: &str, extra: &str) -> Result<crate::System, String> {
        let src = format!(
            "version = 1\nboard = \"qemu-virt-aarch64\"\n[[partition]]\nname = \"ui\"\ncores = [1]\nram = \"16 MiB\"\nguest = \"dashboard\"\non_fault = \"stop\"\n{part}\n{extra}"
        );
        load_str("dir/sys.toml", &src, &CheckContext::default()).map_err(|d| d.to_string())
    }

    #[test]
    fn a_display_takes_three_transports_of_one_page() {
        let s = load("dma = \"trusted\"\ndisplay = { width = 800, height = 600 }", "").unwrap();
        let p = &s.partitions[0];
        let d = p.display.as_ref().unwrap();
        assert_eq!((d.width, d.height), (800, 600));
        let names = [&d.gpu.0, &d.keyboard.0, &d.tablet.0];
        assert!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2]);
        let page = |n: &String| s.board.device(n).unwrap().mmio.base & !0xfff;
        assert!(names.iter().all(|n| page(n) == page(names[0]) && p.devices.contains(n)));
        assert!(d.gpu.1.starts_with("virtio-mmio-bus."));
    }

    #[test]
    fn defaults_and_refusals() {
        let s = load("dma = \"trusted\"\ndisplay = {}", "").unwrap();
        let d = s.partitions[0].display.as_ref().unwrap();
        assert_eq!((d.width, d.height), (1024, 768));
        let e = load("display = {}", "").unwrap_err();
        assert!(e.contains("does not declare dma = \"trusted\""), "{e}");
        let e = load("dma = \"trusted\"\ndisplay = { width = 100 }", "").unwrap_err();
        assert!(e.contains("display width 100 is out of range"), "{e}");
        let e = load("dma = \"trusted\"\ndisplay = { depth = 32 }", "").unwrap_err();
        assert!(e.contains("depth"), "{e}");
        let two = "[[partition]]\nname = \"b\"\ncores = [2]\nram = \"16 MiB\"\nguest = \"dashboard\"\non_fault = \"stop\"\ndma = \"trusted\"\ndisplay = {}\n";
        let e = load("dma = \"trusted\"\ndisplay = {}", two).unwrap_err();
        assert!(e.contains("second display"), "{e}");
    }

    #[test]
    fn host_side_is_local_only() {
        let s = load("dma = \"trusted\"\ndisplay = {}", "").unwrap();
        let host = DisplayHost { mode: DisplayMode::Vnc(3), qmp: Some("/tmp/q.sock".into()) };
        let a = qemu_args(&s.partitions, &host).join(" ");
        assert!(a.contains("virtio-gpu-device,bus=virtio-mmio-bus."), "{a}");
        assert!(a.contains("xres=1024,yres=768"), "{a}");
        assert!(a.contains("virtio-keyboard-device") && a.contains("virtio-tablet-device"), "{a}");
        assert!(a.contains("-vnc 127.0.0.1:3"), "{a}");
        assert!(a.contains("-qmp unix:/tmp/q.sock,server=on,wait=off"), "{a}");
        assert!(!a.contains("tcp:"), "{a}");
        // No display in the system: nothing, whatever the host asks.
        let none = load("", "").unwrap();
        assert!(qemu_args(&none.partitions, &host).is_empty());
    }
}

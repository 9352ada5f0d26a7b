//! Linux partitions: a partition's `linux` key (kernel, initramfs, command
//! line). The files are checked here, where a mistake can still point at
//! the manifest: they exist inside the project, the kernel is an arm64
//! `Image` whose `image_size`, with the device tree and the initramfs,
//! fits the partition's RAM, and the command line is printable. The
//! hypervisor's reservation grows by what the payload will hold for each
//! Linux partition, before partitions are placed (docs/linux.md).

use std::ops::Range as Span;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostics, FileId};
use crate::raw::RawPartition;
use crate::size::format_size;
use crate::{Arch, Board, LinuxGuest, Partition, Range, RAM_ALIGN};

/// Longest kernel command line (bytes); arm64's `COMMAND_LINE_SIZE` is 2048.
pub const MAX_CMDLINE_LEN: usize = 1023;
/// The arm64 Image header's magic, `ARM\x64`, at offset 0x38.
const IMAGE_MAGIC: [u8; 4] = *b"ARM\x64";
/// Linux wants its device tree in the first 512 MiB of RAM.
const DTB_WINDOW: u64 = 512 << 20;

/// What `hallows` reads from an arm64 Image header
/// (Documentation/arm64/booting.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    pub image_size: u64,
    pub flags: u64,
}

/// Parses the first 64 bytes of an arm64 `Image`.
pub fn image_header(bytes: &[u8]) -> Result<ImageHeader, String> {
    if bytes.len() < 64 {
        return Err(format!("{} bytes: too short for an arm64 Image header (64 bytes)", bytes.len()));
    }
    if bytes[0x38..0x3c] != IMAGE_MAGIC {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            return Err("gzip-compressed: the partition boots an uncompressed Image (`gunzip` it, or take arch/arm64/boot/Image)".into());
        }
        if bytes.starts_with(b"MZ") && bytes.get(4..8) == Some(b"zimg") {
            return Err("an EFI zboot image (compressed): give the uncompressed Image".into());
        }
        return Err("not an arm64 Image: no magic \"ARM\\x64\" at offset 0x38".into());
    }
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
    let (text_offset, image_size, flags) = (u64_at(8), u64_at(16), u64_at(24));
    if image_size == 0 {
        return Err("image_size is 0: a kernel older than 3.17, which this loader does not support".into());
    }
    if flags & 1 != 0 {
        return Err("a big-endian kernel: partitions run little-endian".into());
    }
    if (flags >> 1) & 3 == 2 || (flags >> 1) & 3 == 3 {
        return Err("built for 16 or 64 KiB pages only: partitions give Linux 4 KiB stage-2 pages (take a 4 KiB-page kernel)".into());
    }
    if text_offset >= RAM_ALIGN || !text_offset.is_multiple_of(4096) {
        return Err(format!("text_offset {text_offset:#x} is not a page inside the 2 MiB block"));
    }
    Ok(ImageHeader { text_offset, image_size, flags })
}

/// Whether the command line is printable ASCII (no NUL, no control
/// characters: it becomes a device-tree string).
fn cmdline_problem(s: &str) -> Option<String> {
    if s.len() > MAX_CMDLINE_LEN {
        return Some(format!("the command line is {} bytes; at most {MAX_CMDLINE_LEN}", s.len()));
    }
    s.char_indices()
        .find(|(_, c)| !(' '..='~').contains(c))
        .map(|(i, c)| format!("the command line has {} at byte {i}: only printable ASCII is allowed", c.escape_debug()))
}

/// Checks each partition's `linux` and fills [`Partition::linux`]; grows
/// `board.hypervisor` by each one's payload (kernel, initramfs, device
/// tree: kept there so that a restart reloads them).
pub(crate) fn check(
    d: &mut Diagnostics,
    file: FileId,
    dir: Option<&Path>,
    root: Option<&Path>,
    board: &mut Board,
    raws: &[&RawPartition],
    partitions: &mut [Partition],
) {
    let mut grow = 0u64;
    for (i, raw) in raws.iter().enumerate() {
        let Some(linux) = &raw.linux else { continue };
        let span = linux.span();
        let linux = linux.get_ref();
        let p = &partitions[i];
        let name = p.name.clone();
        if board.arch != Arch::Aarch64 {
            d.error(file, span.clone(), format!("partition `{name}`: Linux partitions run on aarch64 boards only (this board is {})", board.arch.name()))
                .help("use an aarch64 board such as qemu-virt-aarch64");
            continue;
        }
        let refuse = |d: &mut Diagnostics, key: &str, s: Span<usize>, why: &str| {
            d.error(file, s, format!("partition `{name}` runs Linux: `{key}` {why}")).help("remove it (docs/linux.md says what a Linux partition has)");
        };
        if let Some(w) = &raw.watchdog {
            refuse(d, "watchdog", w.span(), "needs the RustHallows runtime's hypercall");
        }
        if let Some(s) = &raw.spec {
            refuse(d, "spec", s.span(), "describes a RustHallows service");
        }
        if let Some(l) = &raw.log {
            refuse(d, "log", l.span(), "sets the RustHallows runtime's log level (use `loglevel=` in `cmdline`)");
        }
        if let Some(b) = &raw.bootargs {
            refuse(d, "bootargs", b.span(), "are a RustHallows guest's (use `cmdline` in `linux`)");
        }
        if let Some(n) = &raw.nic {
            refuse(d, "nic", n.span(), "configures the RustHallows network stack (assign a virtio-mmio device with `devices`)");
        }
        if let Some(k) = &raw.disk {
            refuse(d, "disk", k.span(), "configures the RustHallows block driver (assign a virtio-mmio device with `devices`)");
        }
        if p.cores.len() > hallows_table::MAX_CORES.min(16) {
            d.error(file, span.clone(), format!("partition `{name}` has {} cores; a Linux partition has at most 16", p.cores.len()));
        }
        let mut file_of = |what: &str, v: &toml::Spanned<String>| -> Option<(PathBuf, u64)> {
            let path = dir.unwrap_or(Path::new("")).join(v.get_ref());
            let shown = v.get_ref().escape_debug().to_string();
            if let Some(root) = root {
                if !hallows_source::is_inside(&path, root) {
                    d.error(file, v.span(), format!("{what} \"{shown}\" is outside the project directory"))
                        .label("outside the project")
                        .help(format!("Linux images must lie inside the project, so that a manifest cannot make hallows read other files: copy it into {} (`make deps` or `hallows linux fetch` puts Debian's there), or, if you trust this manifest, run hallows with --allow-outside-paths", root.display()));
                    return None;
                }
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Some((path, m.len())),
                Ok(_) => {
                    d.error(file, v.span(), format!("{what} \"{shown}\" is not a regular file"));
                    None
                }
                Err(e) => {
                    d.error(file, v.span(), format!("cannot read {what} \"{shown}\": {e}"))
                        .help(format!("paths are relative to the manifest's directory; this one is {} (docs/linux.md says how to fetch a kernel)", path.display()));
                    None
                }
            }
        };
        let kernel = file_of("kernel", &linux.kernel);
        let initrd = match &linux.initrd {
            Some(v) => match file_of("initrd", v) {
                Some(f) => Some(f),
                None => continue,
            },
            None => None,
        };
        let Some((kernel, kernel_size)) = kernel else { continue };
        let mut head = [0u8; 64];
        let header = std::fs::File::open(&kernel)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .map_err(|e| e.to_string())
            .and_then(|()| image_header(&head));
        let header = match header {
            Ok(h) => h,
            Err(why) => {
                d.error(file, linux.kernel.span(), format!("kernel \"{}\": {why}", linux.kernel.get_ref().escape_debug()))
                    .help("a Linux partition boots an uncompressed arm64 Image (Debian's linux-image-arm64 ships one as /boot/vmlinuz-*)");
                continue;
            }
        };
        let cmdline = linux.cmdline.as_ref().map_or(String::new(), |c| c.get_ref().clone());
        if let Some(why) = cmdline_problem(&cmdline) {
            let s = linux.cmdline.as_ref().map_or(span.clone(), |c| c.span());
            d.error(file, s, format!("partition `{name}`: {why}"));
            continue;
        }
        let guest = LinuxGuest {
            kernel,
            kernel_size,
            text_offset: header.text_offset,
            image_size: header.image_size.max(kernel_size),
            initrd: initrd.as_ref().map(|(p, _)| p.clone()),
            initrd_size: initrd.map_or(0, |(_, s)| s),
            cmdline,
        };
        let layout = guest.layout();
        if layout.end > p.ram_size || layout.dtb + LinuxGuest::DTB_MAX > DTB_WINDOW {
            let need = layout.end.div_ceil(RAM_ALIGN) * RAM_ALIGN;
            d.error(
                file,
                raw.ram.as_ref().map_or(span.clone(), |r| r.span()),
                format!(
                    "partition `{name}`: the kernel needs {} (image_size) from the start of RAM, then {} for the device tree and {} for the initramfs: {} in all, more than its ram {}",
                    format_size(guest.text_offset + guest.image_size),
                    format_size(LinuxGuest::DTB_MAX),
                    format_size(guest.initrd_size),
                    format_size(layout.end),
                    format_size(p.ram_size)
                ),
            )
            .help(format!("give it at least ram = \"{}\" (Linux needs room to run besides: 128 MiB or more)", format_size(need)));
            continue;
        }
        grow = grow.saturating_add(guest.payload_size());
        partitions[i].linux = Some(guest);
    }
    if grow != 0 {
        let bigger = Range::new(board.hypervisor.base, board.hypervisor.size.saturating_add(grow));
        if !board.ram.iter().any(|r| r.contains(&bigger)) {
            d.error(file, 0..0, format!(
                "the Linux images need the hypervisor's reservation to grow by {} to {}, past the board's RAM",
                format_size(grow),
                format_size(bigger.size)
            ))
            .help("use smaller kernels or initramfs images, or a board with more RAM");
            return;
        }
        board.hypervisor = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(&IMAGE_MAGIC);
        h
    }

    #[test]
    fn image_headers() {
        assert_eq!(image_header(&header(0, 0x201_0000, 0xa)).unwrap(), ImageHeader { text_offset: 0, image_size: 0x201_0000, flags: 0xa });
        assert!(image_header(&header(0, 0, 0xa)).unwrap_err().contains("image_size is 0"));
        assert!(image_header(&header(0, 1 << 20, 1)).unwrap_err().contains("big-endian"));
        assert!(image_header(&header(0, 1 << 20, 0b100)).unwrap_err().contains("16 or 64 KiB"));
        assert!(image_header(&header(0x123, 1 << 20, 0)).unwrap_err().contains("text_offset"));
        assert!(image_header(&[0x1f, 0x8b, 0, 0]).unwrap_err().contains("too short"));
        let mut gz = vec![0u8; 64];
        gz[..2].copy_from_slice(&[0x1f, 0x8b]);
        assert!(image_header(&gz).unwrap_err().contains("gzip"));
        assert!(image_header(&[0u8; 64]).unwrap_err().contains("no magic"));
    }

    #[test]
    fn command_lines() {
        assert_eq!(cmdline_problem("console=ttyAMA0 panic=-1"), None);
        assert!(cmdline_problem("a\nb").unwrap().contains("byte 1"));
        assert!(cmdline_problem("a\0").unwrap().contains("byte 1"));
        assert!(cmdline_problem(&"x".repeat(MAX_CMDLINE_LEN + 1)).unwrap().contains("at most"));
    }

    #[test]
    fn layout_keeps_the_pieces_apart() {
        let g = LinuxGuest {
            kernel: PathBuf::new(),
            kernel_size: 32 << 20,
            text_offset: 0,
            image_size: 0x201_0000,
            initrd: None,
            initrd_size: 3 << 20,
            cmdline: String::new(),
        };
        let l = g.layout();
        assert_eq!(l.dtb, 0x220_0000);
        assert!(l.dtb >= g.image_size && l.dtb.is_multiple_of(RAM_ALIGN));
        assert_eq!(l.initrd, l.dtb + LinuxGuest::DTB_MAX);
        assert_eq!(l.end, l.initrd + (3 << 20));
        assert!(g.payload_size().is_multiple_of(RAM_ALIGN));
        assert!(g.payload_size() >= g.kernel_size + g.initrd_size + LinuxGuest::DTB_MAX);
    }
}

#[cfg(test)]
mod manifest_tests {
    use crate::CheckContext;

    /// Loads `partition` (the keys of one `[[partition]]`) beside a file
    /// `Image` of `image` bytes; returns the diagnostics' text.
    fn errors(partition: &str, image: &[u8]) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hallows-linux-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Image"), image).unwrap();
        let m = format!("version = 1\nboard = \"qemu-virt-aarch64\"\n[[partition]]\nname = \"l\"\ncores = [1, 2]\non_fault = \"stop\"\n{partition}");
        let path = dir.join("m.toml");
        let out = match crate::load_str(path.to_str().unwrap(), &m, &CheckContext::default()) {
            Ok(_) => String::new(),
            Err(d) => d.to_string(),
        };
        std::fs::remove_dir_all(&dir).ok();
        out
    }

    fn image(image_size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&0xau64.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn a_good_linux_partition_loads() {
        assert_eq!(errors("ram = \"64 MiB\"\nlinux = { kernel = \"Image\", cmdline = \"console=ttyAMA0\" }\n", &image(8 << 20)), "");
    }

    #[test]
    fn mistakes_point_at_the_manifest() {
        let e = errors("ram = \"64 MiB\"\nlinux = { kernel = \"nope\" }\n", &image(8 << 20));
        assert!(e.contains("cannot read kernel \"nope\"") && e.contains("m.toml:8:20"), "{e}");
        let e = errors("ram = \"64 MiB\"\nlinux = { kernel = \"Image\" }\n", &[0u8; 100]);
        assert!(e.contains("not an arm64 Image") && e.contains("m.toml:8:20"), "{e}");
        let e = errors("ram = \"16 MiB\"\nlinux = { kernel = \"Image\" }\n", &image(32 << 20));
        assert!(e.contains("more than its ram 16 MiB") && e.contains("m.toml:7:7") && e.contains("at least ram = \"34 MiB\""), "{e}");
        let e = errors("ram = \"64 MiB\"\nlinux = { kernel = \"Image\", cmdline = \"a\\tb\" }\n", &image(8 << 20));
        assert!(e.contains("only printable ASCII") && e.contains("m.toml:8:39"), "{e}");
        let e = errors("ram = \"64 MiB\"\nguest = \"hello\"\nlinux = { kernel = \"Image\" }\n", &image(8 << 20));
        assert!(e.contains("has both `guest` and `linux`"), "{e}");
        let e = errors("ram = \"64 MiB\"\n", &image(8 << 20));
        assert!(e.contains("has neither `guest` nor `linux`"), "{e}");
        let e = errors("ram = \"64 MiB\"\nwatchdog = \"100 ms\"\nlinux = { kernel = \"Image\" }\n", &image(8 << 20));
        assert!(e.contains("`watchdog` needs the RustHallows runtime"), "{e}");
    }
}

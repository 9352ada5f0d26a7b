//! UEFI boot (docs/deploy.md): the EFI system partition image `hallows
//! build --uefi` writes, and the firmware QEMU boots it with.
//!
//! The disk is a FAT file system without a partition table (UEFI firmware
//! reads such a "superfloppy" as one volume) holding the loader
//! (`hallows-uefi`) as the removable-media default `EFI/BOOT/BOOTAA64.EFI`
//! or `BOOTX64.EFI`, and `HALLOWS/IMAGE.BIN`: a
//! [`hallows_table::handoff::ImageHeader`] followed by the same image the
//! direct boot loads. A `startup.nsh` starts the loader should the firmware
//! fall through to its shell.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hallows_table::handoff::{ImageHeader, HANDOFF_VERSION, IMAGE_MAGIC};
use vmm_config::{Arch, System};
use zerocopy::{FromZeros, IntoBytes};

use crate::image::Elf;

/// The Rust target the loader is built for.
pub fn loader_target(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "aarch64-unknown-uefi",
        Arch::X86_64 => "x86_64-unknown-uefi",
    }
}

/// The removable-media boot path UEFI looks for on each architecture.
pub fn boot_file(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "BOOTAA64.EFI",
        Arch::X86_64 => "BOOTX64.EFI",
    }
}

/// The ESP disk image path next to the direct image `image`
/// (`NAME.img` -> `NAME.esp.img`).
pub fn disk_path(image: &Path) -> PathBuf {
    image.with_extension("esp.img")
}

/// Whether `path` is an ESP disk image (booted through the firmware).
pub fn is_disk(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(".esp.img"))
}

/// `\HALLOWS\IMAGE.BIN` for the composed `image`: its header names where
/// the image goes, where to enter it (aarch64 `_start`, x86_64
/// `_start32`), and the board's hypervisor reservation.
pub fn image_file(sys: &System, hypervisor_elf: &[u8], image: &[u8]) -> Result<Vec<u8>> {
    let hv = Elf::parse(hypervisor_elf).context("reading the hypervisor ELF")?;
    let (arch, entry_sym) = match sys.board.arch {
        Arch::Aarch64 => (hallows_table::arch::AARCH64, "_start"),
        Arch::X86_64 => (hallows_table::arch::X86_64, "_start32"),
    };
    let entry = hv.symbol(entry_sym).with_context(|| format!("the hypervisor has no `{entry_sym}`"))?;
    let load = hv.symbol("__hv_start").context("the hypervisor has no `__hv_start`")?;
    let r = sys.board.hypervisor;
    if !r.base.is_multiple_of(4096) || !r.size.is_multiple_of(4096) {
        bail!("board {}: the hypervisor reservation {r} is not 4 KiB aligned, which UEFI page allocation needs", sys.board.name);
    }
    let mut h = ImageHeader::new_zeroed();
    h.magic = IMAGE_MAGIC;
    h.version = HANDOFF_VERSION;
    h.arch = arch;
    h.header_size = std::mem::size_of::<ImageHeader>() as u32;
    h.load = load;
    h.entry = entry;
    h.reserve = hallows_table::MemRange { base: r.base, size: r.size };
    h.image_size = image.len() as u64;
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(image);
    Ok(out)
}

/// Writes the FAT disk image at `path`: the loader and the image file.
pub fn write_disk(path: &Path, arch: Arch, loader: &[u8], image_file: &[u8]) -> Result<()> {
    // Room for both files and FAT's own structures, rounded to MiB; at
    // least 34 MiB, so that the volume formats as FAT32 as the UEFI
    // specification asks of an ESP (FAT16 works on OVMF and AAVMF, not on
    // every server).
    let need = (loader.len() + image_file.len()) as u64 * 5 / 4 + (1 << 20);
    let size = need.max(34 << 20).next_multiple_of(1 << 20);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_len(size)?;
    let opts = fatfs::FormatVolumeOptions::new().volume_label(*b"HALLOWS    ").fat_type(fatfs::FatType::Fat32);
    fatfs::format_volume(&mut file, opts).with_context(|| format!("formatting {}", path.display()))?;
    file.seek(SeekFrom::Start(0))?;
    let fs = fatfs::FileSystem::new(&mut file, fatfs::FsOptions::new())?;
    {
        let root = fs.root_dir();
        let boot = root.create_dir("EFI")?.create_dir("BOOT")?;
        boot.create_file(boot_file(arch))?.write_all(loader)?;
        root.create_dir("HALLOWS")?.create_file("IMAGE.BIN")?.write_all(image_file)?;
        let nsh = format!("\\EFI\\BOOT\\{}\r\n", boot_file(arch));
        root.create_file("startup.nsh")?.write_all(nsh.as_bytes())?;
    }
    fs.unmount()?;
    Ok(())
}

/// The firmware files of Debian's `qemu-efi-aarch64` and `ovmf` packages
/// (`make deps`): code (read-only) and the variable store template.
pub fn firmware(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Aarch64 => ("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),
        Arch::X86_64 => ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    }
}

/// QEMU arguments that boot the disk `disk` through the firmware: its code
/// and a fresh writable copy of its variable store (next to the disk, so
/// that no run sees another's boot entries) as pflash, the disk as the
/// first boot device (a virtio-blk PCI device, which no partition is given).
pub fn qemu_args(arch: Arch, disk: &Path) -> Result<Vec<String>> {
    let (code, vars) = firmware(arch);
    for f in [code, vars] {
        if !Path::new(f).exists() {
            bail!("{f} is missing: install Debian's qemu-efi-aarch64 and ovmf packages (`make deps`)");
        }
    }
    let copy = disk.with_extension("vars.fd");
    std::fs::copy(vars, &copy).with_context(|| format!("copying {vars} to {}", copy.display()))?;
    Ok(vec![
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", copy.display()),
        "-drive".into(),
        format!("if=none,id=hallows-esp,format=raw,file={}", disk.display()),
        "-device".into(),
        "virtio-blk-pci,drive=hallows-esp,bootindex=0".into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_holds_the_loader_the_image_and_startup_nsh() {
        let dir = std::env::temp_dir().join(format!("hallows-uefi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.esp.img");
        assert!(is_disk(&path));
        write_disk(&path, Arch::X86_64, b"MZloader", b"HALLOWSUimage").unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let fs = fatfs::FileSystem::new(&mut f, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut fs.root_dir().open_file("EFI/BOOT/BOOTX64.EFI").unwrap(), &mut buf).unwrap();
        assert_eq!(buf, b"MZloader");
        buf.clear();
        std::io::Read::read_to_end(&mut fs.root_dir().open_file("HALLOWS/IMAGE.BIN").unwrap(), &mut buf).unwrap();
        assert_eq!(buf, b"HALLOWSUimage");
        drop(fs);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

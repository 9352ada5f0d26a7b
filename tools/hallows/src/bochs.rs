//! Running an x86_64 image under Bochs: Intel VMX with EPT
//! (`corei7_skylake_x`) and a second SVM implementation (`ryzen`, with NRIP
//! save) that QEMU cannot emulate.
//!
//! Bochs has no `-kernel`: it boots a BIOS disk. The disk is the
//! hypervisor's own boot sector (assembled into the hypervisor image as
//! `bios_boot_sector`, with the number of sectors to load patched in),
//! followed by the very image QEMU loads, padded to whole cylinders. The
//! boot sector hands the hypervisor a multiboot information block built
//! from the BIOS memory map, so the hypervisor boots the same way.
//!
//! Status: the hypervisor ends Bochs through its shutdown port (0x8900)
//! for every status, so Bochs' exit code says nothing; the system's status
//! is read from the hypervisor's last line, `[hallows] machine exit status
//! N`, on the serial log (no partition can print a `[hallows]` line: the
//! manifest check reserves that name).
//!
//! The bochsrc is attack surface: every option below was chosen so that a
//! guest reaches nothing of the emulator. There is no `magic_break` (a
//! guest's `xchg bx, bx` would stop the whole machine) and no
//! `port_e9_hack`; COM1, port 0x8900 and every other port are intercepted
//! by the hypervisor; the VGA display, sound and speaker are no guest's
//! (not in any nested table, or disabled).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use wait_timeout::ChildExt;

use crate::image::{Elf, Image};
use crate::qemu::Outcome;

/// Bytes per cylinder of the geometry Bochs assumes for a flat disk
/// (16 heads, 63 sectors of 512 bytes).
const CYLINDER: usize = 16 * 63 * 512;

/// The disk image: boot sector, then the hypervisor image from sector 1.
pub fn disk(image: &Image, hypervisor_elf: &[u8]) -> Result<Vec<u8>> {
    let hv = Elf::parse(hypervisor_elf)?;
    let start = hv.symbol("bios_boot_sector").context("the hypervisor has no bios_boot_sector (not x86_64?)")?;
    let off = start.checked_sub(image.load_address).context("boot sector below the image")? as usize;
    let mut sector = image.bytes.get(off..off + 512).context("boot sector outside the image")?.to_vec();
    if sector[510..] != [0x55, 0xAA] {
        bail!("the boot sector has no 0x55AA signature");
    }
    let sectors = image.bytes.len().div_ceil(512) as u32;
    sector[8..12].copy_from_slice(&sectors.to_le_bytes());
    let mut out = sector;
    out.extend_from_slice(&image.bytes);
    // The boot sector reads 64 sectors at a time: room for the last read,
    // then whole cylinders.
    let len = (out.len() + 64 * 512).div_ceil(CYLINDER) * CYLINDER;
    out.resize(len, 0);
    Ok(out)
}

/// The bochsrc for `cpu` (a Bochs CPU model) and the given files. With
/// `clock: sync=none` virtual time is instructions / `ips`: a low `ips`
/// keeps the BIOS's timed waits (and the cores it parks, spinning, meanwhile)
/// from costing billions of emulated instructions.
pub fn config(cpu: &str, megs: u32, disk: &Path, serial: &Path, log: &Path) -> String {
    format!(
        "megs: {megs}\n\
         cpu: model={cpu}, count=4, ips=4000000, reset_on_triple_fault=0, ignore_bad_msrs=0\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/vgabios/vgabios.bin\n\
         ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14\n\
         ata0-master: type=disk, path={}, mode=flat\n\
         boot: disk\n\
         display_library: term\n\
         com1: enabled=1, mode=file, dev={}\n\
         log: {}\n\
         panic: action=fatal\n\
         clock: sync=none, time0=1\n\
         sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy\n\
         speaker: enabled=0\n",
        disk.display(),
        serial.display(),
        log.display()
    )
}

/// Boots `disk` under Bochs with CPU model `cpu`; files go to `dir`.
pub fn run(disk_bytes: &[u8], cpu: &str, dir: &Path, timeout: Duration) -> Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let disk = dir.join("disk.img");
    let serial = dir.join("serial.log");
    let rc = dir.join("bochsrc");
    let cmds = dir.join("cmds");
    std::fs::write(&disk, disk_bytes)?;
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(disk.with_extension("img.lock"));
    // Relative names: the files are in Bochs' working directory.
    std::fs::write(&rc, config(cpu, 256, Path::new("disk.img"), Path::new("serial.log"), Path::new("bochs.log")))?;
    std::fs::write(&cmds, "c\nquit\n")?;
    let mut child = Command::new("bochs")
        .arg("-q")
        .arg("-f")
        .arg(&rc)
        .arg("-rc")
        .arg(&cmds)
        .env("TERM", "dumb")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting bochs (is it installed? `make deps`)")?;
    let finished = child.wait_timeout(timeout)?.is_some();
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).replace('\r', "");
    let status = finished
        .then(|| hallows_abi::console::reported_status(&output).unwrap_or(crate::image_x86::NO_STATUS));
    let _ = std::io::stderr().flush();
    Ok(Outcome { ended: if finished { crate::qemu::Ended::Exited } else { crate::qemu::Ended::TimedOut }, status, output })
}

//! Boards: built-in board files and the checks every board file must pass.
//!
//! Boards are data: a board is a TOML file (see `boards/`), either built in
//! by name or named by path from a manifest. This module turns one into a
//! [`Board`] after checking that it is self-consistent (no overlapping RAM,
//! the hypervisor reservation inside RAM, MMIO outside RAM, within the
//! table's limits). It must not know about partitions.

use std::collections::HashMap;

use hallows_table::{MAX_CORES, MAX_RAM_RANGES};

use crate::diag::{Diagnostics, FileId};
use crate::raw::{ArchName, RawBoard, RawDevice, RawRange};
use crate::shape::{deserialize_item, parse_document};
use crate::{Arch, Board, Device, QemuSpec, Range, PAGE_SIZE};

/// Board files compiled into the tool, by name.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    (
        "qemu-virt-aarch64",
        include_str!("../boards/qemu-virt-aarch64.toml"),
    ),
    ("qemu-x86_64", include_str!("../boards/qemu-x86_64.toml")),
    ("qemu-microvm", include_str!("../boards/qemu-microvm.toml")),
    ("uefi-aarch64", include_str!("../boards/uefi-aarch64.toml")),
    ("uefi-x86_64", include_str!("../boards/uefi-x86_64.toml")),
];

/// Parses and checks a board file already added to `d` as `file`.
pub(crate) fn load_board(d: &mut Diagnostics, file: FileId, src: &str) -> Option<Board> {
    let doc = parse_document(d, file, src)?;
    let raw: RawBoard = deserialize_item(d, file, "board file", doc)?;
    let before = d.len();
    let board = check_board(d, file, raw);
    (d.len() == before).then_some(board)
}

fn range(d: &mut Diagnostics, file: FileId, what: &str, r: &toml::Spanned<RawRange>) -> Range {
    let out = Range::new(r.get_ref().base, r.get_ref().size.0);
    check_range(d, file, what, out, r.span());
    out
}

fn check_range(
    d: &mut Diagnostics,
    file: FileId,
    what: &str,
    r: Range,
    span: std::ops::Range<usize>,
) {
    if r.size == 0 {
        d.error(file, span, format!("{what} has size 0"))
            .help("give the range its real size");
    } else if r.base.checked_add(r.size).is_none() {
        d.error(
            file,
            span,
            format!("{what} wraps past the end of the address space"),
        );
    }
}

fn device(d: &mut Diagnostics, file: FileId, raw: &toml::Spanned<RawDevice>) -> Device {
    let r = raw.get_ref();
    let dev = Device {
        name: r.name.get_ref().clone(),
        compatible: r.compatible.clone(),
        mmio: Range::new(r.base, r.size.0),
        irqs: r.irqs.clone(),
        qemu_bus: r.qemu_bus.clone(),
    };
    if let Err(why) = crate::check::valid_name(&dev.name) {
        d.error(
            file,
            r.name.span(),
            format!("device name \"{}\" {why}", dev.name.escape_debug()),
        );
    }
    if dev.compatible.len() > crate::MAX_COMPATIBLE_LEN {
        d.error(
            file,
            raw.span(),
            format!(
                "compatible string of device `{}` is {} bytes; the system table holds at most {}",
                dev.name,
                dev.compatible.len(),
                crate::MAX_COMPATIBLE_LEN
            ),
        )
        .help("shorten it: the guest matches drivers on it (`virtio,mmio`, `arm,pl031`)");
    }
    check_range(
        d,
        file,
        &format!("MMIO of device `{}`", dev.name),
        dev.mmio,
        raw.span(),
    );
    dev
}

fn check_board(d: &mut Diagnostics, file: FileId, raw: RawBoard) -> Board {
    let name = raw.name.get_ref().clone();
    if name.trim().is_empty() {
        d.error(file, raw.name.span(), "board name is empty");
    }
    let arch = match raw.arch.get_ref() {
        ArchName::Aarch64 => Arch::Aarch64,
        ArchName::X86_64 => Arch::X86_64,
    };

    let cores: Vec<u64> = raw.cores.get_ref().iter().map(|c| *c.get_ref()).collect();
    if cores.is_empty() {
        d.error(file, raw.cores.span(), "board has no cores")
            .help("list the hardware id of every core");
    }
    if cores.len() > MAX_CORES {
        d.error(
            file,
            raw.cores.span(),
            format!(
                "board has {} cores; the system table holds at most {MAX_CORES}",
                cores.len()
            ),
        )
        .help("list only the cores the system uses");
    }
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, c) in raw.cores.get_ref().iter().enumerate() {
        if let Some(first) = seen.insert(*c.get_ref(), i) {
            d.error(
                file,
                c.span(),
                format!(
                    "core hardware id {:#x} is listed twice (core indices {first} and {i})",
                    c.get_ref()
                ),
            );
        }
    }

    let mut ram: Vec<(Range, std::ops::Range<usize>)> = raw
        .ram
        .get_ref()
        .iter()
        .map(|r| (range(d, file, "RAM range", r), r.span()))
        .collect();
    if ram.is_empty() {
        d.error(file, raw.ram.span(), "board has no RAM");
    }
    if ram.len() > MAX_RAM_RANGES {
        d.error(
            file,
            raw.ram.span(),
            format!(
                "board has {} RAM ranges; the system table holds at most {MAX_RAM_RANGES}",
                ram.len()
            ),
        )
        .help("merge adjacent ranges, or leave out ranges the system does not need");
    }
    ram.sort_by_key(|(r, _)| r.base);
    for w in ram.windows(2) {
        if w[0].0.overlaps(&w[1].0) {
            d.error(
                file,
                w[1].1.clone(),
                format!("RAM range {} overlaps RAM range {}", w[1].0, w[0].0),
            )
            .related(file, w[0].1.clone(), "overlapped range");
        }
    }

    let hypervisor = range(d, file, "hypervisor reservation", &raw.hypervisor);
    if hypervisor.size != 0 && !ram.iter().any(|(r, _)| r.contains(&hypervisor)) {
        d.error(
            file,
            raw.hypervisor.span(),
            format!("hypervisor reservation {hypervisor} is not inside one RAM range"),
        )
        .help("the hypervisor is loaded into RAM: put its reservation inside a `ram` range");
    }
    if !hypervisor.base.is_multiple_of(PAGE_SIZE) || !hypervisor.size.is_multiple_of(PAGE_SIZE) {
        d.error(
            file,
            raw.hypervisor.span(),
            "hypervisor reservation is not page aligned (4 KiB)",
        );
    }

    let console_raw = raw.console.get_ref();
    let console = device(d, file, &raw.console);
    let (gic_dist, gic_redist) = match (&raw.gic, arch) {
        (Some(g), Arch::Aarch64) => (
            range(d, file, "GIC distributor", &g.dist),
            range(d, file, "GIC redistributor", &g.redist),
        ),
        (None, Arch::Aarch64) => {
            d.error(file, raw.arch.span(), "an aarch64 board needs a [gic] section")
                .help("give the GICv3 distributor and redistributor: [gic] dist = {..}, redist = {..}");
            (Range::new(0, 0), Range::new(0, 0))
        }
        (Some(_), Arch::X86_64) => {
            d.error(file, raw.arch.span(), "an x86_64 board has no GIC")
                .help("remove the [gic] section");
            (Range::new(0, 0), Range::new(0, 0))
        }
        (None, Arch::X86_64) => (Range::new(0, 0), Range::new(0, 0)),
    };
    let devices: Vec<Device> = raw.device.iter().map(|r| device(d, file, r)).collect();

    // MMIO may not be RAM, and the hypervisor's own MMIO (console, GIC) is
    // exclusive. Two assignable devices may overlap (aliases); assigning both
    // to different partitions is refused by the manifest check. On x86_64
    // the console is a range of I/O ports, a separate address space.
    let mut mmio: Vec<(String, Range, std::ops::Range<usize>, bool)> = Vec::new();
    match (arch, &raw.gic) {
        (Arch::Aarch64, Some(g)) => {
            mmio.push(("console".to_owned(), console.mmio, raw.console.span(), true));
            mmio.push(("GIC distributor".to_owned(), gic_dist, g.dist.span(), true));
            mmio.push(("GIC redistributor".to_owned(), gic_redist, g.redist.span(), true));
        }
        (Arch::Aarch64, None) => {
            mmio.push(("console".to_owned(), console.mmio, raw.console.span(), true));
        }
        (Arch::X86_64, _) => {
            // The interrupt controllers are the hypervisor's: a partition
            // given an I/O APIC could aim any interrupt at any core.
            for (what, base, size) in crate::X86_INTERRUPT_CONTROLLERS {
                mmio.push((what.to_owned(), Range::new(base, size), raw.arch.span(), true));
            }
            if console.mmio.end() > 0x1_0000 {
                d.error(
                    file,
                    raw.console.span(),
                    format!("console ports {} are beyond the 64 Ki I/O port space", console.mmio),
                )
                .help("on x86_64 the console is a 16550 I/O port range, e.g. COM1: base = 0x3f8, size = 8");
            }
        }
    }
    mmio.extend(
        devices
            .iter()
            .zip(&raw.device)
            .map(|(dev, r)| (format!("device `{}`", dev.name), dev.mmio, r.span(), false)),
    );
    for (i, (what, r, span, exclusive)) in mmio.iter().enumerate() {
        if let Some((rr, rspan)) = ram.iter().find(|(rr, _)| rr.overlaps(r)) {
            d.error(
                file,
                span.clone(),
                format!("MMIO of {what} ({r}) overlaps RAM ({rr})"),
            )
            .related(file, rspan.clone(), "RAM range");
        }
        for (what2, r2, span2, exclusive2) in &mmio[..i] {
            if (*exclusive || *exclusive2) && r.overlaps(r2) {
                d.error(
                    file,
                    span.clone(),
                    format!("MMIO of {what} ({r}) overlaps MMIO of {what2} ({r2})"),
                )
                .related(file, span2.clone(), "overlapped here");
            }
        }
    }

    let mut names: HashMap<&str, std::ops::Range<usize>> = HashMap::new();
    names.insert(console.name.as_str(), console_raw.name.span());
    for r in &raw.device {
        let n = r.get_ref().name.get_ref().as_str();
        if let Some(first) = names.get(n) {
            d.error(
                file,
                r.get_ref().name.span(),
                format!("device name `{n}` is used twice"),
            )
            .related(file, first.clone(), "first used here");
        } else {
            names.insert(n, r.get_ref().name.span());
        }
    }

    let qemu = match &raw.qemu {
        Some(q) => {
            if q.smp as usize != cores.len() {
                d.error(
                    file,
                    raw.cores.span(),
                    format!(
                        "board has {} cores but its qemu section says smp = {}",
                        cores.len(),
                        q.smp
                    ),
                )
                .help("make `qemu.smp` the number of `cores`");
            }
            QemuSpec {
                binary: q.binary.clone(),
                machine: q.machine.clone(),
                cpu: q.cpu.clone(),
                memory_mib: q.memory_mib,
                smp: q.smp,
                extra: q.extra.clone(),
            }
        }
        None => QemuSpec::default(),
    };

    Board {
        name,
        arch,
        cores,
        ram: ram.into_iter().map(|(r, _)| r).collect(),
        hypervisor,
        console: console.mmio,
        console_name: console.name,
        console_irqs: console.irqs,
        gic_dist,
        gic_redist,
        devices,
        qemu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_qemu_virt_matches_qemu() {
        let mut d = Diagnostics::new();
        let (name, src) = BUILTIN[0];
        let f = d.add_file(name, src);
        let b = load_board(&mut d, f, src).unwrap_or_else(|| panic!("{d}"));
        assert_eq!(b.name, "qemu-virt-aarch64");
        assert_eq!(b.arch, Arch::Aarch64);
        assert_eq!(b.cores, vec![0, 1, 2, 3]);
        assert_eq!(b.ram, vec![Range::new(0x4000_0000, 512 << 20)]);
        assert_eq!(b.hypervisor, Range::new(0x4000_0000, 16 << 20));
        assert_eq!(b.console, Range::new(0x0900_0000, 0x1000));
        assert_eq!(b.console_irqs, vec![33]);
        assert_eq!(b.gic_dist, Range::new(0x0800_0000, 0x1_0000));
        assert_eq!(b.gic_redist, Range::new(0x080A_0000, 0xF6_0000));
        assert_eq!(b.devices.len(), 34);
        let rtc = b.device("rtc").unwrap();
        assert_eq!(
            (rtc.mmio.base, rtc.irqs.as_slice()),
            (0x0901_0000, &[34][..])
        );
        assert_eq!(b.device("gpio").unwrap().irqs, vec![39]);
        for i in 0..32u32 {
            let v = b.device(&format!("virtio{i}")).unwrap();
            assert_eq!(
                v.mmio,
                Range::new(0x0a00_0000 + u64::from(i) * 0x200, 0x200)
            );
            assert_eq!(v.irqs, vec![48 + i]);
            assert_eq!(v.compatible, "virtio,mmio");
        }
        let q = b.qemu().unwrap();
        assert_eq!(q.binary, "qemu-system-aarch64");
        assert_eq!(q.machine, "virt,virtualization=on,gic-version=3");
        assert_eq!(q.cpu, "max,pauth-impdef=on");
        assert_eq!((q.memory_mib, q.smp), (512, 4));
    }
}

#[cfg(test)]
mod x86_tests {
    use super::*;

    fn load(src: &str) -> Result<Board, String> {
        let mut d = Diagnostics::new();
        let f = d.add_file("board.toml", src);
        load_board(&mut d, f, src).ok_or_else(|| d.to_string())
    }

    #[test]
    fn builtin_qemu_x86_64_has_com1_ports_and_no_gic() {
        let (_, src) = BUILTIN.iter().find(|(n, _)| *n == "qemu-x86_64").expect("built in");
        let b = load(src).unwrap();
        assert_eq!(b.arch, Arch::X86_64);
        assert_eq!(b.cores, vec![0, 1, 2, 3]);
        assert_eq!(b.console, Range::new(0x3f8, 8));
        assert_eq!((b.gic_dist.size, b.gic_redist.size), (0, 0));
        assert_eq!(b.hypervisor, Range::new(0x10_0000, 15 << 20));
        assert!(b.qemu().unwrap().cpu.starts_with("EPYC,-rdseed,"));
    }

    #[test]
    fn gic_is_required_on_aarch64_and_refused_on_x86_64() {
        let x86 = BUILTIN.iter().find(|(n, _)| *n == "qemu-x86_64").unwrap().1;
        let gic = "[gic]\ndist = { base = 0xfec0_0000, size = 0x1000 }\nredist = { base = 0xfec1_0000, size = 0x1000 }\n";
        let err = load(&x86.replace("[qemu]", &format!("{gic}[qemu]"))).map(|_| ()).unwrap_err();
        assert!(err.contains("an x86_64 board has no GIC"), "{err}");
        let arm = BUILTIN.iter().find(|(n, _)| *n == "qemu-virt-aarch64").unwrap().1;
        let start = arm.find("[gic]").unwrap();
        let end = arm[start..].find("[qemu]").unwrap() + start;
        let no_gic = format!("{}{}", &arm[..start], &arm[end..]);
        let err = load(&no_gic).map(|_| ()).unwrap_err();
        assert!(err.contains("an aarch64 board needs a [gic] section"), "{err}");
    }

    /// QEMU 7.2's `microvm` with ACPI and the second I/O APIC: 24
    /// virtio-mmio transports 512 bytes apart from 0xFEB00000, transport i
    /// on GSI 24 + i (hw/i386/microvm.c), each on its own QEMU bus.
    #[test]
    fn builtin_qemu_microvm_lists_its_virtio_transports() {
        let (_, src) = BUILTIN.iter().find(|(n, _)| *n == "qemu-microvm").expect("built in");
        let b = load(src).unwrap();
        assert_eq!(b.arch, Arch::X86_64);
        assert_eq!(b.cores, vec![0, 1, 2, 3]);
        assert_eq!(b.console, Range::new(0x3f8, 8));
        assert_eq!(b.devices.len(), 24);
        for i in 0..24u32 {
            let v = b.device(&format!("virtio{i}")).unwrap();
            assert_eq!(v.mmio, Range::new(0xfeb0_0000 + u64::from(i) * 0x200, 0x200));
            assert_eq!(v.irqs, vec![24 + i]);
            assert_eq!(v.qemu_bus.as_deref(), Some(format!("virtio-mmio-bus.{i}").as_str()));
        }
        let q = b.qemu().unwrap();
        assert!(q.machine.starts_with("microvm,") && q.machine.contains("ioapic2=on") && q.machine.contains("pit=on"), "{}", q.machine);
        assert!(q.cpu.starts_with("EPYC,-rdseed,"), "{}", q.cpu);
    }

    #[test]
    fn x86_devices_stay_off_the_interrupt_controllers() {
        let x86 = BUILTIN.iter().find(|(n, _)| *n == "qemu-microvm").unwrap().1;
        for (base, what) in [("0xfec10000", "the I/O APICs"), ("0xfee00000", "the local APICs")] {
            let err = load(&x86.replace("base = 0xfeb02e00", &format!("base = {base}"))).map(|_| ()).unwrap_err();
            assert!(err.contains("MMIO of device `virtio23`") && err.contains(&format!("overlaps MMIO of {what}")), "{err}");
        }
    }

    #[test]
    fn x86_console_must_be_in_the_port_space() {
        let x86 = BUILTIN.iter().find(|(n, _)| *n == "qemu-x86_64").unwrap().1;
        let err = load(&x86.replace("base = 0x3f8, size = 8", "base = 0xfff8, size = 16")).map(|_| ()).unwrap_err();
        assert!(err.contains("beyond the 64 Ki I/O port space"), "{err}");
    }
}

//! The `hallows check`, `hallows inspect` and `hallows schema` subcommands,
//! as library functions the tool's `main` dispatches to.
//!
//! Output goes to stdout (results) and stderr (diagnostics); each returns
//! the process exit code. They must not exit the process themselves.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;

use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};

use crate::size::format_size;
use crate::{load, CheckContext, Diagnostics, MapOwner, System};

/// Writes `d` to stderr as `check` does (colour on a terminal).
pub fn report(d: &Diagnostics) {
    let choice = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let mut err = StandardStream::stderr(choice);
    if d.emit(&mut err).is_err() {
        eprint!("{d}");
    }
}

/// One line describing a valid system.
pub fn summary(path: &Path, s: &System) -> String {
    let cores: usize = s.partitions.iter().map(|p| p.cores.len()).sum();
    let ram: u64 = s.partitions.iter().map(|p| p.ram_size).sum();
    format!(
        "{}: OK: board {}, {} partition{}, {} channel{}, {cores} of {} cores, {} of partition RAM",
        path.display(),
        s.board.name,
        s.partitions.len(),
        if s.partitions.len() == 1 { "" } else { "s" },
        s.channels.len(),
        if s.channels.len() == 1 { "" } else { "s" },
        s.board.cores.len(),
        format_size(ram)
    )
}

/// `hallows check`: 0 if the manifest is valid (one summary line on stdout),
/// 1 with every diagnostic on stderr if not.
pub fn check(path: &Path, ctx: &CheckContext) -> i32 {
    match load(path, ctx) {
        Ok(s) => {
            println!("{}", summary(path, &s));
            0
        }
        Err(d) => {
            report(&d);
            1
        }
    }
}

/// `hallows inspect`: prints the resolved system; 1 with diagnostics if invalid.
pub fn inspect(path: &Path, ctx: &CheckContext) -> i32 {
    match load(path, ctx) {
        Ok(s) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error of the manifest.
            let _ = out.write_all(render(&s).as_bytes());
            0
        }
        Err(d) => {
            report(&d);
            1
        }
    }
}

/// `hallows schema`: the JSON Schema of the manifest format, pretty-printed.
pub fn schema() -> String {
    let schema = schemars::schema_for!(crate::raw::RawManifest);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// The JSON Schema of board files.
pub fn board_schema() -> String {
    let schema = schemars::schema_for!(crate::raw::RawBoard);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// An exact size where one is short ("16 MiB"), else one decimal ("221.9 MiB").
fn approx_size(bytes: u64) -> String {
    let exact = format_size(bytes);
    if exact.split(' ').next().is_some_and(|n| n.len() <= 4) {
        return exact;
    }
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    match units.iter().find(|(_, m)| bytes >= *m) {
        Some((u, m)) => format!("{:.1} {u}", bytes as f64 / *m as f64),
        None => exact,
    }
}

/// Left-aligned text table with a header row and a rule under it.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", text.join("  ").trim_end());
    };
    line(
        out,
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    line(
        out,
        &width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    );
    for row in rows {
        line(out, row);
    }
}

fn ranges(list: &[u32]) -> String {
    list.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The resolved system as readable tables (what `inspect` prints).
pub fn render(s: &System) -> String {
    let b = &s.board;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "board {} ({}), {} cores, RAM {}",
        b.name,
        b.arch.name(),
        b.cores.len(),
        b.ram
            .iter()
            .map(|r| format!("{r} ({})", format_size(r.size)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "hypervisor reservation {} ({})",
        b.hypervisor,
        format_size(b.hypervisor.size)
    );
    let _ = writeln!(out, "\npartitions");
    let rows: Vec<Vec<String>> = s
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                ranges(&p.cores),
                format_size(p.ram_size),
                format!("{}{}", p.ram(), if p.ram_fixed { " fixed" } else { "" }),
                // A Linux partition: its kernel's file name.
                match &p.linux {
                    Some(l) => format!("linux {}", l.kernel.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())),
                    None => p.guest.clone(),
                },
                p.on_fault.to_string(),
                if p.devices.is_empty() {
                    "-".into()
                } else {
                    p.devices.join(",")
                },
                if let Some(l) = p.linux.as_ref().filter(|l| !l.cmdline.is_empty()) {
                    format!("{:?}", l.cmdline)
                } else if p.bootargs.is_empty() {
                    "-".into()
                } else {
                    format!("{:?}", p.bootargs)
                },
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "name", "cores", "ram", "physical", "guest", "on_fault", "devices", "bootargs",
        ],
        &rows,
    );

    let _ = writeln!(out, "\nchannels");
    if s.channels.is_empty() {
        let _ = writeln!(out, "  (none)");
    } else {
        let rows: Vec<Vec<String>> = s
            .channels
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    format!("{} -> {}", c.from, c.to),
                    format!("{} x {} B", c.slots, c.slot_size),
                    c.notify.to_string(),
                    c.tuning.to_string(),
                    c.memory().to_string(),
                    format_size(c.size),
                ]
            })
            .collect();
        table(
            &mut out,
            &["name", "route", "slots", "notify", "tuning", "physical", "size"],
            &rows,
        );
    }

    let net: Vec<&crate::Partition> = s
        .partitions
        .iter()
        .filter(|p| p.net.nic.is_some() || p.net.upstream.is_some())
        .collect();
    if !net.is_empty() {
        let _ = writeln!(out, "\nnetwork");
        let rows: Vec<Vec<String>> = net
            .iter()
            .map(|p| {
                let (how, addr) = match (&p.net.nic, &p.net.upstream) {
                    (Some(n), _) => (
                        format!(
                            "nic {} on {} ({}), {}",
                            n.device,
                            n.qemu_bus,
                            n.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                            match n.mode {
                                crate::NicMode::Poll => "poll",
                                crate::NicMode::Interrupt => "interrupt",
                            }
                        ),
                        format!(
                            "{}/{}{}",
                            n.address,
                            n.prefix_len,
                            n.router.map(|r| format!(" via {r}")).unwrap_or_default()
                        ),
                    ),
                    (None, Some(gw)) => (format!("behind gateway `{gw}`"), "-".into()),
                    (None, None) => ("-".into(), "-".into()),
                };
                let mut ports: Vec<String> = p.net.listen.iter().map(|l| format!("{l}")).collect();
                ports.extend(p.net.routes.iter().map(|r| format!("{} -> {}", r.port, r.to)));
                let fwd: Vec<String> = s
                    .forwards
                    .iter()
                    .filter(|f| f.nic_owner == p.name)
                    .map(|f| format!("127.0.0.1:{} -> {}", f.host, f.port))
                    .collect();
                vec![
                    p.name.clone(),
                    how,
                    addr,
                    if ports.is_empty() { "-".into() } else { ports.join(", ") },
                    if fwd.is_empty() { "-".into() } else { fwd.join(", ") },
                ]
            })
            .collect();
        table(&mut out, &["partition", "how", "address", "ports", "host forwards"], &rows);
    }

    let _ = writeln!(out, "\nphysical memory map");
    let map = s.memory_map();
    let hidden = map
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                MapOwner::Device {
                    partition: None,
                    ..
                }
            )
        })
        .count();
    let rows: Vec<Vec<String>> = map
        .into_iter()
        .filter(|(_, o)| {
            !matches!(
                o,
                MapOwner::Device {
                    partition: None,
                    ..
                }
            )
        })
        .map(|(r, owner)| {
            let (kind, what) = match owner {
                MapOwner::Hypervisor => ("ram", "hypervisor".to_owned()),
                MapOwner::Partition(n) => ("ram", format!("partition {n}")),
                MapOwner::Channel(n) => ("ram", format!("channel {n}")),
                MapOwner::FreeRam => ("ram", "free".to_owned()),
                MapOwner::Console if b.arch == crate::Arch::X86_64 => {
                    ("ioport", format!("console {} (hypervisor)", b.console_name))
                }
                MapOwner::Console => ("mmio", format!("console {} (hypervisor)", b.console_name)),
                MapOwner::GicDist => ("mmio", "GIC distributor (hypervisor)".to_owned()),
                MapOwner::GicRedist => ("mmio", "GIC redistributor (hypervisor)".to_owned()),
                MapOwner::Device { name, partition } => (
                    "mmio",
                    format!(
                        "device {name} -> {}",
                        partition.as_deref().unwrap_or("unassigned")
                    ),
                ),
            };
            vec![
                format!("{:#012x}", r.base),
                format!("{:#012x}", r.end()),
                approx_size(r.size),
                kind.to_owned(),
                what,
            ]
        })
        .collect();
    table(&mut out, &["start", "end", "size", "kind", "owner"], &rows);
    if hidden > 0 {
        let _ = writeln!(out, "  ({hidden} unassigned board devices not shown)");
    }
    out
}

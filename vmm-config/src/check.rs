//! Meaning: everything about a manifest that its shape cannot say.
//!
//! Takes the items `shape` read, resolves the board, and checks names,
//! ownership (cores, devices, MMIO, interrupts), sizes and limits against the
//! board and against `hallows-table`'s fixed capacities, then has `place` fix
//! every physical address. Every check reports and carries on, so one run
//! shows every problem; checks that would only repeat an earlier problem in
//! other words (a channel naming a partition whose table was broken) stay quiet.

use std::collections::HashMap;
use std::ops::Range as Span;
use std::path::{Path, PathBuf};

use hallows_table::{MAX_CHANNELS, MAX_PARTITIONS, MAX_REGIONS};
use serde::de::DeserializeOwned;
use toml::de::DeValue;
use toml::Spanned;

use crate::diag::{did_you_mean, Diagnostics, FileId};
use crate::place::{place_channel, place_partitions, RamRequest};
use crate::raw::{
    DmaName, LogName, NotifyName, OnFault, RawChannel, RawForward, RawManifest, RawPartition,
    TuningName,
};
use crate::shape::{deserialize_item, first_line, parse_document, schema_keys};
use crate::size::format_size;
use crate::{
    board, channel_size, Board, Channel, CheckContext, FaultPolicy, LogLevel, Notify, Partition, Range, System, Tuning,
    DEFAULT_MAX_RESTARTS, MANIFEST_VERSION, MAX_BOOTARGS_LEN, MAX_NAME_LEN, MAX_SLOTS,
    MAX_SLOT_SIZE, RAM_ALIGN,
};

/// Why `name` is not a valid partition, channel or device name, if it is not.
pub(crate) fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} bytes long; names are at most {MAX_NAME_LEN} bytes",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter (a-z)".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; names use only a-z, 0-9, '_' and '-'"
        ));
    }
    Ok(())
}

/// How many distinct 4 KiB pages the MMIO of the named devices covers
/// (computed from the ranges, never by walking a page at a time).
pub(crate) fn device_pages(board: &Board, names: &[String]) -> u64 {
    let page = crate::PAGE_SIZE;
    let mut spans: Vec<(u64, u64)> = names
        .iter()
        .filter_map(|n| board.device(n))
        .filter(|d| d.mmio.size != 0)
        .map(|d| (d.mmio.base / page, (d.mmio.end() - 1) / page))
        .collect();
    spans.sort_unstable();
    let mut total = 0u64;
    let mut covered_to: Option<u64> = None;
    for (first, last) in spans {
        let from = match covered_to {
            Some(c) if c >= last => continue,
            Some(c) if c >= first => c + 1,
            _ => first,
        };
        total = total.saturating_add(last - from + 1);
        covered_to = Some(last);
    }
    total
}

/// One `[[table]]` item: its header span, the name it gives itself (even if
/// the rest is broken), and the item if it could be read.
struct Item<T> {
    header: Span<usize>,
    name: Option<String>,
    raw: Option<T>,
}

struct Loader<'a> {
    d: Diagnostics,
    file: FileId,
    /// The manifest's name as given (its path): names default disk images.
    name: &'a str,
    ctx: &'a CheckContext,
}

pub(crate) fn load_manifest(
    name: &str,
    dir: Option<&Path>,
    src: &str,
    ctx: &CheckContext,
) -> Result<System, Diagnostics> {
    let mut d = Diagnostics::new();
    let file = d.add_file(name, src);
    let mut l = Loader { d, file, name, ctx };
    let system = l.run(dir, src);
    let mut d = l.d;
    match system {
        Some(s) if d.is_empty() => Ok(s),
        _ => {
            if d.is_empty() {
                // Defensive: a check refused without saying why.
                d.error(
                    file,
                    0..0,
                    "manifest rejected without a diagnostic (a bug in vmm-config)",
                );
            }
            d.sort();
            Err(d)
        }
    }
}

impl Loader<'_> {
    fn value<T: DeserializeOwned>(&mut self, key: &str, v: Spanned<DeValue<'_>>) -> Option<T> {
        let span = v.span();
        match T::deserialize(toml::de::ValueDeserializer::from(v)) {
            Ok(t) => Some(t),
            Err(e) => {
                let (msg, help) = crate::shape::explain(key, e.message());
                let diag = self.d.error(self.file, e.span().unwrap_or(span), msg);
                for h in help {
                    diag.help(h);
                }
                None
            }
        }
    }

    /// The `[[key]]` items, each checked for shape; `None` (after one error)
    /// when there are more than `max`, which the system table cannot hold:
    /// nothing more is checked then, so the work stays bounded.
    fn items<T: DeserializeOwned + schemars::JsonSchema>(
        &mut self,
        key: &str,
        v: Option<Spanned<DeValue<'_>>>,
        max: usize,
    ) -> Option<Vec<Item<T>>> {
        let Some(v) = v else { return Some(Vec::new()) };
        let span = v.span();
        if let DeValue::Array(arr) = v.get_ref() {
            if arr.len() > max {
                let header = first_line(self.d.source(self.file), arr[max].span());
                let limit = match key {
                    "partition" => "MAX_PARTITIONS",
                    "channel" => "MAX_CHANNELS",
                    _ => "MAX_FORWARDS",
                };
                self.d
                    .error(self.file, header, format!("too many {key}s: {} declared, the system table holds at most {max}", arr.len()))
                    .label(format!("{key} number {}", max + 1))
                    .help(format!("merge {key}s, or raise {limit} in hallows-table"));
                return None;
            }
        }
        let DeValue::Array(arr) = v.into_inner() else {
            self.d
                .error(
                    self.file,
                    span,
                    format!("`{key}` must be an array of tables"),
                )
                .help(format!("write each one as a `[[{key}]]` table"));
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for el in arr {
            let espan = el.span();
            let DeValue::Table(t) = el.into_inner() else {
                self.d
                    .error(self.file, espan, format!("each `{key}` must be a table"))
                    .help(format!("write each one as a `[[{key}]]` table"));
                continue;
            };
            let header = first_line(self.d.source(self.file), espan.clone());
            let name = t
                .get("name")
                .and_then(|n| n.get_ref().as_str())
                .map(str::to_owned);
            let raw = deserialize_item::<T>(&mut self.d, self.file, key, Spanned::new(espan, t));
            out.push(Item { header, name, raw });
        }
        Some(out)
    }

    fn run(&mut self, dir: Option<&Path>, src: &str) -> Option<System> {
        let file = self.file;
        let doc = parse_document(&mut self.d, file, src)?;
        let mut top = doc.into_inner();

        let (props, _) = schema_keys::<RawManifest>();
        let unknown: Vec<_> = top
            .keys()
            .filter(|k| !props.iter().any(|p| p == k.get_ref().as_ref()))
            .cloned()
            .collect();
        for k in unknown {
            let name: &str = k.get_ref();
            let diag = self
                .d
                .error(file, k.span(), format!("unknown top-level key `{name}`"));
            match did_you_mean(name, props.iter().map(String::as_str)) {
                Some(best) => diag.help(format!("did you mean `{best}`?")),
                None => diag.help(format!("top-level keys are: {}; partitions and channels are [[partition]] and [[channel]] tables", props.join(", "))),
            };
        }

        // The version decides how everything else is read: check it first and
        // stop on a version this crate does not speak.
        match top.remove("version") {
            None => {
                self.d
                    .error(file, 0..0, "manifest has no `version`")
                    .help(format!(
                        "add `version = {MANIFEST_VERSION}` as the first line"
                    ));
            }
            Some(v) => {
                let span = v.span();
                let version: i64 = self.value("version", v)?;
                if version != i64::from(MANIFEST_VERSION) {
                    let diag = if version > i64::from(MANIFEST_VERSION) {
                        self.d
                            .error(file, span, format!("manifest version {version} is newer than this hallows understands (it reads version {MANIFEST_VERSION})"))
                            .help("upgrade hallows to a release that reads this version, or rewrite the manifest for version 1 (docs/manifest.md)")
                    } else {
                        self.d
                            .error(file, span, format!("manifest version {version} does not exist: the first version is {MANIFEST_VERSION}"))
                            .help(format!("set `version = {MANIFEST_VERSION}`"))
                    };
                    diag.label("unsupported version");
                    return None;
                }
            }
        }

        let board_value = match top.remove("board") {
            None => {
                self.d
                    .error(file, 0..0, "manifest has no `board`")
                    .help(format!(
                        "add `board = \"<name>\"` naming a built-in board ({}) or a board file",
                        crate::builtin_boards().join(", ")
                    ));
                None
            }
            Some(v) => {
                let span = v.span();
                self.value::<String>("board", v).map(|b| (b, span))
            }
        };

        let partition_value = top.remove("partition");
        let no_partition_key = partition_value.is_none();
        let parts = self.items::<RawPartition>("partition", partition_value, MAX_PARTITIONS);
        let chans = self.items::<RawChannel>("channel", top.remove("channel"), MAX_CHANNELS);
        let fwds = self.items::<RawForward>("forward", top.remove("forward"), crate::MAX_FORWARDS);
        let (Some(parts), Some(chans), Some(fwds)) = (parts, chans, fwds) else {
            return None;
        };
        let board = board_value.and_then(|(b, span)| self.board(dir, &b, span));

        self.specs(dir, &parts);
        let partitions = self.partitions(board.as_ref(), &parts);
        let channels = self.channels(&parts, &chans);
        self.regions(&parts, &chans);

        let board = board?;
        let mut partitions = partitions?;
        let mut channels = channels?;
        let raws: Vec<&RawPartition> = parts.iter().filter_map(|p| p.raw.as_ref()).collect();
        let fwds: Vec<RawForward> = fwds.into_iter().filter_map(|f| f.raw).collect();
        let before = self.d.len();
        let forwards = crate::net::check(&mut self.d, self.file, &board, &raws, &mut partitions, &channels, &fwds);
        if self.d.len() == before {
            crate::disk::check(&mut self.d, self.file, self.name, dir, self.ctx.root.as_deref(), &board, &raws, &mut partitions, &channels);
        }
        if self.d.len() == before {
            crate::display::check(&mut self.d, self.file, &board, &raws, &mut partitions, &channels);
        }
        let mut board = board;
        if self.d.len() == before {
            crate::linux::check(&mut self.d, self.file, dir, self.ctx.root.as_deref(), &mut board, &raws, &mut partitions);
        }
        if self.d.len() != before {
            return None;
        }
        if parts.is_empty() {
            if no_partition_key {
                self.d
                    .error(file, 0..0, "manifest declares no partitions")
                    .help("add a [[partition]] table");
            }
            return None;
        }
        self.place(&board, &parts, &chans, &mut partitions, &mut channels)?;
        Some(System {
            version: MANIFEST_VERSION,
            board,
            partitions,
            channels,
            forwards,
            display_host: crate::DisplayHost::default(),
        })
    }

    fn board(&mut self, dir: Option<&Path>, value: &str, span: Span<usize>) -> Option<Board> {
        let is_path = value.contains('/') || value.contains('\\') || value.ends_with(".toml");
        let (name, src) = if is_path {
            let (path, src) = self.named_file(dir, "board file", "board paths", value, span)?;
            (path.display().to_string(), src)
        } else {
            match board::BUILTIN.iter().find(|(n, _)| *n == value) {
                Some((n, src)) => (format!("<built-in board {n}>"), (*src).to_owned()),
                None => {
                    let names = crate::builtin_boards();
                    let diag = self
                        .d
                        .error(self.file, span, format!("unknown board \"{value}\""))
                        .label("not a built-in board");
                    if let Some(best) = did_you_mean(value, names.iter().copied()) {
                        diag.help(format!("did you mean \"{best}\"?"));
                    }
                    diag.help(format!("built-in boards: {}; or give a path to a board file such as \"boards/my-board.toml\"", names.join(", ")));
                    return None;
                }
            }
        };
        let bfile = self.d.add_file(&name, &src);
        board::load_board(&mut self.d, bfile, &src)
    }

    /// Reads a file the manifest names (`value`, written at `span`),
    /// relative to the manifest's directory: only a regular file, of at most
    /// `MAX_SOURCE_SIZE` bytes, inside the project (`CheckContext::root`).
    fn named_file(
        &mut self,
        dir: Option<&Path>,
        what: &str,
        paths: &str,
        value: &str,
        span: Span<usize>,
    ) -> Option<(PathBuf, String)> {
        let path = dir.unwrap_or(Path::new("")).join(value);
        let shown = value.escape_debug();
        // Confinement first, whether or not the file exists, so that the
        // error does not tell whether a file outside the project exists.
        if let Some(root) = &self.ctx.root {
            if !hallows_source::is_inside(&path, root) {
                self.d
                    .error(self.file, span, format!("{what} \"{shown}\" is outside the project directory"))
                    .label("outside the project")
                    .help(format!("{paths} must lie inside the project, so that a manifest cannot make hallows read other files: move the file into {}, or, if you trust this manifest, run hallows with --allow-outside-paths", root.display()));
                return None;
            }
        }
        match hallows_source::read(&path) {
            Ok(src) => Some((path, src)),
            Err(e) => {
                self.d
                    .error(self.file, span, format!("cannot read {what} \"{shown}\": {e}"))
                    .help(format!(
                        "{paths} are relative to the manifest's directory; this one is {}",
                        path.display()
                    ));
                None
            }
        }
    }

    /// Each partition's `spec` must name a readable spec inside the project
    /// (what the spec says is checked by Parseltongue, after the manifest).
    fn specs(&mut self, dir: Option<&Path>, parts: &[Item<RawPartition>]) {
        for p in parts.iter().filter_map(|p| p.raw.as_ref()) {
            if let Some(spec) = &p.spec {
                self.named_file(dir, "spec", "spec paths", spec.get_ref(), spec.span());
            }
        }
    }

    /// Checks every partition on its own and against the others; `None` if any is wrong.
    fn partitions(
        &mut self,
        board: Option<&Board>,
        parts: &[Item<RawPartition>],
    ) -> Option<Vec<Partition>> {
        let file = self.file;
        let before = self.d.len();
        let mut out = Vec::new();
        let mut names: HashMap<&str, Span<usize>> = HashMap::new();
        let mut core_owner: HashMap<u64, (&str, Span<usize>)> = HashMap::new();
        let mut dev_owner: HashMap<&str, (&str, Span<usize>)> = HashMap::new();
        for item in parts {
            let Some(p) = &item.raw else { continue };
            let name = p.name.as_ref().map_or("", |n| n.get_ref().as_str());
            if let Some(n) = &p.name {
                if let Err(why) = valid_name(name) {
                    self.d.error(
                        file,
                        n.span(),
                        format!("partition name \"{}\" {why}", name.escape_debug()),
                    );
                } else if crate::RESERVED_PARTITION_NAMES.contains(&name) {
                    self.d
                        .error(file, n.span(), format!("partition name `{name}` is reserved for the hypervisor"))
                        .label("reserved")
                        .help(format!("the hypervisor prints its own console lines as `[{name}] ...`, and a partition's lines carry its name the same way, so a partition with this name could forge them: choose another name"));
                }
                if let Some(first) = names.get(name) {
                    self.d
                        .error(file, n.span(), format!("duplicate partition name `{name}`"))
                        .related(file, first.clone(), "first declared here")
                        .help("partition names must be unique");
                } else {
                    names.insert(name, n.span());
                }
            }

            // Cores.
            let no_cores = Vec::new();
            let cores = p.cores.as_ref().map_or(&no_cores, |c| c.get_ref());
            if let Some(c) = p.cores.as_ref().filter(|c| c.get_ref().is_empty()) {
                self.d
                    .error(file, c.span(), format!("partition `{name}` has no cores"))
                    .help("give it at least one board core index, e.g. `cores = [1]`");
            }
            let mut mine: Vec<u64> = Vec::new();
            for c in cores {
                let core = *c.get_ref();
                if let Some(b) = board {
                    if core >= b.cores.len() as u64 {
                        let have = match b.cores.len() {
                            0 => "none".to_owned(),
                            1 => "core 0".to_owned(),
                            n => format!("cores 0-{}", n - 1),
                        };
                        self.d
                            .error(
                                file,
                                c.span(),
                                format!(
                                    "core {core} is not on board \"{}\" (it has {have})",
                                    b.name
                                ),
                            )
                            .help("cores are indices into the board's core list, not hardware ids");
                        continue;
                    }
                }
                if mine.contains(&core) {
                    self.d.error(
                        file,
                        c.span(),
                        format!("core {core} is listed twice in partition `{name}`"),
                    );
                    continue;
                }
                mine.push(core);
                if let Some((owner, ospan)) = core_owner.get(&core) {
                    self.d
                        .error(
                            file,
                            c.span(),
                            format!("core {core} is already owned by partition `{owner}`"),
                        )
                        .related(file, ospan.clone(), "owned here")
                        .help("a core belongs to exactly one partition");
                } else {
                    core_owner.insert(core, (name, c.span()));
                }
            }

            // RAM.
            let ram = p.ram.as_ref().map_or(0, |r| r.get_ref().0);
            let ram_span = p.ram.as_ref().map_or(0..0, |r| r.span());
            if p.ram.is_none() {
                // Reported by the shape check.
            } else if ram == 0 {
                self.d
                    .error(
                        file,
                        ram_span,
                        format!("partition `{name}` has no RAM (ram = 0)"),
                    )
                    .help("give it at least 2 MiB");
            } else if ram % RAM_ALIGN != 0 {
                let up = ram.div_ceil(RAM_ALIGN) * RAM_ALIGN;
                self.d
                    .error(
                        file,
                        ram_span,
                        format!("ram {} is not a multiple of 2 MiB", format_size(ram)),
                    )
                    .help(format!("use {}", format_size(up)));
            } else if let Some(b) = board {
                if ram > b.ram_total() {
                    self.d
                        .error(
                            file,
                            ram_span,
                            format!(
                                "ram {} is more than the board's RAM ({})",
                                format_size(ram),
                                format_size(b.ram_total())
                            ),
                        )
                        .help("reduce `ram`");
                }
            }

            // Guest.
            let guest = p.guest.as_ref().map_or("", |g| g.get_ref().as_str());
            let guest_span = p.guest.as_ref().map_or(0..0, |g| g.span());
            if p.guest.is_none() && p.linux.is_none() {
                self.d
                    .error(file, item.header.clone(), format!("partition `{name}` has neither `guest` nor `linux`"))
                    .help("add `guest = \"<package>\"` (a RustHallows guest) or `linux = { kernel = \"...\" }` (docs/linux.md)");
            } else if let (Some(g), Some(l)) = (&p.guest, &p.linux) {
                self.d
                    .error(file, l.span(), format!("partition `{name}` has both `guest` and `linux`"))
                    .related(file, g.span(), "guest given here")
                    .help("a partition runs either a RustHallows guest or a Linux kernel: remove one");
            } else if p.guest.is_none() {
                // A Linux partition: checked with its files (`linux::check`).
            } else if let Err(why) = valid_name(guest) {
                self.d
                    .error(file, guest_span, format!("guest name \"{}\" {why}", guest.escape_debug()))
                    .help("a guest is a package of the workspace with a binary that uses hallows-rt, named like one");
            } else if let Some(known) = &self.ctx.guests {
                if !known.iter().any(|g| g == guest) {
                    let diag = self
                        .d
                        .error(file, guest_span, format!("guest `{guest}` does not exist"))
                        .label("no such guest");
                    if let Some(best) = did_you_mean(guest, known.iter().map(String::as_str)) {
                        diag.help(format!("did you mean `{best}`?"));
                    }
                    diag.help(format!(
                        "guests are the workspace's packages with a binary that use hallows-rt: {}",
                        known.join(", ")
                    ));
                }
            }

            // Boot arguments.
            let bootargs = p
                .bootargs
                .as_ref()
                .map(|b| b.get_ref().clone())
                .unwrap_or_default();
            if let Some(b) = &p.bootargs {
                if bootargs.len() > MAX_BOOTARGS_LEN {
                    self.d
                        .error(file, b.span(), format!("bootargs are {} bytes long; at most {MAX_BOOTARGS_LEN} fit in the system table", bootargs.len()))
                        .help("shorten the boot arguments");
                } else if bootargs.contains('\0') {
                    self.d
                        .error(file, b.span(), "bootargs contain a NUL character");
                }
            }

            // Fault policy.
            let fault_span = p.on_fault.as_ref().map_or(0..0, |f| f.span());
            let on_fault = match (
                p.on_fault.as_ref().map_or(OnFault::Stop, |f| *f.get_ref()),
                &p.max_restarts,
            ) {
                (OnFault::Restart, Some(m)) => {
                    if *m.get_ref() == 0 {
                        self.d
                            .error(file, m.span(), "max_restarts = 0 never restarts")
                            .help("use on_fault = \"stop\", or allow at least one restart");
                    }
                    FaultPolicy::Restart {
                        max_restarts: *m.get_ref(),
                    }
                }
                (OnFault::Restart, None) => FaultPolicy::Restart {
                    max_restarts: DEFAULT_MAX_RESTARTS,
                },
                (_, Some(_)) if p.on_fault.is_none() => FaultPolicy::Stop,
                (other, Some(m)) => {
                    let policy = if other == OnFault::Stop {
                        "stop"
                    } else {
                        "halt"
                    };
                    self.d
                        .error(file, m.span(), format!("max_restarts only applies to on_fault = \"restart\", but this partition uses on_fault = \"{policy}\""))
                        .related(file, fault_span.clone(), "fault policy set here")
                        .help("remove max_restarts, or set on_fault = \"restart\"");
                    FaultPolicy::Stop
                }
                (OnFault::Stop, None) => FaultPolicy::Stop,
                (OnFault::Halt, None) => FaultPolicy::Halt,
            };
            // Supervision.
            let mut supervision = crate::Supervision::default();
            if let Some(w) = &p.watchdog {
                let ns = w.get_ref().0;
                if !(crate::MIN_WATCHDOG_NS..=crate::MAX_WATCHDOG_NS).contains(&ns) {
                    self.d
                        .error(file, w.span(), format!("watchdog = \"{}\" is out of range; it must be between 1 ms and 3600 s", crate::format_duration(ns)))
                        .help("a watchdog shorter than 1 ms would spend the core on checks; use a longer period");
                } else {
                    supervision.watchdog_ns = ns;
                }
            }
            if let Some(b) = &p.restart_backoff {
                let ns = b.get_ref().0;
                if !matches!(on_fault, FaultPolicy::Restart { .. }) {
                    self.d
                        .error(file, b.span(), "restart_backoff only applies to on_fault = \"restart\"")
                        .related(file, fault_span.clone(), "fault policy set here")
                        .help("remove restart_backoff, or set on_fault = \"restart\"");
                } else if ns > crate::MAX_BACKOFF_NS {
                    self.d
                        .error(file, b.span(), format!("restart_backoff = \"{}\" is longer than the 10 s it may be", crate::format_duration(ns)))
                        .help("the backoff doubles with each restart up to 10 s; start lower");
                } else {
                    supervision.restart_backoff_ns = ns;
                }
            }
            // Devices.
            let mut devices = Vec::new();
            for dv in &p.devices {
                let dname = dv.get_ref().as_str();
                if let Some(b) = board {
                    if dname == b.console_name {
                        self.d
                            .error(file, dv.span(), format!("`{dname}` is the hypervisor's console and cannot be assigned to a partition"))
                            .help("partitions print through the hypervisor's console service; pick another device");
                        continue;
                    }
                    let Some(dev) = b.device(dname) else {
                        let diag = self
                            .d
                            .error(
                                file,
                                dv.span(),
                                format!("device `{dname}` is not on board \"{}\"", b.name),
                            )
                            .label("no such device");
                        if let Some(best) =
                            did_you_mean(dname, b.devices.iter().map(|d| d.name.as_str()))
                        {
                            diag.help(format!("did you mean `{best}`?"));
                        }
                        continue;
                    };
                    if let Err(why) = crate::assignable_irq(b, dev) {
                        self.d
                            .error(file, dv.span(), format!("device `{dname}` cannot be assigned: {why}"))
                            .label("hypervisor-owned interrupt")
                            .help("the hypervisor keeps its console's interrupt (and on aarch64 the doorbell INTIDs) for itself, and routes one interrupt per device (aarch64: a shared peripheral interrupt; x86_64: a GSI): pick another device, or describe this one differently in the board file");
                        continue;
                    }
                    if let Some((owner, ospan)) = dev_owner.get(dname) {
                        let who = if *owner == name {
                            "this partition".to_owned()
                        } else {
                            format!("partition `{owner}`")
                        };
                        self.d
                            .error(
                                file,
                                dv.span(),
                                format!("device `{dname}` is already assigned to {who}"),
                            )
                            .related(file, ospan.clone(), "assigned here")
                            .help("a device belongs to exactly one partition");
                        continue;
                    }
                    // Distinct board devices may alias MMIO or share an interrupt;
                    // they may not then be split between partitions.
                    for (other, (owner, ospan)) in &dev_owner {
                        if *owner == name {
                            continue;
                        }
                        let Some(odev) = b.device(other) else {
                            continue;
                        };
                        if odev.mmio.overlaps(&dev.mmio) {
                            self.d
                                .error(file, dv.span(), format!("MMIO of device `{dname}` ({}) overlaps device `{other}` ({}) of partition `{owner}`", dev.mmio, odev.mmio))
                                .related(file, ospan.clone(), "assigned here")
                                .help("assign both devices to the same partition");
                        } else if let Some(irq) = dev.irqs.iter().find(|i| odev.irqs.contains(i)) {
                            self.d
                                .error(file, dv.span(), format!("interrupt {irq} of device `{dname}` is also used by device `{other}` of partition `{owner}`"))
                                .related(file, ospan.clone(), "assigned here")
                                .help("an interrupt goes to one partition: assign both devices to the same partition");
                        }
                    }
                    dev_owner.insert(dname, (name, dv.span()));
                }
                devices.push(dname.to_owned());
            }
            // Stage-2 maps whole 4 KiB pages: a device whose registers
            // share a page with other board devices (QEMU's virtio-mmio
            // transports, 0x200 apart) can only be given together with all
            // of them, or its owner would reach the others.
            let mut dma_devices = Vec::new();
            let mut pages_seen: Vec<u64> = Vec::new();
            if let Some(b) = board {
                // Only devices the partition was given (not those refused above).
                for dv in p.devices.iter().filter(|d| devices.iter().any(|n| n == d.get_ref())) {
                    let Some(dev) = b.device(dv.get_ref()) else { continue };
                    if crate::dma_capable(&dev.compatible) {
                        dma_devices.push((dev.name.clone(), dv.span()));
                    }
                    let first = dev.mmio.base & !(crate::PAGE_SIZE - 1);
                    if pages_seen.contains(&first) {
                        continue;
                    }
                    pages_seen.push(first);
                    let last = dev.mmio.end().saturating_sub(1) & !(crate::PAGE_SIZE - 1);
                    let pages = Range::new(first, last - first + crate::PAGE_SIZE);
                    let missing: Vec<&str> = b
                        .devices
                        .iter()
                        .filter(|o| o.mmio.overlaps(&pages) && !devices.contains(&o.name))
                        .map(|o| o.name.as_str())
                        .collect();
                    if !missing.is_empty() {
                        self.d
                            .error(file, dv.span(), format!(
                                "device `{}` shares the 4 KiB page {:#x} with {}, which partition `{name}` is not assigned",
                                dev.name, first, missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                            ))
                            .help("stage-2 maps whole pages: assign every device of that page to this partition, or none");
                    }
                }
            }
            // The table writer maps each distinct device page as one region.
            if let Some(b) = board {
                let pages = device_pages(b, &devices);
                if pages > MAX_REGIONS as u64 {
                    self.d
                        .error(file, item.header.clone(), format!("the devices of partition `{name}` span {pages} pages of 4 KiB; the system table holds at most {MAX_REGIONS} device regions"))
                        .help("assign fewer devices to this partition");
                }
            }
            let dma_trusted = p.dma.is_some();
            match (&p.dma, dma_devices.first()) {
                (None, Some((dname, span))) => {
                    self.d
                        .error(file, span.clone(), format!("device `{dname}` can master DMA, but partition `{name}` does not declare dma = \"trusted\""))
                        .help("without an IOMMU a DMA-capable device can read and write any physical address, other partitions' and the hypervisor's included; add dma = \"trusted\" to the partition if you trust its guest with the whole machine's memory");
                }
                (Some(d), None) if p.nic.is_none() && p.disk.is_none() && p.display.is_none() => {
                    let DmaName::Trusted = d.get_ref();
                    self.d
                        .error(file, d.span(), format!("dma = \"trusted\" but partition `{name}` has no DMA-capable device"))
                        .help("remove `dma`: it only grants something with a DMA-capable device (virtio)");
                }
                _ => {}
            }
            let log = p.log.as_ref().map(|l| match l.get_ref() {
                LogName::Off => LogLevel::Off,
                LogName::Error => LogLevel::Error,
                LogName::Warn => LogLevel::Warn,
                LogName::Info => LogLevel::Info,
                LogName::Debug => LogLevel::Debug,
                LogName::Trace => LogLevel::Trace,
            });

            if p.name.is_none()
                || p.cores.is_none()
                || p.ram.is_none()
                || (p.guest.is_none() == p.linux.is_none())
                || p.on_fault.is_none()
            {
                continue; // Missing keys were reported by the shape check.
            }
            out.push(Partition {
                name: name.to_owned(),
                cores: mine.iter().map(|&c| c as u32).collect(),
                ram_size: ram,
                ram_pa: 0,
                ram_fixed: p.ram_base.is_some(),
                guest: guest.to_owned(),
                bootargs,
                on_fault,
                devices,
                spec: p.spec.as_ref().map(|s| s.get_ref().clone()),
                log,
                dma_trusted,
                net: crate::Net::default(),
                supervision,
                disk: None,
                display: None,
                linux: None,
            });
        }
        (self.d.len() == before && out.len() == parts.len()).then_some(out)
    }

    fn channels(
        &mut self,
        parts: &[Item<RawPartition>],
        chans: &[Item<RawChannel>],
    ) -> Option<Vec<Channel>> {
        let file = self.file;
        let before = self.d.len();
        let known: Vec<&str> = parts.iter().filter_map(|p| p.name.as_deref()).collect();
        let mut names: HashMap<&str, Span<usize>> = HashMap::new();
        let mut out = Vec::new();
        for item in chans {
            let Some(c) = &item.raw else { continue };
            let name = c.name.as_ref().map_or("", |n| n.get_ref().as_str());
            if let Some(n) = &c.name {
                if let Err(why) = valid_name(name) {
                    self.d.error(
                        file,
                        n.span(),
                        format!("channel name \"{}\" {why}", name.escape_debug()),
                    );
                }
                if let Some(first) = names.get(name) {
                    self.d
                        .error(file, n.span(), format!("duplicate channel name `{name}`"))
                        .related(file, first.clone(), "first declared here")
                        .help("channel names must be unique");
                } else {
                    names.insert(name, n.span());
                }
            }
            for (end, v) in [("from", &c.from), ("to", &c.to)] {
                let Some(v) = v else { continue };
                let p = v.get_ref().as_str();
                if !known.contains(&p) {
                    let diag = self
                        .d
                        .error(
                            file,
                            v.span(),
                            format!("channel `{name}` {end} unknown partition `{p}`"),
                        )
                        .label("no such partition");
                    if let Some(best) = did_you_mean(p, known.iter().copied()) {
                        diag.help(format!("did you mean `{best}`?"));
                    } else {
                        diag.help(format!("partitions: {}", known.join(", ")));
                    }
                }
            }
            let (Some(from), Some(to), Some(slot_size_v), Some(slots_v), Some(notify)) =
                (&c.from, &c.to, &c.slot_size, &c.slots, &c.notify)
            else {
                continue; // Missing keys were reported by the shape check.
            };
            if from.get_ref() == to.get_ref() {
                self.d
                    .error(
                        file,
                        to.span(),
                        format!(
                            "channel `{name}` goes from partition `{}` to itself",
                            to.get_ref()
                        ),
                    )
                    .related(file, from.span(), "producer")
                    .help("a channel connects two different partitions");
            }
            let slot_size = *slot_size_v.get_ref();
            if slot_size == 0 {
                self.d.error(
                    file,
                    slot_size_v.span(),
                    "slot_size must be at least 1 byte",
                );
            } else if slot_size > MAX_SLOT_SIZE {
                self.d
                    .error(file, slot_size_v.span(), format!("slot_size {slot_size} is too big: a slot is at most {MAX_SLOT_SIZE} bytes"))
                    .help("send large data in several messages, or through a bigger shared region later");
            }
            let slots = *slots_v.get_ref();
            if slots == 0 || !slots.is_power_of_two() {
                let up = slots
                    .max(1)
                    .checked_next_power_of_two()
                    .unwrap_or(MAX_SLOTS);
                let help = if slots == 0 {
                    "use at least 2 slots (a power of two)".to_owned()
                } else {
                    format!("use {} or {up}", up / 2)
                };
                self.d
                    .error(
                        file,
                        slots_v.span(),
                        format!("slots must be a power of two, not {slots}"),
                    )
                    .help(help);
            } else if slots == 1 {
                self.d
                    .error(file, slots_v.span(), "slots must be at least 2: one slot of every block carries the block's publication stamp")
                    .help("use 2 or more (a power of two)");
            } else if slots > MAX_SLOTS {
                self.d.error(
                    file,
                    slots_v.span(),
                    format!("slots {slots} is too many: a channel has at most {MAX_SLOTS} slots"),
                );
            }
            let (slot_size, slots) = (
                slot_size.min(MAX_SLOT_SIZE) as u32,
                slots.min(MAX_SLOTS) as u32,
            );
            let size = match channel_size(slot_size, slots) {
                Ok(size) => size,
                Err(hallows_ring::LayoutError::TooLarge) => {
                    let bytes = u64::from(slot_size) * u64::from(slots);
                    self.d
                        .error(file, slots_v.span(), format!("channel `{name}` has {} of slots; a channel's slots are at most 1 GiB", format_size(bytes)))
                        .help("use fewer or smaller slots");
                    continue;
                }
                Err(_) => continue, // Zero or non-power-of-two geometry: reported above.
            };
            out.push(Channel {
                name: name.to_owned(),
                from: from.get_ref().clone(),
                to: to.get_ref().clone(),
                slot_size,
                slots,
                notify: match notify.get_ref() {
                    NotifyName::Poll => Notify::Poll,
                    NotifyName::Doorbell => Notify::Doorbell,
                },
                tuning: match c.tuning.as_ref().map(|t| *t.get_ref()) {
                    None | Some(TuningName::Latency) => Tuning::Latency,
                    Some(TuningName::Throughput) => Tuning::Throughput,
                },
                pa: 0,
                size,
            });
        }
        (self.d.len() == before && out.len() == chans.len()).then_some(out)
    }

    /// Each device and each channel end is one stage-2 region of a partition.
    fn regions(&mut self, parts: &[Item<RawPartition>], chans: &[Item<RawChannel>]) {
        for item in parts {
            let Some(p) = &item.raw else { continue };
            let Some(name) = p.name.as_ref().map(|n| n.get_ref()) else {
                continue;
            };
            let is =
                |end: &Option<Spanned<String>>| end.as_ref().is_some_and(|e| e.get_ref() == name);
            let ends = chans
                .iter()
                .filter_map(|c| c.raw.as_ref())
                .filter(|c| is(&c.from) || is(&c.to))
                .count();
            let n = p.devices.len() + ends;
            if n > MAX_REGIONS {
                self.d
                    .error(self.file, item.header.clone(), format!("partition `{name}` needs {n} memory regions (devices: {}, channel ends: {ends}); the system table holds at most {MAX_REGIONS}", p.devices.len()))
                    .help("assign fewer devices or connect fewer channels to this partition");
            }
        }
    }

    fn place(
        &mut self,
        board: &Board,
        parts: &[Item<RawPartition>],
        chans: &[Item<RawChannel>],
        partitions: &mut [Partition],
        channels: &mut [Channel],
    ) -> Option<()> {
        let raws: Vec<&RawPartition> = parts.iter().filter_map(|p| p.raw.as_ref()).collect();
        let reqs: Vec<RamRequest<'_>> = raws
            .iter()
            .filter_map(|p| Some((p.name.as_ref()?, p.ram.as_ref()?, p)))
            .map(|(name, ram, p)| RamRequest {
                name: name.get_ref(),
                size: ram.get_ref().0,
                size_span: ram.span(),
                fixed: p.ram_base.as_ref().map(|b| (*b.get_ref(), b.span())),
            })
            .collect();
        let (placed, mut free) = place_partitions(&mut self.d, self.file, board, &reqs);
        for (p, pa) in partitions.iter_mut().zip(&placed) {
            p.ram_pa = (*pa)?;
        }
        for p in partitions.iter() {
            free.remove(p.ram());
        }
        for (c, item) in channels.iter_mut().zip(chans) {
            match place_channel(&mut free, c.size) {
                Some(pa) => c.pa = pa,
                None => {
                    self.d
                        .error(self.file, item.header.clone(), format!("no room for the {} of memory of channel `{}`", format_size(c.size), c.name))
                        .label("does not fit")
                        .help("channel memory is placed in board RAM left free by the hypervisor and the partitions: reduce partition RAM, or the channel's slots or slot_size");
                }
            }
        }
        if !self.d.is_empty() {
            return None;
        }
        if let Err(e) = crate::verify_layout(board, partitions, channels) {
            self.d
                .error(self.file, 0..0, format!("internal placement error: {e}"));
        }
        (self.d.is_empty()).then_some(())
    }
}

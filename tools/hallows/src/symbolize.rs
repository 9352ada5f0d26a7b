//! Symbolizes the backtraces of guest post-mortems: the runtime prints
//! `  #N 0xADDRESS` lines (the faulting pc, then return addresses from the
//! frame-pointer chain) on its partition's console; this finds each
//! address's function and source line in the partition's guest ELF (its
//! DWARF, else its symbol table), like `addr2line -f -i`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use object::{Object, ObjectSection, ObjectSymbol};
use vmm_config::System;

type Slice = gimli::EndianRcSlice<gimli::RunTimeEndian>;

/// One guest ELF's debug information and symbols.
pub struct Symbolizer {
    dwarf: Option<addr2line::Context<Slice>>,
    /// Source paths are shown relative to this directory (the workspace).
    root: Option<std::path::PathBuf>,
    /// (address, size, demangled name), sorted by address.
    symbols: Vec<(u64, u64, String)>,
}

impl Symbolizer {
    /// Reads `elf`; `None` if it cannot be read or parsed.
    pub fn open(elf: &Path, root: Option<&Path>) -> Option<Symbolizer> {
        let data = std::fs::read(elf).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
        let load = |id: gimli::SectionId| -> Result<Slice, gimli::Error> {
            let bytes = file.section_by_name(id.name()).and_then(|s| s.uncompressed_data().ok()).unwrap_or_default();
            Ok(gimli::EndianRcSlice::new(Rc::from(&*bytes), endian))
        };
        let dwarf = gimli::Dwarf::load(load).ok().and_then(|d| addr2line::Context::from_dwarf(d).ok());
        let mut symbols: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text)
            .filter_map(|s| Some((s.address(), s.size(), format!("{:#}", rustc_demangle::demangle(s.name().ok()?)))))
            .collect();
        symbols.sort();
        Some(Symbolizer { dwarf, root: root.map(Path::to_path_buf), symbols })
    }

    /// The functions `address` is in by the DWARF, innermost inlined
    /// function first, then those it was inlined into (demangled, without
    /// hashes); empty where the DWARF says nothing (assembly).
    pub fn inlined_functions(&self, address: u64) -> Vec<String> {
        self.frames(address).into_iter().map(|(name, _)| name).collect()
    }

    fn frames(&self, address: u64) -> Vec<(String, Option<addr2line::Location<'_>>)> {
        let mut out = Vec::new();
        if let Some(ctx) = &self.dwarf {
            if let Ok(mut frames) = ctx.find_frames(address).skip_all_loads() {
                while let Ok(Some(f)) = frames.next() {
                    let name = f
                        .function
                        .as_ref()
                        .and_then(|n| Some(format!("{:#}", rustc_demangle::demangle(&n.raw_name().ok()?))))
                        .unwrap_or_else(|| "??".into());
                    out.push((name, f.location));
                }
            }
        }
        out
    }

    /// `function at file:line` for `address`, innermost inlined function
    /// first (`; inlined into ...` for the callers it was inlined into).
    pub fn describe(&self, address: u64) -> Option<String> {
        let mut parts = Vec::new();
        for (name, location) in self.frames(address) {
            let at = location
                .and_then(|l| {
                    let file = Path::new(l.file?);
                    let file = self.root.as_deref().and_then(|r| file.strip_prefix(r).ok()).unwrap_or(file);
                    Some(format!("{}:{}", file.display(), l.line?))
                })
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            parts.push(format!("{name}{at}"));
        }
        if parts.is_empty() {
            let i = self.symbols.partition_point(|s| s.0 <= address).checked_sub(1)?;
            let (start, size, name) = &self.symbols[i];
            if address >= start + (*size).max(1) {
                return None;
            }
            return Some(format!("{name}+{:#x}", address - start));
        }
        Some(parts.join("; inlined into "))
    }
}

/// A post-mortem frame line: (partition, frame number, address).
fn frame_line(line: &str) -> Option<(&str, u32, u64)> {
    let (name, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let mut words = rest.split_whitespace();
    let n = words.next()?.strip_prefix('#')?.parse().ok()?;
    let a = u64::from_str_radix(words.next()?.strip_prefix("0x")?, 16).ok()?;
    Some((name, n, a))
}

/// `output` with each post-mortem frame line of a partition of `sys`
/// followed by its symbolized function and source line (from the guest
/// ELFs: `elf` names a guest package's). Return addresses (frames after
/// `#0`) are looked up one byte back, inside the call.
pub fn symbolize(output: &str, sys: &System, elf: &dyn Fn(&str) -> PathBuf) -> String {
    let mut elves: HashMap<String, Option<Symbolizer>> = HashMap::new();
    let mut out = String::with_capacity(output.len());
    for line in output.lines() {
        out.push_str(line);
        if let Some((name, n, a)) = frame_line(line) {
            if let Some(p) = sys.partitions.iter().find(|p| p.name == name && p.linux.is_none()) {
                let s = elves.entry(p.guest.clone()).or_insert_with(|| {
                    // The ELF is <workspace>/target/<target>/release/<bin>.
                    let elf = elf(&p.guest);
                    Symbolizer::open(&elf, elf.ancestors().nth(4))
                });
                if let Some(d) = s.as_ref().and_then(|s| s.describe(if n == 0 { a } else { a - 1 })) {
                    out.push(' ');
                    out.push_str(&d);
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Only the symbolized frame lines of `output` (for `hallows run`, which
/// has shown the raw output as it came).
pub fn backtraces(output: &str, sys: &System, elf: &dyn Fn(&str) -> PathBuf) -> Vec<String> {
    symbolize(output, sys, elf).lines().filter(|l| frame_line(l).is_some()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines_are_recognized() {
        assert_eq!(frame_line("[overflow]   #12 0x4000435a"), Some(("overflow", 12, 0x4000_435a)));
        assert_eq!(frame_line("[overflow]   #1 0x40003e04 (lr; frame pointer 0x0 is outside any stack)"), Some(("overflow", 1, 0x4000_3e04)));
        assert_eq!(frame_line("[overflow] post-mortem: vCPU 0: pc 0x40003db8"), None);
        assert_eq!(frame_line("[hallows] summary: x: exited 0"), None);
    }
}

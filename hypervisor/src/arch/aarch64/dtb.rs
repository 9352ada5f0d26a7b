//! What the firmware's device tree says about the machine, read once at
//! boot (the DTB may sit where a partition's RAM goes, so nothing keeps
//! pointing into it afterwards).
//!
//! One pass over the structure block, looking only at what the boot
//! checks need: the root's cell sizes, the `reg` of every `memory` node,
//! the `/cpus` cell size and the `reg` of each `cpu` node under it, and
//! `/psci`'s `method`. Every other node and property is skipped by its
//! length, never decoded. Every read is bounds-checked: a malformed tree is
//! an error, never a fault.

use hallows_table::{MemRange, MAX_CORES, MAX_RAM_RANGES};

/// Facts extracted from the DTB, copied out of it.
#[derive(Debug, Default)]
pub struct DtFacts {
    pub ram: [MemRange; MAX_RAM_RANGES],
    pub ram_count: usize,
    pub cpus: [u64; MAX_CORES],
    pub cpu_count: usize,
    pub psci_smc: bool,
}

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

const MALFORMED: &str = "the device tree is malformed";

/// Reads the DTB at physical `dtb`, which must lie inside `ram` (the board's
/// RAM as the system table gives it; EL2 maps all of it).
pub fn read(dtb: u64, ram: &[MemRange]) -> Result<DtFacts, &'static str> {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return Err("no device tree was passed in x0");
    }
    let header = MemRange { base: dtb, size: 8 };
    if !ram.iter().any(|r| r.contains(&header)) {
        return Err("the device tree pointer is outside the board's RAM");
    }
    // SAFETY: the 8 header bytes lie in RAM mapped by EL2 (checked above).
    let (magic, total) = unsafe {
        let p = dtb as *const u32;
        (u32::from_be(core::ptr::read_volatile(p)), u32::from_be(core::ptr::read_volatile(p.add(1))))
    };
    if magic != FDT_MAGIC {
        return Err("x0 does not point at a device tree (bad magic)");
    }
    let whole = MemRange { base: dtb, size: total as u64 };
    if !ram.iter().any(|r| r.contains(&whole)) {
        return Err("the device tree extends past the board's RAM");
    }
    // SAFETY: `[dtb, dtb + total)` lies in EL2-mapped RAM (checked above)
    // and nothing writes it until every partition has been loaded, after
    // the last use of these facts' source.
    let bytes = unsafe { core::slice::from_raw_parts(dtb as *const u8, total as usize) };
    parse(bytes)
}

/// The big-endian word at byte `at` of `b`.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// A value of `cells` 32-bit cells (1 or 2; 0 gives 0) at the start of `b`.
fn cells_value(b: &[u8], cells: u32) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(b, 0).map(u64::from),
        2 => Some((u64::from(be32(b, 0)?) << 32) | u64::from(be32(b, 4)?)),
        _ => None,
    }
}

/// Whether the NUL-terminated string at `off` of the strings block is `name`.
fn name_is(strings: &[u8], off: usize, name: &[u8]) -> bool {
    off.checked_add(name.len()).is_some_and(|end| strings.get(off..end) == Some(name) && strings.get(end) == Some(&0))
}

/// The nodes whose properties matter; everything else is `Other`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    Root,
    Memory,
    Cpus,
    Cpu,
    Psci,
    Other,
}

/// Whether the node name starting at byte `at` of `structs` is `base`,
/// alone or with a unit address (`base@...`).
fn node_is(structs: &[u8], at: usize, base: &[u8]) -> bool {
    let end = at + base.len();
    structs.get(at..end) == Some(base) && matches!(structs.get(end), Some(0 | b'@'))
}

/// Whether the big-endian word `w` holds a zero byte.
fn has_zero_byte(w: u32) -> bool {
    w.wrapping_sub(0x0101_0101) & !w & 0x8080_8080 != 0
}

/// The facts a whole flattened device tree (`bytes`, header first) holds.
fn parse(bytes: &[u8]) -> Result<DtFacts, &'static str> {
    let word = |i: usize| be32(bytes, 4 * i).ok_or(MALFORMED);
    let (off_struct, off_strings, version) = (word(2)? as usize, word(3)? as usize, word(5)?);
    if version < 17 {
        return Err("the device tree is older than version 17");
    }
    let (size_strings, size_struct) = (word(8)? as usize, word(9)? as usize);
    let structs = off_struct.checked_add(size_struct).and_then(|end| bytes.get(off_struct..end)).ok_or(MALFORMED)?;
    let strings = off_strings.checked_add(size_strings).and_then(|end| bytes.get(off_strings..end)).ok_or(MALFORMED)?;
    // The structure block is a sequence of 4-byte-aligned big-endian words
    // (tokens, lengths, name offsets; names and values padded to words).
    let structs = &structs[..structs.len() & !3];
    let words = <[u32] as zerocopy::FromBytes>::ref_from_bytes(structs).map_err(|_| MALFORMED)?;
    let at = |i: usize| words.get(i).map(|&w| u32::from_be(w)).ok_or(MALFORMED);

    let mut facts = DtFacts::default();
    // Cell sizes: the root's (for `memory` nodes' `reg`) and `/cpus`' (for
    // each `cpu`'s), with the specification's defaults.
    let (mut addr_cells, mut size_cells, mut cpu_cells) = (2u32, 1u32, 2u32);
    // The node at each depth (the root is depth 1); deeper ones are `Other`.
    let mut path = [Node::Other; 4];
    let mut depth = 0usize;
    // Index of the next word.
    let mut i = 0usize;
    loop {
        let token = at(i)?;
        i += 1;
        match token {
            FDT_BEGIN_NODE => {
                let parent = if depth == 0 { None } else { path.get(depth - 1).copied() };
                let name = 4 * i;
                let node = match parent {
                    None => Node::Root,
                    Some(Node::Root) if node_is(structs, name, b"memory") => Node::Memory,
                    Some(Node::Root) if node_is(structs, name, b"cpus") => Node::Cpus,
                    Some(Node::Root) if node_is(structs, name, b"psci") => Node::Psci,
                    Some(Node::Cpus) if node_is(structs, name, b"cpu") => Node::Cpu,
                    _ => Node::Other,
                };
                // Past the name: the word holding its terminating NUL.
                while !has_zero_byte(at(i)?) {
                    i += 1;
                }
                i += 1;
                if let Some(slot) = path.get_mut(depth) {
                    *slot = node;
                }
                depth += 1;
            }
            FDT_END_NODE => {
                depth = depth.checked_sub(1).ok_or(MALFORMED)?;
                if depth == 0 {
                    break;
                }
            }
            FDT_PROP => {
                let len = at(i)? as usize;
                let start = 4 * (i + 2);
                let end = start.checked_add(len).filter(|&end| end <= structs.len()).ok_or(MALFORMED)?;
                let node = if depth == 0 { return Err(MALFORMED) } else { path.get(depth - 1).copied().unwrap_or(Node::Other) };
                let name = at(i + 1)? as usize;
                i = end.div_ceil(4);
                if node == Node::Other {
                    continue;
                }
                let value = &structs[start..end];
                match node {
                    Node::Other => {}
                    Node::Root => {
                        if name_is(strings, name, b"#address-cells") {
                            addr_cells = be32(value, 0).ok_or(MALFORMED)?;
                        } else if name_is(strings, name, b"#size-cells") {
                            size_cells = be32(value, 0).ok_or(MALFORMED)?;
                        }
                    }
                    Node::Cpus => {
                        if name_is(strings, name, b"#address-cells") {
                            cpu_cells = be32(value, 0).ok_or(MALFORMED)?;
                        }
                    }
                    Node::Memory if name_is(strings, name, b"reg") => {
                        let entry = 4 * (addr_cells as usize + size_cells as usize);
                        if entry == 0 || addr_cells > 2 || size_cells > 2 {
                            return Err("the device tree's memory cell sizes are not supported");
                        }
                        for range in value.chunks_exact(entry) {
                            if facts.ram_count == MAX_RAM_RANGES {
                                break;
                            }
                            let base = cells_value(range, addr_cells).ok_or(MALFORMED)?;
                            let size = cells_value(&range[4 * addr_cells as usize..], size_cells).ok_or(MALFORMED)?;
                            facts.ram[facts.ram_count] = MemRange { base, size };
                            facts.ram_count += 1;
                        }
                    }
                    Node::Cpu if name_is(strings, name, b"reg") => {
                        if facts.cpu_count < MAX_CORES {
                            facts.cpus[facts.cpu_count] = cells_value(value, cpu_cells).ok_or(MALFORMED)?;
                            facts.cpu_count += 1;
                        }
                    }
                    Node::Psci if name_is(strings, name, b"method") => {
                        let method = value.strip_suffix(&[0]).unwrap_or(value);
                        facts.psci_smc = method == b"smc";
                    }
                    Node::Memory | Node::Cpu | Node::Psci => {}
                }
            }
            FDT_NOP => {}
            FDT_END => break,
            _ => return Err(MALFORMED),
        }
    }
    Ok(facts)
}

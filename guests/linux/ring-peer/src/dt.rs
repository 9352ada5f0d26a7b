//! The `/hallows` node of the device tree, as Linux exposes it under
//! `/proc/device-tree` (one directory per node, one file per property,
//! values big-endian).

use std::fmt;
use std::path::{Path, PathBuf};

use hallows_ring::{ChannelLayout, Tuning};

/// Which end of the channel this partition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Writes messages (`hallows,role = "producer"`).
    Producer,
    /// Reads them (`hallows,role = "consumer"`).
    Consumer,
}

/// One channel, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// The node's directory (for messages).
    pub node: PathBuf,
    /// `hallows,name`.
    pub name: String,
    /// `hallows,role`.
    pub role: Role,
    /// Guest-physical base (`reg`), page-aligned.
    pub ipa: u64,
    /// Bytes of channel memory (`reg`), at least the layout's total size.
    pub size: u64,
    /// From `hallows,slot-size` and `hallows,slot-count`, tuned as
    /// `hallows,tuning` says (absent: latency).
    pub layout: ChannelLayout,
    /// `hallows,layout-hash` (0: the system does not type the channel).
    pub layout_hash: u64,
    /// `hallows,doorbell`: the page whose 32-bit write rings the peer.
    pub doorbell: Option<u64>,
}

/// A device tree that does not describe channels the way the contract says;
/// `Display` names the node, the property and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct DtError {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub what: String,
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)
    }
}

impl std::error::Error for DtError {}

fn err(path: &Path, what: impl Into<String>) -> DtError {
    DtError { path: path.to_owned(), what: what.into() }
}

fn read(node: &Path, prop: &str) -> Result<Vec<u8>, DtError> {
    let p = node.join(prop);
    std::fs::read(&p).map_err(|e| err(&p, format!("cannot read the property ({e})")))
}

fn read_opt(node: &Path, prop: &str) -> Result<Option<Vec<u8>>, DtError> {
    match std::fs::read(node.join(prop)) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(&node.join(prop), format!("cannot read the property ({e})"))),
    }
}

/// A string property: one NUL-terminated UTF-8 string, non-empty.
fn string(node: &Path, prop: &str) -> Result<String, DtError> {
    parse_string(node, prop, read(node, prop)?)
}

/// An optional string property: `None` when the node lacks it.
fn string_opt(node: &Path, prop: &str) -> Result<Option<String>, DtError> {
    read_opt(node, prop)?.map(|v| parse_string(node, prop, v)).transpose()
}

fn parse_string(node: &Path, prop: &str, v: Vec<u8>) -> Result<String, DtError> {
    let p = node.join(prop);
    let Some((&0, body)) = v.split_last() else { return Err(err(&p, "not a NUL-terminated string")) };
    if body.is_empty() || body.contains(&0) {
        return Err(err(&p, "expected exactly one non-empty string"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| err(&p, "not UTF-8"))
}

/// A big-endian integer of `cells` 32-bit cells (1 or 2).
fn cells(p: &Path, bytes: &[u8], cells: usize) -> Result<u64, DtError> {
    if bytes.len() != 4 * cells || !(1..=2).contains(&cells) {
        return Err(err(p, format!("expected {} bytes ({cells} cell(s)), found {}", 4 * cells, bytes.len())));
    }
    Ok(bytes.iter().fold(0u64, |a, &b| (a << 8) | b as u64))
}

fn u32_prop(node: &Path, prop: &str) -> Result<u32, DtError> {
    let v = read(node, prop)?;
    cells(&node.join(prop), &v, 1).map(|x| x as u32)
}

fn u64_prop(node: &Path, prop: &str) -> Result<Option<u64>, DtError> {
    match read_opt(node, prop)? {
        None => Ok(None),
        Some(v) => cells(&node.join(prop), &v, 2).map(Some),
    }
}

/// The channels under `root/hallows` (`root` is `/proc/device-tree`),
/// sorted by address. No `/hallows` node means no channels.
pub fn channels(root: &Path) -> Result<Vec<Channel>, DtError> {
    let hallows = root.join("hallows");
    let entries = match std::fs::read_dir(&hallows) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(&hallows, format!("cannot list the node ({e})"))),
    };
    let ac = u32_prop(&hallows, "#address-cells")? as usize;
    let sc = u32_prop(&hallows, "#size-cells")? as usize;
    if !(1..=2).contains(&ac) || !(1..=2).contains(&sc) {
        return Err(err(&hallows, format!("#address-cells = {ac}, #size-cells = {sc}: expected 1 or 2 each")));
    }
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| err(&hallows, format!("cannot list the node ({e})")))?;
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("channel@") || !e.path().is_dir() {
            continue;
        }
        out.push(channel(&e.path(), ac, sc)?);
    }
    out.sort_by_key(|c| c.ipa);
    for w in out.windows(2) {
        if w[0].ipa + w[0].size > w[1].ipa {
            return Err(err(&w[1].node, format!("overlaps channel {:?}", w[0].name)));
        }
    }
    for (i, c) in out.iter().enumerate() {
        if out[..i].iter().any(|d| d.name == c.name) {
            return Err(err(&c.node, format!("a second channel named {:?}", c.name)));
        }
    }
    Ok(out)
}

fn channel(node: &Path, ac: usize, sc: usize) -> Result<Channel, DtError> {
    let compatible = string(node, "compatible")?;
    if compatible != "hallows,channel" {
        return Err(err(&node.join("compatible"), format!("{compatible:?}, expected \"hallows,channel\"")));
    }
    let reg = read(node, "reg")?;
    let rp = node.join("reg");
    if reg.len() != 4 * (ac + sc) {
        return Err(err(&rp, format!("expected {} bytes (one address and size), found {}", 4 * (ac + sc), reg.len())));
    }
    let ipa = cells(&rp, &reg[..4 * ac], ac)?;
    let size = cells(&rp, &reg[4 * ac..], sc)?;
    let name = string(node, "hallows,name")?;
    let role = match string(node, "hallows,role")?.as_str() {
        "producer" => Role::Producer,
        "consumer" => Role::Consumer,
        other => return Err(err(&node.join("hallows,role"), format!("{other:?}, expected \"producer\" or \"consumer\""))),
    };
    let slot_size = u32_prop(node, "hallows,slot-size")?;
    let slot_count = u32_prop(node, "hallows,slot-count")?;
    // Absent (a tree from before tunings existed) means latency, the default.
    let tuning = match string_opt(node, "hallows,tuning")? {
        None => Tuning::Latency,
        Some(t) => Tuning::from_name(&t).ok_or_else(|| {
            err(&node.join("hallows,tuning"), format!("{t:?}, expected \"latency\" or \"throughput\""))
        })?,
    };
    let layout = ChannelLayout::new(slot_size as usize, slot_count as usize)
        .map_err(|e| err(node, format!("slot size {slot_size} and count {slot_count} are not a channel layout: {e}")))?
        .tuned(tuning);
    if ipa % layout.page_size() as u64 != 0 {
        return Err(err(&rp, format!("address {ipa:#x} is not page-aligned")));
    }
    if size < layout.total_size() as u64 {
        return Err(err(&rp, format!("size {size:#x} is smaller than the layout's {:#x} bytes", layout.total_size())));
    }
    if ipa.checked_add(size).is_none() {
        return Err(err(&rp, "address + size overflows"));
    }
    let layout_hash = u64_prop(node, "hallows,layout-hash")?.unwrap_or(0);
    let doorbell = u64_prop(node, "hallows,doorbell")?;
    if let Some(d) = doorbell {
        if d % 4096 != 0 {
            return Err(err(&node.join("hallows,doorbell"), format!("{d:#x} is not page-aligned")));
        }
    }
    Ok(Channel { node: node.to_owned(), name, role, ipa, size, layout, layout_hash, doorbell })
}

/// Picks this end's channel of `role`: the one named `name`, or the only
/// one of that role.
pub fn pick<'a>(channels: &'a [Channel], role: Role, name: Option<&str>) -> Result<&'a Channel, String> {
    let of_role: Vec<&Channel> = channels.iter().filter(|c| c.role == role).collect();
    let what = match role {
        Role::Producer => "sends on (role producer)",
        Role::Consumer => "receives from (role consumer)",
    };
    match name {
        Some(n) => of_role.into_iter().find(|c| c.name == n).ok_or_else(|| {
            format!("no channel {n:?} this partition {what}; the device tree has {}", list(channels))
        }),
        None => match of_role.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("no channel this partition {what}; the device tree has {}", list(channels))),
            _ => Err(format!("more than one channel this partition {what} ({}): name one", list(channels))),
        },
    }
}

fn list(channels: &[Channel]) -> String {
    if channels.is_empty() {
        return "none (no /hallows/channel@* nodes)".into();
    }
    channels
        .iter()
        .map(|c| format!("{:?} ({})", c.name, if c.role == Role::Producer { "producer" } else { "consumer" }))
        .collect::<Vec<_>>()
        .join(", ")
}

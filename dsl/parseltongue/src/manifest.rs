//! Cross-checks between specs and the manifest (what `hallows check` adds).
//!
//! It owns the rules that need both: channels exist and run in the
//! direction the spec uses them, messages fit their slots, both ends of a
//! channel agree on the message layout, the budget fits the partition. It
//! never re-checks the manifest itself (vmm-config did) or a spec alone.

use std::path::{Path, PathBuf};

use vmm_config::System;

use crate::ast::ChannelDirection;
use crate::diag::{Diag, Diagnostics};
use crate::Spec;

/// The spec files named by the manifest's partitions (`spec` key), resolved
/// against the manifest's directory: `(partition, path)`.
pub fn spec_paths(system: &System, manifest: &Path) -> Vec<(String, PathBuf)> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    system
        .partitions
        .iter()
        .filter_map(|p| p.spec.as_ref().map(|s| (p.name.clone(), dir.join(s))))
        .collect()
}

/// Loads every spec the manifest names and cross-checks them all.
pub fn check_manifest(system: &System, manifest: &Path) -> Result<Vec<(String, Spec)>, Diagnostics> {
    check_system(system, manifest, &|_| Ok(None))
}

/// Where a guest program's spec is: the spec file its crate declares
/// (`[package.metadata.hallows] spec`, which the build helper compiles and
/// nothing else), `Ok(None)` for a guest without one, `Err` with the reason
/// when the declaration cannot be read.
pub type GuestSpec<'a> = &'a dyn Fn(&str) -> Result<Option<PathBuf>, String>;

/// As [`check_manifest`], and also with the spec each partition's guest
/// compiles ([`GuestSpec`]), so that a partition without a `spec` key is
/// checked all the same. A partition whose `spec` key names another file
/// than its guest compiles is an error. A spec learnt from the guest is
/// checked on the channels the manifest connects to the partition only: a
/// guest may run in partitions that use part of its service (it sees the
/// others missing at connect time).
pub fn check_system(system: &System, manifest: &Path, guest_spec: GuestSpec<'_>) -> Result<Vec<(String, Spec)>, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut specs = Vec::new();
    let mut strict = Vec::new();
    let named = spec_paths(system, manifest);
    for p in &system.partitions {
        let from_manifest = named.iter().find(|(n, _)| *n == p.name).map(|(_, f)| f.clone());
        let from_guest = match guest_spec(&p.guest) {
            Ok(f) => f,
            Err(e) => {
                diags.push_global(format!("partition `{}`: cannot learn the spec of guest `{}`: {e}", p.name, p.guest));
                continue;
            }
        };
        let path = match (from_manifest, from_guest) {
            (Some(m), Some(g)) => {
                let same = match (m.canonicalize(), g.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => m == g,
                };
                if !same {
                    diags.push_global(format!(
                        "partition `{}`: the manifest's `spec` is {}, but its guest `{}` compiles {}: \
                         point `spec` at the guest's spec, or remove the key (the guest's spec is checked without it)",
                        p.name,
                        m.display(),
                        p.guest,
                        g.display()
                    ));
                    continue;
                }
                (m, true)
            }
            (Some(m), None) => (m, true),
            (None, Some(g)) => (g, false),
            (None, None) => continue,
        };
        match crate::check_file(&path.0) {
            Ok(spec) => {
                specs.push((p.name.clone(), spec));
                strict.push(path.1);
            }
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    check_ends(system, &specs, &strict)?;
    Ok(specs)
}

/// The layout hash each channel's message type has in `specs` (checked,
/// so both ends agree; the receiver's where a mismatch was let through),
/// by channel name: what the tool writes into the system table for the
/// runtime to compare at open. Channels no spec types are absent (0).
pub fn layout_hashes(system: &System, specs: &[(String, Spec)]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for c in &system.channels {
        let mut hash = None;
        for (pname, spec) in specs {
            let m = &spec.model;
            let Some(sc) = m.channels.iter().find(|x| x.name == c.name) else { continue };
            let is_end = match sc.direction {
                ChannelDirection::Receive => c.to == *pname,
                ChannelDirection::Send => c.from == *pname,
            };
            if !is_end {
                continue;
            }
            let h = m.structs[sc.message].hash;
            if sc.direction == ChannelDirection::Receive || hash.is_none() {
                hash = Some(h);
            }
        }
        if let Some(h) = hash {
            out.push((c.name.clone(), h));
        }
    }
    out
}

/// Cross-checks `(partition, spec)` pairs against a loaded system.
pub fn check_against(system: &System, specs: &[(String, Spec)]) -> Result<(), Diagnostics> {
    check_ends(system, specs, &vec![true; specs.len()])
}

/// As [`check_against`]; `strict[i]` false (a spec learnt from the guest)
/// skips the channels of spec `i` that the manifest does not connect to
/// its partition at all.
fn check_ends(system: &System, specs: &[(String, Spec)], strict: &[bool]) -> Result<(), Diagnostics> {
    let mut diags = Diagnostics::new();
    let files: Vec<usize> = specs.iter().map(|(_, s)| diags.add_file(&s.file_name, &s.source)).collect();
    let channel_names: Vec<&str> = system.channels.iter().map(|c| c.name.as_str()).collect();
    // For the layout comparison: (channel, direction) -> (spec index, message index).
    let mut ends: Vec<(&str, ChannelDirection, usize, usize, std::ops::Range<usize>)> = Vec::new();
    for (si, (pname, spec)) in specs.iter().enumerate() {
        let file = files[si];
        let m = &spec.model;
        let Some(part) = system.partitions.iter().find(|p| &p.name == pname) else {
            diags.push(file, Diag::new(m.ast.service.name.span.clone(), format!("partition `{pname}` is not in the manifest")));
            continue;
        };
        let lenient = !strict.get(si).copied().unwrap_or(true);
        // A spec learnt from the guest whose channels the manifest does not
        // connect to this partition is not the partition's service (the
        // guest runs without it): its budget is not the partition's either.
        let serves = m.channels.iter().any(|c| system.channels.iter().any(|x| x.name == c.name && (x.from == *pname || x.to == *pname)));
        if lenient && !serves {
            continue;
        }
        if let Some(cs) = &m.budget.cores_span {
            if m.budget.cores as usize > part.cores.len() {
                diags.push(file, Diag::new(cs.clone(), format!("the budget asks for {} cores; partition `{pname}` has {}", m.budget.cores, part.cores.len())).with_label("more cores than the partition has"));
            }
        }
        if let Some((ram, span)) = &m.budget.ram {
            if *ram > part.ram_size {
                diags.push(file, Diag::new(span.clone(), format!("the budget asks for {} of RAM; partition `{pname}` has {}", vmm_config::format_size(*ram), vmm_config::format_size(part.ram_size))).with_label("more RAM than the partition has"));
            }
        }
        for c in &m.channels {
            let connected = system.channels.iter().find(|x| x.name == c.name).filter(|x| x.from == *pname || x.to == *pname);
            if lenient && connected.is_none() {
                continue;
            }
            let Some(mc) = system.channels.iter().find(|x| x.name == c.name) else {
                diags.push(file, Diag::new(c.span.clone(), format!("channel \"{}\" is not in the manifest", c.name))
                    .with_label("no such [[channel]]")
                    .suggest(&c.name, channel_names.iter().copied()));
                continue;
            };
            let (want, role) = match c.direction {
                ChannelDirection::Receive => (&mc.to, "receives on"),
                ChannelDirection::Send => (&mc.from, "sends on"),
            };
            if want != pname {
                let fix = if mc.from == *pname || mc.to == *pname {
                    format!("the manifest routes \"{}\" from `{}` to `{}`: partition `{pname}` is its {}", c.name, mc.from, mc.to, if mc.from == *pname { "producer (use send_channel)" } else { "consumer (use receive_channel)" })
                } else {
                    format!("the manifest routes \"{}\" from `{}` to `{}`; `{pname}` is neither end", c.name, mc.from, mc.to)
                };
                diags.push(file, Diag::new(c.span.clone(), format!("partition `{pname}` {role} channel \"{}\", but the manifest does not connect it that way", c.name)).with_label("wrong direction or partition").with_note(fix));
                continue;
            }
            let st = &m.structs[c.message];
            if st.size > mc.slot_size as u64 || !(mc.slot_size as u64).is_multiple_of(st.align) {
                diags.push(file, Diag::new(c.span.clone(), format!("message `{}` ({} bytes, align {}) does not fit channel \"{}\"'s {}-byte slots", st.name, st.size, st.align, c.name, mc.slot_size))
                    .with_label("message larger than the slot")
                    .with_related(st.span.clone(), "message declared here")
                    .with_help(format!("set `slot_size` to at least {} (a multiple of {}) in the manifest", st.size, st.align)));
                continue;
            }
            ends.push((c.name.as_str(), c.direction, si, c.message, c.span.clone()));
        }
    }
    for (name, dir, si, mi, span) in &ends {
        if *dir != ChannelDirection::Receive {
            continue;
        }
        let Some((_, _, sj, mj, _)) = ends.iter().find(|e| e.0 == *name && e.1 == ChannelDirection::Send) else { continue };
        let (a, b) = (&specs[*si].1.model, &specs[*sj].1.model);
        let (ta, tb) = (&a.structs[*mi], &b.structs[*mj]);
        if ta.hash != tb.hash {
            diags.push(files[*si], Diag::new(span.clone(), format!("the two ends of channel \"{name}\" disagree on the message type (layout hash {:#018x} here, {:#018x} at the sender)", ta.hash, tb.hash))
                .with_label(format!("`{}` received here", ta.name))
                .with_related(ta.span.clone(), "receiver's definition")
                .with_related_in(files[*sj], tb.span.clone(), "sender's definition")
                .with_note(format!("receiver ({}, partition `{}`):\n{}", specs[*si].1.file_name, specs[*si].0, a.canonical(*mi)))
                .with_note(format!("sender ({}, partition `{}`):\n{}", specs[*sj].1.file_name, specs[*sj].0, b.canonical(*mj)))
                .with_help("both partitions must declare the same message_struct (same name, fields, types and order)"));
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        diags.sort();
        Err(diags)
    }
}

//! Physical placement of partition RAM and channel memory.
//!
//! Fixed placements (`ram_base`) are checked first; then partitions without
//! one are placed first-fit, 2 MiB aligned, in manifest order, in board RAM
//! that neither the hypervisor nor a fixed partition uses; then channel
//! memory, page aligned, in what is left. Deterministic: the same manifest
//! always gives the same layout. Nothing here reads TOML.

use std::ops::Range as Span;

use crate::diag::{Diagnostics, FileId};
use crate::size::format_size;
use crate::{Board, Range, PAGE_SIZE, RAM_ALIGN};

/// One partition's RAM request, with the spans to blame.
pub(crate) struct RamRequest<'a> {
    pub name: &'a str,
    pub size: u64,
    pub size_span: Span<usize>,
    pub fixed: Option<(u64, Span<usize>)>,
}

/// Free board RAM, sorted and disjoint.
#[derive(Clone, Debug)]
pub(crate) struct FreeList(Vec<Range>);

impl FreeList {
    pub fn new(board: &Board) -> Self {
        let mut f = FreeList(board.ram.clone());
        f.remove(board.hypervisor);
        f
    }

    pub fn remove(&mut self, used: Range) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for r in &self.0 {
            if !r.overlaps(&used) {
                out.push(*r);
                continue;
            }
            if r.base < used.base {
                out.push(Range::new(r.base, used.base - r.base));
            }
            if used.end() < r.end() {
                out.push(Range::new(used.end(), r.end() - used.end()));
            }
        }
        self.0 = out;
    }

    /// The lowest `align`-aligned range of `size` bytes, taken out of the list.
    pub fn take(&mut self, size: u64, align: u64) -> Option<Range> {
        let found = self.0.iter().find_map(|r| {
            let base = r.base.checked_next_multiple_of(align)?;
            let end = base.checked_add(size)?;
            (end <= r.end()).then_some(Range::new(base, size))
        })?;
        self.remove(found);
        Some(found)
    }

    /// The largest `align`-aligned block still free.
    pub fn largest(&self, align: u64) -> u64 {
        self.0
            .iter()
            .filter_map(|r| {
                r.base
                    .checked_next_multiple_of(align)
                    .map(|b| r.end().saturating_sub(b))
            })
            .max()
            .unwrap_or(0)
    }
}

fn round_down(v: u64, a: u64) -> u64 {
    v - v % a
}

/// Places every partition's RAM; `None` in the result for one that could not be placed
/// (each such failure is reported). Also returns what RAM is left.
pub(crate) fn place_partitions(
    d: &mut Diagnostics,
    file: FileId,
    board: &Board,
    reqs: &[RamRequest<'_>],
) -> (Vec<Option<u64>>, FreeList) {
    let mut free = FreeList::new(board);
    let mut placed: Vec<Option<u64>> = vec![None; reqs.len()];
    let mut fixed_ok: Vec<(usize, Range, Span<usize>)> = Vec::new();

    for (i, req) in reqs.iter().enumerate() {
        let Some((base, span)) = &req.fixed else {
            continue;
        };
        let r = Range::new(*base, req.size);
        if base % RAM_ALIGN != 0 {
            let down = round_down(*base, RAM_ALIGN);
            d.error(
                file,
                span.clone(),
                format!("ram_base {base:#x} is not 2 MiB aligned"),
            )
            .label("not a multiple of 0x200000")
            .help(format!(
                "use {down:#x} or {:#x}",
                down.saturating_add(RAM_ALIGN)
            ));
            continue;
        }
        if base.checked_add(req.size).is_none() || !board.ram.iter().any(|ram| ram.contains(&r)) {
            let rams: Vec<String> = board.ram.iter().map(|r| r.to_string()).collect();
            d.error(
                file,
                span.clone(),
                format!(
                    "RAM of partition `{}` ({r}) is outside the board's RAM",
                    req.name
                ),
            )
            .help(format!(
                "board \"{}\" has RAM at {}",
                board.name,
                rams.join(", ")
            ));
            continue;
        }
        if r.overlaps(&board.hypervisor) {
            d.error(file, span.clone(), format!("RAM of partition `{}` ({r}) overlaps the hypervisor reservation ({})", req.name, board.hypervisor))
                .help(format!("choose a ram_base at or above {:#x}, or leave ram_base out to place the partition automatically", board.hypervisor.end().next_multiple_of(RAM_ALIGN)));
            continue;
        }
        if let Some((j, other, ospan)) = fixed_ok.iter().find(|(_, o, _)| o.overlaps(&r)) {
            d.error(
                file,
                span.clone(),
                format!(
                    "RAM of partition `{}` ({r}) overlaps the RAM of partition `{}` ({other})",
                    req.name, reqs[*j].name
                ),
            )
            .related(file, ospan.clone(), "that partition's ram_base");
            continue;
        }
        fixed_ok.push((i, r, span.clone()));
        placed[i] = Some(*base);
    }
    for (_, r, _) in &fixed_ok {
        free.remove(*r);
    }

    for (i, req) in reqs.iter().enumerate() {
        if req.fixed.is_some() {
            continue;
        }
        match free.take(req.size, RAM_ALIGN) {
            Some(r) => placed[i] = Some(r.base),
            None => {
                d.error(file, req.size_span.clone(), format!("no room for the {} of RAM of partition `{}`", format_size(req.size), req.name))
                    .label("does not fit")
                    .help(format!(
                        "the largest free 2 MiB-aligned block left after the hypervisor and earlier partitions is {}; reduce `ram` here or in other partitions",
                        format_size(free.largest(RAM_ALIGN))
                    ));
            }
        }
    }
    (placed, free)
}

/// Places one channel's memory; `None` if it does not fit.
pub(crate) fn place_channel(free: &mut FreeList, size: u64) -> Option<u64> {
    free.take(size, PAGE_SIZE).map(|r| r.base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_list_splits_and_takes_first_fit() {
        let mut f = FreeList(vec![Range::new(0x1000_0000, 0x1000_0000)]);
        f.remove(Range::new(0x1000_0000, 0x10_0000));
        assert_eq!(
            f.take(RAM_ALIGN, RAM_ALIGN),
            Some(Range::new(0x1020_0000, RAM_ALIGN))
        );
        f.remove(Range::new(0x1800_0000, 0x1000));
        assert_eq!(f.0.len(), 3);
        assert_eq!(
            f.take(PAGE_SIZE, PAGE_SIZE),
            Some(Range::new(0x1010_0000, PAGE_SIZE))
        );
        assert_eq!(f.take(0x2000_0000, RAM_ALIGN), None);
        assert_eq!(f.largest(RAM_ALIGN), 0x2000_0000 - 0x1800_0000 - RAM_ALIGN);
    }
}

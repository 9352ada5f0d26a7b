//! Painting the retained tree into a canvas, one clip rectangle at a time.
//!
//! For each damaged rectangle the renderer sets the canvas clip to it and
//! walks the tree: a node whose rectangle misses the clip is skipped with its
//! whole subtree (children are clipped to their parent, so nothing of a
//! subtree can lie outside its root). A node paints its background (hover or
//! pressed variant when it has that state), border, content (text, chart)
//! and, when focused, its focus ring; then its children in order.

use crate::canvas::Canvas;
use crate::element::{Align, Chart, ChartKind, Content};
use crate::geom::Rect;
use crate::text::TextEngine;
use crate::tree::{NodeId, Tree};
use crate::widgets::nice_axis;
use core::fmt::Write as _;

/// Interaction state that changes how nodes look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaintState {
    /// The interactive node under the pointer.
    pub hovered: Option<NodeId>,
    /// The interactive node a button went down on.
    pub pressed: Option<NodeId>,
    /// The node with keyboard focus.
    pub focused: Option<NodeId>,
}

/// Paints every node that meets the canvas's current clip.
pub fn paint_tree<M>(tree: &Tree<M>, canvas: &mut Canvas<'_>, text: &mut TextEngine, state: &PaintState) {
    if let Some(root) = tree.root() {
        let clip = canvas.clip();
        paint_node(tree, root, canvas, text, state, clip);
        canvas.set_clip(clip);
    }
}

fn paint_node<M>(tree: &Tree<M>, id: NodeId, canvas: &mut Canvas<'_>, text: &mut TextEngine, state: &PaintState, clip: Rect) {
    let Some(n) = tree.node(id) else { return };
    let rect = n.rect;
    let here = rect.intersect(&clip);
    if here.is_empty() {
        return;
    }
    canvas.set_clip(here);
    let v = &n.visual;
    let bg = if state.pressed == Some(id) && v.pressed_background.is_some() {
        v.pressed_background
    } else if state.hovered == Some(id) && v.hover_background.is_some() {
        v.hover_background
    } else {
        v.background
    };
    if let Some(bg) = bg {
        canvas.fill_rounded_rect(rect, v.radius, bg);
    }
    if let Some((c, w)) = v.border {
        canvas.stroke_rounded_rect(rect, v.radius, w, c);
    }
    match &n.content {
        Content::None => {}
        Content::Text(t) => {
            let w = text.measure(&t.text, t.size);
            let h = text.metrics(t.size).height;
            let x = match t.align {
                Align::Start => rect.x,
                Align::Center => rect.x + (rect.w - w) / 2,
                Align::End => rect.right() - w,
            };
            let y = rect.y + (rect.h - h) / 2;
            text.draw(canvas, x, y, &t.text, t.size, t.color);
        }
        Content::Chart(c) => paint_chart(canvas, text, rect, c),
    }
    if state.focused == Some(id) {
        if let Some(ring) = v.focus_ring {
            canvas.stroke_rounded_rect(rect, v.radius, 2.0, ring);
        }
    }
    for &c in &n.children {
        paint_node(tree, c, canvas, text, state, here);
    }
}

/// Axis label text size in charts.
pub const CHART_LABEL_SIZE: u16 = 11;

struct Label {
    buf: [u8; 24],
    len: usize,
}

impl core::fmt::Write for Label {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        Ok(())
    }
}

impl Label {
    fn new() -> Label {
        Label { buf: [0; 24], len: 0 }
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Formats an axis value compactly (1.5k, 2M, 0.25) without allocating.
fn axis_label(v: f32, out: &mut Label) {
    let a = v.abs();
    let _ = if a >= 1e9 {
        write!(out, "{}G", trim(v / 1e9))
    } else if a >= 1e6 {
        write!(out, "{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        write!(out, "{}k", trim(v / 1e3))
    } else {
        write!(out, "{}", trim(v))
    };
}

/// Rounds to at most two decimals for display.
fn trim(v: f32) -> f32 {
    libm::roundf(v * 100.0) / 100.0
}

fn paint_chart(canvas: &mut Canvas<'_>, text: &mut TextEngine, rect: Rect, c: &Chart) {
    let label_h = text.metrics(CHART_LABEL_SIZE).height;
    // The plot area: room on the left for labels, half a label above and below.
    let gutter = 40.min(rect.w / 3);
    let plot = Rect::new(rect.x + gutter, rect.y + label_h / 2, rect.w - gutter - 4, rect.h - label_h);
    if plot.is_empty() {
        return;
    }
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for &s in &c.samples {
        let s = if s.is_finite() { s } else { 0.0 };
        lo = lo.min(s);
        hi = hi.max(s);
    }
    if c.samples.is_empty() {
        lo = 0.0;
        hi = 1.0;
    }
    let axis = nice_axis(lo.min(0.0), hi, 4);
    let span = axis.max - axis.min;
    let y_of = |v: f32| -> f32 { plot.bottom() as f32 - (v - axis.min) / span * plot.h as f32 };
    let cap = c.capacity.max(c.samples.len()).max(2);
    // Newest sample at the right edge.
    let first = cap - c.samples.len();
    let x_of = |i: usize| -> f32 { plot.x as f32 + (first + i) as f32 * (plot.w - 1) as f32 / (cap - 1) as f32 + 0.5 };
    // Non-finite samples draw as 0; everything is kept on the axis, so no
    // coordinate leaves the plot.
    let val = |s: f32| if s.is_finite() { s.clamp(axis.min, axis.max) } else { 0.0f32.clamp(axis.min, axis.max) };
    if c.kind == ChartKind::Line {
        // The area under the line first, column by column; the grid over it.
        for (i, w) in c.samples.windows(2).enumerate() {
            let (x0, x1) = (x_of(i), x_of(i + 1));
            let (y0, y1) = (y_of(val(w[0])), y_of(val(w[1])));
            let (c0, c1) = (libm::floorf(x0) as i32, libm::floorf(x1) as i32);
            for x in c0..c1.max(c0 + 1) {
                let t = if x1 > x0 { ((x as f32 + 0.5 - x0) / (x1 - x0)).clamp(0.0, 1.0) } else { 0.0 };
                canvas.fill_column(x, y0 + (y1 - y0) * t, plot.bottom(), c.fill);
            }
        }
    }
    // Grid lines and labels.
    let mut v = axis.min;
    let mut guard = 0;
    while v <= axis.max + axis.step * 0.5 && guard < 16 {
        let y = libm::roundf(y_of(v)) as i32;
        canvas.fill_rect(Rect::new(plot.x, y.min(plot.bottom() - 1), plot.w, 1), c.axis_color.with_alpha(60));
        let mut l = Label::new();
        axis_label(v, &mut l);
        let w = text.measure(l.as_str(), CHART_LABEL_SIZE);
        text.draw(canvas, plot.x - 4 - w, y - label_h / 2, l.as_str(), CHART_LABEL_SIZE, c.axis_color);
        v += axis.step;
        guard += 1;
    }
    match c.kind {
        ChartKind::Line => {
            for (i, w) in c.samples.windows(2).enumerate() {
                canvas.line(x_of(i), y_of(val(w[0])), x_of(i + 1), y_of(val(w[1])), 2.0, c.color);
            }
        }
        ChartKind::Bar => {
            let slot = (plot.w as f32 / cap as f32).max(1.0);
            let bw = libm::floorf(slot * 0.7).max(1.0) as i32;
            for (i, &s) in c.samples.iter().enumerate() {
                let x = plot.x + libm::floorf((first + i) as f32 * slot + (slot - bw as f32) / 2.0) as i32;
                let y = libm::roundf(y_of(val(s))) as i32;
                let base = libm::roundf(y_of(val(0.0))) as i32;
                let (top, bottom) = (y.min(base), y.max(base));
                canvas.fill_rect(Rect::new(x, top, bw, (bottom - top).max(1)), c.color);
            }
        }
    }
}

//! Widgets: function components (props in, [`Element`] out) for the
//! dashboard and other UIs, the [`Ring`] of samples charts draw, and the
//! axis scaling they use.

use crate::element::{boxed, column, row, text, Align, Chart, ChartKind, Content, Element};
use crate::geom::Color;
use alloc::string::String;
use alloc::vec::Vec;

/// The dashboard's colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// Window background.
    pub background: Color,
    /// Tile / panel background.
    pub panel: Color,
    /// Main text.
    pub text: Color,
    /// Secondary text (captions, axis labels).
    pub muted: Color,
    /// Accent (selected tab, primary button, first series).
    pub accent: Color,
    /// Button face.
    pub button: Color,
    /// Button face while hovered.
    pub button_hover: Color,
    /// Button face while pressed.
    pub button_pressed: Color,
    /// Focus ring.
    pub focus: Color,
    /// Warning (paused generators).
    pub warn: Color,
}

/// The default (dark) theme.
pub const THEME: Theme = Theme {
    background: Color::hex(0x0f172a),
    panel: Color::hex(0x1e293b),
    text: Color::hex(0xf1f5f9),
    muted: Color::hex(0x94a3b8),
    accent: Color::hex(0x38bdf8),
    button: Color::hex(0x334155),
    button_hover: Color::hex(0x475569),
    button_pressed: Color::hex(0x0ea5e9),
    focus: Color::hex(0xfbbf24),
    warn: Color::hex(0xf97316),
};

/// Colours for successive series.
pub const SERIES_COLORS: [Color; 6] = [
    Color::hex(0x38bdf8),
    Color::hex(0x4ade80),
    Color::hex(0xf472b6),
    Color::hex(0xfacc15),
    Color::hex(0xa78bfa),
    Color::hex(0xfb923c),
];

/// `over` blended onto `under` with alpha `a`, as an opaque colour.
pub fn mix(under: Color, over: Color, a: u8) -> Color {
    let m = |u: u8, o: u8| ((o as u32 * a as u32 + u as u32 * (255 - a as u32) + 127) / 255) as u8;
    Color::rgb(m(under.r, over.r), m(under.g, over.g), m(under.b, over.b))
}

/// A fixed-capacity ring buffer of samples (oldest overwritten).
#[derive(Clone, Debug, PartialEq)]
pub struct Ring {
    buf: Vec<f32>,
    head: usize,
    len: usize,
}

impl Ring {
    /// An empty ring holding at most `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> Ring {
        Ring { buf: alloc::vec![0.0; capacity.max(1)], head: 0, len: 0 }
    }

    /// Appends a sample, dropping the oldest when full.
    pub fn push(&mut self, v: f32) {
        let cap = self.buf.len();
        self.buf[(self.head + self.len) % cap] = v;
        if self.len < cap {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % cap;
        }
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most samples held.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<f32> {
        (self.len > 0).then(|| self.buf[(self.head + self.len - 1) % self.buf.len()])
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = f32> + '_ {
        (0..self.len).map(move |i| self.buf[(self.head + i) % self.buf.len()])
    }

    /// Copies the samples, oldest first, into `out` (cleared first).
    pub fn copy_into(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.iter());
    }
}

/// A "nice" axis covering `lo..=hi` with about `ticks` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    /// Lowest value (a multiple of `step`).
    pub min: f32,
    /// Highest value (a multiple of `step`).
    pub max: f32,
    /// Distance between grid lines: 1, 2 or 5 times a power of ten.
    pub step: f32,
}

/// Scales an axis to cover `lo..=hi` with steps of 1, 2 or 5 x 10^k (a flat
/// or non-finite range becomes a unit range; values beyond ±1e30 are
/// clamped there).
pub fn nice_axis(lo: f32, hi: f32, ticks: u32) -> Axis {
    // Bounded so that every step below stays finite (samples are untrusted).
    const LIMIT: f32 = 1e30;
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi).clamp(-LIMIT, LIMIT), lo.max(hi).clamp(-LIMIT, LIMIT))
    } else {
        (0.0, 1.0)
    };
    if hi - lo < f32::EPSILON * hi.abs().max(1.0) {
        hi = lo + 1.0;
        if lo > 0.0 {
            lo = 0.0;
        }
    }
    let raw = (hi - lo) / ticks.max(1) as f32;
    let mag = libm::powf(10.0, libm::floorf(libm::log10f(raw)));
    let norm = raw / mag;
    let step = mag * if norm <= 1.0 { 1.0 } else if norm <= 2.0 { 2.0 } else if norm <= 5.0 { 5.0 } else { 10.0 };
    Axis { min: libm::floorf(lo / step) * step, max: libm::ceilf(hi / step) * step, step }
}

/// A text label.
pub fn label<M>(s: impl Into<String>, size: u16, color: Color) -> Element<M> {
    text(s).size(size).color(color)
}

/// A stat tile: a caption above a big value. The value's text node has key
/// `"value"`, so a changed value is a paint-only change of that one node
/// (give the tile a fixed width or the value a fixed width if its length
/// may change).
pub fn stat_tile<M>(caption: &str, value: impl Into<String>, theme: &Theme) -> Element<M> {
    column()
        .padding(12.0)
        .gap(4.0)
        .background(theme.panel)
        .radius(8.0)
        .child(label(caption, 13, theme.muted).key("caption"))
        .child(label(value, 28, theme.text).key("value").style(|s| s.min_size.width = taffy::prelude::length(0.0)))
}

/// A push button: hover, pressed and focus looks, Tab-focusable, sends
/// `msg` on click, Enter or Space.
pub fn button<M>(caption: impl Into<String>, msg: M, theme: &Theme) -> Element<M> {
    boxed()
        .center()
        .padding_xy(14.0, 8.0)
        .background(theme.button)
        .hover(theme.button_hover)
        .pressed(theme.button_pressed)
        .radius(6.0)
        .focusable(theme.focus)
        .on_click(msg)
        .child(label(caption, 15, theme.text).key("caption"))
}

fn chart<M>(kind: ChartKind, ring: &Ring, color: Color, theme: &Theme) -> Element<M> {
    let mut samples = Vec::with_capacity(ring.len());
    ring.copy_into(&mut samples);
    let fill = mix(theme.panel, color, 48);
    boxed().content(Content::Chart(Chart { kind, samples, capacity: ring.capacity(), color, fill, axis_color: theme.muted }))
}

/// A line chart of a ring of samples (auto-scaled y axis from 0).
pub fn line_chart<M>(ring: &Ring, color: Color, theme: &Theme) -> Element<M> {
    chart(ChartKind::Line, ring, color, theme)
}

/// A bar chart of a ring of samples (auto-scaled y axis from 0).
pub fn bar_chart<M>(ring: &Ring, color: Color, theme: &Theme) -> Element<M> {
    chart(ChartKind::Bar, ring, color, theme)
}

/// A titled panel around a chart (or anything).
pub fn panel<M>(title: &str, body: Element<M>, theme: &Theme) -> Element<M> {
    column()
        .padding(10.0)
        .gap(6.0)
        .background(theme.panel)
        .radius(8.0)
        .child(label(title, 14, theme.muted).key("title"))
        .child(body.key("body").grow(1.0))
}

/// A tab strip: one focusable tab per name; the selected one is
/// highlighted; clicking (or Enter/Space on) tab `i` sends `on_select(i)`.
pub fn tabs<M>(names: &[&str], selected: usize, on_select: impl Fn(usize) -> M, theme: &Theme) -> Element<M> {
    row().gap(4.0).children(names.iter().enumerate().map(|(i, name)| {
        let sel = i == selected;
        boxed()
            .key(*name)
            .padding_xy(16.0, 8.0)
            .radius(6.0)
            .background(if sel { theme.accent } else { theme.panel })
            .hover(if sel { theme.accent } else { theme.button_hover })
            .pressed(theme.button_pressed)
            .focusable(theme.focus)
            .on_click(on_select(i))
            .child(label(*name, 15, if sel { theme.background } else { theme.text }).align(Align::Center))
    }))
}

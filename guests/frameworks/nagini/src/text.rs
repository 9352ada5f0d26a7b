//! Text: the shipped font (DejaVu Sans, `fonts/DejaVuSans.ttf`, licence in
//! `fonts/LICENSE-DejaVu`), measurement for layout and a glyph cache.
//!
//! Glyphs are rasterized by `ab_glyph` once per (size, character) into
//! coverage bitmaps kept in one arena; drawing a string afterwards is only
//! blending cached coverage. Text is a single line; pen positions are
//! rounded to whole pixels so a cached bitmap is reused wherever the glyph
//! lands (digits in DejaVu Sans share one advance, so a changing number
//! keeps its width).

use crate::canvas::Canvas;
use crate::geom::Color;
use ab_glyph::{Font as _, FontRef, ScaleFont as _};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// DejaVu Sans 2.37 (Bitstream Vera licence), the font every Nagini UI uses.
pub const DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The smallest and largest text sizes accepted, in pixels (others clamp).
pub const MIN_TEXT_SIZE: u16 = 4;
/// See [`MIN_TEXT_SIZE`].
pub const MAX_TEXT_SIZE: u16 = 256;

#[derive(Clone, Copy, Debug)]
struct Glyph {
    /// Offset of the bitmap's left edge from the pen position.
    left: i16,
    /// Offset of the bitmap's top edge from the baseline (negative: above).
    top: i16,
    w: u16,
    h: u16,
    /// Start of the coverage bytes in the arena.
    at: u32,
    /// Advance in pixels (rounded).
    advance: u16,
}

/// Line metrics of one text size, whole pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineMetrics {
    /// Baseline's distance below the line's top.
    pub ascent: i32,
    /// Line height (ascent + descent).
    pub height: i32,
}

/// The font, its glyph cache and statistics.
pub struct TextEngine {
    font: Option<FontRef<'static>>,
    glyphs: BTreeMap<(u16, char), Glyph>,
    arena: Vec<u8>,
    rasterized: u64,
}

impl core::fmt::Debug for TextEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TextEngine").field("cached_glyphs", &self.glyphs.len()).finish()
    }
}

impl Default for TextEngine {
    fn default() -> Self {
        TextEngine::new()
    }
}

impl TextEngine {
    /// The engine with DejaVu Sans.
    pub fn new() -> TextEngine {
        TextEngine {
            font: FontRef::try_from_slice(DEJAVU_SANS).ok(),
            glyphs: BTreeMap::new(),
            arena: Vec::new(),
            rasterized: 0,
        }
    }

    /// True when the font parsed (always, for the shipped font: a test checks).
    pub fn has_font(&self) -> bool {
        self.font.is_some()
    }

    /// How many glyph bitmaps have been rasterized so far (a cache miss each).
    pub fn rasterized(&self) -> u64 {
        self.rasterized
    }

    /// Ascent and height of a line of text `size` pixels high.
    pub fn metrics(&self, size: u16) -> LineMetrics {
        let size = size.clamp(MIN_TEXT_SIZE, MAX_TEXT_SIZE);
        match &self.font {
            Some(f) => {
                let s = f.as_scaled(size as f32);
                let ascent = libm::ceilf(s.ascent()) as i32;
                let descent = libm::ceilf(-s.descent()) as i32;
                LineMetrics { ascent, height: ascent + descent }
            }
            None => LineMetrics { ascent: 0, height: 0 },
        }
    }

    fn glyph(&mut self, size: u16, c: char) -> Option<Glyph> {
        if let Some(g) = self.glyphs.get(&(size, c)) {
            return Some(*g);
        }
        let font = self.font.as_ref()?;
        let scaled = font.as_scaled(size as f32);
        let id = font.glyph_id(c);
        let advance = libm::roundf(scaled.h_advance(id)).clamp(0.0, u16::MAX as f32) as u16;
        let mut g = Glyph { left: 0, top: 0, w: 0, h: 0, at: self.arena.len() as u32, advance };
        if let Some(outlined) = font.outline_glyph(id.with_scale(size as f32)) {
            let b = outlined.px_bounds();
            let w = (b.max.x - b.min.x).max(0.0) as usize;
            let h = (b.max.y - b.min.y).max(0.0) as usize;
            g.left = b.min.x as i16;
            g.top = b.min.y as i16;
            g.w = w as u16;
            g.h = h as u16;
            let at = self.arena.len();
            self.arena.resize(at + w * h, 0);
            let dst = &mut self.arena[at..];
            outlined.draw(|x, y, cov| {
                let i = y as usize * w + x as usize;
                if let Some(p) = dst.get_mut(i) {
                    *p = (cov.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
                }
            });
        }
        self.rasterized += 1;
        self.glyphs.insert((size, c), g);
        Some(g)
    }

    /// Width of `text` at `size` pixels (the sum of rounded advances).
    pub fn measure(&mut self, text: &str, size: u16) -> i32 {
        let size = size.clamp(MIN_TEXT_SIZE, MAX_TEXT_SIZE);
        text.chars().map(|c| self.glyph(size, c).map_or(0, |g| g.advance as i32)).sum()
    }

    /// Draws `text` with the top of its line at (`x`, `y`), clipped to the
    /// canvas's clip. Returns the pen position after the last glyph.
    pub fn draw(&mut self, canvas: &mut Canvas<'_>, x: i32, y: i32, text: &str, size: u16, color: Color) -> i32 {
        let size = size.clamp(MIN_TEXT_SIZE, MAX_TEXT_SIZE);
        let baseline = y + self.metrics(size).ascent;
        let clip = canvas.clip();
        let mut pen = x;
        for c in text.chars() {
            if pen >= clip.right() {
                break;
            }
            let Some(g) = self.glyph(size, c) else { break };
            if g.w > 0 && g.h > 0 {
                let at = g.at as usize;
                let len = g.w as usize * g.h as usize;
                canvas.blit_coverage(
                    pen + g.left as i32,
                    baseline + g.top as i32,
                    g.w as u32,
                    g.h as u32,
                    &self.arena[at..at + len],
                    color,
                );
            }
            pen += g.advance as i32;
        }
        pen
    }
}

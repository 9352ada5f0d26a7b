//! The framebuffer and the anti-aliased rasterizer.
//!
//! A [`Canvas`] borrows the pixels of a framebuffer (the display driver's
//! scan-out buffer, or a [`Framebuffer`] on the host) as `u32` words with a
//! width, height, stride and [`PixelFormat`]. Every drawing call is clipped to
//! the canvas's current clip rectangle ([`Canvas::set_clip`]), which the
//! renderer sets to one damaged rectangle at a time: pixels outside it are
//! never read or written.
//!
//! Shapes are anti-aliased by exact coverage: axis-aligned rectangles on whole
//! pixels need none, rounded corners and lines take their coverage from a
//! signed distance (half a pixel of ramp), glyphs from `ab_glyph`'s coverage
//! bitmaps. Blending is source-over in 8-bit, gamma-naive (like most
//! embedded UIs).

use crate::geom::{Color, Rect};
use alloc::vec;
use alloc::vec::Vec;

/// How a pixel is packed into its 32-bit word (little-endian memory order in
/// the names' reverse, as DRM and virtio-gpu name them). The unused byte is
/// always written as `0xff`, so the X and A variants of each are the same
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// `0xFFRRGGBB` in a `u32`: bytes B, G, R, X in memory.
    /// virtio-gpu `B8G8R8X8_UNORM` (2) and `B8G8R8A8_UNORM` (1); DRM `XRGB8888`.
    Xrgb8888,
    /// `0xFFBBGGRR` in a `u32`: bytes R, G, B, X in memory.
    /// virtio-gpu `R8G8B8X8_UNORM` (134) and `R8G8B8A8_UNORM` (67); DRM `XBGR8888`.
    Xbgr8888,
}

impl PixelFormat {
    /// The word for an opaque colour.
    #[inline]
    pub fn pack(self, r: u8, g: u8, b: u8) -> u32 {
        match self {
            PixelFormat::Xrgb8888 => 0xff00_0000 | (r as u32) << 16 | (g as u32) << 8 | b as u32,
            PixelFormat::Xbgr8888 => 0xff00_0000 | (b as u32) << 16 | (g as u32) << 8 | r as u32,
        }
    }

    /// The red, green and blue of a word.
    #[inline]
    pub fn unpack(self, p: u32) -> [u8; 3] {
        let (hi, mid, lo) = ((p >> 16) as u8, (p >> 8) as u8, p as u8);
        match self {
            PixelFormat::Xrgb8888 => [hi, mid, lo],
            PixelFormat::Xbgr8888 => [lo, mid, hi],
        }
    }
}

/// Why a [`Canvas`] could not be made over a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanvasError {
    /// `stride` (in pixels) is smaller than `width`.
    StrideTooSmall,
    /// The buffer holds fewer than `stride * (height - 1) + width` words.
    BufferTooSmall,
    /// Width or height is above [`MAX_DIMENSION`].
    TooLarge,
}

/// The largest width or height a canvas accepts (keeps every coordinate
/// computation far from `i32` overflow).
pub const MAX_DIMENSION: u32 = 16384;

/// A mutable view of a framebuffer's pixels.
pub struct Canvas<'a> {
    pixels: &'a mut [u32],
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
    clip: Rect,
}

/// `a * b / 255`, rounded, for bytes.
#[inline]
fn mul255(a: u32, b: u32) -> u32 {
    let t = a * b + 128;
    (t + (t >> 8)) >> 8
}

impl<'a> Canvas<'a> {
    /// A canvas over `pixels`: `width` x `height` pixels, rows `stride`
    /// pixels apart. The buffer is checked to hold every row.
    pub fn new(
        pixels: &'a mut [u32],
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Canvas<'a>, CanvasError> {
        if width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(CanvasError::TooLarge);
        }
        if stride < width as usize {
            return Err(CanvasError::StrideTooSmall);
        }
        let need = if height == 0 { 0 } else { stride * (height as usize - 1) + width as usize };
        if pixels.len() < need {
            return Err(CanvasError::BufferTooSmall);
        }
        Ok(Canvas { pixels, width, height, stride, format, clip: Rect::new(0, 0, width as i32, height as i32) })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The whole canvas as a rectangle.
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// Restricts drawing to `clip` (intersected with the canvas).
    pub fn set_clip(&mut self, clip: Rect) {
        self.clip = clip.intersect(&self.bounds());
    }

    /// The current clip rectangle.
    pub fn clip(&self) -> Rect {
        self.clip
    }

    /// The colour of one pixel (opaque), or `None` outside the canvas.
    pub fn pixel(&self, x: i32, y: i32) -> Option<Color> {
        if !self.bounds().contains(x, y) {
            return None;
        }
        let [r, g, b] = self.format.unpack(self.pixels[y as usize * self.stride + x as usize]);
        Some(Color::rgb(r, g, b))
    }

    #[inline]
    fn blend_at(&mut self, idx: usize, c: Color, coverage: u32) {
        let a = mul255(c.a as u32, coverage);
        if a == 0 {
            return;
        }
        let src = self.format.pack(c.r, c.g, c.b);
        self.pixels[idx] = if a >= 255 { src } else { blend_word(self.pixels[idx], src, a) };
    }

    /// Blends `c` over one pixel with `coverage` (0..=255), if inside the clip.
    #[inline]
    pub fn blend_pixel(&mut self, x: i32, y: i32, c: Color, coverage: u8) {
        if self.clip.contains(x, y) {
            let idx = y as usize * self.stride + x as usize;
            self.blend_at(idx, c, coverage as u32);
        }
    }

    /// Fills a rectangle (clipped) with `c`.
    pub fn fill_rect(&mut self, rect: Rect, c: Color) {
        let r = rect.intersect(&self.clip);
        if r.is_empty() || c.a == 0 {
            return;
        }
        if c.a == 255 {
            let word = self.format.pack(c.r, c.g, c.b);
            for y in r.y..r.bottom() {
                let start = y as usize * self.stride + r.x as usize;
                self.pixels[start..start + r.w as usize].fill(word);
            }
        } else {
            for y in r.y..r.bottom() {
                let start = y as usize * self.stride;
                for x in r.x..r.right() {
                    self.blend_at(start + x as usize, c, 255);
                }
            }
        }
    }

    /// Fills the whole clip rectangle with `c` (opaque).
    pub fn clear(&mut self, c: Color) {
        let clip = self.clip;
        self.fill_rect(clip, c.with_alpha(255));
    }

    /// Fills a rectangle with rounded corners of `radius` pixels,
    /// anti-aliased at the corners.
    pub fn fill_rounded_rect(&mut self, rect: Rect, radius: f32, c: Color) {
        self.rounded(rect, radius, None, c);
    }

    /// Strokes the inside `width` pixels of a rounded rectangle's edge
    /// (a border or a focus ring), anti-aliased.
    pub fn stroke_rounded_rect(&mut self, rect: Rect, radius: f32, width: f32, c: Color) {
        if width <= 0.0 {
            return;
        }
        self.rounded(rect, radius, Some(width), c);
    }

    fn rounded(&mut self, rect: Rect, radius: f32, stroke: Option<f32>, c: Color) {
        let vis = rect.intersect(&self.clip);
        if vis.is_empty() || c.a == 0 {
            return;
        }
        let half_w = rect.w as f32 / 2.0;
        let half_h = rect.h as f32 / 2.0;
        let r = radius.clamp(0.0, half_w.min(half_h));
        if r < 0.5 && stroke.is_none() {
            self.fill_rect(rect, c);
            return;
        }
        let cx = rect.x as f32 + half_w;
        let cy = rect.y as f32 + half_h;
        let inner = stroke.map(|w| {
            let w = w.min(half_w.min(half_h));
            (half_w - w, half_h - w, (r - w).max(0.0))
        });
        let cov_at = |x: i32, y: i32| -> u32 {
            let (px, py) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let mut cov = coverage(rounded_sd(px, py, half_w, half_h, r));
            if let Some((iw, ih, ir)) = inner {
                cov -= coverage(rounded_sd(px, py, iw, ih, ir));
            }
            (cov.max(0.0) * 255.0 + 0.5) as u32
        };
        // Only the four corner squares (side `band`) need per-pixel
        // coverage. Elsewhere coverage is constant along a row (the top and
        // bottom edges) or along a column (the left and right edges), so it
        // is computed once per row or column.
        let band = match stroke {
            Some(w) => libm::ceilf(r.max(w)) as i32,
            None => libm::ceilf(r) as i32,
        }
        .min(rect.w / 2)
        .min(rect.h / 2);
        let (l_end, r_start) = (rect.x + band, rect.right() - band);
        let (t_end, b_start) = (rect.y + band, rect.bottom() - band);
        let mid = (vis.x.max(l_end), vis.right().min(r_start));
        // The corners are mirror images of each other (pixel centres are
        // symmetric about the rectangle's centre): one table of the top-left
        // corner serves all four, and one coverage per corner row serves the
        // straight top and bottom edges between them.
        const MAXB: usize = 32;
        let small = (band as usize) <= MAXB;
        let mut corner = [0u8; MAXB * MAXB];
        let mut row_cov = [0u8; MAXB];
        let mut edge_cols = [0u8; MAXB];
        if small {
            // Only what the clip reaches: a damaged rectangle inside a big
            // rounded panel often misses its corners entirely.
            let b = band as usize;
            let corner_rows = vis.y < t_end || vis.bottom() > b_start;
            let side_cols = vis.x < l_end || vis.right() > r_start;
            let middle_rows = vis.y < b_start && vis.bottom() > t_end;
            for j in 0..b {
                if corner_rows && side_cols {
                    for i in 0..b {
                        corner[j * b + i] = cov_at(rect.x + i as i32, rect.y + j as i32) as u8;
                    }
                }
                if corner_rows {
                    row_cov[j] = cov_at(rect.x + band, rect.y + j as i32) as u8;
                }
                if middle_rows && side_cols {
                    edge_cols[j] = cov_at(rect.x + j as i32, rect.y + rect.h / 2) as u8;
                }
            }
        }
        let b = band as usize;
        for y in vis.y..vis.bottom() {
            let row = y as usize * self.stride;
            // Distance (in rows) into the top or bottom corner band, if any.
            let cj = if y < t_end {
                Some((y - rect.y) as usize)
            } else if y >= b_start {
                Some((rect.bottom() - 1 - y) as usize)
            } else {
                None
            };
            let lookup = |ci: usize, x: i32| -> u32 {
                if !small {
                    return cov_at(x, y);
                }
                match cj {
                    Some(j) => corner[j * b + ci] as u32,
                    None => edge_cols[ci] as u32,
                }
            };
            // Left and right bands.
            for x in vis.x..vis.right().min(l_end) {
                let cov = lookup((x - rect.x) as usize, x);
                self.blend_at(row + x as usize, c, cov);
            }
            for x in vis.x.max(r_start)..vis.right() {
                let cov = lookup((rect.right() - 1 - x) as usize, x);
                self.blend_at(row + x as usize, c, cov);
            }
            // The middle span: one coverage for the whole row.
            if mid.0 < mid.1 {
                let cov = match cj {
                    Some(j) if small => row_cov[j] as u32,
                    Some(_) => cov_at(mid.0, y),
                    None if stroke.is_some() => cov_at(mid.0, y),
                    None => 255,
                };
                if cov == 255 && c.a == 255 {
                    let word = self.format.pack(c.r, c.g, c.b);
                    self.pixels[row + mid.0 as usize..row + mid.1 as usize].fill(word);
                } else if cov > 0 {
                    for x in mid.0..mid.1 {
                        self.blend_at(row + x as usize, c, cov);
                    }
                }
            }
        }
    }

    /// Draws an anti-aliased line segment `width` pixels wide with round
    /// caps between two points in pixel coordinates (pixel centres at .5).
    pub fn line(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, width: f32, c: Color) {
        if ![x0, y0, x1, y1, width].iter().all(|v| v.is_finite()) {
            return;
        }
        let hw = (width / 2.0).max(0.5);
        // Float-to-int casts saturate; the sizes add saturating too.
        let bb = Rect::new(
            libm::floorf(x0.min(x1) - hw - 1.0) as i32,
            libm::floorf(y0.min(y1) - hw - 1.0) as i32,
            (libm::ceilf((x0 - x1).abs() + 2.0 * hw + 2.0) as i32).saturating_add(1),
            (libm::ceilf((y0 - y1).abs() + 2.0 * hw + 2.0) as i32).saturating_add(1),
        );
        let vis = bb.intersect(&self.clip);
        if vis.is_empty() {
            return;
        }
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        for y in vis.y..vis.bottom() {
            let row = y as usize * self.stride;
            let py = y as f32 + 0.5;
            for x in vis.x..vis.right() {
                let px = x as f32 + 0.5;
                let t = if len2 > 0.0 { (((px - x0) * dx + (py - y0) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
                let (qx, qy) = (x0 + t * dx - px, y0 + t * dy - py);
                let d = libm::sqrtf(qx * qx + qy * qy);
                let cov = coverage(d - hw);
                if cov > 0.0 {
                    self.blend_at(row + x as usize, c, (cov * 255.0 + 0.5) as u32);
                }
            }
        }
    }

    /// Fills column `x` from `y_top` (fractional: the top pixel gets partial
    /// coverage) down to `y_bottom` (exclusive).
    pub fn fill_column(&mut self, x: i32, y_top: f32, y_bottom: i32, c: Color) {
        if x < self.clip.x || x >= self.clip.right() || c.a == 0 || !y_top.is_finite() {
            return;
        }
        let first = libm::floorf(y_top) as i32;
        let y1 = y_bottom.min(self.clip.bottom());
        let mut y = first.max(self.clip.y);
        if y == first && y < y1 {
            let cov = 1.0 - (y_top - first as f32);
            self.blend_at(y as usize * self.stride + x as usize, c, (cov * 255.0 + 0.5) as u32);
            y += 1;
        }
        if y >= y1 {
            return;
        }
        let src = self.format.pack(c.r, c.g, c.b);
        let mut idx = y as usize * self.stride + x as usize;
        if c.a == 255 {
            for _ in y..y1 {
                self.pixels[idx] = src;
                idx += self.stride;
            }
        } else {
            // Constant alpha: the source terms are computed once.
            let a = c.a as u32 + (c.a as u32 >> 7);
            let inv = 256 - a;
            let (srb, sg) = ((src & 0x00ff_00ff) * a, (src & 0x0000_ff00) * a);
            for _ in y..y1 {
                let d = self.pixels[idx];
                let rb = ((srb + (d & 0x00ff_00ff) * inv) >> 8) & 0x00ff_00ff;
                let g = ((sg + (d & 0x0000_ff00) * inv) >> 8) & 0x0000_ff00;
                self.pixels[idx] = 0xff00_0000 | rb | g;
                idx += self.stride;
            }
        }
    }

    /// Blends a coverage bitmap (`w` x `h` bytes, row-major) in colour `c`
    /// with its top-left at (`x`, `y`).
    pub fn blit_coverage(&mut self, x: i32, y: i32, w: u32, h: u32, coverage: &[u8], c: Color) {
        let dst = Rect::new(x, y, w as i32, h as i32);
        let vis = dst.intersect(&self.clip);
        if vis.is_empty() || coverage.len() < (w as usize) * (h as usize) {
            return;
        }
        let src = self.format.pack(c.r, c.g, c.b);
        let opaque = c.a == 255;
        let cols = (vis.x - x) as usize..(vis.right() - x) as usize;
        for yy in vis.y..vis.bottom() {
            let src_row = (yy - y) as usize * w as usize;
            // `vis` lies inside the canvas: never negative.
            let row = yy as usize * self.stride + vis.x as usize;
            let cov_row = &coverage[src_row + cols.start..src_row + cols.end];
            if opaque {
                let dst = &mut self.pixels[row..row + cov_row.len()];
                for (d, &cov) in dst.iter_mut().zip(cov_row) {
                    match cov {
                        0 => {}
                        255 => *d = src,
                        _ => *d = blend_word(*d, src, cov as u32),
                    }
                }
            } else {
                for (i, &cov) in cov_row.iter().enumerate() {
                    if cov != 0 {
                        self.blend_at(row + i, c, cov as u32);
                    }
                }
            }
        }
    }
}

/// Source-over of two words of the same format, two channels per
/// multiply (red and blue share one, the layout being symmetric, so it holds
/// for both formats); `a` in 0..=255, mapped to 0..=256 so 255 is exact.
#[inline]
fn blend_word(dst: u32, src: u32, a: u32) -> u32 {
    let a = a + (a >> 7);
    let inv = 256 - a;
    let rb = (((src & 0x00ff_00ff) * a + (dst & 0x00ff_00ff) * inv) >> 8) & 0x00ff_00ff;
    let g = (((src & 0x0000_ff00) * a + (dst & 0x0000_ff00) * inv) >> 8) & 0x0000_ff00;
    0xff00_0000 | rb | g
}

/// Signed distance from a point (relative to the centre) to a rounded box of
/// half-size `hw` x `hh` and corner radius `r` (negative inside).
#[inline]
fn rounded_sd(px: f32, py: f32, hw: f32, hh: f32, r: f32) -> f32 {
    let qx = px.abs() - (hw - r);
    let qy = py.abs() - (hh - r);
    let ox = qx.max(0.0);
    let oy = qy.max(0.0);
    let outside = if ox == 0.0 && oy == 0.0 { 0.0 } else { libm::sqrtf(ox * ox + oy * oy) };
    outside + qx.max(qy).min(0.0) - r
}

/// Coverage of a pixel whose centre is at signed distance `sd` from an edge.
#[inline]
fn coverage(sd: f32) -> f32 {
    (0.5 - sd).clamp(0.0, 1.0)
}

/// A framebuffer that owns its pixels (the host's stand-in for scan-out
/// memory; also useful as a back buffer).
#[derive(Clone, Debug)]
pub struct Framebuffer {
    /// The pixels, `stride` words per row.
    pub pixels: Vec<u32>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row pitch in pixels (at least `width`).
    pub stride: usize,
    /// The pixel format.
    pub format: PixelFormat,
}

impl Framebuffer {
    /// A black framebuffer with `stride == width` (sizes are clamped to
    /// [`MAX_DIMENSION`]).
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Framebuffer {
        Framebuffer::with_stride(width, height, width as usize, format)
    }

    /// A black framebuffer with rows `stride` pixels apart (at least `width`).
    pub fn with_stride(width: u32, height: u32, stride: usize, format: PixelFormat) -> Framebuffer {
        let width = width.min(MAX_DIMENSION);
        let height = height.min(MAX_DIMENSION);
        let stride = stride.max(width as usize);
        let black = format.pack(0, 0, 0);
        Framebuffer { pixels: vec![black; stride * height as usize], width, height, stride, format }
    }

    /// A canvas over the whole framebuffer.
    pub fn canvas(&mut self) -> Canvas<'_> {
        match Canvas::new(&mut self.pixels, self.width, self.height, self.stride, self.format) {
            Ok(c) => c,
            // The constructor keeps the invariants `Canvas::new` checks.
            Err(_) => unreachable!("Framebuffer invariants hold"),
        }
    }

    /// The colour of one pixel, or `None` outside.
    pub fn pixel(&self, x: i32, y: i32) -> Option<Color> {
        if x < 0 || y < 0 || x >= self.width as i32 || y >= self.height as i32 {
            return None;
        }
        let [r, g, b] = self.format.unpack(self.pixels[y as usize * self.stride + x as usize]);
        Some(Color::rgb(r, g, b))
    }

    /// The pixels as packed RGB bytes, row by row (for PNG encoding).
    pub fn to_rgb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.width as usize * self.height as usize * 3);
        for y in 0..self.height as usize {
            for x in 0..self.width as usize {
                out.extend_from_slice(&self.format.unpack(self.pixels[y * self.stride + x]));
            }
        }
        out
    }
}

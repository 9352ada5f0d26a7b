//! Damage: the set of framebuffer rectangles a frame must repaint.
//!
//! Rectangles are clipped to the viewport; one that overlaps or touches an
//! earlier one is merged into it (their bounding box), so the list stays
//! short and disjoint. Past [`MAX_DAMAGE_RECTS`] everything collapses into
//! one bounding box. The display driver flushes exactly these rectangles.

use crate::geom::Rect;
use alloc::vec::Vec;

/// Most rectangles kept before they collapse into their bounding box.
pub const MAX_DAMAGE_RECTS: usize = 16;

/// A list of damaged rectangles (its storage is reused between frames).
#[derive(Clone, Debug, Default)]
pub struct Damage {
    rects: Vec<Rect>,
    bounds: Rect,
}

impl Damage {
    /// No damage, within `bounds` (the viewport).
    pub fn new(bounds: Rect) -> Damage {
        Damage { rects: Vec::with_capacity(MAX_DAMAGE_RECTS), bounds }
    }

    /// Changes the viewport (and damages all of it).
    pub fn set_bounds(&mut self, bounds: Rect) {
        self.bounds = bounds;
        self.rects.clear();
        self.add(bounds);
    }

    /// Marks `r` damaged.
    pub fn add(&mut self, r: Rect) {
        let mut r = r.intersect(&self.bounds);
        if r.is_empty() {
            return;
        }
        // Merge with every rectangle it overlaps or touches, repeatedly (a
        // merge can make the result reach another one).
        let mut i = 0;
        while i < self.rects.len() {
            let o = self.rects[i];
            if o.contains_rect(&r) {
                return;
            }
            if o.inflate(1).intersects(&r) {
                r = r.union(&o);
                self.rects.swap_remove(i);
                i = 0;
            } else {
                i += 1;
            }
        }
        if self.rects.len() == MAX_DAMAGE_RECTS {
            let all = self.rects.iter().fold(r, |a, b| a.union(b));
            self.rects.clear();
            self.rects.push(all);
        } else {
            self.rects.push(r);
        }
    }

    /// The damaged rectangles (disjoint, inside the viewport).
    pub fn rects(&self) -> &[Rect] {
        &self.rects
    }

    /// True when nothing is damaged.
    pub fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }

    /// Pixels to repaint.
    pub fn area(&self) -> u64 {
        self.rects.iter().map(Rect::area).sum()
    }

    /// Forgets all damage (keeps the storage).
    pub fn clear(&mut self) {
        self.rects.clear();
    }

    /// Copies the rectangles into `out` (cleared first) and forgets them.
    pub fn drain_into(&mut self, out: &mut Vec<Rect>) {
        out.clear();
        out.extend_from_slice(&self.rects);
        self.rects.clear();
    }
}

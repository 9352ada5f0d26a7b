//! # Nagini
//!
//! A React-flavoured UI framework with a DOM-free renderer, `no_std` +
//! `alloc`, for Parseltongue's Nagini services (see `docs/nagini.md`).
//!
//! * [`geom`]: rectangles and colours.
//! * [`canvas`]: the framebuffer view ([`Canvas`]) over XRGB8888/XBGR8888
//!   words with any stride, and the anti-aliased rasterizer.
//! * [`text`]: DejaVu Sans, measurement and the glyph cache.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod canvas;
pub mod geom;
pub mod text;

pub use canvas::{Canvas, CanvasError, Framebuffer, PixelFormat};
pub use geom::{Color, Rect};
pub use text::TextEngine;

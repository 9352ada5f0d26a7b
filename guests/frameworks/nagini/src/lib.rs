//! # Nagini
//!
//! A React-flavoured UI framework with a DOM-free renderer, `no_std` +
//! `alloc`, for Parseltongue's Nagini services (see `docs/nagini.md`).
//!
//! * [`app`]: the [`Component`] trait (state, `view`, `update`) and the
//!   [`Ui`] runtime (events, frames, damage).
//! * [`element`]: the element tree a view returns (builder API).
//! * [`tree`]: the retained tree and the reconciler (keyed diff, layout vs
//!   paint changes), laid out by `taffy` (flexbox and grid).
//! * [`paint`]: painting the tree, clipped to the damage.
//! * [`canvas`]: the framebuffer view ([`Canvas`]) over XRGB8888/XBGR8888
//!   words with any stride, and the anti-aliased rasterizer.
//! * [`text`]: DejaVu Sans, measurement and the glyph cache.
//! * [`damage`]: damaged-rectangle bookkeeping.
//! * [`widgets`]: label, stat tile, button, charts, tabs, [`widgets::Ring`].
//! * [`dashboard`]: the [`Dashboard`] app component.
//! * [`input`]: Linux evdev (virtio-input) events to [`InputEvent`]s.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod app;
pub mod canvas;
pub mod damage;
pub mod dashboard;
pub mod element;
pub mod geom;
pub mod input;
pub mod paint;
pub mod text;
pub mod tree;
pub mod widgets;

pub use app::{Component, FrameReport, InputEvent, Ui};
pub use canvas::{Canvas, CanvasError, Framebuffer, PixelFormat};
pub use dashboard::Dashboard;
pub use element::{Align, Button, Element, Key, KeyCode, KeyEvent, Modifiers, PointerEvent};
pub use geom::{Color, Rect};
pub use text::TextEngine;
pub use tree::{NodeId, Tree};

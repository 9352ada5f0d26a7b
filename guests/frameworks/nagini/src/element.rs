//! The element tree a view function returns: what to lay out and draw, and
//! which events to turn into messages.
//!
//! An [`Element`] is a box (taffy [`Style`] for layout, [`Visual`] for
//! paint) with optional [`Content`] (a line of text or a chart) and
//! children. It is rebuilt by every call of
//! [`Component::view`](crate::Component::view) and compared with the
//! previous tree by the reconciler ([`crate::tree`]); only the differences
//! reach layout and the framebuffer. Give children that can be inserted,
//! removed or reordered a [`Key`] so they keep their identity (and their
//! hover/focus state) across frames.

use crate::geom::Color;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use taffy::prelude::{length, percent};
use taffy::style::{AlignItems, Dimension, FlexDirection, JustifyContent};

/// taffy's style: flexbox and grid layout properties of an element.
pub type Style = taffy::Style;

/// A child's identity among its siblings (FNV-1a of a string, or a number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u64);

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Key(h)
    }
}

impl From<u64> for Key {
    fn from(v: u64) -> Key {
        Key(v)
    }
}

impl From<usize> for Key {
    fn from(v: usize) -> Key {
        Key(v as u64)
    }
}

impl From<u32> for Key {
    fn from(v: u32) -> Key {
        Key(v as u64)
    }
}

/// Paint-only properties: changing them repaints the element's rectangle
/// and never runs layout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Visual {
    /// Fill behind the content.
    pub background: Option<Color>,
    /// Corner radius in pixels.
    pub radius: f32,
    /// Border colour and width (drawn inside the box).
    pub border: Option<(Color, f32)>,
    /// Fill while the pointer is over the element (or a child of it).
    pub hover_background: Option<Color>,
    /// Fill while a pointer button went down on it and has not come up.
    pub pressed_background: Option<Color>,
    /// Ring drawn inside the edge while the element has keyboard focus.
    pub focus_ring: Option<Color>,
}

/// Horizontal placement of text in its box (vertically it is centred).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Align {
    /// Flush left (the default).
    #[default]
    Start,
    /// Centred.
    Center,
    /// Flush right.
    End,
}

/// A line of text.
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    /// The characters (one line).
    pub text: String,
    /// Size in pixels.
    pub size: u16,
    /// Colour.
    pub color: Color,
    /// Placement in the box.
    pub align: Align,
}

/// Line or bars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartKind {
    /// A polyline through the samples with the area below it tinted.
    Line,
    /// One bar per sample.
    Bar,
}

/// A chart of samples, oldest first, with an automatically scaled axis
/// (see [`crate::widgets::nice_axis`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Line or bars.
    pub kind: ChartKind,
    /// The values, oldest first (non-finite values are drawn as 0).
    pub samples: Vec<f32>,
    /// How many samples the x axis spans (at least `samples.len()`; the
    /// newest sample is at the right edge).
    pub capacity: usize,
    /// Series colour.
    pub color: Color,
    /// The area under a line (opaque is cheapest: [`crate::widgets`] mixes
    /// the series colour into the panel's); unused by bar charts.
    pub fill: Color,
    /// Grid lines and axis labels.
    pub axis_color: Color,
}

/// What an element draws inside its box, besides its background.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Content {
    /// Nothing (a container).
    #[default]
    None,
    /// A line of text: its measured size is the element's content size.
    Text(Text),
    /// A chart filling the box.
    Chart(Chart),
}

/// A keyboard key, as Nagini names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyCode {
    /// Tab (focus traversal; with shift, backwards).
    Tab,
    /// Enter / Return (activates the focused element).
    Enter,
    /// Space bar (activates the focused element).
    Space,
    /// Escape.
    Escape,
    /// Backspace.
    Backspace,
    /// Arrow left.
    Left,
    /// Arrow right.
    Right,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Function key F1..F12.
    F(u8),
    /// A printable character (already shifted).
    Char(char),
    /// Any other key: its Linux evdev code.
    Other(u16),
}

/// Modifier keys held during an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Modifiers {
    /// Either shift key.
    pub shift: bool,
    /// Either control key.
    pub ctrl: bool,
    /// Either alt key.
    pub alt: bool,
}

/// A key going down (handlers see presses only; repeats are presses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    /// The key.
    pub key: KeyCode,
    /// Modifiers held.
    pub modifiers: Modifiers,
}

/// A pointer button.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Button {
    /// Primary (left).
    Left,
    /// Secondary (right).
    Right,
    /// Middle.
    Middle,
}

/// A pointer event as a handler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointerEvent {
    /// Position in framebuffer pixels.
    pub x: i32,
    /// Position in framebuffer pixels.
    pub y: i32,
    /// Position relative to the handling element's top-left corner.
    pub local_x: i32,
    /// Position relative to the handling element's top-left corner.
    pub local_y: i32,
    /// The button (for down and up; `None` for moves).
    pub button: Option<Button>,
}

/// A handler of a key press: the message to send, if any.
pub type KeyHandler<M> = Rc<dyn Fn(&KeyEvent) -> Option<M>>;
/// A handler of a pointer event: the message to send, if any.
pub type PointerHandler<M> = Rc<dyn Fn(&PointerEvent) -> Option<M>>;

/// The event handlers of an element. A handler returns a message for the
/// component's `update`; it never touches state itself.
pub struct Handlers<M> {
    /// Sent on a click (pointer down and up on the element) and on Enter or
    /// Space while it has focus.
    pub on_click: Option<M>,
    /// Key presses while the element or a descendant has focus (the focused
    /// element first, then its ancestors; the root also gets keys when
    /// nothing is focused). The first handler that returns a message wins.
    pub on_key: Option<KeyHandler<M>>,
    /// Pointer moves over the element (deepest handler first).
    pub on_pointer_move: Option<PointerHandler<M>>,
    /// Pointer button presses on the element (deepest handler first).
    pub on_pointer_down: Option<PointerHandler<M>>,
    /// Pointer button releases on the element (deepest handler first).
    pub on_pointer_up: Option<PointerHandler<M>>,
}

impl<M> Default for Handlers<M> {
    fn default() -> Self {
        Handlers { on_click: None, on_key: None, on_pointer_move: None, on_pointer_down: None, on_pointer_up: None }
    }
}

impl<M: Clone> Clone for Handlers<M> {
    fn clone(&self) -> Self {
        Handlers {
            on_click: self.on_click.clone(),
            on_key: self.on_key.clone(),
            on_pointer_move: self.on_pointer_move.clone(),
            on_pointer_down: self.on_pointer_down.clone(),
            on_pointer_up: self.on_pointer_up.clone(),
        }
    }
}

impl<M> Handlers<M> {
    /// True when the element reacts to the pointer (gets hover/press state).
    pub fn interactive(&self) -> bool {
        self.on_click.is_some() || self.on_pointer_down.is_some() || self.on_pointer_up.is_some()
    }
}

/// One node of a view: layout style, paint, content, handlers, children.
pub struct Element<M> {
    /// Identity among siblings (`None`: matched by position among the
    /// unkeyed siblings).
    pub key: Option<Key>,
    /// Layout.
    pub style: Style,
    /// Paint.
    pub visual: Visual,
    /// Text or chart.
    pub content: Content,
    /// Event handlers.
    pub handlers: Handlers<M>,
    /// Takes part in Tab focus traversal.
    pub focusable: bool,
    /// Memo dependencies (see [`Element::memo`]).
    pub memo: Option<u64>,
    /// Children, in paint order (later ones on top).
    pub children: Vec<Element<M>>,
}

impl<M> Default for Element<M> {
    fn default() -> Self {
        Element {
            key: None,
            style: Style::default(),
            visual: Visual::default(),
            content: Content::None,
            handlers: Handlers::default(),
            focusable: false,
            memo: None,
            children: Vec::new(),
        }
    }
}

/// An empty box (flex row by default, like CSS `display: flex`).
pub fn boxed<M>() -> Element<M> {
    Element::default()
}

/// A flex row.
pub fn row<M>() -> Element<M> {
    let mut e = Element::default();
    e.style.flex_direction = FlexDirection::Row;
    e
}

/// A flex column.
pub fn column<M>() -> Element<M> {
    let mut e = Element::default();
    e.style.flex_direction = FlexDirection::Column;
    e
}

/// A grid with `columns` equal columns.
pub fn grid<M>(columns: u16) -> Element<M> {
    let mut e = Element::default();
    e.style.display = taffy::style::Display::Grid;
    e.style.grid_template_columns = taffy::style_helpers::evenly_sized_tracks(columns.max(1));
    e
}

/// A line of text (16 px, white, left-aligned).
pub fn text<M>(s: impl Into<String>) -> Element<M> {
    Element {
        content: Content::Text(Text { text: s.into(), size: 16, color: Color::WHITE, align: Align::Start }),
        ..Element::default()
    }
}

impl<M> Element<M> {
    /// Sets the key.
    pub fn key(mut self, k: impl Into<Key>) -> Self {
        self.key = Some(k.into());
        self
    }

    /// Declares that this element and its whole subtree depend only on
    /// `deps` (a hash or version of whatever they show and send): when the
    /// retained node here was built with the same `deps`, the reconciler
    /// keeps it as it is and skips comparing the subtree (React's `memo`).
    /// Change `deps` whenever anything in the subtree may change, handlers
    /// included.
    pub fn memo(mut self, deps: u64) -> Self {
        self.memo = Some(deps);
        self
    }

    /// Appends a child.
    pub fn child(mut self, c: Element<M>) -> Self {
        self.children.push(c);
        self
    }

    /// Appends children.
    pub fn children(mut self, cs: impl IntoIterator<Item = Element<M>>) -> Self {
        self.children.extend(cs);
        self
    }

    /// Edits the layout style in place.
    pub fn style(mut self, f: impl FnOnce(&mut Style)) -> Self {
        f(&mut self.style);
        self
    }

    /// Fixed width in pixels.
    pub fn width(mut self, px: f32) -> Self {
        self.style.size.width = length(px);
        self
    }

    /// Fixed height in pixels.
    pub fn height(mut self, px: f32) -> Self {
        self.style.size.height = length(px);
        self
    }

    /// Width as a percentage (0..=100) of the parent's.
    pub fn width_pct(mut self, pct: f32) -> Self {
        self.style.size.width = percent(pct / 100.0);
        self
    }

    /// Height as a percentage (0..=100) of the parent's.
    pub fn height_pct(mut self, pct: f32) -> Self {
        self.style.size.height = percent(pct / 100.0);
        self
    }

    /// Fills the parent (100% by 100%).
    pub fn fill(self) -> Self {
        self.width_pct(100.0).height_pct(100.0)
    }

    /// Padding on every side.
    pub fn padding(self, px: f32) -> Self {
        self.padding_xy(px, px)
    }

    /// Padding: `h` pixels left and right, `v` top and bottom.
    pub fn padding_xy(mut self, h: f32, v: f32) -> Self {
        self.style.padding = taffy::geometry::Rect { left: length(h), right: length(h), top: length(v), bottom: length(v) };
        self
    }

    /// Gap between children (both axes).
    pub fn gap(mut self, px: f32) -> Self {
        self.style.gap = taffy::geometry::Size { width: length(px), height: length(px) };
        self
    }

    /// Flex grow factor (share of the free space), with a zero basis.
    pub fn grow(mut self, f: f32) -> Self {
        self.style.flex_grow = f;
        self.style.flex_basis = Dimension::length(0.0);
        self
    }

    /// Centres children on both axes.
    pub fn center(mut self) -> Self {
        self.style.align_items = AlignItems::CENTER;
        self.style.justify_content = JustifyContent::CENTER;
        self
    }

    /// Cross-axis alignment of children.
    pub fn align_items(mut self, a: AlignItems) -> Self {
        self.style.align_items = a;
        self
    }

    /// Main-axis distribution of children.
    pub fn justify(mut self, j: JustifyContent) -> Self {
        self.style.justify_content = j;
        self
    }

    /// Background fill.
    pub fn background(mut self, c: Color) -> Self {
        self.visual.background = Some(c);
        self
    }

    /// Corner radius.
    pub fn radius(mut self, r: f32) -> Self {
        self.visual.radius = r;
        self
    }

    /// Border colour and width.
    pub fn border(mut self, c: Color, w: f32) -> Self {
        self.visual.border = Some((c, w));
        self
    }

    /// Fill while hovered.
    pub fn hover(mut self, c: Color) -> Self {
        self.visual.hover_background = Some(c);
        self
    }

    /// Fill while pressed.
    pub fn pressed(mut self, c: Color) -> Self {
        self.visual.pressed_background = Some(c);
        self
    }

    /// Joins Tab traversal, with a focus ring of colour `ring`.
    pub fn focusable(mut self, ring: Color) -> Self {
        self.focusable = true;
        self.visual.focus_ring = Some(ring);
        self
    }

    /// Text size in pixels (text elements only).
    pub fn size(mut self, px: u16) -> Self {
        if let Content::Text(t) = &mut self.content {
            t.size = px;
        }
        self
    }

    /// Text colour (text elements only).
    pub fn color(mut self, c: Color) -> Self {
        if let Content::Text(t) = &mut self.content {
            t.color = c;
        }
        self
    }

    /// Text alignment (text elements only).
    pub fn align(mut self, a: Align) -> Self {
        if let Content::Text(t) = &mut self.content {
            t.align = a;
        }
        self
    }

    /// Sets the content.
    pub fn content(mut self, c: Content) -> Self {
        self.content = c;
        self
    }

    /// The message sent on click or activation.
    pub fn on_click(mut self, m: M) -> Self {
        self.handlers.on_click = Some(m);
        self
    }

    /// A key handler.
    pub fn on_key(mut self, f: impl Fn(&KeyEvent) -> Option<M> + 'static) -> Self {
        self.handlers.on_key = Some(Rc::new(f));
        self
    }

    /// A pointer-move handler.
    pub fn on_pointer_move(mut self, f: impl Fn(&PointerEvent) -> Option<M> + 'static) -> Self {
        self.handlers.on_pointer_move = Some(Rc::new(f));
        self
    }

    /// A pointer-down handler.
    pub fn on_pointer_down(mut self, f: impl Fn(&PointerEvent) -> Option<M> + 'static) -> Self {
        self.handlers.on_pointer_down = Some(Rc::new(f));
        self
    }

    /// A pointer-up handler.
    pub fn on_pointer_up(mut self, f: impl Fn(&PointerEvent) -> Option<M> + 'static) -> Self {
        self.handlers.on_pointer_up = Some(Rc::new(f));
        self
    }
}

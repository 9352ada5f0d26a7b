//! The component model and the runtime that drives it.
//!
//! A [`Component`] owns its state; `view` renders the state as an
//! [`Element`] tree, and `update` applies a message (sent by an event
//! handler, or by the host program) to the state. The [`Ui`] runtime keeps
//! the retained [`Tree`], routes input events to handlers (hit-testing
//! pointer events, Tab focus traversal, Enter/Space activation), re-runs
//! `view` only when the state changed, and renders frames that repaint only
//! the damaged rectangles, which it reports so the display flushes only
//! those.

use crate::canvas::Canvas;
use crate::element::{Button, Element, Handlers, KeyCode, KeyEvent, Modifiers, PointerEvent, PointerHandler};
use crate::geom::Rect;
use crate::paint::{paint_tree, PaintState};
use crate::text::TextEngine;
use crate::tree::{Changes, NodeId, Tree};
use alloc::vec::Vec;

/// Selects one kind of pointer handler of an element.
type PickHandler<M> = fn(&Handlers<M>) -> Option<&PointerHandler<M>>;

/// A UI component: state, a view of it, and how messages change it.
pub trait Component {
    /// What event handlers send (`Clone`: a handler's message is sent each
    /// time it fires).
    type Msg: Clone + 'static;

    /// Renders the current state. Called only after the state changed.
    fn view(&self) -> Element<Self::Msg>;

    /// Applies a message; returns true when the state changed (so the view
    /// must be rendered again).
    fn update(&mut self, msg: Self::Msg) -> bool;
}

/// An input event, in framebuffer pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// The pointer moved to (`x`, `y`).
    PointerMove {
        /// Position.
        x: i32,
        /// Position.
        y: i32,
    },
    /// A pointer button went down at (`x`, `y`).
    PointerDown {
        /// Position.
        x: i32,
        /// Position.
        y: i32,
        /// Which button.
        button: Button,
    },
    /// A pointer button came up at (`x`, `y`).
    PointerUp {
        /// Position.
        x: i32,
        /// Position.
        y: i32,
        /// Which button.
        button: Button,
    },
    /// A key went down (or repeated).
    KeyDown(KeyEvent),
}

/// What a frame did.
#[derive(Clone, Debug, Default)]
pub struct FrameReport {
    /// The rectangles repainted (and to flush to the display), disjoint.
    pub damage: Vec<Rect>,
    /// Pixels repainted (the damage's area).
    pub pixels: u64,
    /// Whether `view` ran for this frame.
    pub viewed: bool,
    /// What the reconciler changed (meaningful when `viewed`).
    pub changes: Changes,
    /// Frames rendered so far, this one included.
    pub frame: u64,
}

/// The runtime of one component (see the module docs).
pub struct Ui<C: Component> {
    component: C,
    tree: Tree<C::Msg>,
    text: TextEngine,
    state: PaintState,
    dirty: bool,
    pointer: (i32, i32),
    focus_scratch: Vec<NodeId>,
    report: FrameReport,
    frames: u64,
}

impl<C: Component> core::fmt::Debug for Ui<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ui").field("tree", &self.tree).field("frames", &self.frames).finish()
    }
}

impl<C: Component> Ui<C> {
    /// A runtime for `component` on a `width` x `height` display. The first
    /// frame renders the view and repaints everything.
    pub fn new(component: C, width: u32, height: u32) -> Ui<C> {
        let mut ui = Ui {
            component,
            tree: Tree::new(width, height),
            text: TextEngine::new(),
            state: PaintState::default(),
            dirty: true,
            pointer: (-1, -1),
            focus_scratch: Vec::new(),
            report: FrameReport::default(),
            frames: 0,
        };
        ui.refresh();
        ui
    }

    /// The component (read its state).
    pub fn component(&self) -> &C {
        &self.component
    }

    /// Changes the component's state from outside (new samples, counters):
    /// `f` returns true when it changed something visible.
    pub fn update(&mut self, f: impl FnOnce(&mut C) -> bool) {
        if f(&mut self.component) {
            self.dirty = true;
        }
    }

    /// Sends a message to the component, as a handler would.
    pub fn send(&mut self, msg: C::Msg) {
        if self.component.update(msg) {
            self.dirty = true;
        }
    }

    /// The retained tree (as of the last frame or event).
    pub fn tree(&self) -> &Tree<C::Msg> {
        &self.tree
    }

    /// The text engine (its glyph cache statistics).
    pub fn text(&self) -> &TextEngine {
        &self.text
    }

    /// Hover, pressed and focus state.
    pub fn paint_state(&self) -> PaintState {
        self.state
    }

    /// The focused node.
    pub fn focused(&self) -> Option<NodeId> {
        self.state.focused
    }

    /// True when the next frame has something to do.
    pub fn needs_frame(&self) -> bool {
        self.dirty || !self.tree.damage().is_empty()
    }

    /// Changes the display size: the next frame lays out and repaints all.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.tree.resize(width, height);
    }

    /// Repaints everything on the next frame (after the display lost its
    /// contents).
    pub fn invalidate(&mut self) {
        self.tree.damage_all();
    }

    /// Runs `view` and reconciles if the state changed.
    fn refresh(&mut self) -> bool {
        if !self.dirty {
            return false;
        }
        self.dirty = false;
        let view = self.component.view();
        self.tree.update(view, &mut self.text);
        // Drop interaction state of nodes that went away.
        for s in [&mut self.state.hovered, &mut self.state.pressed, &mut self.state.focused] {
            if s.is_some_and(|id| !self.tree.contains(id)) {
                *s = None;
            }
        }
        true
    }

    /// Renders a frame into `canvas`: re-runs the view if the state changed,
    /// then repaints only the damaged rectangles. The canvas must be the
    /// same size as the UI and hold the previous frame's pixels outside the
    /// damage (a single scan-out buffer, or a back buffer kept in sync).
    pub fn frame(&mut self, canvas: &mut Canvas<'_>) -> &FrameReport {
        let viewed = self.refresh();
        // A resize needs layout without a new view.
        self.tree.layout_if_needed();
        self.frames += 1;
        let report = &mut self.report;
        report.viewed = viewed;
        report.frame = self.frames;
        if viewed {
            report.changes.clone_from(self.tree.changes());
        } else {
            report.changes = Changes::default();
        }
        self.tree.damage.drain_into(&mut report.damage);
        report.pixels = report.damage.iter().map(Rect::area).sum();
        let full = canvas.clip();
        for r in &report.damage {
            canvas.set_clip(*r);
            paint_tree(&self.tree, canvas, &mut self.text, &self.state);
        }
        canvas.set_clip(full);
        &self.report
    }

    /// The nearest node at or above `id` for which `pred` holds.
    fn up(&self, mut id: Option<NodeId>, pred: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        while let Some(n) = id {
            if pred(n) {
                return Some(n);
            }
            id = self.tree.parent(n);
        }
        None
    }

    fn interactive(&self, id: NodeId) -> bool {
        self.tree.node(id).is_some_and(|n| n.handlers.interactive())
    }

    fn set_state(&mut self, which: fn(&mut PaintState) -> &mut Option<NodeId>, to: Option<NodeId>) {
        let slot = which(&mut self.state);
        if *slot != to {
            let old = core::mem::replace(slot, to);
            if let Some(o) = old {
                self.tree.damage_node(o);
            }
            if let Some(n) = to {
                self.tree.damage_node(n);
            }
        }
    }

    fn emit(&mut self, msg: Option<C::Msg>) -> bool {
        match msg {
            Some(m) => {
                self.send(m);
                true
            }
            None => false,
        }
    }

    fn pointer_event(&self, id: NodeId, x: i32, y: i32, button: Option<Button>) -> PointerEvent {
        let r = self.tree.rect(id).unwrap_or_default();
        PointerEvent { x, y, local_x: x - r.x, local_y: y - r.y, button }
    }

    /// Delivers a pointer event to the deepest handler (of the kind `pick`
    /// selects) at or above the hit node; true when one sent a message.
    fn pointer_handlers(
        &mut self,
        hit: Option<NodeId>,
        x: i32,
        y: i32,
        button: Option<Button>,
        pick: PickHandler<C::Msg>,
    ) -> bool {
        let target = self.up(hit, |n| self.tree.node(n).is_some_and(|n| pick(&n.handlers).is_some()));
        let Some(t) = target else { return false };
        let ev = self.pointer_event(t, x, y, button);
        let msg = self.tree.node(t).and_then(|n| pick(&n.handlers)).and_then(|h| h(&ev));
        self.emit(msg)
    }

    fn click(&mut self, id: NodeId) -> bool {
        let msg = self.tree.node(id).and_then(|n| n.handlers.on_click.clone());
        self.emit(msg)
    }

    /// Handles one input event against what is on screen (the tree of the
    /// last frame). Returns true when a handler sent a message or the
    /// interaction state changed (a frame is due).
    pub fn handle(&mut self, ev: InputEvent) -> bool {
        let before = self.needs_frame();
        let sent = match ev {
            InputEvent::PointerMove { x, y } => {
                self.pointer = (x, y);
                let hit = self.tree.hit(x, y);
                let hover = self.up(hit, |n| self.interactive(n));
                self.set_state(|s| &mut s.hovered, hover);
                self.pointer_handlers(hit, x, y, None, |h| h.on_pointer_move.as_ref())
            }
            InputEvent::PointerDown { x, y, button } => {
                self.pointer = (x, y);
                let hit = self.tree.hit(x, y);
                let target = self.up(hit, |n| self.interactive(n));
                if button == Button::Left {
                    self.set_state(|s| &mut s.pressed, target);
                    // Clicking a focusable element focuses it.
                    if let Some(f) = self.up(hit, |n| self.tree.node(n).is_some_and(|n| n.focusable)) {
                        self.set_state(|s| &mut s.focused, Some(f));
                    }
                }
                self.pointer_handlers(hit, x, y, Some(button), |h| h.on_pointer_down.as_ref())
            }
            InputEvent::PointerUp { x, y, button } => {
                self.pointer = (x, y);
                let hit = self.tree.hit(x, y);
                let mut sent = self.pointer_handlers(hit, x, y, Some(button), |h| h.on_pointer_up.as_ref());
                if button == Button::Left {
                    let target = self.up(hit, |n| self.interactive(n));
                    let pressed = self.state.pressed;
                    self.set_state(|s| &mut s.pressed, None);
                    if let (Some(p), Some(t)) = (pressed, target) {
                        if p == t {
                            sent |= self.click(t);
                        }
                    }
                }
                sent
            }
            InputEvent::KeyDown(k) => self.key(k),
        };
        sent || (!before && self.needs_frame())
    }

    fn key(&mut self, k: KeyEvent) -> bool {
        match k.key {
            KeyCode::Tab if !k.modifiers.ctrl && !k.modifiers.alt => {
                self.move_focus(!k.modifiers.shift);
                return false;
            }
            KeyCode::Enter | KeyCode::Space if k.modifiers == Modifiers::default() => {
                if let Some(f) = self.state.focused {
                    if self.tree.node(f).is_some_and(|n| n.handlers.on_click.is_some()) {
                        return self.click(f);
                    }
                }
            }
            _ => {}
        }
        // The focused node, then its ancestors; the root when nothing is focused.
        let mut at = self.state.focused.or(self.tree.root());
        while let Some(id) = at {
            let msg = self.tree.node(id).and_then(|n| n.handlers.on_key.as_ref()).and_then(|h| h(&k));
            if msg.is_some() {
                return self.emit(msg);
            }
            at = self.tree.parent(id);
        }
        false
    }

    /// Moves keyboard focus to the next (or previous) focusable node in tree
    /// order, wrapping around.
    pub fn move_focus(&mut self, forward: bool) {
        // Focus follows what is on screen: bring the tree up to date first.
        self.refresh();
        let mut order = core::mem::take(&mut self.focus_scratch);
        self.tree.focus_order(&mut order);
        let next = if order.is_empty() {
            None
        } else {
            let pos = self.state.focused.and_then(|f| order.iter().position(|&o| o == f));
            let n = order.len();
            Some(order[match (pos, forward) {
                (None, true) => 0,
                (None, false) => n - 1,
                (Some(p), true) => (p + 1) % n,
                (Some(p), false) => (p + n - 1) % n,
            }])
        };
        self.focus_scratch = order;
        self.set_state(|s| &mut s.focused, next);
    }

    /// Gives focus to `id` (or removes it).
    pub fn set_focus(&mut self, id: Option<NodeId>) {
        self.set_state(|s| &mut s.focused, id);
    }
}

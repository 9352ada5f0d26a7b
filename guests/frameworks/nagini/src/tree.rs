//! The retained tree and the reconciler.
//!
//! The [`Tree`] keeps the last view's nodes with their laid-out rectangles,
//! a persistent taffy tree mirroring it, and the damage accumulated since the
//! last frame. [`Tree::update`] compares a new [`Element`] tree with the
//! retained one, node by node:
//!
//! * children are matched by [`Key`] (unkeyed ones by their
//!   order among the unkeyed siblings); unmatched old children are removed,
//!   unmatched new ones created;
//! * a changed style, a text whose measured size changed, or a changed child
//!   list is a **layout** change: that taffy node is marked dirty (taffy
//!   re-lays out only dirty nodes and their ancestors, reusing the cached
//!   results of everything else);
//! * any other changed text, visual or chart is a **paint** change: no
//!   layout, and only the node's rectangle is damaged;
//! * handlers are replaced silently (they never show).
//!
//! After a layout, nodes whose rectangle changed are **moved** and damage
//! both their old and new rectangles. [`Changes`] lists exactly which nodes
//! fell in each class, so tests (and curious callers) can check that an
//! update touched only what it should.

use crate::damage::Damage;
use crate::element::{Content, Element, Handlers, Key, Style, Visual};
use crate::geom::Rect;
use crate::text::TextEngine;
use alloc::vec;
use alloc::vec::Vec;
use taffy::prelude::{length, TaffyTree};
use taffy::style::AvailableSpace;

/// A node of the retained tree. Stays valid while the node exists; a
/// removed node's id is never reused for another node (the generation
/// differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    index: u32,
    generation: u32,
}

pub(crate) struct Node<M> {
    pub(crate) key: Option<Key>,
    pub(crate) parent: Option<NodeId>,
    pub(crate) children: Vec<NodeId>,
    layout: taffy::NodeId,
    pub(crate) style: Style,
    pub(crate) visual: Visual,
    pub(crate) content: Content,
    pub(crate) handlers: Handlers<M>,
    pub(crate) focusable: bool,
    memo: Option<u64>,
    pub(crate) rect: Rect,
    measured: (i32, i32),
    fresh: bool,
}

/// What one [`Tree::update`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Nodes whose layout inputs changed (style, text size, child list).
    pub layout: Vec<NodeId>,
    /// Nodes whose paint changed and layout did not.
    pub paint: Vec<NodeId>,
    /// Existing nodes whose rectangle changed in the new layout.
    pub moved: Vec<NodeId>,
    /// Nodes created.
    pub added: Vec<NodeId>,
    /// Number of nodes removed.
    pub removed: u32,
    /// Whether taffy ran.
    pub laid_out: bool,
    /// Subtrees kept unexamined because their memo dependencies matched.
    pub memo_hits: u32,
}

impl Changes {
    fn clear(&mut self) {
        self.layout.clear();
        self.paint.clear();
        self.moved.clear();
        self.added.clear();
        self.removed = 0;
        self.laid_out = false;
        self.memo_hits = 0;
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.layout.is_empty() && self.paint.is_empty() && self.moved.is_empty() && self.added.is_empty() && self.removed == 0
    }
}

struct Slot<M> {
    generation: u32,
    node: Option<Node<M>>,
}

/// The retained tree (see the module docs).
pub struct Tree<M> {
    slots: Vec<Slot<M>>,
    free: Vec<u32>,
    root: Option<NodeId>,
    layout: TaffyTree<(i32, i32)>,
    viewport: Rect,
    needs_layout: bool,
    pub(crate) changes: Changes,
    pub(crate) damage: Damage,
}

impl<M> core::fmt::Debug for Tree<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tree").field("nodes", &self.len()).field("viewport", &self.viewport).finish()
    }
}

fn measure(content: &Content, text: &mut TextEngine) -> (i32, i32) {
    match content {
        Content::Text(t) => (text.measure(&t.text, t.size), text.metrics(t.size).height),
        _ => (0, 0),
    }
}

impl<M> Tree<M> {
    /// An empty tree for a `width` x `height` viewport.
    pub fn new(width: u32, height: u32) -> Tree<M> {
        let viewport = Rect::new(0, 0, width as i32, height as i32);
        let mut damage = Damage::new(viewport);
        damage.add(viewport);
        Tree {
            slots: Vec::new(),
            free: Vec::new(),
            root: None,
            layout: TaffyTree::new(),
            viewport,
            needs_layout: true,
            changes: Changes::default(),
            damage,
        }
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.node.is_some()).count()
    }

    /// True when no view has been applied yet.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// The viewport.
    pub fn viewport(&self) -> Rect {
        self.viewport
    }

    /// Changes the viewport: everything is laid out and repainted.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.viewport = Rect::new(0, 0, width as i32, height as i32);
        self.damage.set_bounds(self.viewport);
        if let Some(root) = self.root {
            let style = self.node(root).map(|n| n.style.clone()).unwrap_or_default();
            self.set_taffy_style(root, &style);
        }
        self.needs_layout = true;
    }

    /// The root node.
    pub fn root(&self) -> Option<NodeId> {
        self.root
    }

    pub(crate) fn node(&self, id: NodeId) -> Option<&Node<M>> {
        let s = self.slots.get(id.index as usize)?;
        if s.generation == id.generation {
            s.node.as_ref()
        } else {
            None
        }
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut Node<M>> {
        let s = self.slots.get_mut(id.index as usize)?;
        if s.generation == id.generation {
            s.node.as_mut()
        } else {
            None
        }
    }

    /// True while `id` names a live node.
    pub fn contains(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// The node's rectangle in the last layout (framebuffer pixels).
    pub fn rect(&self, id: NodeId) -> Option<Rect> {
        self.node(id).map(|n| n.rect)
    }

    /// The node's key.
    pub fn key(&self, id: NodeId) -> Option<Key> {
        self.node(id).and_then(|n| n.key)
    }

    /// The node's parent.
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.node(id).and_then(|n| n.parent)
    }

    /// The node's children in order.
    pub fn children(&self, id: NodeId) -> &[NodeId] {
        self.node(id).map_or(&[], |n| &n.children)
    }

    /// The node's content (text or chart).
    pub fn content(&self, id: NodeId) -> Option<&Content> {
        self.node(id).map(|n| &n.content)
    }

    /// The node's text, if it is a text node.
    pub fn text(&self, id: NodeId) -> Option<&str> {
        match self.content(id)? {
            Content::Text(t) => Some(&t.text),
            _ => None,
        }
    }

    /// Follows `path` from the root: each key picks a child with that key.
    /// An empty path names the root.
    pub fn find(&self, path: &[Key]) -> Option<NodeId> {
        let mut at = self.root?;
        for k in path {
            at = *self.children(at).iter().find(|c| self.key(**c) == Some(*k))?;
        }
        Some(at)
    }

    /// Searches the whole tree (pre-order) for the first node with key `k`.
    pub fn find_key(&self, k: Key) -> Option<NodeId> {
        let mut stack = vec![self.root?];
        while let Some(id) = stack.pop() {
            if self.key(id) == Some(k) {
                return Some(id);
            }
            stack.extend(self.children(id).iter().rev());
        }
        None
    }

    /// What the last update changed.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// The damage accumulated since the last frame.
    pub fn damage(&self) -> &Damage {
        &self.damage
    }

    /// Damages a node's rectangle (for state the tree does not see, e.g.
    /// hover and focus).
    pub fn damage_node(&mut self, id: NodeId) {
        if let Some(r) = self.rect(id) {
            self.damage.add(r);
        }
    }

    /// Damages the whole viewport.
    pub fn damage_all(&mut self) {
        self.damage.add(self.viewport);
    }

    /// The deepest node whose rectangle holds (`x`, `y`); children are
    /// searched topmost (last) first and only inside their parent.
    pub fn hit(&self, x: i32, y: i32) -> Option<NodeId> {
        let mut at = self.root?;
        if !self.rect(at)?.contains(x, y) {
            return None;
        }
        'down: loop {
            for &c in self.children(at).iter().rev() {
                if self.rect(c).is_some_and(|r| r.contains(x, y)) {
                    at = c;
                    continue 'down;
                }
            }
            return Some(at);
        }
    }

    /// Appends the focusable nodes in tree (pre-)order to `out` (cleared).
    pub fn focus_order(&self, out: &mut Vec<NodeId>) {
        out.clear();
        let Some(root) = self.root else { return };
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(n) = self.node(id) else { continue };
            if n.focusable {
                out.push(id);
            }
            stack.extend(n.children.iter().rev());
        }
    }

    fn set_taffy_style(&mut self, id: NodeId, style: &Style) {
        let is_root = self.root == Some(id);
        let (w, h) = (self.viewport.w as f32, self.viewport.h as f32);
        let Some(n) = self.node(id) else { return };
        let lid = n.layout;
        let mut s = style.clone();
        if is_root {
            s.size.width = length(w);
            s.size.height = length(h);
        }
        // A node id we created is always present in the taffy tree.
        let _ = self.layout.set_style(lid, s);
    }

    /// Applies a new view: reconciles, lays out if needed and accumulates
    /// damage. [`Tree::changes`] then tells what changed.
    pub fn update(&mut self, view: Element<M>, text: &mut TextEngine) {
        self.changes.clear();
        match self.root {
            Some(root) if self.node(root).map(|n| n.key) == Some(view.key) => self.reconcile(root, view, text),
            old => {
                if let Some(old) = old {
                    self.remove(old);
                }
                let root = self.create(view, None, text);
                self.root = Some(root);
                let style = self.node(root).map(|n| n.style.clone()).unwrap_or_default();
                self.set_taffy_style(root, &style);
                self.needs_layout = true;
            }
        }
        self.layout_if_needed();
    }

    /// Lays out again if something (an update, a resize) asked for it.
    pub fn layout_if_needed(&mut self) {
        if self.needs_layout {
            self.relayout();
        }
    }

    fn alloc(&mut self, node: Node<M>) -> NodeId {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.node = Some(node);
            NodeId { index, generation: slot.generation }
        } else {
            let index = self.slots.len() as u32;
            self.slots.push(Slot { generation: 0, node: Some(node) });
            NodeId { index, generation: 0 }
        }
    }

    fn create(&mut self, el: Element<M>, parent: Option<NodeId>, text: &mut TextEngine) -> NodeId {
        let Element { key, style, visual, content, handlers, focusable, memo, children } = el;
        let measured = measure(&content, text);
        let ctx = if matches!(content, Content::Text(_)) { Some(measured) } else { None };
        let layout = match ctx {
            Some(m) => self.layout.new_leaf_with_context(style.clone(), m),
            None => self.layout.new_leaf(style.clone()),
        };
        // taffy's slot map allocation cannot fail short of running out of memory.
        let layout = match layout {
            Ok(l) => l,
            Err(_) => unreachable!("taffy new_leaf is infallible"),
        };
        let id = self.alloc(Node {
            key,
            parent,
            children: Vec::new(),
            layout,
            style,
            visual,
            content,
            handlers,
            focusable,
            memo,
            rect: Rect::EMPTY,
            measured,
            fresh: true,
        });
        self.changes.added.push(id);
        let kids: Vec<NodeId> = children.into_iter().map(|c| self.create(c, Some(id), text)).collect();
        self.attach_children(id, kids);
        self.needs_layout = true;
        id
    }

    fn attach_children(&mut self, id: NodeId, kids: Vec<NodeId>) {
        let lids: Vec<taffy::NodeId> = kids.iter().filter_map(|k| self.node(*k).map(|n| n.layout)).collect();
        if let Some(n) = self.node_mut(id) {
            let lid = n.layout;
            n.children = kids;
            let _ = self.layout.set_children(lid, &lids);
        }
    }

    fn remove(&mut self, id: NodeId) {
        let Some(slot) = self.slots.get_mut(id.index as usize) else { return };
        if slot.generation != id.generation {
            return;
        }
        let Some(node) = slot.node.take() else { return };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.damage.add(node.rect);
        self.changes.removed += 1;
        let _ = self.layout.remove(node.layout);
        for c in node.children {
            self.remove(c);
        }
    }

    fn mark_layout(&mut self, id: NodeId) {
        if !self.changes.layout.contains(&id) {
            self.changes.layout.push(id);
        }
        self.needs_layout = true;
    }

    fn reconcile(&mut self, id: NodeId, el: Element<M>, text: &mut TextEngine) {
        let Element { key: _, style, visual, content, handlers, focusable, memo, children } = el;
        let Some(n) = self.node_mut(id) else { return };
        if memo.is_some() && n.memo == memo {
            self.changes.memo_hits += 1;
            return;
        }
        n.memo = memo;
        n.handlers = handlers;
        let mut layout_changed = false;
        let mut paint_changed = false;
        if n.style != style {
            n.style = style.clone();
            layout_changed = true;
        }
        if n.visual != visual || n.focusable != focusable {
            n.visual = visual;
            n.focusable = focusable;
            paint_changed = true;
        }
        let mut new_measure = None;
        if n.content != content {
            let m = measure(&content, text);
            let Some(n) = self.node_mut(id) else { return };
            if m != n.measured || matches!(n.content, Content::Text(_)) != matches!(content, Content::Text(_)) {
                n.measured = m;
                new_measure = Some((m, matches!(content, Content::Text(_))));
                layout_changed = true;
            } else {
                paint_changed = true;
            }
            n.content = content;
        }
        let Some(n) = self.node(id) else { return };
        let (lid, rect) = (n.layout, n.rect);
        if layout_changed {
            self.set_taffy_style(id, &style);
            if let Some((m, is_text)) = new_measure {
                let _ = self.layout.set_node_context(lid, if is_text { Some(m) } else { None });
                let _ = self.layout.mark_dirty(lid);
            }
            self.mark_layout(id);
            self.damage.add(rect);
        } else if paint_changed {
            self.changes.paint.push(id);
            self.damage.add(rect);
        }
        self.reconcile_children(id, children, text);
    }

    fn reconcile_children(&mut self, id: NodeId, new: Vec<Element<M>>, text: &mut TextEngine) {
        let old = match self.node_mut(id) {
            Some(n) => core::mem::take(&mut n.children),
            None => return,
        };
        // Fast path: the same keys in the same order (the common case of a
        // view re-rendered with new values): pairwise, no allocation.
        if old.len() == new.len() && old.iter().zip(&new).all(|(o, e)| self.key(*o) == e.key) {
            for (o, e) in old.iter().zip(new) {
                self.reconcile(*o, e, text);
            }
            if let Some(n) = self.node_mut(id) {
                n.children = old;
            }
            return;
        }
        let mut used = vec![false; old.len()];
        let mut result = Vec::with_capacity(new.len());
        let mut cursor = 0;
        for e in new {
            let found = match e.key {
                Some(k) => (0..old.len()).find(|&i| !used[i] && self.key(old[i]) == Some(k)),
                None => {
                    while cursor < old.len() && (used[cursor] || self.key(old[cursor]).is_some()) {
                        cursor += 1;
                    }
                    (cursor < old.len()).then_some(cursor)
                }
            };
            match found {
                Some(i) => {
                    used[i] = true;
                    self.reconcile(old[i], e, text);
                    result.push(old[i]);
                }
                None => result.push(self.create(e, Some(id), text)),
            }
        }
        for (i, o) in old.iter().enumerate() {
            if !used[i] {
                self.remove(*o);
            }
        }
        if result != old {
            self.mark_layout(id);
        }
        self.attach_children(id, result);
    }

    fn relayout(&mut self) {
        self.needs_layout = false;
        let Some(root) = self.root else { return };
        let Some(lid) = self.node(root).map(|n| n.layout) else { return };
        let space = taffy::geometry::Size {
            width: AvailableSpace::Definite(self.viewport.w as f32),
            height: AvailableSpace::Definite(self.viewport.h as f32),
        };
        let _ = self.layout.compute_layout_with_measure(lid, space, |inputs, _id, ctx, style| {
            let m = ctx.map(|m| *m).unwrap_or((0, 0));
            taffy::compute_leaf_layout(inputs, style, |_, _| 0.0, |known, _avail| taffy::geometry::Size {
                width: known.width.unwrap_or(m.0 as f32),
                height: known.height.unwrap_or(m.1 as f32),
            })
        });
        self.changes.laid_out = true;
        // Absolute rectangles, pre-order; damage what moved.
        let mut stack = vec![(root, 0i32, 0i32)];
        while let Some((id, ox, oy)) = stack.pop() {
            let Some(n) = self.node(id) else { continue };
            let l = match self.layout.layout(n.layout) {
                Ok(l) => *l,
                Err(_) => continue,
            };
            // Taken as taffy gives it (not clamped), so tests can check sizes.
            let rect = Rect {
                x: ox.saturating_add(l.location.x as i32),
                y: oy.saturating_add(l.location.y as i32),
                w: l.size.width as i32,
                h: l.size.height as i32,
            };
            let (old, fresh) = (n.rect, n.fresh);
            for c in n.children.iter().rev() {
                stack.push((*c, rect.x, rect.y));
            }
            if rect != old {
                if !fresh {
                    self.changes.moved.push(id);
                }
                self.damage.add(old);
                self.damage.add(rect);
            }
            if let Some(n) = self.node_mut(id) {
                n.rect = rect;
                n.fresh = false;
            }
        }
    }
}

//! The dashboard: live series and counters of other partitions, and
//! controls that act on the system (pause a load generator, switch views).
//!
//! The guest shell owns a [`Ui`](crate::Ui)`<Dashboard>`: it declares the
//! series, counters and load generators once, feeds numbers through
//! [`Ui::update`](crate::Ui::update) (e.g. `ui.update(|d| d.set_counter(0, n))`),
//! passes input events to [`Ui::handle`](crate::Ui::handle), asks for frames,
//! and after each event drains [`Dashboard::take_actions`] to carry out
//! what the user asked for (pausing a generator is the shell's job; the
//! dashboard only records and shows the request).
//!
//! Views: **Overview** (counter tiles and a line chart per series),
//! **Charts** (a bar chart per series) and **Controls** (a pause/resume
//! button per load generator). Keys: `1`..`3` pick a view, Left/Right cycle
//! through them, Tab/Shift+Tab move focus, Enter/Space press the focused
//! control.

use crate::app::Component;
use crate::element::{column, grid, row, Align, Element, KeyCode, KeyEvent};
use crate::widgets::{bar_chart, button, label, line_chart, panel, stat_tile, tabs, Ring, Theme, SERIES_COLORS, THEME};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The views, in tab order.
pub const VIEWS: [&str; 3] = ["Overview", "Charts", "Controls"];

/// A named series of samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Caption.
    pub name: String,
    /// The samples.
    pub ring: Ring,
    /// Bumped by every sample (the chart's memo dependency).
    pub version: u64,
}

/// A named counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// Caption.
    pub name: String,
    /// Current value.
    pub value: u64,
}

/// A load generator the dashboard can pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generator {
    /// Caption.
    pub name: String,
    /// Whether the user paused it.
    pub paused: bool,
}

/// Something the user asked the system to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pause (`paused == true`) or resume load generator `generator`.
    SetPaused {
        /// Index from [`Dashboard::add_generator`].
        generator: usize,
        /// The new state.
        paused: bool,
    },
}

/// The dashboard's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DashMsg {
    /// Show view `i` (an index into [`VIEWS`]).
    Select(usize),
    /// Show the next view (`true`) or the previous one.
    Cycle(bool),
    /// Toggle the pause flag of generator `i`.
    TogglePause(usize),
}

/// The dashboard component (see the module docs).
#[derive(Clone, Debug)]
pub struct Dashboard {
    title: String,
    series: Vec<Series>,
    counters: Vec<Counter>,
    generators: Vec<Generator>,
    view: usize,
    actions: Vec<Action>,
    theme: Theme,
}

impl Dashboard {
    /// An empty dashboard titled `title`.
    pub fn new(title: impl Into<String>) -> Dashboard {
        Dashboard {
            title: title.into(),
            series: Vec::new(),
            counters: Vec::new(),
            generators: Vec::new(),
            view: 0,
            actions: Vec::new(),
            theme: THEME,
        }
    }

    /// Adds a series of at most `capacity` samples; returns its index.
    pub fn add_series(&mut self, name: impl Into<String>, capacity: usize) -> usize {
        self.series.push(Series { name: name.into(), ring: Ring::new(capacity), version: 0 });
        self.series.len() - 1
    }

    /// Adds a counter; returns its index.
    pub fn add_counter(&mut self, name: impl Into<String>) -> usize {
        self.counters.push(Counter { name: name.into(), value: 0 });
        self.counters.len() - 1
    }

    /// Adds a load generator (running); returns its index.
    pub fn add_generator(&mut self, name: impl Into<String>) -> usize {
        self.generators.push(Generator { name: name.into(), paused: false });
        self.generators.len() - 1
    }

    /// Appends a sample to series `i`; true when there is such a series.
    pub fn push_sample(&mut self, i: usize, v: f32) -> bool {
        match self.series.get_mut(i) {
            Some(s) => {
                s.ring.push(v);
                s.version += 1;
                true
            }
            None => false,
        }
    }

    /// Sets counter `i`; true when its value changed.
    pub fn set_counter(&mut self, i: usize, v: u64) -> bool {
        match self.counters.get_mut(i) {
            Some(c) if c.value != v => {
                c.value = v;
                true
            }
            _ => false,
        }
    }

    /// The series.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// The counters.
    pub fn counters(&self) -> &[Counter] {
        &self.counters
    }

    /// The generators.
    pub fn generators(&self) -> &[Generator] {
        &self.generators
    }

    /// Whether generator `i` is paused.
    pub fn paused(&self, i: usize) -> bool {
        self.generators.get(i).is_some_and(|g| g.paused)
    }

    /// The selected view (an index into [`VIEWS`]).
    pub fn view_index(&self) -> usize {
        self.view
    }

    /// Moves the requested actions out (oldest first) into `out`.
    pub fn take_actions(&mut self, out: &mut Vec<Action>) {
        out.append(&mut self.actions);
    }

    fn overview(&self) -> Element<DashMsg> {
        let t = &self.theme;
        let cols = self.counters.len().clamp(1, 4) as u16;
        let tiles = grid(cols)
            .key("tiles")
            .gap(12.0)
            .children(self.counters.iter().map(|c| stat_tile(&c.name, format!("{}", c.value), t).key(c.name.as_str()).memo(c.value)));
        let charts = grid(2.min(self.series.len().max(1)) as u16)
            .key("charts")
            .gap(12.0)
            .grow(1.0)
            .style(|s| s.grid_auto_rows = alloc::vec![taffy::prelude::fr(1.0)])
            .children(self.series.iter().enumerate().map(|(i, s)| {
                let title = match s.ring.last() {
                    // Whole numbers: integer formatting is much cheaper than float.
                    Some(v) if v.is_finite() => format!("{}  {}", s.name, libm::roundf(v) as i64),
                    _ => s.name.clone(),
                };
                panel(&title, line_chart(&s.ring, SERIES_COLORS[i % SERIES_COLORS.len()], t), t)
                    .key(s.name.as_str())
                    .memo(s.version)
            }));
        column().key("Overview").gap(12.0).grow(1.0).child(tiles).child(charts)
    }

    fn charts(&self) -> Element<DashMsg> {
        let t = &self.theme;
        grid(1)
            .key("Charts")
            .gap(12.0)
            .grow(1.0)
            .style(|s| s.grid_auto_rows = alloc::vec![taffy::prelude::fr(1.0)])
            .children(self.series.iter().enumerate().map(|(i, s)| {
                panel(&s.name, bar_chart(&s.ring, SERIES_COLORS[i % SERIES_COLORS.len()], t), t)
                    .key(s.name.as_str())
                    .memo(s.version)
            }))
    }

    fn controls(&self) -> Element<DashMsg> {
        let t = &self.theme;
        column().key("Controls").gap(10.0).grow(1.0).children(self.generators.iter().enumerate().map(|(i, g)| {
            row()
                .key(g.name.as_str())
                .padding(12.0)
                .gap(16.0)
                .background(t.panel)
                .radius(8.0)
                .align_items(taffy::style::AlignItems::CENTER)
                .child(label(g.name.as_str(), 16, t.text).key("name").grow(1.0))
                .child(
                    label(if g.paused { "paused" } else { "running" }, 15, if g.paused { t.warn } else { SERIES_COLORS[1] })
                        .key("state")
                        .width(90.0),
                )
                .child(button(if g.paused { "Resume" } else { "Pause" }, DashMsg::TogglePause(i), t).key("toggle").width(110.0))
        }))
    }
}

impl Component for Dashboard {
    type Msg = DashMsg;

    fn view(&self) -> Element<DashMsg> {
        let t = &self.theme;
        let header = row()
            .key("header")
            .gap(16.0)
            .align_items(taffy::style::AlignItems::CENTER)
            .child(label(self.title.as_str(), 22, t.text).key("title").grow(1.0))
            .child(tabs(&VIEWS, self.view, DashMsg::Select, t).key("tabs"));
        let body = match self.view {
            1 => self.charts(),
            2 => self.controls(),
            _ => self.overview(),
        };
        let footer = label("Tab: focus   Enter/Space: press   1-3 or Left/Right: views", 12, t.muted)
            .key("footer")
            .align(Align::End);
        column()
            .padding(16.0)
            .gap(12.0)
            .background(t.background)
            .on_key(|k: &KeyEvent| match k.key {
                KeyCode::Char(c @ '1'..='3') => Some(DashMsg::Select(c as usize - '1' as usize)),
                KeyCode::Right => Some(DashMsg::Cycle(true)),
                KeyCode::Left => Some(DashMsg::Cycle(false)),
                _ => None,
            })
            .child(header)
            .child(body)
            .child(footer)
    }

    fn update(&mut self, msg: DashMsg) -> bool {
        match msg {
            DashMsg::Select(i) if i < VIEWS.len() && i != self.view => {
                self.view = i;
                true
            }
            DashMsg::Cycle(fwd) => {
                let n = VIEWS.len();
                self.view = if fwd { (self.view + 1) % n } else { (self.view + n - 1) % n };
                true
            }
            DashMsg::TogglePause(i) => match self.generators.get_mut(i) {
                Some(g) => {
                    g.paused = !g.paused;
                    self.actions.push(Action::SetPaused { generator: i, paused: g.paused });
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

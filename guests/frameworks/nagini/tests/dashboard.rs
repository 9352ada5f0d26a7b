//! The dashboard rendered whole: goldens of each view, a counter update that
//! repaints only its tile's value, pointer and keyboard control.
mod common;
#[path = "common/fixture.rs"]
mod fixture;

use fixture::{demo_dashboard, H, W};
use nagini::dashboard::{Action, DashMsg};
use nagini::{Button, Dashboard, Framebuffer, InputEvent, Key, KeyCode, KeyEvent, Modifiers, PixelFormat, Rect, Ui};

fn key(k: KeyCode) -> InputEvent {
    InputEvent::KeyDown(KeyEvent { key: k, modifiers: Modifiers::default() })
}

fn setup() -> (Ui<Dashboard>, Framebuffer) {
    let mut ui = Ui::new(demo_dashboard(), W, H);
    let mut fb = Framebuffer::new(W, H, PixelFormat::Xrgb8888);
    let r = ui.frame(&mut fb.canvas());
    assert_eq!(r.damage, vec![Rect::new(0, 0, W as i32, H as i32)], "the first frame paints everything");
    (ui, fb)
}

fn frame(ui: &mut Ui<Dashboard>, fb: &mut Framebuffer) -> nagini::FrameReport {
    ui.frame(&mut fb.canvas()).clone()
}

#[test]
fn overview_golden() {
    let (_ui, fb) = setup();
    common::check_golden("dashboard-overview", &fb);
}

fn k(s: &str) -> Key {
    Key::from(s)
}

/// Renders the component's current state from scratch, for comparison with
/// what damage-only frames produced.
fn full_render(d: &Dashboard, focus_path: Option<&[Key]>) -> Framebuffer {
    let mut ui = Ui::new(d.clone(), W, H);
    let mut fb = Framebuffer::new(W, H, PixelFormat::Xrgb8888);
    ui.frame(&mut fb.canvas());
    if let Some(p) = focus_path {
        let id = ui.tree().find(p);
        ui.set_focus(id);
        ui.frame(&mut fb.canvas());
    }
    fb
}

fn centre(ui: &Ui<Dashboard>, path: &[Key]) -> (i32, i32) {
    let id = ui.tree().find(path).unwrap_or_else(|| panic!("no node at {path:?}"));
    let r = ui.tree().rect(id).unwrap();
    (r.x + r.w / 2, r.y + r.h / 2)
}

fn click(ui: &mut Ui<Dashboard>, (x, y): (i32, i32)) -> bool {
    let a = ui.handle(InputEvent::PointerMove { x, y });
    let b = ui.handle(InputEvent::PointerDown { x, y, button: Button::Left });
    let c = ui.handle(InputEvent::PointerUp { x, y, button: Button::Left });
    a | b | c
}

#[test]
fn a_counter_update_repaints_only_its_value() {
    let (mut ui, mut fb) = setup();
    let before = fb.clone();
    ui.update(|d| d.set_counter(1, 98_766));
    let r = frame(&mut ui, &mut fb);
    let value = ui.tree().find(&[k("Overview"), k("tiles"), k("log records"), k("value")]).unwrap();
    assert_eq!(ui.tree().text(value), Some("98766"));
    assert!(r.viewed);
    assert_eq!(r.changes.paint, vec![value], "only the value text changed");
    assert!(r.changes.layout.is_empty() && r.changes.moved.is_empty(), "{:?}", r.changes);
    assert!(r.changes.added.is_empty() && r.changes.removed == 0);
    assert_eq!(r.changes.memo_hits, 3 + 4, "the other tiles and the charts were not even compared");
    let rect = ui.tree().rect(value).unwrap();
    assert_eq!(r.damage, vec![rect], "damage is exactly the value's rectangle");
    assert!(r.pixels < 20_000, "a counter repaint is small: {} pixels", r.pixels);
    // Nothing outside the damage was touched, something inside was.
    let mut changed_inside = 0;
    for y in 0..H as i32 {
        for x in 0..W as i32 {
            let (a, b) = (before.pixel(x, y), fb.pixel(x, y));
            if rect.contains(x, y) {
                changed_inside += (a != b) as u32;
            } else {
                assert_eq!(a, b, "pixel {x},{y} outside the damage changed");
            }
        }
    }
    assert!(changed_inside > 10);
    // And the result is what a full repaint of the new state draws.
    assert_eq!(fb.pixels, full_render(ui.component(), None).pixels);
}

#[test]
fn a_frame_without_changes_does_nothing() {
    let (mut ui, mut fb) = setup();
    ui.update(|d| d.set_counter(0, 123_456)); // same value: no change
    assert!(!ui.needs_frame());
    let r = frame(&mut ui, &mut fb);
    assert!(!r.viewed && r.damage.is_empty() && r.pixels == 0);
}

#[test]
fn a_new_sample_repaints_only_its_chart_panel() {
    let (mut ui, mut fb) = setup();
    ui.update(|d| d.push_sample(2, 140.0));
    let r = frame(&mut ui, &mut fb);
    let panel = ui.tree().find(&[k("Overview"), k("charts"), k("store ops/s")]).unwrap();
    let prect = ui.tree().rect(panel).unwrap();
    assert!(!r.damage.is_empty());
    for d in &r.damage {
        assert!(prect.contains_rect(d), "damage {d:?} outside the panel {prect:?}");
    }
    assert!(r.changes.moved.is_empty(), "nothing moved: {:?}", r.changes);
    assert_eq!(fb.pixels, full_render(ui.component(), None).pixels);
}

#[test]
fn clicking_a_button_centre_fires_its_handler() {
    let (mut ui, mut fb) = setup();
    // Switch to Controls by clicking its tab.
    let at = centre(&ui, &[k("header"), k("tabs"), k("Controls")]);
    assert!(click(&mut ui, at));
    assert_eq!(ui.component().view_index(), 2);
    frame(&mut ui, &mut fb);
    let toggle = [k("Controls"), k("log producer"), k("toggle")];
    let at = centre(&ui, &toggle);
    assert!(click(&mut ui, at));
    assert!(ui.component().paused(1) && !ui.component().paused(0));
    let mut actions = Vec::new();
    ui.update(|d| {
        d.take_actions(&mut actions);
        false
    });
    assert_eq!(actions, vec![Action::SetPaused { generator: 1, paused: true }]);
    frame(&mut ui, &mut fb);
    let caption = ui.tree().find(&[k("Controls"), k("log producer"), k("toggle"), k("caption")]).unwrap();
    assert_eq!(ui.tree().text(caption), Some("Resume"));
    // A press that leaves the button before release is not a click.
    let (x, y) = at;
    ui.handle(InputEvent::PointerDown { x, y, button: Button::Left });
    ui.handle(InputEvent::PointerUp { x: 5, y: 5, button: Button::Left });
    assert!(ui.component().paused(1));
    // A click on nothing interactive does nothing.
    assert!(!click(&mut ui, (3, H as i32 - 3)));
}

#[test]
fn tab_moves_focus_and_enter_activates() {
    let (mut ui, mut fb) = setup();
    let tab = |shift| InputEvent::KeyDown(KeyEvent { key: KeyCode::Tab, modifiers: Modifiers { shift, ..Modifiers::default() } });
    let path = |name: &str| [k("header"), k("tabs"), k(name)];
    assert_eq!(ui.focused(), None);
    ui.handle(tab(false));
    assert_eq!(ui.focused(), ui.tree().find(&path("Overview")));
    ui.handle(tab(false));
    assert_eq!(ui.focused(), ui.tree().find(&path("Charts")));
    // Only the two tabs' rectangles are repainted for a focus move.
    let r = frame(&mut ui, &mut fb);
    assert!(!r.viewed);
    let both = ui.tree().rect(ui.tree().find(&path("Overview")).unwrap()).unwrap()
        .union(&ui.tree().rect(ui.tree().find(&path("Charts")).unwrap()).unwrap());
    assert!(r.damage.iter().all(|d| both.contains_rect(d)), "{:?}", r.damage);
    ui.handle(tab(true));
    ui.handle(tab(true));
    assert_eq!(ui.focused(), ui.tree().find(&path("Controls")), "Shift+Tab wraps backwards");
    ui.handle(tab(false));
    ui.handle(tab(false));
    ui.handle(key(KeyCode::Enter));
    assert_eq!(ui.component().view_index(), 1, "Enter on the Charts tab");
    frame(&mut ui, &mut fb);
    ui.handle(tab(false));
    ui.handle(key(KeyCode::Space));
    assert_eq!(ui.component().view_index(), 2, "Space on the Controls tab");
    let r = frame(&mut ui, &mut fb);
    assert!(r.viewed && r.changes.removed > 0 && !r.changes.added.is_empty());
    let focus = [k("header"), k("tabs"), k("Controls")];
    assert_eq!(ui.focused(), ui.tree().find(&focus), "the focused tab keeps its identity");
    assert_eq!(fb.pixels, full_render(ui.component(), Some(&focus)).pixels);
}

#[test]
fn digit_and_arrow_keys_switch_views() {
    let (mut ui, _fb) = setup();
    ui.handle(key(KeyCode::Char('3')));
    assert_eq!(ui.component().view_index(), 2);
    ui.handle(key(KeyCode::Right));
    assert_eq!(ui.component().view_index(), 0);
    ui.handle(key(KeyCode::Left));
    assert_eq!(ui.component().view_index(), 2);
    ui.send(DashMsg::Select(1));
    assert_eq!(ui.component().view_index(), 1);
    ui.send(DashMsg::Select(7));
    assert_eq!(ui.component().view_index(), 1, "an unknown view is refused");
}

#[test]
fn hover_repaints_only_the_hovered_button() {
    let (mut ui, mut fb) = setup();
    let p = [k("header"), k("tabs"), k("Charts")];
    let (x, y) = centre(&ui, &p);
    assert!(ui.handle(InputEvent::PointerMove { x, y }));
    let r = frame(&mut ui, &mut fb);
    let rect = ui.tree().rect(ui.tree().find(&p).unwrap()).unwrap();
    assert_eq!(r.damage, vec![rect]);
    assert!(!ui.handle(InputEvent::PointerMove { x: x + 1, y }), "still the same button: nothing to do");
}

#[test]
fn charts_and_controls_goldens() {
    let (mut ui, mut fb) = setup();
    ui.handle(key(KeyCode::Char('2')));
    frame(&mut ui, &mut fb);
    common::check_golden("dashboard-charts", &fb);
    ui.handle(key(KeyCode::Char('3')));
    frame(&mut ui, &mut fb);
    // Pause the second generator, focus the third's button, hover the first's.
    let toggle = |g: &str| [k("Controls"), k(g), k("toggle")];
    let at = centre(&ui, &toggle("log producer"));
    click(&mut ui, at);
    frame(&mut ui, &mut fb);
    let id = ui.tree().find(&toggle("store writer"));
    ui.set_focus(id);
    let (x, y) = centre(&ui, &toggle("web load"));
    ui.handle(InputEvent::PointerMove { x, y });
    frame(&mut ui, &mut fb);
    common::check_golden("dashboard-controls", &fb);
}

#[test]
fn hostile_samples_and_counters_render_without_panicking() {
    let (mut ui, mut fb) = setup();
    for v in [f32::MAX, f32::MIN, f32::NAN, f32::INFINITY, -f32::INFINITY, 1e-40, -3e38] {
        for s in 0..4 {
            ui.update(|d| d.push_sample(s, v));
        }
        ui.update(|d| d.set_counter(0, u64::MAX));
        frame(&mut ui, &mut fb);
        ui.send(DashMsg::Select(1));
        frame(&mut ui, &mut fb);
        ui.send(DashMsg::Select(0));
        frame(&mut ui, &mut fb);
    }
    assert!(!ui.update_sample_out_of_range());
}

trait OutOfRange {
    fn update_sample_out_of_range(&mut self) -> bool;
}

impl OutOfRange for Ui<Dashboard> {
    /// Unknown series, counters and generators are refused, not fatal.
    fn update_sample_out_of_range(&mut self) -> bool {
        let mut any = false;
        self.update(|d| {
            any = d.push_sample(99, 1.0) | d.set_counter(99, 1) | d.paused(99);
            false
        });
        self.send(DashMsg::TogglePause(99));
        any
    }
}

#[test]
fn resizing_lays_out_and_repaints_everything() {
    let (mut ui, _fb) = setup();
    ui.resize(800, 600);
    let mut small = Framebuffer::new(800, 600, PixelFormat::Xrgb8888);
    let r = frame(&mut ui, &mut small);
    assert_eq!(r.damage, vec![Rect::new(0, 0, 800, 600)]);
    assert_eq!(ui.tree().rect(ui.tree().root().unwrap()), Some(Rect::new(0, 0, 800, 600)));
    let tabs = ui.tree().find(&[k("header"), k("tabs")]).unwrap();
    assert!(ui.tree().rect(tabs).unwrap().right() <= 800 - 16, "the header follows the new width");
}

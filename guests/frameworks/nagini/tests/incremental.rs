//! Damage tracking is exact: after any sequence of state changes and input
//! events, the frames painted incrementally (damage only) equal a full
//! repaint of the same state, pixel for pixel.
#[path = "common/fixture.rs"]
mod fixture;

use nagini::dashboard::DashMsg;
use nagini::{Button, Framebuffer, InputEvent, KeyCode, KeyEvent, Modifiers, PixelFormat, Ui};
use proptest::prelude::*;

const W: u32 = 640;
const H: u32 = 480;

#[derive(Clone, Debug)]
enum Op {
    Counter(usize, u64),
    Sample(usize, f32),
    Select(usize),
    Move(i32, i32),
    Click(i32, i32),
    Tab(bool),
    Enter,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, 0u64..2_000_000).prop_map(|(i, v)| Op::Counter(i, v)),
        (0usize..4, -10.0f32..5000.0).prop_map(|(i, v)| Op::Sample(i, v)),
        (0usize..3).prop_map(Op::Select),
        (0i32..W as i32, 0i32..H as i32).prop_map(|(x, y)| Op::Move(x, y)),
        (0i32..W as i32, 0i32..H as i32).prop_map(|(x, y)| Op::Click(x, y)),
        any::<bool>().prop_map(Op::Tab),
        Just(Op::Enter),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn damage_only_frames_equal_a_full_repaint(ops in prop::collection::vec(op(), 1..10)) {
        let mut ui = Ui::new(fixture::demo_dashboard(), W, H);
        let mut fb = Framebuffer::new(W, H, PixelFormat::Xrgb8888);
        ui.frame(&mut fb.canvas());
        for op in ops {
            match op {
                Op::Counter(i, v) => ui.update(|d| d.set_counter(i, v)),
                Op::Sample(i, v) => ui.update(|d| d.push_sample(i, v)),
                Op::Select(v) => ui.send(DashMsg::Select(v)),
                Op::Move(x, y) => {
                    ui.handle(InputEvent::PointerMove { x, y });
                }
                Op::Click(x, y) => {
                    ui.handle(InputEvent::PointerMove { x, y });
                    ui.handle(InputEvent::PointerDown { x, y, button: Button::Left });
                    ui.handle(InputEvent::PointerUp { x, y, button: Button::Left });
                }
                Op::Tab(shift) => {
                    ui.handle(InputEvent::KeyDown(KeyEvent { key: KeyCode::Tab, modifiers: Modifiers { shift, ..Modifiers::default() } }));
                }
                Op::Enter => {
                    ui.handle(InputEvent::KeyDown(KeyEvent { key: KeyCode::Enter, modifiers: Modifiers::default() }));
                }
            }
            ui.frame(&mut fb.canvas());
        }
        let mut fresh = Framebuffer::new(W, H, PixelFormat::Xrgb8888);
        ui.invalidate();
        ui.frame(&mut fresh.canvas());
        prop_assert!(fb.pixels == fresh.pixels, "incremental frames differ from a full repaint");
    }
}

//! Frame costs of the dashboard at 1024x768 on the host.
//!
//! `frames SCENARIO N` sets up the demo dashboard, renders the first (full)
//! frame, then renders N frames of SCENARIO and prints the wall time per
//! frame (p50, p99) and the pixels repainted. Under callgrind or DHAT the
//! difference between runs with N+1 and 1 frames gives instructions and
//! allocations per frame (`bench/callgrind.sh`).
//!
//! Scenarios:
//! * `counter`: one counter changes (view, diff, repaint of its value only);
//! * `counter-full`: the same update, but the whole screen repainted (what a
//!   renderer without damage tracking does);
//! * `full`: a full repaint without any state change (raster cost only);
//! * `sample`: a new sample in one series (its chart panel repaints);
//! * `switch`: the view alternates between Overview and Charts (a new
//!   subtree, layout and a full repaint);
//! * `hover`: the pointer alternates between two tabs (no view, two small
//!   rectangles);
//! * `idle`: nothing changed.
#[path = "../tests/common/fixture.rs"]
mod fixture;

use fixture::{demo_dashboard, H, W};
use nagini::dashboard::DashMsg;
use nagini::{Dashboard, Framebuffer, InputEvent, Key, PixelFormat, Ui};
use std::time::Instant;

fn tab_centre(ui: &Ui<Dashboard>, name: &str) -> (i32, i32) {
    let id = ui.tree().find(&[Key::from("header"), Key::from("tabs"), Key::from(name)]).expect("tab");
    let r = ui.tree().rect(id).expect("rect");
    (r.x + r.w / 2, r.y + r.h / 2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args.get(1).map(String::as_str).unwrap_or("counter");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut ui = Ui::new(demo_dashboard(), W, H);
    let mut fb = Framebuffer::new(W, H, PixelFormat::Xrgb8888);
    ui.frame(&mut fb.canvas());
    let a = tab_centre(&ui, "Charts");
    let b = tab_centre(&ui, "Controls");
    let mut times = Vec::with_capacity(n as usize);
    let mut pixels = 0u64;
    let mut rects = 0usize;
    for i in 0..n {
        let t0 = Instant::now();
        match scenario {
            "counter" => ui.update(|d| d.set_counter(0, 200_000 + i)),
            "counter-full" => {
                ui.update(|d| d.set_counter(0, 200_000 + i));
                ui.invalidate();
            }
            "full" => ui.invalidate(),
            "sample" => ui.update(|d| d.push_sample(0, 2000.0 + (i % 97) as f32 * 3.0)),
            "switch" => ui.send(DashMsg::Select((i % 2 + 1) as usize % 2)),
            "hover" => {
                let (x, y) = if i % 2 == 0 { a } else { b };
                ui.handle(InputEvent::PointerMove { x, y });
            }
            "idle" => {}
            other => {
                eprintln!("unknown scenario {other}: counter | counter-full | full | sample | switch | hover | idle");
                std::process::exit(2);
            }
        }
        let r = ui.frame(&mut fb.canvas());
        pixels += r.pixels;
        rects += r.damage.len();
        times.push(t0.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    let pct = |p: f64| times.get(((times.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    println!(
        "{scenario:<13} frames {n:>6}  p50 {:>9} ns  p99 {:>9} ns  pixels/frame {:>8}  rects/frame {:.2}  glyphs rasterized {}",
        pct(0.5),
        pct(0.99),
        pixels / n.max(1),
        rects as f64 / n.max(1) as f64,
        ui.text().rasterized()
    );
}

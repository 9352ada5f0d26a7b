//! Criterion: wall time of a dashboard frame at 1024x768, full repaint vs a
//! counter update repainted through damage tracking.
//! `cargo bench -p nagini --bench frame`
#[path = "../tests/common/fixture.rs"]
mod fixture;

use criterion::{criterion_group, criterion_main, Criterion};
use fixture::{demo_dashboard, H, W};
use nagini::{Framebuffer, PixelFormat, Ui};

fn frames(c: &mut Criterion) {
    let mut ui = Ui::new(demo_dashboard(), W, H);
    let mut fb = Framebuffer::new(W, H, PixelFormat::Xrgb8888);
    ui.frame(&mut fb.canvas());
    let mut i = 0u64;
    c.bench_function("dashboard full repaint", |b| {
        b.iter(|| {
            ui.invalidate();
            ui.frame(&mut fb.canvas()).pixels
        })
    });
    c.bench_function("dashboard counter update (damage only)", |b| {
        b.iter(|| {
            i += 1;
            ui.update(|d| d.set_counter(0, 200_000 + i % 100_000));
            ui.frame(&mut fb.canvas()).pixels
        })
    });
    c.bench_function("dashboard counter update (full repaint)", |b| {
        b.iter(|| {
            i += 1;
            ui.update(|d| d.set_counter(0, 200_000 + i % 100_000));
            ui.invalidate();
            ui.frame(&mut fb.canvas()).pixels
        })
    });
}

criterion_group!(benches, frames);
criterion_main!(benches);

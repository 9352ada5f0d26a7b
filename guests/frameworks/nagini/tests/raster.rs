//! The rasterizer and text on their own: goldens of primitives, clipping,
//! strides and pixel formats.
mod common;

use nagini::{Canvas, CanvasError, Color, Framebuffer, PixelFormat, Rect, TextEngine};

fn primitives(fb: &mut Framebuffer) {
    let mut text = TextEngine::new();
    let mut c = fb.canvas();
    c.clear(Color::hex(0x101820));
    c.fill_rect(Rect::new(10, 10, 60, 40), Color::hex(0x3b82f6));
    c.fill_rect(Rect::new(40, 30, 60, 40), Color::rgba(255, 80, 80, 128));
    c.fill_rounded_rect(Rect::new(120, 10, 100, 60), 14.0, Color::hex(0x22c55e));
    c.stroke_rounded_rect(Rect::new(240, 10, 100, 60), 14.0, 3.0, Color::hex(0xfacc15));
    c.line(10.5, 120.5, 150.0, 90.0, 2.0, Color::WHITE);
    c.line(10.0, 140.0, 150.0, 140.0, 1.0, Color::hex(0xf97316));
    for x in 180..340 {
        let y = 130.0 + 20.0 * libm_sin(x as f32 / 12.0);
        c.fill_column(x, y, 170, Color::rgba(56, 189, 248, 100));
    }
    text.draw(&mut c, 10, 180, "Nagini: Hello, 0123456789 ÄÖÜ", 20, Color::WHITE);
    text.draw(&mut c, 10, 210, "small text 12px — glyphs cached", 12, Color::hex(0x94a3b8));
}

fn libm_sin(x: f32) -> f32 {
    x.sin()
}

#[test]
fn primitives_golden() {
    let mut fb = Framebuffer::new(360, 240, PixelFormat::Xrgb8888);
    primitives(&mut fb);
    common::check_golden("primitives", &fb);
}

#[test]
fn formats_and_stride_render_the_same_colours() {
    let mut a = Framebuffer::new(360, 240, PixelFormat::Xrgb8888);
    let mut b = Framebuffer::with_stride(360, 240, 400, PixelFormat::Xbgr8888);
    primitives(&mut a);
    primitives(&mut b);
    assert_eq!(a.to_rgb(), b.to_rgb());
    // Xrgb8888 is B,G,R,X in memory; Xbgr8888 is R,G,B,X.
    let x = a.pixels[20 * 360 + 20].to_le_bytes();
    let y = b.pixels[20 * 400 + 20].to_le_bytes();
    assert_eq!(x, [0xf6, 0x82, 0x3b, 0xff]);
    assert_eq!(y, [0x3b, 0x82, 0xf6, 0xff]);
    // The padding past the width is never written.
    assert!((0..240).all(|r| b.pixels[r * 400 + 360..r * 400 + 400].iter().all(|&p| p == 0xff00_0000)));
}

#[test]
fn drawing_never_leaves_the_clip() {
    let mut fb = Framebuffer::new(200, 100, PixelFormat::Xrgb8888);
    let mut text = TextEngine::new();
    let clip = Rect::new(50, 20, 60, 30);
    {
        let mut c = fb.canvas();
        c.set_clip(clip);
        c.fill_rect(Rect::new(-100, -100, 1000, 1000), Color::WHITE);
        c.fill_rounded_rect(Rect::new(0, 0, 200, 100), 30.0, Color::hex(0xff0000));
        c.line(-50.0, -50.0, 500.0, 300.0, 9.0, Color::hex(0x00ff00));
        text.draw(&mut c, 0, 0, "WWWWWWWWWWWWWWWWWWWWWWWWW", 40, Color::hex(0x0000ff));
        c.fill_column(60, -5.0, 500, Color::hex(0x00ffff));
    }
    for y in 0..100 {
        for x in 0..200 {
            if !clip.contains(x, y) {
                assert_eq!(fb.pixel(x, y), Some(Color::BLACK), "pixel {x},{y} outside the clip was written");
            }
        }
    }
    assert_ne!(fb.pixel(55, 25), Some(Color::BLACK));
}

#[test]
fn canvas_checks_its_buffer() {
    let mut buf = vec![0u32; 100];
    assert_eq!(Canvas::new(&mut buf, 10, 10, 9, PixelFormat::Xrgb8888).err(), Some(CanvasError::StrideTooSmall));
    assert_eq!(Canvas::new(&mut buf, 10, 11, 10, PixelFormat::Xrgb8888).err(), Some(CanvasError::BufferTooSmall));
    assert_eq!(Canvas::new(&mut buf, 20000, 0, 20000, PixelFormat::Xrgb8888).err(), Some(CanvasError::TooLarge));
    // The last row needs only `width` words, not a whole stride.
    let mut buf = vec![0u32; 12 * 9 + 10];
    assert!(Canvas::new(&mut buf, 10, 10, 12, PixelFormat::Xrgb8888).is_ok());
}

#[test]
fn text_is_measured_and_cached() {
    let mut t = TextEngine::new();
    assert!(t.has_font(), "the shipped DejaVu Sans must parse");
    let m = t.metrics(16);
    assert!(m.height >= 16 && m.height <= 22 && m.ascent > 0 && m.ascent < m.height, "{m:?}");
    // Tabular digits: any two numbers of the same length measure the same.
    assert_eq!(t.measure("1234", 16), t.measure("9870", 16));
    assert!(t.measure("WWW", 16) > t.measure("iii", 16));
    assert_eq!(t.measure("", 16), 0);
    let mut fb = Framebuffer::new(100, 30, PixelFormat::Xrgb8888);
    t.measure("cab", 16);
    let before = t.rasterized();
    t.draw(&mut fb.canvas(), 0, 0, "abcabc", 16, Color::WHITE);
    assert_eq!(t.rasterized() - before, 0, "measure already cached a, b, c");
    t.draw(&mut fb.canvas(), 0, 0, "xyz", 16, Color::WHITE);
    assert_eq!(t.rasterized() - before, 3);
    t.draw(&mut fb.canvas(), 0, 0, "zyx", 16, Color::WHITE);
    assert_eq!(t.rasterized() - before, 3, "second use hits the cache");
}

#[test]
fn hostile_coordinates_are_clipped_not_fatal() {
    let mut fb = Framebuffer::new(64, 64, PixelFormat::Xrgb8888);
    let mut c = fb.canvas();
    for v in [f32::NAN, f32::INFINITY, -f32::INFINITY, 3e38, -3e38, 1e9] {
        c.line(v, 0.0, 10.0, v, 2.0, Color::WHITE);
        c.line(0.0, 0.0, v, 10.0, v, Color::WHITE);
        c.fill_column(5, v, 64, Color::WHITE);
        c.fill_rounded_rect(Rect::new(i32::MIN, i32::MIN, i32::MAX, i32::MAX), v, Color::WHITE);
        c.stroke_rounded_rect(Rect::new(i32::MAX - 5, 0, i32::MAX, 10), 3.0, v, Color::WHITE);
    }
    c.fill_rect(Rect::new(i32::MIN, i32::MIN, i32::MAX, i32::MAX), Color::WHITE);
}

#[test]
fn text_partly_off_the_left_and_top_edges() {
    let mut fb = Framebuffer::new(40, 20, PixelFormat::Xrgb8888);
    let mut t = TextEngine::new();
    t.draw(&mut fb.canvas(), -7, -5, "Wg", 24, Color::WHITE);
    assert!((0..20).any(|y| (0..40).any(|x| fb.pixel(x, y) != Some(Color::BLACK))));
}

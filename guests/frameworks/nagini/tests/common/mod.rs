//! Golden-image comparison for the render tests.
//!
//! `check_golden(name, fb)` compares `fb` with `tests/golden/NAME.png`: each
//! channel of each pixel may differ by at most `TOLERANCE`. On a mismatch it
//! writes the rendered image and a diff image (differing pixels red over a
//! dimmed copy) to `$CARGO_TARGET_TMPDIR/nagini-golden/` and fails with
//! their paths. `NAGINI_BLESS=1 cargo test -p nagini` (re)writes the goldens
//! instead; review them with `git diff --stat` and an image viewer.
#![allow(dead_code)]

use nagini::Framebuffer;
use std::path::PathBuf;

/// Largest per-channel difference accepted (rounding differences of
/// floating-point coverage between compilers or libm versions).
pub const TOLERANCE: u8 = 3;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.png"))
}

pub fn write_png(path: &std::path::Path, w: u32, h: u32, rgb: &[u8]) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    let mut wr = enc.write_header().expect("png header");
    wr.write_image_data(rgb).expect("png data");
}

pub fn read_png(path: &std::path::Path) -> Option<(u32, u32, Vec<u8>)> {
    let file = std::fs::File::open(path).ok()?;
    let dec = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = dec.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).ok()?;
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        other => panic!("{}: unsupported PNG colour type {other:?}", path.display()),
    };
    Some((info.width, info.height, rgb))
}

pub fn check_golden(name: &str, fb: &Framebuffer) {
    let rgb = fb.to_rgb();
    let path = golden_path(name);
    if std::env::var_os("NAGINI_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_png(&path, fb.width, fb.height, &rgb);
        eprintln!("blessed {}", path.display());
        return;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nagini-golden");
    std::fs::create_dir_all(&out).unwrap();
    let actual = out.join(format!("{name}.actual.png"));
    let Some((w, h, want)) = read_png(&path) else {
        write_png(&actual, fb.width, fb.height, &rgb);
        panic!(
            "golden {} is missing; rendered image written to {}; bless with NAGINI_BLESS=1 cargo test -p nagini",
            path.display(),
            actual.display()
        );
    };
    assert_eq!((w, h), (fb.width, fb.height), "golden {} has another size", path.display());
    let mut bad = 0usize;
    let mut worst = 0u8;
    let mut diff = Vec::with_capacity(rgb.len());
    for (a, b) in rgb.chunks(3).zip(want.chunks(3)) {
        let d = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        worst = worst.max(d);
        if d > TOLERANCE {
            bad += 1;
            diff.extend_from_slice(&[255, 0, 0]);
        } else {
            diff.extend(a.iter().map(|v| v / 3));
        }
    }
    if bad > 0 {
        let diff_path = out.join(format!("{name}.diff.png"));
        write_png(&actual, w, h, &rgb);
        write_png(&diff_path, w, h, &diff);
        panic!(
            "{name}: {bad} pixels differ from {} by more than {TOLERANCE} (worst {worst}); \
             rendered {} and diff {} (red = differs). If the change is intended: NAGINI_BLESS=1 cargo test -p nagini",
            path.display(),
            actual.display(),
            diff_path.display()
        );
    }
}

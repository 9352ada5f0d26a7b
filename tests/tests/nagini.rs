//! The Nagini dashboard on a real (emulated) display: `tests/systems/
//! dashboard.toml` boots under QEMU with its virtio-gpu, keyboard and
//! tablet; the test drives it through QMP (a Unix socket of its own)
//! exactly as `hallows screenshot` and `hallows input` do:
//!
//! 1. the overview matches `tests/golden/nagini/overview.png` outside the
//!    masked live regions (counter values, chart panels), and its charts
//!    move;
//! 2. key `3` switches to the Controls view (`controls.png`: no live
//!    numbers, nothing masked);
//! 3. a click on the first Pause button pauses the web load generator:
//!    the screen shows it (`controls-paused.png`), the generator's
//!    partition prints that it paused, and back on the overview (key `1`)
//!    its request counter stands still while another's moves.
//!
//! `dashboard_reports_frame_pacing_and_exits` boots
//! `dashboard-frames-damage-on.toml`: 600 frames, the report line, exit 0.
//!
//! Goldens: a pixel differs when a channel is off by more than
//! [`CHANNEL_TOLERANCE`]; at most [`PIXEL_TOLERANCE`] of the unmasked
//! pixels may differ. `NAGINI_BLESS=1` rewrites the goldens from this run
//! (then look at them). Failed comparisons leave the screenshot under
//! `target/nagini-test/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hallows::qmp::{Image, Qmp};
use hallows_tests::{root, start_system_edited};

/// How long the dashboard may take to show a screen (boot included).
const SCREEN_WAIT: Duration = Duration::from_secs(180);
const CHANNEL_TOLERANCE: u8 = 24;
const PIXEL_TOLERANCE: f64 = 0.002;

/// A masked rectangle: x, y, width, height.
type Mask = (u32, u32, u32, u32);

/// The overview's live regions: the four counter values, and the chart
/// panels (their samples and their titles' latest values).
const OVERVIEW_MASKS: &[Mask] = &[(16, 86, 992, 44), (16, 143, 992, 586)];
/// The web load counter's value; the log producer's.
const WEB_COUNTER: Mask = (28, 90, 220, 36);
const LOG_COUNTER: Mask = (279, 90, 220, 36);
/// The chart panels.
const CHARTS: Mask = (16, 143, 992, 586);
/// The first generator's Pause button (Controls view).
const PAUSE_WEB: (u32, u32) = (940, 88);

fn golden(name: &str) -> PathBuf {
    root().join("tests/golden/nagini").join(format!("{name}.png"))
}

fn masked(masks: &[Mask], x: u32, y: u32) -> bool {
    masks.iter().any(|&(mx, my, w, h)| x >= mx && x < mx + w && y >= my && y < my + h)
}

/// Pixels (outside `masks`) that differ beyond the channel tolerance, and
/// the pixels compared. Images of different sizes differ everywhere (QEMU
/// shows a 640x480 console until the guest sets its scanout).
fn differing(a: &Image, b: &Image, masks: &[Mask]) -> (u64, u64) {
    if (a.width, a.height) != (b.width, b.height) {
        return (1, 1);
    }
    let (mut diff, mut total) = (0, 0);
    for y in 0..a.height {
        for x in 0..a.width {
            if masked(masks, x, y) {
                continue;
            }
            total += 1;
            let (p, q) = (a.pixel(x, y), b.pixel(x, y));
            if p.iter().zip(q).any(|(&u, v)| u.abs_diff(v) > CHANNEL_TOLERANCE) {
                diff += 1;
            }
        }
    }
    (diff, total)
}

/// Whether region `r` of two screenshots is the same.
fn same_region(a: &Image, b: &Image, r: Mask) -> bool {
    (a.width, a.height) == (b.width, b.height)
        && (r.1..r.1 + r.3).all(|y| (r.0..r.0 + r.2).all(|x| a.pixel(x, y) == b.pixel(x, y)))
}

/// Waits until the screen matches golden `name` outside `masks` (or, when
/// blessing, until it holds still outside them), and returns it.
fn wait_for_screen(q: &mut Qmp, name: &str, masks: &[Mask]) -> Image {
    let bless = std::env::var_os("NAGINI_BLESS").is_some();
    let want = (!bless).then(|| Image::read_png(&golden(name)).unwrap_or_else(|e| panic!("{e:#} (NAGINI_BLESS=1 creates it)")));
    if bless {
        // Let the input that led here land before the screen is taken.
        std::thread::sleep(Duration::from_secs(5));
    }
    let start = Instant::now();
    let mut last: Option<Image> = None;
    let mut worst = 0.0;
    while start.elapsed() < SCREEN_WAIT {
        let shot = q.screenshot().expect("screendump");
        match &want {
            Some(w) => {
                let (d, n) = differing(&shot, w, masks);
                let frac = d as f64 / n.max(1) as f64;
                if frac <= PIXEL_TOLERANCE {
                    return shot;
                }
                worst = frac;
            }
            None => {
                if let Some(prev) = &last {
                    if differing(&shot, prev, masks).0 == 0 && shot.rgb.iter().any(|&c| c != 0) {
                        std::fs::create_dir_all(golden(name).parent().unwrap()).unwrap();
                        shot.write_png(&golden(name)).unwrap();
                        eprintln!("blessed {}", golden(name).display());
                        return shot;
                    }
                }
            }
        }
        last = Some(shot);
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = root().join("target/nagini-test");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join(format!("{name}.png"));
    if let Some(s) = &last {
        s.write_png(&file).unwrap();
    }
    panic!(
        "the screen did not match {} within {SCREEN_WAIT:?}: {:.2}% of the unmasked pixels differ (tolerance {:.2}%); last screenshot: {}",
        golden(name).display(),
        worst * 100.0,
        PIXEL_TOLERANCE * 100.0,
        file.display()
    );
}

#[test]
fn dashboard_shows_live_data_and_answers_keys_and_clicks() {
    let sock = root().join(format!("target/hallows/qmp/nagini-test-{}.sock", std::process::id()));
    let s = sock.clone();
    let mut run = start_system_edited("dashboard", &[], &move |sys| sys.display_host.qmp = Some(s.clone()));
    let size = run.system.partitions.iter().find_map(|p| p.display.as_ref()).map(|d| (d.width, d.height)).expect("a display");
    let mut q = Qmp::connect(&sock, size, Duration::from_secs(120)).unwrap_or_else(|e| {
        let b = run.stop();
        panic!("{e:#}\n{}", b.output)
    });

    // 1. The overview, and its charts move.
    let first = wait_for_screen(&mut q, "overview", OVERVIEW_MASKS);
    let moved = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(500));
        !same_region(&first, &q.screenshot().expect("screendump"), CHARTS)
    });
    assert!(moved, "the charts did not change in 30 s: no live data reached the dashboard");

    // 2. Key 3: the Controls view.
    q.key("3").expect("key 3");
    wait_for_screen(&mut q, "controls", &[]);

    // 3. Click Pause on the web load generator.
    q.click(PAUSE_WEB.0, PAUSE_WEB.1).expect("click");
    wait_for_screen(&mut q, "controls-paused", &[]);
    // Back to the overview: web load's counter stands still, log producer's moves.
    q.key("1").expect("key 1");
    let a = wait_for_screen(&mut q, "overview", OVERVIEW_MASKS);
    // Let a pause that was in flight land, then compare a second apart.
    std::thread::sleep(Duration::from_secs(2));
    let a2 = q.screenshot().expect("screendump");
    let _ = a;
    let log_moved = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(500));
        !same_region(&a2, &q.screenshot().expect("screendump"), LOG_COUNTER)
    });
    let b = q.screenshot().expect("screendump");
    let web_still = same_region(&a2, &b, WEB_COUNTER);
    let boot = run.stop();
    assert!(log_moved, "the log producer's counter did not move:\n{}", boot.output);
    assert!(web_still, "the paused web load counter still moved:\n{}", boot.output);
    assert!(boot.output.contains("metrics-source: source 0 paused"), "the click did not reach the generator:\n{}", boot.output);
    assert!(boot.output.contains("dashboard: serving at 60 Hz"), "{}", boot.output);
    assert!(!boot.output.contains("panicked") && !boot.output.contains("faulted"), "{}", boot.output);
    // Stopped by the test, not ended by a partition.
    assert!(boot.status.is_none(), "the machine ended by itself (status {:?}):\n{}", boot.status, boot.output);
    boot.assert_no_uncontained();
    let _ = std::fs::remove_file(Path::new(&sock));
}

/// The frame-pacing report: the dashboard draws 600 frames at 60 Hz (with
/// the source publishing), prints its frame-time line and exits 0; the
/// figures are measured (docs/nagini.md), not asserted.
#[test]
fn dashboard_reports_frame_pacing_and_exits() {
    let b = hallows_tests::boot_system("dashboard-frames-damage-on");
    let report = b.lines_of("dashboard").into_iter().find(|l| l.contains("dashboard: frames 600: frame time p50")).map(str::to_owned);
    let report = report.unwrap_or_else(|| panic!("no frame report:\n{}", b.output));
    assert!(report.contains(" over 600 frames (") && report.contains("missed ") && report.contains("at 60 Hz"), "{report}");
    assert!(b.output.contains("dashboard: done after 600 frames"), "{}", b.output);
    assert!(b.output.contains("metrics-source: 100 ticks, 0 refused controls"), "{}", b.output);
    b.assert_status(0);
}

//! The dashboard partition: Nagini's [`Dashboard`] on the partition's own
//! display (virtio-gpu), keyboard and pointer (virtio-input), fed over
//! ring channels by other partitions (`dashboard.pt`):
//!
//! * "metrics" (receive): each source's request total and rate: a chart
//!   sample and a counter per source.
//! * "control" (send): the user's Pause/Resume of a source.
//! * "input" (the spec's Nagini `input_channel`): the partition drains its
//!   virtio-input devices into a ring of its own
//!   ([`hallows_rt::channel::Loopback`]), so the generated loop offers
//!   input to the `ui` policy as input-class work (EDF, 2 ms deadline,
//!   before frames).
//! * the frame handler `render`, once per 16.67 ms frame (60 Hz) with the
//!   frame's deadline: renders only what changed (Nagini's damage) and
//!   flushes only the damaged rectangles to the display.
//!
//! Frame pacing is measured here: each frame's handler time, frames that
//! finished after their deadline and frames skipped because a turn came
//! late are counted, and every `report=N` frames (boot argument, default
//! 600) a line gives p50/p99/max frame time and the misses. With
//! `frames=N` the partition exits 0 after N frames (for measurements).
//! `sources=A,B,C` names the sources (default: the three of the metrics
//! source test guest; at most 8; `_` shows as a space), each a chart
//! series `NAME/s` and a counter `NAME total`; `generators=X,Y` names the Pause/Resume buttons, whose clicks
//! go out on "control" as sources 0, 1, ... (default: one per source;
//! `generators=` none). `title=T` is the dashboard's title.
//! `damage=off` repaints and flushes the whole screen every frame that
//! changed anything (the baseline for the damage-tracking measurement).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;

use hallows_ring::{Message, Receiver, Sender};
use hallows_rt::channel::{Endpoint, Loopback};
use hallows_rt::display::{Gpu, Inputs, Rect};
use hallows_rt::{println, time, Boot};
use nagini::dashboard::Action;
use nagini::input::EvdevDecoder;
use nagini::{Canvas, Dashboard, PixelFormat, Ui};
use spec::Port as _;

hallows_rt::entry!(main);

/// Generated from `dashboard.pt` by the build script.
#[allow(dead_code)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/dashboard.rs"));
}

/// The sources the dashboard shows without `sources=` (the metrics
/// source test guest's).
const SOURCES: [&str; 3] = ["web load", "log producer", "store writer"];
/// Sources at most.
const MAX_SOURCES: usize = 8;

/// A channel end: one of the system's (by manifest name) or the
/// partition's own input ring.
enum End<E> {
    Chan(Endpoint<E>),
    Local(E),
}

impl<T: Message> spec::Port<Sender<T>> for End<Sender<T>> {
    fn port(&mut self) -> &mut Sender<T> {
        match self {
            End::Chan(e) => e,
            End::Local(e) => e,
        }
    }
    fn committed(&mut self) {
        if let End::Chan(e) = self {
            e.flush();
        }
    }
}

impl<T: Message> spec::Port<Receiver<T>> for End<Receiver<T>> {
    fn port(&mut self) -> &mut Receiver<T> {
        match self {
            End::Chan(e) => e,
            End::Local(e) => e,
        }
    }
}

/// The service's channels: the system's, plus "input" from the loopback.
struct Channels {
    boot: Boot,
    input: RefCell<Loopback>,
}

impl spec::Endpoints for Channels {
    type Sender<T: Message> = End<Sender<T>>;
    type Receiver<T: Message> = End<Receiver<T>>;
    fn sender<T: Message>(&self, channel: &str) -> Option<End<Sender<T>>> {
        hallows_rt::channel::sender::<T>(&self.boot, channel).ok().map(End::Chan)
    }
    fn receiver<T: Message>(&self, channel: &str) -> Option<End<Receiver<T>>> {
        if channel == "input" {
            return self.input.borrow_mut().receiver::<T>().map(End::Local);
        }
        hallows_rt::channel::receiver::<T>(&self.boot, channel).ok().map(End::Chan)
    }
    fn layout_hash(&self, channel: &str) -> u64 {
        if channel == "input" {
            return 0;
        }
        hallows_rt::channel::layout_hash(&self.boot, channel)
    }
}

/// Frame pacing figures.
#[derive(Default)]
struct Pacing {
    /// Handler time of each frame since the last report, nanoseconds.
    times: Vec<u64>,
    frames: u64,
    drawn: u64,
    /// Frames that finished after their deadline.
    late: u64,
    /// Frames never started: the loop came back after their period.
    skipped: u64,
    last_index: Option<u64>,
    pixels: u64,
    rects: u64,
    /// Handler time of the drawn frames since the last report, ns.
    drawn_ns: u64,
}

struct Screen {
    ui: Ui<Dashboard>,
    gpu: Gpu,
    decoder: EvdevDecoder,
    damage: bool,
    actions: Vec<Action>,
    rects: Vec<Rect>,
    pacing: Pacing,
    report_every: u64,
    /// Metrics messages naming no source (another partition's mistake).
    bad_metrics: u64,
    /// Sources shown; the counter after theirs shows missed frames.
    sources: usize,
    failed: Option<hallows_rt::display::DisplayError>,
}

impl Screen {
    fn report(&mut self) {
        let p = &mut self.pacing;
        let n = p.times.len();
        if n == 0 {
            return;
        }
        p.times.sort_unstable();
        let pct = |q: usize| p.times[((n * q).div_ceil(100)).clamp(1, n) - 1];
        println!(
            "dashboard: frames {}: frame time p50 {} us p99 {} us max {} us over {} frames ({} drawn, {} ns mean per drawn frame); missed {} (late {}, skipped {}) at {} Hz; flushed {} rects, {} pixels",
            p.frames,
            pct(50) / 1000,
            pct(99) / 1000,
            p.times[n - 1] / 1000,
            n,
            p.drawn,
            p.drawn_ns / p.drawn.max(1),
            p.late + p.skipped,
            p.late,
            p.skipped,
            1_000_000_000 / spec::FRAME_PERIOD,
            p.rects,
            p.pixels
        );
        p.times.clear();
        p.drawn = 0;
        p.drawn_ns = 0;
        p.rects = 0;
        p.pixels = 0;
    }
}

impl spec::Handlers for Screen {
    type Endpoints = Channels;

    fn on_input(&mut self, message: spec::InputEvent, _send: &mut spec::Senders<Channels>) {
        if let Some(ev) = self.decoder.feed(message.kind, message.code, message.value) {
            self.ui.handle(ev);
        }
    }

    fn on_metrics(&mut self, message: spec::Metrics, _send: &mut spec::Senders<Channels>) {
        let i = message.source as usize;
        if i >= self.sources {
            self.bad_metrics += 1;
            return;
        }
        self.ui.update(|d| {
            d.push_sample(i, message.rate as f32);
            d.set_counter(i, message.requests);
            true
        });
    }

    fn render(&mut self, frame: spec::Frame, send: &mut spec::Senders<Channels>) {
        let start = time::now_nanos();
        let p = &mut self.pacing;
        if let Some(last) = p.last_index {
            p.skipped += frame.index.saturating_sub(last + 1);
        }
        p.last_index = Some(frame.index);
        // The user's Pause/Resume clicks go to their source.
        self.ui.update(|d| {
            d.take_actions(&mut self.actions);
            false
        });
        for a in self.actions.drain(..) {
            let Action::SetPaused { generator, paused } = a;
            let _ = send.control.port().try_send(&spec::Control::new(generator as u32, paused.into()));
        }
        let missed = self.pacing.late + self.pacing.skipped;
        let missed_counter = self.sources;
        if self.ui.component().counters().get(missed_counter).is_some_and(|c| c.value != missed) {
            self.ui.update(|d| d.set_counter(missed_counter, missed));
        }
        let drew = self.ui.needs_frame() && self.failed.is_none();
        if drew {
            if !self.damage {
                self.ui.invalidate();
            }
            let (w, h) = (self.gpu.width(), self.gpu.height());
            let report = match Canvas::new(self.gpu.framebuffer(), w, h, w as usize, PixelFormat::Xrgb8888) {
                Ok(mut canvas) => self.ui.frame(&mut canvas),
                Err(e) => panic!("the framebuffer does not fit a canvas: {e:?}"),
            };
            self.rects.clear();
            self.rects.extend(report.damage.iter().filter(|r| r.w > 0 && r.h > 0).map(|r| Rect {
                x: r.x.max(0) as u32,
                y: r.y.max(0) as u32,
                width: r.w as u32,
                height: r.h as u32,
            }));
            if let Err(e) = self.gpu.flush(&self.rects) {
                println!("dashboard: display failed: {e}");
                self.failed = Some(e);
            }
            self.pacing.drawn += 1;
            self.pacing.rects += self.rects.len() as u64;
            self.pacing.pixels += self.rects.iter().map(|r| r.width as u64 * r.height as u64).sum::<u64>();
        }
        let end = time::now_nanos();
        let p = &mut self.pacing;
        if drew {
            p.drawn_ns += end - start;
        }
        if end > frame.deadline {
            p.late += 1;
        }
        p.times.push(end - start);
        p.frames += 1;
        if p.frames.is_multiple_of(self.report_every) {
            self.report();
        }
    }
}

/// One loop on the partition's core, outside the executor (Nagini's UI
/// is not `Send`): drain input, turn the service, sleep (`wfi`) on a 1 ms
/// periodic tick until the next frame or poll.
fn main(boot: &Boot) -> u64 {
    let boot = boot.clone();
    let gpu = match Gpu::open(&boot) {
        Ok(g) => g,
        Err(e) => {
            println!("dashboard: {e}");
            return 2;
        }
    };
    let mut inputs = Inputs::open(&boot);
    let (w, h) = (gpu.width(), gpu.height());
    let [ax, ay] = inputs.abs_max();
    let mut decoder = EvdevDecoder::new(w, h, ax.max(1));
    decoder.set_abs_max(1, ay.max(1));
    println!("dashboard: display {w}x{h}, {} input devices, pointer axes 0..={ax} x 0..={ay}", inputs.len());

    let names = |arg: Option<&str>, default: &[&str]| -> Vec<alloc::string::String> {
        match arg {
            Some(list) => list.split(',').filter(|s| !s.is_empty()).take(MAX_SOURCES).map(|s| s.replace('_', " ")).collect(),
            None => default.iter().map(|s| alloc::string::String::from(*s)).collect(),
        }
    };
    let sources = names(boot.arg("sources"), &SOURCES);
    let source_refs: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
    let generators = names(boot.arg("generators"), &source_refs);
    let mut d = Dashboard::new(boot.arg("title").unwrap_or("RustHallows").replace('_', " "));
    // Boot arguments are split at spaces: `_` in a name is shown as one.
    let (per_second, total) = if boot.arg("sources").is_some() { ("/s", " total") } else { (" req/s", " requests") };
    for name in &sources {
        d.add_series(alloc::format!("{name}{per_second}"), 120);
    }
    for name in &sources {
        d.add_counter(alloc::format!("{name}{total}"));
    }
    d.add_counter("missed frames");
    for name in &generators {
        d.add_generator(name);
    }
    let Some(mut ring) = Loopback::new::<spec::InputEvent>(256) else {
        println!("dashboard: no memory for the input ring");
        return 3;
    };
    let Some(mut input_tx) = ring.sender::<spec::InputEvent>() else {
        println!("dashboard: the input ring refused its sender");
        return 3;
    };
    let report_every = boot.arg("report").and_then(|s| s.parse().ok()).unwrap_or(600u64).max(1);
    let frames: Option<u64> = boot.arg("frames").and_then(|s| s.parse().ok());
    let screen = Screen {
        ui: Ui::new(d, w, h),
        gpu,
        decoder,
        damage: boot.arg("damage") != Some("off"),
        actions: Vec::new(),
        rects: Vec::new(),
        pacing: Pacing::default(),
        report_every,
        bad_metrics: 0,
        sources: sources.len(),
        failed: None,
    };
    let channels = Channels { boot: boot.clone(), input: RefCell::new(ring) };
    let mut svc = match spec::Service::connect(screen, &channels) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    println!("dashboard: serving at {} Hz", 1_000_000_000 / spec::FRAME_PERIOD);
    let poll = Duration::from_millis(1);
    time::set_periodic(Some(poll));
    let mut lost_input = 0u64;
    loop {
        // The devices' events into the input channel (a full ring drops
        // them: the loop is far behind, and the count says so).
        inputs.poll(64, |e| {
            if input_tx.try_send(&spec::InputEvent::new(e.kind, e.code, e.value)).is_err() {
                lost_input += 1;
            }
        });
        let now = time::now_nanos();
        svc.turn(now);
        if svc.handlers.failed.is_some() {
            return 4;
        }
        if frames.is_some_and(|n| svc.handlers.pacing.frames >= n) {
            svc.handlers.report();
            println!(
                "dashboard: done after {} frames, {} missed, {} input events dropped, {} bad metrics",
                svc.handlers.pacing.frames,
                svc.handlers.pacing.late + svc.handlers.pacing.skipped,
                lost_input,
                svc.handlers.bad_metrics
            );
            return 0;
        }
        // Until the next frame starts, or 1 ms for input and metrics.
        let next_frame = Duration::from_nanos((now / spec::FRAME_PERIOD + 1) * spec::FRAME_PERIOD);
        let wake = next_frame.min(Duration::from_nanos(now) + poll);
        while time::now() < wake {
            time::wait_for_interrupt();
        }
    }
}

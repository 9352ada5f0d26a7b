//! Host runner of the scheduler study (`make sim`): evaluates the experiments
//! of `hallows_sim::experiments` on all host cores, writes one CSV per table
//! and one SVG plot per figure under `--out` (default `target/sim`), and
//! prints a summary table. Parallelism never changes output: points are
//! independent and results are stored by index.
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hallows_sim::experiments::{self as exp, Point, Scale};
use hallows_sim::table::Table;
use hallows_sim::{ServiceDist, SourceStats};
use plotters::prelude::*;

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    out: PathBuf,
    seed: u64,
    scale: Scale,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        out: PathBuf::from("target/sim"),
        seed: 1,
        scale: Scale::FULL,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => args.out = it.next().ok_or("--out needs a directory")?.into(),
            "--seed" => args.seed = it.next().ok_or("--seed needs a number")?.parse()?,
            "--quick" => args.scale = Scale::QUICK,
            "-h" | "--help" => {
                println!("usage: hallows-sim [--out DIR] [--seed N] [--quick]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    Ok(args)
}

/// Evaluates points on every available core; results in point order.
fn parallel(points: &[Point]) -> Vec<Vec<SourceStats>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(points.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Vec<SourceStats>>>> = Mutex::new(vec![None; points.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(point) = points.get(i) else { break };
                let r = exp::evaluate(point);
                results
                    .lock()
                    .expect("no worker panics while holding the lock")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("workers done")
        .into_iter()
        .map(|r| r.expect("every point evaluated"))
        .collect()
}

fn write_csv(dir: &Path, table: &Table) -> Res<()> {
    fs::write(dir.join(format!("{}.csv", table.name)), table.to_csv())?;
    Ok(())
}

/// Values of column `y` against column `x`, one series per value of `key`.
fn series(t: &Table, key: &str, x: &str, y: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let (keys, xs, ys) = (t.column(key), t.column(x), t.column(y));
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for i in 0..keys.len() {
        let point = (
            xs[i].parse().unwrap_or(f64::NAN),
            ys[i].parse().unwrap_or(f64::INFINITY),
        );
        match out.iter_mut().find(|(k, _)| k == keys[i]) {
            Some((_, v)) => v.push(point),
            None => out.push((keys[i].to_string(), vec![point])),
        }
    }
    out
}

struct Plot<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Plot log10(y), labelled in y.
    log_y: bool,
    y_range: (f64, f64),
    /// A dashed horizontal reference line (target, budget).
    reference: Option<(f64, &'a str)>,
}

fn plot(path: &Path, p: &Plot, data: &[(String, Vec<(f64, f64)>)]) -> Res<()> {
    let ty = |y: f64| if p.log_y { y.max(1e-12).log10() } else { y };
    let (y0, y1) = (ty(p.y_range.0), ty(p.y_range.1));
    let clip = |y: f64| {
        if y.is_finite() {
            ty(y).clamp(y0, y1)
        } else {
            y1
        }
    };
    let xs = data.iter().flat_map(|(_, v)| v.iter().map(|pt| pt.0));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(p.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let log_y = p.log_y;
    chart
        .configure_mesh()
        .x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .y_label_formatter(&|v| {
            if log_y {
                format!("{}", 10f64.powf(*v))
            } else {
                format!("{v}")
            }
        })
        .y_labels(if log_y {
            (y1 - y0).round() as usize + 1
        } else {
            10
        })
        .light_line_style(WHITE)
        .draw()?;
    for (i, (name, pts)) in data.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x, clip(y))).collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    if let Some((y, label)) = p.reference {
        let dashes = (0..40).map(|i| {
            let a = x0 + (x1 - x0) * i as f64 / 40.0;
            PathElement::new(vec![(a, ty(y)), (a + (x1 - x0) / 80.0, ty(y))], BLACK)
        });
        chart
            .draw_series(dashes)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Res<()> {
    let args = parse_args()?;
    fs::create_dir_all(&args.out)?;
    let (dir, seed, scale) = (args.out.as_path(), args.seed, &args.scale);
    let started = Instant::now();
    let mut summary = String::new();

    // api: heavy-tailed RPC, 2 cores, 1 us preemption cost.
    let mut capacity = Table::new(
        "api_capacity",
        &["dist", "policy", "sustained_load_p99_slowdown_le_10"],
    );
    let dists = [
        (ServiceDist::BIMODAL, exp::grid(0.02, 0.98, 0.02)),
        (
            ServiceDist::Exponential { mean: 1_000.0 },
            exp::grid(0.05, 0.95, 0.05),
        ),
        (
            ServiceDist::Lognormal {
                mean: 1_000.0,
                sigma: 1.5,
            },
            exp::grid(0.05, 0.95, 0.05),
        ),
        (ServiceDist::Fixed(1_000), exp::grid(0.05, 0.95, 0.05)),
    ];
    for (dist, loads) in &dists {
        let sweep = exp::api_sweep(
            *dist,
            2,
            loads,
            &exp::api_policies(),
            scale,
            seed,
            &parallel,
        );
        write_csv(dir, &sweep.table)?;
        for (policy, load) in &sweep.capacity {
            capacity.push(vec![
                dist.name().into(),
                policy.clone(),
                format!("{load:.2}"),
            ]);
        }
        let title = format!(
            "{} service, 2 cores, 1 us preemption: p99 latency",
            dist.name()
        );
        let p = Plot {
            title: &title,
            x_desc: "load",
            y_desc: "p99 latency (us)",
            log_y: true,
            y_range: (0.1, 1e5),
            reference: None,
        };
        let file = format!("sched-api-{}-latency.svg", dist.name());
        plot(
            &dir.join(file),
            &p,
            &series(&sweep.table, "policy", "load", "p99_us"),
        )?;
        let title = format!(
            "{} service, 2 cores, 1 us preemption: p99 slowdown",
            dist.name()
        );
        let p = Plot {
            title: &title,
            x_desc: "load",
            y_desc: "p99 slowdown",
            log_y: true,
            y_range: (1.0, 1e4),
            reference: Some((10.0, "target 10")),
        };
        let file = format!("sched-api-{}-slowdown.svg", dist.name());
        plot(
            &dir.join(file),
            &p,
            &series(&sweep.table, "policy", "load", "p99_slowdown"),
        )?;
    }
    write_csv(dir, &capacity)?;
    summary.push_str("api: sustained load at p99 slowdown <= 10 (2 cores, 1 us preemption)\n");
    summary.push_str(&format!(
        "  {:<12} {:<18} {:>8}\n",
        "dist", "policy", "load"
    ));
    for r in &capacity.rows {
        summary.push_str(&format!("  {:<12} {:<18} {:>8}\n", r[0], r[1], r[2]));
    }

    // ui: frame deadlines.
    let utils = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0, 1.05];
    summary.push_str("ui: frames missed / frames (input miss rate)\n");
    for cores in [1, 2] {
        let t = exp::ui_sweep(cores, &utils, &exp::ui_policies(), scale, seed, &parallel);
        write_csv(dir, &t)?;
        let title = format!("ui: frame deadline misses, {cores} core(s), 60/120 Hz + input");
        let p = Plot {
            title: &title,
            x_desc: "utilization",
            y_desc: "frame miss rate",
            log_y: false,
            y_range: (0.0, 1.0),
            reference: None,
        };
        plot(
            &dir.join(format!("sched-ui-{cores}core.svg")),
            &p,
            &series(&t, "policy", "utilization", "frame_miss_rate"),
        )?;
        for r in t.rows.iter().filter(|r| r[2] == "0.950" || r[2] == "1.000") {
            summary.push_str(&format!(
                "  {} core  {:<10} util {}  {:>6}/{:<6} input {}\n",
                r[0], r[1], r[2], r[4], r[3], r[6]
            ));
        }
    }

    // db: commits under saturating compaction.
    let db = exp::db_sweep(
        &exp::grid(0.1, 0.8, 0.1),
        &exp::db_policies(),
        scale,
        seed,
        &parallel,
    );
    write_csv(dir, &db)?;
    let p = Plot {
        title: "db: commit p99 latency, compaction saturating, 2 cores",
        x_desc: "read load",
        y_desc: "commit p99 (us)",
        log_y: true,
        y_range: (1.0, 1e4),
        reference: Some((exp::COMMIT_BUDGET as f64 / 1e3, "commit budget")),
    };
    plot(
        &dir.join("sched-db.svg"),
        &p,
        &series(&db, "policy", "read_load", "commit_p99_us"),
    )?;
    summary.push_str("db: commit p99 (budget 50 us), background share, utilization\n");
    for r in db
        .rows
        .iter()
        .filter(|r| r[1] == "0.400" || r[1] == "0.800")
    {
        summary.push_str(&format!(
            "  {:<10} reads {}  commit p99 {:>9} us  read p99 {:>9} us  bg {}  util {}\n",
            r[0], r[1], r[3], r[6], r[9], r[10]
        ));
    }

    // messaging: throughput against the latency bound.
    let bounds = [50_000, 100_000, 200_000, 500_000, 1_000_000];
    let msg = exp::messaging_sweep(
        &bounds,
        &exp::grid(20_000.0, 840_000.0, 20_000.0),
        &exp::grid(5_000.0, 90_000.0, 5_000.0),
        scale,
        seed,
        &parallel,
    );
    write_csv(dir, &msg.table)?;
    write_csv(dir, &msg.capacity)?;
    let mut lines = vec![
        (String::from("unbatched (fcfs)"), Vec::new()),
        (String::from("batched (messaging)"), Vec::new()),
    ];
    for r in &msg.capacity.rows {
        let bound: f64 = r[0].parse()?;
        lines[0].1.push((bound, r[1].parse::<f64>()? / 1e3));
        lines[1].1.push((bound, r[2].parse::<f64>()? / 1e3));
    }
    let p = Plot {
        title: "messaging: sustained rate at p99 <= bound, 2 cores",
        x_desc: "latency bound (us)",
        y_desc: "messages per ms",
        log_y: false,
        y_range: (0.0, 900.0),
        reference: None,
    };
    plot(&dir.join("sched-messaging.svg"), &p, &lines)?;
    summary.push_str("messaging: sustained msgs/s at p99 <= bound (20 us flush + 2 us/msg)\n");
    for r in &msg.capacity.rows {
        summary.push_str(&format!(
            "  bound {:>5} us  unbatched {:>8}  batched {:>8}  gain {}x\n",
            r[0], r[1], r[2], r[3]
        ));
    }

    fs::write(dir.join("summary.txt"), &summary)?;
    print!("{summary}");
    eprintln!(
        "wrote {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

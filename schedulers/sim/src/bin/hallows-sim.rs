//! Host runner of the scheduler study (`make sim`): evaluates the experiments
//! of `hallows_sim::experiments` over every seed on all host cores, writes
//! one CSV per table (a row per point and seed), one SVG plot per figure
//! (medians over the seeds) and the markdown tables of the doc under
//! `--out` (default `target/sim`), and with `--doc` rewrites the generated
//! sections of `docs/schedulers.md` (and with `--img` its plots).
//! Parallelism never changes output: points are independent and results
//! are stored by index.
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hallows_sim::experiments::{self as exp, CostModel, Point, Policy, Scale, Setup, Target};
use hallows_sim::report;
use hallows_sim::table::Table;
use hallows_sim::{ServiceDist, SourceStats, Spread};
use plotters::prelude::*;

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage: hallows-sim [--out DIR] [--seeds N] [--seed FIRST] [--quick]
                   [--doc FILE] [--img DIR]
                   [--instructions-per-us F] [--tick-ns N] [--kick-ns N] [--preempt-ns N]
  --seeds N      runs of every point, seeds FIRST..FIRST+N-1 (default 10, FIRST 1)
  --quick        the small scale the tests use
  --doc FILE     rewrite FILE's <!-- sim:NAME --> sections with the tables
  --img DIR      copy the plots the doc shows into DIR
  --splice FILE  no simulation: rewrite --doc from FILE (an earlier run's tables.md),
                 and copy the plots of --out to --img
  --instructions-per-us F  converts the measured instruction counts (default 1000)
  --tick-ns, --kick-ns, --preempt-ns  set a cost directly";

struct Args {
    out: PathBuf,
    first_seed: u64,
    seeds: u64,
    scale: Scale,
    doc: Option<PathBuf>,
    img: Option<PathBuf>,
    splice: Option<PathBuf>,
    model: CostModel,
    tick_ns: Option<u64>,
    kick_ns: Option<u64>,
    preempt_ns: Option<u64>,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        out: PathBuf::from("target/sim"),
        first_seed: 1,
        seeds: 10,
        scale: Scale::FULL,
        doc: None,
        img: None,
        splice: None,
        model: CostModel::MEASURED,
        tick_ns: None,
        kick_ns: None,
        preempt_ns: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => args.out = value()?.into(),
            "--seed" => args.first_seed = value()?.parse()?,
            "--seeds" => args.seeds = value()?.parse()?,
            "--quick" => args.scale = Scale::QUICK,
            "--doc" => args.doc = Some(value()?.into()),
            "--img" => args.img = Some(value()?.into()),
            "--splice" => args.splice = Some(value()?.into()),
            "--instructions-per-us" => args.model.instructions_per_us = value()?.parse()?,
            "--tick-ns" => args.tick_ns = Some(value()?.parse()?),
            "--kick-ns" => args.kick_ns = Some(value()?.parse()?),
            "--preempt-ns" => args.preempt_ns = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    let rate = args.model.instructions_per_us;
    if rate.is_nan() || rate <= 0.0 {
        return Err("--instructions-per-us must be positive".into());
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

/// One plot of each `api` sweep: file suffix, y label, y range, reference
/// line, and the figure (median over the seeds at each load).
type ApiFigure = (
    &'static str,
    &'static str,
    (f64, f64),
    Option<(f64, &'static str)>,
    fn(&SourceStats) -> f64,
);

/// The bimodal grid: fine where the baselines give out, coarser above.
fn bimodal_loads() -> Vec<f64> {
    let mut loads = exp::grid(0.02, 0.3, 0.02);
    loads.extend(exp::grid(0.35, 0.95, 0.05));
    loads
}

/// Rewrites `--doc`'s generated sections with `sections` and copies the
/// plots of `--out` that it shows (all of `plots` without `--doc`) to `--img`.
fn publish(args: &Args, sections: &[(String, String)], plots: &[String]) -> Res<()> {
    if let Some(doc) = &args.doc {
        let text = fs::read_to_string(doc)?;
        let new =
            report::splice(&text, sections).map_err(|e| format!("{}: {e:?}", doc.display()))?;
        fs::write(doc, new)?;
        eprintln!("rewrote the generated sections of {}", doc.display());
    }
    if let Some(img) = &args.img {
        let doc_text = match &args.doc {
            Some(doc) => fs::read_to_string(doc)?,
            None => String::new(),
        };
        fs::create_dir_all(img)?;
        for file in plots
            .iter()
            .filter(|f| args.doc.is_none() || doc_text.contains(f.as_str()))
        {
            fs::copy(args.out.join(file), img.join(file))?;
        }
    }
    Ok(())
}

fn main() -> Res<()> {
    let args = parse_args()?;
    fs::create_dir_all(&args.out)?;
    if let Some(tables) = &args.splice {
        let text = fs::read_to_string(tables)?;
        let sections =
            report::sections(&text).map_err(|e| format!("{}: {e:?}", tables.display()))?;
        let mut plots = Vec::new();
        for entry in fs::read_dir(&args.out)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with("sched-") && name.ends_with(".svg") {
                plots.push(name);
            }
        }
        return publish(&args, &sections, &plots);
    }
    let dir = args.out.as_path();
    let mut setup = Setup::new(args.scale, args.first_seed, args.seeds);
    setup.costs = args.model.costs();
    if let Some(ns) = args.tick_ns {
        setup.costs.tick = ns;
    }
    if let Some(ns) = args.kick_ns {
        setup.costs.kick = ns;
    }
    if let Some(ns) = args.preempt_ns {
        setup.costs.preempt = ns;
    }
    let setup = &setup;
    let started = Instant::now();
    let mut summary = String::new();
    let mut sections: Vec<(String, String)> =
        vec![("setup".into(), report::setup(setup, &args.model))];
    let mut plots: Vec<String> = Vec::new();

    // api: heavy-tailed RPC, 2 cores.
    let mut capacity = Table::new(
        "api_capacity",
        &[
            "dist",
            "policy",
            "seed",
            "sustained_p99_all",
            "sustained_p99_each_class",
        ],
    );
    let dists = [
        (ServiceDist::BIMODAL, bimodal_loads()),
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
    let mut sweeps = Vec::new();
    for (dist, loads) in &dists {
        let sweep = exp::api_sweep(*dist, 2, loads, &exp::api_policies(), setup, &parallel);
        eprintln!(
            "api {}: {:.0} s",
            dist.name(),
            started.elapsed().as_secs_f64()
        );
        write_csv(dir, &sweep.table())?;
        let all = sweep.capacity(exp::API_SLOWDOWN_TARGET, Target::Overall);
        let each = sweep.capacity(exp::API_SLOWDOWN_TARGET, Target::EachClass);
        for (p, policy) in sweep.policies.iter().enumerate() {
            for (k, seed) in sweep.seeds.iter().enumerate() {
                capacity.push(vec![
                    dist.name().into(),
                    policy.name(),
                    format!("{seed}"),
                    format!("{:.2}", all[p][k]),
                    format!("{:.2}", each[p][k]),
                ]);
            }
        }
        let figures: [ApiFigure; 3] = [
            ("latency", "p99 latency (us)", (0.1, 1e5), None, |s| {
                s.latency.p99 / 1e3
            }),
            (
                "slowdown",
                "p99 slowdown",
                (1.0, 1e4),
                Some((exp::API_SLOWDOWN_TARGET, "target 10")),
                |s| s.slowdown.p99,
            ),
            (
                "long",
                "long-class p99.9 latency (us)",
                (1.0, 1e6),
                None,
                |s| s.classes.map_or(f64::NAN, |c| c.long.latency.p999 / 1e3),
            ),
        ];
        for (suffix, y_desc, y_range, reference, f) in figures {
            if suffix == "long" && dist.long_from().is_none() {
                continue; // one class only
            }
            let title = format!(
                "{} service, 2 cores: {y_desc} (median of seeds)",
                dist.name()
            );
            let p = Plot {
                title: &title,
                x_desc: "load",
                y_desc,
                log_y: true,
                y_range,
                reference,
            };
            let file = format!("sched-api-{}-{suffix}.svg", dist.name());
            plot(&dir.join(&file), &p, &sweep.medians(f))?;
            plots.push(file);
        }
        sweeps.push(sweep);
    }
    write_csv(dir, &capacity)?;
    let bimodal = &sweeps[0];
    sections.push(("api-bimodal-capacity".into(), report::api_capacity(bimodal)));
    sections.push((
        "api-bimodal-tails".into(),
        report::api_tails(
            bimodal,
            &[
                Policy::Fcfs,
                Policy::ShinjukuSq(2_000),
                Policy::Api(2_000),
                Policy::Ps,
            ],
            &[0.1, 0.3, 0.5, 0.7, 0.8, 0.9],
        ),
    ));
    sections.push((
        "api-other".into(),
        report::api_other(&sweeps.iter().collect::<Vec<_>>()),
    ));
    sections.push((
        "api-lognormal-latency".into(),
        report::api_latency(
            &sweeps[2],
            &[
                Policy::Fcfs,
                Policy::Api(2_000),
                Policy::Api(5_000),
                Policy::Ps,
            ],
            &[0.5, 0.7, 0.8],
        ),
    ));
    summary.push_str("api: sustained load at p99 slowdown <= 10, all requests / each class too\n");
    for sweep in &sweeps {
        let all = sweep.capacity(exp::API_SLOWDOWN_TARGET, Target::Overall);
        let each = sweep.capacity(exp::API_SLOWDOWN_TARGET, Target::EachClass);
        for (p, policy) in sweep.policies.iter().enumerate() {
            summary.push_str(&format!(
                "  {:<12} {:<18} {:>22}  {:>22}\n",
                sweep.dist.name(),
                policy.name(),
                report::spread(Spread::of(&all[p]), |v| format!("{v:.2}")),
                report::spread(Spread::of(&each[p]), |v| format!("{v:.2}")),
            ));
        }
    }

    // ui: frame deadlines.
    let utils = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0, 1.05];
    let mut ui_sweeps = Vec::new();
    for cores in [1, 2] {
        let t = exp::ui_sweep(cores, &utils, &exp::ui_policies(), setup, &parallel);
        write_csv(dir, &t.table())?;
        let title = format!("ui: frame miss rate, {cores} core(s), 60/120 Hz + input (all seeds)");
        let p = Plot {
            title: &title,
            x_desc: "utilization",
            y_desc: "frame miss rate",
            log_y: false,
            y_range: (0.0, 1.0),
            reference: None,
        };
        let lines: Vec<(String, Vec<(f64, f64)>)> = t
            .policies
            .iter()
            .enumerate()
            .map(|(p, policy)| {
                let line = (0..t.utils.len())
                    .map(|u| {
                        let (f, m) = (0..t.seeds.len())
                            .map(|k| t.frames(p, u, k))
                            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                        (t.utils[u], m as f64 / f.max(1) as f64)
                    })
                    .collect();
                (policy.name(), line)
            })
            .collect();
        let file = format!("sched-ui-{cores}core.svg");
        plot(&dir.join(&file), &p, &lines)?;
        plots.push(file);
        ui_sweeps.push(t);
    }
    eprintln!("ui: {:.0} s", started.elapsed().as_secs_f64());
    for t in &ui_sweeps {
        sections.push((
            format!("ui-{}core", t.cores),
            report::ui(&[t], &[0.9, 0.95, 1.0, 1.05]),
        ));
    }
    let input = report::ui_input_p99(&ui_sweeps[0], &Policy::Ui, 1.0);
    sections.push((
        "ui-input".into(),
        format!(
            "Input p99 latency under `ui` on 1 core, every utilization up to 1.0 and every seed: {}.",
            report::spread(input, report::duration)
        ),
    ));
    summary.push_str("ui: frames missed / frames over all seeds\n");
    summary.push_str(&report::ui(
        &ui_sweeps.iter().collect::<Vec<_>>(),
        &[0.95, 1.0],
    ));

    // db: commits under saturating compaction.
    let db = exp::db_sweep(
        &exp::grid(0.1, 0.8, 0.1),
        &exp::db_policies(),
        setup,
        &parallel,
    );
    eprintln!("db: {:.0} s", started.elapsed().as_secs_f64());
    write_csv(dir, &db.table())?;
    let p = Plot {
        title: "db: commit p99 latency, compaction saturating, 2 cores (median of seeds)",
        x_desc: "read load",
        y_desc: "commit p99 (us)",
        log_y: true,
        y_range: (1.0, 1e4),
        reference: Some((exp::COMMIT_BUDGET as f64 / 1e3, "commit budget")),
    };
    let lines: Vec<(String, Vec<(f64, f64)>)> = db
        .policies
        .iter()
        .enumerate()
        .map(|(p, policy)| {
            let line = (0..db.read_loads.len())
                .map(|r| {
                    (
                        db.read_loads[r],
                        db.spread(p, r, |s| s[0].latency.p99 / 1e3).median,
                    )
                })
                .collect();
            (policy.name(), line)
        })
        .collect();
    plot(&dir.join("sched-db.svg"), &p, &lines)?;
    plots.push("sched-db.svg".into());
    let db_md = report::db(&db, &[0.1, 0.4, 0.8]);
    summary.push_str("db:\n");
    summary.push_str(&db_md);
    sections.push(("db".into(), db_md));

    // messaging: throughput against the latency bound.
    let bounds = [50_000, 100_000, 200_000, 500_000, 1_000_000];
    let top = 840_000.0;
    let msg = exp::messaging_sweep(
        &bounds,
        &exp::grid(20_000.0, top, 20_000.0),
        &exp::grid(5_000.0, 90_000.0, 5_000.0),
        setup,
        &parallel,
    );
    eprintln!("messaging: {:.0} s", started.elapsed().as_secs_f64());
    write_csv(dir, &msg.table)?;
    write_csv(dir, &msg.capacity)?;
    let mut lines = vec![
        (String::from("unbatched (fcfs)"), Vec::new()),
        (String::from("batched (messaging)"), Vec::new()),
    ];
    for (b, &bound) in msg.bounds.iter().enumerate() {
        let med = |f: fn(&(f64, f64)) -> f64| {
            Spread::of(&msg.sustained[b].iter().map(f).collect::<Vec<_>>()).median / 1e3
        };
        lines[0].1.push((bound as f64 / 1e3, med(|x| x.0)));
        lines[1].1.push((bound as f64 / 1e3, med(|x| x.1)));
    }
    let p = Plot {
        title: "messaging: sustained rate at p99 <= bound, 2 cores (median of seeds)",
        x_desc: "latency bound (us)",
        y_desc: "messages per ms",
        log_y: false,
        y_range: (0.0, 900.0),
        reference: None,
    };
    plot(&dir.join("sched-messaging.svg"), &p, &lines)?;
    plots.push("sched-messaging.svg".into());
    let msg_md = report::messaging(&msg, top);
    summary.push_str("messaging:\n");
    summary.push_str(&msg_md);
    sections.push(("messaging".into(), msg_md));

    // The doc's tables, and the doc itself.
    let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        report::SECTIONS,
        "the runner renders every section the doc has"
    );
    let mut all_md = String::new();
    for (name, text) in &sections {
        all_md.push_str(&format!(
            "<!-- sim:{name} -->\n{}\n<!-- /sim:{name} -->\n\n",
            text.trim_end()
        ));
    }
    fs::write(dir.join("tables.md"), &all_md)?;
    fs::write(dir.join("summary.txt"), &summary)?;
    print!("{summary}");
    publish(&args, &sections, &plots)?;
    eprintln!(
        "wrote {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

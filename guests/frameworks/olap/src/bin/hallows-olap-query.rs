//! hallows-olap-query: runs SQL against an image on the host and prints
//! the result as tab-separated text with a header line (NULL as `\N`).
//!
//! ```text
//! hallows-olap-query --disk IMG [--threads N] [--time] [--repeat N] [--cache-mb N] (SQL | -f FILE)
//! ```
//!
//! `--cache-mb` (default 1024) keeps that much of the image's checked
//! chunks in memory between runs (`--repeat`); 0 reads every chunk from
//! the file each time.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use hallows_blockdev::FileDisk;
use hallows_olap::exec::Threads;
use hallows_olap::Engine;

const USAGE: &str = "usage: hallows-olap-query --disk IMG [--threads N] [--time] [--repeat N] [--cache-mb N] (SQL | -f FILE)";

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut disk, mut threads, mut time, mut sql, mut repeat, mut cache_mb) = (None, 1usize, false, None, 1usize, 1024usize);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--disk" => disk = Some(PathBuf::from(val()?)),
            "--threads" => threads = val()?.parse().map_err(|_| "--threads takes a number".to_string())?,
            "--time" => time = true,
            "--cache-mb" => cache_mb = val()?.parse().map_err(|_| "--cache-mb takes a number".to_string())?,
            "--repeat" => repeat = val()?.parse().map_err(|_| "--repeat takes a number".to_string())?,
            "-f" => {
                let f = val()?;
                sql = Some(std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if sql.is_none() && !s.starts_with("--") => sql = Some(s.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let (disk, sql) = (disk.ok_or(USAGE)?, sql.ok_or(USAGE)?);
    let dev = FileDisk::open(&disk, 0).map_err(|e| format!("{}: {e}", disk.display()))?;
    let engine = Engine::open(dev).map_err(|e| format!("{}: {e}", disk.display()))?;
    engine.db.set_cache_bytes(cache_mb.saturating_mul(1 << 20));
    // The best of `repeat` runs (the first reads the image cold).
    let mut best = f64::INFINITY;
    let mut rs = None;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        let r = engine.query(&sql, &Threads(threads)).map_err(|e| format!("ERROR {}: {e}", e.kind.sqlstate()))?;
        best = best.min(start.elapsed().as_secs_f64());
        rs = Some(r);
    }
    let rs = rs.ok_or(USAGE)?;
    let esc = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut print = || -> std::io::Result<()> {
        writeln!(out, "{}", rs.columns.iter().map(|(n, _)| esc(n)).collect::<Vec<_>>().join("\t"))?;
        for row in rs.text() {
            writeln!(out, "{}", row.iter().map(|v| v.as_deref().map_or("\\N".to_string(), esc)).collect::<Vec<_>>().join("\t"))?;
        }
        out.flush()
    };
    // A closed pipe (`| head`) is not an error.
    let _ = print();
    if time {
        eprintln!(
            "{} rows in {:.3} ms (best of {}; {} row groups read, {} skipped by zone maps)",
            rs.rows.len(),
            best * 1e3,
            repeat.max(1),
            rs.stats.groups_read,
            rs.stats.groups_skipped
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    hallows_olap::load::exit("", run())
}

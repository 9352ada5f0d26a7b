//! hallows-olap-query: runs SQL against an image on the host and prints
//! the result as tab-separated text with a header line (NULL as `\N`).
//!
//! ```text
//! hallows-olap-query --disk IMG [--threads N] [--time] (SQL | -f FILE)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use hallows_blockdev::FileDisk;
use hallows_olap::exec::Threads;
use hallows_olap::Engine;

const USAGE: &str = "usage: hallows-olap-query --disk IMG [--threads N] [--time] (SQL | -f FILE)";

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut disk, mut threads, mut time, mut sql) = (None, 1usize, false, None);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--disk" => disk = Some(PathBuf::from(val()?)),
            "--threads" => threads = val()?.parse().map_err(|_| "--threads takes a number".to_string())?,
            "--time" => time = true,
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
    let start = Instant::now();
    let rs = engine.query(&sql, &Threads(threads)).map_err(|e| format!("ERROR {}: {e}", e.kind.sqlstate()))?;
    let took = start.elapsed();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
    println!("{}", rs.columns.iter().map(|(n, _)| esc(n)).collect::<Vec<_>>().join("\t"));
    for row in rs.text() {
        println!("{}", row.iter().map(|v| v.as_deref().map_or("\\N".to_string(), esc)).collect::<Vec<_>>().join("\t"));
    }
    if time {
        eprintln!(
            "{} rows in {:.3} ms ({} row groups read, {} skipped by zone maps)",
            rs.rows.len(),
            took.as_secs_f64() * 1e3,
            rs.stats.groups_read,
            rs.stats.groups_skipped
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

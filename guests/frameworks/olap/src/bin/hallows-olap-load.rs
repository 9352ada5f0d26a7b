//! hallows-olap-load: TPC-H `.tbl`/CSV files (or any tables, given a
//! schema file) into an OLAP disk image. See docs/olap.md.
//!
//! ```text
//! hallows-olap-load --out IMG --tpch DIR [--rows-per-group N] [--size BYTES]
//! hallows-olap-load --out IMG --schema FILE --table NAME=FILE ... [...]
//! ```
//! `--sort TABLE=COLUMN` (repeatable) stores a table sorted by a column,
//! so that its row groups' zone maps on it are narrow (the table is held
//! in memory while it is sorted).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use hallows_blockdev::FileDisk;
use hallows_olap::load::{self, Input};
use hallows_olap::storage::DEFAULT_GROUP_ROWS;

const USAGE: &str = "usage: hallows-olap-load --out IMG (--tpch DIR | --schema FILE --table NAME=FILE ...) [--sort TABLE=COLUMN ...] [--rows-per-group N] [--size BYTES]";

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut out, mut tpch, mut schema, mut tables, mut sorts) = (None, None, None, Vec::new(), Vec::<String>::new());
    let (mut group_rows, mut size) = (DEFAULT_GROUP_ROWS, None);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(val()?)),
            "--tpch" => tpch = Some(PathBuf::from(val()?)),
            "--schema" => schema = Some(PathBuf::from(val()?)),
            "--table" => tables.push(val()?),
            "--sort" => sorts.push(val()?),
            "--rows-per-group" => group_rows = val()?.parse().map_err(|_| "--rows-per-group takes a number".to_string())?,
            "--size" => size = Some(val()?.parse::<u64>().map_err(|_| "--size takes a number of bytes".to_string())?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let out = out.ok_or(USAGE)?;
    let mut inputs: Vec<Input> = match (tpch, schema) {
        (Some(dir), None) if tables.is_empty() => load::tpch_inputs(&dir).map_err(|e| e.to_string())?,
        (None, Some(file)) => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let schemas = load::parse_schema(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut v = Vec::new();
            for t in &tables {
                let (name, path) = t.split_once('=').ok_or_else(|| format!("--table {t}: write NAME=FILE"))?;
                let schema = schemas
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| format!("--table {t}: no table {name} in {}", file.display()))?;
                v.push(Input { schema: schema.clone(), path: PathBuf::from(path), sort_by: None });
            }
            v
        }
        _ => return Err(USAGE.to_string()),
    };
    for s in &sorts {
        let (table, col) = s.split_once('=').ok_or_else(|| format!("--sort {s}: write TABLE=COLUMN"))?;
        let inp = inputs
            .iter_mut()
            .find(|i| i.schema.name.eq_ignore_ascii_case(table))
            .ok_or_else(|| format!("--sort {s}: no table {table} is loaded"))?;
        let c = inp
            .schema
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(col))
            .ok_or_else(|| format!("--sort {s}: table {table} has no column {col}"))?;
        inp.sort_by = Some(c);
    }
    // Room for the data: the input's size plus slack (an image compresses
    // at least as well as text); trimmed to what was used at the end.
    let input_bytes: u64 = inputs.iter().map(|i| std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or(0)).sum();
    let size = size.unwrap_or(input_bytes + input_bytes / 4 + (16 << 20));
    let _ = std::fs::remove_file(&out);
    let dev = FileDisk::open(&out, size).map_err(|e| format!("{}: {e}", out.display()))?;
    let start = Instant::now();
    let (dev, used) = load::load(dev, &inputs, group_rows, &mut |m| eprintln!("{:7.2}s {m}", start.elapsed().as_secs_f64()))
        .map_err(|e| e.to_string())?;
    drop(dev);
    let bytes = used * hallows_blockdev::SECTOR as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&out)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "{}: {} tables, {bytes} bytes ({:.1}% of the {input_bytes} input bytes) in {:.2}s",
        out.display(),
        inputs.len(),
        100.0 * bytes as f64 / input_bytes.max(1) as f64,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    hallows_olap::load::exit("hallows-olap-load: ", run())
}

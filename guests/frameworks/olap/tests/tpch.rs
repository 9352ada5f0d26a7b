//! TPC-H Q1, Q3, Q5, Q6 and Q10 at scale factor 0.01 against DuckDB.
//!
//! Data: `tpchgen-cli` (a Rust port of dbgen; DuckDB's own dbgen lives in
//! its `tpch` extension, which cannot be downloaded here) writes the
//! `.tbl` files into target/olap-tpch-0.01; the loader turns them into an
//! image (in memory, 4096 rows per row group so that zone maps and
//! morsels have something to split); DuckDB (Python) loads the same files
//! with the TPC-H schema and runs the same SQL files. Results must match
//! row for row: integers, strings, dates and decimals exactly (decimals
//! at the scale of the result column, which follows DuckDB's rules);
//! `avg`, a double in DuckDB and a decimal of scale 6 here, within one
//! unit of the sixth decimal.
//!
//! Needs target/venv with duckdb and tpchgen-cli (`make deps`); without
//! it the test says so and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hallows_blockdev::MemDisk;
use hallows_olap::exec::{Serial, Threads};
use hallows_olap::load;
use hallows_olap::Engine;

const QUERIES: [&str; 8] = ["q1", "q3", "q5", "q6", "q10", "q12", "q14", "q19"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// The venv's python, if the venv is there.
fn venv() -> Option<PathBuf> {
    let py = root().join("target/venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import duckdb"])
            .status()
            .is_ok_and(|s| s.success())
        && root().join("target/venv/bin/tpchgen-cli").exists();
    ok.then_some(py)
}

fn data(sf: &str) -> PathBuf {
    let dir = root().join(format!("target/olap-tpch-{sf}"));
    if !dir.join("lineitem.tbl").exists() || !dir.join("region.tbl").exists() {
        let st = Command::new(root().join("target/venv/bin/tpchgen-cli"))
            .args(["-s", sf, "--output-dir"])
            .arg(&dir)
            .status()
            .expect("run tpchgen-cli");
        assert!(st.success(), "tpchgen-cli failed");
    }
    dir
}

struct Expected {
    types: Vec<String>,
    rows: Vec<Vec<String>>,
    seconds: f64,
}

fn duckdb(py: &Path, dir: &Path, files: &[PathBuf]) -> Vec<Expected> {
    let out = Command::new(py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/duckdb_run.py"))
        .arg(dir)
        .args(files)
        .output()
        .expect("run duckdb_run.py");
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut res = Vec::new();
    for block in text.split("#query ").skip(1) {
        let mut lines = block.lines();
        let head = lines.next().unwrap();
        let seconds = head.rsplit(' ').next().unwrap().parse().unwrap();
        let types = lines.next().unwrap().split('\t').map(String::from).collect();
        let rows = lines.map(|l| l.split('\t').map(String::from).collect()).collect();
        res.push(Expected { types, rows, seconds });
    }
    res
}

/// Our `avg` (a decimal of scale 6) against DuckDB's double: equal within
/// one unit of the sixth decimal.
fn close(ours: &str, theirs: &str) -> bool {
    let scale = ours.split_once('.').map_or(0, |(_, f)| f.len());
    match (ours.parse::<f64>(), theirs.parse::<f64>()) {
        (Ok(a), Ok(b)) => scale == 6 && (a - b).abs() <= 1e-6 * 1.0001,
        _ => false,
    }
}

#[test]
fn tpch_against_duckdb() {
    let Some(py) = venv() else {
        eprintln!("SKIPPED: target/venv with duckdb and tpchgen-cli is missing; run `make deps`");
        return;
    };
    // OLAP_TPCH_SF=0.1 (or 1) runs the same comparison on more data
    // (use --release); the default is what `make test` runs.
    let sf = std::env::var("OLAP_TPCH_SF").unwrap_or_else(|_| "0.01".into());
    let dir = data(&sf);
    let t0 = Instant::now();
    let mut inputs = load::tpch_inputs(&dir).unwrap();
    // lineitem sorted by ship date: Q1, Q3, Q6's filters on it skip row groups.
    let li = inputs.iter_mut().find(|i| i.schema.name == "lineitem").unwrap();
    li.sort_by = li.schema.columns.iter().position(|c| c.name == "l_shipdate");
    let text: u64 = inputs.iter().map(|i| std::fs::metadata(&i.path).unwrap().len()).sum();
    let group_rows = if sf == "0.01" { 4096 } else { 65536 };
    let (dev, used) = load::load(MemDisk::new(text / 512 + 4096), &inputs, group_rows, &mut |_| {}).unwrap();
    eprintln!("loaded SF {sf} into {} KiB in {:.2}s", used / 2, t0.elapsed().as_secs_f64());
    let engine = Engine::open(dev).unwrap();
    let qdir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/tpch");
    let files: Vec<PathBuf> = QUERIES.iter().map(|q| qdir.join(format!("{q}.sql"))).collect();
    let expected = duckdb(&py, &dir, &files);
    assert_eq!(expected.len(), QUERIES.len());
    let mut skipped = 0;
    for ((q, file), exp) in QUERIES.iter().zip(&files).zip(&expected) {
        let sql = std::fs::read_to_string(file).unwrap();
        let start = Instant::now();
        let rs = engine.query(&sql, &Serial).unwrap_or_else(|e| panic!("{q}: {e}"));
        let ours_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let par = engine.query(&sql, &Threads(4)).unwrap();
        let par_s = start.elapsed().as_secs_f64();
        assert_eq!(rs.rows, par.rows, "{q}: 4 threads differ from 1");
        let ours = rs.text();
        assert!(!exp.rows.is_empty(), "{q}: DuckDB returned nothing, the comparison would be empty");
        assert_eq!(ours.len(), exp.rows.len(), "{q}: row count");
        assert_eq!(rs.columns.len(), exp.types.len(), "{q}: column count");
        for (i, (a, b)) in ours.iter().zip(&exp.rows).enumerate() {
            for (c, (x, y)) in a.iter().zip(b).enumerate() {
                let x = x.as_deref().unwrap_or("\\N");
                let ok = if exp.types[c] == "DOUBLE" || exp.types[c] == "FLOAT" { close(x, y) } else { x == y };
                assert!(ok, "{q} row {i} column {} ({}): ours {x}, DuckDB {y}", rs.columns[c].0, exp.types[c]);
            }
        }
        skipped += rs.stats.groups_skipped;
        if *q == "q6" && sf == "0.01" {
            assert!(rs.stats.groups_skipped * 2 > rs.stats.groups_read, "q6 reads one year of ship dates: {:?}", rs.stats);
        }
        eprintln!(
            "{q}: {} rows equal to DuckDB's; ours {:.2} ms (1 thread), {:.2} ms (4 threads), DuckDB {:.2} ms; row groups read {} skipped {}",
            ours.len(),
            ours_s * 1e3,
            par_s * 1e3,
            exp.seconds * 1e3,
            rs.stats.groups_read,
            rs.stats.groups_skipped
        );
    }
    assert!(skipped > 0, "no row group skipped by zone maps");
}

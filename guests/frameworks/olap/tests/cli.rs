//! The host binaries as a user runs them: hallows-olap-load on a schema
//! file and CSV (sorted, with progress), hallows-olap-query on the image,
//! and their errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("olap-cli");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn load_then_query() {
    let d = dir();
    let schema = d.join("shop.schema");
    std::fs::write(&schema, "# a shop\nitems id:int name:text price:decimal(10,2) added:date\n").unwrap();
    let csv = d.join("items.csv");
    std::fs::write(&csv, "id,name,price,added\n3,\"tea, green\",4.50,2024-03-01\n1,coffee,3.25,2024-01-15\n2,cocoa,2.00,2024-02-10\n").unwrap();
    let img = d.join("shop.img");
    let (s, c, i) = (schema.to_str().unwrap(), csv.to_str().unwrap(), img.to_str().unwrap());
    let table = format!("items={c}");
    let out = run(env!("CARGO_BIN_EXE_hallows-olap-load"), &["--out", i, "--schema", s, "--table", &table, "--sort", "items=added"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("items: sorting 3 rows") && err.contains("items: 3 rows loaded"), "{err}");
    assert_eq!(std::fs::metadata(&img).unwrap().len() % 512, 0);

    let q = env!("CARGO_BIN_EXE_hallows-olap-query");
    let out = run(q, &["--disk", i, "--time", "select id, name, price * 2 as double, added from items order by added desc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "id\tname\tdouble\tadded\n3\ttea, green\t9.00\t2024-03-01\n2\tcocoa\t4.00\t2024-02-10\n1\tcoffee\t6.50\t2024-01-15\n"
    );
    assert!(text(&out.stderr).contains("3 rows in"));
    // Sorted by date: the first row group holds the earliest day.
    let out = run(q, &["--disk", i, "select min(id) from items where added < date '2024-02-01'"]);
    assert_eq!(text(&out.stdout), "min\n1\n");

    let out = run(q, &["--disk", i, "select nme from items"]);
    assert!(!out.status.success());
    assert_eq!(text(&out.stderr).trim(), "ERROR 42703: line 1, column 8: column \"nme\" does not exist in the tables of FROM");
}

#[test]
fn load_errors_name_file_and_line() {
    let d = dir();
    let schema = d.join("bad.schema");
    std::fs::write(&schema, "t a:int b:decimal(5,1)\n").unwrap();
    let csv = d.join("bad.csv");
    std::fs::write(&csv, "1,2.5\n2,2.55\n").unwrap();
    let img = d.join("bad.img");
    let table = format!("t={}", csv.display());
    let out = run(
        env!("CARGO_BIN_EXE_hallows-olap-load"),
        &["--out", img.to_str().unwrap(), "--schema", schema.to_str().unwrap(), "--table", &table],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("bad.csv:2: column b: not a decimal with at most 1 fraction digits"), "{err}");
    // The unfinished image is refused.
    let out = run(env!("CARGO_BIN_EXE_hallows-olap-query"), &["--disk", img.to_str().unwrap(), "select 1 from t"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no OLAP superblock"), "{}", text(&out.stderr));
    let out = run(env!("CARGO_BIN_EXE_hallows-olap-load"), &["--out", img.to_str().unwrap(), "--bogus"]);
    assert!(!out.status.success() && text(&out.stderr).contains("usage"));
}

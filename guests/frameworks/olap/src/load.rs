//! The host loader (feature `std`): TPC-H `.tbl` files (`|` between
//! fields and after the last, as dbgen and tpchgen-cli write them) and
//! CSV files (`,`, double quotes, a header line) into a disk image.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use hallows_blockdev::BlockDevice;

use crate::storage::{Schema, Writer};
use crate::types::{Error, ErrorKind, Result, Type};

/// One table to load and the file holding its rows.
#[derive(Clone, Debug)]
pub struct Input {
    pub schema: Schema,
    pub path: PathBuf,
}

fn input_err(path: &Path, line: u64, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Input, format!("{}:{line}: {msg}", path.display()))
}

/// Splits a CSV line: `,` between fields, `"` quotes with `""` inside.
pub fn split_csv(line: &str) -> std::result::Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, '"') => return Err("a quote inside an unquoted field"),
            (false, c) if was_quoted => {
                let _ = c;
                return Err("text after a closing quote");
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed on its line");
    }
    out.push(cur);
    Ok(out)
}

/// Loads `inputs` into an image on `dev`, `group_rows` rows per row group;
/// `progress` hears about each table and every million rows.
pub fn load<D: BlockDevice>(
    dev: D,
    inputs: &[Input],
    group_rows: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(D, u64)> {
    let mut w = Writer::new(dev, group_rows)?;
    for inp in inputs {
        let path = &inp.path;
        let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let f = File::open(path).map_err(|e| input_err(path, 0, e))?;
        let mut t = w.table(inp.schema.clone())?;
        let ncols = inp.schema.columns.len();
        let mut lineno = 0u64;
        for line in BufReader::with_capacity(1 << 20, f).lines() {
            lineno += 1;
            let line = line.map_err(|e| input_err(path, lineno, e))?;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                continue;
            }
            let owned;
            let fields: Vec<&str> = if csv {
                owned = split_csv(line).map_err(|e| input_err(path, lineno, e))?;
                let f: Vec<&str> = owned.iter().map(String::as_str).collect();
                let header = lineno == 1
                    && f.len() == ncols
                    && f.iter().zip(&inp.schema.columns).all(|(a, c)| a.eq_ignore_ascii_case(&c.name));
                if header {
                    continue;
                }
                f
            } else {
                let mut f: Vec<&str> = line.split('|').collect();
                if f.len() == ncols + 1 && f.last() == Some(&"") {
                    f.pop();
                }
                f
            };
            t.push_text(&fields).map_err(|e| input_err(path, lineno, e.msg))?;
            if t.rows() % 1_000_000 == 0 {
                progress(&format!("{}: {} rows", inp.schema.name, t.rows()));
            }
        }
        let rows = t.rows();
        t.finish()?;
        progress(&format!("{}: {rows} rows loaded from {}", inp.schema.name, path.display()));
    }
    w.finish()
}

/// The TPC-H tables found in `dir` (`<table>.tbl` or `<table>.csv`).
pub fn tpch_inputs(dir: &Path) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for schema in crate::tpch::schemas() {
        let found = ["tbl", "csv"].iter().map(|e| dir.join(format!("{}.{e}", schema.name))).find(|p| p.exists());
        match found {
            Some(path) => out.push(Input { schema, path }),
            None => {
                return Err(Error::new(
                    ErrorKind::Input,
                    format!("{}: no {}.tbl or {}.csv (generate with tpchgen-cli)", dir.display(), schema.name, schema.name),
                ))
            }
        }
    }
    Ok(out)
}

fn parse_type(s: &str) -> Option<Type> {
    let s = s.trim().to_ascii_lowercase();
    Some(match s.as_str() {
        "int" | "integer" | "int4" => Type::Int32,
        "bigint" | "int8" => Type::Int64,
        "date" => Type::Date,
        "text" | "varchar" | "string" => Type::Text,
        _ => {
            let inner = s.strip_prefix("decimal(").or_else(|| s.strip_prefix("numeric("))?.strip_suffix(')')?;
            let scale = inner.split(',').nth(1).unwrap_or("0").trim().parse::<u8>().ok()?;
            if scale > crate::types::MAX_SCALE {
                return None;
            }
            Type::Decimal(scale)
        }
    })
}

/// Parses a schema file: one table a line, `name col:type col:type ...`
/// (types int, bigint, decimal(p,s), date, text); `#` starts a comment.
pub fn parse_schema(text: &str) -> Result<Vec<Schema>> {
    let mut out: Vec<Schema> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: String| Error::new(ErrorKind::Input, format!("schema line {}: {m}", i + 1));
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_ascii_lowercase();
        let mut cols: Vec<(String, Type)> = Vec::new();
        for w in words {
            let (c, t) = w.split_once(':').ok_or_else(|| bad(format!("'{w}' is not col:type")))?;
            let ty = parse_type(t).ok_or_else(|| bad(format!("unknown type '{t}': use int, bigint, decimal(p,s), date or text")))?;
            cols.push((c.to_ascii_lowercase(), ty));
        }
        if cols.is_empty() {
            return Err(bad(format!("table {name} has no columns")));
        }
        let refs: Vec<(&str, Type)> = cols.iter().map(|(c, t)| (c.as_str(), *t)).collect();
        out.push(Schema::new(&name, &refs));
    }
    Ok(out)
}

/// A host binary's exit: the error (after `prefix`) on stderr.
pub fn exit(prefix: &str, r: std::result::Result<(), String>) -> std::process::ExitCode {
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prefix}{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields() {
        assert_eq!(split_csv(r#"1,"a,b","say ""hi""",x"#).unwrap(), ["1", "a,b", "say \"hi\"", "x"]);
        assert_eq!(split_csv("a,,").unwrap(), ["a", "", ""]);
        assert!(split_csv(r#"1,"open"#).is_err());
        assert!(split_csv(r#"1,"a"b"#).is_err());
    }

    #[test]
    fn schema_file() {
        let s = parse_schema("# sales\nsales id:bigint price:decimal(12,3) day:date who:text\n").unwrap();
        assert_eq!(s[0].columns[1].ty, Type::Decimal(3));
        assert!(parse_schema("t a:float").unwrap_err().msg.contains("line 1"));
    }
}

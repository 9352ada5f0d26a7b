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
    /// Sort the rows by this column before storing them (the whole table
    /// is then held in memory): row groups get narrow zone maps on it.
    pub sort_by: Option<usize>,
}

/// A sort key: the column's value as stored.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Num(i128),
    Text(String),
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

/// The fields of one line: CSV, or `|`-separated with an optional `|`
/// after the last field.
fn split_line(line: &str, csv: bool, ncols: usize) -> std::result::Result<Vec<String>, &'static str> {
    if csv {
        return split_csv(line);
    }
    let mut f: Vec<String> = line.split('|').map(String::from).collect();
    if f.len() == ncols + 1 && f.last().is_some_and(|l| l.is_empty()) {
        f.pop();
    }
    Ok(f)
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
        let mut sorted: Vec<(Key, u64, String)> = Vec::new();
        for line in BufReader::with_capacity(1 << 20, f).lines() {
            lineno += 1;
            let line = line.map_err(|e| input_err(path, lineno, e))?;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                continue;
            }
            let fields = split_line(line, csv, ncols).map_err(|e| input_err(path, lineno, e))?;
            if csv
                && lineno == 1
                && fields.len() == ncols
                && fields.iter().zip(&inp.schema.columns).all(|(a, c)| a.eq_ignore_ascii_case(&c.name))
            {
                continue;
            }
            if let Some(c) = inp.sort_by {
                let col = &inp.schema.columns[c];
                let f = fields.get(c).ok_or_else(|| input_err(path, lineno, "too few fields"))?;
                let key = match col.ty {
                    Type::Text => Key::Text(f.clone()),
                    ty => Key::Num(
                        crate::storage::parse_field(f, ty)
                            .map_err(|e| input_err(path, lineno, format!("column {}: {e}", col.name)))?,
                    ),
                };
                sorted.push((key, lineno, line.to_string()));
                continue;
            }
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            t.push_text(&refs).map_err(|e| input_err(path, lineno, e.msg))?;
            if t.rows() % 1_000_000 == 0 {
                progress(&format!("{}: {} rows", inp.schema.name, t.rows()));
            }
        }
        if !sorted.is_empty() {
            progress(&format!("{}: sorting {} rows", inp.schema.name, sorted.len()));
            sorted.sort();
            for (_, lineno, line) in sorted {
                let fields = split_line(&line, csv, ncols).map_err(|e| input_err(path, lineno, e))?;
                let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
                t.push_text(&refs).map_err(|e| input_err(path, lineno, e.msg))?;
                if t.rows() % 1_000_000 == 0 {
                    progress(&format!("{}: {} rows", inp.schema.name, t.rows()));
                }
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
            Some(path) => out.push(Input { schema, path, sort_by: None }),
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

//! Result tables and their CSV form. Numbers are formatted with fixed
//! precision through `core::fmt`, so the text is as deterministic as the values.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// A named table of text cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// File stem, e.g. `api_bimodal`.
    pub name: String,
    /// Column names.
    pub header: Vec<&'static str>,
    /// Rows, as many cells as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new(name: impl Into<String>, header: &[&'static str]) -> Self {
        Self {
            name: name.into(),
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    /// CSV text: header line, then one line per row.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.header.join(","));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// The cells of column `name` (empty if there is no such column).
    pub fn column(&self, name: &str) -> Vec<&str> {
        match self.header.iter().position(|h| *h == name) {
            Some(i) => self.rows.iter().map(|r| r[i].as_str()).collect(),
            None => Vec::new(),
        }
    }
}

/// A number with `digits` decimals; `inf` for infinity.
pub fn num(x: f64, digits: usize) -> String {
    if x.is_infinite() {
        return String::from("inf");
    }
    let mut s = String::new();
    let _ = write!(s, "{x:.digits$}");
    s
}

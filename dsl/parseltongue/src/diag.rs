//! Compiler-style diagnostics: every error points at a span of a named file,
//! says what was expected, and suggests the closest known word.
//!
//! A [`Diag`] is one error inside one file (the parser and checker produce
//! these); [`Diagnostics`] owns the files and renders them with
//! `codespan-reporting`, the same format `hallows check` uses for manifests.

use std::fmt;
use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term::{self, termcolor};

/// Index of a file inside a [`Diagnostics`].
pub type FileId = usize;

/// One error in one file. `related` spans may be in other files (a type
/// defined by the peer's spec, a manifest entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub span: Range<usize>,
    pub message: String,
    pub label: String,
    pub help: Vec<String>,
    pub notes: Vec<String>,
    /// `(file, span, text)`; `file = None` means the same file as the error.
    pub related: Vec<(Option<FileId>, Range<usize>, String)>,
}

impl Diag {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Diag { span, message: message.into(), label: String::new(), help: Vec::new(), notes: Vec::new(), related: Vec::new() }
    }
    pub fn with_label(mut self, text: impl Into<String>) -> Self {
        self.label = text.into();
        self
    }
    pub fn with_help(mut self, text: impl Into<String>) -> Self {
        self.help.push(text.into());
        self
    }
    pub fn with_note(mut self, text: impl Into<String>) -> Self {
        self.notes.push(text.into());
        self
    }
    pub fn with_related(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.related.push((None, span, text.into()));
        self
    }
    pub fn with_related_in(mut self, file: FileId, span: Range<usize>, text: impl Into<String>) -> Self {
        self.related.push((Some(file), span, text.into()));
        self
    }
    /// Adds "did you mean `x`?" when a candidate is close to `word`.
    pub fn suggest<'a>(self, word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(word, candidates) {
            Some(best) => self.with_help(format!("did you mean `{best}`?")),
            None => self,
        }
    }
}

/// A diagnostic located for tools and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

/// Files and the errors found in them.
#[derive(Clone, Default)]
pub struct Diagnostics {
    files: SimpleFiles<String, String>,
    nfiles: usize,
    items: Vec<(Option<FileId>, Diag)>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source file. What is kept (and echoed) is the source with its
    /// control characters made harmless; offsets and columns are unchanged.
    pub fn add_file(&mut self, name: &str, src: &str) -> FileId {
        self.nfiles += 1;
        self.files.add(hallows_source::sanitize(name), hallows_source::sanitize(src))
    }

    pub fn file_name(&self, file: FileId) -> &str {
        self.files.get(file).map(|f| f.name().as_str()).unwrap_or("")
    }

    pub fn source(&self, file: FileId) -> &str {
        self.files.get(file).map(|f| f.source().as_str()).unwrap_or("")
    }

    /// Records an error in `file`.
    pub fn push(&mut self, file: FileId, d: Diag) {
        self.items.push((Some(file), d));
    }

    /// Records an error that belongs to no file (an unreadable path).
    pub fn push_global(&mut self, message: impl Into<String>) {
        self.items.push((None, Diag::new(0..0, message)));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Moves every error and file of `other` into `self`.
    pub fn extend(&mut self, other: Diagnostics) {
        let base = self.nfiles;
        for id in 0..other.nfiles {
            self.add_file(other.file_name(id), other.source(id));
        }
        for (f, mut d) in other.items {
            for r in &mut d.related {
                r.0 = Some(r.0.unwrap_or(f.unwrap_or(0)) + base);
            }
            self.items.push((f.map(|f| f + base), d));
        }
    }

    fn clamp(&self, file: FileId, span: &Range<usize>) -> Range<usize> {
        let src = self.source(file);
        let fix = |mut i: usize| {
            i = i.min(src.len());
            while !src.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let start = fix(span.start);
        start..fix(span.end).max(start)
    }

    /// Sorts by file, then position (the report order).
    pub fn sort(&mut self) {
        self.items.sort_by_key(|(f, d)| (f.map_or(0, |f| f + 1), d.span.start));
    }

    /// Every error as `(file, line, col, message)`, in report order.
    pub fn located(&self) -> Vec<Located> {
        self.items
            .iter()
            .map(|(f, d)| match f {
                Some(f) => {
                    let (line, col) = self
                        .files
                        .location(*f, self.clamp(*f, &d.span).start)
                        .map_or((0, 0), |l| (l.line_number, l.column_number));
                    Located { file: self.file_name(*f).to_owned(), line, col, message: d.message.clone() }
                }
                None => Located { file: String::new(), line: 0, col: 0, message: d.message.clone() },
            })
            .collect()
    }

    /// The raw errors, in report order.
    pub fn items(&self) -> impl Iterator<Item = &Diag> {
        self.items.iter().map(|(_, d)| d)
    }

    /// Messages quote values from the source: each is printed clipped (see
    /// [`hallows_source::clip`]) and with its control characters replaced.
    fn to_codespan(&self, f: Option<FileId>, d: &Diag) -> CsDiagnostic<FileId> {
        let text = |t: &str| hallows_source::sanitize(&hallows_source::clip(t));
        let mut labels = Vec::new();
        if let Some(f) = f {
            labels.push(Label::primary(f, self.clamp(f, &d.span)).with_message(text(&d.label)));
        }
        for (rf, span, t) in &d.related {
            if let Some(rf) = rf.or(f) {
                labels.push(Label::secondary(rf, self.clamp(rf, span)).with_message(text(t)));
            }
        }
        let notes = d.notes.iter().map(|n| text(n)).chain(d.help.iter().map(|h| format!("help: {}", text(h)))).collect();
        CsDiagnostic::error().with_message(text(&d.message)).with_labels(labels).with_notes(notes)
    }

    /// Writes the errors, then a count line, with colour if `out` has it: at
    /// most [`hallows_source::MAX_ERRORS`] (then a line saying how many more
    /// there are), each source line echoed at most
    /// [`hallows_source::MAX_ECHO_COLUMNS`] characters wide.
    pub fn emit(&self, out: &mut dyn termcolor::WriteColor) -> std::io::Result<()> {
        let config = term::Config::default();
        for (f, d) in self.items.iter().take(hallows_source::MAX_ERRORS) {
            match f.and_then(|f| self.long_line(f, d)) {
                Some(text) => out.write_all(text.as_bytes())?,
                None => term::emit(out, &config, &self.files, &self.to_codespan(*f, d)).map_err(std::io::Error::other)?,
            }
        }
        let n = self.items.len();
        if let Some(line) = hallows_source::aborting(n) {
            out.write_all(line.as_bytes())?;
        }
        writeln!(out, "{n} error{} found", if n == 1 { "" } else { "s" })
    }

    /// An error on a line too long to echo, as an excerpt; `None` otherwise.
    fn long_line(&self, f: FileId, d: &Diag) -> Option<String> {
        let place = |file: FileId, span: &Range<usize>| hallows_source::Place { file: self.file_name(file), src: self.source(file), span: (span.start, span.end) };
        let related: Vec<_> = d.related.iter().map(|(rf, span, text)| (place(rf.unwrap_or(f), span), text.as_str())).collect();
        let notes: Vec<String> = d.notes.iter().cloned().chain(d.help.iter().map(|h| format!("help: {h}"))).collect();
        hallows_source::render_if_long(place(f, &d.span), &related, &d.message, &notes)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = termcolor::NoColor::new(Vec::new());
        self.emit(&mut buf).map_err(|_| fmt::Error)?;
        f.write_str(&String::from_utf8_lossy(&buf.into_inner()))
    }
}

impl fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.located().iter().map(|l| l.to_string())).finish()
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `word`, if any is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

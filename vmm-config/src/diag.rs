//! Diagnostics: every problem found in a manifest or board file, with the
//! sources they point into, rendered like compiler errors.
//!
//! Rendering is codespan-reporting's; this module only collects. It must not
//! decide what is an error: the checks do.

use std::fmt;
use std::ops::Range as Span;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term::{self, termcolor};

pub(crate) type FileId = usize;

/// One problem.
#[derive(Clone, Debug)]
pub(crate) struct Diagnostic {
    pub file: Option<FileId>,
    pub span: Span<usize>,
    pub message: String,
    pub label: String,
    pub help: Vec<String>,
    /// Other places that explain the problem ("first claimed here").
    pub related: Vec<(FileId, Span<usize>, String)>,
}

impl Diagnostic {
    pub fn help(&mut self, text: impl Into<String>) -> &mut Self {
        self.help.push(text.into());
        self
    }

    pub fn label(&mut self, text: impl Into<String>) -> &mut Self {
        self.label = text.into();
        self
    }

    pub fn related(
        &mut self,
        file: FileId,
        span: Span<usize>,
        text: impl Into<String>,
    ) -> &mut Self {
        self.related.push((file, span, text.into()));
        self
    }
}

/// All errors found while loading a manifest, sorted by file and position.
///
/// `Display` renders them as a compiler would (source snippet, underline,
/// help); [`Diagnostics::located`] gives plain positions for tests and tools.
#[derive(Clone)]
pub struct Diagnostics {
    files: SimpleFiles<String, String>,
    items: Vec<Diagnostic>,
    /// Errors counted but not kept (a parser that found thousands).
    skipped: usize,
}

/// One diagnostic reduced to plain data. Lines and columns count from 1;
/// both are 0 for a problem that has no position (an unreadable file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub help: Vec<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl Diagnostics {
    pub(crate) fn new() -> Self {
        Diagnostics {
            files: SimpleFiles::new(),
            items: Vec::new(),
            skipped: 0,
        }
    }

    pub(crate) fn io_error(message: String) -> Self {
        let mut d = Diagnostics::new();
        d.items.push(Diagnostic {
            file: None,
            span: 0..0,
            message,
            label: String::new(),
            help: Vec::new(),
            related: Vec::new(),
        });
        d
    }

    /// Adds a source file. What is kept (and echoed) is the source with its
    /// control characters made harmless; offsets and columns are unchanged.
    pub(crate) fn add_file(&mut self, name: &str, src: &str) -> FileId {
        self.files
            .add(hallows_source::sanitize(name), hallows_source::sanitize(src))
    }

    /// Counts `n` more errors that are not kept (see [`hallows_source::MAX_ERRORS`]).
    pub(crate) fn skip(&mut self, n: usize) {
        self.skipped += n;
    }

    pub(crate) fn source(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// Records an error at `span` of `file` and returns it for help and labels.
    pub(crate) fn error(
        &mut self,
        file: FileId,
        span: Span<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let span = self.clamp(file, span);
        self.items.push(Diagnostic {
            file: Some(file),
            span,
            message: message.into(),
            label: String::new(),
            help: Vec::new(),
            related: Vec::new(),
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    /// Keeps spans inside the source and on character boundaries, whatever a parser reported.
    fn clamp(&self, file: FileId, span: Span<usize>) -> Span<usize> {
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

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.skipped == 0
    }

    /// Errors found, including those counted but not kept.
    pub fn len(&self) -> usize {
        self.items.len() + self.skipped
    }

    pub(crate) fn sort(&mut self) {
        self.items
            .sort_by_key(|d| (d.file.map_or(0, |f| f + 1), d.span.start));
    }

    /// Every diagnostic as plain data, in report order.
    pub fn located(&self) -> Vec<Located> {
        self.items
            .iter()
            .map(|d| {
                let (file, line, col) = match d.file {
                    Some(f) => {
                        let name = self
                            .files
                            .get(f)
                            .map(|f| f.name().clone())
                            .unwrap_or_default();
                        match self.files.location(f, d.span.start) {
                            Ok(loc) => (name, loc.line_number, loc.column_number),
                            Err(_) => (name, 0, 0),
                        }
                    }
                    None => (String::new(), 0, 0),
                };
                Located {
                    file,
                    line,
                    col,
                    message: d.message.clone(),
                    help: d.help.clone(),
                }
            })
            .collect()
    }

    /// `(file, line, col, message)` of every diagnostic, in report order.
    pub fn plain(&self) -> Vec<(String, usize, usize, String)> {
        self.located()
            .into_iter()
            .map(|l| (l.file, l.line, l.col, l.message))
            .collect()
    }

    /// Messages quote values from the source: each is printed clipped (see
    /// [`hallows_source::clip`]) and with its control characters replaced.
    fn to_codespan(&self, d: &Diagnostic) -> CsDiagnostic<FileId> {
        let text = |t: &str| hallows_source::sanitize(&hallows_source::clip(t));
        let mut out = CsDiagnostic::error().with_message(text(&d.message));
        let mut labels = Vec::new();
        if let Some(f) = d.file {
            labels.push(Label::primary(f, d.span.clone()).with_message(text(&d.label)));
        }
        for (f, span, t) in &d.related {
            labels.push(Label::secondary(*f, self.clamp(*f, span.clone())).with_message(text(t)));
        }
        out = out.with_labels(labels);
        out.with_notes(d.help.iter().map(|h| format!("help: {}", text(h))).collect())
    }

    /// Writes the diagnostics to `out`, with colour if `out` supports it: at
    /// most [`hallows_source::MAX_ERRORS`] (then a line saying how many more
    /// there are), each source line echoed at most
    /// [`hallows_source::MAX_ECHO_COLUMNS`] characters wide.
    pub fn emit(&self, out: &mut dyn termcolor::WriteColor) -> std::io::Result<()> {
        let config = term::Config::default();
        for d in self.items.iter().take(hallows_source::MAX_ERRORS) {
            match self.long_line(d) {
                Some(text) => out.write_all(text.as_bytes())?,
                None => term::emit(out, &config, &self.files, &self.to_codespan(d))
                    .map_err(std::io::Error::other)?,
            }
        }
        let n = self.len();
        out.set_color(termcolor::ColorSpec::new().set_bold(true))?;
        if let Some(line) = hallows_source::aborting(n) {
            out.write_all(line.as_bytes())?;
        }
        writeln!(out, "{n} error{} found", if n == 1 { "" } else { "s" })?;
        out.reset()
    }

    /// A diagnostic on a line too long to echo, as an excerpt; `None` otherwise.
    fn long_line(&self, d: &Diagnostic) -> Option<String> {
        let f = d.file?;
        let place = |file: FileId, span: &Span<usize>| hallows_source::Place {
            file: self.files.get(file).map_or("", |x| x.name().as_str()),
            src: self.source(file),
            span: (span.start, span.end),
        };
        let related: Vec<_> = d.related.iter().map(|(rf, span, text)| (place(*rf, span), text.as_str())).collect();
        let help: Vec<String> = d.help.iter().map(|h| format!("help: {h}")).collect();
        hallows_source::render_if_long(place(f, &d.span), &related, &d.message, &help)
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
        f.debug_list()
            .entries(self.located().iter().map(|l| l.to_string()))
            .finish()
    }
}

impl std::error::Error for Diagnostics {}

/// `did you mean `x`?` for the closest candidate, if any is close enough.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

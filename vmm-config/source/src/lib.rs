//! Untrusted source text: the manifests, board files and Parseltongue specs
//! `hallows` reads, and the lines of them it echoes in diagnostics.
//!
//! This crate owns the limits every front end of the host tool shares: only
//! regular files are read, never more than [`MAX_SOURCE_SIZE`] bytes, and
//! opening one never blocks (a FIFO or `/dev/stdin` is refused, not waited
//! on); a report shows at most [`MAX_ERRORS`] errors; an echoed line is at
//! most [`MAX_ECHO_COLUMNS`] characters, with control characters (which
//! could move the cursor or forge other output on a terminal) shown as `?`.
//! It never decides what is an error in a file: the checks do.
#![forbid(unsafe_code)]

use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// Largest manifest, board file or spec read, in bytes (1 MiB).
pub const MAX_SOURCE_SIZE: u64 = 1 << 20;
/// Errors shown in one report; the rest are counted ("aborting after ...").
pub const MAX_ERRORS: usize = 50;
/// Characters of a source line echoed in a diagnostic; a longer line is
/// shown as a window around the error, with `…` where it was cut.
pub const MAX_ECHO_COLUMNS: usize = 200;

/// Reads `path` as UTF-8 text: only a regular file (following symlinks), of
/// at most [`MAX_SOURCE_SIZE`] bytes. The error says why, without the path
/// (the caller names the file in its own words).
pub fn read(path: &Path) -> Result<String, String> {
    // Look before opening: opening a FIFO for reading blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    refuse_non_file(&meta)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Should the path be swapped for a FIFO after the look: never wait.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| e.to_string())?;
    refuse_non_file(&file.metadata().map_err(|e| e.to_string())?)?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SOURCE_SIZE {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn too_large() -> String {
    format!("it is larger than {MAX_SOURCE_SIZE} bytes (1 MiB), the most hallows reads")
}

fn refuse_non_file(meta: &std::fs::Metadata) -> Result<(), String> {
    let t = meta.file_type();
    if t.is_file() {
        return if meta.len() > MAX_SOURCE_SIZE { Err(too_large()) } else { Ok(()) };
    }
    let what = if t.is_dir() {
        "a directory"
    } else {
        special_kind(&t)
    };
    Err(format!("it is {what}, not a regular file"))
}

#[cfg(unix)]
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

/// Whether `path` lies inside `root`, both resolved (symlinks followed).
/// A path that does not exist is resolved as far as it exists and the rest
/// is applied to that by name (`..` included), so the answer does not
/// depend on whether the file exists: a manifest cannot probe for files
/// outside the project by the error it gets.
pub fn is_inside(path: &Path, root: &Path) -> bool {
    let Ok(root) = root.canonicalize() else { return false };
    resolve(path).is_some_and(|p| p.starts_with(root))
}

/// `path` made absolute: its longest existing ancestor canonicalized, the
/// remaining components applied by name.
fn resolve(path: &Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let mut base = path;
    let mut rest = Vec::new();
    let mut resolved = loop {
        if let Ok(p) = if base.as_os_str().is_empty() { Path::new(".").canonicalize() } else { base.canonicalize() } {
            break p;
        }
        rest.push(base.file_name().map(Component::Normal).or_else(|| base.components().next_back())?);
        base = base.parent()?;
    };
    for c in rest.into_iter().rev() {
        match c {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(n) => resolved.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(resolved)
}

/// Whether `c` must not reach a terminal raw: C0 and C1 controls (but tab
/// and line feed), and the Unicode bidirectional overrides and isolates
/// that reorder what a line appears to say.
pub fn is_unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `src` with every unsafe character (see [`is_unsafe_char`]) but the CR of
/// a CRLF replaced by characters of the same UTF-8 length (`?`, `¿`, `�`),
/// so byte offsets and columns into `src` stay valid in the result.
pub fn sanitize(src: &str) -> String {
    if !src.chars().any(is_unsafe_char) {
        return src.to_owned();
    }
    let mut out = String::with_capacity(src.len());
    for (i, c) in src.char_indices() {
        if c == '\r' && src[i + 1..].starts_with('\n') {
            out.push(c);
        } else if is_unsafe_char(c) {
            out.push(match c.len_utf8() {
                1 => '?',
                2 => '\u{BF}',
                _ => '\u{FFFD}',
            });
        } else {
            out.push(c);
        }
    }
    out
}

/// The first character that does not belong in a text file (as
/// [`is_unsafe_char`]; a CR is fine only before a LF), its byte span, and
/// how many such characters there are in all.
pub fn first_control(src: &str) -> Option<(Range<usize>, char, usize)> {
    let bad = |(i, c): &(usize, char)| {
        is_unsafe_char(*c) && !(*c == '\r' && src[i + 1..].starts_with('\n'))
    };
    let mut it = src.char_indices().filter(bad);
    let (i, c) = it.next()?;
    Some((i..i + c.len_utf8(), c, 1 + it.count()))
}

/// How a control character is named in a message: `U+000D (carriage return)`.
pub fn describe_char(c: char) -> String {
    let name = match c {
        '\r' => " (carriage return without a line feed)",
        '\0' => " (NUL)",
        '\u{1b}' => " (escape)",
        '\u{7f}' => " (delete)",
        '\u{200E}'..='\u{2069}' => " (bidirectional text control)",
        _ => "",
    };
    format!("U+{:04X}{name}", c as u32)
}

/// Longest line of a message, label or note printed, in characters: a
/// message quotes the value it is about, and a hostile value can be a
/// megabyte long.
pub const MAX_MESSAGE_CHARS: usize = 400;
/// Most lines of one message or note printed (a note may show a definition).
pub const MAX_MESSAGE_LINES: usize = 100;

/// `text` with each line cut to at most [`MAX_MESSAGE_CHARS`] characters
/// (its beginning and its end, which says what is wrong, around a `…`), and
/// at most [`MAX_MESSAGE_LINES`] lines.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    let long = |l: &str| l.len() > MAX_MESSAGE_CHARS && l.chars().nth(MAX_MESSAGE_CHARS).is_some();
    let lines = text.lines().count();
    if lines <= MAX_MESSAGE_LINES && !text.lines().any(long) {
        return text.into();
    }
    let mut out: Vec<String> = text
        .lines()
        .take(MAX_MESSAGE_LINES)
        .map(|l| {
            if !long(l) {
                return l.to_owned();
            }
            let n = l.chars().count();
            let head: String = l.chars().take(MAX_MESSAGE_CHARS * 2 / 3).collect();
            let tail: String = l.chars().skip(n - MAX_MESSAGE_CHARS / 3).collect();
            format!("{head}…{tail}")
        })
        .collect();
    if lines > MAX_MESSAGE_LINES {
        out.push(format!("… ({} more lines)", lines - MAX_MESSAGE_LINES));
    }
    out.join("\n").into()
}

/// The line holding byte `offset` of `src`: its 1-based number, the 1-based
/// column (in characters) of `offset`, and the line's text (without its end).
pub fn line_at(src: &str, offset: usize) -> (usize, usize, &str) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line = src[..start].bytes().filter(|&b| b == b'\n').count() + 1;
    let col = src[start..offset].chars().count() + 1;
    (line, col, src[start..end].trim_end_matches('\r'))
}

/// Whether any line from the one holding byte `start` to the one holding
/// byte `end` is longer than [`MAX_ECHO_COLUMNS`] characters (a multi-line
/// label echoes them all); such a place is shown as an excerpt, see
/// [`render_excerpt`].
fn spans_long_line(src: &str, start: usize, end: usize) -> bool {
    let clamp = |mut i: usize| {
        i = i.min(src.len());
        while !src.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (start, end) = (clamp(start), clamp(end.max(start)));
    let first = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let last = src[end..].find('\n').map_or(src.len(), |i| end + i);
    src[first..last]
        .split('\n')
        .any(|l| l.len() > MAX_ECHO_COLUMNS && l.chars().nth(MAX_ECHO_COLUMNS).is_some())
}

/// At most [`MAX_ECHO_COLUMNS`] characters of `line` around column `col`
/// (1-based), with `…` where it was cut, and the column of `col` in the
/// excerpt (1-based).
pub fn excerpt(line: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_ECHO_COLUMNS {
        return (line.to_owned(), col);
    }
    let half = MAX_ECHO_COLUMNS / 2;
    let first = col.saturating_sub(1).saturating_sub(half).min(chars.len() - MAX_ECHO_COLUMNS);
    let last = first + MAX_ECHO_COLUMNS;
    let mut out = String::new();
    let mut at = col - first;
    if first > 0 {
        out.push('…');
        at += 1;
    }
    out.extend(&chars[first..last]);
    if last < chars.len() {
        out.push('…');
    }
    (out, at)
}

/// A diagnostic on a long line, in the layout codespan-reporting uses for
/// the others (which would echo the whole line): message, location, an
/// excerpt of the line with a caret, then the notes.
pub fn render_excerpt(file: &str, src: &str, offset: usize, message: &str, notes: &[String]) -> String {
    let (line, col, text) = line_at(src, offset);
    let (shown, at) = excerpt(&sanitize(text), col);
    let gutter = " ".repeat(line.to_string().len());
    let mut out = format!(
        "error: {}\n{gutter} ┌─ {}:{line}:{col}\n{gutter} │\n{line} │ {shown}\n{gutter} │ {}^\n",
        sanitize(&clip(message)),
        sanitize(&clip(file)),
        " ".repeat(at - 1)
    );
    for n in notes {
        out.push_str(&format!("{gutter} = {}\n", sanitize(&clip(n))));
    }
    out.push('\n');
    out
}

/// A span of a named source, for [`render_if_long`].
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub file: &'a str,
    pub src: &'a str,
    pub span: (usize, usize),
}

/// A diagnostic whose primary or related spans lie on a line longer than
/// [`MAX_ECHO_COLUMNS`], rendered as an excerpt of its primary line (the
/// related places become notes with their location); `None` when every
/// line is short enough for the renderer to echo whole.
pub fn render_if_long(primary: Place<'_>, related: &[(Place<'_>, &str)], message: &str, notes: &[String]) -> Option<String> {
    let long = |p: &Place<'_>| spans_long_line(p.src, p.span.0, p.span.1);
    if !long(&primary) && !related.iter().any(|(p, _)| long(p)) {
        return None;
    }
    let mut all: Vec<String> = related
        .iter()
        .map(|(p, text)| {
            let (line, col, _) = line_at(p.src, p.span.0);
            format!("note: {text}: {}:{line}:{col}", p.file)
        })
        .collect();
    all.extend(notes.iter().cloned());
    Some(render_excerpt(primary.file, primary.src, primary.span.0, message, &all))
}

/// The line that ends a report cut at [`MAX_ERRORS`], if `total` is over it.
pub fn aborting(total: usize) -> Option<String> {
    (total > MAX_ERRORS).then(|| {
        format!(
            "error: aborting after {MAX_ERRORS} errors ({} more not shown); fix these first\n",
            total - MAX_ERRORS
        )
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn confinement_does_not_depend_on_existence() {
        let root = std::env::temp_dir().join(format!("hallows-source-inside-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).expect("scratch dir");
        std::fs::write(root.join("sub/real.toml"), "x").expect("file");
        assert!(is_inside(&root.join("sub/real.toml"), &root));
        assert!(is_inside(&root.join("sub/missing.toml"), &root));
        assert!(is_inside(&root.join("missing/dir/../x.toml"), &root));
        assert!(!is_inside(&root.join("../outside.toml"), &root));
        assert!(!is_inside(&root.join("missing/../../outside.toml"), &root));
        assert!(!is_inside(&root.join("sub/../../../etc/passwd"), &root));
        assert!(!is_inside(Path::new("/etc/hallows-no-such-file"), &root));
        let _ = std::fs::remove_dir_all(&root);
    }

    use super::*;

    #[test]
    fn clip_keeps_both_ends() {
        let long = format!("name \"{}\" must start with a letter", "x".repeat(10_000));
        let c = clip(&long);
        assert!(c.starts_with("name \"xxx") && c.ends_with("\" must start with a letter"), "{c}");
        assert!(c.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert_eq!(clip("short\nlines"), "short\nlines");
        let many = "line\n".repeat(1000);
        assert!(clip(&many).ends_with("… (900 more lines)"), "{}", clip(&many));
    }

    #[test]
    fn sanitize_keeps_offsets_and_columns() {
        let src = "a\rb\r\nc\u{1b}[2J\u{85}\u{202E}d\n";
        let s = sanitize(src);
        assert_eq!(s.len(), src.len());
        assert_eq!(s.chars().count(), src.chars().count());
        assert_eq!(s, "a?b\r\nc?[2J\u{BF}\u{FFFD}d\n");
    }

    #[test]
    fn first_control_counts_bare_carriage_returns_only() {
        assert_eq!(first_control("a\r\nb\n"), None);
        let (span, c, n) = first_control("ab\r\r\r\n\rx").unwrap();
        assert_eq!((span, c, n), (2..3, '\r', 3));
    }

    #[test]
    fn long_lines_are_echoed_as_a_window_with_the_caret_in_place() {
        let line = format!("{}X{}", "a".repeat(1000), "b".repeat(1000));
        let (shown, at) = excerpt(&line, 1001);
        assert!(shown.starts_with('…') && shown.ends_with('…'));
        assert_eq!(shown.chars().nth(at - 1), Some('X'));
        assert!(shown.chars().count() <= MAX_ECHO_COLUMNS + 2);
        let (shown, at) = excerpt(&line, 1);
        assert_eq!((shown.chars().next(), at), (Some('a'), 1));
        let r = render_excerpt("f.toml", &format!("x\n{line}\n"), 1002, "bad", &["help: fix it".into()]);
        let src = format!("a = [\n{line}\n]\n");
        assert!(spans_long_line(&src, 4, src.len() - 1) && !spans_long_line(&src, 0, 3));
        assert!(r.contains("f.toml:2:1001") && r.len() < 1000, "{r}");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        for (path, why) in [("/dev/zero", "character device"), ("/dev/stdin", "not a regular file"), ("/", "a directory")] {
            let p = Path::new(path);
            if p.exists() {
                let err = read(p).unwrap_err();
                assert!(err.contains(why), "{path}: {err}");
            }
        }
    }
}

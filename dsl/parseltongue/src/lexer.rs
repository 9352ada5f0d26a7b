//! Turns spec text into tokens with byte spans.
//!
//! It owns the token vocabulary (words, numbers with unit suffixes, strings,
//! punctuation) and never decides what a word means: keywords are words the
//! parser looks for, so a misspelled keyword reaches the parser as a word and
//! gets a "did you mean".

// A syntax error ends the parse, so the (large) error value is built at
// most once per spec: not worth boxing.
#![allow(clippy::result_large_err)]

use std::ops::Range;

use crate::diag::Diag;

/// One token and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Tok,
    pub span: Range<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// `[A-Za-z_][A-Za-z0-9_]*`: a name or a keyword.
    Word(String),
    /// Digits (with `_` separators; `0x` hex allowed) and an optional
    /// alphabetic unit glued to them (`2us`, `60hz`, `16KiB`).
    Number { value: u128, unit: String },
    /// A double-quoted string without escapes.
    Str(String),
    Punct(char),
    Eof,
}

impl Tok {
    /// How the token is named in "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Number { value, unit } => format!("number `{value}{unit}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Eof => "end of file".into(),
        }
    }
}

const PUNCT: &[char] = &['{', '}', '(', ')', '[', ']', '<', '>', ';', ':', ',', '='];

/// Splits `src` into tokens, ending with [`Tok::Eof`]. Stops at the first
/// character that cannot start a token.
pub fn lex(src: &str) -> Result<Vec<Token>, Diag> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = src[i..].chars().next().unwrap_or('\0');
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
        } else if src[i..].starts_with("//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token { kind: Tok::Word(src[start..i].to_owned()), span: start..i });
        } else if c.is_ascii_digit() {
            let (radix, digits_at) = if src[i..].starts_with("0x") || src[i..].starts_with("0X") {
                (16, i + 2)
            } else {
                (10, i)
            };
            i = digits_at;
            while i < bytes.len() && (bytes[i].is_ascii_hexdigit() && (radix == 16 || bytes[i].is_ascii_digit()) || bytes[i] == b'_') {
                i += 1;
            }
            let digits: String = src[digits_at..i].chars().filter(|&c| c != '_').collect();
            let value = u128::from_str_radix(&digits, radix).map_err(|_| {
                Diag::new(start..i, format!("`{}` is not a number this compiler can represent", &src[start..i]))
            })?;
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Token {
                kind: Tok::Number { value, unit: src[unit_start..i].to_owned() },
                span: start..i,
            });
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] != b'"' {
                return Err(Diag::new(start..i, "unterminated string").with_label("the string starts here and the line ends before its closing `\"`"));
            }
            i += 1;
            out.push(Token { kind: Tok::Str(src[start + 1..i - 1].to_owned()), span: start..i });
        } else if PUNCT.contains(&c) {
            i += 1;
            out.push(Token { kind: Tok::Punct(c), span: start..i });
        } else {
            let end = i + c.len_utf8();
            let mut d = Diag::new(start..end, format!("unexpected character `{}`", c.escape_debug()));
            if c == '#' {
                d = d.with_help("comments start with `//`");
            } else if c == '\'' {
                d = d.with_help("strings use double quotes");
            } else if c == '-' {
                d = d.with_help("numbers are unsigned; write a negative enum value as an unsigned one");
            }
            return Err(d);
        }
    }
    out.push(Token { kind: Tok::Eof, span: src.len()..src.len() });
    Ok(out)
}

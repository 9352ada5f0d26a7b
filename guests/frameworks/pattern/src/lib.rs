//! The `pattern` validation: a small regular-expression subset that always
//! matches in time linear in the input (no backtracking), checked when the
//! spec is compiled (Parseltongue calls [`compile`]) and matched against
//! the whole value at run time.
//!
//! Syntax: a sequence of atoms, each with an optional quantifier.
//! * atoms: a literal character; `\` + one of `\.[]{}()*+?^$|-/` (the
//!   character itself); `.` (any character); `\d` (ASCII digit), `\w`
//!   (ASCII letter, digit or `_`), `\s` (ASCII whitespace); a class
//!   `[...]` of characters and ranges `a-z`, negated with a leading `^`,
//!   which may hold `\d \w \s` and escaped characters;
//! * quantifiers: `?` `*` `+` `{n}` `{n,}` `{n,m}` (n, m at most 1,000);
//! * a leading `^` and a trailing `$` are accepted and change nothing: the
//!   pattern always matches the whole value.
//!
//! Groups and alternation are refused (use `one_of` for a set of words).
//! The matcher keeps, for each atom, the set of input positions where it
//! can start, so a value of n characters costs O(atoms × n) steps whatever
//! the pattern.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

/// Largest `{n,m}` bound.
pub const MAX_REPEAT: u32 = 1000;
/// Most atoms in one pattern.
pub const MAX_ATOMS: usize = 64;

/// A set of characters one atom matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// `.`
    Any,
    /// Inclusive ranges; `negated` matches every character outside them.
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Class {
    fn matches(&self, c: char) -> bool {
        match self {
            Class::Any => true,
            Class::Set { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// One atom and how many times it repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atom {
    pub class: Class,
    pub min: u32,
    /// `u32::MAX`: unbounded.
    pub max: u32,
}

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    atoms: Vec<Atom>,
}

/// Why a pattern does not compile: the character offset and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// Offset in characters from the start of the pattern.
    pub at: usize,
    pub reason: &'static str,
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const SPACE: &[(char, char)] = &[('\t', '\r'), (' ', ' ')];

/// Compiles `src` (see the module's syntax).
pub fn compile(src: &str) -> Result<Pattern, PatternError> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut end = chars.len();
    if chars.first() == Some(&'^') {
        i = 1;
    }
    if end > i && chars[end - 1] == '$' && (end < 2 || chars[end - 2] != '\\') {
        end -= 1;
    }
    let err = |at: usize, reason: &'static str| PatternError { at, reason };
    let mut atoms: Vec<Atom> = Vec::new();
    while i < end {
        let c = chars[i];
        let class =
            match c {
                '(' | ')' | '|' => return Err(err(
                    i,
                    "groups and alternation are not supported (use `one_of` for a set of words)",
                )),
                '*' | '+' | '?' | '{' => {
                    return Err(err(i, "a quantifier must follow something to repeat"))
                }
                '}' | ']' => return Err(err(i, "unbalanced bracket: escape it with `\\`")),
                '^' | '$' => {
                    return Err(err(
                        i,
                        "`^` and `$` are allowed only at the start and the end",
                    ))
                }
                '.' => {
                    i += 1;
                    Class::Any
                }
                '\\' => {
                    let (set, next) = escape(&chars, i, end)?;
                    i = next;
                    Class::Set {
                        negated: false,
                        ranges: set,
                    }
                }
                '[' => {
                    let (class, next) = bracket(&chars, i, end)?;
                    i = next;
                    class
                }
                _ => {
                    i += 1;
                    Class::Set {
                        negated: false,
                        ranges: vec![(c, c)],
                    }
                }
            };
        let (min, max, next) = quantifier(&chars, i, end)?;
        i = next;
        if atoms.len() == MAX_ATOMS {
            return Err(err(i, "a pattern has at most 64 atoms"));
        }
        atoms.push(Atom { class, min, max });
    }
    Ok(Pattern { atoms })
}

/// `\x` at `i`: the characters it stands for and the next offset.
fn escape(
    chars: &[char],
    i: usize,
    end: usize,
) -> Result<(Vec<(char, char)>, usize), PatternError> {
    let Some(&e) = chars.get(i + 1).filter(|_| i + 1 < end) else {
        return Err(PatternError {
            at: i,
            reason: "a pattern cannot end with `\\`",
        });
    };
    let set = match e {
        'd' => DIGIT.to_vec(),
        'w' => WORD.to_vec(),
        's' => SPACE.to_vec(),
        '.' | '[' | ']' | '{' | '}' | '(' | ')' | '*' | '+' | '?' | '^' | '$' | '|' | '-' | '/'
        | '\\' => vec![(e, e)],
        _ => {
            return Err(PatternError {
                at: i,
                reason: "unknown escape: use \\d \\w \\s or escape one of .[]{}()*+?^$|-/\\",
            })
        }
    };
    Ok((set, i + 2))
}

fn bracket(chars: &[char], start: usize, end: usize) -> Result<(Class, usize), PatternError> {
    let mut i = start + 1;
    let negated = chars.get(i) == Some(&'^') && i < end;
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if i >= end {
            return Err(PatternError {
                at: start,
                reason: "`[` without its `]`",
            });
        }
        let c = chars[i];
        if c == ']' {
            if ranges.is_empty() {
                return Err(PatternError {
                    at: i,
                    reason: "an empty class `[]` matches nothing",
                });
            }
            return Ok((Class::Set { negated, ranges }, i + 1));
        }
        let lo = if c == '\\' {
            let (set, next) = escape(chars, i, end)?;
            i = next;
            if set.len() != 1 || set[0].0 != set[0].1 {
                ranges.extend(set);
                continue;
            }
            set[0].0
        } else {
            i += 1;
            c
        };
        if chars.get(i) == Some(&'-') && i + 1 < end && chars[i + 1] != ']' {
            let hi_at = i + 1;
            let hi = if chars[hi_at] == '\\' {
                let (set, next) = escape(chars, hi_at, end)?;
                i = next;
                match set.as_slice() {
                    [(a, b)] if a == b => *a,
                    _ => {
                        return Err(PatternError {
                            at: hi_at,
                            reason: "a range ends at one character",
                        })
                    }
                }
            } else {
                i = hi_at + 1;
                chars[hi_at]
            };
            if hi < lo {
                return Err(PatternError {
                    at: hi_at,
                    reason: "a range runs backwards",
                });
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

fn quantifier(chars: &[char], i: usize, end: usize) -> Result<(u32, u32, usize), PatternError> {
    let Some(&q) = chars.get(i).filter(|_| i < end) else {
        return Ok((1, 1, i));
    };
    Ok(match q {
        '?' => (0, 1, i + 1),
        '*' => (0, u32::MAX, i + 1),
        '+' => (1, u32::MAX, i + 1),
        '{' => {
            let close = (i + 1..end)
                .find(|&j| chars[j] == '}')
                .ok_or(PatternError {
                    at: i,
                    reason: "`{` without its `}`",
                })?;
            let body: alloc::string::String = chars[i + 1..close].iter().collect();
            let num = |s: &str| -> Result<u32, PatternError> {
                match s.parse::<u32>() {
                    Ok(n)
                        if n <= MAX_REPEAT
                            && !s.is_empty()
                            && s.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        Ok(n)
                    }
                    _ => Err(PatternError {
                        at: i,
                        reason: "a repeat count is a number from 0 to 1000",
                    }),
                }
            };
            let (min, max) = match body.split_once(',') {
                None => {
                    let n = num(&body)?;
                    (n, n)
                }
                Some((a, "")) => (num(a)?, u32::MAX),
                Some((a, b)) => (num(a)?, num(b)?),
            };
            if max < min {
                return Err(PatternError {
                    at: i,
                    reason: "`{n,m}` needs n <= m",
                });
            }
            (min, max, close + 1)
        }
        _ => (1, 1, i),
    })
}

impl Pattern {
    /// Whether the whole of `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        // reach[p]: the current atom can start at position p.
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        let mut next = vec![false; n + 1];
        for atom in &self.atoms {
            next.iter_mut().for_each(|r| *r = false);
            // Sweep: `start` is the latest reachable position p <= q - min
            // such that every character from p to q matches; q is
            // reachable when q - start <= max. Starts before a character
            // that does not match are forgotten.
            let mut run_from = 0; // first position of the current run of matching characters
            let mut starts: Vec<usize> = Vec::new(); // reachable positions in the run, ascending
            let mut k = 0; // index into `starts` of the latest start <= q - min
            for q in 0..=n {
                if q > 0 && !atom.class.matches(chars[q - 1]) {
                    run_from = q;
                    starts.clear();
                    k = 0;
                }
                if reach[q] && q >= run_from {
                    starts.push(q);
                }
                let limit = q.checked_sub(atom.min as usize);
                let Some(limit) = limit else { continue };
                while k + 1 < starts.len() && starts[k + 1] <= limit {
                    k += 1;
                }
                if let Some(&p) = starts.get(k) {
                    if p <= limit && (atom.max == u32::MAX || q - p <= atom.max as usize) {
                        next[q] = true;
                    }
                }
            }
            core::mem::swap(&mut reach, &mut next);
        }
        reach[n]
    }

    /// The atoms (Parseltongue writes them into the generated code).
    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }

    /// Builds a pattern from atoms (the generated code's constant form).
    pub fn from_atoms(atoms: Vec<Atom>) -> Self {
        Pattern { atoms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        compile(p).unwrap().matches(s)
    }

    #[test]
    fn matches_whole_values() {
        assert!(m("[a-z0-9-]+", "hello-42"));
        assert!(!m("[a-z0-9-]+", "Hello"));
        assert!(!m("[a-z0-9-]+", ""));
        assert!(m("^\\d{3}-\\d{4}$", "555-1234"));
        assert!(!m("\\d{3}-\\d{4}", "555-12345"));
        assert!(m("a.*b", "axxxb"));
        assert!(m("a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(m("[^ ]+@[^ ]+\\.[a-z]{2,}", "me@example.org"));
        assert!(!m("[^ ]+@[^ ]+\\.[a-z]{2,}", "me@example"));
        assert!(m("colou?r", "color") && m("colou?r", "colour"));
        assert!(m("x{0}y", "y"));
        assert!(m("[\\w.]+", "a_b.c9"));
        assert!(m("é+", "éé"));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for (p, at) in [
            ("(a|b)", 0),
            ("a|b", 1),
            ("*a", 0),
            ("[a-", 0),
            ("a{2,1}", 1),
            ("a{1001}", 1),
            ("\\q", 0),
            ("[z-a]", 3),
            ("[]", 1),
            ("a\\", 1),
        ] {
            assert_eq!(compile(p).map_err(|e| e.at), Err(at), "{p}");
        }
    }

    /// The reference: plain backtracking over the same atoms.
    fn slow(atoms: &[Atom], s: &[char]) -> bool {
        let Some((a, rest)) = atoms.split_first() else {
            return s.is_empty();
        };
        let mut n = 0usize;
        loop {
            if n as u64 >= a.min as u64 && slow(rest, &s[n..]) {
                return true;
            }
            if n as u64 >= a.max as u64 || n >= s.len() || !a.class.matches(s[n]) {
                return false;
            }
            n += 1;
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_backtracking(p in "(([ab.]|\\[ab\\]|\\[\\^a\\])([*+?]|\\{[0-2],[1-3]\\})?){0,5}", s in "[abc]{0,8}") {
            if let Ok(pat) = compile(&p) {
                let chars: Vec<char> = s.chars().collect();
                proptest::prop_assert_eq!(pat.matches(&s), slow(pat.atoms(), &chars), "{} on {}", p, s);
            }
        }
    }
}

//! The console contract between the hypervisor and the host tool.
//!
//! The hypervisor is the only writer of the console. Each line starts with
//! a bracketed name: `[hallows] ` for the hypervisor's own lines (a name no
//! partition may have), `[name] ` for a partition's. Partition text is
//! passed through [`sanitize`], so it holds no line break and nothing a
//! terminal would act on. The host tool therefore trusts a line as the
//! hypervisor's exactly when it starts with `[hallows] `, and reads the
//! system's status from the hypervisor's [`EXIT_STATUS`] line.

/// The name in the hypervisor's own console lines, reserved: no partition
/// may be called this.
pub const HYPERVISOR: &str = "hallows";

/// The hypervisor's last line, followed by the system's status (0 every
/// partition exited 0, 1 some did not, 2 boot failed, 3 hypervisor panic).
pub const EXIT_STATUS: &str = "machine exit status ";

/// The system's status as the hypervisor's console reports it: the last
/// `[hallows] machine exit status N` line of `output`, if any.
pub fn reported_status(output: &str) -> Option<i32> {
    output.lines().rev().find_map(|l| {
        l.strip_prefix("[")
            .and_then(|l| l.strip_prefix(HYPERVISOR))
            .and_then(|l| l.strip_prefix("] "))
            .and_then(|l| l.strip_prefix(EXIT_STATUS))
            .and_then(|s| s.trim_end_matches('\r').parse().ok())
    })
}

/// Length of a UTF-8 sequence cut off at the end of `bytes` (0 if none):
/// a lead byte in the last three whose sequence needs more bytes than
/// follow it.
pub fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        let need = match b {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            0x80..=0xbf => continue,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// Writes `bytes` as printable text through `out` (see the module docs for
/// what is escaped and how). Printable ASCII, most of any console line,
/// goes out in runs without decoding.
pub fn sanitize(bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
    let printable = |b: &u8| (0x20..0x7f).contains(b);
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = rest.iter().position(|b| !printable(b)).unwrap_or(rest.len());
        if n > 0 {
            out(&rest[..n]);
        }
        // Up to the next printable ASCII byte, which no UTF-8 sequence
        // contains: decoded and escaped as a whole.
        let m = rest[n..].iter().position(printable).map_or(rest.len(), |m| n + m);
        sanitize_other(&rest[n..m], out);
        rest = &rest[m..];
    }
}

/// Escapes text without printable ASCII.
fn sanitize_other(bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.utf8_chunks() {
        // Runs of characters that pass go out as one slice each.
        let valid = chunk.valid();
        let mut run = 0;
        for (at, ch) in valid.char_indices() {
            if ch != '\t' && !needs_escape(ch) {
                continue;
            }
            if run < at {
                out(&valid.as_bytes()[run..at]);
            }
            run = at + ch.len_utf8();
            if ch == '\t' {
                out(b" ");
            } else {
                let v = ch as u32;
                let digits = if v > 0xfff { 4 } else if v > 0xff { 3 } else { 2 };
                let mut e = [b'\\', b'u', b'{', 0, 0, 0, 0, b'}'];
                for i in 0..digits {
                    e[3 + i] = HEX[((v >> (4 * (digits - 1 - i))) & 0xf) as usize];
                }
                e[3 + digits] = b'}';
                out(&e[..4 + digits]);
            }
        }
        if run < valid.len() {
            out(&valid.as_bytes()[run..]);
        }
        for &b in chunk.invalid() {
            out(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
        }
    }
}

/// Characters a terminal would act on rather than show, or that change how
/// the text around them reads: C0 and C1 controls, DEL, the bidirectional
/// embeddings, overrides and isolates, and the line and paragraph
/// separators.
pub fn needs_escape(ch: char) -> bool {
    ch.is_control()
        || matches!(ch, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        || ch == '\u{feff}'
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    fn clean(bytes: &[u8]) -> String {
        let mut v = Vec::new();
        sanitize(bytes, &mut |s| v.extend_from_slice(s));
        String::from_utf8(v).expect("sanitized output is UTF-8")
    }

    #[test]
    fn printable_text_passes_and_controls_are_escaped() {
        assert_eq!(clean(b"hello, world"), "hello, world");
        assert_eq!(clean("grüße → 東京".as_bytes()), "grüße → 東京");
        assert_eq!(clean(b"a\tb"), "a b");
        assert_eq!(clean(b"\x1b[2J\r\x07"), "\\u{1b}[2J\\u{0d}\\u{07}");
        assert_eq!(clean(b"\x7f"), "\\u{7f}");
        // C1 controls as UTF-8 (CSI U+009B, OSC U+009D) and as raw bytes.
        assert_eq!(clean("\u{9b}31m\u{9d}0;x".as_bytes()), "\\u{9b}31m\\u{9d}0;x");
        assert_eq!(clean(b"\x9b31m\x9d"), "\\x9b31m\\x9d");
        assert_eq!(clean(b"\xff\xfe\xc3"), "\\xff\\xfe\\xc3");
        assert_eq!(clean("a\u{202e}b\u{2066}".as_bytes()), "a\\u{202e}b\\u{2066}");
        assert_eq!(clean("x\u{2028}y".as_bytes()), "x\\u{2028}y");
    }

    #[test]
    fn incomplete_sequences_at_a_split_are_kept() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail("ab\u{e9}".as_bytes()), 0);
        assert_eq!(incomplete_tail(&"ab\u{e9}".as_bytes()[..3]), 1);
        assert_eq!(incomplete_tail(&"a\u{6771}".as_bytes()[..3]), 2);
        assert_eq!(incomplete_tail(&"\u{1f600}".as_bytes()[..3]), 3);
        assert_eq!(incomplete_tail("\u{1f600}".as_bytes()), 0);
        assert_eq!(incomplete_tail(b"\xff"), 0);
    }

    #[test]
    fn only_the_hypervisors_line_reports_a_status() {
        assert_eq!(reported_status("[hallows] machine exit status 0\n"), Some(0));
        assert_eq!(reported_status("[hallows] machine exit status 1\r\n"), Some(1));
        assert_eq!(reported_status("[p] [hallows] machine exit status 0\n"), None);
        assert_eq!(reported_status(" [hallows] machine exit status 0\n"), None);
        assert_eq!(reported_status("[hallows]  machine exit status 0\n"), None);
        assert_eq!(
            reported_status("[hallows] machine exit status 1\n[hallows] machine exit status 0\n"),
            Some(0)
        );
    }

    /// Character by character, as the console escaped before it wrote
    /// passing runs as one slice.
    fn reference(bytes: &[u8]) -> String {
        let mut s = String::new();
        for chunk in bytes.utf8_chunks() {
            for ch in chunk.valid().chars() {
                if ch == '\t' {
                    s.push(' ');
                } else if needs_escape(ch) {
                    s.push_str(&std::format!("\\u{{{:02x}}}", ch as u32));
                } else {
                    s.push(ch);
                }
            }
            for &b in chunk.invalid() {
                s.push_str(&std::format!("\\x{b:02x}"));
            }
        }
        s
    }

    proptest::proptest! {
        #[test]
        fn runs_escape_as_single_characters_do(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            proptest::prop_assert_eq!(clean(&bytes), reference(&bytes));
        }

        #[test]
        fn text_with_escapes_escapes_as_single_characters_do(parts in proptest::collection::vec(proptest::sample::select(&["a", "\u{e9}", "\t", "\u{1b}", "\u{9b}", "\u{202e}", "\u{feff}", "\u{2028}", "\u{6771}", "\u{1f600}"][..]), 0..60)) {
            let text: String = parts.concat();
            proptest::prop_assert_eq!(clean(text.as_bytes()), reference(text.as_bytes()));
        }

        #[test]
        fn sanitized_text_has_no_control_characters(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let s = clean(&bytes);
            proptest::prop_assert!(!s.chars().any(needs_escape), "{s:?}");
            proptest::prop_assert!(!s.contains('\n'));
        }
    }
}

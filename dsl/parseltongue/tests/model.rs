//! Layouts, layout hashes and robustness of the front end.

use proptest::prelude::*;

fn model(body: &str) -> parseltongue::Model {
    let src = format!("parseltongue_version 1;\nservice s {{\n{body}\n}}\n");
    parseltongue::check_str("t.pt", &src).unwrap_or_else(|d| panic!("{d}")).model
}

fn layout(body: &str, name: &str) -> (u64, u64, Vec<String>) {
    let m = model(body);
    let s = m.struct_named(name).unwrap();
    let members = s
        .members
        .iter()
        .map(|mem| match mem {
            parseltongue::model::Member::Field { name, offset, size, .. } => format!("{name}@{offset}+{size}"),
            parseltongue::model::Member::Reserved { offset, size, .. } => format!("pad@{offset}+{size}"),
        })
        .collect();
    (s.size, s.align, members)
}

#[test]
fn c_layout_with_explicit_padding() {
    let (size, align, m) = layout("message_struct A { field a: u8; field b: u64; field c: u16; }", "A");
    assert_eq!((size, align), (24, 8));
    assert_eq!(m, ["pad@1+7", "b@8+8", "c@16+2", "pad@18+6"].iter().fold(vec!["a@0+1".to_string()], |mut v, s| {
        v.push(s.to_string());
        v
    }));
    let (size, align, _) = layout("message_struct B { field s: bounded_string<5>; field x: u32; }", "B");
    assert_eq!((size, align), (12, 4), "7 bytes of string, 1 pad, u32");
    let (size, align, _) = layout(
        "message_enum E: u16 { variant A = 1; }\n message_struct In { field e: E; field f: bool; }\n message_struct C { field i: [In; 3]; field z: u8; }",
        "C",
    );
    assert_eq!((size, align), (14, 2), "3 x 4 bytes, then a byte and one pad");
}

#[test]
fn the_hash_covers_names_types_order_and_nested_definitions() {
    let base = "message_enum E: u8 { variant A = 1; variant B = 2; }\n message_struct In { field e: E; }\n message_struct M { field x: u32; field y: In; }";
    let h = |body: &str| model(body).struct_named("M").unwrap().hash;
    let h0 = h(base);
    assert_eq!(h0, h(base), "stable");
    for changed in [
        base.replace("field x: u32", "field x: i32"),
        base.replace("field x: u32", "field z: u32"),
        base.replace("variant B = 2", "variant B = 3"),
        base.replace("variant B", "variant C"),
        base.replace("field e: E;", "field e: E; field g: u8;"),
        base.replace("field x: u32; field y: In;", "field y: In; field x: u32;"),
    ] {
        assert_ne!(h0, h(&changed), "hash ignores a change: {changed}");
    }
    // Declaration order of *types* does not matter, only their content.
    let reordered = "message_struct M { field x: u32; field y: In; }\n message_struct In { field e: E; }\n message_enum E: u8 { variant A = 1; variant B = 2; }";
    assert_eq!(h0, h(reordered));
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let src = "parseltongue_version 1;\nservice s {\n message_struct A { field x: u63; }\n message_struct B { field y: strin; }\n scheduler_class apii { }\n}\n";
    let d = parseltongue::check_str("t.pt", src).unwrap_err();
    let got: Vec<String> = d.located().iter().map(|l| format!("{}:{}", l.line, l.col)).collect();
    assert_eq!(got, ["3:30", "4:30", "5:18"]);
}

const VALID: &str = include_str!("../../../tests/specs/valid/users_api.pt");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary text never panics the compiler.
    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        let _ = parseltongue::check_str("f.pt", &src);
    }

    /// Valid specs with one byte replaced, or cut short, never panic it, and
    /// any error it reports points inside the file.
    #[test]
    fn mutated_specs_never_panic(at in 0..VALID.len(), byte in proptest::sample::select(vec![b' ', b';', b'{', b'}', b'<', b'9', b'x', b'"', b'\n', b'0'])) {
        let mut bytes = VALID.as_bytes().to_vec();
        bytes[at] = byte;
        for src in [String::from_utf8_lossy(&bytes).into_owned(), VALID[..VALID.floor_char_boundary(at)].to_string()] {
            match parseltongue::compile_str("f.pt", &src, &Default::default()) {
                Ok(code) => prop_assert!(code.contains("pub struct Service")),
                Err(d) => {
                    let lines = src.lines().count().max(1) + 1;
                    for l in d.located() {
                        prop_assert!(l.line >= 1 && l.line <= lines, "{l}");
                    }
                }
            }
        }
    }
}

/// Names a hostile spec uses: ordinary ones, Rust keywords (those raw
/// identifiers cover and those they do not), near-misses of the language's
/// own keywords, and names carrying control characters.
const HOSTILE_NAMES: &[&str] = &[
    "M", "x", "handle", "Self", "self", "crate", "super", "type", "fn", "match", "r#self", "_", "field", "service",
    "message_struct", "a\u{1b}[2Jb", "x\ry", "\u{202e}evil", "hallows",
];

/// Array types nested 0 to 3,000 deep, with lengths from 0 to past u64.
fn hostile_type() -> impl Strategy<Value = String> {
    (
        0usize..3000,
        proptest::sample::select(vec!["0", "1", "2", "65535", "65536", "4294967296", "18446744073709551615", "99999999999999999999999999999999999999999"]),
        proptest::sample::select(vec!["u8", "u64", "bool", "M", "E", "bounded_string<65535>", "bounded_bytes<0>", "Self"]),
    )
        .prop_map(|(depth, len, elem)| format!("{}{elem}{}", "[".repeat(depth), format!("; {len}]").repeat(depth)))
}

/// Specs built from hostile parts: deep and huge array types, unusable
/// names, control characters and runs of bare CRs, overlong lines.
fn hostile_spec() -> impl Strategy<Value = String> {
    let name = || proptest::sample::select(HOSTILE_NAMES);
    let junk = proptest::sample::select(vec!["", "\r", "\r\r\r\r\r\r\r\r", "\u{0}", "\u{1b}[31m", "\u{7f}", "\u{85}", "\u{2066}", "\t"]);
    (
        prop::collection::vec((name(), name(), hostile_type(), junk.clone()), 1..6),
        (name(), name(), name()),
        junk,
        0usize..200_000,
    )
        .prop_map(|(fields, (sname, chan, handler), junk, pad)| {
            let mut out = format!("parseltongue_version 1;\nservice {sname} {{\n");
            for (i, (s, f, ty, j)) in fields.iter().enumerate() {
                out += &format!("message_struct {s}{i} {{ field {f}: {ty}; }}{j}\n");
            }
            out += &format!("message_enum E: u8 {{ variant {sname} = 1; }}\nmessage_struct M {{ field x: u8; }}\n");
            out += &format!("receive_channel \"{chan}\" carrying M handled_by {handler};{junk}\n");
            // An overlong line, sometimes: a comment, or a run of spaces before an error.
            out += &" ".repeat(pad);
            out += "}\n";
            out
        })
}

/// What every answer to a hostile spec must be: code, or diagnostics that
/// are located, bounded in size and free of raw control characters.
fn check_hostile(src: &str) -> Result<(), TestCaseError> {
    match parseltongue::compile_str("h.pt", src, &Default::default()) {
        Ok(code) => prop_assert!(code.contains("pub struct Service")),
        Err(d) => {
            prop_assert!(!d.is_empty());
            for l in d.located() {
                prop_assert!(l.line >= 1 && l.col >= 1, "unlocated: {l}");
            }
            let out = d.to_string();
            // 50 errors, each with a line of at most 200 columns and its notes.
            prop_assert!(out.len() < 50 * 4096, "{} bytes of report", out.len());
            prop_assert!(!out.chars().any(hallows_source::is_unsafe_char), "raw control character in {out:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Hostile specs never panic or overflow the stack, and the report stays bounded and safe.
    #[test]
    fn hostile_specs_are_answered_with_bounded_located_reports(src in hostile_spec()) {
        check_hostile(&src)?;
    }

    /// Spec paths that are not regular files are refused, never read or waited on.
    #[test]
    fn spec_paths_that_are_not_files_are_refused(path in proptest::sample::select(vec!["/dev/zero", "/dev/stdin", "/dev/null", "/dev/urandom", "/", "/proc/self/fd/0", "/nonexistent.pt"])) {
        let d = parseltongue::check_file(std::path::Path::new(path)).unwrap_err();
        prop_assert!(d.located()[0].message.starts_with("cannot read spec"), "{d}");
    }
}

//! Hostile specs (issue 12, finding 7): whatever the input, the compiler
//! returns located diagnostics, never panics, never overflows its stack,
//! never emits a name the generated Rust cannot use, and its report stays
//! bounded and free of raw control characters.

use parseltongue::{check_str, compile_str, Diagnostics};

fn spec(body: &str) -> String {
    format!("parseltongue_version 1;\nservice s {{\n{body}\n}}\n")
}

/// The first diagnostic as `LINE:COL: message`, and the rendered report.
fn first_error(src: &str) -> (String, String) {
    let d: Diagnostics = match compile_str("h.pt", src, &Default::default()) {
        Ok(_) => panic!("accepted:\n{}", &src[..src.len().min(300)]),
        Err(d) => d,
    };
    let l = &d.located()[0];
    (format!("{}:{}: {}", l.line, l.col, l.message), d.to_string())
}

#[test]
fn nested_array_sizes_that_overflow_are_refused_at_the_field() {
    let src = spec("message_struct M {\n field x: [[[[u64; 65536]; 65536]; 65536]; 65536];\n}\nsend_channel \"c\" carrying M;");
    let (first, _) = first_error(&src);
    assert_eq!(first, "4:11: field `x` of `M` is more than 2^64 bytes; a message is at most 65536 bytes (the largest channel slot)");
    let src = spec("message_struct M {\n field ok: u8;\n field x: [[[u64; 65536]; 65536]; 2];\n}");
    let (first, _) = first_error(&src);
    assert_eq!(first, "5:11: field `x` of `M` is 68719476736 bytes; a message is at most 65536 bytes (the largest channel slot)");
    // Sizes that multiply past the limit but not past 4 GiB: the whole message.
    let src = spec("message_struct M {\n field ok: u8;\n field x: [[u64; 4096]; 4096];\n}");
    let (first, _) = first_error(&src);
    assert_eq!(first, "3:16: message_struct `M` is 134217736 bytes; a message is at most 65536 bytes (the largest channel slot)");
}

#[test]
fn array_types_nested_1400_deep_are_refused_not_a_stack_overflow() {
    let ty = format!("{}u8{}", "[".repeat(1400), "; 1]".repeat(1400));
    let src = spec(&format!("message_struct M {{ field x: {ty}; }}"));
    let (first, _) = first_error(&src);
    let col = "message_struct M { field x: ".len() + 33;
    assert_eq!(first, format!("3:{col}: array types nest more than 32 deep"));
    // 32 deep is fine.
    let ty = format!("{}u8{}", "[".repeat(32), "; 1]".repeat(32));
    check_str("h.pt", &spec(&format!("message_struct M {{ field x: {ty}; }}"))).unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn a_chain_of_thousands_of_structs_is_refused_not_a_stack_overflow() {
    let mut body = String::new();
    for i in 0..5000 {
        body += &format!("message_struct T{i} {{ field x: T{}; }}\n", i + 1);
    }
    let (first, _) = first_error(&spec(&body));
    assert_eq!(first, "259:1: a service declares at most 256 message types");
}

#[test]
fn names_the_generated_rust_cannot_use_are_refused_where_written() {
    let cases = [
        ("message_struct M { field self: u8; }", "3:26: `self` cannot name a field"),
        ("message_struct M { field crate: u8; }", "3:26: `crate` cannot name a field"),
        ("message_struct Self { field x: u8; }", "3:16: `Self` cannot name a type"),
        ("message_enum E: u8 { variant Self = 1; }", "3:30: `Self` cannot name a variant"),
        ("message_struct M { field x: u8; }\nreceive_channel \"c\" carrying M handled_by super;", "4:43: `super` cannot name a handler"),
        ("message_struct M { field x: u8; }\nsend_channel \"self\" carrying M;", "4:14: `self` cannot name a channel a spec uses"),
    ];
    for (body, want) in cases {
        let (first, _) = first_error(&spec(body));
        assert!(first.starts_with(want), "{body}: got {first}, want {want}");
    }
    // Ordinary keywords still work as raw identifiers.
    compile_str("h.pt", &spec("message_struct M { field type: u8; }\nsend_channel \"c\" carrying M;"), &Default::default()).unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn a_spec_over_the_size_limit_is_refused_unread() {
    let big = spec(&format!("// {}", "x".repeat(hallows_source::MAX_SOURCE_SIZE as usize)));
    let d = check_str("big.pt", &big).unwrap_err();
    assert!(d.located()[0].message.contains("at most 1048576 are read"), "{d}");
}

#[test]
fn special_files_are_refused_without_blocking() {
    for path in ["/dev/zero", "/dev/stdin", "/"] {
        let d = parseltongue::check_file(std::path::Path::new(path)).unwrap_err();
        assert!(d.located()[0].message.contains("not a regular file"), "{path}: {d}");
    }
}

#[test]
fn reports_are_capped_and_long_lines_excerpted() {
    // 2,000 badly named fields: 2,000 errors, 50 shown.
    let fields: String = (0..2000).map(|i| format!("field Bad{i}: u8; ")).collect();
    let src = spec(&format!("message_struct M {{ {fields} }}"));
    let d = check_str("h.pt", &src).unwrap_err();
    assert_eq!(d.len(), 2000);
    let out = d.to_string();
    assert!(out.contains("error: aborting after 50 errors (1950 more not shown); fix these first"), "{}", &out[out.len() - 300..]);
    assert!(out.len() < 50 * 1200, "{} bytes of report", out.len());
    // The 50th error is far into one long line: an excerpt around it, its column true.
    let col = "message_struct M { ".len() + (0..49).map(|i| format!("field Bad{i}: u8; ").len()).sum::<usize>() + "field ".len() + 1;
    assert!(out.contains(&format!("h.pt:3:{col}")), "{}", &out[out.len() - 800..]);
    assert!(out.contains("3 │ …d43: u8; field Bad44"), "{}", &out[out.len() - 800..]);
}

#[test]
fn control_characters_never_reach_the_report_raw() {
    // (A bare CR is whitespace to the lexer, like a line break.)
    for bad in ["\u{1b}[2J", "\u{7}", "\u{202e}", "\u{85}"] {
        let src = spec(&format!("message_struct M {{ field x: u8; }} {bad} oops"));
        let d = check_str("h.pt", &src).unwrap_err();
        let out = d.to_string();
        assert!(!out.chars().any(hallows_source::is_unsafe_char), "{bad:?}: {out:?}");
    }
}

#[test]
fn channels_whose_generated_names_collide_are_refused() {
    let (first, _) = first_error(&spec("message_struct M { field x: u8; }\nsend_channel \"a-b\" carrying M;\nsend_channel \"a_b\" carrying M;"));
    assert_eq!(first, "5:14: channels \"a-b\" and \"a_b\" would have the same name in the generated Rust");
}

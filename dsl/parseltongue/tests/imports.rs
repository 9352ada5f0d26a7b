//! `import_messages_from` (issue 15): message types shared through message
//! libraries instead of copied by hand. Paths resolve next to the importing
//! file; every type is generated once however often it is reached; the
//! layout hash of an imported type is that of the same type declared in
//! place; missing files, cycles, broken libraries and services imported as
//! libraries are errors at file:line:col.

use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/specs/imports")
}

fn check(name: &str) -> Result<parseltongue::Spec, parseltongue::Diagnostics> {
    parseltongue::check_file(&dir().join(name))
}

/// `file:line:col: message` of the first error, the file name only.
fn first_error(name: &str) -> String {
    let d = check(name).err().unwrap_or_else(|| panic!("{name} must be refused"));
    let l = &d.located()[0];
    format!("{}:{}:{}: {}", l.file.rsplit('/').next().unwrap_or(&l.file), l.line, l.col, l.message)
}

fn hash(spec: &parseltongue::Spec, ty: &str) -> u64 {
    spec.model.structs.iter().find(|s| s.name == ty).unwrap_or_else(|| panic!("no {ty}")).hash
}

#[test]
fn imported_types_are_usable_and_generated_once() {
    let client = check("client.pt").unwrap_or_else(|d| panic!("{d}"));
    let code = parseltongue::codegen::to_source(&client.model, &parseltongue::Options::default());
    for decl in ["pub struct Request {", "pub struct Reply {", "pub struct Operation(pub u8);", "pub struct BoundedString24 {"] {
        assert_eq!(code.matches(decl).count(), 1, "{decl}:\n{code}");
    }
    assert_eq!(client.imported.len(), 2, "{:?}", client.imported);
    // Through a Basilisk route as well.
    let server = check("server.pt").unwrap_or_else(|d| panic!("{d}"));
    let inline = check("server-inline.pt").unwrap_or_else(|d| panic!("{d}"));
    for ty in ["Request", "Reply"] {
        assert_eq!(hash(&client, ty), hash(&server, ty), "{ty}");
        assert_eq!(hash(&client, ty), hash(&inline, ty), "{ty}: imported and declared in place differ");
    }
}

#[test]
fn import_errors_are_reported_at_file_line_col() {
    assert!(first_error("missing.pt").starts_with("missing.pt:2:22: cannot read imported message library \"shared/nope.pt\""), "{}", first_error("missing.pt"));
    let cycle = first_error("uses-cycle.pt");
    assert!(cycle.starts_with("cycle-b.pt:2:22: import cycle: ") && cycle.contains("cycle-a.pt imports") && cycle.ends_with("cycle-a.pt"), "{cycle}");
    assert_eq!(first_error("imports-a-service.pt"), "imports-a-service.pt:2:22: \"client.pt\" is a service spec; `import_messages_from` takes a message library");
    // An error inside a library is shown in the library.
    assert_eq!(first_error("imports-bad-lib.pt"), "bad-lib.pt:4:18: unknown type `u63`");
    // A local declaration that repeats an imported name is the error.
    assert_eq!(first_error("redeclares.pt"), "redeclares.pt:4:20: type `Request` is declared twice");
    assert_eq!(first_error("library-with-channel.pt"), "library-with-channel.pt:4:5: a message_library declares only `message_struct` and `message_enum`, not `send_channel`");
}

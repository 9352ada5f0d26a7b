//! The `hallows` binary as a user runs it: `check` exit codes and
//! diagnostics over the whole manifest corpus, `inspect` and `schema`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn hallows(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hallows")).args(args).current_dir(root()).output().expect("run hallows");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn corpus(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/manifests").join(kind))
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_every_valid_manifest() {
    let files = corpus("valid");
    assert!(files.len() >= 5);
    for f in files.iter().chain([root().join("vmm-config/examples/demo.toml")].iter()) {
        let (code, out, err) = hallows(&["check", f.to_str().expect("utf-8 path")]);
        assert_eq!(code, 0, "{} rejected:\n{err}", f.display());
        assert!(out.contains("ok") || out.contains("OK") || !out.is_empty(), "no summary for {}", f.display());
    }
}

/// Every invalid manifest exits 1, and its first expected diagnostic is
/// printed with the manifest's own `FILE:LINE:COL` and the exact message.
#[test]
fn check_rejects_every_invalid_manifest_with_file_line_col() {
    let files = corpus("invalid");
    assert!(files.len() >= 40, "corpus has {} files", files.len());
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read");
        let expect = src
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", f.display()));
        let (code, _, err) = hallows(&["check", f.to_str().expect("utf-8 path")]);
        assert_eq!(code, 1, "{} was not rejected with status 1:\n{err}", f.display());
        // Board-file errors name the board file; manifest errors the manifest.
        let (file, rest) = match expect.split_once(".toml:") {
            Some((board, rest)) if !board.contains(' ') => (format!("{board}.toml"), rest),
            _ => (f.file_name().and_then(|n| n.to_str()).expect("name").to_string(), expect),
        };
        let (line, rest) = rest.split_once(':').expect("line");
        let (col, message) = rest.split_once(": ").expect("col and message");
        let location = format!("{file}:{line}:{col}");
        assert!(err.contains(&location), "{}: diagnostic does not point at {location}:\n{err}", f.display());
        assert!(err.contains(message.trim()), "{}: message `{message}` missing:\n{err}", f.display());
    }
}

#[test]
fn inspect_prints_the_demo_memory_map() {
    let (code, out, err) = hallows(&["inspect", "vmm-config/examples/demo.toml"]);
    assert_eq!(code, 0, "{err}");
    for name in ["frontend", "backend", "database"] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert!(out.contains("0x0041000000"), "placement missing from:\n{out}");
}

#[test]
fn schema_is_json_describing_partitions() {
    let (code, out, _) = hallows(&["schema"]);
    assert_eq!(code, 0);
    assert!(out.trim_start().starts_with('{'));
    assert!(out.contains("\"partition\""));
}

#[test]
fn build_refuses_a_system_whose_specs_disagree_before_building() {
    let (code, _, err) = hallows(&["build", "tests/specs/systems/mismatch.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the two ends of channel \"requests\" disagree on the message type"), "{err}");
    assert!(err.contains("its service specs do not match the manifest"), "{err}");
    // Refused before any build step ran or any image was written.
    assert!(!err.contains("Compiling"), "{err}");
}

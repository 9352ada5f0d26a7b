//! The spec corpus: every file in `tests/specs/invalid/` must be rejected
//! with exactly the first diagnostic its `// expect: LINE:COL: message`
//! line names (and each following `// help: text` line is one of its
//! help lines); every file in `tests/specs/valid/` must compile, and its
//! generated code must equal the snapshot in `tests/specs/snapshots/`
//! (regenerate with `PARSELTONGUE_BLESS=1`).

use std::path::{Path, PathBuf};

fn specs(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/specs").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pt"))
        .collect();
    files.sort();
    files
}

#[test]
fn invalid_specs_give_their_expected_first_diagnostic() {
    let files = specs("invalid");
    assert!(files.len() >= 25, "the invalid corpus has only {} specs", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        let expect = src
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `// expect: LINE:COL: message`", path.display()));
        let name = path.file_name().unwrap().to_str().unwrap();
        match parseltongue::check_str(name, &src) {
            Ok(_) => failures.push(format!("{name}: accepted, expected `{expect}`")),
            Err(d) => {
                let first = &d.located()[0];
                let helps = &d.items().next().unwrap().help;
                for want in src.lines().skip(1).map_while(|l| l.strip_prefix("// help: ")) {
                    if !helps.iter().any(|h| h == want) {
                        failures.push(format!("{name}: expected help `{want}`, got {helps:?}"));
                    }
                }
                let got = format!("{}:{}: {}", first.line, first.col, first.message);
                if got != expect {
                    failures.push(format!("{name}:\n  expected {expect}\n  got      {got}"));
                }
                // The rendered report must name the file and position.
                let text = d.to_string();
                assert!(text.contains(&format!("{name}:{}:{}", first.line, first.col)), "{name}: report lacks the location:\n{text}");
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} invalid specs failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn valid_specs_match_their_snapshots() {
    let bless = std::env::var_os("PARSELTONGUE_BLESS").is_some();
    let files = specs("valid");
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        let name = format!("tests/specs/valid/{}", path.file_name().unwrap().to_str().unwrap());
        let code = match parseltongue::compile_str(&name, &src, &parseltongue::Options::default()) {
            Ok(c) => c,
            Err(d) => panic!("{name} does not compile:\n{d}"),
        };
        let snap = path.parent().unwrap().parent().unwrap().join("snapshots").join(path.file_stem().unwrap()).with_extension("rs");
        if bless {
            std::fs::write(&snap, &code).unwrap();
            continue;
        }
        match std::fs::read_to_string(&snap) {
            Ok(old) if old == code => {}
            Ok(old) => {
                let line = old.lines().zip(code.lines()).position(|(a, b)| a != b).map_or(old.lines().count().min(code.lines().count()), |i| i) + 1;
                failures.push(format!("{name}: generated code differs from {} at line {line} (PARSELTONGUE_BLESS=1 to accept)", snap.display()));
            }
            Err(_) => failures.push(format!("{name}: no snapshot {} (PARSELTONGUE_BLESS=1 to create)", snap.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn generation_is_deterministic() {
    for path in specs("valid") {
        let src = std::fs::read_to_string(&path).unwrap();
        let a = parseltongue::compile_str("x.pt", &src, &Default::default()).unwrap();
        let b = parseltongue::compile_str("x.pt", &src, &Default::default()).unwrap();
        assert_eq!(a, b);
    }
}

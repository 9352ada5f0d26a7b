//! The manifest corpus: every file under `tests/manifests/valid` must load,
//! and every file under `tests/manifests/invalid` must be refused with the
//! diagnostics its `# expect:` lines give: the first is the first one
//! reported, any further ones are reported too. `# expect: LINE:COL: message` for a position in the manifest
//! itself, `# expect: FILE:LINE:COL: message` for one in another file (the
//! board file), FILE matching the end of the reported path.

use std::path::{Path, PathBuf};

use vmm_config::{load, CheckContext, Located};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn ctx() -> CheckContext {
    CheckContext {
        guests: Some(vec!["hello".into(), "counter".into(), "probe".into()]),
        // Paths stay inside the workspace, as `hallows check` has them.
        root: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
    }
}

#[derive(Debug)]
struct Expect {
    file: Option<String>,
    line: usize,
    col: usize,
    message: String,
}

fn parse_expect(text: &str) -> Option<Expect> {
    let (first, rest) = text.trim().split_once(':')?;
    let (file, line, rest) = match first.parse::<usize>() {
        Ok(line) => (None, line, rest),
        Err(_) => {
            let (line, rest) = rest.split_once(':')?;
            (Some(first.to_owned()), line.parse().ok()?, rest)
        }
    };
    let (col, message) = rest.split_once(':')?;
    Some(Expect {
        file,
        line,
        col: col.parse().ok()?,
        message: message.trim().to_owned(),
    })
}

fn expectations(src: &str) -> Vec<Expect> {
    src.lines()
        .filter_map(|l| l.strip_prefix("# expect:"))
        .map(|e| parse_expect(e).unwrap_or_else(|| panic!("malformed expect line: {e}")))
        .collect()
}

fn matches(e: &Expect, got: &Located, manifest: &Path) -> bool {
    let file_ok = match &e.file {
        Some(f) => got.file.ends_with(f.as_str()),
        None => Path::new(&got.file) == manifest,
    };
    file_ok && got.line == e.line && got.col == e.col && got.message == e.message
}

#[test]
fn valid_manifests_load() {
    let files = corpus("valid");
    assert!(files.len() >= 5, "too few valid manifests");
    for f in files {
        match load(&f, &ctx()) {
            Ok(system) => {
                assert!(!system.partitions.is_empty());
                system
                    .verify_layout()
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            }
            Err(d) => panic!("{} should be valid:\n{d}", f.display()),
        }
    }
}

#[test]
fn invalid_manifests_report_the_expected_errors() {
    let files = corpus("invalid");
    assert!(
        files.len() >= 40,
        "the invalid corpus has only {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).expect("readable corpus file");
        let expects = expectations(&src);
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            f.display()
        );
        let d = match load(f, &ctx()) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but should fail", f.display()));
                continue;
            }
            Err(d) => d,
        };
        let got = d.located();
        // The first expectation is the first diagnostic; any others appear somewhere.
        for (i, e) in expects.iter().enumerate() {
            let ok = if i == 0 {
                got.first().is_some_and(|g| matches(e, g, f))
            } else {
                got.iter().any(|g| matches(e, g, f))
            };
            if !ok {
                failures.push(format!(
                    "{}: diagnostic {i} should be {}{}:{}: {}\n  got: {}",
                    f.display(),
                    e.file
                        .as_deref()
                        .map(|f| format!("{f}:"))
                        .unwrap_or_default(),
                    e.line,
                    e.col,
                    e.message,
                    got.iter()
                        .map(|g| format!("{}:{}: {}", g.line, g.col, g.message))
                        .collect::<Vec<_>>()
                        .join("\n       ")
                ));
            }
        }
        // The rendered report names the file and position of every problem and has help.
        let rendered = d.to_string();
        for g in &got {
            let at = format!("{}:{}:{}", g.file, g.line, g.col);
            assert!(
                rendered.contains(&at),
                "{}: rendered report lacks {at}:\n{rendered}",
                f.display()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_error_has_a_position_and_most_have_help() {
    let mut with_help = 0;
    let mut total = 0;
    for f in corpus("invalid") {
        let d = load(&f, &ctx()).expect_err("invalid manifest");
        for g in d.located() {
            assert!(
                g.line > 0 && g.col > 0,
                "{}: {g} has no position",
                f.display()
            );
            total += 1;
            with_help += usize::from(!g.help.is_empty());
        }
    }
    assert!(
        with_help * 10 >= total * 7,
        "only {with_help} of {total} diagnostics have help"
    );
}

//! `make bench`'s harness (tools/bench/run-all, tools/bench/README.md)
//! over fake comparisons, in a scratch directory: the document is
//! assembled from the fragments in name order with a summary row per JSON
//! summary entry, and a comparison that fails (non-zero exit, no JSON) is
//! reported as failed and makes run-all exit non-zero. A second of work;
//! the real comparisons take minutes each and run only under `make bench`.
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hallows-bench-harness-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("cmp")).unwrap();
    d
}

/// A fake comparison: writes its fragment and (if `json`) its JSON, exits `rc`.
fn fake(dir: &Path, name: &str, rc: i32, json: Option<&str>) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("cmp").join(format!("compare-{name}"));
    let json_line = json.map_or(String::new(), |j| format!("printf '%s' '{j}' > \"$BENCH_OUT/{name}.json\"\n"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nprintf '## Fake {name}\\n\\nquick=%s\\n' \"$BENCH_QUICK\" > \"$BENCH_OUT/{name}.md\"\n{json_line}\
             echo '<svg/>' > \"$BENCH_DOC_IMG/bench-{name}-x.svg\"\nexit {rc}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run_all(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(root().join("tools/bench/run-all"))
        .args(["--dir", dir.join("cmp").to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()])
        .args(["--doc", dir.join("benchmarks.md").to_str().unwrap(), "--img", dir.join("img").to_str().unwrap()])
        .args(extra)
        .output()
        .expect("running tools/bench/run-all (python3)");
    let doc = std::fs::read_to_string(dir.join("benchmarks.md")).unwrap_or_default();
    (out.status.code().unwrap_or(-1), doc, String::from_utf8_lossy(&out.stdout).into_owned())
}

const OK_JSON: &str = r#"{"comparison":"NAME","title":"(T) TITLE","status":"ok","error":null,"summary":[{"label":"op one","op":"round trip","rusthallows_variant":"rv","rusthallows_instr_per_op":100,"best_linux_variant":"lv","best_linux_instr_per_op":2500,"ratio":25.0},{"label":"op two","op":"request","rusthallows_variant":"rv2","rusthallows_instr_per_op":10,"best_linux_variant":"lv2","best_linux_instr_per_op":35,"ratio":3.5},{"label":"op three","op":"request","unit":"emulated us","rusthallows_variant":"rv3","rusthallows_instr_per_op":41.25,"best_linux_variant":"lv3","best_linux_instr_per_op":412.5,"ratio":10.0}],"rows":[]}"#;

#[test]
fn run_all_assembles_the_document_in_name_order_with_a_summary() {
    let d = scratch("ok");
    fake(&d, "b-second", 0, Some(&OK_JSON.replace("NAME", "b-second").replace("TITLE", "second")));
    fake(&d, "a-first", 0, Some(&OK_JSON.replace("NAME", "a-first").replace("TITLE", "first")));
    let (rc, doc, out) = run_all(&d, &["--quick"]);
    assert_eq!(rc, 0, "{out}\n{doc}");
    let (a, b) = (doc.find("## Fake a-first").expect(&doc), doc.find("## Fake b-second").expect(&doc));
    assert!(a < b, "fragments out of name order:\n{doc}");
    assert!(doc.contains("quick=1"), "BENCH_QUICK not passed:\n{doc}");
    assert!(doc.contains("| (T) first | op one (round trip) | 100 (rv) | 2,500 (lv) | **25.0 x** |"), "{doc}");
    assert!(doc.contains("| (T) second | op two (request) | 10 (rv2) | 35 (lv2) | **3.5 x** |"), "{doc}");
    // A summary entry with a `unit` shows its values in that unit (a latency), not as instructions.
    assert!(doc.contains("| (T) second | op three (request) | 41.2 emulated us (rv3) | 412.5 emulated us (lv3) | **10.0 x** |"), "{doc}");
    assert!(doc.contains("not hardware speed"), "the header's rule is missing:\n{doc}");
    assert!(d.join("img/bench-a-first-x.svg").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_failed_comparison_is_reported_and_fails_the_run() {
    let d = scratch("fail");
    fake(&d, "a-good", 0, Some(&OK_JSON.replace("NAME", "a-good").replace("TITLE", "good")));
    fake(&d, "b-crashes", 3, None);
    fake(&d, "c-says-failed", 0, Some(r#"{"comparison":"c-says-failed","title":"c","status":"failed","error":"no kernel","summary":[],"rows":[]}"#));
    let (rc, doc, out) = run_all(&d, &[]);
    assert_eq!(rc, 1, "{out}\n{doc}");
    assert!(doc.contains("| b-crashes | **FAILED**: exited with status 3; no result"), "{doc}");
    assert!(doc.contains("## b-crashes: FAILED"), "{doc}");
    assert!(doc.contains("| c-says-failed | **FAILED**: reports status 'failed': no kernel"), "{doc}");
    assert!(doc.contains("| (T) good | op one"), "the good comparison is still summarised:\n{doc}");
    // --only: the others are not run and not reported as failed.
    let (rc, doc, out) = run_all(&d, &["--only", "a-good"]);
    assert_eq!(rc, 0, "{out}\n{doc}");
    assert!(!doc.contains("FAILED"), "{doc}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn only_keeps_the_other_comparisons_from_their_last_successful_run() {
    let d = scratch("only");
    fake(&d, "a-first", 0, Some(&OK_JSON.replace("NAME", "a-first").replace("TITLE", "first")));
    fake(&d, "b-second", 0, Some(&OK_JSON.replace("NAME", "b-second").replace("TITLE", "second")));
    let (rc, doc, out) = run_all(&d, &[]);
    assert_eq!(rc, 0, "{out}\n{doc}");
    // Rerun one: the other's section and summary rows stay, said to be kept.
    let (rc, doc, out) = run_all(&d, &["--only", "a-first"]);
    assert_eq!(rc, 0, "{out}\n{doc}");
    assert!(doc.contains("## Fake b-second"), "{doc}");
    assert!(doc.contains("| (T) second | op one (round trip)"), "{doc}");
    assert!(doc.contains("`compare-b-second` not run now (kept from the run of "), "{doc}");
    // One with no successful run behind it is listed as not run, not failed.
    fake(&d, "c-never", 0, None);
    let (rc, doc, out) = run_all(&d, &["--only", "a-first"]);
    assert_eq!(rc, 0, "{out}\n{doc}");
    assert!(doc.contains("| c-never | **NOT RUN**: not selected (--only)"), "{doc}");
    assert!(!doc.contains("FAILED") && doc.contains("## Fake b-second"), "{doc}");
    let _ = std::fs::remove_dir_all(&d);
}

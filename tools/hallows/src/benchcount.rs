//! `hallows bench-count`: instructions per core between the bench markers
//! of a deterministic run (docs/benchmarks.md).
//!
//! The system runs under `-icount shift=0,sleep=off` (the cores in turn on
//! one thread, at points fixed by the instruction count, so two runs
//! execute the same instructions) with the `insn-count` TCG plugin
//! (`tools/bench/plugin/insn-count.c`, built here with the host's C
//! compiler). The plugin counts each core's instructions in three classes
//! (the hypervisor's image, a kernel half address, everything else) and,
//! whenever a core executes the marker `hint #0x7f` (a NOP;
//! `hallows_rt::bench_mark`, Linux's `bench-mark` program), appends every
//! core's cumulative counts to the marks file. A waiting core sleeps in
//! `wfi`/`wfe` and executes nothing, so idle time costs no count; a core
//! that spins is counted, spin and all.
//!
//! The plugin is the tool's own instrument: `hallows run` and every
//! user-given QEMU argument still refuse `-plugin`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// Classes the plugin counts, in its order.
pub const CLASSES: [&str; 3] = ["hypervisor", "kernel", "other"];
/// vCPUs the plugin counts.
pub const VCPUS: usize = 16;

/// Builds the plugin from `tools/bench/plugin/insn-count.c` into
/// `target/bench/insn-count.so` (when the source is newer) and returns it.
pub fn build_plugin(root: &Path) -> Result<PathBuf> {
    let src = root.join("tools/bench/plugin/insn-count.c");
    let out = root.join("target/bench/insn-count.so");
    let newer = |a: &Path, b: &Path| match (std::fs::metadata(a).and_then(|m| m.modified()), std::fs::metadata(b).and_then(|m| m.modified())) {
        (Ok(a), Ok(b)) => a > b,
        _ => true,
    };
    if out.is_file() && !newer(&src, &out) {
        return Ok(out);
    }
    std::fs::create_dir_all(out.parent().expect("target/bench"))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .with_context(|| format!("running {cc} to build {}", src.display()))?;
    ensure!(st.success(), "building {} failed ({st}); a C compiler is needed (`make deps` installs gcc)", src.display());
    Ok(out)
}

/// One snapshot: the marker's sequence number, the core that ran it, and
/// every core's cumulative counts by class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub vcpu: usize,
    pub counts: Vec<[u64; 3]>,
}

/// Parses the plugin's file: `mark SEQ VCPU` and 3 x [`VCPUS`] counts per
/// line, and a final `exit` line with the counts only (ignored here).
pub fn parse_marks(text: &str) -> Result<Vec<Mark>> {
    let mut marks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"mark") => {
                ensure!(f.len() == 3 + 3 * VCPUS, "marks line {}: {} fields, expected {}", i + 1, f.len(), 3 + 3 * VCPUS);
                let n = |s: &str| s.parse::<u64>().with_context(|| format!("marks line {}: {s:?} is not a count", i + 1));
                let counts = f[3..].chunks(3).map(|c| Ok([n(c[0])?, n(c[1])?, n(c[2])?])).collect::<Result<Vec<_>>>()?;
                marks.push(Mark { seq: n(f[1])?, vcpu: n(f[2])? as usize, counts });
            }
            Some(&"exit") | None => {}
            Some(other) => bail!("marks line {}: unknown record {other:?}", i + 1),
        }
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_parse_and_bad_lines_are_refused() {
        let mut line = String::from("mark 3 1");
        for i in 0..3 * VCPUS {
            line.push_str(&format!(" {i}"));
        }
        let m = parse_marks(&format!("{line}\nexit 1 2 3\n")).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].seq, m[0].vcpu), (3, 1));
        assert_eq!(m[0].counts[1], [3, 4, 5]);
        assert!(parse_marks("mark 1 2 3").is_err());
        assert!(parse_marks(&line.replace(" 7 ", " x ")).is_err());
        assert!(parse_marks("what 1").is_err());
    }
}

//! The build-script entry point: compile a `.pt` file into `$OUT_DIR`.
//!
//! It owns the cargo protocol (`rerun-if-changed`, failing the build with
//! the rendered diagnostics) and nothing else.

use std::path::{Path, PathBuf};

use crate::Options;

/// Compiles `spec` (relative to the crate's manifest directory) to
/// `$OUT_DIR/<stem>.rs`; on errors prints them and exits the build script
/// with status 1. Returns the output path.
pub fn compile(spec: impl AsRef<Path>) -> PathBuf {
    compile_with(spec, &Options::default())
}

/// As [`compile`], with code generation options.
pub fn compile_with(spec: impl AsRef<Path>, opts: &Options) -> PathBuf {
    match try_compile(spec.as_ref(), opts) {
        Ok(path) => path,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(1);
        }
    }
}

/// As [`compile_with`], returning the rendered diagnostics instead of exiting.
pub fn try_compile(spec: &Path, opts: &Options) -> Result<PathBuf, String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_default();
    let out = std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or("OUT_DIR is not set: call this from a build script")?;
    let path = dir.join(spec);
    println!("cargo:rerun-if-changed={}", path.display());
    let src = std::fs::read_to_string(&path).map_err(|e| format!("cannot read spec {}: {e}", path.display()))?;
    let mut opts = opts.clone();
    opts.source_name.get_or_insert_with(|| spec.display().to_string());
    let code = crate::compile_str(&spec.display().to_string(), &src, &opts).map_err(|d| d.to_string())?;
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("service");
    let target = out.join(format!("{stem}.rs"));
    std::fs::write(&target, code).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(target)
}

//! The build-script entry point: compile a `.pt` file into `$OUT_DIR`.
//!
//! It owns the cargo protocol (`rerun-if-changed`, failing the build with
//! the rendered diagnostics) and the tie between a guest crate and its
//! spec: a guest (`Options::hallows_rt`) compiles only the spec its
//! Cargo.toml declares,
//!
//! ```toml
//! [package.metadata.hallows]
//! spec = "greeter.pt"
//! ```
//!
//! which is where `hallows check` learns the guest's channel types
//! ([`declared_spec`]) when the manifest names no `spec`.

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
    if opts.hallows_rt {
        let toml = dir.join("Cargo.toml");
        println!("cargo:rerun-if-changed={}", toml.display());
        let declared = declared_spec(&dir)?;
        let same = |d: &Path| match (d.canonicalize(), path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => d == path,
        };
        match declared {
            Some(d) if same(&d) => {}
            Some(d) => {
                return Err(format!(
                    "error: {}: [package.metadata.hallows] spec is {}, but the build script compiles {}: \
                     a guest compiles the spec its Cargo.toml declares (`hallows check` reads it there); make them the same",
                    toml.display(),
                    d.display(),
                    path.display()
                ))
            }
            None => {
                return Err(format!(
                    "error: {}: the build script compiles the spec {}, which the crate does not declare; add\n\n\
                     [package.metadata.hallows]\nspec = \"{}\"\n\n\
                     to it, so that `hallows check` checks this guest's channels even when the manifest names no spec",
                    toml.display(),
                    path.display(),
                    spec.display()
                ))
            }
        }
    }
    let src = std::fs::read_to_string(&path).map_err(|e| format!("cannot read spec {}: {e}", path.display()))?;
    let mut opts = opts.clone();
    opts.source_name.get_or_insert_with(|| spec.display().to_string());
    // Named by its full path, so that its imports resolve next to it.
    let checked = crate::check_str(&path.display().to_string(), &src).map_err(|d| d.to_string())?;
    for lib in &checked.imported {
        println!("cargo:rerun-if-changed={}", lib.display());
    }
    let code = crate::codegen::to_source(&checked.model, &opts);
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("service");
    let target = out.join(format!("{stem}.rs"));
    std::fs::write(&target, code).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(target)
}

/// The spec a guest crate in `crate_dir` declares in its Cargo.toml
/// (`[package.metadata.hallows] spec`, relative to the crate), or `None`.
/// `Err` says which file is unreadable or malformed, and where.
pub fn declared_spec(crate_dir: &Path) -> Result<Option<PathBuf>, String> {
    let path = crate_dir.join("Cargo.toml");
    let text = hallows_source::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| format!("error: {}: {e}", path.display()))?;
    let Some(meta) = doc.get("package").and_then(|p| p.get("metadata")).and_then(|m| m.get("hallows")) else {
        return Ok(None);
    };
    match meta.get("spec") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(crate_dir.join(s))),
        Some(_) => Err(format!("error: {}: [package.metadata.hallows] spec must be a string (a path relative to the crate)", path.display())),
    }
}

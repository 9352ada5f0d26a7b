//! Finding the workspace and the guest programs in it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where guest programs live: bootable services, and the guests the
/// integration tests boot. (`guests/runtime/` holds the libraries they
/// link: the runtime, the channel ring, networking, the gateway link.)
pub const GUEST_DIRS: &[&str] = &["guests/services", "guests/tests"];

/// The workspace root: the nearest ancestor of `start` whose Cargo.toml
/// declares `[workspace]`.
pub fn root_from(start: &Path) -> Result<PathBuf> {
    let start = start.canonicalize().with_context(|| format!("{} does not exist", start.display()))?;
    for dir in start.ancestors() {
        let toml = dir.join("Cargo.toml");
        if toml.is_file() && std::fs::read_to_string(&toml).is_ok_and(|s| s.contains("[workspace]")) {
            return Ok(dir.to_path_buf());
        }
    }
    bail!("no RustHallows workspace (a Cargo.toml with [workspace]) above {}", start.display())
}

/// The workspace this tool was built from (for tests and default paths).
pub fn own_root() -> PathBuf {
    // tools/hallows -> workspace root
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// Names of the guest programs: the crates under [`GUEST_DIRS`] with a
/// program (`src/main.rs`); a crate's directory name is its program name.
pub fn guests(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = GUEST_DIRS
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).into_iter().flatten().flatten())
        .filter(|e| e.path().join("Cargo.toml").is_file() && e.path().join("src/main.rs").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.dedup();
    names
}

pub fn check_context(root: &Path) -> vmm_config::CheckContext {
    vmm_config::CheckContext { guests: Some(guests(root)), root: Some(root.to_path_buf()) }
}

/// The directory of guest program `guest` (under [`GUEST_DIRS`]).
pub fn guest_dir(root: &Path, guest: &str) -> Option<PathBuf> {
    GUEST_DIRS.iter().map(|d| root.join(d).join(guest)).find(|d| d.join("Cargo.toml").is_file() && d.join("src/main.rs").is_file())
}

/// The Parseltongue spec guest `guest` compiles, as its crate declares it
/// (`[package.metadata.hallows] spec`, enforced by the build helper);
/// `None` for a guest without one or not in the workspace.
pub fn guest_spec(root: &Path, guest: &str) -> Result<Option<PathBuf>, String> {
    match guest_dir(root, guest) {
        Some(dir) => parseltongue::build::declared_spec(&dir),
        None => Ok(None),
    }
}

/// The service specs of a loaded system, cross-checked against it: those
/// the manifest names (`spec`) and, with a workspace `root`, those its
/// guests compile, so that a manifest without `spec` keys is checked too.
pub fn check_specs(root: Option<&Path>, sys: &vmm_config::System, manifest: &Path) -> Result<Vec<(String, parseltongue::Spec)>, parseltongue::Diagnostics> {
    match root {
        Some(root) => parseltongue::manifest::check_system(sys, manifest, &|g| guest_spec(root, g)),
        None => parseltongue::manifest::check_manifest(sys, manifest),
    }
}

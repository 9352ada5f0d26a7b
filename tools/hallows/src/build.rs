//! Building the hypervisor and guest binaries with cargo.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use vmm_config::Arch;

/// Where the built binaries are.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub hypervisor: PathBuf,
    pub guest_dir: PathBuf,
}

impl Artifacts {
    pub fn guest(&self, name: &str) -> PathBuf {
        self.guest_dir.join(name)
    }
}

/// Rust targets of the hypervisor and of guests for an architecture.
pub fn targets(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        // The hypervisor is soft-float: EL2 code never touches the FP/SIMD
        // registers, so a trap need not save the guest's.
        Arch::Aarch64 => ("aarch64-unknown-none-softfloat", "aarch64-unknown-none"),
        Arch::X86_64 => ("x86_64-unknown-none", "x86_64-unknown-none"),
    }
}

/// Builds the hypervisor and the named guests (release) for `arch`.
pub fn build(root: &Path, arch: Arch, guests: &[String]) -> Result<Artifacts> {
    let (hv_target, guest_target) = targets(arch);
    cargo(root, hv_target, &["hallows-hv".to_string()])?;
    if !guests.is_empty() {
        cargo(root, guest_target, guests)?;
    }
    Ok(Artifacts { hypervisor: root.join("target").join(hv_target).join("release/hallows-hv"), guest_dir: guest_dir(root, arch) })
}

/// Where the guests of `arch` are built (their ELF files, with symbols and
/// debug information).
pub fn guest_dir(root: &Path, arch: Arch) -> PathBuf {
    root.join("target").join(targets(arch).1).join("release")
}

/// The flags of every bare-metal build (hypervisor and guests alike, so
/// the crates they share are built once).
pub const FLAGS: &str = "-Cforce-frame-pointers=yes";

fn cargo(root: &Path, target: &str, packages: &[String]) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(["build", "--release", "--quiet", "--target", target]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // Flags meant for host builds (a loom cfg, sanitizers) must not leak into
    // bare-metal builds. The target directory is always the workspace's.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    // Frame pointers everywhere: the runtime's post-mortem walks the
    // frame-pointer chain, and gdb's backtraces need no unwind tables.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", FLAGS);
    let status = cmd.status().with_context(|| "running cargo")?;
    if !status.success() {
        bail!("cargo build --target {target} -p {} failed", packages.join(" -p "));
    }
    Ok(())
}

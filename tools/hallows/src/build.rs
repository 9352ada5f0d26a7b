//! Building the hypervisor and guest binaries with cargo.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use vmm_config::Arch;

use crate::workspace;

/// Where the built binaries are.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub hypervisor: PathBuf,
    pub guest_dir: PathBuf,
    /// Package name -> binary name, where they differ.
    pub bins: HashMap<String, String>,
    /// Package name -> where it was built, for the guests built in another
    /// workspace than the system's (the checkout's services).
    pub dirs: HashMap<String, PathBuf>,
}

impl Artifacts {
    /// The built binary of the guest package `name`.
    pub fn guest(&self, name: &str) -> PathBuf {
        let dir = self.dirs.get(name).unwrap_or(&self.guest_dir);
        dir.join(self.bins.get(name).map_or(name, String::as_str))
    }
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `--verbose`: cargo's own output (every crate compiled, its warnings)
/// passes through; otherwise cargo is quiet unless stderr is a terminal.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// A step of building or booting, on stderr (`hallows: ...`).
pub fn progress(what: &str) {
    eprintln!("hallows: {what}");
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

/// Builds the hypervisor and the named guests (package names, release) of
/// the workspace at `root` for `arch`. The hypervisor comes from the
/// workspace when it is a RustHallows checkout, else from
/// [`workspace::source_root`]; so do the guests the workspace takes from
/// the checkout ([`workspace::system_guests`]).
pub fn build(root: &Path, arch: Arch, guests: &[String]) -> Result<Artifacts> {
    let (hv_target, guest_target) = targets(arch);
    let hv_root = workspace::hypervisor_root(root)?;
    progress(&format!("building the hypervisor for {hv_target} (in {})", hv_root.display()));
    cargo(&hv_root, hv_target, &["hallows-hv".to_string()], &[])?;
    let found = workspace::system_guests(root)?;
    let (mut bins, mut dirs) = (HashMap::new(), HashMap::new());
    // Grouped by the workspace each is built in: the system's own first
    // (with any name it does not know, for cargo to refuse), then the
    // checkout's.
    let here = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mut groups: Vec<(PathBuf, Vec<String>)> = vec![(here.clone(), Vec::new())];
    for name in guests {
        let dir = found.iter().find(|g| &g.package == name).map_or(here.as_path(), |g| g.root.as_path());
        match groups.iter_mut().find(|(d, _)| d == dir) {
            Some((_, names)) => names.push(name.clone()),
            None => groups.push((dir.to_path_buf(), vec![name.clone()])),
        }
    }
    for (dir, names) in groups.iter().filter(|(_, names)| !names.is_empty()) {
        let place = if *dir == here { String::new() } else { format!(" (in {})", dir.display()) };
        progress(&format!("building guest{} {} for {guest_target}{place}", if names.len() == 1 { "" } else { "s" }, names.join(", ")));
        let ours: Vec<&workspace::Guest> = found.iter().filter(|g| names.contains(&g.package) && g.root == *dir).collect();
        cargo(dir, guest_target, names, &ours)?;
        for g in ours {
            if g.bin != g.package {
                bins.insert(g.package.clone(), g.bin.clone());
            }
            if *dir != here {
                dirs.insert(g.package.clone(), guest_dir(dir, arch));
            }
        }
    }
    Ok(Artifacts {
        hypervisor: hv_root.join("target").join(hv_target).join("release/hallows-hv"),
        guest_dir: guest_dir(root, arch),
        bins,
        dirs,
    })
}

/// Builds the EFI loader (`hallows-uefi`) for `arch` in the workspace
/// that provides the hypervisor; returns the `.efi` file.
pub fn build_loader(root: &Path, arch: Arch) -> Result<PathBuf> {
    let target = crate::uefi::loader_target(arch);
    let hv_root = workspace::hypervisor_root(root)?;
    progress(&format!("building the EFI loader for {target}"));
    cargo(&hv_root, target, &["hallows-uefi".to_string()], &[])?;
    Ok(hv_root.join("target").join(target).join("release/hallows-uefi.efi"))
}

/// Where the guests of `arch` are built in the workspace at `root` (their
/// ELF files, with symbols and debug information).
pub fn guest_dir(root: &Path, arch: Arch) -> PathBuf {
    root.join("target").join(targets(arch).1).join("release")
}

/// The flags of every bare-metal build (hypervisor and guests alike, so
/// the crates they share are built once).
pub const FLAGS: &str = "-Cforce-frame-pointers=yes";

fn cargo(root: &Path, target: &str, packages: &[String], guests: &[&workspace::Guest]) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(["build", "--release", "--target", target]);
    // Quiet where nobody watches (a pipe, a log); on a terminal cargo's
    // progress bar shows; --verbose passes all of cargo's output through.
    if !VERBOSE.load(Ordering::Relaxed) && !std::io::stderr().is_terminal() {
        cmd.arg("--quiet");
    }
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
        for g in guests {
            if let Some(hint) = linker_script_hint(g) {
                eprintln!("{hint}");
            }
        }
        bail!("cargo build --release --target {target} -p {} failed (in {}); its errors are above", packages.join(" -p "), root.display());
    }
    Ok(())
}

/// The line every guest's build script needs (else the link fails with
/// `undefined symbol: __guest_end`).
pub const LINKER_SCRIPT_LINE: &str = "println!(\"cargo:rustc-link-arg-bins=-Tguest.ld\");";

/// A hint for a guest whose build script does not link it with the
/// runtime's `guest.ld`.
fn linker_script_hint(g: &workspace::Guest) -> Option<String> {
    let build_rs = g.dir.join("build.rs");
    let has_line = std::fs::read_to_string(&build_rs).is_ok_and(|s| s.contains("-Tguest.ld"));
    (!has_line).then(|| {
        format!(
            "hint: guest `{}` is not linked with the runtime's linker script (an `undefined symbol: __guest_end` \
             above comes from that): {} needs `fn main() {{ {LINKER_SCRIPT_LINE} }}`",
            g.package,
            build_rs.display()
        )
    })
}

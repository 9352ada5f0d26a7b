//! `hallows new`: a project of one's own, outside this repository
//! (docs/first-system.md), and guests in it.
//!
//! A system project is a Cargo workspace whose members are `guests/*`; its
//! guests depend on the runtime (`hallows-rt`) of a RustHallows checkout by
//! path, and `hallows` builds the hypervisor from that checkout. A guest is
//! a crate with the runtime's linker-script line in its `build.rs`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::build::LINKER_SCRIPT_LINE;
use crate::workspace;

/// A name usable as a package, directory and partition name.
fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!("`{name}` is not a usable {what} name: use 1 to 31 lowercase letters, digits, `-` or `_`, starting with a letter");
    }
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    if path.exists() {
        bail!("{} already exists: hallows new never overwrites a file; pick another name or remove it", path.display());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The boards a scaffolded manifest may name.
pub const BOARDS: &[&str] = &["qemu-virt-aarch64", "qemu-x86_64", "qemu-microvm"];

/// A manifest with one partition running `guest`.
pub fn manifest(board: &str, guest: &str) -> String {
    format!(
        "# A RustHallows system (docs/manifest.md). `hallows run` this file.\n\
         version = 1\n\
         board = \"{board}\"\n\
         \n\
         [[partition]]\n\
         name = \"{guest}\"\n\
         cores = [1]\n\
         ram = \"8 MiB\"\n\
         guest = \"{guest}\"\n\
         on_fault = \"stop\"\n"
    )
}

/// `hallows new system DIR`: a workspace at `dir` (which must not exist)
/// with a guest `hello` and a manifest `<name>.toml` that boots it on
/// `board`. Returns the files written.
pub fn new_system(dir: &Path, board: &str) -> Result<Vec<PathBuf>> {
    let name = dir.file_name().and_then(|n| n.to_str()).context("the system needs a directory name")?;
    check_name(name, "system")?;
    if !BOARDS.contains(&board) {
        bail!("unknown board `{board}`: use one of {}", BOARDS.join(", "));
    }
    if dir.exists() {
        bail!("{} already exists: give `hallows new system` a new directory", dir.display());
    }
    if workspace::root_from(dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))).is_ok() {
        bail!(
            "{} would be inside another Cargo workspace: make the system somewhere else (its own directory, \
             outside any workspace), or add a guest to that workspace with `hallows new guest`",
            dir.display()
        );
    }
    let source = workspace::source_root()?;
    let rt = source.join("guests/runtime/rt");
    let rt = rt.to_str().context("the RustHallows checkout's path is not UTF-8")?;
    let mut written = Vec::new();
    let mut write = |rel: &str, text: &str| -> Result<()> {
        let p = dir.join(rel);
        write_new(&p, text)?;
        written.push(p);
        Ok(())
    };
    write(
        "Cargo.toml",
        &format!(
            "# A RustHallows system: its guests are the members; `hallows` finds\n\
             # them by package name. The runtime comes from the RustHallows checkout\n\
             # below (`hallows` builds the hypervisor there too; HALLOWS_SOURCE\n\
             # points it elsewhere).\n\
             [workspace]\n\
             resolver = \"2\"\n\
             members = [\"guests/*\"]\n\
             \n\
             [workspace.package]\n\
             edition = \"2021\"\n\
             version = \"0.1.0\"\n\
             \n\
             [workspace.dependencies]\n\
             hallows-rt = {{ path = {rt:?} }}\n\
             \n\
             [profile.release]\n\
             debug = true\n"
        ),
    )?;
    // The checkout's toolchain (with the bare-metal targets) and its
    // dependency versions: the system builds as RustHallows was tested.
    for f in ["rust-toolchain.toml", "Cargo.lock"] {
        let text = std::fs::read_to_string(source.join(f)).with_context(|| format!("reading {}", source.join(f).display()))?;
        write(f, &text)?;
    }
    write(".gitignore", "/target\n*.img\n")?;
    write(&format!("{name}.toml"), &manifest(board, "hello"))?;
    written.extend(new_guest_in(dir, "hello")?);
    Ok(written)
}

/// `hallows new guest NAME` in the workspace around `cwd`.
pub fn new_guest(cwd: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let root = workspace::root_from(cwd).context("`hallows new guest` runs inside a system's workspace (make one with `hallows new system DIR`)")?;
    new_guest_in(&root, name)
}

fn new_guest_in(root: &Path, name: &str) -> Result<Vec<PathBuf>> {
    check_name(name, "guest")?;
    // The workspace's own guests: one of its own may shadow a service of
    // the checkout (docs/first-system.md makes a `store`).
    if workspace::find_guests(root).unwrap_or_default().iter().any(|g| g.package == name) {
        bail!("the workspace at {} already has a guest `{name}`", root.display());
    }
    // This repository keeps its services under guests/services; a user's
    // workspace its guests under guests/.
    let in_repo = root.join("guests/runtime/rt/Cargo.toml").is_file();
    let dir = if in_repo { root.join("guests/services").join(name) } else { root.join("guests").join(name) };
    let (rt, package) = if in_repo {
        ("hallows-rt = { path = \"../../runtime/rt\" }", "version.workspace = true\nedition.workspace = true\nlicense.workspace = true")
    } else {
        ("hallows-rt.workspace = true", "version.workspace = true\nedition.workspace = true")
    };
    let files = [
        (
            "Cargo.toml",
            format!(
                "[package]\nname = \"{name}\"\n{package}\n\n[[bin]]\nname = \"{name}\"\npath = \"src/main.rs\"\ntest = false\nbench = false\n\n[dependencies]\n{rt}\n"
            ),
        ),
        (
            "build.rs",
            format!(
                "//! Links this guest with the runtime's linker script `guest.ld` (which\n\
                 //! `hallows-rt`'s build script puts on the search path). Without it the\n\
                 //! link fails with `undefined symbol: __guest_end`.\n\
                 fn main() {{\n    {LINKER_SCRIPT_LINE}\n}}\n"
            ),
        ),
        (
            "src/main.rs",
            format!(
                "//! Guest `{name}`: a RustHallows partition's program (no_std, on the\n\
                 //! `hallows-rt` runtime: heap, time, async tasks, channels).\n\
                 #![no_std]\n\
                 #![no_main]\n\
                 #![forbid(unsafe_code)]\n\
                 \n\
                 use core::time::Duration;\n\
                 \n\
                 use hallows_rt::{{println, Boot}};\n\
                 \n\
                 hallows_rt::entry!(main);\n\
                 \n\
                 /// Runs when the partition boots; its return value is the partition's\n\
                 /// exit status (0: success).\n\
                 fn main(boot: &Boot) -> u64 {{\n    \
                     println!(\"hello from partition {{}} (guest {name})\", boot.name());\n    \
                     // The runtime's clock and async tasks: sleep 10 ms.\n    \
                     let started = hallows_rt::time::now();\n    \
                     hallows_rt::task::run(boot, hallows_rt::time::sleep(Duration::from_millis(10)));\n    \
                     let slept = hallows_rt::time::now() - started;\n    \
                     if slept < Duration::from_millis(10) {{\n        \
                         println!(\"woke after {{}} us: too early\", slept.as_micros());\n        \
                         return 1;\n    \
                     }}\n    \
                     println!(\"slept 10 ms\");\n    \
                     0\n\
                 }}\n"
            ),
        ),
    ];
    let mut written = Vec::new();
    for (rel, text) in files {
        let p = dir.join(rel);
        write_new(&p, &text)?;
        written.push(p);
    }
    Ok(written)
}

//! Finding the workspace and the guest programs in it.
//!
//! A workspace is either this repository or a user's own Cargo workspace
//! outside it (docs/first-system.md): a guest is any package of the
//! workspace that has a binary target and depends on `hallows-rt`, found by
//! its package name wherever it lives. The hypervisor is built from the
//! workspace when it has the `hallows-hv` package, else from the RustHallows
//! checkout named by `HALLOWS_SOURCE` (default: the one this tool was built
//! from); so are the checkout's services (`guests/services`: the store, the
//! log, the gateway, ...) that a user's system names and its workspace does
//! not have ([`system_guests`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A guest program of a workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// The package name: what a manifest's `guest = "..."` names.
    pub package: String,
    /// The binary target's name (the file cargo writes).
    pub bin: String,
    /// The package's directory.
    pub dir: PathBuf,
    /// The workspace it is built in.
    pub root: PathBuf,
}

/// The workspace root: the nearest ancestor of `start` whose Cargo.toml
/// declares `[workspace]`.
pub fn root_from(start: &Path) -> Result<PathBuf> {
    let start = if start.as_os_str().is_empty() { Path::new(".") } else { start };
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

/// The RustHallows checkout whose hypervisor and runtime a workspace
/// outside it builds against: `HALLOWS_SOURCE`, else [`own_root`].
pub fn source_root() -> Result<PathBuf> {
    match std::env::var_os("HALLOWS_SOURCE") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.join("hypervisor/Cargo.toml").is_file() {
                bail!(
                    "HALLOWS_SOURCE={} is not a RustHallows checkout (no hypervisor/Cargo.toml there): \
                     set it to the directory holding RustHallows's Cargo.toml, or unset it",
                    dir.display()
                );
            }
            Ok(dir.canonicalize()?)
        }
        None => {
            let dir = own_root();
            if !dir.join("hypervisor/Cargo.toml").is_file() {
                bail!(
                    "this hallows was built from {}, which is no RustHallows checkout now (no hypervisor/Cargo.toml): \
                     set HALLOWS_SOURCE to a checkout, or reinstall hallows from one (cargo install --path tools/hallows)",
                    Path::new(env!("CARGO_MANIFEST_DIR")).display()
                );
            }
            Ok(dir)
        }
    }
}

/// Where the hypervisor of a system in workspace `root` is built: the
/// workspace itself when it is a RustHallows checkout, else [`source_root`].
pub fn hypervisor_root(root: &Path) -> Result<PathBuf> {
    if root.join("hypervisor/Cargo.toml").is_file() {
        Ok(root.to_path_buf())
    } else {
        source_root()
    }
}

/// The guest programs of the workspace at `root` (sorted by package name):
/// its packages with a binary target that depend on `hallows-rt`.
pub fn find_guests(root: &Path) -> Result<Vec<Guest>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .context("running `cargo metadata` to find the workspace's guests")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed in {}: fix the workspace's Cargo.toml files\n{}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    parse_metadata(&out.stdout)
}

/// The guests a system of the workspace at `root` can name: the
/// workspace's own and, in a workspace outside RustHallows, the services
/// of the checkout it builds against (its `guests/services`: `store`,
/// `log`, `gateway`, ...) that none of its own shadows. Those are built in
/// the checkout, as its hypervisor is. A checkout that cannot be read adds
/// none.
pub fn system_guests(root: &Path) -> Result<Vec<Guest>> {
    let mut guests = find_guests(root)?;
    let Ok(source) = hypervisor_root(root) else { return Ok(guests) };
    if source == root || root.canonicalize().is_ok_and(|r| r == source) {
        return Ok(guests);
    }
    let services = source.join("guests/services");
    for g in find_guests(&source).unwrap_or_default() {
        if g.dir.starts_with(&services) && !guests.iter().any(|x| x.package == g.package) {
            guests.push(g);
        }
    }
    guests.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(guests)
}

fn parse_metadata(json: &[u8]) -> Result<Vec<Guest>> {
    let meta: serde_json::Value = serde_json::from_slice(json).context("reading `cargo metadata`'s output")?;
    let root = PathBuf::from(meta["workspace_root"].as_str().context("`cargo metadata` names no workspace_root")?);
    let mut guests = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let deps = p["dependencies"].as_array().into_iter().flatten();
        if !deps.clone().any(|d| d["name"] == "hallows-rt") {
            continue;
        }
        let bin = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
            .and_then(|t| t["name"].as_str());
        let (Some(package), Some(bin), Some(manifest)) = (p["name"].as_str(), bin, p["manifest_path"].as_str()) else {
            continue;
        };
        let dir = Path::new(manifest).parent().unwrap_or(Path::new(".")).to_path_buf();
        guests.push(Guest { package: package.to_string(), bin: bin.to_string(), dir, root: root.clone() });
    }
    guests.sort_by(|a, b| a.package.cmp(&b.package));
    guests.dedup_by(|a, b| a.package == b.package);
    Ok(guests)
}

/// Package names of the guest programs a system of the workspace at
/// `root` can name ([`system_guests`]); none if cargo cannot read the
/// workspace (its error then comes from `build`).
pub fn guests(root: &Path) -> Vec<String> {
    system_guests(root).map(|g| g.into_iter().map(|g| g.package).collect()).unwrap_or_default()
}

pub fn check_context(root: &Path) -> vmm_config::CheckContext {
    vmm_config::CheckContext { guests: Some(guests(root)), root: Some(root.to_path_buf()) }
}

/// The service specs of a loaded system, cross-checked against it: those
/// the manifest names (`spec`) and, with a workspace `root`, those its
/// guests compile, so that a manifest without `spec` keys is checked too.
pub fn check_specs(root: Option<&Path>, sys: &vmm_config::System, manifest: &Path) -> Result<Vec<(String, parseltongue::Spec)>, parseltongue::Diagnostics> {
    match root {
        Some(root) => {
            // One `cargo metadata` for all the system's guests (and one
            // for the checkout's services, outside RustHallows).
            let guests = system_guests(root).unwrap_or_default();
            let spec_of = |g: &str| match guests.iter().find(|x| x.package == g) {
                Some(x) => parseltongue::build::declared_spec(&x.dir),
                None => Ok(None),
            };
            parseltongue::manifest::check_system(sys, manifest, &spec_of)
        }
        None => parseltongue::manifest::check_manifest(sys, manifest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_packages_with_a_binary_that_use_the_runtime() {
        let json = br#"{"workspace_root":"/p","packages":[
            {"name":"kv-store","manifest_path":"/p/guests/store/Cargo.toml",
             "dependencies":[{"name":"hallows-rt"}],
             "targets":[{"kind":["bin"],"name":"store"}]},
            {"name":"lib-only","manifest_path":"/p/lib/Cargo.toml",
             "dependencies":[{"name":"hallows-rt"}],
             "targets":[{"kind":["lib"],"name":"lib_only"}]},
            {"name":"host-tool","manifest_path":"/p/tool/Cargo.toml",
             "dependencies":[{"name":"clap"}],
             "targets":[{"kind":["bin"],"name":"host-tool"}]}]}"#;
        let g = parse_metadata(json).unwrap();
        assert_eq!(g, vec![Guest { package: "kv-store".into(), bin: "store".into(), dir: PathBuf::from("/p/guests/store"), root: PathBuf::from("/p") }]);
    }

    /// A workspace outside RustHallows may name the checkout's services,
    /// built there; one of its own guests shadows the service's name.
    #[test]
    fn a_workspace_outside_takes_the_checkouts_services_unless_it_has_its_own() {
        let ws = std::env::temp_dir().join(format!("hallows-services-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        std::fs::create_dir_all(ws.join("guests/store/src")).unwrap();
        std::fs::write(ws.join("Cargo.toml"), "[workspace]\nmembers = [\"guests/*\"]\nresolver = \"2\"\n").unwrap();
        let rt = own_root().join("guests/runtime/rt");
        std::fs::write(
            ws.join("guests/store/Cargo.toml"),
            format!("[package]\nname = \"store\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nhallows-rt = {{ path = {:?} }}\n", rt.to_str().unwrap()),
        )
        .unwrap();
        std::fs::write(ws.join("guests/store/src/main.rs"), "fn main() {}\n").unwrap();
        let found = system_guests(&ws.canonicalize().unwrap());
        let _ = std::fs::remove_dir_all(&ws);
        let found = found.unwrap();
        let root_of = |name: &str| found.iter().find(|g| g.package == name).map(|g| g.root.clone());
        let checkout = own_root();
        assert_eq!(root_of("log-broker"), Some(checkout.clone()), "{found:?}");
        assert_eq!(root_of("gateway"), Some(checkout.clone()), "{found:?}");
        assert_ne!(root_of("store"), Some(checkout), "the workspace's own `store` shadows the checkout's: {found:?}");
        assert_eq!(root_of("probe"), None, "test guests are not services: {found:?}");
        // The checkout itself: its own guests, once each.
        let own = system_guests(&own_root()).unwrap();
        assert!(own.iter().any(|g| g.package == "probe"));
        assert_eq!(own.iter().filter(|g| g.package == "store").count(), 1);
    }

    #[test]
    fn this_workspace_has_its_guests_by_package_name() {
        let g = guests(&own_root());
        for name in ["hello", "counter", "probe", "tasks"] {
            assert!(g.iter().any(|n| n == name), "{name} missing from {g:?}");
        }
        assert!(!g.iter().any(|n| n == "hallows" || n == "hallows-rt"), "{g:?}");
    }
}

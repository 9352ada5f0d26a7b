//! Linux partitions, the host side (docs/linux.md): getting Debian's arm64
//! kernel and busybox without trusting a random binary, and building the
//! initramfs a Linux partition boots with.
//!
//! [`fetch`] runs apt with a private configuration under
//! `target/linux/apt` (its own sources list, lists, cache and an empty dpkg
//! status): apt checks the Release file's signature against Debian's
//! archive keyring and every package's SHA-256 against it, and nothing is
//! installed on the host: the packages are only downloaded and unpacked
//! with `dpkg-deb -x` into `target/linux/root`. What was fetched is
//! recorded in `target/linux/fetched.txt`; later calls check the recorded
//! hashes and touch no network.
//!
//! [`initramfs`] builds a newc archive ([`crate::cpio`]) with busybox, the
//! init script `guests/linux/initramfs/init`, the `ring-peer` program
//! (built for `aarch64-unknown-linux-musl`), and any kernel modules asked
//! for with what they depend on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use crate::cpio::{self, Entry, Kind};

/// The Debian suite the packages come from.
pub const SUITE: &str = "bookworm";
/// The kernel metapackage: it depends on the current
/// `linux-image-<abi>-arm64`.
pub const KERNEL_META: &str = "linux-image-arm64";
/// Busybox, statically linked (the initramfs has no libc).
pub const BUSYBOX: &str = "busybox-static";
/// Debian's archive keyring (package `debian-archive-keyring`).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The Rust target the Linux programs are built for.
pub const MUSL_TARGET: &str = "aarch64-unknown-linux-musl";

/// One downloaded package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// SHA-256 of the `.deb`, as apt's index gives it and as checked here.
    pub sha256: String,
    /// The `.deb` under `target/linux/debs`.
    pub deb: PathBuf,
}

/// What [`fetch`] produced.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub packages: Vec<Package>,
    /// The kernel Image (`root/boot/vmlinuz-<release>`: Debian's arm64
    /// kernel is an uncompressed Image).
    pub kernel: PathBuf,
    /// The kernel release (`6.1.0-NN-arm64`): the modules' directory name.
    pub release: String,
    /// `target/linux/Image`: the kernel under the name manifests use.
    pub image: PathBuf,
    /// The static busybox binary.
    pub busybox: PathBuf,
    /// `root/lib/modules/<release>`.
    pub modules: PathBuf,
    /// Whether this call used the cache (no apt run).
    pub cached: bool,
}

/// `target/linux` of the workspace at `root`.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("target/linux")
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The apt options that make apt use only `dir/apt`, for arm64.
fn apt_options(apt: &Path, as_root_unsandboxed: bool) -> Vec<String> {
    let d = apt.display();
    let mut o = vec![
        format!("Dir::Etc::SourceList={d}/etc/sources.list"),
        "Dir::Etc::SourceParts=/dev/null".into(),
        format!("Dir::Etc::Preferences={d}/etc/preferences"),
        "Dir::Etc::PreferencesParts=/dev/null".into(),
        format!("Dir::State::Lists={d}/lists"),
        format!("Dir::Cache={d}/cache"),
        "Dir::State::status=/dev/null".into(),
        "APT::Architecture=arm64".into(),
        "APT::Architectures=arm64".into(),
        "Acquire::Languages=none".into(),
    ];
    if as_root_unsandboxed {
        o.push("APT::Sandbox::User=root".into());
    }
    o.into_iter().flat_map(|x| ["-o".to_owned(), x]).collect()
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{what}: cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // apt's warnings (a W: line) are worth seeing even when it succeeds.
    for w in String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("W:")) {
        eprintln!("hallows: {what}: {w}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Reads `fetched.txt`: `package version sha256 deb` per line, then
/// `kernel`, `busybox`, `release` lines.
fn read_record(dir: &Path) -> Option<Fetched> {
    let text = std::fs::read_to_string(dir.join("fetched.txt")).ok()?;
    let mut packages = Vec::new();
    let (mut kernel, mut busybox, mut release) = (None, None, None);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["package", name, version, sha, deb] => packages.push(Package {
                name: (*name).into(),
                version: (*version).into(),
                sha256: (*sha).into(),
                deb: dir.join(deb),
            }),
            ["kernel", k] => kernel = Some(dir.join(k)),
            ["busybox", b] => busybox = Some(dir.join(b)),
            ["release", r] => release = Some((*r).to_owned()),
            _ => return None,
        }
    }
    let release = release?;
    Some(Fetched {
        packages,
        kernel: kernel?,
        modules: dir.join("root/lib/modules").join(&release),
        release,
        busybox: busybox?,
        image: image_path(dir),
        cached: true,
    })
}

fn cached(dir: &Path) -> Option<Fetched> {
    let f = read_record(dir)?;
    let ok = f.packages.len() == 2
        && f.kernel.is_file()
        && f.busybox.is_file()
        && f.packages.iter().all(|p| sha256_file(&p.deb).is_ok_and(|h| h == p.sha256));
    ok.then_some(f)
}

/// Checks that `bytes` are an arm64 Linux Image (the boot protocol's
/// header: `ARM\x64` at byte 56) and returns its `image_size` field.
pub fn check_arm64_image(bytes: &[u8]) -> Result<u64> {
    ensure!(bytes.len() >= 64, "{} bytes: too short for an arm64 Image header", bytes.len());
    ensure!(&bytes[56..60] == b"ARM\x64", "no arm64 Image magic \"ARM\\x64\" at byte 56 (a compressed vmlinuz? an x86 kernel?)");
    Ok(u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")))
}

/// Downloads (or finds cached) Debian's arm64 kernel and busybox-static
/// under `target/linux` of `root`; `refresh` ignores the cache. Prints
/// what it fetched: package, version, sha256.
pub fn fetch(root: &Path, refresh: bool) -> Result<Fetched> {
    let dir = cache_dir(root);
    let f = match cached(&dir) {
        Some(f) if !refresh => f,
        _ => download(&dir)?,
    };
    link_image(&dir, &f)?;
    Ok(f)
}

/// The stable name manifests use for the kernel, `target/linux/Image`:
/// a hard link to (or a copy of) the fetched kernel, replaced when it
/// differs.
fn link_image(dir: &Path, f: &Fetched) -> Result<()> {
    let image = image_path(dir);
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(&image), std::fs::metadata(&f.kernel)) {
            if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                return Ok(());
            }
        }
    }
    let same = |a: &Path, b: &Path| match (std::fs::read(a), std::fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    if image.is_file() && same(&image, &f.kernel) {
        return Ok(());
    }
    // Never write through `Image` (it may be a hard link to the kernel
    // itself): a new name, then an atomic rename over it, so concurrent
    // callers (tests in parallel) each see a whole kernel.
    let tmp = unique_tmp(&image);
    if std::fs::hard_link(&f.kernel, &tmp).is_err() {
        std::fs::copy(&f.kernel, &tmp).with_context(|| format!("copying the kernel to {}", tmp.display()))?;
    }
    let renamed = std::fs::rename(&tmp, &image);
    // rename(2) leaves both names when they already were one file.
    let _ = std::fs::remove_file(&tmp);
    renamed.with_context(|| format!("renaming {} to {}", tmp.display(), image.display()))?;
    Ok(())
}

/// A scratch name next to `path`, unique to this process and call.
fn unique_tmp(path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// `target/linux/Image` under the cache directory `dir`: the kernel as
/// manifests name it (`linux = { kernel = ".../target/linux/Image", ... }`).
pub fn image_path(dir: &Path) -> PathBuf {
    dir.join("Image")
}

fn download(dir: &Path) -> Result<Fetched> {
    let dir = dir.to_path_buf();
    ensure!(
        Path::new(KEYRING).is_file(),
        "{KEYRING} is missing: install Debian's archive keyring (`apt-get install debian-archive-keyring`) so apt can check the packages' signatures"
    );
    let apt = dir.join("apt");
    for d in ["etc", "lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(apt.join(d)).with_context(|| format!("creating {}", apt.join(d).display()))?;
    }
    let sources = format!(
        "deb [arch=arm64 signed-by={KEYRING}] http://deb.debian.org/debian {SUITE} main\n\
         deb [arch=arm64 signed-by={KEYRING}] http://deb.debian.org/debian-security {SUITE}-security main\n"
    );
    std::fs::write(apt.join("etc/sources.list"), sources)?;
    std::fs::write(apt.join("etc/preferences"), "")?;
    let debs = dir.join("debs");
    let _ = std::fs::remove_dir_all(&debs);
    std::fs::create_dir_all(&debs)?;
    // apt downloads as the unprivileged `_apt` user when it runs as root;
    // that user must be able to write where the files go, or apt warns
    // and downloads unsandboxed. Hand it the download directories; where
    // that is impossible, say so by turning the sandbox off explicitly
    // (the signature and hash checks are the same either way).
    let root_user = is_root();
    let unsandboxed = root_user
        && !Command::new("chown")
            .args(["-R", "_apt:root"])
            .arg(apt.join("lists"))
            .arg(apt.join("cache"))
            .arg(&debs)
            .status()
            .is_ok_and(|s| s.success());
    let opts = apt_options(&apt, unsandboxed);
    println!("hallows: apt-get update ({SUITE}, arm64; private state in {})", apt.display());
    run(Command::new("apt-get").args(&opts).args(["-q", "update"]), "apt-get update")?;
    let depends = run(Command::new("apt-cache").args(&opts).args(["depends", KERNEL_META]), "apt-cache depends")?;
    let kernel_pkg = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-arm64") && !p.contains('<'))
        .with_context(|| format!("{KERNEL_META} depends on no linux-image-*-arm64:\n{depends}"))?
        .to_owned();
    run(Command::new("apt-get").args(&opts).args(["-q", "download", &kernel_pkg, BUSYBOX]).current_dir(&debs), "apt-get download")?;
    let mut packages = Vec::new();
    for name in [kernel_pkg.as_str(), BUSYBOX] {
        let show = run(Command::new("apt-cache").args(&opts).args(["show", "--no-all-versions", name]), "apt-cache show")?;
        packages.push(verified_deb(&debs, name, &show)?);
    }
    let unpacked = dir.join("root");
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked)?;
    for p in &packages {
        run(Command::new("dpkg-deb").arg("-x").arg(&p.deb).arg(&unpacked), "dpkg-deb -x")?;
    }
    let release = kernel_pkg.strip_prefix("linux-image-").expect("checked above").to_owned();
    let kernel = unpacked.join("boot").join(format!("vmlinuz-{release}"));
    let image = std::fs::read(&kernel).with_context(|| format!("{kernel_pkg} has no {}", kernel.display()))?;
    check_arm64_image(&image).with_context(|| kernel.display().to_string())?;
    let busybox = unpacked.join("bin/busybox");
    ensure!(busybox.is_file(), "{BUSYBOX} has no bin/busybox");
    let rel = |p: &Path| p.strip_prefix(&dir).expect("under the cache").display().to_string();
    let mut record = String::new();
    for p in &packages {
        let _ = writeln!(record, "package {} {} {} {}", p.name, p.version, p.sha256, rel(&p.deb));
    }
    let _ = writeln!(record, "kernel {}\nbusybox {}\nrelease {release}", rel(&kernel), rel(&busybox));
    std::fs::write(dir.join("fetched.txt"), record)?;
    Ok(Fetched { packages, modules: unpacked.join("lib/modules").join(&release), kernel, release, busybox, image: image_path(&dir), cached: false })
}

/// Userland packages for a Linux partition, unpacked under
/// `target/linux/pkgs/root` (see [`fetch_packages`]).
#[derive(Clone, Debug)]
pub struct Userland {
    pub packages: Vec<Package>,
    /// Regular files for the initramfs: (path in the archive, host path):
    /// the packages' programs (`usr/bin`, `usr/sbin`, `bin`, `sbin`) and
    /// shared libraries (`*.so*` under `lib`, `usr/lib`).
    pub files: Vec<(String, PathBuf)>,
    /// Their symbolic links: (path in the archive, target).
    pub links: Vec<(String, String)>,
    /// Whether this call used the cache (no apt run).
    pub cached: bool,
}

/// The package names a `Depends:`/`Pre-Depends:` field names: the first
/// of each set of alternatives, without version or architecture.
pub fn depends_names(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|alt| alt.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(|d| d.split(':').next().unwrap_or(d).to_owned())
        .filter(|d| !d.is_empty())
        .collect()
}

/// Downloads the Debian arm64 packages `names` and their shared-library
/// closure (every `lib*` package reachable through `Depends` and
/// `Pre-Depends`; maintainer-script tools such as `adduser` are not
/// followed: nothing is installed, the packages' scripts never run) with
/// the same private, signature-checked apt setup as [`fetch`], checks
/// every `.deb` against the signed index's SHA-256, and unpacks them with
/// `dpkg-deb -x` into `target/linux/pkgs/root`. Later calls with the same
/// names reuse the verified cache (`target/linux/pkgs/fetched.txt`).
pub fn fetch_packages(root: &Path, names: &[String]) -> Result<Userland> {
    fetch(root, false)?; // the apt state and lists
    let dir = cache_dir(root);
    let pkgs = dir.join("pkgs");
    let unpacked = pkgs.join("root");
    let record = pkgs.join("fetched.txt");
    let want = format!("want {}", names.join(" "));
    let cached = std::fs::read_to_string(&record).ok().and_then(|text| {
        let mut lines = text.lines();
        (lines.next()? == want).then_some(())?;
        lines
            .map(|l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["package", n, v, sha, deb] => {
                    let deb = pkgs.join(deb);
                    sha256_file(&deb).ok().filter(|h| h == sha)?;
                    Some(Package { name: (*n).into(), version: (*v).into(), sha256: (*sha).into(), deb })
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
    });
    let (packages, was_cached) = match cached {
        Some(p) if unpacked.is_dir() => (p, true),
        _ => (download_packages(&dir, names)?, false),
    };
    if !was_cached {
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked)?;
        for p in &packages {
            run(Command::new("dpkg-deb").arg("-x").arg(&p.deb).arg(&unpacked), "dpkg-deb -x")?;
        }
        let mut text = want.clone() + "\n";
        for p in &packages {
            let rel = p.deb.strip_prefix(&pkgs).expect("under pkgs").display().to_string();
            let _ = writeln!(text, "package {} {} {} {rel}", p.name, p.version, p.sha256);
        }
        std::fs::write(&record, text)?;
    }
    let (files, links) = userland_files(&unpacked)?;
    Ok(Userland { packages, files, links, cached: was_cached })
}

fn download_packages(dir: &Path, names: &[String]) -> Result<Vec<Package>> {
    let apt = dir.join("apt");
    let opts = apt_options(&apt, is_root());
    let mut seen: Vec<String> = Vec::new();
    let mut queue: Vec<String> = names.to_vec();
    let mut shows = BTreeMap::new();
    while let Some(name) = queue.pop() {
        if seen.contains(&name) {
            continue;
        }
        let show = run(Command::new("apt-cache").args(&opts).args(["show", "--no-all-versions", &name]), "apt-cache show")
            .with_context(|| format!("package {name} (arm64, {SUITE})"))?;
        for l in show.lines() {
            if let Some(d) = l.strip_prefix("Depends:").or_else(|| l.strip_prefix("Pre-Depends:")) {
                queue.extend(depends_names(d).into_iter().filter(|d| d.starts_with("lib") && !seen.contains(d)));
            }
        }
        shows.insert(name.clone(), show);
        seen.push(name);
    }
    let debs = dir.join("pkgs/debs");
    let _ = std::fs::remove_dir_all(&debs);
    std::fs::create_dir_all(&debs)?;
    println!("hallows: apt-get download (arm64) {}", seen.join(" "));
    let unsandboxed = is_root()
        && !Command::new("chown").args(["-R", "_apt:root"]).arg(&debs).status().is_ok_and(|s| s.success());
    let opts = apt_options(&apt, unsandboxed);
    run(Command::new("apt-get").args(&opts).args(["-q", "download"]).args(&seen).current_dir(&debs), "apt-get download")?;
    let mut packages = Vec::new();
    for (name, show) in &shows {
        packages.push(verified_deb(&debs, name, show)?);
    }
    Ok(packages)
}

/// Regular files (path in the archive, host path) and symbolic links
/// (path in the archive, target).
type Tree = (Vec<(String, PathBuf)>, Vec<(String, String)>);

/// The programs and shared libraries under an unpacked `root`.
fn userland_files(root: &Path) -> Result<Tree> {
    let (mut files, mut links) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = e?.path();
            let rel = path.strip_prefix(root).expect("under root").display().to_string();
            let meta = std::fs::symlink_metadata(&path)?;
            let top = rel.split('/').next().unwrap_or("");
            if meta.is_dir() {
                if ["lib", "usr", "bin", "sbin"].contains(&top) && !rel.starts_with("usr/share") && !rel.ends_with("/gconv") {
                    stack.push(path);
                }
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let program = ["usr/bin/", "usr/sbin/", "bin/", "sbin/"].iter().any(|p| rel.starts_with(p));
            let library = (rel.starts_with("lib/") || rel.starts_with("usr/lib/")) && name.contains(".so");
            if !(program || library) {
                continue;
            }
            if meta.file_type().is_symlink() {
                links.push((rel, std::fs::read_link(&path)?.display().to_string()));
            } else if meta.is_file() {
                files.push((rel, path));
            }
        }
    }
    files.sort();
    links.sort();
    Ok((files, links))
}

/// The downloaded `.deb` of `name` in `debs`, checked against the SHA-256
/// of its signed index entry (`show`, from `apt-cache show`).
fn verified_deb(debs: &Path, name: &str, show: &str) -> Result<Package> {
    let field = |k: &str| show.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_owned());
    let version = field("Version:").with_context(|| format!("apt-cache show {name}: no Version"))?;
    let want = field("SHA256:").with_context(|| format!("apt-cache show {name}: no SHA256"))?;
    let deb = std::fs::read_dir(debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{name}_")) && n.ends_with(".deb")))
        .with_context(|| format!("apt-get download left no {name}_*.deb in {}", debs.display()))?;
    let got = sha256_file(&deb)?;
    ensure!(got == want, "{}: SHA-256 {got}, the signed index says {want}", deb.display());
    Ok(Package { name: name.to_owned(), version, sha256: got, deb })
}

/// The lines `hallows linux fetch` prints for `f`.
pub fn describe(f: &Fetched) -> String {
    let mut s = String::new();
    for p in &f.packages {
        let _ = writeln!(s, "{} {} sha256 {}{}", p.name, p.version, p.sha256, if f.cached { " (cached)" } else { "" });
    }
    let _ = writeln!(s, "kernel  {} (as {})", f.kernel.display(), f.image.display());
    let _ = write!(s, "busybox {}", f.busybox.display());
    s
}

/// A module's name as the kernel knows it: the file stem with `-` as `_`.
fn module_name(s: &str) -> String {
    s.trim_end_matches(".ko").replace('-', "_")
}

/// The `depends=` of a module's `.modinfo` section.
pub fn module_depends(ko: &[u8]) -> Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let obj = object::File::parse(ko).context("not an ELF object")?;
    let info = obj.section_by_name(".modinfo").context("no .modinfo section")?.data().context("unreadable .modinfo")?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| String::from_utf8_lossy(v).split(',').filter(|d| !d.is_empty()).map(module_name).collect::<Vec<_>>())
        .collect())
}

/// The `.ko` files of the tree `modules` (`lib/modules/<release>`), by
/// module name, and the modules built into the kernel.
fn module_index(modules: &Path) -> Result<(BTreeMap<String, PathBuf>, Vec<String>)> {
    let mut index = BTreeMap::new();
    let mut stack = vec![modules.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()).filter(|n| n.ends_with(".ko")) {
                index.insert(module_name(n), p);
            }
        }
    }
    let builtin = std::fs::read_to_string(modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next().map(module_name))
        .collect();
    Ok((index, builtin))
}

/// `wanted` modules and everything they depend on, dependencies first
/// (the order `insmod` needs); built-in ones are left out.
pub fn resolve_modules(modules: &Path, wanted: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let (index, builtin) = module_index(modules)?;
    let mut order: Vec<(String, PathBuf)> = Vec::new();
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        builtin: &[String],
        order: &mut Vec<(String, PathBuf)>,
        path: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|(n, _)| n == name) || builtin.iter().any(|b| b == name) {
            return Ok(());
        }
        ensure!(!path.iter().any(|p| p == name), "module dependency cycle: {} -> {name}", path.join(" -> "));
        let ko = index.get(name).with_context(|| format!("no kernel module {name:?} in this kernel (neither a .ko nor built in)"))?;
        let bytes = std::fs::read(ko).with_context(|| format!("reading {}", ko.display()))?;
        path.push(name.to_owned());
        for d in module_depends(&bytes).with_context(|| ko.display().to_string())? {
            visit(&d, index, builtin, order, path)?;
        }
        path.pop();
        order.push((name.to_owned(), ko.clone()));
        Ok(())
    }
    for w in wanted {
        visit(&module_name(w), &index, &builtin, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

/// What goes into an initramfs beyond busybox and the init script.
#[derive(Clone, Debug, Default)]
pub struct InitramfsSpec {
    /// Kernel modules to load at boot (with their dependencies).
    pub modules: Vec<String>,
    /// Extra files: (host path, path in the archive without a leading `/`).
    pub files: Vec<(PathBuf, String)>,
    /// Symbolic links: (path in the archive, target).
    pub links: Vec<(String, String)>,
    /// Leave out the `ring-peer` program (no musl build).
    pub without_ring_peer: bool,
    /// Debian arm64 packages whose programs and shared libraries go in
    /// (with their shared-library dependencies; see [`fetch_packages`]).
    pub packages: Vec<String>,
}

/// The default output: `target/linux/initramfs.cpio`.
pub fn initramfs_path(root: &Path) -> PathBuf {
    cache_dir(root).join("initramfs.cpio")
}

/// Builds `ring-peer` for [`MUSL_TARGET`] (static, linked by rust-lld:
/// see `.cargo/config.toml`) and returns the binary's path.
pub fn build_ring_peer(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(root)
        .env_remove("CARGO_TARGET_DIR")
        .args(["build", "--release", "--quiet", "-p", "linux-ring-peer", "--bin", "ring-peer", "--target", MUSL_TARGET])
        .status()
        .context("running cargo to build ring-peer")?;
    ensure!(st.success(), "building ring-peer for {MUSL_TARGET} failed (is the target installed? `make deps` adds it: rustup target add {MUSL_TARGET})");
    Ok(root.join("target").join(MUSL_TARGET).join("release/ring-peer"))
}

/// The archive's entries for `f` and `spec`, with the init script `init`
/// and the `ring-peer` binary (if any), in the order the kernel needs.
pub fn initramfs_bytes(f: &Fetched, init: &[u8], ring_peer: Option<&[u8]>, spec: &InitramfsSpec) -> Result<Vec<u8>> {
    let mut w = cpio::Writer::new();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "etc", "root"] {
        w.add(&Entry { name: d.into(), kind: Kind::Dir, perm: 0o755 })?;
    }
    // The kernel opens /dev/console for init before anything is mounted.
    w.add(&Entry { name: "dev/console".into(), kind: Kind::CharDev(5, 1), perm: 0o600 })?;
    let busybox = std::fs::read(&f.busybox).with_context(|| format!("reading {}", f.busybox.display()))?;
    w.add(&Entry { name: "bin/busybox".into(), kind: Kind::File(busybox), perm: 0o755 })?;
    // The rest of the applets are linked by `busybox --install -s` in init.
    w.add(&Entry { name: "bin/sh".into(), kind: Kind::Symlink("busybox".into()), perm: 0o777 })?;
    w.add(&Entry { name: "init".into(), kind: Kind::File(init.to_vec()), perm: 0o755 })?;
    if let Some(rp) = ring_peer {
        w.add(&Entry { name: "bin/ring-peer".into(), kind: Kind::File(rp.to_vec()), perm: 0o755 })?;
    }
    let modules = resolve_modules(&f.modules, &spec.modules)?;
    let mut list = String::new();
    for (name, ko) in &modules {
        let dest = format!("lib/modules/{}/{name}.ko", f.release);
        w.dirs_for(&dest)?;
        let bytes = std::fs::read(ko).with_context(|| format!("reading {}", ko.display()))?;
        w.add(&Entry { name: dest.clone(), kind: Kind::File(bytes), perm: 0o644 })?;
        let _ = writeln!(list, "/{dest}");
    }
    // The modules init loads, in dependency order.
    w.add(&Entry { name: "etc/hallows-modules".into(), kind: Kind::File(list.into_bytes()), perm: 0o644 })?;
    for (src, dest) in &spec.files {
        let bytes = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        w.dirs_for(dest)?;
        w.add(&Entry { name: dest.clone(), kind: Kind::File(bytes), perm: 0o755 })?;
    }
    for (name, target) in &spec.links {
        w.dirs_for(name)?;
        w.add(&Entry { name: name.clone(), kind: Kind::Symlink(target.clone()), perm: 0o777 })?;
    }
    Ok(w.finish())
}

/// Fetches what is missing, builds `ring-peer`, and writes the initramfs
/// to `out` (default [`initramfs_path`]); returns its path.
pub fn initramfs(root: &Path, spec: &InitramfsSpec, out: Option<&Path>) -> Result<PathBuf> {
    let f = fetch(root, false)?;
    let init_path = root.join("guests/linux/initramfs/init");
    let init = std::fs::read(&init_path).with_context(|| format!("reading {}", init_path.display()))?;
    let rp = if spec.without_ring_peer {
        None
    } else {
        let p = build_ring_peer(root)?;
        Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
    };
    let mut spec = spec.clone();
    if !spec.packages.is_empty() {
        let p = fetch_packages(root, &spec.packages)?;
        spec.files.extend(p.files.iter().map(|(rel, host)| (host.clone(), rel.clone())));
        spec.links.extend(p.links.iter().cloned());
    }
    let bytes = initramfs_bytes(&f, &init, rp.as_deref(), &spec)?;
    let out = out.map_or_else(|| initramfs_path(root), Path::to_path_buf);
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = unique_tmp(&out);
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// A line describing the archive at `path`: size, entries, sha256.
pub fn describe_archive(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)?;
    let entries = cpio::read(&bytes)?;
    Ok(format!("{} ({} bytes, {} entries, sha256 {})", path.display(), bytes.len(), entries.len(), hex(&Sha256::digest(&bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relocatable ELF with a `.modinfo` section holding `info`.
    fn ko(info: &str) -> Vec<u8> {
        use object::write::Object;
        let mut o = Object::new(object::BinaryFormat::Elf, object::Architecture::Aarch64, object::Endianness::Little);
        let s = o.add_section(Vec::new(), b".modinfo".to_vec(), object::SectionKind::ReadOnlyData);
        o.append_section_data(s, info.as_bytes(), 1);
        o.write().unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hallows-linux-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn tree(d: &Path) -> PathBuf {
        let m = d.join("lib/modules/6.1.0-9-arm64");
        std::fs::create_dir_all(m.join("kernel/drivers/x")).unwrap();
        std::fs::create_dir_all(m.join("kernel/net")).unwrap();
        std::fs::write(m.join("kernel/drivers/x/top.ko"), ko("license=GPL\0depends=mid,c-d\0name=top\0")).unwrap();
        std::fs::write(m.join("kernel/drivers/x/mid.ko"), ko("depends=base\0")).unwrap();
        std::fs::write(m.join("kernel/net/c-d.ko"), ko("depends=base,inside\0")).unwrap();
        std::fs::write(m.join("kernel/net/base.ko"), ko("depends=\0")).unwrap();
        std::fs::write(m.join("kernel/net/loop1.ko"), ko("depends=loop2\0")).unwrap();
        std::fs::write(m.join("kernel/net/loop2.ko"), ko("depends=loop1\0")).unwrap();
        std::fs::write(m.join("modules.builtin"), "kernel/lib/inside.ko\n").unwrap();
        m
    }

    #[test]
    fn depends_fields_give_the_first_alternative_without_versions() {
        assert_eq!(
            depends_names(" adduser, libatomic1 (>= 4.8), libc6 (>= 2.34), libjemalloc2 | libfoo, python3:any (>= 3.2)"),
            ["adduser", "libatomic1", "libc6", "libjemalloc2", "python3"]
        );
        assert!(depends_names("").is_empty());
    }

    #[test]
    fn userland_holds_programs_and_shared_libraries_only() {
        let d = scratch("userland");
        for (f, body) in [("usr/bin/redis-server", "x"), ("lib/aarch64-linux-gnu/libc.so.6", "y"), ("usr/share/doc/README", "z"), ("etc/redis.conf", "c"), ("usr/lib/aarch64-linux-gnu/libz.a", "a")] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), body).unwrap();
        }
        std::os::unix::fs::symlink("libc.so.6", d.join("lib/aarch64-linux-gnu/libc.so")).unwrap();
        let (files, links) = userland_files(&d).unwrap();
        let names: Vec<&str> = files.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(names, ["lib/aarch64-linux-gnu/libc.so.6", "usr/bin/redis-server"]);
        assert_eq!(links, [("lib/aarch64-linux-gnu/libc.so".to_owned(), "libc.so.6".to_owned())]);
    }

    #[test]
    fn modules_come_with_their_dependencies_first() {
        let d = scratch("modules");
        let m = tree(&d);
        assert_eq!(module_depends(&ko("depends=a,b-c\0")).unwrap(), ["a", "b_c"]);
        let names = |w: &[&str]| -> Result<Vec<String>> {
            Ok(resolve_modules(&m, &w.iter().map(|s| s.to_string()).collect::<Vec<_>>())?.into_iter().map(|(n, _)| n).collect())
        };
        assert_eq!(names(&["top"]).unwrap(), ["base", "mid", "c_d", "top"]);
        assert_eq!(names(&["c-d", "top"]).unwrap(), ["base", "c_d", "mid", "top"]);
        assert!(names(&["inside"]).unwrap().is_empty(), "built in: nothing to load");
        assert!(names(&["nope"]).unwrap_err().to_string().contains("no kernel module \"nope\""));
        assert!(format!("{:#}", names(&["loop1"]).unwrap_err()).contains("cycle: loop1 -> loop2 -> loop1"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_initramfs_holds_init_busybox_ring_peer_and_modules() {
        let d = scratch("initramfs");
        let m = tree(&d);
        std::fs::write(d.join("busybox"), b"\x7fELF busybox").unwrap();
        std::fs::write(d.join("extra"), b"extra").unwrap();
        let f = Fetched {
            packages: Vec::new(),
            kernel: d.join("Image"),
            release: "6.1.0-9-arm64".into(),
            busybox: d.join("busybox"),
            image: d.join("Image"),
            modules: m,
            cached: true,
        };
        let spec = InitramfsSpec { modules: vec!["mid".into()], files: vec![(d.join("extra"), "usr/bin/extra".into())], ..Default::default() };
        let bytes = initramfs_bytes(&f, b"#!/bin/sh\necho hi\n", Some(b"\x7fELF ring-peer"), &spec).unwrap();
        let entries = cpio::read(&bytes).unwrap();
        let find = |n: &str| entries.iter().find(|e| e.name == n).unwrap_or_else(|| panic!("no {n}")).clone();
        assert_eq!(find("init"), Entry { name: "init".into(), kind: Kind::File(b"#!/bin/sh\necho hi\n".to_vec()), perm: 0o755 });
        assert_eq!(find("dev/console").kind, Kind::CharDev(5, 1));
        assert_eq!(find("bin/sh").kind, Kind::Symlink("busybox".into()));
        assert_eq!(find("bin/busybox").kind, Kind::File(b"\x7fELF busybox".to_vec()));
        assert_eq!(find("bin/ring-peer").kind, Kind::File(b"\x7fELF ring-peer".to_vec()));
        assert_eq!(find("usr/bin/extra").kind, Kind::File(b"extra".to_vec()));
        assert_eq!(
            find("etc/hallows-modules").kind,
            Kind::File(b"/lib/modules/6.1.0-9-arm64/base.ko\n/lib/modules/6.1.0-9-arm64/mid.ko\n".to_vec())
        );
        assert!(matches!(find("lib/modules/6.1.0-9-arm64/mid.ko").kind, Kind::File(ref b) if b.starts_with(b"\x7fELF")));
        for dir in ["proc", "sys", "dev", "tmp", "lib/modules"] {
            assert_eq!(find(dir).kind, Kind::Dir);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn image_names_the_fetched_kernel_and_never_writes_through_it() {
        let d = scratch("image");
        std::fs::write(d.join("vmlinuz-a"), b"kernel a").unwrap();
        std::fs::write(d.join("vmlinuz-b"), b"kernel b, longer").unwrap();
        let mut f = Fetched {
            packages: Vec::new(),
            kernel: d.join("vmlinuz-a"),
            release: "a".into(),
            image: image_path(&d),
            busybox: d.join("busybox"),
            modules: d.join("modules"),
            cached: true,
        };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| link_image(&d, &f).unwrap());
            }
        });
        assert_eq!(std::fs::read(image_path(&d)).unwrap(), b"kernel a");
        f.kernel = d.join("vmlinuz-b");
        link_image(&d, &f).unwrap();
        assert_eq!(std::fs::read(image_path(&d)).unwrap(), b"kernel b, longer");
        // The kernel Image used to name is untouched, and no scratch file is left.
        assert_eq!(std::fs::read(d.join("vmlinuz-a")).unwrap(), b"kernel a");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 3);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn only_an_arm64_image_is_a_kernel() {
        let mut img = vec![0u8; 64];
        img[16..24].copy_from_slice(&0x200_0000u64.to_le_bytes());
        assert!(check_arm64_image(&img).is_err());
        img[56..60].copy_from_slice(b"ARM\x64");
        assert_eq!(check_arm64_image(&img).unwrap(), 0x200_0000);
        assert!(check_arm64_image(&img[..40]).is_err());
    }

    #[test]
    fn the_record_reads_back_and_a_changed_deb_is_not_cached() {
        let d = scratch("record");
        std::fs::create_dir_all(d.join("debs")).unwrap();
        std::fs::create_dir_all(d.join("root/boot")).unwrap();
        std::fs::create_dir_all(d.join("root/bin")).unwrap();
        std::fs::write(d.join("debs/k.deb"), b"kernel deb").unwrap();
        std::fs::write(d.join("debs/b.deb"), b"busybox deb").unwrap();
        std::fs::write(d.join("root/boot/vmlinuz-6.1.0-9-arm64"), b"image").unwrap();
        std::fs::write(d.join("root/bin/busybox"), b"bb").unwrap();
        let (hk, hb) = (sha256_file(&d.join("debs/k.deb")).unwrap(), sha256_file(&d.join("debs/b.deb")).unwrap());
        std::fs::write(
            d.join("fetched.txt"),
            format!("package linux-image-6.1.0-9-arm64 6.1.1-1 {hk} debs/k.deb\npackage busybox-static 1:1.35 {hb} debs/b.deb\nkernel root/boot/vmlinuz-6.1.0-9-arm64\nbusybox root/bin/busybox\nrelease 6.1.0-9-arm64\n"),
        )
        .unwrap();
        let f = cached(&d).expect("a consistent record is the cache");
        assert_eq!(f.release, "6.1.0-9-arm64");
        assert_eq!(f.packages[1].version, "1:1.35");
        assert!(describe(&f).contains(&format!("busybox-static 1:1.35 sha256 {hb} (cached)")));
        std::fs::write(d.join("debs/b.deb"), b"tampered").unwrap();
        assert!(cached(&d).is_none(), "a .deb that no longer matches its recorded hash is fetched again");
        let _ = std::fs::remove_dir_all(&d);
    }
}

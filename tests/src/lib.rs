//! Harness for the integration tests: build the hypervisor and every guest
//! once per test binary, compose one image per test system, boot it under
//! QEMU with a hard timeout, and hand back the serial output and the exit
//! status.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use hallows::{build, image, qemu, workspace};

/// Every boot is killed after this long: a hang is a failure, not a wait.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

pub fn root() -> PathBuf {
    workspace::own_root()
}

fn artifacts(arch: vmm_config::Arch) -> &'static build::Artifacts {
    static AARCH64: OnceLock<build::Artifacts> = OnceLock::new();
    static X86_64: OnceLock<build::Artifacts> = OnceLock::new();
    let cell = match arch {
        vmm_config::Arch::Aarch64 => &AARCH64,
        vmm_config::Arch::X86_64 => &X86_64,
    };
    cell.get_or_init(|| {
        let root = root();
        // Library crates under guests/ (hallows-net, the gateway's link
        // protocol) are not guests: only directories with a binary.
        let guests: Vec<String> =
            workspace::guests(&root).into_iter().filter(|g| root.join("guests").join(g).join("src/main.rs").is_file()).collect();
        build::build(&root, arch, &guests).expect("building the hypervisor and guests")
    })
}

/// A finished boot.
#[derive(Debug)]
pub struct Boot {
    pub status: Option<i32>,
    pub output: String,
}

impl Boot {
    /// Lines printed by partition `name` (prefix removed).
    pub fn lines_of(&self, name: &str) -> Vec<&str> {
        let prefix = format!("[{name}] ");
        self.output.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
    }

    /// The hypervisor's summary line for partition `name`.
    pub fn summary(&self, name: &str) -> &str {
        let prefix = format!("summary: {name}: ");
        self.lines_of("hallows")
            .into_iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no summary for {name} in:\n{}", self.output))
    }

    pub fn assert_status(&self, status: i32) {
        assert_eq!(self.status, Some(status), "exit status (None = timed out); output:\n{}", self.output);
    }

    pub fn assert_no_uncontained(&self) {
        assert!(!self.output.contains("UNCONTAINED"), "a probe escaped:\n{}", self.output);
    }
}

/// Boots `tests/systems/<name>.toml`.
pub fn boot_system(name: &str) -> Boot {
    boot_manifest(&root().join("tests/systems").join(format!("{name}.toml")))
}

/// Boots `tests/systems/<name>.toml` with extra QEMU arguments (a disk:
/// `-drive ... -device virtio-blk-device,...`).
pub fn boot_system_with(name: &str, extra: &[String]) -> Boot {
    boot_manifest_with(&root().join("tests/systems").join(format!("{name}.toml")), extra)
}

/// Boots any manifest file.
pub fn boot_manifest(path: &Path) -> Boot {
    boot_manifest_with(path, &[])
}

/// Boots any manifest file with extra QEMU arguments.
pub fn boot_manifest_with(path: &Path, extra: &[String]) -> Boot {
    boot_manifest_patched(path, extra, &|_| {})
}

/// Boots any manifest file, with `patch` applied to the composed image
/// first (a tampered image, for the hypervisor's own checks).
pub fn boot_manifest_patched(path: &Path, extra: &[String], patch: &dyn Fn(&mut Vec<u8>)) -> Boot {
    let root = root();
    let ctx = workspace::check_context(&root);
    let sys = vmm_config::load(path, &ctx).unwrap_or_else(|d| panic!("{} is invalid:\n{d}", path.display()));
    let art = artifacts(sys.board.arch);
    let hv = std::fs::read(&art.hypervisor).expect("hypervisor binary");
    let mut img = image::compose(&sys, &hv, &|g| Ok(std::fs::read(art.guest(g))?)).expect("composing the image");
    patch(&mut img.bytes);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("system");
    let out = root.join("target/hallows/tests").join(format!("{stem}.img"));
    std::fs::create_dir_all(out.parent().expect("has a parent")).expect("image dir");
    std::fs::write(&out, &img.bytes).expect("writing the image");
    let r = qemu::run(&sys.board, &out, BOOT_TIMEOUT, true, extra).expect("running QEMU");
    Boot { status: r.status, output: r.output }
}

/// Boots `tests/systems/<name>.toml` (an x86_64 system) under Bochs with
/// CPU model `cpu`: `corei7_skylake_x` (Intel VMX with EPT) or `ryzen` (AMD
/// SVM with NRIP save), four cores like the board.
pub fn boot_bochs(name: &str, cpu: &str) -> Boot {
    boot_bochs_manifest(&root().join("tests/systems").join(format!("{name}.toml")), cpu)
}

/// Boots any x86_64 manifest under Bochs with CPU model `cpu`.
pub fn boot_bochs_manifest(path: &Path, cpu: &str) -> Boot {
    let root = root();
    let ctx = workspace::check_context(&root);
    let sys = vmm_config::load(path, &ctx).unwrap_or_else(|d| panic!("{} is invalid:\n{d}", path.display()));
    let art = artifacts(sys.board.arch);
    let hv = std::fs::read(&art.hypervisor).expect("hypervisor binary");
    let img = image::compose(&sys, &hv, &|g| Ok(std::fs::read(art.guest(g))?)).expect("composing the image");
    let disk = hallows::bochs::disk(&img, &hv).expect("composing the disk");
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("system");
    let dir = root.join("target/hallows/tests/bochs").join(format!("{stem}-{cpu}"));
    let r = hallows::bochs::run(&disk, cpu, &dir, BOOT_TIMEOUT).expect("running bochs");
    Boot { status: r.status, output: r.output }
}

/// The address of symbol `name` in the hypervisor built for `arch`.
pub fn hypervisor_symbol(arch: vmm_config::Arch, name: &str) -> u64 {
    let hv = std::fs::read(&artifacts(arch).hypervisor).expect("hypervisor binary");
    let elf = image::Elf::parse(&hv).expect("the hypervisor is an ELF file");
    elf.symbol(name).unwrap_or_else(|| panic!("the hypervisor has no symbol {name}"))
}

/// `tests/systems/<name>.toml` (an x86_64 system) with every `@symbol@` in
/// it replaced by the address of that symbol of the hypervisor (for probes
/// that aim at the hypervisor's code), written under `target/`: its path.
pub fn x86_system_with_symbols(name: &str) -> PathBuf {
    let root = root();
    let src = std::fs::read_to_string(root.join("tests/systems").join(format!("{name}.toml"))).expect("the system");
    let mut out = String::new();
    let mut parts = src.split('@');
    out.push_str(parts.next().unwrap_or_default());
    while let Some(symbol) = parts.next() {
        out.push_str(&format!("{:#x}", hypervisor_symbol(vmm_config::Arch::X86_64, symbol)));
        out.push_str(parts.next().expect("an `@symbol@` pair"));
    }
    let path = root.join("target/hallows/tests/generated").join(format!("{name}.toml"));
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("generated dir");
    std::fs::write(&path, out).expect("writing the system");
    path
}

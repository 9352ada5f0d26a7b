//! Harness for the integration tests: build the hypervisor and every guest
//! once per test binary, compose one image per test system, boot it under
//! QEMU with a hard timeout, and hand back the serial output and the exit
//! status.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use hallows::{build, image, qemu, symbolize, workspace};

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
        let guests = workspace::guests(&root);
        build::build(&root, arch, &guests).expect("building the hypervisor and guests")
    })
}

/// Where the guests of `arch` were built (built first if needed).
pub fn guest_dir(arch: vmm_config::Arch) -> &'static Path {
    &artifacts(arch).guest_dir
}

/// Composes the image of `tests/systems/<name>.toml`; returns the system
/// and the image's path.
pub fn system_image(name: &str) -> (vmm_config::System, PathBuf) {
    image_of(&root().join("tests/systems").join(format!("{name}.toml")), &|_| {}, &|_| {})
}

/// Composes the image of the manifest at `path` (a system outside
/// tests/systems, such as vmm-config/examples/flagship.toml).
pub fn manifest_image(path: &Path) -> (vmm_config::System, PathBuf) {
    image_of(path, &|_| {}, &|_| {})
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

    /// Partition `name` (RAM at 0x4000_0000, one vCPU) overflowed its
    /// stack: the summary says so, and its post-mortem has the guard-page
    /// line, `fault` (the architecture's exception), the registers (a
    /// line starting with `registers`) and a backtrace of the recursion.
    /// Partition `name`'s preemptible task ran into the canary at the
    /// bottom of its stack: stopped with a stack overflow at the stack's base.
    pub fn assert_task_stack_overflow(&self, name: &str) {
        let s = self.summary(name);
        assert!(s.starts_with("stopped: stack overflow (vCPU 0, address 0x4"), "{}", self.output);
        assert!(!self.lines_of(name).iter().any(|l| l.contains("UNCONTAINED")), "{}", self.output);
    }

    pub fn assert_stack_overflow(&self, name: &str, fault: &str, registers: &str) {
        self.assert_status(1);
        self.assert_no_uncontained();
        let s = self.summary(name);
        assert!(s.starts_with("stopped: stack overflow (vCPU 0, address 0x401"), "{}", self.output);
        let lines = self.lines_of(name);
        let has = |f: &dyn Fn(&str) -> bool| lines.iter().any(|l| f(l));
        assert!(has(&|l| l.starts_with("post-mortem: stack overflow on vCPU 0: access to 0x401")), "{}", self.output);
        assert!(has(&|l| l.contains(fault)), "no `{fault}` in:\n{}", self.output);
        assert!(has(&|l| l.starts_with(registers)), "no `{registers}` in:\n{}", self.output);
        let frames = lines.iter().filter(|l| l.starts_with("  #")).count();
        assert!(frames >= 10, "the backtrace of the recursion is too short:\n{}", self.output);
        // Symbolized with the guest's ELF: the probe's recursion, with its source line.
        let recursion = lines.iter().filter(|l| l.contains(" probe::recurse at guests/tests/probe/src/main.rs:")).count();
        assert!(recursion >= 5, "the recursion is not symbolized:\n{}", self.output);
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
    let (sys, out) = image_of(path, patch, &|_| {});
    let r = qemu::run(&sys, &out, BOOT_TIMEOUT, true, extra).expect("running QEMU");
    // Post-mortem backtraces come symbolized, as `hallows run` shows them.
    let output = symbolize::symbolize(&r.output, &sys, &|g| artifacts(sys.board.arch).guest(g));
    Boot { status: r.status, output }
}

/// The EFI loader of `arch`, built once per test binary.
fn uefi_loader(arch: vmm_config::Arch) -> &'static [u8] {
    static AARCH64: OnceLock<Vec<u8>> = OnceLock::new();
    static X86_64: OnceLock<Vec<u8>> = OnceLock::new();
    let cell = match arch {
        vmm_config::Arch::Aarch64 => &AARCH64,
        vmm_config::Arch::X86_64 => &X86_64,
    };
    cell.get_or_init(|| {
        let efi = build::build_loader(&root(), arch).expect("building the EFI loader");
        std::fs::read(efi).expect("reading the EFI loader")
    })
}

/// Boots `tests/systems/<name>.toml` through UEFI firmware (AAVMF at EL2,
/// OVMF) from an EFI system partition image, as `hallows run --uefi` does,
/// with extra QEMU arguments.
pub fn boot_system_uefi(name: &str, extra: &[String]) -> Boot {
    boot_manifest_uefi(&root().join("tests/systems").join(format!("{name}.toml")), extra)
}

/// As [`boot_system_uefi`], for any manifest file.
pub fn boot_manifest_uefi(path: &Path, extra: &[String]) -> Boot {
    let (sys, img) = image_of(path, &|_| {}, &|_| {});
    let arch = sys.board.arch;
    let hv = std::fs::read(&artifacts(arch).hypervisor).expect("hypervisor binary");
    let image = std::fs::read(&img).expect("reading the image");
    let file = hallows::uefi::image_file(&sys, &hv, &image).expect("the image file");
    // A disk (and variable store) of its own per boot: tests booting the
    // same manifest run in parallel.
    static BOOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let disk = hallows::uefi::disk_path(&img.with_file_name(format!("{}-{n}.img", img.file_stem().and_then(|s| s.to_str()).unwrap_or("system"))));
    hallows::uefi::write_disk(&disk, arch, uefi_loader(arch), &file).expect("writing the ESP image");
    let r = qemu::run(&sys, &disk, BOOT_TIMEOUT, true, extra).expect("running QEMU");
    Boot { status: r.status, output: r.output }
}

/// Boots any manifest file with a time limit of its own (the soak).
pub fn boot_manifest_for(path: &Path, timeout: Duration) -> Boot {
    let (sys, out) = image_of(path, &|_| {}, &|_| {});
    let r = qemu::run(&sys, &out, timeout, true, &[]).expect("running QEMU");
    Boot { status: r.status, output: r.output }
}

/// An edit of the channels' recorded layout hashes: `(channel, hash)`.
pub type Retype<'a> = dyn Fn(&mut Vec<(String, u64)>) + 'a;

/// Boots any manifest file with the channels' recorded layout hashes
/// (what `hallows build` writes from the checked specs) edited by `retype`
/// first: a system whose two ends disagree on a channel's message type,
/// which `hallows check` would refuse, for the runtime's own check.
pub fn boot_manifest_retyped(path: &Path, retype: &Retype<'_>) -> Boot {
    let (sys, out) = image_of(path, &|_| {}, retype);
    let r = qemu::run(&sys, &out, BOOT_TIMEOUT, true, &[]).expect("running QEMU");
    Boot { status: r.status, output: r.output }
}

/// Loads the manifest at `path`, composes its image (with `patch` applied)
/// under `target/hallows/tests/`, and returns the system and the image's path.
fn image_of(path: &Path, patch: &dyn Fn(&mut Vec<u8>), retype: &Retype<'_>) -> (vmm_config::System, PathBuf) {
    let root = root();
    let ctx = workspace::check_context(&root);
    let sys = vmm_config::load(path, &ctx).unwrap_or_else(|d| panic!("{} is invalid:\n{d}", path.display()));
    let art = artifacts(sys.board.arch);
    let hv = std::fs::read(&art.hypervisor).expect("hypervisor binary");
    // The channels' message types as `hallows build` records them, from the
    // specs of the manifest and of its guests (none where they do not check).
    let hashes = workspace::check_specs(Some(&root), &sys, path).map(|s| parseltongue::manifest::layout_hashes(&sys, &s)).unwrap_or_default();
    let mut hashes = hashes;
    let recorded = hashes.clone();
    retype(&mut hashes);
    let mut img = image::compose_typed(&sys, &hv, &|g| Ok(std::fs::read(art.guest(g))?), &hashes).expect("composing the image");
    patch(&mut img.bytes);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("system");
    // A retyped image is another system than the manifest's: its own file,
    // so that a test booting the manifest as written at the same time
    // does not overwrite it.
    let suffix = if recorded != hashes { "-retyped" } else { "" };
    let out = root.join("target/hallows/tests").join(format!("{stem}{suffix}.img"));
    std::fs::create_dir_all(out.parent().expect("has a parent")).expect("image dir");
    std::fs::write(&out, &img.bytes).expect("writing the image");
    (sys, out)
}

/// A system booting in the background, for tests that talk to it over the
/// network while it runs (its `[[forward]]`s reach it on 127.0.0.1).
pub struct Running {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<qemu::Outcome>>,
    pub system: vmm_config::System,
}

/// Starts `tests/systems/<name>.toml` under QEMU in a background thread
/// (killed after [`BOOT_TIMEOUT`] at the latest).
pub fn start_system(name: &str, extra: &[String]) -> Running {
    start_system_edited(name, extra, &|_| {})
}

/// [`start_system`] with the loaded system edited first (a test's own
/// disk image: `p.disk.as_mut().unwrap().path = ...`).
pub fn start_system_edited(name: &str, extra: &[String], edit: &dyn Fn(&mut vmm_config::System)) -> Running {
    start_manifest_edited(&root().join("tests/systems").join(format!("{name}.toml")), extra, edit)
}

/// [`start_system_edited`] for any manifest (a `vmm-config/examples` one).
pub fn start_manifest_edited(path: &Path, extra: &[String], edit: &dyn Fn(&mut vmm_config::System)) -> Running {
    let (mut sys, out) = image_of(path, &|_| {}, &|_| {});
    edit(&mut sys);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, system, extra) = (stop.clone(), sys.clone(), extra.to_vec());
    let handle = std::thread::spawn(move || {
        qemu::run_until(&system, &out, Some(BOOT_TIMEOUT), &flag, true, &extra).expect("running QEMU")
    });
    Running { stop, handle: Some(handle), system: sys }
}

/// As [`start_system`], with operator control: commands go to the
/// hypervisor as `hallows run` sends them, and the output can be waited on.
pub fn start_system_controlled(name: &str) -> (Running, std::sync::Arc<qemu::Control>) {
    let (sys, out) = image_of(&root().join("tests/systems").join(format!("{name}.toml")), &|_| {}, &|_| {});
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let control = std::sync::Arc::new(qemu::Control::default());
    let (flag, system, ctl) = (stop.clone(), sys.clone(), control.clone());
    let handle = std::thread::spawn(move || {
        qemu::run_controlled(&system, &out, Some(BOOT_TIMEOUT), &flag, true, &[], None, Some(ctl)).expect("running QEMU")
    });
    (Running { stop, handle: Some(handle), system: sys }, control)
}

impl Running {
    /// The host port the manifest forwards to `port` of partition `to`.
    pub fn host_port(&self, to: &str, port: u16) -> u16 {
        self.system
            .forwards
            .iter()
            .find(|f| f.to == to && f.port == port)
            .unwrap_or_else(|| panic!("no forward to {to}:{port} in the manifest"))
            .host
    }

    /// Whether QEMU has ended.
    pub fn ended(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits until `GET path` on host port `port` answers with HTTP 200 (an
    /// application-level answer: QEMU accepts TCP connections on a forward
    /// before the guest listens) and returns the body. Panics with the
    /// machine's output if the machine ends first or `timeout` passes.
    pub fn wait_http(&mut self, port: u16, path: &str, timeout: Duration) -> String {
        let start = std::time::Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            if self.ended() {
                let b = self.wait();
                panic!("the machine ended before answering GET {path} on port {port} ({last}):\n{}", b.output);
            }
            match http_get(port, path, Duration::from_secs(10)) {
                Ok((200, body)) => return body,
                Ok((code, body)) => last = format!("HTTP {code}: {body}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let b = self.stop();
        panic!("no HTTP 200 for GET {path} on port {port} within {timeout:?} (last: {last}):\n{}", b.output);
    }

    /// Stops the machine (if it still runs) and returns its output.
    pub fn stop(&mut self) -> Boot {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.wait()
    }

    /// Waits for the machine to end by itself (at most [`BOOT_TIMEOUT`]).
    pub fn wait(&mut self) -> Boot {
        let h = self.handle.take().expect("the machine was already waited for");
        let r = h.join().expect("the QEMU thread panicked");
        Boot { status: r.status, output: r.output }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.stop.store(true, std::sync::atomic::Ordering::Release);
            let _ = self.handle.take().map(|h| h.join());
        }
    }
}

/// `GET path` over HTTP/1.1 on 127.0.0.1:`port` (`Connection: close`):
/// the status code and the body.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP response: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((code, body))
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
    Boot { status: r.status, output: symbolize::symbolize(&r.output, &sys, &|g| art.guest(g)) }
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

/// A sector of the virtio-blk test disk.
pub const SECTOR: usize = 512;

/// The virtio-blk test disk of system `name` (the `disk` guest's): 64
/// sectors under `target/hallows/tests/<name>/disk.img`, sectors 0..8
/// holding the pattern the guest checks (byte `j` of sector `i` is
/// `(i * 7 + j) % 251`), the rest zero. Returns its path and its bytes.
pub fn virtio_blk_disk(name: &str) -> (PathBuf, Vec<u8>) {
    let dir = root().join("target/hallows/tests").join(name);
    std::fs::create_dir_all(&dir).expect("disk dir");
    let disk = dir.join("disk.img");
    let mut image = vec![0u8; 64 * SECTOR];
    for i in 0..8 {
        for j in 0..SECTOR {
            image[i * SECTOR + j] = ((i * 7 + j) % 251) as u8;
        }
    }
    std::fs::write(&disk, &image).expect("writing the disk image");
    (disk, image)
}

/// QEMU arguments that plug `disk` in as a virtio-blk device: on QEMU bus
/// `bus` (a board device's `qemu_bus`), or where QEMU puts it without one
/// (the highest free virtio-mmio transport).
pub fn virtio_blk_args(disk: &Path, bus: Option<&str>) -> Vec<String> {
    let device = match bus {
        Some(bus) => format!("virtio-blk-device,drive=d0,bus={bus}"),
        None => "virtio-blk-device,drive=d0".to_owned(),
    };
    vec!["-drive".to_owned(), format!("file={},if=none,format=raw,id=d0", disk.display()), "-device".to_owned(), device]
}

/// The QEMU bus of device `device` on the board of `tests/systems/<name>.toml`.
pub fn qemu_bus(name: &str, device: &str) -> String {
    let path = root().join("tests/systems").join(format!("{name}.toml"));
    let sys = vmm_config::load(&path, &workspace::check_context(&root())).unwrap_or_else(|d| panic!("{} is invalid:\n{d}", path.display()));
    let dev = sys.board.device(device).unwrap_or_else(|| panic!("board {} has no device {device}", sys.board.name));
    dev.qemu_bus.clone().unwrap_or_else(|| panic!("device {device} has no qemu_bus"))
}

/// What a `virtio-blk` system must show: the `disk` partition read the
/// pattern, wrote sectors 8..16 (byte `j` of sector `i` is `(i * 13 + j) %
/// 241`, checked here on the host in `disk`, the rest unchanged from
/// `image`: [`check_virtio_blk_disk`]), took the device's interrupts and exited 0; `snoop` was stopped
/// at its read of `snoop_addr` (the device's registers, which only `disk`
/// maps).
pub fn check_virtio_blk(b: &Boot, disk: &Path, image: &[u8], snoop_addr: &str) {
    b.assert_status(1);
    b.assert_no_uncontained();
    let lines = b.lines_of("disk");
    assert!(lines.contains(&"read the pattern from sectors 0..8"), "{}", b.output);
    assert!(lines.contains(&"wrote sectors 8..16"), "{}", b.output);
    assert!(lines.contains(&"device interrupts taken: yes"), "{}", b.output);
    assert_eq!(b.summary("disk"), "exited 0");
    let fault = format!("stopped: stage-2 fault: read at {snoop_addr}");
    assert!(b.summary("snoop").starts_with(&fault), "{}", b.output);
    check_virtio_blk_disk(disk, image);
}

/// The disk after a `virtio-blk` run, read on the host: sectors 0..8 as
/// `image` had them, sectors 8..16 hold the guest's pattern (byte `j` of
/// sector `i` is `(i * 13 + j) % 241`), the rest still zero.
pub fn check_virtio_blk_disk(disk: &Path, image: &[u8]) {
    let after = std::fs::read(disk).expect("reading the disk image back");
    assert_eq!(&after[..8 * SECTOR], &image[..8 * SECTOR], "the pattern sectors changed");
    for i in 8..16 {
        for j in 0..SECTOR {
            assert_eq!(after[i * SECTOR + j], ((i * 13 + j) % 241) as u8, "sector {i} byte {j}");
        }
    }
    assert!(after[16 * SECTOR..].iter().all(|&b| b == 0), "sectors past 16 changed");
}

/// Runs a client program with `input` on its standard input (none: an
/// empty one), killing it (SIGKILL) once `limit` has passed; its output
/// and exit status (a killed client's status is not success).
pub fn run_with_timeout(cmd: &mut std::process::Command, input: Option<&[u8]>, limit: Duration) -> std::process::Output {
    let mut child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("starting a client");
    let mut stdin = child.stdin.take();
    if let (Some(i), Some(s)) = (input, stdin.as_mut()) {
        std::io::Write::write_all(s, i).expect("feeding the client");
    }
    drop(stdin);
    let id = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let killer = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        while !d.load(std::sync::atomic::Ordering::Acquire) {
            if t.elapsed() > limit {
                let _ = std::process::Command::new("kill").arg("-9").arg(id.to_string()).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let out = child.wait_with_output().expect("waiting for a client");
    done.store(true, std::sync::atomic::Ordering::Release);
    let _ = killer.join();
    out
}

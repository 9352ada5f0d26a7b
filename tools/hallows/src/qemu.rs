//! Running an image under QEMU with a hard timeout.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmm_config::{Board, System};
use wait_timeout::ChildExt;

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// Whether the machine ended by itself, or was killed.
    pub ended: Ended,
    /// The system's exit status as the hypervisor reported it (its
    /// `[hallows] machine exit status N` line, which no partition can print;
    /// on x86_64 it must agree with the isa-debug-exit code QEMU exited
    /// with); `NO_STATUS` if the machine stopped without a trustworthy
    /// report, `None` if it was killed (see `ended`).
    pub status: Option<i32>,
    /// Everything the machine printed (captured runs only).
    pub output: String,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The emulator exited by itself.
    Exited,
    /// It was killed at the time limit.
    TimedOut,
    /// It was killed because the user asked (`stop` was set: Ctrl-C, SIGTERM).
    Stopped,
}

impl Outcome {
    /// Whether the machine was killed rather than finishing by itself.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
}

/// The QEMU command line for `sys` booting `image`: the board's machine,
/// the system's NICs (each on the QEMU bus the manifest checker placed it
/// on, on an isolated user-mode network with the manifest's forwards), then
/// `extra`.
pub fn command(sys: &System, image: &Path, extra: &[String]) -> Result<Command> {
    let board = &sys.board;
    let Some(q) = board.qemu() else {
        bail!("board {} cannot be emulated: it has no [qemu] section", board.name);
    };
    let mut cmd = Command::new(&q.binary);
    refuse_host_access(&format!("board {}'s [qemu] extra", board.name), &q.extra)?;
    refuse_host_access("the extra QEMU arguments", extra)?;
    let (cpu, extra_args) = accelerated(board, &q.cpu, &q.extra)?;
    ensure_disks(sys)?;
    if let Some(sock) = &sys.display_host.qmp {
        crate::qmp::prepare_socket(sock)?;
    }
    // An EFI system partition image boots through the firmware; the
    // hypervisor then finds the machine in the device tree the firmware
    // passes, which AAVMF gives only without ACPI.
    let uefi = crate::uefi::is_disk(image);
    let machine = match board.arch {
        vmm_config::Arch::Aarch64 if uefi && !q.machine.contains("acpi=") => format!("{},acpi=off", q.machine),
        _ => q.machine.clone(),
    };
    let boot = if uefi { crate::uefi::qemu_args(board.arch, image)? } else { vec!["-kernel".into(), image.display().to_string()] };
    cmd.args(["-M", &machine, "-cpu", &cpu])
        .args(["-m", &format!("{}M", q.memory_mib), "-smp", &q.smp.to_string()])
        // No semihosting, no debug console, no monitor, no gdb stub: nothing
        // a partition could reach to act on the host. aarch64 powers off
        // through PSCI SYSTEM_OFF; x86_64 exits through isa-debug-exit (a
        // device in the board's `extra`, on a port no partition is given).
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"])
        .args(&extra_args)
        .args(&boot)
        .args(vmm_config::net_qemu_args(&sys.partitions, &sys.forwards))
        .args(vmm_config::disk_qemu_args(&sys.partitions))
        .args(vmm_config::display_qemu_args(&sys.partitions, &sys.display_host))
        // QMP without a display (`hallows serve` stops the machine through
        // it if the hypervisor cannot): the display's arguments carry it
        // otherwise.
        .args(if sys.partitions.iter().any(|p| p.display.is_some()) { Vec::new() } else { vmm_config::display::qmp_args(&sys.display_host) })
        .args(extra)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Creates each partition's disk image that does not exist yet (sparse,
/// the manifest's size); an existing image is used as it is, and one
/// smaller than the manifest's size is refused (the guest would find
/// less than its manifest promises).
pub fn ensure_disks(sys: &System) -> Result<()> {
    for p in &sys.partitions {
        let Some(disk) = &p.disk else { continue };
        match std::fs::metadata(&disk.path) {
            Ok(m) if !m.is_file() => bail!("the disk of partition {} ({}) is not a regular file", p.name, disk.path.display()),
            Ok(m) if m.len() < disk.size => bail!(
                "the disk image of partition {} ({}) holds {} bytes, less than the manifest's {}; delete it to start afresh, or grow it (truncate -s)",
                p.name,
                disk.path.display(),
                m.len(),
                vmm_config::format_size(disk.size)
            ),
            Ok(_) => {}
            Err(_) => {
                if let Some(dir) = disk.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = std::fs::File::create(&disk.path).with_context(|| format!("creating the disk image {}", disk.path.display()))?;
                f.set_len(disk.size).with_context(|| format!("sizing the disk image {}", disk.path.display()))?;
            }
        }
    }
    Ok(())
}

/// Waits until the service behind host port `port` answers: QEMU's
/// user-mode network accepts a TCP connection on a forwarded port before
/// any guest listens, so a connect proves nothing. The probe sends an HTTP
/// request and takes any byte back as the application's answer (an HTTP
/// server answers it; a Redis or PostgreSQL server answers with a protocol
/// error; only a listening guest answers at all). `false` if `stop` is set
/// first.
pub fn wait_for_answer(port: u16, stop: &AtomicBool) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while !stop.load(Ordering::Acquire) {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut byte = [0u8; 1];
            if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok() && matches!(s.read(&mut byte), Ok(1)) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// QEMU options that would hand a partition (or anyone on the machine's
/// consoles) a way to the host or to the emulator's control: semihosting
/// (host files and commands, the exit status), debug consoles and ports a
/// guest can write, the monitor and QMP, the gdb stub, character devices
/// the manifest cannot see. None of them may come from a board file or the
/// command line; the tool sets the one console and the one exit device
/// itself.
const HOST_ACCESS: &[(&str, &str)] = &[
    ("-semihosting", "semihosting lets any partition run host commands and read host files"),
    ("-semihosting-config", "semihosting lets any partition run host commands and read host files"),
    ("-monitor", "the QEMU monitor controls the emulator and the host"),
    ("-qmp", "QMP controls the emulator"),
    ("-qmp-pretty", "QMP controls the emulator"),
    ("-mon", "the QEMU monitor controls the emulator and the host"),
    ("-gdb", "the gdb stub reads and writes all memory"),
    ("-s", "the gdb stub reads and writes all memory"),
    ("-S", "a stopped machine waits for the monitor"),
    ("-debugcon", "a debug console port any guest could write"),
    ("-chardev", "character devices are not part of the manifest"),
    ("-serial", "the tool owns the console"),
    ("-parallel", "a port the manifest does not describe"),
    ("-virtfs", "host file-system sharing"),
    ("-plugin", "a plugin runs host code"),
    ("-vnc", "a VNC server may listen beyond this machine; use `hallows run --display vnc` (127.0.0.1 only)"),
    ("-spice", "a SPICE server may listen beyond this machine; use `hallows run --display vnc` (127.0.0.1 only)"),
];

/// Devices that are the same hazards as the options above.
const HOST_ACCESS_DEVICES: &[&str] = &["isa-debugcon", "virtio-serial", "virtconsole", "virtserialport", "virtio-9p", "vhost-user"];

fn refuse_host_access(origin: &str, args: &[String]) -> Result<()> {
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let opt = a.split_once('=').map(|(o, _)| o).unwrap_or(a);
        let opt = opt.strip_prefix('-').filter(|o| o.starts_with('-')).unwrap_or(opt);
        if let Some((o, why)) = HOST_ACCESS.iter().find(|(o, _)| *o == opt) {
            bail!("{origin}: refusing QEMU option `{o}`: {why}; partitions must have no way to the host");
        }
        if opt == "-net" || opt == "-netdev" || opt == "-nic" {
            let value = it.peek().map(|s| s.as_str()).unwrap_or("");
            refuse_host_network(origin, opt, value)?;
        }
        if opt == "-device" {
            let value = it.peek().map(|s| s.as_str()).unwrap_or("");
            let driver = value.split(',').next().unwrap_or("");
            if HOST_ACCESS_DEVICES.iter().any(|d| driver.starts_with(d)) {
                bail!("{origin}: refusing QEMU device `{driver}`: it gives partitions a way to the host");
            }
            if driver == "isa-debug-exit" && !value.split(',').any(|kv| kv == "iobase=0xf4") {
                bail!(
                    "{origin}: isa-debug-exit must sit at iobase=0xf4, the port the hypervisor writes \
                     (and no partition is given)"
                );
            }
        }
    }
    Ok(())
}

/// A network backend may only be QEMU's user-mode network with
/// `restrict=on` (the guest reaches neither the host nor anything beyond
/// it; forwards still reach the guest) and none of the options that hand
/// the guest host services (`guestfwd`, `smb`, `tftp`, `bootfile`). Tap,
/// socket, bridge, vde, vhost and the rest put a partition on the host's
/// network. NICs declared in the manifest get such a network from the tool.
fn refuse_host_network(origin: &str, opt: &str, value: &str) -> Result<()> {
    let mut kvs = value.split(',');
    let backend = kvs.next().unwrap_or("");
    if opt == "-net" && (backend == "nic" || backend == "none") {
        return Ok(());
    }
    if backend != "user" {
        bail!(
            "{origin}: refusing QEMU network backend `{backend}` ({opt}): it puts a partition on the host's              network; declare a `nic` in the manifest (the tool gives it an isolated user-mode network)"
        );
    }
    let kvs: Vec<&str> = kvs.collect();
    if let Some(kv) = kvs.iter().find(|kv| {
        let k = kv.split('=').next().unwrap_or("");
        matches!(k, "guestfwd" | "smb" | "tftp" | "bootfile" | "tftp-server-name")
    }) {
        bail!("{origin}: refusing `{kv}` on a user-mode network: it gives partitions a way to the host");
    }
    if !kvs.iter().any(|kv| matches!(*kv, "restrict=on" | "restrict=yes" | "restrict=true")) {
        bail!("{origin}: a user-mode network needs `restrict=on`, or partitions reach the host and beyond");
    }
    Ok(())
}

/// The accelerator a run asks for: `HALLOWS_ACCEL=kvm` (what `make run
/// ACCEL=kvm` sets) runs an x86_64 board under KVM with the host CPU model,
/// so the hypervisor drives the VMX or SVM that nested KVM exposes. It
/// refuses, rather than silently falling back to emulation, when
/// `/dev/kvm` is missing or the host CPU offers neither extension to its
/// guests. Anything else keeps the board's own settings (TCG).
fn accelerated(board: &Board, cpu: &str, extra: &[String]) -> Result<(String, Vec<String>)> {
    let accel = std::env::var("HALLOWS_ACCEL").unwrap_or_default();
    match accel.as_str() {
        "" | "tcg" => Ok((cpu.to_owned(), extra.to_vec())),
        "kvm" => {
            if board.arch != vmm_config::Arch::X86_64 {
                bail!("ACCEL=kvm is for x86_64 boards; board {} is {}", board.name, board.arch.name());
            }
            check_accel()?;
            let mut out = Vec::new();
            let mut it = extra.iter();
            while let Some(a) = it.next() {
                if a == "-accel" {
                    it.next();
                } else {
                    out.push(a.clone());
                }
            }
            out.extend(["-accel".to_owned(), "kvm".to_owned()]);
            Ok(("host".to_owned(), out))
        }
        other => bail!("unknown accelerator `{other}` (HALLOWS_ACCEL / ACCEL): use tcg or kvm"),
    }
}

/// Refuses at once (before anything is built) an accelerator this machine
/// cannot provide: `HALLOWS_ACCEL=kvm` without `/dev/kvm` or without VMX or
/// SVM offered to guests.
pub fn check_accel() -> Result<()> {
    match std::env::var("HALLOWS_ACCEL").unwrap_or_default().as_str() {
        "" | "tcg" => Ok(()),
        "kvm" => {
            let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let nested = flags
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
            if !Path::new("/dev/kvm").exists() || !nested {
                bail!(
                    "ACCEL=kvm needs /dev/kvm on a CPU that offers VMX or SVM to its guests (nested \
                     virtualization); this machine has {}. Fall back to emulation: `make run ARCH=x86_64` \
                     (ACCEL=tcg: AMD SVM under QEMU TCG), or Bochs for Intel VMX (`make test` runs it)",
                    if Path::new("/dev/kvm").exists() { "/dev/kvm but neither vmx nor svm in /proc/cpuinfo" } else { "no /dev/kvm" }
                );
            }
            Ok(())
        }
        other => bail!("unknown accelerator `{other}` (HALLOWS_ACCEL / ACCEL): use tcg or kvm"),
    }
}

/// Runs `image`; with `capture` the output is collected (and not shown),
/// otherwise it is also shown as it comes, line by line, with anything a
/// terminal would act on escaped.
pub fn run(sys: &System, image: &Path, timeout: Duration, capture: bool, extra: &[String]) -> Result<Outcome> {
    run_until(sys, image, Some(timeout), &AtomicBool::new(false), capture, extra)
}

/// As [`run`], with no time limit if `timeout` is `None`, and killing the
/// machine as soon as `stop` is set (by a signal handler). QEMU runs in its
/// own process group, so a Ctrl-C at the terminal reaches this process
/// only, which then stops QEMU itself.
pub fn run_until(
    sys: &System,
    image: &Path,
    timeout: Option<Duration>,
    stop: &AtomicBool,
    capture: bool,
    extra: &[String],
) -> Result<Outcome> {
    run_debug(sys, image, timeout, stop, capture, extra, None)
}

/// As [`run_until`], with QEMU's gdb stub on 127.0.0.1:`gdb_port` if
/// given (the machine waits for gdb before its first instruction; see
/// [`crate::gdb`]). The stub is the tool's own option: it is refused in
/// `extra` and in board files.
pub fn run_debug(
    sys: &System,
    image: &Path,
    timeout: Option<Duration>,
    stop: &AtomicBool,
    capture: bool,
    extra: &[String],
    gdb_port: Option<u16>,
) -> Result<Outcome> {
    run_controlled(sys, image, timeout, stop, capture, extra, &gdb_port.map(crate::gdb::qemu_args).unwrap_or_default(), None)
}

/// Operator commands for a running machine (`status`, `stop NAME`,
/// `restart NAME`), delivered to the hypervisor on the console's receive
/// side: the one input only the host can write (docs/supervision.md).
#[derive(Debug, Default)]
pub struct Control {
    queue: std::sync::Mutex<Vec<String>>,
    /// The machine's console output so far (for a caller that waits for a
    /// line before it acts).
    seen: std::sync::Mutex<Vec<u8>>,
    /// QEMU's process id, once started.
    pid: std::sync::Mutex<Option<u32>>,
}

impl Control {
    /// Whether the machine's output so far contains `text`.
    pub fn seen(&self, text: &str) -> bool {
        self.seen.lock().map(|s| String::from_utf8_lossy(&s).contains(text)).unwrap_or(false)
    }

    /// How many bytes the machine has printed so far (a mark for
    /// [`Control::output_since`]).
    pub fn output_len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// What the machine printed after the mark `at`.
    pub fn output_since(&self, at: usize) -> String {
        self.seen.lock().map(|s| String::from_utf8_lossy(s.get(at..).unwrap_or_default()).into_owned()).unwrap_or_default()
    }

    /// QEMU's process id, once it has started.
    pub fn pid(&self) -> Option<u32> {
        self.pid.lock().ok().and_then(|p| *p)
    }

    /// The machine's console output so far.
    pub fn output(&self) -> String {
        self.seen.lock().map(|s| String::from_utf8_lossy(&s).into_owned()).unwrap_or_default()
    }

    /// Waits until the machine's output contains `text`; `false` after `timeout`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if self.seen(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Checks `line` against the commands and `names` (the system's
    /// partitions) and queues it; the error says what is accepted.
    pub fn send(&self, line: &str, names: &[&str]) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["status"] => {}
            ["stop" | "restart", name] if names.contains(name) => {}
            ["stop" | "restart", name] => return Err(format!("no partition named {name:?}; partitions: {}", names.join(", "))),
            _ => return Err(format!("unknown command {line:?}; commands: status, stop NAME, restart NAME")),
        }
        self.queue.lock().map_err(|_| "control queue poisoned".to_owned())?.push(words.join(" "));
        Ok(())
    }

    fn take(&self) -> Vec<String> {
        self.queue.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default()
    }
}

/// As [`run_debug`], forwarding `control`'s commands to the hypervisor,
/// with `own`: QEMU options of the tool itself (the gdb stub, the QMP
/// socket of `hallows linux-cost`, the counting plugin of `hallows
/// bench-count`), which would be refused in `extra`.
/// Never from a manifest, a board or the command line.
#[allow(clippy::too_many_arguments)]
pub fn run_controlled(
    sys: &System,
    image: &Path,
    timeout: Option<Duration>,
    stop: &AtomicBool,
    capture: bool,
    extra: &[String],
    own: &[String],
    control: Option<std::sync::Arc<Control>>,
) -> Result<Outcome> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    // A forward whose host port is taken would leave the machine without
    // it (QEMU refuses the rule) or, worse, let a client reach whatever
    // else listens there: refuse to start.
    for f in &sys.forwards {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", f.host)) {
            bail!("host port {} (forwarded to {} port {}) is not free on 127.0.0.1: {e}; stop what uses it or change the [[forward]]", f.host, f.to, f.port);
        }
    }
    let mut cmd = command(sys, image, extra)?;
    cmd.args(own);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    if control.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {:?} (is QEMU installed? `make deps`)", cmd.get_program()))?;
    if let Some(mut pid) = control.as_deref().and_then(|c| c.pid.lock().ok()) {
        *pid = Some(child.id());
    }
    let mut console_in = child.stdin.take();
    let tap = control.clone();
    let reader = child.stdout.take().map(|out| std::thread::spawn(move || collect(out, !capture, tap.as_deref())));
    let err_reader = child.stderr.take().map(|err| std::thread::spawn(move || collect(err, !capture, None)));
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let (exit, ended) = loop {
        if let (Some(c), Some(input)) = (control.as_deref(), console_in.as_mut()) {
            for line in c.take() {
                // The console's receive side: the hypervisor's control
                // path (a line per command). A machine that has ended no
                // longer reads it.
                let _ = input.write_all(format!("{line}\n").as_bytes()).and_then(|()| input.flush());
            }
        }
        if let Some(s) = child.wait_timeout(Duration::from_millis(50))? {
            break (Some(s.code()), Ended::Exited);
        }
        let why = if stop.load(Ordering::Acquire) {
            Ended::Stopped
        } else if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            Ended::TimedOut
        } else {
            continue;
        };
        let _ = child.kill();
        let _ = child.wait();
        break (None, why);
    };
    let mut output = reader.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    if let Some(h) = err_reader {
        output.extend(h.join().unwrap_or_default());
    }
    let output = String::from_utf8_lossy(&output).into_owned();
    let status = exit.map(|code| system_status(sys.board.arch, code, &output));
    Ok(Outcome { ended, status, output })
}

/// Each partition's state as the hypervisor's console lines tell it (only
/// the hypervisor writes lines that start `[hallows] `): how it ended, or
/// that it was still running, and how often it was restarted. For a run
/// that was stopped before the hypervisor printed its own summary.
pub fn partition_states(output: &str, names: &[&str]) -> Vec<(String, String)> {
    let hv: Vec<&str> = output
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("[hallows] "))
        .collect();
    names
        .iter()
        .map(|&name| {
            let prefix = format!("partition {name} ");
            let mut state = "running".to_owned();
            let mut restarts = 0;
            for l in hv.iter().filter_map(|l| l.strip_prefix(prefix.as_str())) {
                if let Some(s) = l.strip_prefix("exited with status ") {
                    state = format!("exited {s}");
                } else if let Some(r) = l.strip_prefix("stopped: ") {
                    state = format!("stopped: {r}");
                } else if l.starts_with("faulted: ") && l.contains("; restarting it") {
                    restarts += 1;
                } else if let Some(r) = l.strip_prefix("faulted: ") {
                    state = format!("stopped: {}", r.split("; its policy halts").next().unwrap_or(r));
                }
            }
            if restarts > 0 {
                state.push_str(&format!(" (restarted {restarts} time{})", if restarts == 1 { "" } else { "s" }));
            }
            (name.to_owned(), state)
        })
        .collect()
}

/// The system's status from how QEMU ended (`code`, `None` if killed by a
/// signal) and what the hypervisor printed: its status line, which on
/// x86_64 must agree with the isa-debug-exit code, and on aarch64 must come
/// with QEMU's own clean exit (PSCI SYSTEM_OFF).
pub fn system_status(arch: vmm_config::Arch, code: Option<i32>, output: &str) -> i32 {
    let reported = hallows_abi::console::reported_status(output);
    let status = match arch {
        vmm_config::Arch::X86_64 => {
            code.map(crate::image_x86::system_status).filter(|&s| s != crate::image_x86::NO_STATUS && Some(s) == reported)
        }
        vmm_config::Arch::Aarch64 => reported.filter(|_| code == Some(0)),
    };
    status.unwrap_or(crate::image_x86::NO_STATUS)
}

/// Reads a stream to its end; with `show`, also copies each line to this
/// process's standard output, escaped like the hypervisor escapes guest
/// text (the hypervisor already did; this is for what QEMU itself prints,
/// and in case anything else got through).
fn collect(mut from: impl Read, show: bool, tap: Option<&Control>) -> Vec<u8> {
    use std::io::Write;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let mut shown = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        all.extend_from_slice(&buf[..n]);
        if let Some(seen) = tap.and_then(|c| c.seen.lock().ok()).as_mut() {
            seen.extend_from_slice(&buf[..n]);
        }
        if show {
            while let Some(nl) = all[shown..].iter().position(|&b| b == b'\n') {
                print_line(&all[shown..shown + nl]);
                shown += nl + 1;
            }
            let _ = std::io::stdout().flush();
        }
    }
    if show && shown < all.len() {
        print_line(&all[shown..]);
    }
    all
}

/// Shows captured machine output on standard output, escaped as `collect`
/// shows it.
pub fn show(output: &str) {
    for line in output.lines() {
        print_line(line.as_bytes());
    }
}

fn print_line(line: &[u8]) {
    use std::io::Write;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = Vec::with_capacity(line.len() + 1);
    hallows_abi::console::sanitize(line, &mut |s| out.extend_from_slice(s));
    out.push(b'\n');
    let _ = std::io::stdout().lock().write_all(&out);
}

/// Counts the instructions QEMU executes from reset until the first
/// instruction of the guest at `guest_entry`, after the hypervisor (loaded
/// at `hv_base`) has run. Deterministic: `-icount shift=0,sleep=off` with one
/// instruction per translation block, each execution logged. The log is
/// read while the machine runs, and the machine is stopped once the guest
/// has started: the rest of a long-running system is not traced.
/// Also gives [`crate::trace::Reader::summary`] (the repeats dropped by
/// the instruction bytes in `code`).
pub fn instructions_to_guest(sys: &System, image: &Path, hv_base: u64, guest_entry: u64, code: &crate::trace::Code) -> Result<(u64, String)> {
    let log = image.with_extension("exec.log");
    let _ = std::fs::remove_file(&log);
    let extra: Vec<String> = ["-icount", "shift=0,sleep=off", "-singlestep", "-d", "exec,nochain", "-D"]
        .iter()
        .map(|s| s.to_string())
        .chain([log.display().to_string()])
        .collect();
    let stop = AtomicBool::new(false);
    let ended = AtomicBool::new(false);
    let (out, count) = std::thread::scope(|s| {
        let reader = s.spawn(|| count_to_guest(&log, code, &|pc| pc >= hv_base, true, guest_entry, &ended, &stop).map(|(n, _, summary)| (n, summary)));
        let out = run_until(sys, image, Some(Duration::from_secs(300)), &stop, true, &extra);
        ended.store(true, Ordering::SeqCst);
        (out, reader.join())
    });
    let _ = std::fs::remove_file(&log);
    let out = out?;
    match count {
        Ok(Some(n)) => Ok(n),
        _ if out.timed_out() && !matches!(out.ended, Ended::Stopped) => bail!("the measured boot did not finish"),
        _ => bail!("the guest's first instruction ({guest_entry:#x}) never ran"),
    }
}

/// Instructions through UEFI firmware (`hallows boot-cost --uefi`): from
/// the first instruction of the loader's exit path `exit` (the first after
/// `ExitBootServices` and the hand-off's writing) to the first instruction
/// of the guest at `guest_entry`, and of those, from the hypervisor's
/// first (at or above `hv.start`). Only those ranges are traced (`-dfilter`):
/// the firmware's own boot, hundreds of millions of instructions, is not.
/// Also gives [`crate::trace::Reader::summary`].
pub fn instructions_from_handoff(
    sys: &System,
    disk: &Path,
    exit: std::ops::Range<u64>,
    hv: std::ops::Range<u64>,
    guest_entry: u64,
    code: &crate::trace::Code,
) -> Result<(u64, u64, String)> {
    let log = disk.with_extension("exec.log");
    let _ = std::fs::remove_file(&log);
    let filter = format!("{:#x}..{:#x},{:#x}..{:#x},{:#x}+4", exit.start, exit.end, hv.start, hv.end, guest_entry);
    let extra: Vec<String> = ["-icount", "shift=0,sleep=off", "-singlestep", "-d", "exec,nochain", "-dfilter", &filter, "-D"]
        .iter()
        .map(|s| s.to_string())
        .chain([log.display().to_string()])
        .collect();
    let stop = AtomicBool::new(false);
    let ended = AtomicBool::new(false);
    let in_exit = |pc: u64| exit.contains(&pc);
    let (out, count) = std::thread::scope(|s| {
        let reader = s.spawn(|| count_to_guest(&log, code, &in_exit, false, guest_entry, &ended, &stop).map(|(n, from, summary)| (n, from.unwrap_or(0), summary)));
        // The firmware's whole boot runs one instruction per block: OVMF
        // under TCG takes minutes.
        let out = run_until(sys, disk, Some(Duration::from_secs(1800)), &stop, true, &extra);
        ended.store(true, Ordering::SeqCst);
        (out, reader.join())
    });
    let _ = std::fs::remove_file(&log);
    let out = out?;
    match count {
        Ok(Some((n, before_hv, summary))) => Ok((n, n - before_hv, summary)),
        _ if out.timed_out() && !matches!(out.ended, Ended::Stopped) => bail!("the measured boot did not finish"),
        _ => bail!("the loader's exit path ({:#x}..{:#x}) or the guest's first instruction ({guest_entry:#x}) never ran:\n{}", exit.start, exit.end, out.output),
    }
}

/// Follows the `-d exec` log at `log` as QEMU writes it, counting
/// instructions until the guest's entry runs after the first instruction
/// `started` accepts (counting those before it too with `count_before`);
/// sets `stop` then. Also gives the count when the first instruction
/// outside `started`'s range ran after it (where the UEFI loader's exit path
/// jumps to the hypervisor). Gives up (None) once `ended` is set and the
/// log is read. Repeats of blocks QEMU left without running them are
/// dropped ([`crate::trace::Reader`], by the bytes in `code`); the last
/// part is the reader's summary.
fn count_to_guest(
    log: &Path,
    code: &crate::trace::Code,
    started: &dyn Fn(u64) -> bool,
    count_before: bool,
    guest_entry: u64,
    ended: &AtomicBool,
    stop: &AtomicBool,
) -> Option<(u64, Option<u64>, String)> {
    let mut file = loop {
        if let Ok(f) = std::fs::File::open(log) {
            break f;
        }
        if ended.load(Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut count, mut in_hypervisor, mut left_start) = (0u64, false, None);
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut reader = crate::trace::Reader::new(code);
    loop {
        // Read `ended` before reading: a read that then finds nothing has
        // seen everything QEMU wrote.
        let done = ended.load(Ordering::SeqCst);
        let n = file.read(&mut buf).unwrap_or(0);
        if n == 0 {
            if done {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&pending[start..start + nl]);
            start += nl + 1;
            let Some((_, pc)) = reader.line(&line) else { continue };
            if pc == guest_entry && in_hypervisor {
                stop.store(true, Ordering::SeqCst);
                return Some((count, left_start, reader.summary()));
            }
            let start = started(pc);
            if in_hypervisor && !start && left_start.is_none() {
                left_start = Some(count);
            }
            in_hypervisor |= start;
            if in_hypervisor || count_before {
                count += 1;
            }
        }
        pending.drain(..start);
    }
}

/// What one core executed in a traced run.
#[derive(Debug, Default, Clone)]
pub struct CoreTrace {
    /// Instructions executed.
    pub all: u64,
    /// Of which inside the hypervisor image.
    pub hypervisor: u64,
    /// Hypervisor instructions by program counter.
    pub by_pc: std::collections::HashMap<u64, u64>,
    /// Lines logged twice in a row and counted once, and repeats kept at
    /// addresses whose code the tool does not have (see [`crate::trace`]).
    pub repeats: u64,
    pub unknown: u64,
}

/// Instructions each core executed, and which of them were the
/// hypervisor's (program counter inside `hv`), over a whole run. Exact:
/// QEMU logs every instruction (`-singlestep -d exec,nochain`) with the
/// core that ran it, and [`crate::trace::Reader`] drops the lines of
/// blocks QEMU left without running them (by the instruction bytes in
/// `code`). Repeatable: the instruction count is QEMU's clock
/// (`-icount shift=0,sleep=off`), so the cores run in turn at points fixed
/// by it, and what a core spends waiting for another is the same in every
/// run (see `crate::cost`).
pub fn instructions_per_core(sys: &System, image: &Path, hv: std::ops::Range<u64>, code: &crate::trace::Code, timeout: Duration) -> Result<(Outcome, Vec<CoreTrace>)> {
    use std::io::BufRead;
    let log = image.with_extension("exec.log");
    let extra: Vec<String> = ["-icount", "shift=0,sleep=off", "-singlestep", "-d", "exec,nochain", "-D"]
        .iter()
        .map(|s| s.to_string())
        .chain([log.display().to_string()])
        .collect();
    let out = run(sys, image, timeout, true, &extra)?;
    if out.timed_out() {
        let _ = std::fs::remove_file(&log);
        bail!("the traced run did not finish within {} s", timeout.as_secs());
    }
    let file = std::fs::File::open(&log).with_context(|| format!("reading {}", log.display()))?;
    let mut cores: Vec<CoreTrace> = Vec::new();
    let mut reader = crate::trace::Reader::new(code);
    for line in std::io::BufReader::new(file).lines() {
        let Some((cpu, pc)) = crate::trace::line(&line?) else { continue };
        if cores.len() <= cpu {
            cores.resize(cpu + 1, CoreTrace::default());
        }
        let (repeats, unknown) = (reader.repeats, reader.unknown);
        let ran = reader.ran(cpu, pc);
        let c = &mut cores[cpu];
        c.repeats += reader.repeats - repeats;
        c.unknown += reader.unknown - unknown;
        if !ran {
            continue;
        }
        c.all += 1;
        if hv.contains(&pc) {
            c.hypervisor += 1;
            *c.by_pc.entry(pc).or_default() += 1;
        }
    }
    let _ = std::fs::remove_file(&log);
    Ok((out, cores))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_that_reach_the_host_are_refused() {
        for bad in [
            &["-semihosting"][..],
            &["-semihosting-config", "enable=on,target=native"],
            &["--semihosting"],
            &["-monitor", "stdio"],
            &["-qmp", "unix:/tmp/q,server"],
            &["-vnc", "0.0.0.0:0"],
            &["-spice", "port=5930"],
            &["-gdb", "tcp::1234"],
            &["-s"],
            &["-debugcon", "stdio"],
            &["-chardev", "stdio,id=c"],
            &["-serial", "file:/etc/passwd"],
            &["-device", "isa-debugcon,iobase=0xe9,chardev=c"],
            &["-device", "virtio-serial-device"],
            &["-device", "isa-debug-exit,iobase=0x80,iosize=4"],
            &["-virtfs", "local,path=/,mount_tag=h"],
            &["-netdev", "user,id=n0"],
            &["-netdev", "user,id=n0,restrict=off"],
            &["-netdev", "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:sh"],
            &["-netdev", "user,id=n0,restrict=on,smb=/"],
            &["-netdev", "tap,id=n0"],
            &["-netdev", "socket,id=n0,listen=:1234"],
            &["-netdev", "bridge,id=n0"],
            &["-nic", "user"],
            &["-net", "tap"],
        ] {
            let err = refuse_host_access("test", &args(bad)).expect_err(&format!("{bad:?} accepted"));
            assert!(
                err.to_string().contains("refusing") || err.to_string().contains("iobase") || err.to_string().contains("restrict=on"),
                "{err}"
            );
        }
    }

    #[test]
    fn partition_states_come_from_the_hypervisors_lines_only() {
        let out = "[hallows] partition a exited with status 0\n\
                   [b] [hallows] partition c exited with status 0\n\
                   [hallows] partition b faulted: the guest panicked; restarting it (1 of 2)\n\
                   [hallows] partition d stopped: stage-2 fault: read at 0x0\r\n\
                   [hallows] partition e faulted: triple fault; its policy halts the system\n";
        let states = partition_states(out, &["a", "b", "c", "d", "e"]);
        let want = [
            ("a", "exited 0"),
            ("b", "running (restarted 1 time)"),
            ("c", "running"),
            ("d", "stopped: stage-2 fault: read at 0x0"),
            ("e", "stopped: triple fault"),
        ];
        assert_eq!(states, want.map(|(n, s)| (n.to_owned(), s.to_owned())));
    }

    #[test]
    fn ordinary_options_pass() {
        for ok in [
            &["-accel", "tcg", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"][..],
            &["-icount", "shift=0", "-d", "exec,nochain", "-D", "/tmp/log"],
            &["-drive", "file=disk.img,if=none,format=raw,id=d0", "-device", "virtio-blk-device,drive=d0"],
            &["-append", "x=1"],
            &["-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80", "-device", "virtio-net-device,netdev=n0"],
            &["-net", "none"],
        ] {
            refuse_host_access("test", &args(ok)).unwrap_or_else(|e| panic!("{ok:?} refused: {e}"));
        }
    }
}

//! `hallows run --gdb PARTITION`: QEMU with its gdb stub (on 127.0.0.1
//! only: a host-side debugger, nothing a partition can reach) and a gdb
//! attached to one partition.
//!
//! Every guest links at the partition RAM's base (0x4000_0000), so the
//! same addresses run in every partition: a breakpoint on all cores would
//! stop in any partition running the same guest, with a believable but
//! false backtrace. QEMU exposes one gdb thread per core (thread N is core
//! N - 1), so the session selects the thread of the partition's boot core
//! and makes its breakpoint thread-specific: another partition running the
//! same code at the same address never stops the session (gdb resumes it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use vmm_config::System;

/// What gdb attaches to.
#[derive(Clone, Debug)]
pub struct Target {
    /// The partition's guest ELF (its symbols and debug information).
    pub elf: PathBuf,
    /// The gdb thread of the partition's boot core.
    pub thread: u32,
    /// The guest's `main` (the function its `entry!` names).
    pub main: String,
    pub port: u16,
}

/// The target for partition `name` of `sys`, whose guests were built into
/// `guest_dir`, with the gdb stub on `port`.
pub fn target(sys: &System, guest_dir: &Path, name: &str, port: u16) -> Result<Target> {
    let Some(p) = sys.partitions.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = sys.partitions.iter().map(|p| p.name.as_str()).collect();
        bail!("--gdb {name}: no partition of that name (the system has: {})", names.join(", "));
    };
    let Some(&core) = p.cores.first() else { bail!("--gdb {name}: the partition has no core") };
    if let Some(l) = &p.linux {
        bail!("--gdb {name}: a Linux partition; debug it with the kernel's own vmlinux (symbols of {}) and gdb's `add-symbol-file`", l.kernel.display());
    }
    Ok(Target {
        elf: guest_dir.join(&p.guest),
        thread: core + 1,
        main: format!("{}::main", p.guest.replace('-', "_")),
        port,
    })
}

/// A free TCP port on 127.0.0.1 for the gdb stub.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port for the gdb stub")?;
    Ok(l.local_addr()?.port())
}

/// The QEMU options of the stub: listening on 127.0.0.1:`port`, the
/// machine stopped before its first instruction until gdb continues it.
pub fn qemu_args(port: u16) -> Vec<String> {
    vec!["-gdb".into(), format!("tcp:127.0.0.1:{port}"), "-S".into()]
}

/// The commands that attach gdb: symbols, the stub, the boot core's
/// thread, a breakpoint in the guest's `main` for that thread only, and
/// `continue` to it.
pub fn setup_script(t: &Target) -> String {
    format!(
        "set pagination off\nset confirm off\nfile {elf}\ntarget remote 127.0.0.1:{port}\nthread {thread}\n\
         break {main} thread {thread}\ncontinue\n",
        elf = t.elf.display(),
        port = t.port,
        thread = t.thread,
        main = t.main,
    )
}

/// Waits (at most `timeout`) until something listens on 127.0.0.1:`port`,
/// read from /proc/net/tcp: a test connection would be taken as gdb's.
pub fn wait_listening(port: u16, timeout: std::time::Duration) -> Result<()> {
    let want = format!("0100007F:{port:04X}");
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        let tcp = std::fs::read_to_string("/proc/net/tcp").context("reading /proc/net/tcp")?;
        if tcp.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        }) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bail!("QEMU's gdb stub did not listen on 127.0.0.1:{port} within {} s", timeout.as_secs())
}

/// The gdb command line: `gdb-multiarch` with the setup script written to
/// `setup`, then `batch` (commands run non-interactively, gdb exits at
/// their end) if given.
pub fn command(t: &Target, setup: &Path, batch: Option<&Path>) -> Result<Command> {
    std::fs::write(setup, setup_script(t)).with_context(|| format!("writing {}", setup.display()))?;
    let mut cmd = Command::new("gdb-multiarch");
    cmd.args(["-q", "-nx"]);
    if batch.is_some() {
        cmd.arg("-batch");
    }
    cmd.arg("-x").arg(setup);
    if let Some(b) = batch {
        cmd.arg("-x").arg(b);
    }
    Ok(cmd)
}

/// How a debugging session ended.
#[derive(Debug)]
pub struct Session {
    /// gdb's exit status.
    pub gdb: std::process::ExitStatus,
    /// gdb's output (standard output then error), when captured.
    pub gdb_output: String,
    /// The machine, stopped when gdb ended.
    pub machine: crate::qemu::Outcome,
}

/// Boots `image` of `sys` under QEMU with the gdb stub and runs gdb on
/// partition `name` (interactive, or `batch`'s commands), then stops the
/// machine. `capture`: gdb's and QEMU's output are returned rather than
/// shown. `scratch` is a directory for the setup script.
#[allow(clippy::too_many_arguments)]
pub fn session(
    sys: &System,
    image: &Path,
    guest_dir: &Path,
    name: &str,
    port: Option<u16>,
    batch: Option<&Path>,
    scratch: &Path,
    capture: bool,
) -> Result<Session> {
    let port = match port {
        Some(p) => p,
        None => free_port()?,
    };
    let t = target(sys, guest_dir, name, port)?;
    if !t.elf.is_file() {
        bail!("--gdb {name}: the guest ELF {} is missing", t.elf.display());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let machine = {
        let (sys, image, stop) = (sys.clone(), image.to_path_buf(), stop.clone());
        std::thread::spawn(move || crate::qemu::run_debug(&sys, &image, None, &stop, capture, &[], Some(port)))
    };
    let finish = |machine: std::thread::JoinHandle<Result<crate::qemu::Outcome>>| -> Result<crate::qemu::Outcome> {
        stop.store(true, std::sync::atomic::Ordering::Release);
        machine.join().map_err(|_| anyhow::anyhow!("the QEMU thread panicked"))?
    };
    if let Err(e) = wait_listening(port, std::time::Duration::from_secs(20)) {
        let out = finish(machine)?;
        bail!("{e}; QEMU said:\n{}", out.output);
    }
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let mut cmd = command(&t, &scratch.join(format!("gdb-{name}-{port}.gdb")), batch)?;
    let ran = if capture {
        cmd.stdin(std::process::Stdio::null())
            .output()
            .map(|o| (o.status, format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))))
    } else {
        cmd.status().map(|s| (s, String::new()))
    };
    let machine = finish(machine)?;
    let (gdb, gdb_output) = ran.context("starting gdb-multiarch (is it installed? `make deps`)")?;
    Ok(Session { gdb, gdb_output, machine })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breakpoint_is_for_the_boot_cores_thread_only() {
        let t = Target { elf: "/g/hello".into(), thread: 3, main: "hello::main".into(), port: 4321 };
        let s = setup_script(&t);
        assert!(s.contains("target remote 127.0.0.1:4321\n"));
        assert!(s.contains("thread 3\nbreak hello::main thread 3\ncontinue\n"), "{s}");
        assert_eq!(qemu_args(4321), ["-gdb", "tcp:127.0.0.1:4321", "-S"]);
    }
}

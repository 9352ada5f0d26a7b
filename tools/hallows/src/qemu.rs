//! Running an image under QEMU with a hard timeout.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmm_config::Board;
use wait_timeout::ChildExt;

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status; `None` if it was killed at the timeout.
    pub status: Option<i32>,
    /// Everything the machine printed (captured runs only).
    pub output: String,
}

impl Outcome {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
}

/// The QEMU command line for `board` booting `image`.
pub fn command(board: &Board, image: &Path, extra: &[String]) -> Result<Command> {
    let Some(q) = board.qemu() else {
        bail!("board {} cannot be emulated: it has no [qemu] section", board.name);
    };
    let mut cmd = Command::new(&q.binary);
    cmd.args(["-M", &q.machine, "-cpu", &q.cpu])
        .args(["-m", &format!("{}M", q.memory_mib), "-smp", &q.smp.to_string()])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-semihosting"])
        .args(&q.extra)
        .arg("-kernel")
        .arg(image)
        .args(extra)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Runs `image`; with `capture` the output is collected (and not shown).
pub fn run(board: &Board, image: &Path, timeout: Duration, capture: bool, extra: &[String]) -> Result<Outcome> {
    let mut cmd = command(board, image, extra)?;
    if capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {:?} (is QEMU installed? `make deps`)", cmd.get_program()))?;
    let mut reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        })
    });
    let err_reader = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        })
    });
    let status = match child.wait_timeout(timeout)? {
        Some(s) => s.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let mut output = reader.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    if let Some(h) = err_reader {
        output.extend(h.join().unwrap_or_default());
    }
    Ok(Outcome { status, output: String::from_utf8_lossy(&output).into_owned() })
}

//! The console: one UART, written only by the hypervisor, shared by the
//! hypervisor and every partition.
//!
//! Partitions write through a hypercall; each partition's output is
//! buffered per line and printed as `[name] text` under one lock, so lines
//! from different cores never interleave. The hypervisor's own lines start
//! `[hallows] `, a name no partition may have (`hallows check` refuses it).
//! So every line on the console starts with a prefix the hypervisor wrote,
//! and a partition's text can never begin a line: nothing a partition
//! prints can pass for the hypervisor's (the exit status line `hallows run`
//! reads included).
//!
//! Guest bytes are sanitised: only printable text reaches the terminal.
//! Valid UTF-8 passes, except control characters (C0, DEL, C1 such as CSI
//! U+009B and OSC U+009D) and the invisible direction overrides, which are
//! escaped as `\u{..}`; bytes that are not UTF-8 are escaped as `\x..`; a
//! tab becomes a space. A guest can neither fill the hypervisor's memory
//! (fixed line buffer, long lines are split) nor hold the lock (it is taken
//! only inside the hypervisor, for one line).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use hallows_abi::console::{incomplete_tail, sanitize};
use hallows_table::MAX_PARTITIONS;
use spin::Mutex;

use crate::arch;

/// Bytes of guest text per console line.
const LINE: usize = 200;

/// The core holding the console (`FREE` if none). A core that panics while
/// it holds the console may print its panic message without waiting for
/// itself; every other writer waits for its turn, so no line is ever cut
/// into by another.
static OWNER: AtomicUsize = AtomicUsize::new(FREE);
const FREE: usize = usize::MAX;

/// Exclusive use of the UART for one line.
struct Console {
    reentered: bool,
}

impl Console {
    fn lock() -> Console {
        let me = arch::this_core();
        loop {
            match OWNER.compare_exchange_weak(FREE, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Console { reentered: false },
                Err(owner) if owner == me => return Console { reentered: true },
                Err(_) => core::hint::spin_loop(),
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        arch::console_write(bytes);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if !self.reentered {
            OWNER.store(FREE, Ordering::Release);
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

/// Prints a hypervisor message, prefixed `[hallows] `.
pub fn hv_print(args: fmt::Arguments) {
    let mut c = Console::lock();
    c.write(b"[");
    c.write(hallows_abi::console::HYPERVISOR.as_bytes());
    c.write(b"] ");
    let _ = c.write_fmt(args);
}

struct LineBuf {
    buf: [u8; LINE],
    len: usize,
}

static LINES: [Mutex<LineBuf>; MAX_PARTITIONS] = [const { Mutex::new(LineBuf { buf: [0; LINE], len: 0 }) }; MAX_PARTITIONS];

/// Appends guest output of partition `index` (named `name`).
pub fn partition_write(index: usize, name: &str, bytes: &[u8]) {
    let Some(line) = LINES.get(index) else { return };
    let mut line = line.lock();
    for &b in bytes {
        if b == b'\n' {
            flush(name, &mut line, false);
            continue;
        }
        let len = line.len;
        line.buf[len] = b;
        line.len += 1;
        if line.len == LINE {
            flush(name, &mut line, true);
        }
    }
}

/// Prints whatever partition `index` left without a newline (at its end).
pub fn partition_flush(index: usize, name: &str) {
    if let Some(line) = LINES.get(index) {
        let mut line = line.lock();
        if line.len > 0 {
            flush(name, &mut line, false);
        }
    }
}

/// Prints the buffered line. With `split` (the buffer is full, the line
/// goes on) an incomplete UTF-8 sequence at its end is kept for the next
/// line rather than escaped.
fn flush(name: &str, line: &mut LineBuf, split: bool) {
    let keep = if split { incomplete_tail(&line.buf[..line.len]) } else { 0 };
    let end = line.len - keep;
    {
        let mut c = Console::lock();
        c.write(b"[");
        c.write(name.as_bytes());
        c.write(b"] ");
        sanitize(&line.buf[..end], &mut |s| c.write(s));
        c.write(b"\n");
    }
    line.buf.copy_within(end..line.len, 0);
    line.len = keep;
}


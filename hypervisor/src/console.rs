//! The console: one UART, shared by the hypervisor and every partition.
//!
//! Partitions write through a hypercall; each partition's output is
//! buffered per line and printed as `[name] text` under one lock, so lines
//! from different cores never interleave. Guest bytes are sanitised (no
//! control characters reach the terminal) and a guest can neither fill the
//! hypervisor's memory (fixed line buffer, long lines are split) nor hold
//! the lock (it is taken only inside the hypervisor, for one line).

use core::fmt::{self, Write};

use hallows_table::MAX_PARTITIONS;
use spin::Mutex;

use crate::arch;

const LINE: usize = 200;

static UART: Mutex<()> = Mutex::new(());

struct Raw;

impl Write for Raw {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        arch::console_write(s.as_bytes());
        Ok(())
    }
}

/// Prints a hypervisor message, prefixed `[hallows] `.
pub fn hv_print(args: fmt::Arguments) {
    // A panic can come while this core holds the lock: never wait forever.
    let mut guard = None;
    for _ in 0..1_000_000 {
        if let Some(g) = UART.try_lock() {
            guard = Some(g);
            break;
        }
        core::hint::spin_loop();
    }
    let _ = Raw.write_str("[hallows] ");
    let _ = Raw.write_fmt(args);
    drop(guard);
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
            flush(name, &mut line);
            continue;
        }
        let b = match b {
            b'\t' => b' ',
            0..=0x1f | 0x7f => b'.',
            _ => b,
        };
        let len = line.len;
        line.buf[len] = b;
        line.len += 1;
        if line.len == LINE {
            flush(name, &mut line);
        }
    }
}

/// Prints whatever partition `index` left without a newline (at its end).
pub fn partition_flush(index: usize, name: &str) {
    if let Some(line) = LINES.get(index) {
        let mut line = line.lock();
        if line.len > 0 {
            flush(name, &mut line);
        }
    }
}

fn flush(name: &str, line: &mut LineBuf) {
    let text = &line.buf[..line.len];
    let _g = UART.lock();
    arch::console_write(b"[");
    arch::console_write(name.as_bytes());
    arch::console_write(b"] ");
    arch::console_write(text);
    arch::console_write(b"\n");
    line.len = 0;
}

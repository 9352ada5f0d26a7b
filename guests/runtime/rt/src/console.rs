//! Console output over the console hypercall, buffered per line so that a
//! line costs one trap rather than one per `write!` fragment.

use core::fmt::{self, Write};

use hallows_abi::{call, CONSOLE_MAX};
use crate::sync::Mutex;

use crate::arch;

struct Console {
    buf: [u8; CONSOLE_MAX as usize],
    len: usize,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console { buf: [0; CONSOLE_MAX as usize], len: 0 });

impl Console {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' || self.len == self.buf.len() {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            write_raw(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// One console hypercall: returns bytes written, or the negative error.
pub fn write_raw(bytes: &[u8]) -> i64 {
    arch::hypercall(call::CONSOLE_WRITE, [bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0]).0 as i64
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    // IRQs masked while the lock is held: a preemptible task interrupted
    // here must not leave its core's scheduler loop waiting for the lock.
    without_interrupts(|| {
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

#[cfg(target_arch = "aarch64")]
fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    arch::without_interrupts(f)
}

#[cfg(not(target_arch = "aarch64"))]
fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Writes out a partial line.
pub fn flush() {
    // After a panic the lock may be held by the interrupted code on this
    // core: do not wait for it.
    if let Some(mut c) = CONSOLE.try_lock() {
        c.flush();
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

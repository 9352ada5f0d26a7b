//! Operator control from the host: commands arrive on the receive side of
//! the console UART, which only the host side can write (no partition maps
//! the UART, and partitions' console output goes through the hypervisor,
//! never to the UART's input). `hallows run` forwards what the operator
//! types; see docs/supervision.md.
//!
//! Commands, one per line: `status` (one `state:` line per partition),
//! `stop NAME`, `restart NAME`. The console's receive interrupt goes to
//! core 0 (the control core): taken while core 0 runs a guest, or in its
//! park loop once its own partition has ended. A line longer than the
//! buffer, or an unknown command, is answered with an error line; nothing
//! here allocates.

use crate::arch::Mutex;

use crate::{arch, console, partition, system};

/// The longest command line kept; the rest of a longer line is dropped.
const LINE: usize = 64;

struct Line {
    buf: [u8; LINE],
    len: usize,
    overflow: bool,
}

static INPUT: Mutex<Line> = Mutex::new(Line { buf: [0; LINE], len: 0, overflow: false });

/// The core that takes the console's receive interrupt.
pub const CONTROL_CORE: usize = 0;

/// Drains the console's receive side (after its interrupt) and runs each
/// complete line.
pub fn poll() {
    while let Some(b) = arch::console_read() {
        let mut line = [0u8; LINE];
        let complete = {
            let mut input = INPUT.lock();
            match b {
                b'\n' | b'\r' => {
                    let (len, overflow) = (input.len, input.overflow);
                    line[..len].copy_from_slice(&input.buf[..len]);
                    input.len = 0;
                    input.overflow = false;
                    if overflow {
                        Some(Err(()))
                    } else {
                        Some(Ok(len))
                    }
                }
                _ if input.len < LINE => {
                    let n = input.len;
                    input.buf[n] = b;
                    input.len += 1;
                    None
                }
                _ => {
                    input.overflow = true;
                    None
                }
            }
        };
        match complete {
            Some(Ok(0)) | None => {}
            Some(Ok(len)) => command(&line[..len]),
            Some(Err(())) => console::hv_print(format_args!("control: line longer than {LINE} bytes ignored\n")),
        }
    }
}

fn command(line: &[u8]) {
    let text = core::str::from_utf8(line).unwrap_or("");
    let mut words = text.split_ascii_whitespace();
    let sys = system::get();
    let find = |name: Option<&str>| {
        let name = name?;
        sys.table.partitions().iter().position(|p| p.name() == name)
    };
    match (words.next(), words.next(), words.next()) {
        (Some("status"), None, _) => partition::print_states(sys),
        (Some(verb @ ("stop" | "restart")), Some(name), None) => match find(Some(name)) {
            Some(index) => {
                if let Err(why) = partition::operator(sys, index, verb == "restart") {
                    console::hv_print(format_args!("control: cannot {verb} {name}: {why}\n"));
                }
            }
            None => console::hv_print(format_args!("control: no partition named {:?}\n", Printable(name))),
        },
        _ => console::hv_print(format_args!(
            "control: unknown command {:?}; commands: status, stop NAME, restart NAME\n",
            Printable(text)
        )),
    }
}

/// Operator text echoed back: at most 40 characters, printable ASCII only.
struct Printable<'a>(&'a str);

impl core::fmt::Debug for Printable<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        f.write_char('"')?;
        for c in self.0.chars().take(40) {
            f.write_char(if c.is_ascii_graphic() || c == ' ' { c } else { '?' })?;
        }
        f.write_char('"')
    }
}

//! The console: one UART, written only by the hypervisor, shared by the
//! hypervisor and every partition.
//!
//! Partitions write through a hypercall; each partition's output is
//! buffered per line and queued as `[name] text` in the partition's own
//! output queue, so lines from different cores never interleave. The
//! hypervisor's own lines start `[hallows] `, a name no partition may have
//! (`hallows check` refuses it). So every line on the console starts with
//! a prefix the hypervisor wrote, and a partition's text can never begin a
//! line: nothing a partition prints can pass for the hypervisor's (the exit
//! status line `hallows run` reads included).
//!
//! Guest bytes are sanitised: only printable text reaches the terminal.
//! Valid UTF-8 passes, except control characters (C0, DEL, C1 such as CSI
//! U+009B and OSC U+009D) and the invisible direction overrides, which are
//! escaped as `\u{..}`; bytes that are not UTF-8 are escaped as `\x..`; a
//! tab becomes a space. A guest can neither fill the hypervisor's memory
//! (fixed line buffer and queue, long lines are split) nor hold the UART
//! (it is taken only inside the hypervisor).
//!
//! **No partition waits for another's output.** A partition's line goes
//! into its own queue (a single-producer ring: only the partition's vCPUs
//! write it, under the partition's own line lock), then its core *tries*
//! to take the UART. If it gets it, it writes the queued lines of every
//! partition, oldest first, at most [`DRAIN_MAX`] bytes; if another core
//! holds the UART, it returns at once and that core writes its line (the
//! holder looks for new lines after it lets the UART go). A partition's
//! core waits for the UART only when its own queue is full (its output
//! outruns the UART) and for the hypervisor's own lines, and a holder's
//! turn is bounded. Waiting is `wfe`/`yield`, never a bare spin.
//!
//! Lines keep their order: within a partition, and across partitions for
//! lines one printed after another was queued (each line carries a
//! sequence number, taken when it is queued, and the UART's holder always
//! writes the oldest queued line first). A hypervisor line is printed
//! after every line queued before it (a partition's last words come
//! before its exit line). A line waits in its queue only while other
//! partitions print more than [`DRAIN_MAX`] bytes during one turn; the
//! next line any partition or the hypervisor prints writes it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hallows_abi::console::{incomplete_tail, sanitize};
use hallows_table::{MAX_PARTITIONS, NAME_LEN};

use crate::arch::{self, Mutex, CONSOLE_QUEUE_WORDS};

/// Bytes of guest text per console line.
const LINE: usize = 200;

/// The longest queued line: `[`, the name, `] `, the text escaped (a
/// byte becomes at most 6: a C0 control is `\u{1b}`), the newline.
const OUT_MAX: usize = 1 + NAME_LEN + 2 + LINE * 6 + 1;

/// A queued line is its sequence number (one word), its length in bytes
/// (one word), then its bytes, eight to a word (little-endian), the last
/// word padded.
const HEADER: usize = 2;

/// The most words one line takes in a queue.
const LINE_WORDS: usize = HEADER + OUT_MAX.div_ceil(8);

const _: () = assert!(LINE_WORDS <= CONSOLE_QUEUE_WORDS);

/// The most a core writes in one turn at the UART after queuing a line
/// (then one line more at most): four full queues' worth of bytes.
pub const DRAIN_MAX: usize = 4 * 8 * CONSOLE_QUEUE_WORDS;

/// The core holding the UART (`FREE` if none). A core that panics while
/// it holds the UART may print its panic message without waiting for
/// itself; every other writer waits for its turn or leaves its line to
/// the holder, so no line is ever cut into by another.
static OWNER: AtomicUsize = AtomicUsize::new(FREE);
const FREE: usize = usize::MAX;

/// Set after a line is queued: the UART's holder looks again.
static DIRTY: AtomicBool = AtomicBool::new(false);

/// The next line's sequence number.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Partitions whose queue has ever held a line (bit per index).
static ACTIVE: AtomicU32 = AtomicU32::new(0);

const _: () = assert!(MAX_PARTITIONS <= 32);

/// Exclusive use of the UART.
struct Console {
    reentered: bool,
}

impl Console {
    /// Waits for the UART (the hypervisor's own lines, a full queue).
    fn lock() -> Console {
        loop {
            if let Some(c) = Console::try_lock() {
                return c;
            }
            // The holder signals an event when it lets go.
            arch::wait_for_event();
        }
    }

    /// The UART, if no other core holds it.
    fn try_lock() -> Option<Console> {
        let me = arch::this_core();
        match OWNER.compare_exchange(FREE, me, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => Some(Console { reentered: false }),
            Err(owner) if owner == me => Some(Console { reentered: true }),
            Err(_) => None,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        arch::console_write(bytes);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if !self.reentered {
            OWNER.store(FREE, Ordering::SeqCst);
            arch::send_event();
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

/// One partition's output queue: words `tail..head` (positions modulo
/// the storage's size) hold whole lines. `head` is written only by the
/// partition's cores (under its line lock), `tail` only by the UART's
/// holder.
struct Queue {
    head: AtomicUsize,
    tail: AtomicUsize,
}

static QUEUES: [Queue; MAX_PARTITIONS] = [const { Queue { head: AtomicUsize::new(0), tail: AtomicUsize::new(0) } }; MAX_PARTITIONS];

type Store = [AtomicU64; CONSOLE_QUEUE_WORDS];

fn word_at(store: &Store, pos: usize) -> u64 {
    store[pos % CONSOLE_QUEUE_WORDS].load(Ordering::Relaxed)
}

fn set_word(store: &Store, pos: usize, w: u64) {
    store[pos % CONSOLE_QUEUE_WORDS].store(w, Ordering::Relaxed);
}

/// Queues `[name] text\n` (text sanitised) for partition `index`; false
/// if its queue lacks room for the longest line. Called under the
/// partition's line lock.
fn enqueue(index: usize, name: &str, text: &[u8]) -> bool {
    let (Some(q), Some(store)) = (QUEUES.get(index), arch::console_queue(index)) else { return true };
    let head = q.head.load(Ordering::Relaxed);
    let tail = q.tail.load(Ordering::Acquire);
    if CONSOLE_QUEUE_WORDS - head.wrapping_sub(tail) < LINE_WORDS {
        return false;
    }
    // Bytes gather in `word` and go to the queue eight at a time.
    let (mut pos, mut word, mut len) = (head.wrapping_add(HEADER), 0u64, 0usize);
    let mut put = |mut bytes: &[u8]| {
        while !bytes.is_empty() {
            // Whole words straight from the text while it is aligned.
            if len.is_multiple_of(8) {
                if let Some((w, rest)) = bytes.split_first_chunk::<8>() {
                    set_word(store, pos, u64::from_le_bytes(*w));
                    pos = pos.wrapping_add(1);
                    len += 8;
                    bytes = rest;
                    continue;
                }
            }
            word |= (bytes[0] as u64) << (8 * (len % 8));
            len += 1;
            bytes = &bytes[1..];
            if len.is_multiple_of(8) {
                set_word(store, pos, word);
                pos = pos.wrapping_add(1);
                word = 0;
            }
        }
    };
    put(b"[");
    put(&name.as_bytes()[..name.len().min(NAME_LEN)]);
    put(b"] ");
    sanitize(text, &mut put);
    put(b"\n");
    if !len.is_multiple_of(8) {
        set_word(store, pos, word);
        pos = pos.wrapping_add(1);
    }
    set_word(store, head, SEQ.fetch_add(1, Ordering::SeqCst));
    set_word(store, head.wrapping_add(1), len as u64);
    ACTIVE.fetch_or(1 << index, Ordering::Relaxed);
    q.head.store(pos, Ordering::Release);
    true
}

/// With the UART held: writes queued lines, oldest first, whose sequence
/// number is below `before`, until none is left or `budget` bytes are
/// written (a line is never split: the one that crosses the budget is
/// written whole). Returns the bytes written and whether none is left.
fn drain(c: &mut Console, before: u64, budget: usize) -> (usize, bool) {
    let mut written = 0;
    loop {
        let mut oldest: Option<(&Queue, &Store, u64)> = None;
        let mut active = ACTIVE.load(Ordering::Relaxed);
        while active != 0 {
            let i = active.trailing_zeros() as usize;
            active &= active - 1;
            let (Some(q), Some(store)) = (QUEUES.get(i), arch::console_queue(i)) else { continue };
            let tail = q.tail.load(Ordering::Relaxed);
            if q.head.load(Ordering::Acquire) != tail {
                let seq = word_at(store, tail);
                if seq < before && oldest.is_none_or(|(_, _, s)| seq < s) {
                    oldest = Some((q, store, seq));
                }
            }
        }
        let Some((q, store, _)) = oldest else { return (written, true) };
        if written >= budget {
            return (written, false);
        }
        let tail = q.tail.load(Ordering::Relaxed);
        // Written by the hypervisor itself, but bounded all the same.
        let len = (word_at(store, tail.wrapping_add(1)) as usize).min(OUT_MAX);
        for k in 0..len.div_ceil(8) {
            let bytes = word_at(store, tail.wrapping_add(HEADER + k)).to_le_bytes();
            c.write(&bytes[..(len - 8 * k).min(8)]);
        }
        q.tail.store(tail.wrapping_add(HEADER + len.div_ceil(8)), Ordering::Release);
        written += len;
    }
}

/// After queuing a line: writes the queues if the UART is free, else
/// leaves that to its holder (who looks again after letting go). Writes
/// at most about [`DRAIN_MAX`] bytes, then leaves the rest to the next
/// writer.
fn write_queued() {
    DIRTY.store(true, Ordering::SeqCst);
    let mut budget = DRAIN_MAX;
    loop {
        let Some(mut c) = Console::try_lock() else { return };
        while DIRTY.swap(false, Ordering::SeqCst) {
            let (n, all) = drain(&mut c, u64::MAX, budget);
            budget = budget.saturating_sub(n);
            if !all {
                DIRTY.store(true, Ordering::SeqCst);
                return;
            }
        }
        drop(c);
        // A line queued while the UART was held, by a core that found it
        // taken: write it (within the budget).
        if budget == 0 || !DIRTY.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Prints a hypervisor message, prefixed `[hallows] `, after every line
/// the partitions queued before it.
pub fn hv_print(args: fmt::Arguments) {
    {
        let mut c = Console::lock();
        let before = SEQ.load(Ordering::SeqCst);
        drain(&mut c, before, usize::MAX);
        c.write(b"[");
        c.write(hallows_abi::console::HYPERVISOR.as_bytes());
        c.write(b"] ");
        let _ = c.write_fmt(args);
    }
    // Lines queued meanwhile by cores that found the UART taken.
    if DIRTY.load(Ordering::SeqCst) {
        write_queued();
    }
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
            flush(index, name, &mut line, false);
            continue;
        }
        let len = line.len;
        line.buf[len] = b;
        line.len += 1;
        if line.len == LINE {
            flush(index, name, &mut line, true);
        }
    }
}

/// Prints whatever partition `index` left without a newline (at its end).
pub fn partition_flush(index: usize, name: &str) {
    if let Some(line) = LINES.get(index) {
        let mut line = line.lock();
        if line.len > 0 {
            flush(index, name, &mut line, false);
        }
    }
}

/// Queues the buffered line and writes it if the UART is free. With
/// `split` (the buffer is full, the line goes on) an incomplete UTF-8
/// sequence at its end is kept for the next line rather than escaped.
fn flush(index: usize, name: &str, line: &mut LineBuf, split: bool) {
    let keep = if split { incomplete_tail(&line.buf[..line.len]) } else { 0 };
    let end = line.len - keep;
    while !enqueue(index, name, &line.buf[..end]) {
        // The partition's own queue is full: its output outruns the
        // UART. Wait for it, and write what is queued up to this
        // partition's oldest line (older lines first), so there is room.
        let (Some(q), Some(store)) = (QUEUES.get(index), arch::console_queue(index)) else { break };
        let mut c = Console::lock();
        let oldest = word_at(store, q.tail.load(Ordering::Relaxed));
        drain(&mut c, oldest + 1, usize::MAX);
    }
    write_queued();
    line.buf.copy_within(end..line.len, 0);
    line.len = keep;
}

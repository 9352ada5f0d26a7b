//! The Linux baseline of `make bench` comparison (B) (tools/bench/README.md,
//! docs/benchmarks.md): two threads, on CPU 0 and CPU 1 when pinned,
//! exchange the ring-peer messages (`hallows_peer::request`, answered by
//! `response_to`, 64 bytes each way) one at a time: the initiator sends
//! request `i` and waits for its answer before sending `i + 1`, exactly
//! what the RustHallows side does over its ring channels. The work around
//! each transfer is the ring-peer's own, `hallows_peer::InitiatorWork` and
//! `ResponderWork`: every request and answer checked and folded into the
//! same checksum.
//!
//! The mechanisms, each the usual way to use it:
//!
//! - [`Mechanism::Pipe`]: two pipes, blocking `write`/`read` of 64 bytes;
//! - [`Mechanism::Unix`]: a connected `AF_UNIX` stream socket pair;
//! - [`Mechanism::Tcp`]: loopback TCP (`127.0.0.1`), `TCP_NODELAY`;
//! - [`Mechanism::Futex`]: one 64-byte mailbox per direction in memory both
//!   threads share, a sequence word published with release ordering, the
//!   reader sleeping in `FUTEX_WAIT` on it; the writer calls `FUTEX_WAKE`
//!   only when the reader says it sleeps;
//! - [`Mechanism::Spin`]: the same mailboxes, the reader busy-polling the
//!   sequence word with `yield` between polls (the tuned variant: no
//!   system call at all on the data path).
//!
//! The measured window is from the first request after `warmup` round
//! trips to the last answer, timed with `CLOCK_MONOTONIC` (the virtual
//! counter; under QEMU `-icount shift=0` one nanosecond is one instruction
//! of the whole machine) and marked with [`sys::mark`].
#![deny(unsafe_code)]

pub mod sys;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hallows_peer::{request, InitiatorWork, Msg, ResponderWork, MSG_SIZE};
use zerocopy::{FromBytes, IntoBytes};

/// How the two threads exchange messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Pipe,
    Unix,
    Tcp,
    Futex,
    Spin,
}

impl Mechanism {
    /// All of them, in the order they are reported.
    pub const ALL: [Mechanism; 5] = [Mechanism::Pipe, Mechanism::Unix, Mechanism::Tcp, Mechanism::Futex, Mechanism::Spin];

    /// The name on the command line and in the result line.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Unix => "unix",
            Mechanism::Tcp => "tcp",
            Mechanism::Futex => "futex",
            Mechanism::Spin => "spin",
        }
    }

    /// The mechanism called `name`.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One end of a two-way exchange.
pub trait End: Send {
    /// Sends one message.
    fn send(&mut self, m: &Msg) -> Result<(), String>;
    /// Waits for and returns the next message.
    fn recv(&mut self) -> Result<Msg, String>;
}

/// A byte stream each way (pipes, sockets): 64-byte writes and reads.
pub struct StreamEnd<R, W> {
    r: R,
    w: W,
}

impl<R: Read + Send, W: Write + Send> End for StreamEnd<R, W> {
    fn send(&mut self, m: &Msg) -> Result<(), String> {
        self.w.write_all(m.as_bytes()).map_err(|e| format!("write: {e}"))
    }

    fn recv(&mut self) -> Result<Msg, String> {
        let mut buf = [0u8; MSG_SIZE];
        self.r.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
        Msg::read_from_bytes(&buf).map_err(|_| "a message of the wrong size".to_string())
    }
}

/// One direction of the shared-memory exchange: the message, and the
/// number of messages published so far (the futex word).
#[repr(C, align(128))]
#[derive(Default)]
pub struct Mailbox {
    seq: AtomicU32,
    sleepers: AtomicU32,
    data: [AtomicU64; 8],
}

/// One end of the shared-memory exchange.
pub struct ShmEnd {
    tx: Arc<Mailbox>,
    rx: Arc<Mailbox>,
    sent: u32,
    received: u32,
    futex: bool,
}

impl End for ShmEnd {
    fn send(&mut self, m: &Msg) -> Result<(), String> {
        let words: [u64; 8] = zerocopy::transmute!(*m);
        for (d, w) in self.tx.data.iter().zip(words) {
            d.store(w, Ordering::Relaxed);
        }
        self.sent = self.sent.wrapping_add(1);
        if self.futex {
            // SeqCst store and load against the reader's SeqCst increment
            // and re-check: either it sees the new value or we see it asleep.
            self.tx.seq.store(self.sent, Ordering::SeqCst);
            if self.tx.sleepers.load(Ordering::SeqCst) != 0 {
                sys::futex_wake(&self.tx.seq);
            }
        } else {
            self.tx.seq.store(self.sent, Ordering::Release);
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<Msg, String> {
        let want = self.received.wrapping_add(1);
        loop {
            let v = self.rx.seq.load(Ordering::Acquire);
            if v == want {
                break;
            }
            if v != self.received {
                return Err(format!("message {want} expected, the peer published {v}"));
            }
            if self.futex {
                self.rx.sleepers.fetch_add(1, Ordering::SeqCst);
                if self.rx.seq.load(Ordering::SeqCst) == v {
                    sys::futex_wait(&self.rx.seq, v);
                }
                self.rx.sleepers.fetch_sub(1, Ordering::SeqCst);
            } else {
                sys::relax();
            }
        }
        let mut words = [0u64; 8];
        for (w, d) in words.iter_mut().zip(self.rx.data.iter()) {
            *w = d.load(Ordering::Relaxed);
        }
        self.received = want;
        Ok(zerocopy::transmute!(words))
    }
}

/// The two ends of an exchange: (initiator, responder).
pub type Ends = (Box<dyn End>, Box<dyn End>);

/// The two ends of `mech`.
pub fn connect(mech: Mechanism) -> Result<Ends, String> {
    Ok(match mech {
        Mechanism::Pipe => {
            let (r1, w1) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
            let (r2, w2) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
            (Box::new(StreamEnd { r: r2, w: w1 }), Box::new(StreamEnd { r: r1, w: w2 }))
        }
        Mechanism::Unix => {
            let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
            let (a2, b2) = (a.try_clone().map_err(|e| e.to_string())?, b.try_clone().map_err(|e| e.to_string())?);
            (Box::new(StreamEnd { r: a, w: a2 }), Box::new(StreamEnd { r: b, w: b2 }))
        }
        Mechanism::Tcp => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1: {e} (is lo up?)"))?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            let a = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
            let (b, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
            for s in [&a, &b] {
                s.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
            }
            let (a2, b2) = (a.try_clone().map_err(|e| e.to_string())?, b.try_clone().map_err(|e| e.to_string())?);
            (Box::new(StreamEnd { r: a, w: a2 }), Box::new(StreamEnd { r: b, w: b2 }))
        }
        Mechanism::Futex | Mechanism::Spin => {
            let futex = mech == Mechanism::Futex;
            let (req, resp) = (Arc::new(Mailbox::default()), Arc::new(Mailbox::default()));
            (
                Box::new(ShmEnd { tx: req.clone(), rx: resp.clone(), sent: 0, received: 0, futex }),
                Box::new(ShmEnd { tx: resp, rx: req, sent: 0, received: 0, futex }),
            )
        }
    })
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub mech: Mechanism,
    /// Round trips measured.
    pub count: u64,
    /// Round trips before the window opens (both threads running, caches
    /// and page tables warm, the TCP connection past slow start).
    pub warmup: u64,
    /// Pin the initiator to CPU 0 and the responder to CPU 1.
    pub pin: bool,
}

/// A finished exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Nanoseconds of `CLOCK_MONOTONIC` from the window's first request
    /// to its last answer.
    pub window_ns: u64,
    /// The checksum of every message of the exchange, warm-up included.
    pub checksum: u64,
    /// The CPUs the initiator and the responder ran on at the start.
    pub cpus: (i64, i64),
}

/// Runs the exchange of `cfg`: every answer checked, the checksum equal to
/// `hallows_peer::expected_checksum(warmup + count)`.
pub fn run(cfg: Config) -> Result<Outcome, String> {
    let (mut init, mut resp) = connect(cfg.mech)?;
    let total = cfg.warmup + cfg.count;
    let responder = std::thread::Builder::new()
        .name("responder".into())
        .spawn(move || -> Result<i64, String> {
            if cfg.pin {
                sys::pin_to(1)?;
            }
            let cpu = sys::current_cpu();
            let mut work = ResponderWork::new();
            for seq in 0..total {
                let m = resp.recv().map_err(|e| format!("responder at request {seq}: {e}"))?;
                let answer = work.answer(seq, total, &m).map_err(|e| format!("responder: {e}"))?;
                resp.send(&answer).map_err(|e| format!("responder at request {seq}: {e}"))?;
            }
            if work.checksum() != hallows_peer::expected_checksum(total) {
                return Err(format!("responder: checksum {:#018x}", work.checksum()));
            }
            Ok(cpu)
        })
        .map_err(|e| format!("spawning the responder: {e}"))?;
    let mine = (|| -> Result<(u64, u64, i64), String> {
        if cfg.pin {
            sys::pin_to(0)?;
        }
        let cpu = sys::current_cpu();
        let mut work = InitiatorWork::new();
        let mut t0 = Instant::now();
        for seq in 0..total {
            if seq == cfg.warmup {
                sys::mark();
                t0 = Instant::now();
            }
            init.send(&request(seq)).map_err(|e| format!("initiator at request {seq}: {e}"))?;
            let m = init.recv().map_err(|e| format!("initiator at request {seq}: {e}"))?;
            work.check(seq, &m).map_err(|e| format!("initiator: {e}"))?;
        }
        let ns = t0.elapsed().as_nanos() as u64;
        sys::mark();
        Ok((ns, work.checksum(), cpu))
    })();
    // The responder ends once it answered everything, or with an error when
    // the initiator's end goes away (streams) ; a shared-memory responder
    // waiting for a request that never comes would hang: an initiator error
    // is reported without joining it.
    let (window_ns, checksum, cpu0) = mine?;
    let cpu1 = responder.join().map_err(|_| "the responder panicked".to_string())??;
    let want = hallows_peer::expected_checksum(total);
    if checksum != want {
        return Err(format!("checksum {checksum:#018x}, expected {want:#018x}"));
    }
    Ok(Outcome { window_ns, checksum, cpus: (cpu0, cpu1) })
}

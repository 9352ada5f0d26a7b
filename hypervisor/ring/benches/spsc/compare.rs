//! The interleaved comparison of the hallows ring with rtrb:
//! `cargo bench -p hallows-ring --bench spsc -- --rounds 10`.
//!
//! One run on a shared host says little (a neighbour's compile, a
//! frequency change, the scheduler's mood), so this mode runs every
//! configuration in *rounds*: within a round each configuration runs every
//! queue once, one after the other, in an order rotated from round to
//! round, so slow phases of the machine fall on all alike. It prints, per
//! configuration and queue, the median over the rounds with the
//! interquartile range and the extremes, and the paired per-round ratios
//! of each hallows tuning to rtrb (each round's runs were seconds apart),
//! with their medians and spreads.
//!
//! hallows runs in both of its tunings (`hallows_ring::Tuning`), as two
//! queues: `hallows-thr` (a stamp per quarter ring, dense lines: what a
//! streaming channel would pick) and `hallows-lat` (a stamp per line: what
//! a request/reply channel would pick), every configuration both ways.
//!
//! Every queue is driven by the same loops, which do what a partition's
//! polling loop does:
//!
//! - one attempt per poll: `try_send`/`try_recv` (rtrb `push`/`pop`) for
//!   single messages; for batches, one reservation of up to `batch` slots
//!   filled in place and committed (rtrb: `slots()` then a write chunk of
//!   that many, up to `batch`) and one read of up to `batch` available
//!   messages, released at once (rtrb: `slots()` then a read chunk);
//! - on failure (full, empty) one `spin_loop` hint and try again: no
//!   yield, no sleep, no backoff;
//! - the producer on CPU 0, the consumer (or echo) on CPU 1, pinned;
//! - the consumer checks every word of every message against its
//!   sequence number (it reads all of what it receives, as a partition
//!   does).
//!
//! Each run starts with a warm-up of an eighth of its messages on the same
//! threads and queues (page faults, caches, branch predictors), then both
//! threads meet at a spinning barrier and the timed part runs from the
//! producer leaving the barrier to the consumer taking its last message.
//!
//! Configurations: `spsc/<bytes>/<batch>` for 8- and 64-byte messages,
//! batches of 1 and 32 (Melem/s); `rtt/<bytes>` round trips, one message
//! out on one queue and echoed back on another (ns), with the two floors:
//! `twolines` (one `AtomicU64` on its own line per direction: the least any
//! pair of one-way queues can take) and `cacheline` (one line written by
//! both threads). Queues of 1024 slots (hallows-lat: 896 8-byte or 992
//! 64-byte messages, the other slots carry stamps; hallows-thr: 1020;
//! rtrb: 1024).

use std::hint::spin_loop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hallows_ring::{ChannelLayout, Receiver, RingError, Sender, Tuning};

use super::{pin, BenchMsg, Line, Msg64, CAP};

/// One queue, one attempt per call; never waits.
trait Poll: 'static {
    const NAME: &'static str;
    type Tx<M: BenchMsg>: Send + 'static;
    type Rx<M: BenchMsg>: Send + 'static;
    /// Owns the queue's memory; dropped after both ends.
    type Mem: 'static;
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>, Self::Mem);
    /// Sends one message if there is room.
    fn try_send<M: BenchMsg>(tx: &mut Self::Tx<M>, msg: M) -> bool;
    /// Takes one message if there is one.
    fn try_recv<M: BenchMsg>(rx: &mut Self::Rx<M>) -> Option<M>;
    /// Sends `seq..` into up to `max` free slots, in place; how many.
    fn try_send_batch<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, max: usize) -> usize;
    /// Hands up to `max` available messages to `f`, then frees them; how
    /// many.
    fn try_recv_batch<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, f: F) -> usize;
}

/// A page-aligned zeroed allocation for one hallows channel.
struct Shm {
    base: NonNull<u8>,
    alloc: std::alloc::Layout,
}

// SAFETY: only the pointer travels; the memory is used through the
// endpoints, which the benchmark drops before the `Shm`.
unsafe impl Send for Shm {}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: allocated in `Hallows::channel` with this layout; both
        // endpoints are gone (the threads that owned them were joined).
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.alloc) }
    }
}

/// The hallows ring with its layout tuned for throughput (`THR`) or for
/// latency.
struct Hallows<const THR: bool>;
impl<const THR: bool> Poll for Hallows<THR> {
    const NAME: &'static str = if THR { "hallows-thr" } else { "hallows-lat" };
    type Tx<M: BenchMsg> = Sender<M>;
    type Rx<M: BenchMsg> = Receiver<M>;
    type Mem = Shm;
    fn channel<M: BenchMsg>() -> (Sender<M>, Receiver<M>, Shm) {
        let tuning = if THR { Tuning::Throughput } else { Tuning::Latency };
        let layout = ChannelLayout::for_message::<M>(CAP).unwrap().tuned(tuning);
        let alloc = std::alloc::Layout::from_size_align(layout.total_size(), layout.page_size()).unwrap();
        // SAFETY: non-zero size.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(alloc) }).unwrap();
        // SAFETY: `base` is page-aligned, `total_size` bytes, freed only
        // after both endpoints are dropped, and used only by this one
        // sender and one receiver.
        let tx = unsafe { Sender::new(base, layout) }.unwrap();
        // SAFETY: as above.
        let rx = unsafe { Receiver::new(base, layout) }.unwrap();
        (tx, rx, Shm { base, alloc })
    }
    #[inline]
    fn try_send<M: BenchMsg>(tx: &mut Sender<M>, msg: M) -> bool {
        match tx.try_send(&msg) {
            Ok(()) => true,
            Err(RingError::Full) => false,
            Err(e) => panic!("{e}"),
        }
    }
    #[inline]
    fn try_recv<M: BenchMsg>(rx: &mut Receiver<M>) -> Option<M> {
        match rx.try_recv() {
            Ok(m) => Some(m),
            Err(RingError::Empty) => None,
            Err(e) => panic!("{e}"),
        }
    }
    #[inline]
    fn try_send_batch<M: BenchMsg>(tx: &mut Sender<M>, seq: u64, max: usize) -> usize {
        match tx.reserve(max) {
            Ok(mut batch) => {
                batch.fill_with(|i| M::new(seq + i as u64));
                let n = batch.len();
                batch.commit();
                n
            }
            Err(RingError::Full) => 0,
            Err(e) => panic!("{e}"),
        }
    }
    #[inline]
    fn try_recv_batch<M: BenchMsg, F: FnMut(M)>(rx: &mut Receiver<M>, max: usize, f: F) -> usize {
        match rx.recv_batch(max) {
            Ok(batch) => {
                let n = batch.len();
                batch.iter().for_each(f);
                batch.release();
                n
            }
            Err(RingError::Empty) => 0,
            Err(e) => panic!("{e}"),
        }
    }
}

struct Rtrb;
impl Poll for Rtrb {
    const NAME: &'static str = "rtrb";
    type Tx<M: BenchMsg> = rtrb::Producer<M>;
    type Rx<M: BenchMsg> = rtrb::Consumer<M>;
    type Mem = ();
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>, ()) {
        let (tx, rx) = rtrb::RingBuffer::new(CAP);
        (tx, rx, ())
    }
    #[inline]
    fn try_send<M: BenchMsg>(tx: &mut Self::Tx<M>, msg: M) -> bool {
        tx.push(msg).is_ok()
    }
    #[inline]
    fn try_recv<M: BenchMsg>(rx: &mut Self::Rx<M>) -> Option<M> {
        rx.pop().ok()
    }
    #[inline]
    fn try_send_batch<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, max: usize) -> usize {
        let k = tx.slots().min(max);
        if k == 0 {
            return 0;
        }
        let chunk = tx.write_chunk_uninit(k).unwrap();
        chunk.fill_from_iter((0..k as u64).map(|i| M::new(seq + i)))
    }
    #[inline]
    fn try_recv_batch<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, f: F) -> usize {
        let k = rx.slots().min(max);
        if k == 0 {
            return 0;
        }
        let chunk = rx.read_chunk(k).unwrap();
        let (x, y) = chunk.as_slices();
        x.iter().chain(y).copied().for_each(f);
        chunk.commit_all();
        k
    }
}

/// Both threads arrive, then both leave (spinning, no futex wake-up).
fn meet(gate: &AtomicU32) {
    gate.fetch_add(1, Ordering::AcqRel);
    while gate.load(Ordering::Acquire) < 2 {
        spin_loop();
    }
}

/// Sends `seq..seq + n`, `batch` at a time (1: single messages).
#[inline]
fn produce<Q: Poll, M: BenchMsg>(tx: &mut Q::Tx<M>, mut seq: u64, n: u64, batch: usize) {
    let end = seq + n;
    while seq < end {
        let k = if batch == 1 {
            usize::from(Q::try_send(tx, M::new(seq)))
        } else {
            Q::try_send_batch(tx, seq, batch.min((end - seq) as usize))
        };
        if k == 0 {
            spin_loop();
        }
        seq += k as u64;
    }
}

/// Receives `n` messages from `expect` on, `batch` at a time; how many
/// were out of sequence.
#[inline]
fn consume<Q: Poll, M: BenchMsg>(rx: &mut Q::Rx<M>, mut expect: u64, n: u64, batch: usize) -> u64 {
    let end = expect + n;
    let mut bad = 0;
    while expect < end {
        let k = if batch == 1 {
            match Q::try_recv(rx) {
                Some(m) => {
                    bad += u64::from(m.seq() != expect || !m.intact());
                    1
                }
                None => 0,
            }
        } else {
            let mut e = expect;
            Q::try_recv_batch(rx, batch.min((end - expect) as usize), |m: M| {
                bad += u64::from(m.seq() != e || !m.intact());
                e += 1;
            })
        };
        if k == 0 {
            spin_loop();
        }
        expect += k as u64;
    }
    bad
}

/// Context switches (voluntary or not) of the calling thread so far.
fn switches() -> i64 {
    // SAFETY: a zeroed rusage is a valid output buffer for getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer to an rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0);
    ru.ru_nvcsw + ru.ru_nivcsw
}

/// Melem/s of `n` messages, `batch` at a time, and whether neither thread
/// lost its CPU during the timed part.
fn throughput<Q: Poll, M: BenchMsg>(n: u64, batch: usize) -> (f64, bool) {
    let (mut tx, mut rx, mem) = Q::channel::<M>();
    let warm = n / 8;
    let gate = Arc::new(AtomicU32::new(0));
    let consumer = {
        let gate = Arc::clone(&gate);
        thread::spawn(move || {
            pin(1);
            let mut bad = consume::<Q, M>(&mut rx, 0, warm, batch);
            let sw = switches();
            meet(&gate);
            bad += consume::<Q, M>(&mut rx, warm, n, batch);
            let end = Instant::now();
            let sw = switches() - sw;
            drop(rx);
            (bad, end, sw)
        })
    };
    produce::<Q, M>(&mut tx, 0, warm, batch);
    let sw = switches();
    meet(&gate);
    let start = Instant::now();
    produce::<Q, M>(&mut tx, warm, n, batch);
    let sw = switches() - sw;
    let (bad, end, peer_sw) = consumer.join().unwrap();
    drop(tx);
    drop(mem);
    assert_eq!(bad, 0, "{}: messages out of order", Q::NAME);
    (n as f64 / end.duration_since(start).as_secs_f64() / 1e6, sw + peer_sw == 0)
}

/// ns per round trip over two queues, `n` round trips, and whether neither
/// thread lost its CPU during the timed part.
fn round_trip<Q: Poll, M: BenchMsg>(n: u64) -> (f64, bool) {
    let (mut out_tx, mut out_rx, out_mem) = Q::channel::<M>();
    let (mut back_tx, mut back_rx, back_mem) = Q::channel::<M>();
    let warm = n / 8;
    let gate = Arc::new(AtomicU32::new(0));
    let echo = {
        let gate = Arc::clone(&gate);
        thread::spawn(move || {
            pin(1);
            let mut sw = 0;
            for i in 0..warm + n {
                if i == warm {
                    sw = switches();
                    meet(&gate);
                }
                let m = loop {
                    match Q::try_recv(&mut out_rx) {
                        Some(m) => break m,
                        None => spin_loop(),
                    }
                };
                while !Q::try_send(&mut back_tx, m) {
                    spin_loop();
                }
            }
            drop((out_rx, back_tx));
            switches() - sw
        })
    };
    let (mut start, mut sw) = (Instant::now(), 0);
    for i in 0..warm + n {
        if i == warm {
            sw = switches();
            meet(&gate);
            start = Instant::now();
        }
        while !Q::try_send(&mut out_tx, M::new(i)) {
            spin_loop();
        }
        let m = loop {
            match Q::try_recv(&mut back_rx) {
                Some(m) => break m,
                None => spin_loop(),
            }
        };
        assert_eq!(m.seq(), i, "{}: wrong echo", Q::NAME);
    }
    let t = start.elapsed();
    let sw = switches() - sw;
    let peer_sw = echo.join().unwrap();
    drop((out_tx, back_rx, out_mem, back_mem));
    (t.as_nanos() as f64 / n as f64, sw + peer_sw == 0)
}

/// ns per round trip of a bare `AtomicU64` per direction (`two`), or of
/// one `AtomicU64` both threads write (`!two`), and whether neither thread
/// lost its CPU.
fn floor(n: u64, two: bool) -> (f64, bool) {
    let lines = Arc::new((Line(AtomicU64::new(0)), Line(AtomicU64::new(0))));
    let warm = n / 8;
    let gate = Arc::new(AtomicU32::new(0));
    let echo = {
        let (lines, gate) = (Arc::clone(&lines), Arc::clone(&gate));
        thread::spawn(move || {
            pin(1);
            let back = if two { &lines.1 .0 } else { &lines.0 .0 };
            let mut sw = 0;
            for i in 0..warm + n {
                if i == warm {
                    sw = switches();
                    meet(&gate);
                }
                let v = 2 * i + 1;
                while lines.0 .0.load(Ordering::Acquire) != v {
                    spin_loop();
                }
                back.store(v + 1, Ordering::Release);
            }
            switches() - sw
        })
    };
    let back = if two { &lines.1 .0 } else { &lines.0 .0 };
    let (mut start, mut sw) = (Instant::now(), 0);
    for i in 0..warm + n {
        if i == warm {
            sw = switches();
            meet(&gate);
            start = Instant::now();
        }
        let v = 2 * i + 1;
        lines.0 .0.store(v, Ordering::Release);
        while back.load(Ordering::Acquire) != v + 1 {
            spin_loop();
        }
    }
    let t = start.elapsed();
    let sw = switches() - sw;
    let peer_sw = echo.join().unwrap();
    (t.as_nanos() as f64 / n as f64, sw + peer_sw == 0)
}

/// One measurement of one queue in one configuration, message counts
/// scaled by the argument: the value, and whether it ran undisturbed.
type Run = fn(f64) -> (f64, bool);

/// Tries per measurement before an unlucky one is kept anyway.
const TRIES: u32 = 200;

/// Runs `run` until a try runs undisturbed (neither thread switched out
/// during the timed part: on a shared host the other thread would
/// otherwise be measured waiting for a CPU, which a partition on its own
/// cores never does), at most `TRIES` times; the value, and how many tries
/// it took (`TRIES + 1`: none was undisturbed, the last is kept).
fn measure(run: Run, scale: f64) -> (f64, u32) {
    let mut last = 0.0;
    for t in 1..=TRIES {
        let (v, clean) = run(scale);
        if clean {
            return (v, t);
        }
        last = v;
    }
    (last, TRIES + 1)
}

struct Config {
    name: &'static str,
    unit: &'static str,
    impls: Vec<(&'static str, Run)>,
}

/// `x` messages scaled by `s`.
fn m(x: f64, s: f64) -> u64 {
    (x * s) as u64
}

fn configs() -> Vec<Config> {
    vec![
        Config {
            name: "spsc/8/1",
            unit: "Melem/s",
            impls: vec![
                ("hallows-thr", |s| throughput::<Hallows<true>, [u64; 1]>(m(64e3, s), 1)),
                ("hallows-lat", |s| throughput::<Hallows<false>, [u64; 1]>(m(64e3, s), 1)),
                ("rtrb", |s| throughput::<Rtrb, [u64; 1]>(m(64e3, s), 1)),
            ],
        },
        Config {
            name: "spsc/64/1",
            unit: "Melem/s",
            impls: vec![
                ("hallows-thr", |s| throughput::<Hallows<true>, Msg64>(m(32e3, s), 1)),
                ("hallows-lat", |s| throughput::<Hallows<false>, Msg64>(m(32e3, s), 1)),
                ("rtrb", |s| throughput::<Rtrb, Msg64>(m(32e3, s), 1)),
            ],
        },
        Config {
            name: "spsc/8/32",
            unit: "Melem/s",
            impls: vec![
                ("hallows-thr", |s| throughput::<Hallows<true>, [u64; 1]>(m(512e3, s), 32)),
                ("hallows-lat", |s| throughput::<Hallows<false>, [u64; 1]>(m(512e3, s), 32)),
                ("rtrb", |s| throughput::<Rtrb, [u64; 1]>(m(512e3, s), 32)),
            ],
        },
        Config {
            name: "spsc/64/32",
            unit: "Melem/s",
            impls: vec![
                ("hallows-thr", |s| throughput::<Hallows<true>, Msg64>(m(128e3, s), 32)),
                ("hallows-lat", |s| throughput::<Hallows<false>, Msg64>(m(128e3, s), 32)),
                ("rtrb", |s| throughput::<Rtrb, Msg64>(m(128e3, s), 32)),
            ],
        },
        Config {
            name: "rtt/8",
            unit: "ns",
            impls: vec![
                ("hallows-lat", |s| round_trip::<Hallows<false>, [u64; 1]>(m(4e3, s))),
                ("hallows-thr", |s| round_trip::<Hallows<true>, [u64; 1]>(m(4e3, s))),
                ("rtrb", |s| round_trip::<Rtrb, [u64; 1]>(m(4e3, s))),
                ("twolines", |s| floor(m(4e3, s), true)),
                ("cacheline", |s| floor(m(4e3, s), false)),
            ],
        },
        Config {
            name: "rtt/64",
            unit: "ns",
            impls: vec![
                ("hallows-lat", |s| round_trip::<Hallows<false>, Msg64>(m(4e3, s))),
                ("hallows-thr", |s| round_trip::<Hallows<true>, Msg64>(m(4e3, s))),
                ("rtrb", |s| round_trip::<Rtrb, Msg64>(m(4e3, s))),
            ],
        },
    ]
}

/// Median, quartiles and extremes of `v`.
struct Spread {
    median: f64,
    p25: f64,
    p75: f64,
    min: f64,
    max: f64,
}

fn spread(v: &[f64]) -> Spread {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    // Linear interpolation between closest ranks.
    let q = |p: f64| {
        let x = p * (s.len() - 1) as f64;
        let (i, f) = (x.floor() as usize, x.fract());
        if i + 1 < s.len() {
            s[i] + (s[i + 1] - s[i]) * f
        } else {
            s[i]
        }
    };
    Spread { median: q(0.5), p25: q(0.25), p75: q(0.75), min: s[0], max: s[s.len() - 1] }
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn line(label: &str, unit: &str, v: &[f64]) {
    let s = spread(v);
    println!(
        "  {label:<22} {:>8} {unit:<8} p25-p75 {:>7}-{:<7} min-max {:>7}-{:<7}",
        fmt(s.median),
        fmt(s.p25),
        fmt(s.p75),
        fmt(s.min),
        fmt(s.max)
    );
}

/// Runs `rounds` interleaved rounds of every configuration (those whose
/// name contains `only`, if given), message counts multiplied by `scale`,
/// and prints the summary.
pub fn run(rounds: usize, scale: f64, only: Option<&str>) {
    pin(0);
    let configs: Vec<Config> = configs().into_iter().filter(|c| only.is_none_or(|o| c.name.contains(o))).collect();
    // results[config][impl][round]
    let mut results: Vec<Vec<Vec<f64>>> = configs.iter().map(|c| vec![Vec::new(); c.impls.len()]).collect();
    let started = Instant::now();
    let mut tries = Vec::new();
    for round in 0..rounds {
        for (c, config) in configs.iter().enumerate() {
            let k = config.impls.len();
            for j in 0..k {
                let i = (j + round) % k;
                let (v, t) = measure(config.impls[i].1, scale);
                results[c][i].push(v);
                tries.push(t);
            }
        }
        eprintln!("round {} of {rounds} done ({:.0?})", round + 1, started.elapsed());
        thread::sleep(Duration::from_millis(10));
    }
    let kept_dirty = tries.iter().filter(|&&t| t > TRIES).count();
    let total: u32 = tries.iter().sum();
    println!("{rounds} interleaved rounds, message counts x{scale}; per queue: median, interquartile range, extremes over the rounds");
    println!(
        "{} measurements, {total} tries ({} disturbed and repeated); {kept_dirty} measurements found no undisturbed try in {TRIES} and kept a disturbed one",
        tries.len(),
        total as usize - tries.len()
    );
    for (c, config) in configs.iter().enumerate() {
        println!("{}", config.name);
        for (i, (name, _)) in config.impls.iter().enumerate() {
            line(name, config.unit, &results[c][i]);
        }
        // Paired per-round ratios against rtrb and the floors.
        let idx = |n: &str| config.impls.iter().position(|(x, _)| *x == n);
        let ratio = |a: &str, b: &str| {
            if let (Some(a_i), Some(b_i)) = (idx(a), idx(b)) {
                let r: Vec<f64> = results[c][a_i].iter().zip(&results[c][b_i]).map(|(x, y)| x / y).collect();
                line(&format!("{a}/{b}"), "x", &r);
            }
        };
        ratio("hallows-thr", "rtrb");
        ratio("hallows-lat", "rtrb");
        ratio("hallows-lat", "twolines");
        ratio("hallows-thr", "twolines");
        ratio("rtrb", "twolines");
        for (i, (name, _)) in config.impls.iter().enumerate() {
            let v: Vec<String> = results[c][i].iter().map(|x| fmt(*x)).collect();
            println!("    {name} per round: {}", v.join(" "));
        }
    }
}

/// ns per message to send, then to receive, `batch` at a time, on one
/// thread: the ring is filled to `fill` messages and drained again, so
/// every line stays in this core's cache and what is left is the
/// software's own cost per message (no line transfers).
fn one_thread<Q: Poll, M: BenchMsg>(laps: u64, batch: usize, fill: u64) -> (f64, f64) {
    let (mut tx, mut rx, mem) = Q::channel::<M>();
    let (mut send, mut recv) = (Duration::ZERO, Duration::ZERO);
    let mut seq = 0;
    for lap in 0..laps + laps / 8 {
        let t = Instant::now();
        produce::<Q, M>(&mut tx, seq, fill, batch);
        let s = t.elapsed();
        let t = Instant::now();
        let bad = consume::<Q, M>(&mut rx, seq, fill, batch);
        let r = t.elapsed();
        assert_eq!(bad, 0, "{}: messages out of order", Q::NAME);
        seq += fill;
        if lap >= laps / 8 {
            send += s;
            recv += r;
        }
    }
    drop((tx, rx, mem));
    let n = (laps * fill) as f64;
    (send.as_nanos() as f64 / n, recv.as_nanos() as f64 / n)
}

/// `--one-thread`: the software cost per message of each queue (see
/// `one_thread`), median of `rounds` rounds.
pub fn run_one_thread(rounds: usize) {
    pin(0);
    // `SPSC_ONE=<case>:<queue>` (e.g. `8/1:hallows-thr`) runs just that one,
    // for an instruction count under `valgrind --tool=callgrind`.
    let one = std::env::var("SPSC_ONE").ok();
    type F = fn() -> (f64, f64);
    fn case<M: BenchMsg, const BATCH: usize>() -> [(&'static str, F); 3] {
        [
            (Hallows::<true>::NAME, || one_thread::<Hallows<true>, M>(2000, BATCH, 512)),
            (Hallows::<false>::NAME, || one_thread::<Hallows<false>, M>(2000, BATCH, 512)),
            (Rtrb::NAME, || one_thread::<Rtrb, M>(2000, BATCH, 512)),
        ]
    }
    let cases = [("8/1", case::<[u64; 1], 1>()), ("64/1", case::<Msg64, 1>()), ("8/32", case::<[u64; 1], 32>()), ("64/32", case::<Msg64, 32>())];
    println!("one thread, rings filled to 512 and drained, ns per message (median of {rounds}): send / receive");
    for (name, queues) in cases {
        if let Some(one) = &one {
            let (case, queue) = one.split_once(':').expect("SPSC_ONE=<case>:<queue>");
            if case == name {
                let run = queues.iter().find(|q| q.0 == queue).expect("queue: hallows-thr, hallows-lat or rtrb").1;
                let (s, x) = run();
                println!("  {name:<6} {queue} {s:>5.2} / {x:>5.2}");
            }
            continue;
        }
        let mut line = format!("  {name:<6}");
        for (queue, run) in queues {
            let (mut s, mut r) = (vec![], vec![]);
            for _ in 0..rounds {
                let (a, b) = run();
                s.push(a);
                r.push(b);
            }
            let md = |v: &[f64]| spread(v).median;
            line += &format!(" {queue} {:>5.2} / {:>5.2} ", md(&s), md(&r));
        }
        println!("{line}");
    }
}

//! Host benchmarks: the hallows ring against other single-producer
//! single-consumer queues, with the producer and the consumer on two threads.
//!
//! Two modes. `-- --rounds N [--scale X] [--only NAME]` is the interleaved
//! comparison of hallows with rtrb (`spsc/compare.rs`): N rounds, the
//! queues alternating within each round, every queue driven by the same
//! polling loop, medians with spreads and paired ratios; it is the one to
//! quote. Anything else runs the criterion suite below, which covers more
//! queues (including kernel-mediated ones) with each queue's natural way of
//! waiting.
//!
//! - `spsc/<impl>/<message bytes>/<batch>`: throughput (elements/s). The
//!   producer sends `batch` messages per step with the queue's own batch API
//!   where it has one (hallows `reserve`/`recv_batch`, rtrb chunks, a pipe
//!   `write`/`read` of the whole batch, one lock/doorbell per batch for the
//!   eventfd queue) and a loop of single operations otherwise (heapless,
//!   crossbeam, std_mpsc). The consumer drains up to `batch` at a time and
//!   checks every sequence number.
//! - `rtt/<impl>/<message bytes>`: round trip, one message out on one queue
//!   and back on a second, echoed by the other thread.
//! - `rtt/cacheline/8`: the physical floor, two threads bouncing one
//!   `AtomicU64` (one cache-line transfer each way).
//! - `rtt/twolines/8`: the floor for two one-way queues, one `AtomicU64` on
//!   its own line per direction.
//!
//! Partitions run on dedicated cores, so the two threads are pinned to two
//! different CPUs (the benchmark's own thread to CPU 0, the peer thread to
//! CPU 1), the same for every queue: unpinned, a run on a 2-CPU host is
//! bimodal (whether the threads happen to share a core).
//!
//! All queues hold 1024 messages (heapless: 1023; hallows: 1024 slots, of
//! which one per block carries the block's stamp, so 896 8-byte or 992
//! 64-byte messages with the default latency tuning, which this suite
//! uses; the comparison mode runs both tunings). Waiting is the same spin
//! then yield for every polling queue (and the floor); the pipe, eventfd and
//! std_mpsc queues block in the kernel as they naturally do. The eventfd
//! queue is a `Mutex<VecDeque>` whose consumer sleeps on an eventfd that the
//! producer signals after every batch (a doorbell, as a virtio-style queue
//! without notification suppression would ring), plus a second eventfd to
//! wake a producer that found the queue full.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use hallows_ring::{ChannelLayout, Message, Receiver, RingError, Sender};

const CAP: usize = 1024;

trait BenchMsg: Message + Copy + Send + 'static {
    fn new(seq: u64) -> Self;
    fn seq(&self) -> u64;
    /// Whether every word of the message is its sequence number: the
    /// consumer reads all of what it receives, as a partition does (a
    /// check of one word lets the compiler skip loading the others from a
    /// queue whose slots are plain memory).
    fn intact(&self) -> bool;
}

impl<const N: usize> BenchMsg for [u64; N] {
    #[inline]
    fn new(seq: u64) -> Self {
        [seq; N]
    }
    #[inline]
    fn seq(&self) -> u64 {
        self[N - 1]
    }
    #[inline]
    fn intact(&self) -> bool {
        self.iter().all(|&w| w == self[N - 1])
    }
}

/// The 64-byte message: eight `u64`s aligned to a cache line, so that
/// every queue's slots are lines. A plain `[u64; 8]` is 8-aligned, and
/// whether a queue that allocates its own buffer (rtrb) got one on a line
/// boundary was up to the allocator: 64-byte messages straddling two
/// lines ran rtrb at about 45 Melem/s singly against about 58 aligned,
/// from one build of this bench to the next. hallows' slots are lines
/// either way (page-aligned slot region).
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable, Clone, Copy)]
#[repr(C, align(64))]
struct Msg64([u64; 8]);

impl BenchMsg for Msg64 {
    #[inline]
    fn new(seq: u64) -> Self {
        Msg64([seq; 8])
    }
    #[inline]
    fn seq(&self) -> u64 {
        self.0[7]
    }
    #[inline]
    fn intact(&self) -> bool {
        self.0.iter().fold(0, |acc, &w| acc | (w ^ self.0[7])) == 0
    }
}

/// Pins the calling thread to `cpu`, if the host has it.
fn pin(cpu: usize) {
    // Not `available_parallelism`: that is this thread's affinity, which
    // pinning shrinks.
    // SAFETY: sysconf has no preconditions.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } <= cpu as libc::c_long {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside
    // it; sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Spawns the peer thread (consumer or echo) on CPU 1.
fn spawn_peer<F: FnOnce() + Send + 'static>(f: F) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        pin(1);
        f()
    })
}

/// Spin briefly, then give the core away: with two threads on two shared
/// cores, pure spinning would measure the scheduler.
struct Backoff(u32);
impl Backoff {
    #[inline]
    fn new() -> Self {
        Backoff(0)
    }
    #[inline]
    fn snooze(&mut self) {
        if self.0 < 64 {
            self.0 += 1;
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
}

trait Queue: 'static {
    const NAME: &'static str;
    type Tx<M: BenchMsg>: Send + 'static;
    type Rx<M: BenchMsg>: Send + 'static;
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>);
    /// Sends messages `seq .. seq + n`, waiting for room as the queue does.
    fn send<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, n: usize);
    /// Receives between 1 and `max` messages, waiting as the queue does.
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, f: F) -> usize;
}

struct Hallows;
impl Queue for Hallows {
    const NAME: &'static str = "hallows";
    type Tx<M: BenchMsg> = Sender<M>;
    type Rx<M: BenchMsg> = Receiver<M>;
    fn channel<M: BenchMsg>() -> (Sender<M>, Receiver<M>) {
        let layout = ChannelLayout::for_message::<M>(CAP).unwrap();
        let alloc = std::alloc::Layout::from_size_align(layout.total_size(), layout.page_size()).unwrap();
        // SAFETY: non-zero size; leaked below so it outlives both endpoints.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(alloc) }).unwrap();
        // SAFETY: `base` is page-aligned, `total_size` bytes, never freed,
        // used only by this one sender and one receiver.
        let tx = unsafe { Sender::new(base, layout) }.unwrap();
        // SAFETY: as above.
        let rx = unsafe { Receiver::new(base, layout) }.unwrap();
        (tx, rx)
    }
    #[inline]
    fn send<M: BenchMsg>(tx: &mut Sender<M>, seq: u64, n: usize) {
        let mut b = Backoff::new();
        if n == 1 {
            while tx.try_send(&M::new(seq)).is_err() {
                b.snooze();
            }
            return;
        }
        let mut done = 0;
        while done < n {
            match tx.reserve(n - done) {
                Ok(mut batch) => {
                    let base = seq + done as u64;
                    batch.fill_with(|i| M::new(base + i as u64));
                    done += batch.len();
                    batch.commit();
                }
                Err(RingError::Full) => b.snooze(),
                Err(e) => panic!("{e}"),
            }
        }
    }
    #[inline]
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Receiver<M>, max: usize, mut f: F) -> usize {
        let mut b = Backoff::new();
        loop {
            if max == 1 {
                match rx.try_recv() {
                    Ok(m) => {
                        f(m);
                        return 1;
                    }
                    Err(RingError::Empty) => b.snooze(),
                    Err(e) => panic!("{e}"),
                }
                continue;
            }
            match rx.recv_batch(max) {
                Ok(batch) => {
                    let n = batch.len();
                    batch.iter().for_each(&mut f);
                    batch.release();
                    return n;
                }
                Err(RingError::Empty) => b.snooze(),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

struct Rtrb;
impl Queue for Rtrb {
    const NAME: &'static str = "rtrb";
    type Tx<M: BenchMsg> = rtrb::Producer<M>;
    type Rx<M: BenchMsg> = rtrb::Consumer<M>;
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>) {
        rtrb::RingBuffer::new(CAP)
    }
    #[inline]
    fn send<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, n: usize) {
        let mut b = Backoff::new();
        if n == 1 {
            while tx.push(M::new(seq)).is_err() {
                b.snooze();
            }
            return;
        }
        let mut done = 0;
        while done < n {
            let k = tx.slots().min(n - done);
            if k == 0 {
                b.snooze();
                continue;
            }
            let chunk = tx.write_chunk_uninit(k).unwrap();
            let base = seq + done as u64;
            done += chunk.fill_from_iter((0..k as u64).map(|i| M::new(base + i)));
        }
    }
    #[inline]
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, mut f: F) -> usize {
        let mut b = Backoff::new();
        loop {
            if max == 1 {
                match rx.pop() {
                    Ok(m) => {
                        f(m);
                        return 1;
                    }
                    Err(_) => b.snooze(),
                }
                continue;
            }
            let k = rx.slots().min(max);
            if k == 0 {
                b.snooze();
                continue;
            }
            let chunk = rx.read_chunk(k).unwrap();
            let (x, y) = chunk.as_slices();
            x.iter().chain(y).copied().for_each(&mut f);
            chunk.commit_all();
            return k;
        }
    }
}

struct Heapless;
impl Queue for Heapless {
    const NAME: &'static str = "heapless";
    type Tx<M: BenchMsg> = heapless::spsc::Producer<'static, M, CAP>;
    type Rx<M: BenchMsg> = heapless::spsc::Consumer<'static, M, CAP>;
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>) {
        // One small queue leaked per benchmark: the split halves borrow it
        // for 'static.
        Box::leak(Box::new(heapless::spsc::Queue::new())).split()
    }
    #[inline]
    fn send<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, n: usize) {
        for i in 0..n as u64 {
            let mut b = Backoff::new();
            while tx.enqueue(M::new(seq + i)).is_err() {
                b.snooze();
            }
        }
    }
    #[inline]
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, mut f: F) -> usize {
        let mut b = Backoff::new();
        loop {
            let mut k = 0;
            while k < max {
                match rx.dequeue() {
                    Some(m) => f(m),
                    None => break,
                }
                k += 1;
            }
            if k > 0 {
                return k;
            }
            b.snooze();
        }
    }
}

struct Crossbeam;
impl Queue for Crossbeam {
    const NAME: &'static str = "crossbeam";
    type Tx<M: BenchMsg> = Arc<crossbeam_queue::ArrayQueue<M>>;
    type Rx<M: BenchMsg> = Arc<crossbeam_queue::ArrayQueue<M>>;
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>) {
        let q = Arc::new(crossbeam_queue::ArrayQueue::new(CAP));
        (Arc::clone(&q), q)
    }
    #[inline]
    fn send<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, n: usize) {
        for i in 0..n as u64 {
            let mut b = Backoff::new();
            while tx.push(M::new(seq + i)).is_err() {
                b.snooze();
            }
        }
    }
    #[inline]
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, mut f: F) -> usize {
        let mut b = Backoff::new();
        loop {
            let mut k = 0;
            while k < max {
                match rx.pop() {
                    Some(m) => f(m),
                    None => break,
                }
                k += 1;
            }
            if k > 0 {
                return k;
            }
            b.snooze();
        }
    }
}

struct StdMpsc;
impl Queue for StdMpsc {
    const NAME: &'static str = "std_mpsc";
    type Tx<M: BenchMsg> = mpsc::SyncSender<M>;
    type Rx<M: BenchMsg> = mpsc::Receiver<M>;
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>) {
        mpsc::sync_channel(CAP)
    }
    #[inline]
    fn send<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, n: usize) {
        for i in 0..n as u64 {
            tx.send(M::new(seq + i)).unwrap();
        }
    }
    #[inline]
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, mut f: F) -> usize {
        f(rx.recv().unwrap());
        let mut k = 1;
        while k < max {
            match rx.try_recv() {
                Ok(m) => f(m),
                Err(_) => break,
            }
            k += 1;
        }
        k
    }
}

struct Pipe;
impl Queue for Pipe {
    const NAME: &'static str = "pipe";
    type Tx<M: BenchMsg> = (File, Vec<u8>);
    type Rx<M: BenchMsg> = (File, Vec<u8>);
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() returns.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fresh descriptors, each owned by exactly one File.
        let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let buf = vec![0u8; 64 * size_of::<M>()];
        ((w, buf.clone()), (r, buf))
    }
    #[inline]
    fn send<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, n: usize) {
        let size = size_of::<M>();
        for i in 0..n {
            tx.1[i * size..(i + 1) * size].copy_from_slice(M::new(seq + i as u64).as_bytes());
        }
        tx.0.write_all(&tx.1[..n * size]).unwrap();
    }
    #[inline]
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, mut f: F) -> usize {
        let size = size_of::<M>();
        let mut got = rx.0.read(&mut rx.1[..max * size]).unwrap();
        if got % size != 0 {
            let end = got.next_multiple_of(size);
            rx.0.read_exact(&mut rx.1[got..end]).unwrap();
            got = end;
        }
        for c in rx.1[..got].chunks_exact(size) {
            f(M::read_from_bytes(c).unwrap());
        }
        got / size
    }
}

struct EventQueue<M> {
    q: Mutex<(VecDeque<M>, bool)>,
    data: File,
    space: File,
}

fn eventfd() -> File {
    // SAFETY: plain eventfd creation; the descriptor is owned by the File.
    let fd = unsafe { libc::eventfd(0, 0) };
    assert!(fd >= 0);
    // SAFETY: fresh descriptor, owned by exactly one File.
    unsafe { File::from_raw_fd(fd) }
}

fn ring(mut f: &File) {
    f.write_all(&1u64.to_ne_bytes()).unwrap();
}

fn sleep_on(mut f: &File) {
    let mut b = [0u8; 8];
    f.read_exact(&mut b).unwrap();
}

struct EventFd;
impl Queue for EventFd {
    const NAME: &'static str = "eventfd";
    type Tx<M: BenchMsg> = Arc<EventQueue<M>>;
    type Rx<M: BenchMsg> = Arc<EventQueue<M>>;
    fn channel<M: BenchMsg>() -> (Self::Tx<M>, Self::Rx<M>) {
        let q = Arc::new(EventQueue {
            q: Mutex::new((VecDeque::with_capacity(CAP), false)),
            data: eventfd(),
            space: eventfd(),
        });
        (Arc::clone(&q), q)
    }
    #[inline]
    fn send<M: BenchMsg>(tx: &mut Self::Tx<M>, seq: u64, n: usize) {
        let mut done = 0;
        while done < n {
            let mut g = tx.q.lock().unwrap();
            let room = CAP - g.0.len();
            if room == 0 {
                g.1 = true;
                drop(g);
                sleep_on(&tx.space);
                continue;
            }
            let k = room.min(n - done);
            g.0.extend((0..k as u64).map(|i| M::new(seq + done as u64 + i)));
            drop(g);
            ring(&tx.data);
            done += k;
        }
    }
    #[inline]
    fn recv<M: BenchMsg, F: FnMut(M)>(rx: &mut Self::Rx<M>, max: usize, mut f: F) -> usize {
        loop {
            let mut g = rx.q.lock().unwrap();
            if !g.0.is_empty() {
                let k = g.0.len().min(max);
                g.0.drain(..k).for_each(&mut f);
                let wake = std::mem::take(&mut g.1);
                drop(g);
                if wake {
                    ring(&rx.space);
                }
                return k;
            }
            drop(g);
            sleep_on(&rx.data);
        }
    }
}

fn throughput<Q: Queue, M: BenchMsg>(c: &mut Criterion, batch: usize) {
    let (mut tx, mut rx) = Q::channel::<M>();
    let (go, go_rx) = mpsc::channel::<u64>();
    let (done_tx, done) = mpsc::channel::<u64>();
    let consumer = spawn_peer(move || {
        let mut expect = 0u64;
        for n in go_rx {
            let end = expect + n;
            let mut bad = 0u64;
            while expect < end {
                Q::recv(&mut rx, batch, |m: M| {
                    bad += u64::from(m.seq() != expect);
                    expect += 1;
                });
            }
            done_tx.send(bad).unwrap();
        }
    });
    let mut seq = 0u64;
    let mut g = c.benchmark_group("spsc");
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(format!("{}/{}/{}", Q::NAME, size_of::<M>(), batch), |b| {
        b.iter_custom(|iters| {
            let n = iters * batch as u64;
            go.send(n).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                Q::send(&mut tx, seq, batch);
                seq += batch as u64;
            }
            let bad = done.recv().unwrap();
            let t = start.elapsed();
            assert_eq!(bad, 0, "messages out of order");
            t
        })
    });
    g.finish();
    drop(go);
    consumer.join().unwrap();
}

fn round_trip<Q: Queue, M: BenchMsg>(c: &mut Criterion) {
    let (mut out_tx, mut out_rx) = Q::channel::<M>();
    let (mut back_tx, mut back_rx) = Q::channel::<M>();
    let (go, go_rx) = mpsc::channel::<u64>();
    let (done_tx, done) = mpsc::channel::<()>();
    let echo = spawn_peer(move || {
        for n in go_rx {
            for _ in 0..n {
                let mut seq = 0;
                Q::recv(&mut out_rx, 1, |m: M| seq = m.seq());
                Q::send(&mut back_tx, seq, 1);
            }
            done_tx.send(()).unwrap();
        }
        drop(back_tx);
    });
    let mut seq = 0u64;
    c.bench_function(&format!("rtt/{}/{}", Q::NAME, size_of::<M>()), |b| {
        b.iter_custom(|iters| {
            go.send(iters).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                Q::send(&mut out_tx, seq, 1);
                let mut got = u64::MAX;
                Q::recv(&mut back_rx, 1, |m: M| got = m.seq());
                assert_eq!(got, seq);
                seq += 1;
            }
            let t = start.elapsed();
            done.recv().unwrap();
            t
        })
    });
    drop(go);
    echo.join().unwrap();
}

#[repr(align(128))]
struct Line(AtomicU64);

fn cacheline_floor(c: &mut Criterion) {
    let line = Arc::new(Line(AtomicU64::new(0)));
    let (go, go_rx) = mpsc::channel::<u64>();
    let echo = {
        let line = Arc::clone(&line);
        spawn_peer(move || {
            let mut v = 0;
            for n in go_rx {
                for _ in 0..n {
                    let mut b = Backoff::new();
                    while line.0.load(Ordering::Acquire) != v + 1 {
                        b.snooze();
                    }
                    v += 2;
                    line.0.store(v, Ordering::Release);
                }
            }
        })
    };
    let mut v = 0;
    c.bench_function("rtt/cacheline/8", |b| {
        b.iter_custom(|iters| {
            go.send(iters).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                line.0.store(v + 1, Ordering::Release);
                let mut b = Backoff::new();
                while line.0.load(Ordering::Acquire) != v + 2 {
                    b.snooze();
                }
                v += 2;
            }
            start.elapsed()
        })
    });
    drop(go);
    echo.join().unwrap();
}

/// The floor of any round trip over two one-way queues: each direction has
/// its own line (as two channels have), so a round trip is two one-line
/// transfers that each find the line held by the polling side, not one line
/// bouncing back and forth.
fn two_line_floor(c: &mut Criterion) {
    let lines = Arc::new((Line(AtomicU64::new(0)), Line(AtomicU64::new(0))));
    let (go, go_rx) = mpsc::channel::<u64>();
    let echo = {
        let lines = Arc::clone(&lines);
        spawn_peer(move || {
            let mut v = 0;
            for n in go_rx {
                for _ in 0..n {
                    v += 1;
                    let mut b = Backoff::new();
                    while lines.0 .0.load(Ordering::Acquire) != v {
                        b.snooze();
                    }
                    lines.1 .0.store(v, Ordering::Release);
                }
            }
        })
    };
    let mut v = 0;
    c.bench_function("rtt/twolines/8", |b| {
        b.iter_custom(|iters| {
            go.send(iters).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                v += 1;
                lines.0 .0.store(v, Ordering::Release);
                let mut b = Backoff::new();
                while lines.1 .0.load(Ordering::Acquire) != v {
                    b.snooze();
                }
            }
            start.elapsed()
        })
    });
    drop(go);
    echo.join().unwrap();
}

fn all_sizes_and_batches<Q: Queue>(c: &mut Criterion) {
    for batch in [1, 32] {
        throughput::<Q, [u64; 1]>(c, batch);
        throughput::<Q, Msg64>(c, batch);
    }
    round_trip::<Q, [u64; 1]>(c);
    round_trip::<Q, Msg64>(c);
}

fn benches(c: &mut Criterion) {
    pin(0);
    cacheline_floor(c);
    two_line_floor(c);
    all_sizes_and_batches::<Hallows>(c);
    all_sizes_and_batches::<Rtrb>(c);
    all_sizes_and_batches::<Heapless>(c);
    all_sizes_and_batches::<Crossbeam>(c);
    all_sizes_and_batches::<StdMpsc>(c);
    all_sizes_and_batches::<Pipe>(c);
    all_sizes_and_batches::<EventFd>(c);
}

criterion_group! {
    name = spsc;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = benches
}

/// `--rounds N` runs the interleaved comparison (`compare`); anything else
/// is the criterion suite.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one-thread") {
        let rounds = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(5);
        compare::run_one_thread(rounds);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--rounds") {
        let rounds = args.get(i + 1).and_then(|n| n.parse().ok()).expect("--rounds N");
        let scale = match args.iter().position(|a| a == "--scale") {
            Some(j) => args.get(j + 1).and_then(|n| n.parse().ok()).expect("--scale X"),
            None => 1.0,
        };
        let only = args.iter().position(|a| a == "--only").map(|j| args[j + 1].clone());
        compare::run(rounds, scale, only.as_deref());
        return;
    }
    spsc();
    Criterion::default().configure_from_args().final_summary();
}

#[path = "spsc/compare.rs"]
mod compare;

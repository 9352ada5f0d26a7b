//! The OLTP store partition: a thin shell that boots `hallows-store` on
//! the partition's disk (the manifest's `disk`) and serves Redis's
//! protocol on its network (the first `listen` port, else 6379).
//!
//! Tasks, under the `db` scheduler: the committer (class `Commit`) writes
//! and flushes the pending group whenever one is waiting (strict
//! durability) or once per commit window (group durability); connections
//! (class `Read`) parse and run commands and hold their replies until
//! what they depend on is durable; the checkpointer (class `Background`)
//! writes checkpoints in steps when the log is half full.
//!
//! The channel front (`store.pt`, the messages of `hallows-kv`'s `kv.pt`):
//! where the system connects "kv-requests" and "kv-replies", a task
//! (class `Read`) serves another partition's get/put/delete/scan and
//! transactions with `hallows_store::chan::Front`, replying once what a
//! reply depends on is durable. Runtime tasks run with interrupts masked,
//! so while the NIC is polled (its driver task never lets the core idle)
//! the doorbell interrupt would never be taken: the task then looks at the
//! ring on every pass of the executor, and otherwise sleeps on the
//! doorbell. A partition without a NIC serves the channel front alone.
//!
//! Boot arguments: `disk_durability=strict|group` and `disk_window_us=N`
//! (from the manifest's `disk`), `store_max_mb=N` (most bytes the keyspace
//! holds; default a quarter of the partition's RAM), `quit` (the `QUIT`
//! of a connection whose name is `hallows-shutdown`, or a channel
//! `Shutdown`, stops the partition cleanly, for tests), `crash_after=N`
//! (tests of restarts: the first incarnation panics right after taking
//! its N-th channel request, before answering it).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Poll, Waker};
use core::time::Duration;

use hallows_kv::{KvReply, KvRequest};
use hallows_ring::{Receiver, RingError, Sender};
use hallows_rt::channel::{self, ChannelError, Endpoint};
use hallows_rt::abi::net_mode;
use hallows_store::chan::Front;

use hallows_net::{with_timeout, TcpListener, TcpStream};
use hallows_rt::task::spawn_with_class;
use hallows_sched::TaskClass;
use hallows_rt::virtio::Disk;
use hallows_rt::{println, time, Boot};
use hallows_store::cmd::{Server, Session};
use hallows_store::{Config, Durability, Store};

hallows_rt::entry!(main);

/// Generated from `store.pt` by the build script (its enums' `is_known`
/// lists consecutive values one by one).
#[allow(dead_code, clippy::manual_range_patterns)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/store.rs"));
}

// The spec's messages are `hallows-kv`'s (both compile `kv.pt`): the same
// layout, so one converts to the other as bytes.
const _: () = assert!(spec::KvRequest::LAYOUT_HASH == hallows_kv::KvRequest::LAYOUT_HASH);
const _: () = assert!(spec::KvReply::LAYOUT_HASH == hallows_kv::KvReply::LAYOUT_HASH);

/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(300);
/// Time to hand replies to a client that does not read.
const WRITE_TIME: Duration = Duration::from_secs(10);
/// Strict durability: how long the committer lets connections add to a
/// group before writing it (a flush costs far more).
const GATHER: Duration = Duration::from_micros(100);
/// The longest the committer waits for a group to stop growing.
const MAX_GATHER: Duration = Duration::from_millis(2);
/// Most bytes buffered for one connection's unprocessed requests.
const MAX_BUFFER: usize = 256 << 10;

static SERVER: hallows_rt::sync::Mutex<Option<Server<Disk>>> = hallows_rt::sync::Mutex::new(None);
/// The store clock when the partition started, and uptime's origin.
static CLOCK_BASE: AtomicU64 = AtomicU64::new(0);
/// Woken when a commit is pending (the committer) and when a group became
/// durable (connections waiting to send replies).
static COMMITTER: hallows_rt::sync::Mutex<Option<Waker>> = hallows_rt::sync::Mutex::new(None);
static DURABLE: hallows_rt::sync::Mutex<Vec<Waker>> = hallows_rt::sync::Mutex::new(Vec::new());
/// Woken when the log is half full.
static CHECKPOINTER: hallows_rt::sync::Mutex<Option<Waker>> = hallows_rt::sync::Mutex::new(None);
static QUIT: AtomicBool = AtomicBool::new(false);

fn now_ms() -> u64 {
    CLOCK_BASE.load(Ordering::Relaxed) + time::now().as_millis() as u64
}

fn main(boot: &Boot) -> u64 {
    let durability = match (boot.arg("disk_durability"), boot.arg("disk_window_us").and_then(|w| w.parse::<u64>().ok())) {
        (Some("group"), Some(w)) => Durability::Group { window_us: w.max(1000) },
        (Some("group"), None) => Durability::Group { window_us: 10_000 },
        _ => Durability::Strict,
    };
    let ram = boot.info().ram_size as usize;
    let max_bytes = boot.arg("store_max_mb").and_then(|m| m.parse::<usize>().ok()).map_or(ram / 4, |m| m << 20);
    let disk = match Disk::open(boot) {
        Ok(d) => d,
        Err(e) => {
            println!("store: {e}");
            return 1;
        }
    };
    println!("store: {disk:?}, durability {durability:?}, at most {max_bytes} bytes of data");
    let t0 = time::now();
    let (store, rec) = match Store::open(disk, Config { durability, max_bytes }) {
        Ok(x) => x,
        Err(e) => {
            println!("store: cannot open the store: {e}");
            return 1;
        }
    };
    println!(
        "store: recovered in {} ms: {} keys from the checkpoint, {} groups ({} records) replayed, {} repaired; stopped at {}; epoch {}",
        (time::now() - t0).as_millis(),
        rec.checkpoint_keys,
        rec.groups,
        rec.records,
        rec.repaired,
        rec.stopped,
        rec.epoch
    );
    if let Some(w) = &rec.damage.whole {
        println!("store: DAMAGED: {w}; every data command is refused (FLUSHDB starts afresh)");
    }
    if !rec.damage.ranges.is_empty() {
        println!("store: DAMAGED: {} key range(s) of the checkpoint are unreadable and refused", rec.damage.ranges.len());
    }
    CLOCK_BASE.store(store.clock().saturating_sub(time::now().as_millis() as u64), Ordering::Relaxed);
    *SERVER.lock() = Some(Server::new(store, now_ms()));
    let cores = (boot.vcpu_count() as usize).clamp(1, hallows_rt::task::MAX_VCPUS);
    let policy = hallows_sched::Db::<256>::new(hallows_sched::DbConfig::new(cores)).expect("db policy");
    let b = boot.clone();
    if boot.has("fifo") {
        return hallows_rt::task::run(boot, serve(b, durability));
    }
    hallows_rt::task::run_with(boot, Box::new(policy), serve(b, durability))
}

async fn serve(boot: Boot, durability: Durability) -> u64 {
    let quit_enabled = boot.has("quit");
    // The channel front first: a client cannot send before this end is attached.
    let chan = match Chan::connect(&boot) {
        Ok(chan) => chan,
        Err(e) => {
            println!("store: {e}");
            return 1;
        }
    };
    let mode = boot.info().net.mode;
    if mode == net_mode::NONE && chan.is_none() {
        println!("store: no network and no channel front: nothing to serve");
        return 1;
    }
    spawn_with_class(TaskClass::Commit, committer(durability));
    spawn_with_class(TaskClass::Background, checkpointer());
    if let Some(chan) = chan {
        let crash_after = if boot.restart_count() == 0 { boot.arg("crash_after").and_then(|n| n.parse::<u64>().ok()) } else { None };
        spawn_with_class(TaskClass::Read, serve_channel(chan, Front::new(quit_enabled), mode == net_mode::POLL, crash_after));
        println!("store: channel front on \"kv-requests\" and \"kv-replies\"");
    }
    if mode != net_mode::NONE {
        if let Err(e) = hallows_net::init(&boot) {
            println!("store: network init failed: {e}");
            return 1;
        }
        let net = &boot.info().net;
        let port = if net.listen_count > 0 && net.listen[0] != 0 { net.listen[0] } else { 6379 };
        let mut listener = match TcpListener::bind(port) {
            Ok(l) => l,
            Err(e) => {
                println!("store: cannot listen on {port}: {e}");
                return 1;
            }
        };
        println!("store: ready on port {port} (Redis protocol)");
        spawn_with_class(TaskClass::Read, async move {
            loop {
                if let Ok(s) = listener.accept().await {
                    spawn_with_class(TaskClass::Read, connection(s, quit_enabled));
                }
            }
        });
    }
    poll_fn(|cx| {
        if QUIT.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        // The committer wakes everyone on every group; this future too.
        DURABLE.lock().push(cx.waker().clone());
        if QUIT.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    // Make everything durable, then stop.
    let mut guard = SERVER.lock();
    let srv = guard.as_mut().expect("server");
    let ok = srv.store.sync().is_ok();
    println!("store: shut down ({} commits, {} groups, {} checkpoints)", srv.store.stats().commits, srv.store.stats().groups, srv.store.stats().checkpoints);
    u64::from(!ok)
}

fn wake_durable() {
    let ws: Vec<Waker> = core::mem::take(&mut *DURABLE.lock());
    for w in ws {
        w.wake();
    }
}

/// Writes and flushes the pending group whenever there is one (strict),
/// or every commit window (group).
async fn committer(durability: Durability) {
    loop {
        poll_fn(|cx| {
            *COMMITTER.lock() = Some(cx.waker().clone());
            let pending = SERVER.lock().as_ref().is_some_and(|s| s.store.has_pending());
            if pending { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        // Group commit: let the connections with requests waiting run
        // first (the commit class would otherwise preempt them after the
        // first write), so that one flush makes all of their writes durable.
        match durability {
            Durability::Group { window_us } => time::sleep(Duration::from_micros(window_us)).await,
            Durability::Strict => {
                // While the group keeps growing, a little longer (bounded).
                let pending = || SERVER.lock().as_ref().map_or(0, |s| s.store.pending_records());
                let start = time::now();
                let mut last = pending();
                loop {
                    time::sleep(GATHER).await;
                    let n = pending();
                    if n == last || time::now() - start >= MAX_GATHER {
                        break;
                    }
                    last = n;
                }
            }
        }
        let r = SERVER.lock().as_mut().map(|s| (s.store.sync(), s.store.wants_checkpoint()));
        match r {
            Some((Err(e), _)) => println!("store: writing the log failed: {e}; writes are refused from now on"),
            Some((Ok(()), true)) => {
                if let Some(w) = CHECKPOINTER.lock().take() {
                    w.wake();
                }
            }
            _ => {}
        }
        wake_durable();
    }
}

/// Checkpoints in steps when the log is half full (the committer wakes it
/// then; nothing runs while the store is idle); one step per turn, so
/// commits and reads run between them.
async fn checkpointer() {
    loop {
        poll_fn(|cx| {
            *CHECKPOINTER.lock() = Some(cx.waker().clone());
            let wants = SERVER.lock().as_ref().is_some_and(|s| s.store.wants_checkpoint());
            if wants { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        let r = SERVER.lock().as_mut().map(|s| s.store.background_step());
        if let Some(Err(e)) = r {
            println!("store: checkpoint failed: {e}");
            time::sleep(Duration::from_secs(1)).await;
        }
        hallows_rt::task::yield_now().await;
    }
}

/// Until the durable ticket reaches `need`.
async fn durable(need: u64) {
    poll_fn(|cx| {
        let done = |s: &Option<Server<Disk>>| s.as_ref().is_none_or(|s| s.store.durable() >= need);
        if done(&SERVER.lock()) {
            return Poll::Ready(());
        }
        DURABLE.lock().push(cx.waker().clone());
        if done(&SERVER.lock()) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await
}

async fn connection(mut s: TcpStream, quit_enabled: bool) {
    let mut sess = Session::default();
    let mut buf = vec![0u8; 16 << 10];
    let mut have = 0;
    let mut out: Vec<u8> = Vec::new();
    if let Some(srv) = SERVER.lock().as_mut() {
        srv.stats.connections += 1;
    }
    // One idle timer for the connection, pushed back after each request.
    let mut idle = time::sleep(IDLE);
    loop {
        if have == buf.len() {
            if buf.len() >= MAX_BUFFER {
                break;
            }
            buf.resize(buf.len() * 2, 0);
        }
        // The read and the idle timer polled together (no future per read).
        let got = poll_fn(|cx| match s.poll_read(cx, &mut buf[have..]) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Pin::new(&mut idle).poll(cx).map(|()| None),
        })
        .await;
        let n = match got {
            Some(Ok(n)) if n > 0 => n,
            _ => break,
        };
        idle.reset(IDLE);
        have += n;
        let (need, pending) = {
            let mut guard = SERVER.lock();
            let Some(srv) = guard.as_mut() else { break };
            let used = srv.feed(&mut sess, now_ms(), &buf[..have], &mut out);
            buf.copy_within(used..have, 0);
            have -= used;
            (sess.need, srv.store.has_pending())
        };
        if pending {
            if let Some(w) = COMMITTER.lock().take() {
                w.wake();
            }
        }
        durable(need).await;
        if !out.is_empty() {
            // Most replies fit the send buffer at once: no timer for them.
            let first = poll_fn(|cx| Poll::Ready(s.poll_write(cx, &out))).await;
            let done = match first {
                Poll::Ready(Ok(n)) => n,
                _ => 0,
            };
            if done < out.len() && !matches!(with_timeout(WRITE_TIME, s.write_all(&out[done..])).await, Ok(Ok(()))) {
                s.abort();
                return;
            }
            out.clear();
        }
        if sess.close {
            if quit_enabled && sess.name() == Some(b"hallows-shutdown".as_slice()) {
                QUIT.store(true, Ordering::Release);
                wake_durable();
            }
            break;
        }
    }
    let _ = s.close().await;
}

/// This partition's ends of the channel front (`store.pt`): requests are
/// read and replies written in place in the ring slots, only the bytes a
/// message uses (`hallows_kv::read_request`, `write_reply`), rather than
/// through the generated service's whole-message copies.
struct Chan {
    rx: Endpoint<Receiver<KvRequest>>,
    tx: Endpoint<Sender<KvReply>>,
}

impl Chan {
    /// Both ends, the receiving one first (a client cannot send before it
    /// is attached), checked against the system's layout hashes as the
    /// generated `spec::Service::connect` does; `None` when the system
    /// connects no channel front.
    fn connect(boot: &Boot) -> Result<Option<Chan>, String> {
        let open = |e: ChannelError, name: &str| format!("channel \"{name}\" refused: {e}");
        let rx = match channel::receiver_typed::<KvRequest>(boot, spec::channel::KV_REQUESTS, KvRequest::LAYOUT_HASH) {
            Ok(rx) => rx,
            Err(ChannelError::NotFound) => return Ok(None),
            Err(e) => return Err(open(e, spec::channel::KV_REQUESTS)),
        };
        let tx = match channel::sender_typed::<KvReply>(boot, spec::channel::KV_REPLIES, KvReply::LAYOUT_HASH) {
            Ok(tx) => tx,
            Err(ChannelError::NotFound) => return Ok(None),
            Err(e) => return Err(open(e, spec::channel::KV_REPLIES)),
        };
        Ok(Some(Chan { rx, tx }))
    }
}

/// Serves the channel front: looks at the requests waiting (at most
/// `spec::MESSAGES_PER_TURN`), runs each on the store straight from its
/// slot (none while `Front::busy`: the rest stay in the ring), sends the
/// replies whose writes are durable, in order, each written into its slot;
/// then looks again at once when the NIC is polled (`polled`: no interrupt
/// is taken while the driver task keeps the core busy), else sleeps until
/// the doorbell, the next reply's group is durable, or (reply ring full)
/// 100 µs.
async fn serve_channel(mut chan: Chan, mut front: Front, polled: bool, crash_after: Option<u64>) {
    let mut corrupt_reported = false;
    // Where a request is read to, only the bytes it uses each time (on
    // the heap: the future stays small).
    let mut req = Box::new(hallows_kv::shutdown(0));
    loop {
        let mut progress = false;
        if !front.busy() {
            match chan.rx.recv_batch(spec::MESSAGES_PER_TURN) {
                Ok(batch) => {
                    // While too many replies wait (a client that does not
                    // read them), requests wait in the ring: the queue
                    // stays bounded.
                    let (handled, pending) = {
                        let mut guard = SERVER.lock();
                        let Some(srv) = guard.as_mut() else { return };
                        let mut n = 0;
                        while let Some(slot) = batch.slot(n) {
                            if front.busy() {
                                break;
                            }
                            if !hallows_kv::read_request(&mut req, |at, dst| slot.copy_to(at, dst)) {
                                // Unreachable (every range lies inside the
                                // message): refuse to guess, stop serving.
                                println!("store: channel \"kv-requests\": a request could not be read from its slot");
                                return;
                            }
                            front.handle(srv, now_ms(), &req);
                            n += 1;
                        }
                        (n, srv.store.has_pending())
                    };
                    batch.release_first(handled);
                    progress |= handled > 0;
                    if pending {
                        if let Some(w) = COMMITTER.lock().take() {
                            w.wake();
                        }
                    }
                    if let Some(n) = crash_after.filter(|n| front.stats.requests >= *n) {
                        panic!("crash_after={n}: crashing with channel requests unanswered (a restart test)");
                    }
                }
                Err(RingError::Corrupt) if !corrupt_reported => {
                    // The client wrote an impossible header: keep looking
                    // (it may be restarted), say it once.
                    println!("store: channel \"kv-requests\" is corrupt (its producer wrote an impossible state)");
                    corrupt_reported = true;
                }
                Err(_) => {}
            }
        }
        let durable = SERVER.lock().as_ref().map_or(0, |s| s.store.durable());
        let mut blocked = false;
        while let Some(r) = front.peek_ready(durable) {
            match chan.tx.reserve(1) {
                Ok(mut slots) => {
                    let Some(slot) = slots.get_mut(0) else { break };
                    hallows_kv::write_reply(r, slot);
                    slots.commit();
                    front.pop_ready(durable);
                    progress = true;
                }
                // The client restarted: the ring is resynchronised, send again.
                Err(RingError::PeerRestarted) => {}
                Err(_) => {
                    blocked = true;
                    break;
                }
            }
        }
        chan.tx.flush();
        if front.shutdown_requested() && front.queued() == 0 {
            let s = front.stats;
            println!("store: channel front: {} requests ({} refused, {} transactions); shutting down", s.requests, s.refused, s.transactions);
            QUIT.store(true, Ordering::Release);
            wake_durable();
            return;
        }
        if progress || polled {
            hallows_rt::task::yield_now().await;
            continue;
        }
        let need = front.next_need().filter(|n| *n > durable);
        idle(chan.rx.rung(), need, blocked).await;
    }
}

/// Until `ready` (a doorbell), the durable ticket reaching `need`, or a
/// timer: 100 µs when the reply ring is full (`blocked`: the client frees
/// room without ringing), else 50 ms (a doorbell is never missed, but a
/// bound costs nothing).
async fn idle(ready: impl Future<Output = ()>, need: Option<u64>, blocked: bool) {
    let mut ready = pin!(ready);
    let mut timer = time::sleep(if blocked { Duration::from_micros(100) } else { Duration::from_millis(50) });
    poll_fn(|cx| {
        if ready.as_mut().poll(cx).is_ready() || Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if let Some(n) = need {
            let done = || SERVER.lock().as_ref().is_none_or(|s| s.store.durable() >= n);
            if done() {
                return Poll::Ready(());
            }
            DURABLE.lock().push(cx.waker().clone());
            if done() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

//! Zero-cost check: the generated dispatch path against the same loop
//! written by hand on `hallows-ring` (and `hallows-sched`), processing the
//! same messages. Run under callgrind, counting only the dispatch functions:
//!
//! ```sh
//! cargo build --release -p parseltongue-macros --example dispatch_cost
//! for mode in generated hand hand-split generated-api hand-api; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode \
//!     --toggle-collect='dispatch_cost::turn_*' \
//!     target/release/examples/dispatch_cost $mode 100000
//! done
//! ```
//!
//! Each `turn_*` function is one dispatch turn (`#[inline(never)]`, so it
//! is a symbol callgrind can count inclusively); everything else (filling
//! the ring, draining replies) is the same in both modes and not counted.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use hallows_ring::{ChannelLayout, Message, Receiver, RingError, Sender};

mod plain {
    parseltongue_macros::service! { r#"
        parseltongue_version 1;
        service plain {
            message_struct Ping { field seq: u64; field value: u64; }
            message_struct Pong { field seq: u64; field sum: u64; }
            receive_channel "ping" carrying Ping handled_by on_ping;
            send_channel "pong" carrying Pong;
            budget { messages_per_turn = 32; }
        }
    "# }
}

mod scheduled {
    parseltongue_macros::service! { r#"
        parseltongue_version 1;
        use_extension basilisk;
        service scheduled {
            message_struct Ping { field seq: u64; field value: u64; }
            message_struct Pong { field seq: u64; field sum: u64; }
            receive_channel "ping" carrying Ping handled_by on_ping as_task_class request;
            send_channel "pong" carrying Pong;
            scheduler_class api { quantum = 2us; queue_capacity = 4; }
            budget { messages_per_turn = 32; }
        }
    "# }
}

const SLOTS: usize = 64;
const BATCH: usize = 32;

/// Channel memory that is never freed, so endpoints cannot outlive it.
fn channel<T: Message>() -> (NonNull<u8>, ChannelLayout) {
    let layout = ChannelLayout::for_message::<T>(SLOTS).unwrap();
    let alloc = std::alloc::Layout::from_size_align(layout.total_size(), 4096).unwrap();
    // SAFETY: non-zero size; zeroed; deliberately leaked.
    let p = unsafe { std::alloc::alloc_zeroed(alloc) };
    (NonNull::new(p).unwrap(), layout)
}

/// The application logic, shared by every mode.
#[inline(always)]
fn answer(seq: u64, value: u64, acc: &mut u64) -> (u64, u64) {
    *acc = acc.wrapping_add(value ^ seq);
    (seq, *acc)
}

struct PlainApp {
    acc: u64,
}
impl plain::Handlers for PlainApp {
    type Endpoints = Endpoints2;
    fn on_ping(&mut self, m: plain::Ping, send: &mut plain::Senders<Endpoints2>) {
        let (seq, sum) = answer(m.seq, m.value, &mut self.acc);
        let _ = send.pong.try_send(&plain::Pong { seq, sum });
    }
}

struct ScheduledApp {
    acc: u64,
}
impl scheduled::Handlers for ScheduledApp {
    type Endpoints = Endpoints2;
    fn on_ping(&mut self, m: scheduled::Ping, send: &mut scheduled::Senders<Endpoints2>) {
        let (seq, sum) = answer(m.seq, m.value, &mut self.acc);
        let _ = send.pong.try_send(&scheduled::Pong { seq, sum });
    }
}

/// Endpoints made from raw channel memory for whichever message type is asked.
struct Endpoints2 {
    ping: (NonNull<u8>, ChannelLayout),
    pong: (NonNull<u8>, ChannelLayout),
}

macro_rules! endpoints2 {
    ($m:ident) => {
        impl $m::Endpoints for Endpoints2 {
            type Sender<T: Message> = Sender<T>;
            type Receiver<T: Message> = Receiver<T>;
            fn sender<T: Message>(&self, _: &str) -> Option<Sender<T>> {
                // SAFETY: never-freed memory laid out by the layout; the
                // service asks for its one sender once.
                unsafe { Sender::new(self.pong.0, self.pong.1).ok() }
            }
            fn receiver<T: Message>(&self, _: &str) -> Option<Receiver<T>> {
                // SAFETY: as above, the one receiver.
                unsafe { Receiver::new(self.ping.0, self.ping.1).ok() }
            }
        }
    };
}
endpoints2!(plain);
endpoints2!(scheduled);

/// What a turn did (the hand-written loops keep the same counts).
#[derive(Default)]
struct Counts {
    handled: usize,
    peer_restarts: usize,
    corrupt: usize,
    rejected: usize,
    /// When the policy wants to be called again (batching); the runtime's
    /// reason to sleep. The generated `Turn` reports it too.
    wake_at: Option<u64>,
}

impl Counts {
    #[inline(always)]
    fn note(&mut self, e: RingError) {
        match e {
            RingError::PeerRestarted => self.peer_restarts += 1,
            RingError::Corrupt => self.corrupt += 1,
            RingError::Full | RingError::Empty => {}
        }
    }
}

/// The hand-written equivalent of `plain`.
struct Hand {
    rx: Receiver<plain::Ping>,
    tx: Sender<plain::Pong>,
    acc: u64,
}

impl Hand {
    #[inline(always)]
    fn turn(&mut self) -> Counts {
        let mut c = Counts::default();
        match self.rx.recv_batch(BATCH) {
            Ok(batch) => {
                let n = batch.len();
                for m in batch.iter() {
                    let (seq, sum) = answer(m.seq, m.value, &mut self.acc);
                    let _ = self.tx.try_send(&plain::Pong { seq, sum });
                }
                batch.release();
                c.handled += n;
            }
            Err(e) => c.note(e),
        }
        c
    }
}

/// The same loop, hand-written with the application state in its own
/// struct (as the generated code keeps the handlers apart from the endpoints).
struct HandSplit {
    app: App,
    tx: Sender<plain::Pong>,
    rx: Receiver<plain::Ping>,
}

struct App {
    acc: u64,
}

impl App {
    #[inline(always)]
    fn on_ping(&mut self, m: plain::Ping, tx: &mut Sender<plain::Pong>) {
        let (seq, sum) = answer(m.seq, m.value, &mut self.acc);
        let _ = tx.try_send(&plain::Pong { seq, sum });
    }
}

impl HandSplit {
    #[inline(always)]
    fn turn(&mut self) -> Counts {
        let mut c = Counts::default();
        match self.rx.recv_batch(BATCH) {
            Ok(batch) => {
                let n = batch.len();
                for m in batch.iter() {
                    self.app.on_ping(m, &mut self.tx);
                }
                batch.release();
                c.handled += n;
            }
            Err(e) => c.note(e),
        }
        c
    }
}

/// The hand-written equivalent of `scheduled`: the same policy, driven the same way.
struct HandApi {
    rx: Receiver<plain::Ping>,
    tx: Sender<plain::Pong>,
    acc: u64,
    policy: hallows_sched::Api<4>,
    queued: bool,
}

impl HandApi {
    #[inline(always)]
    fn turn(&mut self, now: u64) -> Counts {
        use hallows_sched::{Admission, Pick, Scheduler, TaskClass, TaskId};
        let mut c = Counts::default();
        if !self.queued {
            match self.rx.recv_batch(1) {
                Ok(_) => match self.policy.task_arrived(TaskId(0), TaskClass::Request, now) {
                    Admission::Rejected => c.rejected += 1,
                    _ => self.queued = true,
                },
                Err(e) => c.note(e),
            }
        }
        loop {
            let task = match self.policy.pick_next(0, now) {
                Pick::Run { task, .. } => task,
                Pick::Idle { wake_at } => {
                    c.wake_at = wake_at;
                    break;
                }
            };
            match self.rx.recv_batch(BATCH) {
                Ok(batch) => {
                    let n = batch.len();
                    for m in batch.iter() {
                        let (seq, sum) = answer(m.seq, m.value, &mut self.acc);
                        let _ = self.tx.try_send(&plain::Pong { seq, sum });
                    }
                    batch.release();
                    c.handled += n;
                }
                Err(e) => c.note(e),
            }
            self.policy.task_done(0, task, now);
            self.queued = false;
        }
        c
    }
}

#[inline(never)]
fn turn_generated(s: &mut plain::Service<PlainApp>) -> usize {
    s.turn(0).handled
}

#[inline(never)]
fn turn_hand(h: &mut Hand) -> usize {
    h.turn().handled
}

#[inline(never)]
fn turn_hand_split(h: &mut HandSplit) -> usize {
    h.turn().handled
}

#[inline(never)]
fn turn_generated_api(s: &mut scheduled::Service<ScheduledApp>, now: u64) -> usize {
    s.turn(now).handled
}

#[inline(never)]
fn turn_hand_api(h: &mut HandApi, now: u64) -> usize {
    h.turn(now).handled
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "generated".into());
    let n: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let ping = channel::<plain::Ping>();
    let pong = channel::<plain::Pong>();
    // SAFETY: the client's ends of the two channels, each made once.
    let (mut client_tx, mut client_rx) = unsafe {
        (Sender::<plain::Ping>::new(ping.0, ping.1).unwrap(), Receiver::<plain::Pong>::new(pong.0, pong.1).unwrap())
    };
    let wires = Endpoints2 { ping, pong };
    let mut turn: Box<dyn FnMut(u64) -> usize> = match mode.as_str() {
        "generated" => {
            let mut s = plain::Service::connect(PlainApp { acc: 0 }, &wires).unwrap();
            Box::new(move |_| turn_generated(&mut s))
        }
        "generated-api" => {
            let mut s = scheduled::Service::connect(ScheduledApp { acc: 0 }, &wires).unwrap();
            Box::new(move |now| turn_generated_api(&mut s, now))
        }
        "hand-split" => {
            // SAFETY: as in `Endpoints2`: the service side's one receiver and one sender.
            let (rx, tx) = unsafe { (Receiver::new(ping.0, ping.1).unwrap(), Sender::new(pong.0, pong.1).unwrap()) };
            let mut h = HandSplit { app: App { acc: 0 }, tx, rx };
            Box::new(move |_| turn_hand_split(&mut h))
        }
        "hand" | "hand-api" => {
            // SAFETY: as in `Endpoints2`: the service side's one receiver and one sender.
            let (rx, tx) = unsafe { (Receiver::new(ping.0, ping.1).unwrap(), Sender::new(pong.0, pong.1).unwrap()) };
            if mode == "hand" {
                let mut h = Hand { rx, tx, acc: 0 };
                Box::new(move |_| turn_hand(&mut h))
            } else {
                let policy = hallows_sched::Api::<4>::new(scheduled::scheduler_config()).unwrap();
                let mut h = HandApi { rx, tx, acc: 0, policy, queued: false };
                Box::new(move |now| turn_hand_api(&mut h, now))
            }
        }
        other => panic!("unknown mode {other}"),
    };
    // Acknowledge the service's new sender (the epoch handshake), so that no
    // reply is refused as `Full` during the run.
    let _ = client_rx.try_recv();
    let (mut sent, mut got, mut check, mut now) = (0u64, 0u64, 0u64, 0u64);
    while got < n {
        if let Ok(mut b) = client_tx.reserve(BATCH.min((n - sent) as usize).max(1)) {
            let k = b.len();
            if sent < n {
                b.fill_with(|i| plain::Ping { seq: sent + i as u64, value: (sent + i as u64).wrapping_mul(0x9e37_79b9) });
                b.commit();
                sent += k as u64;
            }
        }
        now += 1_000;
        turn(now);
        while let Ok(p) = client_rx.try_recv() {
            check = check.wrapping_add(p.sum ^ p.seq);
            got += 1;
        }
        assert!(now < 1_000 * (4 * n + 1_000), "{mode}: stuck at {got} of {n} replies");
    }
    println!("{mode}: {got} messages, checksum {check:#018x}");
}

//! The generated dispatch loop, end to end over real channels: handlers get
//! every message once, in order; replies and sends arrive; the scheduler's
//! priority classes decide the order; a full reply channel is back-pressure.

mod common;

use hallows_ring::RingError;

mod backend {
    parseltongue_macros::include_spec!("../../tests/specs/valid/backend.pt");
}
mod users_api {
    parseltongue_macros::include_spec!("../../tests/specs/valid/users_api.pt");
}
mod compositor {
    parseltongue_macros::include_spec!("../../tests/specs/valid/compositor.pt");
}
mod store {
    parseltongue_macros::include_spec!("../../tests/specs/valid/store.pt");
}
mod plain {
    // Inline spec, no scheduler: channels served in declaration order.
    parseltongue_macros::service! { r#"
        parseltongue_version 1;
        service plain {
            message_struct Ping { field seq: u32; }
            message_struct Pong { field seq: u32; field doubled: u64; }
            receive_channel "ping" carrying Ping handled_by on_ping;
            send_channel "pong" carrying Pong;
            budget { messages_per_turn = 4; }
        }
    "# }
}
mod tokens {
    // Inline spec as bare tokens.
    parseltongue_macros::service! {
        parseltongue_version 1;
        service tokens {
            message_struct Tick { field n: u16; }
            receive_channel "tick" carrying Tick handled_by on_tick;
        }
    }
}

endpoints_for!(backend);
endpoints_for!(users_api);
endpoints_for!(compositor);
endpoints_for!(store);
endpoints_for!(plain);
endpoints_for!(tokens);

fn drain<T: hallows_ring::Message>(rx: &mut hallows_ring::Receiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(m) => out.push(m),
            Err(RingError::PeerRestarted) => continue,
            Err(_) => return out,
        }
    }
}

struct Backend {
    seen: Vec<u64>,
}

impl backend::Handlers for Backend {
    type Endpoints = common::Bus;
    fn handle_request(&mut self, message: backend::Request, send: &mut backend::Senders<common::Bus>) {
        self.seen.push(message.id);
        let status = if message.operation.is_known() { 0 } else { -1 };
        send.replies.try_send(&backend::Reply::new(message.id, status, message.id.to_le_bytes())).unwrap();
    }
}

#[test]
fn messaging_service_handles_every_request_once_in_order() {
    let bus = common::Bus::new(64);
    let mut client_rx = bus.receiver::<backend::Reply>(backend::channel::REPLIES);
    let mut svc = backend::Service::connect(Backend { seen: Vec::new() }, &bus).unwrap();
    let mut client_tx = bus.sender::<backend::Request>(backend::channel::REQUESTS);
    let _ = drain(&mut client_rx);
    svc.turn(0); // epoch handshake
    let mut now = 0;
    let mut sent = 0u64;
    while sent < 50 {
        let op = if sent.is_multiple_of(7) { backend::Operation(9) } else { backend::Operation::Get };
        let req = backend::Request::new(sent, op, false.into(), Default::default(), Default::default());
        match client_tx.try_send(&req) {
            Ok(()) => sent += 1,
            Err(RingError::PeerRestarted) => {}
            Err(e) => panic!("{e}"),
        }
        if sent.is_multiple_of(10) {
            now += 1_000;
            let t = svc.turn(now);
            // The messaging policy lingers (at most max_linger = 100 us) to
            // batch, and says when to come back.
            if let Some(w) = t.wake_at {
                assert!(w <= now + 100_000, "{w} {now}");
            }
        }
    }
    for _ in 0..10 {
        now += 50_000;
        svc.turn(now);
    }
    assert_eq!(svc.handlers.seen, (0..50).collect::<Vec<_>>());
    let replies = drain(&mut client_rx);
    assert_eq!(replies.len(), 50);
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.id, i as u64);
        assert_eq!(r.status, if i % 7 == 0 { -1 } else { 0 });
        assert_eq!(r.checksum, (i as u64).to_le_bytes());
    }
    assert_eq!(backend::scheduler_config().latency_bound, 200_000);
    assert_eq!(backend::scheduler_config().max_batch, 32);
    assert_eq!(backend::MESSAGES_PER_TURN, 32);
    assert_eq!(backend::BUDGET_RAM, Some(16 << 20));
}

struct Users {
    calls: usize,
}

impl users_api::Handlers for Users {
    type Endpoints = common::Bus;
    fn get_user(&mut self, request: users_api::GetUser, send: &mut users_api::Senders<common::Bus>) -> users_api::User {
        self.calls += 1;
        let _ = send.audit.try_send(&users_api::AuditEvent::new(request.user_id, 1));
        let name = users_api::BoundedString31::from_str(&format!("user{}", request.user_id)).unwrap();
        users_api::User::new(request.request_id, request.user_id, (request.user_id.is_multiple_of(2)).into(), name)
    }
}

#[test]
fn basilisk_route_replies_and_applies_back_pressure() {
    let mut bus = common::Bus::new(4);
    let mut replies = bus.receiver::<users_api::User>("user");
    let mut audit = bus.receiver::<users_api::AuditEvent>("audit");
    // Room for every request the test sends.
    bus.slots = 64;
    let mut svc = users_api::Service::connect(Users { calls: 0 }, &bus).unwrap();
    let mut requests = bus.sender::<users_api::GetUser>("get-user");
    let _ = drain(&mut replies);
    let _ = drain(&mut audit);
    svc.turn(0);
    // Rings hold at least 4 messages each; how many exactly depends on the
    // message size (one slot per block carries the stamp).
    let cap = replies.capacity() as u64;
    assert!(cap >= 4 && requests.capacity() as u64 >= 2 * cap);
    let mut ok = 0;
    for i in 0..cap {
        if requests.try_send(&users_api::GetUser::new(i, i as u32 * 10)).is_ok() {
            ok += 1;
        }
    }
    // The handshake may eat the first attempt.
    while ok < cap {
        if requests.try_send(&users_api::GetUser::new(ok, ok as u32 * 10)).is_ok() {
            ok += 1;
        }
    }
    let t = svc.turn(1);
    assert_eq!(t.handled as u64, cap);
    // The reply ring is now full: new requests must wait, not be lost.
    for i in cap..2 * cap {
        requests.try_send(&users_api::GetUser::new(i, i as u32 * 10)).unwrap();
    }
    let t = svc.turn(2);
    assert_eq!(t.handled, 0, "no reply slot: nothing may be taken");
    assert_eq!(t.held, 1, "the route holds its requests: the service must poll, not sleep");
    assert_eq!(svc.handlers.calls as u64, cap);
    let got = drain(&mut replies);
    assert_eq!(got.iter().map(|u| u.request_id).collect::<Vec<_>>(), (0..cap).collect::<Vec<_>>());
    assert_eq!(got[1].name.as_str(), Some("user10"));
    assert!(got[2].found.get() && got[2].user_id == 20);
    svc.turn(3);
    let got = drain(&mut replies);
    assert_eq!(got.iter().map(|u| u.request_id).collect::<Vec<_>>(), (cap..2 * cap).collect::<Vec<_>>());
    let audit_cap = audit.capacity();
    assert_eq!(drain(&mut audit).len(), audit_cap.min(2 * cap as usize), "the audit ring is full; later sends see Full");
}

#[derive(Default)]
struct Ui {
    log: Vec<String>,
}

impl compositor::Handlers for Ui {
    type Endpoints = common::Bus;
    fn on_pointer(&mut self, message: compositor::Pointer, _: &mut compositor::Senders<common::Bus>) {
        self.log.push(format!("pointer {}", message.x));
    }
    fn on_surface(&mut self, message: compositor::Surface, _: &mut compositor::Senders<common::Bus>) {
        self.log.push(format!("surface {}", message.id));
    }
    fn render(&mut self, frame: compositor::Frame, send: &mut compositor::Senders<common::Bus>) {
        self.log.push(format!("frame {} by {}", frame.index, frame.deadline));
        let _ = send.present.try_send(&compositor::Present::new(frame.index, 1));
    }
}

#[test]
fn nagini_frames_follow_the_frame_rate_and_input_goes_first() {
    let bus = common::Bus::new(8);
    let mut present = bus.receiver::<compositor::Present>("present");
    let mut svc = compositor::Service::connect(Ui::default(), &bus).unwrap();
    let mut pointer = bus.sender::<compositor::Pointer>("pointer");
    let mut surfaces = bus.sender::<compositor::Surface>("surfaces");
    let _ = drain(&mut present);
    let p = compositor::FRAME_PERIOD;
    assert_eq!(p, 16_666_666);
    let d = compositor::FRAME_DEADLINE;
    assert_eq!(d, 12_000_000);
    svc.turn(0); // frame 0, handshakes
    svc.handlers.log.clear();
    let _ = surfaces.try_send(&compositor::Surface { id: 7, size: [1, 1], damage: [[0; 4]; 4] });
    let _ = pointer.try_send(&compositor::Pointer::new(5, 0, compositor::Button::Left, true.into()));
    surfaces.try_send(&compositor::Surface { id: 7, size: [1, 1], damage: [[0; 4]; 4] }).unwrap();
    pointer.try_send(&compositor::Pointer::new(5, 0, compositor::Button::Left, true.into())).unwrap();
    svc.turn(p + 10); // frame 1 due (deadline p + 12 ms); input deadline now + 2 ms is earlier
    let log = &svc.handlers.log;
    assert_eq!(log[0], "pointer 5", "{log:?}");
    let frame_at = log.iter().position(|l| *l == format!("frame 1 by {}", p + d)).expect("frame 1 ran");
    // Surfaces are background work (the ui default): after the frame.
    let surface_at = log.iter().position(|l| l == "surface 7").expect("surface handled");
    assert!(frame_at < surface_at, "{log:?}");
    // A late turn skips missed frames instead of queueing them.
    svc.handlers.log.clear();
    svc.turn(5 * p + 3);
    assert_eq!(svc.handlers.log, vec![format!("frame 5 by {}", 5 * p + d)]);
    svc.turn(5 * p + 4);
    assert_eq!(svc.handlers.log.len(), 1, "one frame per period");
    assert!(drain(&mut present).iter().any(|m| m.frame == 5));
}

#[derive(Default)]
struct Store {
    log: Vec<&'static str>,
}

impl store::Handlers for Store {
    type Endpoints = common::Bus;
    fn commit(&mut self, _: store::Put, _: &mut store::Senders<common::Bus>) {
        self.log.push("commit");
    }
    fn read(&mut self, _: store::Get, _: &mut store::Senders<common::Bus>) {
        self.log.push("read");
    }
    fn compact(&mut self, _: store::Compact, _: &mut store::Senders<common::Bus>) {
        self.log.push("compact");
    }
}

#[test]
fn db_priority_classes_order_the_channels() {
    let bus = common::Bus::new(8);
    let mut svc = store::Service::connect(Store::default(), &bus).unwrap();
    let mut compact = bus.sender::<store::Compact>("maintenance");
    let mut reads = bus.sender::<store::Get>("reads");
    let mut commits = bus.sender::<store::Put>("commits");
    svc.turn(0);
    for _ in 0..2 {
        let _ = compact.try_send(&store::Compact { level: 1 });
        let _ = reads.try_send(&store::Get { key: 1 });
        let _ = commits.try_send(&store::Put { key: 1, value: [0; 48] });
    }
    svc.handlers.log.clear();
    // Sent maintenance first, commits last: the policy puts commits first,
    // then reads, then background work that has earned no credit yet.
    svc.turn(1);
    assert_eq!(svc.handlers.log, ["commit", "commit", "read", "read", "compact", "compact"]);
    // With credit earned (10 % of elapsed time), compaction runs ahead of reads.
    for _ in 0..2 {
        let _ = compact.try_send(&store::Compact { level: 1 });
        let _ = reads.try_send(&store::Get { key: 1 });
    }
    svc.handlers.log.clear();
    svc.turn(10_000_000);
    assert_eq!(svc.handlers.log, ["compact", "compact", "read", "read"]);
}

struct Plain {
    seen: Vec<u32>,
}

impl plain::Handlers for Plain {
    type Endpoints = common::Bus;
    fn on_ping(&mut self, message: plain::Ping, send: &mut plain::Senders<common::Bus>) {
        self.seen.push(message.seq);
        send.pong.try_send(&plain::Pong::new(message.seq, message.seq as u64 * 2)).unwrap();
    }
}

#[test]
fn without_a_scheduler_each_turn_takes_at_most_messages_per_turn() {
    let bus = common::Bus::new(16);
    let mut pong = bus.receiver::<plain::Pong>("pong");
    let mut svc = plain::Service::connect(Plain { seen: Vec::new() }, &bus).unwrap();
    let mut ping = bus.sender::<plain::Ping>("ping");
    let _ = drain(&mut pong);
    svc.turn(0);
    let mut n = 0;
    while n < 10 {
        if ping.try_send(&plain::Ping { seq: n }).is_ok() {
            n += 1;
        }
    }
    assert_eq!(svc.turn(0).handled, 4);
    assert_eq!(svc.turn(0).handled, 4);
    assert_eq!(svc.turn(0).handled, 2);
    assert_eq!(svc.handlers.seen, (0..10).collect::<Vec<_>>());
    assert_eq!(drain(&mut pong).iter().map(|p| p.doubled).sum::<u64>(), 90);
}

struct Ticks(u32);
impl tokens::Handlers for Ticks {
    type Endpoints = common::Bus;
    fn on_tick(&mut self, message: tokens::Tick, _: &mut tokens::Senders<common::Bus>) {
        self.0 += message.n as u32;
    }
}

#[test]
fn token_specs_work_and_missing_channels_are_reported() {
    let bus = common::Bus::new(4);
    let mut svc = tokens::Service::connect(Ticks(0), &bus).unwrap();
    let mut tx = bus.sender::<tokens::Tick>("tick");
    svc.turn(0);
    let _ = tx.try_send(&tokens::Tick { n: 3 });
    tx.try_send(&tokens::Tick { n: 4 }).unwrap();
    svc.turn(0);
    assert!(svc.handlers.0 == 7 || svc.handlers.0 == 4);

    // A bus whose "tick" receiver is already taken cannot give it again:
    // model that as a runtime without the channel.
    struct Nothing;
    impl tokens::Endpoints for Nothing {
        type Sender<T: hallows_ring::Message> = hallows_ring::Sender<T>;
        type Receiver<T: hallows_ring::Message> = hallows_ring::Receiver<T>;
        fn sender<T: hallows_ring::Message>(&self, _: &str) -> Option<hallows_ring::Sender<T>> {
            None
        }
        fn receiver<T: hallows_ring::Message>(&self, _: &str) -> Option<hallows_ring::Receiver<T>> {
            None
        }
    }
    struct Unconnected;
    impl tokens::Handlers for Unconnected {
        type Endpoints = Nothing;
        fn on_tick(&mut self, _: tokens::Tick, _: &mut tokens::Senders<Nothing>) {}
    }
    assert_eq!(tokens::Service::connect(Unconnected, &Nothing).err().map(|e| format!("{e:?}")), Some("MissingChannel(\"tick\")".to_string()));
}

/// Runtime belt and braces: endpoints whose system recorded another layout
/// hash for a channel (the other end was built from a spec that disagrees)
/// make `connect` refuse, naming the channel and both hashes, and open
/// nothing; the matching hash, or 0 (unchecked), connects.
#[test]
fn connect_refuses_a_channel_the_system_types_otherwise() {
    struct Recorded(u64, std::cell::Cell<u32>);
    impl plain::Endpoints for Recorded {
        type Sender<T: hallows_ring::Message> = hallows_ring::Sender<T>;
        type Receiver<T: hallows_ring::Message> = hallows_ring::Receiver<T>;
        fn sender<T: hallows_ring::Message>(&self, _: &str) -> Option<hallows_ring::Sender<T>> {
            self.1.set(self.1.get() + 1);
            None
        }
        fn receiver<T: hallows_ring::Message>(&self, _: &str) -> Option<hallows_ring::Receiver<T>> {
            self.1.set(self.1.get() + 1);
            None
        }
        fn layout_hash(&self, channel: &str) -> u64 {
            if channel == "pong" { self.0 } else { 0 }
        }
    }
    struct P;
    impl plain::Handlers for P {
        type Endpoints = Recorded;
        fn on_ping(&mut self, _: plain::Ping, _: &mut plain::Senders<Recorded>) {}
    }
    let wrong = Recorded(plain::Pong::LAYOUT_HASH ^ 1, std::cell::Cell::new(0));
    let err = plain::Service::connect(P, &wrong).err().expect("a mismatched channel is refused");
    assert_eq!(err, plain::ConnectError::LayoutMismatch { channel: "pong", system: plain::Pong::LAYOUT_HASH ^ 1, service: plain::Pong::LAYOUT_HASH });
    assert_eq!(wrong.1.get(), 0, "nothing may be opened before the types are compared");
    let text = err.to_string();
    assert!(text.contains("channel \"pong\" refused") && text.contains(&format!("{:#018x}", plain::Pong::LAYOUT_HASH)), "{text}");
    // The right hash (and 0) pass the check; this runtime then has no channels.
    for h in [plain::Pong::LAYOUT_HASH, 0] {
        let r = Recorded(h, std::cell::Cell::new(0));
        assert!(matches!(plain::Service::connect(P, &r).err(), Some(plain::ConnectError::MissingChannel(_))));
    }
}

mod rpc_server {
    parseltongue_macros::service! { r#"
        parseltongue_version 1;
        use_extension basilisk;
        service rpc_server {
            message_struct Ask { field n: u32; }
            message_struct Answer { field n: u32; field square: u64; }
            route square receives Ask on "ask" replies Answer on "answer";
            scheduler_class api { queue_capacity = 4; }
        }
    "# }
}
mod rpc_client {
    // The other end of the route: a typed call, no handler for the replies.
    parseltongue_macros::service! { r#"
        parseltongue_version 1;
        use_extension basilisk;
        service rpc_client {
            message_struct Ask { field n: u32; }
            message_struct Answer { field n: u32; field square: u64; }
            call square sends Ask on "ask" returns Answer on "answer";
            scheduler_class api { queue_capacity = 4; }
        }
    "# }
}
endpoints_for!(rpc_server);
endpoints_for!(rpc_client);

struct Squarer;
impl rpc_server::Handlers for Squarer {
    type Endpoints = common::Bus;
    fn square(&mut self, request: rpc_server::Ask, _: &mut rpc_server::Senders<common::Bus>) -> rpc_server::Answer {
        rpc_server::Answer::new(request.n, u64::from(request.n) * u64::from(request.n))
    }
}
struct Caller;
impl rpc_client::Handlers for Caller {
    type Endpoints = common::Bus;
}

/// Issue 15: a Basilisk route's other end calls it as a typed method,
/// request in, reply out; the server's loop runs while the client waits.
#[test]
fn basilisk_call_returns_the_routes_reply() {
    let bus = common::Bus::new(4);
    let mut server = rpc_server::Service::connect(Squarer, &bus).unwrap();
    let mut client = rpc_client::Service::connect(Caller, &bus).unwrap();
    assert_eq!(rpc_client::Ask::LAYOUT_HASH, rpc_server::Ask::LAYOUT_HASH);
    for n in [3u32, 0, 65_535, 7] {
        let mut waits = 0;
        let reply = client
            .square(&rpc_client::Ask { n }, |_| {
                waits += 1;
                assert!(waits < 100, "no reply");
                server.turn(0);
            })
            .unwrap();
        assert_eq!((reply.n, reply.square), (n, u64::from(n) * u64::from(n)));
    }
}

/// Issue 22: a Basilisk call across a server restart. A restart drops the
/// server's ends and attaches new ones on the same memory (receiving end
/// first, as `connect` does):
/// * a request the old incarnation never read: the new one drops it, and
///   the call fails with `ServerRestarted` instead of waiting forever; the
///   next call gets its own reply (never the lost one's, never one twice);
/// * a request sent after the restart, before the client noticed it: the
///   new incarnation answers it and the call returns that reply.
#[test]
fn basilisk_call_across_a_server_restart() {
    use std::cell::RefCell;
    let bus = common::Bus::new(4);
    let server = RefCell::new(Some(rpc_server::Service::connect(Squarer, &bus).unwrap()));
    let restart = || {
        drop(server.borrow_mut().take());
        bus.restart("ask", false);
        bus.restart("answer", true);
        *server.borrow_mut() = Some(rpc_server::Service::connect(Squarer, &bus).unwrap());
    };
    let mut client = rpc_client::Service::connect(Caller, &bus).unwrap();
    let serve = || {
        server.borrow_mut().as_mut().unwrap().turn(0);
    };
    let ask = |client: &mut rpc_client::Service<Caller>, n: u32, restart_at_first_wait: bool| {
        let mut waits = 0;
        client.square(&rpc_client::Ask { n }, |_| {
            waits += 1;
            assert!(waits < 100, "no reply");
            if waits == 1 && restart_at_first_wait {
                restart();
            } else {
                serve();
            }
        })
    };
    assert_eq!(ask(&mut client, 3, false).map(|r| (r.n, r.square)), Ok((3, 9)));
    // Sent to the old incarnation, which dies without reading it.
    assert_eq!(ask(&mut client, 4, true).map(|r| r.square), Err(rpc_client::CallError::ServerRestarted));
    assert_eq!(rpc_client::CallError::ServerRestarted.to_string(), "the server restarted; the request was not answered (retry if it is idempotent)");
    // The next calls get their own replies.
    assert_eq!(ask(&mut client, 5, false).map(|r| (r.n, r.square)), Ok((5, 25)));
    assert_eq!(ask(&mut client, 6, false).map(|r| (r.n, r.square)), Ok((6, 36)));
    // A restart between calls: the next request reaches the new
    // incarnation, which answers it.
    restart();
    assert_eq!(ask(&mut client, 7, false).map(|r| (r.n, r.square)), Ok((7, 49)));
    assert_eq!(ask(&mut client, 8, false).map(|r| (r.n, r.square)), Ok((8, 64)));
}

/// A server that attaches its reply sender after the client attached the
/// reply receiver cannot reply until the client acknowledges it, which the
/// client does on its next poll, without ringing the server. The turn that
/// finds a request it cannot yet answer says so (`held`), so that the
/// server polls instead of sleeping on its request doorbell (the hang of
/// the rpc-restart system on a loaded machine: the request had rung, the
/// reply could not be reserved, the server slept for good).
#[test]
fn a_request_waiting_for_the_clients_acknowledgement_is_held_not_slept_on() {
    let bus = common::Bus::new(4);
    // The client's ends first, as when the client partition boots first.
    let mut answers = bus.receiver::<rpc_server::Answer>("answer");
    let mut asks = bus.sender::<rpc_server::Ask>("ask");
    let mut server = rpc_server::Service::connect(Squarer, &bus).unwrap();
    // The server acknowledged the request sender when it attached.
    asks.try_send(&rpc_server::Ask::new(9)).unwrap();
    let t = server.turn(0);
    assert_eq!((t.handled, t.held), (0, 1), "the request waits for the reply channel's handshake");
    assert_eq!(answers.try_recv().map(|a| a.square), Err(RingError::Empty), "the client's poll acknowledges the server");
    let t = server.turn(1);
    assert_eq!((t.handled, t.held), (1, 0));
    assert_eq!(answers.try_recv().map(|a| (a.n, a.square)), Ok((9, 81)));
}

mod in_place {
    parseltongue_macros::service! { r#"
        parseltongue_version 1;
        service slots {
            message_enum Kind: u8 { variant A = 1; variant B = 2; }
            message_struct Rec {
                field seq: u64;
                field key: bounded_bytes<16>;
                field name: bounded_string<5>;
                field kind: Kind;
                field flag: bool;
                field pair: [u16; 2];
            }
            receive_channel "recs" carrying Rec handled_by take in_place;
            budget { messages_per_turn = 8; }
        }
    "# }
}
endpoints_for!(in_place);

/// One message as the in-place handler read it: seq, key, name, kind, flag, pair.
type Read = (u64, Vec<u8>, Vec<u8>, u8, bool, [u16; 2]);

/// What the in-place handler read of each message, and how many batches.
struct Taken {
    got: Vec<Read>,
    batches: Vec<usize>,
}

impl in_place::Handlers for Taken {
    type Endpoints = common::Bus;
    fn take(&mut self, batch: &hallows_ring::RecvBatch<'_, in_place::Rec>, _send: &mut in_place::Senders<common::Bus>) {
        self.batches.push(batch.len());
        for i in 0..batch.len() {
            let slot = batch.slot(i).unwrap();
            let key = in_place::Rec::key_in(&slot);
            let mut k = vec![0u8; key.len()];
            assert_eq!(key.copy_to(&mut k), k.len());
            let name = in_place::Rec::name_in(&slot);
            let mut n = vec![0u8; name.len()];
            name.copy_to(&mut n);
            // Read in place, the fields equal the message copied out whole.
            let whole = batch.get(i).unwrap();
            assert_eq!(k, whole.key.as_bytes());
            assert_eq!(in_place::Rec::seq_in(&slot), whole.seq);
            self.got.push((
                in_place::Rec::seq_in(&slot),
                k,
                n,
                in_place::Rec::kind_in(&slot).0,
                in_place::Rec::flag_in(&slot).get(),
                in_place::Rec::pair_in(&slot),
            ));
        }
    }
}

#[test]
fn an_in_place_handler_reads_each_batch_where_it_lies() {
    use zerocopy::{FromBytes, IntoBytes};
    let bus = common::Bus::new(64);
    let mut svc = in_place::Service::connect(Taken { got: Vec::new(), batches: Vec::new() }, &bus).unwrap();
    let mut tx = bus.sender::<in_place::Rec>("recs");
    svc.turn(0); // epoch handshake
    let mut want = Vec::new();
    for seq in 0..20u64 {
        let key: Vec<u8> = (0..(seq % 17) as u8).collect();
        let name = ["", "a", "bcd", "efghi"][seq as usize % 4];
        let kind = if seq % 2 == 0 { in_place::Kind::A } else { in_place::Kind::B };
        let rec = in_place::Rec::new(
            seq,
            in_place::BoundedBytes16::from_bytes(&key).unwrap(),
            in_place::BoundedString5::from_str(name).unwrap(),
            kind,
            (seq % 3 == 0).into(),
            [seq as u16, 7],
        );
        tx.try_send(&rec).unwrap();
        want.push((seq, key, name.as_bytes().to_vec(), kind.0, seq % 3 == 0, [seq as u16, 7]));
    }
    // A hostile sender's length past the capacity is clamped to it.
    let mut raw = in_place::Rec::new(99, Default::default(), Default::default(), in_place::Kind::A, false.into(), [0, 0]);
    let bytes = raw.as_mut_bytes();
    bytes[8..10].copy_from_slice(&u16::MAX.to_ne_bytes());
    bytes[10..26].fill(0xEE);
    let raw = in_place::Rec::read_from_bytes(bytes).unwrap();
    tx.try_send(&raw).unwrap();
    want.push((99, vec![0xEE; 16], Vec::new(), 1, false, [0, 0]));
    let mut handled = 0;
    for _ in 0..10 {
        handled += svc.turn(0).handled;
    }
    assert_eq!(handled, 21);
    assert_eq!(svc.handlers.got, want);
    // Batches of at most messages_per_turn, every message consumed once.
    assert_eq!(svc.handlers.batches, [8, 8, 5]);
}

//! The link engine: connection table, flow control, validation.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::frame::{kind, role, Frame, PeerAddr, MAGIC, MAX_SLOTS, MAX_WINDOW, MIN_WINDOW, PAYLOAD, VERSION};
use crate::transport::{Transport, TransportError};

/// Which end of the link this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Owns the NIC; opens connections ([`Link::open`]).
    Gateway,
    /// Accepts them ([`Link::listen`], [`Link::accept`]).
    Service,
}

/// Limits of one link end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Connections this end holds at once (open, closing or waiting to be
    /// accepted), at most [`MAX_SLOTS`]. A service refuses an `OPEN` beyond
    /// it; a gateway's [`Link::open`] fails.
    pub max_conns: usize,
    /// Receive window announced for each connection, clamped to
    /// [`MIN_WINDOW`]`..=`[`MAX_WINDOW`]: the most bytes of one connection
    /// this end ever buffers. At most `max_conns * window` bytes in all.
    pub window: u32,
    /// Frames one [`Link::poll`] takes from the peer at most.
    pub rx_budget: usize,
    /// Service: connections per port waiting for [`Link::accept`]; an
    /// `OPEN` beyond it is refused.
    pub backlog: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { max_conns: 64, window: 32 * 1024, rx_budget: 64, backlog: 64 }
    }
}

/// A connection handle (local: slot and generation). Handles of closed
/// connections go stale and are refused ([`ConnError::Invalid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    index: u16,
    gen: u16,
}

impl ConnId {
    /// The entry's index, below `max_conns`: the bit of
    /// [`Events::conns`].
    pub fn index(self) -> usize {
        usize::from(self.index)
    }

    /// The handle as one number (for logs).
    pub fn raw(self) -> u32 {
        u32::from(self.gen) << 16 | u32::from(self.index)
    }
}

/// Why a connection operation did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// Nothing to read yet, or no credit or ring room to send: poll and
    /// retry.
    WouldBlock,
    /// The connection was aborted (by either side, by a protocol violation
    /// of the peer, or because the peer restarted).
    Reset,
    /// Sending after [`Link::shutdown`].
    Closed,
    /// Not a live handle of this link (closed, or never opened).
    Invalid,
}

/// Why [`Link::open`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The service has not said `HELLO` (not started, restarted, or the
    /// link is corrupt).
    PeerDown,
    /// `max_conns` connections are live.
    NoSlot,
    /// Only a gateway opens connections.
    WrongRole,
}

/// What the application sees of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Gateway: waiting for the service's `ACCEPT`.
    Connecting,
    /// Data may flow (each direction until its `FIN`).
    Open,
    /// Aborted.
    Reset,
    /// Not a live handle.
    Invalid,
}

/// What changed since the last [`Link::take_events`]: for waking the
/// tasks that wait on a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Bit `i`: connection entry `i` ([`ConnId::index`]) got data, credit,
    /// a `FIN`, an `ACCEPT` or a reset.
    pub conns: u128,
    /// Service: a connection joined the backlog.
    pub backlog: bool,
    /// The link went up or down, or the peer restarted.
    pub link: bool,
}

/// Counters of one link end (monotonic, except `live`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Connections opened (gateway) or accepted into the backlog (service).
    pub opened: u64,
    /// Connections freed (both sides done and the handle closed).
    pub closed: u64,
    /// `OPEN`s refused (service: no listener, no room) or refused by the
    /// peer (gateway: `RST` before `ACCEPT`).
    pub refused: u64,
    /// `RST`s sent.
    pub resets_sent: u64,
    /// `RST`s received for live connections.
    pub resets_recv: u64,
    /// Frames that broke the protocol (each resets its connection, if it
    /// names one).
    pub violations: u64,
    /// Frames for connections that no longer exist (normal after a reset;
    /// dropped).
    pub stray: u64,
    /// The peer restarted or sent a second `HELLO` (every connection reset).
    pub peer_restarts: u64,
    /// The transport reported the peer's side of the channel corrupt.
    pub corrupt: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Free,
    /// Gateway: `OPEN` queued or sent, no `ACCEPT` yet.
    Opening,
    Open,
    /// Service: an `OPEN` refused; freed once its `RST` is sent.
    Rejected,
}

#[derive(Debug)]
struct Entry {
    gen: u16,
    phase: Phase,
    /// The id on the wire: the gateway's own id for this entry; on a
    /// service, the gateway's id.
    wire: u32,
    /// Service: `by_slot[wire slot]` names this entry.
    mapped: bool,
    port: u16,
    peer: PeerAddr,
    /// Service: arrival order, for `accept`.
    seq: u64,
    /// Service: handed out by `accept`. Gateway: always.
    taken: bool,
    /// The application holds the handle (until `close`).
    held: bool,
    p_open: bool,
    p_accept: bool,
    p_fin: bool,
    p_rst: bool,
    /// Bytes consumed and not yet credited back.
    p_credit: u32,
    shut: bool,
    fin_sent: bool,
    fin_recv: bool,
    rst: bool,
    rx: VecDeque<u8>,
    /// Bytes the peer may still send: `window - rx.len() - p_credit`.
    rx_allow: u32,
    window: u32,
    /// Bytes we may still send.
    tx_avail: u32,
    peer_window: u32,
}

impl Entry {
    fn free() -> Self {
        Self {
            gen: 0,
            phase: Phase::Free,
            wire: 0,
            mapped: false,
            port: 0,
            peer: PeerAddr::default(),
            seq: 0,
            taken: false,
            held: false,
            p_open: false,
            p_accept: false,
            p_fin: false,
            p_rst: false,
            p_credit: 0,
            shut: false,
            fin_sent: false,
            fin_recv: false,
            rst: false,
            rx: VecDeque::new(),
            rx_allow: 0,
            window: 0,
            tx_avail: 0,
            peer_window: 0,
        }
    }

    fn credit_due(&self) -> bool {
        self.p_credit > 0
            && !self.rst
            && (self.p_credit >= self.window / 4 || !self.held || (self.rx.is_empty() && self.fin_recv))
    }

    fn pending(&self) -> bool {
        self.p_open || self.p_accept || self.p_fin || self.p_rst || self.credit_due()
    }

    /// Aborts without telling the peer anything more than `send_rst` says.
    fn abort(&mut self, send_rst: bool) {
        // An OPEN never sent needs no RST: the peer never heard of it.
        let told = !self.p_open;
        self.rst = true;
        self.p_open = false;
        self.p_accept = false;
        self.p_fin = false;
        self.p_credit = 0;
        self.p_rst = send_rst && told;
        self.rx = VecDeque::new();
    }
}

/// Stray `RST`s queued (for refused `OPEN`s that found no free entry).
const STRAY_RSTS: usize = 8;

/// One end of a gateway link. See the [crate docs](crate) for the protocol.
///
/// Never blocks, never panics on anything the peer sends, allocates at most
/// `max_conns * window` bytes of receive buffers plus its fixed tables.
#[derive(Debug)]
pub struct Link<T> {
    transport: T,
    role: Role,
    config: Config,
    entries: Vec<Entry>,
    /// Service: gateway slot -> entry index.
    by_slot: Vec<Option<u16>>,
    /// Entries with frames to send.
    dirty: u128,
    p_hello: bool,
    strays: [u32; STRAY_RSTS],
    stray_count: usize,
    peer_up: bool,
    /// Gateway: where the next free-entry search starts (spreads reuse).
    next: usize,
    seq: u64,
    live: usize,
    listening: [Option<u16>; 16],
    events: Events,
    stats: Stats,
    /// Where received frames land ([`Transport::recv_into`]), reused.
    rx_frame: Option<Box<Frame>>,
}

impl<T: Transport> Link<T> {
    /// A link end over `transport`. Queues this end's `HELLO`.
    ///
    /// In a partition, open the receiving channel before the sending one:
    /// a restarted peer then finds this end's consumer attached before this
    /// end's `HELLO` can reach it.
    pub fn new(transport: T, role: Role, config: Config) -> Self {
        let max_conns = config.max_conns.clamp(1, MAX_SLOTS);
        let window = config.window.clamp(MIN_WINDOW, MAX_WINDOW);
        let config = Config { max_conns, window, rx_budget: config.rx_budget.max(1), backlog: config.backlog.max(1) };
        Self {
            transport,
            role,
            config,
            entries: (0..max_conns).map(|_| Entry::free()).collect(),
            by_slot: if role == Role::Service { alloc::vec![None; MAX_SLOTS] } else { Vec::new() },
            dirty: 0,
            p_hello: true,
            strays: [0; STRAY_RSTS],
            stray_count: 0,
            // A service takes OPENs before the gateway's HELLO: the gateway
            // only opens once it heard the service, and a HELLO of a
            // restarted gateway may race with the service's restart.
            peer_up: role == Role::Service,
            next: 0,
            seq: 0,
            live: 0,
            listening: [None; 16],
            events: Events::default(),
            stats: Stats::default(),
            rx_frame: None,
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (tests use it to meddle).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force (clamped).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Connections holding an entry (open, closing, in the backlog, or
    /// refused and not yet answered).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Gateway: the service has said `HELLO` and not restarted since.
    pub fn is_up(&self) -> bool {
        self.peer_up
    }

    /// What changed since the last call (and clears it).
    pub fn take_events(&mut self) -> Events {
        core::mem::take(&mut self.events)
    }

    /// Bytes buffered for all connections (at most `max_conns * window`).
    pub fn buffered(&self) -> usize {
        self.entries.iter().map(|e| e.rx.len()).sum()
    }

    // ---- driving ------------------------------------------------------

    /// Sends what is queued, then takes up to `rx_budget` frames from the
    /// peer and handles them. Returns the frames taken. Bounded work; call
    /// it whenever the application waits.
    pub fn poll(&mut self) -> usize {
        self.flush();
        let mut n = 0;
        while n < self.config.rx_budget {
            let mut f = self.rx_frame.take().unwrap_or_else(|| Box::new(Frame::new(0, 0)));
            let got = self.transport.recv_into(&mut f);
            if got.is_ok() {
                n += 1;
                self.stats.frames_in += 1;
                self.handle(&f);
            }
            self.rx_frame = Some(f);
            match got {
                Ok(()) => {}
                Err(TransportError::Empty) | Err(TransportError::Full) => break,
                // Counted against the budget: the peer writes the epoch the
                // ring compares, so a peer that keeps changing it must not
                // keep this loop (and every other link's pump) turning.
                Err(TransportError::PeerRestarted) => {
                    n += 1;
                    self.peer_restarted();
                }
                Err(TransportError::Corrupt) => {
                    self.corrupt();
                    break;
                }
            }
        }
        self.flush();
        n
    }

    fn send_frame(&mut self, f: &Frame) -> bool {
        match self.transport.send(f) {
            Ok(()) => {
                self.stats.frames_out += 1;
                true
            }
            Err(TransportError::Full) | Err(TransportError::Empty) => false,
            Err(TransportError::PeerRestarted) => {
                self.peer_restarted();
                false
            }
            Err(TransportError::Corrupt) => {
                self.corrupt();
                false
            }
        }
    }

    /// Sends queued control frames until the transport is full.
    fn flush(&mut self) {
        if self.p_hello {
            let mut f = Frame::new(kind::HELLO, 0);
            f.arg0 = VERSION;
            f.arg1 = MAGIC;
            f.flags = if self.role == Role::Gateway { role::GATEWAY } else { role::SERVICE };
            if !self.send_frame(&f) {
                return;
            }
            self.p_hello = false;
        }
        while self.stray_count > 0 {
            let f = Frame::new(kind::RST, self.strays[self.stray_count - 1]);
            if !self.send_frame(&f) {
                return;
            }
            self.stray_count -= 1;
            self.stats.resets_sent += 1;
        }
        while self.dirty != 0 {
            let i = self.dirty.trailing_zeros() as usize;
            if !self.flush_entry(i) {
                return;
            }
            self.dirty &= !(1u128 << i);
            self.maybe_free(i);
        }
    }

    /// Sends entry `i`'s queued frames, in protocol order. False if the
    /// transport filled (or the link went down) on the way.
    fn flush_entry(&mut self, i: usize) -> bool {
        let Some(e) = self.entries.get(i) else { return true };
        if e.phase == Phase::Free {
            return true;
        }
        let wire = e.wire;
        if e.p_open {
            let mut f = Frame::new(kind::OPEN, wire);
            f.arg0 = e.window;
            f.arg1 = u32::from(e.port);
            f.len = e.peer.encode(&mut f.payload);
            if !self.send_frame(&f) {
                return false;
            }
            self.entries[i].p_open = false;
        }
        let e = &self.entries[i];
        if e.p_accept {
            let mut f = Frame::new(kind::ACCEPT, wire);
            f.arg0 = e.window;
            if !self.send_frame(&f) {
                return false;
            }
            self.entries[i].p_accept = false;
        }
        let e = &self.entries[i];
        if e.credit_due() {
            let mut f = Frame::new(kind::CREDIT, wire);
            f.arg0 = e.p_credit;
            if !self.send_frame(&f) {
                return false;
            }
            let e = &mut self.entries[i];
            e.rx_allow += e.p_credit;
            e.p_credit = 0;
        }
        let e = &self.entries[i];
        if e.p_fin {
            if !self.send_frame(&Frame::new(kind::FIN, wire)) {
                return false;
            }
            let e = &mut self.entries[i];
            e.p_fin = false;
            e.fin_sent = true;
        }
        if self.entries[i].p_rst {
            if !self.send_frame(&Frame::new(kind::RST, wire)) {
                return false;
            }
            self.entries[i].p_rst = false;
            self.stats.resets_sent += 1;
        }
        true
    }

    fn touch(&mut self, i: usize) {
        if self.entries[i].pending() {
            self.dirty |= 1u128 << i;
        }
        self.maybe_free(i);
    }

    fn maybe_free(&mut self, i: usize) {
        let role = self.role;
        let e = &mut self.entries[i];
        let free = match e.phase {
            Phase::Free => return,
            Phase::Rejected => !e.p_rst,
            Phase::Opening | Phase::Open => {
                let finished = e.rst
                    || (e.fin_sent && e.fin_recv && (role == Role::Service || e.tx_avail == e.peer_window));
                let unsent = e.p_open || e.p_accept || e.p_fin || e.p_rst || (e.p_credit > 0 && !e.rst);
                !e.held && finished && !unsent && (e.taken || e.rst)
            }
        };
        if free {
            let (mapped, wire, gen) = (e.mapped, e.wire, e.gen);
            *e = Entry::free();
            e.gen = gen;
            if mapped {
                if let Some(s) = self.by_slot.get_mut((wire & 0xffff) as usize) {
                    *s = None;
                }
            }
            self.dirty &= !(1u128 << i);
            self.live -= 1;
            self.stats.closed += 1;
        }
    }

    /// Every connection reset; nothing more is said about them.
    fn reset_all(&mut self) {
        self.events.link = true;
        for i in 0..self.entries.len() {
            if self.entries[i].phase != Phase::Free {
                self.events.conns |= 1u128 << i;
            }
            let e = &mut self.entries[i];
            match e.phase {
                Phase::Free => {}
                Phase::Rejected => e.p_rst = false,
                Phase::Opening | Phase::Open => {
                    if !e.rst {
                        e.abort(false);
                    }
                }
            }
            self.maybe_free(i);
        }
        self.dirty = 0;
        self.stray_count = 0;
    }

    fn peer_restarted(&mut self) {
        self.stats.peer_restarts += 1;
        self.reset_all();
        self.peer_up = self.role == Role::Service;
        // The restarted peer's consumer dropped our HELLO.
        self.p_hello = true;
    }

    fn corrupt(&mut self) {
        self.stats.corrupt += 1;
        if self.live > 0 || (self.peer_up && self.role == Role::Gateway) {
            self.reset_all();
        }
        self.peer_up = self.role == Role::Service;
    }

    // ---- receiving ----------------------------------------------------

    fn violation(&mut self, i: Option<usize>) {
        self.stats.violations += 1;
        if let Some(i) = i {
            self.events.conns |= 1u128 << i;
            let e = &mut self.entries[i];
            if !e.rst {
                e.abort(true);
            }
            self.touch(i);
        }
    }

    /// The live entry `f.conn` names, if any.
    fn lookup(&self, conn: u32) -> Option<usize> {
        let slot = (conn & 0xffff) as usize;
        let i = match self.role {
            Role::Gateway => slot,
            Role::Service => usize::from((*self.by_slot.get(slot)?)?),
        };
        let e = self.entries.get(i)?;
        (matches!(e.phase, Phase::Opening | Phase::Open) && e.wire == conn).then_some(i)
    }

    fn handle(&mut self, f: &Frame) {
        if f.kind == kind::HELLO {
            return self.on_hello(f);
        }
        if !self.peer_up {
            self.stats.stray += 1;
            return;
        }
        if f.kind == kind::OPEN {
            return self.on_open(f);
        }
        if !matches!(f.kind, kind::ACCEPT | kind::DATA | kind::CREDIT | kind::FIN | kind::RST) {
            let i = self.lookup(f.conn);
            return self.violation(i);
        }
        let Some(i) = self.lookup(f.conn) else {
            self.stats.stray += 1;
            return;
        };
        self.events.conns |= 1u128 << i;
        if self.entries[i].rst {
            // In flight when we reset it.
            self.stats.stray += 1;
            return;
        }
        match f.kind {
            kind::ACCEPT => self.on_accept(i, f),
            kind::DATA => self.on_data(i, f),
            kind::CREDIT => self.on_credit(i, f),
            kind::FIN => self.on_fin(i),
            _ => self.on_rst(i),
        }
    }

    fn on_hello(&mut self, f: &Frame) {
        let want = if self.role == Role::Gateway { role::SERVICE } else { role::GATEWAY };
        if f.arg0 != VERSION || f.arg1 != MAGIC || f.flags != want || f.conn != 0 {
            self.stats.violations += 1;
            if self.role == Role::Gateway {
                if self.peer_up {
                    self.reset_all();
                }
                self.peer_up = false;
            }
            return;
        }
        if self.role == Role::Gateway && self.peer_up || self.role == Role::Service && self.live > 0 {
            // A second HELLO: a new incarnation of the peer.
            self.stats.peer_restarts += 1;
            self.reset_all();
        }
        if !self.peer_up {
            self.events.link = true;
        }
        self.peer_up = true;
    }

    fn on_open(&mut self, f: &Frame) {
        if self.role != Role::Service {
            let i = self.lookup(f.conn);
            return self.violation(i);
        }
        let slot = (f.conn & 0xffff) as usize;
        if slot >= MAX_SLOTS {
            self.stats.violations += 1;
            return;
        }
        // Whatever held this gateway slot before is over: an honest gateway
        // reuses a slot only after both FINs and every byte credited (or a
        // RST). An entry not finished is reset; either way it leaves the
        // slot and stays with its handle until closed.
        if let Some(old) = self.by_slot[slot] {
            let old = usize::from(old);
            self.by_slot[slot] = None;
            let e = &mut self.entries[old];
            e.mapped = false;
            if e.wire == f.conn && !e.rst {
                // The same id twice.
                self.stats.violations += 1;
            }
            let done = e.rst || (e.fin_sent && e.fin_recv);
            if !done {
                e.abort(false);
            }
            self.events.conns |= 1u128 << old;
            self.touch(old);
        }
        let window_ok = (MIN_WINDOW..=MAX_WINDOW).contains(&f.arg0);
        let port = f.arg1 as u16;
        let valid = window_ok && f.arg1 <= 0xffff && f.len == 6;
        if !valid {
            self.stats.violations += 1;
        }
        let waiting = self.entries.iter().filter(|e| e.phase == Phase::Open && !e.taken && !e.rst && e.port == port).count();
        let listening = self.listening.contains(&Some(port)) && waiting < self.config.backlog;
        let free = self.entries.iter().position(|e| e.phase == Phase::Free);
        let Some(i) = free else {
            self.stats.refused += 1;
            if self.stray_count < STRAY_RSTS {
                self.strays[self.stray_count] = f.conn;
                self.stray_count += 1;
            }
            return;
        };
        self.seq += 1;
        self.live += 1;
        let window = self.config.window;
        let e = &mut self.entries[i];
        e.gen = e.gen.wrapping_add(1);
        e.wire = f.conn;
        e.mapped = true;
        e.port = port;
        e.peer = PeerAddr::decode(&f.payload);
        e.seq = self.seq;
        self.by_slot[slot] = Some(i as u16);
        if !valid || !listening {
            e.phase = Phase::Rejected;
            e.p_rst = true;
            self.stats.refused += 1;
        } else {
            e.phase = Phase::Open;
            e.p_accept = true;
            e.window = window;
            e.rx_allow = window;
            e.peer_window = f.arg0;
            e.tx_avail = f.arg0;
            self.stats.opened += 1;
            self.events.backlog = true;
        }
        self.touch(i);
    }

    fn on_accept(&mut self, i: usize, f: &Frame) {
        let e = &mut self.entries[i];
        if self.role != Role::Gateway || e.phase != Phase::Opening || !(MIN_WINDOW..=MAX_WINDOW).contains(&f.arg0) {
            return self.violation(Some(i));
        }
        e.phase = Phase::Open;
        e.peer_window = f.arg0;
        e.tx_avail = f.arg0;
    }

    fn on_data(&mut self, i: usize, f: &Frame) {
        let e = &mut self.entries[i];
        let len = f.len as usize;
        if e.phase != Phase::Open || e.fin_recv || len == 0 || len > PAYLOAD || len as u32 > e.rx_allow {
            return self.violation(Some(i));
        }
        e.rx_allow -= len as u32;
        self.stats.bytes_in += len as u64;
        if e.held || !e.taken {
            // One allocation of exactly the window: growing by doubling
            // would allocate up to twice what the window bounds.
            if e.rx.capacity() == 0 {
                e.rx.reserve_exact(e.window as usize);
            }
            e.rx.extend(&f.payload[..len]);
        } else {
            // Closed by the application: discarded, credited at once.
            e.p_credit += len as u32;
        }
        self.touch(i);
    }

    fn on_credit(&mut self, i: usize, f: &Frame) {
        let e = &mut self.entries[i];
        let n = f.arg0;
        let total = u64::from(e.tx_avail) + u64::from(n);
        if e.phase != Phase::Open || n == 0 || total > u64::from(e.peer_window) {
            return self.violation(Some(i));
        }
        e.tx_avail += n;
        self.maybe_free(i);
    }

    fn on_fin(&mut self, i: usize) {
        let e = &mut self.entries[i];
        if e.phase != Phase::Open || e.fin_recv {
            return self.violation(Some(i));
        }
        e.fin_recv = true;
        self.touch(i);
    }

    fn on_rst(&mut self, i: usize) {
        let e = &mut self.entries[i];
        if e.phase == Phase::Opening {
            self.stats.refused += 1;
        } else {
            self.stats.resets_recv += 1;
        }
        e.abort(false);
        self.touch(i);
    }

    // ---- the application's side ----------------------------------------

    fn entry(&self, id: ConnId) -> Option<usize> {
        self.entry_any(id).filter(|&i| self.entries[i].held)
    }

    /// Also a handle given back with `close` whose connection lingers.
    fn entry_any(&self, id: ConnId) -> Option<usize> {
        let i = usize::from(id.index);
        let e = self.entries.get(i)?;
        let mine = e.held || e.taken;
        (e.gen == id.gen && mine && matches!(e.phase, Phase::Opening | Phase::Open)).then_some(i)
    }

    /// Gateway: opens a connection to the service for a client that reached
    /// `port` from `peer`. Usable once [`state`](Self::state) is `Open`
    /// (the service accepted it) or `Reset` (refused).
    pub fn open(&mut self, port: u16, peer: PeerAddr) -> Result<ConnId, OpenError> {
        if self.role != Role::Gateway {
            return Err(OpenError::WrongRole);
        }
        if !self.peer_up {
            return Err(OpenError::PeerDown);
        }
        let n = self.entries.len();
        let i = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| self.entries[i].phase == Phase::Free)
            .ok_or(OpenError::NoSlot)?;
        self.next = (i + 1) % n;
        self.live += 1;
        self.stats.opened += 1;
        let window = self.config.window;
        let e = &mut self.entries[i];
        e.gen = e.gen.wrapping_add(1);
        e.wire = u32::from(e.gen) << 16 | i as u32;
        e.phase = Phase::Opening;
        e.port = port;
        e.peer = peer;
        e.taken = true;
        e.held = true;
        e.p_open = true;
        e.window = window;
        e.rx_allow = window;
        let id = ConnId { index: i as u16, gen: e.gen };
        self.touch(i);
        self.flush();
        Ok(id)
    }

    /// Service: accept connections to `port` (at most 16 ports). False if
    /// the table is full.
    pub fn listen(&mut self, port: u16) -> bool {
        if self.listening.contains(&Some(port)) {
            return true;
        }
        match self.listening.iter_mut().find(|p| p.is_none()) {
            Some(p) => {
                *p = Some(port);
                true
            }
            None => false,
        }
    }

    /// Service: stop accepting connections to `port`; those waiting in its
    /// backlog are reset.
    pub fn unlisten(&mut self, port: u16) {
        for p in self.listening.iter_mut() {
            if *p == Some(port) {
                *p = None;
            }
        }
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            if e.phase == Phase::Open && !e.taken && e.port == port {
                if !e.rst {
                    e.abort(true);
                }
                self.touch(i);
            }
        }
    }

    /// Service: the oldest connection to `port` waiting to be accepted.
    pub fn accept(&mut self, port: u16) -> Option<(ConnId, PeerAddr)> {
        let i = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.phase == Phase::Open && !e.taken && e.port == port && !e.rst)
            .min_by_key(|(_, e)| e.seq)?
            .0;
        let e = &mut self.entries[i];
        e.taken = true;
        e.held = true;
        Some((ConnId { index: i as u16, gen: e.gen }, e.peer))
    }

    /// The connection's state; also of a handle given back with
    /// [`close`](Self::close) until its entry is freed (then `Invalid`).
    pub fn state(&self, id: ConnId) -> ConnState {
        match self.entry_any(id).map(|i| &self.entries[i]) {
            None => ConnState::Invalid,
            Some(e) if e.rst => ConnState::Reset,
            Some(e) if e.phase == Phase::Opening => ConnState::Connecting,
            Some(_) => ConnState::Open,
        }
    }

    /// The TCP port and client address of a connection.
    pub fn peer(&self, id: ConnId) -> Option<(u16, PeerAddr)> {
        self.entry(id).map(|i| (self.entries[i].port, self.entries[i].peer))
    }

    /// Bytes [`recv`](Self::recv) can return now.
    pub fn readable(&self, id: ConnId) -> usize {
        self.entry(id).map_or(0, |i| self.entries[i].rx.len())
    }

    /// Whether the peer sent `FIN` and every byte before it was read.
    pub fn is_eof(&self, id: ConnId) -> bool {
        self.entry(id).is_some_and(|i| self.entries[i].fin_recv && self.entries[i].rx.is_empty())
    }

    /// After [`shutdown`](Self::shutdown): the `FIN` is sent and the peer
    /// consumed every byte sent (or ended its own side too); also true of a
    /// reset or freed connection (nothing more will happen to it).
    pub fn is_drained(&self, id: ConnId) -> bool {
        self.entry_any(id).is_none_or(|i| {
            let e = &self.entries[i];
            e.rst || (e.fin_sent && (e.fin_recv || e.tx_avail == e.peer_window))
        })
    }

    /// Bytes the peer's window admits now (the ring may still be full).
    pub fn writable(&self, id: ConnId) -> usize {
        self.entry(id).map_or(0, |i| {
            let e = &self.entries[i];
            if e.phase == Phase::Open && !e.rst && !e.shut {
                e.tx_avail as usize
            } else {
                0
            }
        })
    }

    /// Reads buffered bytes. `Ok(0)` with a non-empty `buf` is end of
    /// stream (the peer's `FIN`); `WouldBlock` means nothing yet.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, ConnError> {
        let i = self.entry(id).ok_or(ConnError::Invalid)?;
        let e = &mut self.entries[i];
        if e.rst {
            return Err(ConnError::Reset);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if e.rx.is_empty() {
            return if e.fin_recv { Ok(0) } else { Err(ConnError::WouldBlock) };
        }
        let n = buf.len().min(e.rx.len());
        let (a, b) = e.rx.as_slices();
        let na = n.min(a.len());
        buf[..na].copy_from_slice(&a[..na]);
        buf[na..n].copy_from_slice(&b[..n - na]);
        e.rx.drain(..n);
        e.p_credit += n as u32;
        self.touch(i);
        Ok(n)
    }

    /// Sends as much of `data` as the peer's window and the ring admit now.
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, ConnError> {
        let i = self.entry(id).ok_or(ConnError::Invalid)?;
        if self.entries[i].rst {
            return Err(ConnError::Reset);
        }
        if self.entries[i].shut {
            return Err(ConnError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        self.flush();
        let mut sent = 0;
        loop {
            let e = &self.entries[i];
            if e.rst {
                return if sent > 0 { Ok(sent) } else { Err(ConnError::Reset) };
            }
            if e.phase != Phase::Open || e.p_accept || e.p_open || sent == data.len() {
                break;
            }
            let n = (data.len() - sent).min(PAYLOAD).min(e.tx_avail as usize);
            if n == 0 {
                break;
            }
            let mut f = Frame::new(kind::DATA, e.wire);
            f.len = n as u16;
            f.payload[..n].copy_from_slice(&data[sent..sent + n]);
            if !self.send_frame(&f) {
                if self.entries[i].rst {
                    // The link went down while sending.
                    return if sent > 0 { Ok(sent) } else { Err(ConnError::Reset) };
                }
                break;
            }
            self.entries[i].tx_avail -= n as u32;
            self.stats.bytes_out += n as u64;
            sent += n;
        }
        if sent == 0 {
            Err(ConnError::WouldBlock)
        } else {
            Ok(sent)
        }
    }

    /// Half-closes: a `FIN` follows the bytes already sent. Reading goes on.
    pub fn shutdown(&mut self, id: ConnId) -> Result<(), ConnError> {
        let i = self.entry(id).ok_or(ConnError::Invalid)?;
        let e = &mut self.entries[i];
        if e.rst {
            return Err(ConnError::Reset);
        }
        if !e.shut {
            e.shut = true;
            e.p_fin = true;
            self.touch(i);
            self.flush();
        }
        Ok(())
    }

    /// Aborts the connection (`RST`); the handle stays valid, reporting
    /// `Reset`, until [`close`](Self::close). Also works on a handle given
    /// back with `close` whose connection still lingers (the owner's linger
    /// timeout): its entry is then freed.
    pub fn reset(&mut self, id: ConnId) {
        if let Some(i) = self.entry_any(id) {
            let e = &mut self.entries[i];
            if !e.rst {
                e.abort(true);
            }
            self.touch(i);
            self.flush();
        }
    }

    /// Gives the handle back. A connection with unread bytes, or not yet
    /// accepted by the service, is reset; otherwise it is shut down and its
    /// entry freed once the peer's `FIN` has come (bytes arriving until then
    /// are discarded) and, on a gateway, every byte sent was credited back.
    pub fn close(&mut self, id: ConnId) {
        let Some(i) = self.entry(id) else { return };
        let e = &mut self.entries[i];
        e.held = false;
        if !e.rst {
            if !e.rx.is_empty() || e.phase == Phase::Opening {
                e.abort(true);
            } else if !e.shut {
                e.shut = true;
                e.p_fin = true;
            }
        }
        self.touch(i);
        self.flush();
    }
}

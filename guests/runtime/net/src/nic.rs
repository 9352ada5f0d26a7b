//! The NIC backend (modes `poll` and `interrupt`): a virtio-net device
//! (`virtio-drivers`, through `hallows_rt::virtio`) and the smoltcp stack.
//!
//! One driver task runs the stack (`Nic::turn`: received packets one at a
//! time, then everything the sockets have to send, then the listeners'
//! and the closing connections' bookkeeping):
//!
//! * **poll**: after each turn the task yields to the executor and is run
//!   again at once; the device's notifications are suppressed (no device
//!   interrupt) and the core's timer is left off (`time::set_polled`): the
//!   loop reads the clock and fires due sleepers itself
//!   (`time::poll_timers`). No packet costs a hypervisor instruction.
//! * **interrupt**: the task sleeps until the device interrupts
//!   (`virtio::wait_interrupt`), a socket operation queued work (a kick),
//!   or smoltcp's `poll_delay` (retransmissions, delayed ACKs) or a closing
//!   connection's deadline passes (`Nic::timer`).
//!
//! A write sends at once from the writing task (`Nic::transmit_now`: the
//! stack's egress, then the driver's timer moved to the stack's new
//! deadline) rather than waking the driver for it. Frames go through
//! `hallows_rt::netdev` (preallocated buffers, no wait for the device).
//!
//! A listener keeps one listening socket, replaced after every received
//! packet that took it, up to `backlog` connections in the handshake and
//! up to `backlog` established connections waiting for `accept`; SYNs
//! beyond that, or beyond the socket bound, are answered with RST by
//! smoltcp (no socket listens). Every socket's buffers are allocated when
//! it is created and freed when it is removed: nothing grows with traffic.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::SocketAddrV4;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

use hallows_rt::virtio::virtio_drivers::transport::mmio::MmioTransport;
use hallows_rt::virtio::virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use hallows_rt::virtio::virtio_drivers::{self, PhysAddr};
use hallows_rt::netdev::{NetDevice, MAX_FRAME};
use hallows_rt::virtio;
use hallows_rt::{task, time, Boot};
use smoltcp::iface::{Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::backend::{Backend, Id};
use crate::{stats, Config, Error, Limits, Mode};

/// Descriptors per virtqueue (receive buffers posted to the device).
const QUEUE_SIZE: usize = 64;
/// The payload of a full-sized TCP segment (an Ethernet MTU of 1500 less
/// the IPv4 and TCP headers without options).
const SEGMENT: usize = 1460;
/// Packets received per turn before the turn sends and yields.
const INGRESS_PER_TURN: usize = 64;
/// Unacknowledged data (or a SYN-ACK) older than this resets a connection.
const TCP_TIMEOUT: SmolDuration = SmolDuration::from_secs(20);
/// Listening sockets each listener keeps waiting for a SYN. One is
/// enough: a SYN that takes it is followed, before the next packet, by a
/// fresh one (`service_listeners` runs after every received packet), and
/// every socket in the set costs time in each of smoltcp's polls.
const SPARE_LISTENING: usize = 1;
/// UDP datagrams queued per socket and direction.
const UDP_PACKETS: usize = 16;
/// First port `UdpSocket::bind(0)` tries.
const EPHEMERAL: u16 = 49152;

type Net = NetDevice<NoEventIdx<MmioTransport<'static>>, QUEUE_SIZE>;

/// A transport that hides `VIRTIO_F_RING_EVENT_IDX` from the driver, so
/// that the driver's interrupt suppression (the available ring's
/// `NO_INTERRUPT` flag, which event-index mode ignores) works: poll mode
/// must never make the device interrupt. It also hides
/// `VIRTIO_F_INDIRECT_DESC`: with it the driver allocates (and frees) an
/// indirect table for every frame sent (header and frame are two
/// buffers); without it they take two of the ring's descriptors.
struct NoEventIdx<T>(T);

const RING_EVENT_IDX: u64 = 1 << 29;
const RING_INDIRECT_DESC: u64 = 1 << 28;
const HIDDEN: u64 = RING_EVENT_IDX | RING_INDIRECT_DESC;

impl<T: Transport> Transport for NoEventIdx<T> {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features() & !HIDDEN
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.write_driver_features(driver_features & !HIDDEN)
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.0.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.0.set_status(status)
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }
    fn queue_set(&mut self, queue: u16, size: u32, descriptors: PhysAddr, driver_area: PhysAddr, device_area: PhysAddr) {
        self.0.queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }
    fn read_config_space<V: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        self.0.read_config_space(offset)
    }
    fn write_config_space<V: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> virtio_drivers::Result<()> {
        self.0.write_config_space(offset, value)
    }
}

/// The device as smoltcp sees it. Tokens share the driver through the
/// `RefCell`; smoltcp consumes one token at a time.
struct Phy {
    net: RefCell<Net>,
}

struct RxToken<'a> {
    net: &'a RefCell<Net>,
    /// The received frame's buffer, until consumed.
    frame: Option<usize>,
}

struct TxToken<'a> {
    net: &'a RefCell<Net>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(mut self, f: F) -> R {
        let i = self.frame.take().expect("an RxToken holds its frame until consumed");
        // The buffer is out of the device while smoltcp reads it (it may
        // answer through the device meanwhile).
        let taken = self.net.borrow_mut().take(i);
        let Some((buf, frame)) = taken else { return f(&[]) };
        let r = f(&buf[frame]);
        self.net.borrow_mut().recycle(i, buf);
        r
    }
}

impl Drop for RxToken<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.frame.take() {
            let mut net = self.net.borrow_mut();
            if let Some((buf, _)) = net.take(i) {
                net.recycle(i, buf);
            }
        }
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // Written into a free transmit buffer and handed to the device
        // without waiting. Without one (the device is behind, or the frame
        // is oversized) the frame is built in a scratch buffer and dropped:
        // TCP retransmits.
        let mut f = Some(f);
        let sent = self.net.borrow_mut().send(len, |buf| (f.take().expect("called once"))(buf));
        match sent {
            Ok(r) => r,
            Err(_) => {
                let mut scratch = vec![0u8; len];
                (f.take().expect("not called when sending failed"))(&mut scratch)
            }
        }
    }
}

impl Device for Phy {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let frame = self.net.get_mut().receive()?;
        Some((RxToken { net: &self.net, frame: Some(frame) }, TxToken { net: &self.net }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        self.net.get_mut().can_send().then_some(TxToken { net: &self.net })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps
    }
}

/// Who holds a connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Owner {
    /// Established, waiting in its listener's queue for `accept`.
    Queued,
    /// A `TcpStream`.
    User,
    /// Released: closing in the background; reset at `deadline`.
    Orphan { deadline: Instant },
}

struct Conn {
    handle: SocketHandle,
    owner: Owner,
    peer: SocketAddrV4,
}

struct Listener {
    port: u16,
    /// Listening sockets (and ones in the handshake).
    pending: Vec<SocketHandle>,
    /// Established connections (ids) waiting for `accept`.
    ready: VecDeque<Id>,
    waker: Option<Waker>,
}

struct Nic {
    phy: Phy,
    iface: Interface,
    sockets: SocketSet<'static>,
    /// TCP sockets in `sockets` (listening ones included).
    tcp_sockets: usize,
    conns: Vec<Option<Conn>>,
    listeners: Vec<Option<Listener>>,
    udp: Vec<Option<SocketHandle>>,
    next_ephemeral: u16,
    limits: Limits,
    /// The earliest deadline of the closing connections (last `reap`).
    orphan_deadline: Option<Instant>,
    /// Connections in `conns` owned by nobody (closing in the background).
    orphans: usize,
    /// Interrupt mode: the driver's timer for the stack's next deadline.
    timer: Option<time::Sleep>,
}

static NIC: hallows_rt::sync::Mutex<Option<Nic>> = hallows_rt::sync::Mutex::new(None);
static KICKED: AtomicBool = AtomicBool::new(false);
/// A turn ran without working out the stack's next deadline (the NIC's
/// interrupt): it is worked out before the core sleeps.
static DEADLINE_STALE: AtomicBool = AtomicBool::new(false);

static DRIVER: hallows_rt::sync::Mutex<Option<Waker>> = hallows_rt::sync::Mutex::new(None);

fn now() -> Instant {
    Instant::from_micros((time::now_nanos() / 1000) as i64)
}

fn to_v4(ep: IpEndpoint) -> SocketAddrV4 {
    match ep.addr {
        IpAddress::Ipv4(a) => SocketAddrV4::new(a, ep.port),
    }
}

/// A socket operation queued work for the stack: in interrupt mode, wake
/// the driver task (in poll mode it runs anyway).
fn kick() {
    if !KICKED.swap(true, Ordering::AcqRel) {
        let w = DRIVER.lock().take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

pub(crate) fn start(boot: &Boot, cfg: &Config) -> Result<Box<dyn Backend>, Error> {
    // Only the NIC: probing (and dropping) the partition's other virtio
    // transports would reset devices other drivers use (its disk).
    let dev = virtio::transport(boot, DeviceType::Network).ok_or(Error::Unsupported)?;
    let base = dev.info.base;
    if cfg.mode == Mode::Interrupt && dev.info.irq == 0 {
        // Nothing would ever wake the driver: it would spin without yielding.
        log::error!("virtio-net at {base:#x} has no interrupt: interrupt mode needs one");
        return Err(Error::Unsupported);
    }
    stats::set_nic(base);
    let mut net = Net::new(NoEventIdx(dev.transport)).map_err(|e| {
        log::error!("virtio-net at {base:#x}: {e:?}");
        Error::Device
    })?;
    match cfg.mode {
        Mode::Interrupt => net.enable_interrupts(),
        _ => net.disable_interrupts(),
    }
    let mac = net.mac_address();
    log::info!("virtio-net at {base:#x}, interrupt {}, MAC {:02x?}", dev.info.irq, mac);
    let mut phy = Phy { net: RefCell::new(net) };
    let mut config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = time::now_nanos() ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
    let mut iface = Interface::new(config, &mut phy, now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.address), cfg.prefix_len.min(32)));
    });
    if let Some(r) = cfg.router {
        let _ = iface.routes_mut().add_default_ipv4_route(r);
    }
    let nic = Nic {
        phy,
        iface,
        sockets: SocketSet::new(Vec::with_capacity(cfg.limits.sockets + cfg.limits.udp_sockets)),
        tcp_sockets: 0,
        conns: Vec::new(),
        listeners: Vec::new(),
        udp: Vec::new(),
        next_ephemeral: EPHEMERAL,
        limits: cfg.limits,
        orphan_deadline: None,
        orphans: 0,
        timer: None,
    };
    *NIC.lock() = Some(nic);
    if cfg.mode == Mode::Interrupt {
        virtio::set_interrupt_work(base, turn_in_interrupt);
        task::set_before_idle(deadline_before_idle);
    }
    task::spawn(driver(cfg.mode, base));
    Ok(Box::new(NicBackend))
}

/// The driver task (see the module documentation).
async fn driver(mode: Mode, base: u64) {
    if mode == Mode::Poll {
        time::set_polled(true);
    }
    let polled = mode == Mode::Poll;
    let line = virtio::irq_line(base);
    loop {
        // Interrupt mode only: what the wait below needs to notice.
        let seen = if polled { 0 } else { line.count() };
        if !polled {
            KICKED.store(false, Ordering::Release);
        }
        let delay = match NIC.lock().as_mut() {
            Some(nic) => nic.turn(now(), !polled),
            None => return,
        };
        match (mode, delay) {
            (Mode::Poll, _) => {
                time::poll_timers();
                task::yield_now().await;
            }
            // Packets left in the queue, or a deadline already due: another
            // turn after the others' (a zero sleep would not yield).
            (_, None) | (_, Some(Some(core::time::Duration::ZERO))) => task::yield_now().await,
            (_, Some(_)) => wait_for_work(line, seen).await,
        }
    }
}

/// Interrupt mode, from the NIC's interrupt while the core is between
/// tasks: a turn of the stack right there, instead of waking the driver
/// task for it (a task switch per packet). `false` (the driver task is
/// woken as usual) if the stack is busy elsewhere (another core, or the
/// preemptible task interrupted), if packets are left, or if the turn's
/// deadline needs the driver's timer registered.
///
/// The turn leaves the stack's next deadline to be worked out when the
/// core goes idle (`deadline_before_idle`): the connection that was just
/// woken usually answers first, and its write works it out anyway.
fn turn_in_interrupt() -> bool {
    let Some(mut guard) = NIC.try_lock() else { return false };
    let Some(nic) = guard.as_mut() else { return false };
    // Without the delay: `None` if packets are left.
    let done = nic.turn(now(), false).is_some();
    if done {
        DEADLINE_STALE.store(true, Ordering::Release);
    }
    done
}

/// Before the core sleeps: if the stack's deadline may have changed since
/// it was last worked out, the driver's timer is moved to it (or, if that
/// cannot be done from here, the driver task is woken to do it).
fn deadline_before_idle() -> bool {
    if !DEADLINE_STALE.swap(false, Ordering::AcqRel) {
        return false;
    }
    let Some(mut guard) = NIC.try_lock() else {
        // Busy on another core: that core looks when it idles.
        DEADLINE_STALE.store(true, Ordering::Release);
        return false;
    };
    let Some(nic) = guard.as_mut() else { return false };
    if nic.move_timer(now()) {
        return false;
    }
    drop(guard);
    kick();
    true
}

/// Interrupt mode: until the device interrupts, a kick, or the stack's
/// deadline (`Nic::timer`, which a write may move meanwhile).
async fn wait_for_work(line: virtio::IrqLine, seen: u64) {
    let mut irq = line.wait(seen);
    core::future::poll_fn(|cx| {
        *DRIVER.lock() = Some(cx.waker().clone());
        if KICKED.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if core::pin::Pin::new(&mut irq).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        match NIC.lock().as_mut().map(|nic| nic.timer.as_mut().map(|t| core::pin::Pin::new(t).poll(cx))) {
            Some(Some(Poll::Pending)) | Some(None) => Poll::Pending,
            _ => Poll::Ready(()),
        }
    })
    .await;
    DRIVER.lock().take();
}

use core::future::Future as _;

impl Nic {
    /// One turn of the stack; returns how long the stack may sleep, or
    /// `None` if it must not sleep at all (received packets are left: the
    /// device will not interrupt again for them). Without `want_delay` (poll
    /// mode, which turns again at once) the delay is not computed.
    fn turn(&mut self, now: Instant, want_delay: bool) -> Option<Option<core::time::Duration>> {
        self.iface.poll_maintenance(now);
        let mut more = true;
        // Whether the listeners have seen every socket change of this turn.
        let mut serviced = false;
        for _ in 0..INGRESS_PER_TURN {
            match self.iface.poll_ingress_single(now, &mut self.phy, &mut self.sockets) {
                PollIngressSingleResult::None => {
                    more = false;
                    break;
                }
                PollIngressSingleResult::PacketProcessed => {}
                // A SYN may have taken a listening socket: give its
                // listener another before the next packet.
                PollIngressSingleResult::SocketStateChanged => {
                    self.service_listeners();
                    serviced = true;
                }
            }
        }
        while self.iface.poll_egress(now, &mut self.phy, &mut self.sockets) == PollResult::SocketStateChanged {
            serviced = false;
        }
        // After timers (a handshake that timed out) or sending, or if the
        // last packet changed nothing they saw.
        if !serviced {
            self.service_listeners();
        }
        let orphan_deadline = self.reap(now);
        self.orphan_deadline = orphan_deadline;
        if !want_delay || more {
            // Poll mode turns again at once: the delay (a walk over every
            // socket) would be thrown away; so does a turn that left packets.
            return (!more).then_some(None);
        }
        DEADLINE_STALE.store(false, Ordering::Relaxed);
        let delay = self.next_delay(now);
        // The driver's timer, moved in place (if it is not registered, the
        // poll that waits registers it).
        match (delay, self.timer.as_mut()) {
            (Some(_), Some(t)) => {
                t.reschedule(delay);
            }
            (Some(d), None) => self.timer = Some(time::sleep(d)),
            (None, _) => self.timer = None,
        }
        Some(delay)
    }

    /// Moves the driver's timer to the stack's next deadline; `false` if
    /// the driver must be woken for it (its timer is not registered).
    fn move_timer(&mut self, now: Instant) -> bool {
        DEADLINE_STALE.store(false, Ordering::Relaxed);
        match (self.next_delay(now), self.timer.as_mut()) {
            (d, Some(t)) => t.reschedule(d),
            // No timer: the driver waits for a packet or a kick only.
            (Some(_), None) => false,
            (None, None) => true,
        }
    }

    /// How long the stack may sleep from `now` (`None`: until something
    /// happens).
    fn next_delay(&mut self, now: Instant) -> Option<core::time::Duration> {
        let mut delay = self.iface.poll_delay(now, &self.sockets);
        if let Some(d) = self.orphan_deadline {
            let until = if d > now { d - now } else { SmolDuration::ZERO };
            delay = Some(delay.map_or(until, |x| x.min(until)));
        }
        delay.map(|d| core::time::Duration::from_micros(d.total_micros()))
    }

    /// Sends what the sockets have to send now, from the task that wrote
    /// it, instead of waking the driver task for it (a task switch and a
    /// whole turn of the stack per reply), and moves the driver's timer to
    /// the stack's new deadline (sending changes it: a delayed ACK went out
    /// with the data, a retransmission is due later). The driver is still
    /// woken when the device queue filled up before everything went out,
    /// or when its timer cannot be moved from here.
    ///
    /// `bytes` were just written: one pass of the stack per segment they
    /// need (smoltcp sends at most one segment per socket and pass);
    /// whatever is left (a closed window) makes the stack's deadline "now",
    /// and the driver's timer sends it.
    fn transmit_now(&mut self, bytes: usize) {
        let now = now();
        for _ in 0..bytes.div_ceil(SEGMENT).max(1) {
            if self.iface.poll_egress(now, &mut self.phy, &mut self.sockets) != PollResult::SocketStateChanged {
                break;
            }
        }
        if !self.move_timer(now) || !self.phy.net.get_mut().can_send() {
            kick();
        }
    }

    fn new_tcp_socket(&mut self) -> Option<SocketHandle> {
        if self.tcp_sockets >= self.limits.sockets {
            return None;
        }
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; self.limits.rx_buffer]),
            tcp::SocketBuffer::new(vec![0u8; self.limits.tx_buffer]),
        );
        s.set_nagle_enabled(false);
        s.set_timeout(Some(TCP_TIMEOUT));
        self.tcp_sockets += 1;
        Some(self.sockets.add(s))
    }

    fn remove_tcp_socket(&mut self, h: SocketHandle) {
        self.sockets.remove(h);
        self.tcp_sockets -= 1;
    }

    fn alloc_conn(&mut self, conn: Conn) -> Id {
        match self.conns.iter().position(Option::is_none) {
            Some(i) => {
                self.conns[i] = Some(conn);
                i as Id
            }
            None => {
                self.conns.push(Some(conn));
                (self.conns.len() - 1) as Id
            }
        }
    }

    /// Moves established connections from the listening sockets to the
    /// accept queues, re-arms listening sockets whose handshake failed,
    /// and keeps one socket listening (within the bounds).
    fn service_listeners(&mut self) {
        for li in 0..self.listeners.len() {
            let Some(l) = self.listeners[li].as_mut() else { continue };
            let port = l.port;
            let mut established = Vec::new();
            let mut listening = 0;
            let mut i = 0;
            while i < l.pending.len() {
                let h = l.pending[i];
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Listen => {
                        listening += 1;
                        i += 1;
                    }
                    tcp::State::SynReceived | tcp::State::SynSent => i += 1,
                    tcp::State::Closed => {
                        // Reset or timed out in the handshake: listen again.
                        let _ = s.listen(port);
                        listening += 1;
                        i += 1;
                    }
                    _ => {
                        let peer = s.remote_endpoint().map_or(SocketAddrV4::new([0; 4].into(), 0), to_v4);
                        l.pending.swap_remove(i);
                        established.push((h, peer));
                    }
                }
            }
            for (handle, peer) in established {
                let id = self.alloc_conn(Conn { handle, owner: Owner::Queued, peer });
                stats::conn_opened();
                if let Some(l) = self.listeners[li].as_mut() {
                    l.ready.push_back(id);
                    if let Some(w) = l.waker.take() {
                        w.wake();
                    }
                }
            }
            let backlog = self.limits.backlog;
            while let Some(l) = self.listeners[li].as_ref() {
                if listening >= SPARE_LISTENING || l.pending.len() >= backlog || l.ready.len() >= backlog {
                    break;
                }
                let Some(h) = self.new_tcp_socket() else { break };
                let _ = self.sockets.get_mut::<tcp::Socket>(h).listen(port);
                listening += 1;
                if let Some(l) = self.listeners[li].as_mut() {
                    l.pending.push(h);
                }
            }
        }
    }

    /// Removes closed orphans, resets orphans past their deadline; returns
    /// the earliest deadline still pending.
    fn reap(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        if self.orphans == 0 {
            return None;
        }
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_ref() else { continue };
            let Owner::Orphan { deadline } = c.owner else { continue };
            let h = c.handle;
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            match s.state() {
                // TIME-WAIT is not kept: its only use is answering a late
                // retransmitted FIN, which now gets a RST.
                tcp::State::Closed | tcp::State::TimeWait => {
                    self.remove_tcp_socket(h);
                    self.conns[i] = None;
                    self.orphans -= 1;
                    stats::conn_closed();
                }
                _ if now >= deadline => {
                    // Removed at the next turn, after the RST went out.
                    s.abort();
                    next = Some(now);
                }
                _ => next = Some(next.map_or(deadline, |n| n.min(deadline))),
            }
        }
        next
    }

    fn conn(&mut self, id: Id) -> Result<&mut Conn, Error> {
        self.conns.get_mut(id as usize).and_then(Option::as_mut).ok_or(Error::InvalidId)
    }

    fn tcp(&mut self, id: Id) -> Result<&mut tcp::Socket<'static>, Error> {
        let h = self.conn(id)?.handle;
        Ok(self.sockets.get_mut::<tcp::Socket>(h))
    }

    fn udp(&mut self, id: Id) -> Result<&mut udp::Socket<'static>, Error> {
        let h = self.udp.get(id as usize).copied().flatten().ok_or(Error::InvalidId)?;
        Ok(self.sockets.get_mut::<udp::Socket>(h))
    }

    fn orphan(&mut self, id: Id) {
        let deadline = now() + SmolDuration::from_micros(self.limits.linger.as_micros() as u64);
        if let Ok(c) = self.conn(id) {
            if !matches!(c.owner, Owner::Orphan { .. }) {
                c.owner = Owner::Orphan { deadline };
                self.orphans += 1;
            }
        }
    }
}

/// The backend object: every call locks the stack.
struct NicBackend;

fn with_nic<R>(f: impl FnOnce(&mut Nic) -> R) -> Result<R, Error> {
    NIC.lock().as_mut().map(f).ok_or(Error::NotInitialized)
}

fn flatten<T>(r: Result<Result<T, Error>, Error>) -> Result<T, Error> {
    r.and_then(|x| x)
}

fn poll_nic<T>(f: impl FnOnce(&mut Nic) -> Poll<Result<T, Error>>) -> Poll<Result<T, Error>> {
    match NIC.lock().as_mut() {
        Some(nic) => f(nic),
        None => Poll::Ready(Err(Error::NotInitialized)),
    }
}

impl Backend for NicBackend {
    fn tcp_listen(&mut self, port: u16) -> Result<Id, Error> {
        flatten(with_nic(|n| {
            if n.listeners.iter().flatten().any(|l| l.port == port) {
                return Err(Error::AddrInUse);
            }
            if n.tcp_sockets >= n.limits.sockets {
                return Err(Error::TooManySockets);
            }
            let l = Listener { port, pending: Vec::new(), ready: VecDeque::new(), waker: None };
            let id = match n.listeners.iter().position(Option::is_none) {
                Some(i) => {
                    n.listeners[i] = Some(l);
                    i
                }
                None => {
                    n.listeners.push(Some(l));
                    n.listeners.len() - 1
                }
            };
            n.service_listeners();
            kick();
            Ok(id as Id)
        }))
    }

    fn tcp_poll_accept(&mut self, listener: Id, cx: &mut Context<'_>) -> Poll<Result<(Id, SocketAddrV4), Error>> {
        poll_nic(|n| {
            let Some(l) = n.listeners.get_mut(listener as usize).and_then(Option::as_mut) else {
                return Poll::Ready(Err(Error::InvalidId));
            };
            match l.ready.pop_front() {
                Some(id) => {
                    // Room in the queue again: listen for more.
                    n.service_listeners();
                    kick();
                    match n.conn(id) {
                        Ok(c) => {
                            c.owner = Owner::User;
                            Poll::Ready(Ok((id, c.peer)))
                        }
                        Err(e) => Poll::Ready(Err(e)),
                    }
                }
                None => {
                    l.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }

    fn tcp_release_listener(&mut self, listener: Id) {
        let _ = with_nic(|n| {
            let Some(l) = n.listeners.get_mut(listener as usize).and_then(Option::take) else { return };
            for h in l.pending {
                n.remove_tcp_socket(h);
            }
            for id in l.ready {
                if let Ok(s) = n.tcp(id) {
                    s.abort();
                }
                n.orphan(id);
            }
            kick();
        });
    }

    fn tcp_poll_read(&mut self, conn: Id, buf: &mut [u8], cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        poll_nic(|n| {
            let s = match n.tcp(conn) {
                Ok(s) => s,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if s.can_recv() {
                // Less than half the window was open: the peer may be
                // waiting for it to open again, so let the stack say so
                // now (otherwise the next segment sent carries it).
                let was_tight = s.recv_queue() * 2 >= s.recv_capacity();
                let got = s.recv_slice(buf).unwrap_or(0);
                if got > 0 {
                    stats::add_rx(got);
                    if was_tight {
                        kick();
                    }
                    return Poll::Ready(Ok(got));
                }
            }
            if !s.may_recv() {
                return Poll::Ready(Ok(0));
            }
            s.register_recv_waker(cx.waker());
            Poll::Pending
        })
    }

    fn tcp_poll_write(&mut self, conn: Id, buf: &[u8], cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        poll_nic(|n| {
            let s = match n.tcp(conn) {
                Ok(s) => s,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if !s.may_send() {
                return Poll::Ready(Err(Error::Closed));
            }
            if s.can_send() {
                let sent = s.send_slice(buf).unwrap_or(0);
                if sent > 0 {
                    stats::add_tx(sent);
                    n.transmit_now(sent);
                    return Poll::Ready(Ok(sent));
                }
            }
            s.register_send_waker(cx.waker());
            Poll::Pending
        })
    }

    fn tcp_poll_close(&mut self, conn: Id, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        poll_nic(|n| {
            let s = match n.tcp(conn) {
                Ok(s) => s,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if matches!(s.state(), tcp::State::Established | tcp::State::CloseWait | tcp::State::SynReceived) {
                s.close();
                kick();
            }
            let done = match s.state() {
                tcp::State::Closed | tcp::State::TimeWait => true,
                // Our FIN was acknowledged; the peer's may never come.
                tcp::State::FinWait2 => s.send_queue() == 0,
                _ => false,
            };
            if done {
                Poll::Ready(Ok(()))
            } else {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
        })
    }

    fn tcp_abort(&mut self, conn: Id) {
        let _ = with_nic(|n| {
            if let Ok(s) = n.tcp(conn) {
                s.abort();
            }
            kick();
        });
    }

    fn tcp_release(&mut self, conn: Id) {
        let _ = with_nic(|n| {
            if let Ok(s) = n.tcp(conn) {
                if matches!(s.state(), tcp::State::Established | tcp::State::CloseWait | tcp::State::SynReceived) {
                    s.close();
                }
            }
            n.orphan(conn);
            kick();
        });
    }

    fn tcp_local(&self, conn: Id) -> Result<SocketAddrV4, Error> {
        flatten(with_nic(|n| n.tcp(conn).and_then(|s| s.local_endpoint().map(to_v4).ok_or(Error::Closed))))
    }

    fn udp_bind(&mut self, port: u16) -> Result<Id, Error> {
        flatten(with_nic(|n| {
            if n.udp.iter().flatten().count() >= n.limits.udp_sockets {
                return Err(Error::TooManySockets);
            }
            let bound = |n: &mut Nic, p: u16| {
                n.udp.iter().flatten().any(|h| n.sockets.get::<udp::Socket>(*h).endpoint().port == p)
            };
            let port = if port == 0 {
                let mut found = None;
                for _ in 0..(u16::MAX - EPHEMERAL) {
                    let p = n.next_ephemeral;
                    n.next_ephemeral = if p == u16::MAX { EPHEMERAL } else { p + 1 };
                    if !bound(n, p) {
                        found = Some(p);
                        break;
                    }
                }
                found.ok_or(Error::AddrInUse)?
            } else if bound(n, port) {
                return Err(Error::AddrInUse);
            } else {
                port
            };
            let l = n.limits;
            let mut s = udp::Socket::new(
                udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_PACKETS], vec![0u8; l.rx_buffer]),
                udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_PACKETS], vec![0u8; l.tx_buffer]),
            );
            s.bind(port).map_err(|_| Error::InvalidInput)?;
            let h = n.sockets.add(s);
            let id = match n.udp.iter().position(Option::is_none) {
                Some(i) => {
                    n.udp[i] = Some(h);
                    i
                }
                None => {
                    n.udp.push(Some(h));
                    n.udp.len() - 1
                }
            };
            Ok(id as Id)
        }))
    }

    fn udp_poll_recv_from(&mut self, sock: Id, buf: &mut [u8], cx: &mut Context<'_>) -> Poll<Result<(usize, SocketAddrV4), Error>> {
        poll_nic(|n| {
            let s = match n.udp(sock) {
                Ok(s) => s,
                Err(e) => return Poll::Ready(Err(e)),
            };
            match s.recv() {
                Ok((data, meta)) => {
                    let len = data.len().min(buf.len());
                    buf[..len].copy_from_slice(&data[..len]);
                    stats::add_udp_rx();
                    Poll::Ready(Ok((len, to_v4(meta.endpoint))))
                }
                Err(_) => {
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            }
        })
    }

    fn udp_poll_send_to(&mut self, sock: Id, buf: &[u8], to: SocketAddrV4, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        poll_nic(|n| {
            let s = match n.udp(sock) {
                Ok(s) => s,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if buf.len() > s.payload_send_capacity() {
                return Poll::Ready(Err(Error::TooLarge));
            }
            match s.send_slice(buf, IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port())) {
                Ok(()) => {
                    stats::add_udp_tx();
                    kick();
                    Poll::Ready(Ok(()))
                }
                Err(udp::SendError::BufferFull) => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(_) => Poll::Ready(Err(Error::InvalidInput)),
            }
        })
    }

    fn udp_release(&mut self, sock: Id) {
        let _ = with_nic(|n| {
            if let Some(h) = n.udp.get_mut(sock as usize).and_then(Option::take) {
                n.sockets.remove(h);
            }
        });
    }
}

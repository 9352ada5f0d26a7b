//! Counters of the network stack, kept by the backends, read with
//! [`stats`].
use core::sync::atomic::{AtomicU64, Ordering};

static OPENED: AtomicU64 = AtomicU64::new(0);
static CLOSED: AtomicU64 = AtomicU64::new(0);
static RX: AtomicU64 = AtomicU64::new(0);
static TX: AtomicU64 = AtomicU64::new(0);
static UDP_RX: AtomicU64 = AtomicU64::new(0);
static UDP_TX: AtomicU64 = AtomicU64::new(0);
static NIC_BASE: AtomicU64 = AtomicU64::new(0);
static IDLE_HEAP: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections alive: accepted (or waiting in a backlog) and not
    /// yet removed (closing ones included; listeners' idle sockets not).
    pub sockets: u64,
    /// Connections that completed the handshake since [`crate::init`].
    pub accepted: u64,
    /// TCP payload bytes received (read by the services) and sent
    /// (queued by the services).
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// UDP datagrams received (by the services) and queued for sending.
    pub udp_rx: u64,
    pub udp_tx: u64,
    /// Interrupts the NIC raised (0 in poll mode: the device's
    /// notifications are suppressed).
    pub nic_interrupts: u64,
    /// The partition's heap in use now (`hallows_rt::mm::heap_used`).
    pub heap: u64,
    /// The heap in use the last time the number of live connections fell
    /// to 0 (0: never): a baseline to compare `heap` against for leaks.
    pub idle_heap: u64,
}

impl core::fmt::Display for Stats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "sockets={} accepted={} rx={} tx={} udp_rx={} udp_tx={} nic_interrupts={} heap={} idle_heap={}",
            self.sockets,
            self.accepted,
            self.rx_bytes,
            self.tx_bytes,
            self.udp_rx,
            self.udp_tx,
            self.nic_interrupts,
            self.heap,
            self.idle_heap
        )
    }
}

/// The counters now.
pub fn stats() -> Stats {
    let opened = OPENED.load(Ordering::Acquire);
    let closed = CLOSED.load(Ordering::Acquire);
    Stats {
        sockets: opened.saturating_sub(closed),
        accepted: opened,
        rx_bytes: RX.load(Ordering::Relaxed),
        tx_bytes: TX.load(Ordering::Relaxed),
        udp_rx: UDP_RX.load(Ordering::Relaxed),
        udp_tx: UDP_TX.load(Ordering::Relaxed),
        nic_interrupts: match NIC_BASE.load(Ordering::Relaxed) {
            0 => 0,
            base => hallows_rt::virtio::interrupts(base),
        },
        heap: hallows_rt::mm::heap_used() as u64,
        idle_heap: IDLE_HEAP.load(Ordering::Relaxed),
    }
}

/// A connection completed its handshake (it counts as live from now on).
pub(crate) fn conn_opened() {
    OPENED.fetch_add(1, Ordering::AcqRel);
}

/// A connection was removed (all its memory freed).
pub(crate) fn conn_closed() {
    if CLOSED.fetch_add(1, Ordering::AcqRel) + 1 == OPENED.load(Ordering::Acquire) {
        IDLE_HEAP.store(hallows_rt::mm::heap_used() as u64, Ordering::Relaxed);
    }
}

pub(crate) fn add_rx(n: usize) {
    RX.fetch_add(n as u64, Ordering::Relaxed);
}

pub(crate) fn add_tx(n: usize) {
    TX.fetch_add(n as u64, Ordering::Relaxed);
}

pub(crate) fn add_udp_rx() {
    UDP_RX.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add_udp_tx() {
    UDP_TX.fetch_add(1, Ordering::Relaxed);
}

/// The NIC whose interrupts [`Stats::nic_interrupts`] counts.
pub(crate) fn set_nic(base: u64) {
    NIC_BASE.store(base, Ordering::Relaxed);
}

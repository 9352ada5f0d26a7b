//! virtio-mmio devices, driven with the `virtio-drivers` crate: the same
//! transport and driver path on aarch64 (QEMU `virt`) and x86_64 (QEMU
//! `microvm`).
//!
//! The hypervisor maps an assigned device's registers at their physical
//! address and delivers its interrupt as the number in the device's
//! directory entry (`DeviceInfo::irq`: the INTID on aarch64, the vector
//! `DEVICE_VECTOR_BASE + i` on x86_64). Devices master
//! DMA with *physical* addresses and there is no IOMMU: a partition may
//! only drive them with `dma = "trusted"` in the manifest, which also tells
//! it (in its boot information) the offset between its guest-physical and
//! physical RAM addresses. [`Hal`] adds that offset to every buffer it
//! shares with a device. Nothing stops a trusted partition from handing a
//! device any physical address: that is what "trusted" means.
//!
//! [`transports`] probes the partition's virtio devices (empty transports
//! are skipped) and installs an interrupt handler for each that
//! acknowledges the device's interrupt and counts it ([`interrupts`]);
//! [`wait_interrupt`] is a future that a driver task awaits until the
//! device's next interrupt (the interrupt wakes it).
//!
//! [`Disk`] is the partition's virtio-blk device as a
//! [`hallows_blockdev::BlockDevice`], what storage engines are written
//! against (requests complete before the call returns: the core polls the
//! device's used ring).

use alloc::alloc::{alloc_zeroed, dealloc};
use alloc::vec::Vec;
use core::alloc::Layout;
use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};
use core::sync::atomic::{AtomicU64, Ordering};

use hallows_abi::DeviceInfo;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, PhysAddr, PAGE_SIZE};

pub use virtio_drivers;

use crate::Boot;

static DMA_OFFSET: AtomicU64 = AtomicU64::new(0);
static TRUSTED: AtomicU64 = AtomicU64::new(0);
/// Per device directory entry: its base and its interrupts so far.
static IRQ_COUNT: [(AtomicU64, AtomicU64, AtomicU64); hallows_abi::MAX_DEVICES] =
    [const { (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)) }; hallows_abi::MAX_DEVICES];
/// Per device directory entry: the task waiting for its next interrupt.
static IRQ_WAKERS: [crate::sync::Mutex<Option<Waker>>; hallows_abi::MAX_DEVICES] =
    [const { crate::sync::Mutex::new(None) }; hallows_abi::MAX_DEVICES];
/// What a device's interrupt does itself: `true` if that was everything.
pub type InterruptWork = fn() -> bool;

/// Per device directory entry: work its interrupt does itself
/// ([`set_interrupt_work`]).
static IRQ_WORK: [crate::sync::Mutex<Option<InterruptWork>>; hallows_abi::MAX_DEVICES] =
    [const { crate::sync::Mutex::new(None) }; hallows_abi::MAX_DEVICES];

fn bus_address(va: u64) -> PhysAddr {
    va.wrapping_add(DMA_OFFSET.load(Ordering::Relaxed))
}

/// The `virtio-drivers` platform glue for a RustHallows partition.
#[derive(Debug)]
pub struct Hal;

// SAFETY: DMA buffers come from the heap (this partition's RAM), page
// aligned and zeroed, and are reported at their physical address
// (guest-physical + the partition's DMA offset, given by the hypervisor);
// MMIO is identity-mapped.
unsafe impl virtio_drivers::Hal for Hal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout");
        // SAFETY: a non-zero-sized layout.
        let p = unsafe { alloc_zeroed(layout) };
        let p = NonNull::new(p).expect("out of memory for a DMA buffer");
        (bus_address(p.as_ptr() as u64), p)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout");
        // SAFETY: allocated by `dma_alloc` with this layout (driver contract).
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // RAM is coherent for the device, so no cache maintenance: aarch64
        // maps it cacheable inner-shareable (QEMU; on hardware, with a
        // coherent interconnect); on x86_64 write-back memory is coherent
        // with DMA by architecture.
        bus_address(buffer.as_ptr() as *mut u8 as u64)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

pub(crate) fn init(boot: &Boot) {
    if boot.info().dma == hallows_abi::dma::TRUSTED {
        DMA_OFFSET.store(boot.info().dma_offset, Ordering::Relaxed);
        TRUSTED.store(1, Ordering::Relaxed);
    }
}

/// A device's interrupt (`intid` is its `DeviceInfo::irq`): acknowledges
/// every status bit the device reports, which lowers its line (aarch64:
/// before the runtime ends the interrupt; x86_64: so that its next event is
/// a new edge at its I/O APIC pin), counts it and wakes the waiting task.
fn on_interrupt(intid: u32) {
    for (i, (base, irq, count)) in IRQ_COUNT.iter().enumerate() {
        let b = base.load(Ordering::Relaxed);
        if b != 0 && irq.load(Ordering::Relaxed) == intid as u64 {
            // InterruptStatus (0x60) -> InterruptACK (0x64) until the
            // status reads 0: the line is low when we leave, so an event
            // that set another bit meanwhile is not left behind a line that
            // never falls (an edge-triggered pin would not fire again).
            for _ in 0..8 {
                // SAFETY: `b` is the base of a virtio-mmio transport mapped
                // for this partition (device directory).
                let status = unsafe { core::ptr::read_volatile((b + 0x60) as *const u32) };
                if status == 0 {
                    break;
                }
                // SAFETY: as above; acknowledging has no memory effect.
                unsafe { core::ptr::write_volatile((b + 0x64) as *mut u32, status) };
            }
            count.fetch_add(1, Ordering::Release);
            // The driver's interrupt work, when it has some and the core is
            // between tasks (not inside a preemptible task, whose stack
            // this handler runs on): done here, the waiting task is not
            // woken unless the work says so.
            let work = IRQ_WORK[i].lock().filter(|_| !crate::task::in_preemptible());
            if work.is_some_and(|f| f()) {
                continue;
            }
            // IRQs are masked here; every holder of this lock masks them.
            let w = IRQ_WAKERS[i].lock().take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

/// Gives the device at `base` work to do in its interrupt handler (IRQs
/// masked, between tasks): `work` returns `true` if it did everything,
/// else the task waiting for the interrupt ([`wait_interrupt`]) is woken as
/// usual. `work` must not block: it runs wherever the core was idle.
pub fn set_interrupt_work(base: u64, work: InterruptWork) {
    if let Some(i) = IRQ_COUNT.iter().position(|(b, _, _)| b.load(Ordering::Relaxed) == base) {
        crate::arch::without_interrupts(|| *IRQ_WORK[i].lock() = Some(work));
    }
}

/// A future that completes once the device at `base` has taken more than
/// `seen` interrupts (read [`interrupts`] before looking at the device,
/// then await this: no interrupt is missed). Completes at once for a base
/// that is not a probed device with an interrupt.
pub fn wait_interrupt(base: u64, seen: u64) -> InterruptWait {
    let slot = IRQ_COUNT.iter().position(|(b, _, _)| b.load(Ordering::Relaxed) == base);
    InterruptWait { slot, seen }
}

/// See [`wait_interrupt`].
#[derive(Debug)]
pub struct InterruptWait {
    slot: Option<usize>,
    seen: u64,
}

impl Future for InterruptWait {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let Some(i) = self.slot else { return Poll::Ready(0) };
        let count = &IRQ_COUNT[i].2;
        let now = count.load(Ordering::Acquire);
        if now > self.seen {
            return Poll::Ready(now);
        }
        crate::arch::without_interrupts(|| *IRQ_WAKERS[i].lock() = Some(cx.waker().clone()));
        // An interrupt between the first check and the registration woke
        // nobody: look again.
        let now = count.load(Ordering::Acquire);
        if now > self.seen {
            return Poll::Ready(now);
        }
        Poll::Pending
    }
}

/// Interrupts taken so far from the device at `base`.
pub fn interrupts(base: u64) -> u64 {
    IRQ_COUNT
        .iter()
        .find(|(b, _, _)| b.load(Ordering::Relaxed) == base)
        .map_or(0, |(_, _, c)| c.load(Ordering::Relaxed))
}

/// The device at `base`, for a driver that waits for its interrupts in a
/// loop ([`IrqLine::count`] and [`IrqLine::wait`] without looking the
/// device up each time).
pub fn irq_line(base: u64) -> IrqLine {
    IrqLine { slot: IRQ_COUNT.iter().position(|(b, _, _)| b.load(Ordering::Relaxed) == base) }
}

/// See [`irq_line`].
#[derive(Clone, Copy, Debug)]
pub struct IrqLine {
    slot: Option<usize>,
}

impl IrqLine {
    /// [`interrupts`] of the device.
    pub fn count(&self) -> u64 {
        self.slot.map_or(0, |i| IRQ_COUNT[i].2.load(Ordering::Relaxed))
    }

    /// [`wait_interrupt`] of the device.
    pub fn wait(&self, seen: u64) -> InterruptWait {
        InterruptWait { slot: self.slot, seen }
    }
}

/// A probed virtio device.
pub struct Device {
    pub info: DeviceInfo,
    pub device_type: DeviceType,
    pub transport: MmioTransport<'static>,
}

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "virtio {:?} at {:#x}", self.device_type, self.info.base)
    }
}

/// Probes the partition's virtio-mmio devices. Empty if the partition is
/// not trusted with DMA (the hypervisor would not have given it any).
///
/// Dropping a [`Device`] resets the device (`virtio-drivers` does so when
/// a transport is dropped): a driver that needs one kind of device should
/// ask for that kind only ([`transport`]), or it resets the devices other
/// drivers of the partition are using.
pub fn transports(boot: &Boot) -> Vec<Device> {
    probe(boot, None)
}

/// The partition's first virtio device of type `kind`; no other device
/// is touched.
pub fn transport(boot: &Boot, kind: DeviceType) -> Option<Device> {
    probe(boot, Some(kind)).into_iter().next()
}

/// Every virtio device of type `kind` the partition has (a display's
/// keyboard and tablet); no other device is touched.
pub fn transports_of(boot: &Boot, kind: DeviceType) -> Vec<Device> {
    probe_kind(boot, kind, usize::MAX)
}

/// The device type a virtio-mmio transport reports (its DeviceID
/// register), read without taking the transport over.
fn device_id(base: u64) -> u32 {
    // SAFETY: `base` is a virtio-mmio transport the hypervisor maps for
    // this partition (device directory); DeviceID (0x8) is a read-only
    // register with no side effect.
    unsafe { core::ptr::read_volatile((base + 0x8) as *const u32) }
}

fn probe(boot: &Boot, kind: Option<DeviceType>) -> Vec<Device> {
    match kind {
        Some(k) => probe_kind(boot, k, 1),
        None => probe_matching(boot, None, usize::MAX),
    }
}

fn probe_kind(boot: &Boot, kind: DeviceType, max: usize) -> Vec<Device> {
    probe_matching(boot, Some(kind), max)
}

fn probe_matching(boot: &Boot, kind: Option<DeviceType>, max: usize) -> Vec<Device> {
    let mut out = Vec::new();
    if TRUSTED.load(Ordering::Relaxed) == 0 {
        return out;
    }
    for (i, d) in boot.devices().iter().enumerate() {
        if !crate::padded(&d.compatible).starts_with("virtio") || d.size < 0x100 {
            continue;
        }
        if let Some(k) = kind {
            if DeviceType::try_from(device_id(d.base)).ok() != Some(k) || out.len() >= max {
                continue;
            }
        }
        let header = NonNull::new(d.base as *mut VirtIOHeader).expect("device at address 0");
        // SAFETY: the hypervisor maps this device's registers (the whole
        // transport, `d.size` bytes) for this partition only, and each
        // transport is probed once per call.
        let Ok(transport) = (unsafe { MmioTransport::new(header, d.size as usize) }) else { continue };
        let device_type = transport.device_type();
        if d.irq != 0 {
            let (base, irq, _) = &IRQ_COUNT[i];
            base.store(d.base, Ordering::Relaxed);
            irq.store(d.irq as u64, Ordering::Relaxed);
            crate::irq::register(d.irq, on_interrupt);
        }
        out.push(Device { info: *d, device_type, transport });
    }
    out
}

/// Why [`Disk::open`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The partition has no virtio-blk device (no `disk` in the manifest,
    /// or not `dma = "trusted"`).
    NoDisk,
    /// The device refused initialisation.
    Init,
    /// The device is read-only.
    ReadOnly,
}

impl core::fmt::Display for DiskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DiskError::NoDisk => "no virtio-blk device (does the manifest give this partition a `disk`?)",
            DiskError::Init => "the virtio-blk device failed to initialise",
            DiskError::ReadOnly => "the virtio-blk device is read-only",
        })
    }
}

/// The partition's virtio-blk device as a block device.
pub struct Disk {
    blk: virtio_drivers::device::blk::VirtIOBlk<Hal, MmioTransport<'static>>,
    sectors: u64,
    /// The transport's base address and interrupt.
    pub info: DeviceInfo,
}

impl core::fmt::Debug for Disk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "virtio-blk at {:#x}, {} sectors", self.info.base, self.sectors)
    }
}

impl Disk {
    /// Opens the partition's first virtio-blk device.
    pub fn open(boot: &Boot) -> Result<Disk, DiskError> {
        let dev = transport(boot, DeviceType::Block).ok_or(DiskError::NoDisk)?;
        let info = dev.info;
        let blk = virtio_drivers::device::blk::VirtIOBlk::<Hal, _>::new(dev.transport).map_err(|_| DiskError::Init)?;
        if blk.readonly() {
            return Err(DiskError::ReadOnly);
        }
        let sectors = blk.capacity();
        Ok(Disk { blk, sectors, info })
    }
}

impl hallows_blockdev::BlockDevice for Disk {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), hallows_blockdev::Error> {
        hallows_blockdev::check(self.sectors, lba, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        self.blk.read_blocks(lba as usize, buf).map_err(|_| hallows_blockdev::Error::Io)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), hallows_blockdev::Error> {
        hallows_blockdev::check(self.sectors, lba, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        self.blk.write_blocks(lba as usize, buf).map_err(|_| hallows_blockdev::Error::Io)
    }

    fn flush(&mut self) -> Result<(), hallows_blockdev::Error> {
        self.blk.flush().map_err(|_| hallows_blockdev::Error::Io)
    }
}

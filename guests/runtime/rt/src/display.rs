//! The partition's display (virtio-gpu) and its keyboard and pointer
//! (virtio-input), as the manifest's `display` assigns them.
//!
//! [`Gpu`] drives virtio-gpu in 2D mode with a control queue of its own
//! (`virtio-drivers`' GPU driver flushes only the whole screen): one
//! host resource in `B8G8R8X8` (Nagini's `Xrgb8888`) backed by a
//! framebuffer in this partition's RAM, set as scanout 0. [`Gpu::flush`]
//! sends, per damaged rectangle, `TRANSFER_TO_HOST_2D` (copy that
//! rectangle of guest memory into the host resource) and `RESOURCE_FLUSH`
//! (show it): a frame that changed a counter moves a few hundred bytes,
//! not the screen. Requests complete synchronously (the core polls the
//! used ring, at most [`REQUEST_TIMEOUT`]). Every answer the device gives
//! is checked (its type, the display size it reports); rectangles are
//! clamped to the screen before they are sent.
//!
//! [`Inputs`] are the partition's virtio-input devices (QEMU's
//! `virtio-keyboard-device` and `virtio-tablet-device`): evdev events
//! (`type`, `code`, `value`) are drained with [`Inputs::poll`]; the pointer
//! axes' ranges come from the devices' `ABS_INFO`.

use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{fence, Ordering};
use core::time::Duration;

use virtio_drivers::device::input::VirtIOInput;
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal as _, PAGE_SIZE};

use crate::virtio::Hal;
use crate::Boot;

/// Longest a control request may take before the device is declared dead.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the display could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisplayError {
    /// No virtio-gpu device (no `display` in the manifest, or not
    /// `dma = "trusted"`).
    NoDisplay,
    /// The device's control queue is too small or already in use.
    Queue,
    /// The device did not answer within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The device answered with this response type instead of success.
    Refused(u32),
    /// The device reports no enabled scanout, or one larger than 16384
    /// pixels a side.
    BadMode,
}

impl core::fmt::Display for DisplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DisplayError::NoDisplay => f.write_str("no virtio-gpu device (does the manifest give this partition a `display`?)"),
            DisplayError::Queue => f.write_str("the virtio-gpu control queue is unusable"),
            DisplayError::Timeout => f.write_str("the virtio-gpu device did not answer"),
            DisplayError::Refused(t) => write!(f, "the virtio-gpu device refused a request (response {t:#x})"),
            DisplayError::BadMode => f.write_str("the virtio-gpu device reports no usable scanout"),
        }
    }
}

// virtio-gpu control commands and responses (virtio 1.2, 5.7.6).
const GET_DISPLAY_INFO: u32 = 0x100;
const RESOURCE_CREATE_2D: u32 = 0x101;
const SET_SCANOUT: u32 = 0x103;
const RESOURCE_FLUSH: u32 = 0x104;
const TRANSFER_TO_HOST_2D: u32 = 0x105;
const RESOURCE_ATTACH_BACKING: u32 = 0x106;
const OK_NODATA: u32 = 0x1100;
const OK_DISPLAY_INFO: u32 = 0x1101;
/// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`: bytes B, G, R, X (Nagini `Xrgb8888`).
const FORMAT_B8G8R8X8: u32 = 2;
const RESOURCE_ID: u32 = 1;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Descriptors in the control queue: a request and its response.
const QSIZE: usize = 4;
/// The queue's pages: descriptors and available ring in the first, used
/// ring in the second (the legacy layout, which the modern one accepts),
/// request and response buffers in the third.
const QPAGES: usize = 3;
const REQ_OFF: usize = 2 * PAGE_SIZE;
const RESP_OFF: usize = 2 * PAGE_SIZE + 2048;

/// A rectangle of the screen, in pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// What the display has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Rectangles transferred and flushed.
    pub rects: u64,
    /// Pixels transferred.
    pub pixels: u64,
    /// Control requests sent.
    pub requests: u64,
}

/// The partition's virtio-gpu scanout (see the module docs).
pub struct Gpu {
    transport: MmioTransport<'static>,
    /// The control queue's pages (virtual) and their bus address.
    queue: NonNull<u8>,
    queue_pa: u64,
    avail_idx: u16,
    used_idx: u16,
    fb: NonNull<u32>,
    fb_pa: u64,
    fb_pages: usize,
    width: u32,
    height: u32,
    stats: GpuStats,
}

// SAFETY: the queue and framebuffer pages belong to this `Gpu` alone (DMA
// allocations it frees on drop); moving it to another core moves their
// only owner.
unsafe impl Send for Gpu {}

impl core::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "virtio-gpu {}x{}", self.width, self.height)
    }
}

impl Gpu {
    /// Opens the partition's virtio-gpu device: negotiates no optional
    /// feature, sets up the control queue, reads scanout 0's mode, and
    /// creates and shows a framebuffer of that size (black).
    pub fn open(boot: &Boot) -> Result<Gpu, DisplayError> {
        let dev = crate::virtio::transport(boot, DeviceType::GPU).ok_or(DisplayError::NoDisplay)?;
        let mut t = dev.transport;
        t.set_status(DeviceStatus::empty());
        t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = t.read_device_features();
        t.write_driver_features(offered & VIRTIO_F_VERSION_1);
        t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
        t.set_guest_page_size(PAGE_SIZE as u32);
        if t.queue_used(0) || (t.max_queue_size(0) as usize) < QSIZE {
            return Err(DisplayError::Queue);
        }
        let (queue_pa, queue) = Hal::dma_alloc(QPAGES, BufferDirection::Both);
        let desc = queue_pa;
        let avail = queue_pa + (16 * QSIZE) as u64;
        let used = queue_pa + PAGE_SIZE as u64;
        t.queue_set(0, QSIZE as u32, desc, avail, used);
        t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK);
        let mut gpu = Gpu {
            transport: t,
            queue,
            queue_pa,
            avail_idx: 0,
            used_idx: 0,
            fb: NonNull::dangling(),
            fb_pa: 0,
            fb_pages: 0,
            width: 0,
            height: 0,
            stats: GpuStats::default(),
        };
        // Scanout 0's mode: the first of 16 (rect, enabled, flags) entries.
        let resp = gpu.request(&[GET_DISPLAY_INFO, 0, 0, 0, 0, 0], 24 + 16 * 24, OK_DISPLAY_INFO)?;
        let (w, h, enabled) = (resp[6 + 2], resp[6 + 3], resp[6 + 4]);
        if enabled == 0 || w == 0 || h == 0 || w > 16384 || h > 16384 {
            return Err(DisplayError::BadMode);
        }
        let bytes = w as usize * h as usize * 4;
        let pages = bytes.div_ceil(PAGE_SIZE);
        let (fb_pa, fb) = Hal::dma_alloc(pages, BufferDirection::DriverToDevice);
        gpu.fb = fb.cast();
        gpu.fb_pa = fb_pa;
        gpu.fb_pages = pages;
        gpu.width = w;
        gpu.height = h;
        gpu.request(&[RESOURCE_CREATE_2D, 0, 0, 0, 0, 0, RESOURCE_ID, FORMAT_B8G8R8X8, w, h], 24, OK_NODATA)?;
        gpu.request(
            &[RESOURCE_ATTACH_BACKING, 0, 0, 0, 0, 0, RESOURCE_ID, 1, fb_pa as u32, (fb_pa >> 32) as u32, bytes as u32, 0],
            24,
            OK_NODATA,
        )?;
        gpu.request(&[SET_SCANOUT, 0, 0, 0, 0, 0, 0, 0, w, h, 0, RESOURCE_ID], 24, OK_NODATA)?;
        gpu.flush(&[Rect { x: 0, y: 0, width: w, height: h }])?;
        Ok(gpu)
    }

    /// Width of the scanout, pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height of the scanout, pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The framebuffer: `width * height` pixels, rows `width` apart,
    /// `0xXXRRGGBB` words. Writes show after [`Gpu::flush`] of their
    /// rectangle.
    pub fn framebuffer(&mut self) -> &mut [u32] {
        // SAFETY: `fb` is a live DMA allocation of `fb_pages` pages (at
        // least width * height words), zeroed, owned by `self` and
        // borrowed mutably through `self` only; the device only reads it.
        unsafe { core::slice::from_raw_parts_mut(self.fb.as_ptr(), self.width as usize * self.height as usize) }
    }

    /// Counters since [`Gpu::open`].
    pub fn stats(&self) -> GpuStats {
        self.stats
    }

    /// Shows the `rects` of the framebuffer: transfer then flush each
    /// (clamped to the screen; empty ones skipped).
    pub fn flush(&mut self, rects: &[Rect]) -> Result<(), DisplayError> {
        for r in rects {
            let x = r.x.min(self.width);
            let y = r.y.min(self.height);
            let w = r.width.min(self.width - x);
            let h = r.height.min(self.height - y);
            if w == 0 || h == 0 {
                continue;
            }
            let offset = (y as u64 * self.width as u64 + x as u64) * 4;
            self.request(
                &[TRANSFER_TO_HOST_2D, 0, 0, 0, 0, 0, x, y, w, h, offset as u32, (offset >> 32) as u32, RESOURCE_ID, 0],
                24,
                OK_NODATA,
            )?;
            self.request(&[RESOURCE_FLUSH, 0, 0, 0, 0, 0, x, y, w, h, RESOURCE_ID, 0], 24, OK_NODATA)?;
            self.stats.rects += 1;
            self.stats.pixels += w as u64 * h as u64;
        }
        Ok(())
    }

    fn base(&self) -> *mut u8 {
        self.queue.as_ptr()
    }

    /// Sends one control request (`words`, little-endian) with a response
    /// buffer of `resp_len` bytes; waits for the device; checks the
    /// response type; returns the response's words.
    fn request(&mut self, words: &[u32], resp_len: usize, ok: u32) -> Result<[u32; 16], DisplayError> {
        debug_assert!(words.len() * 4 <= 2048 && resp_len <= 2048);
        let base = self.base();
        let slot = (self.avail_idx as usize % (QSIZE / 2)) * 2;
        // SAFETY: the queue pages are this driver's DMA allocation of
        // QPAGES pages; every offset below is inside them (descriptors
        // 16 * QSIZE bytes at 0, the available ring after them, the used
        // ring at PAGE_SIZE, buffers at REQ_OFF/RESP_OFF, 2 KiB each). The
        // device reads and writes them only while a request is in flight,
        // and one request is in flight at a time.
        unsafe {
            let req = base.add(REQ_OFF) as *mut u32;
            for (i, w) in words.iter().enumerate() {
                core::ptr::write_volatile(req.add(i), w.to_le());
            }
            core::ptr::write_bytes(base.add(RESP_OFF), 0, resp_len);
            let desc = |i: usize| base.add(16 * i);
            // Descriptor `slot`: the request (device reads), chained to
            // `slot + 1`: the response (device writes).
            write_desc(desc(slot), self.queue_pa + REQ_OFF as u64, (words.len() * 4) as u32, 1, slot as u16 + 1);
            write_desc(desc(slot + 1), self.queue_pa + RESP_OFF as u64, resp_len as u32, 2, 0);
            let avail = base.add(16 * QSIZE);
            core::ptr::write_volatile(avail.add(4 + 2 * (self.avail_idx as usize % QSIZE)) as *mut u16, (slot as u16).to_le());
            fence(Ordering::SeqCst);
            self.avail_idx = self.avail_idx.wrapping_add(1);
            core::ptr::write_volatile(avail.add(2) as *mut u16, self.avail_idx.to_le());
            fence(Ordering::SeqCst);
        }
        self.transport.notify(0);
        self.stats.requests += 1;
        let start = crate::time::now();
        loop {
            // SAFETY: the used ring's index, inside the queue pages (above).
            let idx = u16::from_le(unsafe { core::ptr::read_volatile(base.add(PAGE_SIZE + 2) as *const u16) });
            if idx != self.used_idx {
                self.used_idx = idx;
                break;
            }
            if crate::time::now().saturating_sub(start) > REQUEST_TIMEOUT {
                return Err(DisplayError::Timeout);
            }
            core::hint::spin_loop();
        }
        fence(Ordering::SeqCst);
        let mut out = [0u32; 16];
        for (i, o) in out.iter_mut().enumerate().take(resp_len / 4) {
            // SAFETY: the response buffer, inside the queue pages (above).
            *o = u32::from_le(unsafe { core::ptr::read_volatile((base.add(RESP_OFF) as *const u32).add(i)) });
        }
        if out[0] != ok {
            return Err(DisplayError::Refused(out[0]));
        }
        Ok(out)
    }
}

/// Writes a split-virtqueue descriptor.
///
/// # Safety
/// `d` points to a descriptor slot (16 bytes) of a queue this driver owns.
unsafe fn write_desc(d: *mut u8, addr: u64, len: u32, flags: u16, next: u16) {
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::write_volatile(d as *mut u64, addr.to_le());
        core::ptr::write_volatile(d.add(8) as *mut u32, len.to_le());
        core::ptr::write_volatile(d.add(12) as *mut u16, flags.to_le());
        core::ptr::write_volatile(d.add(14) as *mut u16, next.to_le());
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // Stop the device before its memory goes back to the heap.
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(0);
        // SAFETY: both were allocated by `Hal::dma_alloc` with these page
        // counts, and the device, reset above, no longer uses them.
        unsafe {
            Hal::dma_dealloc(self.queue_pa, self.queue, QPAGES);
            if self.fb_pages != 0 {
                Hal::dma_dealloc(self.fb_pa, self.fb.cast(), self.fb_pages);
            }
        }
    }
}

/// One evdev event from a virtio-input device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputEvent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// The partition's virtio-input devices (keyboard, tablet).
pub struct Inputs {
    devices: Vec<VirtIOInput<Hal, MmioTransport<'static>>>,
    abs_max: [u32; 2],
}

impl core::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} virtio-input devices", self.devices.len())
    }
}

impl Inputs {
    /// Opens every virtio-input device of the partition (none is fine: a
    /// display without input). The absolute axes' maxima are read from
    /// the devices that have them (`ABS_INFO` of `ABS_X`, `ABS_Y`).
    pub fn open(boot: &Boot) -> Inputs {
        let mut devices = Vec::new();
        let mut abs_max = [0u32; 2];
        for dev in crate::virtio::transports_of(boot, DeviceType::Input) {
            let Ok(mut input) = VirtIOInput::<Hal, _>::new(dev.transport) else { continue };
            for (axis, m) in abs_max.iter_mut().enumerate() {
                if let Ok(info) = input.abs_info(axis as u8) {
                    if info.max > info.min && *m == 0 {
                        *m = info.max;
                    }
                }
            }
            devices.push(input);
        }
        Inputs { devices, abs_max }
    }

    /// Devices opened.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The absolute X and Y axes' maxima (0: no absolute pointer).
    pub fn abs_max(&self) -> [u32; 2] {
        self.abs_max
    }

    /// Drains every pending event (at most `max`) into `f`; returns how
    /// many there were.
    pub fn poll(&mut self, max: usize, mut f: impl FnMut(InputEvent)) -> usize {
        let mut n = 0;
        for d in &mut self.devices {
            while n < max {
                let Some(e) = d.pop_pending_event() else { break };
                f(InputEvent { kind: e.event_type, code: e.code, value: e.value as i32 });
                n += 1;
            }
        }
        n
    }
}

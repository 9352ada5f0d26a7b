//! Mapping a channel's memory and its doorbell page from `/dev/mem`.
//!
//! The channel is not part of the partition's `/memory`, so a kernel with
//! `STRICT_DEVMEM` lets `/dev/mem` map it; arm64 maps such pages as device
//! memory (uncached), which `hallows-ring` only touches with aligned loads
//! and stores of at most 16 bytes (no exclusives, no unaligned copies).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::Path;
use std::ptr::NonNull;

use hallows_ring::{Access, ChannelLayout};

use crate::dt::Role;

/// A mapping that is unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; the ring protocol (or the
// single doorbell store) synchronises every access to it.
unsafe impl Send for Mapping {}

/// Why a mapping failed: the file, the range and the OS error.
#[derive(Debug)]
pub struct MapError {
    what: String,
    error: io::Error,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.error)
    }
}

impl std::error::Error for MapError {}

fn open(path: &Path) -> Result<libc::c_int, MapError> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| MapError {
        what: format!("{}", path.display()),
        error: io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
    })?;
    // SAFETY: a valid NUL-terminated path; the flags ask for no side
    // effects beyond opening.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_SYNC | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(MapError { what: format!("opening {} (O_RDWR|O_SYNC)", path.display()), error: io::Error::last_os_error() });
    }
    Ok(fd)
}

fn map(path: &Path, pa: u64, len: usize, prot: libc::c_int) -> Result<Mapping, MapError> {
    let fd = open(path)?;
    let what = || format!("mapping {:#x}..{:#x} of {}", pa, pa + len as u64, path.display());
    let Ok(off) = libc::off_t::try_from(pa) else {
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
        return Err(MapError { what: what(), error: io::Error::new(io::ErrorKind::InvalidInput, "address beyond off_t") });
    };
    // SAFETY: a fresh mapping chosen by the kernel (no fixed address), of
    // `len` bytes at offset `pa` of the file; it aliases nothing of ours.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, off) };
    let e = io::Error::last_os_error();
    // SAFETY: `fd` is ours; the mapping stays valid after closing it.
    unsafe { libc::close(fd) };
    if p == libc::MAP_FAILED {
        return Err(MapError { what: what(), error: e });
    }
    Ok(Mapping { base: NonNull::new(p.cast()).expect("mmap never returns NULL on success"), len })
}

impl Mapping {
    /// Maps the channel memory at `pa` of `path` (`/dev/mem`) for `role`:
    /// readable, and writable only in the regions this end writes.
    pub fn channel(path: &Path, pa: u64, layout: &ChannelLayout, role: Role) -> Result<Mapping, MapError> {
        let m = map(path, pa, layout.total_size(), libc::PROT_READ)?;
        for r in layout.regions() {
            let access = if role == Role::Producer { r.producer } else { r.consumer };
            if access == Access::ReadWrite {
                // SAFETY: the region lies inside the mapping we own
                // (regions tile `0..total_size`), page-aligned.
                let rc = unsafe {
                    libc::mprotect(m.base.as_ptr().add(r.offset).cast(), r.size, libc::PROT_READ | libc::PROT_WRITE)
                };
                if rc != 0 {
                    return Err(MapError {
                        what: format!("making {:#x}..{:#x} writable", pa + r.offset as u64, pa + (r.offset + r.size) as u64),
                        error: io::Error::last_os_error(),
                    });
                }
            }
        }
        Ok(m)
    }

    /// Maps the 4 KiB doorbell page at `pa` write-only.
    pub fn doorbell(path: &Path, pa: u64) -> Result<Mapping, MapError> {
        map(path, pa, 4096, libc::PROT_WRITE)
    }

    /// The mapping's first byte (page-aligned).
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Rings: one 32-bit store of 1 at offset 0 of the doorbell page (the
    /// hypervisor traps it and interrupts the peer).
    pub fn ring(&self) {
        // SAFETY: offset 0 of a live, writable, page-aligned mapping of at
        // least 4 bytes; volatile so that every ring is a store.
        unsafe { std::ptr::write_volatile(self.base.as_ptr().cast::<u32>(), 1) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range `map` created; nothing refers into it
        // any more (endpoints borrow the mapping's lifetime in `main`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A ring endpoint with the mapping it lives in (dropped after it).
#[derive(Debug)]
pub struct Mapped<E> {
    /// The endpoint.
    pub endpoint: E,
    _mapping: Mapping,
}

fn layout_error(e: hallows_ring::LayoutError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Maps the channel at `pa` and attaches as its producer.
///
/// One process at a time may run an endpoint of a channel (as in any
/// partition: one sender, one receiver); this program opens each channel
/// once.
pub fn sender<T: hallows_ring::Message>(
    path: &Path,
    pa: u64,
    layout: ChannelLayout,
) -> Result<Mapped<hallows_ring::Sender<T>>, MapError> {
    let m = Mapping::channel(path, pa, &layout, Role::Producer)?;
    // SAFETY: `m` maps `layout.total_size()` bytes of the channel with the
    // producer's access, page-aligned, and lives as long as the endpoint
    // (both in the returned `Mapped`, the endpoint dropped first). This
    // process opens the channel's producer end once.
    let endpoint = unsafe { hallows_ring::Sender::new(m.base(), layout) }
        .map_err(|e| MapError { what: format!("attaching to {pa:#x}"), error: layout_error(e) })?;
    Ok(Mapped { endpoint, _mapping: m })
}

/// Maps the channel at `pa` and attaches as its consumer.
pub fn receiver<T: hallows_ring::Message>(
    path: &Path,
    pa: u64,
    layout: ChannelLayout,
) -> Result<Mapped<hallows_ring::Receiver<T>>, MapError> {
    let m = Mapping::channel(path, pa, &layout, Role::Consumer)?;
    // SAFETY: as in `sender`, with the consumer's access.
    let endpoint = unsafe { hallows_ring::Receiver::new(m.base(), layout) }
        .map_err(|e| MapError { what: format!("attaching to {pa:#x}"), error: layout_error(e) })?;
    Ok(Mapped { endpoint, _mapping: m })
}

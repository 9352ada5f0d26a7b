//! Channel memory for host tests: an anonymous mapping with a PROT_NONE guard
//! page on each side, whose regions can be given the stage-2 permissions of
//! one side with `mprotect`. Any access outside the channel, or a write to a
//! region the tested side may only read, kills the test with SIGSEGV.
#![allow(dead_code, unsafe_code)]

use std::ptr::NonNull;

use hallows_ring::{Access, ChannelLayout, Region};

pub struct ChannelMem {
    map: *mut u8,
    map_len: usize,
    pub layout: ChannelLayout,
}

// SAFETY: the mapping is plain memory owned by this value; threads that
// share it synchronise through the channel protocol.
unsafe impl Send for ChannelMem {}
// SAFETY: as above.
unsafe impl Sync for ChannelMem {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Producer,
    Consumer,
}

impl ChannelMem {
    pub fn new(layout: ChannelLayout) -> Self {
        let page = layout.page_size();
        let map_len = layout.total_size() + 2 * page;
        // SAFETY: anonymous private mapping; arguments are valid.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let mem = Self { map: map.cast(), map_len, layout };
        mem.protect(0, page, libc::PROT_NONE);
        mem.protect(page + layout.total_size(), page, libc::PROT_NONE);
        mem
    }

    fn protect(&self, offset: usize, len: usize, prot: i32) {
        // SAFETY: the range lies inside our own mapping.
        let rc = unsafe { libc::mprotect(self.map.add(offset).cast(), len, prot) };
        assert_eq!(rc, 0);
    }

    /// Channel base (page-aligned: mmap returns page-aligned memory and the
    /// guard is one page).
    pub fn base(&self) -> NonNull<u8> {
        // SAFETY: inside the mapping, non-null.
        NonNull::new(unsafe { self.map.add(self.layout.page_size()) }).unwrap()
    }

    fn protect_region(&self, r: &Region, access: Access) {
        let prot = match access {
            Access::ReadOnly => libc::PROT_READ,
            Access::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        self.protect(self.layout.page_size() + r.offset, r.size, prot);
    }

    /// Map every region as `side` would see it through stage 2.
    pub fn enforce(&self, side: Side) {
        for r in self.layout.regions() {
            let a = match side {
                Side::Producer => r.producer,
                Side::Consumer => r.consumer,
            };
            self.protect_region(&r, a);
        }
    }

    /// Make everything writable (for the test's adversary).
    pub fn open(&self) {
        self.protect(self.layout.page_size(), self.layout.total_size(), libc::PROT_READ | libc::PROT_WRITE);
    }

    pub fn write_u64(&self, offset: usize, v: u64) {
        assert!(offset + 8 <= self.layout.total_size());
        // SAFETY: in bounds; the mapping is writable when called (see
        // `open`); volatile because the code under test reads it atomically.
        unsafe { self.base().as_ptr().add(offset).cast::<u64>().write_volatile(v) }
    }

    pub fn write_u32(&self, offset: usize, v: u32) {
        assert!(offset + 4 <= self.layout.total_size());
        // SAFETY: as for write_u64.
        unsafe { self.base().as_ptr().add(offset).cast::<u32>().write_volatile(v) }
    }

    pub fn read_u64(&self, offset: usize) -> u64 {
        assert!(offset + 8 <= self.layout.total_size());
        // SAFETY: in bounds and readable.
        unsafe { self.base().as_ptr().add(offset).cast::<u64>().read_volatile() }
    }

    pub fn write_byte(&self, offset: usize, v: u8) {
        assert!(offset < self.layout.total_size());
        // SAFETY: in bounds, writable when called.
        unsafe { self.base().as_ptr().add(offset).write_volatile(v) }
    }

    pub fn read_byte(&self, offset: usize) -> u8 {
        assert!(offset < self.layout.total_size());
        // SAFETY: in bounds and readable.
        unsafe { self.base().as_ptr().add(offset).read_volatile() }
    }
}

impl Drop for ChannelMem {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no endpoint outlives this value
        // in the tests (they are dropped first).
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

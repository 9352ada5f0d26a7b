//! The raw block device the log owns.
//!
//! `BlockDevice`, `Error` and `FileDisk` (feature `std`: a file whose
//! `flush` is `fdatasync`) are `hallows-blockdev`'s. `MemDisk` here is the
//! engine tests' power-loss simulator: besides what `hallows_blockdev::MemDisk`
//! does it fails the device at the n-th write with that write torn after k
//! sectors, or at the next flush, and builds crash images from a predicate
//! over (write, sector).

use alloc::vec;
use alloc::vec::Vec;

pub use hallows_blockdev::{check, BlockDevice, Error};
#[cfg(feature = "std")]
pub use hallows_blockdev::FileDisk;

/// Bytes in a block: the unit of every transfer and of atomicity.
pub const BLOCK: usize = hallows_blockdev::SECTOR;

/// An in-memory disk with a power-loss simulator.
#[derive(Clone, Debug)]
pub struct MemDisk {
    /// What reads see.
    current: Vec<u8>,
    /// What survived the last flush.
    durable: Vec<u8>,
    /// Writes since the last flush, in order: (lba, data).
    pending: Vec<(u64, Vec<u8>)>,
    /// Writes accepted so far (all time).
    pub writes: u64,
    /// Flushes accepted so far.
    pub flushes: u64,
    /// After this many more writes the power fails: that write is torn
    /// (only its first `torn_sectors` sectors land) and every later write
    /// or flush fails.
    fail_after: Option<u64>,
    torn_sectors: usize,
    fail_flush: bool,
    dead: bool,
}

impl MemDisk {
    /// A zeroed disk of `bytes` (rounded down to whole blocks).
    pub fn new(bytes: usize) -> Self {
        let len = bytes / BLOCK * BLOCK;
        MemDisk {
            current: vec![0; len],
            durable: vec![0; len],
            pending: Vec::new(),
            writes: 0,
            flushes: 0,
            fail_after: None,
            torn_sectors: 0,
            fail_flush: false,
            dead: false,
        }
    }

    /// A disk holding `image`.
    pub fn from_image(image: Vec<u8>) -> Self {
        let mut d = MemDisk::new(0);
        d.durable = image.clone();
        d.current = image;
        d
    }

    /// Power fails during the `n`-th write from now (0 = the next one): only
    /// its first `torn_sectors` sectors reach the disk, and the device fails
    /// every request after it.
    pub fn fail_after(&mut self, n: u64, torn_sectors: usize) {
        self.fail_after = Some(n);
        self.torn_sectors = torn_sectors;
    }

    /// Power fails at the next flush: the writes before it stay pending.
    pub fn fail_at_flush(&mut self) {
        self.fail_flush = true;
    }

    /// Whether the simulated power failure has happened.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The image a power loss leaves now, with `keep(write, sector)` choosing
    /// which sectors of each write since the last flush reached the medium.
    pub fn crash_image(&self, mut keep: impl FnMut(usize, usize) -> bool) -> Vec<u8> {
        let mut img = self.durable.clone();
        for (i, (lba, data)) in self.pending.iter().enumerate() {
            for (s, sector) in data.chunks(BLOCK).enumerate() {
                if keep(i, s) {
                    let at = (*lba as usize + s) * BLOCK;
                    img[at..at + BLOCK].copy_from_slice(sector);
                }
            }
        }
        img
    }

    /// Writes since the last flush.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// The image as reads see it (every write landed).
    pub fn image(&self) -> &[u8] {
        &self.current
    }
}

impl BlockDevice for MemDisk {
    fn sectors(&self) -> u64 {
        (self.current.len() / BLOCK) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error> {
        check(self.sectors(), lba, buf.len())?;
        let at = lba as usize * BLOCK;
        buf.copy_from_slice(&self.current[at..at + buf.len()]);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error> {
        if self.dead {
            return Err(Error::Io);
        }
        check(self.sectors(), lba, buf.len())?;
        let at = lba as usize * BLOCK;
        let mut data = buf;
        if let Some(n) = self.fail_after {
            if n == 0 {
                self.dead = true;
                let keep = (self.torn_sectors * BLOCK).min(buf.len());
                data = &buf[..keep];
            } else {
                self.fail_after = Some(n - 1);
            }
        }
        self.current[at..at + data.len()].copy_from_slice(data);
        self.pending.push((lba, data.to_vec()));
        self.writes += 1;
        if self.dead {
            Err(Error::Io)
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.fail_flush {
            self.dead = true;
        }
        if self.dead {
            return Err(Error::Io);
        }
        for (lba, data) in self.pending.drain(..) {
            let at = lba as usize * BLOCK;
            self.durable[at..at + data.len()].copy_from_slice(&data);
        }
        self.flushes += 1;
        Ok(())
    }
}

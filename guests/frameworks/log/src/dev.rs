//! The raw block device the log owns.
//!
//! `BlockDevice` is the shape of `hallows-blockdev`'s trait (512-byte blocks,
//! buffers a whole number of blocks, `flush` is the durability barrier).
//! `MemDisk` keeps every write since the last flush so tests can build the
//! images a power loss could leave; `FileDisk` (feature `std`) is a file whose
//! `flush` is `fdatasync`.

use alloc::vec;
use alloc::vec::Vec;

/// Bytes in a block: the unit of every transfer and of atomicity.
pub const BLOCK: usize = 512;

/// What a device can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The transfer runs past the end of the device.
    OutOfRange,
    /// The buffer is not a whole number of blocks.
    Unaligned,
    /// The device reported an I/O error (or, simulated, lost power).
    Io,
}

/// A raw block device.
pub trait BlockDevice {
    /// Bytes per block (512).
    fn block_size(&self) -> usize {
        BLOCK
    }
    /// Blocks on the device.
    fn blocks(&self) -> u64;
    /// Reads `buf.len() / BLOCK` blocks starting at `lba`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Writes `buf.len() / BLOCK` blocks starting at `lba`; durable only after `flush`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), Error>;
}

fn check(blocks: u64, lba: u64, len: usize) -> Result<(), Error> {
    if !len.is_multiple_of(BLOCK) {
        return Err(Error::Unaligned);
    }
    let n = (len / BLOCK) as u64;
    if lba.checked_add(n).is_none_or(|end| end > blocks) {
        return Err(Error::OutOfRange);
    }
    Ok(())
}

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
    fn blocks(&self) -> u64 {
        (self.current.len() / BLOCK) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error> {
        check(self.blocks(), lba, buf.len())?;
        let at = lba as usize * BLOCK;
        buf.copy_from_slice(&self.current[at..at + buf.len()]);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error> {
        if self.dead {
            return Err(Error::Io);
        }
        check(self.blocks(), lba, buf.len())?;
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

/// A file used as a disk (host harness, benchmarks).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct FileDisk {
    file: std::fs::File,
    blocks: u64,
}

#[cfg(feature = "std")]
impl FileDisk {
    /// Opens (creating and sizing if needed) `path` as a disk of `bytes`.
    pub fn open(path: &std::path::Path, bytes: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < bytes {
            file.set_len(bytes)?;
        }
        let blocks = len.max(bytes) / BLOCK as u64;
        Ok(FileDisk { file, blocks })
    }
}

#[cfg(feature = "std")]
impl BlockDevice for FileDisk {
    fn blocks(&self) -> u64 {
        self.blocks
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        check(self.blocks, lba, buf.len())?;
        self.file.read_exact_at(buf, lba * BLOCK as u64).map_err(|_| Error::Io)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        check(self.blocks, lba, buf.len())?;
        self.file.write_all_at(buf, lba * BLOCK as u64).map_err(|_| Error::Io)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.file.sync_data().map_err(|_| Error::Io)
    }
}

//! Block devices: the contract between a driver (virtio-blk in a
//! partition, a file on the host) and a storage engine.
//!
//! * [`BlockDevice`]: fixed-size sectors read and written by number, and a
//!   `flush` that returns once every completed write is durable. A write
//!   that completed but was not flushed may be lost, or (power loss in the
//!   middle) persisted in part: any subset of its sectors, in any order.
//!   A single sector is written whole or not at all (the atomic unit of
//!   virtio-blk and of disks with power-loss protection); engines must not
//!   depend on more. `flush_start` and `flush_wait` split a flush so that
//!   the next writes can be prepared while it runs.
//! * [`MemDisk`]: a disk in memory that keeps every write since the last
//!   flush, so a test can ask for the images a power loss at that moment
//!   could leave ([`MemDisk::crash_image`]): each unflushed sector write
//!   kept or dropped at random, and (optionally) sectors torn inside.
//! * [`FileDisk`] (feature `std`): a host file, written by a thread of its
//!   own as a device writes (the caller goes on meanwhile); `flush` is
//!   `fdatasync` after every write so far, `flush_start`/`flush_wait` its
//!   two halves.
//! * [`crc32c`]: the checksum the engines' on-disk formats use, with the
//!   CPU's CRC-32C instruction where there is one (the crate's only `unsafe`).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod crc32c;

use alloc::vec;
use alloc::vec::Vec;

/// Bytes per sector of every device here (virtio-blk's unit).
pub const SECTOR: usize = 512;

/// A device error. Engines treat every one as fatal for writes: the
/// device's state after a failed write is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The range runs past the end of the device.
    OutOfRange,
    /// A buffer that is not a whole number of sectors.
    Unaligned,
    /// The device failed the request.
    Io,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::OutOfRange => "request past the end of the device",
            Error::Unaligned => "buffer is not a whole number of sectors",
            Error::Io => "device I/O error",
        })
    }
}

/// A block device of [`SECTOR`]-byte sectors.
pub trait BlockDevice {
    /// Sectors on the device.
    fn sectors(&self) -> u64;
    /// Reads `buf.len() / SECTOR` sectors from sector `lba`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Writes `buf.len() / SECTOR` sectors at sector `lba`. Completed, not
    /// yet durable: see [`BlockDevice::flush`].
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error>;
    /// Returns once every completed write is durable.
    fn flush(&mut self) -> Result<(), Error>;
    /// [`BlockDevice::write`] of `buf`, which the device may take instead
    /// of copying it: on `Ok`, `buf` is left empty (and may be another
    /// buffer, to reuse); on `Err` it is untouched. The default writes and
    /// clears it.
    fn write_owned(&mut self, lba: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.write(lba, buf)?;
        buf.clear();
        Ok(())
    }
    /// Starts making every write completed so far durable and returns at
    /// once with a ticket for [`BlockDevice::flush_wait`]. Writes and more
    /// flushes may be started meanwhile (those writes are not covered by
    /// it); flushes complete in the order they were started. A device that
    /// cannot flush in the background flushes here (the default).
    fn flush_start(&mut self) -> Result<u64, Error> {
        self.flush()?;
        Ok(0)
    }
    /// Waits for the flush of `ticket` (and every one started before it):
    /// when this returns `Ok`, every write completed before it started is
    /// durable.
    fn flush_wait(&mut self, ticket: u64) -> Result<(), Error> {
        let _ = ticket;
        Ok(())
    }
}

/// Checks a request: whole sectors, inside a device of `sectors`.
pub fn check(sectors: u64, lba: u64, len: usize) -> Result<(), Error> {
    if !len.is_multiple_of(SECTOR) {
        return Err(Error::Unaligned);
    }
    let n = (len / SECTOR) as u64;
    match lba.checked_add(n) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(Error::OutOfRange),
    }
}

/// A small deterministic generator (SplitMix64) for crash images.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// How a simulated power loss treats unflushed writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Each unflushed sector write is kept or lost, independently.
    Sectors,
    /// As `Sectors`, and a kept sector may be torn: a prefix of it new,
    /// the rest old (a device without atomic sector writes).
    TornSectors,
    /// Every unflushed write is kept (the process died, the host did not:
    /// what killing an emulator leaves behind).
    None,
}

/// An in-memory disk that simulates power loss. See the crate docs.
#[derive(Clone, Debug)]
pub struct MemDisk {
    /// What the device holds now (reads see it).
    now: Vec<u8>,
    /// What survives a power loss for certain (as of the last flush).
    durable: Vec<u8>,
    /// Sector writes since the last flush, in order: (sector, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    /// Counters.
    pub writes: u64,
    pub flushes: u64,
    /// Fail every write and flush after this many more writes (I/O errors).
    fail_after: Option<u64>,
}

impl MemDisk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: u64) -> Self {
        let bytes = vec![0u8; sectors as usize * SECTOR];
        MemDisk {
            now: bytes.clone(),
            durable: bytes,
            pending: Vec::new(),
            writes: 0,
            flushes: 0,
            fail_after: None,
        }
    }

    /// A disk holding `image` (a whole number of sectors), all durable.
    pub fn from_image(image: Vec<u8>) -> Self {
        assert!(
            image.len().is_multiple_of(SECTOR),
            "image of {} bytes is not whole sectors",
            image.len()
        );
        MemDisk {
            now: image.clone(),
            durable: image,
            pending: Vec::new(),
            writes: 0,
            flushes: 0,
            fail_after: None,
        }
    }

    /// The bytes as they are now.
    pub fn image(&self) -> &[u8] {
        &self.now
    }

    /// Mutable bytes (corruption tests), durable at once.
    pub fn corrupt(&mut self, offset: usize, xor: u8) {
        self.now[offset] ^= xor;
        self.durable[offset] ^= xor;
    }

    /// Sector writes not yet flushed.
    pub fn unflushed(&self) -> usize {
        self.pending.len()
    }

    /// Writes and flushes fail with `Error::Io` after `n` more writes.
    pub fn fail_after(&mut self, n: Option<u64>) {
        self.fail_after = n;
    }

    /// An image that a power loss now could leave, chosen by `rng`.
    pub fn crash_image(&self, loss: Loss, rng: &mut Rng) -> Vec<u8> {
        if loss == Loss::None {
            return self.now.clone();
        }
        let mut img = self.durable.clone();
        for (lba, data) in &self.pending {
            if rng.below(2) == 0 {
                continue;
            }
            let at = *lba as usize * SECTOR;
            if loss == Loss::TornSectors && rng.below(4) == 0 {
                let cut = rng.below(SECTOR as u64) as usize;
                img[at..at + cut].copy_from_slice(&data[..cut]);
            } else {
                img[at..at + SECTOR].copy_from_slice(data);
            }
        }
        img
    }

    /// The image a power loss leaves when exactly the first `keep` of the
    /// unflushed sector writes reached the media (in issue order).
    pub fn crash_prefix(&self, keep: usize) -> Vec<u8> {
        let mut img = self.durable.clone();
        for (lba, data) in self.pending.iter().take(keep) {
            let at = *lba as usize * SECTOR;
            img[at..at + SECTOR].copy_from_slice(data);
        }
        img
    }

    fn tick(&mut self) -> Result<(), Error> {
        match self.fail_after {
            Some(0) => Err(Error::Io),
            Some(n) => {
                self.fail_after = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl BlockDevice for MemDisk {
    fn sectors(&self) -> u64 {
        (self.now.len() / SECTOR) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error> {
        check(self.sectors(), lba, buf.len())?;
        let at = lba as usize * SECTOR;
        buf.copy_from_slice(&self.now[at..at + buf.len()]);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error> {
        check(self.sectors(), lba, buf.len())?;
        self.tick()?;
        self.writes += 1;
        let at = lba as usize * SECTOR;
        self.now[at..at + buf.len()].copy_from_slice(buf);
        for (i, s) in buf.chunks(SECTOR).enumerate() {
            self.pending.push((lba + i as u64, s.to_vec()));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.fail_after == Some(0) {
            return Err(Error::Io);
        }
        self.flushes += 1;
        self.durable.copy_from_slice(&self.now);
        self.pending.clear();
        Ok(())
    }
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error> {
        (**self).read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error> {
        (**self).write(lba, buf)
    }
    fn flush(&mut self) -> Result<(), Error> {
        (**self).flush()
    }
    fn write_owned(&mut self, lba: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        (**self).write_owned(lba, buf)
    }
    fn flush_start(&mut self) -> Result<u64, Error> {
        (**self).flush_start()
    }
    fn flush_wait(&mut self, ticket: u64) -> Result<(), Error> {
        (**self).flush_wait(ticket)
    }
}

#[cfg(feature = "std")]
mod file {
    use super::{check, BlockDevice, Error, SECTOR};
    use std::collections::VecDeque;
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    use std::thread::JoinHandle;

    /// Bytes of writes queued before `write` waits for the writer thread.
    const QUEUE_BYTES: usize = 8 << 20;

    /// A disk in a host file of a whole number of sectors, asynchronous like
    /// a real device: `write` queues a copy of the data for a writer thread
    /// (`pwrite`, in order) and returns (`write_owned` queues the buffer
    /// itself); `flush_start` queues an `fdatasync` after every write so
    /// far, which a second thread runs once the writes before it are done
    /// while the writer goes on with the next ones, and `flush_wait` waits
    /// for it; `flush` is both; `read` waits until the queue is empty. A failed
    /// `pwrite` or `fdatasync` fails every later request (and no flush
    /// after it reports success).
    #[derive(Debug)]
    pub struct FileDisk {
        file: Arc<File>,
        sectors: u64,
        shared: Arc<(Mutex<Queue>, Condvar)>,
        writer: Option<JoinHandle<()>>,
        syncer: Option<JoinHandle<()>>,
        /// Flushes started so far.
        started: u64,
    }

    #[derive(Debug)]
    enum Job {
        Write(u64, Vec<u8>),
        Sync(u64),
        Exit,
    }

    #[derive(Debug, Default)]
    struct Queue {
        jobs: VecDeque<Job>,
        bytes: usize,
        /// The writer is carrying out a job it took.
        busy: bool,
        failed: bool,
        /// The last flush done.
        synced: u64,
        /// The last flush whose writes are all done (the syncer's next
        /// `fdatasync` covers it).
        sync_asked: u64,
        /// The writer has stopped (the syncer stops too).
        exited: bool,
        /// Buffers to reuse.
        spare: Vec<Vec<u8>>,
    }

    impl FileDisk {
        /// Opens `path`, creating it with `bytes` (rounded down to whole
        /// sectors) when it does not exist or is smaller.
        pub fn open(path: &Path, bytes: u64) -> std::io::Result<Self> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            let want = bytes / SECTOR as u64 * SECTOR as u64;
            if file.metadata()?.len() < want {
                file.set_len(want)?;
            }
            let sectors = file.metadata()?.len() / SECTOR as u64;
            let file = Arc::new(file);
            let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
            let (f, q) = (file.clone(), shared.clone());
            let writer = std::thread::Builder::new()
                .name("filedisk".into())
                .spawn(move || writer(&f, &q))?;
            let (f, q) = (file.clone(), shared.clone());
            let syncer = std::thread::Builder::new()
                .name("filedisk-sync".into())
                .spawn(move || syncer(&f, &q))?;
            Ok(FileDisk {
                file,
                sectors,
                shared,
                writer: Some(writer),
                syncer: Some(syncer),
                started: 0,
            })
        }

        fn queue(&self) -> MutexGuard<'_, Queue> {
            self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Waits until `done` holds of the queue, or the device failed.
        fn wait_for(&self, done: impl Fn(&Queue) -> bool) -> Result<MutexGuard<'_, Queue>, Error> {
            let mut q = self.queue();
            while !q.failed && !done(&q) {
                q = self.shared.1.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.failed {
                return Err(Error::Io);
            }
            Ok(q)
        }

        fn push(&self, mut q: MutexGuard<'_, Queue>, job: Job) {
            if let Job::Write(_, b) = &job {
                q.bytes += b.len();
            }
            q.jobs.push_back(job);
            drop(q);
            self.shared.1.notify_all();
        }
    }

    fn writer(file: &File, shared: &(Mutex<Queue>, Condvar)) {
        let lock = || shared.0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let mut q = lock();
            let job = loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                q = shared.1.wait(q).unwrap_or_else(|e| e.into_inner());
            };
            q.busy = true;
            let failed = q.failed;
            drop(q);
            let (ok, back, synced) = match job {
                Job::Exit => {
                    lock().exited = true;
                    shared.1.notify_all();
                    return;
                }
                Job::Write(_, b) if failed => (false, Some(b), None),
                Job::Write(at, b) => (file.write_all_at(&b, at).is_ok(), Some(b), None),
                // Every write before it is done: the syncer takes it from
                // here, and the writer goes on.
                Job::Sync(n) => (true, None, Some(n)),
            };
            let mut q = lock();
            q.busy = false;
            q.failed |= !ok;
            if let Some(b) = back {
                q.bytes -= b.len();
                if q.spare.len() < 4 {
                    q.spare.push(b);
                }
            }
            if let Some(n) = synced {
                q.sync_asked = n;
            }
            drop(q);
            shared.1.notify_all();
        }
    }

    /// Runs the `fdatasync`s the writer hands over, the latest asked for
    /// each time (one covers every write done before it).
    fn syncer(file: &File, shared: &(Mutex<Queue>, Condvar)) {
        let lock = || shared.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut q = lock();
        loop {
            while q.sync_asked <= q.synced && !q.exited {
                q = shared.1.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.sync_asked <= q.synced {
                return;
            }
            let (n, failed) = (q.sync_asked, q.failed);
            drop(q);
            let ok = !failed && file.sync_data().is_ok();
            q = lock();
            // Done either way; after a failure nothing waits for it
            // successfully (`failed` is checked first).
            q.synced = n;
            q.failed |= !ok;
            shared.1.notify_all();
        }
    }

    impl BlockDevice for FileDisk {
        fn sectors(&self) -> u64 {
            self.sectors
        }
        fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Error> {
            check(self.sectors, lba, buf.len())?;
            drop(self.wait_for(|q| q.jobs.is_empty() && !q.busy)?);
            self.file
                .read_exact_at(buf, lba * SECTOR as u64)
                .map_err(|_| Error::Io)
        }
        fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Error> {
            check(self.sectors, lba, buf.len())?;
            let mut q = self.wait_for(|q| q.bytes < QUEUE_BYTES)?;
            let mut b = q.spare.pop().unwrap_or_default();
            drop(q);
            b.clear();
            b.extend_from_slice(buf);
            q = self.queue();
            self.push(q, Job::Write(lba * SECTOR as u64, b));
            Ok(())
        }
        fn write_owned(&mut self, lba: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
            check(self.sectors, lba, buf.len())?;
            let mut q = self.wait_for(|q| q.bytes < QUEUE_BYTES)?;
            let mut spare = q.spare.pop().unwrap_or_default();
            spare.clear();
            let b = std::mem::replace(buf, spare);
            self.push(q, Job::Write(lba * SECTOR as u64, b));
            Ok(())
        }
        fn flush(&mut self) -> Result<(), Error> {
            let t = self.flush_start()?;
            self.flush_wait(t)
        }
        fn flush_start(&mut self) -> Result<u64, Error> {
            let n = self.started + 1;
            let q = self.wait_for(|_| true)?;
            self.push(q, Job::Sync(n));
            self.started = n;
            Ok(n)
        }
        fn flush_wait(&mut self, ticket: u64) -> Result<(), Error> {
            drop(self.wait_for(|q| q.synced >= ticket)?);
            Ok(())
        }
    }

    impl Drop for FileDisk {
        fn drop(&mut self) {
            let mut q = self.queue();
            q.jobs.push_back(Job::Exit);
            drop(q);
            self.shared.1.notify_all();
            if let Some(w) = self.writer.take() {
                let _ = w.join();
            }
            if let Some(s) = self.syncer.take() {
                let _ = s.join();
            }
        }
    }
}

#[cfg(feature = "std")]
pub use file::FileDisk;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let mut d = MemDisk::new(4);
        let mut b = [0u8; SECTOR];
        assert_eq!(d.read(4, &mut b), Err(Error::OutOfRange));
        assert_eq!(d.read(u64::MAX, &mut b), Err(Error::OutOfRange));
        assert_eq!(d.write(0, &b[..100]), Err(Error::Unaligned));
        assert_eq!(d.write(3, &[1u8; 2 * SECTOR]), Err(Error::OutOfRange));
        d.write(3, &[1u8; SECTOR]).unwrap();
        d.read(3, &mut b).unwrap();
        assert_eq!(b, [1u8; SECTOR]);
    }

    #[test]
    fn a_power_loss_keeps_what_was_flushed_and_any_subset_of_the_rest() {
        let mut d = MemDisk::new(8);
        d.write(0, &[1u8; 2 * SECTOR]).unwrap();
        d.flush().unwrap();
        d.write(0, &[2u8; 4 * SECTOR]).unwrap();
        let mut seen_old = false;
        let mut seen_new = false;
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let img = d.crash_image(Loss::Sectors, &mut rng);
            for s in 0..4 {
                let sec = &img[s * SECTOR..(s + 1) * SECTOR];
                let old = if s < 2 { 1 } else { 0 };
                assert!(sec.iter().all(|&b| b == old) || sec.iter().all(|&b| b == 2));
                seen_old |= sec[0] == old;
                seen_new |= sec[0] == 2;
            }
        }
        assert!(seen_old && seen_new);
        assert_eq!(d.crash_prefix(1)[..SECTOR], [2u8; SECTOR]);
        assert_eq!(d.crash_prefix(1)[SECTOR..2 * SECTOR], [1u8; SECTOR]);
        assert_eq!(d.crash_image(Loss::None, &mut rng), d.image());
    }

    #[test]
    fn torn_sectors_mix_old_and_new_bytes() {
        let mut d = MemDisk::new(1);
        d.write(0, &[9u8; SECTOR]).unwrap();
        let mut rng = Rng::new(1);
        let torn = (0..500)
            .map(|_| d.crash_image(Loss::TornSectors, &mut rng))
            .any(|img| img[0] == 9 && img[SECTOR - 1] == 0);
        assert!(torn);
    }

    #[test]
    fn injected_failures() {
        let mut d = MemDisk::new(2);
        d.fail_after(Some(1));
        d.write(0, &[1u8; SECTOR]).unwrap();
        assert_eq!(d.write(1, &[1u8; SECTOR]), Err(Error::Io));
        assert_eq!(d.flush(), Err(Error::Io));
    }

    #[cfg(feature = "std")]
    #[test]
    fn file_disk_round_trip() {
        let path =
            std::env::temp_dir().join(format!("hallows-blockdev-{}.img", std::process::id()));
        let mut d = FileDisk::open(&path, 4 * SECTOR as u64 + 100).unwrap();
        assert_eq!(d.sectors(), 4);
        d.write(2, &[5u8; SECTOR]).unwrap();
        d.flush().unwrap();
        let mut b = [0u8; SECTOR];
        d.read(2, &mut b).unwrap();
        assert_eq!(b, [5u8; SECTOR]);
        // Writes land in order (the last of two to one sector wins), a
        // background flush, writes meanwhile, and its wait.
        let mut owned = vec![9u8; 3 * SECTOR];
        d.write_owned(1, &mut owned).unwrap();
        assert!(owned.is_empty());
        d.write(1, &[6u8; SECTOR]).unwrap();
        let first = d.flush_start().unwrap();
        d.write(3, &[7u8; SECTOR]).unwrap();
        let second = d.flush_start().unwrap();
        assert!(second > first);
        d.flush_wait(first).unwrap();
        d.flush_wait(second).unwrap();
        let mut all = [0u8; 4 * SECTOR];
        d.read(0, &mut all).unwrap();
        assert_eq!(
            (all[0], all[SECTOR], all[2 * SECTOR], all[3 * SECTOR]),
            (0, 6, 9, 7)
        );
        std::fs::remove_file(path).unwrap();
    }
}

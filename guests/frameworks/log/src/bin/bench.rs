//! `hallows-log-bench`: the log engine's flushed append throughput against
//! the raw sequential write throughput of the same file (the physical
//! limit), at the same flush cadence. `make bench-log`.
//!
//! ```text
//! hallows-log-bench [--file target/hallows/log-bench.img] [--mib 256] [--flush-kib 1024]
//! ```
//! Each batch is a RecordBatch v2 of 16 records of 100 bytes (CRC-32C
//! checked on append, as a produce request's would be).

use hallows_log::batch;
use hallows_log::dev::FileDisk;
use hallows_log::engine::TopicConfig;
use hallows_log::{Log, LogConfig};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut file = PathBuf::from("target/hallows/log-bench.img");
    let mut mib = 256u64;
    let mut flush_kib = 1024u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--file" => file = PathBuf::from(v),
            "--mib" => mib = v.parse().expect("--mib N"),
            "--flush-kib" => flush_kib = v.parse().expect("--flush-kib N"),
            _ => panic!("unknown argument {a}"),
        }
    }
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d).expect("bench dir");
    }
    let vals: Vec<Vec<u8>> = (0..16).map(|i| format!("{i:>100}").into_bytes()).collect();
    let kv: Vec<batch::KeyValue> = vals.iter().map(|v| (None, Some(&v[..]))).collect();
    let one = batch::encode(0, 1_700_000_000_000, &kv);
    let total = mib << 20;
    let flush_every = flush_kib << 10;
    let batches = total / (one.len() as u64 + 8);
    let payload = batches * (one.len() as u64 + 8);

    // Five rounds, raw and engine alternating (the disk is shared and
    // noisy); the best of each is reported.
    let (mut raws, mut engs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        // Raw: the same bytes, written sequentially in the engine's write unit
        // (the flush interval), fdatasync after each.
        let _ = std::fs::remove_file(&file);
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&file).expect("bench file");
        f.set_len(total + (64 << 20)).expect("sizing");
        let chunk = vec![0x5au8; flush_every as usize];
        let t = Instant::now();
        let mut at = 0u64;
        while at < payload {
            let n = (payload - at).min(flush_every) as usize;
            f.write_all_at(&chunk[..n], at).expect("write");
            f.sync_data().expect("fdatasync");
            at += n as u64;
        }
        raws.push(t.elapsed().as_secs_f64());
        drop(f);

        // The engine on the same file, freshly formatted.
        let _ = std::fs::remove_file(&file);
        let dev = FileDisk::open(&file, total + (64 << 20)).expect("bench disk");
        let mut log = Log::open(dev, LogConfig::default()).expect("open");
        log.create_topic("bench", 1, TopicConfig::default(), 0).expect("topic");
        let t = Instant::now();
        let mut since = 0u64;
        for _ in 0..batches {
            log.append("bench", 0, &one).expect("append");
            since += one.len() as u64 + 8;
            if since >= flush_every {
                log.flush().expect("flush");
                since = 0;
            }
        }
        log.flush().expect("flush");
        engs.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&file);
    }
    raws.sort_by(f64::total_cmp);
    engs.sort_by(f64::total_cmp);
    let (raw, eng) = (raws[0], engs[0]);
    let mb = payload as f64 / 1e6;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{} MiB in {batches} batches of 16 x 100-byte records ({} bytes each), fdatasync every {flush_kib} KiB", payload >> 20, one.len());
    let _ = writeln!(out, "raw sequential write: {:.1} MB/s", mb / raw);
    let _ = writeln!(out, "engine append+flush:  {:.1} MB/s, {:.0} batches/s, {:.0} records/s", mb / eng, batches as f64 / eng, 16.0 * batches as f64 / eng);
    let _ = writeln!(out, "engine / raw: {:.1} %", 100.0 * raw / eng);
    // The engine's CPU cost alone: the same appends on a device that
    // discards writes.
    let mut log = Log::open(NullDisk(total + (64 << 20)), LogConfig::default()).expect("open");
    log.create_topic("bench", 1, TopicConfig::default(), 0).expect("topic");
    let t = Instant::now();
    for _ in 0..batches {
        log.append("bench", 0, &one).expect("append");
    }
    log.flush().expect("flush");
    let cpu = t.elapsed().as_secs_f64();
    let _ = writeln!(out, "engine CPU alone (null device): {:.1} MB/s", mb / cpu);
    let buf = vec![7u8; 1 << 20];
    let t = Instant::now();
    let mut c = 0;
    for _ in 0..128 {
        c ^= hallows_log::crc32c::crc32c(&buf);
    }
    let _ = writeln!(out, "CRC-32C alone: {:.1} MB/s ({c:x})", 134.2 / t.elapsed().as_secs_f64());
}

/// A device that reads zeros and discards writes.
struct NullDisk(u64);

impl hallows_log::BlockDevice for NullDisk {
    fn sectors(&self) -> u64 {
        self.0 / 512
    }
    fn read(&mut self, _lba: u64, buf: &mut [u8]) -> Result<(), hallows_log::dev::Error> {
        buf.fill(0);
        Ok(())
    }
    fn write(&mut self, _lba: u64, _buf: &[u8]) -> Result<(), hallows_log::dev::Error> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), hallows_log::dev::Error> {
        Ok(())
    }
}

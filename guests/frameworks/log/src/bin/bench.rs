//! `hallows-log-bench`: the log engine's flushed append throughput against
//! the raw sequential write throughput of the same file (the physical
//! limit). `make bench-log`; method and figures in docs/log.md.
//!
//! ```text
//! hallows-log-bench [--file target/hallows/log-bench.img] [--mib 32] [--flush-kib 1024]
//!                   [--rounds 41] [--sparse] [--segment-kib 1024]
//! ```
//!
//! * Both sides write the same frames (an 8-byte frame header and a
//!   RecordBatch v2 of 16 records of 100 bytes, 1,813 bytes a frame), in
//!   order, to a fresh file of the same size, and make them durable at the
//!   same points: after the frame that completes each `--flush-kib` of
//!   frames, and at the end. Each round writes `--mib` per side.
//! * **raw**: the frames, laid out in advance, written with one `pwrite`
//!   per flush interval. **engine**: `Log::append` of each batch (CRC-32C
//!   checked, offset assigned, framed into the segment's buffer), a flush
//!   every `--flush-kib`.
//! * raw, two ways, each round: serial (`pwrite` an interval, `fdatasync`,
//!   the next; the device operations the engine issues, back to back) and
//!   overlapped (`pwrite` interval k+1 while the `fdatasync` of k runs on a
//!   thread); raw is the faster of the two ways by their medians over all
//!   rounds (taking the faster of the two in each round would give raw the
//!   better of two noisy samples against one of the engine's: a bias of
//!   several percent on this disk, whose speed moves by tens of percent
//!   from one run to the next). The engine too, two ways, each round:
//!   serial (`Log::flush` waits for each flush) and overlapped
//!   (`Log::flush_start`: appends go on while `FileDisk` writes and syncs
//!   on threads of its own), and it too is the faster way by its median.
//! * The file: by default every block is written (zeros) and synced before
//!   the clock starts, as on a block device, so `fdatasync` writes data
//!   only; `--sparse` starts from a sparse file (the file system allocates
//!   blocks as they are first written, and every `fdatasync` commits that).
//! * Many short rounds rotate which run goes first (the disk is shared and
//!   its speed moves by several times within seconds); the figure of record
//!   is the median of the rounds' own ratios (each round's engine run
//!   against its raw run of the same round, minutes apart at most: a
//!   paired comparison that the disk's drift between rounds does not
//!   move), with the medians and ranges of each side and the ratio of the
//!   medians also printed.
//! * `--segment-kib`: the engine's segment size (default the engine's
//!   default, 1 MiB, a segment roll every flush interval).
//! * Also printed: raw with one `fdatasync` at the end only (the device's
//!   sequential write rate, no flush cadence), the engine on a device that
//!   discards writes (its CPU cost alone), and CRC-32C alone.

use hallows_log::batch;
use hallows_log::dev::FileDisk;
use hallows_log::engine::{TopicConfig, FRAME};
use hallows_log::{Log, LogConfig};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Opts {
    file: PathBuf,
    mib: u64,
    flush_kib: u64,
    rounds: usize,
    sparse: bool,
    segment_kib: u32,
}

fn main() {
    let mut o = Opts {
        file: PathBuf::from("target/hallows/log-bench.img"),
        mib: 32,
        flush_kib: 1024,
        rounds: 41,
        sparse: false,
        segment_kib: LogConfig::default().segment_bytes >> 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |what: &str| args.next().unwrap_or_else(|| panic!("{a} needs {what}"));
        match a.as_str() {
            "--file" => o.file = PathBuf::from(val("a path")),
            "--mib" => o.mib = val("N").parse().expect("--mib N"),
            "--flush-kib" => o.flush_kib = val("N").parse().expect("--flush-kib N"),
            "--rounds" => o.rounds = val("N").parse().expect("--rounds N"),
            "--sparse" => o.sparse = true,
            "--segment-kib" => o.segment_kib = val("N").parse().expect("--segment-kib N"),
            _ => panic!("unknown argument {a} (see the doc comment of guests/frameworks/log/src/bin/bench.rs)"),
        }
    }
    if let Some(d) = o.file.parent() {
        std::fs::create_dir_all(d).expect("bench dir");
    }
    let vals: Vec<Vec<u8>> = (0..16).map(|i| format!("{i:>100}").into_bytes()).collect();
    let kv: Vec<batch::KeyValue> = vals.iter().map(|v| (None, Some(&v[..]))).collect();
    let one = batch::encode(0, 1_700_000_000_000, &kv);
    let frame_len = (FRAME + one.len()) as u64;
    let batches = (o.mib << 20) / frame_len;
    let payload = batches * frame_len;
    let file_bytes = (o.mib << 20) + (16 << 20) + 2 * (u64::from(o.segment_kib) << 10);
    let flush_every = o.flush_kib << 10;
    // The raw side's bytes: the same frames, back to back.
    let mut frames = Vec::with_capacity(payload as usize);
    for _ in 0..batches {
        frames.extend_from_slice(&(one.len() as u32).to_le_bytes());
        frames.extend_from_slice(&[0; 4]);
        frames.extend_from_slice(&one);
    }

    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{:.1} MiB in {batches} frames of {frame_len} bytes (16 x 100-byte records), made durable every {} KiB; {} file, {} rounds",
        payload as f64 / (1 << 20) as f64,
        o.flush_kib,
        if o.sparse { "sparse" } else { "pre-written" },
        o.rounds
    );
    // Per round: raw serial, raw overlapped, engine serial, engine overlapped.
    let mut runs: [Vec<f64>; 4] = Default::default();
    let mut finals = Vec::new();
    let mb = payload as f64 / 1e6;
    for round in 0..o.rounds {
        // Four runs a round, in an order that rotates.
        let mut t = [0f64; 4];
        for k in 0..4 {
            let which = (round + k) % 4;
            t[which] = match which {
                0 => raw(&o, &frames, frame_len, file_bytes, flush_every, true),
                1 => raw(&o, &frames, frame_len, file_bytes, flush_every, false),
                2 => engine(&o, &one, batches, file_bytes, flush_every, true),
                _ => engine(&o, &one, batches, file_bytes, flush_every, false),
            };
        }
        let f = raw(&o, &frames, frame_len, file_bytes, u64::MAX, true);
        let _ = writeln!(
            out,
            "round {}: raw serial {:.1}, overlapped {:.1} MB/s; engine serial {:.1}, overlapped {:.1} MB/s; raw with one final fdatasync {:.1} MB/s",
            round + 1,
            mb / t[0],
            mb / t[1],
            mb / t[2],
            mb / t[3],
            mb / f
        );
        for (r, x) in runs.iter_mut().zip(t) {
            r.push(mb / x);
        }
        finals.push(mb / f);
    }
    // Each side: the faster way by its median over the rounds.
    let names = ["raw, serial", "raw, overlapped", "engine, serial", "engine, overlapped"];
    for (n, r) in names.iter().zip(&runs) {
        let _ = writeln!(out, "{n:<22}  {}", summary(&mut r.clone(), "MB/s"));
    }
    let pick = |a: usize| if median(&runs[a + 1]) >= median(&runs[a]) { a + 1 } else { a };
    let (ri, ei) = (pick(0), pick(2));
    let mut raws = runs[ri].clone();
    let mut engs = runs[ei].clone();
    let mut ratios: Vec<f64> = engs.iter().zip(&raws).map(|(e, r)| 100.0 * e / r).collect();
    let _ = writeln!(out, "raw: {}; engine: {} (each the faster way by its median)", names[ri], names[ei]);
    let _ = writeln!(out, "raw sequential write:  {}", summary(&mut raws, "MB/s"));
    let _ = writeln!(out, "engine append+flush:   {}", summary(&mut engs, "MB/s"));
    let e = median(&engs);
    let _ = writeln!(
        out,
        "engine (median):       {:.0} batches/s, {:.0} records/s",
        e * 1e6 / frame_len as f64,
        16.0 * e * 1e6 / frame_len as f64
    );
    let _ = writeln!(out, "engine / raw, by round: {} <- the figure of record", summary(&mut ratios, "%"));
    let _ = writeln!(
        out,
        "engine / raw, medians:  {:.1} %",
        100.0 * median(&engs) / median(&raws)
    );
    let _ = writeln!(
        out,
        "raw, one final fdatasync: {}; engine / that: {:.1} %",
        summary(&mut finals, "MB/s"),
        100.0 * e / median(&finals)
    );

    // The engine's CPU cost alone: the same appends on a device that
    // discards writes.
    let mut log = Log::open(NullDisk(file_bytes), LogConfig { segment_bytes: o.segment_kib << 10, ..LogConfig::default() }).expect("open");
    log.create_topic("bench", 1, TopicConfig::default(), 0)
        .expect("topic");
    let t = Instant::now();
    for _ in 0..batches {
        log.append("bench", 0, &one).expect("append");
    }
    log.flush().expect("flush");
    let cpu = t.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "engine CPU alone (null device): {:.1} MB/s",
        payload as f64 / 1e6 / cpu
    );
    let buf = vec![7u8; 1 << 20];
    for (name, f) in [
        (
            "CRC-32C",
            hallows_log::crc32c::update as fn(u32, &[u8]) -> u32,
        ),
        ("CRC-32C in software", hallows_log::crc32c::update_software),
    ] {
        let t = Instant::now();
        let mut c = 0;
        for _ in 0..128 {
            c = f(c, &buf);
        }
        let _ = writeln!(
            out,
            "{name} alone: {:.1} MB/s ({c:08x})",
            128.0 * (1 << 20) as f64 / 1e6 / t.elapsed().as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "CRC-32C instruction in use: {}",
        hallows_log::crc32c::hardware()
    );
}

/// A fresh file of `bytes`: sparse, or every block written and synced.
fn fresh(o: &Opts, bytes: u64) -> File {
    let _ = std::fs::remove_file(&o.file);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&o.file)
        .expect("bench file");
    if o.sparse {
        f.set_len(bytes).expect("sizing");
    } else {
        let zeros = vec![0u8; 4 << 20];
        let mut at = 0;
        while at < bytes {
            let n = (bytes - at).min(zeros.len() as u64) as usize;
            f.write_all_at(&zeros[..n], at).expect("pre-writing");
            at += n as u64;
        }
        f.sync_all().expect("fsync");
    }
    f
}

/// Seconds to write `frames` (of `frame_len` bytes each) sequentially,
/// durable at the same points as the engine: after the frame that brings
/// the bytes since the last flush to `flush_every` (`u64::MAX`: once, at
/// the end).
fn raw(o: &Opts, frames: &[u8], frame_len: u64, file_bytes: u64, flush_every: u64, serial: bool) -> f64 {
    let f = std::sync::Arc::new(fresh(o, file_bytes));
    let per = flush_every.div_ceil(frame_len).clamp(1, frames.len() as u64 / frame_len) * frame_len;
    // Overlapped: a thread of its own, started before the clock, runs each
    // `fdatasync` asked for while the next interval is written.
    let (ask, asked) = std::sync::mpsc::channel::<()>();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let g = f.clone();
    let syncer = std::thread::spawn(move || {
        for () in asked {
            g.sync_data().expect("fdatasync");
            let _ = done.send(());
        }
    });
    let t = Instant::now();
    let mut in_flight = false;
    for (i, chunk) in frames.chunks(per as usize).enumerate() {
        f.write_all_at(chunk, i as u64 * per).expect("write");
        if flush_every == u64::MAX {
            continue;
        }
        if serial {
            f.sync_data().expect("fdatasync");
            continue;
        }
        if in_flight {
            finished.recv().expect("fdatasync thread");
        }
        ask.send(()).expect("fdatasync thread");
        in_flight = true;
    }
    if in_flight {
        finished.recv().expect("fdatasync thread");
    }
    if flush_every == u64::MAX {
        f.sync_data().expect("fdatasync");
    }
    let took = t.elapsed().as_secs_f64();
    drop(ask);
    syncer.join().expect("fdatasync thread");
    took
}

/// Seconds for the engine to append `batches` copies of `one`, flushing
/// every `flush_every` bytes of frames and at the end.
fn engine(o: &Opts, one: &[u8], batches: u64, file_bytes: u64, flush_every: u64, serial: bool) -> f64 {
    drop(fresh(o, file_bytes));
    let dev = FileDisk::open(Path::new(&o.file), file_bytes).expect("bench disk");
    let mut log = Log::open(dev, LogConfig { segment_bytes: o.segment_kib << 10, ..LogConfig::default() }).expect("open");
    log.create_topic("bench", 1, TopicConfig::default(), 0)
        .expect("topic");
    let t = Instant::now();
    let mut since = 0u64;
    for _ in 0..batches {
        log.append("bench", 0, one).expect("append");
        since += (FRAME + one.len()) as u64;
        if since >= flush_every {
            if serial {
                log.flush().expect("flush");
            } else {
                log.flush_start().expect("flush");
            }
            since = 0;
        }
    }
    log.flush().expect("flush");
    let s = t.elapsed().as_secs_f64();
    assert_eq!(
        log.offsets("bench", 0).expect("offsets").high_watermark,
        batches as i64 * 16
    );
    s
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn summary(v: &mut [f64], unit: &str) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.1} {unit} (range {:.1}–{:.1}, {} rounds)",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    )
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

//! The log engine on a simulated disk: appends and reads, recovery after a
//! power failure at every write (torn at sector granularity, and with the
//! writes since the last flush landing in any subset), retention, the
//! metadata log.

use hallows_log::batch;
use hallows_log::dev::{BlockDevice, MemDisk};
use hallows_log::engine::{FlushPolicy, Log, LogConfig, LogError, TopicConfig};
use proptest::prelude::*;

const SEG: u32 = 16 * 1024;

fn cfg() -> LogConfig {
    LogConfig { segment_bytes: SEG, ..LogConfig::default() }
}

fn batch_of(i: u32, n: u32, ts: i64) -> Vec<u8> {
    let vals: Vec<Vec<u8>> = (0..n).map(|j| format!("r{i}-{j}-{}", "x".repeat((i * 37 % 300) as usize)).into_bytes()).collect();
    let recs: Vec<batch::KeyValue> = vals.iter().map(|v| (None, Some(&v[..]))).collect();
    batch::encode(0, ts, &recs)
}

/// Every record value in a partition, in offset order, checking offsets run
/// without gaps or repeats.
fn read_all<D: BlockDevice>(log: &mut Log<D>, topic: &str) -> Vec<String> {
    let o = log.offsets(topic, 0).unwrap();
    let mut off = o.log_start;
    let mut out = Vec::new();
    while off < o.high_watermark {
        let data = log.read(topic, 0, off, 8192).unwrap();
        assert!(!data.is_empty(), "no data at {off} below the high watermark {}", o.high_watermark);
        for b in batch::split(&data).unwrap() {
            for r in batch::decode(b).expect("a stored batch verifies and decodes") {
                if r.offset < off {
                    continue;
                }
                assert_eq!(r.offset, off, "offsets run in order without gaps");
                out.push(String::from_utf8(r.value.unwrap()).unwrap());
                off += 1;
            }
        }
    }
    out
}

fn expected(batches: u32, per: u32) -> Vec<String> {
    (0..batches).flat_map(|i| (0..per).map(move |j| format!("r{i}-{j}-{}", "x".repeat((i * 37 % 300) as usize)))).collect()
}

#[test]
fn append_read_reopen() {
    let mut log = Log::open(MemDisk::new(1 << 20), cfg()).unwrap();
    assert!(log.report.formatted);
    log.create_topic("t", 2, TopicConfig::default(), 0).unwrap();
    assert_eq!(log.create_topic("t", 1, TopicConfig::default(), 0), Err(LogError::TopicExists));
    assert!(matches!(log.create_topic("bad/name", 1, TopicConfig::default(), 0), Err(LogError::InvalidTopic(_))));
    for i in 0..100 {
        let base = log.append("t", 0, &batch_of(i, 3, 1000 + i as i64)).unwrap();
        assert_eq!(base, i as i64 * 3);
    }
    // Not durable yet: consumers see nothing past the high watermark.
    assert_eq!(log.offsets("t", 0).unwrap().high_watermark, 0);
    log.flush().unwrap();
    assert_eq!(log.offsets("t", 0).unwrap().high_watermark, 300);
    assert!(log.segment_count("t", 0) > 1, "16 KiB segments roll");
    assert_eq!(read_all(&mut log, "t"), expected(100, 3));
    // A read from the middle starts at the batch holding the offset.
    let mid = log.read("t", 0, 151, 1).unwrap();
    let first = batch::info(batch::split(&mid).unwrap()[0]);
    assert_eq!((first.base_offset, mid.len()), (150, batch::batch_len(&mid).unwrap()));
    assert_eq!(log.read("t", 0, 301, 100), Err(LogError::OffsetOutOfRange));
    assert_eq!(log.offset_for_time("t", 0, 1050).unwrap(), Some((150, 1050)));
    assert_eq!(log.offset_for_time("t", 0, 5000).unwrap(), None);
    log.commit_offsets("g", &[("t", 0, 42, "meta")], 7).unwrap();
    log.flush().unwrap();
    let disk = log.into_device();
    let mut log = Log::open(disk, cfg()).unwrap();
    assert!(!log.report.formatted);
    assert_eq!(log.topic("t").unwrap().partitions, 2);
    assert_eq!(log.committed("g", "t", 0).unwrap().offset, 42);
    assert_eq!(read_all(&mut log, "t"), expected(100, 3));
    // Appends continue after the recovered tail.
    assert_eq!(log.append("t", 0, &batch_of(100, 3, 0)).unwrap(), 300);
    log.flush().unwrap();
    assert_eq!(read_all(&mut log, "t"), expected(101, 3));
}

#[test]
fn corrupt_batches_are_refused() {
    let mut log = Log::open(MemDisk::new(1 << 20), cfg()).unwrap();
    log.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
    let mut b = batch_of(1, 2, 0);
    let n = b.len();
    b[n - 1] ^= 0x40;
    assert!(matches!(log.append("t", 0, &b), Err(LogError::Corrupt(batch::BatchError::Crc))));
    let mut old = batch_of(1, 2, 0);
    old[16] = 1;
    assert!(matches!(log.append("t", 0, &old), Err(LogError::Corrupt(batch::BatchError::Magic(1)))));
    assert_eq!(log.append("nope", 0, &batch_of(1, 1, 0)), Err(LogError::UnknownTopic));
    assert_eq!(log.append("t", 1, &batch_of(1, 1, 0)), Err(LogError::UnknownPartition));
    let huge = batch::encode(0, 0, &[(None, Some(&vec![7u8; SEG as usize][..]))]);
    assert_eq!(log.append("t", 0, &huge), Err(LogError::TooLarge));
}

/// Runs the produce workload on `disk` until the device dies; returns the
/// number of batches acknowledged (flushed).
fn workload(log: &mut Log<MemDisk>, batches: u32, per: u32, flush_every: u32) -> u32 {
    let mut acked = 0;
    for i in 0..batches {
        if log.append("t", 0, &batch_of(i, per, i as i64)).is_err() {
            return acked;
        }
        if (i + 1) % flush_every == 0 || i + 1 == batches {
            if log.flush().is_err() {
                return acked;
            }
            acked = i + 1;
        }
    }
    acked
}

fn fresh() -> Log<MemDisk> {
    let mut log = Log::open(MemDisk::new(512 * 1024), cfg()).unwrap();
    log.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
    log
}

/// Reopens a crash image and checks: every acknowledged record is there,
/// once, in order; whatever else is there is the next records produced,
/// whole (nothing torn or stale is served); the log takes appends again.
fn check_image(image: Vec<u8>, acked: u32, batches: u32, per: u32, what: &str) {
    let mut log = Log::open(MemDisk::from_image(image), cfg()).unwrap_or_else(|e| panic!("{what}: reopen: {e:?}"));
    let got = read_all(&mut log, "t");
    let want = expected(batches, per);
    assert!(got.len() >= (acked * per) as usize, "{what}: {} records of {} acknowledged", got.len(), acked * per);
    assert_eq!(got[..], want[..got.len()], "{what}: the records are a prefix of those produced");
    assert_eq!(got.len() % per as usize, 0, "{what}: batches are whole");
    let next = got.len() as i64;
    assert_eq!(log.append("t", 0, &batch_of(999, 1, 0)).unwrap(), next, "{what}: appends follow on");
    log.flush().unwrap();
    let disk = log.into_device();
    let mut log = Log::open(disk, cfg()).unwrap();
    assert_eq!(read_all(&mut log, "t").len(), got.len() + 1, "{what}: the append after recovery survives another reopen");
}

#[test]
fn power_loss_at_every_write() {
    let (batches, per, every) = (60, 4, 3);
    let mut probe = fresh();
    let start = probe.device().writes;
    assert_eq!(workload(&mut probe, batches, per, every), batches);
    let total = probe.device().writes - start;
    assert!(total > 20, "the workload spans several writes ({total})");
    let mut cases = 0;
    for n in 0..total {
        for torn in [0usize, 1, 3] {
            let mut log = fresh();
            log.device_mut().fail_after(n, torn);
            let acked = workload(&mut log, batches, per, every);
            let disk = log.into_device();
            assert!(disk.is_dead());
            // Every write since the last flush landed (the torn one in part)...
            check_image(disk.crash_image(|_, _| true), acked, batches, per, &format!("write {n} torn at {torn}, all landed"));
            // ...or none of them did...
            check_image(disk.crash_image(|_, _| false), acked, batches, per, &format!("write {n}, none landed"));
            // ...or every other one, sector by sector.
            check_image(disk.crash_image(|w, s| (w + s) % 2 == 0), acked, batches, per, &format!("write {n}, alternate sectors"));
            cases += 3;
        }
    }
    assert!(cases > 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Any subset of the unflushed sectors reaching the medium.
    #[test]
    fn power_loss_any_subset(n in 0u64..120, torn in 0usize..4, mask in any::<u64>(), every in 1u32..5) {
        let (batches, per) = (50, 3);
        let mut log = fresh();
        log.device_mut().fail_after(n, torn);
        let acked = workload(&mut log, batches, per, every);
        let disk = log.into_device();
        let mut k = 0u32;
        let image = disk.crash_image(|_, _| { k += 1; mask >> (k % 64) & 1 == 1 });
        check_image(image, acked, batches, per, "random subset");
    }
}

#[test]
fn retention_by_size_and_time() {
    let mut log = Log::open(MemDisk::new(1 << 20), cfg()).unwrap();
    let by_size = TopicConfig { retention_bytes: 40 * 1024, ..TopicConfig::default() };
    let by_time = TopicConfig { retention_ms: 1000, ..TopicConfig::default() };
    log.create_topic("s", 1, by_size, 0).unwrap();
    log.create_topic("m", 1, by_time, 0).unwrap();
    for i in 0..200 {
        log.append("s", 0, &batch_of(i, 4, 0)).unwrap();
        log.append("m", 0, &batch_of(i, 4, if i < 100 { 10_000 } else { 50_000 })).unwrap();
    }
    log.flush().unwrap();
    let segs_s = log.segment_count("s", 0);
    let free_before = log.free_segments();
    let freed = log.enforce_retention(20_000).unwrap();
    assert!(freed > 0);
    assert!(log.segment_count("s", 0) < segs_s);
    let o = log.offsets("s", 0).unwrap();
    assert!(o.log_start > 0 && o.high_watermark == 800);
    assert_eq!(log.read("s", 0, 0, 100), Err(LogError::OffsetOutOfRange));
    // What is kept is the newest ~40 KiB, readable from the new start.
    let kept = read_all(&mut log, "s");
    assert_eq!(kept[..], expected(200, 4)[o.log_start as usize..]);
    // Time: at 20 s only the batches stamped 10 s are old enough... once
    // their segments hold nothing newer.
    let m = log.offsets("m", 0).unwrap();
    assert!(m.log_start > 0 && m.log_start <= 400, "old segments of m went: start {}", m.log_start);
    assert!(log.free_segments() > free_before);
    // Retention survives a reopen (freed segments stay freed).
    let start = (o.log_start, m.log_start);
    let mut log = Log::open(log.into_device(), cfg()).unwrap();
    assert_eq!((log.offsets("s", 0).unwrap().log_start, log.offsets("m", 0).unwrap().log_start), start);
    assert_eq!(read_all(&mut log, "s"), kept);
}

#[test]
fn disk_full_is_an_error_not_a_loss() {
    let mut log = Log::open(MemDisk::new(256 * 1024), cfg()).unwrap();
    log.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
    let mut n = 0;
    let err = loop {
        match log.append("t", 0, &batch_of(n, 8, 0)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 10_000);
    };
    assert_eq!(err, LogError::DiskFull);
    log.flush().unwrap();
    assert_eq!(read_all(&mut log, "t"), expected(n, 8));
}

#[test]
fn metadata_log_compacts() {
    let mut log = Log::open(MemDisk::new(1 << 20), cfg()).unwrap();
    log.create_topic("a", 3, TopicConfig { flush: FlushPolicy::Interval(5), ..TopicConfig::default() }, 0).unwrap();
    let before = log.free_segments();
    for i in 0..3000i64 {
        log.commit_offsets("grp", &[("a", (i % 3) as u32, i, "m")], i).unwrap();
    }
    log.flush().unwrap();
    assert!(log.free_segments() + 3 >= before, "the metadata log stays small");
    let mut log = Log::open(log.into_device(), cfg()).unwrap();
    assert_eq!(log.topic("a").unwrap().config.flush, FlushPolicy::Interval(5));
    assert_eq!(log.committed("grp", "a", 0).unwrap().offset, 2997);
    assert_eq!(log.committed("grp", "a", 2).unwrap().offset, 2999);
    log.append("a", 1, &batch_of(0, 1, 0)).unwrap();
    log.flush().unwrap();
    assert_eq!(read_all(&mut log, "a").len(), 0, "partition 0 is empty");
}

/// A batch whose frame (8-byte header + batch) is exactly `frame` bytes.
fn batch_sized(frame: usize, tag: &str) -> Vec<u8> {
    for pad in 0..frame {
        let v = format!("{tag}{}", "p".repeat(pad));
        let b = batch::encode(0, 0, &[(None, Some(v.as_bytes()))]);
        if b.len() + 8 == frame {
            return b;
        }
    }
    panic!("no batch of frame size {frame}");
}

fn values<D: BlockDevice>(log: &mut Log<D>) -> Vec<String> {
    let o = log.offsets("t", 0).unwrap();
    let data = log.read("t", 0, o.log_start, 1 << 20).unwrap();
    batch::split(&data).unwrap().iter().flat_map(|b| batch::decode(b).unwrap()).map(|r| String::from_utf8(r.value.unwrap()).unwrap()).collect()
}

/// The case recovery's zeroing exists for: the unacknowledged batch Y lands
/// but the batch X before it does not; after recovery, Z (as long as X) is
/// acknowledged where X was, so Y's intact frame now follows on exactly.
/// Y must never come back.
#[test]
fn stale_frame_after_a_torn_one_never_returns() {
    let mut log = fresh();
    let a = batch::encode(0, 0, &[(None, Some(b"A"))]);
    // X and Y are written, then the power fails before the flush.
    log.append("t", 0, &a).unwrap();
    log.flush().unwrap();
    let e = a.len() + 8; // A's frame ends here (data position)
    let x_len = 2 * 512 - e; // X ends on a sector boundary
    log.append("t", 0, &batch_sized(x_len, "X")).unwrap();
    log.append("t", 0, &batch::encode(0, 0, &[(None, Some(b"Y"))])).unwrap();
    log.device_mut().fail_at_flush();
    assert!(log.flush().is_err());
    let disk = log.into_device();
    // Of the data write (the last pending one), only sectors 2.. (Y) land.
    let last = disk.pending_writes() - 1;
    let image = disk.crash_image(|w, s| w < last || s >= 2);
    let mut log = Log::open(MemDisk::from_image(image), cfg()).unwrap();
    assert_eq!(values(&mut log), ["A"]);
    let torn = log.report.torn_tails;
    log.append("t", 0, &batch_sized(x_len, "Z")).unwrap();
    log.flush().unwrap();
    let mut log = Log::open(log.into_device(), cfg()).unwrap();
    let v = values(&mut log);
    assert_eq!(v.len(), 2, "A and Z only, never the unacknowledged Y: {v:?}");
    assert!(v[1].starts_with('Z'));
    assert_eq!(torn, 1, "recovery reports the torn tail");
}

/// A flush started in the background: nothing it covers is visible
/// (high watermark) before it is waited for, appends go on meanwhile, and
/// a start waits for the oldest once three are in flight.
#[test]
fn background_flushes_advance_the_high_watermark_only_when_done() {
    let mut log = Log::open(MemDisk::new(1 << 20), cfg()).unwrap();
    log.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
    // Starts 1..=3: none waited for; the 4th waits for the 1st, the 5th
    // for the 2nd.
    for (i, hw) in [(0, 0), (1, 0), (2, 0), (3, 2), (4, 4)] {
        log.append("t", 0, &batch_of(i, 2, 0)).unwrap();
        log.flush_start().unwrap();
        assert_eq!(log.offsets("t", 0).unwrap().high_watermark, hw, "after start {}", i + 1);
        assert!(log.needs_flush());
    }
    log.flush_wait().unwrap();
    assert_eq!(log.offsets("t", 0).unwrap().high_watermark, 10);
    assert!(!log.needs_flush());
}

/// On a host file (`FileDisk`: writes and `fdatasync` on a thread of its
/// own), with flushes started in the background, everything reads back,
/// before and after a reopen.
#[cfg(feature = "std")]
#[test]
fn background_flushes_on_a_host_file_read_back_after_reopen() {
    let path = std::env::temp_dir().join(format!("hallows-log-bg-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    {
        let dev = hallows_log::dev::FileDisk::open(&path, 4 << 20).unwrap();
        let mut log = Log::open(dev, cfg()).unwrap();
        log.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
        for i in 0..200 {
            log.append("t", 0, &batch_of(i, 3, 0)).unwrap();
            if i % 7 == 6 {
                log.flush_start().unwrap();
                // Reads wait for the writes in flight.
                assert_eq!(
                    read_all(&mut log, "t").len() as u64,
                    log.offsets("t", 0).unwrap().high_watermark as u64
                );
            }
        }
        log.flush().unwrap();
        assert_eq!(read_all(&mut log, "t"), expected(200, 3));
    }
    let dev = hallows_log::dev::FileDisk::open(&path, 4 << 20).unwrap();
    let mut log = Log::open(dev, cfg()).unwrap();
    assert_eq!(read_all(&mut log, "t"), expected(200, 3));
    std::fs::remove_file(&path).unwrap();
}

/// A batch built in place in the segment buffer is stored exactly as the
/// same records encoded apart and appended; interleaved with ordinary
/// appends across segment rolls, it reads back, survives a reopen, and
/// refuses what does not fit.
#[test]
fn batches_built_in_place_equal_encoded_ones() {
    let records = |i: u32, n: u32| -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (0..n).map(|j| (format!("k{i}-{j}").into_bytes(), (j % 5 != 4).then(|| format!("r{i}-{j}-{}", "y".repeat((i * 13 % 200) as usize)).into_bytes()))).collect()
    };
    let mut built = Log::open(MemDisk::new(1 << 20), cfg()).unwrap();
    let mut plain = Log::open(MemDisk::new(1 << 20), cfg()).unwrap();
    for log in [&mut built, &mut plain] {
        log.create_topic("t", 1, TopicConfig::default(), 0).unwrap();
    }
    let mut next = 0i64;
    for i in 0..60u32 {
        let recs = records(i, 1 + i % 9);
        let ts = 5_000 + i as i64;
        let kv: Vec<batch::KeyValue> = recs.iter().map(|(k, v)| (Some(&k[..]), v.as_deref())).collect();
        let enc = batch::encode(0, ts, &kv);
        assert_eq!(plain.append("t", 0, &enc).unwrap(), next);
        if i % 4 == 3 {
            // Some ordinary appends between the built ones.
            assert_eq!(built.append("t", 0, &enc).unwrap(), next);
        } else {
            let got = built
                .append_built("t", 0, ts, enc.len() + 64, |w| {
                    for (k, v) in &recs {
                        assert!(w.push(Some(k.len()), v.as_ref().map(Vec::len), |kd, vd| {
                            kd.copy_from_slice(k);
                            if let Some(v) = v {
                                vd.copy_from_slice(v);
                            }
                        }));
                    }
                })
                .unwrap();
            assert_eq!(got, Some((next, recs.len())));
        }
        next += recs.len() as i64;
    }
    built.flush().unwrap();
    plain.flush().unwrap();
    assert!(built.segment_count("t", 0) > 1, "segments rolled");
    // Every stored batch, across segments.
    let whole = |log: &mut Log<MemDisk>| {
        let hw = log.offsets("t", 0).unwrap().high_watermark;
        let (mut out, mut off) = (Vec::new(), 0);
        while off < hw {
            for x in batch::split(&log.read("t", 0, off, 1 << 20).unwrap()).unwrap() {
                off = batch::validate(x).unwrap().next_offset();
                out.push(x.to_vec());
            }
        }
        out
    };
    let b = whole(&mut built);
    // Byte for byte the same batches.
    assert_eq!(b.len(), 60);
    assert_eq!(b, whole(&mut plain));
    // After a reopen, the same.
    let mut built = Log::open(built.into_device(), cfg()).unwrap();
    assert_eq!(built.offsets("t", 0).unwrap().high_watermark, next);
    assert_eq!(whole(&mut built), b);

    // A record past the batch's bound is refused and leaves nothing; a
    // build that pushes nothing appends nothing.
    let r = built
        .append_built("t", 0, 1, 200, |w| {
            assert!(w.push(Some(3), Some(50), |k, v| {
                k.copy_from_slice(b"abc");
                v.fill(b'v');
            }));
            assert!(!w.push(Some(3), Some(150), |_, _| unreachable!("refused before filling")));
            assert_eq!(w.records(), 1);
        })
        .unwrap();
    assert_eq!(r, Some((next, 1)));
    assert_eq!(built.append_built("t", 0, 1, 200, |_| {}).unwrap(), None);
    assert_eq!(built.append_built("t", 0, 1, SEG as usize, |_| {}), Err(LogError::TooLarge));
    assert_eq!(built.append_built("nope", 0, 1, 200, |_| {}), Err(LogError::UnknownTopic));
    built.flush().unwrap();
    assert_eq!(built.offsets("t", 0).unwrap().high_watermark, next + 1);
    let last = built.read("t", 0, next, 4096).unwrap();
    let recs = batch::decode(batch::split(&last).unwrap()[0]).unwrap();
    assert_eq!((recs.len(), recs[0].offset, recs[0].key.as_deref()), (1, next, Some(&b"abc"[..])));
    assert_eq!(recs[0].value.as_deref(), Some(&[b'v'; 50][..]));
}

//! Power loss at every device write, against a model.
//!
//! A workload of random single-key writes, deletes and multi-key
//! transactions runs on a `MemDisk`. After every write the device
//! accepts, images that a power loss at that moment could leave (unflushed
//! sectors kept or lost at random, torn sectors included) are recovered,
//! and the recovered keyspace must be exactly the model's state as of the
//! last acknowledged commit, or as of the commit being made durable when
//! the power went (a group is all or nothing). Nothing else: no lost
//! acknowledged write, no half transaction, no value that never was.
//!
//! Then corruption: random bytes of a shut-down store's image are flipped,
//! and every key the recovered store serves (outside what it reports as
//! damaged) must hold the model's value.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use hallows_blockdev::{BlockDevice, Error as DevError, Loss, MemDisk, Rng};
use hallows_store::{Config, Durability, Keyspace, Op, Store, Ttl, Value};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn snapshot(ks: &Keyspace) -> Model {
    ks.iter()
        .map(|(k, e)| match &e.value {
            Value::Str(v) => (k.clone(), v.clone()),
            other => panic!("unexpected value {other:?}"),
        })
        .collect()
}

/// What recovery may yield right now: the acknowledged state, or the one
/// being made durable.
#[derive(Default)]
struct Expect {
    acked: Model,
    next: Model,
    checks: u64,
    seed: u64,
    loss: Option<Loss>,
}

/// A MemDisk that, after every write, checks what a power loss would leave.
struct Checked {
    disk: MemDisk,
    expect: Rc<RefCell<Expect>>,
}

fn check_image(img: Vec<u8>, e: &Expect, what: &str) {
    let (s, rec) = Store::open(MemDisk::from_image(img), Config::default()).unwrap_or_else(|err| panic!("{what}: open failed: {err}"));
    assert!(rec.damage.is_empty(), "{what}: a power loss is not damage: {rec:?}");
    let got = snapshot(s.keyspace());
    assert!(got == e.acked || got == e.next, "{what}: recovered {} keys, neither the acknowledged state ({} keys) nor the next ({} keys); {rec:?}", got.len(), e.acked.len(), e.next.len());
}

impl BlockDevice for Checked {
    fn sectors(&self) -> u64 {
        self.disk.sectors()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DevError> {
        self.disk.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DevError> {
        self.disk.write(lba, buf)?;
        let mut e = self.expect.borrow_mut();
        if let Some(loss) = e.loss {
            e.seed += 1;
            let mut rng = Rng::new(e.seed);
            let img = self.disk.crash_image(loss, &mut rng);
            check_image(img, &e, &format!("power loss after write {} (sector {lba}, seed {})", self.disk.writes, e.seed));
            let img = self.disk.crash_prefix(self.disk.unflushed() / 2);
            check_image(img, &e, &format!("power loss after write {} (half of the unflushed sectors)", self.disk.writes));
            e.checks += 2;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DevError> {
        self.disk.flush()
    }
}

fn key(rng: &mut Rng) -> Vec<u8> {
    format!("key:{:03}", rng.below(40)).into_bytes()
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(300) as usize;
    let c = b'a' + rng.below(26) as u8;
    vec![c; n]
}

/// Random commands: (ops, model after them).
fn random_ops(rng: &mut Rng, model: &Model) -> Vec<Op> {
    match rng.below(10) {
        0..=4 => vec![Op::Set { key: key(rng), value: value(rng), ttl: Ttl::Clear }],
        5 | 6 => vec![Op::Del { key: key(rng) }],
        7 => {
            // A multi-key transaction.
            (0..2 + rng.below(5)).map(|_| if rng.below(3) == 0 { Op::Del { key: key(rng) } } else { Op::Set { key: key(rng), value: value(rng), ttl: Ttl::Clear } }).collect()
        }
        8 => {
            // A big value (several sectors).
            vec![Op::Set { key: key(rng), value: vec![b'Z'; 2000 + rng.below(6000) as usize], ttl: Ttl::Clear }]
        }
        _ => {
            // Increment-like: read, compute, write.
            let k = key(rng);
            let n: u64 = model.get(&k).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
            vec![Op::Set { key: k, value: (n + 1).to_string().into_bytes(), ttl: Ttl::Keep }]
        }
    }
}

fn apply_model(model: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Set { key, value, .. } => {
                model.insert(key.clone(), value.clone());
            }
            Op::Del { key } => {
                model.remove(key);
            }
            _ => unreachable!(),
        }
    }
}

fn run(seed: u64, commits: usize, batch: u64, loss: Loss, sectors: u64, min_checkpoints: u64) -> (MemDisk, Model, u64) {
    let expect = Rc::new(RefCell::new(Expect { loss: None, seed: seed << 32, ..Default::default() }));
    let dev = Checked { disk: MemDisk::new(sectors), expect: expect.clone() };
    let (mut store, rec) = Store::open(dev, Config { durability: Durability::Strict, max_bytes: 1 << 30 }).unwrap();
    assert!(rec.formatted);
    expect.borrow_mut().loss = (loss != Loss::None).then_some(loss);
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut t = 0u64;
    let mut since_sync = 0;
    for _ in 0..commits {
        let ops = random_ops(&mut rng, &model);
        t += 1;
        store.commit(t, ops.clone()).unwrap();
        apply_model(&mut model, &ops);
        expect.borrow_mut().next = model.clone();
        since_sync += 1;
        if since_sync > rng.below(batch) {
            store.sync().unwrap();
            assert_eq!(store.durable(), store.ticket());
            expect.borrow_mut().acked = model.clone();
            since_sync = 0;
            while store.background_step().unwrap() {}
        }
    }
    store.sync().unwrap();
    expect.borrow_mut().acked = model.clone();
    let checks = expect.borrow().checks;
    let stats = store.stats();
    assert!(stats.checkpoints >= min_checkpoints, "the workload must wrap the log and checkpoint: {stats:?}");
    (store.into_device().disk, model, checks)
}

#[test]
fn power_loss_at_every_write_keeps_exactly_the_acknowledged_state() {
    let mut total = 0;
    for seed in 1..=3 {
        let (disk, model, checks) = run(seed, 1500, 4, Loss::TornSectors, 8192, 2);
        total += checks;
        // And the final image recovers to the final state.
        let (s, rec) = Store::open(MemDisk::from_image(disk.image().to_vec()), Config::default()).unwrap();
        assert_eq!(snapshot(s.keyspace()), model, "{rec:?}");
    }
    eprintln!("{total} power-loss images recovered and checked");
    assert!(total > 5000);
}

#[test]
fn a_power_loss_with_sector_atomic_writes_too() {
    let (_, _, checks) = run(99, 800, 1, Loss::Sectors, 8192, 1);
    assert!(checks > 1000);
}

/// Flips random bytes of a store's image (shut down cleanly or not) and
/// checks that nothing wrong is served.
#[test]
fn flipped_bytes_are_detected_and_never_served() {
    let mut outcomes = BTreeMap::<&str, u32>::new();
    for seed in 1..=60u64 {
        let (disk, model, _) = run(1000 + seed, 1500, 3, Loss::None, 8192, 1);
        let mut rng = Rng::new(seed * 7919);
        let mut img = disk.image().to_vec();
        let flips = 1 + rng.below(4);
        // Where something was written: superblocks, mirror, checkpoints,
        // the log (live or stale).
        let written: Vec<usize> = img.chunks(512).enumerate().filter(|(_, s)| s.iter().any(|&b| b != 0)).map(|(i, _)| i).collect();
        for _ in 0..flips {
            let at = written[rng.below(written.len() as u64) as usize] * 512 + rng.below(512) as usize;
            img[at] ^= 1 << rng.below(8);
        }
        let (s, rec) = match Store::open(MemDisk::from_image(img), Config::default()) {
            Ok(x) => x,
            Err(e) => panic!("seed {seed}: open failed: {e}"),
        };
        let d = s.damage();
        let kind = if d.whole.is_some() {
            "whole store refused"
        } else if !d.ranges.is_empty() {
            "key ranges refused"
        } else if rec.repaired > 0 {
            "repaired from the mirror"
        } else {
            "no damage seen"
        };
        *outcomes.entry(kind).or_default() += 1;
        if d.whole.is_some() {
            continue;
        }
        let got = snapshot(s.keyspace());
        for (k, v) in &model {
            if d.covers(k) {
                continue;
            }
            assert_eq!(got.get(k), Some(v), "seed {seed}: key {} served wrong ({rec:?})", String::from_utf8_lossy(k));
        }
        for k in got.keys() {
            assert!(model.contains_key(k) || d.covers(k), "seed {seed}: key {} was never written", String::from_utf8_lossy(k));
        }
    }
    eprintln!("corruption outcomes: {outcomes:?}");
}

#[test]
fn a_damaged_last_group_is_recovered_from_its_mirror() {
    let (disk, model, _) = run(7, 300, 1, Loss::None, 8192, 0);
    // Find the last group's header in the log and damage its payload.
    let mut img = disk.image().to_vec();
    let (s, _) = Store::open(MemDisk::from_image(img.clone()), Config::default()).unwrap();
    assert_eq!(snapshot(s.keyspace()), model);
    // The last written log sector differs from the mirror only in place:
    // corrupt every copy of the newest group in the log region by finding
    // the group header with the highest sequence number.
    let mut best = (0u64, 0usize);
    for (i, sec) in img.chunks(512).enumerate() {
        if sec[0..4] == 0x474F_4C48u32.to_le_bytes() {
            let seq = u64::from_le_bytes(sec[8..16].try_into().unwrap());
            if seq >= best.0 {
                best = (seq, i);
            }
        }
    }
    // Two copies carry the highest number (log and mirror): damage the one
    // found last, then check the other one saves the data.
    img[best.1 * 512 + 60] ^= 0xff;
    let (s, rec) = Store::open(MemDisk::from_image(img), Config::default()).unwrap();
    assert!(rec.damage.is_empty(), "{rec:?}");
    assert_eq!(snapshot(s.keyspace()), model, "{rec:?}");
}

#[test]
fn a_blank_device_is_formatted_and_a_garbage_one_refused() {
    let (_, rec) = Store::open(MemDisk::new(8192), Config::default()).unwrap();
    assert!(rec.formatted);
    let mut img = vec![0u8; 8192 * 512];
    img[3] = 7;
    let (mut s, rec) = Store::open(MemDisk::from_image(img), Config::default()).unwrap();
    assert!(rec.damage.whole.is_some());
    assert!(s.commit(1, vec![Op::Set { key: b"a".to_vec(), value: b"1".to_vec(), ttl: Ttl::Clear }]).is_err());
    // FLUSHDB starts afresh.
    s.commit(2, vec![Op::Flush]).unwrap();
    s.commit(3, vec![Op::Set { key: b"a".to_vec(), value: b"1".to_vec(), ttl: Ttl::Clear }]).unwrap();
    s.sync().unwrap();
    let (s, rec) = Store::open(s.into_device(), Config::default()).unwrap();
    assert!(rec.damage.is_empty(), "{rec:?}");
    assert_eq!(s.keyspace().len(), 1);
    assert!(matches!(Store::open(MemDisk::new(100), Config::default()), Err(hallows_store::Error::TooSmall)));
}

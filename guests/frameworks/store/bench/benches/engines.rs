//! hallows-store against redb and SQLite, on the same machine and disk,
//! at equal durability (every commit on stable storage before it returns:
//! hallows-store strict with a sync per commit; redb's default
//! `Durability::Immediate`; SQLite in WAL mode with `synchronous=FULL`),
//! equal keys (16 bytes) and values (100 bytes), 10,000 keys loaded:
//!
//! * `point_read`: one random key.
//! * `strict_write`: one key written and committed durably.
//! * `range_scan`: 100 consecutive keys from a random start.
//!
//! `cargo bench -p hallows-store-bench` (or `make bench-store`); the image
//! files live in target/bench-store/.

use std::hint::black_box;
use std::ops::Bound;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hallows_blockdev::{FileDisk, Rng};
use hallows_store::{Config, Durability, Op, Store, Ttl};
use redb::{Database, ReadableTable, TableDefinition};

const KEYS: u64 = 10_000;
const VALUE: usize = 100;
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(b"key:");
    k[4..].copy_from_slice(format!("{i:012}").as_bytes());
    k
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../target/bench-store");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn open_hallows() -> Store<FileDisk> {
    let p = dir().join("hallows.img");
    let _ = std::fs::remove_file(&p);
    let dev = FileDisk::open(&p, 256 << 20).unwrap();
    let (mut s, _) = Store::open(dev, Config { durability: Durability::Strict, max_bytes: 1 << 30 }).unwrap();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let ops = chunk.iter().map(|&i| Op::Set { key: key(i).to_vec(), value: vec![b'v'; VALUE], ttl: Ttl::Clear }).collect();
        s.commit(0, ops).unwrap();
        s.sync().unwrap();
    }
    s
}

fn open_redb() -> Database {
    let p = dir().join("redb.db");
    let _ = std::fs::remove_file(&p);
    let db = Database::create(&p).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(TABLE).unwrap();
        for i in 0..KEYS {
            t.insert(key(i).as_slice(), [b'v'; VALUE].as_slice()).unwrap();
        }
    }
    tx.commit().unwrap();
    db
}

fn open_sqlite() -> rusqlite::Connection {
    let p = dir().join("sqlite.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
    }
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;").unwrap();
    c.execute_batch("BEGIN").unwrap();
    {
        let mut st = c.prepare("INSERT INTO kv VALUES (?1, ?2)").unwrap();
        for i in 0..KEYS {
            st.execute((key(i).as_slice(), [b'v'; VALUE].as_slice())).unwrap();
        }
    }
    c.execute_batch("COMMIT").unwrap();
    c
}

fn benches(c: &mut Criterion) {
    let mut hs = open_hallows();
    let rdb = open_redb();
    let sql = open_sqlite();

    let mut g = c.benchmark_group("point_read");
    let mut rng = Rng::new(1);
    g.bench_function(BenchmarkId::new("hallows-store", KEYS), |b| {
        b.iter(|| {
            let k = key(rng.below(KEYS));
            black_box(hs.keyspace().get(&k, 0).map(|e| e.value.type_name()));
        })
    });
    g.bench_function(BenchmarkId::new("redb", KEYS), |b| {
        b.iter(|| {
            let k = key(rng.below(KEYS));
            let tx = rdb.begin_read().unwrap();
            let t = tx.open_table(TABLE).unwrap();
            black_box(t.get(k.as_slice()).unwrap().map(|v| v.value().len()));
        })
    });
    {
        let mut st = sql.prepare_cached("SELECT v FROM kv WHERE k = ?1").unwrap();
        g.bench_function(BenchmarkId::new("sqlite", KEYS), |b| {
            b.iter(|| {
                let k = key(rng.below(KEYS));
                let v: Vec<u8> = st.query_row([k.as_slice()], |r| r.get(0)).unwrap();
                black_box(v.len());
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("range_scan_100");
    g.bench_function("hallows-store", |b| {
        b.iter(|| {
            let k = key(rng.below(KEYS - 100));
            let n: usize = hs.keyspace().range((Bound::Included(k.as_slice()), Bound::Unbounded), 0).take(100).map(|(k, _)| k.len()).sum();
            black_box(n);
        })
    });
    g.bench_function("redb", |b| {
        b.iter(|| {
            let k = key(rng.below(KEYS - 100));
            let tx = rdb.begin_read().unwrap();
            let t = tx.open_table(TABLE).unwrap();
            let n: usize = t.range(k.as_slice()..).unwrap().take(100).map(|r| r.unwrap().0.value().len()).sum();
            black_box(n);
        })
    });
    {
        let mut st = sql.prepare_cached("SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT 100").unwrap();
        g.bench_function("sqlite", |b| {
            b.iter(|| {
                let k = key(rng.below(KEYS - 100));
                let n: usize = st.query_map([k.as_slice()], |r| r.get::<_, Vec<u8>>(0)).unwrap().map(|x| x.unwrap().len()).sum();
                black_box(n);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("strict_write");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    let mut t = 0;
    g.bench_function("hallows-store", |b| {
        b.iter(|| {
            t += 1;
            hs.commit(t, vec![Op::Set { key: key(rng.below(KEYS)).to_vec(), value: vec![b'w'; VALUE], ttl: Ttl::Clear }]).unwrap();
            hs.sync().unwrap();
        })
    });
    g.bench_function("redb", |b| {
        b.iter(|| {
            let tx = rdb.begin_write().unwrap();
            {
                let mut tb = tx.open_table(TABLE).unwrap();
                tb.insert(key(rng.below(KEYS)).as_slice(), [b'w'; VALUE].as_slice()).unwrap();
            }
            tx.commit().unwrap();
        })
    });
    {
        let mut st = sql.prepare_cached("INSERT OR REPLACE INTO kv VALUES (?1, ?2)").unwrap();
        g.bench_function("sqlite", |b| {
            b.iter(|| {
                st.execute((key(rng.below(KEYS)).as_slice(), [b'w'; VALUE].as_slice())).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(engines, benches);
criterion_main!(engines);

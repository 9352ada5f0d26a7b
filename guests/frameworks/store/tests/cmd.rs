//! The command layer through `Server::feed`, as a client sees it: random
//! command sequences against a model, and a damaged store's replies.

use std::collections::BTreeMap;

use hallows_blockdev::{MemDisk, SECTOR};
use hallows_store::cmd::{Server, Session};
use hallows_store::{Config, Op, Store, Ttl};
use proptest::prelude::*;

fn req(args: &[&[u8]]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    b
}

fn run(srv: &mut Server<MemDisk>, args: &[&[u8]]) -> Vec<u8> {
    let mut sess = Session::default();
    let mut out = Vec::new();
    let input = req(args);
    assert_eq!(srv.feed(&mut sess, 1, &input, &mut out), input.len());
    out
}

fn bulk(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        None => b"$-1\r\n".to_vec(),
        Some(v) => {
            let mut b = format!("${}\r\n", v.len()).into_bytes();
            b.extend_from_slice(v);
            b.extend_from_slice(b"\r\n");
            b
        }
    }
}

#[derive(Clone, Debug)]
enum Cmd {
    Set(u8, Vec<u8>),
    Get(u8),
    Del(u8),
    Incr(u8),
    MSet(u8, u8),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        (0u8..8, proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(k, v)| Cmd::Set(k, v)),
        (0u8..8).prop_map(Cmd::Get),
        (0u8..8).prop_map(Cmd::Del),
        (0u8..8).prop_map(Cmd::Incr),
        (0u8..8, 0u8..8).prop_map(|(a, b)| Cmd::MSet(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn commands_match_a_model(cmds in proptest::collection::vec(cmd(), 1..60)) {
        let (store, _) = Store::open(MemDisk::new(8192), Config::default()).unwrap();
        let mut srv = Server::new(store, 0);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for c in &cmds {
            match c {
                Cmd::Set(k, v) => {
                    let key = vec![b'k', *k];
                    prop_assert_eq!(run(&mut srv, &[b"SET", &key, v]), b"+OK\r\n".to_vec());
                    model.insert(key, v.clone());
                }
                Cmd::Get(k) => {
                    let key = vec![b'k', *k];
                    prop_assert_eq!(run(&mut srv, &[b"GET", &key]), bulk(model.get(&key).map(|v| v.as_slice())));
                }
                Cmd::Del(k) => {
                    let key = vec![b'k', *k];
                    let n = i32::from(model.remove(&key).is_some());
                    prop_assert_eq!(run(&mut srv, &[b"DEL", &key]), format!(":{n}\r\n").into_bytes());
                }
                Cmd::Incr(k) => {
                    let key = vec![b'k', *k];
                    let want = match model.get(&key) {
                        None => Some(0i64),
                        Some(v) => std::str::from_utf8(v).ok().and_then(|s| {
                            let ok = !s.is_empty() && (s == "0" || !(s.starts_with('0') || s.starts_with("-0")));
                            ok.then(|| s.parse::<i64>().ok()).flatten()
                        }),
                    };
                    let got = run(&mut srv, &[b"INCR", &key]);
                    match want.and_then(|n| n.checked_add(1)) {
                        Some(n) => {
                            prop_assert_eq!(got, format!(":{n}\r\n").into_bytes());
                            model.insert(key, n.to_string().into_bytes());
                        }
                        None => prop_assert!(got.starts_with(b"-ERR"), "{:?}", String::from_utf8_lossy(&got)),
                    }
                }
                Cmd::MSet(a, b) => {
                    let (ka, kb) = (vec![b'k', *a], vec![b'k', *b]);
                    prop_assert_eq!(run(&mut srv, &[b"MSET", &ka, b"A", &kb, b"B"]), b"+OK\r\n".to_vec());
                    model.insert(ka, b"A".to_vec());
                    model.insert(kb, b"B".to_vec());
                }
            }
        }
        // Everything again after a restart on the same disk.
        srv.store.sync().unwrap();
        let dev = std::mem::replace(&mut srv, Server::new(Store::open(MemDisk::new(8192), Config::default()).unwrap().0, 0)).store.into_device();
        let (store, _) = Store::open(dev, Config::default()).unwrap();
        let mut srv = Server::new(store, 0);
        for k in 0..8u8 {
            let key = vec![b'k', k];
            prop_assert_eq!(run(&mut srv, &[b"GET", &key]), bulk(model.get(&key).map(|v| v.as_slice())));
        }
    }

    /// No input makes the front panic or consume what is not there.
    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (store, _) = Store::open(MemDisk::new(8192), Config::default()).unwrap();
        let mut srv = Server::new(store, 0);
        let mut sess = Session::default();
        let mut out = Vec::new();
        let used = srv.feed(&mut sess, 1, &input, &mut out);
        prop_assert!(used <= input.len());
    }
}

/// A store whose checkpoint has a damaged block: commands on keys in the
/// damaged range answer one error, never a partial reply.
#[test]
fn a_damaged_range_is_refused_in_protocol_form() {
    let (mut store, _) = Store::open(MemDisk::new(16384), Config::default()).unwrap();
    // Enough keys for several checkpoint blocks, then a checkpoint.
    for i in 0..3000u32 {
        store.commit(0, vec![Op::Set { key: format!("key{i:05}").into_bytes(), value: vec![b'v'; 100], ttl: Ttl::Clear }]).unwrap();
        store.sync().unwrap();
        while store.background_step().unwrap() {}
    }
    assert!(store.stats().checkpoints > 0);
    let mut disk = store.into_device();
    // Damage the checkpoint: flip one byte in every checkpoint block's
    // payload region of the current slot (found by its magic).
    let img = disk.image().to_vec();
    let mut hit = 0;
    for (i, sec) in img.chunks(SECTOR).enumerate() {
        if sec[0..4] == 0x504B_4348u32.to_le_bytes() && u32::from_le_bytes(sec[4..8].try_into().unwrap()) == 1 {
            disk.corrupt(i * SECTOR + 300, 0x40);
            hit += 1;
        }
    }
    assert!(hit > 0);
    let (store, rec) = Store::open(disk, Config::default()).unwrap();
    assert!(!rec.damage.ranges.is_empty(), "{rec:?}");
    let mut srv = Server::new(store, 0);
    let (lo, _) = &rec.damage.ranges[0];
    let inside = {
        let mut k = lo.clone().unwrap_or_default();
        k.push(b'0');
        k
    };
    let r = run(&mut srv, &[b"MGET", b"key00000", &inside]);
    assert!(r.starts_with(b"-DAMAGED") && r.ends_with(b"\r\n") && r.iter().filter(|&&c| c == b'\n').count() == 1, "{:?}", String::from_utf8_lossy(&r));
    assert!(run(&mut srv, &[b"GET", &inside]).starts_with(b"-DAMAGED"));
    assert!(run(&mut srv, &[b"KEYS", b"*"]).starts_with(b"-DAMAGED"));
    assert!(run(&mut srv, &[b"SET", b"x", b"1"]).starts_with(b"-DAMAGED"));
    assert_eq!(run(&mut srv, &[b"GET", b"key00000"]), bulk(Some(&[b'v'; 100])));
    // FLUSHDB starts afresh.
    assert_eq!(run(&mut srv, &[b"FLUSHDB"]), b"+OK\r\n".to_vec());
    assert_eq!(run(&mut srv, &[b"SET", b"x", b"1"]), b"+OK\r\n".to_vec());
    assert_eq!(run(&mut srv, &[b"DBSIZE"]), b":1\r\n".to_vec());
}

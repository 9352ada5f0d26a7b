//! The channel front (`hallows_store::chan`) as a client partition sees it:
//! random request sequences (gets, puts, deletes, scans, transactions,
//! transactions broken off) against a `BTreeMap` model; replies held until
//! durable (strict) and released by `sync`; the state after a reopen of the
//! same disk equals the model; hostile bytes in every field never panic
//! and are answered `Err` without changing anything.

use std::collections::BTreeMap;

use hallows_blockdev::MemDisk;
use hallows_kv::{KvError, KvReply, KvRequest, KvStatus, MAX_KEY, MAX_VALUE};
use hallows_store::chan::Front;
use hallows_store::cmd::{Server, Session};
use hallows_store::{Config, Durability, Store};
use proptest::prelude::*;
use zerocopy::{FromBytes, IntoBytes};

fn open(disk: MemDisk, durability: Durability) -> Server<MemDisk> {
    let (store, _) = Store::open(
        disk,
        Config {
            durability,
            max_bytes: 16 << 20,
        },
    )
    .expect("store opens");
    Server::new(store, 1)
}

fn fresh(durability: Durability) -> Server<MemDisk> {
    open(MemDisk::new(16384), durability)
}

/// Sends `req`, makes everything durable, returns the replies it got.
fn call(front: &mut Front, srv: &mut Server<MemDisk>, req: &KvRequest) -> Vec<KvReply> {
    front.handle(srv, 1, req);
    srv.store.sync().expect("sync");
    let mut out = Vec::new();
    while let Some(r) = front.pop_ready(srv.store.durable()) {
        out.push(r);
    }
    assert_eq!(front.queued(), 0);
    out
}

fn one(front: &mut Front, srv: &mut Server<MemDisk>, req: &KvRequest) -> KvReply {
    let mut r = call(front, srv, req);
    assert_eq!(r.len(), 1, "{r:?}");
    let r = r.remove(0);
    assert_eq!(r.id, req.id);
    r
}

/// The whole keyspace through scans of `page` entries.
fn scan_all(front: &mut Front, srv: &mut Server<MemDisk>, page: u16) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (mut from, mut after, mut all) = (Vec::new(), false, Vec::new());
    loop {
        let replies = call(
            front,
            srv,
            &hallows_kv::scan(7, &from, after, page).unwrap(),
        );
        let (end, entries) = replies.split_last().expect("a ScanEnd");
        assert_eq!(end.status, KvStatus::ScanEnd);
        assert_eq!(end.count as usize, entries.len());
        assert!(entries.len() <= page as usize);
        for e in entries {
            assert_eq!(e.status, KvStatus::Entry);
            all.push((e.key.as_bytes().to_vec(), e.value.as_bytes().to_vec()));
        }
        if !end.more.get() {
            return all;
        }
        from = end.key.as_bytes().to_vec();
        after = true;
    }
}

#[derive(Clone, Debug)]
enum Req {
    Get(u8),
    Put(u8, Vec<u8>),
    Del(u8),
    Scan(u8, bool, u16),
    Txn(Vec<(u8, Option<Vec<u8>>)>),
    /// A transaction broken off after its first op by a get.
    Broken(u8, Vec<u8>),
}

fn key(k: u8) -> Vec<u8> {
    format!("key:{k:03}").into_bytes()
}

fn req() -> impl Strategy<Value = Req> {
    let value = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (0u8..24).prop_map(Req::Get),
        (0u8..24, value.clone()).prop_map(|(k, v)| Req::Put(k, v)),
        (0u8..24).prop_map(Req::Del),
        (0u8..30, any::<bool>(), 0u16..12).prop_map(|(k, a, l)| Req::Scan(k, a, l)),
        proptest::collection::vec((0u8..24, proptest::option::of(value.clone())), 1..6)
            .prop_map(Req::Txn),
        (0u8..24, value).prop_map(|(k, v)| Req::Broken(k, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every request's replies match the model; after a reopen of the
    /// disk the keyspace is the model's (every acknowledged write durable).
    #[test]
    fn requests_match_a_btreemap_model(reqs in proptest::collection::vec(req(), 1..60)) {
        let mut srv = fresh(Durability::Strict);
        let mut front = Front::new(false);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (i, r) in reqs.iter().enumerate() {
            let id = i as u64 + 100;
            match r {
                Req::Get(k) => {
                    let rep = one(&mut front, &mut srv, &hallows_kv::get(id, &key(*k)).unwrap());
                    match model.get(&key(*k)) {
                        Some(v) => {
                            prop_assert_eq!(rep.status, KvStatus::Value);
                            prop_assert_eq!(rep.value.as_bytes(), v.as_slice());
                        }
                        None => prop_assert_eq!(rep.status, KvStatus::NotFound),
                    }
                }
                Req::Put(k, v) => {
                    let rep = one(&mut front, &mut srv, &hallows_kv::put(id, &key(*k), v).unwrap());
                    prop_assert_eq!(rep.status, KvStatus::Ok);
                    model.insert(key(*k), v.clone());
                }
                Req::Del(k) => {
                    let rep = one(&mut front, &mut srv, &hallows_kv::delete(id, &key(*k)).unwrap());
                    prop_assert_eq!(rep.status, KvStatus::Ok);
                    prop_assert_eq!(rep.count, u32::from(model.remove(&key(*k)).is_some()));
                }
                Req::Scan(k, after, limit) => {
                    let replies = call(&mut front, &mut srv, &hallows_kv::scan(id, &key(*k), *after, *limit).unwrap());
                    let want_n = if *limit == 0 { 64 } else { *limit as usize };
                    let from = key(*k);
                    let want: Vec<(&Vec<u8>, &Vec<u8>)> = model.iter().filter(|(mk, _)| if *after { **mk > from } else { **mk >= from }).collect();
                    let (end, entries) = replies.split_last().unwrap();
                    prop_assert_eq!(end.status, KvStatus::ScanEnd);
                    prop_assert_eq!(entries.len(), want.len().min(want_n));
                    prop_assert_eq!(end.more.get(), want.len() > want_n);
                    for (e, (mk, mv)) in entries.iter().zip(&want) {
                        prop_assert_eq!(e.id, id);
                        prop_assert_eq!(e.key.as_bytes(), mk.as_slice());
                        prop_assert_eq!(e.value.as_bytes(), mv.as_slice());
                    }
                }
                Req::Txn(ops) => {
                    for (j, (k, v)) in ops.iter().enumerate() {
                        let last = j + 1 == ops.len();
                        let replies = call(&mut front, &mut srv, &hallows_kv::txn_op(id, j as u16, &key(*k), v.as_deref(), last).unwrap());
                        if !last {
                            prop_assert!(replies.is_empty());
                            continue;
                        }
                        prop_assert_eq!(replies.len(), 1);
                        prop_assert_eq!(replies[0].status, KvStatus::Ok);
                        prop_assert_eq!(replies[0].count as usize, ops.len());
                    }
                    for (k, v) in ops {
                        match v {
                            Some(v) => model.insert(key(*k), v.clone()),
                            None => model.remove(&key(*k)),
                        };
                    }
                }
                Req::Broken(k, v) => {
                    prop_assert!(call(&mut front, &mut srv, &hallows_kv::txn_op(id, 0, &key(*k), Some(v), false).unwrap()).is_empty());
                    let replies = call(&mut front, &mut srv, &hallows_kv::get(id + 1_000_000, &key(*k)).unwrap());
                    prop_assert_eq!(replies.len(), 2);
                    prop_assert_eq!(replies[0].id, id);
                    prop_assert_eq!(replies[0].status, KvStatus::Err);
                    prop_assert_eq!(replies[0].error, KvError::BadRequest);
                    // Nothing of it applied.
                    match model.get(&key(*k)) {
                        Some(mv) => prop_assert_eq!(replies[1].value.as_bytes(), mv.as_slice()),
                        None => prop_assert_eq!(replies[1].status, KvStatus::NotFound),
                    }
                }
            }
        }
        let all = scan_all(&mut front, &mut srv, 5);
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
        prop_assert_eq!(&all, &want);
        // Reopened on the same disk: exactly the model.
        let disk = srv.store.into_device();
        let mut srv = open(disk, Durability::Strict);
        prop_assert_eq!(scan_all(&mut front, &mut srv, 64), want);
    }

    /// Any bytes as a request: no panic; a request that is not well formed
    /// is answered with exactly one `Err` reply and changes nothing.
    #[test]
    fn hostile_bytes_never_panic_and_change_nothing(raw in proptest::collection::vec(any::<u8>(), size_of::<KvRequest>()..=size_of::<KvRequest>()), op in 0u8..10, flags in any::<u8>(), lens in (any::<u16>(), any::<u16>())) {
        let mut srv = fresh(Durability::Strict);
        let mut front = Front::new(false);
        one(&mut front, &mut srv, &hallows_kv::put(1, b"kept", b"value").unwrap());
        let mut req = KvRequest::read_from_bytes(&raw).unwrap();
        // Mostly valid-looking ops and lengths near the bounds, sometimes anything.
        if raw[0] % 2 == 0 {
            req.op = hallows_kv::KvOp(op);
            req.flags = flags % 4;
            let b = req.as_mut_bytes();
            b[12..14].copy_from_slice(&(lens.0 % 160).to_ne_bytes());
            b[142..144].copy_from_slice(&(lens.1 % 1100).to_ne_bytes());
        }
        req.id = 9;
        let before = scan_all(&mut front, &mut srv, 64);
        front.handle(&mut srv, 1, &req);
        // A lone TxnPut/TxnDelete without TXN_LAST waits for the rest: a
        // get breaks it off.
        front.handle(&mut srv, 1, &hallows_kv::get(10, b"kept").unwrap());
        srv.store.sync().unwrap();
        let mut replies = Vec::new();
        while let Some(r) = front.pop_ready(srv.store.durable()) {
            replies.push(r);
        }
        let last = replies.pop().unwrap();
        prop_assert_eq!(last.id, 10);
        prop_assert_eq!(last.value.as_bytes(), b"value".as_slice());
        let well_formed = hallows_kv::raw_len(&req.key) <= MAX_KEY && hallows_kv::raw_len(&req.value) <= MAX_VALUE;
        let valid_op = req.op.is_known();
        if !well_formed || !valid_op {
            prop_assert!(replies.iter().all(|r| r.id == 9 && r.status == KvStatus::Err), "{:?}", replies);
            prop_assert_eq!(replies.len(), 1);
            prop_assert_eq!(scan_all(&mut front, &mut srv, 64), before);
        }
        for r in &replies {
            prop_assert_eq!(r.id, 9);
            prop_assert!(r.status.is_known());
        }
    }
}

#[test]
fn strict_replies_wait_for_durability() {
    let mut srv = fresh(Durability::Strict);
    let mut front = Front::new(false);
    front.handle(&mut srv, 1, &hallows_kv::put(1, b"a", b"1").unwrap());
    front.handle(&mut srv, 1, &hallows_kv::get(2, b"a").unwrap());
    front.handle(&mut srv, 1, &hallows_kv::get(3, b"zz").unwrap());
    assert!(
        front.pop_ready(srv.store.durable()).is_none(),
        "a write acknowledged before it is durable"
    );
    assert_eq!(front.queued(), 3);
    srv.store.sync().unwrap();
    let d = srv.store.durable();
    let r: Vec<KvReply> = std::iter::from_fn(|| front.pop_ready(d)).collect();
    assert_eq!(
        r.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        vec![
            (1, KvStatus::Ok),
            (2, KvStatus::Value),
            (3, KvStatus::NotFound)
        ]
    );
}

#[test]
fn group_durability_replies_at_once() {
    let mut srv = fresh(Durability::Group { window_us: 10_000 });
    let mut front = Front::new(false);
    front.handle(&mut srv, 1, &hallows_kv::put(1, b"a", b"1").unwrap());
    assert_eq!(
        front.pop_ready(srv.store.durable()).map(|r| r.status),
        Some(KvStatus::Ok)
    );
}

#[test]
fn transactions_are_one_record_and_all_or_nothing() {
    let mut srv = fresh(Durability::Strict);
    let mut front = Front::new(false);
    one(
        &mut front,
        &mut srv,
        &hallows_kv::put(1, b"x", b"old").unwrap(),
    );
    let commits = srv.store.stats().commits;
    call(
        &mut front,
        &mut srv,
        &hallows_kv::txn_op(2, 0, b"x", None, false).unwrap(),
    );
    call(
        &mut front,
        &mut srv,
        &hallows_kv::txn_op(2, 1, b"y", Some(b"1"), false).unwrap(),
    );
    let r = one(
        &mut front,
        &mut srv,
        &hallows_kv::txn_op(2, 2, b"z", Some(b"2"), true).unwrap(),
    );
    assert_eq!((r.status, r.count), (KvStatus::Ok, 3));
    assert_eq!(srv.store.stats().commits, commits + 1, "one record");
    // Too many operations: refused whole, nothing applied.
    for i in 0..hallows_kv::MAX_TXN_OPS + 1 {
        let last = i == hallows_kv::MAX_TXN_OPS;
        let r = call(
            &mut front,
            &mut srv,
            &hallows_kv::txn_op(3, i as u16, format!("t{i}").as_bytes(), Some(b"v"), last).unwrap(),
        );
        if last {
            assert_eq!(
                (r[0].status, r[0].error),
                (KvStatus::Err, KvError::BadRequest)
            );
        }
    }
    assert_eq!(
        one(&mut front, &mut srv, &hallows_kv::get(4, b"t0").unwrap()).status,
        KvStatus::NotFound
    );
    // A bad op inside: refused whole at the last op.
    call(
        &mut front,
        &mut srv,
        &hallows_kv::txn_op(5, 0, b"q", Some(b"1"), false).unwrap(),
    );
    let mut bad = hallows_kv::txn_op(5, 1, b"w", None, true).unwrap();
    bad.flags |= 1;
    let r = one(&mut front, &mut srv, &bad);
    assert_eq!((r.status, r.error), (KvStatus::Err, KvError::BadRequest));
    assert_eq!(
        one(&mut front, &mut srv, &hallows_kv::get(6, b"q").unwrap()).status,
        KvStatus::NotFound
    );
    let all = scan_all(&mut front, &mut srv, 2);
    assert_eq!(
        all,
        vec![
            (b"y".to_vec(), b"1".to_vec()),
            (b"z".to_vec(), b"2".to_vec())
        ]
    );
}

#[test]
fn resp_values_the_channel_cannot_carry_are_refused_and_types_checked() {
    let mut srv = fresh(Durability::Group { window_us: 10_000 });
    let mut front = Front::new(false);
    let big = vec![b'b'; 2000];
    let mut out = Vec::new();
    let mut sess = Session::default();
    srv.execute(&mut sess, 1, &[b"SET", b"big", &big], &mut out);
    srv.execute(&mut sess, 1, &[b"HSET", b"h", b"f", b"v"], &mut out);
    let r = one(&mut front, &mut srv, &hallows_kv::get(1, b"big").unwrap());
    assert_eq!((r.status, r.error), (KvStatus::Err, KvError::TooLarge));
    let r = one(&mut front, &mut srv, &hallows_kv::get(2, b"h").unwrap());
    assert_eq!((r.status, r.error), (KvStatus::Err, KvError::WrongType));
    let r = call(
        &mut front,
        &mut srv,
        &hallows_kv::scan(3, b"", false, 10).unwrap(),
    );
    // The hash is skipped; the big string comes with TooLarge and its length.
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].error, r[0].count, r[0].key.as_bytes()),
        (KvError::TooLarge, 2000, b"big".as_slice())
    );
    // Channel writes are visible to RESP and the other way round.
    one(
        &mut front,
        &mut srv,
        &hallows_kv::put(4, b"k", b"from the channel").unwrap(),
    );
    out.clear();
    srv.execute(&mut sess, 1, &[b"GET", b"k"], &mut out);
    assert_eq!(out, b"$16\r\nfrom the channel\r\n");
}

#[test]
fn shutdown_is_refused_without_quit() {
    let mut srv = fresh(Durability::Strict);
    let mut front = Front::new(false);
    let r = one(&mut front, &mut srv, &hallows_kv::shutdown(1));
    assert_eq!((r.status, r.error), (KvStatus::Err, KvError::Refused));
    assert!(!front.shutdown_requested());
    let mut front = Front::new(true);
    let r = one(&mut front, &mut srv, &hallows_kv::shutdown(2));
    assert_eq!(r.status, KvStatus::Ok);
    assert!(front.shutdown_requested());
}

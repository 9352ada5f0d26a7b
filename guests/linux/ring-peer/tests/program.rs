//! The real `ring-peer` binary (host build) against a device tree laid out
//! as Linux shows it under /proc/device-tree, with a file standing in for
//! /dev/mem: the responder runs in this process on the same file, through
//! the same mapping code, while the program initiates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hallows_peer::{expected_checksum, respond, Blocked, Link, Msg};
use hallows_ring::Tuning;
use linux_ring_peer::dt::{self, Role};
use linux_ring_peer::mem;

const REQ: u64 = 0x10000;
const RESP: u64 = 0x30000;
const DOORBELL: u64 = 0x50000;

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn be64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn s(v: &str) -> Vec<u8> {
    let mut b = v.as_bytes().to_vec();
    b.push(0);
    b
}

/// A scratch directory with `dt/` (the tree) and `mem` (the memory file).
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ring-peer").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("dt/hallows")).unwrap();
    let f = std::fs::File::create(d.join("mem")).unwrap();
    f.set_len(DOORBELL + 4096).unwrap();
    let h = d.join("dt/hallows");
    std::fs::write(h.join("#address-cells"), be32(2)).unwrap();
    std::fs::write(h.join("#size-cells"), be32(2)).unwrap();
    std::fs::write(h.join("compatible"), s("hallows,channels")).unwrap();
    d
}

fn channel(d: &Path, ipa: u64, name: &str, role: &str, slots: u32, doorbell: Option<u64>) -> PathBuf {
    let n = d.join(format!("dt/hallows/channel@{ipa:x}"));
    std::fs::create_dir_all(&n).unwrap();
    // No `hallows,tuning`: latency (the memory is the same for every tuning).
    let layout = hallows_ring::ChannelLayout::new(64, slots as usize).unwrap();
    let mut reg = be64(ipa);
    reg.extend(be64(layout.total_size() as u64));
    for (p, v) in [
        ("compatible", s("hallows,channel")),
        ("reg", reg),
        ("hallows,name", s(name)),
        ("hallows,role", s(role)),
        ("hallows,slot-size", be32(64)),
        ("hallows,slot-count", be32(slots)),
        ("hallows,layout-hash", be64(hallows_peer::LAYOUT_HASH)),
    ] {
        std::fs::write(n.join(p), v).unwrap();
    }
    if let Some(db) = doorbell {
        std::fs::write(n.join("hallows,doorbell"), be64(db)).unwrap();
    }
    n
}

fn program(d: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ring-peer"));
    c.arg("--dt").arg(d.join("dt")).arg("--mem").arg(d.join("mem")).args(extra);
    c
}

struct Yield;

impl Link for Yield {
    fn notify(&mut self) {}
    fn idle(&mut self, _: Blocked, rounds: u64) -> bool {
        std::thread::sleep(Duration::from_micros(if rounds < 100 { 1 } else { 100 }));
        rounds < 600_000
    }
}

#[test]
fn the_program_exchanges_a_hundred_thousand_messages_with_a_responder() {
    let d = scratch("exchange");
    channel(&d, REQ, "to-rust", "producer", 256, Some(DOORBELL));
    let n = channel(&d, RESP, "to-linux", "consumer", 256, None);
    std::fs::write(n.join("hallows,tuning"), s("throughput")).unwrap();
    let tree = dt::channels(&d.join("dt")).unwrap();
    assert_eq!(tree.len(), 2);
    assert_eq!((tree[0].name.as_str(), tree[0].role, tree[0].doorbell), ("to-rust", Role::Producer, Some(DOORBELL)));
    // No `hallows,tuning` is latency; the property tunes the layout.
    assert_eq!((tree[0].layout.tuning(), tree[1].layout.tuning()), (Tuning::Latency, Tuning::Throughput));
    assert_eq!(tree[1].layout, hallows_ring::ChannelLayout::new(64, 256).unwrap().tuned(Tuning::Throughput));
    // The responder's side is the mirror image: it consumes `to-rust`.
    let memfile = d.join("mem");
    let mut rx = mem::receiver::<Msg>(&memfile, REQ, tree[0].layout).unwrap();
    let mut tx = mem::sender::<Msg>(&memfile, RESP, tree[1].layout).unwrap();
    let responder = std::thread::spawn(move || respond(&mut rx.endpoint, &mut tx.endpoint, 100_000, &mut Yield));
    let out = program(&d, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = responder.join().unwrap().expect("the responder finished");
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let want = format!("ring-peer: ok 100000 messages checksum {:#018x}", expected_checksum(100_000));
    assert!(stdout.lines().any(|l| l == want), "{stdout}");
    assert_eq!(report.checksum, expected_checksum(100_000));
    assert!(stdout.contains("tx to-rust@0x10000 (256 slots of 64 bytes, latency, doorbell 0x50000), rx to-linux@0x30000 (256 slots of 64 bytes, throughput, polled)"), "{stdout}");
    // The doorbell page got the program's 32-bit stores.
    let m = std::fs::read(&memfile).unwrap();
    assert_eq!(&m[DOORBELL as usize..DOORBELL as usize + 4], &1u32.to_ne_bytes());
}

#[test]
fn a_silent_partner_is_a_timeout_not_a_hang() {
    let d = scratch("silent");
    channel(&d, REQ, "to-rust", "producer", 64, None);
    channel(&d, RESP, "to-linux", "consumer", 64, None);
    let out = program(&d, &["--count", "10", "--timeout-s", "1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ring-peer: FAILED: timed out waiting for room in the outgoing ring after sending 0 and receiving 0"), "{stdout}");
}

#[test]
fn a_malformed_tree_is_refused_with_the_property_named() {
    let d = scratch("malformed");
    let n = channel(&d, REQ, "to-rust", "producer", 64, None);
    channel(&d, RESP, "to-linux", "consumer", 64, None);
    let run = |d: &Path| {
        let out = program(d, &["--count", "10"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::write(n.join("hallows,slot-count"), [0, 0, 1]).unwrap();
    let out = run(&d);
    assert!(out.contains("channel@10000/hallows,slot-count: expected 4 bytes (1 cell(s)), found 3"), "{out}");
    std::fs::write(n.join("hallows,slot-count"), be32(48)).unwrap();
    assert!(run(&d).contains("slot size 64 and count 48 are not a channel layout"));
    std::fs::write(n.join("hallows,slot-count"), be32(64)).unwrap();
    std::fs::write(n.join("hallows,role"), s("both")).unwrap();
    assert!(run(&d).contains("hallows,role: \"both\", expected \"producer\" or \"consumer\""));
    std::fs::write(n.join("hallows,role"), s("consumer")).unwrap();
    assert!(run(&d).contains("no channel this partition sends on (role producer); the device tree has \"to-rust\" (consumer), \"to-linux\" (consumer)"));
    std::fs::write(n.join("hallows,role"), s("producer")).unwrap();
    std::fs::write(n.join("hallows,tuning"), s("bulk")).unwrap();
    let out = run(&d);
    assert!(out.contains("channel@10000/hallows,tuning: \"bulk\", expected \"latency\" or \"throughput\""), "{out}");
    std::fs::write(n.join("hallows,tuning"), [b'x']).unwrap();
    assert!(run(&d).contains("channel@10000/hallows,tuning: not a NUL-terminated string"));
    std::fs::write(n.join("hallows,tuning"), s("latency")).unwrap();
    std::fs::write(n.join("hallows,layout-hash"), be64(1)).unwrap();
    assert!(run(&d).contains("the system records message layout hash 0x0000000000000001"));
    std::fs::write(n.join("hallows,layout-hash"), be64(0)).unwrap();
    let mut reg = be64(REQ);
    reg.extend(be64(4096));
    std::fs::write(n.join("reg"), reg).unwrap();
    assert!(run(&d).contains("is smaller than the layout's"));
    let _ = std::fs::remove_dir_all(d.join("dt/hallows"));
    assert!(run(&d).contains("no channel this partition sends on (role producer); the device tree has none"));
}

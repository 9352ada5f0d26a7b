//! The device-tree reader on damaged trees: random bytes in every property
//! never panic it, and whatever it accepts is a channel the ring can use.

use std::path::Path;

use linux_ring_peer::dt;

fn write_valid(n: &Path) {
    std::fs::create_dir_all(n).unwrap();
    let h = n.parent().unwrap();
    std::fs::write(h.join("#address-cells"), 2u32.to_be_bytes()).unwrap();
    std::fs::write(h.join("#size-cells"), 2u32.to_be_bytes()).unwrap();
    let mut reg = 0x1_0000_0000u64.to_be_bytes().to_vec();
    reg.extend(0x6000u64.to_be_bytes());
    for (p, v) in [
        ("compatible", b"hallows,channel\0".to_vec()),
        ("reg", reg),
        ("hallows,name", b"to-rust\0".to_vec()),
        ("hallows,role", b"producer\0".to_vec()),
        ("hallows,slot-size", 64u32.to_be_bytes().to_vec()),
        ("hallows,slot-count", 256u32.to_be_bytes().to_vec()),
        ("hallows,layout-hash", 0u64.to_be_bytes().to_vec()),
        ("hallows,doorbell", 0xb00_0000u64.to_be_bytes().to_vec()),
        ("hallows,tuning", b"throughput\0".to_vec()),
    ] {
        std::fs::write(n.join(p), v).unwrap();
    }
}

#[test]
fn random_property_bytes_are_refused_or_yield_a_usable_channel() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ring-peer-tree");
    let _ = std::fs::remove_dir_all(&root);
    let node = root.join("hallows/channel@100000000");
    let props = [
        "#address-cells", "#size-cells", "compatible", "reg", "hallows,name", "hallows,role",
        "hallows,slot-size", "hallows,slot-count", "hallows,layout-hash", "hallows,doorbell", "hallows,tuning",
    ];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut accepted, mut refused) = (0, 0);
    write_valid(&node);
    for _ in 0..500 {
        // One property damaged per round, restored after it.
        let p = props[(next() % props.len() as u64) as usize];
        let target = if p.starts_with('#') { node.parent().unwrap().join(p) } else { node.join(p) };
        let original = std::fs::read(&target).unwrap();
        // Lengths around the valid ones (4, 8, 16), bytes biased to
        // small values so that some damaged trees still parse.
        let len = [0, 3, 4, 5, 8, 12, 16, 17][(next() % 8) as usize];
        let bytes: Vec<u8> = (0..len).map(|_| if next() % 2 == 0 { 0 } else { next() as u8 }).collect();
        std::fs::write(&target, bytes).unwrap();
        match dt::channels(&root) {
            Ok(cs) => {
                for c in cs {
                    assert_eq!(c.ipa % 4096, 0);
                    assert!(c.size >= c.layout.total_size() as u64);
                    assert!(c.ipa.checked_add(c.size).is_some());
                    assert!(c.doorbell.is_none_or(|d| d % 4096 == 0));
                    assert!(!c.name.is_empty() && !c.name.contains('\0'));
                    // Only the property's exact names tune the layout.
                    let tuning = std::fs::read(node.join("hallows,tuning")).unwrap();
                    let want = if tuning == b"latency\0" { hallows_ring::Tuning::Latency } else { hallows_ring::Tuning::Throughput };
                    assert_eq!(c.layout.tuning(), want);
                }
                accepted += 1;
            }
            Err(e) => {
                assert!(e.to_string().starts_with(&root.display().to_string()), "{e}");
                refused += 1;
            }
        }
        std::fs::write(&target, original).unwrap();
    }
    // Both outcomes happened: the test does explore.
    eprintln!("accepted {accepted}, refused {refused}");
    assert!(accepted > 0 && refused > 250, "accepted {accepted}, refused {refused}");
    let _ = std::fs::remove_dir_all(&root);
}

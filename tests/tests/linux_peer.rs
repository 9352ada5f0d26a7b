//! The ring-peer protocol a Linux partition's `ring-peer` program speaks
//! (docs/linux.md), proved between two Rust partitions: the same
//! `hallows_peer` code, so only the Linux endpoint is new when a Linux
//! partition takes the initiator's place.

use hallows_tests::boot_system;

#[test]
fn linux_peer_protocol_between_two_rust_partitions() {
    let b = boot_system("linux-peer-protocol");
    b.assert_status(0);
    b.assert_no_uncontained();
    let want = format!("ring-peer: ok 100000 messages checksum {:#018x}", hallows_peer::expected_checksum(100_000));
    for name in ["standin", "responder"] {
        assert!(b.lines_of(name).contains(&want.as_str()), "{name} did not print {want:?}:\n{}", b.output);
        assert_eq!(b.summary(name), "exited 0", "{}", b.output);
    }
    // The stand-in rang the responder's doorbell; the responder's answers
    // go out on a poll channel (no NOTIFY: it has no doorbell).
    let rings = |name: &str| b.lines_of(name).into_iter().find(|l| l.contains(" notifies, ")).map(str::to_owned);
    assert!(rings("standin").is_some_and(|l| l.starts_with("ring-peer: initiated: ") && !l.contains(": 0 notifies")), "{}", b.output);
}

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

/// The Linux endpoint without the hypervisor: Debian's arm64 kernel
/// (`hallows linux fetch`, done by `make deps`) boots in plain QEMU with
/// the initramfs `hallows linux initramfs` builds; its init script checks
/// the CPUs and runs both ends of the exchange as two `ring-peer`
/// processes through /dev/mem (O_SYNC, device memory: what a Linux
/// partition maps its channels with), over memory the kernel was told not
/// to use (`mem=256M` of 512 MiB), each end finding its channels in a
/// device-tree directory laid out as /proc/device-tree/hallows is.
#[test]
fn the_linux_program_exchanges_through_dev_mem_in_plain_qemu() {
    let root = hallows_tests::root();
    let fetched = hallows::linux::fetch(&root, false).expect("Debian's kernel and busybox (make deps fetches them)");
    let out = root.join("target/hallows/tests/linux-peer/initramfs.cpio");
    let initramfs = hallows::linux::initramfs(&root, &hallows::linux::InitramfsSpec::default(), Some(&out)).expect("building the initramfs");
    let mut qemu = std::process::Command::new("qemu-system-aarch64");
    qemu.args(["-M", "virt", "-cpu", "cortex-a57", "-smp", "2", "-m", "512", "-display", "none", "-monitor", "none", "-serial", "stdio", "-nodefaults", "-no-reboot"])
        .arg("-kernel")
        .arg(&fetched.kernel)
        .arg("-initrd")
        .arg(&initramfs)
        .args(["-append", "console=ttyAMA0 mem=256M panic=-1 hallows.cpus=2 hallows.test=ring-loopback hallows.loopback=0x58000000"]);
    let run = hallows_tests::run_with_timeout(&mut qemu, None, std::time::Duration::from_secs(600));
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "QEMU: {}\n{text}{}", run.status, String::from_utf8_lossy(&run.stderr));
    let want = format!("ring-peer: ok 100000 messages checksum {:#018x}", hallows_peer::expected_checksum(100_000));
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert!(lines.contains(&want.as_str()), "the initiator did not print {want:?}:\n{text}");
    assert!(lines.contains(&format!("responder: {want}").as_str()), "the responder did not print {want:?}:\n{text}");
    assert!(lines.contains(&"hallows-init: cpus ok 2 online (0-1)"), "{text}");
    assert!(lines.contains(&"hallows-init: ring-loopback ok both ends exited 0"), "{text}");
    assert!(lines.contains(&"hallows-init: done, 0 check(s) failed"), "{text}");
}

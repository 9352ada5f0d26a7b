//! The guest runtime on aarch64 (QEMU, EL2, GICv3): timer interrupts on
//! every core of a multi-core partition, preemption, the heap, and a
//! virtio-blk disk assigned to one partition.

use hallows_tests::{boot_system, boot_system_with, check_virtio_blk, virtio_blk_args, virtio_blk_disk};

#[test]
fn timer_interrupts_arrive_at_the_requested_rate_on_both_cores() {
    let b = boot_system("runtime-ticks");
    b.assert_status(0);
    let lines = b.lines_of("ticker");
    for core in 0..2 {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("core {core}: ")))
            .unwrap_or_else(|| panic!("no tick report for core {core}:\n{}", b.output));
        // "core C: K ticks in T us (expected E)": within 10% (the guest checks too).
        let k: u64 = line.split(' ').nth(2).and_then(|s| s.parse().ok()).expect("tick count");
        assert!((180..=220).contains(&k), "{line}");
    }
    assert!(lines.contains(&"ticks measured on 2 core(s)"), "{}", b.output);
    // The manifest's `log = "debug"` reached the guest's logger.
    assert!(lines.iter().any(|l| l.starts_with("DEBUG heap 0x")), "{}", b.output);
    assert_eq!(b.summary("ticker"), "exited 0");
}

#[test]
fn a_preempted_long_task_does_not_block_a_short_one_and_alloc_works() {
    let b = boot_system("runtime-tasks");
    b.assert_status(0);
    assert!(b.lines_of("preempt").contains(&"the short task was not blocked by the long one"), "{}", b.output);
    assert!(b.lines_of("heap").contains(&"alloc ok"), "{}", b.output);
    assert_eq!(b.summary("preempt"), "exited 0");
    assert_eq!(b.summary("heap"), "exited 0");
}

#[test]
fn virtio_blk_reads_and_writes_a_disk_only_its_owner_can_touch() {
    let (disk, image) = virtio_blk_disk("virtio-blk");
    // No `bus=`: QEMU puts the disk on the highest transport, virtio31.
    let b = boot_system_with("virtio-blk", &virtio_blk_args(&disk, None));
    check_virtio_blk(&b, &disk, &image, "0xa003e00");
}

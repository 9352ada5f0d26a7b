//! The guest runtime on aarch64 (QEMU, EL2, GICv3): timer interrupts on
//! every core of a multi-core partition, preemption, the heap, and a
//! virtio-blk disk assigned to one partition.

use hallows_tests::{boot_system, boot_system_with, root};

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

const SECTOR: usize = 512;

#[test]
fn virtio_blk_reads_and_writes_a_disk_only_its_owner_can_touch() {
    let dir = root().join("target/hallows/tests/virtio-blk");
    std::fs::create_dir_all(&dir).expect("disk dir");
    let disk = dir.join("disk.img");
    let mut image = vec![0u8; 64 * SECTOR];
    for i in 0..8 {
        for j in 0..SECTOR {
            image[i * SECTOR + j] = ((i * 7 + j) % 251) as u8;
        }
    }
    std::fs::write(&disk, &image).expect("writing the disk image");
    let extra: Vec<String> = [
        "-drive".to_owned(),
        format!("file={},if=none,format=raw,id=d0", disk.display()),
        "-device".to_owned(),
        "virtio-blk-device,drive=d0".to_owned(),
    ]
    .into();
    let b = boot_system_with("virtio-blk", &extra);
    b.assert_status(1);
    b.assert_no_uncontained();
    let lines = b.lines_of("disk");
    assert!(lines.contains(&"read the pattern from sectors 0..8"), "{}", b.output);
    assert!(lines.contains(&"wrote sectors 8..16"), "{}", b.output);
    assert!(lines.contains(&"device interrupts taken: yes"), "{}", b.output);
    assert_eq!(b.summary("disk"), "exited 0");
    assert!(b.summary("snoop").starts_with("stopped: stage-2 fault: read at 0xa003e00"), "{}", b.output);
    let after = std::fs::read(&disk).expect("reading the disk image back");
    assert_eq!(&after[..8 * SECTOR], &image[..8 * SECTOR], "the pattern sectors changed");
    for i in 8..16 {
        for j in 0..SECTOR {
            assert_eq!(after[i * SECTOR + j], ((i * 13 + j) % 241) as u8, "sector {i} byte {j}");
        }
    }
    assert!(after[16 * SECTOR..].iter().all(|&b| b == 0), "sectors past 16 changed");
}

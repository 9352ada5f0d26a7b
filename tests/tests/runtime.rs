//! The guest runtime on aarch64 (QEMU, EL2, GICv3): timer interrupts on
//! every core of a multi-core partition, preemption, the heap, and a
//! virtio-blk disk assigned to one partition.

use hallows_tests::{boot_system, boot_system_with, root};

mod runtime_checks;
use runtime_checks::{check_echo, check_tasks, check_ticks};

#[test]
fn timer_interrupts_arrive_at_the_requested_rate_on_both_cores() {
    check_ticks(&boot_system("runtime-ticks"));
}

#[test]
fn tasks_await_channel_doorbells_and_sleep() {
    check_echo(&boot_system("runtime-echo"));
}

#[test]
fn a_preempted_long_task_does_not_block_a_short_one_and_alloc_works() {
    check_tasks(&boot_system("runtime-tasks"));
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

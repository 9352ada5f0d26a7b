//! The guest runtime on aarch64 (QEMU, EL2, GICv3): timer interrupts on
//! every core of a multi-core partition, preemption, the heap, and a
//! virtio-blk disk assigned to one partition.

use hallows_tests::{boot_system, boot_system_with, check_virtio_blk, virtio_blk_args, virtio_blk_disk};

mod runtime_checks;
use runtime_checks::{check_echo, check_memcheck, check_tasks, check_ticks};

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
    let b = boot_system("runtime-tasks");
    check_tasks(&b);
    assert!(b.lines_of("overflow").contains(&"overflow: 48 tasks through a queue of 4, all done"), "{}", b.output);
    assert_eq!(b.summary("overflow"), "exited 0");
}

/// `task::parallel_for` (the OLAP partition's executor): 200 rounds of 64
/// closures over borrowed data on two cores, each run exactly once, some
/// on the second core.
#[test]
fn parallel_for_runs_each_borrowed_task_once_on_both_cores() {
    let b = boot_system("runtime-parallel");
    let line = b.lines_of("parallel").into_iter().find(|l| l.starts_with("parallel: ")).unwrap_or_else(|| panic!("no result line:\n{}", b.output)).to_string();
    eprintln!("{line}");
    assert!(line.contains("on 2 core(s): 0 wrong,"), "{}", b.output);
    assert_eq!(b.summary("parallel"), "exited 0", "{}", b.output);
}

/// The runtime's `memcpy`, `memmove`, `memset` and `memcmp`
/// (guests/runtime/mem) against a byte-by-byte reference on the target
/// itself: every size to 200 bytes and some larger, every alignment of
/// both pointers, every small overlap.
#[test]
fn memory_primitives_match_a_byte_by_byte_reference() {
    check_memcheck(&boot_system("runtime-mem"));
}

#[test]
fn virtio_blk_reads_and_writes_a_disk_only_its_owner_can_touch() {
    let (disk, image) = virtio_blk_disk("virtio-blk");
    // No `bus=`: QEMU puts the disk on the highest transport, virtio31.
    let b = boot_system_with("virtio-blk", &virtio_blk_args(&disk, None));
    check_virtio_blk(&b, &disk, &image, "0xa003e00");
}

//! Device assignment on x86_64: QEMU's `microvm` machine (board
//! `qemu-microvm`) under TCG with `-cpu EPYC` (AMD SVM with nested paging),
//! its virtio-mmio transports given to partitions. The twin of the aarch64
//! virtio-blk test in `runtime.rs`, with the same guest and assertions; and
//! the board's timers (its PIT has no port 0x61).

use hallows_tests::{
    boot_system, boot_system_with, check_virtio_blk, check_virtio_blk_disk, qemu_bus, virtio_blk_args, virtio_blk_disk,
};

// Shared with the runtime suites; only `check_ticks` is used here.
#[allow(dead_code)]
mod runtime_checks;
use runtime_checks::check_ticks;

/// The disk sits on transport `virtio23` (GSI 47, the last of the page at
/// 0xfeb02000 that `disk` owns): its registers, DMA into `disk`'s RAM at
/// its physical address, and its interrupt (routed through the second I/O
/// APIC to `disk`'s boot core, injected as `DEVICE_VECTOR_BASE + 7`) reach
/// `disk` only; `snoop` touching the registers is stopped by a
/// nested-page fault.
#[test]
fn virtio_blk_on_microvm_reads_and_writes_a_disk_only_its_owner_can_touch() {
    let (disk, image) = virtio_blk_disk("x86-virtio-blk");
    let bus = qemu_bus("x86-virtio-blk", "virtio23");
    let b = boot_system_with("x86-virtio-blk", &virtio_blk_args(&disk, Some(&bus)));
    assert!(b.output.contains("x86_64, AMD SVM"), "{}", b.output);
    assert!(b.lines_of("disk").contains(&"virtio-blk at 0xfeb02e00, interrupt 71"), "{}", b.output);
    check_virtio_blk(&b, &disk, &image, "0xfeb02e00");
}

/// A device owner that restarts gets its device back, reset, with its
/// interrupt masked while it was down and routed again when it starts:
/// both runs read, write and take interrupts.
#[test]
fn a_restarted_device_owner_drives_its_disk_again() {
    let (disk, image) = virtio_blk_disk("x86-virtio-blk-restart");
    let bus = qemu_bus("x86-virtio-blk-restart", "virtio23");
    let b = boot_system_with("x86-virtio-blk-restart", &virtio_blk_args(&disk, Some(&bus)));
    let lines = b.lines_of("disk");
    for line in ["read the pattern from sectors 0..8", "wrote sectors 8..16", "device interrupts taken: yes"] {
        assert_eq!(lines.iter().filter(|l| **l == line).count(), 2, "{line}:\n{}", b.output);
    }
    assert!(b.output.contains("partition disk faulted: the guest panicked; restarting it (1 of 1)"), "{}", b.output);
    assert_eq!(b.summary("disk"), "exited 0 (restarted 1 times)");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("snoop").starts_with("stopped: stage-2 fault: read at 0xfeb02e00"), "{}", b.output);
    check_virtio_blk_disk(&disk, &image);
}

/// The TSC is calibrated on PIT channel 0 (microvm has no port 0x61): the
/// guest's periodic timer ticks at the requested rate, measured with the
/// TSC, within 10% (a broken calibration was off by a factor of 6500).
#[test]
fn timer_interrupts_on_microvm_arrive_at_the_requested_rate() {
    let b = boot_system("x86-microvm-ticks");
    assert!(b.output.contains("(measured against the PIT)"), "{}", b.output);
    check_ticks(&b);
}

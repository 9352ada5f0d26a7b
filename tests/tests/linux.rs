//! Linux partitions (aarch64, docs/linux.md): an unmodified Debian arm64
//! kernel boots in a 2-vCPU partition beside two Rust partitions, with the
//! device tree `hallows build` generates; its init
//! (guests/linux/initramfs/init) checks its CPUs and RAM against the
//! manifest and exchanges 100,000 messages with a Rust partition over two
//! channels. Reading another partition's memory through /dev/mem stops
//! only the Linux partition; a kernel panic restarts, then stops, only it.
//! `hallows linux-cost` measures EL2 instructions per Linux timer tick and
//! per IPI between its vCPUs.
//!
//! The kernel and busybox are Debian's, fetched by `make deps` into
//! `target/linux`; without them these tests fail and say which command
//! to run. Under
//! TCG on a loaded machine a boot to init takes 5 to 10 s of guest time
//! (15 to 50 s wall for the whole system, build excluded): the boots run
//! under the harness's hard timeout (`BOOT_TIMEOUT`).

use hallows_tests::{boot_system, root, Boot};

/// The kernel and initramfs the test systems name, from `make deps`
/// (`hallows linux initramfs`: Debian's kernel and busybox fetched with
/// apt, verified, into target/linux; the initramfs with
/// guests/linux/initramfs/init and ring-peer).
fn boot(name: &str) -> Boot {
    require_kernel();
    boot_system(name)
}

fn require_kernel() {
    let dir = root().join("target/linux");
    for f in ["Image", "initramfs.cpio"] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: run `make deps` (or `cargo run -p hallows -- linux initramfs`), which fetches Debian's arm64 kernel and busybox with apt and builds the initramfs, then run the tests again",
            dir.join(f).display()
        );
    }
}

/// What every Linux boot here shows: the kernel booted on the generated
/// device tree (its model line names the partition), brought up both
/// vCPUs through PSCI, found its GICv3 redistributors, and init saw
/// exactly the partition's CPUs and RAM.
fn assert_linux_came_up(b: &Boot) {
    let lines = b.lines_of("linux");
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(has("Machine model: RustHallows partition linux"), "{}", b.output);
    assert!(has("psci: PSCIv1.1 detected in firmware."), "{}", b.output);
    assert!(has("GICv3: CPU1: found redistributor 1 region 0:0x00000000080c0000"), "{}", b.output);
    assert!(has("smp: Brought up 1 node, 2 CPUs"), "{}", b.output);
    assert!(has("hallows-init: cpus ok 2 online (0-1)"), "{}", b.output);
    assert!(has("hallows-init: ram ok device tree 192 MiB, MemTotal"), "{}", b.output);
    assert!(!has("FAILED"), "{}", b.output);
    // Partition output is escaped by the hypervisor; Linux's CRs are dropped.
    assert!(!b.output.contains("\\u{0d}"), "{}", b.output);
}

fn assert_rust_partitions_finished(b: &Boot, primes: &str, other: &str) {
    assert_eq!(b.summary("primes"), "exited 0", "{}", b.output);
    assert_eq!(b.summary(other), "exited 0", "{}", b.output);
    assert!(b.lines_of("primes").contains(&primes), "{}", b.output);
}

/// `hallows_peer::expected_checksum(100_000)`: both ends fold every
/// request and response into it (docs/linux.md, "The protocol").
const CHECKSUM_100K: &str = "0xa42602d661fc2d83";

#[test]
fn linux_boots_exchanges_100000_messages_with_a_rust_partition_and_powers_off() {
    let b = boot("linux");
    b.assert_status(0);
    assert_linux_came_up(&b);
    let done = format!("ok 100000 messages checksum {CHECKSUM_100K}");
    assert!(b.lines_of("linux").iter().any(|l| l.starts_with("ring-peer: ") && l.contains(&done)), "{}", b.output);
    assert!(b.lines_of("peer").iter().any(|l| l.starts_with("ring-peer: ") && l.contains(&done)), "{}", b.output);
    assert!(b.lines_of("linux").contains(&"hallows-init: done, 0 check(s) failed"), "{}", b.output);
    assert!(b.lines_of("linux").iter().any(|l| l.contains("reboot: Power down")), "{}", b.output);
    assert_eq!(b.summary("linux"), "exited 0", "{}", b.output);
    // IPIs went through the hypervisor's virtual SGIs (trapped
    // ICC_SGI1R_EL1), and the console, GIC and doorbells were emulated.
    let report = b.lines_of("hallows").into_iter().find_map(|l| l.strip_prefix("linux: linux: ")).unwrap_or_else(|| panic!("no report:\n{}", b.output));
    let numbers: Vec<u64> = report.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(numbers.len() == 3 && numbers.iter().all(|&n| n > 0), "{report}");
    assert_rust_partitions_finished(&b, "2262 primes below 20000", "peer");
}

#[test]
fn linux_reading_another_partitions_memory_is_stopped() {
    let b = boot("linux-devmem");
    b.assert_status(1);
    assert_linux_came_up(&b);
    let lines = b.lines_of("linux");
    assert!(lines.iter().any(|l| l.starts_with("hallows-init: devmem reading 0x5e000000")), "{}", b.output);
    // The read never completed: the partition stopped on it.
    assert!(!lines.iter().any(|l| l.starts_with("hallows-init: devmem ") && !l.starts_with("hallows-init: devmem reading")), "{}", b.output);
    assert!(!lines.iter().any(|l| l.starts_with("hallows-init: done")), "{}", b.output);
    let s = b.summary("linux");
    assert!(s.starts_with("stopped: stage-2 fault: read at 0x5e000000, outside its memory"), "{}", b.output);
    assert_rust_partitions_finished(&b, "78498 primes below 1000000", "hello");
}

#[test]
fn a_kernel_panic_restarts_then_stops_only_its_partition() {
    let b = boot("linux-panic");
    b.assert_status(1);
    assert_linux_came_up(&b);
    let lines = b.lines_of("linux");
    assert_eq!(lines.iter().filter(|l| **l == "hallows-init: panic: crashing the kernel through /proc/sysrq-trigger").count(), 2, "{}", b.output);
    assert!(lines.iter().any(|l| l.contains("Kernel panic - not syncing: sysrq triggered crash")), "{}", b.output);
    let hv = b.lines_of("hallows");
    assert!(hv.contains(&"partition linux faulted: it reset itself (PSCI SYSTEM_RESET); restarting it (1 of 1)"), "{}", b.output);
    assert_eq!(b.summary("linux"), "stopped: it reset itself (PSCI SYSTEM_RESET) (restarted 1 times)", "{}", b.output);
    assert_rust_partitions_finished(&b, "2262 primes below 20000", "hello");
}

/// `hallows linux-cost` (tests/systems/linux-cost.toml): Linux boots
/// untraced, the hypervisor is traced between its init's two lines, and the
/// trace holds timer interrupts and IPIs sent and received, at least as
/// many as Linux counted in its windows (`check`), each a positive number
/// of instructions; the system ends normally. Outcomes only: the figures
/// themselves are docs/linux.md's (about 40 s of wall time once built).
#[test]
fn linux_cost_traces_ticks_and_ipis_between_its_vcpus() {
    require_kernel();
    let (sys, img) = hallows_tests::system_image("linux-cost");
    let elf = root().join("target").join(hallows::build::targets(sys.board.arch).0).join("release/hallows-hv");
    let sock = root().join("target/hallows/qmp").join(format!("linux-cost-test-{}.sock", std::process::id()));
    let (out, cost) = hallows::linuxcost::measure(&sys, &img, &elf, "linux", &sock, 4, hallows_tests::BOOT_TIMEOUT).expect("the measured run");
    assert_eq!(out.status, Some(0), "{}", out.output);
    assert!(out.output.contains("[linux] hallows-init: cost ok windows measured"), "{}", out.output);
    assert!(out.output.contains("[linux] hallows-init: done, 0 check(s) failed"), "{}", out.output);
    let report = cost.report();
    cost.check().unwrap_or_else(|e| panic!("{e:#}\n{}", out.output));
    assert_eq!(cost.windows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["busy", "pingpong"], "{report}");
    // Both vCPUs ticked in the busy window and took IPIs in the ping-pong.
    assert!(cost.windows[0].timer.len() == 2 && cost.windows[0].timer.iter().all(|&n| n > 0), "{report}");
    assert!(cost.windows[1].ipi.len() == 2 && cost.windows[1].ipi.iter().all(|&n| n > 0), "{report}");
    assert!(cost.per_tick() > 0.0 && cost.per_ipi() > cost.per_tick(), "{report}");
    for kind in ["IPI sent: ICC_SGI1R_EL1 trapped", "timer interrupt, forwarded in the vector", "IPI received: doorbell SGI"] {
        let line = report.lines().find(|l| l.contains(kind)).unwrap_or_else(|| panic!("no {kind} traps:\n{report}"));
        let traps: u64 = line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"));
        assert!(traps > 0, "{report}");
    }
    // The trap that sends an IPI ran the SGI emulation, and the tick's the
    // vector's forwarding: what the kinds are told apart by.
    assert!(report.contains("hallows_hv::arch::aarch64::vdev::send_sgi"), "{report}");
    assert!(report.contains("timer_forward"), "{report}");
    assert!(!sock.exists(), "the QMP socket was left behind");
}

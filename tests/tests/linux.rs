//! Linux partitions (aarch64, docs/linux.md): an unmodified Debian arm64
//! kernel boots in a 2-vCPU partition beside two Rust partitions, with the
//! device tree `hallows build` generates; its init
//! (`linux_init/init`) checks its CPUs and RAM against the manifest.
//! Reading another partition's memory through /dev/mem stops only the
//! Linux partition; a kernel panic restarts, then stops, only it.
//!
//! The kernel and busybox are Debian's, fetched by `make deps` into
//! `target/linux/root`; without them these tests fail and say so. Under
//! TCG on a loaded machine a boot to init takes 5 to 10 s of guest time
//! (15 to 50 s wall for the whole system, build excluded): the boots run
//! under the harness's hard timeout (`BOOT_TIMEOUT`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hallows_tests::{boot_system, root, Boot};

/// The Debian kernel and busybox `make deps` unpacks.
fn debian() -> (PathBuf, PathBuf) {
    let unpacked = root().join("target/linux/root");
    let kernel = std::fs::read_dir(unpacked.join("boot"))
        .ok()
        .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))));
    let busybox = unpacked.join("bin/busybox");
    match kernel {
        Some(k) if busybox.is_file() => (k, busybox),
        _ => panic!(
            "no Debian arm64 kernel and busybox under {}: run `make deps` (it fetches them with apt, verified, into target/linux) and run the tests again",
            unpacked.display()
        ),
    }
}

/// A newc cpio archive: directories, the console device node, files.
fn cpio(entries: &[(&str, u32, &[u8], (u32, u32))]) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer: (&str, u32, &[u8], (u32, u32)) = ("TRAILER!!!", 0, &[], (0, 0));
    for (ino, (name, mode, data, (major, minor))) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [ino as u32 + 1, *mode, 0, 0, 1, 0, data.len() as u32, 0, 0, *major, *minor, name.len() as u32 + 1, 0];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// Puts the kernel (a hard link, else a copy) and the test initramfs
/// (busybox and `linux_init/init`) where the test systems name them:
/// `target/linux-tests`. Once per test binary.
fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let (kernel, busybox) = debian();
        let dir = root().join("target/linux-tests");
        std::fs::create_dir_all(&dir).expect("target/linux-tests");
        let image = dir.join("Image");
        let _ = std::fs::remove_file(&image);
        if std::fs::hard_link(&kernel, &image).is_err() {
            std::fs::copy(&kernel, &image).expect("copying the kernel");
        }
        let init = std::fs::read(root().join("tests/tests/linux_init/init")).expect("the test init");
        let busybox = std::fs::read(busybox).expect("busybox");
        let dir_mode = 0o040755;
        let archive = cpio(&[
            ("bin", dir_mode, &[], (0, 0)),
            ("dev", dir_mode, &[], (0, 0)),
            // The initial console: init's stdout before devtmpfs is mounted.
            ("dev/console", 0o020600, &[], (5, 1)),
            ("proc", dir_mode, &[], (0, 0)),
            ("sys", dir_mode, &[], (0, 0)),
            ("bin/busybox", 0o100755, &busybox, (0, 0)),
            ("init", 0o100755, &init, (0, 0)),
        ]);
        std::fs::write(dir.join("initramfs.cpio"), archive).expect("writing the initramfs");
        dir
    })
}

fn boot(name: &str) -> Boot {
    images();
    boot_system(name)
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
    assert!(has("hallows-init: cpus=2 online=0-1 ram=40000000-4bffffff"), "{}", b.output);
    assert!(has("hallows-init: result ok"), "{}", b.output);
    // Partition output is escaped by the hypervisor; Linux's CRs are dropped.
    assert!(!b.output.contains("\\u{0d}"), "{}", b.output);
}

fn assert_rust_partitions_finished(b: &Boot, primes: &str) {
    assert_eq!(b.summary("primes"), "exited 0", "{}", b.output);
    assert_eq!(b.summary("hello"), "exited 0", "{}", b.output);
    assert!(b.lines_of("primes").iter().any(|l| *l == primes), "{}", b.output);
}

#[test]
fn linux_boots_beside_rust_partitions_and_powers_off() {
    let b = boot("linux");
    b.assert_status(0);
    assert_linux_came_up(&b);
    assert!(b.lines_of("linux").iter().any(|l| l.contains("reboot: Power down")), "{}", b.output);
    assert_eq!(b.summary("linux"), "exited 0", "{}", b.output);
    assert_rust_partitions_finished(&b, "2262 primes below 20000");
}

#[test]
fn linux_reading_another_partitions_memory_is_stopped() {
    let b = boot("linux-devmem");
    b.assert_status(1);
    assert_linux_came_up(&b);
    let lines = b.lines_of("linux");
    assert!(lines.iter().any(|l| *l == "hallows-init: reading 0x5e000000 through /dev/mem"), "{}", b.output);
    // The read never completed: the partition stopped on it.
    assert!(!lines.iter().any(|l| l.contains("devmem returned")), "{}", b.output);
    let s = b.summary("linux");
    assert!(s.starts_with("stopped: stage-2 fault: read at 0x5e000000, outside its memory"), "{}", b.output);
    assert_rust_partitions_finished(&b, "78498 primes below 1000000");
}

#[test]
fn a_kernel_panic_restarts_then_stops_only_its_partition() {
    let b = boot("linux-panic");
    b.assert_status(1);
    assert_linux_came_up(&b);
    let lines = b.lines_of("linux");
    assert_eq!(lines.iter().filter(|l| **l == "hallows-init: panicking").count(), 2, "{}", b.output);
    assert!(lines.iter().any(|l| l.contains("Kernel panic - not syncing: sysrq triggered crash")), "{}", b.output);
    let hv = b.lines_of("hallows");
    assert!(hv.iter().any(|l| *l == "partition linux faulted: it reset itself (PSCI SYSTEM_RESET); restarting it (1 of 1)"), "{}", b.output);
    assert_eq!(b.summary("linux"), "stopped: it reset itself (PSCI SYSTEM_RESET) (restarted 1 times)", "{}", b.output);
    assert_rust_partitions_finished(&b, "2262 primes below 20000");
}

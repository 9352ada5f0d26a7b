//! Issue 12's attacks, each from inside a guest partition, on every
//! architecture where it applies: the attacker is stopped or refused, the
//! other partitions' output is unchanged, the system's reported status is
//! the true one, and nothing on the host changed. (The x86-only findings,
//! debug registers and user-mode hypercalls among them, are in `x86.rs`
//! and `bochs.rs`; the host tool's in `tools/hallows/tests`.)

use hallows_tests::{boot_manifest_patched, boot_system, root, Boot};

/// Every line on the console starts with the name of its writer: the
/// hypervisor's or one of the partitions'. (QEMU's own warnings, on its
/// standard error, are collected after the console's lines.)
fn assert_every_line_framed(b: &Boot, names: &[&str]) {
    for line in b.output.lines().filter(|l| !l.starts_with("qemu-system-")) {
        assert!(
            std::iter::once("hallows").chain(names.iter().copied()).any(|n| line.starts_with(&format!("[{n}] "))),
            "a line no known writer's: {line:?} in:\n{}",
            b.output
        );
    }
}

#[test]
fn semihosting_is_not_reachable_from_a_partition() {
    let escape = std::path::Path::new("/tmp/hallows-semihosting-escape");
    let _ = std::fs::remove_file(escape);
    let b = boot_system("sec-semihosting");
    assert!(!escape.exists(), "a partition ran a command on the host");
    // The attacker's SYS_EXIT(0) did not end the machine: the bystander
    // finished, and the status is the hypervisor's (1: the attacker was
    // stopped), not the attacker's.
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("attacker").starts_with("stopped: unhandled guest exception"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"2262 primes below 20000"));
    assert_every_line_framed(&b, &["attacker", "bystander"]);
    assert_eq!(b.output.matches("machine exit status").count(), 1, "{}", b.output);
}

#[test]
fn the_hypervisor_refuses_a_table_that_names_a_partition_hallows() {
    // `hallows check` refuses the name; a table written by other means is
    // refused again at boot, before any partition runs.
    let b = boot_manifest_patched(&root().join("tests/systems/sec-table-name.toml"), &[], &|img| {
        let (from, to) = (b"hallowz\0", b"hallows\0");
        let mut n = 0;
        for i in 0..img.len() - from.len() {
            if &img[i..i + from.len()] == from {
                img[i..i + to.len()].copy_from_slice(to);
                n += 1;
            }
        }
        assert_eq!(n, 1, "the name is in the table once");
    });
    b.assert_status(2);
    assert!(b.output.contains("invalid name"), "{}", b.output);
    assert!(b.lines_of("hallows").iter().all(|l| !l.starts_with("summary")), "{}", b.output);
}

#[test]
fn the_hypervisor_refuses_a_table_with_an_unknown_channel_tuning() {
    // `hallows check` accepts only the tunings the ring knows; a table
    // written by other means with another code is refused at boot (both
    // ends would build different layouts, or none), before any partition
    // runs.
    let b = boot_manifest_patched(&root().join("tests/systems/sec-channel-tuning.toml"), &[], &|img| {
        // The channel's table entry: its NUL-padded 32-byte name, then
        // pa, ipa, size (u64), slot_size, slot_count, producer, consumer,
        // notify, tuning (u32, little-endian).
        let mut name = [0u8; 32];
        name[..7].copy_from_slice(b"tuningz");
        let at: Vec<usize> = (0..img.len() - name.len()).filter(|&i| img[i..i + name.len()] == name).collect();
        assert_eq!(at.len(), 1, "the name is in the table once");
        let tuning = at[0] + 32 + 3 * 8 + 5 * 4;
        assert_eq!(img[tuning..tuning + 4], 1u32.to_le_bytes(), "the table says throughput");
        img[tuning..tuning + 4].copy_from_slice(&7u32.to_le_bytes());
    });
    b.assert_status(2);
    assert!(b.output.contains("channel #0: unknown ring tuning"), "{}", b.output);
    assert!(b.lines_of("hallows").iter().all(|l| !l.starts_with("summary")), "{}", b.output);
}

fn check_console(b: &Boot) {
    // The forger exited 0 and claimed the whole system did; the bystander
    // exited 3, so the system's status is 1.
    b.assert_status(1);
    assert_eq!(b.summary("forger"), "exited 0");
    assert_eq!(b.summary("bystander"), "exited 3");
    assert_every_line_framed(b, &["forger", "bystander"]);
    // The imitations are the forger's lines, visibly.
    let forged = b.lines_of("forger");
    for l in [
        "[hallows] summary: bystander: exited 0",
        "[hallows] machine exit status 0",
        "[hallows] partition forger exited with status 0",
    ] {
        assert!(forged.contains(&l), "{l:?} not among the forger's lines:\n{}", b.output);
    }
    assert_eq!(b.lines_of("hallows").into_iter().filter(|l| l.starts_with("machine exit status")).count(), 1);
    assert_eq!(b.summary("bystander"), "exited 3");
    // Only printable text reached the terminal: controls escaped, invalid
    // UTF-8 escaped byte by byte.
    assert!(
        forged.contains(&r"esc:\u{1b}[2J\u{1b}]0;owned\u{07} c1:\u{9b}31m\u{9d}0;t\u{9c} bidi:\u{202e}gnp.exe"),
        "{}",
        b.output
    );
    assert!(forged.contains(&r"raw:\x9b31m\x9d\xff\xfe\xc3(end)\u{0d}"), "{}", b.output);
    // (The x86 serial driver ends lines with CR LF.)
    for c in b.output.replace("\r\n", "\n").chars() {
        assert!(
            c == '\n' || !(c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c) || c == '\u{fffd}'),
            "{c:?} reached the console:\n{}",
            b.output
        );
    }
}

#[test]
fn a_partition_cannot_forge_hypervisor_lines_or_drive_the_terminal() {
    check_console(&boot_system("sec-console"));
}

#[test]
fn x86_a_partition_cannot_forge_hypervisor_lines_or_drive_the_terminal() {
    check_console(&boot_system("x86-sec-console"));
}

fn check_stop(b: &Boot) {
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("hostile").starts_with("stopped: unhandled guest exception"), "{}", b.output);
    assert!(b.lines_of("hostile").contains(&"probe: vCPU 1 is sending; vCPU 0 faults now"), "{}", b.output);
    // The stream from vCPU 1, which never traps, stopped with the partition.
    assert_eq!(b.summary("sink"), "exited 0", "{}", b.output);
    // Its first open, with a type too large for the slots, was refused and
    // left the end free for the second (not `AlreadyOpen`).
    assert!(b.lines_of("sink").contains(&"sink: wrong type refused: Layout(MessageTooLarge)"), "{}", b.output);
    let quiet = b.lines_of("sink").into_iter().find_map(|l| l.strip_prefix("sink: quiet after ")).expect("sink report");
    let n: u64 = quiet.trim_end_matches(" messages").parse().expect("a count");
    assert!(n >= 10_000, "{n} messages: vCPU 1 had sent at least 10000 before the fault");
}

#[test]
fn a_stopped_partition_stops_on_every_core() {
    check_stop(&boot_system("sec-stop"));
}

#[test]
fn x86_a_stopped_partition_stops_on_every_core() {
    check_stop(&boot_system("x86-sec-stop"));
}

fn check_cpu_off_on(b: &Boot) {
    b.assert_status(0);
    let lines = b.lines_of("cycler");
    for n in 1..=2 {
        let l = format!("probe: vCPU 1 ran and turned off (CPU_ON #{n})");
        assert!(lines.contains(&l.as_str()), "{l:?} missing:\n{}", b.output);
    }
    assert_eq!(b.summary("cycler"), "exited 0");
}

#[test]
fn a_vcpu_turned_off_can_be_turned_on_again() {
    check_cpu_off_on(&boot_system("sec-cpu-off-on"));
}

#[test]
fn x86_a_vcpu_turned_off_can_be_turned_on_again() {
    check_cpu_off_on(&boot_system("x86-sec-cpu-off-on"));
}

#[test]
fn debug_registers_are_out_of_reach_on_aarch64() {
    let b = boot_system("sec-debug-regs");
    b.assert_status(1);
    b.assert_no_uncontained();
    // The first debug-register write traps (EC 0x18, a system register).
    assert!(b.summary("debugger").starts_with("stopped: unexpected trap (ESR_EL2 0x6"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
}

fn check_restart_2vcpu(b: &Boot, reason: &str) {
    b.assert_status(1);
    let runs: Vec<_> = b.lines_of("pair").into_iter().filter(|l| l.starts_with("probe: action vcpu1_fault")).collect();
    assert_eq!(
        runs,
        (0..=2).map(|n| format!("probe: action vcpu1_fault addr 0x0 (restart #{n})")).collect::<Vec<_>>(),
        "{}",
        b.output
    );
    let summary = b.summary("pair");
    assert!(summary.starts_with(&format!("stopped: {reason}")) && summary.ends_with("(restarted 2 times)"), "{summary}");
    assert_eq!(b.summary("steady"), "exited 0");
}

#[test]
fn a_multi_core_partition_restarts_whole_from_a_secondary_fault() {
    check_restart_2vcpu(&boot_system("sec-restart-2vcpu"), "stage-2 fault: instruction fetch at 0x200");
}

#[test]
fn x86_a_multi_core_partition_restarts_whole_from_a_secondary_fault() {
    check_restart_2vcpu(&boot_system("x86-sec-restart-2vcpu"), "I/O port denied: write to port 0x80");
}

#[test]
fn x86_svm_keeps_cr8_virtual() {
    let b = boot_system("x86-sec-cr8");
    b.assert_status(0);
    assert!(b.lines_of("tpr").contains(&"probe: cr8 read back 15"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
}

/// The x86 attacks again under Bochs: Intel VMX with EPT, and AMD SVM with
/// NRIP save (other exit paths, other interrupt delivery than QEMU's SVM).
mod bochs {
    use super::*;
    use hallows_tests::boot_bochs;

    const CPUS: [&str; 2] = ["corei7_skylake_x", "ryzen"];

    #[test]
    fn a_stopped_partition_stops_on_every_core() {
        for cpu in CPUS {
            check_stop(&boot_bochs("x86-sec-stop", cpu));
        }
    }

    #[test]
    fn a_vcpu_turned_off_can_be_turned_on_again() {
        for cpu in CPUS {
            check_cpu_off_on(&boot_bochs("x86-sec-cpu-off-on", cpu));
        }
    }

    #[test]
    fn a_multi_core_partition_restarts_whole_from_a_secondary_fault() {
        for cpu in CPUS {
            check_restart_2vcpu(&boot_bochs("x86-sec-restart-2vcpu", cpu), "I/O port denied: write to port 0x80");
        }
    }

    #[test]
    fn cr8_is_the_guests_own_or_refused() {
        let b = boot_bochs("x86-sec-cr8", "corei7_skylake_x");
        b.assert_status(1);
        assert!(b.summary("tpr").starts_with("stopped: control-register write denied: CR8 (pc "), "{}", b.output);
        assert_eq!(b.summary("bystander"), "exited 0");
        let b = boot_bochs("x86-sec-cr8", "ryzen");
        b.assert_status(0);
        assert!(b.lines_of("tpr").contains(&"probe: cr8 read back 15"), "{}", b.output);
    }

    #[test]
    fn a_partition_cannot_forge_hypervisor_lines_or_drive_the_terminal() {
        for cpu in CPUS {
            check_console(&boot_bochs("x86-sec-console", cpu));
        }
    }
}

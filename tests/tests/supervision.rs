//! Supervision (issue 22): watchdogs that catch partitions that never trap,
//! multi-core stop and restart, and the operator's control from the host.
//! aarch64 under QEMU TCG (EL2) and x86_64 under QEMU TCG (AMD SVM); the
//! Intel VMX cases are in `bochs.rs`.

use hallows_tests::boot_system;

mod supervision_checks;

#[test]
fn aarch64_watchdog_catches_spin_sleep_and_exception_loops() {
    supervision_checks::check_watchdogs(&boot_system("watchdog"), "200 ms");
}

#[test]
fn x86_svm_watchdog_catches_spin_sleep_and_exception_loops() {
    supervision_checks::check_watchdogs(&boot_system("x86-watchdog"), "200 ms");
}

#[test]
fn aarch64_two_vcpu_partition_restarted_while_both_vcpus_run() {
    supervision_checks::check_two_vcpu_restart(&boot_system("restart-2vcpu-running"), "500 ms");
}

#[test]
fn x86_svm_two_vcpu_partition_restarted_while_both_vcpus_run() {
    let b = boot_system("x86-restart-2vcpu-running");
    supervision_checks::check_two_vcpu_restart(&b, "500 ms");
    // SVM's kick is an NMI, which the hypervisor takes on its IST stack.
    let line = b
        .output
        .lines()
        .find_map(|l| l.strip_prefix("[hallows] NMIs taken in the hypervisor: "))
        .unwrap_or_else(|| panic!("no NMI line:\n{}", b.output));
    let (taken, on_ist) = line.split_once(", on their own stack (IST): ").expect("two counts");
    let (taken, on_ist): (u64, u64) = (taken.parse().expect("a count"), on_ist.parse().expect("a count"));
    assert!(taken > 0 && on_ist == taken, "{line}");
}

#[test]
fn aarch64_request_reply_client_across_a_server_restart() {
    supervision_checks::check_rpc_restart(&boot_system("rpc-restart"));
}

#[test]
fn x86_svm_request_reply_client_across_a_server_restart() {
    supervision_checks::check_rpc_restart(&boot_system("x86-rpc-restart"));
}

#[test]
fn aarch64_operator_restarts_and_stops_partitions_while_running() {
    supervision_checks::check_operator("operator");
}

#[test]
fn x86_svm_operator_restarts_and_stops_partitions_while_running() {
    supervision_checks::check_operator("x86-operator");
}

/// Runs `soak.toml` for `secs` seconds of machine time and checks the
/// restart contract end to end; returns the figures line.
fn soak(secs: u64) -> String {
    use std::time::Duration;
    let root = hallows_tests::root();
    let src = std::fs::read_to_string(root.join("tests/systems/soak.toml")).expect("soak.toml");
    let dir = root.join("target/hallows/tests");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join(format!("soak-{secs}.toml"));
    std::fs::write(&path, src.replace("secs=20", &format!("secs={secs}"))).expect("writing the soak manifest");
    let b = hallows_tests::boot_manifest_for(&path, Duration::from_secs(secs * 2 + 300));
    b.assert_status(0);
    let number = |line: &str, after: &str| -> u64 {
        let rest = line.split(after).nth(1).unwrap_or_else(|| panic!("no {after:?} in {line:?}"));
        rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no number after {after:?} in {line:?}"))
    };
    let sent_line = b.lines_of("producer").into_iter().find(|l| l.starts_with("soak: producer: sent ")).expect("producer figures").to_owned();
    let recv_line = b.lines_of("consumer").into_iter().find(|l| l.starts_with("soak: consumer: received ")).expect("consumer figures").to_owned();
    let hostile_line = b.lines_of("hostile").into_iter().find(|l| l.starts_with("soak: hostile: ")).expect("hostile figures").to_owned();
    let sent = number(&sent_line, "sent ");
    let (received, lost, gaps, largest) = (number(&recv_line, "received "), number(&recv_line, "lost "), number(&recv_line, " in "), number(&recv_line, "largest "));
    let (dups, corrupt, seen) = (number(&recv_line, "reordered "), number(&recv_line, "corrupt "), number(&recv_line, "restarts seen "));
    let restarts = number(b.summary("relay"), "restarted ");
    // The contract (docs/channels.md): nothing twice, nothing out of order,
    // nothing half-written; losses only at a relay restart, at most what
    // was in flight (the producer's ring, 256 slots) plus the batch the
    // relay held (32) per restart; every message accounted for. One gap
    // can span consecutive restarts between which nothing got through.
    const PER_RESTART: u64 = 256 + 32;
    assert_eq!((dups, corrupt), (0, 0), "{recv_line}");
    assert!(restarts >= secs / 4, "the relay restarted only {restarts} times:\n{}", b.output);
    assert_eq!(seen, restarts, "{recv_line}");
    assert!(gaps <= restarts && lost <= restarts * PER_RESTART, "{recv_line}");
    assert!(largest <= (restarts - gaps + 1) * PER_RESTART, "{recv_line}");
    assert_eq!(received + lost, sent, "{sent_line} / {recv_line}");
    // No memory growth in the hypervisor: its only pool is where boot left it.
    let pages = |suffix: &str| {
        b.output.lines().find_map(|l| l.strip_prefix("[hallows] ").and_then(|l| l.strip_suffix(suffix)).and_then(|n| n.trim().parse::<u64>().ok()))
    };
    let (at_boot, at_end) = (pages(" page-table pages used"), pages(" page-table pages used at the end"));
    assert!(at_boot.is_some() && at_boot == at_end, "page-table pages {at_boot:?} at boot, {at_end:?} at the end");
    format!(
        "soak {secs} s: sent {sent}, received {received}, lost {lost} in {gaps} gaps (largest {largest}) over {restarts} relay restarts, duplicates 0, corrupt 0; {}; hypervisor page-table pages {} at boot and at the end",
        hostile_line.trim_start_matches("soak: hostile: "),
        at_boot.unwrap_or(0)
    )
}

#[test]
fn soak_short_chain_survives_relay_restarts_beside_a_hostile_partition() {
    println!("{}", soak(20));
}

/// `make soak`: the long run (`SOAK_SECONDS`, default 1800).
#[test]
#[ignore]
fn soak_long() {
    let secs = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1800);
    println!("{}", soak(secs));
}

//! Supervision (issue 22): watchdogs that catch partitions that never trap,
//! multi-core stop and restart, and the operator's control from the host.
//! aarch64 under QEMU TCG (EL2) and x86_64 under QEMU TCG (AMD SVM); the
//! Intel VMX cases are in `bochs.rs`.

use hallows_tests::boot_system;

mod supervision_checks;

#[test]
fn aarch64_watchdog_catches_spin_sleep_and_exception_loops() {
    supervision_checks::check_watchdogs(&boot_system("watchdog"), "50 ms");
}

#[test]
fn x86_svm_watchdog_catches_spin_sleep_and_exception_loops() {
    supervision_checks::check_watchdogs(&boot_system("x86-watchdog"), "200 ms");
}

#[test]
fn aarch64_two_vcpu_partition_restarted_while_both_vcpus_run() {
    supervision_checks::check_two_vcpu_restart(&boot_system("restart-2vcpu-running"), "50 ms");
}

#[test]
fn x86_svm_two_vcpu_partition_restarted_while_both_vcpus_run() {
    supervision_checks::check_two_vcpu_restart(&boot_system("x86-restart-2vcpu-running"), "200 ms");
}

#[test]
fn aarch64_request_reply_client_across_a_server_restart() {
    supervision_checks::check_rpc_restart(&boot_system("rpc-restart"));
}

#[test]
fn x86_svm_request_reply_client_across_a_server_restart() {
    supervision_checks::check_rpc_restart(&boot_system("x86-rpc-restart"));
}

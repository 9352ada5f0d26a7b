//! x86_64 systems under Bochs, four cores, booted from a BIOS disk:
//! `corei7_skylake_x` (Intel VMX with EPT: the VMX path of the one image)
//! and `ryzen` (AMD SVM with NRIP save, a second SVM implementation besides
//! QEMU's). The systems and expectations are those of `x86.rs`.

use hallows_tests::{boot_bochs, boot_bochs_manifest, root, x86_system_with_symbols, Boot};

mod runtime_checks;
mod supervision_checks;
mod x86_checks;
use x86_checks as x86;

const VMX: &str = "corei7_skylake_x";
const SVM: &str = "ryzen";

fn containment(b: &Boot) {
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("ioport").starts_with("stopped: I/O port denied: write to port 0x80 (pc 0x4000"), "{}", b.output);
    assert!(b.summary("msr").starts_with("stopped: MSR denied: rdmsr 0x1b (pc 0x4000"), "{}", b.output);
    assert!(b.summary("hvmem").starts_with("stopped: stage-2 fault: read at 0x100000, outside its memory"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"669 primes below 5000"));
}

#[test]
fn vmx_demo_runs_three_partitions_on_three_cores() {
    let b = boot_bochs_manifest(&root().join("vmm-config/examples/demo-x86_64.toml"), VMX);
    b.assert_status(0);
    assert!(b.output.contains("x86_64, Intel VMX"), "{}", b.output);
    for name in ["frontend", "backend", "database"] {
        assert_eq!(b.summary(name), "exited 0");
    }
    assert!(b.lines_of("frontend").contains(&"backend counted 168 primes below 1000 (job 1)"), "{}", b.output);
}

/// The runtime on VMX: the timer (TSC-deadline mode where the CPU model
/// has it), two cores, preemption, the heap and async channel waits, with the aarch64 suite's
/// assertions.
#[test]
fn vmx_runs_the_runtime_timer_tasks_and_heap() {
    let b = boot_bochs("x86-runtime-ticks", VMX);
    assert!(b.output.contains("x86_64, Intel VMX"), "{}", b.output);
    runtime_checks::check_ticks(&b);
    runtime_checks::check_tasks(&boot_bochs("x86-runtime-tasks", VMX));
    runtime_checks::check_echo(&boot_bochs("x86-runtime-echo", VMX));
}

#[test]
fn vmx_timer_and_wake_hypercalls_survive_hostile_arguments() {
    x86::check_timer_abuse(&boot_bochs("x86-sec-timer", VMX));
}

#[test]
fn vmx_contains_io_ports_msrs_and_hypervisor_memory() {
    let b = boot_bochs("x86-containment", VMX);
    assert!(b.output.contains("x86_64, Intel VMX"), "{}", b.output);
    containment(&b);
}

#[test]
fn vmx_contains_foreign_ram() {
    let b = boot_bochs("x86-foreign-ram", VMX);
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("attacker").starts_with("stopped: stage-2 fault: read at 0x2000000"), "{}", b.output);
    assert!(b.summary("overrun").starts_with("stopped: stage-2 fault: write at 0x40200000"), "{}", b.output);
    assert_eq!(b.summary("victim"), "exited 0");
}

#[test]
fn vmx_stops_faulting_guests() {
    let b = boot_bochs("x86-faults", VMX);
    b.assert_status(1);
    b.assert_no_uncontained();
    assert_eq!(b.summary("panicky"), "stopped: the guest panicked");
    assert!(b.summary("undef").starts_with("stopped: unhandled guest exception (vector 0x6, pc 0x4000"), "{}", b.output);
    assert_eq!(b.summary("console"), "exited 0");
    assert_eq!(b.summary("poweroff"), "stopped: PSCI SYSTEM_OFF denied: a partition may not power off the machine");
}

#[test]
fn vmx_watchdog_catches_spin_sleep_and_exception_loops() {
    let b = boot_bochs("x86-watchdog", VMX);
    assert!(b.output.contains("x86_64, Intel VMX"), "{}", b.output);
    supervision_checks::check_watchdogs(&b, "200 ms");
}

#[test]
fn vmx_two_vcpu_partition_restarted_while_both_vcpus_run() {
    supervision_checks::check_two_vcpu_restart(&boot_bochs("x86-restart-2vcpu-running", VMX), "500 ms");
}

#[test]
fn vmx_request_reply_client_across_a_server_restart() {
    supervision_checks::check_rpc_restart(&boot_bochs("x86-rpc-restart", VMX));
}

#[test]
fn vmx_restarts_then_stops() {
    let b = boot_bochs("x86-restart", VMX);
    b.assert_status(1);
    assert_eq!(b.summary("flaky"), "stopped: the guest panicked (restarted 2 times)");
    assert_eq!(b.summary("steady"), "exited 0");
}

#[test]
fn svm_with_nrip_contains_io_ports_msrs_and_hypervisor_memory() {
    let b = boot_bochs("x86-containment", SVM);
    assert!(b.output.contains("x86_64, AMD SVM"), "{}", b.output);
    containment(&b);
}

#[test]
fn vmx_reports_a_stack_overflow() {
    let b = boot_bochs("x86-stack-overflow", VMX);
    b.assert_stack_overflow("overflow", "vector 14 (#PF page fault), error code 0x", "post-mortem:    rax 0x");
    assert_eq!(b.summary("bystander"), "exited 0");
}

#[test]
fn svm_with_nrip_stops_faulting_guests() {
    let b = boot_bochs("x86-faults", SVM);
    b.assert_status(1);
    b.assert_no_uncontained();
    assert_eq!(b.summary("panicky"), "stopped: the guest panicked");
    assert!(b.summary("undef").starts_with("stopped: unhandled guest exception (vector 0x6, pc 0x4000"), "{}", b.output);
}

#[test]
fn vmx_stops_triple_faults_cr_writes_and_hlt() {
    let b = boot_bochs("x86-traps", VMX);
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("triple").starts_with("stopped: triple fault"), "{}", b.output);
    assert!(b.summary("cr4").starts_with("stopped: control-register write denied: CR4"), "{}", b.output);
    assert!(b.summary("halt").starts_with("stopped: hlt with interrupts disabled"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
}

#[test]
fn vmx_delivers_doorbells() {
    let b = boot_bochs("x86-doorbell-short", VMX);
    assert!(b.output.contains("x86_64, Intel VMX"), "{}", b.output);
    check_stream(&b, 20_000, true);
}

/// The same stream on Bochs' SVM (NRIP save): the consumer halts in place
/// (its `hlt` is not intercepted: a doorbell channel can wake it) and each
/// doorbell IPI ends the halt as an INTR exit.
#[test]
fn svm_with_nrip_delivers_doorbells() {
    let b = boot_bochs("x86-doorbell-short", SVM);
    assert!(b.output.contains("x86_64, AMD SVM"), "{}", b.output);
    check_stream(&b, 20_000, true);
}

/// As `x86.rs`'s: the checksums agree, every message arrived in order, the
/// consumer slept on the doorbell, the snoop was stopped.
fn check_stream(b: &Boot, count: u64, doorbells: bool) {
    b.assert_status(1);
    b.assert_no_uncontained();
    let sent = b.lines_of("producer").into_iter().find(|l| l.starts_with(&format!("sent {count} messages on stream"))).unwrap_or_else(|| panic!("{}", b.output));
    let got = b.lines_of("consumer").into_iter().find(|l| l.starts_with(&format!("received {count} messages on stream in order"))).unwrap_or_else(|| panic!("{}", b.output));
    let sum = |l: &str| l.rsplit("checksum ").next().map(str::to_owned);
    assert_eq!(sum(sent), sum(got));
    assert_eq!(sent.contains("(0 doorbells)"), !doorbells, "{sent}");
    assert_eq!(got.contains("(0 waits)"), !doorbells, "{got}");
    assert_eq!(b.summary("producer"), "exited 0");
    assert_eq!(b.summary("consumer"), "exited 0");
    assert!(b.summary("snoop").starts_with("stopped: stage-2 fault: read at 0x100000000"), "{}", b.output);
}

#[test]
fn vmx_keeps_debug_state_refuses_user_hypercalls() {
    let b = boot_bochs_manifest(&x86_system_with_symbols("x86-debug"), VMX);
    assert!(b.output.contains("x86_64, Intel VMX"), "{}", b.output);
    x86::check_debug(&b, false);
}

#[test]
fn svm_with_nrip_keeps_debug_state_refuses_user_hypercalls() {
    let b = boot_bochs_manifest(&x86_system_with_symbols("x86-debug"), SVM);
    assert!(b.output.contains("x86_64, AMD SVM"), "{}", b.output);
    // Bochs hands a guest's single-step trap pending over an intercepted
    // CPUID to the hypervisor after the #VMEXIT (see docs/x86.md).
    x86::check_debug(&b, true);
}

#[test]
fn vmx_guests_cannot_end_the_machine_or_sleep_forever() {
    let b = boot_bochs("x86-escape", VMX);
    x86::check_escape(&b);
}

#[test]
fn svm_with_nrip_guests_cannot_end_the_machine_or_sleep_forever() {
    let b = boot_bochs("x86-escape", SVM);
    x86::check_escape(&b);
}

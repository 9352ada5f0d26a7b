//! x86_64 systems under QEMU TCG with `-cpu EPYC` (AMD SVM with nested
//! paging, 4 cores): the same guests and summaries as on aarch64, and the
//! x86 containment cases (I/O ports, MSRs) on top of memory and faults.

use hallows_tests::{boot_manifest, boot_system, root, x86_system_with_symbols};

mod runtime_checks;
mod x86_checks;
use runtime_checks::{check_echo, check_memcheck, check_tasks, check_ticks};
use x86_checks::{check_debug, check_escape, check_timer_abuse};

#[test]
fn demo_system_runs_three_partitions_on_three_cores() {
    let b = boot_manifest(&root().join("vmm-config/examples/demo-x86_64.toml"));
    b.assert_status(0);
    assert!(b.output.contains("x86_64, AMD SVM"), "{}", b.output);
    for name in ["frontend", "backend", "database"] {
        assert_eq!(b.summary(name), "exited 0");
    }
    assert!(b.lines_of("frontend").contains(&"welcome from partition frontend"));
    // The two talk over channels: the answer crossed partitions.
    assert!(b.lines_of("frontend").contains(&"backend counted 168 primes below 1000 (job 1)"), "{}", b.output);
    assert!(b.lines_of("backend").contains(&"3245 primes below 30000"));
    assert!(b.lines_of("database").iter().any(|l| l.starts_with("32 MiB of RAM at 0x40000000")));
    assert!(b.output.contains("all partitions finished: 3 ok, 0 failed"));
}

#[test]
fn timer_interrupts_arrive_at_the_requested_rate_on_both_cores() {
    check_ticks(&boot_system("x86-runtime-ticks"));
}

#[test]
fn tasks_await_channel_doorbells_and_sleep() {
    check_echo(&boot_system("x86-runtime-echo"));
}

#[test]
fn a_preempted_long_task_does_not_block_a_short_one_and_alloc_works() {
    check_tasks(&boot_system("x86-runtime-tasks"));
}

/// The runtime's `memcpy`, `memmove`, `memset` and `memcmp`
/// (guests/runtime/mem) against a byte-by-byte reference on the target
/// itself: every size to 200 bytes and some larger, every alignment of
/// both pointers, every small overlap.
#[test]
fn memory_primitives_match_a_byte_by_byte_reference() {
    check_memcheck(&boot_system("x86-runtime-mem"));
}

#[test]
fn timer_and_wake_hypercalls_survive_hostile_arguments() {
    check_timer_abuse(&boot_system("x86-sec-timer"));
}

#[test]
fn one_partition_prints_and_exits_0() {
    let b = boot_system("x86-one");
    b.assert_status(0);
    assert!(b.lines_of("hello").contains(&"hi from partition hello"), "{}", b.output);
    assert!(b.lines_of("hello").contains(&"4 MiB of RAM at 0x40000000, 1 core(s), restart #0"));
    assert_eq!(b.summary("hello"), "exited 0");
}

#[test]
fn io_ports_msrs_and_hypervisor_memory_are_out_of_reach() {
    let b = boot_system("x86-containment");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("ioport").starts_with("stopped: I/O port denied: write to port 0x80 (pc 0x4000"), "{}", b.output);
    assert!(b.summary("msr").starts_with("stopped: MSR denied: rdmsr 0x1b (pc 0x4000"), "{}", b.output);
    assert!(b.summary("hvmem").starts_with("stopped: stage-2 fault: read at 0x100000, outside its memory"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"669 primes below 5000"));
}

#[test]
fn another_partitions_ram_is_out_of_reach() {
    let b = boot_system("x86-foreign-ram");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("attacker").starts_with("stopped: stage-2 fault: read at 0x2000000"), "{}", b.output);
    assert!(b.summary("overrun").starts_with("stopped: stage-2 fault: write at 0x40200000"), "{}", b.output);
    assert_eq!(b.summary("victim"), "exited 0");
    assert!(b.lines_of("victim").contains(&"2262 primes below 20000"));
}

#[test]
fn guest_faults_stop_the_guest_with_its_reason() {
    let b = boot_system("x86-faults");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert_eq!(b.summary("panicky"), "stopped: the guest panicked");
    assert!(b.lines_of("panicky").iter().any(|l| l.contains("probe panics on purpose")), "{}", b.output);
    // #UD is vector 6, without an error code.
    assert!(b.summary("undef").starts_with("stopped: unhandled guest exception (vector 0x6, pc 0x4000"), "{}", b.output);
    assert_eq!(b.summary("console"), "exited 0");
    let console = b.lines_of("console");
    assert_eq!(console.iter().filter(|l| l.ends_with(") = -2")).count(), 4, "{console:?}");
    assert!(console.iter().any(|l| l.ends_with(", 1048576) = -3")), "{console:?}");
    assert!(console.contains(&"unknown call = -1"));
    assert!(console.contains(&"abi version = 0 5"), "{console:?}");
    assert_eq!(b.summary("poweroff"), "stopped: PSCI SYSTEM_OFF denied: a partition may not power off the machine");
}

#[test]
fn restart_policy_restarts_then_stops() {
    let b = boot_system("x86-restart");
    b.assert_status(1);
    let runs: Vec<_> = b.lines_of("flaky").into_iter().filter(|l| l.starts_with("probe: action panic")).collect();
    assert_eq!(runs, ["probe: action panic addr 0x0 (restart #0)", "probe: action panic addr 0x0 (restart #1)", "probe: action panic addr 0x0 (restart #2)"]);
    assert_eq!(b.summary("flaky"), "stopped: the guest panicked (restarted 2 times)");
    assert_eq!(b.summary("steady"), "exited 0");
}

/// What `x86-traps` must show.
fn check_traps(b: &hallows_tests::Boot) {
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("triple").starts_with("stopped: triple fault"), "{}", b.output);
    assert!(b.summary("cr4").starts_with("stopped: control-register write denied: CR4"), "{}", b.output);
    assert!(b.summary("halt").starts_with("stopped: hlt with interrupts disabled"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
}

#[test]
fn triple_faults_control_registers_and_hlt_stop_only_their_partition() {
    check_traps(&boot_system("x86-traps"));
}

/// Both ends print a checksum of everything that crossed; they must agree,
/// every message must have arrived in order, and the snoop must be stopped.
pub fn check_stream(b: &hallows_tests::Boot, count: u64, doorbells: bool) {
    b.assert_status(1);
    b.assert_no_uncontained();
    let sent = b.lines_of("producer").into_iter().find(|l| l.starts_with(&format!("sent {count} messages on stream"))).unwrap_or_else(|| panic!("{}", b.output));
    let got = b.lines_of("consumer").into_iter().find(|l| l.starts_with(&format!("received {count} messages on stream in order"))).unwrap_or_else(|| panic!("{}", b.output));
    let sum = |l: &str| l.rsplit("checksum ").next().map(str::to_owned);
    assert_eq!(sum(sent), sum(got));
    assert_eq!(sent.contains("(0 doorbells)"), !doorbells, "{sent}");
    // With doorbells the consumer slept on an empty ring at least once.
    assert_eq!(got.contains("(0 waits)"), !doorbells, "{got}");
    assert_eq!(b.summary("producer"), "exited 0");
    assert_eq!(b.summary("consumer"), "exited 0");
    assert!(b.summary("snoop").starts_with("stopped: stage-2 fault: read at 0x100000000"), "{}", b.output);
}

#[test]
fn a_million_messages_over_a_poll_channel() {
    check_stream(&boot_system("x86-channel-poll"), 1_000_000, false);
}

#[test]
fn a_million_messages_over_a_doorbell_channel() {
    check_stream(&boot_system("x86-channel-doorbell"), 1_000_000, true);
}

#[test]
fn debug_registers_user_hypercalls_and_prefixed_instructions_are_contained() {
    check_debug(&boot_manifest(&x86_system_with_symbols("x86-debug")), false);
}

#[test]
fn guests_cannot_end_the_machine_or_sleep_forever() {
    check_escape(&boot_system("x86-escape"));
}

#[test]
fn a_stack_overflow_is_a_reported_fault_with_a_post_mortem() {
    let b = boot_system("x86-stack-overflow");
    b.assert_stack_overflow("overflow", "vector 14 (#PF page fault), error code 0x", "post-mortem:    rax 0x");
    b.assert_task_stack_overflow("tasky");
    assert_eq!(b.summary("bystander"), "exited 0");
}

/// A partition whose RAM lies above 4 GiB (QEMU with 6 GiB of memory): the
/// hypervisor maps it, loads the guest there and runs it; the guest fills
/// most of its RAM with an address pattern and reads it back.
#[test]
fn a_partition_runs_in_ram_above_4_gib() {
    let b = boot_system("x86-highmem");
    b.assert_status(0);
    assert!(
        b.output.contains("partition high: RAM at host-physical 0x110000000..0x114000000 (above 4 GiB)"),
        "{}",
        b.output
    );
    let lines = b.lines_of("high");
    assert!(lines.iter().any(|l| l.starts_with("probe: 64 MiB of RAM at 0x40000000, heap 0x4")), "{}", b.output);
    let check = lines.iter().find(|l| l.starts_with("probe: wrote and read back ")).unwrap_or_else(|| panic!("{}", b.output));
    // Most of the 64 MiB: everything the heap gives in blocks of 1 MiB or more.
    let mib: u64 = check["probe: wrote and read back ".len()..].split(' ').next().and_then(|n| n.parse().ok()).expect("MiB");
    assert!(mib >= 48, "{check}");
    assert!(check.ends_with(": 0 mismatches"), "{check}");
    assert_eq!(b.summary("high"), "exited 0");
    assert_eq!(b.summary("low"), "exited 0");
    assert!(b.lines_of("low").contains(&"2262 primes below 20000"), "{}", b.output);
}

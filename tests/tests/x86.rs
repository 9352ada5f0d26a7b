//! x86_64 systems under QEMU TCG with `-cpu EPYC` (AMD SVM with nested
//! paging): the same guests as on aarch64, the same summary lines, and the
//! x86 containment cases (I/O ports, MSRs) on top of memory and faults.

use hallows_tests::boot_system;

#[test]
fn one_partition_prints_and_exits_0() {
    let b = boot_system("x86-one");
    b.assert_status(0);
    assert!(b.output.contains("x86_64, AMD SVM"), "{}", b.output);
    assert!(b.lines_of("hello").contains(&"hi from partition hello"), "{}", b.output);
    assert!(b.lines_of("hello").contains(&"4 MiB of RAM at 0x40000000, 1 core(s), restart #0"));
    assert_eq!(b.summary("hello"), "exited 0");
}

#[test]
fn a_forbidden_io_port_stops_the_partition() {
    let b = boot_system("x86-ioport");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("ioport").starts_with("stopped: I/O port denied: write to port 0x80 (pc 0x4000"), "{}", b.output);
}

#[test]
fn an_msr_outside_the_allow_list_stops_the_partition() {
    let b = boot_system("x86-msr");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("msr").starts_with("stopped: MSR denied: rdmsr 0x1b (pc 0x4000"), "{}", b.output);
}

#[test]
fn hypervisor_memory_is_unreachable() {
    let b = boot_system("x86-hvmem");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("hvmem").starts_with("stopped: stage-2 fault: read at 0x100000, outside its memory"), "{}", b.output);
}

#[test]
fn a_guest_panic_stops_it_with_its_message() {
    let b = boot_system("x86-panic");
    b.assert_status(1);
    assert_eq!(b.summary("panic"), "stopped: the guest panicked");
    assert!(b.lines_of("panic").iter().any(|l| l.contains("probe panics on purpose")), "{}", b.output);
}

#[test]
fn an_undefined_instruction_is_reported_by_the_runtime() {
    let b = boot_system("x86-undef");
    b.assert_status(1);
    b.assert_no_uncontained();
    // #UD is vector 6, without an error code.
    assert!(b.summary("undef").starts_with("stopped: unhandled guest exception (vector 0x6, pc 0x4000"), "{}", b.output);
}

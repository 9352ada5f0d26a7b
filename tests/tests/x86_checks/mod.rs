//! Expectations shared by `x86.rs` (QEMU, SVM) and `bochs.rs` (VMX, SVM
//! with NRIP save) for the systems whose guests attack the hypervisor's
//! x86 specifics.

use hallows_tests::{hypervisor_symbol, Boot};

/// What `x86-debug` must show, under any of the three x86 platforms: the
/// hypervisor never took the guest's breakpoints on its own code (it would
/// stop the machine with status 3), the guest's DR7 survived the exits,
/// user-mode hypercalls were refused with #UD, the prefixed CPUID resumed
/// after its last byte, and the bystander's work is unchanged.
///
/// `single_step_leaks`: the platform delivers a guest's pending single-step
/// trap to the hypervisor after the `#VMEXIT` of an intercepted instruction
/// (Bochs `ryzen`); its `#DB` handler must then have disarmed it. No
/// platform may let a guest's breakpoint fire in the hypervisor.
pub fn check_debug(b: &Boot, single_step_leaks: bool) {
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(!b.output.contains("hypervisor exception"), "{}", b.output);
    let disarmed = b.lines_of("hallows").into_iter().find_map(|l| l.strip_prefix("debug exceptions taken in the hypervisor and disarmed: "));
    if let Some(counts) = disarmed {
        assert!(single_step_leaks && counts.starts_with("0 breakpoint, "), "{}", b.output);
    }
    let svm_run = hypervisor_symbol(vmm_config::Arch::X86_64, "svm_run");
    let readback = format!("probe: after 100 exits dr7 0x40f dr0 {svm_run:#x}");
    assert!(b.lines_of("debugregs").contains(&readback.as_str()), "{}", b.output);
    assert_eq!(b.summary("debugregs"), "exited 0");
    // #UD (vector 6) at the hypercall instruction, reported by the runtime.
    assert!(b.lines_of("user").contains(&"probe: entering CPL 3"), "{}", b.output);
    let faulted = |what: &str| b.lines_of("hallows").iter().any(|l| l.starts_with(&format!("partition user faulted: {what}")));
    assert!(faulted("unhandled guest exception (vector 0x6, pc 0x4000"), "{}", b.output);
    // Single-stepping over the emulated CPUID: #DB right after it.
    let due = b.lines_of("user").into_iter().find_map(|l| l.strip_prefix("probe: single-stepping CPUID, the trap is due at "));
    let due = due.unwrap_or_else(|| panic!("{}", b.output));
    assert!(faulted(&format!("unhandled guest exception (vector 0x1, pc {due})")), "{}", b.output);
    // `int1`: #DB (stopped by the #DB intercept) where the CPU has it; QEMU
    // 7.2's TCG decodes it as undefined (#UD, reported by the runtime).
    let icebp = ["vector 0x1, pc 0x4000", "vector 0x6, pc 0x4000"].map(|v| format!("stopped: unhandled guest exception ({v}"));
    assert!(icebp.iter().any(|s| b.summary("user").starts_with(s.as_str())), "{}", b.output);
    assert!(b.summary("user").ends_with("(restarted 2 times)"), "{}", b.output);
    assert!(b.lines_of("prefixed").contains(&"probe: prefixed cpuid resumed correctly"), "{}", b.output);
    assert_eq!(b.summary("prefixed"), "exited 0");
    assert_eq!(b.summary("bystander"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"669 primes below 5000"));
}

/// What `x86-escape` must show: no port write of a guest ends or marks the
/// machine, Bochs' magic breakpoint is an ordinary instruction, `sti; hlt`
/// without an interrupt source stops the partition, and the machine runs
/// to its true end (every summary, status 1, one status line).
pub fn check_escape(b: &Boot) {
    b.assert_status(1);
    b.assert_no_uncontained();
    for port in ["0xf4", "0x8900", "0xe9"] {
        let denied = format!("partition ports faulted: I/O port denied: write to port {port} (pc 0x4000");
        assert!(b.lines_of("hallows").iter().any(|l| l.starts_with(&denied)), "{denied}:\n{}", b.output);
    }
    assert!(b.summary("ports").starts_with("stopped: I/O port denied: write to port 0x3f8 (pc 0x4000"), "{}", b.output);
    assert!(b.summary("ports").ends_with("(restarted 3 times)"), "{}", b.output);
    assert!(b.lines_of("magic").contains(&"probe: xchg bx, bx done"), "{}", b.output);
    assert_eq!(b.summary("magic"), "exited 0");
    assert!(b.summary("sleeper").starts_with("stopped: hlt with interrupts on and no interrupt source"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"669 primes below 5000"));
    assert_eq!(b.output.matches("machine exit status").count(), 1, "{}", b.output);
}


/// `x86-sec-timer`: WAKE past the partition's vCPUs is refused, SET_TIMER
/// at the end of time and as a storm is survived, the bystander runs on.
pub fn check_timer_abuse(b: &Boot) {
    b.assert_status(0);
    b.assert_no_uncontained();
    let lines = b.lines_of("hostile");
    for l in ["wake vcpu 1 = -3", "wake vcpu 15 = -3", "wake vcpu 2^64-1 = -3", "set_timer end of time = 0", "set_timer storm = 0", "set_timer off = 0"] {
        assert!(lines.contains(&l), "{l}:\n{}", b.output);
    }
    assert_eq!(b.summary("hostile"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"669 primes below 5000"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
}

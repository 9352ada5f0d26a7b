//! x86_64 systems under Bochs, four cores, booted from a BIOS disk: `ryzen`
//! (AMD SVM with NRIP save, a second SVM implementation besides QEMU's).

use hallows_tests::boot_bochs;

#[test]
fn svm_with_nrip_runs_the_containment_system() {
    let b = boot_bochs("x86-containment", "ryzen");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.output.contains("x86_64, AMD SVM"), "{}", b.output);
    assert!(b.summary("ioport").starts_with("stopped: I/O port denied: write to port 0x80"), "{}", b.output);
    assert!(b.summary("msr").starts_with("stopped: MSR denied: rdmsr 0x1b"), "{}", b.output);
    assert!(b.summary("hvmem").starts_with("stopped: stage-2 fault: read at 0x100000"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
}

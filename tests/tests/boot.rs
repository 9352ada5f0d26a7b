//! Boot real systems under QEMU (aarch64, EL2, GICv3, 4 cores) and check
//! what each partition printed, the hypervisor's summary, and the machine's
//! exit status.

use hallows_tests::{boot_manifest, boot_system, boot_system_with, root};

#[test]
fn demo_system_runs_three_partitions_to_completion() {
    let b = boot_manifest(&root().join("vmm-config/examples/demo.toml"));
    b.assert_status(0);
    for name in ["frontend", "backend", "database"] {
        assert!(!b.lines_of(name).is_empty(), "no output from {name}:\n{}", b.output);
        assert_eq!(b.summary(name), "exited 0");
    }
    assert!(b.lines_of("frontend").contains(&"welcome from partition frontend"));
    assert!(b.lines_of("backend").contains(&"3245 primes below 30000"));
    assert!(b.lines_of("database").iter().any(|l| l.starts_with("32 MiB of RAM at 0x40000000")));
    assert!(b.output.contains("all partitions finished: 3 ok, 0 failed"));
}

#[test]
fn hypercalls_answered_in_the_exception_vectors_keep_the_abi() {
    // aarch64 answers ABI_VERSION and NOTIFY without leaving its vectors:
    // each answer, each refusal and every other register is checked by
    // the callers, from both ends of a doorbell channel.
    let b = boot_system("fast-calls");
    b.assert_status(0);
    for name in ["left", "right"] {
        let want = "calls: 1000 ABI_VERSION calls, 1 doorbell channel(s) and the refusals checked, 0 wrong";
        assert!(b.lines_of(name).contains(&want), "{name}:\n{}", b.output);
        assert_eq!(b.summary(name), "exited 0");
    }
}

#[test]
fn the_firmware_device_tree_decides_what_the_machine_offers() {
    // QEMU's own device tree for the board (dumped with the same machine
    // options), given back with `-dtb`: as it is, the system boots; with
    // the node `cpu@0` renamed (QEMU passes `/cpus` on unchanged), the
    // hypervisor finds no core 0 and refuses to start the partition that
    // owns it, so the one-pass reader did find the cores by their nodes.
    let dir = root().join("target/hallows/tests/device-tree");
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    let dumped = dir.join("virt.dtb");
    let _ = std::fs::remove_file(&dumped);
    let _ = boot_system_with("boot-one", &["-machine".into(), format!("dumpdtb={}", dumped.display())]);
    let tree = std::fs::read(&dumped).expect("QEMU dumped its device tree");
    let boot_with = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("writing a device tree");
        boot_system_with("boot-one", &["-dtb".into(), path.display().to_string()])
    };
    let b = boot_with("same.dtb", &tree);
    b.assert_status(0);
    assert_eq!(b.summary("solo"), "exited 0");

    let at: Vec<usize> = tree.windows(6).enumerate().filter(|(_, w)| *w == b"cpu@0\0").map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "one node cpu@0 in the tree");
    let mut renamed = tree.clone();
    renamed[at[0]..at[0] + 3].copy_from_slice(b"cpx");
    let b = boot_with("no-cpu0.dtb", &renamed);
    b.assert_status(2);
    assert!(
        b.output.contains("boot failed: the manifest asks for core 0 (MPIDR 0x0); the firmware reports 3 cores (device tree)"),
        "{}",
        b.output
    );
}

#[test]
fn reading_another_partitions_ram_stops_only_the_reader() {
    let b = boot_system("foreign-ram");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("attacker").starts_with("stopped: stage-2 fault: read at 0x48000000"));
    assert_eq!(b.summary("victim"), "exited 0");
    assert!(b.lines_of("victim").contains(&"2262 primes below 20000"));
}

#[test]
fn hypervisor_memory_and_devices_are_unreachable() {
    let b = boot_system("hypervisor-memory");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert!(b.summary("reader").starts_with("stopped: stage-2 fault: read at 0x40200000"), "{}", b.output);
    assert!(b.summary("gic").starts_with("stopped: stage-2 fault: write at 0x8000000"), "{}", b.output);
    assert!(b.summary("uart").starts_with("stopped: stage-2 fault: read at 0x9000000"), "{}", b.output);
    assert_eq!(b.summary("bystander"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"goodbye"));
}

#[test]
fn psci_power_and_foreign_cores_are_refused() {
    let b = boot_system("psci");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert_eq!(b.summary("poweroff"), "stopped: PSCI SYSTEM_OFF denied: a partition may not power off the machine");
    assert_eq!(b.summary("reset"), "stopped: PSCI SYSTEM_RESET denied: a partition may not reset the machine");
    assert_eq!(b.summary("cpuon"), "stopped: PSCI CPU_ON denied: core 0x3 does not belong to the partition");
    assert_eq!(b.summary("bystander"), "exited 0");
    assert!(b.lines_of("bystander").contains(&"2262 primes below 20000"));
}

#[test]
fn guest_panics_and_exceptions_stop_the_guest_with_its_reason() {
    let b = boot_system("guest-faults");
    b.assert_status(1);
    b.assert_no_uncontained();
    assert_eq!(b.summary("panicky"), "stopped: the guest panicked");
    assert!(
        b.lines_of("panicky").iter().any(|l| l.contains("probe panics on purpose")),
        "panic message missing:\n{}",
        b.output
    );
    // EC 0 (unknown reason) with IL set: the udf instruction.
    assert!(b.summary("undef").starts_with("stopped: unhandled guest exception (ESR_EL1 0x2000000, pc 0x4000"), "{}", b.output);
    assert_eq!(b.summary("console"), "exited 0");
    let console = b.lines_of("console");
    assert_eq!(console.iter().filter(|l| l.ends_with(") = -2")).count(), 4, "{console:?}");
    assert!(console.iter().any(|l| l.ends_with(", 1048576) = -3")), "{console:?}");
    assert!(console.contains(&"unknown call = -1"));
    assert!(console.contains(&"abi version = 0 5"), "{console:?}");
    assert_eq!(b.summary("bystander"), "exited 0");
}

#[test]
fn restart_policy_restarts_then_stops() {
    let b = boot_system("restart");
    b.assert_status(1);
    let runs: Vec<_> = b.lines_of("flaky").into_iter().filter(|l| l.starts_with("probe: action panic")).collect();
    assert_eq!(runs, ["probe: action panic addr 0x0 (restart #0)", "probe: action panic addr 0x0 (restart #1)", "probe: action panic addr 0x0 (restart #2)"]);
    assert_eq!(b.summary("flaky"), "stopped: the guest panicked (restarted 2 times)");
    assert_eq!(b.summary("steady"), "exited 0");
}

#[test]
fn halt_policy_stops_the_whole_system() {
    let b = boot_system("halt");
    b.assert_status(1);
    assert!(b.output.contains("partition critical faulted: stage-2 fault: read at 0x0"), "{}", b.output);
    assert!(b.output.contains("its policy halts the system"));
    assert!(b.summary("critical").starts_with("stopped: stage-2 fault"));
    assert_eq!(b.summary("worker"), "still running at halt");
}

#[test]
fn a_non_zero_exit_fails_the_system() {
    let b = boot_system("exit-status");
    b.assert_status(1);
    assert_eq!(b.summary("failing"), "exited 7");
    assert_eq!(b.summary("fine"), "exited 0");
    assert!(b.output.contains("all partitions finished: 1 ok, 1 failed"));
}

/// Both ends print a checksum of everything that crossed; they must agree,
/// every message must have arrived in order, and the snoop must be stopped.
fn check_stream(b: &hallows_tests::Boot, doorbells: bool) {
    b.assert_status(1);
    b.assert_no_uncontained();
    let sent = b.lines_of("producer").into_iter().find(|l| l.starts_with("sent 1000000 messages on stream")).unwrap_or_else(|| panic!("{}", b.output));
    let got = b.lines_of("consumer").into_iter().find(|l| l.starts_with("received 1000000 messages on stream in order")).unwrap_or_else(|| panic!("{}", b.output));
    let sum = |l: &str| l.rsplit("checksum ").next().map(str::to_owned);
    assert_eq!(sum(sent), sum(got));
    assert_eq!(sent.contains("(0 doorbells)"), !doorbells, "{sent}");
    assert_eq!(b.summary("producer"), "exited 0");
    assert_eq!(b.summary("consumer"), "exited 0");
    assert!(b.summary("snoop").starts_with("stopped: stage-2 fault: read at 0x100000000"), "{}", b.output);
}

#[test]
fn a_million_messages_over_a_poll_channel() {
    check_stream(&boot_system("channel-poll"), false);
}

#[test]
fn a_million_messages_over_a_doorbell_channel() {
    check_stream(&boot_system("channel-doorbell"), true);
}

#[test]
fn channel_direction_is_enforced_by_stage2() {
    let b = boot_system("channel-direction");
    b.assert_status(1);
    b.assert_no_uncontained();
    // The consumer may not write the producer's header or the slots; the
    // producer may not write the consumer's header.
    assert!(b.summary("reader").starts_with("stopped: stage-2 fault: write at 0x100000000"), "{}", b.output);
    assert!(b.summary("slotwriter").starts_with("stopped: stage-2 fault: write at 0x100005000"), "{}", b.output);
    assert!(b.summary("writer").starts_with("stopped: stage-2 fault: write at 0x100004000"), "{}", b.output);
}

/// Issue 15, belt and braces: the system records each channel's message
/// layout hash (from the specs) and the generated `connect` compares it with
/// the type the partition was built with before opening anything. Here the
/// record for `jobs` is that of a backend built from a spec whose `CountJob`
/// swaps its two fields (what `hallows check` refuses): the frontend
/// refuses the channel with a fault naming it and both hashes, instead of
/// sending jobs the other end would misread.
#[test]
fn a_channel_whose_ends_disagree_on_the_message_type_is_refused_at_open() {
    let spec = std::fs::read_to_string(root().join("guests/services/counter/counter.pt")).expect("counter.pt");
    let ours = parseltongue::check_str("counter.pt", &spec).expect("counter.pt checks");
    let swapped = spec.replacen("field job: u32;\n        field limit: u32;", "field limit: u32;\n        field job: u32;", 1);
    assert_ne!(swapped, spec);
    let theirs = parseltongue::check_str("swapped.pt", &swapped).expect("the swapped spec checks");
    let hash = |s: &parseltongue::Spec| s.model.structs.iter().find(|t| t.name == "CountJob").expect("CountJob").hash;
    let (ours, theirs) = (hash(&ours), hash(&theirs));
    assert_ne!(ours, theirs);
    let b = hallows_tests::boot_manifest_retyped(&root().join("vmm-config/examples/demo.toml"), &|h| {
        let jobs = h.iter_mut().find(|(c, _)| c == "jobs").expect("the demo's specs type `jobs`");
        assert_eq!(jobs.1, ours, "the tool records the specs' hash");
        jobs.1 = theirs;
    });
    assert_ne!(b.status, Some(0), "{}", b.output);
    let want = format!("service greeter: channel \"jobs\" refused: the system expects message layout hash {theirs:#018x}, this service was built with {ours:#018x}");
    assert!(b.lines_of("frontend").iter().any(|l| l.contains(&want)), "no refusal:\n{}", b.output);
    assert_eq!(b.summary("frontend"), "stopped: the guest panicked");
    // Nothing was exchanged: the frontend never printed an answer.
    assert!(!b.lines_of("frontend").iter().any(|l| l.starts_with("backend counted")), "{}", b.output);
    // The backend, built from the other spec here, refuses `jobs` as well.
    assert!(b.lines_of("backend").iter().any(|l| l.contains("service counter: channel \"jobs\" refused")), "{}", b.output);
    assert_eq!(b.summary("database"), "exited 0");
}

/// Issue 15, doorbells that cannot be forgotten: the demo with doorbell
/// channels and no `spec` keys. The frontend's generated Basilisk call
/// rings the `jobs` doorbell itself, so the backend, asleep on it
/// (`Service::wait`), wakes; its route's reply is rung by the generated
/// loop. The channels are typed from the guests' own specs.
#[test]
fn the_demo_over_doorbell_channels_without_spec_keys_completes() {
    let b = boot_system("demo-doorbell");
    b.assert_status(0);
    assert!(b.lines_of("frontend").contains(&"backend counted 168 primes below 1000 (job 1)"), "{}", b.output);
    for name in ["frontend", "backend", "database"] {
        assert_eq!(b.summary(name), "exited 0", "{}", b.output);
    }
}

#[test]
fn a_stack_overflow_is_a_reported_fault_with_a_post_mortem() {
    let b = boot_system("stack-overflow");
    b.assert_stack_overflow("overflow", "(data abort), vector 4", "post-mortem:     x0 0x");
    b.assert_task_stack_overflow("tasky");
    assert_eq!(b.summary("bystander"), "exited 0");
}

/// What `probe action=chatter` prints as line `i`, as the console shows
/// it (a tab becomes a space, ESC is escaped).
fn chatter_line(i: u64) -> String {
    let accent = if i.is_multiple_of(5) { "\u{e9} " } else { "" };
    let esc = if i.is_multiple_of(11) { "\\u{1b}" } else { "" };
    let width = 80 + (i as usize * 7) % 61;
    format!("chatter {i:04} {accent}{}{esc} end", "x".repeat(width))
}

fn check_chatter(b: &hallows_tests::Boot) {
    b.assert_status(0);
    for name in ["alpha", "beta", "gamma"] {
        let lines: Vec<&str> = b.lines_of(name).into_iter().filter(|l| !l.starts_with("probe: ")).collect();
        let want: Vec<String> = (0..300).map(chatter_line).collect();
        assert_eq!(lines, want, "partition {name}'s lines, whole and in order; output:\n{}", b.output);
        // Its last line comes before its exit line.
        let last = b.output.find(&format!("[{name}] {}", want[299])).expect("last line");
        let exit = b.output.find(&format!("[hallows] partition {name} exited with status 0")).expect("exit line");
        assert!(last < exit, "{name}'s exit line came before its last line:\n{}", b.output);
    }
}

#[test]
fn partitions_printing_at_once_each_get_every_line_whole_and_in_order() {
    check_chatter(&boot_system("console-chatter"));
}

#[test]
fn partitions_printing_at_once_finish_under_icount() {
    // QEMU runs the cores in turn: a core waiting for the console must
    // let the holder run (it once spun in `isb` and could hang).
    check_chatter(&hallows_tests::boot_system_with("console-chatter", &["-icount".into(), "shift=0,sleep=off".into()]));
}

//! Expectations shared by the supervision tests on every platform.

use hallows_tests::Boot;

/// `watchdog.toml` / `x86-watchdog.toml`: the three hangs are caught by
/// their watchdogs and handled by their policies; the partition that pets
/// its watchdog runs on and exits 0.
#[allow(dead_code)]
pub fn check_watchdogs(b: &Boot, period: &str) {
    b.assert_status(1);
    b.assert_no_uncontained();
    let miss = format!("stopped: watchdog expired: not petted for {period}");
    // `spin` is restarted once (policy restart, max_restarts = 1), hangs
    // again, and is stopped.
    let runs: Vec<_> = b.lines_of("spin").into_iter().filter(|l| l.starts_with("probe: action spin")).collect();
    assert_eq!(runs, ["probe: action spin addr 0x0 (restart #0)", "probe: action spin addr 0x0 (restart #1)"], "{}", b.output);
    // `restart_backoff = "20 ms"`: the first restart waits 20 ms.
    assert!(b.output.contains(&format!("partition spin faulted: watchdog expired: not petted for {period}; restarting it (1 of 1) after 20 ms")), "{}", b.output);
    assert_eq!(b.summary("spin"), format!("{miss} (restarted 1 times) (2 watchdog misses)"));
    assert_eq!(b.summary("sleep"), format!("{miss} (1 watchdog miss)"), "{}", b.output);
    assert_eq!(b.summary("excloop"), format!("{miss} (1 watchdog miss)"));
    // Each hang really started before it was caught.
    assert!(b.lines_of("sleep").contains(&"probe: sleeping forever"), "{}", b.output);
    assert!(b.lines_of("excloop").iter().any(|l| l.contains("then a fault")), "{}", b.output);
    // Petted for eight periods or more: unaffected.
    assert_eq!(b.summary("steady"), "exited 0", "{}", b.output);
    let done = b.lines_of("steady");
    let pets = done.iter().find_map(|l| l.strip_prefix("probe: petted ")).expect("steady finished petting");
    let n: u64 = pets.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a count");
    assert!(n >= 8, "{}", b.output);
}

/// `restart-2vcpu-running.toml`: a two-vCPU partition whose vCPUs both
/// spin is restarted whole by its watchdog: RAM scrubbed, vCPU 1 off and
/// startable again, the second run exits 0.
#[allow(dead_code)]
pub fn check_two_vcpu_restart(b: &Boot, period: &str) {
    b.assert_status(0);
    let pair = b.lines_of("pair");
    assert!(pair.contains(&"probe: both vCPUs spinning"), "{}", b.output);
    assert!(b.output.contains(&format!("partition pair faulted: watchdog expired: not petted for {period}; restarting it (1 of 1)")), "{}", b.output);
    assert!(pair.contains(&"probe: marker after restart: 0x0"), "{}", b.output);
    assert!(pair.contains(&"probe: vCPU 1 runs again after the restart"), "{}", b.output);
    assert_eq!(b.summary("pair"), "exited 0 (restarted 1 times) (1 watchdog miss)");
    assert_eq!(b.summary("steady"), "exited 0");
}

/// `rpc-restart.toml`: a Parseltongue request/reply client across a server
/// restart: the call pending when the server crashes fails with a clear
/// error (not a hang), is retried, and every reply matches its request.
#[allow(dead_code)]
pub fn check_rpc_restart(b: &Boot) {
    b.assert_status(0);
    assert!(b.lines_of("backend").contains(&"crashing on purpose while serving job 8"), "{}", b.output);
    let frontend = b.lines_of("frontend");
    assert_eq!(
        frontend.iter().filter(|l| l.starts_with("job ")).copied().collect::<Vec<_>>(),
        ["job 8: the server restarted; the request was not answered (retry if it is idempotent); asking again"],
        "{}",
        b.output
    );
    assert!(frontend.contains(&"20 calls answered, 1 failed with the server restarted and were retried"), "{}", b.output);
    assert!(!frontend.iter().any(|l| l.contains("wrong reply")), "{}", b.output);
    // The restarted backend served the retried job and the rest: 13.
    assert!(b.lines_of("backend").contains(&"served 13 job(s)"), "{}", b.output);
    assert_eq!(b.summary("backend"), "exited 0 (restarted 1 times)");
    assert_eq!(b.summary("frontend"), "exited 0");
}

/// `operator.toml`: the operator restarts a running two-vCPU partition and
/// stops another through `hallows run`'s control path; `status` reports
/// every partition; the state lines come again before the summary.
#[allow(dead_code)]
pub fn check_operator(name: &str) {
    use std::time::Duration;
    let (mut run, control) = hallows_tests::start_system_controlled(name);
    let names = ["service", "pair", "oneshot"];
    let wait = |text: &str| assert!(control.wait_for(text, Duration::from_secs(120)), "no {text:?} in time");
    wait("[pair] probe: both vCPUs spinning");
    wait("[service] probe: running until stopped");
    // Refused before they reach the machine.
    assert!(control.send("reboot", &names).unwrap_err().contains("unknown command"));
    assert!(control.send("stop nobody", &names).unwrap_err().contains("no partition named"));
    control.send("status", &names).unwrap();
    wait("[hallows] state: oneshot:");
    // `service` is on core 0, the control core, which takes the operator's
    // commands: once its partition is stopped, the parked core must still
    // run the next ones (on SVM it once parked with GIF clear, deaf).
    control.send("stop service", &names).unwrap();
    wait("[hallows] partition service stopped: by the operator");
    control.send("restart pair", &names).unwrap();
    wait("[pair] probe: vCPU 1 runs again after the restart");
    let b = run.wait();
    b.assert_status(1);
    assert!(b.output.contains("[hallows] state: service: running, up "), "{}", b.output);
    assert!(b.output.contains("[hallows] state: pair: running, up "), "{}", b.output);
    assert!(b.output.contains("[hallows] partition pair restarted by the operator (restart 1)"), "{}", b.output);
    assert!(b.lines_of("pair").contains(&"probe: marker after restart: 0x0"), "{}", b.output);
    assert!(b.output.contains("[hallows] partition service stopped: by the operator"), "{}", b.output);
    // The end: state lines, then the summary.
    assert!(b.output.contains("[hallows] state: service: stopped (by the operator), restarts 0, faults 0, watchdog misses 0"), "{}", b.output);
    assert!(b.output.contains("[hallows] state: pair: exited 0, restarts 1, faults 0, watchdog misses 0"), "{}", b.output);
    assert_eq!(b.summary("service"), "stopped: by the operator");
    assert_eq!(b.summary("pair"), "exited 0 (restarted 1 times)");
    assert_eq!(b.summary("oneshot"), "exited 0");
}

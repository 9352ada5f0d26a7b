//! Deterministic measurement: `hallows el2-cost` gives the same figures,
//! bit for bit, in every run of a multi-core system (QEMU counts
//! instructions as its clock, `-icount shift=0,sleep=off`; the cores run in
//! turn and every wait lets the others run). Without `-icount` the same
//! image's per-core hypervisor counts differ from run to run by hundreds
//! of instructions (waits on the other core last as long as the host's
//! threads make them).

use std::time::Duration;

use hallows::{build, cost};

/// Each traced run is killed after this long (one takes about 6 s).
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn el2_cost_of_a_two_core_system_is_the_same_in_every_run() {
    let (sys, img) = hallows_tests::system_image("el2-cost-two");
    let elf = hallows_tests::root().join("target").join(build::targets(sys.board.arch).0).join("release/hallows-hv");
    let guests = hallows_tests::root().join("target").join(build::targets(sys.board.arch).1).join("release");
    let run = || cost::el2_cost(&sys, &img, &elf, |g| guests.join(g), 12, RUN_LIMIT).expect("the traced run");
    let first = run();
    let second = run();
    assert_eq!(first.outcome.status, Some(0), "output:\n{}", first.outcome.output);
    for part in ["producer", "consumer"] {
        assert!(
            first.outcome.output.contains(&format!("[hallows] partition {part} exited with status 0")),
            "{}",
            first.outcome.output
        );
    }
    // Both partitions' cores trapped (doorbells sent and delivered), so the
    // comparison covers the hypervisor's work on each.
    for core in [1, 2] {
        let line = first
            .report
            .lines()
            .find(|l| l.starts_with(&format!("core {core}: ")))
            .unwrap_or_else(|| panic!("no core {core} in:\n{}", first.report));
        let hv: u64 = line.split(", ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).expect(line);
        assert!(hv > 0, "{line}");
        // `--pcs`: the per-address counts of the core add up to its
        // hypervisor count, each address once, in order.
        let rows: Vec<(u64, u64)> = first
            .pcs
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                if *f.first()? != core.to_string() {
                    return None;
                }
                let pc = u64::from_str_radix(f.get(1)?.trim_start_matches("0x"), 16).expect(l);
                Some((pc, f.get(2)?.parse().expect(l)))
            })
            .collect();
        assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), hv, "core {core}'s addresses do not add up to {hv}");
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "core {core}'s addresses are not in order");
    }
    assert_eq!(first.pcs, second.pcs, "the per-address counts differ between two runs");
    assert!(first.report.contains("call_notify"), "{}", first.report);
    assert!(first.report.contains("hallows_hv::partition::deliver_doorbells"), "{}", first.report);
    // QEMU's own diagnostics are not the machine's output: whether it warns
    // "icount sleep disabled and no active timers" as the last core stops
    // depends on when its host threads notice (seen once in a CI run on a
    // loaded host), so the comparison leaves out the emulator's lines.
    let machine = |out: &str| out.lines().filter(|l| !l.starts_with("qemu-system-")).collect::<Vec<_>>().join("\n");
    assert_eq!(machine(&first.outcome.output), machine(&second.outcome.output), "the machine's output differs between two runs");
    assert_eq!(first.report, second.report, "the per-core figures differ between two runs");
}

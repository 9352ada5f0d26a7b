//! The flagship system's scenario (vmm-config/examples/flagship.toml,
//! docs/demo.md), the one `make run` runs (`hallows demo`): booted on
//! fresh disks, driven by its load generator and by curl, redis-cli, kcat
//! and psql from the host; every check must pass, and the summary must
//! say what each found. Its x86_64 twin (flagship-x86_64.toml, `make run
//! ARCH=x86_64`) passes the same checks but the dashboard's, which it
//! reports as skipped.

use std::sync::atomic::AtomicBool;

use hallows::demo::Report;
use hallows_tests::{manifest_image, root};

/// The checks both flagships pass (the x86_64 one has no dashboard).
const CHECKS: [&str; 11] = [
    "boot",
    "curl POST /todos",
    "curl GET /todos",
    "redis-cli GET",
    "kcat -C -t events",
    "psql events",
    "psql group by kind",
    "load generator",
    "rates",
    "partitions",
    "console",
];

/// Runs `vmm-config/examples/<name>.toml`'s scenario; asserts it passed,
/// that each of `checks` passed, and that the load generator's calls were
/// answered from inside the system. The report and its summary.
fn scenario(name: &str, stop: &'static AtomicBool, checks: &[&str]) -> (Report, String) {
    // Both flagships forward the same host ports (8080, 6379, 9092, 5432,
    // the ones a user expects): one at a time, or the second is refused
    // its ports (seen in CI, the tests of this file running in parallel).
    static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let manifest = root().join(format!("vmm-config/examples/{name}.toml"));
    let (mut sys, image) = manifest_image(&manifest);
    let (report, log) = hallows::demo::run_manifest(&root(), &manifest, &mut sys, &image, stop).expect("the scenario could not run");
    let summary = report.summary();
    println!("{summary}");
    assert!(report.passed(), "{summary}\nconsole: {}\n{}", log.display(), report.console);
    // Each part of the data flow was checked, from both sides.
    for check in checks {
        assert!(report.checks.iter().any(|c| c.name == *check && c.ok), "no passed check {check:?}:\n{summary}");
    }
    // The load generator's calls were answered from inside the system.
    let (_, created, _, failed) = hallows::demo::loadgen_figures(&report.console).expect("the load generator's summary line");
    assert!(created > 0 && failed == 0, "{summary}");
    (report, summary)
}

#[test]
fn the_flagship_scenario_passes_every_check() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let mut checks = CHECKS.to_vec();
    checks.extend(["dashboard", "dashboard control"]);
    let (report, summary) = scenario("flagship", &STOP, &checks);
    assert!(summary.contains(", 0 failed"), "{summary}");
    let shot = report.screenshot.expect("a screenshot");
    let png = hallows::qmp::Image::read_png(&shot).expect("the screenshot is a PNG");
    assert_eq!((png.width, png.height), (1024, 768), "the dashboard's display");
}

/// The x86_64 twin (vmm-config/examples/flagship-x86_64.toml, `make run
/// ARCH=x86_64`): every check but the dashboard's passes, and those two
/// are reported as skipped with the reason, not dropped and not failed.
/// About 40 s from boot to summary once built (docs/demo.md#x86_64).
#[test]
fn the_x86_64_flagship_passes_every_check_but_the_dashboards_which_it_skips() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let (report, summary) = scenario("flagship-x86_64", &STOP, &CHECKS);
    for check in ["dashboard", "dashboard control"] {
        let c = report.checks.iter().find(|c| c.name == check).unwrap_or_else(|| panic!("no check {check:?}:\n{summary}"));
        assert!(c.skipped && !c.ok && c.detail.contains("virtio-gpu"), "{check:?} not skipped with its reason:\n{summary}");
        assert!(summary.contains(&format!("[skipped] {check}: ")), "{summary}");
    }
    assert!(summary.contains(", 0 failed, 2 skipped"), "{summary}");
    assert!(report.screenshot.is_none(), "no dashboard, no screenshot");
    assert!(summary.contains("all 6 ran to the end"), "{summary}");
}

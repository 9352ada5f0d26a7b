//! The flagship system's scenario (vmm-config/examples/flagship.toml,
//! docs/demo.md), the one `make run` runs (`hallows demo`): booted on
//! fresh disks, driven by its load generator and by curl, redis-cli, kcat
//! and psql from the host; every check must pass, and the summary must
//! say what each found.

use std::sync::atomic::AtomicBool;

use hallows_tests::{manifest_image, root};

#[test]
fn the_flagship_scenario_passes_every_check() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let manifest = root().join("vmm-config/examples/flagship.toml");
    let (mut sys, image) = manifest_image(&manifest);
    let (report, log) = hallows::demo::run_manifest(&root(), &manifest, &mut sys, &image, &STOP).expect("the scenario could not run");
    let summary = report.summary();
    println!("{summary}");
    assert!(report.passed(), "{summary}\nconsole: {}\n{}", log.display(), report.console);
    // Each part of the data flow was checked, from both sides.
    for check in [
        "boot",
        "curl POST /todos",
        "curl GET /todos",
        "redis-cli GET",
        "kcat -C -t events",
        "psql events",
        "psql group by kind",
        "load generator",
        "rates",
        "dashboard",
        "dashboard control",
        "partitions",
        "console",
    ] {
        assert!(report.checks.iter().any(|c| c.name == check && c.ok), "no passed check {check:?}:\n{summary}");
    }
    assert!(summary.contains(", 0 failed"), "{summary}");
    let shot = report.screenshot.expect("a screenshot");
    let png = hallows::qmp::Image::read_png(&shot).expect("the screenshot is a PNG");
    assert_eq!((png.width, png.height), (1024, 768), "the dashboard's display");
    // The load generator's calls were answered from inside the system.
    let (_, created, _, failed) = hallows::demo::loadgen_figures(&report.console).expect("the load generator's summary line");
    assert!(created > 0 && failed == 0, "{summary}");
}

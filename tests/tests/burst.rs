//! `make bench` comparison (C)'s RustHallows side (guests/tests/burst,
//! tests/systems/bench-burst-api.toml) with a short schedule under
//! `-icount shift=0,sleep=off`: every request is answered once with its
//! work's result (the checksum a host computation of the same schedule
//! gives), under the `api` scheduler and under FIFO alike, and two boots
//! print the same latencies, bit for bit (what the comparison relies on).
//! No latency is asserted: the comparison reports them.

use hallows_burst::{work, Params, Schedule};
use hallows_tests::*;

const COUNT: u64 = 150;

fn boot(policy: &str) -> Boot {
    let text = std::fs::read_to_string(root().join("tests/systems/bench-burst-api.toml")).unwrap();
    assert!(
        text.contains("count=2000 ") && text.contains("policy=api quantum_us=20 demoted_us=200"),
        "the manifest changed:\n{text}"
    );
    let text = text
        .replace("count=2000 ", &format!("count={COUNT} "))
        .replace("policy=api quantum_us=20 demoted_us=200", policy);
    let dir = root().join("target/tests-burst");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{}.toml",
        policy.split(' ').next().unwrap().replace('=', "-")
    ));
    std::fs::write(&path, text).unwrap();
    let b = boot_manifest_with(&path, &["-icount".into(), "shift=0,sleep=off".into()]);
    b.assert_status(0);
    b
}

fn done_line(b: &Boot) -> String {
    b.lines_of("client")
        .into_iter()
        .find(|l| l.starts_with("burst: done"))
        .unwrap_or_else(|| panic!("no done line:\n{}", b.output))
        .to_string()
}

fn latencies(b: &Boot) -> Vec<String> {
    b.lines_of("client")
        .into_iter()
        .filter(|l| l.starts_with("burst: lat "))
        .flat_map(|l| l[11..].split(' ').map(String::from).collect::<Vec<_>>())
        .collect()
}

#[test]
fn every_request_is_answered_with_its_work_and_the_run_repeats() {
    let p = Params {
        count: COUNT,
        short_work: 2_000,
        long_work: 100_000,
        long_per_mille: 50,
        mean_gap_ns: 200_000,
        ..Params::DEFAULT
    };
    let want = Schedule::new(p)
        .enumerate()
        .fold(0u64, |s, (i, a)| s.wrapping_add(work(i as u64, a.units)));
    let sum = format!("checksum {want:#018x}");
    let api = boot("policy=api quantum_us=20 demoted_us=200");
    let fifo = boot("policy=fifo quantum_ms=0");
    for b in [&api, &fifo] {
        let d = done_line(b);
        assert!(
            d.starts_with(&format!("burst: done {COUNT} requests {sum} window ")),
            "{d}\n{}",
            b.output
        );
        assert!(
            b.lines_of("server")
                .contains(&format!("burst: server done, {COUNT} requests").as_str()),
            "{}",
            b.output
        );
        let lat = latencies(b);
        assert_eq!(lat.len() as u64, COUNT, "{}", b.output);
        // The classes are the schedule's, in request order.
        let classes: String = lat.iter().map(|t| &t[..1]).collect();
        let sched: String = Schedule::new(p)
            .map(|a| if a.long { "l" } else { "s" })
            .collect();
        assert_eq!(classes, sched);
    }
    let again = boot("policy=api quantum_us=20 demoted_us=200");
    assert_eq!(
        latencies(&again),
        latencies(&api),
        "two boots under -icount gave different latencies"
    );
    assert_eq!(done_line(&again), done_line(&api));
}

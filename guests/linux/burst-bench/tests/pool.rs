//! The thread pool answers every request of the schedule once, with the
//! work's result, and times it.
use hallows_burst::{work, Params, Schedule};

#[test]
fn every_request_is_answered_with_its_work() {
    let p = Params {
        count: 300,
        short_work: 200,
        long_work: 20_000,
        long_per_mille: 100,
        mean_gap_ns: 20_000,
        ..Params::DEFAULT
    };
    let o = linux_burst_bench::run(p, 2, false).unwrap();
    let arrivals: Vec<_> = Schedule::new(p).collect();
    let want = arrivals
        .iter()
        .enumerate()
        .fold(0u64, |s, (i, a)| s.wrapping_add(work(i as u64, a.units)));
    assert_eq!(o.checksum, want);
    assert_eq!(o.latency.len(), 300);
    for (l, a) in o.latency.iter().zip(&arrivals) {
        assert_eq!(l.0, a.long);
        assert!(l.1 < 60_000_000_000, "latency {} ns", l.1);
    }
    assert!(o.window_ns >= arrivals.last().unwrap().at_ns);
    assert_eq!(o.cpus.len(), 3);
}

#[test]
fn no_workers_is_refused() {
    assert!(linux_burst_bench::run(
        Params {
            count: 1,
            ..Params::DEFAULT
        },
        0,
        false
    )
    .is_err());
}

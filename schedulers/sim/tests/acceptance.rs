//! The acceptance properties of the scheduler study, checked on small but
//! meaningful deterministic simulations (the `QUICK` scale) over several
//! seeds: each property must hold for every seed, with the overhead costs
//! the study charges. These are correctness properties of seeded
//! simulations, not timing tests.
use hallows_sim::experiments::{self as exp, Policy, Scale, Setup, Target};
use hallows_sim::ServiceDist;

const US: u64 = 1_000;

/// Seeds 1..=3 at the quick scale, measured costs.
fn setup() -> Setup {
    Setup::new(Scale::QUICK, 1, 3)
}

#[test]
fn api_sustains_three_times_fcfs_on_bimodal_with_2_cores() {
    let setup = setup();
    let low = exp::grid(0.02, 0.2, 0.02);
    let fcfs = exp::api_sweep(
        ServiceDist::BIMODAL,
        2,
        &low,
        &[Policy::Fcfs],
        &setup,
        &exp::sequential,
    );
    let fcfs_loads = &fcfs.capacity(exp::API_SLOWDOWN_TARGET, Target::Overall)[0];
    assert_eq!(fcfs_loads.len(), 3);
    let fcfs_max = fcfs_loads.iter().copied().fold(0.0, f64::max);
    assert!(
        fcfs_loads.iter().all(|&l| l > 0.0) && fcfs_max < 0.2,
        "fcfs sustained {fcfs_loads:?}"
    );
    // On every seed, the api policy must hold the target at every grid
    // load up to 3x what FCFS sustains on any seed.
    let loads = exp::grid(0.02, 3.0 * fcfs_max, 0.02);
    let api = exp::api_sweep(
        ServiceDist::BIMODAL,
        2,
        &loads,
        &[Policy::Api(2 * US)],
        &setup,
        &exp::sequential,
    );
    for &l in &api.capacity(exp::API_SLOWDOWN_TARGET, Target::Overall)[0] {
        assert!(l >= 3.0 * fcfs_max - 1e-9, "api {l} vs fcfs {fcfs_max}");
    }
    assert!(api.stats[0]
        .iter()
        .flatten()
        .all(|s| s.slowdown.p99 <= exp::API_SLOWDOWN_TARGET));
    // The per-class definition is stricter, never looser.
    let each = &api.capacity(exp::API_SLOWDOWN_TARGET, Target::EachClass)[0];
    let all = &api.capacity(exp::API_SLOWDOWN_TARGET, Target::Overall)[0];
    assert!(each.iter().zip(all).all(|(e, a)| e <= a));
}

#[test]
fn ui_misses_no_frame_or_input_deadline_up_to_95_percent() {
    let setup = setup();
    let utils = [0.5, 0.8, 0.9, 0.95];
    for cores in [1, 2] {
        let t = exp::ui_sweep(cores, &utils, &[Policy::Ui], &setup, &exp::sequential);
        for (u, util) in utils.iter().enumerate() {
            for k in 0..setup.seeds.len() {
                let (frames, missed) = t.frames(0, u, k);
                assert!(frames > 200, "too few frames to mean anything");
                assert_eq!(missed, 0, "{cores} core(s), util {util}");
                assert_eq!(t.input(0, u, k).missed, 0, "{cores} core(s), util {util}");
            }
        }
    }
    // The check can fail: past 100 % EDF must miss.
    let over = exp::ui_sweep(1, &[1.05], &[Policy::Ui], &setup, &exp::sequential);
    assert!((0..setup.seeds.len()).all(|k| over.frames(0, 0, k).1 > 0));
}

#[test]
fn db_keeps_commits_within_budget_while_compaction_saturates() {
    let setup = setup();
    let loads = [0.2, 0.5, 0.8];
    let t = exp::db_sweep(
        &loads,
        &[Policy::Db, Policy::Fcfs],
        &setup,
        &exp::sequential,
    );
    let budget = exp::COMMIT_BUDGET as f64;
    for (r, &load) in loads.iter().enumerate() {
        for s in &t.stats[0][r] {
            let (p99, bg, util) = (s[0].latency.p99, s[2].core_share, exp::total_util(s));
            assert!(p99 <= budget, "db commit p99 {p99} ns at read load {load}");
            // Background takes what commits and reads leave, and at least its 10 % share.
            assert!(bg >= 0.095, "background share {bg}");
            // Ticks, kicks and preemptions cost some of the partition.
            assert!(util >= 0.93, "partition not saturated: {util}");
            assert!(
                bg >= 1.0 - exp::DB_COMMIT_LOAD - load - 0.08,
                "background starved: {bg}"
            );
        }
        // Without classes, compaction chunks sit in front of commits.
        assert!(t.stats[1][r].iter().all(|s| s[0].latency.p99 > budget));
    }
}

#[test]
fn messaging_batching_raises_throughput_under_each_bound() {
    let setup = setup();
    let bounds = [100 * US, 500 * US];
    let m = exp::messaging_sweep(
        &bounds,
        &exp::grid(200_000.0, 800_000.0, 200_000.0),
        &exp::grid(30_000.0, 90_000.0, 30_000.0),
        &setup,
        &exp::sequential,
    );
    for k in 0..setup.seeds.len() {
        for (b, bound) in bounds.iter().enumerate() {
            let (unbatched, batched) = m.sustained[b][k];
            // The unbatched capacity of 2 cores is 2 / 22 us = 90 909 msgs/s.
            assert!(unbatched < 91_000.0);
            assert!(
                batched >= 3.0 * unbatched,
                "bound {bound}: {batched} vs {unbatched}"
            );
        }
        // A looser bound buys more throughput.
        assert!(m.sustained[1][k].1 > m.sustained[0][k].1);
    }
}

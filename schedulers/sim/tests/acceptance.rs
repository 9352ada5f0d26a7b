//! The acceptance properties of the scheduler study, checked on small but
//! meaningful deterministic simulations (the `QUICK` scale). These are
//! correctness properties of a seeded simulation, not timing tests.
use hallows_sim::experiments::{self as exp, Policy, Scale};
use hallows_sim::table::Table;
use hallows_sim::ServiceDist;

const SEED: u64 = 1;
const US: u64 = 1_000;

fn col(t: &Table, name: &str) -> Vec<f64> {
    t.column(name).iter().map(|c| c.parse().unwrap()).collect()
}

#[test]
fn api_sustains_three_times_fcfs_on_bimodal_with_2_cores() {
    let scale = Scale::QUICK;
    let low = exp::grid(0.02, 0.2, 0.02);
    let fcfs = exp::api_sweep(
        ServiceDist::BIMODAL,
        2,
        &low,
        &[Policy::Fcfs],
        &scale,
        SEED,
        &exp::sequential,
    );
    let fcfs_load = fcfs.capacity[0].1;
    assert!(
        fcfs_load > 0.0 && fcfs_load < 0.2,
        "fcfs sustained {fcfs_load}"
    );
    // The api policy must hold the target at every grid load up to 3x that.
    let loads = exp::grid(0.02, 3.0 * fcfs_load, 0.02);
    let api = exp::api_sweep(
        ServiceDist::BIMODAL,
        2,
        &loads,
        &[Policy::Api(2 * US)],
        &scale,
        SEED,
        &exp::sequential,
    );
    let api_load = api.capacity[0].1;
    assert!(
        api_load >= 3.0 * fcfs_load - 1e-9,
        "api {api_load} vs fcfs {fcfs_load}"
    );
    assert!(col(&api.table, "p99_slowdown")
        .iter()
        .all(|&s| s <= exp::API_SLOWDOWN_TARGET));
}

#[test]
fn ui_misses_no_frame_or_input_deadline_up_to_95_percent() {
    let utils = [0.5, 0.8, 0.9, 0.95];
    for cores in [1, 2] {
        let t = exp::ui_sweep(
            cores,
            &utils,
            &[Policy::Ui],
            &Scale::QUICK,
            SEED,
            &exp::sequential,
        );
        assert!(
            col(&t, "frames").iter().all(|&f| f > 200.0),
            "too few frames to mean anything"
        );
        assert_eq!(
            col(&t, "frames_missed"),
            vec![0.0; utils.len()],
            "{cores} core(s)"
        );
        assert_eq!(
            col(&t, "input_miss_rate"),
            vec![0.0; utils.len()],
            "{cores} core(s)"
        );
    }
    // The check can fail: past 100 % EDF must miss.
    let over = exp::ui_sweep(
        1,
        &[1.05],
        &[Policy::Ui],
        &Scale::QUICK,
        SEED,
        &exp::sequential,
    );
    assert!(col(&over, "frames_missed")[0] > 0.0);
}

#[test]
fn db_keeps_commits_within_budget_while_compaction_saturates() {
    let loads = [0.2, 0.5, 0.8];
    let t = exp::db_sweep(
        &loads,
        &[Policy::Db, Policy::Fcfs],
        &Scale::QUICK,
        SEED,
        &exp::sequential,
    );
    let budget = exp::COMMIT_BUDGET as f64 / 1e3;
    let (p99, bg, util) = (
        col(&t, "commit_p99_us"),
        col(&t, "background_share"),
        col(&t, "total_util"),
    );
    for i in 0..loads.len() {
        assert!(
            p99[i] <= budget,
            "db commit p99 {} us at read load {}",
            p99[i],
            loads[i]
        );
        // Background takes what commits and reads leave, and at least its 10 % share.
        assert!(bg[i] >= 0.095, "background share {}", bg[i]);
        assert!(util[i] >= 0.95, "partition not saturated: {}", util[i]);
        assert!(
            bg[i] >= 1.0 - exp::DB_COMMIT_LOAD - loads[i] - 0.06,
            "background starved: {}",
            bg[i]
        );
    }
    // Without classes, compaction chunks sit in front of commits.
    assert!(p99[loads.len()..].iter().all(|&p| p > budget));
}

#[test]
fn messaging_batching_raises_throughput_under_each_bound() {
    let bounds = [100 * US, 500 * US];
    let m = exp::messaging_sweep(
        &bounds,
        &exp::grid(200_000.0, 800_000.0, 200_000.0),
        &exp::grid(30_000.0, 90_000.0, 30_000.0),
        &Scale::QUICK,
        SEED,
        &exp::sequential,
    );
    let (unbatched, batched) = (
        col(&m.capacity, "unbatched_max_rate"),
        col(&m.capacity, "batched_max_rate"),
    );
    for i in 0..bounds.len() {
        // The unbatched capacity of 2 cores is 2 / 22 us = 90 909 msgs/s.
        assert!(unbatched[i] < 91_000.0);
        assert!(
            batched[i] >= 3.0 * unbatched[i],
            "bound {}: {} vs {}",
            bounds[i],
            batched[i],
            unbatched[i]
        );
    }
    // A looser bound buys more throughput.
    assert!(batched[1] > batched[0]);
}

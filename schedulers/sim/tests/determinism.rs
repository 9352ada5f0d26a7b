//! Same seed, same bytes: every experiment's CSV is a pure function of the
//! seed, whatever the evaluation order; another seed gives other numbers.
use hallows_sim::experiments::{self as exp, Point, Policy, Scale};
use hallows_sim::{ServiceDist, SourceStats};

fn reversed(points: &[Point]) -> Vec<Vec<SourceStats>> {
    let mut out: Vec<_> = points.iter().rev().map(exp::evaluate).collect();
    out.reverse();
    out
}

fn csvs(seed: u64, eval: &dyn Fn(&[Point]) -> Vec<Vec<SourceStats>>) -> Vec<String> {
    let scale = Scale {
        api_arrivals: 10_000.0,
        ui_horizon: 300_000_000,
        db_horizon: 50_000_000,
        messaging_horizon: 20_000_000,
    };
    let policies = [Policy::Fcfs, Policy::Api(2_000), Policy::Ps];
    vec![
        exp::api_sweep(
            ServiceDist::BIMODAL,
            2,
            &[0.3, 0.6],
            &policies,
            &scale,
            seed,
            eval,
        )
        .table
        .to_csv(),
        exp::api_sweep(
            ServiceDist::Lognormal {
                mean: 1_000.0,
                sigma: 1.5,
            },
            2,
            &[0.5],
            &policies,
            &scale,
            seed,
            eval,
        )
        .table
        .to_csv(),
        exp::ui_sweep(1, &[0.9], &exp::ui_policies(), &scale, seed, eval).to_csv(),
        exp::db_sweep(&[0.5], &exp::db_policies(), &scale, seed, eval).to_csv(),
        exp::messaging_sweep(&[100_000], &[200_000.0], &[50_000.0], &scale, seed, eval)
            .table
            .to_csv(),
    ]
}

#[test]
fn same_seed_gives_identical_csv() {
    let a = csvs(7, &exp::sequential);
    let b = csvs(7, &reversed);
    assert_eq!(a, b);
}

#[test]
fn another_seed_gives_other_numbers() {
    assert_ne!(csvs(7, &exp::sequential)[0], csvs(8, &exp::sequential)[0]);
}

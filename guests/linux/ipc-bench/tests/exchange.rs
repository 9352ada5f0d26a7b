//! Every mechanism on the host: the exchange completes with the expected
//! checksum, pinned (when the host has a CPU 1) and not.
use linux_ipc_bench::{run, Config, Mechanism};

#[test]
fn every_mechanism_exchanges_and_checks_every_message() {
    let pin = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    for mech in Mechanism::ALL {
        for pin in [false, pin] {
            let o = run(Config { mech, count: 300, warmup: 10, pin }).unwrap_or_else(|e| panic!("{mech:?} pin={pin}: {e}"));
            assert_eq!(o.checksum, hallows_peer::expected_checksum(310), "{mech:?}");
            if pin {
                assert_eq!(o.cpus, (0, 1), "{mech:?} ran on the wrong CPUs");
            }
            assert!(o.window_ns > 0);
        }
    }
}

#[test]
fn names_round_trip() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::parse(m.name()), Some(m));
    }
    assert_eq!(Mechanism::parse("carrier-pigeon"), None);
}

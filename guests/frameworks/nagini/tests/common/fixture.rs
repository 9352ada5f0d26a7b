//! A dashboard with deterministic data, shared by the tests and the bench.
#![allow(dead_code)]
use nagini::Dashboard;

pub const W: u32 = 1024;
pub const H: u32 = 768;

/// Deterministic pseudo-random samples (xorshift), no floating-point libm.
pub fn demo_dashboard() -> Dashboard {
    let mut d = Dashboard::new("RustHallows");
    let web = d.add_series("web requests/s", 120);
    let log = d.add_series("log records/s", 120);
    let store = d.add_series("store ops/s", 120);
    let kv = d.add_series("kv ops/s", 120);
    for name in ["requests", "log records", "store ops", "frames"] {
        d.add_counter(name);
    }
    d.add_generator("web load");
    d.add_generator("log producer");
    d.add_generator("store writer");
    let mut s: u32 = 0x1234_5678;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s % 1000) as f32
    };
    for i in 0..120 {
        let t = i as f32;
        d.push_sample(web, 1200.0 + 8.0 * t + next() * 0.3);
        d.push_sample(log, 400.0 + next() * 0.5);
        d.push_sample(store, 50.0 + (i % 30) as f32 * 3.0);
        d.push_sample(kv, next() * 2.0);
    }
    d.set_counter(0, 123_456);
    d.set_counter(1, 98_765);
    d.set_counter(2, 4_321);
    d.set_counter(3, 600);
    d
}

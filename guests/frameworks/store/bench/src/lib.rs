//! Benchmarks only: see `benches/engines.rs` (`make bench-store`).

//! `hallows-sim`: a deterministic, seeded discrete-event simulator for the
//! `hallows-sched` policies.
//!
//! The core (everything in this library) is `no_std` + `alloc`, reads no
//! clock, uses its own PRNG and `libm`, and orders simultaneous events by
//! creation sequence: the same workload and seed give the same CSV bit for
//! bit on any host. It drives the policies only through
//! [`hallows_sched::Scheduler`], exactly as a guest runtime would. The host
//! runner (`src/bin/hallows-sim.rs`) adds threads, files and plots.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod baseline;
pub mod dist;
pub mod engine;
pub mod experiments;
pub mod report;
pub mod rng;
pub mod stats;
pub mod table;
pub mod workload;

pub use dist::ServiceDist;
pub use engine::{simulate, Run, TaskRecord};
pub use stats::{summarize, ClassStats, Classes, Percentiles, SourceStats, Spread};
pub use workload::{Arrivals, Costs, Kind, Source, Workload};

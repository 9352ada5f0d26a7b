//! hallows-olap: the OLAP partition's engine, a library (docs/olap.md).
//!
//! * [`storage`]: the disk image on a [`hallows_blockdev::BlockDevice`]:
//!   column chunks in row groups, zone maps, CRC-32C on every block.
//! * [`encode`]: light compression (bit-packing, run-length, dictionaries).
//! * [`sql`]: the SQL subset's parser (errors carry line and column).
//! * [`plan`]: names, types, decimal scales, filter pushdown, join order.
//! * [`exec`]: vectorized, morsel-driven execution on one core or many.
//! * [`events`]: a table fed by a stream of events, snapshotted into an
//!   image in memory (the flagship system's analytics).
//! * [`tpch`]: the TPC-H schema the loader knows.
//! * `load` (feature `std`): `.tbl`/CSV files into an image.
//! * [`pgwire`]: the PostgreSQL v3 protocol (simple queries), sans I/O.
//! * [`http`]: `POST /query` answered with JSON, sans I/O.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod encode;
pub mod events;
pub mod exec;
pub mod http;
#[cfg(feature = "std")]
pub mod load;
pub mod pgwire;
pub mod plan;
pub mod sql;
pub mod storage;
pub mod tpch;
pub mod types;

pub use exec::{Executor, Limits, ResultSet, Serial, Stats};
pub use types::{Error, ErrorKind, Type, Value};

use hallows_blockdev::BlockDevice;

/// An opened image that answers queries.
#[derive(Debug)]
pub struct Engine<D> {
    pub db: storage::Db<D>,
    pub limits: Limits,
}

impl<D: BlockDevice + Send> Engine<D> {
    /// Opens the image on `dev` (superblock and catalog checked).
    pub fn open(dev: D) -> Result<Self, Error> {
        Ok(Engine { db: storage::Db::open(dev)?, limits: Limits::default() })
    }

    /// Parses, plans and runs one query on `ex`. Errors about the query
    /// carry its line and column.
    pub fn query(&self, sql: &str, ex: &dyn Executor) -> Result<ResultSet, Error> {
        let run = || -> Result<ResultSet, Error> {
            let q = sql::parse(sql)?;
            let p = plan::plan(&q, &self.db.tables)?;
            exec::run(&self.db, &p, ex, self.limits)
        };
        run().map_err(|e| e.locate(sql))
    }
}

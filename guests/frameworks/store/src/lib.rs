//! The OLTP store engine of RustHallows: a durable, crash-safe,
//! transactional key-value store with Redis's data model, `no_std` +
//! `alloc`, host-tested.
//!
//! * [`store`]: the keyspace in memory, a checksummed write-ahead log with
//!   group commit, checkpoints, and recovery, on a block device.
//! * [`db`]: the keyspace and the logged operations.
//! * [`resp`]: Redis's RESP2 protocol (requests in, replies out).
//! * [`chan`]: the channel front (`kv.pt` requests from other partitions).
//! * [`cmd`]: Redis commands on the store, with Redis's semantics and error
//!   replies, pipelining and `MULTI`/`EXEC`.
//!
//! See `docs/oltp.md`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod chan;
pub mod cmd;
mod codec;
pub use hallows_blockdev::crc32c as crc;
pub mod db;
pub mod glob;
pub mod resp;
pub mod store;

pub use db::{Entry, Keyspace, Op, Record, Ttl, Value};
pub use store::{Config, Damage, Durability, Error, Recovery, Store, Ticket};

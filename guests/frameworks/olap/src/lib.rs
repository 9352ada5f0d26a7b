//! hallows-olap: the OLAP partition's engine (see docs/olap.md).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod encode;
pub mod storage;
pub mod types;
pub mod sql;

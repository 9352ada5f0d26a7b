//! The Kafka-flavoured log: a `no_std` + `alloc` engine on a raw block
//! device and the Kafka wire protocol in front of it. See docs/log.md.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod batch;
pub mod broker;
pub use hallows_blockdev::crc32c;
pub mod dev;
pub mod engine;
pub mod proto;
#[cfg(feature = "std")]
pub mod server;
#[cfg(feature = "std")]
pub mod client;
pub mod wire;

pub use dev::{BlockDevice, MemDisk};
pub use engine::{FlushPolicy, Log, LogConfig, LogError, Offsets, Topic, TopicConfig};
pub use broker::{Broker, BrokerConfig, Reply};

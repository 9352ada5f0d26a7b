//! Basilisk, the backend framework's runtime (`no_std` + `alloc`).
//!
//! A Basilisk spec (`use_extension basilisk;` with `resource`,
//! `json_struct` and `http_route` declarations) compiles, through
//! Parseltongue, to plain Rust that calls this crate: the router, the JSON
//! types with their declared validations and the REST actions of each
//! resource are generated; what they share is here:
//!
//! * [`Request`] / [`Response`]: what the HTTP engine hands over and gets
//!   back (method, path, query, body; status, JSON body, a few headers);
//! * [`rest`]: the REST actions of a resource (index with pagination,
//!   create, show, replace, update, destroy) for any [`rest::Record`], and
//!   the path matching helpers the router uses;
//! * [`json`]: field extraction that names every failing field (422);
//! * [`pattern`]: the `pattern` validation, linear-time;
//! * [`limit::RateLimiter`]: per-client token buckets in a fixed table;
//! * [`auth::Tokens`]: bearer tokens, compared in constant time;
//! * [`store::Store`]: where resources live (the store partition over its
//!   channel front in a guest, [`store::MemStore`] on the host);
//! * [`stats::RouteStats`]: per-route request counts and timings;
//! * [`lock::Lock`]: the async lock connection tasks share the application
//!   through;
//! * `server` (feature `rt`): serving an application over HTTP/1.1 on the
//!   partition's network, one task per connection.
//!
//! docs/basilisk.md is the guide.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod auth;
pub mod json;
pub mod limit;
pub mod lock;
/// The `pattern` validation (its own crate, shared with the Parseltongue
/// compiler, which checks patterns when the spec is compiled).
pub use hallows_pattern as pattern;
pub mod rest;
#[cfg(feature = "rt")]
pub mod server;
pub mod stats;
pub mod store;

mod http;
pub use http::{percent_decode, percent_decode_path, query_param, Method, Request, Response};

/// A value built on first use (the generated code's compiled patterns).
pub use spin::Lazy;

/// `serde`, for the generated `Serialize` impls.
pub use serde;
/// The JSON library the generated code uses (`serde_json`, `alloc` mode).
pub use serde_json;

/// Runs `f` to completion by polling it (host tests and benchmarks, with
/// stores that never wait: [`store::MemStore`]). A future that is pending
/// is polled again at once.
pub fn block_on<F: core::future::Future>(f: F) -> F::Output {
    let mut f = core::pin::pin!(f);
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    loop {
        if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

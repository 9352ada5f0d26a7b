//! The API's in-system front and figures (`calls.pt`; the flagship
//! system, docs/demo.md), each there only where the manifest connects its
//! channels:
//!
//! * "api-calls" in, "api-replies" out: a partition calls the API over
//!   ring channels. Each call becomes a [`Request`] answered by
//!   [`Shared::answer`], the path an HTTP request takes after its parser:
//!   the same routes, validation, bearer tokens and rate limit (the
//!   caller is rate-limited as client `u64::MAX`, one client). A call is
//!   another partition's bytes: a method number out of range, a target
//!   that is not UTF-8 or lacks its leading `/` is answered 400 without
//!   reaching a route.
//! * "metrics" out: every `metrics_ms` (boot argument, default 500) the
//!   API's requests, the store operations it issued and the events the
//!   log acknowledged, totals and per-second rates, as the dashboard's
//!   sources 0, 1 and 2.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use hallows_basilisk::lock::Lock;
use hallows_basilisk::store::{Store, StoreError, Write};
use hallows_basilisk::{Method, Request, Response};
use hallows_ring::RingError;
use hallows_rt::{println, time, Boot};

use crate::spec::{ApiCall, ApiReply, Metrics};
use crate::Shared;

/// Counts the operations a store answers (the dashboard's store ops/s).
pub struct Counted<S> {
    pub inner: S,
    pub ops: Arc<AtomicU64>,
}

impl<S: Store> Store for Counted<S> {
    async fn get(&mut self, key: &[u8]) -> Result<Option<alloc::vec::Vec<u8>>, StoreError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn write(&mut self, ops: &[Write<'_>]) -> Result<(), StoreError> {
        self.ops.fetch_add(ops.len().max(1) as u64, Ordering::Relaxed);
        self.inner.write(ops).await
    }
    async fn scan(&mut self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<hallows_basilisk::store::Page, StoreError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.scan(prefix, after, limit).await
    }
}

/// The figures the metrics task reads.
#[derive(Default)]
pub struct Figures {
    pub requests: AtomicU64,
    pub store_ops: Arc<AtomicU64>,
    pub events: AtomicU64,
    pub events_failed: AtomicU64,
}

/// The method of a call's number.
fn method(n: u32) -> Option<Method> {
    Some(match n {
        1 => Method::Get,
        2 => Method::Post,
        3 => Method::Put,
        4 => Method::Patch,
        5 => Method::Delete,
        _ => return None,
    })
}

/// The `id` a response's JSON body names (0: none).
pub fn body_id(resp: &Response) -> u64 {
    hallows_basilisk::serde_json::from_slice::<hallows_basilisk::serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
        .unwrap_or(0)
}

/// Answers one call.
async fn answer(shared: &Lock<Shared>, call: &ApiCall) -> Response {
    let Some(m) = method(call.method) else {
        return Response::error(400, "unknown method number");
    };
    let Ok(target) = core::str::from_utf8(call.target.as_bytes()) else {
        return Response::error(400, "the target is not UTF-8");
    };
    if !target.starts_with('/') {
        return Response::error(400, "the target must start with /");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let auth = call.authorization.as_bytes();
    let req = Request {
        method: m,
        path,
        query,
        authorization: (!auth.is_empty()).then_some(auth),
        body: call.body.as_bytes(),
        client: u64::MAX,
    };
    Shared::answer(shared, &req).await
}

/// Serves "api-calls" until the channel fails.
pub async fn serve(boot: Boot, shared: Arc<Lock<Shared>>) {
    let (mut calls, mut replies) = match (
        hallows_rt::channel::receiver_typed::<ApiCall>(&boot, "api-calls", ApiCall::LAYOUT_HASH),
        hallows_rt::channel::sender_typed::<ApiReply>(&boot, "api-replies", ApiReply::LAYOUT_HASH),
    ) {
        (Ok(c), Ok(r)) => (c, r),
        (Err(hallows_rt::channel::ChannelError::NotFound), Err(hallows_rt::channel::ChannelError::NotFound)) => return,
        (c, r) => {
            println!("todo: the api-calls front is off: api-calls {:?}, api-replies {:?}", c.err(), r.err());
            return;
        }
    };
    println!("todo: serving calls on \"api-calls\"");
    loop {
        let call = match calls.recv().await {
            Ok(c) => c,
            // The caller restarted: its calls start again.
            Err(RingError::PeerRestarted) => continue,
            Err(e) => {
                println!("todo: \"api-calls\" failed ({e:?}): the front stops");
                return;
            }
        };
        let resp = answer(&shared, &call).await;
        let reply = ApiReply::new(call.seq, u32::from(resp.status), body_id(&resp));
        match replies.send(&reply).await {
            Ok(()) | Err(RingError::PeerRestarted) => {}
            Err(e) => {
                println!("todo: \"api-replies\" failed ({e:?}): the front stops");
                return;
            }
        }
    }
}

/// Sends the figures on "metrics" every period until the channel fails.
pub async fn metrics(boot: Boot, figures: Arc<Figures>) {
    let mut out = match hallows_rt::channel::sender_typed::<Metrics>(&boot, "metrics", Metrics::LAYOUT_HASH) {
        Ok(s) => s,
        Err(hallows_rt::channel::ChannelError::NotFound) => return,
        Err(e) => {
            println!("todo: no metrics: {e}");
            return;
        }
    };
    let period = Duration::from_millis(boot.arg("metrics_ms").and_then(|n| n.parse().ok()).unwrap_or(500).max(50));
    println!("todo: figures on \"metrics\" every {} ms", period.as_millis());
    let mut last = [0u64; 3];
    let mut next = time::now();
    let mut seq = 0u64;
    loop {
        next += period;
        time::sleep_until(next).await;
        let now = [
            figures.requests.load(Ordering::Relaxed),
            figures.store_ops.load(Ordering::Relaxed),
            figures.events.load(Ordering::Relaxed),
        ];
        for (i, (n, l)) in now.iter().zip(last.iter()).enumerate() {
            let rate = (n - l).saturating_mul(1000) / period.as_millis().max(1) as u64;
            let m = Metrics::new(i as u32, false.into(), seq, *n, rate.min(u64::from(u32::MAX)) as u32);
            // A full ring (the dashboard is behind): the next sample
            // carries the running total.
            let _ = out.try_send(&m);
        }
        out.flush();
        last = now;
        seq += 1;
    }
}

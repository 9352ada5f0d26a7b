//! Where resources live: a key-value store with ordered scans and atomic
//! multi-key writes.
//!
//! In a guest it is the store partition, reached over its channel front
//! ([`KvStore`], feature `rt`); on the host (tests, benchmarks) it is
//! [`MemStore`]. A resource `todo` keeps record `n` under
//! `todo/00000000000000000042` (20 digits: key order is id order, so an
//! index page is one scan) and its id counter under `todo#next` (outside
//! the records' range); a create writes both in one transaction.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;

use crate::Response;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// No answer in time, or the store restarted: try again later (503).
    Unavailable(String),
    /// The store refused the request (500).
    Failed(String),
}

impl StoreError {
    /// The response a handler gives when the store fails it.
    pub fn response(&self) -> Response {
        match self {
            StoreError::Unavailable(why) => {
                Response::error(503, &format!("the store is unavailable: {why}"))
                    .with_header("Retry-After", "1".to_owned())
            }
            StoreError::Failed(why) => Response::error(500, &format!("the store failed: {why}")),
        }
    }
}

/// A page of a scan: entries in key order, and whether more follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub more: bool,
}

impl Page {
    /// The first `limit` of `entries` (in key order) that start with
    /// `prefix`, stopping at the first that does not.
    fn within(
        prefix: &[u8],
        limit: usize,
        entries: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Page {
        let mut page = Page::default();
        for (k, v) in entries {
            if !k.starts_with(prefix) {
                break;
            }
            if page.entries.len() == limit {
                page.more = true;
                break;
            }
            page.entries.push((k, v));
        }
        page
    }
}

/// One write of [`Store::write`]: put (`Some`) or delete (`None`).
pub type Write<'a> = (&'a [u8], Option<&'a [u8]>);

/// The operations resources need.
#[allow(async_fn_in_trait)] // one executor thread per partition: no `Send` bound wanted
pub trait Store {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Puts and deletes, all or nothing, durable (per the store's policy)
    /// when it returns.
    async fn write(&mut self, ops: &[Write<'_>]) -> Result<(), StoreError>;
    /// Up to `limit` entries with keys starting with `prefix`, from the
    /// first key after `after` (or the first key of the prefix).
    async fn scan(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page, StoreError>;
}

/// An in-memory store (host tests and benchmarks).
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// When set, every operation fails with it (tests of the error path).
    pub fail: Option<StoreError>,
}

impl MemStore {
    fn check(&self) -> Result<(), StoreError> {
        self.fail.clone().map_or(Ok(()), Err)
    }
}

impl Store for MemStore {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        Ok(self.map.get(key).cloned())
    }

    async fn write(&mut self, ops: &[Write<'_>]) -> Result<(), StoreError> {
        self.check()?;
        for (k, v) in ops {
            match v {
                Some(v) => self.map.insert(k.to_vec(), v.to_vec()),
                None => self.map.remove(*k),
            };
        }
        Ok(())
    }

    async fn scan(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.check()?;
        let from = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        Ok(Page::within(
            prefix,
            limit,
            self.map
                .range((from, Bound::Unbounded))
                .map(|(k, v)| (k.clone(), v.clone())),
        ))
    }
}

/// The store partition over its channel front.
#[cfg(feature = "rt")]
#[derive(Debug)]
pub struct KvStore {
    pub kv: hallows_kv::client::Kv,
}

#[cfg(feature = "rt")]
impl KvStore {
    /// How long one store request may take before it is 503.
    pub const TIMEOUT: core::time::Duration = core::time::Duration::from_secs(5);

    /// The store partition over the system's "kv-requests"/"kv-replies"
    /// channels, once it has attached its end (within `ready`); each
    /// request then waits at most [`KvStore::TIMEOUT`]. The error says
    /// what is missing.
    pub async fn connect(
        boot: &hallows_rt::Boot,
        ready: core::time::Duration,
    ) -> Result<KvStore, String> {
        let mut kv = hallows_kv::client::connect(boot)
            .map_err(|e| format!("cannot open the store's channels: {e}"))?;
        kv.wait_ready(ready)
            .await
            .map_err(|e| format!("the store never attached its end: {e}"))?;
        kv.set_timeout(Self::TIMEOUT);
        Ok(KvStore { kv })
    }
}

#[cfg(feature = "rt")]
fn kv_error(e: hallows_kv::client::Error) -> StoreError {
    use hallows_kv::client::Error as E;
    match e {
        E::Timeout | E::ServerRestarted => StoreError::Unavailable(format!("{e}")),
        e => StoreError::Failed(format!("{e}")),
    }
}

#[cfg(feature = "rt")]
impl Store for KvStore {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(key).await.map_err(kv_error)
    }

    async fn write(&mut self, ops: &[Write<'_>]) -> Result<(), StoreError> {
        use hallows_kv::client::TxnOp;
        match ops {
            [] => Ok(()),
            [(k, Some(v))] => self.kv.put(k, v).await.map_err(kv_error),
            [(k, None)] => self.kv.delete(k).await.map(drop).map_err(kv_error),
            ops => {
                let t: Vec<TxnOp<'_>> = ops
                    .iter()
                    .map(|(k, v)| v.map_or(TxnOp::Delete(k), |v| TxnOp::Put(k, v)))
                    .collect();
                self.kv.txn(&t).await.map(drop).map_err(kv_error)
            }
        }
    }

    async fn scan(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        // The channel scans from a key; entries past the prefix end the page.
        let want = limit.min(255);
        let (from, excl) = match after {
            Some(a) => (a, true),
            None => (prefix, false),
        };
        let p = self
            .kv
            .scan(from, excl, want as u16 + 1)
            .await
            .map_err(kv_error)?;
        Ok(Page::within(prefix, want, p.entries.into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: core::future::Future>(f: F) -> F::Output {
        crate::block_on(f)
    }

    #[test]
    fn scans_stay_in_their_prefix_and_page() {
        let mut s = MemStore::default();
        run(s.write(&[
            (b"a#next", Some(b"3")),
            (b"a/1", Some(b"x")),
            (b"a/2", Some(b"y")),
            (b"a/3", Some(b"z")),
            (b"b/1", Some(b"w")),
        ]))
        .unwrap();
        let p = run(s.scan(b"a/", None, 2)).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert!(p.more);
        let p = run(s.scan(b"a/", Some(b"a/2"), 2)).unwrap();
        assert_eq!(p.entries, [(b"a/3".to_vec(), b"z".to_vec())]);
        assert!(!p.more);
        run(s.write(&[(b"a/3", None)])).unwrap();
        assert_eq!(run(s.get(b"a/3")).unwrap(), None);
        s.fail = Some(StoreError::Unavailable("down".to_owned()));
        assert_eq!(run(s.get(b"a/1")).unwrap_err().response().status, 503);
    }
}

//! The async client of the store's channel front, on the guest runtime.
//!
//! ```ignore
//! let mut kv = hallows_kv::client::connect(&boot)?;   // "kv-requests" / "kv-replies"
//! kv.wait_ready(Duration::from_secs(60)).await?;      // the store attached its end
//! kv.put(b"user:1", b"ada").await?;                   // returns once durable (strict)
//! assert_eq!(kv.get(b"user:1").await?, Some(b"ada".to_vec()));
//! kv.txn(&[TxnOp::Put(b"a", b"1"), TxnOp::Delete(b"b")]).await?; // all or nothing
//! let page = kv.scan(b"user:", false, 64).await?;     // page.next: continue after it
//! ```
//!
//! One request at a time, each with its own id: a reply with another id (a
//! late answer to a request that timed out) is dropped. Every call has a
//! timeout ([`Kv::set_timeout`], default 10 s): [`Error::Timeout`] says the
//! request may or may not have been applied.
//!
//! Across a restart of the store partition: if the request was pending and
//! the store's new incarnation will not see it (it was published before the
//! new incarnation attached), the call fails with
//! [`Error::ServerRestarted`] (retry it if it is idempotent; the next call
//! goes to the new incarnation); if the new incarnation will see it, the
//! call waits for its answer. A transaction is several messages: the store
//! numbers its operations and refuses one whose first operations it did not
//! see, so a transaction cut in two by a restart is never half applied.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::Poll;
use core::time::Duration;

use hallows_ring::{Receiver, RingError, Sender};
use hallows_rt::channel::{self, ChannelError, Endpoint};
use hallows_rt::{time, Boot};

use crate::{KvError, KvOp, KvReply, KvRequest, KvStatus, MAX_KEY, MAX_TXN_OPS, MAX_VALUE, REPLIES, REQUESTS};

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A key longer than [`MAX_KEY`] or a value longer than [`MAX_VALUE`],
    /// or a transaction of no or more than [`MAX_TXN_OPS`] operations:
    /// nothing was sent.
    TooLong,
    /// No (complete) answer within the timeout: the request may or may not
    /// have been applied.
    Timeout,
    /// The store partition restarted while the request was pending, and
    /// its new incarnation will not answer it.
    ServerRestarted,
    /// The store refused the request (`Err` reply): the class and its words.
    Store(KvError, String),
    /// The ring reported an impossible state (a peer writing garbage).
    Channel(RingError),
    /// A reply that does not fit the request (a status it cannot have).
    Protocol(KvStatus),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooLong => write!(f, "key, value or transaction too long for the channel (keys {MAX_KEY}, values {MAX_VALUE} bytes, {MAX_TXN_OPS} operations)"),
            Error::Timeout => f.write_str("no answer within the timeout (the request may or may not have been applied)"),
            Error::ServerRestarted => f.write_str("the store restarted; the request was not answered (retry if it is idempotent)"),
            Error::Store(code, why) => write!(f, "the store refused the request: {code:?}: {why}"),
            Error::Channel(e) => write!(f, "channel: {e:?}"),
            Error::Protocol(s) => write!(f, "unexpected reply status {s:?}"),
        }
    }
}

/// One operation of a transaction.
#[derive(Clone, Copy, Debug)]
pub enum TxnOp<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

/// A page of a scan.
#[derive(Clone, Debug, Default)]
pub struct ScanPage {
    /// Keys and values, in key order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where the next page starts (after this key), `None` at the end.
    pub next: Option<Vec<u8>>,
}

/// A connection to the store's channel front.
#[derive(Debug)]
pub struct Kv {
    tx: Endpoint<Sender<KvRequest>>,
    rx: Endpoint<Receiver<KvReply>>,
    next_id: u64,
    timeout: Duration,
    /// The request a single call sends (filled with only the bytes it
    /// uses) and the last reply received (read out of its slot the same
    /// way): on the heap, reused, never built whole.
    req: Box<KvRequest>,
    reply: Box<KvReply>,
    /// Store restarts seen (its reply channel's `PeerRestarted`).
    pub restarts: u64,
}

/// Opens this partition's ends of "kv-requests" and "kv-replies" (the
/// receiving end first, as Parseltongue's `connect` does), checking the
/// message types against the system's.
pub fn connect(boot: &Boot) -> Result<Kv, ChannelError> {
    let rx = channel::receiver_typed::<KvReply>(boot, REPLIES, KvReply::LAYOUT_HASH)?;
    let tx = channel::sender_typed::<KvRequest>(boot, REQUESTS, KvRequest::LAYOUT_HASH)?;
    // Ids from the clock: a restarted client never reuses one a reply
    // still in flight carries.
    let req = Box::new(crate::shutdown(0));
    let reply = Box::new(crate::reply(0, KvStatus::Ok, KvError::None, 0, &[], &[]));
    Ok(Kv { tx, rx, next_id: time::now_nanos() | 1, timeout: Duration::from_secs(10), req, reply, restarts: 0 })
}

/// What a reply means to the call waiting for it.
enum Step {
    More,
    Done,
}

/// Until `rung` (the reply channel's doorbell) completes, `deadline` (the
/// runtime's clock) passes, or 5 ms (a bound on a missed ring). It owns
/// what it waits on: endpoints are not `Sync`, a task holds no reference
/// to one across an await.
async fn rung_or(mut rung: channel::Rung, deadline: Duration) {
    let mut sleep = time::sleep_until(deadline.min(time::now() + Duration::from_millis(5)));
    poll_fn(|cx| {
        if Pin::new(&mut rung).poll(cx).is_ready() || Pin::new(&mut sleep).poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}


impl Kv {
    /// The time each call waits for its answer.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Until the store has attached its end of "kv-requests" (it boots,
    /// recovers its disk): requests are accepted from then on.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<(), Error> {
        let deadline = time::now() + limit;
        loop {
            // A reservation looks at the store's header (the cached
            // `is_connected` does not); dropped, it publishes nothing.
            match self.tx.reserve(1) {
                Ok(_) => return Ok(()),
                Err(RingError::Full | RingError::PeerRestarted) => {}
                Err(e) => return Err(Error::Channel(e)),
            }
            if time::now() >= deadline {
                return Err(Error::Timeout);
            }
            time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends `many` (a transaction's operations), or else the request in
    /// `self.req`, under a new id and feeds every reply with that id to
    /// `each` until it says done. Each request is written into its slot,
    /// only the bytes it uses; each reply is read out of its slot into
    /// `self.reply` the same way.
    async fn exchange(&mut self, many: Option<&mut [KvRequest]>, mut each: impl FnMut(&KvReply) -> Result<Step, Error>) -> Result<(), Error> {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = time::now() + self.timeout;
        let mut first_at = None;
        let reqs = match many {
            Some(reqs) => reqs,
            None => core::slice::from_mut(&mut *self.req),
        };
        for r in reqs.iter_mut() {
            r.id = id;
            loop {
                let at = self.tx.position();
                let sent = self.tx.reserve(1).and_then(|mut slots| match slots.get_mut(0) {
                    Some(slot) => {
                        crate::write_request(r, slot);
                        slots.commit();
                        Ok(())
                    }
                    None => Err(RingError::Full),
                });
                match sent {
                    Ok(()) => {
                        first_at.get_or_insert(at);
                        break;
                    }
                    Err(RingError::Full) => {
                        self.tx.flush();
                        if time::now() >= deadline {
                            return Err(Error::Timeout);
                        }
                        time::sleep(Duration::from_micros(100)).await;
                    }
                    // The store restarted before this message went out. If
                    // earlier messages of a transaction went to the old
                    // incarnation, the new one refuses the rest (they are
                    // numbered); the call then fails below.
                    Err(RingError::PeerRestarted) if first_at.is_none() => {}
                    Err(RingError::PeerRestarted) => return Err(Error::ServerRestarted),
                    Err(e) => return Err(Error::Channel(e)),
                }
            }
        }
        self.tx.flush();
        let sent_at = first_at.unwrap_or(0);
        loop {
            // The reply is read into `self.reply` (on the heap: never part
            // of this future's state, which every caller's future contains
            // and moves), only the bytes it uses.
            let got = self.rx.recv_batch(1).and_then(|batch| {
                let read = batch.slot(0).is_some_and(|slot| crate::read_reply(&mut self.reply, |at, dst| slot.copy_to(at, dst)));
                batch.release_first(1);
                // Unreachable (a batch of one, ranges inside the message).
                if read { Ok(()) } else { Err(RingError::Corrupt) }
            });
            let wait = match got {
                Ok(()) if self.reply.id == id => match each(&self.reply)? {
                    Step::Done => return Ok(()),
                    Step::More => false,
                },
                // A late answer to an earlier call.
                Ok(()) => false,
                Err(RingError::Empty) => {
                    if time::now() >= deadline {
                        return Err(Error::Timeout);
                    }
                    true
                }
                // The store restarted: every reply its old incarnation sent
                // was received first. The new one answers only what it sees.
                Err(RingError::PeerRestarted) => {
                    self.restarts += 1;
                    if !self.tx.reaches_current_consumer(sent_at) {
                        return Err(Error::ServerRestarted);
                    }
                    false
                }
                Err(e) => return Err(Error::Channel(e)),
            };
            if wait {
                rung_or(self.rx.rung(), deadline).await;
            }
        }
    }

    fn refused(r: &KvReply) -> Error {
        Error::Store(r.error, String::from_utf8_lossy(r.value.as_bytes()).into_owned())
    }

    /// One request (`many`, a transaction's operations, or else
    /// `self.req`), one reply, left in `self.reply`; an `Err` reply is the
    /// store's error.
    async fn answer(&mut self, many: Option<&mut [KvRequest]>) -> Result<&KvReply, Error> {
        self.exchange(many, |_| Ok(Step::Done)).await?;
        if self.reply.status == KvStatus::Err {
            return Err(Self::refused(&self.reply));
        }
        Ok(&self.reply)
    }

    /// One request of `op` with `key` and `value`, written into `self.req`
    /// (only the bytes it uses).
    async fn single(&mut self, op: KvOp, key: &[u8], value: &[u8]) -> Result<&KvReply, Error> {
        if !crate::fill_request(&mut self.req, 0, op, 0, 0, key, value) {
            return Err(Error::TooLong);
        }
        self.answer(None).await
    }

    /// The value of `key`, `None` if it has none.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let r = self.single(KvOp::Get, key, &[]).await?;
        match r.status {
            KvStatus::Value => Ok(Some(r.value.as_bytes().to_vec())),
            KvStatus::NotFound => Ok(None),
            s => Err(Error::Protocol(s)),
        }
    }

    /// Sets `key` to `value`; returns once the store acknowledged it
    /// (durable, with strict durability).
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        match self.single(KvOp::Put, key, value).await?.status {
            KvStatus::Ok => Ok(()),
            s => Err(Error::Protocol(s)),
        }
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&mut self, key: &[u8]) -> Result<bool, Error> {
        let r = self.single(KvOp::Delete, key, &[]).await?;
        match r.status {
            KvStatus::Ok => Ok(r.count == 1),
            s => Err(Error::Protocol(s)),
        }
    }

    /// Applies `ops` all or nothing (one log record); returns once
    /// acknowledged.
    pub async fn txn(&mut self, ops: &[TxnOp<'_>]) -> Result<u32, Error> {
        if ops.is_empty() || ops.len() > MAX_TXN_OPS {
            return Err(Error::TooLong);
        }
        let mut reqs = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let last = i + 1 == ops.len();
            let r = match op {
                TxnOp::Put(k, v) => crate::txn_op(0, i as u16, k, Some(v), last),
                TxnOp::Delete(k) => crate::txn_op(0, i as u16, k, None, last),
            };
            reqs.push(r.ok_or(Error::TooLong)?);
        }
        let r = self.answer(Some(&mut reqs)).await?;
        match r.status {
            KvStatus::Ok => Ok(r.count),
            s => Err(Error::Protocol(s)),
        }
    }

    /// Up to `limit` (1..=256) string keys from `from` (after it when
    /// `after`), with their values.
    pub async fn scan(&mut self, from: &[u8], after: bool, limit: u16) -> Result<ScanPage, Error> {
        if !crate::fill_request(&mut self.req, 0, KvOp::Scan, if after { crate::SCAN_AFTER } else { 0 }, limit, from, &[]) {
            return Err(Error::TooLong);
        }
        let mut page = ScanPage::default();
        let mut failed = None;
        self.exchange(None, |r| match r.status {
            KvStatus::Entry => {
                if r.error != KvError::None {
                    failed.get_or_insert_with(|| Self::refused(r));
                }
                page.entries.push((r.key.as_bytes().to_vec(), r.value.as_bytes().to_vec()));
                Ok(Step::More)
            }
            KvStatus::ScanEnd => {
                if r.count as usize != page.entries.len() {
                    return Err(Error::Protocol(r.status));
                }
                page.next = r.more.get().then(|| r.key.as_bytes().to_vec());
                Ok(Step::Done)
            }
            KvStatus::Err => Err(Self::refused(r)),
            s => Err(Error::Protocol(s)),
        })
        .await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(page),
        }
    }

    /// Every string key and value, page by page.
    pub async fn scan_all(&mut self, page: u16) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        let mut all = Vec::new();
        let mut p = self.scan(&[], false, page).await?;
        loop {
            all.append(&mut p.entries);
            match p.next.take() {
                None => return Ok(all),
                Some(k) => p = self.scan(&k, true, page).await?,
            }
        }
    }

    /// Asks the store to make everything durable and stop (obeyed only
    /// when it was booted with `quit`).
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        match self.single(KvOp::Shutdown, &[], &[]).await?.status {
            KvStatus::Ok => Ok(()),
            s => Err(Error::Protocol(s)),
        }
    }

    /// A raw request (tests of the store's validation): every reply to it
    /// until the first that is not a scan entry.
    pub async fn raw(&mut self, req: KvRequest) -> Result<Vec<KvReply>, Error> {
        *self.req = req;
        let mut all = Vec::new();
        self.exchange(None, |r| {
            all.push(*r);
            Ok(if r.status == KvStatus::Entry { Step::More } else { Step::Done })
        })
        .await?;
        Ok(all)
    }
}

//! The two sides of the ring-peer protocol in two threads over shared heap
//! memory laid out exactly as a channel's: 100,000 messages, sequence and
//! checksum checked at both ends; and the failures each side must report.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use hallows_peer::{expected_checksum, initiate, initiate_one, initiate_window, respond, respond_one, Blocked, Link, Msg, PeerError, Report};
use hallows_ring::{ChannelLayout, Receiver, Sender};

/// A channel's memory on the heap.
struct Mem {
    base: NonNull<u8>,
    layout: ChannelLayout,
    mem: Layout,
}

// SAFETY: the memory is plain heap bytes shared the way a channel's are;
// the ring protocol synchronises every access.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

impl Mem {
    fn new(slots: usize) -> Mem {
        let layout = ChannelLayout::new(64, slots).unwrap();
        let mem = Layout::from_size_align(layout.total_size(), layout.page_size()).unwrap();
        // SAFETY: non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(mem) }).unwrap();
        Mem { base, layout, mem }
    }
    fn sender(&self) -> Sender<Msg> {
        // SAFETY: page-aligned, `total_size` bytes, outlives the endpoint
        // (the test joins its threads before dropping `Mem`); one sender.
        unsafe { Sender::new(self.base, self.layout) }.unwrap()
    }
    fn receiver(&self) -> Receiver<Msg> {
        // SAFETY: as in `sender`; one receiver.
        unsafe { Receiver::new(self.base, self.layout) }.unwrap()
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.mem) };
    }
}

/// Yields when idle; gives up after `limit` without progress.
struct Threads {
    limit: Duration,
    since: Instant,
    rings: u64,
}

impl Threads {
    fn new(limit: Duration) -> Threads {
        Threads { limit, since: Instant::now(), rings: 0 }
    }
}

impl Link for Threads {
    fn notify(&mut self) {
        self.rings += 1;
    }
    fn idle(&mut self, _why: Blocked, rounds: u64) -> bool {
        if rounds == 0 {
            self.since = Instant::now();
        }
        std::thread::yield_now();
        self.since.elapsed() < self.limit
    }
}

fn exchange(n: u64, req_slots: usize, resp_slots: usize) -> (Result<Report, PeerError>, Result<Report, PeerError>) {
    let (req, resp) = (Mem::new(req_slots), Mem::new(resp_slots));
    std::thread::scope(|s| {
        let responder = s.spawn(|| respond(&mut req.receiver(), &mut resp.sender(), n, &mut Threads::new(Duration::from_secs(60))));
        let initiator = s.spawn(|| initiate(&mut req.sender(), &mut resp.receiver(), n, &mut Threads::new(Duration::from_secs(60))));
        (initiator.join().unwrap(), responder.join().unwrap())
    })
}

#[test]
fn a_hundred_thousand_messages_cross_both_ways_with_matching_checksums() {
    let n = 100_000;
    let (i, r) = exchange(n, 256, 64);
    let (i, r) = (i.expect("initiator"), r.expect("responder"));
    assert_eq!(i.messages, n);
    assert_eq!(r.messages, n);
    assert_eq!(i.checksum, r.checksum);
    assert_eq!(i.checksum, expected_checksum(n));
    assert_eq!(i.to_string(), format!("ok 100000 messages checksum {:#018x}", expected_checksum(n)));
    assert!(i.notifies > 0 && r.notifies > 0);
}

#[test]
fn one_at_a_time_and_a_window_of_one_give_the_same_exchange() {
    let n = 5_000;
    let (req, resp) = (Mem::new(256), Mem::new(256));
    let (i, r) = std::thread::scope(|s| {
        let responder = s.spawn(|| respond_one(&mut req.receiver(), &mut resp.sender(), n, &mut Threads::new(Duration::from_secs(60))));
        let initiator = s.spawn(|| initiate_one(&mut req.sender(), &mut resp.receiver(), n, &mut Threads::new(Duration::from_secs(60))));
        (initiator.join().unwrap().expect("initiator"), responder.join().unwrap().expect("responder"))
    });
    assert_eq!((i.checksum, r.checksum), (expected_checksum(n), expected_checksum(n)));
    assert_eq!((i.notifies, r.notifies), (n, n));
    // A windowed initiator (window 1) against the one-at-a-time responder.
    let (req, resp) = (Mem::new(8), Mem::new(8));
    let (i, r) = std::thread::scope(|s| {
        let responder = s.spawn(|| respond_one(&mut req.receiver(), &mut resp.sender(), n, &mut Threads::new(Duration::from_secs(60))));
        let initiator = s.spawn(|| initiate_window(&mut req.sender(), &mut resp.receiver(), n, 1, &mut Threads::new(Duration::from_secs(60))));
        (initiator.join().unwrap().expect("initiator"), responder.join().unwrap().expect("responder"))
    });
    assert_eq!((i.checksum, r.checksum), (expected_checksum(n), expected_checksum(n)));
}

#[test]
fn the_smallest_rings_still_complete() {
    // Capacity 1 each way: every message waits for its answer.
    let (i, r) = exchange(500, 2, 2);
    assert_eq!(i.unwrap().checksum, r.unwrap().checksum);
}

/// A responder that answers one request wrong: the initiator names it.
#[test]
fn a_wrong_answer_is_reported_with_its_sequence_number() {
    let (req, resp) = (Mem::new(64), Mem::new(64));
    let (mut rx, mut tx) = (req.receiver(), resp.sender());
    let mut itx = req.sender();
    let mut irx = resp.receiver();
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            let mut link = Threads::new(Duration::from_secs(60));
            let mut seq = 0u64;
            while seq < 10 {
                match rx.try_recv() {
                    Ok(m) => {
                        let mut a = hallows_peer::response_to(&m);
                        if seq == 7 {
                            a.data[3] ^= 1;
                        }
                        while tx.try_send(&a).is_err() {
                            assert!(link.idle(Blocked::Outgoing, 1));
                        }
                        seq += 1;
                    }
                    Err(_) => assert!(link.idle(Blocked::Incoming, 1)),
                }
            }
        });
        initiate(&mut itx, &mut irx, 10, &mut Threads::new(Duration::from_secs(60)))
    });
    let e = out.unwrap_err();
    assert_eq!(e.to_string(), "response 7 arrived with a wrong payload");
}

/// A request out of order: the responder names what it expected.
#[test]
fn a_skipped_request_is_reported_by_the_responder() {
    let (req, resp) = (Mem::new(64), Mem::new(64));
    let mut itx = req.sender();
    let (mut rx, mut tx) = (req.receiver(), resp.sender());
    let _irx = resp.receiver();
    // Connect (the receiver acknowledges the sender's epoch on a poll).
    let _ = rx.try_recv();
    let _ = tx.try_send(&hallows_peer::request(0));
    for seq in [0, 1, 3] {
        itx.try_send(&hallows_peer::request(seq)).unwrap();
    }
    let e = respond(&mut rx, &mut tx, 10, &mut Threads::new(Duration::from_secs(5))).unwrap_err();
    assert_eq!(e.to_string(), "request 2 expected, sequence number 3 arrived");
}

/// Nobody answers: the initiator times out with a clear error instead of
/// hanging.
#[test]
fn a_silent_peer_is_a_timeout() {
    let (req, resp) = (Mem::new(64), Mem::new(64));
    let (mut tx, mut rx) = (req.sender(), resp.receiver());
    let e = initiate(&mut tx, &mut rx, 10, &mut Threads::new(Duration::from_millis(200))).unwrap_err();
    assert!(matches!(e, PeerError::Timeout { sent: 0, received: 0, why: Blocked::Outgoing }), "{e:?}");
    assert_eq!(e.to_string(), "timed out waiting for room in the outgoing ring after sending 0 and receiving 0");
}

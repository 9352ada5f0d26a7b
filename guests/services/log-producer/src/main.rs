//! An in-system producer: publishes `count` records (boot argument, default
//! 20000) to the log partition over the ring channel "records", typed by
//! `producer.pt` (which imports the log's `records.pt`), and reads the log's
//! acknowledgements on "acks": an acknowledgement says every record up to a
//! sequence number is in the log and durable. It prints the rate and exits
//! 0 once all are acknowledged, 1 on a channel error or after two minutes.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use core::time::Duration;

use hallows_ring::RingError;
use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// Generated from `producer.pt` by the build script.
#[allow(dead_code)]
mod producer {
    include!(concat!(env!("OUT_DIR"), "/producer.rs"));
}

use producer::{BoundedBytes100, BoundedBytes16, LogAck, LogRecord};

/// What the acknowledgements said so far.
struct Acks {
    ready: bool,
    through: Option<u64>,
    offset: i64,
    received: u64,
}

impl producer::Handlers for Acks {
    type Endpoints = Boot;
    fn acked(&mut self, message: LogAck, _send: &mut producer::Senders<Boot>) {
        if message.through == u64::MAX {
            self.ready = true;
            return;
        }
        self.through = Some(message.through);
        self.offset = message.offset;
        self.received += 1;
    }
}

/// Record `seq`: its sequence number right-aligned in 16 characters, padded
/// to 100 bytes (what the tests read back).
fn record(seq: u64) -> LogRecord {
    let mut v = [b'x'; 100];
    let mut n = seq;
    for i in (0..16).rev() {
        v[i] = if n > 0 || i == 15 { b'0' + (n % 10) as u8 } else { b' ' };
        n /= 10;
    }
    let key = BoundedBytes16::from_bytes(b"in-system").unwrap_or_else(|| BoundedBytes16::from_bytes(&[]).expect("empty"));
    LogRecord::new(seq, key, BoundedBytes100::from_bytes(&v).expect("100 bytes fit"))
}

fn main(boot: &Boot) -> u64 {
    let count: u64 = boot.arg("count").and_then(|c| c.parse().ok()).unwrap_or(20_000);
    let mut service = match producer::Service::connect(Acks { ready: false, through: None, offset: -1, received: 0 }, boot) {
        Ok(s) => s,
        Err(e) => {
            println!("log-producer: {e}");
            return 1;
        }
    };
    // Wait for the log's "ready": records sent before it opened its end
    // could be dropped by the open.
    let start = time::now();
    while !service.handlers.ready {
        if service.turn(time::now().as_nanos() as u64).handled == 0 {
            service.wait();
        }
        if time::now() - start > Duration::from_secs(60) {
            println!("log-producer: the log partition never said ready");
            return 1;
        }
    }
    let start = time::now();
    let mut next = 0u64;
    while count > 0 && service.handlers.through != Some(count - 1) {
        while next < count {
            match producer::Port::port(&mut service.send.records).try_send(&record(next)) {
                Ok(()) => next += 1,
                Err(RingError::Full) => break,
                Err(e) => {
                    println!("log-producer: records channel: {e:?}");
                    return 1;
                }
            }
        }
        service.flush();
        let turn = service.turn(time::now().as_nanos() as u64);
        if turn.corrupt != 0 || turn.peer_restarts != 0 {
            println!("log-producer: acks channel corrupt or its peer restarted");
            return 1;
        }
        if time::now() - start > Duration::from_secs(120) {
            println!("log-producer: only {:?} of {count} acknowledged after 120 s", service.handlers.through.map(|t| t + 1));
            return 1;
        }
        if turn.handled == 0 {
            service.wait();
        }
    }
    let ms = (time::now() - start).as_millis().max(1) as u64;
    println!(
        "log-producer: {count} records acknowledged durable in {ms} ms ({} records/s, {} acks), last at offset {}",
        count * 1000 / ms,
        service.handlers.received,
        service.handlers.offset
    );
    0
}

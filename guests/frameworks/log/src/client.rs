//! A minimal blocking Kafka client over std TCP (feature `std`): what the
//! crash campaign, the integration tests and the benchmarks drive the broker
//! with. Produce v3, Fetch v4, CreateTopics v0, OffsetFetch v1: the oldest versions the
//! broker serves, so the broker's own negotiation is not needed.

use crate::proto::{CREATE_TOPICS, FETCH, OFFSET_FETCH, PRODUCE};
use crate::wire::{Malformed, Reader};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::string::String;
use std::time::Duration;
use std::vec;
use std::vec::Vec;

/// A connection to a broker.
#[derive(Debug)]
pub struct Client {
    s: TcpStream,
    corr: i32,
}

fn bad(_: Malformed) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed response")
}

fn str16(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as i16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

impl Client {
    /// Connects to `addr` (host:port); every call times out after `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Client { s, corr: 0 })
    }

    fn send(&mut self, key: i16, version: i16, body: &[u8]) -> io::Result<i32> {
        self.corr += 1;
        let mut f = Vec::with_capacity(body.len() + 20);
        f.extend_from_slice(&0i32.to_be_bytes());
        f.extend_from_slice(&key.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&self.corr.to_be_bytes());
        str16(&mut f, "hallows-client");
        f.extend_from_slice(body);
        let n = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&n.to_be_bytes());
        self.s.write_all(&f)?;
        Ok(self.corr)
    }

    fn receive(&mut self, corr: i32) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len)?;
        let n = i32::from_be_bytes(len);
        if !(4..=256 << 20).contains(&n) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad response length"));
        }
        let mut b = vec![0u8; n as usize];
        self.s.read_exact(&mut b)?;
        if b[..4] != corr.to_be_bytes() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response to another request"));
        }
        b.drain(..4);
        Ok(b)
    }

    fn call(&mut self, key: i16, version: i16, body: &[u8]) -> io::Result<Vec<u8>> {
        let c = self.send(key, version, body)?;
        self.receive(c)
    }

    /// Creates a topic; `Ok(error code)` (0, or 36 if it exists).
    pub fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> io::Result<i16> {
        let mut b = Vec::new();
        b.extend_from_slice(&1i32.to_be_bytes());
        str16(&mut b, name);
        b.extend_from_slice(&partitions.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&(configs.len() as i32).to_be_bytes());
        for (k, v) in configs {
            str16(&mut b, k);
            str16(&mut b, v);
        }
        b.extend_from_slice(&10_000i32.to_be_bytes());
        let r = self.call(CREATE_TOPICS, 0, &b)?;
        let mut r = Reader::new(&r);
        r.array().map_err(bad)?;
        r.str().map_err(bad)?;
        r.i16().map_err(bad)
    }

    fn produce_body(topic: &str, partition: i32, records: &[u8], acks: i16) -> Vec<u8> {
        let mut b = Vec::with_capacity(records.len() + 64);
        b.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
        b.extend_from_slice(&acks.to_be_bytes());
        b.extend_from_slice(&30_000i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        str16(&mut b, topic);
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&partition.to_be_bytes());
        b.extend_from_slice(&(records.len() as i32).to_be_bytes());
        b.extend_from_slice(records);
        b
    }

    /// Produces one record set; with acks 1 or -1 returns (error, base offset).
    pub fn produce(&mut self, topic: &str, partition: i32, records: &[u8], acks: i16) -> io::Result<(i16, i64)> {
        let body = Self::produce_body(topic, partition, records, acks);
        if acks == 0 {
            self.send(PRODUCE, 3, &body)?;
            return Ok((0, -1));
        }
        let r = self.call(PRODUCE, 3, &body)?;
        Self::produce_result(&r)
    }

    fn produce_result(r: &[u8]) -> io::Result<(i16, i64)> {
        let mut r = Reader::new(r);
        r.array().map_err(bad)?;
        r.str().map_err(bad)?;
        r.array().map_err(bad)?;
        r.i32().map_err(bad)?;
        let e = r.i16().map_err(bad)?;
        let base = r.i64().map_err(bad)?;
        Ok((e, base))
    }

    /// Sends `sets` with up to `window` produce requests in flight (acks
    /// -1 or 1) and returns each one's (error, base offset), in order.
    pub fn produce_pipelined(&mut self, topic: &str, partition: i32, sets: &[Vec<u8>], acks: i16, window: usize) -> io::Result<Vec<(i16, i64)>> {
        let mut out = Vec::with_capacity(sets.len());
        let mut inflight = std::collections::VecDeque::new();
        for set in sets {
            if inflight.len() >= window.max(1) {
                let c = inflight.pop_front().unwrap_or(0);
                out.push(Self::produce_result(&self.receive(c)?)?);
            }
            inflight.push_back(self.send(PRODUCE, 3, &Self::produce_body(topic, partition, set, acks))?);
        }
        while let Some(c) = inflight.pop_front() {
            out.push(Self::produce_result(&self.receive(c)?)?);
        }
        Ok(out)
    }

    /// Fetches from `offset`: (error, high watermark, record batches).
    pub fn fetch(&mut self, topic: &str, partition: i32, offset: i64, max_bytes: i32, max_wait_ms: i32) -> io::Result<(i16, i64, Vec<u8>)> {
        let mut b = Vec::new();
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&max_wait_ms.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&max_bytes.to_be_bytes());
        b.push(0);
        b.extend_from_slice(&1i32.to_be_bytes());
        str16(&mut b, topic);
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&partition.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&max_bytes.to_be_bytes());
        let r = self.call(FETCH, 4, &b)?;
        let mut r = Reader::new(&r);
        r.i32().map_err(bad)?;
        r.array().map_err(bad)?;
        let _: String = String::from(r.str().map_err(bad)?);
        r.array().map_err(bad)?;
        r.i32().map_err(bad)?;
        let e = r.i16().map_err(bad)?;
        let hw = r.i64().map_err(bad)?;
        r.i64().map_err(bad)?;
        r.narray().map_err(bad)?;
        let recs = r.nbytes().map_err(bad)?.unwrap_or(&[]).to_vec();
        Ok((e, hw, recs))
    }

    /// The offset `group` committed for a partition (-1: none), and the
    /// partition's error code.
    pub fn committed(&mut self, group: &str, topic: &str, partition: i32) -> io::Result<(i16, i64)> {
        let mut b = Vec::new();
        str16(&mut b, group);
        b.extend_from_slice(&1i32.to_be_bytes());
        str16(&mut b, topic);
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&partition.to_be_bytes());
        let r = self.call(OFFSET_FETCH, 1, &b)?;
        let mut r = Reader::new(&r);
        r.array().map_err(bad)?;
        r.str().map_err(bad)?;
        r.array().map_err(bad)?;
        r.i32().map_err(bad)?;
        let offset = r.i64().map_err(bad)?;
        r.nstr().map_err(bad)?;
        let e = r.i16().map_err(bad)?;
        Ok((e, offset))
    }
}

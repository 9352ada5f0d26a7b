//! A table fed by a stream of events (the flagship system, docs/demo.md):
//! the OLAP partition consumes the log partition's in-system topic over a
//! ring channel and answers SQL over what arrived.
//!
//! [`EventLog`] keeps the events received so far (offset, kind, and the
//! value as `ID TITLE`, what the todo API writes for each record it
//! creates) and writes them, on demand, into a fresh image in memory
//! ([`EventLog::snapshot`]): one table
//!
//! ```text
//! events(log_offset int8, kind text, todo_id int8, title text)
//! ```
//!
//! that the ordinary engine opens and queries. A snapshot is immutable;
//! the partition swaps in a new one when events arrived, so a query sees
//! a consistent prefix of the topic. Each event is checked: a delivery
//! whose offset is not past the last one is dropped (the log redelivers
//! after a restart: at least once), text that is not UTF-8 is replaced.

use alloc::string::String;
use alloc::collections::VecDeque;

use hallows_blockdev::{BlockDevice, MemDisk, SECTOR};

use crate::storage::{Schema, Writer};
use crate::types::{Error, ErrorKind, Type};
use crate::Engine;

/// The table's name.
pub const TABLE: &str = "events";
/// Rows per row group of a snapshot.
const GROUP_ROWS: usize = 4096;

/// One received event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub offset: i64,
    pub kind: String,
    /// The number the value starts with (`-1` when it does not).
    pub todo_id: i64,
    /// The rest of the value after the number and one space.
    pub title: String,
}

impl Event {
    /// An event from a delivery's offset, key (the kind) and value
    /// (`ID TITLE`; anything else keeps the whole value as the title).
    pub fn parse(offset: i64, key: &[u8], value: &[u8]) -> Event {
        let kind = String::from_utf8_lossy(key).into_owned();
        let value = String::from_utf8_lossy(value);
        let (todo_id, title) = match value.split_once(' ') {
            Some((id, rest)) => match id.parse::<i64>() {
                Ok(id) if id >= 0 => (id, String::from(rest)),
                _ => (-1, value.clone().into_owned()),
            },
            None => match value.parse::<i64>() {
                Ok(id) if id >= 0 => (id, String::new()),
                _ => (-1, value.clone().into_owned()),
            },
        };
        Event { offset, kind, todo_id, title }
    }
}

/// The events received so far, at most `capacity` (older ones are
/// forgotten first, and counted).
#[derive(Debug)]
pub struct EventLog {
    rows: VecDeque<Event>,
    capacity: usize,
    /// Events dropped because their offset was not past the last one.
    pub duplicates: u64,
    /// Events forgotten because the log was at capacity.
    pub evicted: u64,
    /// The rows in the last snapshot (to tell whether a new one is due).
    snapshotted: u64,
    /// Events accepted in all.
    accepted: u64,
}

impl EventLog {
    /// An empty log keeping at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        EventLog { rows: VecDeque::new(), capacity: capacity.max(1), duplicates: 0, evicted: 0, snapshotted: 0, accepted: 0 }
    }

    /// The last offset accepted.
    pub fn last_offset(&self) -> Option<i64> {
        self.rows.back().map(|e| e.offset)
    }

    /// Adds one delivery; `false` (and counted) when its offset is not
    /// past the last one accepted.
    pub fn push(&mut self, offset: i64, key: &[u8], value: &[u8]) -> bool {
        if self.last_offset().is_some_and(|last| offset <= last) {
            self.duplicates += 1;
            return false;
        }
        if self.rows.len() == self.capacity {
            self.rows.pop_front();
            self.evicted += 1;
        }
        self.rows.push_back(Event::parse(offset, key, value));
        self.accepted += 1;
        true
    }

    /// Events held now.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether events arrived since the last snapshot.
    pub fn changed(&self) -> bool {
        self.accepted != self.snapshotted
    }

    /// The table as an image in memory, opened: what a query runs on.
    pub fn snapshot(&mut self) -> Result<Engine<MemDisk>, Error> {
        self.snapshot_into(|d| d)
    }

    /// As [`EventLog::snapshot`], the memory disk wrapped by `wrap` (a
    /// partition's own device type).
    pub fn snapshot_into<D: BlockDevice + Send>(&mut self, wrap: impl FnOnce(MemDisk) -> D) -> Result<Engine<D>, Error> {
        // Generous: each text chunk is at most its strings and their
        // lengths, each number 8 bytes, plus a sector per chunk and the
        // catalog; a snapshot too small is refused by the writer, never
        // written past its end.
        let text: usize = self.rows.iter().map(|e| e.kind.len() + e.title.len() + 16).sum();
        let groups = self.rows.len() / GROUP_ROWS + 1;
        let bytes = text + self.rows.len() * 16 + groups * 4 * SECTOR + 64 * SECTOR;
        let mut w = Writer::new(MemDisk::new(bytes.div_ceil(SECTOR) as u64), GROUP_ROWS)?;
        let schema = Schema::new(
            TABLE,
            &[("log_offset", Type::Int64), ("kind", Type::Text), ("todo_id", Type::Int64), ("title", Type::Text)],
        );
        let mut t = w.table(schema)?;
        let mut num = (String::new(), String::new());
        for e in &self.rows {
            use core::fmt::Write as _;
            num.0.clear();
            num.1.clear();
            let _ = write!(num.0, "{}", e.offset);
            let _ = write!(num.1, "{}", e.todo_id);
            t.push_text(&[&num.0, &e.kind, &num.1, &e.title])?;
        }
        t.finish()?;
        let (dev, _) = w.finish()?;
        self.snapshotted = self.accepted;
        Engine::open(wrap(dev)).map_err(|e| Error::new(ErrorKind::Input, alloc::format!("the events snapshot: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serial;

    fn one(engine: &Engine<MemDisk>, sql: &str) -> alloc::vec::Vec<alloc::vec::Vec<crate::Value>> {
        engine.query(sql, &Serial).unwrap().rows
    }

    #[test]
    fn parses_values() {
        assert_eq!(Event::parse(3, b"created", b"12 buy milk").todo_id, 12);
        assert_eq!(Event::parse(3, b"created", b"12 buy milk").title, "buy milk");
        assert_eq!(Event::parse(3, b"created", b"12").title, "");
        let odd = Event::parse(3, b"created", b"x y");
        assert_eq!((odd.todo_id, odd.title.as_str()), (-1, "x y"));
        assert_eq!(Event::parse(3, b"k", b"-4 t").todo_id, -1);
        assert_eq!(Event::parse(3, &[0xff], b"\xff").kind, "\u{fffd}");
    }

    #[test]
    fn snapshots_answer_sql_and_drop_redeliveries() {
        let mut log = EventLog::new(100);
        let empty = log.snapshot().unwrap();
        assert_eq!(one(&empty, "select count(*) from events")[0][0], crate::Value::Num(0));
        for i in 0..50i64 {
            let v = alloc::format!("{} title {i}", i + 1);
            assert!(log.push(i, if i % 5 == 0 { b"renamed" } else { b"created" }, v.as_bytes()));
        }
        // A redelivery after a restart: offsets already seen.
        assert!(!log.push(49, b"created", b"50 again"));
        assert!(!log.push(10, b"created", b"11 again"));
        assert_eq!(log.duplicates, 2);
        assert!(log.changed());
        let e = log.snapshot().unwrap();
        assert!(!log.changed());
        let r = one(&e, "select count(*), min(todo_id), max(todo_id) from events where kind = 'created'");
        assert_eq!(r[0], alloc::vec![crate::Value::Num(40), crate::Value::Num(2), crate::Value::Num(50)]);
        let r = one(&e, "select title from events where log_offset = 7");
        assert_eq!(r[0][0], crate::Value::Str(alloc::sync::Arc::from("title 7")));
    }

    #[test]
    fn keeps_at_most_capacity() {
        let mut log = EventLog::new(10);
        for i in 0..25i64 {
            log.push(i, b"created", alloc::format!("{i} t").as_bytes());
        }
        assert_eq!((log.len(), log.evicted), (10, 15));
        let e = log.snapshot().unwrap();
        let r = one(&e, "select count(*), min(log_offset) from events");
        assert_eq!(r[0], alloc::vec![crate::Value::Num(10), crate::Value::Num(15)]);
    }

    #[test]
    fn long_titles_fit_the_snapshot() {
        let mut log = EventLog::new(5000);
        let title = "é".repeat(50);
        for i in 0..5000i64 {
            log.push(i, b"created", alloc::format!("{i} {title}").as_bytes());
        }
        let e = log.snapshot().unwrap();
        assert_eq!(one(&e, "select count(*) from events")[0][0], crate::Value::Num(5000));
    }
}

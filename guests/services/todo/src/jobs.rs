//! Background jobs: the log partition's in-system topic as a durable
//! queue. A handler enqueues a job (a kind and an argument) as one record
//! on the ring channel "records" and waits for the log's acknowledgement
//! on "acks", which says the record is flushed; the jobs-worker partition
//! has it delivered and runs it.

use core::time::Duration;

use hallows_net::with_timeout;
use hallows_ring::RingError;
use hallows_rt::{time, Boot};

use crate::spec::{self, BoundedBytes100, BoundedBytes16, LogAck, LogRecord};

/// What the log's acknowledgements said.
pub struct Acks {
    /// The log has opened its end (`through == u64::MAX`).
    ready: bool,
    /// Every record up to this sequence number is durable...
    through: Option<u64>,
    /// ... and record `through` is at this offset.
    offset: i64,
}

impl spec::Handlers for Acks {
    type Endpoints = Boot;
    fn acked(&mut self, message: LogAck, _send: &mut spec::Senders<Boot>) {
        if message.through == u64::MAX {
            self.ready = true;
            return;
        }
        self.through = Some(message.through);
        self.offset = message.offset;
    }
}

/// Why a job was not enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The log partition has not opened its end yet.
    NotReady,
    /// The channel is full: the log is behind.
    Full,
    /// The kind is over 16 bytes or the argument over 100.
    TooLarge,
    /// No acknowledgement in time: the job may or may not be in the log.
    NoAck,
    /// The channel is corrupt.
    Channel,
}

/// The queue: the producing end of the log's in-system topic.
pub struct Queue {
    service: spec::Service<Acks>,
    next_seq: u64,
}

impl Queue {
    /// The queue if this partition has the channels, `None` if the system
    /// has no log partition for jobs.
    pub fn connect(boot: &Boot) -> Result<Option<Queue>, spec::ConnectError> {
        match spec::Service::connect(
            Acks {
                ready: false,
                through: None,
                offset: -1,
            },
            boot,
        ) {
            Ok(service) => Ok(Some(Queue {
                service,
                next_seq: 0,
            })),
            Err(spec::ConnectError::MissingChannel(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn turn(&mut self) -> Result<usize, Refused> {
        let t = self.service.turn(time::now_nanos());
        if t.corrupt != 0 {
            return Err(Refused::Channel);
        }
        if t.peer_restarts != 0 {
            // The log partition restarted: records sent before it opened
            // its end again may be lost; wait for its new "ready".
            self.service.handlers.ready = false;
        }
        Ok(t.handled)
    }

    /// Waits (at most `timeout`) for one of the log's messages.
    async fn wait(&mut self, deadline: Duration) -> Result<(), Refused> {
        if self.turn()? == 0 {
            let left = deadline
                .saturating_sub(time::now())
                .min(Duration::from_millis(5));
            let _ = with_timeout(left, self.service.ready()).await;
        }
        Ok(())
    }

    /// Enqueues job `kind` with `arg`; its offset in the topic once the log
    /// has made it durable, within `timeout`.
    pub async fn enqueue(
        &mut self,
        kind: &[u8],
        arg: &[u8],
        timeout: Duration,
    ) -> Result<i64, Refused> {
        let deadline = time::now() + timeout;
        let (Some(key), Some(value)) = (
            BoundedBytes16::from_bytes(kind),
            BoundedBytes100::from_bytes(arg),
        ) else {
            return Err(Refused::TooLarge);
        };
        while !self.service.handlers.ready {
            if time::now() >= deadline {
                return Err(Refused::NotReady);
            }
            self.wait(deadline).await?;
        }
        let seq = self.next_seq;
        match spec::Port::port(&mut self.service.send.records)
            .try_send(&LogRecord::new(seq, key, value))
        {
            Ok(()) => self.next_seq += 1,
            Err(RingError::Full) => return Err(Refused::Full),
            Err(_) => return Err(Refused::Channel),
        }
        self.service.flush();
        loop {
            let a = &self.service.handlers;
            if let Some(through) = a.through.filter(|t| *t >= seq) {
                return Ok(a.offset - (through - seq) as i64);
            }
            if time::now() >= deadline {
                return Err(Refused::NoAck);
            }
            self.wait(deadline).await?;
        }
    }
}

//! A background-job worker partition. The log partition delivers the
//! records of its in-system topic (the jobs a Basilisk handler enqueued)
//! over the ring channel "deliveries", in offset order from the last one
//! this worker reported done; the worker runs each job and reports it on
//! "consumed", and the log commits that durably (at-least-once: a job the
//! worker ran but had not yet reported when either side restarted runs
//! again, so jobs should be idempotent).
//!
//! A job is a record with a kind in its key and its argument in its value.
//! Kinds: `remind` (value `ID TITLE`: prints a reminder line for todo ID).
//! Anything else is reported done with a line saying it was not understood.
//!
//! Boot arguments: `jobs=N`: exit 0 once N jobs are done (tests); without
//! it the worker runs for ever. `quiet`: no line per job (a load test),
//! only the summary. Every delivery's offset must be past the previous
//! one: the summary says whether they all were.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use hallows_rt::{println, time, Boot};

hallows_rt::entry!(main);

/// Generated from `worker.pt` by the build script.
#[allow(dead_code)]
mod worker {
    include!(concat!(env!("OUT_DIR"), "/worker.rs"));
}

use worker::{LogConsumed, LogDelivery};

/// Jobs run so far, and the last one done (not yet reported).
struct Jobs {
    done: u64,
    through: Option<i64>,
    quiet: bool,
    first: Option<i64>,
    last: Option<i64>,
    /// Deliveries whose offset was not past the previous one's.
    out_of_order: u64,
}

impl worker::Handlers for Jobs {
    type Endpoints = Boot;
    fn job(&mut self, message: LogDelivery, _send: &mut worker::Senders<Boot>) {
        if !self.quiet {
            run(&message);
        }
        if self.last.is_some_and(|l| message.offset <= l) {
            self.out_of_order += 1;
        }
        self.first.get_or_insert(message.offset);
        self.last = Some(message.offset);
        self.done += 1;
        self.through = Some(message.offset);
    }
}

/// Runs one job. Printing is all a demo job does; its text is the
/// client's, so control characters are replaced (no forged console lines).
fn run(job: &LogDelivery) {
    let clean = |b: &[u8]| -> alloc::string::String {
        b.iter()
            .map(|&c| {
                if (0x20..0x7f).contains(&c) {
                    c as char
                } else {
                    '?'
                }
            })
            .collect()
    };
    let (kind, arg) = (clean(job.key.as_bytes()), clean(job.value.as_bytes()));
    match kind.as_str() {
        "remind" => {
            let (id, title) = arg.split_once(' ').unwrap_or((&arg, ""));
            println!(
                "worker: job {}: reminder for todo {id}: {title}",
                job.offset
            );
        }
        _ => println!(
            "worker: job {}: kind {kind:?} not understood, dropped",
            job.offset
        ),
    }
}

fn main(boot: &Boot) -> u64 {
    let stop_after: Option<u64> = boot.arg("jobs").and_then(|n| n.parse().ok());
    let jobs = Jobs {
        done: 0,
        through: None,
        quiet: boot.has("quiet"),
        first: None,
        last: None,
        out_of_order: 0,
    };
    let start = time::now();
    let mut service = match worker::Service::connect(jobs, boot) {
        Ok(s) => s,
        Err(e) => {
            println!("worker: {e}");
            return 1;
        }
    };
    println!("worker: ready");
    loop {
        let turn = service.turn(time::now().as_nanos() as u64);
        if turn.corrupt != 0 {
            println!("worker: channel \"deliveries\" corrupt");
            return 1;
        }
        if let Some(through) = service.handlers.through {
            // Full: the log reads "consumed" soon; told next turn.
            if worker::Port::port(&mut service.send.consumed)
                .try_send(&LogConsumed::new(through))
                .is_ok()
            {
                service.handlers.through = None;
                service.flush();
            }
        }
        if stop_after.is_some_and(|n| service.handlers.done >= n)
            && service.handlers.through.is_none()
        {
            let j = &service.handlers;
            let ms = (time::now() - start).as_millis().max(1) as u64;
            let order = if j.out_of_order == 0 {
                alloc::string::String::from("all in order")
            } else {
                alloc::format!("{} out of order", j.out_of_order)
            };
            println!(
                "worker: {} jobs done in {ms} ms (offsets {:?} to {:?}, {order}), bye",
                j.done, j.first, j.last
            );
            return if j.out_of_order == 0 { 0 } else { 1 };
        }
        if turn.handled == 0 {
            service.wait();
        }
    }
}

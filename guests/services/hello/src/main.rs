//! The smallest useful guest: says who it is, and, where the manifest
//! connects it to the backend, runs the Parseltongue service `greeter`
//! (`greeter.pt`): it calls the backend's Basilisk route to count primes
//! and prints the reply.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

/// Generated from `greeter.pt` by the build script (the whole service API;
/// this guest uses part of it).
#[allow(dead_code)]
mod greeter {
    include!(concat!(env!("OUT_DIR"), "/greeter.rs"));
}

/// The handlers of `greeter`: none, its one exchange is a Basilisk call.
struct Greeter;

impl greeter::Handlers for Greeter {
    type Endpoints = Boot;
}

fn main(boot: &Boot) -> u64 {
    let greeting = boot.arg("greeting").unwrap_or("hello");
    println!("{greeting} from partition {}", boot.name());
    println!(
        "{} MiB of RAM at {:#x}, {} core(s), restart #{}",
        boot.ram_size() >> 20,
        boot.ram_base(),
        boot.vcpu_count(),
        boot.restart_count()
    );
    // FNV-1a of the boot arguments: proves the guest reads its own memory.
    let sum = boot.bootargs().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    println!("bootargs {:?} fnv1a {sum:#018x}", boot.bootargs());
    let status = match greeter::Service::connect(Greeter, boot) {
        Ok(service) => ask_backend(boot, service),
        // Not connected to a backend: greeting only.
        Err(greeter::ConnectError::MissingChannel(_)) => 0,
        // The backend speaks another message layout: refuse, loudly (a
        // fault with the channel and both hashes), rather than exchange garbage.
        Err(e) => panic!("{e}"),
    };
    println!("goodbye");
    status
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

/// `calls=N`: N calls, job i asking for the primes below `ask + i`; each
/// reply is checked against the job it answers (its number, its limit and
/// the count, computed here too), so a reply delivered to the wrong call,
/// twice, or half-written fails the run. A call that fails because the
/// backend restarted (`ServerRestarted`) is retried: the request/reply
/// contract across a restart (docs/channels.md).
fn ask_many(boot: &Boot, service: &mut greeter::Service<Greeter>, calls: u32) -> u64 {
    let base: u32 = boot.arg("ask").and_then(|s| s.parse().ok()).unwrap_or(1000);
    let (mut answered, mut restarted) = (0u32, 0u32);
    for job in 1..=calls {
        let limit = base + job;
        loop {
            match service.count_primes(&greeter::CountJob { job, limit }, |s| {
                s.turn(0);
                hallows_rt::relax();
            }) {
                Ok(a) => {
                    let expect = (0..limit).filter(|&n| is_prime(n)).count() as u32;
                    if (a.job, a.limit, a.count) != (job, limit, expect) {
                        println!("job {job}: wrong reply: job {} limit {} count {} (expected {expect})", a.job, a.limit, a.count);
                        return 1;
                    }
                    answered += 1;
                    break;
                }
                Err(greeter::CallError::ServerRestarted) => {
                    println!("job {job}: {}; asking again", greeter::CallError::ServerRestarted);
                    restarted += 1;
                }
                Err(e) => {
                    println!("job {job}: count_primes failed: {e}");
                    return 1;
                }
            }
        }
    }
    println!("{answered} calls answered, {restarted} failed with the server restarted and were retried");
    0
}

/// Calls the backend's `count_primes` route once and checks the answer.
fn ask_backend(boot: &Boot, mut service: greeter::Service<Greeter>) -> u64 {
    if let Some(calls) = boot.arg("calls").and_then(|s| s.parse().ok()) {
        return ask_many(boot, &mut service, calls);
    }
    let limit: u32 = boot.arg("ask").and_then(|s| s.parse().ok()).unwrap_or(1000);
    let job = greeter::CountJob { job: 1, limit };
    // The call sends the job, rings the backend's doorbell on a doorbell
    // channel (so the backend, asleep on it, wakes) and returns its reply.
    // While it waits, the service's loop runs (it has nothing else to serve).
    let answer = match service.count_primes(&job, |s| {
        s.turn(0);
        hallows_rt::relax();
    }) {
        Ok(answer) => answer,
        Err(e) => {
            println!("count_primes failed: {e}");
            return 1;
        }
    };
    println!("backend counted {} primes below {} (job {})", answer.count, answer.limit, answer.job);
    let expect: Option<u32> = boot.arg("ask_expect").and_then(|s| s.parse().ok());
    match expect {
        Some(e) if e != answer.count => {
            println!("expected {e}");
            1
        }
        _ => 0,
    }
}

//! A compute-bound guest: counts primes below a bound (boot argument
//! `limit`, default 20000) and logs its progress.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn main(boot: &Boot) -> u64 {
    let limit: u32 = boot.arg("limit").and_then(|s| s.parse().ok()).unwrap_or(20_000);
    log::info!("counting primes below {limit}");
    let step = (limit / 4).max(1);
    let mut count = 0;
    for n in 0..limit {
        if is_prime(n) {
            count += 1;
        }
        if n > 0 && n % step == 0 {
            log::info!("{n}: {count} primes so far");
        }
    }
    println!("{count} primes below {limit}");
    let expect: Option<u32> = boot.arg("expect").and_then(|s| s.parse().ok());
    match expect {
        Some(e) if e != count => {
            println!("expected {e}");
            1
        }
        _ => 0,
    }
}

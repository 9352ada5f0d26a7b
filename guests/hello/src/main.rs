//! The smallest useful guest: says who it is and exits cleanly.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

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
    println!("goodbye");
    0
}

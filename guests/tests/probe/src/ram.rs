//! `action=ram_pattern`: proves the partition's RAM is really there, as
//! much of it as the heap covers, wherever the hypervisor put it (the test
//! of RAM above 4 GiB on x86_64): blocks of at least 1 MiB are taken from
//! the heap, largest first, until it gives no more; every word of every
//! block is written with a pattern derived from its address, then all are
//! read back and compared. Prints the guest-physical span covered and the
//! mismatches; exits 0 only if there were none.

use alloc::vec::Vec;

use hallows_rt::{println, Boot};

const PATTERN: u64 = 0x5a5a_c3c3_0f0f_9669;
const MIB: usize = 1 << 20;

fn expected(block: &[u64], i: usize) -> u64 {
    (block.as_ptr() as u64 + 8 * i as u64) ^ PATTERN
}

pub fn run(boot: &Boot) -> u64 {
    let (heap_start, heap_size) = hallows_rt::mm::heap_range();
    println!(
        "probe: {} MiB of RAM at {:#x}, heap {:#x}..{:#x}",
        boot.ram_size() >> 20,
        boot.ram_base(),
        heap_start,
        heap_start + heap_size
    );
    let mut blocks: Vec<Vec<u64>> = Vec::with_capacity(64);
    let mut bytes = (heap_size.max(1) as usize).next_power_of_two();
    while bytes >= MIB && blocks.len() < blocks.capacity() {
        let mut block: Vec<u64> = Vec::new();
        if block.try_reserve_exact(bytes / 8).is_err() {
            bytes /= 2;
            continue;
        }
        let n = block.capacity();
        let base = block.as_ptr() as u64;
        block.extend((0..n as u64).map(|i| (base + 8 * i) ^ PATTERN));
        blocks.push(block);
    }
    let blocks = core::hint::black_box(blocks);
    let covered: usize = blocks.iter().map(|b| b.len() * 8).sum();
    let low = blocks.iter().map(|b| b.as_ptr() as u64).min().unwrap_or(0);
    let high = blocks.iter().map(|b| b.as_ptr() as u64 + 8 * b.len() as u64).max().unwrap_or(0);
    let mismatches: usize =
        blocks.iter().map(|b| b.iter().enumerate().filter(|&(i, &w)| w != expected(b, i)).count()).sum();
    println!(
        "probe: wrote and read back {} MiB in {} blocks within {:#x}..{:#x}: {} mismatches",
        covered / MIB,
        blocks.len(),
        low,
        high,
        mismatches
    );
    u64::from(mismatches != 0 || covered == 0)
}

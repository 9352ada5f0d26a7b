//! Checks the runtime's memory primitives (`hallows-mem`: `memcpy`,
//! `memmove`, `memset`, `memcmp`/`bcmp`) on the target itself, where the
//! alignment rules are the real ones (aarch64 with `+strict-align`: a
//! misaligned access there would fault once the code runs with the MMU
//! off, and the host tests run the strict variant on x86_64). Slice
//! operations with sizes known only at run time are calls to those
//! symbols; each result is compared with a byte-by-byte reference (each
//! byte through `black_box`, so the compiler cannot turn the reference
//! into the same call). Every size from 0 to 200 bytes and some larger
//! ones, every source and destination offset from 0 to 15, every overlap
//! up to 19 bytes either way for `memmove`.
//!
//! Prints `memcheck: ok: N memcpy, N memmove, N memset, N memcmp cases`
//! and exits 0, or `memcheck: FAILED: ...` (the first wrong case) and
//! exits 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;

use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

/// Sizes: every one up to 200, then some that cross several 64-byte
/// blocks.
fn sizes() -> impl Iterator<Item = usize> {
    (0..=200).chain([255, 256, 257, 511, 1000, 4097])
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

/// `dst[..n] = src[..n]` one byte at a time, opaque to the optimiser.
fn reference_copy(dst: &mut [u8], src: &[u8]) {
    for i in 0..black_box(src.len()) {
        dst[i] = black_box(src[i]);
    }
}

fn main(_boot: &Boot) -> u64 {
    match run() {
        Ok((c, m, s, k)) => {
            println!("memcheck: ok: {c} memcpy, {m} memmove, {s} memset, {k} memcmp cases");
            0
        }
        Err(e) => {
            println!("memcheck: FAILED: {e}");
            1
        }
    }
}

type Counts = (u64, u64, u64, u64);

fn run() -> Result<Counts, alloc::string::String> {
    use alloc::format;
    let (mut copies, mut moves, mut fills, mut compares) = (0, 0, 0, 0);
    // The heap's blocks are 8-aligned at least; the offsets cover every
    // alignment of the pointers handed over, and each other's.
    let big = 4097 + 64;
    let src = pattern(big, 7);
    let mut dst = vec![0u8; big];
    let mut want = vec![0u8; big];
    for n in sizes() {
        for so in 0..16 {
            for d_o in 0..16 {
                reference_copy(&mut dst[..n + 32], &pattern(n + 32, 100));
                reference_copy(&mut want[..n + 32], &dst[..n + 32]);
                dst[d_o..d_o + black_box(n)].copy_from_slice(&src[so..so + n]);
                reference_copy(&mut want[d_o..d_o + n], &src[so..so + n]);
                if dst[..n + 32] != want[..n + 32] {
                    return Err(format!("memcpy of {n} bytes, source +{so}, destination +{d_o}"));
                }
                copies += 1;
            }
        }
    }
    for n in sizes().filter(|&n| n <= 160 || n == 1000) {
        for delta in -19isize..=19 {
            for so in 24..32 {
                let d_o = (so as isize + delta) as usize;
                let mut buf = pattern(n + 64, 3);
                let mut expect = buf.clone();
                buf.copy_within(so..so + black_box(n), d_o);
                // The reference reads the whole source first (a move).
                let saved: Vec<u8> = expect[so..so + n].iter().map(|&b| black_box(b)).collect();
                reference_copy(&mut expect[d_o..d_o + n], &saved);
                if buf != expect {
                    return Err(format!("memmove of {n} bytes, source +{so}, destination +{d_o}"));
                }
                moves += 1;
            }
        }
    }
    for n in sizes() {
        for o in 0..16 {
            for c in [0u8, 0x5a, 0xff] {
                reference_copy(&mut dst[..n + 32], &pattern(n + 32, 9));
                reference_copy(&mut want[..n + 32], &dst[..n + 32]);
                dst[o..o + black_box(n)].fill(c);
                for b in &mut want[o..o + n] {
                    *b = black_box(c);
                }
                if dst[..n + 32] != want[..n + 32] {
                    return Err(format!("memset of {n} bytes to {c:#x} at +{o}"));
                }
                fills += 1;
            }
        }
    }
    for n in sizes().filter(|&n| n <= 144 || n == 1000) {
        for ao in 0..16 {
            for bo in [0, 1, 3, 8, ao] {
                let a = &src[ao..ao + n];
                let mut b = vec![0u8; n + 16];
                reference_copy(&mut b[bo..bo + n], a);
                if a.cmp(&b[bo..bo + black_box(n)]) != core::cmp::Ordering::Equal || a != &b[bo..bo + n] {
                    return Err(format!("memcmp of {n} equal bytes (+{ao}, +{bo}) says unequal"));
                }
                compares += 1;
                for at in (0..n).filter(|&i| i < 16 || i + 16 >= n || i % 7 == 0) {
                    let orig = b[bo + at];
                    for x in [orig.wrapping_add(1) | 1, 0] {
                        if x == orig {
                            continue;
                        }
                        b[bo + at] = x;
                        let got = a.cmp(&b[bo..bo + black_box(n)]);
                        if got != orig.cmp(&x) || a == &b[bo..bo + n] {
                            return Err(format!("memcmp of {n} bytes (+{ao}, +{bo}) differing at byte {at}: {got:?}"));
                        }
                        compares += 1;
                    }
                    b[bo + at] = orig;
                }
            }
        }
    }
    Ok((copies, moves, fills, compares))
}

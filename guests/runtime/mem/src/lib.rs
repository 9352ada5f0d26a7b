//! The memory primitives every bare-metal guest links (through
//! `hallows-rt`): `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`.
//!
//! Without them a guest gets compiler-builtins' portable versions, which
//! move one word per loop iteration: a 64-byte message costs 55
//! instructions to copy, three times per round trip in `make bench`'s
//! messaging comparison (B), 165 instructions of 1,201 (docs/benchmarks.md).
//! These move 64 bytes per iteration (eight words: four `ldp`/`stp` pairs
//! on aarch64) and the rest by the bits of the remaining length, with no
//! per-byte loop once the pointers are word-aligned: 26 instructions for
//! the same copy.
//!
//! Alignment: `aarch64-unknown-none` compiles with `+strict-align` (the
//! runtime's first instructions run with the MMU off, where all memory is
//! Device memory and every access must be naturally aligned), so there
//! ([`STRICT`]) every access here is aligned: pointers that are aligned to
//! each other are copied by words after a byte head; pointers that are not
//! have each destination word reassembled from two aligned source words
//! with shifts (compiler-builtins' method), and the partial words at the
//! ends loaded by aligned pieces, never past the range. x86_64 allows
//! unaligned accesses: words straight away.
//!
//! Every function here walks its ranges front to back (or back to front)
//! without re-reading a source byte after a destination byte has been
//! written behind it, so the forward copy is also `memmove`'s when the
//! destination is below the source.
//!
//! `#![no_builtins]`: LLVM must not turn these loops back into calls to
//! the functions they implement. The C symbols are exported only on
//! bare-metal targets (`target_os = "none"`), where they override
//! compiler-builtins' weak ones; host builds (the tests) get the Rust
//! functions only, each instantiated for both alignment regimes.
#![no_std]
#![no_builtins]

use core::ffi::c_int;

/// Bytes in a word.
const W: usize = size_of::<usize>();
/// Bytes per unrolled block.
const BLOCK: usize = 8 * W;

const _: () = assert!(W == 8, "the partial-word loads assume 64-bit words");
#[cfg(not(target_endian = "little"))]
compile_error!("the misaligned copy reassembles words for little-endian targets only");

/// Whether every access must be naturally aligned on this target (all but
/// x86_64: aarch64-unknown-none compiles with `+strict-align`).
pub const STRICT: bool = !cfg!(target_arch = "x86_64");

/// A word from `p`: aligned when `S`, any address otherwise.
///
/// # Safety
/// `p..p + W` readable; `p` word-aligned if `S`.
#[inline(always)]
unsafe fn get<const S: bool>(p: *const u8) -> usize {
    if S {
        // The host tests run the strict variant on x86_64, which would not
        // fault on a misaligned access: they check alignment here.
        debug_assert!(p.cast::<usize>().is_aligned(), "misaligned word load at {p:p}");
        // SAFETY: the caller's contract (aligned, readable).
        unsafe { p.cast::<usize>().read() }
    } else {
        // An array read, not `read_unaligned` (which is a `memcpy` call
        // in LLVM's eyes): one unaligned load.
        // SAFETY: the caller's contract (readable); arrays of bytes have
        // alignment 1.
        usize::from_ne_bytes(unsafe { p.cast::<[u8; W]>().read() })
    }
}

/// Stores a word at `p`: aligned when `S`, any address otherwise.
///
/// # Safety
/// `p..p + W` writable; `p` word-aligned if `S`.
#[inline(always)]
unsafe fn put<const S: bool>(p: *mut u8, v: usize) {
    if S {
        debug_assert!(p.cast::<usize>().is_aligned(), "misaligned word store at {p:p}");
        // SAFETY: the caller's contract (aligned, writable).
        unsafe { p.cast::<usize>().write(v) }
    } else {
        // SAFETY: the caller's contract (writable); alignment 1.
        unsafe { p.cast::<[u8; W]>().write(v.to_ne_bytes()) }
    }
}

/// Copies one `T` from `s` to `d`.
///
/// # Safety
/// Both readable/writable for `size_of::<T>()` bytes and aligned for `T`.
#[inline(always)]
unsafe fn mv<T: Copy>(d: *mut u8, s: *const u8) {
    debug_assert!(d.cast::<T>().is_aligned() && s.cast::<T>().is_aligned(), "misaligned {}-byte move", size_of::<T>());
    // SAFETY: the caller's contract.
    unsafe { d.cast::<T>().write(s.cast::<T>().read()) }
}

/// Copies one piece of `size_of::<A>()` bytes: as the aligned integer `A`
/// when `S`, as the unaligned byte array `U` (one load on x86_64)
/// otherwise.
///
/// # Safety
/// As [`mv`], for `A` when `S` and for `U` otherwise.
#[inline(always)]
unsafe fn piece<const S: bool, A: Copy, U: Copy>(d: *mut u8, s: *const u8) {
    if S {
        // SAFETY: forwarded.
        unsafe { mv::<A>(d, s) }
    } else {
        // SAFETY: forwarded.
        unsafe { mv::<U>(d, s) }
    }
}

/// An aligned `T` from `p` (checked in the host tests, see [`get`]).
///
/// # Safety
/// `p` readable for `size_of::<T>()` bytes and aligned for `T`.
#[inline(always)]
unsafe fn rd<T: Copy>(p: *const u8) -> T {
    debug_assert!(p.cast::<T>().is_aligned(), "misaligned {}-byte load", size_of::<T>());
    // SAFETY: the caller's contract.
    unsafe { p.cast::<T>().read() }
}

/// Byte by byte, front to back.
///
/// # Safety
/// `s..s + n` readable, `d..d + n` writable.
#[inline(always)]
unsafe fn bytes_forward(d: *mut u8, s: *const u8, n: usize) {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n: inside both ranges.
        unsafe { *d.wrapping_add(i) = *s.wrapping_add(i) };
        i += 1;
    }
}

/// Fewer than 16 bytes (or the tail of a word copy), front to back: by the
/// bits of `n` when both pointers are word-aligned (or alignment does not
/// matter), byte by byte otherwise.
///
/// # Safety
/// `s..s + n` readable, `d..d + n` writable, `n < 16`.
#[inline(always)]
unsafe fn small_forward<const S: bool>(d: *mut u8, s: *const u8, n: usize) {
    if S && (d as usize | s as usize) & (W - 1) != 0 {
        // SAFETY: forwarded.
        unsafe { bytes_forward(d, s, n) };
        return;
    }
    let mut i = 0;
    // Largest piece first: with word-aligned pointers every piece is then
    // aligned for its size.
    if n & 8 != 0 {
        // SAFETY: (this piece and those below) i + size <= n, inside both
        // ranges; aligned as said above, or alignment does not matter
        // (`!S`).
        unsafe { put::<S>(d, get::<S>(s)) };
        i = 8;
    }
    if n & 4 != 0 {
        // SAFETY: as above.
        unsafe { piece::<S, u32, [u8; 4]>(d.wrapping_add(i), s.wrapping_add(i)) };
        i += 4;
    }
    if n & 2 != 0 {
        // SAFETY: as above.
        unsafe { piece::<S, u16, [u8; 2]>(d.wrapping_add(i), s.wrapping_add(i)) };
        i += 2;
    }
    if n & 1 != 0 {
        // SAFETY: as above.
        unsafe { mv::<u8>(d.wrapping_add(i), s.wrapping_add(i)) };
    }
}

/// Words, a block of eight at a time, then the remaining whole words by
/// the bits of `n`; returns the bytes left (fewer than a word), past
/// `n - (n % W)` bytes copied.
///
/// # Safety
/// `s..s + n` readable, `d..d + n` writable; both word-aligned if `S`;
/// `d <= s` or the ranges disjoint.
#[inline(always)]
unsafe fn words_forward<const S: bool>(mut d: *mut u8, mut s: *const u8, mut n: usize) -> (*mut u8, *const u8, usize) {
    while n >= BLOCK {
        // Eight loads, then eight stores: a block's source is read whole
        // before any of it is written (an overlapping move downwards).
        // SAFETY: n >= BLOCK: the block is inside both ranges; aligned if
        // `S` (the pointers stay word-aligned).
        unsafe {
            let (a, b, c, e) = (get::<S>(s), get::<S>(s.wrapping_add(W)), get::<S>(s.wrapping_add(2 * W)), get::<S>(s.wrapping_add(3 * W)));
            let (f, g, h, k) = (get::<S>(s.wrapping_add(4 * W)), get::<S>(s.wrapping_add(5 * W)), get::<S>(s.wrapping_add(6 * W)), get::<S>(s.wrapping_add(7 * W)));
            put::<S>(d, a);
            put::<S>(d.wrapping_add(W), b);
            put::<S>(d.wrapping_add(2 * W), c);
            put::<S>(d.wrapping_add(3 * W), e);
            put::<S>(d.wrapping_add(4 * W), f);
            put::<S>(d.wrapping_add(5 * W), g);
            put::<S>(d.wrapping_add(6 * W), h);
            put::<S>(d.wrapping_add(7 * W), k);
        }
        d = d.wrapping_add(BLOCK);
        s = s.wrapping_add(BLOCK);
        n -= BLOCK;
    }
    if n == 0 {
        // Whole blocks (a 64-byte message): done.
        return (d, s, 0);
    }
    if n & (4 * W) != 0 {
        // SAFETY: as above, four words inside both ranges.
        unsafe {
            let (a, b, c, e) = (get::<S>(s), get::<S>(s.wrapping_add(W)), get::<S>(s.wrapping_add(2 * W)), get::<S>(s.wrapping_add(3 * W)));
            put::<S>(d, a);
            put::<S>(d.wrapping_add(W), b);
            put::<S>(d.wrapping_add(2 * W), c);
            put::<S>(d.wrapping_add(3 * W), e);
        }
        d = d.wrapping_add(4 * W);
        s = s.wrapping_add(4 * W);
    }
    if n & (2 * W) != 0 {
        // SAFETY: as above, two words.
        unsafe {
            let (a, b) = (get::<S>(s), get::<S>(s.wrapping_add(W)));
            put::<S>(d, a);
            put::<S>(d.wrapping_add(W), b);
        }
        d = d.wrapping_add(2 * W);
        s = s.wrapping_add(2 * W);
    }
    if n & W != 0 {
        // SAFETY: as above, one word.
        unsafe { put::<S>(d, get::<S>(s)) };
        d = d.wrapping_add(W);
        s = s.wrapping_add(W);
    }
    (d, s, n & (W - 1))
}

/// The `len` (< W) bytes of the aligned word at `p` that start at byte
/// `W - len`, in their places in a word whose other bytes are 0: aligned
/// loads of 1, 2 and 4 bytes, never outside those bytes.
///
/// # Safety
/// `p` word-aligned, `p + W - len..p + W` readable.
#[inline(always)]
unsafe fn load_end_partial(p: *const u8, len: usize) -> usize {
    let mut at = W - len;
    let mut out = 0usize;
    // Smallest piece first, so each next one is aligned for its size.
    if len & 1 != 0 {
        // SAFETY: inside the readable bytes.
        out |= (unsafe { p.wrapping_add(at).read() } as usize) << (8 * at);
        at += 1;
    }
    if len & 2 != 0 {
        // SAFETY: inside; `at` is even here (W - len + (len & 1)).
        out |= (unsafe { rd::<u16>(p.wrapping_add(at)) } as usize) << (8 * at);
        at += 2;
    }
    if len & 4 != 0 {
        // SAFETY: inside; `at` is 4 here (the only value < W that is W -
        // len rounded up past the smaller pieces).
        out |= (unsafe { rd::<u32>(p.wrapping_add(at)) } as usize) << (8 * at);
    }
    out
}

/// The first `len` (< W) bytes of the aligned word at `p`, in their places
/// in a word whose other bytes are 0 (aligned loads, never past them).
///
/// # Safety
/// `p` word-aligned, `p..p + len` readable.
#[inline(always)]
unsafe fn load_partial(p: *const u8, len: usize) -> usize {
    let mut at = 0;
    let mut out = 0usize;
    // Largest piece first, so each next one is aligned for its size.
    if len & 4 != 0 {
        // SAFETY: inside the readable bytes; p is aligned.
        out |= unsafe { rd::<u32>(p) } as usize;
        at = 4;
    }
    if len & 2 != 0 {
        // SAFETY: inside; `at` is 0 or 4.
        out |= (unsafe { rd::<u16>(p.wrapping_add(at)) } as usize) << (8 * at);
        at += 2;
    }
    if len & 1 != 0 {
        // SAFETY: inside.
        out |= (unsafe { p.wrapping_add(at).read() } as usize) << (8 * at);
    }
    out
}

/// Copies `n` bytes (a non-zero multiple of W) from a source that is not
/// word-aligned to a word-aligned destination: every destination word
/// reassembled from the two aligned source words it straddles; the first
/// and the last source word only partly loaded (the bytes in range).
///
/// # Safety
/// `s..s + n` readable, `d..d + n` writable, `d` aligned, `s` not, `d <=
/// s` or the ranges disjoint.
#[inline(always)]
unsafe fn misaligned_forward(d: *mut u8, s: *const u8, n: usize) {
    let offset = s as usize & (W - 1);
    let shift = 8 * offset as u32;
    let mut sa = s.wrapping_sub(offset);
    // SAFETY: the bytes from `s` to the end of its word are in range (n >= W).
    let mut prev = unsafe { load_end_partial(sa, W - offset) };
    let mut dw = d;
    let end = d.wrapping_add(n);
    while dw.wrapping_add(W) < end {
        sa = sa.wrapping_add(W);
        // SAFETY: a whole aligned word inside the source: it ends at most
        // at `s + n - offset` (the loop stops a word before the end).
        let cur = unsafe { rd::<usize>(sa) };
        // SAFETY: an aligned word inside the destination.
        unsafe { put::<true>(dw, prev >> shift | cur << (64 - shift)) };
        prev = cur;
        dw = dw.wrapping_add(W);
    }
    // The last word: its second half comes from the first `offset` bytes
    // of the next aligned word, the end of the source range.
    // SAFETY: those bytes end at `s + n`, inside the source.
    let cur = unsafe { load_partial(sa.wrapping_add(W), offset) };
    // SAFETY: the destination's last word.
    unsafe { put::<true>(dw, prev >> shift | cur << (64 - shift)) };
}

/// `memcpy`: copies `n` bytes from `src` to `dst`, front to back (also a
/// correct `memmove` when `dst <= src`). `S`: every access aligned.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable; the ranges disjoint
/// or `dst <= src`.
#[inline(always)]
pub unsafe fn copy_forward<const S: bool>(mut d: *mut u8, mut s: *const u8, mut n: usize) {
    if n >= 2 * W {
        // Both word-aligned (a message, a struct) first: straight to the
        // words.
        if S && (d as usize | s as usize) & (W - 1) != 0 {
            // Bytes up to the destination's next word boundary.
            let head = (d as usize).wrapping_neg() & (W - 1);
            // SAFETY: head < W <= n, inside both ranges.
            unsafe { bytes_forward(d, s, head) };
            d = d.wrapping_add(head);
            s = s.wrapping_add(head);
            n -= head;
            if s as usize & (W - 1) != 0 {
                let words = n & !(W - 1);
                // SAFETY: n >= W after the head (n >= 2W before), `d`
                // aligned, `s` not; inside both ranges.
                unsafe { misaligned_forward(d, s, words) };
                // SAFETY: the rest, < W bytes.
                unsafe { bytes_forward(d.wrapping_add(words), s.wrapping_add(words), n - words) };
                return;
            }
        }
        // SAFETY: forwarded; both aligned when `S`.
        (d, s, n) = unsafe { words_forward::<S>(d, s, n) };
        if n == 0 {
            return;
        }
    }
    // SAFETY: forwarded; n < 16.
    unsafe { small_forward::<S>(d, s, n) }
}

/// Byte by byte, back to front: the `n` bytes below `de` from those
/// below `se`.
///
/// # Safety
/// `se - n..se` readable, `de - n..de` writable.
#[inline(always)]
unsafe fn bytes_backward(de: *mut u8, se: *const u8, n: usize) {
    let mut i = n;
    while i > 0 {
        i -= 1;
        // SAFETY: i < n: inside both ranges.
        unsafe { *de.wrapping_sub(n - i) = *se.wrapping_sub(n - i) };
    }
}

/// `memmove`'s copy for `dst > src` (overlapping): back to front; words
/// (a block of eight at a time) when both ends are aligned to each other,
/// bytes otherwise.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable.
#[inline(always)]
pub unsafe fn copy_backward<const S: bool>(d: *mut u8, s: *const u8, mut n: usize) {
    let mut de = d.wrapping_add(n);
    let mut se = s.wrapping_add(n);
    if n >= 2 * W {
        if S {
            let tail = de as usize & (W - 1);
            if tail != 0 {
                // SAFETY: tail < W <= n: inside both ranges.
                unsafe { bytes_backward(de, se, tail) };
                de = de.wrapping_sub(tail);
                se = se.wrapping_sub(tail);
                n -= tail;
            }
            if se as usize & (W - 1) != 0 {
                // Misaligned to each other and overlapping: rare (an
                // in-place shift of bytes); byte by byte.
                // SAFETY: the rest of both ranges.
                unsafe { bytes_backward(de, se, n) };
                return;
            }
        }
        while n >= BLOCK {
            de = de.wrapping_sub(BLOCK);
            se = se.wrapping_sub(BLOCK);
            // Eight loads, then eight stores (the source block read whole
            // before any of the destination, which may overlap it, is
            // written).
            // SAFETY: a block inside both ranges; aligned if `S`.
            unsafe {
                let (a, b, c, e) = (get::<S>(se), get::<S>(se.wrapping_add(W)), get::<S>(se.wrapping_add(2 * W)), get::<S>(se.wrapping_add(3 * W)));
                let (f, g, h, k) = (get::<S>(se.wrapping_add(4 * W)), get::<S>(se.wrapping_add(5 * W)), get::<S>(se.wrapping_add(6 * W)), get::<S>(se.wrapping_add(7 * W)));
                put::<S>(de.wrapping_add(7 * W), k);
                put::<S>(de.wrapping_add(6 * W), h);
                put::<S>(de.wrapping_add(5 * W), g);
                put::<S>(de.wrapping_add(4 * W), f);
                put::<S>(de.wrapping_add(3 * W), e);
                put::<S>(de.wrapping_add(2 * W), c);
                put::<S>(de.wrapping_add(W), b);
                put::<S>(de, a);
            }
            n -= BLOCK;
        }
        while n >= W {
            de = de.wrapping_sub(W);
            se = se.wrapping_sub(W);
            // SAFETY: a word inside both ranges; aligned if `S`.
            unsafe { put::<S>(de, get::<S>(se)) };
            n -= W;
        }
    }
    // SAFETY: the rest, the first `n` bytes of both ranges.
    unsafe { bytes_backward(de, se, n) }
}

/// `memmove`: copies `n` bytes from `src` to `dst`, the ranges possibly
/// overlapping.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable.
#[inline(always)]
pub unsafe fn copy<const S: bool>(d: *mut u8, s: *const u8, n: usize) {
    // Forward unless the destination starts inside the source.
    if (d as usize).wrapping_sub(s as usize) >= n {
        // SAFETY: forwarded (d < s, or disjoint).
        unsafe { copy_forward::<S>(d, s, n) }
    } else {
        // SAFETY: forwarded.
        unsafe { copy_backward::<S>(d, s, n) }
    }
}

/// `memset`: sets `n` bytes at `dst` to `c`.
///
/// # Safety
/// `dst..dst + n` writable.
#[inline(always)]
pub unsafe fn fill<const S: bool>(mut d: *mut u8, c: u8, mut n: usize) {
    let v = usize::from_ne_bytes([c; W]);
    if n >= 2 * W {
        if S {
            let head = (d as usize).wrapping_neg() & (W - 1);
            let mut i = 0;
            while i < head {
                // SAFETY: head < W <= n: inside the range.
                unsafe { *d.wrapping_add(i) = c };
                i += 1;
            }
            d = d.wrapping_add(head);
            n -= head;
        }
        while n >= BLOCK {
            let mut k = 0;
            while k < BLOCK {
                // SAFETY: inside the range (n >= BLOCK); aligned if `S`.
                unsafe { put::<S>(d.wrapping_add(k), v) };
                k += W;
            }
            d = d.wrapping_add(BLOCK);
            n -= BLOCK;
        }
        while n >= W {
            // SAFETY: inside the range; aligned if `S`.
            unsafe { put::<S>(d, v) };
            d = d.wrapping_add(W);
            n -= W;
        }
    }
    let mut i = 0;
    while i < n {
        // SAFETY: i < n: inside the range.
        unsafe { *d.wrapping_add(i) = c };
        i += 1;
    }
}

/// `memcmp`: compares `n` bytes at `a` and `b` as unsigned bytes: 0 if
/// equal, otherwise the difference of the first pair that differs.
/// Word by word while the pointers are aligned to each other.
///
/// # Safety
/// `a..a + n` and `b..b + n` readable.
#[inline(always)]
pub unsafe fn compare<const S: bool>(mut a: *const u8, mut b: *const u8, mut n: usize) -> c_int {
    if n >= 2 * W && (!S || (a as usize ^ b as usize) & (W - 1) == 0) {
        if S {
            let head = (a as usize).wrapping_neg() & (W - 1);
            let mut i = 0;
            while i < head {
                // SAFETY: head < W <= n: inside both ranges.
                let (x, y) = unsafe { (*a.wrapping_add(i), *b.wrapping_add(i)) };
                if x != y {
                    return c_int::from(x) - c_int::from(y);
                }
                i += 1;
            }
            a = a.wrapping_add(head);
            b = b.wrapping_add(head);
            n -= head;
        }
        // Skip the equal words; the first unequal one is compared by bytes
        // below.
        // SAFETY: a word inside both ranges; aligned if `S`.
        while n >= W && unsafe { get::<S>(a) == get::<S>(b) } {
            a = a.wrapping_add(W);
            b = b.wrapping_add(W);
            n -= W;
        }
    }
    let mut i = 0;
    while i < n {
        // SAFETY: i < n: inside both ranges.
        let (x, y) = unsafe { (*a.wrapping_add(i), *b.wrapping_add(i)) };
        if x != y {
            return c_int::from(x) - c_int::from(y);
        }
        i += 1;
    }
    0
}

/// The C symbols, for the bare-metal targets only (they override
/// compiler-builtins' weak definitions; a host build must keep its libc's).
#[cfg(target_os = "none")]
mod exports {
    use super::{compare, copy, copy_forward, fill, STRICT};
    use core::ffi::c_int;

    /// # Safety
    /// C's `memcpy` contract.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: C's contract: disjoint ranges, readable and writable.
        unsafe { copy_forward::<STRICT>(dst, src, n) };
        dst
    }

    /// # Safety
    /// C's `memmove` contract.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: C's contract: both ranges accessible, may overlap.
        unsafe { copy::<STRICT>(dst, src, n) };
        dst
    }

    /// # Safety
    /// C's `memset` contract.
    #[no_mangle]
    pub unsafe extern "C" fn memset(dst: *mut u8, c: c_int, n: usize) -> *mut u8 {
        // SAFETY: C's contract: the range is writable. C converts `c` to
        // unsigned char.
        unsafe { fill::<STRICT>(dst, c as u8, n) };
        dst
    }

    /// # Safety
    /// C's `memcmp` contract.
    #[no_mangle]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
        // SAFETY: C's contract: both ranges readable.
        unsafe { compare::<STRICT>(a, b, n) }
    }

    /// # Safety
    /// C's `bcmp` contract (any non-zero result for unequal ranges).
    #[no_mangle]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
        // SAFETY: as `memcmp`.
        unsafe { compare::<STRICT>(a, b, n) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Sizes: every one up to three blocks and a bit, then some larger.
    fn sizes() -> impl Iterator<Item = usize> {
        (0..=3 * BLOCK + 2 * W + 1).chain([511, 512, 513, 1000, 4095, 4097])
    }

    /// A buffer of distinct-ish bytes (never 0, so a zero-filled mistake shows).
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
    }

    /// A buffer whose start is 64-aligned, so offsets 0..16 cover every
    /// alignment of the pointers handed to the functions.
    struct Buf {
        v: Vec<u64>,
    }
    impl Buf {
        fn new(bytes: usize, seed: u8) -> Self {
            let mut b = Buf { v: std::vec![0u64; bytes.div_ceil(8) + 16] };
            let p = pattern(b.bytes().len(), seed);
            b.bytes_mut().copy_from_slice(&p);
            b
        }
        fn bytes(&self) -> &[u8] {
            // SAFETY: the u64s' storage viewed as bytes.
            unsafe { core::slice::from_raw_parts(self.v.as_ptr().cast::<u8>(), self.v.len() * 8) }
        }
        fn bytes_mut(&mut self) -> &mut [u8] {
            // SAFETY: as above, exclusively borrowed.
            unsafe { core::slice::from_raw_parts_mut(self.v.as_mut_ptr().cast::<u8>(), self.v.len() * 8) }
        }
    }

    fn check_copy<const S: bool>() {
        for n in sizes() {
            for so in 0..16 {
                for d_o in 0..16 {
                    let src = Buf::new(n + 32, 7);
                    let mut dst = Buf::new(n + 32, 100);
                    let before = dst.bytes().to_vec();
                    // SAFETY: in-bounds ranges of two distinct buffers.
                    unsafe { copy_forward::<S>(dst.bytes_mut().as_mut_ptr().add(d_o), src.bytes().as_ptr().add(so), n) };
                    let d = dst.bytes();
                    assert_eq!(&d[d_o..d_o + n], &src.bytes()[so..so + n], "copy S={S} n={n} src+{so} dst+{d_o}");
                    assert_eq!(&d[..d_o], &before[..d_o], "copy wrote before the range: n={n} src+{so} dst+{d_o}");
                    assert_eq!(&d[d_o + n..], &before[d_o + n..], "copy wrote past the range: n={n} src+{so} dst+{d_o}");
                }
            }
        }
    }

    #[test]
    fn copy_forward_every_size_and_alignment() {
        check_copy::<true>();
        check_copy::<false>();
    }

    fn check_move<const S: bool>() {
        for n in (0..=2 * BLOCK + W + 1).chain([300, 1000]) {
            // Destination from well below to well above the source, in the
            // same buffer: every overlap and both directions.
            for delta in -(2 * W as isize + 3)..=(2 * W as isize + 3) {
                for so in 24..24 + 8 {
                    let mut buf = Buf::new(n + 80, 3);
                    let orig = buf.bytes().to_vec();
                    let d_o = (so as isize + delta) as usize;
                    let base = buf.bytes_mut().as_mut_ptr();
                    // SAFETY: both ranges inside the buffer (offsets 5..47,
                    // n + 47 < its length).
                    unsafe { copy::<S>(base.add(d_o), base.add(so), n) };
                    let mut want = orig.clone();
                    want.copy_within(so..so + n, d_o);
                    assert_eq!(buf.bytes(), &want[..], "move S={S} n={n} src+{so} dst+{d_o}");
                }
            }
        }
    }

    #[test]
    fn copy_handles_every_overlap() {
        check_move::<true>();
        check_move::<false>();
    }

    fn check_fill<const S: bool>() {
        for n in sizes() {
            for o in 0..16 {
                for c in [0u8, 0x5a, 0xff] {
                    let mut b = Buf::new(n + 32, 9);
                    let before = b.bytes().to_vec();
                    // SAFETY: an in-bounds range.
                    unsafe { fill::<S>(b.bytes_mut().as_mut_ptr().add(o), c, n) };
                    let d = b.bytes();
                    assert!(d[o..o + n].iter().all(|&x| x == c), "fill S={S} n={n} +{o} c={c}");
                    assert_eq!(&d[..o], &before[..o]);
                    assert_eq!(&d[o + n..], &before[o + n..], "fill wrote past the range: n={n} +{o}");
                }
            }
        }
    }

    #[test]
    fn fill_every_size_and_alignment() {
        check_fill::<true>();
        check_fill::<false>();
    }

    fn check_compare<const S: bool>() {
        for n in (0..=2 * BLOCK + W + 1).chain([1000]) {
            for ao in 0..16 {
                for bo in [0, 1, 3, 8, ao] {
                    let a = Buf::new(n + 32, 11);
                    let mut b = Buf::new(n + 32, 200);
                    let pa = a.bytes().as_ptr();
                    b.bytes_mut()[bo..bo + n].copy_from_slice(&a.bytes()[ao..ao + n]);
                    let pb = b.bytes().as_ptr();
                    // SAFETY: in-bounds ranges.
                    let eq = unsafe { compare::<S>(pa.add(ao), pb.add(bo), n) };
                    assert_eq!(eq, 0, "compare S={S} equal n={n} a+{ao} b+{bo}");
                    // A difference at every position (the last few and a
                    // sample of the rest), both ways.
                    for at in (0..n).filter(|&i| i < 2 * W || i + 2 * W >= n || i % 7 == 0) {
                        let orig = b.bytes()[bo + at];
                        for x in [orig.wrapping_add(1) | 1, 0] {
                            if x == orig {
                                continue;
                            }
                            b.bytes_mut()[bo + at] = x;
                            // SAFETY: in-bounds ranges.
                            let r = unsafe { compare::<S>(pa.add(ao), b.bytes().as_ptr().add(bo), n) };
                            let want = c_int::from(orig) - c_int::from(x);
                            assert_eq!(r, want, "compare S={S} n={n} a+{ao} b+{bo} differing at {at}");
                        }
                        b.bytes_mut()[bo + at] = orig;
                    }
                }
            }
        }
    }

    #[test]
    fn compare_finds_the_first_difference() {
        check_compare::<true>();
        check_compare::<false>();
    }
}

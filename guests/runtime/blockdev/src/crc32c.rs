//! CRC-32C (Castagnoli), the checksum of the storage engines' on-disk
//! formats (the store's log groups, checkpoint blocks and superblocks; the
//! log's frames) and of Kafka's RecordBatch v2.
//!
//! [`update`] uses the CPU's CRC-32C instruction where there is one (SSE 4.2
//! `crc32` on x86_64, the ARMv8 `CRC32CX` family on aarch64), found at run
//! time once and remembered: with `std` through `is_x86_feature_detected!` /
//! `is_aarch64_feature_detected!`, in a guest (no `std`) through CPUID leaf 1
//! (ECX bit 20) or `ID_AA64ISAR0_EL1.CRC32`. It runs three lanes of 256
//! bytes side by side (the instruction's latency is three cycles, its
//! throughput one a cycle), joined by a shift table built at compile time.
//! Everywhere else it is [`update_software`]: slicing-by-8 tables built at
//! compile time. The two are the same function (`hw_matches_software` and
//! the property tests check it).
//!
//! On x86_64 the instruction is issued through `asm!` rather than the
//! `_mm_crc32_u64` intrinsic: the intrinsic needs `#[target_feature(enable =
//! "sse4.2")]`, which lets the compiler use SSE registers in that function,
//! and bare-metal guests (`x86_64-unknown-none`, soft-float) never enable
//! SSE; `crc32` itself is a general-purpose-register instruction that only
//! needs CPUID's SSE4_2 bit.

const POLY: u32 = 0x82F6_3B78;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// Bytes of each of the three lanes the instruction path runs side by side
/// (the instruction's latency is three cycles, its throughput one a cycle).
const LANE: usize = 256;

/// The linear map that advances a raw CRC state (not inverted) over
/// [`LANE`] zero bytes, as four byte-indexed tables.
const fn make_shift() -> [[u32; 256]; 4] {
    let t0 = make_tables()[0];
    // The images of the 32 basis states.
    let mut basis = [0u32; 32];
    let mut j = 0;
    while j < 32 {
        let mut c = 1u32 << j;
        let mut k = 0;
        while k < LANE {
            c = (c >> 8) ^ t0[(c & 0xff) as usize];
            k += 1;
        }
        basis[j] = c;
        j += 1;
    }
    let mut t = [[0u32; 256]; 4];
    let mut k = 0;
    while k < 4 {
        let mut b = 0;
        while b < 256 {
            let mut v = 0u32;
            let mut bit = 0;
            while bit < 8 {
                if b & (1 << bit) != 0 {
                    v ^= basis[8 * k + bit];
                }
                bit += 1;
            }
            t[k][b] = v;
            b += 1;
        }
        k += 1;
    }
    t
}

static SHIFT: [[u32; 256]; 4] = make_shift();

/// A raw CRC state advanced over [`LANE`] zero bytes.
#[inline(always)]
fn shift_lane(s: u32) -> u32 {
    SHIFT[0][(s & 0xff) as usize] ^ SHIFT[1][((s >> 8) & 0xff) as usize] ^ SHIFT[2][((s >> 16) & 0xff) as usize] ^ SHIFT[3][(s >> 24) as usize]
}

/// Continues a CRC-32C over `data` (start with `0`), in software
/// (slicing-by-8), whatever the CPU offers.
pub fn update_software(crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut c = !crc;
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        let lo = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]) ^ c;
        let hi = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = (c >> 8) ^ t[0][((c ^ b as u32) & 0xff) as usize];
    }
    !c
}

/// Continues a CRC-32C over `data` (start with `0`): the CPU's instruction
/// when it has one, else [`update_software`].
#[inline]
pub fn update(crc: u32, data: &[u8]) -> u32 {
    match hw::update(crc, data) {
        Some(c) => c,
        None => update_software(crc, data),
    }
}

/// CRC-32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    update(0, data)
}

/// Whether [`update`] uses a CRC-32C instruction on this CPU.
pub fn hardware() -> bool {
    hw::available()
}

/// `false` makes [`update`] use [`update_software`] from now on, even where
/// the CPU has the instruction; `true` goes back to looking for it
/// (measurements: what the instruction saves).
pub fn use_hardware(on: bool) {
    hw::STATE.store(if on { 0 } else { 1 }, core::sync::atomic::Ordering::Relaxed);
}

/// The instruction paths: the only `unsafe` of the crate.
#[allow(unsafe_code)]
mod hw {
    use core::sync::atomic::{AtomicU8, Ordering};

    /// 0: not looked yet; 1: no instruction (or not to be used); 2:
    /// instruction.
    pub(super) static STATE: AtomicU8 = AtomicU8::new(0);

    #[inline]
    pub fn available() -> bool {
        match STATE.load(Ordering::Relaxed) {
            0 => {
                let yes = detect();
                STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
            s => s == 2,
        }
    }

    #[inline]
    pub fn update(crc: u32, data: &[u8]) -> Option<u32> {
        if !available() {
            return None;
        }
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        // SAFETY: `available()` said the CPU has the CRC-32C instruction
        // (SSE 4.2 / ARMv8 CRC32), the only thing `update_hw` requires
        // beyond Rust's usual rules.
        return Some(unsafe { update_hw(crc, data) });
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = (crc, data);
            None
        }
    }

    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    fn detect() -> bool {
        std::is_x86_feature_detected!("sse4.2")
    }

    #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
    fn detect() -> bool {
        // CPUID.01H:ECX.SSE4_2[bit 20]: the `crc32` instruction exists.
        core::arch::x86_64::__cpuid(1).ecx & (1 << 20) != 0
    }

    #[cfg(all(target_arch = "aarch64", feature = "std"))]
    fn detect() -> bool {
        std::arch::is_aarch64_feature_detected!("crc")
    }

    #[cfg(all(target_arch = "aarch64", not(feature = "std")))]
    fn detect() -> bool {
        let isar0: u64;
        // SAFETY: reading an ID register has no side effects; at EL1 and
        // above it is always permitted (a hypervisor may trap it and answer
        // for the CPU, which is what it is there for).
        unsafe {
            core::arch::asm!("mrs {}, ID_AA64ISAR0_EL1", out(reg) isar0, options(nomem, nostack, preserves_flags))
        };
        // ID_AA64ISAR0_EL1.CRC32, bits [19:16]: 1 = CRC32 and CRC32C.
        (isar0 >> 16) & 0xf >= 1
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fn detect() -> bool {
        false
    }

    /// One 8-byte step of the raw state. # Safety: SSE 4.2's `crc32`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn step8(mut c: u32, v: u64) -> u32 {
        let mut w = c as u64;
        // SAFETY: the caller guarantees the instruction; it reads and
        // writes only the two registers named here.
        unsafe { core::arch::asm!("crc32 {c}, {v}", c = inout(reg) w, v = in(reg) v, options(pure, nomem, nostack)) };
        c = w as u32;
        c
    }

    /// One byte step of the raw state. # Safety: SSE 4.2's `crc32`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn step1(mut c: u32, b: u8) -> u32 {
        // SAFETY: as `step8`; `crc32 r32, r8` is the byte form.
        unsafe { core::arch::asm!("crc32 {c:e}, {b}", c = inout(reg) c, b = in(reg_byte) b, options(pure, nomem, nostack)) };
        c
    }

    /// # Safety: the ARMv8 CRC32 extension.
    #[cfg(target_arch = "aarch64")]
    #[inline]
    #[target_feature(enable = "crc")]
    unsafe fn step8(c: u32, v: u64) -> u32 {
        core::arch::aarch64::__crc32cd(c, v)
    }

    /// # Safety: the ARMv8 CRC32 extension.
    #[cfg(target_arch = "aarch64")]
    #[inline]
    #[target_feature(enable = "crc")]
    unsafe fn step1(c: u32, b: u8) -> u32 {
        core::arch::aarch64::__crc32cb(c, b)
    }

    /// # Safety
    /// The CPU must have the CRC-32C instruction (`step8`, `step1`).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "crc"))]
    unsafe fn update_hw(crc: u32, data: &[u8]) -> u32 {
        // SAFETY: every bit pattern is a valid u64; `align_to` only splits
        // the slice where it is 8-byte aligned. Aligned words are loaded
        // whole even where unaligned loads are not allowed
        // (`+strict-align`, the bare-metal targets).
        let (head, words, tail) = unsafe { data.align_to::<u64>() };
        let mut c = !crc;
        for &b in head {
            // SAFETY: the caller guarantees the instruction.
            c = unsafe { step1(c, b) };
        }
        // Three lanes of LANE bytes at a time, combined by the linear
        // shift: state(s, A B C) = Z(Z(state(s, A)) ^ state(0, B)) ^
        // state(0, C), Z advancing over LANE zero bytes.
        const W: usize = super::LANE / 8;
        let mut rounds = words.chunks_exact(3 * W);
        for r in &mut rounds {
            let (a, rest) = r.split_at(W);
            let (b, d) = rest.split_at(W);
            let (mut s0, mut s1, mut s2) = (c, 0u32, 0u32);
            for i in 0..W {
                // SAFETY: the caller guarantees the instruction.
                unsafe {
                    s0 = step8(s0, u64::from_le(a[i]));
                    s1 = step8(s1, u64::from_le(b[i]));
                    s2 = step8(s2, u64::from_le(d[i]));
                }
            }
            c = super::shift_lane(super::shift_lane(s0) ^ s1) ^ s2;
        }
        for &w in rounds.remainder() {
            // SAFETY: the caller guarantees the instruction.
            c = unsafe { step8(c, u64::from_le(w)) };
        }
        for &b in tail {
            // SAFETY: the caller guarantees the instruction.
            c = unsafe { step1(c, b) };
        }
        !c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitwise(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn known_vectors() {
        // RFC 3720 B.4 and the classic check value, through both paths.
        for f in [update, update_software] {
            assert_eq!(f(0, b"123456789"), 0xE306_9283);
            assert_eq!(f(0, &[0u8; 32]), 0x8A91_36AA);
            assert_eq!(f(0, &[0xffu8; 32]), 0x62A8_AB43);
            let inc: [u8; 32] = core::array::from_fn(|i| i as u8);
            assert_eq!(f(0, &inc), 0x46DD_794E);
        }
    }

    #[test]
    fn the_software_path_can_be_forced() {
        use_hardware(false);
        assert!(!hardware());
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        use_hardware(true);
    }

    #[test]
    fn matches_bitwise_and_is_incremental() {
        let data: alloc::vec::Vec<u8> = (0..1000u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 999, 1000] {
            assert_eq!(crc32c(&data[..len]), bitwise(&data[..len]));
            assert_eq!(update_software(0, &data[..len]), bitwise(&data[..len]));
            let (a, b) = data[..len].split_at(len / 3);
            assert_eq!(update(update(0, a), b), crc32c(&data[..len]));
        }
    }

    /// The machines this runs on (x86_64 with SSE 4.2, aarch64 with CRC32)
    /// take the instruction path: otherwise the property tests below would
    /// compare the software path with itself.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn hardware_path_is_taken_here() {
        #[cfg(target_arch = "x86_64")]
        let has = std::is_x86_feature_detected!("sse4.2");
        #[cfg(target_arch = "aarch64")]
        let has = std::arch::is_aarch64_feature_detected!("crc");
        assert_eq!(hardware(), has);
    }

    proptest::proptest! {
        #[test]
        fn hw_matches_software(data in proptest::collection::vec(proptest::num::u8::ANY, 0..5000), start in proptest::num::u32::ANY, cut in 0usize..5000, skip in 0usize..8) {
            proptest::prop_assert_eq!(update(start, &data), update_software(start, &data));
            // Every alignment of the start (the lanes run on aligned words).
            let from = skip.min(data.len());
            proptest::prop_assert_eq!(update(start, &data[from..]), update_software(start, &data[from..]));
            let cut = cut.min(data.len());
            let (a, b) = data.split_at(cut);
            proptest::prop_assert_eq!(update(update(start, a), b), update_software(start, &data));
        }
    }
}

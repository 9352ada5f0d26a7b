//! Light compression of column chunks, and the byte cursor every decoder
//! reads through (every length and count checked against what is left:
//! a hostile chunk gives an error, never a panic or a huge allocation).
//!
//! Integer chunks (integers, decimals, dates as `i64`):
//! * `0` frame of reference + bit-packing: `count`, `base` (zigzag
//!   varint), `width` (0..=64 bits), then `count` values `v - base`
//!   packed little-endian, `ceil(count*width/8)` bytes.
//! * `1` run-length: `count`, `runs`, then per run the value (zigzag
//!   varint) and its length; the lengths add up to `count`.
//!
//! The encoder writes both and keeps the shorter.
//!
//! String chunks:
//! * `2` dictionary: `count`, `entries`, each entry `len` + UTF-8 bytes
//!   (sorted, distinct), then the codes as an integer chunk.
//! * `3` plain: `count`, the lengths as an integer chunk, then the bytes.
//!
//! Varints are LEB128 (at most 10 bytes).

use alloc::borrow::Cow;
use alloc::sync::Arc;
use alloc::vec::Vec;
use alloc::{format, vec};

use crate::types::{Error, Result};

const TAG_FOR: u8 = 0;
const TAG_RLE: u8 = 1;
const TAG_DICT: u8 = 2;
const TAG_PLAIN: u8 = 3;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A bounds-checked reader over untrusted bytes.
///
/// `b` may run on past the bytes being read (`end`): a reader of
/// bit-packed values may then load whole 64-bit words near the end of its
/// data (the bits past the data are masked off), see [`Cur::padded`].
#[derive(Debug)]
pub struct Cur<'a> {
    b: &'a [u8],
    end: usize,
    pos: usize,
    what: &'static str,
}

impl<'a> Cur<'a> {
    pub fn new(b: &'a [u8], what: &'static str) -> Self {
        Cur { b, end: b.len(), pos: 0, what }
    }
    /// Reads `b[..end]`; the bytes after `end` are padding that only
    /// word-at-a-time readers of packed values may load.
    pub fn padded(b: &'a [u8], end: usize, what: &'static str) -> Self {
        Cur { b, end: end.min(b.len()), pos: 0, what }
    }
    fn err(&self, msg: &str) -> Error {
        Error::corrupt(format!("{}: {msg} at byte {}", self.what, self.pos))
    }
    pub fn left(&self) -> usize {
        self.end - self.pos
    }
    pub fn at_end(&self) -> bool {
        self.pos == self.end
    }
    pub fn u8(&mut self) -> Result<u8> {
        if self.pos >= self.end {
            return Err(self.err("truncated"));
        }
        let v = self.b[self.pos];
        self.pos += 1;
        Ok(v)
    }
    pub fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    #[inline]
    pub fn varint(&mut self) -> Result<u64> {
        // One byte: the usual case (run lengths, small deltas).
        if self.pos < self.end && self.b[self.pos] < 0x80 {
            self.pos += 1;
            return Ok(u64::from(self.b[self.pos - 1]));
        }
        self.varint_long()
    }
    fn varint_long(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }
    #[inline]
    pub fn ivarint(&mut self) -> Result<i64> {
        Ok(unzigzag(self.varint()?))
    }
    /// A count or length no larger than `max`.
    #[inline]
    pub fn len(&mut self, max: usize) -> Result<usize> {
        let v = self.varint()?;
        if v > max as u64 {
            return Err(self.err(&format!("length {v} over the limit {max}")));
        }
        Ok(v as usize)
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(self.err("truncated"));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn str(&mut self, max: usize) -> Result<&'a str> {
        let n = self.len(max.min(self.left()))?;
        let b = self.take(n)?;
        core::str::from_utf8(b).map_err(|_| self.err("invalid UTF-8"))
    }
}

fn pack(out: &mut Vec<u8>, vals: impl Iterator<Item = u64>, width: u32) {
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for v in vals {
        acc |= u128::from(v) << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

fn encode_for(out: &mut Vec<u8>, vals: &[i64]) {
    let min = vals.iter().copied().min().unwrap_or(0);
    let max = vals.iter().copied().max().unwrap_or(0);
    let range = (max as u64).wrapping_sub(min as u64);
    let width = 64 - range.leading_zeros();
    out.push(TAG_FOR);
    put_varint(out, vals.len() as u64);
    put_varint(out, zigzag(min));
    out.push(width as u8);
    pack(out, vals.iter().map(|&v| (v as u64).wrapping_sub(min as u64)), width);
}

fn encode_rle(out: &mut Vec<u8>, vals: &[i64]) {
    out.push(TAG_RLE);
    put_varint(out, vals.len() as u64);
    let mut runs: Vec<(i64, u64)> = Vec::new();
    for &v in vals {
        match runs.last_mut() {
            Some((last, n)) if *last == v => *n += 1,
            _ => runs.push((v, 1)),
        }
    }
    put_varint(out, runs.len() as u64);
    for (v, n) in runs {
        put_varint(out, zigzag(v));
        put_varint(out, n);
    }
}

/// Appends the shorter encoding of `vals`.
pub fn encode_ints(out: &mut Vec<u8>, vals: &[i64]) {
    let mut a = Vec::new();
    encode_for(&mut a, vals);
    // RLE only pays with long runs: skip it when runs are short.
    let runs = 1 + vals.windows(2).filter(|w| w[0] != w[1]).count();
    if runs * 4 < vals.len() {
        let mut b = Vec::new();
        encode_rle(&mut b, vals);
        if b.len() < a.len() {
            a = b;
        }
    }
    out.extend_from_slice(&a);
}

/// A chunk's encoding tag and value count, which must be `rows`.
fn header(c: &mut Cur<'_>, rows: usize) -> Result<(u8, usize)> {
    let tag = c.u8()?;
    let count = c.len(rows)?;
    if count != rows {
        return Err(Error::corrupt(format!("{}: {count} values where the row group has {rows}", c.what)));
    }
    Ok((tag, count))
}

/// An integer chunk read in place. A frame-of-reference chunk stays
/// packed: any value is found from its index in O(1) (`get`), so a scan
/// reads only the rows its filters kept. A run-length chunk is expanded
/// once. Every count and length was checked when it was parsed
/// ([`parse_ints`]), so reading a value cannot fail.
#[derive(Clone, Debug)]
pub enum Ints<'a> {
    Packed {
        base: i64,
        width: u32,
        count: usize,
        /// From the first packed byte on; it may run on past the packed
        /// bytes (into padding), which lets `get` load whole words.
        data: &'a [u8],
    },
    /// Expanded values (a run-length chunk), owned or kept by the caller.
    Plain(Cow<'a, [i64]>),
}

/// Value `i` of a bit-packed run of `width`-bit values, `i` within the
/// data (the caller's bound).
#[inline(always)]
fn unpack(data: &[u8], width: u32, i: usize) -> u64 {
    if width == 0 {
        return 0;
    }
    let bit = i * width as usize;
    let (at, shift) = (bit / 8, (bit % 8) as u32);
    let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    if width <= 56 {
        if let Some(w) = data.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            return (u64::from_le_bytes(word) >> shift) & mask;
        }
    }
    // Near the end of unpadded data, or wider than 56 bits: byte by byte.
    let mut acc: u128 = 0;
    for k in 0..(shift + width).div_ceil(8) as usize {
        acc |= u128::from(data.get(at + k).copied().unwrap_or(0)) << (8 * k);
    }
    ((acc >> shift) as u64) & mask
}

/// The 64-bit little-endian word at byte `at` (`at + 8 <= data.len()`).
#[inline(always)]
fn word_at(data: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(w)
}

/// An operation on a chunk's values, given the way to read value `i`
/// (monomorphic per way, so the read's case analysis is out of the loop).
trait Kernel {
    type Out;
    fn run(self, count: usize, get: impl Fn(usize) -> i64) -> Self::Out;
}

impl Ints<'_> {
    pub fn len(&self) -> usize {
        match self {
            Ints::Packed { count, .. } => *count,
            Ints::Plain(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Runs `k` with the cheapest reader this chunk allows: a constant, a
    /// word load and shift where every value's word lies inside `data`
    /// (widths up to 56 with the padding after the chunk), byte by byte
    /// otherwise, or the expanded values.
    #[inline(always)]
    fn apply<K: Kernel>(&self, k: K) -> K::Out {
        match self {
            Ints::Packed { base, width: 0, count, .. } => k.run(*count, |_| *base),
            Ints::Packed { base, width, data, count } if *width <= 56 && data.len() >= (*count * *width as usize).div_ceil(8) + 8 => {
                let (base, w) = (*base, *width as usize);
                let mask = (1u64 << w) - 1;
                k.run(*count, move |i| {
                    let bit = i * w;
                    base.wrapping_add(((word_at(data, bit >> 3) >> (bit & 7)) & mask) as i64)
                })
            }
            Ints::Packed { base, width, data, count } => {
                let (base, width) = (*base, *width);
                k.run(*count, move |i| base.wrapping_add(unpack(data, width, i) as i64))
            }
            Ints::Plain(v) => k.run(v.len(), |i| v[i]),
        }
    }
    /// Value `i` (`i < len()`).
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        match self {
            Ints::Packed { base, width, data, .. } => base.wrapping_add(unpack(data, *width, i) as i64),
            Ints::Plain(v) => v[i],
        }
    }
    /// Every value, appended to `out`.
    pub fn decode_into(&self, out: &mut Vec<i64>) {
        struct K<'o>(&'o mut Vec<i64>);
        impl Kernel for K<'_> {
            type Out = ();
            fn run(self, count: usize, get: impl Fn(usize) -> i64) {
                self.0.extend((0..count).map(get));
            }
        }
        self.apply(K(out));
    }
    /// The values at `idx` (each `< len()`), appended to `out`.
    pub fn gather_into(&self, idx: &[u32], out: &mut Vec<i64>) {
        struct K<'o, 'i>(&'o mut Vec<i64>, &'i [u32]);
        impl Kernel for K<'_, '_> {
            type Out = ();
            fn run(self, _: usize, get: impl Fn(usize) -> i64) {
                self.0.extend(self.1.iter().map(|&i| get(i as usize)));
            }
        }
        self.apply(K(out, idx));
    }
    /// Of the rows `rows` (every row when `None`), those whose value lies
    /// in `lo..=hi`, in order, into `out`: one subtraction and one
    /// unsigned comparison a value.
    pub fn select_range(&self, lo: i64, hi: i64, rows: Option<&[u32]>, out: &mut Vec<u32>) {
        out.clear();
        if lo > hi {
            return;
        }
        let span = (hi as u64).wrapping_sub(lo as u64);
        self.select_by(rows, out, move |v| (v as u64).wrapping_sub(lo as u64) <= span);
    }
    /// Of the rows `rows` (every row when `None`), those where `keep` of
    /// the value holds, into `out`.
    pub fn select_by(&self, rows: Option<&[u32]>, out: &mut Vec<u32>, keep: impl Fn(i64) -> bool) {
        struct K<'o, 'r, F>(&'o mut Vec<u32>, Option<&'r [u32]>, F);
        impl<F: Fn(i64) -> bool> Kernel for K<'_, '_, F> {
            type Out = ();
            fn run(self, count: usize, get: impl Fn(usize) -> i64) {
                let K(out, rows, keep) = self;
                select(rows, count, out, |i| keep(get(i)));
            }
        }
        self.apply(K(out, rows, keep));
    }
}

/// The rows (of `rows`, or of `0..count`) where `pass` holds, into `out`,
/// without a branch per row: over all rows 64 at a time into a bit mask
/// whose set bits are then listed; over a selection, each row written and
/// the end moved on by the test's outcome.
#[inline(always)]
fn select(rows: Option<&[u32]>, count: usize, out: &mut Vec<u32>, pass: impl Fn(usize) -> bool) {
    out.clear();
    match rows {
        None => {
            out.reserve(count);
            let mut start = 0;
            while start < count {
                let end = (start + 64).min(count);
                let mut m = 0u64;
                for i in start..end {
                    m |= u64::from(pass(i)) << (i - start);
                }
                while m != 0 {
                    out.push((start + m.trailing_zeros() as usize) as u32);
                    m &= m - 1;
                }
                start = end;
            }
        }
        Some(r) => {
            out.resize(r.len(), 0);
            let mut k = 0;
            for &i in r {
                out[k] = i;
                k += usize::from(pass(i as usize));
            }
            out.truncate(k);
        }
    }
}

/// Parses an integer chunk of exactly `rows` values, leaving it packed
/// where it is packed.
pub fn parse_ints<'a>(c: &mut Cur<'a>, rows: usize) -> Result<Ints<'a>> {
    let mut out = Vec::new();
    Ok(parse_ints_reuse(c, rows, &mut out)?.unwrap_or(Ints::Plain(Cow::Owned(out))))
}

/// [`parse_ints`], expanding a run-length chunk into `out` (its capacity
/// reused; `None` then) rather than into a new vector.
pub fn parse_ints_reuse<'a>(c: &mut Cur<'a>, rows: usize, out: &mut Vec<i64>) -> Result<Option<Ints<'a>>> {
    let (tag, count) = header(c, rows)?;
    match tag {
        TAG_FOR => {
            let base = c.ivarint()?;
            let width = u32::from(c.u8()?);
            if width > 64 {
                return Err(Error::corrupt(format!("{}: bit width {width}", c.what)));
            }
            let nbytes = (count as u64 * u64::from(width)).div_ceil(8) as usize;
            if nbytes > c.left() {
                return Err(c.err("truncated"));
            }
            let data = &c.b[c.pos..];
            c.pos += nbytes;
            Ok(Some(Ints::Packed { base, width, count, data }))
        }
        TAG_RLE => {
            let runs = c.len(count)?;
            out.clear();
            out.reserve(count);
            for _ in 0..runs {
                let v = c.ivarint()?;
                let n = c.len(count - out.len())?;
                out.resize(out.len() + n, v);
            }
            if out.len() != count {
                return Err(Error::corrupt(format!("{}: runs cover {} of {count} values", c.what, out.len())));
            }
            Ok(None)
        }
        t => Err(Error::corrupt(format!("{}: unknown integer encoding {t}", c.what))),
    }
}

/// Decodes an integer chunk of exactly `rows` values.
pub fn decode_ints(c: &mut Cur<'_>, rows: usize) -> Result<Vec<i64>> {
    Ok(match parse_ints(c, rows)? {
        Ints::Plain(v) => v.into_owned(),
        p => {
            let mut out = Vec::with_capacity(rows);
            p.decode_into(&mut out);
            out
        }
    })
}

/// Appends the shorter of the dictionary and plain encodings of `vals`.
pub fn encode_strs<S: AsRef<str>>(out: &mut Vec<u8>, vals: &[S]) {
    let mut dict: Vec<&str> = vals.iter().map(|s| s.as_ref()).collect();
    dict.sort_unstable();
    dict.dedup();
    let mut best: Option<Vec<u8>> = None;
    if dict.len() * 2 <= vals.len().max(1) {
        let mut a = vec![TAG_DICT];
        put_varint(&mut a, vals.len() as u64);
        put_varint(&mut a, dict.len() as u64);
        for d in &dict {
            put_bytes(&mut a, d.as_bytes());
        }
        let codes: Vec<i64> = vals
            .iter()
            .map(|s| dict.binary_search(&s.as_ref()).unwrap_or(0) as i64)
            .collect();
        encode_ints(&mut a, &codes);
        best = Some(a);
    }
    let mut b = vec![TAG_PLAIN];
    put_varint(&mut b, vals.len() as u64);
    let lens: Vec<i64> = vals.iter().map(|s| s.as_ref().len() as i64).collect();
    encode_ints(&mut b, &lens);
    let total: usize = vals.iter().map(|s| s.as_ref().len()).sum();
    put_varint(&mut b, total as u64);
    for s in vals {
        b.extend_from_slice(s.as_ref().as_bytes());
    }
    match best {
        Some(a) if a.len() <= b.len() => out.extend_from_slice(&a),
        _ => out.extend_from_slice(&b),
    }
}

/// Strings as a dictionary and a code per value: what a dictionary chunk
/// holds, kept so through execution (a filter on the column runs once per
/// distinct value). A plain chunk is the same with one entry per value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strs {
    pub dict: Arc<Vec<Arc<str>>>,
    pub codes: Vec<u32>,
}

impl Strs {
    /// One entry per value.
    pub fn from_vec(v: Vec<Arc<str>>) -> Self {
        let codes = (0..v.len() as u32).collect();
        Strs { dict: Arc::new(v), codes }
    }
    pub fn len(&self) -> usize {
        self.codes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
    pub fn get(&self, i: usize) -> &Arc<str> {
        &self.dict[self.codes[i] as usize]
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.codes.iter().map(|&c| &self.dict[c as usize])
    }
    /// The values at `idx`. From a dictionary much larger than what is
    /// taken, the values taken make a dictionary of their own (an entry
    /// per value), so the cost follows what is taken, not the dictionary.
    pub fn take(&self, idx: impl Iterator<Item = u32>) -> Strs {
        let codes: Vec<u32> = idx.map(|i| self.codes[i as usize]).collect();
        if self.dict.len() <= 2 * codes.len().max(16) {
            return Strs { dict: self.dict.clone(), codes };
        }
        Strs::from_vec(codes.iter().map(|&c| self.dict[c as usize].clone()).collect())
    }
    /// Appends `o`'s values.
    pub fn append(&mut self, o: Strs) {
        if Arc::ptr_eq(&self.dict, &o.dict) {
            self.codes.extend(o.codes);
            return;
        }
        let off = self.dict.len() as u32;
        Arc::make_mut(&mut self.dict).extend(o.dict.iter().cloned());
        self.codes.extend(o.codes.iter().map(|c| c + off));
    }
}

/// A string chunk read in place: a dictionary chunk keeps its codes
/// packed (a scan reads the codes of the rows it keeps), a plain chunk is
/// decoded. Codes are checked against the dictionary where they are read.
#[derive(Clone, Debug)]
pub enum StrsView<'a> {
    Dict { dict: Arc<Vec<Arc<str>>>, codes: Ints<'a> },
    Plain(Strs),
}

fn bad_code(what: &str, k: i64, n: usize) -> Error {
    Error::corrupt(format!("{what}: dictionary code {k} of {n}"))
}

impl StrsView<'_> {
    /// The values at `idx` (each below the row count).
    pub fn gather(&self, idx: &[u32]) -> Result<Strs> {
        match self {
            StrsView::Dict { dict, codes } => {
                let n = dict.len();
                let mut raw = Vec::with_capacity(idx.len());
                codes.gather_into(idx, &mut raw);
                let mut bad = None;
                let codes = raw
                    .iter()
                    .map(|&k| {
                        if (k as u64) < n as u64 {
                            k as u32
                        } else {
                            bad.get_or_insert(k);
                            0
                        }
                    })
                    .collect();
                match bad {
                    Some(k) => Err(bad_code("column chunk", k, n)),
                    None => Ok(Strs { dict: dict.clone(), codes }),
                }
            }
            StrsView::Plain(s) => Ok(s.take(idx.iter().copied())),
        }
    }
    /// Of the rows `rows` (every row when `None`), those whose value `keep`
    /// holds for, into `out`; `keep` runs once per distinct value of a
    /// dictionary chunk (when the dictionary is not larger than the rows).
    pub fn select_by(&self, rows: Option<&[u32]>, out: &mut Vec<u32>, keep: impl Fn(&str) -> bool) -> Result<()> {
        out.clear();
        let (dict, codes) = match self {
            StrsView::Dict { dict, codes } => (dict, codes),
            StrsView::Plain(s) => {
                match rows {
                    None => out.extend((0..s.len() as u32).filter(|&i| keep(s.get(i as usize)))),
                    Some(r) => out.extend(r.iter().copied().filter(|&i| keep(s.get(i as usize)))),
                }
                return Ok(());
            }
        };
        let bad = core::cell::Cell::new(None);
        let flag = |k: i64| {
            bad.set(Some(k));
            false
        };
        if dict.len() <= rows.map_or(codes.len(), <[u32]>::len).max(1) {
            let table: Vec<bool> = dict.iter().map(|s| keep(s)).collect();
            codes.select_by(rows, out, |k| match table.get(k as usize) {
                Some(&t) if k >= 0 => t,
                _ => flag(k),
            });
        } else {
            codes.select_by(rows, out, |k| match dict.get(k as usize) {
                Some(s) if k >= 0 => keep(s),
                _ => flag(k),
            });
        }
        match bad.get() {
            Some(k) => Err(bad_code("column chunk", k, dict.len())),
            None => Ok(()),
        }
    }
}

/// Parses a string chunk of exactly `rows` values.
pub fn parse_strs<'a>(c: &mut Cur<'a>, rows: usize) -> Result<StrsView<'a>> {
    let (tag, count) = header(c, rows)?;
    match tag {
        TAG_DICT => {
            let n = c.len(count.max(1))?;
            let mut dict: Vec<Arc<str>> = Vec::with_capacity(n);
            for _ in 0..n {
                dict.push(Arc::from(c.str(usize::MAX)?));
            }
            let codes = parse_ints(c, count)?;
            Ok(StrsView::Dict { dict: Arc::new(dict), codes })
        }
        TAG_PLAIN => {
            let lens = decode_ints(c, count)?;
            let total = c.len(c.left())?;
            let bytes = c.take(total)?;
            let text = core::str::from_utf8(bytes)
                .map_err(|_| Error::corrupt(format!("{}: invalid UTF-8", c.what)))?;
            let mut out = Vec::with_capacity(count);
            let mut at = 0usize;
            for &l in &lens {
                let end = usize::try_from(l)
                    .ok()
                    .and_then(|l| at.checked_add(l))
                    .filter(|&e| e <= total)
                    .ok_or_else(|| Error::corrupt(format!("{}: string lengths run past the data", c.what)))?;
                let s = text
                    .get(at..end)
                    .ok_or_else(|| Error::corrupt(format!("{}: string splits a character", c.what)))?;
                out.push(Arc::from(s));
                at = end;
            }
            if at != total {
                return Err(Error::corrupt(format!("{}: {} bytes of string data unused", c.what, total - at)));
            }
            Ok(StrsView::Plain(Strs::from_vec(out)))
        }
        t => Err(Error::corrupt(format!("{}: unknown string encoding {t}", c.what))),
    }
}

/// Decodes a string chunk of exactly `rows` values.
pub fn decode_strs(c: &mut Cur<'_>, rows: usize) -> Result<Strs> {
    let what = c.what;
    match parse_strs(c, rows)? {
        StrsView::Dict { dict, codes } => {
            let n = dict.len();
            let mut raw = Vec::with_capacity(rows);
            codes.decode_into(&mut raw);
            let codes = raw
                .iter()
                .map(|&k| u32::try_from(k).ok().filter(|&k| (k as usize) < n).ok_or_else(|| bad_code(what, k, n)))
                .collect::<Result<Vec<u32>>>()?;
            Ok(Strs { dict, codes })
        }
        StrsView::Plain(s) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ints_round_trip(vals: &[i64]) -> usize {
        let mut b = Vec::new();
        encode_ints(&mut b, vals);
        let mut c = Cur::new(&b, "test");
        assert_eq!(decode_ints(&mut c, vals.len()).unwrap(), vals);
        assert!(c.at_end());
        b.len()
    }

    #[test]
    fn ints_compress() {
        assert!(ints_round_trip(&[7; 65536]) < 16, "a constant chunk is one run");
        let small: Vec<i64> = (0..4096).map(|i| 1_000_000 + i % 50).collect();
        assert!(ints_round_trip(&small) <= 4096 * 6 / 8 + 16, "6 bits a value");
        ints_round_trip(&[i64::MIN, i64::MAX, 0, -1]);
        ints_round_trip(&[]);
    }

    #[test]
    fn strs_dictionary() {
        let v: Vec<&str> = (0..1000).map(|i| ["A", "N", "R"][i % 3]).collect();
        let mut b = Vec::new();
        encode_strs(&mut b, &v);
        assert_eq!(b[0], TAG_DICT);
        assert!(b.len() < 300);
        let d = decode_strs(&mut Cur::new(&b, "t"), v.len()).unwrap();
        assert!(d.iter().map(|s| &**s).eq(v.iter().copied()));
    }

    #[test]
    fn wrong_row_count_rejected() {
        let mut b = Vec::new();
        encode_ints(&mut b, &[1, 2, 3]);
        assert!(decode_ints(&mut Cur::new(&b, "t"), 4).is_err());
    }

    /// `vals` encoded, then parsed in place from an unpadded and from a
    /// padded buffer (as a scan reads it).
    fn both_views(vals: &[i64], check: impl Fn(&Ints<'_>)) {
        let mut b = Vec::new();
        encode_ints(&mut b, vals);
        let len = b.len();
        let mut c = Cur::new(&b, "t");
        check(&parse_ints(&mut c, vals.len()).unwrap());
        assert!(c.at_end());
        let mut padded = b.clone();
        padded.extend_from_slice(&[0xff; 8]);
        let mut c = Cur::padded(&padded, len, "t");
        check(&parse_ints(&mut c, vals.len()).unwrap());
        assert!(c.at_end());
    }

    #[test]
    fn dictionary_codes_out_of_range_are_refused() {
        // Three entries, codes packed 2 bits wide: the fourth row's code 3 is past the dictionary.
        let mut b = vec![TAG_DICT];
        put_varint(&mut b, 4);
        put_varint(&mut b, 3);
        for s in ["a", "b", "c"] {
            put_bytes(&mut b, s.as_bytes());
        }
        encode_ints(&mut b, &[0, 1, 2, 3]);
        let v = parse_strs(&mut Cur::new(&b, "t"), 4).unwrap();
        assert_eq!(v.gather(&[2, 0, 1]).unwrap().iter().map(|s| &**s).collect::<Vec<_>>(), ["c", "a", "b"]);
        assert_eq!(v.gather(&[0, 3]).unwrap_err().kind, crate::types::ErrorKind::Corrupt);
        assert!(decode_strs(&mut Cur::new(&b, "t"), 4).is_err());
    }

    proptest! {
        /// Reading a packed chunk in place (any width 0..=64, padded or
        /// not) agrees with its values: each value, all of them, a
        /// gather, and range selections over all rows and over a selection.
        #[test]
        fn packed_reads_agree_with_the_values(
            base in any::<i64>(),
            width in 0u32..=64,
            raw in proptest::collection::vec(any::<u64>(), 0..300),
            pick in proptest::collection::vec(any::<bool>(), 300),
            (lo, hi) in (any::<i64>(), any::<i64>()),
        ) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let vals: Vec<i64> = raw.iter().map(|&x| base.wrapping_add((x & mask) as i64)).collect();
            // Mostly bounds that are values, so that ranges cut them exactly at a value.
            let n = vals.len().max(1) as i64;
            let (lo, hi) = match (vals.get(lo.rem_euclid(n) as usize), vals.get(hi.rem_euclid(n) as usize)) {
                (Some(&a), Some(&b)) if lo % 4 != 0 => (a.min(b), a.max(b)),
                _ => (lo, hi),
            };
            let sel: Vec<u32> = (0..vals.len() as u32).filter(|&i| pick[i as usize]).collect();
            both_views(&vals, |v| {
                assert_eq!(v.len(), vals.len());
                assert!((0..vals.len()).all(|i| v.get(i) == vals[i]));
                let mut all = Vec::new();
                v.decode_into(&mut all);
                assert_eq!(all, vals);
                let mut got = Vec::new();
                v.gather_into(&sel, &mut got);
                assert!(got.iter().zip(&sel).all(|(&g, &i)| g == vals[i as usize]));
                let inr = |i: &u32| (lo..=hi).contains(&vals[*i as usize]);
                let mut out = Vec::new();
                v.select_range(lo, hi, None, &mut out);
                assert_eq!(out, (0..vals.len() as u32).filter(inr).collect::<Vec<_>>());
                v.select_range(lo, hi, Some(&sel), &mut out);
                assert_eq!(out, sel.iter().copied().filter(inr).collect::<Vec<_>>());
                v.select_by(Some(&sel), &mut out, |x| x % 3 == 0);
                assert_eq!(out, sel.iter().copied().filter(|&i| vals[i as usize] % 3 == 0).collect::<Vec<_>>());
            });
        }

        /// The same for run-length chunks.
        #[test]
        fn run_length_reads_agree(runs in proptest::collection::vec((-3i64..3, 1usize..40), 1..60), lo in -4i64..4, span in 0i64..4) {
            let vals: Vec<i64> = runs.iter().flat_map(|&(v, n)| core::iter::repeat_n(v, n)).collect();
            both_views(&vals, |v| {
                let mut out = Vec::new();
                v.select_range(lo, lo + span, None, &mut out);
                assert_eq!(out, (0..vals.len() as u32).filter(|&i| (lo..=lo + span).contains(&vals[i as usize])).collect::<Vec<_>>());
            });
        }

        #[test]
        fn ints_any(vals in proptest::collection::vec(any::<i64>(), 0..600)) {
            ints_round_trip(&vals);
        }

        #[test]
        fn ints_runs(vals in proptest::collection::vec((-3i64..3, 1usize..40), 0..60)) {
            let flat: Vec<i64> = vals.iter().flat_map(|&(v, n)| core::iter::repeat_n(v, n)).collect();
            ints_round_trip(&flat);
        }

        #[test]
        fn strs_any(vals in proptest::collection::vec("[a-c]{0,3}|\\PC{0,12}", 0..300)) {
            let mut b = Vec::new();
            encode_strs(&mut b, &vals);
            let d = decode_strs(&mut Cur::new(&b, "t"), vals.len()).unwrap();
            prop_assert!(d.iter().map(|s| &**s).eq(vals.iter().map(|s| s.as_str())));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), rows in 0usize..100) {
            let _ = decode_ints(&mut Cur::new(&bytes, "t"), rows);
            let _ = decode_strs(&mut Cur::new(&bytes, "t"), rows);
        }
    }
}

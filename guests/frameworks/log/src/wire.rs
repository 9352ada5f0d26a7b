//! Kafka's primitive types (non-flexible encodings): big-endian integers,
//! int16-length strings, int32-length bytes and arrays, nullables as -1.
//! Every read is bounds-checked: a short or lying frame is an error, never a
//! panic.

use alloc::string::String;
use alloc::vec::Vec;

/// A malformed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Reads a request body.
#[derive(Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed)?;
        let s = self.b.get(self.at..end).ok_or(Malformed)?;
        self.at = end;
        Ok(s)
    }
    pub fn i8(&mut self) -> Result<i8, Malformed> {
        Ok(self.take(1)?[0] as i8)
    }
    pub fn bool(&mut self) -> Result<bool, Malformed> {
        Ok(self.i8()? != 0)
    }
    pub fn i16(&mut self) -> Result<i16, Malformed> {
        let s = self.take(2)?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }
    pub fn i32(&mut self) -> Result<i32, Malformed> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub fn i64(&mut self) -> Result<i64, Malformed> {
        let s = self.take(8)?;
        let mut x = [0u8; 8];
        x.copy_from_slice(s);
        Ok(i64::from_be_bytes(x))
    }
    /// A nullable string (`None` for length -1).
    pub fn nstr(&mut self) -> Result<Option<&'a str>, Malformed> {
        let n = self.i16()?;
        if n < 0 {
            return if n == -1 { Ok(None) } else { Err(Malformed) };
        }
        let s = self.take(n as usize)?;
        core::str::from_utf8(s).map(Some).map_err(|_| Malformed)
    }
    pub fn str(&mut self) -> Result<&'a str, Malformed> {
        self.nstr()?.ok_or(Malformed)
    }
    /// Nullable bytes (`None` for length -1).
    pub fn nbytes(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        let n = self.i32()?;
        if n < 0 {
            return if n == -1 { Ok(None) } else { Err(Malformed) };
        }
        self.take(n as usize).map(Some)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        self.nbytes()?.ok_or(Malformed)
    }
    /// An array length (`None` for a null array); bounded by the bytes left
    /// so a lying count cannot make us allocate.
    pub fn narray(&mut self) -> Result<Option<usize>, Malformed> {
        let n = self.i32()?;
        if n < 0 {
            return if n == -1 { Ok(None) } else { Err(Malformed) };
        }
        if n as usize > self.remaining() {
            return Err(Malformed);
        }
        Ok(Some(n as usize))
    }
    pub fn array(&mut self) -> Result<usize, Malformed> {
        Ok(self.narray()?.unwrap_or(0))
    }
    /// Reads `n` items with `f`.
    pub fn list<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, Malformed>) -> Result<Vec<T>, Malformed> {
        let n = self.array()?;
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }
}

/// Builds a response.
#[derive(Debug, Default)]
pub struct Writer {
    pub b: Vec<u8>,
}

impl Writer {
    /// A response frame: length placeholder and correlation id (header v0).
    pub fn response(correlation: i32) -> Self {
        let mut w = Writer { b: Vec::with_capacity(64) };
        w.i32(0);
        w.i32(correlation);
        w
    }
    /// The frame with its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let n = (self.b.len() - 4) as i32;
        self.b[..4].copy_from_slice(&n.to_be_bytes());
        self.b
    }
    pub fn i8(&mut self, v: i8) {
        self.b.push(v as u8);
    }
    pub fn bool(&mut self, v: bool) {
        self.b.push(v as u8);
    }
    pub fn i16(&mut self, v: i16) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    pub fn str(&mut self, s: &str) {
        let n = s.len().min(i16::MAX as usize);
        self.i16(n as i16);
        self.b.extend_from_slice(&s.as_bytes()[..n]);
    }
    pub fn nstr(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.i16(-1),
        }
    }
    pub fn bytes(&mut self, s: &[u8]) {
        self.i32(s.len() as i32);
        self.b.extend_from_slice(s);
    }
    pub fn nbytes(&mut self, s: Option<&[u8]>) {
        match s {
            Some(s) => self.bytes(s),
            None => self.i32(-1),
        }
    }
    pub fn array(&mut self, n: usize) {
        self.i32(n as i32);
    }
}

/// Owned copy of a string read from a request.
pub fn own(s: &str) -> String {
    String::from(s)
}

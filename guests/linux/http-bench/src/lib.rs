//! The Linux side of comparison A's HTTP GET (tools/bench/compare-a-http):
//! the keep-alive client's request and its check of every answer, shared
//! by the binary and its host tests.

use std::io::{self, Read, Write};

/// The answer's body to `GET /`, on both sides of the comparison.
pub const BODY: &[u8] = b"Hello, World!";
/// The request the client sends (the RustHallows client sends the same).
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n";
/// Most bytes of one answer the client accepts.
pub const MAX_ANSWER: usize = 4096;

/// The whole length of the answer at the start of `b` once its head is
/// in, else `None`; an error for an answer the client refuses.
pub fn answer_len(b: &[u8]) -> Result<Option<usize>, String> {
    let Some(h) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        if b.len() > MAX_ANSWER {
            return Err(format!("no end of head in {} bytes", b.len()));
        }
        return Ok(None);
    };
    let mut len = None;
    for line in b[..h].split(|&c| c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&c| c == b':').ok_or("a header line without a colon")?;
        let name = &line[..colon];
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = std::str::from_utf8(&line[colon + 1..]).map_err(|_| "Content-Length not text")?;
            let n: usize = v.trim().parse().map_err(|_| format!("Content-Length {v:?} not a number"))?;
            if len.is_some_and(|l| l != n) {
                return Err("two different Content-Lengths".into());
            }
            len = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err("a chunked answer (a fixed body was expected)".into());
        }
    }
    let n = len.ok_or("no Content-Length")?;
    if n > MAX_ANSWER {
        return Err(format!("Content-Length {n} over {MAX_ANSWER}"));
    }
    Ok(Some(h + 4 + n))
}

/// Checks one whole answer: `HTTP/1.1 200` and the body [`BODY`].
pub fn check(answer: &[u8]) -> Result<(), String> {
    let h = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no head")?;
    if !answer.starts_with(b"HTTP/1.1 200 ") {
        return Err(format!("status line {:?}", String::from_utf8_lossy(&answer[..h.min(40)])));
    }
    if &answer[h + 4..] != BODY {
        return Err(format!("body {:?}", String::from_utf8_lossy(&answer[h + 4..])));
    }
    Ok(())
}

/// Sends [`REQUEST`] on `s` and reads one answer into `buf` (cleared
/// first); checks it. Keep-alive: the connection stays open.
pub fn get<S: Read + Write>(s: &mut S, buf: &mut Vec<u8>) -> Result<(), String> {
    s.write_all(REQUEST).map_err(|e| format!("write: {e}"))?;
    buf.clear();
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(len) = answer_len(buf)? {
            if buf.len() > len {
                return Err("bytes beyond the answer (none was asked)".into());
            }
            if buf.len() == len {
                return check(buf);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that answers from a fixed byte string, in pieces of `step`.
    struct Canned {
        out: Vec<u8>,
        at: usize,
        step: usize,
        written: Vec<u8>,
    }

    impl Read for Canned {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(b.len()).min(self.out.len() - self.at);
            b[..n].copy_from_slice(&self.out[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Canned {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run(answer: &[u8], step: usize) -> Result<(), String> {
        let mut s = Canned { out: answer.to_vec(), at: 0, step, written: Vec::new() };
        let r = get(&mut s, &mut Vec::new());
        assert_eq!(s.written, REQUEST);
        r
    }

    #[test]
    fn accepts_the_answer_in_any_pieces() {
        let a = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 13\r\n\r\nHello, World!";
        for step in [1, 7, a.len()] {
            assert_eq!(run(a, step), Ok(()));
        }
    }

    #[test]
    fn refuses_wrong_answers() {
        assert!(run(b"HTTP/1.1 404 Not Found\r\ncontent-length: 13\r\n\r\nHello, World!", 64).unwrap_err().contains("status"));
        assert!(run(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nHello, world!", 64).unwrap_err().contains("body"));
        assert!(run(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", 64).unwrap_err().contains("chunked"));
        assert!(run(b"HTTP/1.1 200 OK\r\n\r\n", 64).unwrap_err().contains("Content-Length"));
        assert!(run(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nHello", 64).unwrap_err().contains("closed"));
        assert!(run(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd", 64).unwrap_err().contains("two"));
    }
}

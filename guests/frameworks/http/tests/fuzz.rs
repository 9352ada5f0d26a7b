//! Property tests of the whole engine: any bytes, cut anywhere, never
//! panic; every answer is a well-formed HTTP/1.1 response (status line,
//! headers, exactly Content-Length bytes of body); memory stays within
//! the limits.

#[allow(dead_code)]
mod common;
use common::app;
use hallows_http::{Conn, Event, Limits};
use proptest::prelude::*;

fn limits() -> Limits {
    Limits { max_head: 512, max_headers: 8, max_uri: 64, max_body: 256, request_timeout: 1_000, idle_timeout: 1_000, max_output: 2048 }
}

/// Runs `pieces` through a connection; returns the output and, per answer,
/// whether it was to a HEAD request.
fn run(pieces: &[Vec<u8>]) -> (Vec<u8>, Vec<bool>) {
    let l = limits();
    let mut c = Conn::new(l, 0);
    let mut out = Vec::new();
    let mut heads = Vec::new();
    let mut next = 0;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 100_000, "no progress");
        let (input, owed) = c.footprint();
        assert!(input <= l.max_head + 2 * l.max_body, "input buffer {input}");
        assert!(owed <= l.max_output + 4096, "output owed {owed}");
        match c.next(next as u64) {
            Event::Request(r) => {
                heads.push(r.method == "HEAD");
                let (s, h, b) = app(&r);
                let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                c.respond(s, &h, &b);
            }
            Event::Write => {
                out.extend_from_slice(c.output());
                let n = c.output().len();
                c.written(n);
            }
            Event::Read => match pieces.get(next) {
                Some(p) => {
                    next += 1;
                    c.received(p, next as u64);
                }
                None => break,
            },
            Event::Close => break,
        }
    }
    (out, heads)
}

/// Checks that `out` is a sequence of complete responses.
fn well_formed(out: &[u8], heads: &[bool]) -> Result<usize, String> {
    let mut at = 0;
    let mut n = 0;
    let mut answers = heads.iter();
    while at < out.len() {
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut hs);
        let len = match r.parse(&out[at..]) {
            Ok(httparse::Status::Complete(len)) => len,
            other => return Err(format!("response {n} at {at} does not parse: {other:?}: {:?}", String::from_utf8_lossy(&out[at..]))),
        };
        let code = r.code.unwrap_or(0);
        if r.version != Some(1) || !(100..600).contains(&code) {
            return Err(format!("bad status line in response {n}"));
        }
        let cl = r.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        at += len;
        if code == 100 {
            continue;
        }
        // An engine refusal (4xx/5xx with Connection: close, no request
        // handed out) has its body; an answer to HEAD has none.
        let refusal = r.headers.iter().any(|h| h.name == "Connection" && h.value == b"close") && code >= 400 && !matches!(code, 404 | 405 | 500);
        let head = if refusal { false } else { *answers.next().ok_or("more answers than requests")? };
        let body = if head { 0 } else { cl.ok_or(format!("response {n} has no Content-Length"))? };
        if out.len() - at < body {
            return Err(format!("response {n}: body cut short"));
        }
        at += body;
        n += 1;
    }
    Ok(n)
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let lit = |v: &[&'static str]| proptest::sample::select(v.to_vec()).prop_map(str::to_owned);
    let method = lit(&["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "G T", ""]);
    let target = prop_oneof![lit(&["/", "/a?b=c", "/missing", "/only-get", "/fail", "*", "http://h/x"]), "[/a-z%?=]{0,80}"];
    let version = lit(&["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x", ""]);
    let header = prop_oneof![
        Just("Host: h".to_owned()),
        Just("Connection: close".to_owned()),
        Just("Connection: keep-alive".to_owned()),
        Just("Expect: 100-continue".to_owned()),
        Just("Transfer-Encoding: chunked".to_owned()),
        "Content-Length: [0-9+-]{0,4}",
        "[A-Za-z-]{1,8}: [ -~]{0,40}",
        "[ -~]{0,20}",
    ];
    let body = prop_oneof![
        "[ -~]{0,40}",
        Just("4\r\nWiki\r\n0\r\n\r\n".to_owned()),
        "([0-9a-fA-F]{1,3}\r\n[a-z]{0,20}\r\n){0,3}0\r\n\r\n",
    ];
    (method, target, version, proptest::collection::vec(header, 0..10), body).prop_map(|(m, t, v, hs, b)| {
        let mut s = format!("{m} {t} {v}\r\n");
        for h in hs {
            s.push_str(&h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.push_str(&b);
        s.into_bytes()
    })
}

fn cut(bytes: Vec<u8>, cuts: Vec<usize>) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        out.push(bytes[at..c].to_vec());
        at = c;
    }
    out.push(bytes[at..].to_vec());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let (out, heads) = run(&cut(bytes, cuts));
        prop_assert!(well_formed(&out, &heads).is_ok(), "{:?}", well_formed(&out, &heads));
    }

    #[test]
    fn pipelined_near_valid_requests_get_well_formed_answers(reqs in proptest::collection::vec(request(), 1..6), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let (out, heads) = run(&cut(reqs.concat(), cuts));
        let r = well_formed(&out, &heads);
        prop_assert!(r.is_ok(), "{:?}", r);
    }

    #[test]
    fn oversized_input_stays_bounded(len in 0usize..20_000, fill in any::<u8>()) {
        let mut req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend(std::iter::repeat_n(fill, len));
        let (out, heads) = run(&[req]);
        prop_assert!(well_formed(&out, &heads).is_ok());
    }
}

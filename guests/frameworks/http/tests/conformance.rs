//! The conformance table: raw requests (well-formed, malformed, oversized,
//! pipelined, chunked) and the exact bytes answered, each fed whole and
//! one byte a read (the same answer either way), plus timeouts, 100
//! Continue and refusal.

#[allow(dead_code)]
mod common;
use common::*;
use hallows_http::{Conn, Event, Limits};

fn limits() -> Limits {
    Limits { max_head: 1024, max_headers: 8, max_uri: 128, max_body: 1024, request_timeout: 5_000_000_000, idle_timeout: 10_000_000_000, max_output: 64 * 1024 }
}

fn ok(method: &str, path: &str, query: &str, host: &str, body: &str, keep: bool) -> String {
    let json = format!("{{\"method\":\"{method}\",\"path\":\"{path}\",\"query\":\"{query}\",\"host\":\"{host}\",\"body\":\"{body}\"}}");
    let conn = if keep { "keep-alive" } else { "close" };
    let send = if method == "HEAD" { "" } else { &json };
    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{send}", json.len())
}

fn get(path: &str) -> String {
    ok("GET", path, "", "h", "", true)
}

fn err(status: &str, extra: &str, msg: &str, keep: bool) -> String {
    let body = format!("{{\"error\":\"{msg}\"}}");
    let conn = if keep { "keep-alive" } else { "close" };
    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: {conn}\r\n\r\n{body}", body.len())
}

/// (name, input, expected output, closed)
fn table() -> Vec<(&'static str, String, String, bool)> {
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(200));
    let big_header = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n", "b".repeat(1100));
    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    let too_many = format!("GET / HTTP/1.1\r\n{many}\r\n");
    let just_enough: String = (0..7).map(|i| format!("X-{i}: v\r\n")).collect();
    vec![
        ("get", "GET /a HTTP/1.1\r\nHost: h\r\n\r\n".into(), get("/a"), false),
        ("query", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n".into(), ok("GET", "/a/b", "x=1&y=2", "h", "", true), false),
        ("http/1.0 closes", "GET / HTTP/1.0\r\nHost: h\r\n\r\n".into(), ok("GET", "/", "", "h", "", false), true),
        ("http/1.0 keep-alive", "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n".into(), ok("GET", "/", "", "h", "", true), false),
        ("connection close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n".into(), ok("GET", "/", "", "h", "", false), true),
        ("content-length body", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello".into(), ok("POST", "/p", "", "h", "hello", true), false),
        ("empty body", "PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n".into(), ok("PUT", "/p", "", "h", "", true), false),
        ("duplicate equal lengths", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi".into(), ok("POST", "/p", "", "h", "hi", true), false),
        ("chunked", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n".into(), ok("POST", "/c", "", "h", "Wikipedia", true), false),
        ("chunk extensions and trailers", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n4;name=v\r\nWiki\r\n0\r\nX-Sum: 1\r\n\r\n".into(), ok("POST", "/c", "", "h", "Wiki", true), false),
        ("head", "HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n".into(), ok("HEAD", "/a", "", "h", "", true), false),
        ("pipelined", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nPOST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nz".into(), get("/1") + &get("/2") + &ok("POST", "/3", "", "h", "z", true), false),
        ("pipelined, the second malformed", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nBad Header\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n".into(), get("/1") + &err("400 Bad Request", "", "malformed request", false), true),
        ("absolute-form", "GET http://example.com/x?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), ok("GET", "/x", "q=1", "example.com", "", true), false),
        ("options *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n".into(), ok("OPTIONS", "*", "", "h", "", true), false),
        ("seven headers", format!("GET / HTTP/1.1\r\nHost: h\r\n{just_enough}\r\n"), get("/"), false),
        ("404 from the application", "GET /missing HTTP/1.1\r\nHost: h\r\n\r\n".into(), err("404 Not Found", "", "no such route", true), false),
        ("405 from the application", "DELETE /only-get HTTP/1.1\r\nHost: h\r\n\r\n".into(), err("405 Method Not Allowed", "Allow: GET, HEAD\r\n", "method not allowed", true), false),
        ("500 from the application", "GET /fail HTTP/1.1\r\nHost: h\r\n\r\n".into(), err("500 Internal Server Error", "", "internal error", true), false),
        ("malformed request line", "GARBAGE\r\n\r\n".into(), err("400 Bad Request", "", "malformed request", false), true),
        ("header without colon", "GET / HTTP/1.1\r\nHost h\r\n\r\n".into(), err("400 Bad Request", "", "malformed request", false), true),
        ("obsolete line folding", "GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n".into(), err("400 Bad Request", "", "malformed request", false), true),
        ("target not a path", "GET foo HTTP/1.1\r\nHost: h\r\n\r\n".into(), err("400 Bad Request", "", "the request target must be a path", false), true),
        ("length and chunked", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), err("400 Bad Request", "", "both Content-Length and Transfer-Encoding", false), true),
        ("differing lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into(), err("400 Bad Request", "", "invalid Content-Length", false), true),
        ("negative length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".into(), err("400 Bad Request", "", "invalid Content-Length", false), true),
        ("signed length", "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx".into(), err("400 Bad Request", "", "invalid Content-Length", false), true),
        ("huge length", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".into(), err("400 Bad Request", "", "invalid Content-Length", false), true),
        ("bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), err("400 Bad Request", "", "malformed chunk size", false), true),
        ("chunk without its CRLF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n".into(), err("400 Bad Request", "", "a chunk does not end with CRLF", false), true),
        ("chunked not last", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(), err("400 Bad Request", "", "chunked must be the last transfer coding", false), true),
        ("chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), err("400 Bad Request", "", "Transfer-Encoding in an HTTP/1.0 request", false), true),
        ("post without a length", "POST / HTTP/1.1\r\nHost: h\r\n\r\n".into(), err("411 Length Required", "", "a body needs a Content-Length or chunked encoding", false), true),
        ("body too large", "POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n".into(), err("413 Content Too Large", "", "the body is too large", false), true),
        ("chunked body too large", format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n300\r\n{}\r\n300\r\n{}\r\n0\r\n\r\n", "a".repeat(768), "b".repeat(768)), err("413 Content Too Large", "", "the body is too large", false), true),
        ("uri too long", long_uri, err("414 URI Too Long", "", "the request target is too long", false), true),
        ("unknown expectation", "GET / HTTP/1.1\r\nExpect: magic\r\n\r\n".into(), err("417 Expectation Failed", "", "the only expectation served is 100-continue", false), true),
        ("head too large", big_header, err("431 Request Header Fields Too Large", "", "the request head is too large", false), true),
        ("too many headers", too_many, err("431 Request Header Fields Too Large", "", "too many header fields", false), true),
        ("unknown transfer coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".into(), err("501 Not Implemented", "", "the only transfer coding served is chunked", false), true),
        ("http/2", "GET / HTTP/2.0\r\nHost: h\r\n\r\n".into(), err("505 HTTP Version Not Supported", "", "only HTTP/1.0 and HTTP/1.1 are served", false), true),
    ]
}

#[test]
fn every_row_whole_and_byte_by_byte() {
    let mut failures = Vec::new();
    let rows = table();
    assert!(rows.len() >= 40);
    for (name, input, want, closed) in rows {
        for (how, got) in [("whole", whole(limits(), input.as_bytes())), ("byte by byte", bytewise(limits(), input.as_bytes()))] {
            if got.output != want || got.closed != closed {
                failures.push(format!("{name} ({how}):\n  want {want:?} closed={closed}\n  got  {:?} closed={}", got.output, got.closed));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn random_splits_give_the_same_answers() {
    // A deterministic generator: every row cut at 1..=4 random points.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    for (name, input, want, closed) in table() {
        let b = input.as_bytes();
        for _ in 0..20 {
            let mut cuts: Vec<usize> = (0..1 + rand(4)).map(|_| rand(b.len())).collect();
            cuts.sort();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                pieces.push(&b[at..c]);
                at = c;
            }
            pieces.push(&b[at..]);
            let got = drive(limits(), &pieces);
            assert_eq!((got.output.as_str(), got.closed), (want.as_str(), closed), "{name} cut as {pieces:?}");
        }
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let head: &[u8] = b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let got = drive(limits(), &[head, b"abc"]);
    assert_eq!(got.output, "HTTP/1.1 100 Continue\r\n\r\n".to_owned() + &ok("POST", "/up", "", "h", "abc", true));
    // Body already there: no interim answer.
    let got = whole(limits(), &[head, b"abc"].concat());
    assert_eq!(got.output, ok("POST", "/up", "", "h", "abc", true));
    // A too-large body is refused at once, not continued.
    let got = whole(limits(), b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    assert_eq!(got.output, err("413 Content Too Large", "", "the body is too large", false));
}

#[test]
fn a_slow_request_gets_408_and_an_idle_one_is_closed() {
    let l = limits();
    let mut c = Conn::new(l, 0);
    c.received(b"GET / HTTP/1.1\r\nHo", 1_000);
    assert!(matches!(c.next(1_000), Event::Read));
    assert_eq!(c.deadline(), 1_000 + l.request_timeout);
    c.timed_out(l.request_timeout); // early: ignored
    assert!(matches!(c.next(2_000), Event::Read));
    c.timed_out(1_000 + l.request_timeout);
    assert!(matches!(c.next(1_000 + l.request_timeout), Event::Write));
    assert_eq!(String::from_utf8_lossy(c.output()), err("408 Request Timeout", "", "the request was not received in time", false));
    let n = c.output().len();
    c.written(n);
    assert!(matches!(c.next(0), Event::Close));
    // Idle between requests: closed without a word.
    let mut c = Conn::new(l, 0);
    c.received(b"GET / HTTP/1.1\r\n\r\n", 5);
    let Event::Request(_) = c.next(5) else { panic!() };
    c.respond(204, &[], b"");
    let n = c.output().len();
    c.written(n);
    assert!(matches!(c.next(10), Event::Read));
    assert_eq!(c.deadline(), 10 + l.idle_timeout);
    c.timed_out(10 + l.idle_timeout);
    assert!(matches!(c.next(10 + l.idle_timeout), Event::Close));
}

#[test]
fn refuse_answers_503_and_closes() {
    let mut c = Conn::new(limits(), 0);
    c.refuse();
    assert!(matches!(c.next(0), Event::Write));
    assert_eq!(String::from_utf8_lossy(c.output()), err("503 Service Unavailable", "", "the server is overloaded; try again later", false));
}

#[test]
fn a_response_header_with_a_line_break_is_dropped() {
    let mut c = Conn::new(limits(), 0);
    c.received(b"GET / HTTP/1.1\r\n\r\n", 0);
    let Event::Request(_) = c.next(0) else { panic!() };
    c.respond(200, &[("X-Ok", b"1"), ("X-Evil", b"a\r\nSet-Cookie: x"), ("Bad Name", b"v")], b"");
    assert_eq!(String::from_utf8_lossy(c.output()), "HTTP/1.1 200 OK\r\nX-Ok: 1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

#[test]
fn a_client_that_pipelines_without_reading_stalls_itself() {
    let l = Limits { max_output: 1000, ..limits() };
    let mut c = Conn::new(l, 0);
    let one = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 30).collect();
    c.received(&many, 0);
    let mut answered = 0;
    while let Event::Request(r) = c.next(0) {
        let (s, h, b) = app(&r);
        let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        c.respond(s, &h, &b);
        answered += 1;
    }
    assert!(answered < 30 && c.output().len() <= 1000 + 200, "{answered} answered, {} bytes owed", c.output().len());
    let n = c.output().len();
    c.written(n);
    while let Event::Request(r) = c.next(0) {
        let (s, h, b) = app(&r);
        let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        c.respond(s, &h, &b);
        answered += 1;
    }
    assert!(answered > 5);
}

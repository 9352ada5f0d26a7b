//! A test driver: feeds input to a `Conn` in pieces, answers requests with
//! a small application, collects everything written.

use hallows_http::{error_body, Conn, Event, Limits, Request};

/// The application: `/missing` 404, `/only-get` 405 for other methods,
/// `/fail` 500, anything else 200 with a JSON description of the request.
/// Status, headers, body.
pub type Answer = (u16, Vec<(&'static str, Vec<u8>)>, Vec<u8>);

pub fn app(r: &Request<'_>) -> Answer {
    let json = ("Content-Type", b"application/json".to_vec());
    let mut body = Vec::new();
    match r.path {
        "/missing" => {
            error_body("no such route", &mut body);
            (404, vec![json], body)
        }
        "/only-get" if r.method != "GET" && r.method != "HEAD" => {
            error_body("method not allowed", &mut body);
            (405, vec![json, ("Allow", b"GET, HEAD".to_vec())], body)
        }
        "/fail" => {
            error_body("internal error", &mut body);
            (500, vec![json], body)
        }
        _ => {
            let host = r.header("host").map(|h| String::from_utf8_lossy(h).into_owned()).unwrap_or_default();
            let text = format!(
                "{{\"method\":\"{}\",\"path\":\"{}\",\"query\":\"{}\",\"host\":\"{}\",\"body\":\"{}\"}}",
                r.method,
                r.path,
                r.query,
                host,
                String::from_utf8_lossy(r.body)
            );
            (200, vec![json], text.into_bytes())
        }
    }
}

/// What the connection wrote, and whether it closed.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub output: String,
    pub closed: bool,
}

/// Feeds `pieces` one read each (time advancing 1 ms a read), answering
/// every request; stops when the connection closes or wants input that
/// is not there.
pub fn drive(limits: Limits, pieces: &[&[u8]]) -> Outcome {
    let mut c = Conn::new(limits, 0);
    let mut out = Vec::new();
    let mut next = 0;
    let mut now = 0u64;
    loop {
        match c.next(now) {
            Event::Request(r) => {
                let (status, headers, body) = app(&r);
                let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                c.respond(status, &h, &body);
            }
            Event::Write => {
                out.extend_from_slice(c.output());
                let n = c.output().len();
                c.written(n);
            }
            Event::Read => {
                let Some(p) = pieces.get(next) else { break };
                next += 1;
                now += 1_000_000;
                c.received(p, now);
            }
            Event::Close => return Outcome { output: String::from_utf8_lossy(&out).into_owned(), closed: true },
        }
    }
    Outcome { output: String::from_utf8_lossy(&out).into_owned(), closed: false }
}

/// `input` fed whole.
pub fn whole(limits: Limits, input: &[u8]) -> Outcome {
    drive(limits, &[input])
}

/// `input` fed one byte a read.
pub fn bytewise(limits: Limits, input: &[u8]) -> Outcome {
    let pieces: Vec<&[u8]> = input.chunks(1).collect();
    drive(limits, &pieces)
}

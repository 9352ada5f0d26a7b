//! Basilisk under the `api` scheduler (guests/tests/api-sched): while
//! CPU-bound slow requests keep the partition's one core busy, fast
//! requests are still answered within milliseconds, because a request
//! that has run its quantum while another waits is preempted. The same
//! load under run-to-completion FIFO shows the fast requests queueing
//! behind the slow ones: the comparison proves the test can tell.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hallows_tests::*;

/// A keep-alive HTTP/1.1 client: one request, its status and body.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn request(&mut self, method: &str, path: &str) -> (u16, String) {
        // One write: one segment.
        self.w
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .expect("send");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {line:?}"));
        let mut len = 0;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("Content-Length");
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// What one boot measured.
struct Load {
    /// GET /fast round trips, sorted (ms).
    fast: Vec<f64>,
    /// GET /slow round trips (ms).
    slow: Vec<f64>,
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

const SLOW_MS: u64 = 300;
const SLOW_CLIENTS: usize = 2;
const FAST_REQUESTS: usize = 30;

/// Boots `tests/systems/<system>.toml`, keeps `SLOW_CLIENTS` connections
/// asking for `GET /slow/300` back to back, and times `FAST_REQUESTS`
/// `GET /fast` (50 ms apart) on another connection meanwhile.
fn measure(system: &str) -> Load {
    let mut run = start_system(system, &[]);
    let port = run.host_port("api", 8080);
    run.wait_http(port, "/fast", Duration::from_secs(240));
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut times = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let t = Instant::now();
                    let (status, body) = c.request("GET", &format!("/slow/{SLOW_MS}"));
                    assert_eq!(status, 200, "{body}");
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                times
            })
        })
        .collect();
    // The slow requests are running.
    std::thread::sleep(Duration::from_millis(1000));
    let mut c = Client::connect(port);
    let mut fast = Vec::new();
    for _ in 0..FAST_REQUESTS {
        let t = Instant::now();
        let (status, body) = c.request("GET", "/fast");
        assert_eq!((status, body.as_str()), (200, r#"{"fast":true}"#));
        fast.push(t.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Release);
    let slow: Vec<f64> = slow
        .into_iter()
        .flat_map(|h| h.join().expect("a slow client failed"))
        .collect();
    // A slow request beyond the limit is refused, not run.
    assert_eq!(c.request("GET", "/slow/5001").0, 422);
    assert_eq!(c.request("POST", "/quit").0, 200);
    let b = run.wait();
    b.assert_status(0);
    let policy = if system.ends_with("fifo") {
        "fifo"
    } else {
        "api"
    };
    assert!(
        b.output.contains(&format!("policy {policy}")),
        "{}",
        b.output
    );
    assert!(b.output.contains("api-sched: bye"), "{}", b.output);
    fast.sort_by(f64::total_cmp);
    Load { fast, slow }
}

#[test]
fn a_slow_route_does_not_hold_up_a_fast_one_under_the_api_scheduler() {
    let api = measure("api-sched");
    let fifo = measure("api-sched-fifo");
    for (name, l) in [
        ("api (spec, 1 ms quantum)", &api),
        ("fifo, run to completion", &fifo),
    ] {
        let slow_mean = l.slow.iter().sum::<f64>() / l.slow.len().max(1) as f64;
        eprintln!(
            "{name}: GET /fast p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} requests); GET /slow/{SLOW_MS}: {} done, mean {:.0} ms",
            pct(&l.fast, 0.5),
            pct(&l.fast, 0.9),
            pct(&l.fast, 1.0),
            l.fast.len(),
            l.slow.len(),
            slow_mean
        );
        assert!(!l.slow.is_empty(), "{name}: no slow request completed");
    }
    // Under load, fast requests wait for no slow one under `api`...
    assert!(
        pct(&api.fast, 0.9) < 100.0,
        "api: fast p90 {:.1} ms",
        pct(&api.fast, 0.9)
    );
    // ... and queue behind them when every task runs to completion.
    assert!(
        pct(&fifo.fast, 0.5) > 100.0,
        "fifo: fast p50 {:.1} ms",
        pct(&fifo.fast, 0.5)
    );
}

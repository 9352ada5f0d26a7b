//! `http-get-bench`: the Linux side of comparison A's HTTP GET
//! (tools/bench/compare-a-http), one static binary in the bench initramfs.
//!
//! * `http-get-bench server`: `GET /` answers `Hello, World!` (axum on a
//!   tokio current-thread runtime: one thread, the strongest setting for
//!   one client), on 127.0.0.1:8080 and the Unix socket /tmp/http.sock.
//! * `http-get-bench client tcp|unix N`: one keep-alive connection, N
//!   `GET /`, one in flight, each answer checked; prints
//!   `rps=R p50_us=P p99_us=Q` (the machine's own clock) and exits 1 at the
//!   first wrong answer.
//! * `http-get-bench bench A B tcp unix [tuned]`: the driver the init runs
//!   (`hallows.test=exec`): starts the server (tuned: on CPU 1, the client
//!   on CPU 0, `net.core.busy_poll`/`busy_read` 50), then per transport a
//!   warm-up client run of A requests and runs of A and B, each client
//!   process between two `/bin/bench-mark`s (the counting plugin's
//!   snapshots): what both runs share (process start, connect) cancels.
use std::future::IntoFuture;
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use linux_http_bench::{get, BODY};

const TCP: &str = "127.0.0.1:8080";
const UNIX: &str = "/tmp/http.sock";

fn server() -> Result<(), String> {
    use axum::routing::get;
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let app = axum::Router::new().route("/", get(|| async { BODY }));
        let tcp = tokio::net::TcpListener::bind(TCP).await.map_err(|e| format!("bind {TCP}: {e}"))?;
        let _ = std::fs::remove_file(UNIX);
        let unix = tokio::net::UnixListener::bind(UNIX).map_err(|e| format!("bind {UNIX}: {e}"))?;
        let on_unix = tokio::spawn(axum::serve(unix, app.clone()).into_future());
        axum::serve(tcp, app).await.map_err(|e| format!("serve tcp: {e}"))?;
        on_unix.await.map_err(|e| format!("serve unix: {e}"))?.map_err(|e| format!("serve unix: {e}"))
    })
}

fn client(via: &str, n: u32) -> Result<String, String> {
    let mut buf = Vec::with_capacity(linux_http_bench::MAX_ANSWER);
    let mut lat = Vec::with_capacity(n as usize);
    let mut run = |s: &mut dyn FnMut(&mut Vec<u8>) -> Result<(), String>| -> Result<Duration, String> {
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            s(&mut buf).map_err(|e| format!("GET {i}: {e}"))?;
            lat.push(t.elapsed());
        }
        Ok(start.elapsed())
    };
    let took = match via {
        "tcp" => {
            let mut s = std::net::TcpStream::connect(TCP).map_err(|e| format!("connect {TCP}: {e}"))?;
            s.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
            run(&mut |b| get(&mut s, b))?
        }
        "unix" => {
            let mut s = std::os::unix::net::UnixStream::connect(UNIX).map_err(|e| format!("connect {UNIX}: {e}"))?;
            run(&mut |b| get(&mut s, b))?
        }
        _ => return Err(format!("transport {via}: tcp or unix")),
    };
    lat.sort_unstable();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1e6;
    Ok(format!("rps={:.0} p50_us={:.3} p99_us={:.3}", f64::from(n) / took.as_secs_f64(), pct(50), pct(99)))
}

fn mark() -> Result<(), String> {
    match Command::new("/bin/bench-mark").status() {
        Ok(s) if s.success() => Ok(()),
        r => Err(format!("/bin/bench-mark: {r:?}")),
    }
}

fn bench(ns: &str, vias: &str, tuned: bool) -> Result<(), String> {
    let ns: Vec<u32> = ns.split(',').map(|n| n.parse().map_err(|_| format!("request count {n:?}"))).collect::<Result<_, _>>()?;
    if ns.len() != 2 || ns[0] == 0 || ns[1] <= ns[0] {
        return Err("A,B with 0 < A < B".into());
    }
    let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let pinned = |cpu: &str| {
        let mut c = if tuned { Command::new("taskset") } else { Command::new(&me) };
        if tuned {
            c.args(["-c", cpu]).arg(&me);
        }
        c
    };
    // The init's exec mode leaves the loopback interface down.
    match Command::new("ip").args(["link", "set", "lo", "up"]).status() {
        Ok(s) if s.success() => {}
        r => return Err(format!("ip link set lo up: {r:?}")),
    }
    if tuned {
        for f in ["/proc/sys/net/core/busy_poll", "/proc/sys/net/core/busy_read"] {
            std::fs::write(f, "50").map_err(|e| format!("{f}: {e}"))?;
        }
    }
    println!("http-get-bench: {} (busy_poll {})", if tuned { "tuned: server on CPU 1, client on CPU 0" } else { "defaults: nothing pinned" },
        std::fs::read_to_string("/proc/sys/net/core/busy_poll").unwrap_or_default().trim());
    let mut srv = pinned("1").arg("server").spawn().map_err(|e| format!("server: {e}"))?;
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(TCP).is_ok() && std::os::unix::net::UnixStream::connect(UNIX).is_ok()
    });
    let mut result = if up { Ok(()) } else { Err("the server never listened".to_string()) };
    let run_client = |via: &str, n: u32| -> Result<String, String> {
        let out = pinned("0").args(["client", via, &n.to_string()]).stderr(Stdio::inherit()).output().map_err(|e| format!("client: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() { Ok(text) } else { Err(format!("client {via} {n}: {:?} {text}", out.status)) }
    };
    for via in vias.split(',').filter(|_| up) {
        // Warm-up, not measured: first-use costs stay out of both runs.
        if let Err(e) = run_client(via, ns[0]) {
            result = Err(e);
            break;
        }
        for &n in &ns {
            let r = mark().and_then(|()| run_client(via, n)).and_then(|s| mark().map(|()| s));
            match r {
                Ok(s) => println!("http-get-bench: {via} get {n} {s}"),
                Err(e) => result = Err(e),
            }
        }
    }
    if up && result.is_ok() && std::net::TcpStream::connect(TCP).is_err() {
        result = Err("the server stopped".into());
    }
    let _ = srv.kill();
    let _ = srv.wait();
    let _ = std::io::stdout().flush();
    result
}

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = match a.as_slice() {
        ["server"] => server(),
        ["client", via, n] => n.parse().map_err(|_| format!("count {n:?}")).and_then(|n| client(via, n)).map(|s| println!("{s}")),
        // Spaces, not commas: the init's exec mode turns commas into spaces.
        ["bench", a, b, rest @ ..] if !rest.is_empty() => {
            let tuned = rest.last() == Some(&"tuned");
            let vias = &rest[..rest.len() - usize::from(tuned)];
            bench(&format!("{a},{b}"), &vias.join(","), tuned)
        }
        _ => Err("usage: http-get-bench server | client tcp|unix N | bench A B tcp|unix... [tuned]".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-get-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

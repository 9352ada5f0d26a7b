//! Network test guest: a small HTTP/1.1 server and a TCP echo
//! service on `hallows-net`.
//!
//! * HTTP on the first port of the manifest's `listen` (else `http_port=`,
//!   else 80), keep-alive and pipelining: `GET /` answers a line naming
//!   the partition, `GET /stats` the network counters
//!   (`hallows_net::stats()`).
//! * Echo on the second `listen` port (else `echo_port=`, else 7), TCP and
//!   UDP: every byte read (every datagram) is sent back.
//! * Test endpoints, with the boot argument `quit`: `GET /quit` answers,
//!   then the guest waits for its connections to close (at most 3 s),
//!   prints `net stats: ...` and exits 0; `GET /udp` sends a TFTP read
//!   request to the router (QEMU's user network answers it with a TFTP
//!   error when it serves no files) and answers `udp ok` when a reply
//!   datagram came back: a UDP round trip, which `restrict=on` allows
//!   with QEMU's own services only.
//!
//! Limits (so that no client can hold memory or a task for long): a
//! request head of at most [`MAX_HEAD`] bytes (431 beyond; 400 for a
//! malformed request, 413 for a body over [`MAX_BODY`], 405 for a method
//! other than GET/HEAD); [`IDLE`] to start a request (keep-alive idle),
//! [`HEAD_TIME`] to finish its head (slowloris: 408 and close), [`WRITE_TIME`]
//! to hand a response to a client that does not read; the echo service
//! closes a connection idle for [`ECHO_IDLE`] or not reading for
//! [`WRITE_TIME`].
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use hallows_rt::Boot;

hallows_rt::entry!(main);

fn main(boot: &Boot) -> u64 {
    let b = boot.clone();
    hallows_rt::task::run(boot, serve(b))
}

/// Most bytes of a request head (request line and headers).
pub const MAX_HEAD: usize = 4096;
/// Most bytes of a request body (read and discarded).
pub const MAX_BODY: usize = 4096;
/// Time to the first byte of a request (and keep-alive idle time).
pub const IDLE: core::time::Duration = core::time::Duration::from_secs(5);
/// Time from the first byte of a request head to its end.
pub const HEAD_TIME: core::time::Duration = core::time::Duration::from_secs(5);
/// Time to hand a response (or echoed bytes) to the send buffer.
pub const WRITE_TIME: core::time::Duration = core::time::Duration::from_secs(5);
/// The echo service closes a connection idle this long.
pub const ECHO_IDLE: core::time::Duration = core::time::Duration::from_secs(10);

use app::serve;

mod app {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;
    use core::future::poll_fn;
    use core::sync::atomic::{AtomicBool, Ordering};
    use core::task::{Poll, Waker};
    use core::time::Duration;

    use hallows_net::{stats, with_timeout, TcpListener, TcpStream, UdpSocket};
    use hallows_rt::task::spawn;
    use hallows_rt::{println, time, Boot};

    use super::{ECHO_IDLE, HEAD_TIME, IDLE, MAX_BODY, MAX_HEAD, WRITE_TIME};

    static QUIT: AtomicBool = AtomicBool::new(false);
    /// The answers to `GET /`: with `Connection: close`, with keep-alive.
    static HELLO: spin::Once<[String; 2]> = spin::Once::new();
    static QUIT_WAKER: hallows_rt::sync::Mutex<Option<Waker>> = hallows_rt::sync::Mutex::new(None);

    fn quit() {
        QUIT.store(true, Ordering::Release);
        if let Some(w) = QUIT_WAKER.lock().take() {
            w.wake();
        }
    }

    async fn quit_requested() {
        poll_fn(|cx| {
            *QUIT_WAKER.lock() = Some(cx.waker().clone());
            if QUIT.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    pub async fn serve(boot: Boot) -> u64 {
        let cfg = match hallows_net::init(&boot) {
            Ok(c) => c,
            Err(e) => {
                println!("net: init failed: {e}");
                return 1;
            }
        };
        let net = &boot.info().net;
        let http_port = if net.listen_count > 0 && net.listen[0] != 0 {
            net.listen[0]
        } else {
            boot.arg("http_port").and_then(|p| p.parse().ok()).unwrap_or(80)
        };
        let echo_port = if net.listen_count > 1 && net.listen[1] != 0 {
            net.listen[1]
        } else {
            boot.arg("echo_port").and_then(|p| p.parse().ok()).unwrap_or(7)
        };
        let quit_enabled = boot.has("quit");
        let name: &'static str = alloc::boxed::Box::leak(String::from(boot.name()).into_boxed_str());
        let (Ok(mut http), Ok(mut echo)) = (TcpListener::bind(http_port), TcpListener::bind(echo_port)) else {
            println!("net: cannot listen on {http_port} and {echo_port}");
            return 1;
        };
        spawn(async move {
            loop {
                if let Ok(s) = http.accept().await {
                    spawn(http_conn(s, name, quit_enabled));
                }
            }
        });
        spawn(async move {
            loop {
                if let Ok(s) = echo.accept().await {
                    spawn(echo_conn(s));
                }
            }
        });
        match UdpSocket::bind(echo_port) {
            Ok(mut udp) => {
                spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                        // Never answer a well-known port (another echo
                        // service would start an endless ping-pong).
                        if from.port() >= 1024 && from.port() != echo_port {
                            let _ = udp.send_to(&buf[..n], from).await;
                        }
                    }
                });
            }
            Err(e) => println!("net: no UDP echo: {e}"),
        }
        println!("net ready: {:?} {} http {http_port} echo {echo_port}", cfg.mode, cfg.address);
        quit_requested().await;
        // Let the connections (the /quit one included) close.
        let end = time::now() + Duration::from_secs(3);
        while stats().sockets > 0 && time::now() < end {
            time::sleep(Duration::from_millis(10)).await;
        }
        println!("net stats: {}", stats());
        0
    }

    async fn echo_conn(mut s: TcpStream) {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match with_timeout(ECHO_IDLE, s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            if !matches!(with_timeout(WRITE_TIME, s.write_all(&buf[..n])).await, Ok(Ok(()))) {
                s.abort();
                return;
            }
        }
        let _ = s.close().await;
    }

    /// Why a connection ends early.
    enum Bad {
        /// Answer with this status, then close.
        Status(u16, &'static str),
        /// Close without a word (peer gone, idle).
        Drop,
    }

    async fn http_conn(mut s: TcpStream, name: &'static str, quit_enabled: bool) {
        let mut buf = vec![0u8; MAX_HEAD];
        let mut have = 0;
        loop {
            match request(&mut s, &mut buf, &mut have, name, quit_enabled).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(Bad::Drop) => return,
                Err(Bad::Status(code, reason)) => {
                    let _ = respond(&mut s, code, reason, "", false, false).await;
                    break;
                }
            }
        }
        let _ = s.close().await;
    }

    /// Reads, parses and answers one request. `Ok(keep_alive)`.
    async fn request(
        s: &mut TcpStream,
        buf: &mut [u8],
        have: &mut usize,
        name: &str,
        quit_enabled: bool,
    ) -> Result<bool, Bad> {
        // Pipelined bytes already here count as a started request.
        let mut started = (*have > 0).then(time::now);
        // Where the search resumes: bytes already searched are not searched
        // again (a head arriving a byte at a time stays linear).
        let mut searched = 0;
        let head_end = loop {
            if let Some(e) = find(&buf[searched..*have], b"\r\n\r\n") {
                break searched + e + 4;
            }
            searched = have.saturating_sub(3);
            if *have == buf.len() {
                return Err(Bad::Status(431, "Request Header Fields Too Large"));
            }
            let limit = match started {
                None => IDLE,
                Some(t) => (t + HEAD_TIME).saturating_sub(time::now()),
            };
            match with_timeout(limit, s.read(&mut buf[*have..])).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Bad::Drop),
                Ok(Ok(n)) => {
                    *have += n;
                    started.get_or_insert_with(time::now);
                }
                Err(_) if *have > 0 => return Err(Bad::Status(408, "Request Timeout")),
                Err(_) => return Err(Bad::Drop),
            }
        };
        let head = core::str::from_utf8(&buf[..head_end]).map_err(|_| Bad::Status(400, "Bad Request"))?;
        let mut lines = head.split("\r\n");
        let mut parts = lines.next().unwrap_or("").split(' ');
        let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Bad::Status(400, "Bad Request"));
        };
        if !version.starts_with("HTTP/1.") || !path.starts_with('/') || method.is_empty() {
            return Err(Bad::Status(400, "Bad Request"));
        }
        let mut keep_alive = version == "HTTP/1.1";
        let mut body = 0usize;
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once(':') else { return Err(Bad::Status(400, "Bad Request")) };
            let v = v.trim();
            if k.eq_ignore_ascii_case("connection") {
                if v.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if v.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            } else if k.eq_ignore_ascii_case("content-length") {
                body = v.parse().map_err(|_| Bad::Status(400, "Bad Request"))?;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Bad::Status(411, "Length Required"));
            }
        }
        if body > MAX_BODY {
            return Err(Bad::Status(413, "Content Too Large"));
        }
        let method_ok = matches!(method, "GET" | "HEAD");
        let path_only = path.split('?').next().unwrap_or(path);
        let mut quitting = false;
        let (code, reason, text) = if !method_ok {
            keep_alive = false;
            (405, "Method Not Allowed", String::new())
        } else {
            match path_only {
                // Answered from `HELLO` below.
                "/" if method == "GET" => (200, "OK", String::new()),
                "/" => (200, "OK", format!("hello from {name}\n")),
                "/stats" => (200, "OK", format!("{}\n", stats())),
                "/udp" if quit_enabled => match udp_round_trip().await {
                    Ok(from) => (200, "OK", format!("udp ok from {from}\n")),
                    Err(e) => (502, "Bad Gateway", format!("udp failed: {e}\n")),
                },
                "/quit" if quit_enabled => {
                    quitting = true;
                    keep_alive = false;
                    (200, "OK", String::from("bye\n"))
                }
                _ => (404, "Not Found", String::from("not found\n")),
            }
        };
        let head_only = method == "HEAD";
        let hello = method == "GET" && path_only == "/";
        // Skip the body (it may be partly in the buffer already).
        let mut skip = body;
        let in_buf = (*have - head_end).min(skip);
        skip -= in_buf;
        let consumed = head_end + in_buf;
        buf.copy_within(consumed..*have, 0);
        *have -= consumed;
        // The whole body within one HEAD_TIME: a per-read limit would let a
        // client trickling one byte at a time hold the connection for hours.
        let body_end = time::now() + HEAD_TIME;
        while skip > 0 {
            let left = body_end.saturating_sub(time::now());
            let n = match with_timeout(left, s.read(&mut buf[..skip.min(MAX_HEAD)])).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return Err(Bad::Drop),
            };
            skip -= n;
        }
        if hello {
            // The common case, preformatted once.
            let r = HELLO.call_once(|| {
                let head = |conn: &str| {
                    let body = format!("hello from {name}\n");
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{body}",
                        body.len()
                    )
                };
                [head("close"), head("keep-alive")]
            });
            let out = r[keep_alive as usize].as_bytes();
            match with_timeout(WRITE_TIME, s.write_all(out)).await {
                Ok(Ok(())) => {}
                _ => return Err(Bad::Drop),
            }
        } else {
            respond(s, code, reason, &text, keep_alive, head_only).await.map_err(|_| Bad::Drop)?;
        }
        if quitting {
            quit();
        }
        Ok(keep_alive)
    }

    /// A TFTP read request to the router's port 69 and its answer.
    async fn udp_round_trip() -> Result<hallows_net::SocketAddrV4, &'static str> {
        let Some(router) = hallows_net::config().and_then(|c| c.router) else { return Err("no router") };
        let mut u = UdpSocket::bind(0).map_err(|_| "bind")?;
        u.send_to(b"\x00\x01hallows-probe\x00octet\x00", hallows_net::SocketAddrV4::new(router, 69))
            .await
            .map_err(|_| "send")?;
        let mut buf = [0u8; 512];
        match with_timeout(Duration::from_secs(2), u.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if n >= 2 => Ok(from),
            Ok(_) => Err("recv"),
            Err(_) => Err("no answer within 2 s"),
        }
    }

    async fn respond(
        s: &mut TcpStream,
        code: u16,
        reason: &str,
        body: &str,
        keep_alive: bool,
        head_only: bool,
    ) -> Result<(), ()> {
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let mut out = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        );
        if !head_only {
            out.push_str(body);
        }
        match with_timeout(WRITE_TIME, s.write_all(out.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }
}

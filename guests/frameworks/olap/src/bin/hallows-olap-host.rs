//! hallows-olap-host: the OLAP engine on the host, serving an image over
//! the PostgreSQL protocol (`psql -h 127.0.0.1 -p PORT -c 'select ...'`)
//! and, with `--http-port`, HTTP (`curl --data-binary 'select ...'
//! http://127.0.0.1:PORT/query` answers JSON).
//!
//! ```text
//! hallows-olap-host --disk IMG [--port N] [--http-port N] [--threads N] [--cache-mb N]
//! ```
//! Port 0 picks a free port; the first lines on stdout say which
//! (`listening on ADDR`, then `http on ADDR`). `--cache-mb` (default 1024)
//! keeps that much of the image's checked chunks in memory between queries.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use hallows_blockdev::FileDisk;
use hallows_olap::exec::Threads;
use hallows_olap::http;
use hallows_olap::pgwire::{Conn, Event};
use hallows_olap::Engine;

const USAGE: &str = "usage: hallows-olap-host --disk IMG [--port N] [--http-port N] [--threads N] [--cache-mb N]";

fn serve(engine: &Engine<FileDisk>, mut sock: TcpStream, key: u32, threads: usize) -> std::io::Result<()> {
    let mut conn = Conn::new((key, key.wrapping_mul(2_654_435_761)));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.feed(&buf[..n]);
        while let Some(ev) = conn.next_event() {
            match ev {
                Event::Query(q) => match engine.query(&q, &Threads(threads)) {
                    Ok(rs) => conn.send_result(&rs),
                    Err(e) => conn.send_error(&e, &q),
                },
                Event::Close => break,
            }
            sock.write_all(&conn.take_output())?;
        }
        sock.write_all(&conn.take_output())?;
        if conn.is_closed() {
            return Ok(());
        }
    }
}

fn serve_http(engine: &Engine<FileDisk>, mut sock: TcpStream, threads: usize) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let answer = loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
        match http::parse(&req) {
            http::Request::Incomplete => continue,
            http::Request::Bad(status, msg) => break http::bad(status, msg),
            http::Request::Query(q) => match engine.query(&q, &Threads(threads)) {
                Ok(rs) => break http::response(200, &http::result_json(&rs)),
                Err(e) => break http::response(400, &http::error_json(&e)),
            },
        }
    };
    sock.write_all(&answer)
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut disk, mut port, mut threads, mut http_port, mut cache_mb) = (None, 5432u16, 1usize, None, 1024usize);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--disk" => disk = Some(PathBuf::from(val()?)),
            "--port" => port = val()?.parse().map_err(|_| "--port takes a number".to_string())?,
            "--http-port" => http_port = Some(val()?.parse::<u16>().map_err(|_| "--http-port takes a number".to_string())?),
            "--threads" => threads = val()?.parse().map_err(|_| "--threads takes a number".to_string())?,
            "--cache-mb" => cache_mb = val()?.parse().map_err(|_| "--cache-mb takes a number".to_string())?,
            _ => return Err(USAGE.to_string()),
        }
    }
    let disk = disk.ok_or(USAGE)?;
    let dev = FileDisk::open(&disk, 0).map_err(|e| format!("{}: {e}", disk.display()))?;
    let engine = Arc::new(Engine::open(dev).map_err(|e| format!("{}: {e}", disk.display()))?);
    engine.db.set_cache_bytes(cache_mb.saturating_mul(1 << 20));
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("port {port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    if let Some(p) = http_port {
        let l = TcpListener::bind(("127.0.0.1", p)).map_err(|e| format!("port {p}: {e}"))?;
        println!("http on {}", l.local_addr().map_err(|e| e.to_string())?);
        let engine = engine.clone();
        std::thread::spawn(move || {
            for sock in l.incoming() {
                let Ok(sock) = sock else { continue };
                let engine = engine.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_http(&engine, sock, threads) {
                        eprintln!("http: {e}");
                    }
                });
            }
        });
    }
    let _ = std::io::stdout().flush();
    let next_key = AtomicU32::new(1);
    for sock in listener.incoming() {
        let Ok(sock) = sock else { continue };
        let engine = engine.clone();
        let key = next_key.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(move || {
            if let Err(e) = serve(&engine, sock, key, threads) {
                eprintln!("connection {key}: {e}");
            }
        });
    }
    Ok(())
}

fn main() -> ExitCode {
    hallows_olap::load::exit("hallows-olap-host: ", run())
}

//! Test guest: a hostile or failing service behind a gateway.
//!
//! `mode=crashy`: an HTTP service on `hallows-net` (gateway mode) that
//! answers `GET /` with `crashy <restart count>` and panics on `GET
//! /crash` (with `on_fault = "restart"` the hypervisor restarts it: the
//! gateway must reset that link's connections and take new ones once the
//! service says HELLO again).
//!
//! Otherwise (`mode=garbage`): a hostile service. It opens its link
//! channels (`<self>-<upstream>`, `<upstream>-<self>`) and, forever, writes
//! frames of every kind: random bytes, well-formed frames with impossible
//! values (data beyond any window, credit beyond the window, second FINs,
//! OPENs to the gateway), HELLOs now and then (each resets its link's
//! connections), and frames naming the connection ids the gateway sent it.
//! It reads the gateway's frames only now and then, so the gateway's side
//! of the ring is often full. The gateway must stay up and its other
//! routes must keep working.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use hallows_link::frame::{kind, role, MAGIC, VERSION};
use hallows_link::{Frame, PAYLOAD};
use hallows_rt::{channel, time};
use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

fn padded(b: &[u8]) -> &str {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..n]).unwrap_or("")
}

fn main(boot: &Boot) -> u64 {
    if boot.arg("mode") == Some("crashy") {
        return crashy::main(boot);
    }
    garbage(boot)
}

fn garbage(boot: &Boot) -> u64 {
    let upstream = padded(&boot.info().net.upstream);
    let me = boot.name();
    let mut down = [0u8; 64];
    let mut up = [0u8; 64];
    let down = fmt(&mut down, &[upstream, "-", me]);
    let up = fmt(&mut up, &[me, "-", upstream]);
    let (Ok(mut rx), Ok(mut tx)) = (channel::receiver::<Frame>(boot, down), channel::sender::<Frame>(boot, up)) else {
        println!("hostile: no channels {down} / {up}");
        return 1;
    };
    let mut seed = time::now_nanos() | 1;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut ids = [0u32; 8];
    let mut sent = 0u64;
    println!("hostile: writing garbage to {up}");
    loop {
        let r = rand();
        if r % 4 == 0 {
            // Read a few of the gateway's frames: learn its ids.
            for _ in 0..(r >> 8) % 8 {
                match rx.try_recv() {
                    Ok(f) => ids[(rand() % 8) as usize] = f.conn,
                    Err(_) => break,
                }
            }
        }
        let mut f = Frame::new((rand() % 9) as u8, 0);
        let r = rand();
        f.conn = if r % 4 == 0 { r as u32 >> 2 } else { ids[(r % 8) as usize] };
        f.len = match rand() % 4 {
            0 => rand() as u16,
            1 => PAYLOAD as u16,
            _ => (rand() % PAYLOAD as u64) as u16,
        };
        f.arg0 = match rand() % 4 {
            0 => rand() as u32,
            1 => u32::MAX,
            _ => (rand() % 70_000) as u32,
        };
        f.arg1 = if rand() % 2 == 0 { 8080 } else { rand() as u32 };
        f.flags = rand() as u8;
        let r = rand() % 64;
        if r == 0 {
            f = Frame::new(kind::HELLO, 0);
            f.arg0 = VERSION;
            f.arg1 = MAGIC;
            f.flags = role::SERVICE;
        } else if r == 1 {
            // Random bytes everywhere.
            for (i, b) in f.payload.iter_mut().enumerate().take(64) {
                *b = (rand() >> (i % 8)) as u8;
            }
            f.kind = rand() as u8;
        }
        if tx.try_send(&f).is_ok() {
            sent += 1;
            if sent.is_power_of_two() && sent >= 1024 {
                println!("hostile: {sent} frames");
            }
        } else {
            time::spin_for(core::time::Duration::from_micros(50));
        }
    }
}

/// Concatenates `parts` into `buf` (names are at most 31 bytes each).
fn fmt<'a>(buf: &'a mut [u8; 64], parts: &[&str]) -> &'a str {
    let mut n = 0;
    for p in parts {
        let b = p.as_bytes();
        let k = b.len().min(buf.len() - n);
        buf[n..n + k].copy_from_slice(&b[..k]);
        n += k;
    }
    core::str::from_utf8(&buf[..n]).unwrap_or("")
}

mod crashy {
    use alloc::format;

    use hallows_net::{TcpListener, TcpStream};
    use hallows_rt::task::spawn;
    use hallows_rt::{println, Boot};

    pub fn main(boot: &Boot) -> u64 {
        let b = boot.clone();
        hallows_rt::task::run(boot, serve(b))
    }

    async fn serve(boot: Boot) -> u64 {
        if let Err(e) = hallows_net::init(&boot) {
            println!("crashy: net init: {e}");
            return 1;
        }
        let port = boot.info().net.listen[0];
        let Ok(mut l) = TcpListener::bind(port) else {
            println!("crashy: cannot listen on {port}");
            return 1;
        };
        let restarts = boot.restart_count();
        println!("crashy: serving {port}, restart {restarts}");
        loop {
            if let Ok(s) = l.accept().await {
                spawn(conn(s, restarts));
            }
        }
    }

    async fn conn(mut s: TcpStream, restarts: u32) {
        let mut buf = [0u8; 1024];
        let mut have = 0;
        while have < buf.len() {
            match s.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
            if buf[..have].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        if buf[..have].starts_with(b"GET /crash ") {
            panic!("crashy: asked to crash");
        }
        let body = format!("crashy {restarts}\n");
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.close().await;
    }
}

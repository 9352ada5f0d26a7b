//! The store's Redis front on the host, over std TCP and a disk image
//! file: the same engine and command layer a store partition runs, for
//! trying clients and comparing with Redis on the same machine.
//!
//! ```text
//! hallows-store-host [--port 6390] [--disk store.img] [--size-mib 64] [--group-ms N]
//! ```
//!
//! One thread per connection; one committer thread writes and flushes the
//! pending group (group commit: every command that arrived meanwhile goes
//! in the same group); with strict durability a connection's replies wait
//! until what they depend on is durable.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hallows_blockdev::FileDisk;
use hallows_store::cmd::{Server, Session};
use hallows_store::{Config, Durability, Store};

struct Shared {
    server: Mutex<Server<FileDisk>>,
    /// Signalled when something is pending (to the committer) and when a
    /// group became durable (to the connections).
    cv: Condvar,
    start: Instant,
    base: u64,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base + self.start.elapsed().as_millis() as u64
    }
}

fn main() {
    let mut port = 6390u16;
    let mut disk = PathBuf::from("target/hallows-store-host.img");
    let mut size_mib = 64u64;
    let mut durability = Durability::Strict;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = v.parse().expect("port"),
            "--disk" => disk = PathBuf::from(v),
            "--size-mib" => size_mib = v.parse().expect("size"),
            "--group-ms" => durability = Durability::Group { window_us: v.parse::<u64>().expect("ms") * 1000 },
            _ => panic!("unknown option {a}"),
        }
    }
    let dev = FileDisk::open(&disk, size_mib << 20).expect("disk image");
    let (store, rec) = Store::open(dev, Config { durability, max_bytes: (size_mib as usize) << 19 }).expect("store");
    eprintln!("store: {} keys from the checkpoint, {} groups replayed ({}), damage: {:?}", rec.checkpoint_keys, rec.groups, rec.stopped, rec.damage);
    let base = store.clock();
    let shared = Arc::new(Shared { server: Mutex::new(Server::new(store, base)), cv: Condvar::new(), start: Instant::now(), base });
    let sh = shared.clone();
    std::thread::spawn(move || committer(&sh, durability));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    eprintln!("store: listening on 127.0.0.1:{port}");
    for s in listener.incoming().flatten() {
        let sh = shared.clone();
        std::thread::spawn(move || connection(&sh, s));
    }
}

fn committer(sh: &Shared, durability: Durability) {
    let mut srv = sh.server.lock().unwrap();
    loop {
        if srv.store.has_pending() {
            if let Durability::Group { window_us } = durability {
                drop(srv);
                std::thread::sleep(Duration::from_micros(window_us));
                srv = sh.server.lock().unwrap();
            }
            if let Err(e) = srv.store.sync() {
                eprintln!("store: sync failed: {e}");
            }
            sh.cv.notify_all();
        } else if srv.store.wants_checkpoint() {
            if let Err(e) = srv.store.background_step() {
                eprintln!("store: checkpoint failed: {e}");
            }
        } else {
            srv = sh.cv.wait_timeout(srv, Duration::from_millis(100)).unwrap().0;
        }
    }
}

fn connection(sh: &Shared, mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut sess = Session::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut have = 0;
    let mut out = Vec::new();
    sh.server.lock().unwrap().stats.connections += 1;
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let mut srv = sh.server.lock().unwrap();
        let used = srv.feed(&mut sess, sh.now(), &buf[..have], &mut out);
        buf.copy_within(used..have, 0);
        have -= used;
        if srv.store.has_pending() {
            sh.cv.notify_all();
        }
        while srv.store.durable() < sess.need {
            srv = sh.cv.wait(srv).unwrap();
        }
        drop(srv);
        if s.write_all(&out).is_err() {
            return;
        }
        out.clear();
        if sess.close || have > (256 << 10) {
            return;
        }
    }
}

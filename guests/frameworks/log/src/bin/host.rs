//! `hallows-log-host`: the log partition's broker on the host, over a file
//! used as its raw disk. For trying clients (kcat, kafka-python) and for
//! benchmarks without booting a guest.
//!
//! ```text
//! hallows-log-host --disk target/log.img [--size 64MiB] [--port 9092] [--advertise 127.0.0.1]
//! ```

use hallows_log::dev::FileDisk;
use hallows_log::server::Shared;
use hallows_log::{Broker, BrokerConfig, Log, LogConfig};
use std::net::TcpListener;
use std::path::PathBuf;

fn size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1 << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    num.trim().parse::<u64>().ok().map(|n| n * mul)
}

fn main() {
    let mut disk = PathBuf::from("target/hallows/log-host.img");
    let mut bytes = 64u64 << 20;
    let mut port = 9092u16;
    let mut advertise = "127.0.0.1".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--disk" => disk = PathBuf::from(val()),
            "--size" => bytes = size(&val()).unwrap_or_else(|| usage("--size takes e.g. 64MiB")),
            "--port" => port = val().parse().unwrap_or_else(|_| usage("--port takes a port number")),
            "--advertise" => advertise = val(),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if let Some(dir) = disk.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let dev = FileDisk::open(&disk, bytes).unwrap_or_else(|e| fail(&format!("{}: {e}", disk.display())));
    let log = Log::open(dev, LogConfig::default()).unwrap_or_else(|e| fail(&format!("{}: cannot open the log: {e:?}", disk.display())));
    let r = log.report;
    eprintln!(
        "hallows-log: {} ({}), {} segments, {} batches recovered, {} torn tails truncated, {} segments dropped, {} topics",
        disk.display(),
        if r.formatted { "formatted" } else { "recovered" },
        r.segments,
        r.batches,
        r.torn_tails,
        r.dropped_segments,
        log.topics().len()
    );
    let cfg = BrokerConfig { host: advertise, port: port as i32, ..BrokerConfig::default() };
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| fail(&format!("port {port}: {e}")));
    eprintln!("hallows-log: serving Kafka on port {port}");
    Shared::new(Broker::new(log, cfg)).serve(listener);
}

fn usage(msg: &str) -> ! {
    fail(&format!("{msg}\nusage: hallows-log-host --disk FILE [--size 64MiB] [--port 9092] [--advertise HOST]"))
}

fn fail(msg: &str) -> ! {
    eprintln!("hallows-log-host: {msg}");
    std::process::exit(2)
}

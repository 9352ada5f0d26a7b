//! `hallows serve` as a user runs it (docs/deploy.md#make-serve): the
//! `hallows` binary serves tests/systems/serve.toml (the todo API, the
//! store with its Redis port open, the Kafka-speaking log, the worker);
//! the test waits for the endpoints it prints, runs each printed client
//! command (curl, redis-cli, kcat) and more through those clients, sends
//! SIGINT, and checks exit 0, the per-partition summary and that no QEMU
//! is left; then serves the same disks again and finds every acknowledged
//! write (a todo, a Redis key, a Kafka record).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hallows_tests::{root, run_with_timeout};

/// The `hallows` binary, built by cargo into the workspace's target
/// directory (the test harness links the library only).
fn hallows_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--quiet", "-p", "hallows", "--bin", "hallows"])
        .status()
        .expect("running cargo build -p hallows");
    assert!(st.success(), "cargo build -p hallows failed");
    root().join("target/debug/hallows")
}

/// A running `hallows serve`, its standard error and output collected.
struct Serve {
    child: Child,
    err: Arc<Mutex<String>>,
    out: Arc<Mutex<String>>,
}

impl Serve {
    fn start(bin: &Path, manifest: &str, disks: &Path) -> Serve {
        let mut child = Command::new(bin)
            .current_dir(root())
            .args(["serve", manifest, "--ready-timeout", "240", "--disk"])
            .arg(format!("store={}", disks.join("store.img").display()))
            .arg("--disk")
            .arg(format!("log={}", disks.join("log.img").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting hallows serve");
        let collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            buf
        };
        let err = collect(Box::new(child.stderr.take().unwrap()));
        let out = collect(Box::new(child.stdout.take().unwrap()));
        Serve { child, err, out }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn both(&self) -> String {
        format!("--- stderr\n{}\n--- stdout\n{}", self.stderr(), self.out.lock().unwrap())
    }

    /// Waits for the printed endpoints: (partition, protocol, command).
    fn endpoints(&mut self) -> Vec<(String, String, String)> {
        let start = Instant::now();
        while !self.stderr().contains("Ctrl-C (or SIGTERM) stops it") {
            if start.elapsed() > Duration::from_secs(300) || self.child.try_wait().unwrap().is_some() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("hallows serve never printed its endpoints:\n{}", self.both());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let err = self.stderr();
        let block = err.split("reach it from this machine with:").nth(1).unwrap_or_default();
        block
            .lines()
            .filter_map(|l| l.strip_prefix("hallows:   "))
            .filter_map(|l| {
                let (what, cmd) = l.split_once("): ")?;
                let (name, proto) = what.split_once(" (")?;
                Some((name.split(" port ").next()?.to_owned(), proto.to_owned(), cmd.to_owned()))
            })
            .collect()
    }

    /// The endpoints, which must be these (partition, protocol) pairs.
    fn endpoints_of(&mut self, want: &[(&str, &str)]) -> Vec<(String, String, String)> {
        let eps = self.endpoints();
        let got: Vec<(&str, &str)> = eps.iter().map(|(n, p, _)| (n.as_str(), p.as_str())).collect();
        assert_eq!(got, want, "{}", self.both());
        eps
    }

    /// QEMU's pid, once hallows has said it.
    fn try_qemu_pid(&self) -> Option<u32> {
        let err = self.stderr();
        err.lines().find_map(|l| l.strip_prefix("hallows: QEMU is process ")).and_then(|l| l.split(';').next()?.trim().parse().ok())
    }

    fn qemu_pid(&self) -> u32 {
        let err = self.stderr();
        let l = err.lines().find_map(|l| l.strip_prefix("hallows: QEMU is process ")).unwrap_or_else(|| panic!("no QEMU pid:\n{err}"));
        l.split(';').next().unwrap().trim().parse().unwrap()
    }

    /// SIGINT, then its exit status (killed after 120 s: a failure).
    fn interrupt(mut self) -> (i32, String) {
        let st = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return (s.code().unwrap_or(-1), self.both());
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("hallows serve did not stop within 120 s of SIGINT:\n{}", self.both());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn sh(cmd: &str) -> String {
    let out = run_with_timeout(Command::new("sh").args(["-c", cmd]), None, Duration::from_secs(60));
    assert!(out.status.success(), "`{cmd}` failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test that failed before its SIGINT leaves no machine behind: hallows
/// is killed, and QEMU (its own process group) with it, so the next test
/// finds its ports and disks free.
impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Some(pid) = self.try_qemu_pid() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An empty directory target/hallows/tests/NAME for a test's disks.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = root().join("target/hallows/tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether any live process is a QEMU using a file under `dir`.
fn qemu_using(dir: &Path) -> Option<String> {
    // The directory itself, not one whose name it begins (serve, serve-flagship).
    let dir = format!("{}/", dir.to_string_lossy());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains("qemu-system") && cmd.contains(&dir)).then_some(cmd)
    })
}

fn check_stopped(code: i32, out: &str, qemu: u32, disks: &Path, partitions: &[&str]) {
    assert_eq!(code, 0, "hallows serve did not exit 0 after SIGINT:\n{out}");
    assert!(out.contains("hallows: per-partition summary:") && out.contains("hallows: stopped cleanly"), "{out}");
    for p in partitions {
        let line = out.lines().find(|l| l.starts_with(&format!("hallows:   {p}: at the stop: running, up "))).unwrap_or_else(|| panic!("no summary line for {p}:\n{out}"));
        assert!(line.contains("restarts 0, faults 0, watchdog misses 0; end: stopped: by the operator"), "{line}");
    }
    assert!(out.contains("[hallows] all partitions finished"), "the hypervisor's own summary is missing:\n{out}");
    // QEMU was reaped by hallows: its pid is gone (or reused by something
    // that is not a QEMU of this test), and no QEMU holds the disks.
    let left = std::fs::read(format!("/proc/{qemu}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains("qemu-system")).unwrap_or(false);
    assert!(!left, "QEMU {qemu} is still there");
    assert_eq!(qemu_using(disks), None, "a QEMU still uses {}", disks.display());
}

/// One served system at a time: two would share the host's two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn serve_prints_working_endpoints_and_stops_cleanly_on_sigint() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (bin, disks) = (hallows_binary(), fresh_dir("serve"));

    let mut s = Serve::start(&bin, "tests/systems/serve.toml", &disks);
    let eps = s.endpoints_of(&[("todo", "http"), ("store", "redis"), ("log", "kafka")]);
    // Each printed command, as printed, through the real client.
    for (_, proto, cmd) in &eps {
        let out = sh(cmd);
        match proto.as_str() {
            "http" => assert!(out.starts_with("HTTP/1.1 "), "`{cmd}`: {out}"),
            "redis" => assert_eq!(out.trim(), "PONG", "`{cmd}`"),
            "kafka" => assert!(out.contains("1 brokers:") && out.contains("127.0.0.1:29092"), "`{cmd}`: {out}"),
            _ => unreachable!(),
        }
    }
    // Writes through each client, acknowledged before the stop.
    let todo = sh(r#"curl -sf -H 'Authorization: Bearer demo-token' -d '{"title":"survive the stop"}' http://127.0.0.1:28080/todos"#);
    assert!(todo.contains(r#""id":1"#), "{todo}");
    assert_eq!(sh("redis-cli -h 127.0.0.1 -p 26379 set served-key acknowledged").trim(), "OK");
    let p = run_with_timeout(Command::new("kcat").args(["-P", "-b", "127.0.0.1:29092", "-t", "served", "-X", "acks=all"]), Some(b"record one\n"), Duration::from_secs(60));
    assert!(p.status.success(), "kcat -P: {}", String::from_utf8_lossy(&p.stderr));
    assert_eq!(sh("kcat -C -b 127.0.0.1:29092 -t served -e -q").trim(), "record one");
    let qemu = s.qemu_pid();
    let (code, out) = s.interrupt();
    check_stopped(code, &out, qemu, &disks, &["todo", "store", "log", "worker"]);

    // The same disks served again: every acknowledged write is there.
    let mut s = Serve::start(&bin, "tests/systems/serve.toml", &disks);
    s.endpoints();
    assert_eq!(sh("redis-cli -h 127.0.0.1 -p 26379 get served-key").trim(), "acknowledged");
    let got = sh("curl -sf -H 'Authorization: Bearer demo-token' http://127.0.0.1:28080/todos/1");
    assert!(got.contains("survive the stop"), "{got}");
    assert_eq!(sh("kcat -C -b 127.0.0.1:29092 -t served -e -q").trim(), "record one");
    let qemu = s.qemu_pid();
    let (code, out) = s.interrupt();
    check_stopped(code, &out, qemu, &disks, &["todo", "store", "log", "worker"]);
}

/// The flagship (vmm-config/examples/flagship.toml, what `make serve`
/// serves): four services behind the gateway and the log's own NIC, each
/// printed command run through its client (psql with a query on the
/// `events` table the API's writes reach), the dashboard's VNC address
/// answering the RFB greeting, then SIGINT.
#[test]
fn serve_opens_the_flagship_to_every_client_and_to_vnc() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (bin, disks) = (hallows_binary(), fresh_dir("serve-flagship"));
    let mut s = Serve::start(&bin, "vmm-config/examples/flagship.toml", &disks);
    let eps = s.endpoints_of(&[("todo", "http"), ("store", "redis"), ("log", "kafka"), ("olap", "postgres")]);
    let todo = sh(r#"curl -sf -H 'Authorization: Bearer demo-token' -d '{"title":"served"}' http://127.0.0.1:8080/todos"#);
    assert!(todo.contains(r#""title":"served""#), "{todo}");
    for (_, proto, cmd) in &eps {
        match proto.as_str() {
            "http" => assert!(sh(cmd).starts_with("HTTP/1.1 "), "`{cmd}`"),
            "redis" => assert_eq!(sh(cmd).trim(), "PONG", "`{cmd}`"),
            "kafka" => assert!(sh(cmd).contains("1 brokers:"), "`{cmd}`"),
            "postgres" => {
                // The API's events reach the analytics table asynchronously
                // (API -> log -> OLAP): wait for the first (60 s at most).
                let start = Instant::now();
                let out = loop {
                    let out = sh(&format!("{cmd} -X -A -t -c 'select count(*) from events'"));
                    if out.trim().parse::<u64>().is_ok_and(|n| n > 0) || start.elapsed() > Duration::from_secs(60) {
                        break out;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                };
                assert!(out.trim().parse::<u64>().is_ok_and(|n| n > 0), "`{cmd}`: {out}");
            }
            _ => unreachable!(),
        }
    }
    let err = s.stderr();
    let vnc = err.lines().find_map(|l| l.split("display: VNC 127.0.0.1:").nth(1)).unwrap_or_else(|| panic!("no VNC address:\n{err}"));
    let port: u16 = vnc.split_whitespace().next().unwrap().parse().unwrap();
    let mut rfb = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the printed VNC address");
    rfb.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 4];
    rfb.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"RFB ");
    drop(rfb);
    let qemu = s.qemu_pid();
    let (code, out) = s.interrupt();
    check_stopped(code, &out, qemu, &disks, &["gateway", "todo", "store", "log", "olap", "dashboard", "loadgen"]);
}

/// A service that never answers its protocol: the store's Redis port
/// declared `protocol = "kafka"`, so no reply ever echoes the Kafka
/// probe. `serve` gives up after --ready-timeout, names the service,
/// stops the system as on Ctrl-C and exits 5; no QEMU is left.
#[test]
fn serve_names_the_service_that_did_not_come_up_and_exits_5() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (bin, dir) = (hallows_binary(), fresh_dir("serve-not-ready"));
    let store = std::fs::read_to_string(root().join("vmm-config/examples/store.toml")).unwrap();
    let manifest = dir.join("wrong.toml");
    std::fs::write(&manifest, store.replace("host = 6379", "host = 26380").replace("port = 6379\n", "port = 6379\nprotocol = \"kafka\"\n")).unwrap();
    let disk = dir.join("store.img");
    let out = run_with_timeout(
        Command::new(&bin).current_dir(root()).arg("serve").arg(&manifest).args(["--ready-timeout", "30", "--disk"]).arg(format!("store={}", disk.display())),
        None,
        Duration::from_secs(240),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("error: partition `store` port 6379 (kafka, host 127.0.0.1:26380) did not answer a Kafka ApiVersions request within 30 s"),
        "{err}"
    );
    assert!(err.contains("store: at the stop: running") && err.contains("end: stopped: by the operator"), "{err}");
    assert_eq!(qemu_using(&dir), None, "a QEMU still uses {}", dir.display());
}

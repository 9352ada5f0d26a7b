//! `hallows demo`: the flagship system's scripted scenario (`make run`,
//! docs/demo.md). It boots the system (fresh disks), waits for every
//! service, then drives it from the host with the real clients (curl,
//! redis-cli, kcat, psql) while the load generator drives it from inside,
//! checks every result, measures the rates, takes a screenshot of the
//! dashboard, stops the machine and prints a summary. Every step has a
//! time limit; any failed check makes the run fail, saying which and why.
//!
//! The system must be the flagship's shape: partitions `todo` (the API,
//! forward of its port 8080), `store` (6379), `log` (9092), `olap`
//! (5432) and a `loadgen`; the error says what is missing. A `dashboard`
//! with a display is optional: without one (the x86_64 flagship,
//! vmm-config/examples/flagship-x86_64.toml) its checks, the screenshot
//! and the Pause/Resume of the load generator, are reported as skipped
//! with the reason, and the run passes on the others.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmm_config::System;
use wait_timeout::ChildExt;

use crate::qemu;

/// The API's bearer token in the flagship manifest.
pub const TOKEN: &str = "demo-token";
/// How long the system may take from QEMU's start to every service answering.
pub const BOOT_TIME: Duration = Duration::from_secs(240);
/// One client command at most.
const TOOL_TIME: Duration = Duration::from_secs(20);
/// How long written data may take to reach the log and the analytics table.
const PROPAGATION_TIME: Duration = Duration::from_secs(60);
/// The load generator's Pause/Resume button in the dashboard's Controls
/// view (display pixels, 1024 x 768: the first generator's).
const PAUSE: (u32, u32) = (940, 88);
/// The window over which the rates are measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The clients the scenario runs, and the package each comes in (Debian).
pub const CLIENTS: [(&str, &str); 4] = [("curl", "curl"), ("redis-cli", "redis-tools"), ("kcat", "kcat"), ("psql", "postgresql-client")];

/// One check of the scenario.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// Not run, because the system lacks what it needs (`detail` says
    /// what); `ok` is false.
    pub skipped: bool,
    pub detail: String,
}

/// What the scenario found.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    /// (what, figure) lines of the summary.
    pub figures: Vec<(String, String)>,
    pub screenshot: Option<PathBuf>,
    /// The machine's console, for a failure's diagnosis.
    pub console: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().any(|c| c.ok) && self.checks.iter().all(|c| c.ok || c.skipped)
    }

    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) -> bool {
        let detail = detail.into();
        eprintln!("hallows demo: {} {name}: {detail}", if ok { "ok  " } else { "FAIL" });
        self.checks.push(Check { name: name.to_owned(), ok, skipped: false, detail });
        ok
    }

    /// A check this system cannot run, and why.
    fn skip(&mut self, name: &str, why: impl Into<String>) {
        let detail = why.into();
        eprintln!("hallows demo: skip {name}: {detail}");
        self.checks.push(Check { name: name.to_owned(), ok: false, skipped: true, detail });
    }

    /// The summary, as `make run` prints it last.
    pub fn summary(&self) -> String {
        let mut s = String::from("\n== RustHallows flagship: summary ==\n");
        for c in &self.checks {
            let mark = if c.ok {
                "ok"
            } else if c.skipped {
                "skipped"
            } else {
                "FAILED"
            };
            s.push_str(&format!("  [{mark}] {}: {}\n", c.name, c.detail));
        }
        for (what, v) in &self.figures {
            s.push_str(&format!("  {what}: {v}\n"));
        }
        if let Some(p) = &self.screenshot {
            s.push_str(&format!("  dashboard screenshot: {}\n", p.display()));
        }
        let failed = self.checks.iter().filter(|c| !c.ok && !c.skipped).count();
        let skipped = self.checks.iter().filter(|c| c.skipped).count();
        let passed = self.checks.len() - failed - skipped;
        s.push_str(&format!("checks: {passed} passed, {failed} failed"));
        if skipped > 0 {
            s.push_str(&format!(", {skipped} skipped"));
        }
        s.push('\n');
        s
    }
}

/// The clients missing from PATH, with their packages.
pub fn missing_clients() -> Vec<(&'static str, &'static str)> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |bin: &str| {
        std::env::split_paths(&path).any(|d| std::fs::metadata(d.join(bin)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    };
    CLIENTS.iter().copied().filter(|(bin, _)| !found(bin)).collect()
}

/// Runs `program args` for at most `limit`; (success, stdout, stderr).
fn tool(program: &str, args: &[&str], limit: Duration) -> Result<(bool, String, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PGCONNECT_TIMEOUT", "10")
        .spawn()
        .with_context(|| format!("starting {program} (install it: make deps)"))?;
    let (mut out, mut err) = (child.stdout.take().context("stdout")?, child.stderr.take().context("stderr")?);
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = match child.wait_timeout(limit)? {
        Some(s) => Some(s),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let (out, mut err) = (o.join().unwrap_or_default(), e.join().unwrap_or_default());
    if status.is_none() {
        err.push_str(&format!("\n(killed after {} s)", limit.as_secs()));
    }
    Ok((status.is_some_and(|s| s.success()), out, err))
}

/// The host port the system forwards to `port` of partition `to`.
fn forward(sys: &System, to: &str, port: u16) -> Result<u16> {
    sys.forwards
        .iter()
        .find(|f| f.to == to && f.port == port)
        .map(|f| f.host)
        .with_context(|| format!("the system forwards no host port to {to} port {port}: `hallows demo` runs the flagship system (vmm-config/examples/flagship.toml)"))
}

/// The clients' view of the system.
struct Ports {
    api: u16,
    redis: u16,
    kafka: u16,
    pg: u16,
}

impl Ports {
    fn curl(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.api);
        let auth = format!("Authorization: Bearer {TOKEN}");
        let mut args = vec!["-sS", "--max-time", "10", "-X", method, "-H", &auth, "-w", "\n%{http_code}"];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        args.push(&url);
        let (_, out, err) = tool("curl", &args, TOOL_TIME)?;
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
        let code = code.trim().parse().unwrap_or(0);
        if code == 0 {
            bail!("curl {method} {path}: no answer: {}", err.trim());
        }
        Ok((code, body.to_owned()))
    }

    fn redis(&self, args: &[&str]) -> Result<String> {
        let port = self.redis.to_string();
        let mut a = vec!["-h", "127.0.0.1", "-p", &port];
        a.extend_from_slice(args);
        let (ok, out, err) = tool("redis-cli", &a, TOOL_TIME)?;
        if !ok {
            bail!("redis-cli {}: {}", args.join(" "), err.trim());
        }
        Ok(out)
    }

    /// The topic's records as `offset key value` lines, from the first.
    fn kcat(&self, topic: &str) -> Result<String> {
        let broker = format!("127.0.0.1:{}", self.kafka);
        let (ok, out, err) = tool("kcat", &["-b", &broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o %k %s\n"], TOOL_TIME)?;
        if !ok {
            bail!("kcat -C -t {topic}: {}", err.trim());
        }
        Ok(out)
    }

    /// One query's rows, `|`-separated fields.
    fn psql(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let port = self.pg.to_string();
        let (ok, out, err) = tool("psql", &["-h", "127.0.0.1", "-p", &port, "-U", "hallows", "-d", "hallows", "-w", "-X", "-A", "-t", "-c", sql], TOOL_TIME)?;
        if !ok {
            bail!("psql -c {sql:?}: {}", err.trim());
        }
        Ok(out.lines().filter(|l| !l.is_empty()).map(|l| l.split('|').map(str::to_owned).collect()).collect())
    }
}

/// The load generator's last summary line in `console`.
fn last_loadgen_line(console: &str) -> Option<String> {
    console.lines().rev().find(|l| l.contains("loadgen: ") && l.contains(" calls, ")).map(str::to_owned)
}

/// The load generator's last summary line in `console`:
/// (calls, created, read, failed).
pub fn loadgen_figures(console: &str) -> Option<(u64, u64, u64, u64)> {
    let last = last_loadgen_line(console)?;
    let line = last.split_once("loadgen: ").map(|(_, r)| r)?;
    let num = |after: &str| -> Option<u64> {
        let i = line.find(after)?;
        line[..i].rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    Some((num(" calls")?, num(" created")?, num(" read")?, num(" failed")?))
}

/// Waits until `f` gives `Some`, at most `limit`.
fn poll<T>(limit: Duration, stop: &AtomicBool, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if start.elapsed() >= limit || stop.load(Ordering::Acquire) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many pixels differ between two screenshots of one size.
fn changed_pixels(a: &crate::qmp::Image, b: &crate::qmp::Image) -> u64 {
    let mut n = 0;
    for y in 0..a.height.min(b.height) {
        for x in 0..a.width.min(b.width) {
            if a.pixel(x, y) != b.pixel(x, y) {
                n += 1;
            }
        }
    }
    n
}

/// The scenario for `manifest`'s system `sys` (of the workspace at
/// `root`), booted from `image` on fresh disks (under
/// target/hallows/demo/<manifest>/): the report, and where the machine's
/// console was written (target/hallows/<manifest>-console.log). The
/// screenshot is target/hallows/<manifest>-dashboard.png.
pub fn run_manifest(root: &Path, manifest: &Path, sys: &mut System, image: &Path, stop: &'static AtomicBool) -> Result<(Report, PathBuf)> {
    let stem = manifest.file_stem().and_then(|s| s.to_str()).unwrap_or("system").to_owned();
    let dir = root.join("target/hallows");
    // Fresh disks: the scenario's checks count what this run wrote.
    let disks = dir.join("demo").join(&stem);
    let _ = std::fs::remove_dir_all(&disks);
    std::fs::create_dir_all(&disks).with_context(|| format!("creating {}", disks.display()))?;
    for p in sys.partitions.iter_mut() {
        if let Some(d) = p.disk.as_mut() {
            d.path = disks.join(format!("{}.img", p.name));
        }
    }
    let qmp = crate::qmp::socket_for(root, manifest);
    let shot = dir.join(format!("{stem}-dashboard.png"));
    let report = run(sys, image, &qmp, &shot, stop)?;
    let log = dir.join(format!("{stem}-console.log"));
    std::fs::write(&log, &report.console).with_context(|| format!("writing {}", log.display()))?;
    Ok((report, log))
}

/// Boots `sys` from `image` (the display's QMP socket at `qmp`) and runs
/// the scenario; `Err` only when the scenario could not run at all.
pub fn run(sys: &mut System, image: &Path, qmp: &Path, shot: &Path, stop: &'static AtomicBool) -> Result<Report> {
    let ports = Ports {
        api: forward(sys, "todo", 8080)?,
        redis: forward(sys, "store", 6379)?,
        kafka: forward(sys, "log", 9092)?,
        pg: forward(sys, "olap", 5432)?,
    };
    let names: Vec<String> = sys.partitions.iter().map(|p| p.name.clone()).collect();
    if !names.iter().any(|n| n == "loadgen") {
        bail!("the system has no partition `loadgen`: `hallows demo` runs the flagship system (vmm-config/examples/flagship.toml)");
    }
    // The dashboard is optional (the x86_64 flagship has none): its
    // checks are then skipped, saying why.
    let display = match (names.iter().any(|n| n == "dashboard"), sys.partitions.iter().find_map(|p| p.display.clone())) {
        (true, Some(d)) => Some((d.width, d.height)),
        (true, None) => bail!("the partition `dashboard` has no display: the scenario takes a screenshot of it (give it `display = {{ width = 1024, height = 768 }}`)"),
        (false, _) => None,
    };
    let missing = missing_clients();
    if !missing.is_empty() {
        let pk: Vec<&str> = missing.iter().map(|m| m.1).collect();
        bail!(
            "the scenario's clients are missing: {} (`make deps` installs them: apt-get install {})",
            missing.iter().map(|m| m.0).collect::<Vec<_>>().join(", "),
            pk.join(" ")
        );
    }
    if display.is_some() {
        let _ = std::fs::remove_file(qmp);
        sys.display_host.qmp = Some(qmp.to_path_buf());
    }
    let control = Arc::new(qemu::Control::default());
    let (system, img, ctl) = (sys.clone(), image.to_path_buf(), control.clone());
    let boot = Instant::now();
    eprintln!("hallows demo: booting {} partitions (QEMU, board {}); the console goes to the log, the checks follow", names.len(), sys.board.name);
    // The machine stops when `stop` is set: at the end, on Ctrl-C, or
    // after the whole scenario's limit.
    // `ended`: QEMU has returned (it could not start, say a host port was
    // taken, or the machine powered off): the scenario stops waiting.
    let ended = Arc::new(AtomicBool::new(false));
    let machine = {
        let ended = ended.clone();
        std::thread::spawn(move || {
            let out = qemu::run_controlled(&system, &img, Some(BOOT_TIME * 3), stop, true, &[], &[], Some(ctl));
            ended.store(true, Ordering::Release);
            out
        })
    };
    let mut r = Report::default();
    let result = scenario(&mut r, &ports, &control, &names, display, qmp, shot, boot, stop, &ended);
    stop.store(true, Ordering::Release);
    let out = machine.join().map_err(|_| anyhow::anyhow!("the QEMU thread panicked"))??;
    r.console = out.output;
    if let Err(e) = result {
        r.check("scenario", false, format!("{e:#}"));
    }
    // Nothing faulted, restarted or ended while the scenario ran.
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let states = qemu::partition_states(&r.console, &refs);
    let bad: Vec<String> = states.iter().filter(|(_, s)| s != "running").map(|(n, s)| format!("{n} {s}")).collect();
    r.check("partitions", bad.is_empty(), if bad.is_empty() { format!("all {} ran to the end, none faulted or restarted", states.len()) } else { bad.join("; ") });
    let panics = r.console.lines().filter(|l| l.contains("panicked")).count();
    r.check("console", panics == 0, if panics == 0 { "no partition panicked".to_owned() } else { format!("{panics} panic lines") });
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn scenario(
    r: &mut Report,
    p: &Ports,
    control: &qemu::Control,
    names: &[String],
    display: Option<(u32, u32)>,
    qmp: &Path,
    shot: &Path,
    boot: Instant,
    stop: &AtomicBool,
    ended: &AtomicBool,
) -> Result<()> {
    // 1. Every service answers (or QEMU ended first: no use waiting).
    let started = |what: &str| control.seen(what);
    let up = poll(BOOT_TIME, stop, || {
        if ended.load(Ordering::Acquire) {
            return Some(false);
        }
        let ready = started("todo: ready") && started("olap: table events") && started("loadgen: ") && (display.is_none() || started("dashboard: serving"));
        (ready && p.curl("GET", "/health", None).is_ok_and(|(c, _)| c == 200)).then_some(true)
    });
    let detail = match up {
        Some(true) => format!("{} partitions up, the API answering, in {:.1} s", names.len(), boot.elapsed().as_secs_f64()),
        Some(false) => format!("QEMU ended after {:.1} s, before every service answered (its output is in the summary)", boot.elapsed().as_secs_f64()),
        None => format!("not every service answered within {} s", BOOT_TIME.as_secs()),
    };
    if !r.check("boot", up == Some(true), detail) {
        bail!("the system did not come up");
    }
    r.figures.push(("boot to every service answering".into(), format!("{:.1} s", boot.elapsed().as_secs_f64())));

    // 2. The API: two records created and listed (curl).
    let titles = ["scenario: write the docs", "scenario: ship the demo"];
    let mut ids = Vec::new();
    for t in titles {
        let (code, body) = p.curl("POST", "/todos", Some(&format!("{{\"title\":\"{t}\",\"tag\":\"work\"}}")))?;
        let id = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["id"].as_u64());
        if !r.check("curl POST /todos", code == 201 && id.is_some(), format!("{code} {}", body.trim())) {
            bail!("the API did not create the record");
        }
        ids.extend(id);
    }
    let (code, body) = p.curl("GET", "/todos?limit=20", None)?;
    let listed = serde_json::from_str::<serde_json::Value>(&body).ok();
    let count = listed.as_ref().and_then(|v| v["data"].as_array()).map_or(0, Vec::len);
    let (code2, one) = p.curl("GET", &format!("/todos/{}", ids[0]), None)?;
    r.check(
        "curl GET /todos",
        code == 200 && count > 0 && code2 == 200 && one.contains(titles[0]),
        format!("{code}: {count} records on the first page; GET /todos/{} {code2}: {}", ids[0], one.trim()),
    );

    // 3. The store holds what the API wrote (redis-cli).
    for (id, t) in ids.iter().zip(titles) {
        let key = format!("todo/{id:020}");
        let got = p.redis(&["GET", &key])?;
        r.check("redis-cli GET", got.contains(t), format!("{key} = {}", got.trim()));
    }

    // 4. The log has an event per creation (kcat).
    let want: Vec<String> = ids.iter().zip(titles).map(|(id, t)| format!("created {id} {t}")).collect();
    let mut records = String::new();
    let seen = poll(PROPAGATION_TIME, stop, || {
        records = p.kcat("events").ok()?;
        want.iter().all(|w| records.lines().any(|l| l.ends_with(w.as_str()))).then_some(())
    });
    let n_records = records.lines().count();
    r.check("kcat -C -t events", seen.is_some(), format!("{n_records} records in topic events, both of the scenario's among them ({})", want.join("; ")));

    // 5. The analytics table has them (psql).
    for (id, t) in ids.iter().zip(titles) {
        let q = format!("select log_offset, title from events where kind = 'created' and todo_id = {id}");
        let mut last = String::new();
        let found = poll(PROPAGATION_TIME, stop, || match p.psql(&q) {
            Ok(rows) => {
                last = format!("{rows:?}");
                (rows.len() == 1 && rows[0].get(1).map(String::as_str) == Some(t)).then_some(())
            }
            Err(e) => {
                last = format!("{e:#}");
                None
            }
        });
        r.check("psql events", found.is_some(), format!("{q}: {last}"));
    }
    let by_kind = p.psql("select kind, count(*), max(todo_id) from events group by kind order by kind")?;
    let created = by_kind.iter().find(|r| r.first().map(String::as_str) == Some("created")).and_then(|r| r.get(1)).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    r.check("psql group by kind", created >= 2, format!("{by_kind:?}"));

    // 6. The load generator's calls were all answered as expected.
    let lg = poll(Duration::from_secs(30), stop, || loadgen_figures(&control_text(control)).filter(|f| f.1 > 0));
    let lg = lg.unwrap_or_default();
    r.check("load generator", lg.1 > 0 && lg.3 == 0, format!("{} calls: {} created, {} read, {} failed", lg.0, lg.1, lg.2, lg.3));

    // 7. The rates, over a window: the load generator's count at two of
    // its summary lines (taken as they appear, so the window is theirs),
    // the log's records (kcat) and the table's rows (psql) around them.
    let fresh_line = |after: Option<String>| {
        poll(Duration::from_secs(30), stop, || {
            let text = control_text(control);
            let line = last_loadgen_line(&text)?;
            (Some(&line) != after.as_ref()).then(|| (Instant::now(), line, loadgen_figures(&text).map_or(0, |f| f.1 + f.2)))
        })
    };
    let sample = || -> Result<(Instant, u64, u64)> {
        let rec = p.kcat("events")?.lines().count() as u64;
        let rows = p.psql("select count(*) from events")?.first().and_then(|r| r.first()).and_then(|n| n.parse().ok()).unwrap_or(0);
        Ok((Instant::now(), rec, rows))
    };
    let l0 = fresh_line(last_loadgen_line(&control_text(control))).context("no summary line from the load generator")?;
    let a = sample()?;
    // The dashboard, twice: it must be drawing and changing (live rates).
    // Without one, the window is only waited out.
    let dash = match display {
        Some(d) => {
            let mut q = crate::qmp::Qmp::connect(qmp, d, Duration::from_secs(10)).context("the display's QMP socket")?;
            let first = q.screenshot()?;
            std::thread::sleep(RATE_WINDOW);
            let second = q.screenshot()?;
            Some((q, first, second))
        }
        None => {
            std::thread::sleep(RATE_WINDOW);
            None
        }
    };
    let b = sample()?;
    let l1 = fresh_line(last_loadgen_line(&control_text(control))).context("no second summary line from the load generator")?;
    let secs = (b.0 - a.0).as_secs_f64();
    let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
    let api = l1.2.saturating_sub(l0.2) as f64 / (l1.0 - l0.0).as_secs_f64();
    r.figures.push(("load generator calls answered by the API".into(), format!("{api:.1}/s (its summary lines {:.1} s apart)", (l1.0 - l0.0).as_secs_f64())));
    r.figures.push(("events appended to the log (kcat)".into(), format!("{:.1}/s", rate(a.1, b.1))));
    r.figures.push(("rows into the analytics table (psql)".into(), format!("{:.1}/s", rate(a.2, b.2))));
    r.figures.push(("totals".into(), format!("{} events in the log, {} rows in the analytics table", b.1, b.2)));
    r.check("rates", b.1 > a.1 && b.2 > a.2 && l1.2 > l0.2, format!("over {secs:.1} s the log and the analytics table grew ({} -> {} records, {} -> {} rows); the API answered {} more calls", a.1, b.1, a.2, b.2, l1.2 - l0.2));
    let Some((mut q, first, second)) = dash else {
        let why = "the system has no `dashboard` partition with a display (the x86_64 flagship: its virtio-gpu display has only run on aarch64, docs/demo.md#x86_64)";
        r.skip("dashboard", why);
        r.skip("dashboard control", why);
        r.figures.push(("boot to summary".into(), format!("{:.1} s", boot.elapsed().as_secs_f64())));
        return Ok(());
    };
    second.write_png(shot)?;
    let colours: std::collections::HashSet<[u8; 3]> = (0..second.height).step_by(4).flat_map(|y| (0..second.width).step_by(4).map(move |x| (x, y))).map(|(x, y)| second.pixel(x, y)).collect();
    let changed = changed_pixels(&first, &second);
    r.check("dashboard", colours.len() > 8 && changed > 0, format!("{}x{}, {} colours, {changed} pixels changed in {} s", second.width, second.height, colours.len(), RATE_WINDOW.as_secs()));
    r.screenshot = Some(shot.to_path_buf());

    // 8. The dashboard's control reaches the load generator: its Controls
    // view (key 3), the load generator's Pause button (the first
    // generator's, at PAUSE), then Resume at the same place, then back
    // to the overview (key 1).
    q.key("3")?;
    std::thread::sleep(Duration::from_secs(1));
    let mut toggled = Vec::new();
    for (what, line) in [("paused", "loadgen: paused from the dashboard"), ("resumed", "loadgen: resumed from the dashboard")] {
        let before = control_text(control).matches(line).count();
        let t = Instant::now();
        q.click(PAUSE.0, PAUSE.1)?;
        let seen = poll(Duration::from_secs(30), stop, || (control_text(control).matches(line).count() > before).then_some(()));
        toggled.push(format!("{what} {}", if seen.is_some() { format!("in {:.1} s", t.elapsed().as_secs_f64()) } else { "never".to_owned() }));
        if seen.is_none() {
            break;
        }
    }
    q.key("1")?;
    let ok = toggled.len() == 2 && toggled.iter().all(|t| !t.ends_with("never"));
    r.check("dashboard control", ok, format!("the Pause/Resume button on \"control\": the load generator {}", toggled.join(", ")));
    r.figures.push(("boot to summary".into(), format!("{:.1} s", boot.elapsed().as_secs_f64())));
    Ok(())
}

/// The console so far.
fn control_text(control: &qemu::Control) -> String {
    control.output()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadgen_summary_lines_parse() {
        let console = "[loadgen] loadgen: 4 calls/s to the API\n[loadgen] loadgen: 40 calls, 30 created, 9 read, 1 failed, 0 skipped, last id 31\n[loadgen] loadgen: 80 calls, 60 created, 19 read, 1 failed, 2 skipped, last id 61\n";
        assert_eq!(loadgen_figures(console), Some((80, 60, 19, 1)));
        assert_eq!(loadgen_figures("[loadgen] loadgen: 4 calls/s to the API\n"), None);
    }

    #[test]
    fn the_summary_counts_failures() {
        let mut r = Report::default();
        assert!(!r.passed(), "no check is no pass");
        r.check("a", true, "fine");
        assert!(r.passed());
        r.check("b", false, "broken");
        assert!(!r.passed());
        assert!(r.summary().contains("checks: 1 passed, 1 failed"), "{}", r.summary());
        assert!(r.summary().contains("[FAILED] b: broken"));
    }

    #[test]
    fn a_skipped_check_neither_passes_nor_fails() {
        let mut r = Report::default();
        r.skip("dashboard", "no display");
        assert!(!r.passed(), "only skipped checks is no pass");
        r.check("a", true, "fine");
        assert!(r.passed(), "a skip does not fail the run");
        let s = r.summary();
        assert!(s.contains("[skipped] dashboard: no display"), "{s}");
        assert!(s.contains("checks: 1 passed, 0 failed, 1 skipped"), "{s}");
        r.check("b", false, "broken");
        assert!(!r.passed());
    }
}

//! The `hallows` binary as a user runs it: `check` exit codes and
//! diagnostics over the whole manifest corpus, `inspect` and `schema`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn hallows(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hallows")).args(args).current_dir(root()).output().expect("run hallows");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn corpus(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/manifests").join(kind))
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_every_valid_manifest() {
    let files = corpus("valid");
    assert!(files.len() >= 5);
    for f in files.iter().chain([root().join("vmm-config/examples/demo.toml")].iter()) {
        let (code, out, err) = hallows(&["check", f.to_str().expect("utf-8 path")]);
        assert_eq!(code, 0, "{} rejected:\n{err}", f.display());
        assert!(out.contains("ok") || out.contains("OK") || !out.is_empty(), "no summary for {}", f.display());
    }
}

/// Every invalid manifest exits 1, and its first expected diagnostic is
/// printed with the manifest's own `FILE:LINE:COL` and the exact message.
#[test]
fn check_rejects_every_invalid_manifest_with_file_line_col() {
    let files = corpus("invalid");
    assert!(files.len() >= 40, "corpus has {} files", files.len());
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read");
        let expect = src
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", f.display()));
        let (code, _, err) = hallows(&["check", f.to_str().expect("utf-8 path")]);
        assert_eq!(code, 1, "{} was not rejected with status 1:\n{err}", f.display());
        // Board-file errors name the board file; manifest errors the manifest.
        let (file, rest) = match expect.split_once(".toml:") {
            Some((board, rest)) if !board.contains(' ') => (format!("{board}.toml"), rest),
            _ => (f.file_name().and_then(|n| n.to_str()).expect("name").to_string(), expect),
        };
        let (line, rest) = rest.split_once(':').expect("line");
        let (col, message) = rest.split_once(": ").expect("col and message");
        let location = format!("{file}:{line}:{col}");
        assert!(err.contains(&location), "{}: diagnostic does not point at {location}:\n{err}", f.display());
        assert!(err.contains(message.trim()), "{}: message `{message}` missing:\n{err}", f.display());
    }
}

#[test]
fn inspect_prints_the_demo_memory_map() {
    let (code, out, err) = hallows(&["inspect", "vmm-config/examples/demo.toml"]);
    assert_eq!(code, 0, "{err}");
    for name in ["frontend", "backend", "database"] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert!(out.contains("0x0041000000"), "placement missing from:\n{out}");
}

#[test]
fn schema_is_json_describing_partitions() {
    let (code, out, _) = hallows(&["schema"]);
    assert_eq!(code, 0);
    assert!(out.trim_start().starts_with('{'));
    assert!(out.contains("\"partition\""));
}

#[test]
fn build_refuses_a_system_whose_specs_disagree_before_building() {
    let (code, _, err) = hallows(&["build", "tests/specs/systems/mismatch.toml"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("the two ends of channel \"requests\" disagree on the message type"), "{err}");
    assert!(err.contains("its service specs do not match the manifest"), "{err}");
    // Refused before any build step ran or any image was written.
    assert!(!err.contains("Compiling"), "{err}");
}

// Hostile input (issue 12, finding 7): `check` never panics, never hangs,
// never reads what is not a regular file in the project, and its work and
// output stay bounded. Each run has a hard time limit; the bounds asserted
// are generous, the point is that they exist.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;
use wait_timeout::ChildExt;

/// Runs `hallows args` (stdin an open pipe nobody writes to) and kills it
/// after 60 s: (status, stdout, stderr). A status of -1 means it was killed.
fn hallows_bounded(args: &[&str], dir: &Path) -> (i32, String, String) {
    hallows_bounded_for(args, dir, 60)
}

/// As [`hallows_bounded`], killing it after `secs`.
fn hallows_bounded_for(args: &[&str], dir: &Path, secs: u64) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hallows"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hallows");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let t = std::thread::spawn(move || {
            let _ = err.read_to_end(&mut e);
            e
        });
        let _ = out.read_to_end(&mut o);
        (o, t.join().unwrap_or_default())
    });
    let code = match child.wait_timeout(Duration::from_secs(secs)).expect("wait") {
        Some(status) => status.code().unwrap_or(-2),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            -1
        }
    };
    let (o, e) = reader.join().expect("reader");
    (code, String::from_utf8_lossy(&o).into_owned(), String::from_utf8_lossy(&e).into_owned())
}

/// A scratch directory inside the workspace (so paths in it are the project's).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

const ONE_PARTITION: &str = "version = 1\nboard = \"qemu-virt-aarch64\"\n[[partition]]\nname = \"a\"\ncores = [1]\nram = \"2 MiB\"\nguest = \"hello\"\non_fault = \"stop\"\n";

#[test]
fn special_files_are_refused_not_read_or_waited_on() {
    for path in ["/dev/stdin", "/dev/zero", "/"] {
        let (code, _, err) = hallows_bounded(&["check", path], &root());
        assert_eq!(code, 1, "{path}: {err}");
        assert!(err.contains("not a regular file"), "{path}: {err}");
    }
    // As the board or spec of a manifest, even with paths allowed anywhere.
    let dir = scratch("special");
    for (key, value) in [("board", "/dev/zero"), ("board", "/dev/stdin"), ("spec", "/dev/zero")] {
        let src = if key == "board" { ONE_PARTITION.replace("qemu-virt-aarch64", value) } else { format!("{ONE_PARTITION}spec = \"{value}\"\n") };
        let m = dir.join("m.toml");
        std::fs::write(&m, &src).unwrap();
        let (code, _, err) = hallows_bounded(&["--allow-outside-paths", "check", m.to_str().unwrap()], &root());
        assert_eq!(code, 1, "{key} = {value}: {err}");
        let line = if key == "board" { 2 } else { 9 };
        assert!(err.contains(&format!("m.toml:{line}:")) && err.contains("not a regular file"), "{key} = {value}: {err}");
    }
}

#[test]
fn paths_outside_the_project_are_refused_unless_allowed() {
    let dir = scratch("outside");
    let m = dir.join("m.toml");
    std::fs::write(&m, ONE_PARTITION.replace("qemu-virt-aarch64", "/etc/passwd")).unwrap();
    let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("m.toml:2:9") && err.contains("board file \"/etc/passwd\" is outside the project directory"), "{err}");
    assert!(err.contains("--allow-outside-paths") && !err.contains("root:"), "{err}");
    if Path::new("/etc/passwd").is_file() {
        // The user's explicit say-so lets it be read (it is no board file).
        let (code, _, err) = hallows_bounded(&["--allow-outside-paths", "check", m.to_str().unwrap()], &root());
        assert_eq!(code, 1, "{err}");
        assert!(!err.contains("outside the project"), "{err}");
    }
    // A spec outside the project, located at its `spec` line.
    std::fs::write(&m, format!("{ONE_PARTITION}spec = \"../../../../../../../../../../etc/hostname\"\n")).unwrap();
    let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("m.toml:9:8") && err.contains("spec \"../../../../../../../../../../etc/hostname\""), "{err}");
}

#[test]
fn bare_carriage_returns_are_one_error_not_thousands() {
    let dir = scratch("cr");
    for n in [2_000, 8_000] {
        let m = dir.join("cr.toml");
        std::fs::write(&m, format!("{ONE_PARTITION}{}", "\r".repeat(n))).unwrap();
        let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("control character U+000D (carriage return without a line feed) (and {} more)", n - 1)), "{err}");
        assert!(err.contains("1 error found"), "{err}");
        assert!(err.len() < 4096 && !err.contains('\r'), "{} bytes: {err:?}", err.len());
    }
}

#[test]
fn huge_inputs_are_refused_early_with_bounded_output() {
    let dir = scratch("huge");
    let m = dir.join("m.toml");
    // A 50 MB bootargs line: over the size limit, refused unread.
    let f = std::fs::File::create(&m).unwrap();
    f.set_len(50 << 20).unwrap();
    let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    // A 1,000,000-byte bootargs line: refused at its location, echoed as an excerpt.
    std::fs::write(&m, format!("{ONE_PARTITION}bootargs = \"{}\"\n", "x".repeat(1_000_000))).unwrap();
    let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("m.toml:9:12") && err.contains("bootargs are 1000000 bytes long; at most 127"), "{}", &err[..err.len().min(2000)]);
    assert!(err.len() < 4096, "{} bytes of output", err.len());
    // 10,000 partitions in under 1 MiB: one error at the 17th, nothing else checked.
    let many: String = (0..10_000).map(|i| format!("[[partition]]\nname = \"p{i}\"\ncores = [0]\nram = \"2 MiB\"\nguest = \"hello\"\non_fault = \"stop\"\n")).collect();
    std::fs::write(&m, format!("version = 1\nboard = \"qemu-virt-aarch64\"\n{many}")).unwrap();
    let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("too many partitions: 10000 declared, the system table holds at most 16") && err.contains("1 error found"), "{err}");
    // Thousands of syntax errors: 50 shown, the rest counted.
    std::fs::write(&m, format!("{ONE_PARTITION}{}", "=\n".repeat(5_000))).unwrap();
    let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: aborting after 50 errors (") && err.contains("more not shown); fix these first"), "{}", &err[err.len().saturating_sub(500)..]);
    assert!(err.len() < 64 * 1024, "{} bytes of output", err.len());
}

#[test]
fn a_spec_the_code_generator_cannot_emit_is_refused_by_check_not_a_panic() {
    let dir = scratch("spec");
    let m = dir.join("m.toml");
    // A guest that declares no spec of its own: the manifest's is checked.
    std::fs::write(&m, format!("{}spec = \"s.pt\"\n", ONE_PARTITION.replace("\"hello\"", "\"probe\""))).unwrap();
    for (body, want) in [
        ("message_struct M { field self: u8; }", "s.pt:3:26: `self` cannot name a field"),
        ("message_struct M { field x: [[[[u64; 65536]; 65536]; 65536]; 65536]; }", "s.pt:3:29: field `x` of `M` is more than 2^64 bytes"),
        (&format!("message_struct M {{ field x: {}u8{}; }}", "[".repeat(1400), "; 1]".repeat(1400)), "s.pt:3:61: array types nest more than 32 deep"),
    ] {
        std::fs::write(dir.join("s.pt"), format!("parseltongue_version 1;\nservice a {{\n{body}\n}}\n")).unwrap();
        let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &root());
        assert_eq!(code, 1, "{want}: {}", &err[..err.len().min(3000)]);
        let loc = want.split(": ").next().unwrap();
        assert!(err.contains(loc) && err.contains(want.split_once(": ").unwrap().1), "{want}: {}", &err[..err.len().min(3000)]);
    }
}

#[test]
fn outside_a_workspace_guest_names_are_not_checked_and_check_says_so() {
    let dir = std::env::temp_dir().join(format!("hallows-outside-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = dir.join("m.toml");
    std::fs::write(&m, ONE_PARTITION.replace("\"hello\"", "\"no-such-guest\"")).unwrap();
    let (code, out, err) = hallows_bounded(&["check", m.to_str().unwrap()], &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");
    assert!(err.contains("warning:") && err.contains("not inside a RustHallows workspace") && err.contains("guest names are not checked"), "{err}");
}

/// `hallows run` on a system that never ends: the time limit stops it
/// (status 124), and so do SIGINT and SIGTERM (status 130); either way each
/// partition's state is printed, read from the hypervisor's lines.
#[test]
fn run_stops_at_the_time_limit_or_on_sigint_and_prints_each_partition() {
    // The first run may build the hypervisor and the guests.
    let (code, _, err) = hallows_bounded_for(&["run", "tests/systems/forever.toml", "--timeout", "15"], &root(), 900);
    assert_eq!(code, 124, "{err}");
    assert!(err.contains("did not finish within 15 s"), "{err}");
    assert!(err.contains("hallows:   service: running"), "{err}");
    assert!(err.contains("hallows:   oneshot: exited 0"), "{err}");

    // Ctrl-C, and SIGTERM (a service manager's stop), the same way.
    stop_forever_with("-INT");
    stop_forever_with("-TERM");
}

/// Boots tests/systems/forever.toml, waits for its service, sends `signal`:
/// QEMU is stopped, status 130, each partition's state printed.
fn stop_forever_with(signal: &str) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hallows"))
        .args(["run", "tests/systems/forever.toml"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hallows");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(l) if l == "[service] probe: running until stopped" => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("the service never started: {e}");
            }
        }
    }
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = wait_bounded(child, 60);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{signal}: {err}");
    assert!(err.contains("stopped on request") && err.contains("hallows:   service: running"), "{signal}: {err}");
}

/// Waits at most `secs` for `child`, killing it after that.
fn wait_bounded(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hallows did not stop within {secs} s of the signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// The user's path of docs/networking.md: `hallows run` a manifest with a
/// `[[forward]]`, wait for it to say the service answers, reach it with
/// curl from the host, stop it with Ctrl-C. Both deployments.
#[test]
fn run_forwards_a_host_port_that_curl_reaches_in_both_deployments() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    for (manifest, serves) in [("vmm-config/examples/net-nic.toml", "web"), ("vmm-config/examples/net-gateway.toml", "api")] {
        // A first run may build the guests: bounded generously.
        let mut child = Command::new(env!("CARGO_BIN_EXE_hallows"))
            .args(["run", manifest])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run hallows");
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The machine's console: drained so QEMU never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut BufReader::new(stdout), &mut std::io::sink()));
        let mut seen = String::new();
        let answered = loop {
            match rx.recv_timeout(std::time::Duration::from_secs(900)) {
                Ok(l) => {
                    seen.push_str(&l);
                    seen.push('\n');
                    if l == format!("hallows: {serves} port 80 answers on 127.0.0.1:8080") {
                        break true;
                    }
                }
                Err(_) => break false,
            }
        };
        if !answered {
            let _ = child.kill();
            panic!("{manifest}: the service never answered:\n{seen}");
        }
        assert!(seen.contains(&format!("hallows: forwarding 127.0.0.1:8080 to {serves} port 80")), "{seen}");
        let curl = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-i", "http://127.0.0.1:8080/"])
            .output()
            .expect("curl (make deps installs it)");
        let body = String::from_utf8_lossy(&curl.stdout);
        assert!(curl.status.success(), "{manifest}: curl failed: {}", String::from_utf8_lossy(&curl.stderr));
        assert!(body.starts_with("HTTP/1.1 200"), "{manifest}: {body}");
        assert!(body.contains(serves), "{manifest}: the answer does not name partition `{serves}`: {body}");
        let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let out = wait_bounded(child, 60);
        assert_eq!(out.status.code(), Some(130), "{manifest}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A forward whose host port something else holds: `hallows run` refuses
/// to start (a client would reach whatever listens there), exit 64.
#[test]
fn run_refuses_a_forward_whose_host_port_is_taken() {
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("a free port");
    let port = holder.local_addr().expect("its address").port();
    let src = std::fs::read_to_string(root().join("vmm-config/examples/net-nic.toml")).expect("the example");
    let src = src.replace("host = 8080", &format!("host = {port}"));
    // Inside the project, so that hallows reads it without --allow-outside-paths.
    let dir = root().join("target/cli-tests/port-taken");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let m = dir.join("m.toml");
    std::fs::write(&m, src).expect("manifest");
    let (code, _, err) = hallows_bounded_for(&["run", m.to_str().unwrap(), "--timeout", "60"], &root(), 900);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains(&format!("host port {port} (forwarded to web port 80) is not free on 127.0.0.1")), "{err}");
    drop(holder);
}

/// docs/manifest.md's `inspect` sample is what `hallows inspect` prints for
/// the page's complete example.
#[test]
fn docs_manifest_inspect_sample_is_the_real_output() {
    let page = std::fs::read_to_string(root().join("docs/manifest.md")).expect("manifest.md");
    let block = |after: &str, fence: &str| -> String {
        let at = page.find(after).unwrap_or_else(|| panic!("`{after}` missing from manifest.md"));
        let start = page[at..].find(fence).expect("fence") + at + fence.len();
        let end = page[start..].find("```\n").expect("closing fence") + start;
        page[start..end].to_string()
    };
    let example = block("## A complete example", "```toml\n");
    let sample = block("`hallows inspect` on it prints", "```text\n");
    let dir = scratch("docs-inspect");
    std::fs::write(dir.join("example.toml"), example).expect("write");
    let (code, out, err) = hallows_bounded(&["inspect", "example.toml"], &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, sample, "docs/manifest.md's inspect sample differs from the real output");
}

/// Removes a directory when dropped (the test's project and its target/).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `hallows args` in `dir` with `env` set: (status, stdout, stderr).
fn hallows_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hallows"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run hallows");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A newcomer following a page in a temporary directory outside the
/// repository (`home`, standing in for `~`).
struct Newcomer {
    home: PathBuf,
    cwd: PathBuf,
    /// How many files of the page were written.
    files: usize,
}

impl Newcomer {
    /// A fresh `home`, removed when the second value drops.
    fn new(name: &str) -> (Newcomer, RemoveOnDrop) {
        let home = std::env::temp_dir().join(format!("hallows-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("temp dir");
        assert!(!home.starts_with(root()), "the project must be outside the repository");
        (Newcomer { cwd: home.clone(), home: home.clone(), files: 0 }, RemoveOnDrop(home))
    }

    /// Follows `page`: writes each file it shows (```LANG file=PATH```),
    /// compares each it shows as made (```LANG generated=PATH```), goes
    /// where its `cd`s go, skips the setup the test binary stands for, and
    /// hands every other command of its ```console``` blocks to `run`, in
    /// order, with the current directory and the output lines shown after
    /// it. Other blocks are prose.
    fn follow<'a>(&mut self, page: &'a str, mut run: impl FnMut(&Path, &'a str, &[&'a str])) {
        let mut lines = page.lines();
        while let Some(line) = lines.next() {
            let Some(info) = line.strip_prefix("```") else { continue };
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            let text = body.join("\n") + "\n";
            let attr = |key: &str| info.split_whitespace().find_map(|w| w.strip_prefix(key));
            if let Some(path) = attr("generated=") {
                let made = std::fs::read_to_string(self.cwd.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_eq!(made, text, "the page shows {path} otherwise than `hallows new` makes it");
            } else if let Some(path) = attr("file=") {
                let p = self.cwd.join(path);
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(&p, text).expect("write a file of the page");
                self.files += 1;
            } else if info == "console" {
                // Commands, each followed by the output lines the page shows.
                let mut i = 0;
                while i < body.len() {
                    let cmd = body[i].strip_prefix("$ ").unwrap_or_else(|| panic!("a console block line is neither `$ command` nor output: {}", body[i]));
                    let shown: Vec<&str> = body[i + 1..].iter().take_while(|l| !l.starts_with("$ ")).copied().collect();
                    i += 1 + shown.len();
                    match cmd.split_whitespace().collect::<Vec<_>>().as_slice() {
                        // The setup the test binary stands for (make test runs
                        // deps; the test runs in the checkout it was built from).
                        ["make", "deps"] | ["cargo", "install", "--path", "tools/hallows"] | ["git", "clone", ..] => {}
                        ["cd", "~"] => self.cwd = self.home.clone(),
                        ["cd", dir] => self.cwd = self.cwd.join(dir),
                        _ => run(&self.cwd, cmd, &shown),
                    }
                }
            }
        }
    }
}

/// docs/first-system.md as a newcomer follows it, in a temporary directory
/// outside the repository (standing in for `~`): every `hallows` command of
/// its console blocks is run where the page runs it and must exit 0, every
/// file it shows (```rust file=PATH```) is written, and every console line
/// it shows (`[partition] ...`) must be in the command's output: the
/// system is scaffolded, built and run on aarch64 and on x86_64. Then the
/// papercuts around it: a guest whose build.rs lacks the linker-script line
/// gets a hint, ARCH (HALLOWS_ARCH) that contradicts the board is refused,
/// and a manifest is found relative to any current directory.
#[test]
fn first_system_page_scaffolds_builds_and_runs_on_both_architectures() {
    let page = std::fs::read_to_string(root().join("docs/first-system.md")).expect("first-system.md");
    let (mut reader, _cleanup) = Newcomer::new("first-system");
    let home = reader.home.clone();
    let mut runs = Vec::new();
    reader.follow(&page, |cwd, cmd, shown| match cmd.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["hallows", args @ ..] => {
            let (code, out, err) = hallows_bounded_for(args, cwd, 900);
            assert_eq!(code, 0, "`{cmd}` in {} failed:\n{out}\n{err}", cwd.display());
            for want in shown.iter().filter(|l| l.starts_with('[')) {
                assert!(out.lines().any(|l| l == *want), "`{cmd}`: `{want}` missing from:\n{out}\n{err}");
            }
            if args.first() == Some(&"run") {
                assert!(err.contains("hallows: building") && err.contains("hallows: starting QEMU"), "no progress lines:\n{err}");
                assert!(!err.contains("TCG doesn't support"), "QEMU's CPUID warnings shown:\n{err}");
                runs.push(args[1].to_string());
            }
        }
        _ => panic!("docs/first-system.md runs `{cmd}`, which this test does not follow: teach it or change the page"),
    });
    let files = reader.files;
    assert_eq!(files, 4, "the page's files");
    assert_eq!(runs, ["kv.toml", "kv.toml", "kv-x86_64.toml"], "the page's runs");
    let kv = home.join("kv");

    // From another directory, the manifest's paths still resolve.
    let (code, out, err) = hallows_env(&["check", "../kv.toml"], &kv.join("guests"), &[]);
    assert_eq!(code, 0, "{out}{err}");

    // ARCH given to make, contradicting the board: refused before building.
    let (code, _, err) = hallows_env(&["build", "kv.toml"], &kv, &[("HALLOWS_ARCH", "x86_64")]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("ARCH=x86_64, but ./kv.toml's board `qemu-virt-aarch64` is aarch64"), "{err}");

    // A guest without the linker-script line: the link error gets a hint.
    let (code, _, err) = hallows_env(&["new", "guest", "nolink"], &kv, &[]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(kv.join("guests/nolink/build.rs"), "fn main() {}\n").expect("write build.rs");
    let manifest = std::fs::read_to_string(kv.join("kv.toml")).expect("kv.toml").replace("guest = \"store\"", "guest = \"nolink\"");
    std::fs::write(kv.join("nolink.toml"), manifest).expect("write");
    let (code, _, err) = hallows_env(&["build", "nolink.toml"], &kv, &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("__guest_end"), "{err}");
    assert!(err.contains("hint: guest `nolink` is not linked with the runtime's linker script"), "{err}");
    assert!(err.contains("guests/nolink/build.rs needs `fn main() { println!(\"cargo:rustc-link-arg-bins=-Tguest.ld\"); }`"), "{err}");
}

/// A `hallows run` of a page's walkthrough ([`walk_api_page`]), in the background:
/// the machine serves until the page stops it (Ctrl-C).
struct Serving {
    /// `None` once stopped.
    child: Option<std::process::Child>,
    /// The console lines the page shows for this run.
    shown: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Serving {
    /// Ctrl-C: the machine stops, exit status 130, and every console line
    /// the page showed was printed.
    fn stop(mut self) -> String {
        let child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let out = wait_bounded(child, 60);
        let console = self.stdout.take().expect("read once").join().expect("the console reader");
        let err: Vec<String> = self.stderr.iter().collect();
        assert_eq!(out.status.code(), Some(130), "Ctrl-C: {}\n{console}", err.join("\n"));
        for want in &self.shown {
            assert!(console.lines().any(|l| l == want), "`{want}` missing from the console:\n{console}");
        }
        console
    }
}

/// A test that fails while the system runs stops it the same way (QEMU
/// is in a process group of its own: killing `hallows` would leave it).
impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait_timeout(Duration::from_secs(30));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a newcomer's walk through a page that serves an API did.
struct Walked {
    /// Files of the page written (```LANG file=PATH```).
    files: usize,
    /// `hallows run`s (each stopped with Ctrl-C before the next).
    runs: usize,
    /// `curl`s, each printing exactly what the page shows.
    curls: usize,
    /// The last run's console, once stopped.
    console: String,
}

/// Follows `section` of docs/`page` as a newcomer does, in a temporary
/// directory outside the repository (`Newcomer`): its files written or
/// compared as made, every `hallows` command run where the page runs it
/// (exit 0, the lines shown printed), each `hallows run` in the background
/// as the page leaves it running, until partition `api` answers, every
/// `curl` answering exactly as shown, Ctrl-C (status 130, the console
/// lines shown printed) before the next run and at the end. The API's host
/// port is the page's 8080 moved to `port` (8080 is the demos' and other
/// tests'): the manifest's `host = 8080` is changed when it is run. Every
/// command has a hard time limit.
///
/// The one departure from a newcomer's first run: the project's cargo
/// build directory (`target/`, without `target/hallows`: no image, no
/// disk) is kept between runs of the test, under the test's target
/// directory, and put back before the first `hallows run`. The project's
/// path changes every time, so its guest is always compiled again; the
/// crates it depends on are not (a first run in a fresh checkout builds
/// them all).
fn walk_api_page(page: &str, section: &str, name: &str, port: &str) -> Walked {
    use std::io::{BufRead, BufReader};
    let (mut reader, _cleanup) = Newcomer::new(name);
    // Dropped before `_cleanup` removes the project, after `serving` stops
    // the machine, even when a step fails.
    let mut kept = KeptTarget { cache: Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-target")), project: None };
    let (mut curls, mut runs) = (0, 0);
    let mut serving: Option<Serving> = None;
    reader.follow(section, |cwd, cmd, shown| match cmd.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["hallows", "run", manifest] => {
            // The page's Ctrl-C, before it runs the system again.
            if let Some(s) = serving.take() {
                s.stop();
            }
            if kept.project.is_none() && !cwd.join("target").exists() {
                let _ = std::fs::remove_dir_all(kept.cache.join("hallows"));
                let _ = std::fs::rename(&kept.cache, cwd.join("target"));
            }
            kept.project = Some(cwd.to_path_buf());
            // The page's host port 8080, moved off the demos'.
            let m = cwd.join(manifest);
            let text = std::fs::read_to_string(&m).expect("the manifest");
            assert!(text.contains("\nhost = 8080\n") || text.contains(&format!("\nhost = {port}\n")), "{text}");
            std::fs::write(&m, text.replace("\nhost = 8080\n", &format!("\nhost = {port}\n"))).expect("write");
            let mut child = Command::new(env!("CARGO_BIN_EXE_hallows"))
                .args(["run", manifest, "--timeout", "1500"])
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run hallows");
            let (stderr, stdout) = (child.stderr.take().expect("stderr"), child.stdout.take().expect("stdout"));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            let stdout = std::thread::spawn(move || {
                let mut console = String::new();
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    console.push_str(&line);
                    console.push('\n');
                }
                console
            });
            let s = Serving { child: Some(child), shown: shown.iter().map(|l| l.to_string()).collect(), stdout: Some(stdout), stderr: rx };
            // A first run builds in a fresh workspace: bounded generously
            // (a failure stops the machine: `Serving`'s drop).
            let answers = format!("hallows: api port 8080 answers on 127.0.0.1:{port}");
            let deadline = std::time::Instant::now() + Duration::from_secs(1200);
            let mut seen = String::new();
            while !seen.lines().any(|l| l == answers) {
                match s.stderr.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                    Ok(l) => seen.push_str(&(l + "\n")),
                    Err(_) => panic!("`{cmd}`: the API did not answer within 1200 s:\n{seen}"),
                }
            }
            serving = Some(s);
            runs += 1;
        }
        ["hallows", args @ ..] => {
            let (code, out, err) = hallows_bounded_for(args, cwd, 300);
            assert_eq!(code, 0, "`{cmd}` in {} failed:\n{out}\n{err}", cwd.display());
            for want in shown {
                assert!(out.lines().any(|l| l == *want), "`{cmd}`: `{want}` missing from:\n{out}\n{err}");
            }
        }
        ["curl", ..] => {
            assert!(serving.is_some(), "`{cmd}` with no system running");
            let out = Command::new("timeout")
                .args(["60", "sh", "-c", &cmd.replace("localhost:8080", &format!("localhost:{port}"))])
                .current_dir(cwd)
                .output()
                .expect("sh");
            assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(got.lines().collect::<Vec<_>>(), shown, "`{cmd}` printed otherwise than docs/{page} shows");
            curls += 1;
        }
        _ => panic!("docs/{page} runs `{cmd}`, which this test does not follow: teach it or change the page"),
    });
    let files = reader.files;
    let console = serving.unwrap_or_else(|| panic!("docs/{page} leaves no system running")).stop();
    Walked { files, runs, curls, console }
}

/// A page's project's cargo build directory, kept for the next run of the
/// test ([`walk_api_page`]): moved to `cache` when dropped, without
/// `target/hallows` (images and disks).
struct KeptTarget {
    cache: PathBuf,
    /// The project, once it has been run.
    project: Option<PathBuf>,
}

impl Drop for KeptTarget {
    fn drop(&mut self) {
        if let Some(project) = &self.project {
            let _ = std::fs::remove_dir_all(project.join("target/hallows"));
            let _ = std::fs::remove_dir_all(&self.cache);
            let _ = std::fs::rename(project.join("target"), &self.cache);
        }
    }
}

/// docs/basilisk.md's "From an empty directory to a running API" as a
/// newcomer follows it ([`walk_api_page`]): `hallows new system notes
/// --basilisk`, the spec shown as made, `hallows check`, `hallows run`
/// answering every `curl` of the page exactly as shown, Ctrl-C (status
/// 130), the page's handler written, a second run that finds the first
/// run's records on the disk and serves the new route. The API's host port
/// is 27280.
#[test]
fn basilisk_page_scaffolds_builds_and_answers_curl() {
    let page = std::fs::read_to_string(root().join("docs/basilisk.md")).expect("basilisk.md");
    let start = page.find("\n## From an empty directory to a running API\n").expect("the section");
    let section = &page[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let walked = walk_api_page("basilisk.md", section, "basilisk-page", "27280");
    assert!(walked.console.contains("[api] GET /search 200 "), "the request log:\n{}", walked.console);
    assert_eq!((walked.files, walked.runs), (2, 2), "the page's files and runs");
    assert!(walked.curls >= 8, "the page's curl commands: {}", walked.curls);
}

/// docs/tutorial.md, the whole page, as a newcomer follows it
/// ([`walk_api_page`]) from the clone on (the machine's packages and
/// rustup, and `git clone` and `cargo install`, are what the test binary
/// and `make test`'s deps stand for): `hallows new system guestbook
/// --basilisk`, the manifest shown as made, the page's spec and handler
/// written, `hallows check`, a run answering every `curl` as shown, the
/// page's change to the spec, a second run on the same disk answering as
/// shown. Nothing in the outputs varies (ids count from 1 on a fresh
/// disk), so nothing is masked. The API's host port is 27281.
#[test]
fn tutorial_page_goes_from_nothing_to_a_service_answering_curl() {
    let page = std::fs::read_to_string(root().join("docs/tutorial.md")).expect("tutorial.md");
    let started = std::time::Instant::now();
    let walked = walk_api_page("tutorial.md", &page, "tutorial-page", "27281");
    assert!(walked.console.contains("[api] GET /by/Ada 200 "), "the request log:\n{}", walked.console);
    assert_eq!((walked.files, walked.runs), (3, 2), "the page's files and runs");
    assert!(walked.curls >= 10, "the page's curl commands: {}", walked.curls);
    eprintln!("docs/tutorial.md followed in {:.0} s", started.elapsed().as_secs_f64());
}

/// `hallows new` refuses what it cannot make well, saying what to do: a
/// system inside another workspace, over an existing directory, with a
/// name that is no package name, a guest outside any workspace or twice.
#[test]
fn new_refuses_bad_names_existing_files_and_nested_workspaces() {
    let home = std::env::temp_dir().join(format!("hallows-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("temp dir");
    let _cleanup = RemoveOnDrop(home.clone());
    let (code, _, err) = hallows_env(&["new", "guest", "g"], &home, &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("runs inside a system's workspace (make one with `hallows new system DIR`)"), "{err}");
    let (code, _, err) = hallows_env(&["new", "system", "Bad Name"], &home, &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("`Bad Name` is not a usable system name"), "{err}");
    let (code, out, err) = hallows_env(&["new", "system", "x", "--board", "qemu-x86_64"], &home, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("next: cd x && hallows run x.toml"), "{out}");
    let manifest = std::fs::read_to_string(home.join("x/x.toml")).expect("x.toml");
    assert!(manifest.contains("board = \"qemu-x86_64\"") && manifest.contains("guest = \"hello\""), "{manifest}");
    let (code, _, err) = hallows_env(&["check", "x.toml"], &home.join("x"), &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = hallows_env(&["new", "system", "x"], &home, &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = hallows_env(&["new", "system", "inner"], &home.join("x"), &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("would be inside another Cargo workspace"), "{err}");
    let (code, _, err) = hallows_env(&["new", "guest", "hello"], &home.join("x/guests"), &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("already has a guest `hello`"), "{err}");
    // A Basilisk API needs a NIC: not on the x86_64 PC board, on microvm.
    let (code, _, err) = hallows_env(&["new", "system", "pc", "--basilisk", "--board", "qemu-x86_64"], &home, &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("use --board qemu-microvm (x86_64) or qemu-virt-aarch64"), "{err}");
    assert!(!home.join("pc").exists());
    let (code, _, err) = hallows_env(&["new", "system", "micro", "--basilisk", "--board", "qemu-microvm"], &home, &[]);
    assert_eq!(code, 0, "{err}");
    // Its `store` is the checkout's service: the manifest checks.
    let (code, out, err) = hallows_env(&["check", "micro.toml"], &home.join("micro"), &[]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The exit statuses do not overlap: `run --help` lists them, and a
/// manifest that does not check is 1 from `check` but 64 (hallows could
/// not build) from `build` and `run`, never 2 (the hypervisor refused it).
#[test]
fn exit_statuses_are_documented_and_distinct() {
    let (code, out, _) = hallows(&["run", "--help"]);
    assert_eq!(code, 0);
    for row in ["0    every partition exited 0", "2    the hypervisor refused the system at boot", "64   hallows could not check, build or start", "124  the --timeout passed", "130  stopped by Ctrl-C (SIGINT) or SIGTERM"] {
        assert!(out.contains(row), "`{row}` missing from run --help:\n{out}");
    }
    let bad = corpus("invalid").into_iter().next().expect("an invalid manifest");
    let bad = bad.to_str().expect("utf-8");
    assert_eq!(hallows(&["check", bad]).0, 1);
    assert_eq!(hallows(&["build", bad]).0, 64);
    assert_eq!(hallows(&["run", bad]).0, 64);
}

/// Issue 15: the channel type check does not depend on the manifest's
/// `spec` keys. Each guest crate declares the spec its build script
/// compiles (`[package.metadata.hallows] spec`, enforced by the build
/// helper); `hallows check` learns it there. Two guests whose specs swap
/// two enum values, in a manifest without `spec` keys, fail the check at
/// the receiver's spec with both definitions; the agreeing pair passes; a
/// `spec` key naming another file than the guest compiles is refused.
#[test]
fn check_learns_each_guests_spec_from_the_guest_without_spec_keys() {
    const SPEC: &str = "parseltongue_version 1;\nservice SERVICE {\n    message_enum Operation: u8 {\n        variant Get = 1;\n        variant Put = 2;\n    }\n    message_struct Request {\n        field id: u64;\n        field operation: Operation;\n    }\n    CHANNEL\n}\n";
    const MANIFEST: &str = "version = 1\nboard = \"qemu-virt-aarch64\"\n\n[[partition]]\nname = \"front\"\ncores = [1]\nram = \"16 MiB\"\nguest = \"client\"\non_fault = \"stop\"\n\n[[partition]]\nname = \"back\"\ncores = [2]\nram = \"16 MiB\"\nguest = \"server\"\non_fault = \"stop\"\n\n[[channel]]\nname = \"requests\"\nfrom = \"front\"\nto = \"back\"\nslot_size = 64\nslots = 16\nnotify = \"poll\"\n";
    let ws = std::env::temp_dir().join(format!("hallows-guest-specs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ws);
    std::fs::create_dir_all(&ws).unwrap();
    // A workspace of its own whose guests are found as hallows finds any:
    // members with a binary that depend on the runtime.
    std::fs::write(ws.join("Cargo.toml"), "[workspace]\nmembers = [\"guests/services/*\"]\nresolver = \"2\"\n").unwrap();
    let rt = root().join("guests/runtime/rt");
    let guest = |name: &str, channel: &str, swap: bool| {
        let dir = ws.join("guests/services").join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nhallows-rt = {{ path = \"{}\" }}\n\n[package.metadata.hallows]\nspec = \"{name}.pt\"\n",
                rt.display()
            ),
        )
        .unwrap();
        let mut spec = SPEC.replace("SERVICE", name).replace("CHANNEL", channel);
        if swap {
            spec = spec.replace("Get = 1", "Get = 2").replace("Put = 2", "Put = 1");
        }
        std::fs::write(dir.join(format!("{name}.pt")), spec).unwrap();
    };
    guest("client", "send_channel \"requests\" carrying Request;", false);
    guest("server", "receive_channel \"requests\" carrying Request handled_by on_request;", true);
    let m = ws.join("system.toml");
    std::fs::write(&m, MANIFEST).unwrap();
    assert!(!MANIFEST.contains("spec"));

    let (code, out, err) = hallows_bounded(&["check", m.to_str().unwrap()], &ws);
    assert_eq!(code, 1, "a disagreeing pair passed:\n{out}{err}");
    assert!(err.contains("the two ends of channel \"requests\" disagree on the message type"), "{err}");
    // At the receiver's channel declaration, with file:line:col.
    assert!(err.contains("guests/services/server/server.pt:11:21"), "{err}");
    assert!(err.contains("Operation: u8 { Get = 2; Put = 1; }") && err.contains("Operation: u8 { Get = 1; Put = 2; }"), "both definitions expected:\n{err}");

    guest("server", "receive_channel \"requests\" carrying Request handled_by on_request;", false);
    let (code, out, err) = hallows_bounded(&["check", m.to_str().unwrap()], &ws);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");

    // A `spec` key must name what the guest compiles.
    std::fs::write(ws.join("other.pt"), SPEC.replace("SERVICE", "client").replace("CHANNEL", "send_channel \"requests\" carrying Request;")).unwrap();
    std::fs::write(&m, MANIFEST.replace("guest = \"client\"\n", "guest = \"client\"\nspec = \"other.pt\"\n")).unwrap();
    let (code, _, err) = hallows_bounded(&["check", m.to_str().unwrap()], &ws);
    let _ = std::fs::remove_dir_all(&ws);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("partition `front`: the manifest's `spec` is") && err.contains("but its guest `client` compiles") && err.contains("client/client.pt"), "{err}");
}

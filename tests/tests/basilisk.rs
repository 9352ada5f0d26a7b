//! The Basilisk demo (guests/services/todo) booted under QEMU with the
//! store partition: curl drives the whole REST API from the host, wrk
//! loads it, and POST /quit ends it with exit status 0.

use std::process::Command;
use std::time::{Duration, Instant};

use hallows_tests::*;

const TOKEN: &str = "Authorization: Bearer test-token";

/// `curl` with the token (unless `auth` is false): status, headers, body.
fn curl(port: u16, auth: bool, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-S", "--max-time", "30", "-D", "-", "-X", method]);
    if auth {
        c.args(["-H", TOKEN]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    } else if method == "POST" {
        // Content-Length: 0 (a POST without a length is 411).
        c.args(["--data-binary", ""]);
    }
    let out = c.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl (make deps installs it)");
    assert!(out.status.success(), "curl {method} {path}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Sends `text` as is and reads until the server closes.
fn raw_request(port: u16, text: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn wait_api(run: &mut Running, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(240) {
        if run.ended() {
            let b = run.wait();
            panic!("the machine ended before the API answered:\n{}", b.output);
        }
        let ok = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-H", TOKEN])
            .arg(format!("http://127.0.0.1:{port}/health"))
            .output()
            .is_ok_and(|o| o.stdout == b"200");
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let b = run.stop();
    panic!("GET /health never answered 200:\n{}", b.output);
}

/// The system on the store disk `image`.
fn start(image: &std::path::Path) -> (Running, u16) {
    let img = image.to_path_buf();
    let run = start_system_edited("todo", &[], &move |s| {
        s.partitions.iter_mut().find(|p| p.name == "store").and_then(|p| p.disk.as_mut()).expect("the store has a disk").path = img.clone();
    });
    let port = run.host_port("todo", 8080);
    (run, port)
}

/// POST /quit with the token; the system ends with status 0.
fn quit(mut run: Running, port: u16) -> Boot {
    let (s, _, _) = curl(port, true, "POST", "/quit", None);
    assert_eq!(s, 200);
    let b = run.wait();
    b.assert_status(0);
    assert!(b.output.contains("todo: bye"), "{}", b.output);
    assert!(b.output.contains("store: shut down"), "{}", b.output);
    b
}

#[test]
fn the_todo_api_serves_curl_and_wrk_and_persists_in_the_store() {
    let dir = root().join("target/hallows/tests/basilisk");
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("todo-store.img");
    let _ = std::fs::remove_file(&image);
    let (mut run, port) = start(&image);
    wait_api(&mut run, port);

    // Create: 201, the new record with its defaults, Location.
    let (s, head, body) = curl(port, true, "POST", "/todos", Some(r#"{"title":"write the docs","tag":"work","due":"2026-12-24"}"#));
    assert_eq!(s, 201, "{head}{body}");
    assert!(head.contains("Location: /todos/1"), "{head}");
    assert_eq!(json(&body), json(r#"{"id":1,"title":"write the docs","done":false,"priority":3,"tag":"work","due":"2026-12-24"}"#));
    for i in 2..=25 {
        let (s, _, body) = curl(port, true, "POST", "/todos", Some(&format!(r#"{{"title":"task {i}","priority":{}}}"#, 1 + i % 5)));
        assert_eq!((s, json(&body)["id"].as_u64()), (201, Some(i)), "{body}");
    }
    // List with pagination: 20 per page (page_size), then the rest.
    let (s, _, body) = curl(port, true, "GET", "/todos", None);
    let page = json(&body);
    assert_eq!((s, page["data"].as_array().unwrap().len(), page["next"].as_u64()), (200, 20, Some(20)), "{body}");
    let (_, _, body) = curl(port, true, "GET", "/todos?after=20&limit=10", None);
    let page = json(&body);
    let ids: Vec<u64> = page["data"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!((ids, page["next"].is_null()), ((21..=25).collect(), true), "{body}");
    // Show, replace, update, delete.
    let (s, _, body) = curl(port, true, "GET", "/todos/5", None);
    assert_eq!((s, json(&body)["title"].as_str()), (200, Some("task 5")));
    let (s, _, body) = curl(port, true, "PUT", "/todos/5", Some(r#"{"title":"replaced","priority":5}"#));
    assert_eq!((s, json(&body)["title"].as_str(), json(&body)["priority"].as_u64()), (200, Some("replaced"), Some(5)), "{body}");
    let (s, _, body) = curl(port, true, "PATCH", "/todos/6", Some(r#"{"done":true}"#));
    assert_eq!((s, json(&body)["done"].as_bool(), json(&body)["title"].as_str()), (200, Some(true), Some("task 6")), "{body}");
    let (s, _, body) = curl(port, true, "DELETE", "/todos/7", None);
    assert_eq!((s, body.as_str()), (204, ""));
    let (s, _, body) = curl(port, true, "GET", "/todos/7", None);
    assert_eq!((s, json(&body)["error"].as_str()), (404, Some("todo 7 not found")));
    // The hand-written routes.
    let (s, _, body) = curl(port, true, "POST", "/todos/1/rename", Some(r#"{"title":"docs, renamed"}"#));
    assert_eq!((s, json(&body)["title"].as_str(), json(&body)["tag"].as_str()), (200, Some("docs, renamed"), Some("work")), "{body}");
    let (s, _, body) = curl(port, true, "GET", "/tags/work", None);
    assert_eq!((s, json(&body)["data"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
    // No log partition in this system: background jobs are refused, 503.
    let (s, _, body) = curl(port, true, "POST", "/todos/1/remind", None);
    assert_eq!((s, json(&body)["error"].as_str()), (503, Some("this system has no job queue (no log partition)")), "{body}");
    // Validation: 422 naming every failing field.
    let (s, _, body) = curl(port, true, "POST", "/todos", Some(r#"{"title":"","priority":9,"tag":"play","due":"soon","colour":"red"}"#));
    let e = json(&body);
    assert_eq!(s, 422, "{body}");
    for f in ["title", "priority", "tag", "due", "colour"] {
        assert!(e["fields"][f].is_string(), "{f} not named: {body}");
    }
    let (s, _, body) = curl(port, true, "POST", "/todos", Some("{not json"));
    assert_eq!((s, json(&body)["error"].is_string()), (400, true));
    // Unknown route, wrong method, oversized body, missing or wrong token.
    let (s, _, body) = curl(port, true, "GET", "/nope", None);
    assert_eq!((s, json(&body)["error"].as_str()), (404, Some("no such route")));
    let (s, head, body) = curl(port, true, "DELETE", "/todos", None);
    assert_eq!((s, json(&body)["error"].is_string()), (405, true));
    assert!(head.contains("Allow: GET, POST, HEAD"), "{head}");
    let big = format!(r#"{{"title":"{}"}}"#, "x".repeat(20_000));
    let (s, _, body) = curl(port, true, "POST", "/todos", Some(&big));
    assert_eq!((s, json(&body)["error"].is_string()), (413, true));
    let (s, head, body) = curl(port, false, "GET", "/todos", None);
    assert_eq!((s, json(&body)["error"].is_string()), (401, true));
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    // Chunked bodies are de-chunked by the engine; a POST without any
    // length is 411.
    let out = Command::new("curl")
        .args(["-s", "-H", TOKEN, "-H", "Transfer-Encoding: chunked", "--data-binary", r#"{"title":"sent in chunks"}"#])
        .arg(format!("http://127.0.0.1:{port}/todos"))
        .output()
        .unwrap();
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout))["title"], "sent in chunks");
    let raw = raw_request(port, "POST /todos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 411 Length Required\r\n"), "{raw}");

    // wrk: keep-alive GETs of one record; no socket error.
    let out = Command::new("wrk")
        .args(["-t1", "-c4", "-d3s", "--timeout", "10s", "-H", TOKEN])
        .arg(format!("http://127.0.0.1:{port}/todos/3"))
        .output()
        .expect("wrk (make deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("wrk against the todo API in QEMU:\n{text}");
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    let requests: u64 = text.lines().find_map(|l| l.trim().split_once(" requests in ")).and_then(|(n, _)| n.trim().parse().ok()).unwrap_or(0);
    assert!(requests > 0, "{text}");
    // 429 (the spec's rate limit) is the only error status allowed.
    if let Some(l) = text.lines().find(|l| l.contains("Non-2xx")) {
        eprintln!("{l} (the rate limit)");
    }

    // Statistics, then the end: POST /quit (with the token), exit status 0.
    let (s, _, body) = curl(port, true, "GET", "/_stats", None);
    let st = json(&body);
    let post = st["routes"].as_array().unwrap().iter().find(|r| r["route"] == "POST /todos").unwrap().clone();
    assert_eq!((s, post["requests"].as_u64(), post["errors"].as_u64()), (200, Some(28), Some(2)), "{body}");
    let (s, _, _) = curl(port, false, "POST", "/quit", None);
    assert_eq!(s, 401, "POST /quit needs the token too");
    let b = quit(run, port);
    assert!(b.output.contains("todo: route GET /todos/{u64}:"), "{}", b.output);

    // Booted again on the same disk: every record is still there.
    let (mut run, port) = start(&image);
    wait_api(&mut run, port);
    let (_, _, body) = curl(port, true, "GET", "/todos?limit=50", None);
    let all = json(&body);
    let ids: Vec<u64> = all["data"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=26).filter(|&i| i != 7).collect::<Vec<_>>(), "{body}");
    assert_eq!(all["data"][0]["title"], "docs, renamed");
    assert_eq!(all["data"][4]["title"], "replaced");
    let (s, _, body) = curl(port, true, "POST", "/todos", Some(r#"{"title":"after the reboot"}"#));
    assert_eq!((s, json(&body)["id"].as_u64()), (201, Some(27)), "ids are never reused: {body}");
    quit(run, port);
}

/// The demo with background jobs (tests/systems/todo-jobs.toml) on the
/// store and log disks in `dir`.
fn start_jobs(dir: &std::path::Path) -> (Running, u16, u16) {
    let dir = dir.to_path_buf();
    let run = start_system_edited("todo-jobs", &[], &move |s| {
        for p in s.partitions.iter_mut() {
            if let Some(d) = p.disk.as_mut() {
                d.path = dir.join(format!("{}.img", p.name));
            }
        }
    });
    let (api, kafka) = (run.host_port("todo", 8080), run.host_port("log", 9092));
    (run, api, kafka)
}

/// Waits until the log has committed `want` for the worker's group (the
/// worker reported every job before it done), read over Kafka's
/// OffsetFetch from the host.
fn wait_jobs_done(run: &mut Running, kafka: u16, want: i64) {
    let mut c = hallows_log::client::Client::connect(&format!("127.0.0.1:{kafka}"), Duration::from_secs(30)).expect("the log's Kafka port");
    let start = Instant::now();
    loop {
        let (e, committed) = c.committed("workers", "jobs", 0).expect("offset fetch");
        if e == 0 && committed == want {
            return;
        }
        if start.elapsed() > Duration::from_secs(120) || run.ended() {
            let b = run.stop();
            panic!("the workers' committed offset is {committed} (error {e}), not {want}:\n{}", b.output);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Background jobs: a handler enqueues to the log partition's in-system
/// topic over ring channels and answers 202 once the job is durable; the
/// worker partition has it delivered over another ring channel and runs
/// it; the topic is readable by any Kafka client; after a reboot on the
/// same disks the worker gets only the jobs it had not finished.
#[test]
fn background_jobs_go_through_the_log_to_the_worker_partition() {
    let dir = root().join("target/hallows/tests/basilisk-jobs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut run, port, kafka) = start_jobs(&dir);
    wait_api(&mut run, port);
    let (s, _, body) = curl(port, true, "POST", "/todos", Some(r#"{"title":"water the plants"}"#));
    assert_eq!(s, 201, "{body}");
    for job in 0..3 {
        let (s, _, body) = curl(port, true, "POST", "/todos/1/remind", None);
        assert_eq!((s, json(&body)), (202, json(&format!(r#"{{"job":{job},"kind":"remind","todo":1}}"#))), "{body}");
    }
    let (s, _, body) = curl(port, true, "POST", "/todos/99/remind", None);
    assert_eq!((s, json(&body)["error"].as_str()), (404, Some("todo 99 not found")));
    let (s, _, _) = curl(port, false, "POST", "/todos/1/remind", None);
    assert_eq!(s, 401);
    // The jobs are ordinary records of topic "jobs", readable over Kafka.
    let mut c = hallows_log::client::Client::connect(&format!("127.0.0.1:{kafka}"), Duration::from_secs(30)).expect("the log's Kafka port");
    let (e, hw, batches) = c.fetch("jobs", 0, 0, 1 << 20, 0).expect("fetch");
    assert_eq!((e, hw), (0, 3));
    let mut records = Vec::new();
    let mut at = 0;
    while at + 12 <= batches.len() {
        let end = at + 12 + i32::from_be_bytes(batches[at + 8..at + 12].try_into().unwrap()) as usize;
        records.extend(hallows_log::batch::decode(&batches[at..end]).expect("a valid batch"));
        at = end;
    }
    let got: Vec<(i64, Vec<u8>, Vec<u8>)> = records.into_iter().map(|r| (r.offset, r.key.unwrap_or_default(), r.value.unwrap_or_default())).collect();
    let want: Vec<(i64, Vec<u8>, Vec<u8>)> = (0..3).map(|o| (o, b"remind".to_vec(), b"1 water the plants".to_vec())).collect();
    assert_eq!(got, want);
    wait_jobs_done(&mut run, kafka, 3);
    let b = run.stop();
    for job in 0..3 {
        assert!(b.output.contains(&format!("[worker] worker: job {job}: reminder for todo 1: water the plants")), "{}", b.output);
    }
    assert!(b.output.contains("worker: 3 jobs done") && b.output.contains("all in order"), "{}", b.output);
    assert!(b.output.contains("partition worker exited with status 0"), "{}", b.output);

    // Booted again on the same disks: the three done jobs are not run
    // again; a new one is.
    let (mut run, port, kafka) = start_jobs(&dir);
    wait_api(&mut run, port);
    let (s, _, body) = curl(port, true, "POST", "/todos/1/remind", None);
    assert_eq!((s, json(&body)["job"].as_i64()), (202, Some(3)), "{body}");
    wait_jobs_done(&mut run, kafka, 4);
    let b = run.stop();
    assert!(b.output.contains("consumers on \"deliveries\" from offset 3"), "{}", b.output);
    assert!(b.output.contains("[worker] worker: job 3: reminder for todo 1"), "{}", b.output);
    assert!(!b.output.contains("worker: job 0:"), "a finished job ran again:\n{}", b.output);
}

/// docs/basilisk.md's walkthrough as a newcomer follows it: the demo
/// manifest (vmm-config/examples/todo.toml) booted on fresh disks, then
/// every command of the page's `console walkthrough` block run by the
/// shell, each of its output lines compared with the page's.
#[test]
fn the_walkthrough_in_the_docs_gives_what_it_shows() {
    let page = std::fs::read_to_string(root().join("docs/basilisk.md")).expect("docs/basilisk.md");
    let block: Vec<&str> = page.lines().skip_while(|l| *l != "```console walkthrough").skip(1).take_while(|l| !l.starts_with("```")).collect();
    assert!(block.len() > 4 && block[0].starts_with("$ "), "no walkthrough block in docs/basilisk.md");
    let dir = root().join("target/hallows/tests/basilisk-walkthrough");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let disks = dir.clone();
    let mut run = start_manifest_edited(&root().join("vmm-config/examples/todo.toml"), &[], &move |s| {
        for p in s.partitions.iter_mut() {
            if let Some(d) = p.disk.as_mut() {
                d.path = disks.join(format!("{}.img", p.name));
            }
        }
    });
    let port = run.host_port("todo", 8080);
    assert_eq!((port, run.host_port("log", 9092)), (8080, 9092), "the page's ports are the manifest's");
    let start = Instant::now();
    while !Command::new("curl").args(["-s", "-f", "-o", "/dev/null", "--max-time", "5", "-H", "Authorization: Bearer demo-token"]).arg("localhost:8080/health").status().is_ok_and(|s| s.success()) {
        if run.ended() || start.elapsed() > Duration::from_secs(240) {
            let b = run.stop();
            panic!("the demo never answered GET /health:\n{}", b.output);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut i = 0;
    while i < block.len() {
        let cmd = block[i].strip_prefix("$ ").unwrap_or_else(|| panic!("not a command: {}", block[i]));
        let shown: Vec<&str> = block[i + 1..].iter().take_while(|l| !l.starts_with("$ ")).copied().collect();
        i += 1 + shown.len();
        let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(got.lines().collect::<Vec<_>>(), shown, "`{cmd}` printed otherwise than the page shows");
    }
    // The worker ran the job the page enqueued.
    let c = std::time::Instant::now();
    let mut kafka = hallows_log::client::Client::connect("127.0.0.1:9092", Duration::from_secs(30)).expect("the log's Kafka port");
    while kafka.committed("workers", "jobs", 0).map(|r| r.1).unwrap_or(-1) != 1 {
        assert!(c.elapsed() < Duration::from_secs(60), "the worker never reported the job done");
        std::thread::sleep(Duration::from_millis(200));
    }
    let b = run.stop();
    assert!(b.output.contains("[worker] worker: job 0: reminder for todo 2: file the taxes"), "{}", b.output);
}

/// The same guest behind the gateway (tests/systems/todo-gateway.toml):
/// no NIC of its own, TCP terminated by the gateway partition and relayed
/// over link channels; the API answers as on its own NIC.
#[test]
fn the_todo_api_runs_unchanged_behind_the_gateway() {
    let dir = root().join("target/hallows/tests/basilisk-gateway");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("store.img");
    let img = image.clone();
    let mut run = start_system_edited("todo-gateway", &[], &move |s| {
        s.partitions.iter_mut().find(|p| p.name == "store").and_then(|p| p.disk.as_mut()).expect("the store has a disk").path = img.clone();
    });
    let port = run.host_port("todo", 8080);
    wait_api(&mut run, port);
    let (s, head, body) = curl(port, true, "POST", "/todos", Some(r#"{"title":"through the gateway","tag":"work"}"#));
    assert_eq!(s, 201, "{head}{body}");
    assert_eq!(json(&body)["id"], 1);
    let (s, _, body) = curl(port, true, "GET", "/todos/1", None);
    assert_eq!((s, json(&body)["title"].as_str()), (200, Some("through the gateway")));
    let (s, _, body) = curl(port, true, "GET", "/todos", None);
    assert_eq!((s, json(&body)["data"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
    let (s, _, body) = curl(port, true, "POST", "/todos", Some(r#"{"priority":0}"#));
    assert_eq!((s, json(&body)["fields"]["title"].as_str()), (422, Some("is required")), "{body}");
    let (s, _, _) = curl(port, false, "GET", "/todos", None);
    assert_eq!(s, 401);
    let big = format!(r#"{{"title":"{}"}}"#, "x".repeat(20_000));
    let (s, _, _) = curl(port, true, "POST", "/todos", Some(&big));
    assert_eq!(s, 413);
    let raw = raw_request(port, "GET /todos/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n") && raw.contains("HTTP/1.1 404 Not Found\r\n"), "two pipelined requests: {raw}");
    let (s, _, _) = curl(port, true, "POST", "/quit", None);
    assert_eq!(s, 200);
    // The todo and store partitions end; the gateway runs on until stopped.
    std::thread::sleep(Duration::from_secs(5));
    let b = run.stop();
    assert!(b.output.contains("todo: bye"), "{}", b.output);
    assert!(b.output.contains("store: shut down"), "{}", b.output);
    assert!(b.output.contains("partition todo exited with status 0"), "{}", b.output);
}

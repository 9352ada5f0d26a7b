//! The OLAP partition (aarch64, QEMU): `hallows-olap` on its virtio-blk
//! disk, reached with `psql` through the manifest's forward.
//!
//! TPC-H SF 0.01 comes from `tpchgen-cli` (target/venv, which `make deps`
//! creates; without it the test fails and says so), is loaded into an
//! image file by the loader's code (`hallows_olap::load` on a `FileDisk`,
//! as `hallows-olap-load` does; 4096 rows a row group and lineitem sorted
//! by ship date, so queries span many morsels and zone maps skip), and the
//! partition boots on that image. TPC-H Q1, Q3, Q5, Q6 and Q10 sent by
//! `psql -A -t -c` must print exactly the rows the engine gives on the
//! host for the same image (the host engine is checked against DuckDB by
//! `hallows-olap`'s tpch test). The partition has two cores, and some of
//! the queries' morsels must have run on the second. Protocol garbage and bad SQL must be
//! answered with an ErrorResponse, and the partition must go on serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hallows_blockdev::FileDisk;
use hallows_olap::{load, Engine, Serial};
use hallows_tests::{root, run_with_timeout, start_system_edited, Running};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// The tests boot the same systems (the same host ports) and share the
/// data directory: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const QUERIES: [&str; 5] = ["q1", "q3", "q5", "q6", "q10"];

/// The `.tbl` files of TPC-H SF 0.01 (generated once into
/// target/olap-tpch-0.01, where `hallows-olap`'s tpch test puts them too).
fn tpch_data() -> PathBuf {
    let dir = root().join("target/olap-tpch-0.01");
    if !dir.join("lineitem.tbl").exists() || !dir.join("region.tbl").exists() {
        let gen = root().join("target/venv/bin/tpchgen-cli");
        assert!(gen.exists(), "{} is missing: run `make deps`", gen.display());
        let st = Command::new(&gen).args(["-s", "0.01", "--output-dir"]).arg(&dir).status().expect("running tpchgen-cli");
        assert!(st.success(), "tpchgen-cli -s 0.01 failed");
    }
    dir
}

/// Loads the TPC-H files into an image file of its own (trimmed to the
/// sectors used, as the loader binary does) and returns its path.
fn tpch_image(dir: &Path, name: &str) -> PathBuf {
    let out_dir = root().join("target/hallows/tests/olap");
    std::fs::create_dir_all(&out_dir).expect("image dir");
    let img = out_dir.join(name);
    let _ = std::fs::remove_file(&img);
    let mut inputs = load::tpch_inputs(dir).expect("the TPC-H files");
    let li = inputs.iter_mut().find(|i| i.schema.name == "lineitem").expect("lineitem");
    li.sort_by = li.schema.columns.iter().position(|c| c.name == "l_shipdate");
    let text: u64 = inputs.iter().map(|i| std::fs::metadata(&i.path).expect("input").len()).sum();
    let dev = FileDisk::open(&img, text + text / 4 + (16 << 20)).expect("creating the image");
    let (dev, used) = load::load(dev, &inputs, 4096, &mut |_| {}).expect("loading TPC-H");
    drop(dev);
    std::fs::OpenOptions::new().write(true).open(&img).and_then(|f| f.set_len(used * 512)).expect("trimming the image");
    img
}

/// What `psql -A -t` prints for each query: the host engine's rows on the
/// same image, fields joined by `|`.
fn expected(img: &Path, sql: &[String]) -> Vec<String> {
    let engine = Engine::open(FileDisk::open(img, 0).expect("opening the image")).expect("the image opens on the host");
    sql.iter()
        .map(|q| {
            let rs = engine.query(q, &Serial).expect("the query runs on the host");
            assert!(!rs.rows.is_empty(), "no rows on the host for {q}");
            rs.rows
                .iter()
                .map(|r| r.iter().zip(&rs.columns).map(|(v, (_, t))| v.render(*t).unwrap_or_default()).collect::<Vec<_>>().join("|") + "\n")
                .collect()
        })
        .collect()
}

fn psql(port: u16, sql: &str) -> std::process::Output {
    let t = Instant::now();
    let o = run_with_timeout(
        Command::new("psql")
            .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "hallows", "-d", "tpch", "-A", "-t", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD"),
        None,
        QUERY_TIMEOUT,
    );
    assert!(t.elapsed() < QUERY_TIMEOUT, "psql ran past {QUERY_TIMEOUT:?} (killed): {sql}");
    o
}

/// Reads PostgreSQL messages until `until` arrives or the server closes;
/// the message types seen.
fn read_messages(s: &mut TcpStream, until: u8) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 1 + len {
                break;
            }
            seen.push(buf[0]);
            buf.drain(..1 + len);
            if seen.last() == Some(&until) {
                return seen;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return seen,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until the server closes (a FATAL error closes the connection);
/// `true` if it did within the read timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn startup() -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for kv in ["user", "hallows", "database", "tpch", ""] {
        body.extend_from_slice(kv.as_bytes());
        body.push(0);
    }
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

/// Waits until the partition answers an SSLRequest with `N` (QEMU accepts
/// connections on a forward before the guest listens).
fn wait_ready(run: &mut Running, port: u16) {
    let start = Instant::now();
    loop {
        if run.ended() {
            let b = run.wait();
            panic!("the machine ended before the partition answered:\n{}", b.output);
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut b = [0u8; 1];
            if s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).is_ok() && matches!(s.read(&mut b), Ok(1)) && b[0] == b'N' {
                return;
            }
        }
        if start.elapsed() > READY_TIMEOUT {
            let b = run.stop();
            panic!("the partition did not answer within {READY_TIMEOUT:?}:\n{}", b.output);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn psql_runs_tpch_on_the_partition_and_errors_do_not_stop_it() {
    psql_against("olap", "tpch-0.01.img");
}

/// The same guest on x86_64 (QEMU microvm, AMD SVM), two cores.
#[test]
fn psql_runs_tpch_on_x86_64() {
    psql_against("x86-olap", "tpch-0.01-x86.img");
}

fn psql_against(system: &str, image: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let dir = tpch_data();
    let img = tpch_image(&dir, image);
    let size = std::fs::metadata(&img).expect("image").len();
    assert_eq!(size % 512, 0);
    let qdir = root().join("guests/frameworks/olap/queries/tpch");
    let sql: Vec<String> = QUERIES.iter().map(|q| std::fs::read_to_string(qdir.join(format!("{q}.sql"))).expect("query file")).collect();
    let want = expected(&img, &sql);
    eprintln!("TPC-H SF 0.01 loaded into {} KiB and answered on the host in {:.1}s", size >> 10, t0.elapsed().as_secs_f64());

    let path = img.clone();
    let mut run = start_system_edited(system, &[], &move |s| {
        let d = s.partitions.iter_mut().find(|p| p.name == "olap").and_then(|p| p.disk.as_mut()).expect("the olap partition has a disk");
        d.path = path.clone();
        d.size = size;
    });
    let port = run.host_port("olap", 5432);
    let http_port = run.host_port("olap", 8080);
    let t1 = Instant::now();
    wait_ready(&mut run, port);
    eprintln!("partition ready in {:.1}s", t1.elapsed().as_secs_f64());

    for ((q, text), want) in QUERIES.iter().zip(&sql).zip(&want) {
        let t = Instant::now();
        let o = psql(port, text);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "psql {q}: {}\n{}", String::from_utf8_lossy(&o.stderr), out);
        assert_eq!(&*out, want.as_str(), "{q}: the partition's rows differ from the host engine's");
        eprintln!("{q}: {} rows in {:.2}s through psql", want.lines().count(), t.elapsed().as_secs_f64());
    }

    // Bad SQL: an ErrorResponse with its SQLSTATE and position, the
    // session goes on.
    let o = psql(port, "select l_returnflag, count(*)\nfrom lineitem\ngroup by l_returnflg");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("ERROR:") && err.contains("l_returnflg") && err.contains("LINE 3:"), "{err}");
    let o = psql(port, "selec 1");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("ERROR:"), "{}", String::from_utf8_lossy(&o.stderr));
    // A result larger than the partition's memory allows (lineitem joined
    // with itself on the order: about 240000 rows; the partition allows
    // its heap / 2 KiB): refused with SQLSTATE 54000, not a crash.
    let o = psql(port, "select l1.l_orderkey from lineitem l1, lineitem l2 where l1.l_orderkey = l2.l_orderkey");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("ERROR:"), "{err}");
    let o = run_with_timeout(
        Command::new("psql").args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "hallows", "-d", "tpch", "-v", "VERBOSITY=verbose", "-c", "select l1.l_orderkey from lineitem l1, lineitem l2 where l1.l_orderkey = l2.l_orderkey"]),
        None,
        QUERY_TIMEOUT,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("ERROR:  54000"), "{}", String::from_utf8_lossy(&o.stderr));

    // Garbage instead of a startup packet (an HTTP request: its first four
    // bytes read as a length of 1.2 GB): a FATAL ErrorResponse, closed.
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_messages(&mut s, b'E').last(), Some(&b'E'), "garbage before startup is answered with an ErrorResponse");
    assert!(closed(&mut s), "the connection is closed after a FATAL error");
    // An unknown protocol version.
    let mut s = connect(port);
    s.write_all(&[0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78]).unwrap();
    assert_eq!(read_messages(&mut s, b'E').last(), Some(&b'E'));
    assert!(closed(&mut s));
    // A session, then an unknown message type and a query whose length
    // runs past the limit.
    for bad in [vec![b'!', 0, 0, 0, 4], vec![b'Q', 0x7f, 0xff, 0xff, 0xff, b's']] {
        let mut s = connect(port);
        s.write_all(&startup()).unwrap();
        let hello = read_messages(&mut s, b'Z');
        assert_eq!((hello.first(), hello.last()), (Some(&b'R'), Some(&b'Z')), "startup: {hello:?}");
        s.write_all(&bad).unwrap();
        assert_eq!(read_messages(&mut s, b'E').last(), Some(&b'E'), "{bad:?} is answered with an ErrorResponse");
        assert!(closed(&mut s), "{bad:?}: the connection is closed");
    }
    // A client that connects and hangs up mid-message.
    let mut s = connect(port);
    s.write_all(&startup()[..7]).unwrap();
    drop(s);

    // HTTP: POST /query answers JSON with Q6's revenue.
    let mut s = connect(http_port);
    let body = &sql[3];
    write!(s, "POST /query HTTP/1.1\r\nHost: olap\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let revenue = want[3].trim();
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains(&format!("[[{revenue}]]")) && resp.contains("\"row_count\":1"), "{resp}");

    // Still serving: Q6 again, after all of the above.
    let o = psql(port, &sql[3]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), want[3], "{}", String::from_utf8_lossy(&o.stderr));

    let b = run.stop();
    assert!(b.output.contains("olap ready"), "{}", b.output);
    // Every query above reached the partition: the five TPC-H queries
    // and Q6 twice more (HTTP, psql) answered, the two bad ones and the
    // too large one (twice) refused.
    let answered = b.output.lines().filter(|l| l.contains("olap: query of") && l.contains(" rows in ")).count();
    let failed = b.output.lines().filter(|l| l.contains("olap: query of") && l.contains(" failed: ")).count();
    assert_eq!((answered, failed), (QUERIES.len() + 2, 4), "{}", b.output);
    // The partition has two cores and the queries' morsels ran on both
    // (the helper on the second core took some of them), giving the
    // serial answers above.
    assert!(b.output.contains("queries on 2 core(s)"), "{}", b.output);
    let (mut morsels, mut elsewhere) = (0usize, 0usize);
    for l in b.output.lines().filter(|l| l.contains(" morsels on other cores")) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let at = w.iter().position(|x| *x == "morsels").expect("the trace line");
        elsewhere += w[at - 3].parse::<usize>().expect("a count");
        morsels += w[at - 1].parse::<usize>().expect("a count");
    }
    eprintln!("{elsewhere} of {morsels} morsels ran on the second core");
    assert!(morsels > 0 && elsewhere > 0, "no morsel ran on the second core:\n{}", b.output);
    eprintln!("{}", b.output.lines().filter(|l| l.contains("olap")).collect::<Vec<_>>().join("\n"));
    assert!(b.output.contains("olap: table lineitem: 60175 rows"), "{}", b.output);
    assert!(b.output.contains("rows a result or join side"), "{}", b.output);
    for bad in ["panic", "fault", "PANIC"] {
        assert!(!b.output.contains(bad), "{bad} on the console:\n{}", b.output);
    }
    eprintln!("total {:.1}s", t0.elapsed().as_secs_f64());
}

/// A disk without an image (the tool's blank file) and one whose
/// superblock is damaged: the partition says why on the console and exits
/// with status 1, without serving.
#[test]
fn a_blank_or_damaged_disk_is_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root().join("target/hallows/tests/olap-refused");
    std::fs::create_dir_all(&dir).expect("dir");
    let blank = dir.join("blank.img");
    let _ = std::fs::remove_file(&blank);
    let damaged = dir.join("damaged.img");
    // A valid image with one byte of its superblock's CRC-covered header changed.
    let mut img = vec![0u8; 1 << 20];
    {
        let src = tpch_image(&tpch_data(), "for-damage.img");
        let good = std::fs::read(&src).expect("image");
        img[..512].copy_from_slice(&good[..512]);
        img[20] ^= 0x40;
    }
    std::fs::write(&damaged, &img).expect("writing the damaged image");
    for (disk, why) in [(blank, "cannot open the image"), (damaged, "cannot open the image")] {
        let path = disk.clone();
        let mut run = start_system_edited("olap", &[], &move |s| {
            let d = s.partitions.iter_mut().find(|p| p.name == "olap").and_then(|p| p.disk.as_mut()).expect("the olap partition has a disk");
            d.path = path.clone();
        });
        let b = run.wait();
        assert_eq!(b.summary("olap"), "exited 1", "{}: {}", disk.display(), b.output);
        let line = b.lines_of("olap").into_iter().find(|l| l.contains(why)).unwrap_or_else(|| panic!("no '{why}' line for {}:\n{}", disk.display(), b.output)).to_string();
        eprintln!("{}: {line}", disk.file_name().unwrap().to_string_lossy());
        assert!(!b.output.contains("olap ready"), "{}", b.output);
    }
}

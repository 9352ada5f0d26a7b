//! psql and curl against hallows-olap-host: startup, a query's rows, an
//! error with its position, over real TCP connections; JSON over HTTP.
//! Each part skips (saying so) when its client is not installed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hallows_blockdev::FileDisk;
use hallows_olap::load::{self, Input};
use hallows_olap::storage::Schema;
use hallows_olap::Type;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn psql(port: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args(["-X", "-A", "-F", ",", "-h", "127.0.0.1", "-p", port, "-U", "olap", "-d", "olap", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn psql_queries_the_host() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("olap-pg");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("sales.csv");
    std::fs::write(&csv, "id,region,amount,day\n1,north,10.50,2024-01-02\n2,south,3.25,2024-01-03\n3,north,1.00,2024-02-01\n").unwrap();
    let img = dir.join("sales.img");
    let _ = std::fs::remove_file(&img);
    let schema = Schema::new("sales", &[("id", Type::Int64), ("region", Type::Text), ("amount", Type::Decimal(2)), ("day", Type::Date)]);
    let dev = FileDisk::open(&img, 1 << 20).unwrap();
    load::load(dev, &[Input { schema, path: csv, sort_by: Some(3) }], 1024, &mut |_| {}).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_hallows-olap-host"))
        .args(["--disk", img.to_str().unwrap(), "--port", "0", "--http-port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut line, mut http_line) = (String::new(), String::new());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    stdout.read_line(&mut http_line).unwrap();
    let _server = Server(child);
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    let http_port = http_line.trim().rsplit(':').next().unwrap().to_string();
    assert!(http_line.starts_with("http on"), "{http_line}");

    if Command::new("curl").arg("--version").output().is_ok() {
        let curl = |body: &str| {
            let out = Command::new("curl")
                .args(["-s", "-w", " %{http_code}", "--data-binary", body])
                .arg(format!("http://127.0.0.1:{http_port}/query"))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(
            curl("select region, sum(amount), max(day) from sales group by region order by 1"),
            r#"{"columns":[{"name":"region","type":"text"},{"name":"sum","type":"decimal(18,2)"},{"name":"max","type":"date"}],"rows":[["north",11.50,"2024-02-01"],["south",3.25,"2024-01-03"]],"row_count":2} 200"#
        );
        assert_eq!(
            curl("select\n nope from sales"),
            r#"{"error":{"sqlstate":"42703","message":"column \"nope\" does not exist in the tables of FROM","line":2,"column":2}} 400"#
        );
    } else {
        eprintln!("SKIPPED (HTTP part): curl is not installed");
    }

    if Command::new("psql").arg("--version").output().is_err() {
        eprintln!("SKIPPED (PostgreSQL part): psql is not installed");
        return;
    }
    let (ok, out, err) = psql(&port, "select region, sum(amount) as total, count(*), min(day) from sales group by region order by total desc");
    assert!(ok, "psql failed: {err}");
    assert_eq!(out, "region,total,count_star,min\nnorth,11.50,2,2024-01-02\nsouth,3.25,1,2024-01-03\n(2 rows)\n");

    let (ok, _, err) = psql(&port, "select id from sales where\n nope > 1");
    assert!(!ok);
    assert!(err.contains("ERROR:  column \"nope\" does not exist"), "{err}");
    assert!(err.contains("LINE 2:  nope > 1"), "psql shows the position: {err}");

    let (ok, out, _) = psql(&port, "select avg(amount), sum(amount) from sales where id > 5");
    assert!(ok);
    assert_eq!(out, "avg,sum\n,\n(1 row)\n", "NULLs are empty with -A");
}

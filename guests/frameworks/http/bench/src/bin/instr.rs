//! `instr STACK ROUTE N`: serves N requests of ROUTE (`post` or `get`)
//! with STACK (`basilisk`, `axum-router`: the Router alone, given a built
//! request; `axum-hyper`: hyper parsing raw bytes from an in-memory
//! stream into the Router), for callgrind: the instructions of N = 1 and
//! N = 10001 runs differ by 10,000 requests' worth (bench/callgrind.sh).

use hallows_http_bench::{axum_app, Basilisk, GET, POST};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (stack, route, n) = (args[1].as_str(), args[2].as_str(), args[3].parse::<usize>().expect("N"));
    let raw = if route == "post" { POST } else { GET };
    match stack {
        "basilisk" => {
            let mut b = Basilisk::default();
            let mut out = Vec::with_capacity(4096);
            // One record for GET /todos/1.
            b.serve(POST, &mut out);
            for _ in 0..n {
                out.clear();
                b.serve(raw, &mut out);
                assert!(out.starts_with(b"HTTP/1.1 20"), "{}", String::from_utf8_lossy(&out));
            }
        }
        "axum-router" => {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut router = axum_app::router();
                let build = |raw: &[u8]| {
                    let (head, body) = raw.split_at(raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
                    let post = head.starts_with(b"POST");
                    let mut b = axum::http::Request::builder().method(if post { "POST" } else { "GET" }).uri(if post { "/todos" } else { "/todos/1" }).header("host", "bench");
                    if post {
                        b = b.header("content-type", "application/json").header("content-length", body.len());
                    }
                    b.body(axum::body::Body::from(body.to_vec())).unwrap()
                };
                let _ = router.call(build(POST)).await.unwrap();
                for _ in 0..n {
                    let resp = router.call(build(raw)).await.unwrap();
                    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
                    assert!(!body.is_empty());
                }
            });
        }
        "axum-hyper" => {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let (mut client, server) = tokio::io::duplex(1 << 16);
                let svc = hyper_util::service::TowerToHyperService::new(axum_app::router());
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(server), svc);
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut buf = vec![0u8; 4096];
                let mut exchange = async |raw: &[u8]| {
                    client.write_all(raw).await.unwrap();
                    // The whole response: its head, then Content-Length bytes.
                    let mut have = 0;
                    loop {
                        have += client.read(&mut buf[have..]).await.unwrap();
                        if let Some(h) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                            let cl: usize = head.split("content-length: ").nth(1).and_then(|v| v.split("\r\n").next()?.parse().ok()).unwrap_or(0);
                            if have >= h + 4 + cl {
                                break;
                            }
                        }
                    }
                    assert!(buf[..have].starts_with(b"HTTP/1.1 20"), "{}", String::from_utf8_lossy(&buf[..have]));
                };
                exchange(POST).await;
                for _ in 0..n {
                    exchange(raw).await;
                }
                drop(task);
            });
        }
        s => panic!("unknown stack {s}"),
    }
}

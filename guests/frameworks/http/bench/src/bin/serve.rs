//! `serve STACK PORT`: serves the benchmark routes on 127.0.0.1:PORT with
//! STACK (`basilisk`: hallows-http and the generated app on a tokio
//! current-thread runtime; `axum`: axum::serve on a tokio current-thread
//! runtime), for wrk (bench/wrk.sh).

use std::cell::RefCell;
use std::rc::Rc;

use hallows_basilisk::store::MemStore;
use hallows_basilisk::{block_on, Method};
use hallows_http::{Conn, Event, Limits};
use hallows_http_bench::{axum_app, Basilisk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (stack, port) = (args[1].clone(), args[2].parse::<u16>().expect("PORT"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        eprintln!("{stack} serving on 127.0.0.1:{port}");
        if stack == "axum" {
            axum::serve(listener, axum_app::router()).await.unwrap();
            return;
        }
        let shared = Rc::new(RefCell::new(Basilisk::default()));
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                let mut c = Conn::new(Limits::default(), 0);
                loop {
                    match c.next(0) {
                        Event::Request(r) => {
                            let req = hallows_basilisk::Request { method: Method::parse(r.method), path: r.path, query: r.query, authorization: None, body: r.body, client: 0 };
                            // The in-memory store never waits: the app runs to completion here.
                            let resp = {
                                let mut b = shared.borrow_mut();
                                let b = &mut *b;
                                let store: &mut MemStore = &mut b.store;
                                block_on(b.app.handle(&req, store, || 0))
                            };
                            c.respond(resp.status, &[("Content-Type", resp.content_type.as_bytes())], &resp.body);
                        }
                        Event::Write => match s.write(c.output()).await {
                            Ok(n) if n > 0 => c.written(n),
                            _ => return,
                        },
                        Event::Read => match s.read(c.read_buf()).await {
                            Ok(n) if n > 0 => c.filled(n, 0),
                            _ => return,
                        },
                        Event::Close => return,
                    }
                }
            });
        }
    });
}

//! The two stacks under comparison, serving the same routes with the same
//! validations over the same in-memory records:
//!
//! * `POST /todos` with `{"title":"...","priority":N}`: title 1 to 200
//!   characters, priority 1 to 5 (default 3), done false; 201 with the
//!   record and its id, 422 naming the failing fields;
//! * `GET /todos/{id}`: 200 with the record, 404.
//!
//! Basilisk: a `resource` in a spec, served by `hallows-http`'s engine
//! (parse, route, validate, store, encode). axum: the idiomatic
//! equivalent (`Json` extractor with serde, a `State` of records, a
//! `Json` answer), served by hyper.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hallows_basilisk::store::MemStore;
use hallows_basilisk::{block_on, Method};
use hallows_http::{Conn, Event, Limits};

mod spec {
    parseltongue_macros::service! { r#"
        parseltongue_version 1;
        use_extension basilisk;
        service bench_api {
            resource todo at "/todos" {
                field title: string { required; min_length 1; max_length 200; }
                field done: bool { default false; }
                field priority: u8 { min 1; max 5; default 3; }
            }
            scheduler_class api { quantum = 50us; }
        }
    "# }
}

/// The requests both stacks answer (raw HTTP/1.1, keep-alive).
pub const POST: &[u8] = b"POST /todos HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 39\r\n\r\n{\"title\":\"write the docs\",\"priority\":2}";
pub const GET: &[u8] = b"GET /todos/1 HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Basilisk: a connection, the generated application and its records.
pub struct Basilisk {
    pub conn: Conn,
    pub app: spec::web::App<()>,
    pub store: MemStore,
}

impl Default for Basilisk {
    fn default() -> Self {
        Basilisk { conn: Conn::new(Limits::default(), 0), app: spec::web::App::new((), hallows_basilisk::auth::Tokens::default()), store: MemStore::default() }
    }
}

impl Basilisk {
    /// Feeds `input`, answers every request in it, appends what is
    /// written to `out`.
    pub fn serve(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.conn.received(input, 0);
        loop {
            match self.conn.next(0) {
                Event::Request(r) => {
                    let req = hallows_basilisk::Request { method: Method::parse(r.method), path: r.path, query: r.query, authorization: None, body: r.body, client: 0 };
                    let resp = block_on(self.app.handle(&req, &mut self.store, || 0));
                    self.conn.respond(resp.status, &[("Content-Type", resp.content_type.as_bytes())], &resp.body);
                }
                Event::Write => {
                    out.extend_from_slice(self.conn.output());
                    let n = self.conn.output().len();
                    self.conn.written(n);
                }
                Event::Read | Event::Close => return,
            }
        }
    }
}

/// axum's side.
pub mod axum_app {
    use super::*;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize)]
    pub struct NewTodo {
        title: Option<String>,
        done: Option<bool>,
        priority: Option<i64>,
    }

    #[derive(Serialize, Clone)]
    pub struct Todo {
        id: u64,
        title: String,
        done: bool,
        priority: u8,
    }

    #[derive(Default)]
    pub struct Records {
        next: u64,
        map: BTreeMap<u64, Todo>,
    }

    pub type Db = Arc<Mutex<Records>>;

    async fn create(State(db): State<Db>, Json(t): Json<NewTodo>) -> Response {
        let mut fields = serde_json::Map::new();
        match &t.title {
            None => {
                fields.insert("title".into(), "is required".into());
            }
            Some(s) if s.chars().count() < 1 => {
                fields.insert("title".into(), "must be at least 1 character long".into());
            }
            Some(s) if s.chars().count() > 200 => {
                fields.insert("title".into(), "must be at most 200 characters long".into());
            }
            _ => {}
        }
        let priority = t.priority.unwrap_or(3);
        if !(1..=5).contains(&priority) {
            fields.insert("priority".into(), "must be from 1 to 5".into());
        }
        if !fields.is_empty() {
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(serde_json::json!({"error": "validation failed", "fields": fields}))).into_response();
        }
        let mut db = db.lock().unwrap_or_else(|e| e.into_inner());
        db.next += 1;
        let todo = Todo { id: db.next, title: t.title.unwrap_or_default(), done: t.done.unwrap_or(false), priority: priority as u8 };
        db.map.insert(todo.id, todo.clone());
        (StatusCode::CREATED, [("Location", format!("/todos/{}", todo.id))], Json(todo)).into_response()
    }

    async fn show(State(db): State<Db>, Path(id): Path<u64>) -> Response {
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        match db.map.get(&id) {
            Some(t) => Json(t.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": format!("todo {id} not found")}))).into_response(),
        }
    }

    pub fn router() -> Router {
        Router::new().route("/todos", post(create)).route("/todos/{id}", get(show)).with_state(Db::default())
    }
}

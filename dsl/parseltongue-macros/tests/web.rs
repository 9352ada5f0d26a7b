//! Basilisk's web layer end to end on the host: the todo API of
//! `tests/specs/valid/todo_api.pt`, its generated router, validations,
//! REST actions over an in-memory store, tokens, rate limit and statistics.

use hallows_basilisk::store::{MemStore, Store, StoreError};
use hallows_basilisk::{block_on, Method, Request, Response};

mod todo {
    parseltongue_macros::include_spec!("../../tests/specs/valid/todo_api.pt");
}
use todo::web::{App, Rename, Routes, Todo, ROUTES};

/// The hand-written routes.
#[derive(Default)]
struct Handlers {
    renamed: u32,
}

impl<S: Store> Routes<S> for Handlers {
    async fn health(&mut self, _store: &mut S, _req: &Request<'_>) -> Response {
        Response::json(200, b"{\"ok\":true}".to_vec())
    }
    async fn rename(&mut self, store: &mut S, _req: &Request<'_>, id: u64, body: Rename) -> Response {
        let key = hallows_basilisk::rest::key("todo", id);
        let Ok(Some(old)) = store.get(&key).await else { return Response::error(404, "no such todo") };
        let mut t: serde_json::Value = serde_json::from_slice(&old).unwrap();
        t["title"] = serde_json::Value::String(body.title);
        let bytes = serde_json::to_vec(&t).unwrap();
        match store.write(&[(&key, Some(&bytes))]).await {
            Ok(()) => {
                self.renamed += 1;
                Response::json(200, bytes)
            }
            Err(e) => e.response(),
        }
    }
    async fn by_tag(&mut self, _store: &mut S, _req: &Request<'_>, tag: String) -> Response {
        Response::json(200, format!("{{\"tag\":{}}}", serde_json::Value::String(tag)).into_bytes())
    }
}

struct Client {
    app: App<Handlers>,
    store: MemStore,
    now: u64,
    token: Option<&'static str>,
    client: u64,
}

struct Answer {
    status: u16,
    body: serde_json::Value,
    headers: Vec<(&'static str, String)>,
}

impl Client {
    fn new() -> Client {
        Client { app: App::new(Handlers::default(), hallows_basilisk::auth::Tokens::parse("t0ken")), store: MemStore::default(), now: 0, token: Some("t0ken"), client: 1 }
    }

    fn call(&mut self, method: &str, target: &str, body: &str) -> Answer {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let auth = self.token.map(|t| format!("Bearer {t}"));
        let req = Request { method: Method::parse(method), path, query, authorization: auth.as_deref().map(str::as_bytes), body: body.as_bytes(), client: self.client };
        self.now += 1_000_000; // 1 ms between requests: under the rate limit
        let now = self.now;
        let r = block_on(self.app.handle(&req, &mut self.store, || now));
        let body = if r.body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{method} {target}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(&r.body))) };
        Answer { status: r.status, body, headers: r.headers }
    }
}

#[test]
fn crud_with_pagination() {
    let mut c = Client::new();
    for i in 1..=45 {
        let a = c.call("POST", "/todos", &format!("{{\"title\":\"task {i}\",\"tag\":\"work\"}}"));
        assert_eq!(a.status, 201, "{:?}", a.body);
        assert_eq!(a.body["id"], i);
        assert_eq!(a.body["done"], false, "default");
        assert_eq!(a.body["priority"], 3, "default");
        assert_eq!(a.body["due"], serde_json::Value::Null, "optional, absent");
        assert_eq!(a.headers, [("Location", format!("/todos/{i}"))]);
    }
    // Pages of 20 (page_size), then from the cursor.
    let p1 = c.call("GET", "/todos", "");
    assert_eq!(p1.status, 200);
    assert_eq!(p1.body["data"].as_array().unwrap().len(), 20);
    assert_eq!(p1.body["next"], 20);
    let p3 = c.call("GET", "/todos?after=40&limit=10", "");
    assert_eq!(p3.body["data"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect::<Vec<_>>(), [41, 42, 43, 44, 45]);
    assert_eq!(p3.body["next"], serde_json::Value::Null);
    assert_eq!(c.call("GET", "/todos?limit=0", "").status, 400);
    assert_eq!(c.call("GET", "/todos?limit=201", "").status, 400);
    assert_eq!(c.call("GET", "/todos?after=x", "").status, 400);
    // Show, replace, patch, delete.
    assert_eq!(c.call("GET", "/todos/7", "").body["title"], "task 7");
    let put = c.call("PUT", "/todos/7", r#"{"title":"new","priority":5}"#);
    assert_eq!((put.status, &put.body["title"], &put.body["priority"], &put.body["tag"]), (200, &"new".into(), &5.into(), &serde_json::Value::Null));
    let patch = c.call("PATCH", "/todos/8", r#"{"done":true,"id":999}"#);
    assert_eq!((patch.status, &patch.body["done"], &patch.body["title"], &patch.body["id"]), (200, &true.into(), &"task 8".into(), &8.into()));
    assert_eq!(c.call("GET", "/todos/8", "").body, patch.body, "stored");
    // An optional field: set, kept when absent, cleared by null; a
    // defaulted one reset to its default by null; a required one cannot
    // be cleared.
    let tagged = c.call("PATCH", "/todos/9", r#"{"tag":"work","due":"2027-01-02"}"#);
    assert_eq!((tagged.status, &tagged.body["tag"], &tagged.body["due"]), (200, &"work".into(), &"2027-01-02".into()));
    let kept = c.call("PATCH", "/todos/9", r#"{"done":true}"#);
    assert_eq!((&kept.body["tag"], &kept.body["due"]), (&"work".into(), &"2027-01-02".into()));
    let cleared = c.call("PATCH", "/todos/9", r#"{"tag":null}"#);
    assert_eq!((cleared.status, &cleared.body["tag"], &cleared.body["due"]), (200, &serde_json::Value::Null, &"2027-01-02".into()));
    assert_eq!(c.call("GET", "/todos/9", "").body["tag"], serde_json::Value::Null, "stored cleared");
    let title = c.call("PATCH", "/todos/9", r#"{"title":null}"#);
    assert_eq!((title.status, &title.body["fields"]["title"]), (422, &"is required".into()), "{:?}", title.body);
    let reset = c.call("PATCH", "/todos/9", r#"{"priority":5}"#);
    assert_eq!(reset.body["priority"], 5);
    let reset = c.call("PATCH", "/todos/9", r#"{"priority":null,"done":null}"#);
    assert_eq!((reset.status, &reset.body["priority"], &reset.body["done"], &reset.body["title"]), (200, &3.into(), &false.into(), &"task 9".into()));
    assert_eq!(c.call("PUT", "/todos/8", r#"{"done":false}"#).status, 422, "PUT validates as create: title required");
    let del = c.call("DELETE", "/todos/8", "");
    assert_eq!((del.status, &del.body), (204, &serde_json::Value::Null));
    assert_eq!(c.call("GET", "/todos/8", "").status, 404);
    assert_eq!(c.call("DELETE", "/todos/8", "").status, 404);
    assert_eq!(c.call("PATCH", "/todos/8", "{}").status, 404);
    // Ids are never reused.
    assert_eq!(c.call("POST", "/todos", r#"{"title":"again"}"#).body["id"], 46);
    // HEAD is GET.
    assert_eq!(c.call("HEAD", "/todos/9", "").status, 200);
}

#[test]
fn every_failing_field_is_named() {
    let mut c = Client::new();
    let a = c.call("POST", "/todos", r#"{"title":"","priority":9,"tag":"play","due":"tomorrow","done":"no","colour":"red"}"#);
    assert_eq!(a.status, 422);
    assert_eq!(a.body["error"], "validation failed");
    let f = &a.body["fields"];
    assert_eq!(f["title"], "must be at least 1 character long");
    assert_eq!(f["priority"], "must be at most 5");
    assert_eq!(f["tag"], "must be one of home, work, errand");
    assert_eq!(f["due"], "must match \\d{4}-\\d{2}-\\d{2}");
    assert_eq!(f["done"], "must be true or false");
    assert_eq!(f["colour"], "is not a field of todo");
    assert_eq!(c.call("POST", "/todos", r#"{"done":true}"#).body["fields"]["title"], "is required");
    assert_eq!(c.call("POST", "/todos", r#"{"title":"x","priority":-1}"#).body["fields"]["priority"], "must be an integer from 0 to 255");
    assert_eq!(c.call("POST", "/todos", r#"{"title":"x","due":"2026-12-03"}"#).status, 201);
    let bad = c.call("POST", "/todos", r#"{"title": "#);
    assert_eq!(bad.status, 400);
    assert!(bad.body["error"].as_str().unwrap().starts_with("malformed JSON"));
    assert_eq!(c.call("POST", "/todos", "[]").status, 400);
    assert_eq!(c.call("POST", "/todos", "").status, 400);
    // Nothing was stored by the refused requests.
    assert_eq!(c.call("GET", "/todos", "").body["data"].as_array().unwrap().len(), 1);
}

#[test]
fn routes_methods_tokens_and_limits() {
    let mut c = Client::new();
    let a = c.call("GET", "/nope", "");
    assert_eq!((a.status, &a.body["error"]), (404, &"no such route".into()));
    assert_eq!(c.call("GET", "/todos/abc", "").status, 404, "id is a u64");
    assert_eq!(c.call("GET", "/todos/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", "").status, 404);
    let m = c.call("DELETE", "/todos", "");
    assert_eq!((m.status, m.headers.clone()), (405, vec![("Allow", "GET, POST, HEAD".to_owned())]));
    assert_eq!(c.call("POST", "/todos/3", "{}").headers, [("Allow", "GET, PUT, PATCH, DELETE, HEAD".to_owned())]);
    assert_eq!(c.call("GET", "/todos/", "").status, 200, "a trailing slash is the same path");
    // Typed path parameters and bodies of hand-written routes.
    assert_eq!(c.call("GET", "/tags/home%20office", "").body["tag"], "home office");
    assert_eq!(c.call("POST", "/todos", r#"{"title":"a"}"#).status, 201);
    assert_eq!(c.call("POST", "/todos/1/rename", r#"{"title":"b"}"#).body["title"], "b");
    assert_eq!(c.call("POST", "/todos/1/rename", r#"{"title":""}"#).body["fields"]["title"], "must be at least 1 character long");
    assert_eq!(c.call("POST", "/todos/1/rename", r#"{"name":"b"}"#).body["fields"]["name"], "is not a field of Rename");
    assert_eq!(c.app.routes.renamed, 1);
    // Tokens.
    c.token = None;
    let u = c.call("GET", "/todos", "");
    assert_eq!((u.status, u.headers[0].0), (401, "WWW-Authenticate"));
    c.token = Some("wrong");
    assert_eq!(c.call("GET", "/health", "").status, 401);
    c.token = Some("t0ken");
    // Per-route statistics, in ROUTES order.
    let i = ROUTES.iter().position(|r| *r == "POST /todos/{u64}/rename").unwrap();
    assert_eq!((c.app.stats[i].requests, c.app.stats[i].errors), (3, 2));
    let i = ROUTES.iter().position(|r| *r == "GET /todos").unwrap();
    assert_eq!(c.app.stats[i].requests, 1);
    let s = c.call("GET", "/_stats", "");
    let routes = s.body["routes"].as_array().unwrap();
    assert_eq!(routes.len(), ROUTES.len());
    assert_eq!(routes[i]["route"], "GET /todos");
    assert_eq!(routes[i]["requests"], 1);
    // Rate limit: a burst of 200, then 1 per ms; this client sends 1000 at
    // one instant, another client is not affected.
    let mut refused = 0;
    let now = c.now;
    for _ in 0..1000 {
        c.now = now;
        let a = c.call("GET", "/health", "");
        if a.status == 429 {
            refused += 1;
            assert_eq!(a.headers, [("Retry-After", "1".to_owned())]);
        }
    }
    assert!((790..=800).contains(&refused), "{refused} refused");
    c.client = 2;
    c.now = now;
    assert_eq!(c.call("GET", "/health", "").status, 200);
}

#[test]
fn a_failing_store_is_503_or_500() {
    let mut c = Client::new();
    c.store.fail = Some(StoreError::Unavailable("restarting".into()));
    let a = c.call("POST", "/todos", r#"{"title":"x"}"#);
    assert_eq!((a.status, a.headers[0].0), (503, "Retry-After"));
    c.store.fail = Some(StoreError::Failed("disk".into()));
    assert_eq!(c.call("GET", "/todos/1", "").status, 500);
    // A corrupt stored record is a 500, never a panic.
    c.store.fail = None;
    c.store.map.insert(hallows_basilisk::rest::key("todo", 5), b"{\"id\":5,\"title\":7}".to_vec());
    assert_eq!(c.call("PATCH", "/todos/5", "{}").status, 500);
}

#[test]
fn generated_types_round_trip() {
    let t = Todo { id: 3, title: "a \"q\" é".into(), done: true, priority: 2, tag: Some("home".into()), due: None };
    let mut out = Vec::new();
    t.to_json(&mut out);
    let mut map = hallows_basilisk::json::parse_object(&out).unwrap();
    map.remove("id");
    let mut e = hallows_basilisk::json::FieldErrors::default();
    let back = Todo::from_map(&mut map, &mut e, None).unwrap();
    assert_eq!(back, Todo { id: 0, ..t });
    assert_eq!(Rename::from_json(br#"{"title":"z"}"#).unwrap().title, "z");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    /// Whatever the method, path, query and body: no panic, a status from
    /// the documented set, a JSON body (or none for 204).
    #[test]
    fn no_request_panics(method in "(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)",
                         path in "(/todos|/todos/[0-9]{1,3}|/todos/[0-9]{1,2}/rename|/tags/[a-z%0-9]{0,6}|/[a-z/]{0,12}|/todos/99999999999999999999999)",
                         query in "(|limit=[0-9]{1,3}|after=[0-9a-z]{1,4}&limit=2)",
                         body in "(\\{(\"(title|done|priority|tag|due|id|x)\":(\"[a-z0-9-]{0,4}\"|true|[0-9]{1,4}|null|\\[\\]),?){0,4}\\}|[{}\\[\\]\":a-z0-9]{0,16})") {
        let mut c = Client::new();
        let _ = c.call("POST", "/todos", r#"{"title":"seed"}"#);
        let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let a = c.call(&method, &target, &body);
        proptest::prop_assert!([200, 201, 204, 400, 404, 405, 422].contains(&a.status), "{} {} {} -> {}", method, target, body, a.status);
        proptest::prop_assert_eq!(a.status == 204, a.body.is_null());
    }
}

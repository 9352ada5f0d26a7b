//! The REST actions a `resource` declaration generates, written once here
//! for any [`Record`] type and any [`Store`].
//!
//! | request                     | action  | answer                                   |
//! |-----------------------------|---------|------------------------------------------|
//! | `GET /todos?limit=&after=`  | index   | 200 `{"data":[...],"next":ID or null}`    |
//! | `POST /todos`               | create  | 201 the record, `Location: /todos/ID`     |
//! | `GET /todos/ID`             | show    | 200 the record, or 404                    |
//! | `PUT /todos/ID`             | replace | 200 (every field validated as at create)  |
//! | `PATCH /todos/ID`           | update  | 200 (only the fields given)               |
//! | `DELETE /todos/ID`          | destroy | 204, or 404                               |
//!
//! A record is stored as its JSON (what show and index answer, without
//! re-encoding) under `NAME/ID` with ID as 20 digits, so that key order is
//! id order and an index page is one scan; ids come from a counter under
//! `NAME#next`, written in the same transaction as the record it numbers.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{Map, Value};

use crate::json::{self, FieldErrors};
use crate::store::{Store, StoreError};
use crate::{query_param, Response};

/// What the generated code implements for each resource.
pub trait Record: Sized {
    /// `todo`: the key prefix and the name in messages.
    const NAME: &'static str;
    /// `/todos`: where the collection is.
    const PATH: &'static str;
    /// Index page size when the client gives no `limit` (and its maximum
    /// is 10 times this, at most 255).
    const PAGE_SIZE: usize;

    fn id(&self) -> u64;
    /// Reads the declared fields from `map`, validating each, with the
    /// values of `base` for fields not given (PATCH) or the declared
    /// defaults otherwise; `None` if any failed (each named in `errors`).
    /// The record's id is `base`'s, or 0.
    fn from_map(map: &mut Map<String, Value>, errors: &mut FieldErrors, base: Option<&Self>) -> Option<Self>;
    fn with_id(self, id: u64) -> Self;
    /// `{"id":..,"field":..}`.
    fn to_json(&self, out: &mut Vec<u8>);
}

/// The key of record `id`.
pub fn key(name: &str, id: u64) -> Vec<u8> {
    format!("{name}/{id:020}").into_bytes()
}

fn counter_key(name: &str) -> Vec<u8> {
    format!("{name}#next").into_bytes()
}

fn not_found<R: Record>(id: u64) -> Response {
    Response::error(404, &format!("{} {id} not found", R::NAME))
}

/// The body as a JSON object with the record's fields: 400 for a body that
/// is not a JSON object, 422 naming each failing field.
fn parse<R: Record>(body: &[u8], base: Option<&R>) -> Result<R, Response> {
    let mut map = json::parse_object(body)?;
    // A client sending back what it read carries the id: it is not a field
    // it can set, and is ignored rather than refused.
    map.remove("id");
    let mut errors = FieldErrors::default();
    let r = R::from_map(&mut map, &mut errors, base);
    errors.unknown(&map, R::NAME);
    match r {
        Some(r) if errors.is_empty() => Ok(r),
        _ => Err(errors.response()),
    }
}

/// A stored record (as written by this code: anything else is corruption,
/// answered 500, never a panic).
fn decode<R: Record>(bytes: &[u8]) -> Result<R, Response> {
    let mut map = json::parse_object(bytes).map_err(|_| stored_corrupt::<R>())?;
    let id = map.remove("id").and_then(|v| v.as_u64()).ok_or_else(stored_corrupt::<R>)?;
    let mut errors = FieldErrors::default();
    R::from_map(&mut map, &mut errors, None).map(|r| r.with_id(id)).ok_or_else(stored_corrupt::<R>)
}

fn stored_corrupt<R: Record>() -> Response {
    Response::error(500, &format!("a stored {} is unreadable", R::NAME))
}

/// `GET PATH?limit=N&after=ID`.
pub async fn index<R: Record, S: Store>(store: &mut S, query: &str) -> Response {
    let max = (R::PAGE_SIZE * 10).min(255);
    let limit = match query_param(query, "limit") {
        None => R::PAGE_SIZE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Response::error(400, &format!("limit must be an integer from 1 to {max}")),
        },
    };
    let after = match query_param(query, "after") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(id) => Some(key(R::NAME, id)),
            Err(_) => return Response::error(400, "after must be a record id"),
        },
    };
    let prefix = format!("{}/", R::NAME);
    let page = match store.scan(prefix.as_bytes(), after.as_deref(), limit).await {
        Ok(p) => p,
        Err(e) => return e.response(),
    };
    let mut body = Vec::with_capacity(16 + page.entries.iter().map(|(_, v)| v.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"data\":[");
    for (i, (_, v)) in page.entries.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(v);
    }
    body.extend_from_slice(b"],\"next\":");
    let last = page.entries.last().and_then(|(k, _)| core::str::from_utf8(&k[prefix.len()..]).ok()?.parse::<u64>().ok());
    match last.filter(|_| page.more) {
        Some(id) => json::push_int(&mut body, id.into()),
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    Response::json(200, body)
}

/// `POST PATH`.
pub async fn create<R: Record, S: Store>(store: &mut S, body: &[u8]) -> Response {
    let r = match parse::<R>(body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ck = counter_key(R::NAME);
    let next = match store.get(&ck).await {
        Ok(None) => 1,
        Ok(Some(v)) => match core::str::from_utf8(&v).ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(n) if n < u64::MAX => n + 1,
            _ => return Response::error(500, &format!("the {} id counter is unreadable", R::NAME)),
        },
        Err(e) => return e.response(),
    };
    let r = r.with_id(next);
    let mut json = Vec::with_capacity(128);
    r.to_json(&mut json);
    let n = format!("{next}");
    if let Err(e) = store.write(&[(&ck, Some(n.as_bytes())), (&key(R::NAME, next), Some(&json))]).await {
        return e.response();
    }
    Response::json(201, json).with_header("Location", format!("{}/{next}", R::PATH))
}

async fn load<R: Record, S: Store>(store: &mut S, id: u64) -> Result<R, Response> {
    match store.get(&key(R::NAME, id)).await {
        Ok(Some(v)) => decode(&v),
        Ok(None) => Err(not_found::<R>(id)),
        Err(e) => Err(e.response()),
    }
}

/// `GET PATH/ID`: the stored JSON as it is.
pub async fn show<R: Record, S: Store>(store: &mut S, id: u64) -> Response {
    match store.get(&key(R::NAME, id)).await {
        Ok(Some(v)) => Response::json(200, v),
        Ok(None) => not_found::<R>(id),
        Err(e) => e.response(),
    }
}

/// `PUT PATH/ID` (`patch` false: every field as at create) or `PATCH
/// PATH/ID` (`patch` true: the fields given, the others kept).
pub async fn update<R: Record, S: Store>(store: &mut S, id: u64, body: &[u8], patch: bool) -> Response {
    let old = match load::<R, S>(store, id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let r = match parse::<R>(body, patch.then_some(&old)) {
        Ok(r) => r.with_id(id),
        Err(resp) => return resp,
    };
    let mut json = Vec::with_capacity(128);
    r.to_json(&mut json);
    match store.write(&[(&key(R::NAME, id), Some(&json))]).await {
        Ok(()) => Response::json(200, json),
        Err(e) => e.response(),
    }
}

/// `DELETE PATH/ID`.
pub async fn destroy<R: Record, S: Store>(store: &mut S, id: u64) -> Response {
    let k = key(R::NAME, id);
    match store.get(&k).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found::<R>(id),
        Err(e) => return e.response(),
    }
    match store.write(&[(&k, None)]).await {
        Ok(()) => Response::no_content(),
        Err(e) => e.response(),
    }
}

/// A store failure as a response (for hand-written handlers).
pub fn store_error(e: &StoreError) -> Response {
    e.response()
}

/// The path split into at most [`MAX_SEGMENTS`] segments (`/a/b/` is `a`,
/// `b`; `/` is none); `None` when longer (no route has that many).
pub fn segments(path: &str) -> Option<([&str; MAX_SEGMENTS], usize)> {
    let mut out = [""; MAX_SEGMENTS];
    let p = path.strip_prefix('/')?;
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        return Some((out, 0));
    }
    let mut n = 0;
    for s in p.split('/') {
        *out.get_mut(n)? = s;
        n += 1;
    }
    Some((out, n))
}

/// Deepest path a route can have.
pub const MAX_SEGMENTS: usize = 16;

/// A `{name: u64}` path parameter: decimal digits only.
pub fn param_u64(seg: &str) -> Option<u64> {
    if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seg.parse().ok()
}

/// A `{name}` path parameter: percent-decoded, not empty.
pub fn param_string(seg: &str) -> Option<String> {
    let s = crate::percent_decode_path(seg)?;
    (!s.is_empty()).then(|| s.into_owned())
}

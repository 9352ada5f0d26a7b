//! Reading a JSON request body field by field, so that a 422 names every
//! failing field, and writing JSON.
//!
//! The generated `from_json` of a `json_struct` or `resource` parses the
//! body once into a map ([`parse_object`]), takes each declared field with
//! the `take_*` functions and checks its validations, collecting each
//! failure in [`FieldErrors`]; it builds the typed value only when there
//! is none.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{Map, Value};

use crate::pattern::Pattern;
use crate::Response;

/// The failing fields of one request, in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors {
    pub fields: Vec<(String, String)>,
}

/// At most this many fields are named in one 422 (a body of a thousand
/// unknown keys gets a bounded answer).
pub const MAX_NAMED: usize = 32;

impl FieldErrors {
    /// Records that `field` failed with `message` (its first failure only).
    pub fn add(&mut self, field: &str, message: String) {
        if self.fields.len() < MAX_NAMED && !self.fields.iter().any(|(f, _)| f == field) {
            self.fields.push((field.to_owned(), message));
        }
    }

    /// Records every key left in `map` (after the declared fields were
    /// taken) as not a field of `what`.
    pub fn unknown(&mut self, map: &Map<String, Value>, what: &str) {
        for k in map.keys() {
            self.add(k, format!("is not a field of {what}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// 422 with `{"error":"validation failed","fields":{"title":"is required",...}}`.
    pub fn response(&self) -> Response {
        let mut body = Vec::from(&b"{\"error\":\"validation failed\",\"fields\":{"[..]);
        for (i, (f, m)) in self.fields.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            push_str(&mut body, f);
            body.push(b':');
            push_str(&mut body, m);
        }
        body.extend_from_slice(b"}}");
        Response::json(422, body)
    }
}

/// Parses a request body that must be a JSON object: 400 otherwise (a
/// malformed body is the client's error, not a validation failure).
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Response::error(400, "the body must be a JSON object")),
        Err(e) => Err(Response::error(400, &format!("malformed JSON: {e}"))),
    }
}

/// A field's value: absent (or `null`) is `None`.
fn take(map: &mut Map<String, Value>, field: &str) -> Option<Value> {
    map.remove(field).filter(|v| !v.is_null())
}

/// A string field; a value of another type is recorded and read as absent.
pub fn take_string(
    map: &mut Map<String, Value>,
    field: &'static str,
    errors: &mut FieldErrors,
) -> Option<String> {
    match take(map, field)? {
        Value::String(s) => Some(s),
        _ => {
            errors.add(field, "must be a string".to_owned());
            None
        }
    }
}

/// A boolean field.
pub fn take_bool(
    map: &mut Map<String, Value>,
    field: &'static str,
    errors: &mut FieldErrors,
) -> Option<bool> {
    match take(map, field)? {
        Value::Bool(b) => Some(b),
        _ => {
            errors.add(field, "must be true or false".to_owned());
            None
        }
    }
}

/// An integer field within `lo..=hi` (the Rust type's range; the declared
/// `min`/`max` are checked separately with their own message).
pub fn take_int(
    map: &mut Map<String, Value>,
    field: &'static str,
    lo: i128,
    hi: i128,
    errors: &mut FieldErrors,
) -> Option<i128> {
    let v = take(map, field)?;
    let n = v
        .as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from));
    match n {
        Some(n) if (lo..=hi).contains(&n) => Some(n),
        Some(_) => {
            errors.add(field, format!("must be an integer from {lo} to {hi}"));
            None
        }
        None => {
            errors.add(field, "must be an integer".to_owned());
            None
        }
    }
}

/// `required`: records "is required" when absent.
pub fn require<T>(value: Option<T>, field: &'static str, errors: &mut FieldErrors) -> Option<T> {
    if value.is_none() {
        errors.add(field, "is required".to_owned());
    }
    value
}

/// `min_length` / `max_length`, in characters.
pub fn check_length(
    value: &str,
    field: &'static str,
    min: Option<usize>,
    max: Option<usize>,
    errors: &mut FieldErrors,
) {
    let n = value.chars().count();
    if let Some(min) = min.filter(|&m| n < m) {
        errors.add(field, format!("must be at least {min} character{} long", if min == 1 { "" } else { "s" }));
    } else if let Some(max) = max.filter(|&m| n > m) {
        errors.add(field, format!("must be at most {max} character{} long", if max == 1 { "" } else { "s" }));
    }
}

/// `min` / `max`.
pub fn check_range(
    value: i128,
    field: &'static str,
    min: Option<i128>,
    max: Option<i128>,
    errors: &mut FieldErrors,
) {
    if let Some(min) = min.filter(|&m| value < m) {
        errors.add(field, format!("must be at least {min}"));
    } else if let Some(max) = max.filter(|&m| value > m) {
        errors.add(field, format!("must be at most {max}"));
    }
}

/// `pattern`.
pub fn check_pattern(
    value: &str,
    field: &'static str,
    pattern: Option<&Pattern>,
    source: &str,
    errors: &mut FieldErrors,
) {
    if !pattern.is_some_and(|p| p.matches(value)) {
        errors.add(field, format!("must match {source}"));
    }
}

/// `one_of`.
pub fn check_one_of(value: &str, field: &'static str, allowed: &[&str], errors: &mut FieldErrors) {
    if !allowed.contains(&value) {
        let mut list = String::new();
        for (i, a) in allowed.iter().enumerate() {
            if i > 0 {
                list.push_str(", ");
            }
            list.push_str(a);
        }
        errors.add(field, format!("must be one of {list}"));
    }
}

/// Appends an integer.
pub fn push_int(out: &mut Vec<u8>, v: i128) {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `"name":` (after a comma unless `first`).
pub fn push_key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    push_str(out, name);
    out.push(b':');
}

/// Appends `s` as a JSON string literal.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failing_field_is_named() {
        let mut m = parse_object(br#"{"title": 5, "n": 300, "done": "yes", "extra": 1}"#).unwrap();
        let mut e = FieldErrors::default();
        assert_eq!(take_string(&mut m, "title", &mut e), None);
        assert_eq!(take_int(&mut m, "n", 0, 255, &mut e), None);
        assert_eq!(take_bool(&mut m, "done", &mut e), None);
        assert_eq!(
            require(take_string(&mut m, "name", &mut e), "name", &mut e),
            None
        );
        let r = e.response();
        assert_eq!(r.status, 422);
        assert_eq!(
            core::str::from_utf8(&r.body).unwrap(),
            r#"{"error":"validation failed","fields":{"title":"must be a string","n":"must be an integer from 0 to 255","done":"must be true or false","name":"is required"}}"#
        );
        assert_eq!(parse_object(b"[1]").unwrap_err().status, 400);
        assert_eq!(parse_object(b"{").unwrap_err().status, 400);
    }

    #[test]
    fn integers() {
        for v in [0i128, 7, -7, 255, i64::MIN as i128, u64::MAX as i128] {
            let mut o = Vec::new();
            push_int(&mut o, v);
            assert_eq!(core::str::from_utf8(&o).unwrap(), alloc::format!("{v}"));
        }
    }

    #[test]
    fn strings_escape() {
        let mut v = Vec::new();
        push_str(&mut v, "a\"\\\n\u{1}é");
        let s = core::str::from_utf8(&v).unwrap();
        assert_eq!(serde_json::from_str::<String>(s).unwrap(), "a\"\\\n\u{1}é");
    }
}

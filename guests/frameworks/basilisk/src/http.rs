//! The request an application sees and the response it returns.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// The methods routes are declared with (others are answered 405 by a
/// path that exists, 404 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Other,
}

impl Method {
    /// From the request line's token (case-sensitive, as RFC 9110 says).
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }
}

/// One request, borrowed from the HTTP engine's buffers.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The path, still percent-encoded, without the query.
    pub path: &'a str,
    /// What followed `?` (empty if nothing).
    pub query: &'a str,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<&'a [u8]>,
    /// The request body (already de-chunked).
    pub body: &'a [u8],
    /// Who is asking, for the per-client rate limit (an IPv4 address, a
    /// connection's peer, ...). 0 when unknown.
    pub client: u64,
}

/// A response: status, body and the few headers the framework sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `application/json` unless a handler says otherwise.
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra headers (`Allow`, `Location`, `WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A JSON body.
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    /// `value` serialized as JSON.
    pub fn json_of<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::json(status, body),
            Err(_) => Response::error(500, "the response could not be encoded"),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Response {
        let mut body = Vec::with_capacity(message.len() + 12);
        body.extend_from_slice(b"{\"error\":");
        crate::json::push_str(&mut body, message);
        body.push(b'}');
        Response::json(status, body)
    }

    /// 204, no body.
    pub fn no_content() -> Response {
        Response {
            status: 204,
            content_type: "application/json",
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    /// The reason phrase of the status.
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            422 => "Unprocessable Content",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        }
    }
}

/// The first value of query parameter `name` (percent-decoded; `+` is a
/// space), if present.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name))
            .then(|| percent_decode(v))
            .flatten()
    })
}

/// Decodes `%XX` escapes and `+` (as a space); `None` for a bad escape or
/// bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    decode(s, true)
}

/// Decodes `%XX` escapes of a path segment (`+` is itself there).
pub fn percent_decode_path(s: &str) -> Option<Cow<'_, str>> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Some(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) else {
                    return None;
                };
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_escapes() {
        assert_eq!(
            query_param("limit=5&after=10", "after").as_deref(),
            Some("10")
        );
        assert_eq!(query_param("q=a+b%21&x", "q").as_deref(), Some("a b!"));
        assert_eq!(query_param("x", "x").as_deref(), Some(""));
        assert_eq!(query_param("q=%zz", "q"), None);
        assert_eq!(query_param("", "q"), None);
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode_path("a+b%20c").as_deref(), Some("a+b c"));
        assert_eq!(
            Response::error(404, "no \"x\"").body,
            b"{\"error\":\"no \\\"x\\\"\"}"
        );
    }
}

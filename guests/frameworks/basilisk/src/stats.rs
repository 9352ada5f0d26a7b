//! Per-route request counts and timings, and the request log line.

use alloc::string::String;
use core::fmt::Write;

/// One route's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteStats {
    pub requests: u64,
    /// Answers with a status of 400 or more.
    pub errors: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

impl RouteStats {
    pub const fn new() -> RouteStats {
        RouteStats {
            requests: 0,
            errors: 0,
            total_ns: 0,
            max_ns: 0,
        }
    }

    pub fn record(&mut self, status: u16, ns: u64) {
        self.requests += 1;
        self.errors += u64::from(status >= 400);
        self.total_ns = self.total_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Mean time per request (ns), 0 before the first.
    pub fn mean_ns(&self) -> u64 {
        self.total_ns.checked_div(self.requests).unwrap_or(0)
    }
}

/// `GET /_stats`: `{"routes":[{"route":"GET /todos","requests":3,"errors":0,"mean_us":12,"max_us":30},...]}`.
pub fn stats_response(names: &[&str], stats: &[RouteStats]) -> crate::Response {
    let mut out = alloc::vec::Vec::with_capacity(64 * names.len() + 16);
    out.extend_from_slice(b"{\"routes\":[");
    for (i, (n, s)) in names.iter().zip(stats).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"route\":");
        crate::json::push_str(&mut out, n);
        for (k, v) in [("requests", s.requests), ("errors", s.errors), ("mean_us", s.mean_ns() / 1000), ("max_us", s.max_ns / 1000)] {
            crate::json::push_key(&mut out, k, false);
            crate::json::push_int(&mut out, v.into());
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    crate::Response::json(200, out)
}

/// `GET /todos/3 200 41us`: the request log's line (no client data beyond
/// method and path, which are truncated at 100 bytes and cleaned of control
/// characters so a client cannot forge log lines).
pub fn log_line(method: &str, path: &str, status: u16, ns: u64) -> String {
    let mut s = String::with_capacity(48);
    s.push_str(method);
    s.push(' ');
    for c in path.chars().take(100) {
        s.push(if c.is_control() { '?' } else { c });
    }
    let _ = write!(s, " {status} {}us", ns / 1000);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_log_lines() {
        let mut r = RouteStats::new();
        r.record(200, 1000);
        r.record(422, 3000);
        assert_eq!(
            (r.requests, r.errors, r.mean_ns(), r.max_ns),
            (2, 1, 2000, 3000)
        );
        assert_eq!(
            log_line("GET", "/a\nforged 200", 404, 12_345),
            "GET /a?forged 200 404 12us"
        );
    }
}

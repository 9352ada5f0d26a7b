//! Bearer-token authentication (`authentication bearer;` in the spec).
//!
//! The tokens come from outside the image (the partition's boot arguments
//! in a guest), never from the spec. A request's `Authorization: Bearer
//! <token>` is compared with every configured token in constant time (the
//! time taken does not depend on how many leading bytes match, nor on
//! which token matched), so a client cannot guess a token byte by byte.

use alloc::vec::Vec;

use crate::Response;

/// The accepted tokens.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    tokens: Vec<Vec<u8>>,
}

/// The longest token accepted (a longer header value is refused without
/// comparison).
pub const MAX_TOKEN: usize = 256;

impl Tokens {
    /// Tokens separated by commas or whitespace (`"abc,def"`); empty parts
    /// and parts longer than [`MAX_TOKEN`] are ignored.
    pub fn parse(list: &str) -> Tokens {
        let tokens = list
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN)
            .map(|t| t.as_bytes().to_vec())
            .collect();
        Tokens { tokens }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether `authorization` (the header's value) carries an accepted
    /// bearer token. With no token configured nothing is accepted.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(h) = authorization else { return false };
        let h = trim(h);
        if h.len() < 7 || !h[..6].eq_ignore_ascii_case(b"bearer") || h[6] != b' ' {
            return false;
        }
        let given = trim(&h[7..]);
        if given.is_empty() || given.len() > MAX_TOKEN {
            return false;
        }
        let mut ok = 0u8;
        for t in &self.tokens {
            ok |= constant_time_eq(given, t) as u8;
        }
        ok == 1
    }

    /// 401 with `WWW-Authenticate: Bearer` and a JSON body.
    pub fn challenge() -> Response {
        Response::error(
            401,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
        .with_header(
            "WWW-Authenticate",
            alloc::string::String::from("Bearer realm=\"basilisk\""),
        )
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e]
}

/// Equality whose time depends only on the lengths (tokens of another
/// length are told apart at once: their length is not the secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let t = Tokens::parse("s3cret, other\n");
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(t.accepts(Some(b"bearer other ")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Bearer s3cretx")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(Some(b"Bearers3cret")));
        assert!(!t.accepts(Some(b"Bearer ")));
        assert!(!t.accepts(None));
        assert!(!Tokens::parse("").accepts(Some(b"Bearer ")));
        let r = Tokens::challenge();
        assert_eq!(r.status, 401);
        assert_eq!(r.headers[0].0, "WWW-Authenticate");
    }
}

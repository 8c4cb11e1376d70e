//! Bearer-token checks, shared by both transports (and by any other token, such as an
//! admin token, that wants the same rules). Keys are kept only as SHA-256 digests and a
//! candidate is compared with every one of them in constant time, so neither the
//! position nor the length of a matching key shows in the timing. Nothing here logs.

use ring::digest::{digest, SHA256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::ApiKeys;

/// A set of accepted tokens. Empty = authentication off.
#[derive(Clone)]
pub struct Keys {
    digests: Vec<[u8; 32]>,
}

impl Keys {
    pub fn new(keys: &ApiKeys) -> Keys {
        Keys {
            digests: keys.expose().iter().map(|k| sha256(k.as_bytes())).collect(),
        }
    }

    /// True when no key is configured, i.e. every request passes.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// True when `candidate` is one of the keys. Compares against all of them, always.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let d = sha256(candidate);
        let found = self
            .digests
            .iter()
            .fold(Choice::from(0), |acc, k| acc | k.ct_eq(&d));
        found.into()
    }

    /// The rule for an `Authorization` header value: passes when no key is configured,
    /// else needs `Bearer <key>` (scheme case-insensitive) with a configured key.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        if self.is_open() {
            return true;
        }
        match authorization.and_then(bearer_token) {
            Some(token) => self.matches(token),
            None => false,
        }
    }
}

/// The token of `Bearer <token>`, or `None` for any other scheme.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value.get(7..)?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Keys {
        Keys::new(&ApiKeys::new(k.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn no_keys_means_open() {
        assert!(keys(&[]).allows(None));
    }

    #[test]
    fn bearer_with_any_configured_key_passes() {
        let k = keys(&["alpha", "beta"]);
        assert!(k.allows(Some(b"Bearer alpha")));
        assert!(k.allows(Some(b"bearer beta")));
        assert!(k.allows(Some(b"BEARER  beta ")));
    }

    #[test]
    fn missing_wrong_or_other_scheme_fails() {
        let k = keys(&["alpha"]);
        assert!(!k.allows(None));
        assert!(!k.allows(Some(b"")));
        assert!(!k.allows(Some(b"Bearer ")));
        assert!(!k.allows(Some(b"Bearer alph")));
        assert!(!k.allows(Some(b"Bearer alphaa")));
        assert!(!k.allows(Some(b"Basic alpha")));
        assert!(!k.allows(Some(b"alpha")));
    }
}

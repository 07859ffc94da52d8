//! Bearer-token authentication against the named ingest keys.
//!
//! Tokens are compared as SHA-256 digests with `subtle`'s constant-time equality, against
//! every key on every request: neither the position of the first differing byte, nor the
//! token's length, nor which key matched shows in the response time. Tokens are never
//! logged or echoed back.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::ApiKey;
use crate::error::RequestError;

/// The configured keys, reduced to names and token digests.
#[derive(Clone)]
pub(crate) struct Authenticator {
    keys: Vec<(Arc<str>, [u8; 32])>,
}

impl Authenticator {
    pub fn new(keys: &[ApiKey]) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| (Arc::from(k.name.as_str()), digest(k.token.as_bytes())))
                .collect(),
        }
    }

    /// The name of the key the request authenticated with; `Ok(None)` when no keys are
    /// configured (authentication off).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Arc<str>>, RequestError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer_token(v.as_bytes()))
            .ok_or(RequestError::MissingToken)?;
        let presented = digest(token);
        let mut matched = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, (_, key)) in self.keys.iter().enumerate() {
            let equal = presented.ct_eq(key);
            index.conditional_assign(&(i as u32), equal);
            matched |= equal;
        }
        if bool::from(matched) {
            let name = self.keys.get(index as usize).map(|(name, _)| name.clone());
            return name.map(Some).ok_or(RequestError::BadToken);
        }
        Err(RequestError::BadToken)
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value.get(7..)?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth() -> Authenticator {
        Authenticator::new(&[
            ApiKey {
                name: "a".into(),
                token: "token-a".into(),
            },
            ApiKey {
                name: "b".into(),
                token: "token-b".into(),
            },
        ])
    }

    fn headers(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn finds_the_matching_key_by_name() {
        let auth = auth();
        let name = auth.authenticate(&headers("Bearer token-b")).unwrap();
        assert_eq!(name.as_deref(), Some("b"));
        let name = auth.authenticate(&headers("bearer   token-a ")).unwrap();
        assert_eq!(name.as_deref(), Some("a"));
    }

    #[test]
    fn refuses_missing_other_scheme_and_wrong_tokens() {
        let auth = auth();
        assert_eq!(
            auth.authenticate(&HeaderMap::new()),
            Err(RequestError::MissingToken)
        );
        assert_eq!(
            auth.authenticate(&headers("Basic dG9rZW4tYQ==")),
            Err(RequestError::MissingToken)
        );
        assert_eq!(
            auth.authenticate(&headers("Bearer ")),
            Err(RequestError::MissingToken)
        );
        assert_eq!(
            auth.authenticate(&headers("Bearer token-c")),
            Err(RequestError::BadToken)
        );
        assert_eq!(
            auth.authenticate(&headers("Bearer token-")),
            Err(RequestError::BadToken)
        );
    }

    #[test]
    fn no_keys_means_no_authentication() {
        let auth = Authenticator::new(&[]);
        assert_eq!(auth.authenticate(&HeaderMap::new()), Ok(None));
    }
}

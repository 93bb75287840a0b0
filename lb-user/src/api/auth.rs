//! Bearer-token check for the mutating calls. Without a configured token nothing may be
//! changed: an admin API that silently accepts anyone is worse than one that refuses.
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::HttpError;
use super::ApiState;

/// Extractor that succeeds only for a request carrying `Authorization: Bearer <token>` with
/// the configured token. Put it first in a handler's arguments so it runs before the path
/// and the body are looked at: an unauthenticated caller learns nothing else.
pub struct Authorized;

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, HttpError> {
        // A poisoned lock still holds a valid token (writers only replace the Option).
        let expected = match state.token.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some(expected) = expected else {
            return Err(HttpError::unauthorized(
                "no admin token is configured (the token file is missing or empty): mutating calls are refused",
            ));
        };
        let presented = parts.headers.get(AUTHORIZATION).and_then(|v| bearer(v.as_bytes()));
        match presented {
            None => Err(HttpError::unauthorized("missing \"Authorization: Bearer <token>\" header")),
            Some(token) if constant_time_eq(token, expected.as_bytes()) => Ok(Authorized),
            Some(_) => Err(HttpError::unauthorized("invalid bearer token")),
        }
    }
}

/// The token of a `Bearer` credential (scheme name case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares without stopping at the first difference, so response time does not tell an
/// attacker how many leading bytes were right. The loop runs over the presented token, so
/// timing depends only on what the caller sent, not on the secret's length.
fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut diff = u8::from(presented.len() != secret.len());
    for (i, b) in presented.iter().enumerate() {
        diff |= b ^ secret[i % secret.len()];
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_trimmed() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secretsecret", b"secret"));
        assert!(!constant_time_eq(b"sec", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"", b""));
    }
}

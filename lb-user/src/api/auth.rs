//! Bearer-token check for the mutating calls. Without a configured token nothing may be
//! changed: an admin API that silently accepts anyone is worse than one that refuses.
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::HttpError;
use super::ApiState;

/// Extractor that succeeds only for a request carrying `Authorization: Bearer <token>` with
/// one of the configured tokens. Put it first in a handler's arguments so it runs before
/// the path and the body are looked at: an unauthenticated caller learns nothing else.
pub struct Authorized;

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, HttpError> {
        check(parts, state).map(|()| Authorized)
    }
}

/// Extractor for flow listings (`GET /v1/flows`): they show every client's address, so
/// they need the token unless the API listens on loopback only (then whoever can reach it
/// is on the LB host already).
pub struct FlowReader;

impl FromRequestParts<ApiState> for FlowReader {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, HttpError> {
        if state.admin_listen.ip().is_loopback() {
            return Ok(FlowReader);
        }
        check(parts, state).map(|()| FlowReader)
    }
}

/// The token check itself, for handlers that need it only sometimes (`/v1/flows`).
pub fn check(parts: &Parts, state: &ApiState) -> Result<(), HttpError> {
    // A poisoned lock still holds valid tokens (writers only replace the whole set).
    let expected = match state.token.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if expected.is_empty() {
        return Err(HttpError::unauthorized(
            "no admin token is configured (the token file is missing or empty): this call is refused",
        ));
    }
    let presented = parts.headers.get(AUTHORIZATION).and_then(|v| bearer(v.as_bytes()));
    match presented {
        None => Err(HttpError::unauthorized("missing \"Authorization: Bearer <token>\" header")),
        Some(token) if accepted(token, expected.iter()) => Ok(()),
        Some(_) => Err(HttpError::unauthorized("invalid bearer token")),
    }
}

/// Compares with every token (no early exit), so the time taken does not say which one,
/// if any, was close.
fn accepted<'a>(presented: &[u8], tokens: impl Iterator<Item = &'a str>) -> bool {
    tokens.fold(false, |any, t| constant_time_eq(presented, t.as_bytes()) | any)
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
    fn any_of_the_tokens_is_accepted() {
        let tokens = lb_config::Tokens::parse("old\nnew\n");
        assert!(accepted(b"old", tokens.iter()));
        assert!(accepted(b"new", tokens.iter()));
        assert!(!accepted(b"older", tokens.iter()));
        assert!(!accepted(b"", tokens.iter()));
        assert!(!accepted(b"old", lb_config::Tokens::default().iter()));
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

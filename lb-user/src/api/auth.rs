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

/// Extractor for the status page (`GET /`, `GET /v1/status`): free on a loopback
/// `admin_listen` like [`FlowReader`]; otherwise the token, as a bearer credential or as the
/// password of HTTP Basic credentials (any user name), since a browser can send only the
/// latter. Basic is accepted for reading only: a browser replays cached Basic credentials on
/// any request to the origin, a cross-site form post included, so a mutating call that took
/// them could be triggered by another page.
pub struct StatusReader;

impl FromRequestParts<ApiState> for StatusReader {
    type Rejection = BasicChallenge;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, BasicChallenge> {
        if state.admin_listen.ip().is_loopback() {
            return Ok(StatusReader);
        }
        let basic = parts.headers.get(AUTHORIZATION).and_then(|v| basic_password(v.as_bytes()));
        match basic {
            Some(password) if accepted(&password, tokens(state).iter()) => Ok(StatusReader),
            Some(_) => Err(BasicChallenge(HttpError::unauthorized("invalid token (the Basic password)"))),
            None => check(parts, state).map(|()| StatusReader).map_err(BasicChallenge),
        }
    }
}

/// A 401 that also offers Basic, so a browser asks for the token (as the password).
pub struct BasicChallenge(pub HttpError);

impl axum::response::IntoResponse for BasicChallenge {
    fn into_response(self) -> axum::response::Response {
        let mut response = self.0.into_response();
        response.headers_mut().append(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"lb\", charset=\"UTF-8\""),
        );
        response
    }
}

/// The password of a `Basic` credential (RFC 7617: base64 of `user:password`).
fn basic_password(value: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(value[6..].trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

fn tokens(state: &ApiState) -> lb_config::Tokens {
    // A poisoned lock still holds valid tokens (writers only replace the whole set).
    match state.token.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// The token check itself, for handlers that need it only sometimes (`/v1/flows`).
pub fn check(parts: &Parts, state: &ApiState) -> Result<(), HttpError> {
    let expected = tokens(state);
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
    fn basic_credentials_give_their_password() {
        // "lb:s3cret" and ":s3cret" (no user name), "user:pa:ss" (a colon in the password).
        assert_eq!(basic_password(b"Basic bGI6czNjcmV0").as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(basic_password(b"basic OnMzY3JldA==").as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(basic_password(b"Basic dXNlcjpwYTpzcw==").as_deref(), Some(&b"pa:ss"[..]));
        // No colon, not base64, another scheme.
        assert_eq!(basic_password(b"Basic czNjcmV0"), None);
        assert_eq!(basic_password(b"Basic !!!"), None);
        assert_eq!(basic_password(b"Bearer bGI6czNjcmV0"), None);
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

//! `POST /v1/drain`: withdraw every BGP announcement of this node (or, with
//! `{"drain": false}`, announce again). Forwarding is untouched: flows that still arrive
//! while the routers converge are served.
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::answers::{Draining, ErrorBody};
use super::auth::Authorized;
use super::error::HttpError;
use super::{body, ApiState};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DrainBody {
    drain: bool,
}

#[utoipa::path(post, path = "/v1/drain", tag = "daemon", security(("token" = [])),
    request_body(content = Option<DrainBody>, description = "Optional: none drains, {\"drain\": false} announces again", content_type = "application/json"),
    responses(
        (status = 200, description = "Draining (or announcing) now", body = Draining),
        (status = 400, description = "A bad path parameter or body", body = ErrorBody),
        (status = 401, description = "No token, a wrong one, or none configured", body = ErrorBody),
        (status = 409, description = "The node has no [cluster.bgp] to withdraw from", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        (status = 503, description = "The controller is not running (starting or stopping), or the shared store does not answer", body = ErrorBody),
    ))]
pub async fn drain(
    _: Authorized,
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let drain = drain_body(&body::read(&headers, body).await?)?;
    let was = state.control.drain(drain).await?;
    Ok(Json(Draining { draining: drain, was_draining: was }).into_response())
}

/// The body is optional: none (or only whitespace) drains; `{"drain": false}` undoes it.
pub fn drain_body(bytes: &[u8]) -> Result<bool, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(true);
    }
    body::parse::<DrainBody>(bytes).map(|b| b.drain)
}

#[cfg(test)]
mod tests {
    use super::drain_body;

    #[test]
    fn bodies() {
        assert_eq!(drain_body(b"").ok(), Some(true));
        assert_eq!(drain_body(b" \n").ok(), Some(true));
        assert_eq!(drain_body(br#"{"drain": true}"#).ok(), Some(true));
        assert_eq!(drain_body(br#"{"drain": false}"#).ok(), Some(false));
        for bad in [&br#"{"drain": "no"}"#[..], br#"{"undo": true}"#, b"drain", br#"{}"#] {
            let e = drain_body(bad).expect_err("refused");
            assert_eq!(e.status.as_u16(), 400, "{}", String::from_utf8_lossy(bad));
        }
    }
}

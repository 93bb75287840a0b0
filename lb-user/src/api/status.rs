//! `GET /` (the status page) and `GET /v1/status` (what it polls): free to read on a
//! loopback `admin_listen`, the token otherwise (see `auth::StatusReader`).
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use super::answers::ErrorBody;
use super::auth::StatusReader;
use super::error::HttpError;
use super::status_model::Status;
use super::{status_page, ApiState};
use lb_xdp::maps::Maps;

#[utoipa::path(get, path = "/", tag = "observe", security((), ("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The status page: HTML, CSS and script in one document", content_type = "text/html; charset=utf-8", body = String),
        (status = 401, description = "Needs the token (bearer, or the Basic password): admin_listen is not loopback", body = ErrorBody),
        (status = 503, description = "The controller is not running (starting or stopping), or the shared store does not answer", body = ErrorBody),
    ))]
pub async fn page(_: StatusReader, State(state): State<ApiState>) -> Result<Response, HttpError> {
    let status = read(&state).await?;
    let mut response = Html(status_page::render(&status)).into_response();
    // The page embeds its script; nothing else may run or be loaded in it.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'",
        ),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/v1/status", tag = "observe", security((), ("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Every service and backend with its counters since start; rates are differences over sampled_at_ms", body = Status),
        (status = 401, description = "Needs the token (bearer, or the Basic password): admin_listen is not loopback", body = ErrorBody),
        (status = 503, description = "The controller is not running (starting or stopping), or the shared store does not answer", body = ErrorBody),
    ))]
pub async fn json(_: StatusReader, State(state): State<ApiState>) -> Result<Json<Status>, HttpError> {
    Ok(Json(read(&state).await?))
}

/// The controller's view with the data path's counters beside it.
async fn read(state: &ApiState) -> Result<Status, HttpError> {
    let services = state.control.services().await?;
    let path = state.telemetry.snapshot().path.to_string();
    if let Some(proxy) = &state.proxy {
        return Ok(Status::from_proxy(path, &services, proxy));
    }
    let pin_path = state.pin_path.clone();
    // Map reads are syscalls (three per backend id): off the runtime.
    tokio::task::spawn_blocking(move || {
        let maps = Maps::open_pinned(&pin_path).ok();
        Status::from_maps(path, &services, maps.as_ref())
    })
    .await
    .map_err(|e| HttpError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("status failed: {e}")))
}

//! `/v1/services`: the controller's view, and the calls that change backends. Handlers only
//! translate HTTP to `ControlHandle` calls; the controller decides what is allowed.
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::Authorized;
use super::error::HttpError;
use super::params::{BackendParams, ServiceParam};
use super::{body, register, ApiState};
use lb_config::AdminState;

pub async fn list(State(state): State<ApiState>) -> Result<Response, HttpError> {
    Ok(Json(state.control.services().await?).into_response())
}

pub async fn register(
    _: Authorized,
    State(state): State<ApiState>,
    ServiceParam(service): ServiceParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let r = register::parse(&body::read(&headers, body).await?)?;
    // Renewing an existing registration is also 201: the agent need not care which it was.
    let new = state.control.register(service.clone(), r.address, r.weight, r.ttl).await?;
    let echo = json!({
        "service": service,
        "address": r.address.to_string(),
        "weight": r.weight,
        "ttl_seconds": register::ttl_seconds(r.ttl),
        "new": new,
    });
    Ok((StatusCode::CREATED, Json(echo)).into_response())
}

pub async fn heartbeat(_: Authorized, State(state): State<ApiState>, p: BackendParams) -> Result<Response, HttpError> {
    state.control.heartbeat(p.service.clone(), p.address).await?;
    Ok(Json(json!({ "service": p.service, "address": p.address.to_string(), "result": "ok" })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
}

pub async fn set_state(
    _: Authorized,
    State(state): State<ApiState>,
    p: BackendParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let admin = state_body(&body::read(&headers, body).await?)?;
    state.control.set_state(p.service.clone(), p.address, admin).await?;
    Ok(Json(json!({ "service": p.service, "address": p.address.to_string(), "state": admin.as_str() })).into_response())
}

/// The body of `PUT .../state`: `{"state": "ready" | "drain" | "maint"}`.
pub fn state_body(bytes: &[u8]) -> Result<AdminState, HttpError> {
    let StateBody { state } = body::parse(bytes)?;
    state.parse().map_err(|e: lb_config::UnknownKeyword| HttpError::bad_request(e.to_string()))
}

pub async fn deregister(_: Authorized, State(state): State<ApiState>, p: BackendParams) -> Result<Response, HttpError> {
    state.control.deregister(p.service, p.address).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn reload(_: Authorized, State(state): State<ApiState>) -> Result<Response, HttpError> {
    state.control.reload().await?;
    Ok(Json(json!({ "result": "ok" })).into_response())
}

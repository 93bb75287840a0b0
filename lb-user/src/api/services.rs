//! `/v1/services`: the controller's view, and the calls that change backends. Handlers only
//! translate HTTP to `ControlHandle` calls; the controller decides what is allowed.
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::answers::{BackendCallErrors, ErrorBody, Registered, Reloaded, Renewed, StateSet, WeightSet};
use super::auth::Authorized;
use super::error::HttpError;
use super::params::{BackendParams, BackendPath, ServiceParam};
use super::{body, register, ApiState};
use lb_config::{AdminState, MAX_WEIGHT};
use lb_control::ServiceView;

#[utoipa::path(get, path = "/v1/services", tag = "services",
    responses(
        (status = 200, description = "Every service and its backends", body = [ServiceView]),
        (status = 503, description = "The controller is not running (starting or stopping), or the shared store does not answer", body = ErrorBody),
    ))]
pub async fn list(State(state): State<ApiState>) -> Result<Response, HttpError> {
    Ok(Json(state.control.services().await?).into_response())
}

#[utoipa::path(post, path = "/v1/services/{service}/backends", tag = "backends", params(("service" = String, Path, description = "The service's name")), security(("token" = [])),
    request_body(content = super::register::RawRegister, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered, or the lease renewed", body = Registered),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        BackendCallErrors,
    ))]
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
    let echo = Registered {
        service,
        address: r.address.to_string(),
        weight: r.weight,
        ttl_seconds: register::ttl_seconds(r.ttl),
        new,
    };
    Ok((StatusCode::CREATED, Json(echo)).into_response())
}

#[utoipa::path(put, path = "/v1/services/{service}/backends/{address}/heartbeat", tag = "backends", params(BackendPath), security(("token" = [])),
    responses(
        (status = 200, description = "The lease is renewed", body = Renewed),
        BackendCallErrors,
    ))]
pub async fn heartbeat(_: Authorized, State(state): State<ApiState>, p: BackendParams) -> Result<Response, HttpError> {
    state.control.heartbeat(p.service.clone(), p.address).await?;
    Ok(Json(Renewed { service: p.service, address: p.address.to_string(), result: "ok" }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StateBody {
    #[schema(pattern = "^(ready|drain|maint)$", example = "drain")]
    state: String,
}

#[utoipa::path(put, path = "/v1/services/{service}/backends/{address}/state", tag = "backends", params(BackendPath), security(("token" = [])),
    request_body(content = StateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The admin state is set", body = StateSet),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        BackendCallErrors,
    ))]
pub async fn set_state(
    _: Authorized,
    State(state): State<ApiState>,
    p: BackendParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let admin = state_body(&body::read(&headers, body).await?)?;
    state.control.set_state(p.service.clone(), p.address, admin).await?;
    Ok(Json(StateSet { service: p.service, address: p.address.to_string(), state: admin.as_str() }).into_response())
}

/// The body of `PUT .../state`: `{"state": "ready" | "drain" | "maint"}`.
pub fn state_body(bytes: &[u8]) -> Result<AdminState, HttpError> {
    let StateBody { state } = body::parse(bytes)?;
    state.parse().map_err(|e: lb_config::UnknownKeyword| HttpError::bad_request(e.to_string()))
}

/// `PUT .../weight` `{"weight": N}` sets the backend's weight (0 to the config's maximum;
/// 0 takes it out of rotation like drain), `{"weight": null}` clears it (back to the
/// config's or the registration's); `DELETE .../weight` clears too.
#[utoipa::path(put, path = "/v1/services/{service}/backends/{address}/weight", tag = "backends", params(BackendPath), security(("token" = [])),
    request_body(content = WeightBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The weight is set (or cleared with null)", body = WeightSet),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        BackendCallErrors,
    ))]
pub async fn set_weight(
    _: Authorized,
    State(state): State<ApiState>,
    p: BackendParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let weight = weight_body(&body::read(&headers, body).await?)?;
    apply_weight(state, p, weight).await
}

#[utoipa::path(delete, path = "/v1/services/{service}/backends/{address}/weight", tag = "backends", params(BackendPath), security(("token" = [])),
    responses(
        (status = 200, description = "The API's weight is cleared", body = WeightSet),
        BackendCallErrors,
    ))]
pub async fn clear_weight(
    _: Authorized,
    State(state): State<ApiState>,
    p: BackendParams,
) -> Result<Response, HttpError> {
    apply_weight(state, p, None).await
}

/// Both weight calls: set or clear, then answer with the weight now set (`null`: none).
async fn apply_weight(state: ApiState, p: BackendParams, weight: Option<u32>) -> Result<Response, HttpError> {
    state.control.set_weight(p.service.clone(), p.address, weight).await?;
    Ok(Json(WeightSet { service: p.service, address: p.address.to_string(), weight }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WeightBody {
    /// 0 to the maximum (0 takes the backend out of rotation); null clears the API's weight.
    #[schema(required = true, minimum = 0, maximum = 10000)]
    weight: Option<u32>,
}

/// The body of `PUT .../weight`: `{"weight": N}` or `{"weight": null}` (the key is required:
/// a body that forgot it must not clear a weight by accident).
pub fn weight_body(bytes: &[u8]) -> Result<Option<u32>, HttpError> {
    let value: serde_json::Value = body::parse(bytes)?;
    if value.get("weight").is_none() {
        return Err(HttpError::bad_request("missing field `weight`: a number, or null to clear"));
    }
    let WeightBody { weight } = serde_json::from_value(value).map_err(|e| {
        HttpError::bad_request(format!(
            "invalid JSON body: {e}; expected {{\"weight\": N}} with N from 0 to {MAX_WEIGHT}, or null"
        ))
    })?;
    match weight {
        Some(w) if w > MAX_WEIGHT => {
            Err(HttpError::bad_request(format!("weight {w} is too large; the maximum is {MAX_WEIGHT}")))
        }
        w => Ok(w),
    }
}

#[utoipa::path(delete, path = "/v1/services/{service}/backends/{address}", tag = "backends", params(BackendPath), security(("token" = [])),
    responses(
        (status = 204, description = "Deregistered"),
        BackendCallErrors,
    ))]
pub async fn deregister(_: Authorized, State(state): State<ApiState>, p: BackendParams) -> Result<Response, HttpError> {
    state.control.deregister(p.service, p.address).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/reload", tag = "daemon", security(("token" = [])),
    responses(
        (status = 200, description = "The config file was read, checked and applied", body = Reloaded),
        (status = 401, description = "No token, a wrong one, or none configured", body = ErrorBody),
        (status = 422, description = "The config is invalid (each error in `errors`, FILE:LINE:COL) or could not be applied; the running one stays", body = ErrorBody),
        (status = 503, description = "The controller is not running (starting or stopping), or the shared store does not answer", body = ErrorBody),
    ))]
pub async fn reload(_: Authorized, State(state): State<ApiState>) -> Result<Response, HttpError> {
    state.control.reload().await?;
    Ok(Json(Reloaded { result: "ok" }).into_response())
}

//! `/healthz` (the process answers) and `/readyz` (the data path is serving).
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let ready = state.ready.load(Ordering::Acquire);
    // The controller sets the path once it knows it; until then there is none to name.
    let path = state.telemetry.snapshot().path;
    let path = (!path.is_empty()).then_some(path);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ready, "path": path })))
}

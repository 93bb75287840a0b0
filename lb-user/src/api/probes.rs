//! `/healthz` (the process answers) and `/readyz` (the data path is serving; with a shared
//! store, whether etcd answers).
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
    let mut body = json!({ "ready": ready, "path": path });
    // With a shared store: whether etcd answers. Readiness does not depend on it: the data
    // path serves its last known state either way.
    if let Some(up) = state.telemetry.snapshot().store_up {
        body["store"] = json!(if up { "ok" } else { "unreachable" });
    }
    (status, Json(body))
}

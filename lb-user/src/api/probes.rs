//! `/healthz` (the process answers) and `/readyz` (the data path is serving; with a shared
//! store, whether etcd answers).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::answers::{Health, Readiness};
use super::ApiState;

#[utoipa::path(get, path = "/healthz", tag = "observe",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "observe",
    responses(
        (status = 200, description = "The data path serves", body = Readiness),
        (status = 503, description = "Not yet serving, or stopping", body = Readiness),
    ))]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    let ready = state.ready.get();
    // The controller sets the path once it knows it; until then there is none to name.
    let path = state.telemetry.snapshot().path;
    let path = (!path.is_empty()).then_some(path);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // With a shared store: whether etcd answers. Readiness does not depend on it: the data
    // path serves its last known state either way.
    let store = state.telemetry.snapshot().store_up.map(|up| if up { "ok" } else { "unreachable" });
    (status, Json(Readiness { ready, path: path.map(|p| p.to_string()), store }))
}

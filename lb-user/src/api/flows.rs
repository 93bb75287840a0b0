//! `GET /v1/flows`: the open flows, as `lb list flows --json` shows them. From the proxy's
//! connection table when the proxy serves, else from the pinned flow table.
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::HttpError;
use super::ApiState;
use lb_xdp::inspect::{self, FlowRow};
use lb_xdp::maps::Maps;

pub async fn list(State(state): State<ApiState>) -> Response {
    let rows = match &state.proxy {
        Some(proxy) => Ok(proxy
            .flows()
            .into_iter()
            .map(|f| FlowRow {
                protocol: f.protocol.to_string(),
                client: f.client.to_string(),
                vip: f.vip.to_string(),
                backend: f.backend.to_string(),
                // A proxy connection to a backend that may not keep it is closed at once.
                backend_retired: false,
                snat_port: None,
                idle_seconds: 0.0,
                closing: false,
            })
            .collect::<Vec<_>>()),
        None => {
            let pin_path = state.pin_path.clone();
            tokio::task::spawn_blocking(move || Maps::open_pinned(&pin_path).and_then(|m| inspect::flows(&m)))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
        }
    };
    match rows {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => HttpError::new(StatusCode::SERVICE_UNAVAILABLE, format!("flows: {e:#}")).into_response(),
    }
}

//! `GET /metrics`. The pinned maps are opened on every scrape: they appear once the daemon
//! has attached and outlive daemon restarts, so holding them here would go stale.
use axum::extract::State;
use axum::http::{header::CONTENT_TYPE, StatusCode};
use axum::response::{IntoResponse, Response};

use super::answers::ErrorBody;
use super::ApiState;
use crate::metrics;
use lb_xdp::maps::Maps;

pub const CONTENT_TYPE_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(get, path = "/metrics", tag = "observe",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 503, description = "Another walk of the flow table is running and did not end in time", body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    // Without the controller there are still data-path counters worth scraping.
    let services = state.control.services().await.unwrap_or_else(|e| {
        tracing::warn!("metrics without services: {e}");
        Vec::new()
    });
    let telemetry = state.telemetry.snapshot();
    let pin_path = state.pin_path.clone();
    let proxy = state.proxy.clone();
    // The XDP path's scrape walks the flow table (live flows per backend): one at a time.
    let walk = if proxy.is_some() {
        None
    } else {
        match state.flow_walks.begin().await {
            Ok(walk) => Some(walk),
            Err(e) => return e.into_response(),
        }
    };
    // Map reads are syscalls, and the flow-table walk can take a while: off the runtime.
    let rendered = tokio::task::spawn_blocking(move || {
        let _walk = walk;
        render(&telemetry, &services, proxy, &pin_path)
    })
    .await;
    match rendered {
        Ok(text) => ([(CONTENT_TYPE, CONTENT_TYPE_0_0_4)], text).into_response(),
        Err(e) => super::error::HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("metrics failed: {e}"))
            .into_response(),
    }
}

fn render(
    telemetry: &lb_control::telemetry::TelemetryData,
    services: &[lb_control::ServiceView],
    proxy: Option<std::sync::Arc<lb_proxy::ProxyStats>>,
    pin_path: &std::path::Path,
) -> String {
    match proxy {
        Some(proxy) => metrics::render(telemetry, services, None) + &proxy.render_metrics(),
        None => {
            let maps = Maps::open_pinned(pin_path)
                .inspect_err(|e| tracing::debug!("metrics without the data path: {e:#}"))
                .ok();
            metrics::render(telemetry, services, maps.as_ref())
        }
    }
}

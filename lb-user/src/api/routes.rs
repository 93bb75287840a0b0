//! The route table (docs/api.md, "The contract"). Anything not in it gets a
//! JSON 404, and a known path with the wrong method a JSON 405.
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;

use super::error::HttpError;
use super::{drain, flows, openapi, probes, scrape, services, status, trace, ApiState};

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(status::page))
        .route("/v1/status", get(status::json))
        .route("/openapi.json", get(openapi::spec))
        .route("/metrics", get(scrape::metrics))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/v1/services", get(services::list))
        .route("/v1/services/{service}/backends", post(services::register))
        .route("/v1/services/{service}/backends/{address}", axum::routing::delete(services::deregister))
        .route("/v1/services/{service}/backends/{address}/heartbeat", put(services::heartbeat))
        .route("/v1/services/{service}/backends/{address}/state", put(services::set_state))
        .route(
            "/v1/services/{service}/backends/{address}/weight",
            put(services::set_weight).delete(services::clear_weight),
        )
        .route("/v1/reload", post(services::reload))
        .route("/v1/drain", post(drain::drain))
        .route("/v1/flows", get(flows::list))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(trace::span))
        .with_state(state)
}

async fn not_found(request: Request) -> HttpError {
    HttpError::not_found(format!("no route for {} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(request: Request) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {} is not allowed on {}", request.method(), request.uri().path()),
    )
}

//! The admin HTTP API (docs/api.md, "The contract"): health and readiness
//! probes, Prometheus metrics, and the calls agents and operators use to register
//! backends, change their state and reload the config. Every change goes through the
//! controller (`ControlHandle`); this module only speaks HTTP.
//!
//! One concern per file: `routes` (the table), `auth` (bearer token), `body` and
//! `register` (request bodies), `params` (path parameters), `error` (JSON errors),
//! `services`/`probes`/`scrape`/`flows` (handlers), `walks` (one flow-table walk at a
//! time), `trace` (a span per request).
mod auth;
mod body;
mod error;
mod flows;
mod params;
mod probes;
mod register;
mod routes;
mod scrape;
mod services;
mod trace;
mod walks;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use anyhow::Context;

use lb_control::{ControlHandle, Telemetry};

pub use body::MAX_BODY_BYTES;
pub use error::HttpError;
pub use routes::router;
pub use walks::{FlowWalks, WALK_WAIT};

/// What every handler sees.
#[derive(Clone)]
pub struct ApiState {
    pub control: ControlHandle,
    /// The bearer tokens mutating calls need (any one of them); none refuses them all.
    /// Behind a lock so the daemon can swap them (on reload) without restarting the server.
    pub token: Arc<RwLock<lb_config::Tokens>>,
    /// `admin_listen`: flow listings need the token unless it is a loopback address.
    pub admin_listen: SocketAddr,
    /// One walk of the flow table at a time (`/metrics`, `/v1/flows`).
    pub flow_walks: FlowWalks,
    pub telemetry: Arc<Telemetry>,
    /// Where the data path's maps are pinned, opened on each scrape.
    pub pin_path: PathBuf,
    /// Set once the data path serves traffic (`/readyz`).
    pub ready: Arc<AtomicBool>,
    /// The proxy path's counters when it is the one serving (then no maps are read).
    pub proxy: Option<Arc<lb_proxy::ProxyStats>>,
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, "admin API listening");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await.context("admin API server failed")
}

//! The admin HTTP API (docs/api.md, "The contract"): health and readiness
//! probes, Prometheus metrics, and the calls agents and operators use to register
//! backends, change their state and reload the config. Every change goes through the
//! controller (`ControlHandle`); this module only speaks HTTP.
//!
//! One concern per file: `routes` (the table), `auth` (bearer token), `body` and
//! `register` (request bodies), `params` (path parameters), `error` (JSON errors),
//! `services`/`probes`/`scrape`/`flows`/`drain`/`status` (handlers), `status_model` and
//! `status_page` (what the status page shows, and its HTML), `walks` (one flow-table walk at a
//! time), `trace` (a span per request), `listener` (connections: the cap and the
//! timeouts).
mod answers;
mod auth;
mod body;
mod drain;
mod error;
mod flows;
mod listener;
pub mod openapi;
mod params;
mod probes;
mod register;
mod routes;
mod scrape;
mod services;
mod status;
pub mod status_model;
mod status_page;
mod trace;
mod walks;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use lb_control::{ControlHandle, Telemetry};

pub use body::MAX_BODY_BYTES;

/// The request parsers the handlers use, for the fuzz targets (`fuzz/`): request bodies
/// and the `{address}` path parameter, each refusing bad input with an `HttpError`.
pub mod parse {
    pub use super::params::backend_address;
    pub use super::register::{parse as registration, Registration, MAX_TTL};
    pub use super::services::state_body;
}
pub use error::HttpError;
pub use listener::{ConnectionLimits, HEADER_READ_TIMEOUT, MAX_ADMIN_CONNECTIONS};
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
    pub ready: lb_control::ReadyFlag,
    /// The proxy path's counters when it is the one serving (then no maps are read).
    pub proxy: Option<Arc<lb_proxy::ProxyStats>>,
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in
/// flight finish; connections bounded as `listener` describes, with the default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, state, ConnectionLimits::default(), shutdown).await
}

/// [`serve`] with other connection limits (tests use short ones).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ApiState,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, max_connections = limits.max_connections, header_read = ?limits.header_read, "admin API listening");
    let telemetry = state.telemetry.clone();
    listener::serve_connections(listener, router(state), limits, telemetry, shutdown).await;
    Ok(())
}

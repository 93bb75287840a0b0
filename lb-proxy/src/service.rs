//! What the tasks of one service share: its name and VIP, the current table, its counters,
//! its rate limiter and connection caps, and the two signals that end them (stop accepting; close everything
//! now).
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use super::caps::ConnCounter;
use super::limit::RateLimiter;
use super::pool::UpstreamPool;
use super::sessions::Sessions;
use super::signal::Signals;
use super::stats::{ProxyStats, ServiceStats};
use super::table::SharedTable;
use super::tracker::{TaskGuard, TaskKind};
use lb_config::{Protocol, ProxyMode};

pub struct ServiceCtx {
    /// Renamed in place when a reload renames the service and keeps its listen key, so
    /// its listeners and connections carry on under the new name.
    pub name: ServiceName,
    pub vip: SocketAddr,
    pub protocol: Protocol,
    pub mode: ProxyMode,
    pub table: SharedTable,
    pub stats: Arc<ProxyStats>,
    pub service_stats: Arc<ServiceStats>,
    /// This service's own signals: `stop` when its listeners are replaced or removed, `kill`
    /// when the service is removed.
    pub own: Signals,
    pub global: Arc<Signals>,
    /// HTTP mode only.
    pub pool: Option<Arc<UpstreamPool>>,
    /// UDP only.
    pub sessions: Option<Arc<Sessions>>,
    /// New-flow rate limit; outlives this context when the listeners are rebound.
    pub limiter: Arc<RateLimiter>,
    /// Open client connections against the service's caps; kept like the limiter.
    pub conns: Arc<ConnCounter>,
}

impl ServiceCtx {
    /// No new connections: this service's listeners are going, or the proxy is shutting down.
    pub async fn stopped(&self) {
        tokio::select! {
            _ = self.own.stop.fired() => {}
            _ = self.global.stop.fired() => {}
        }
    }

    /// Close everything now.
    pub async fn killed(&self) {
        tokio::select! {
            _ = self.own.kill.fired() => {}
            _ = self.global.kill.fired() => {}
        }
    }

    pub fn track(&self, kind: TaskKind) -> TaskGuard {
        self.stats.tasks().enter(kind, &self.name.get())
    }

    /// The flow's VIP: the service's, or when it listens on every address, the one the
    /// client actually reached (the same 5-tuple the XDP path would hash). `local` is
    /// asked only then: it costs a `getsockname` per connection.
    pub fn flow_vip(&self, local: impl FnOnce() -> Option<SocketAddr>) -> SocketAddr {
        if self.vip.ip().is_unspecified() {
            local().unwrap_or(self.vip)
        } else {
            self.vip
        }
    }
}

/// A service's name as its tasks read it now: logs, flows and counters follow a rename.
pub struct ServiceName(RwLock<Arc<str>>);

impl ServiceName {
    pub fn new(name: &str) -> Self {
        ServiceName(RwLock::new(name.into()))
    }

    pub fn get(&self) -> Arc<str> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, name: &str) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = name.into();
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.get())
    }
}

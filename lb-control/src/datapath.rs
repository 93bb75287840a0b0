//! The seam between the controller and whatever moves the packets: the XDP data path
//! (`lb-xdp`) or the userspace proxy (`lb-proxy`). Both implement [`DataPath`]; the
//! controller drives one of them and never knows which. The crates above (the daemon)
//! choose and build it; nothing here depends on either.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Result;
use lb_config::desired::{BackendKey, Desired};
use lb_config::Config;
use serde::{Deserialize, Serialize};

/// Passive outcomes of one backend's new flows since the previous read, for its circuit
/// breaker. Only backends with something to report are listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub backend: BackendKey,
    pub succeeded: u64,
    pub failed: u64,
}

/// A plain copy of a backend's counters on the proxy path (the XDP path's live in maps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendCounters {
    pub connections_total: u64,
    pub active: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_failures_total: u64,
    #[serde(default)]
    pub succeeded_total: u64,
    #[serde(default)]
    pub failed_total: u64,
}

pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait DataPath: Send {
    /// The `path` label of metrics and `/readyz`: `xdp` or `proxy`.
    fn name(&self) -> &'static str;

    /// Make the data path serve `desired`: everything it needs is in the desired state.
    fn reconcile(&mut self, desired: &Desired) -> Result<()>;

    /// Daemon-wide settings from a reloaded config (SNAT addresses, timeouts).
    fn set_global(&mut self, _cfg: &Config) -> Result<()> {
        Ok(())
    }

    /// Re-resolve next hops; true when they changed (XDP only: the proxy lets the kernel
    /// route).
    fn refresh_neighbours(&mut self, _desired: &Desired) -> Result<bool> {
        Ok(false)
    }

    /// Correct approximate live-flow counts (the XDP path's least_conn and p2c); the proxy
    /// counts exactly.
    fn recount_active_flows(&mut self) -> Result<()> {
        Ok(())
    }

    /// Delete flow-table entries whose flows ended a while ago (XDP: the LRU tables keep
    /// them otherwise; the proxy forgets a connection when it ends). Returns how many went.
    fn sweep_flows(&mut self) -> Result<usize> {
        Ok(0)
    }

    /// The interface tunnelled health checks to `vip` leave by (where this path's tunnel
    /// program runs, see `tunnel_check`; with several, the one the VIP routes out of); for
    /// `None`, any of them. None: no tunnel program, every check goes to the backend itself.
    fn tunnel_check_device(&self, _vip: Option<std::net::IpAddr>) -> Option<String> {
        None
    }

    /// The tunnelled checks that run from now on (replaces the previous set).
    fn set_tunnel_checks(&mut self, _routes: &[crate::tunnel_check::TunnelRoute]) -> Result<()> {
        Ok(())
    }

    /// Outcomes since the previous call; see [`Outcome`].
    fn outcomes(&mut self) -> Vec<Outcome>;

    /// The proxy's counters for one backend (None on the XDP path).
    fn backend_counters(&self, _service: &str, _address: SocketAddr) -> Option<BackendCounters> {
        None
    }

    /// XDP: leave it forwarding (`detach` false) or detach. Proxy: stop accepting and let
    /// connections finish for up to `drain`.
    fn shutdown(self: Box<Self>, detach: bool, drain: Duration) -> Shutdown;
}

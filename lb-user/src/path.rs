//! The two ways `lb` moves traffic, behind one type the controller drives: the XDP data
//! path, or the userspace proxy where XDP cannot run. Same config, same desired state.
use std::time::Duration;

use anyhow::Result;

use crate::config::Config;
use crate::dataplane::xdp::XdpDataplane;
use crate::proxy::ProxyDataplane;
use crate::state::Desired;

/// Boxed: the XDP side holds its map handles inline and dwarfs the proxy's handle.
pub enum DataPath {
    Xdp(Box<XdpDataplane>),
    Proxy(ProxyDataplane),
}

impl DataPath {
    /// The `path` label of metrics and `/readyz`.
    pub fn name(&self) -> &'static str {
        match self {
            DataPath::Xdp(_) => "xdp",
            DataPath::Proxy(_) => "proxy",
        }
    }

    pub fn reconcile(&mut self, cfg: &Config, desired: &Desired) -> Result<()> {
        match self {
            DataPath::Xdp(x) => x.reconcile(desired),
            DataPath::Proxy(p) => p.reconcile(cfg, desired),
        }
    }

    /// Daemon-wide settings from a reloaded config.
    pub fn set_global(&mut self, cfg: &Config) -> Result<()> {
        match self {
            DataPath::Xdp(x) => x.set_global(cfg),
            DataPath::Proxy(_) => Ok(()),
        }
    }

    /// Next-hop MACs (XDP only: the proxy lets the kernel route); true when they changed.
    pub fn refresh_neighbours(&mut self, desired: &Desired) -> Result<bool> {
        match self {
            DataPath::Xdp(x) => x.refresh_neighbours(desired),
            DataPath::Proxy(_) => Ok(false),
        }
    }

    /// Correct the XDP path's live-flow counts (least_conn, p2c); the proxy counts exactly.
    pub fn recount_active_flows(&mut self) -> Result<()> {
        match self {
            DataPath::Xdp(x) => x.recount_active_flows(),
            DataPath::Proxy(_) => Ok(()),
        }
    }

    /// Passive outcomes per backend since the last call: (succeeded, failed) new flows,
    /// for the circuit breakers.
    pub fn outcomes(&mut self) -> Vec<(crate::control::registry::BackendKey, u64, u64)> {
        match self {
            DataPath::Xdp(x) => x.outcomes(),
            DataPath::Proxy(p) => p.outcomes(),
        }
    }

    /// The proxy's counters for one backend (None on the XDP path).
    pub fn proxy_counters(&self, service: &str, address: std::net::SocketAddr) -> Option<crate::proxy::BackendCounters> {
        match self {
            DataPath::Proxy(p) => p.stats().backend(service, address),
            DataPath::Xdp(_) => None,
        }
    }

    /// XDP: leave it forwarding, or detach. Proxy: stop accepting, let connections finish
    /// for up to `drain`.
    pub async fn shutdown(self, detach: bool, drain: Duration) {
        match self {
            DataPath::Xdp(x) => tokio::task::block_in_place(|| (*x).shutdown(detach)),
            DataPath::Proxy(p) => p.shutdown(drain).await,
        }
    }
}

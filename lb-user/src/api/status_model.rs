//! What the status page shows (`GET /v1/status`, and `GET /` rendered as a table): every
//! service with each backend's state and its counters since start, and the refusals per
//! reason. Counters, not rates: a reader differences two answers over `sampled_at_ms`, so
//! the daemon keeps no history and two readers never disturb each other.
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use lb_control::ServiceView;
use lb_xdp::inspect::{self, BackendRow};
use lb_xdp::maps::Maps;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct Status {
    /// The data path serving: `xdp` or `proxy` (empty before the controller chose one).
    pub path: String,
    /// When the counters were read, in milliseconds since the Unix epoch.
    pub sampled_at_ms: u64,
    pub services: Vec<ServiceStatus>,
    /// Since start, per reason: packets the XDP program dropped; on the proxy path, flows
    /// and requests it refused.
    pub drops: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: String,
    pub protocol: String,
    pub algorithm: String,
    pub forwarding: String,
    pub backends: Vec<BackendStatus>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct BackendStatus {
    pub address: String,
    /// Admin state: `ready`, `drain` or `maint`.
    pub state: String,
    /// `unknown`, `up` or `down`.
    pub health: String,
    /// Circuit breaker: `closed`, `open` or `half_open`.
    pub circuit: String,
    pub weight: u32,
    /// Where the backend comes from: `config`, `registration`.
    pub sources: Vec<String>,
    /// New flows (proxy: connections or UDP sessions) sent to it since start.
    pub new_flows: u64,
    /// Packets forwarded to it since start: XDP only (the proxy relays bytes, not packets).
    pub packets: Option<u64>,
    /// Bytes forwarded to it since start (proxy: both directions).
    pub bytes: u64,
}

/// Per-backend counters, keyed by (service, backend address).
type Counters = HashMap<(String, String), (u64, Option<u64>, u64)>;

impl Status {
    /// The XDP path: counters from the pinned maps (none yet when nothing is pinned).
    pub fn from_maps(path: String, services: &[ServiceView], maps: Option<&Maps>) -> Self {
        let rows = maps.and_then(|m| inspect::backends(m).inspect_err(|e| tracing::debug!("status: {e:#}")).ok());
        let counters: Counters = rows
            .unwrap_or_default()
            .into_iter()
            .map(|r: BackendRow| ((r.service, r.address), (r.new_flows, Some(r.packets), r.bytes)))
            .collect();
        // Every drop reason the program counts, zeros too: the page charts each one.
        let drops = maps.and_then(|m| inspect::stats(m).ok()).map(|s| s.drops).unwrap_or_default();
        Self::build(path, services, &counters, drops)
    }

    /// The proxy path: counters from the controller's view, refusals from the proxy's stats.
    pub fn from_proxy(path: String, services: &[ServiceView], proxy: &lb_proxy::ProxyStats) -> Self {
        let counters: Counters = services
            .iter()
            .flat_map(|s| s.backends.iter().map(move |b| (s, b)))
            .filter_map(|(s, b)| {
                let c = b.proxy.as_ref()?;
                Some(((s.name.clone(), b.address.clone()), (c.connections_total, None, c.bytes_in + c.bytes_out)))
            })
            .collect();
        let mut drops = BTreeMap::new();
        for s in services {
            if let Some(c) = proxy.service(&s.name) {
                add_proxy_refusals(&mut drops, &c);
            }
        }
        Self::build(path, services, &counters, drops)
    }

    fn build(path: String, services: &[ServiceView], counters: &Counters, drops: BTreeMap<String, u64>) -> Self {
        let services = services
            .iter()
            .map(|s| ServiceStatus {
                name: s.name.clone(),
                vip: s.vip.clone(),
                protocol: s.protocol.clone(),
                algorithm: s.algorithm.clone(),
                forwarding: s.forwarding.clone(),
                backends: s
                    .backends
                    .iter()
                    .map(|b| {
                        let (new_flows, packets, bytes) =
                            counters.get(&(s.name.clone(), b.address.clone())).copied().unwrap_or((0, None, 0));
                        BackendStatus {
                            address: b.address.clone(),
                            state: b.state.clone(),
                            health: b.health.clone(),
                            circuit: b.circuit.clone(),
                            weight: b.weight,
                            sources: b.sources.clone(),
                            new_flows,
                            packets,
                            bytes,
                        }
                    })
                    .collect(),
            })
            .collect();
        Status { path, sampled_at_ms: now_ms(), services, drops }
    }
}

fn add_proxy_refusals(drops: &mut BTreeMap<String, u64>, c: &lb_proxy::ServiceCounters) {
    let http: u64 = c.http_rejected.iter().sum();
    for (reason, n) in [
        ("rate_limited", c.ratelimited_service_total + c.ratelimited_source_total),
        ("acl_denied", c.acl_denied_total),
        ("overflow", c.overflow_total),
        ("connections_capped", c.capped_service_total + c.capped_source_total),
        ("udp_sessions_rejected", c.udp_sessions_rejected_total),
        ("http_rejected", http),
    ] {
        *drops.entry(reason.to_string()).or_default() += n;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_control::BackendView;

    fn view() -> Vec<ServiceView> {
        let backend = |address: &str, proxy| BackendView {
            address: address.into(),
            weight: 2,
            api_weight: None,
            slow_start_percent: None,
            state: "ready".into(),
            health: "up".into(),
            last_check: None,
            sources: vec!["config".into()],
            lease_expires_in_seconds: None,
            proxy,
            circuit: "closed".into(),
            ejections_total: 0,
            agent: None,
        };
        let counters = lb_control::datapath::BackendCounters {
            connections_total: 7,
            bytes_in: 100,
            bytes_out: 900,
            ..Default::default()
        };
        vec![ServiceView {
            name: "web".into(),
            vip: "10.0.0.1:80".into(),
            protocol: "tcp".into(),
            algorithm: "maglev".into(),
            forwarding: "nat".into(),
            announced: None,
            backends: vec![backend("10.0.1.1:80", Some(counters)), backend("10.0.1.2:80", None)],
        }]
    }

    #[test]
    fn proxy_counters_are_the_views_and_a_backend_without_any_shows_zero() {
        let stats = lb_proxy::ProxyStats::default();
        let status = Status::from_proxy("proxy".into(), &view(), &stats);
        let b = &status.services[0].backends;
        assert_eq!((b[0].new_flows, b[0].packets, b[0].bytes), (7, None, 1000));
        assert_eq!((b[1].new_flows, b[1].packets, b[1].bytes), (0, None, 0));
        assert_eq!(b[0].weight, 2);
        assert!(status.sampled_at_ms > 1_600_000_000_000);
    }

    #[test]
    fn without_pinned_maps_the_xdp_status_has_the_services_and_no_counters() {
        let status = Status::from_maps("xdp".into(), &view(), None);
        assert_eq!(status.services[0].backends.len(), 2);
        assert_eq!(status.services[0].backends[0].new_flows, 0);
        assert!(status.drops.is_empty());
    }
}

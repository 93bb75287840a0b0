//! Control-plane measurements the metrics endpoint reports beside the data path's counters.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;

/// Prometheus-style histogram: cumulative bucket counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// (upper bound in seconds, observations <= bound), ascending.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// Health checks take from sub-millisecond (local) to the configured timeout.
pub const HEALTH_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

impl Default for Histogram {
    fn default() -> Self {
        Self { buckets: HEALTH_BUCKETS.iter().map(|b| (*b, 0)).collect(), sum: 0.0, count: 0 }
    }
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (bound, n) in &mut self.buckets {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Default, Debug, Clone)]
pub struct TelemetryData {
    pub reloads_success: u64,
    pub reloads_failure: u64,
    /// Registrations accepted (new or renewed by POST), since start.
    pub registrations_total: u64,
    /// Leases that ran out.
    pub lease_expirations_total: u64,
    /// Health checks that could not run for a reason of this host's (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM): not counted against their backend.
    pub health_check_local_errors_total: u64,
    /// Admin API connections closed at once because `MAX_ADMIN_CONNECTIONS` were open.
    pub admin_connections_refused_total: u64,
    /// Health check latency per (service, backend address).
    pub health_check_seconds: BTreeMap<(String, String), Histogram>,
    /// Health checks per (type, "pass" | "fail"), counted against their backend (local
    /// errors are not).
    pub health_checks_total: BTreeMap<(&'static str, &'static str), u64>,
    /// Which path serves traffic: "xdp" (or "proxy", later).
    pub path: &'static str,
    /// `[cluster.bgp]`: what the speaker announces; `None` without BGP.
    pub bgp: Option<BgpTelemetry>,
    /// The shared store (`[cluster] etcd`): None without one, else whether etcd answered
    /// the last call.
    pub store_up: Option<bool>,
    /// API writes refused (503) because etcd was unreachable.
    pub store_writes_refused_total: u64,
}

/// The BGP speaker's state, as it last applied and read it.
#[derive(Default, Debug, Clone)]
pub struct BgpTelemetry {
    /// The VIP addresses BIRD has been told to announce (empty while it is not running).
    pub announced: BTreeSet<IpAddr>,
    /// Each neighbor: is the session established.
    pub sessions: BTreeMap<IpAddr, bool>,
    /// The node drains (`lb drain`, SIGTERM): everything is withdrawn.
    pub draining: bool,
}

#[derive(Default, Debug)]
pub struct Telemetry(Mutex<TelemetryData>);

impl Telemetry {
    pub fn update(&self, f: impl FnOnce(&mut TelemetryData)) {
        if let Ok(mut d) = self.0.lock() {
            f(&mut d);
        }
    }

    pub fn snapshot(&self) -> TelemetryData {
        self.0.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

//! `[service.rate_limit]` and `[service.circuit_breaker]`: the model, its defaults and the
//! checks of single values. Everything is off unless written: a limit of 0 means none, and
//! passive ejection starts only once `consecutive_failures` is set, as in Envoy's outlier
//! detection and HAProxy's `observe`.
use std::time::Duration;

/// Highest rate or burst: beyond a million new flows a second a limit protects nothing,
/// and 1e9 / rate must stay a usable cost in nanoseconds.
pub const MAX_RATE: u32 = 1_000_000;

/// `[service.rate_limit]`: token buckets for new flows (established flows are never
/// limited). 0 = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub new_flows_per_second: u32,
    /// Flows admitted at once after a quiet spell. Default: one second's worth.
    pub burst: u32,
    /// Per client address (IPv6: per /64).
    pub per_source_new_flows_per_second: u32,
    pub per_source_burst: u32,
}

impl RateLimit {
    pub fn is_limited(&self) -> bool {
        self.new_flows_per_second > 0 || self.per_source_new_flows_per_second > 0
    }
}

/// `[service.circuit_breaker]`: passive ejection of backends whose new flows fail, and a
/// cap on connections per backend (proxy path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Failed new flows in a row that eject a backend; 0 (default): no passive ejection.
    pub consecutive_failures: u32,
    /// First ejection; each ejection in a row doubles it, up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Never more than this share of a service's backends ejected at once. Default 50.
    pub max_ejected_percent: u32,
    /// Proxy path: connections per backend; 0 (default): unlimited.
    pub max_connections: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            consecutive_failures: 0,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
            max_connections: 0,
        }
    }
}

/// `max_client_connections` and `max_connections_per_source`: client connections (TCP, both
/// proxy modes) or UDP sessions open at once, for the whole service and per source address
/// (IPv6: per /64). 0 = no cap. The proxy refuses one beyond either at accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub per_service: u32,
    pub per_source: u32,
}

pub(super) fn connection_cap(n: u32, key: &str) -> Result<u32, String> {
    if n > MAX_RATE {
        return Err(format!("{key} {n} is too large; the maximum is {MAX_RATE} (0: no cap)"));
    }
    Ok(n)
}

pub(super) fn rate(n: u32, key: &str) -> Result<u32, String> {
    if n > MAX_RATE {
        return Err(format!("{key} {n} is too large; the maximum is {MAX_RATE} (0: no limit)"));
    }
    Ok(n)
}

pub(super) fn burst(n: u32, key: &str) -> Result<u32, String> {
    if n == 0 || n > MAX_RATE {
        return Err(format!("{key} must be between 1 and {MAX_RATE}"));
    }
    Ok(n)
}

pub(super) fn percent(n: u32) -> Result<u32, String> {
    if n > 100 {
        return Err(format!("max_ejected_percent {n} is not a percentage (0-100)"));
    }
    Ok(n)
}

pub(super) fn max_connections(n: u32) -> Result<u32, String> {
    if n > MAX_RATE {
        return Err(format!("max_connections {n} is too large; the maximum is {MAX_RATE} (0: unlimited)"));
    }
    Ok(n)
}

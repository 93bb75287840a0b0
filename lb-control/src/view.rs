//! What `GET /v1/services` (and `lb list` in proxy mode, later) shows: the controller's view
//! of every service and backend, with where each backend comes from.
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct ServiceView {
    pub name: String,
    pub vip: String,
    pub protocol: String,
    pub algorithm: String,
    pub forwarding: String,
    /// `[cluster.bgp]`: whether the VIP's address is announced (absent without BGP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<bool>,
    pub backends: Vec<BackendView>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct BackendView {
    pub address: String,
    /// The weight in force: the API's when one is set, else the config's or the
    /// registration's.
    pub weight: u32,
    /// Set through the API (`PUT .../weight`, `lb backend set-weight`): absent when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_weight: Option<u32>,
    /// Slow start: the share of its weight (percent) the backend takes while it ramps up;
    /// absent when it is not ramping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_percent: Option<u32>,
    /// Admin state: "ready" | "drain" | "maint".
    pub state: String,
    /// "unknown" | "up" | "down".
    pub health: String,
    pub last_check: Option<CheckView>,
    /// "config", "registration" (both when both name it).
    pub sources: Vec<String>,
    /// Seconds left on the registration lease, when registered.
    pub lease_expires_in_seconds: Option<f64>,
    /// The proxy path's counters for this backend, when the proxy serves (the XDP path's
    /// are in the pinned maps and on /metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::datapath::BackendCounters>,
    /// Circuit breaker: "closed" | "open" (ejected) | "half_open" (one trial flow).
    #[serde(default = "lb_config::desired::Circuit::closed_name")]
    pub circuit: String,
    /// Passive ejections so far.
    #[serde(default)]
    pub ejections_total: u64,
    /// What the backend's agent asks for (`type = "agent"` checks), when it asks for
    /// anything: its state and weight share, shown apart from `state` and `weight`, which
    /// are the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::agent_overlay::AgentReport>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct CheckView {
    pub ok: bool,
    /// e.g. "connected", "HTTP 200", "connection refused", "timeout after 1s".
    pub detail: String,
    pub duration_seconds: f64,
    /// Seconds since the check finished.
    pub age_seconds: f64,
}

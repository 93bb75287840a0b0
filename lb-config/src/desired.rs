//! The desired state: what every source (the config file, agent registrations, admin
//! states set through the API, health checks and circuit breakers) says the services and
//! backends should be. It carries everything a data path needs, so a data path is driven
//! by it alone; nothing is read back from the maps to decide.
//!
//! One builder: [`Desired::from_config`] gives the config's part; the controller's sources
//! overlay registrations, admin states, health and breakers on top of it.
use std::net::SocketAddr;
use std::time::Duration;

use crate::{
    AdminState, Algorithm, Config, ConnectionCaps, Forwarding, Pool, Protocol, ProxyMode, ProxyOptions, RateLimit,
    SourceAcl, Traffic,
};

/// A backend of a service: the key under which every source, check and breaker knows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendKey {
    pub service: String,
    pub address: SocketAddr,
}

impl BackendKey {
    pub fn new(service: impl Into<String>, address: SocketAddr) -> Self {
        BackendKey { service: service.into(), address }
    }
}

impl std::fmt::Display for BackendKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.service, self.address)
    }
}

/// Health as the checker last saw it. `Unknown` counts as up: a backend is not punished
/// for not having been checked yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// A backend's circuit breaker, as the controller's passive ejection sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Circuit {
    /// Takes new flows as usual.
    #[default]
    Closed,
    /// Ejected: no new flows (existing ones stay, as with drain) until the ejection ends.
    Open,
    /// The ejection ended: out of rotation, but one trial flow may go to it.
    HalfOpen,
}

impl Circuit {
    /// The serde default of the `circuit` fields that read older JSON.
    pub fn closed_name() -> String {
        Circuit::Closed.as_str().to_string()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// Which sources name a backend (bit set, as stored in `BackendMeta::source`).
pub const SOURCE_CONFIG: u8 = 1;
pub const SOURCE_REGISTRATION: u8 = 2;
/// No source names it any more; it drains its flows for a grace period, then leaves.
pub const SOURCE_RETIRING: u8 = 4;

pub fn source_names(bits: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    if bits & SOURCE_CONFIG != 0 {
        v.push("config");
    }
    if bits & SOURCE_REGISTRATION != 0 {
        v.push("registration");
    }
    if bits & SOURCE_RETIRING != 0 {
        v.push("retiring");
    }
    v
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredBackend {
    pub address: SocketAddr,
    pub weight: u32,
    pub state: AdminState,
    pub health: Health,
    pub sources: u8,
    pub circuit: Circuit,
    /// Slow start: the share of its weight (percent, below 100) the backend takes while it
    /// ramps up after joining the rotation; `None` when not ramping.
    pub ramp: Option<u32>,
}

impl DesiredBackend {
    /// May take new flows.
    pub fn in_rotation(&self) -> bool {
        self.state == AdminState::Ready
            && self.weight > 0
            && self.health != Health::Down
            && self.circuit == Circuit::Closed
    }

    /// Out of rotation with its breaker half-open: may take the service's one trial flow.
    pub fn on_trial(&self) -> bool {
        self.circuit == Circuit::HalfOpen
            && self.state == AdminState::Ready
            && self.weight > 0
            && self.health != Health::Down
    }

    /// May keep the flows it has (ready or draining, not in maintenance, not down).
    pub fn keeps_flows(&self) -> bool {
        self.state != AdminState::Maint && self.health != Health::Down
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredService {
    pub name: String,
    pub vip: SocketAddr,
    pub protocol: Protocol,
    pub algorithm: Algorithm,
    pub forwarding: Forwarding,
    pub rate_limit: RateLimit,
    /// Client prefixes new flows may come from (`allow` / `deny`).
    pub acl: SourceAcl,
    /// Proxy path only: how connections are relayed.
    pub proxy_mode: ProxyMode,
    /// Proxy path only (`http` mode): the upstream keep-alive pool.
    pub pool: Pool,
    /// Proxy path only: connections at once per backend (0: no cap).
    pub max_connections: u32,
    /// Proxy path only: client connections (UDP: sessions) at once, per service and per
    /// source (0: no cap).
    pub connection_caps: ConnectionCaps,
    /// `slow_start`, `persistence_timeout`.
    pub traffic: Traffic,
    pub backends: Vec<DesiredBackend>,
    /// Proxy path only: the PROXY protocol and SNI routes.
    pub proxy_options: ProxyOptions,
}

/// While any backend of a service ramps, every weight is counted in hundredths so that a
/// ramp's percentage of even a weight of 1 is a whole number.
pub const RAMP_SCALE: u32 = 100;

impl DesiredService {
    /// The weight a data path builds its tables and selections from: the backend's weight,
    /// or, while some backend of the service ramps (slow start), every weight in
    /// hundredths with the ramping ones at their share. The ratios are what counts: every
    /// backend's share of new flows is its table weight over the sum.
    pub fn table_weight(&self, b: &DesiredBackend) -> u32 {
        if !self.backends.iter().any(|b| b.ramp.is_some()) {
            return b.weight;
        }
        let percent = b.ramp.unwrap_or(RAMP_SCALE).clamp(1, RAMP_SCALE);
        b.weight.saturating_mul(percent)
    }
}

/// Daemon-wide settings a data path applies to every service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathSettings {
    /// Proxy listeners (and runtime threads) per service; 0: one per core.
    pub workers: u32,
    pub connect_timeout: Duration,
    pub tcp_idle_timeout: Duration,
    pub udp_idle_timeout: Duration,
    /// Flows (XDP) or UDP sessions (proxy) tracked at once.
    pub flow_table_size: u32,
    /// Proxy, HTTP mode: time for a request's head to arrive (zero: the config default).
    pub http_header_timeout: Duration,
    /// Proxy, HTTP mode: the largest request head in bytes (zero: the config default).
    pub http_max_header_size: u32,
    /// XDP: mixed into every Maglev permutation (`cluster.hash_seed`; 0 without a cluster).
    /// Every node of a fleet has the same, so their tables agree.
    pub hash_seed: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub services: Vec<DesiredService>,
    pub settings: PathSettings,
}

impl Desired {
    /// The config's part of the desired state: its services, with the backends it names
    /// (health unknown, circuits closed).
    pub fn from_config(cfg: &Config) -> Self {
        let d = &cfg.daemon;
        let settings = PathSettings {
            workers: d.workers,
            connect_timeout: d.connect_timeout,
            tcp_idle_timeout: d.tcp_idle_timeout,
            udp_idle_timeout: d.udp_idle_timeout,
            flow_table_size: d.flow_table_size,
            http_header_timeout: d.http_header_timeout,
            http_max_header_size: d.http_max_header_size,
            hash_seed: cfg.cluster.as_ref().map_or(0, |c| c.hash_seed),
        };
        let services = cfg
            .services
            .iter()
            .map(|s| DesiredService {
                name: s.name.clone(),
                vip: s.vip,
                protocol: s.protocol,
                algorithm: s.algorithm,
                forwarding: s.forwarding,
                rate_limit: s.rate_limit,
                acl: s.acl.clone(),
                proxy_mode: s.proxy_mode,
                pool: s.pool.clone(),
                max_connections: s.circuit_breaker.max_connections,
                connection_caps: s.connection_caps,
                traffic: s.traffic,
                backends: s
                    .backends
                    .iter()
                    .map(|b| DesiredBackend {
                        address: b.address,
                        weight: b.weight,
                        state: b.state,
                        health: Health::Unknown,
                        sources: SOURCE_CONFIG,
                        circuit: Circuit::Closed,
                        ramp: None,
                    })
                    .collect(),
                proxy_options: s.proxy_options.clone(),
            })
            .collect();
        Self { services, settings }
    }
}

//! The desired state: what every source (the config file today; agent registrations and
//! health checks join it) says the services and backends should be. The reconciler turns it
//! into data-path tables; nothing is read back from the maps to decide.
use std::net::SocketAddr;

use crate::config::{AdminState, Algorithm, Config, Forwarding, Protocol, RateLimit};

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
}

impl DesiredBackend {
    /// May take new flows.
    pub fn in_rotation(&self) -> bool {
        self.state == AdminState::Ready && self.weight > 0 && self.health != Health::Down && self.circuit == Circuit::Closed
    }

    /// Out of rotation with its breaker half-open: may take the service's one trial flow.
    pub fn on_trial(&self) -> bool {
        self.circuit == Circuit::HalfOpen && self.state == AdminState::Ready && self.weight > 0 && self.health != Health::Down
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
    pub backends: Vec<DesiredBackend>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub services: Vec<DesiredService>,
}

impl Desired {
    pub fn from_config(cfg: &Config) -> Self {
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
                    })
                    .collect(),
            })
            .collect();
        Self { services }
    }
}

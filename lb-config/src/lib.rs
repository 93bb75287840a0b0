//! Configuration (`lb.toml`): parsing, defaults and validation.
//!
//! The schema is a contract (docs/configuration.md, "The contract"). Text goes through
//! two stages:
//!
//! 1. `toml` + serde read it into `schema`'s raw structs, which mirror the file key by key,
//!    reject unknown keys and remember positions. A syntax or type error stops here: the
//!    parser cannot go on, so only the first one is reported.
//! 2. `validate` applies defaults, converts values (addresses, durations, port ranges,
//!    status lists) and checks the rules across them, collecting every error. Only a fully
//!    valid file becomes a [`Config`], made of the plain types in `model`.
//!
//! Every error is a [`Diagnostic`] printed as `FILE:LINE:COL: message`.

mod acl;
mod cidr;
mod cluster;
mod cluster_rules;
pub mod desired;
mod duration;
mod enums;
mod error;
mod health_keys;
mod model;
mod ports;
mod protection;
mod proxy_options;
mod proxy_options_rules;
mod schema;
mod status;
mod token;
mod traffic;
mod validate;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod proxy_options_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use acl::SourceAcl;
pub use cidr::{canonical as canonical_ip, Cidr};
pub use cluster::{Bgp, Cluster, Neighbor, Speaker, DEFAULT_DRAIN_GRACE, DEFAULT_ETCD_PREFIX, DEFAULT_HOLD_TIME};
pub use duration::{format_duration, parse_duration, DurationError};
pub use enums::{
    AdminState, Algorithm, Forwarding, HealthCheckType, Mode, Protocol, ProxyMode, UnknownKeyword, XdpAttach,
};
pub use error::{ConfigError, Diagnostic, Position};
pub use model::TlsCheck;
pub use model::{
    Backend, Checked, Config, Daemon, HealthCheck, Pool, Service, DEFAULT_MAX_SERVICES, DEFAULT_WEIGHT,
    MAX_ACL_PER_SERVICE, MAX_BACKENDS, MAX_HTTP_HEADER_SIZE, MAX_HTTP_HEADER_TIMEOUT, MAX_IDLE_PER_BACKEND,
    MAX_SERVICES, MAX_SERVICE_NAME_LEN, MAX_SOFT_TIMEOUT, MAX_TUNNEL_MTU, MAX_WEIGHT, MAX_WORKERS, MIN_FLOW_TABLE_SIZE,
    MIN_HTTP_HEADER_SIZE, MIN_TUNNEL_MTU_V4, MIN_TUNNEL_MTU_V6,
};
pub use ports::{PortRange, PortRangeError};
pub use protection::{CircuitBreaker, ConnectionCaps, RateLimit, MAX_RATE};
pub use proxy_options::{
    ProxyHeaderVersion, ProxyOptions, ProxyProtocol, SniName, SniRoute, SniRouting, DEFAULT_SNI_TIMEOUT,
    MAX_SNI_TIMEOUT,
};
pub use status::{StatusRanges, StatusRangesError};
pub use token::Tokens;
pub use traffic::{
    ramp_percent, Traffic, MAX_PERSISTENCE_TIMEOUT, MAX_SLOW_START, MIN_PERSISTENCE_TIMEOUT, SLOW_START_MIN_PERCENT,
};

use error::Source;
use schema::RawConfig;

impl Config {
    /// Reads and validates a file; messages name it as `path` was given.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Self::check_file(path).map(|c| c.config)
    }

    /// Parses and validates `text`; `origin` is the file name used in messages.
    pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Self::check_str(text, origin).map(|c| c.config)
    }

    /// [`Config::from_file`], with the warnings.
    pub fn check_file(path: &Path) -> Result<Checked, ConfigError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::check_str(&text, &origin),
            Err(e) => {
                let source = Source::new(&origin, "");
                Err(ConfigError::new(vec![source.unplaced(format!("cannot read: {e}"))]))
            }
        }
    }

    /// Where each service's backend addresses are written in `text`, by service and backend
    /// index (the order of `Config::services` and `Service::backends`), for checks made
    /// outside validation (`lb check`'s look at the host) to point at them. Empty when the
    /// text does not parse.
    pub fn backend_positions(text: &str) -> Vec<Vec<Position>> {
        let source = Source::new("", text);
        let Ok(raw) = toml::from_str::<RawConfig>(text) else { return Vec::new() };
        raw.services
            .iter()
            .map(|s| s.backends.iter().map(|b| source.position(b.address.span().start)).collect())
            .collect()
    }

    /// [`Config::from_str`], with the warnings.
    pub fn check_str(text: &str, origin: &str) -> Result<Checked, ConfigError> {
        let source = Source::new(origin, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::new(vec![source.parse_error(&e)]))?;
        validate::validate(&raw, &source)
    }
}

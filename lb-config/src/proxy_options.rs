//! Proxy-path options of a service: the PROXY protocol
//! toward backends (`send_proxy`) and from front load balancers (`accept_proxy`,
//! `accept_proxy_from`), and TLS passthrough routed by the ClientHello's server name
//! (`[[service.route]]`, backend `group`, `sni_timeout`). The rules that build them are in
//! `proxy_options_rules`.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::Cidr;

/// `sni_timeout`'s default: how long the proxy waits for a ClientHello.
pub const DEFAULT_SNI_TIMEOUT: Duration = Duration::from_secs(5);
/// `sni_timeout`'s ceiling.
pub const MAX_SNI_TIMEOUT: Duration = Duration::from_secs(60);

/// `send_proxy`: the PROXY protocol version written to backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeaderVersion {
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

impl ProxyHeaderVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyHeaderVersion::V1 => "v1",
            ProxyHeaderVersion::V2 => "v2",
        }
    }
}

/// A service's server-name routes: which backends a TLS connection goes to by its SNI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniRouting {
    /// `[[service.route]]` in file order; empty: no SNI routing (the service is plain l4).
    pub routes: Vec<SniRoute>,
    /// Backend address → its `group`; backends not listed (and registered ones) have none.
    pub groups: HashMap<SocketAddr, String>,
    /// The longest wait for a ClientHello.
    pub timeout: Duration,
}

/// `[[service.route]]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniRoute {
    /// Lowercase; unique across the service's routes.
    pub names: Vec<SniName>,
    /// The backends whose `group` is this.
    pub group: String,
}

/// One `sni` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SniName {
    /// `api.example.com`: that name only.
    Exact(String),
    /// `*.example.org` (kept as `example.org`): exactly one more label, as in certificates.
    Wildcard(String),
}

impl SniName {
    /// Whether `host` (already lowercase) is this name.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            SniName::Exact(name) => host == name,
            SniName::Wildcard(parent) => host
                .strip_suffix(parent.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

impl std::fmt::Display for SniName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SniName::Exact(n) => f.write_str(n),
            SniName::Wildcard(p) => write!(f, "*.{p}"),
        }
    }
}

impl Default for SniRouting {
    fn default() -> Self {
        SniRouting { routes: Vec::new(), groups: HashMap::new(), timeout: DEFAULT_SNI_TIMEOUT }
    }
}

impl SniRouting {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The group a server name routes to: an exact name first, then a wildcard; None: no
    /// route names it (the backends without a group take it). `host` is compared without
    /// case.
    pub fn group_of(&self, host: &str) -> Option<&str> {
        let host = host.to_ascii_lowercase();
        let find = |exact: bool| {
            self.routes
                .iter()
                .find(|r| r.names.iter().any(|n| matches!(n, SniName::Exact(_)) == exact && n.matches(&host)))
        };
        find(true).or_else(|| find(false)).map(|r| r.group.as_str())
    }

    /// A backend's group (None: the default group).
    pub fn group_of_backend(&self, address: SocketAddr) -> Option<&str> {
        self.groups.get(&address).map(String::as_str)
    }
}

/// The PROXY protocol on a service's connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// `send_proxy`: a header to each backend connection, before any client byte.
    pub send: Option<ProxyHeaderVersion>,
    /// `accept_proxy_from` with `accept_proxy = true`: connections from these prefixes must
    /// start with a header, which names the client; connections from elsewhere are refused.
    /// Empty: no header is read.
    pub accept_from: Vec<Cidr>,
}

impl ProxyProtocol {
    pub fn accepts(&self) -> bool {
        !self.accept_from.is_empty()
    }

    /// A front load balancer this service takes headers from.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = crate::canonical_ip(peer);
        self.accept_from.iter().any(|c| c.contains(peer))
    }
}

/// Everything of this module one service has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyOptions {
    pub proxy_protocol: ProxyProtocol,
    pub sni: SniRouting,
}

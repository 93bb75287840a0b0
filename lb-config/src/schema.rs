//! The `lb.toml` file format, key by key: what serde reads, before validation.
//!
//! This layer is the contract (docs/configuration.md, "The contract"). Every table
//! rejects unknown keys. Values that validation must point at keep their position
//! (`Spanned`); values whose syntax is richer than a TOML type (addresses, durations, port
//! ranges, status lists) stay text here, so that all their errors are collected by
//! `validate` instead of serde stopping at the first. Defaults are applied by `validate`
//! from the `Default` impls in `model`; a key left out is `None` here.

use std::{fmt, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::enums::{AdminState, Algorithm, Forwarding, HealthCheckType, Mode, Protocol, ProxyMode, XdpAttach};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// `[daemon]`: optional; every key has a default.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// `[[service]]`: zero or more.
    #[serde(default, rename = "service")]
    pub services: Vec<RawService>,
    /// `[cluster]`: optional; a fleet of balancers (see `cluster`).
    pub cluster: Option<RawCluster>,
}

/// `daemon.interface`: one NIC's name, or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawInterfaces {
    One(String),
    Many(Vec<String>),
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    /// `interface = "eth0"` or `interface = ["eth0", "eth1"]`: the NIC(s) XDP attaches to;
    /// needed for mode `xdp`. No default.
    pub interface: Option<Spanned<RawInterfaces>>,
    /// `mode = "xdp" | "proxy" | "auto"`; default `"auto"` (XDP, else proxy with a warning).
    pub mode: Option<Spanned<Mode>>,
    /// `xdp_attach = "native" | "generic"`; default `"native"`.
    pub xdp_attach: Option<XdpAttach>,
    /// `admin_listen = "IP:PORT"`: metrics, health, admin and registration API; default
    /// `"127.0.0.1:9100"`.
    pub admin_listen: Option<Spanned<String>>,
    /// `token_file = "PATH"`: bearer token for mutating API calls; default `"/etc/lb/token"`.
    pub token_file: Option<PathBuf>,
    /// `pin_path = "DIR"`: bpffs directory for the pinned program and maps; default
    /// `"/sys/fs/bpf/lb"`.
    pub pin_path: Option<PathBuf>,
    /// `state_file = "PATH"`: registrations that survive a restart; default
    /// `"/var/lib/lb/state.json"`.
    pub state_file: Option<PathBuf>,
    /// `snat_ipv4 = "A.B.C.D"`: NAT source address for IPv4; default: the interface's first
    /// IPv4 address.
    pub snat_ipv4: Option<Spanned<String>>,
    /// `snat_ipv6 = "IPV6"`: NAT source address for IPv6; default: the interface's first
    /// global IPv6 address.
    pub snat_ipv6: Option<Spanned<String>>,
    /// `snat_ports = "START-END"` (or one port `"START"`): NAT source ports; default
    /// `"20000-32767"`, below the kernel's ephemeral range.
    pub snat_ports: Option<Spanned<String>>,
    /// `encap_source_ipv4 = "A.B.C.D/LEN"` (or one address): `ipip`/`gue` outer IPv4
    /// sources, the flow hash in the host bits; default: the IPv4 SNAT address.
    pub encap_source_ipv4: Option<Spanned<String>>,
    /// `encap_source_ipv6 = "IPV6/LEN"` (or one address): as `encap_source_ipv4` for IPv6;
    /// default: the IPv6 SNAT address.
    pub encap_source_ipv6: Option<Spanned<String>>,
    /// `gue_port = N`: the UDP port `gue` backends receive on, 1-65535; default 6080.
    pub gue_port: Option<Spanned<u32>>,
    /// `tunnel_mtu = N`: the MTU of the path to `ipip`/`gue` backends; default: the
    /// interface's MTU; at least 68 (IPv4 services) or 1280 (IPv6) plus the encapsulation's
    /// overhead, at most 65535.
    pub tunnel_mtu: Option<Spanned<u32>>,
    /// `flow_table_size = N`: connection-tracking entries; at least 1024; default 1048576.
    pub flow_table_size: Option<Spanned<u32>>,
    /// `max_services = N`: the services the config may define, which the XDP data path
    /// sizes its Maglev tables for; 1-1024; default 128.
    pub max_services: Option<Spanned<u32>>,
    /// `tcp_idle_timeout = "DURATION"`: idle TCP flows expire; default `"300s"`.
    pub tcp_idle_timeout: Option<Spanned<TextOrNumber>>,
    /// `udp_idle_timeout = "DURATION"`: idle UDP flows expire; default `"30s"`.
    pub udp_idle_timeout: Option<Spanned<TextOrNumber>>,
    /// `tcp_handshake_timeout = "DURATION"`: a TCP flow whose handshake has not completed
    /// expires after this without a packet; not zero, at most `"60s"`; default `"5s"`.
    pub tcp_handshake_timeout: Option<Spanned<TextOrNumber>>,
    /// `udp_unreplied_timeout = "DURATION"`: a UDP flow that has seen no reply expires
    /// after this without a packet; not zero, at most `"60s"`; default `"5s"`.
    pub udp_unreplied_timeout: Option<Spanned<TextOrNumber>>,
    /// `workers = N`: proxy worker threads, and `SO_REUSEPORT` listeners per service; 0 (the
    /// default) means one per CPU core; at most 1024.
    pub workers: Option<Spanned<u32>>,
    /// `connect_timeout = "DURATION"`: the proxy's connect timeout to a backend; not zero;
    /// default `"2s"`.
    pub connect_timeout: Option<Spanned<TextOrNumber>>,
    /// `drain_timeout = "DURATION"`: on shutdown the proxy stops accepting and lets in-flight
    /// connections finish for at most this long; not zero; default `"10s"`.
    pub drain_timeout: Option<Spanned<TextOrNumber>>,
    /// `http_header_timeout = "DURATION"`: `proxy_mode = "http"`: a request's head (request
    /// line and headers) must arrive within this, counted from when the proxy awaits it; not
    /// zero, at most 1h; default `"10s"`.
    pub http_header_timeout: Option<Spanned<TextOrNumber>>,
    /// `http_max_header_size = N`: `proxy_mode = "http"`: the largest request head in bytes,
    /// 1024-262144; default 65536.
    pub http_max_header_size: Option<Spanned<u32>>,
}

/// `[[service]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    /// `name = "web"`: required; 1-47 of `A-Z a-z 0-9 _ . -`; unique.
    pub name: Spanned<String>,
    /// `vip = "IP:PORT"`: required; `"172.20.0.100:80"` or `"[fd00:20::100]:80"`; unique
    /// per protocol; port not 0. An unspecified address (`"0.0.0.0:PORT"`, `"[::]:PORT"`)
    /// means every address, which only the proxy path can serve: not with mode `xdp`.
    pub vip: Spanned<String>,
    /// `protocol = "tcp" | "udp"`; default `"tcp"`.
    pub protocol: Option<Protocol>,
    /// `algorithm = "maglev" | "source_hash" | "round_robin" | "weighted_round_robin" |
    /// "random" | "least_conn" | "p2c"`; default `"maglev"`.
    pub algorithm: Option<Algorithm>,
    /// `forwarding = "nat" | "dsr" | "ipip" | "gue"` (XDP path); default `"nat"`.
    pub forwarding: Option<Forwarding>,
    /// `proxy_mode = "l4" | "http"` (proxy path); default `"l4"`; `http` needs tcp.
    pub proxy_mode: Option<Spanned<ProxyMode>>,
    /// `max_client_connections = N`: proxy path, client connections (UDP: sessions) open at
    /// once for the whole service, 0-1000000; default 0 (no cap).
    pub max_client_connections: Option<Spanned<u32>>,
    /// `max_connections_per_source = N`: proxy path, the same per client address (IPv6: per
    /// /64), 0-1000000; default 0 (no cap).
    pub max_connections_per_source: Option<Spanned<u32>>,
    /// `[service.health_check]`: optional; every key has a default.
    #[serde(default)]
    pub health_check: RawHealthCheck,
    /// `[service.pool]`: optional; every key has a default.
    #[serde(default)]
    pub pool: RawPool,
    /// `allow = ["CIDR", ...]`: client prefixes (IPv4 or IPv6) new flows may come from;
    /// empty or left out: every address.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// `deny = ["CIDR", ...]`: client prefixes refused; deny wins over allow.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// `[service.rate_limit]`: optional; nothing is limited unless written.
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    /// `[service.circuit_breaker]`: optional; no passive ejection unless written.
    #[serde(default)]
    pub circuit_breaker: RawCircuitBreaker,
    /// `[[service.backend]]`: zero or more (zero: the service drops its traffic).
    #[serde(default, rename = "backend")]
    pub backends: Vec<RawBackend>,
    /// `allow_registration_from = ["CIDR", ...]`: registrations of backends in these
    /// prefixes may use addresses the API otherwise refuses (loopback, the LB's own);
    /// default none.
    #[serde(default)]
    pub allow_registration_from: Vec<Spanned<String>>,
    /// `slow_start = "30s"`: a backend joining the rotation ramps its share of new flows
    /// over this window; 1s to 1h; default off.
    pub slow_start: Option<Spanned<TextOrNumber>>,
    /// `persistence_timeout = "5m"`: a client keeps its backend for new flows within this
    /// of its last one; 1s to 24h; not with `source_hash`; default off.
    pub persistence_timeout: Option<Spanned<TextOrNumber>>,
    // The PROXY protocol (proxy path, TCP).
    /// `send_proxy = "v1" | "v2"`: a PROXY header to each backend connection; default off.
    pub send_proxy: Option<Spanned<String>>,
    /// `accept_proxy = true`: connections from `accept_proxy_from` start with a PROXY
    /// header naming the client; default false.
    pub accept_proxy: Option<Spanned<bool>>,
    /// `accept_proxy_from = ["CIDR", ...]`: the front load balancers trusted to send one;
    /// required, non-empty, with `accept_proxy = true`.
    pub accept_proxy_from: Option<Spanned<Vec<Spanned<String>>>>,
    // TLS passthrough routed by SNI (proxy path, l4 TCP).
    /// `[[service.route]]`: zero or more.
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    /// `sni_timeout = "DURATION"`: the longest wait for a ClientHello; default `"5s"`, at
    /// most `"60s"`.
    pub sni_timeout: Option<Spanned<TextOrNumber>>,
}

/// `[[service.route]]`: TLS connections whose server name is one of `sni`
/// go to the backends of `group`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    /// `sni = ["api.example.com", "*.example.org"]`: required, non-empty.
    pub sni: Spanned<Vec<Spanned<String>>>,
    /// `group = "api"`: required; the backends with this `group`.
    pub group: Spanned<String>,
}

/// `[service.health_check]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    /// `type = "tcp" | "http" | "none" | "udp" | "https" | "agent"`; default `"tcp"`, `"none"` for a UDP service; `http`
    /// needs protocol tcp; `tcp` on a UDP service is a warning.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<HealthCheckType>>,
    /// `path = "/"`: what `http` checks GET; starts with `/`; default `"/"`.
    pub path: Option<Spanned<String>>,
    /// `expected_status = "200-399"`: codes and ranges, comma-separated (`"200,204,300-399"`)
    /// or one code as a number; default `"200-399"`.
    pub expected_status: Option<Spanned<TextOrNumber>>,
    /// `interval = "DURATION"`: time between checks; not zero; default `"2s"`.
    pub interval: Option<Spanned<TextOrNumber>>,
    /// `timeout = "DURATION"`: per check; not zero, not longer than `interval`; default `"1s"`.
    pub timeout: Option<Spanned<TextOrNumber>>,
    /// `healthy_threshold = N`: successes in a row to come up; at least 1; default 2.
    pub healthy_threshold: Option<Spanned<u32>>,
    /// `unhealthy_threshold = N`: failures in a row to go down; at least 1; default 3.
    pub unhealthy_threshold: Option<Spanned<u32>>,
    /// `send = "TEXT"`: the datagram a `udp` check sends; required by `udp`, only there.
    pub send: Option<Spanned<String>>,
    /// `expect = "TEXT"`: a substring a `udp` check's reply must contain; only `udp`.
    pub expect: Option<Spanned<String>>,
    /// `sni = "NAME"`: the server name an `https` check sends; only `https`.
    pub sni: Option<Spanned<String>>,
    /// `verify = BOOL`: an `https` check verifies the certificate; needs `ca_file`.
    pub verify: Option<Spanned<bool>>,
    /// `ca_file = "PATH"`: PEM certificates a verifying `https` check trusts.
    pub ca_file: Option<Spanned<String>>,
    /// `agent_port = N`: the TCP port an `agent` check reads; required by `agent`, only there.
    pub agent_port: Option<Spanned<u32>>,
}

/// `[service.pool]`: the HTTP proxy's keep-alive connections to backends (`proxy_mode =
/// "http"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    /// `max_idle_per_backend = N`: idle connections kept per backend, 0-10000 (0 disables
    /// pooling); default 32.
    pub max_idle_per_backend: Option<Spanned<u32>>,
    /// `idle_timeout = "DURATION"`: an idle pooled connection is closed after this; not zero;
    /// default `"60s"`.
    pub idle_timeout: Option<Spanned<TextOrNumber>>,
}

/// `[service.rate_limit]`: new flows admitted, as token buckets; established flows are
/// never limited.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    /// `new_flows_per_second = N`: for the whole service, 0-1000000; default 0 (no limit).
    pub new_flows_per_second: Option<Spanned<u32>>,
    /// `burst = N`: new flows admitted at once, 1-1000000; needs `new_flows_per_second`;
    /// default one second's worth.
    pub burst: Option<Spanned<u32>>,
    /// `per_source_new_flows_per_second = N`: per client address (IPv6: per /64),
    /// 0-1000000; default 0 (no limit).
    pub per_source_new_flows_per_second: Option<Spanned<u32>>,
    /// `per_source_burst = N`: 1-1000000; needs `per_source_new_flows_per_second`; default
    /// one second's worth.
    pub per_source_burst: Option<Spanned<u32>>,
}

/// `[service.circuit_breaker]`: passive ejection of failing backends, and a connection cap.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCircuitBreaker {
    /// `consecutive_failures = N`: failed new flows in a row that eject a backend; default 0
    /// (no passive ejection).
    pub consecutive_failures: Option<Spanned<u32>>,
    /// `base_ejection = "DURATION"`: the first ejection; doubles with each ejection in a
    /// row; not zero; default `"30s"`.
    pub base_ejection: Option<Spanned<TextOrNumber>>,
    /// `max_ejection = "DURATION"`: the longest ejection; not below `base_ejection`; default
    /// `"300s"`.
    pub max_ejection: Option<Spanned<TextOrNumber>>,
    /// `max_ejected_percent = N`: never eject more than this share of the service's
    /// backends, 0-100; default 50.
    pub max_ejected_percent: Option<Spanned<u32>>,
    /// `max_connections = N`: proxy path, connections per backend; the next choice takes the
    /// overflow, and a connection is refused when all are full; default 0 (unlimited).
    pub max_connections: Option<Spanned<u32>>,
}

/// `[[service.backend]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    /// `address = "IP:PORT"`: required; the VIP's address family; port not 0, and equal to
    /// the VIP's port with `forwarding = "dsr"`; unique within the service.
    pub address: Spanned<String>,
    /// `weight = N`: share of new flows, 0-10000 (0 behaves like drain); default 1.
    pub weight: Option<Spanned<u32>>,
    /// `state = "ready" | "drain" | "maint"`; default `"ready"`.
    pub state: Option<AdminState>,
    /// `group = "api"`: the `[[service.route]]` group it serves; default
    /// none (the connections no route takes).
    pub group: Option<Spanned<String>>,
}

/// A TOML string or number, kept as written. Durations and status lists are strings, but
/// people write `interval = 2` or `expected_status = 200`: reading those here, instead of
/// letting serde fail on the type, lets validation say what to write instead ("needs a unit").
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TextOrNumber {
    Text(String),
    /// The number's decimal form.
    Number(String),
}

impl<'de> Deserialize<'de> for TextOrNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextOrNumberVisitor)
    }
}

struct TextOrNumberVisitor;

impl serde::de::Visitor<'_> for TextOrNumberVisitor {
    type Value = TextOrNumber;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(TextOrNumber::Text(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(TextOrNumber::Number(v.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(TextOrNumber::Number(v.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(TextOrNumber::Number(v.to_string()))
    }
}

/// `[cluster]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    /// `node = "NAME"`: this node in the shared store, logs and metrics; default: the host
    /// name.
    pub node: Option<Spanned<String>>,
    /// `hash_seed = N`: mixed into every Maglev permutation; the same on every node of a
    /// fleet (that is what makes their tables identical). Default 0.
    pub hash_seed: Option<Spanned<i64>>,
    /// `etcd = ["http://HOST:PORT", ...]`: the shared store's endpoints. Default: none (the
    /// local state file, as without `[cluster]`).
    #[serde(default)]
    pub etcd: Vec<Spanned<String>>,
    /// `etcd_prefix = "/lb"`: where in etcd the fleet keeps its state.
    pub etcd_prefix: Option<Spanned<String>>,
    /// `drain_grace = "5s"`: on SIGTERM the node withdraws its VIPs and keeps forwarding
    /// this long, so the routers move new flows away before it stops.
    pub drain_grace: Option<Spanned<TextOrNumber>>,
    /// `[cluster.bgp]`
    pub bgp: Option<Spanned<RawBgp>>,
}

/// `[cluster.bgp]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    pub speaker: Option<Spanned<String>>,
    pub asn: Option<Spanned<i64>>,
    pub router_id: Option<Spanned<String>>,
    #[serde(default)]
    pub neighbors: Vec<Spanned<RawNeighbor>>,
    pub hold_time: Option<Spanned<TextOrNumber>>,
    pub bird: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbor {
    pub address: Spanned<String>,
    pub asn: Spanned<i64>,
}

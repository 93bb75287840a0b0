//! The validated configuration, as the rest of `lb` sees it: plain types, defaults applied,
//! every rule in `validate` already true.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use super::{
    enums::{AdminState, Algorithm, Forwarding, HealthCheckType, Mode, Protocol, ProxyMode, XdpAttach},
    ports::PortRange,
    status::StatusRanges,
};

/// A whole `lb.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[daemon]`
    pub daemon: Daemon,
    /// `[[service]]`, in file order.
    pub services: Vec<Service>,
    /// `[cluster]`: `None` when the file has no such table (a single balancer).
    pub cluster: Option<super::cluster::Cluster>,
}

/// A valid file and what in it is valid but probably not meant (`lb check` prints these
/// as `FILE:LINE:COL: warning: message`; the daemon logs them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub config: Config,
    /// In file order.
    pub warnings: Vec<super::Diagnostic>,
}

/// `[daemon]`: how the daemon runs. Field docs give the TOML key's meaning and default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    /// NIC for XDP (modes `xdp` and `auto`): the first of `interfaces`, whose addresses give
    /// the SNAT defaults. Default: none.
    pub interface: Option<String>,
    /// Every NIC XDP attaches to (`interface`, a name or a list), in the file's order; VIP
    /// traffic may arrive on any and frames leave by any. Empty when `interface` is unset.
    pub interfaces: Vec<String>,
    /// Which path serves traffic. Default `auto`: XDP, else the proxy, with a warning.
    pub mode: Mode,
    /// How XDP attaches. Default `native`.
    pub xdp_attach: XdpAttach,
    /// Metrics, health, admin and registration API. Default `127.0.0.1:9100`.
    pub admin_listen: SocketAddr,
    /// Bearer token for every mutating API call. Default `/etc/lb/token`.
    pub token_file: PathBuf,
    /// bpffs directory where the program and maps are pinned. Default `/sys/fs/bpf/lb`.
    pub pin_path: PathBuf,
    /// Registrations that survive a restart. Default `/var/lib/lb/state.json`.
    pub state_file: PathBuf,
    /// NAT source address for IPv4. Default (`None`): the interface's first IPv4 address.
    pub snat_ipv4: Option<Ipv4Addr>,
    /// NAT source address for IPv6. Default (`None`): the interface's first global IPv6
    /// address.
    pub snat_ipv6: Option<Ipv6Addr>,
    /// NAT source ports. Default 20000-32767, out of the kernel's ephemeral range.
    pub snat_ports: PortRange,
    /// `ipip`/`gue`: the prefix outer IPv4 sources come from (the flow hash fills its host
    /// bits). Default (`None`): the IPv4 SNAT address alone (a /32).
    pub encap_source_ipv4: Option<super::Cidr>,
    /// As `encap_source_ipv4`, for outer IPv6 headers. Default: the IPv6 SNAT address (/128).
    pub encap_source_ipv6: Option<super::Cidr>,
    /// `gue`: the UDP port backends receive GUE on. Default
    /// [`lb_common::encap::DEFAULT_GUE_PORT`] (6080).
    pub gue_port: u16,
    /// `ipip`/`gue`: the MTU of the path to the backends; a packet that would exceed it once
    /// encapsulated is answered with ICMP "fragmentation needed" / "packet too big".
    /// Default (`None`): the interface's MTU. At least [`MIN_TUNNEL_MTU_V4`] or
    /// [`MIN_TUNNEL_MTU_V6`] plus the encapsulation overhead for every encapsulating service.
    pub tunnel_mtu: Option<u32>,
    /// Connection-tracking entries. Default 1048576; at least [`MIN_FLOW_TABLE_SIZE`].
    pub flow_table_size: u32,
    /// The services the config may define, 1 to [`MAX_SERVICES`]. The XDP data path's
    /// table arrays hold two Maglev tables per service (1 MiB as the kernel charges it) and
    /// are sized from this when created, so the kernel memory follows the setting. Default
    /// [`DEFAULT_MAX_SERVICES`] (128 MiB of tables).
    pub max_services: u32,
    /// Idle TCP flows expire after this. Default 300s.
    pub tcp_idle_timeout: Duration,
    /// Idle UDP flows expire after this. Default 30s.
    pub udp_idle_timeout: Duration,
    /// A TCP flow whose handshake has not completed expires after this without a packet.
    /// Default 5s; at most [`MAX_SOFT_TIMEOUT`].
    pub tcp_handshake_timeout: Duration,
    /// A UDP flow that has seen no reply expires after this without a packet. Default 5s;
    /// at most [`MAX_SOFT_TIMEOUT`].
    pub udp_unreplied_timeout: Duration,
    /// Proxy worker threads, and `SO_REUSEPORT` listeners per service. Default 0: one per
    /// CPU core; at most [`MAX_WORKERS`].
    pub workers: u32,
    /// The proxy's timeout for connecting to a backend. Default 2s.
    pub connect_timeout: Duration,
    /// On shutdown the proxy stops accepting and lets in-flight connections finish for at
    /// most this long. Default 10s.
    pub drain_timeout: Duration,
    /// HTTP mode: a request's head must arrive within this, counted from when the proxy
    /// awaits it (accept, or the end of the previous response). Default 10s.
    pub http_header_timeout: Duration,
    /// HTTP mode: the largest request head (request line and headers) in bytes,
    /// [`MIN_HTTP_HEADER_SIZE`] to [`MAX_HTTP_HEADER_SIZE`]. Default 65536.
    pub http_max_header_size: u32,
}

impl Default for Daemon {
    /// The contract's defaults (docs/configuration.md, "The contract").
    fn default() -> Self {
        Self {
            interface: None,
            interfaces: Vec::new(),
            mode: Mode::Auto,
            xdp_attach: XdpAttach::Native,
            admin_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9100)),
            token_file: PathBuf::from("/etc/lb/token"),
            pin_path: PathBuf::from("/sys/fs/bpf/lb"),
            state_file: PathBuf::from("/var/lib/lb/state.json"),
            snat_ipv4: None,
            snat_ipv6: None,
            snat_ports: PortRange::default(),
            encap_source_ipv4: None,
            encap_source_ipv6: None,
            gue_port: lb_common::encap::DEFAULT_GUE_PORT,
            tunnel_mtu: None,
            flow_table_size: 1 << 20,
            max_services: DEFAULT_MAX_SERVICES as u32,
            tcp_idle_timeout: Duration::from_secs(300),
            udp_idle_timeout: Duration::from_secs(30),
            tcp_handshake_timeout: Duration::from_secs(5),
            udp_unreplied_timeout: Duration::from_secs(5),
            workers: 0,
            connect_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            http_header_timeout: Duration::from_secs(10),
            http_max_header_size: 64 * 1024,
        }
    }
}

/// `[[service]]`: one virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Unique; 1 to [`MAX_SERVICE_NAME_LEN`] bytes of `A-Z a-z 0-9 _ . -`.
    pub name: String,
    /// Virtual address and port; unique per protocol across services. The address may be
    /// unspecified (`0.0.0.0`, `::`: every address) unless the mode is `xdp`.
    pub vip: SocketAddr,
    /// Default `tcp`.
    pub protocol: Protocol,
    /// Default `maglev`.
    pub algorithm: Algorithm,
    /// XDP path. Default `nat`.
    pub forwarding: Forwarding,
    /// Proxy path. Default `l4`.
    pub proxy_mode: ProxyMode,
    /// `[service.health_check]`
    pub health_check: HealthCheck,
    /// `[service.pool]`
    pub pool: Pool,
    /// `allow` / `deny`: the client prefixes new flows may come from.
    pub acl: super::SourceAcl,
    /// `[service.rate_limit]`
    pub rate_limit: super::RateLimit,
    /// `[service.circuit_breaker]`
    pub circuit_breaker: super::CircuitBreaker,
    /// `max_client_connections`, `max_connections_per_source` (proxy path).
    pub connection_caps: super::ConnectionCaps,
    /// `[[service.backend]]`, in file order; may be empty (the service drops its traffic).
    pub backends: Vec<Backend>,
    /// Registrations whose backend address lies in one of these prefixes skip the address
    /// checks (loopback, the LB's own addresses, ...), never the admin API's own address.
    /// Default: none.
    pub allow_registration_from: Vec<super::Cidr>,
    /// `slow_start`, `persistence_timeout`.
    pub traffic: super::Traffic,
    /// Proxy path: the PROXY protocol and SNI routes.
    pub proxy_options: super::ProxyOptions,
}

/// `[service.health_check]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// TOML key `type`. Default `tcp` for a TCP service, `none` for a UDP service (a TCP
    /// connect says nothing about a UDP server). [`HealthCheck::default`] is a TCP
    /// service's.
    pub kind: HealthCheckType,
    /// What an `http` check GETs. Default `/`.
    pub path: String,
    /// Statuses an `http` check accepts. Default 200-399.
    pub expected_status: StatusRanges,
    /// Time between checks. Default 2s.
    pub interval: Duration,
    /// Per check; never longer than `interval`. Default 1s.
    pub timeout: Duration,
    /// Successes in a row to come up. Default 2.
    pub healthy_threshold: u32,
    /// Failures in a row to go down. Default 3.
    pub unhealthy_threshold: u32,
    /// `udp`: the datagram sent (`send`); empty for other types.
    pub send: String,
    /// `udp`: a substring the reply must contain (`expect`); any reply when `None`.
    pub expect: Option<String>,
    /// `https`: server name, verification.
    pub tls: TlsCheck,
    /// `agent`: the TCP port on the backend's address the agent answers on; 0 otherwise.
    pub agent_port: u16,
}

/// The TLS settings of an `https` health check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsCheck {
    /// `sni`: the server name sent in the ClientHello, and checked against the certificate
    /// when `verify`; none sent when `None`.
    pub sni: Option<String>,
    /// `verify`: the certificate chain must lead to `ca_file` and name `sni` (or, without
    /// `sni`, the backend's IP address). Default false: backends' certificates are usually
    /// self-signed, and the check is of the service, not of its certificate.
    pub verify: bool,
    /// `ca_file`: PEM certificates trusted when `verify`.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: HealthCheckType::Tcp,
            path: "/".to_string(),
            expected_status: StatusRanges::default(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            send: String::new(),
            expect: None,
            tls: TlsCheck::default(),
            agent_port: 0,
        }
    }
}

/// `[service.pool]`: the HTTP proxy's keep-alive connections to backends (`proxy_mode =
/// "http"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Idle connections kept per backend, 0 to [`MAX_IDLE_PER_BACKEND`]; 0 disables pooling.
    /// Default 32.
    pub max_idle_per_backend: u32,
    /// An idle pooled connection is closed after this. Default 60s.
    pub idle_timeout: Duration,
}

impl Default for Pool {
    fn default() -> Self {
        Self { max_idle_per_backend: 32, idle_timeout: Duration::from_secs(60) }
    }
}

/// `[[service.backend]]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Same address family as the VIP; with `dsr`, same port as the VIP.
    pub address: SocketAddr,
    /// Share of new flows, 0 to [`MAX_WEIGHT`]; 0 behaves like drain. Default 1.
    pub weight: u32,
    /// Default `ready`.
    pub state: AdminState,
}

impl Backend {
    /// A backend with the default weight and state (as an agent registration starts).
    pub fn new(address: SocketAddr) -> Self {
        Self { address, weight: DEFAULT_WEIGHT, state: AdminState::Ready }
    }
}

/// `weight` when the key is left out.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest `weight`: a Maglev table has 65537 slots, so weight ratios far beyond this could
/// not be represented anyway.
pub const MAX_WEIGHT: u32 = 10_000;
/// Longest service name in bytes: `ServiceMeta::name` in the pinned maps is 48 bytes,
/// NUL-terminated.
pub const MAX_SERVICE_NAME_LEN: usize = 47;
/// Smallest `flow_table_size`: below this the LRU would evict live flows under any load.
pub const MIN_FLOW_TABLE_SIZE: u32 = 1024;
/// Most proxy `workers`: far beyond any core count, and each is a thread with a listener
/// per service.
pub const MAX_WORKERS: u32 = 1024;
/// Largest `max_idle_per_backend`: each idle connection holds a socket on both ends.
pub const MAX_IDLE_PER_BACKEND: u32 = 10_000;
/// Smallest `http_max_header_size`: a request line and a `Host` header fit with room.
pub const MIN_HTTP_HEADER_SIZE: u32 = 1024;
/// Largest `http_max_header_size`: below the HTTP parser's read buffer (about 400 KiB), so
/// the limit, not the buffer, is what a large head meets; far above what browsers send.
pub const MAX_HTTP_HEADER_SIZE: u32 = 256 * 1024;
/// Longest `http_header_timeout`: a longer wait only helps a slow client hold a socket.
pub const MAX_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(3600);
/// The smallest MTU an IPv4 host must accept (RFC 791): what an IPv4 service's packets
/// must still fit inside the tunnel.
pub const MIN_TUNNEL_MTU_V4: u32 = 68;
/// The smallest MTU an IPv6 link may have (RFC 8200): what an IPv6 service's packets must
/// still fit inside the tunnel.
pub const MIN_TUNNEL_MTU_V6: u32 = 1280;
/// The largest IP packet.
pub const MAX_TUNNEL_MTU: u32 = 65_535;
/// Longest `tcp_handshake_timeout` / `udp_unreplied_timeout`: they exist to free what
/// unanswered flows hold, which a long one would not.
pub const MAX_SOFT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most `allow` and `deny` prefixes of one service together: the data path's trie size.
pub const MAX_ACL_PER_SERVICE: usize = lb_common::consts::MAX_ACL_PER_SERVICE as usize;
/// Most services (`max_services` at most): the data path's map sizes.
pub const MAX_SERVICES: usize = lb_common::consts::MAX_SERVICES as usize;
/// `max_services` when the key is left out.
pub const DEFAULT_MAX_SERVICES: usize = lb_common::consts::DEFAULT_MAX_SERVICES as usize;
/// Most backends, all services together: the data path's map sizes.
pub const MAX_BACKENDS: usize = lb_common::consts::MAX_BACKENDS as usize;

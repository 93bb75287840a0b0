//! The keyword values of `lb.toml` (`mode = "auto"`, `algorithm = "maglev"`, ...).
//!
//! Each enum is declared once with its spellings; the macro derives serde, `as_str`,
//! `Display` and `FromStr` from that one list, so the TOML, the CLI and the JSON outputs
//! cannot drift apart.

use std::fmt;

/// A keyword that is not one of an enum's spellings (from `FromStr`, e.g. CLI arguments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKeyword {
    /// What was being parsed, e.g. "algorithm".
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}; expected one of ", self.what, self.value)?;
        for (i, name) in self.expected.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{name:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownKeyword {}

macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal), default $default:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in `lb.toml`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownKeyword;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownKeyword { what: $what, value: text.to_string(), expected: Self::NAMES }),
                }
            }
        }
    };
}

keyword_enum! {
    /// `daemon.mode`: which path serves traffic.
    Mode ("mode"), default Auto {
        /// XDP only; the daemon fails if the program cannot attach.
        Xdp = "xdp",
        /// The userspace proxy only.
        Proxy = "proxy",
        /// XDP, else the proxy, with a warning.
        Auto = "auto",
    }
}

keyword_enum! {
    /// `daemon.xdp_attach`: how the XDP program is attached to the interface.
    XdpAttach ("xdp_attach"), default Native {
        /// In the driver (fast; needs driver support).
        Native = "native",
        /// In the kernel's generic hook (works everywhere, slower).
        Generic = "generic",
    }
}

keyword_enum! {
    /// `service.protocol`.
    Protocol ("protocol"), default Tcp {
        Tcp = "tcp",
        Udp = "udp",
    }
}

keyword_enum! {
    /// `service.algorithm`: how a backend is picked for a new flow.
    Algorithm ("algorithm"), default Maglev {
        /// Consistent hash of the 5-tuple into a Maglev table, weights honoured.
        Maglev = "maglev",
        /// Maglev over the client address only: client affinity.
        SourceHash = "source_hash",
        RoundRobin = "round_robin",
        WeightedRoundRobin = "weighted_round_robin",
        Random = "random",
        /// Fewest active flows.
        LeastConn = "least_conn",
        /// Power of two choices: two random backends, the one with fewer active flows wins.
        P2c = "p2c",
    }
}

keyword_enum! {
    /// `service.forwarding`: how the XDP path delivers packets to a backend.
    Forwarding ("forwarding"), default Nat {
        /// Full NAT: destination rewritten to the backend, source to the SNAT address.
        Nat = "nat",
        /// Direct server return: only MACs change; backends hold the VIP on loopback.
        Dsr = "dsr",
        /// Direct server return across routers: the client's packet inside an outer IP
        /// header to the backend (IP-in-IP).
        Ipip = "ipip",
        /// As `ipip`, inside outer IP + UDP (Generic UDP Encapsulation, variant 1).
        Gue = "gue",
    }
}

impl Forwarding {
    /// Replies go from the backend straight to the client (`dsr`, `ipip`, `gue`).
    pub fn is_direct_return(self) -> bool {
        self != Forwarding::Nat
    }

    /// The client's packet travels inside an outer header (`ipip`, `gue`).
    pub fn encapsulates(self) -> bool {
        matches!(self, Forwarding::Ipip | Forwarding::Gue)
    }

    /// Why a backend at `backend` cannot serve a VIP at `vip` with this forwarding, if it
    /// cannot: addresses are translated within one family only (no NAT46/64), and an
    /// encapsulating service may carry an IPv4 packet in an outer IPv6 header (4-in-6) but
    /// not the other way round (an IPv6 packet inside IPv4 would need 6in4 decapsulation,
    /// which backends rarely have, and IPv4's smaller minimum MTU).
    pub fn family_misfit(self, vip: std::net::SocketAddr, backend: std::net::SocketAddr) -> Option<String> {
        let family = |a: std::net::SocketAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        if vip.is_ipv4() == backend.is_ipv4() || (self.encapsulates() && vip.is_ipv4()) {
            return None;
        }
        Some(if self.encapsulates() {
            format!(
                "backend {backend} is IPv4 but the VIP {vip} is IPv6: {} carries IPv4 inside IPv6, not IPv6 \
                 inside IPv4; give this service IPv6 backends",
                self.as_str()
            )
        } else {
            format!(
                "backend {backend} is {} but the VIP {vip} is {}; backends must use their VIP's address family",
                family(backend),
                family(vip)
            )
        })
    }
}

keyword_enum! {
    /// `service.proxy_mode`: what the proxy path speaks.
    ProxyMode ("proxy_mode"), default L4 {
        /// Copies bytes both ways.
        L4 = "l4",
        /// HTTP/1.1 with pooled keep-alive upstream connections.
        Http = "http",
    }
}

keyword_enum! {
    /// `service.backend.state`: the operator's say on a backend.
    AdminState ("state"), default Ready {
        /// Takes new flows.
        Ready = "ready",
        /// No new flows; existing flows continue.
        Drain = "drain",
        /// Out: no flows at all.
        Maint = "maint",
    }
}

keyword_enum! {
    /// `service.health_check.type`.
    HealthCheckType ("health check type"), default Tcp {
        /// A TCP connect succeeds.
        Tcp = "tcp",
        /// `GET path` answers with a status in `expected_status`.
        Http = "http",
        /// No checks: backends are always up.
        None = "none",
        /// A datagram (`send`) gets a reply (containing `expect`, if set).
        Udp = "udp",
        /// `GET path` over TLS answers with a status in `expected_status`.
        Https = "https",
        /// HAProxy's agent-check: a line of words read from `agent_port`.
        Agent = "agent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// `as_str`/`Display`, `FromStr` and serde must agree on every spelling of an enum.
    fn spellings_agree<T>(all: &[T])
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + FromStr + serde::de::DeserializeOwned,
    {
        #[derive(serde::Deserialize)]
        struct Wrapper<T> {
            value: T,
        }
        for &value in all {
            let name = value.to_string();
            assert!(T::from_str(&name).ok() == Some(value), "FromStr disagrees on {name}");
            let parsed: Wrapper<T> = toml::from_str(&format!("value = {name:?}")).unwrap();
            assert_eq!(parsed.value, value);
        }
    }

    #[test]
    fn every_spelling_round_trips_through_as_str_from_str_and_serde() {
        spellings_agree(Mode::ALL);
        spellings_agree(XdpAttach::ALL);
        spellings_agree(Protocol::ALL);
        spellings_agree(Algorithm::ALL);
        spellings_agree(Forwarding::ALL);
        spellings_agree(ProxyMode::ALL);
        spellings_agree(AdminState::ALL);
        spellings_agree(HealthCheckType::ALL);
    }

    #[test]
    fn spellings_are_the_contracts() {
        assert_eq!(Mode::NAMES, ["xdp", "proxy", "auto"]);
        assert_eq!(XdpAttach::NAMES, ["native", "generic"]);
        assert_eq!(Protocol::NAMES, ["tcp", "udp"]);
        assert_eq!(
            Algorithm::NAMES,
            ["maglev", "source_hash", "round_robin", "weighted_round_robin", "random", "least_conn", "p2c"]
        );
        assert_eq!(Forwarding::NAMES, ["nat", "dsr", "ipip", "gue"]);
        assert_eq!(ProxyMode::NAMES, ["l4", "http"]);
        assert_eq!(AdminState::NAMES, ["ready", "drain", "maint"]);
        assert_eq!(HealthCheckType::NAMES, ["tcp", "http", "none", "udp", "https", "agent"]);
    }

    #[test]
    fn unknown_keywords_list_the_valid_ones() {
        let error = "rr".parse::<Algorithm>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown algorithm \"rr\"; expected one of \"maglev\", \"source_hash\", \"round_robin\", \
             \"weighted_round_robin\", \"random\", \"least_conn\", \"p2c\""
        );
    }
}

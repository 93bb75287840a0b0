//! Names and addresses of the test network: the contract in docs/testing.md
//! ("The test network") spelled out as constants.
//!
//! ```text
//!   lbt-client      lbt-lb        lbt-server1  lbt-server2  lbt-server3
//!   eth0 .2         eth0 .10      eth0 .11     eth0 .12     eth0 .13
//!    |               |             |            |            |
//!   client          lb            server1      server2      server3   (veth peers)
//!   +---------------+-------------+------------+------------+--- br0 in lbt-switch
//! ```
//! IPv4 172.20.0.0/16 (the seed's Docker network), IPv6 fd00:20::/64 with the
//! same host numbers written as text (server1 = .11 = fd00:20::11).

use anyhow::{bail, Result};
use std::path::PathBuf;

/// Every namespace of the test network starts with this; `down` removes them all.
pub const NS_PREFIX: &str = "lbt-";
/// Every namespace of the fleet network (`cluster.rs`) starts with this; `down` removes them
/// too.
pub const CLUSTER_NS_PREFIX: &str = "lbc-";
pub const CLIENT_NS: &str = "lbt-client";
pub const LB_NS: &str = "lbt-lb";
/// Holds the bridge that joins every host; no addresses, IPv6 disabled.
pub const SWITCH_NS: &str = "lbt-switch";
pub const BRIDGE: &str = "br0";
/// The interface of every host (client, LB, servers).
pub const IFACE: &str = "eth0";

/// Servers built by `up`; more can be added with `add_server`.
pub const SERVERS: u8 = 3;
/// The port the backend listens on in every server namespace.
pub const BACKEND_PORT: u16 = 80;

pub const PREFIX_V4: u8 = 16;
pub const PREFIX_V6: u8 = 64;
pub const CLIENT_V4: &str = "172.20.0.2";
pub const CLIENT_V6: &str = "fd00:20::2";
pub const LB_V4: &str = "172.20.0.10";
pub const LB_V6: &str = "fd00:20::10";
/// The VIPs: routed from the client via the LB; on the servers' `lo` with `dsr`.
pub const VIP_V4: &str = "172.20.0.100";
pub const VIP_V6: &str = "fd00:20::100";

/// Host number of the client, the LB and the VIP (last IPv4 octet).
const CLIENT_HOST: u8 = 2;
const LB_HOST: u8 = 10;
const VIP_HOST: u8 = 100;
/// Server n is host 10 + n.
const SERVER_HOST_BASE: u8 = 10;

/// Run-time state: server logs and pid files, the bpffs holding the XDP pin.
pub const RUN_DIR: &str = "/run/lbt";
pub const BPFFS_DIR: &str = "/run/lbt/bpffs";
pub const XDP_PASS_PIN: &str = "/run/lbt/bpffs/xdp_pass";
/// Present while the network was built with `dsr: true`, so that
/// `add_server` gives new servers the VIPs too.
pub(crate) const DSR_MARKER: &str = "/run/lbt/dsr";
/// Outside RUN_DIR on purpose: `down` removes RUN_DIR while the lock is held.
pub const LOCK_FILE: &str = "/run/lbt.lock";

pub const CLIENT_MAC: &str = "02:00:ac:14:00:02";
pub const LB_MAC: &str = "02:00:ac:14:00:0a";

pub fn server_ns(n: u8) -> String {
    format!("{NS_PREFIX}server{n}")
}

pub fn server_name(n: u8) -> String {
    format!("Server{n}")
}

pub fn server_v4(n: u8) -> String {
    v4_of(server_host(n))
}

pub fn server_v6(n: u8) -> String {
    v6_of(server_host(n))
}

/// Fixed MACs make captures and neighbour tables readable:
/// 02:00 (locally administered), then the IPv4 address 172.20.0.x in hex.
pub fn server_mac(n: u8) -> String {
    mac_of(server_host(n))
}

/// The bridge port in `lbt-switch` that is the peer of `ns`'s eth0:
/// the namespace name without `lbt-` (`client`, `lb`, `server1`, ...).
pub fn switch_port(ns: &str) -> String {
    ns.strip_prefix(NS_PREFIX).unwrap_or(ns).to_string()
}

pub fn server_log(n: u8) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/server{n}.log"))
}

pub fn server_pidfile(n: u8) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/server{n}.pid"))
}

/// Server numbers that fit the /16 and collide with nobody: 10 + n must be a
/// valid host number other than the VIP's (n = 90 would be 172.20.0.100).
pub fn check_server_number(n: u8) -> Result<()> {
    let host = SERVER_HOST_BASE as u16 + n as u16;
    if n == 0 || host > 254 {
        bail!("server number {n} is out of range 1..=244");
    }
    if host == VIP_HOST as u16 {
        bail!("server number {n} would take the VIP's address {VIP_V4}");
    }
    Ok(())
}

fn server_host(n: u8) -> u8 {
    SERVER_HOST_BASE.wrapping_add(n)
}

fn v4_of(host: u8) -> String {
    format!("172.20.0.{host}")
}

/// The IPv6 host part is the IPv4 host number written as text, as in the
/// contract (172.20.0.11 <-> fd00:20::11).
fn v6_of(host: u8) -> String {
    format!("fd00:20::{host}")
}

fn mac_of(host: u8) -> String {
    format!("02:00:ac:14:00:{host:02x}")
}

/// One machine on the test network: its namespace, eth0 addresses and MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub ns: String,
    pub v4: String,
    pub v6: String,
    pub mac: String,
}

impl Host {
    pub fn client() -> Host {
        Host::new(CLIENT_NS.to_string(), CLIENT_HOST)
    }

    pub fn lb() -> Host {
        Host::new(LB_NS.to_string(), LB_HOST)
    }

    /// A host beyond the contract's (see `add_client`).
    pub fn extra(ns: &str, host: u8) -> Host {
        Host::new(ns.to_string(), host)
    }

    pub fn server(n: u8) -> Host {
        Host::new(server_ns(n), server_host(n))
    }

    fn new(ns: String, host: u8) -> Host {
        Host { ns, v4: v4_of(host), v6: v6_of(host), mac: mac_of(host) }
    }

    /// The hosts `up` builds.
    pub fn all() -> Vec<Host> {
        let mut hosts = vec![Host::client(), Host::lb()];
        hosts.extend((1..=SERVERS).map(Host::server));
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_addresses() {
        assert_eq!(server_ns(1), "lbt-server1");
        assert_eq!(server_v4(3), "172.20.0.13");
        assert_eq!(server_v6(2), "fd00:20::12");
        assert_eq!(Host::client(), Host::new(CLIENT_NS.into(), CLIENT_HOST));
        assert_eq!(Host::client().v4, CLIENT_V4);
        assert_eq!(Host::client().v6, CLIENT_V6);
        assert_eq!(Host::lb().v4, LB_V4);
        assert_eq!(Host::lb().v6, LB_V6);
        assert_eq!(Host::lb().mac, LB_MAC);
        assert_eq!(Host::client().mac, CLIENT_MAC);
        assert_eq!(server_mac(1), "02:00:ac:14:00:0b");
        assert_eq!(v4_of(VIP_HOST), VIP_V4);
        assert_eq!(v6_of(VIP_HOST), VIP_V6);
    }

    #[test]
    fn switch_ports_are_short_enough() {
        // IFNAMSIZ is 16 including the NUL.
        assert_eq!(switch_port(CLIENT_NS), "client");
        assert_eq!(switch_port(&server_ns(244)), "server244");
        assert!(switch_port(&server_ns(244)).len() < 16);
    }

    #[test]
    fn server_numbers() {
        assert!(check_server_number(1).is_ok());
        assert!(check_server_number(244).is_ok());
        assert!(check_server_number(0).is_err());
        assert!(check_server_number(245).is_err());
        assert!(check_server_number(90).is_err());
    }
}

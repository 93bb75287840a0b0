//! Names and addresses of the fleet network (docs/testing.md, "The fleet network"), spelled
//! out as constants and small functions. Balancer i (1..=3) is `lbc-lb{i}` at 10.61.0.1{i};
//! backend i is `lbc-b{i}` at 10.61.0.2{i}.

use std::path::PathBuf;

/// Every namespace of the fleet network starts with this (not `lbt-`: the fleet is a
/// network of its own, beside the single-balancer one).
pub const NS_PREFIX: &str = crate::topology::CLUSTER_NS_PREFIX;
pub const ROUTER_NS: &str = "lbc-router";
pub const CLIENT_NS: &str = "lbc-client";
pub const ETCD_NS: &str = "lbc-etcd";
/// Holds the bridge of the shared LAN; no addresses, IPv6 off.
pub const LAN_NS: &str = "lbc-lan";
pub const BRIDGE: &str = "br0";
/// Every host's NIC on its network (the router has two: [`ROUTER_LAN_IFACE`] and
/// [`ROUTER_CLIENT_IFACE`]).
pub const IFACE: &str = "eth0";
pub const ROUTER_LAN_IFACE: &str = "eth0";
pub const ROUTER_CLIENT_IFACE: &str = "eth1";

/// Balancers and backends the fleet network has.
pub const BALANCERS: u8 = 3;
pub const BACKENDS: u8 = 3;

/// The client's side: 10.60.0.0/24, the client .2 behind the router .1.
pub const CLIENT_V4: &str = "10.60.0.2";
pub const ROUTER_CLIENT_V4: &str = "10.60.0.1";
/// The LAN: 10.61.0.0/24, the router .1, etcd .5, balancers .11-.13, backends .21-.23.
pub const ROUTER_LAN_V4: &str = "10.61.0.1";
pub const ETCD_V4: &str = "10.61.0.5";
pub const PREFIX_V4: u8 = 24;

/// The router's BGP side and the balancers'.
pub const ROUTER_ASN: u32 = 65000;
pub const BALANCER_ASN: u32 = 65010;
/// Short, so a dead or cut-off balancer leaves the ECMP set within seconds.
pub const HOLD_TIME_SECS: u32 = 3;

/// The VIPs, one per forwarding mode (10.100.0.0/24). The backends hold the direct-return
/// ones on `lo`; `nat` needs no address there (the balancer rewrites the destination).
pub const VIP_DSR: &str = "10.100.0.1";
pub const VIP_IPIP: &str = "10.100.0.2";
pub const VIP_GUE: &str = "10.100.0.3";
pub const VIP_NAT: &str = "10.100.0.4";
/// (forwarding, VIP) of every service the fleet's nodes run.
pub const VIPS: [(&str, &str); 4] = [("dsr", VIP_DSR), ("ipip", VIP_IPIP), ("gue", VIP_GUE), ("nat", VIP_NAT)];
/// Backends whose replies go straight to the client: they hold these on `lo`.
pub const DIRECT_RETURN_VIPS: [&str; 3] = [VIP_DSR, VIP_IPIP, VIP_GUE];

/// Every backend answers HTTP here, naming itself (the seed's backend.py).
pub const HTTP_PORT: u16 = 80;
/// And echoes lines here, each reply prefixed with its name (echo.py): for long-lived
/// connections that must stay on one backend across a balancer's death.
pub const ECHO_PORT: u16 = 9000;

/// The fleet's run-time state, under the test network's run directory so `down` clears it.
pub const RUN_DIR: &str = "/run/lbt/cluster";
pub const ROUTER_DIR: &str = "/run/lbt/cluster/router";
pub const ETCD_DATA_DIR: &str = "/run/lbt/cluster/etcd";
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// The bearer token every node accepts for mutating API calls.
pub const TOKEN_FILE: &str = "/run/lbt/cluster/token";
pub const TOKEN: &str = "fleet-test-token";
/// Every node's admin API and metrics, on its LAN address.
pub const ADMIN_PORT: u16 = 9100;
/// Mixed into every Maglev permutation, the same on every node.
pub const HASH_SEED: u32 = 12;

pub fn balancer_ns(i: u8) -> String {
    format!("{NS_PREFIX}lb{i}")
}

/// Balancer i's node name in the fleet (`[cluster] node`).
pub fn node_name(i: u8) -> String {
    format!("lb{i}")
}

pub fn balancer_v4(i: u8) -> String {
    format!("10.61.0.{}", 10 + i)
}

pub fn backend_ns(i: u8) -> String {
    format!("{NS_PREFIX}b{i}")
}

/// Backend i's name in its answers (HTTP JSON, echo prefix).
pub fn backend_name(i: u8) -> String {
    format!("Backend{i}")
}

pub fn backend_v4(i: u8) -> String {
    format!("10.61.0.{}", 20 + i)
}

/// The bridge port in `lbc-lan` that is the peer of `ns`'s eth0: the name without `lbc-`.
pub fn lan_port(ns: &str) -> String {
    ns.strip_prefix(NS_PREFIX).unwrap_or(ns).to_string()
}

/// Balancer i's own directory: config, log, state file, BIRD run dir, bpffs.
pub fn node_dir(i: u8) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/{}", node_name(i)))
}

pub fn node_config_path(i: u8) -> PathBuf {
    node_dir(i).join("lb.toml")
}

pub fn node_log(i: u8) -> PathBuf {
    node_dir(i).join("lb.log")
}

/// A BPF filesystem of balancer i's own (`ip netns exec` remounts /sys, and one pin tree per
/// node keeps the three daemons' maps apart).
pub fn node_bpffs(i: u8) -> PathBuf {
    node_dir(i).join("bpffs")
}

pub fn node_pin_path(i: u8) -> PathBuf {
    node_bpffs(i).join("lb")
}

pub fn node_bird_dir(i: u8) -> PathBuf {
    node_dir(i).join("bird")
}

pub fn node_state_file(i: u8) -> PathBuf {
    node_dir(i).join("state.json")
}

pub fn etcd_client_url() -> String {
    etcd_member_url(1)
}

/// etcd member k's client URL (the demo runs three: ports 2379, 2479, 2579).
pub fn etcd_member_url(k: u8) -> String {
    format!("http://{ETCD_V4}:{}", ETCD_CLIENT_PORT + 100 * u16::from(k - 1))
}

/// Balancer i's admin API (`http://10.61.0.1i:9100`).
pub fn node_api(i: u8) -> String {
    format!("http://{}:{ADMIN_PORT}", balancer_v4(i))
}

/// A process the fleet network runs, found again by its pid file under RUN_DIR.
pub fn pidfile(key: &str) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/{key}.pid"))
}

pub fn logfile(key: &str) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/{key}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_addresses_and_names() {
        assert_eq!((balancer_ns(1), balancer_v4(1)), ("lbc-lb1".into(), "10.61.0.11".into()));
        assert_eq!((backend_ns(3), backend_v4(3)), ("lbc-b3".into(), "10.61.0.23".into()));
        assert_eq!(lan_port(&balancer_ns(2)), "lb2");
        assert_eq!(lan_port(ROUTER_NS), "router");
        assert_eq!(node_pin_path(2), PathBuf::from("/run/lbt/cluster/lb2/bpffs/lb"));
        assert_eq!(etcd_client_url(), "http://10.61.0.5:2379");
        assert_eq!(node_api(3), "http://10.61.0.13:9100");
        // IFNAMSIZ: every port name fits.
        assert!(lan_port(&backend_ns(9)).len() < 16);
    }

    #[test]
    fn the_fleet_stays_apart_from_the_single_balancer_network() {
        assert!(!NS_PREFIX.starts_with(crate::topology::NS_PREFIX));
        assert!(RUN_DIR.starts_with(crate::topology::RUN_DIR));
    }
}

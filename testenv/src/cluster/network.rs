//! The fleet's namespaces, links and routes: a client behind a router, and one LAN (a bridge
//! in `lbc-lan`) joining the router, the balancers, the backends and etcd.

use super::topology::{
    backend_ns, backend_v4, balancer_ns, balancer_v4, lan_port, node_bird_dir, node_bpffs, node_dir, BACKENDS,
    BALANCERS, BRIDGE, CLIENT_NS, CLIENT_V4, ETCD_NS, ETCD_V4, IFACE, LAN_NS, PREFIX_V4, ROUTER_CLIENT_IFACE,
    ROUTER_CLIENT_V4, ROUTER_LAN_IFACE, ROUTER_LAN_V4, ROUTER_NS, RUN_DIR,
};
use crate::netns::{exec_ok, ip_in, run, sysctl_in};
use crate::xdp_pass::{self, is_mount_point};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;

/// Builds every namespace and link, and sets forwarding, hashing and routes. Processes are
/// started by the caller.
pub(crate) fn build() -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    build_lan()?;
    xdp_pass::install()?;
    build_router()?;
    build_client()?;
    join_lan(ETCD_NS, ETCD_V4)?;
    for i in 1..=BALANCERS {
        build_balancer(i)?;
    }
    for i in 1..=BACKENDS {
        join_lan(&backend_ns(i), &backend_v4(i))?;
        ip_in(&backend_ns(i), &["route", "add", "default", "via", ROUTER_LAN_V4])?;
    }
    Ok(())
}

/// The LAN: one bridge in a namespace of its own, no addresses, no STP (ports forward as
/// soon as they are up).
fn build_lan() -> Result<()> {
    new_namespace(LAN_NS)?;
    sysctl_in(LAN_NS, &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])?;
    ip_in(LAN_NS, &["link", "add", BRIDGE, "type", "bridge", "stp_state", "0"])?;
    ip_in(LAN_NS, &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// The router: on the LAN (.1) and toward the client (10.60.0.1), forwarding, hashing
/// multipath flows by their 5-tuple. Reverse-path filtering off: replies of direct-return
/// services come from a VIP, which the router routes back onto the LAN.
fn build_router() -> Result<()> {
    join_lan(ROUTER_NS, ROUTER_LAN_V4)?;
    sysctl_in(
        ROUTER_NS,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            &format!("net.ipv4.conf.{ROUTER_LAN_IFACE}.rp_filter=0"),
        ],
    )?;
    Ok(())
}

/// The client sits alone behind the router on 10.60.0.0/24.
fn build_client() -> Result<()> {
    new_namespace(CLIENT_NS)?;
    veth(CLIENT_NS, IFACE, &mac(CLIENT_V4), ROUTER_NS, ROUTER_CLIENT_IFACE, &mac(ROUTER_CLIENT_V4))?;
    address(CLIENT_NS, IFACE, CLIENT_V4)?;
    address(ROUTER_NS, ROUTER_CLIENT_IFACE, ROUTER_CLIENT_V4)?;
    ip_in(CLIENT_NS, &["route", "add", "default", "via", ROUTER_CLIENT_V4])?;
    Ok(())
}

/// A balancer: on the LAN, forwarding on (the XDP program's FIB lookups answer only then),
/// its default route the router (replies of `nat` flows and tunnelled health checks leave
/// that way), a directory and a BPF filesystem of its own for the `lb run` a test starts.
/// Its LAN port runs the pass-through XDP program, so the frames it sends with XDP_TX
/// arrive.
fn build_balancer(i: u8) -> Result<()> {
    let ns = balancer_ns(i);
    join_lan(&ns, &balancer_v4(i))?;
    sysctl_in(&ns, &["net.ipv4.ip_forward=1"])?;
    ip_in(&ns, &["route", "add", "default", "via", ROUTER_LAN_V4])?;
    for dir in [node_dir(i), node_bird_dir(i), node_bpffs(i)] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bpffs = node_bpffs(i);
    let bpffs = bpffs.to_str().context("non-UTF-8 path")?;
    if !is_mount_point(bpffs)? {
        run("mount", &["-t", "bpf", "bpf", bpffs])?;
    }
    Ok(())
}

/// `ns` (created here) on the LAN at `v4`/24: a veth made directly in `ns` and `lbc-lan`
/// (nothing appears in the root namespace), its LAN end a bridge port running the
/// pass-through XDP program, tx checksum offload off on both ends (see `hosts.rs`).
fn join_lan(ns: &str, v4: &str) -> Result<()> {
    new_namespace(ns)?;
    let port = lan_port(ns);
    veth(ns, IFACE, &mac(v4), LAN_NS, &port, &port_mac(v4))?;
    ip_in(LAN_NS, &["link", "set", &port, "master", BRIDGE])?;
    xdp_pass::attach_in(LAN_NS, &port)?;
    address(ns, IFACE, v4)
}

fn new_namespace(ns: &str) -> Result<()> {
    run("ip", &["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// A veth pair made in place, both ends up with tx checksum offload off.
fn veth(ns_a: &str, dev_a: &str, mac_a: &str, ns_b: &str, dev_b: &str, mac_b: &str) -> Result<()> {
    run(
        "ip",
        &[
            "link", "add", dev_a, "netns", ns_a, "address", mac_a, "type", "veth", "peer", "name", dev_b, "netns",
            ns_b, "address", mac_b,
        ],
    )?;
    for (ns, dev) in [(ns_a, dev_a), (ns_b, dev_b)] {
        exec_ok(ns, &["ethtool", "-K", dev, "tx", "off"])?;
        ip_in(ns, &["link", "set", dev, "up"])?;
    }
    Ok(())
}

fn address(ns: &str, dev: &str, v4: &str) -> Result<()> {
    ip_in(ns, &["addr", "add", &format!("{v4}/{PREFIX_V4}"), "dev", dev]).map(drop)
}

/// A host's MAC: 02 (locally administered), 00, then its IPv4 address in hex.
fn mac(v4: &str) -> String {
    let o = v4.parse::<Ipv4Addr>().map(|a| a.octets()).unwrap_or_default();
    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The LAN-side port of that host: the same with 06 in front, so captures tell them apart.
fn port_mac(v4: &str) -> String {
    format!("06{}", &mac(v4)[2..])
}

/// Cuts balancer i off the LAN as a pulled cable would: its bridge port goes down, so its
/// eth0 loses carrier, and its BGP session ends when the router's hold timer expires.
pub fn cut_link(i: u8) -> Result<()> {
    ip_in(LAN_NS, &["link", "set", &lan_port(&balancer_ns(i)), "down"]).map(drop)
}

/// Plugs balancer i's cable back in.
pub fn restore_link(i: u8) -> Result<()> {
    ip_in(LAN_NS, &["link", "set", &lan_port(&balancer_ns(i)), "up"]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_name_the_address() {
        assert_eq!(mac("10.61.0.11"), "02:00:0a:3d:00:0b");
        assert_eq!(port_mac("10.61.0.11"), "06:00:0a:3d:00:0b");
    }
}

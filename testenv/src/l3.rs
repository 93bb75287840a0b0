//! The L3 layout (`up` with `l3`): backends behind a router, in two subnets of their own,
//! beside the L2 network, which stays as it is.
//!
//! ```text
//!   lbt-client ─┬─ br0 ─┬─ lbt-lb eth0 172.20.0.10        (the L2 network, unchanged)
//!               │       └─ lbt-router eth0 172.20.0.1     (the way replies come back)
//!   lbt-lb eth1 10.40.0.10/24 ────── lbt-router eth1 10.40.0.1    (the balancer's server side)
//!                                    lbt-router eth2 10.41.0.1/24 ── lbt-far1 eth0 10.41.0.11
//!                                    lbt-router eth3 10.42.0.1/24 ── lbt-far2 eth0 10.42.0.12
//! ```
//! IPv6 the same in fd00:40::/64, fd00:41::/64, fd00:42::/64 (host numbers as text), the
//! router on the L2 network at fd00:20::1. The balancer reaches the far subnets through the
//! router on its second NIC; the far servers' default route is the router, which reaches
//! the client on br0 directly: replies of direct-return services cross the router, never
//! the balancer. The balancer routes the VIPs out of eth1 too: the tunnelled health checks
//! (sent to a VIP, encapsulated on the way out) need a route out of an XDP interface.
//!
//! The far servers hold the VIPs on `lo`, like dsr servers; they get no decapsulation here:
//! a test starts `lb decap` on their eth0 when it wants it (and one without it is what a
//! misconfigured backend looks like).

use crate::hosts::{add_host, hold_vips_on_loopback};
use crate::netns::{exec_ok, ip_in, run, sysctl_in};
use crate::topology::{Host, IFACE, LB_NS, NS_PREFIX, VIP_V4, VIP_V6};
use crate::{servers, xdp_pass};
use anyhow::Result;

pub const ROUTER_NS: &str = "lbt-router";
/// The balancer's second NIC, toward the router.
pub const LB_SERVER_IFACE: &str = "eth1";
pub const LB_CORE_V4: &str = "10.40.0.10";
pub const LB_CORE_V6: &str = "fd00:40::10";
pub const ROUTER_CORE_V4: &str = "10.40.0.1";
pub const ROUTER_CORE_V6: &str = "fd00:40::1";
/// The router's address on the L2 network.
pub const ROUTER_V4: &str = "172.20.0.1";
pub const ROUTER_V6: &str = "fd00:20::1";
/// The router's NIC toward the balancer (runs the pass-through XDP program, so the
/// balancer's redirected frames arrive).
pub const ROUTER_CORE_IFACE: &str = "eth1";
/// Far servers built by `up`.
pub const FAR_SERVERS: u8 = 2;

/// Far server n (1 or 2) sits alone in subnet 10.4{n}.0.0/24.
pub fn far_ns(n: u8) -> String {
    format!("{NS_PREFIX}far{n}")
}

pub fn far_name(n: u8) -> String {
    format!("Far{n}")
}

pub fn far_v4(n: u8) -> String {
    format!("10.4{n}.0.{}", 10 + n)
}

pub fn far_v6(n: u8) -> String {
    format!("fd00:4{n}::{}", 10 + n)
}

/// The router's interface toward far server n, and its addresses there.
pub fn router_far_iface(n: u8) -> String {
    format!("eth{}", n + 1)
}

pub fn router_far_v4(n: u8) -> String {
    format!("10.4{n}.0.1")
}

pub fn router_far_v6(n: u8) -> String {
    format!("fd00:4{n}::1")
}

/// Adds the router, the balancer's second NIC and the far servers to a running L2 network.
pub(crate) fn build() -> Result<()> {
    add_host(&Host::extra(ROUTER_NS, 1))?;
    sysctl_in(
        ROUTER_NS,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            // Replies of direct-return services come from the VIP, which the router routes
            // nowhere (the VIP lives on the balancer): strict reverse-path filtering would
            // drop exactly the traffic this layout is for.
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    )?;
    link(LB_NS, LB_SERVER_IFACE, ROUTER_NS, ROUTER_CORE_IFACE, "40")?;
    address(LB_NS, LB_SERVER_IFACE, LB_CORE_V4, LB_CORE_V6)?;
    address(ROUTER_NS, ROUTER_CORE_IFACE, ROUTER_CORE_V4, ROUTER_CORE_V6)?;
    xdp_pass::attach_in(ROUTER_NS, ROUTER_CORE_IFACE)?;
    balancer_routes()?;
    let numbers: Vec<u8> = (1..=FAR_SERVERS).collect();
    for &n in &numbers {
        add_far_server(n)?;
    }
    let far: Vec<servers::Backend> = numbers.iter().map(|&n| far_backend(n)).collect();
    servers::start_backends(&far)
}

/// The balancer forwards (`bpf_fib_lookup` answers only where forwarding is on), reaches
/// the far subnets through the router and routes the VIPs out of eth1 (see the module doc).
fn balancer_routes() -> Result<()> {
    sysctl_in(LB_NS, &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
    for n in 1..=FAR_SERVERS {
        ip_in(LB_NS, &["route", "add", &format!("10.4{n}.0.0/24"), "via", ROUTER_CORE_V4])?;
        ip_in(LB_NS, &["-6", "route", "add", &format!("fd00:4{n}::/64"), "via", ROUTER_CORE_V6])?;
    }
    ip_in(LB_NS, &["route", "add", &format!("{VIP_V4}/32"), "via", ROUTER_CORE_V4])?;
    ip_in(LB_NS, &["-6", "route", "add", &format!("{VIP_V6}/128"), "via", ROUTER_CORE_V6])?;
    Ok(())
}

fn add_far_server(n: u8) -> Result<()> {
    let ns = far_ns(n);
    run("ip", &["netns", "add", &ns])?;
    ip_in(&ns, &["link", "set", "lo", "up"])?;
    link(&ns, IFACE, ROUTER_NS, &router_far_iface(n), &format!("4{n}"))?;
    address(&ns, IFACE, &far_v4(n), &far_v6(n))?;
    address(ROUTER_NS, &router_far_iface(n), &router_far_v4(n), &router_far_v6(n))?;
    ip_in(&ns, &["route", "add", "default", "via", &router_far_v4(n)])?;
    ip_in(&ns, &["-6", "route", "add", "default", "via", &router_far_v6(n)])?;
    hold_vips_on_loopback(&ns)
}

fn far_backend(n: u8) -> servers::Backend {
    servers::Backend { ns: far_ns(n), name: far_name(n), address: far_v4(n), key: format!("far{n}") }
}

/// A veth pair between two namespaces, made in place (nothing appears in the root
/// namespace), with MACs that name the subnet (02:00:0a:<subnet>:<side>) and the tx checksum
/// offload off on both sides (see `hosts.rs`), both up.
fn link(ns_a: &str, dev_a: &str, ns_b: &str, dev_b: &str, subnet: &str) -> Result<()> {
    let mac_a = format!("02:00:0a:{subnet}:00:0a");
    let mac_b = format!("02:00:0a:{subnet}:00:01");
    run(
        "ip",
        &[
            "link", "add", dev_a, "netns", ns_a, "address", &mac_a, "type", "veth", "peer", "name", dev_b, "netns",
            ns_b, "address", &mac_b,
        ],
    )?;
    for (ns, dev) in [(ns_a, dev_a), (ns_b, dev_b)] {
        exec_ok(ns, &["ethtool", "-K", dev, "tx", "off"])?;
        ip_in(ns, &["link", "set", dev, "up"])?;
    }
    Ok(())
}

fn address(ns: &str, dev: &str, v4: &str, v6: &str) -> Result<()> {
    ip_in(ns, &["addr", "add", &format!("{v4}/24"), "dev", dev])?;
    // nodad: usable at once instead of after ~1 s of duplicate detection.
    ip_in(ns, &["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_addresses_and_names() {
        assert_eq!((far_ns(1), far_v4(1), far_v6(1)), ("lbt-far1".into(), "10.41.0.11".into(), "fd00:41::11".into()));
        assert_eq!(
            (far_v4(2), router_far_v4(2), router_far_iface(2)),
            ("10.42.0.12".into(), "10.42.0.1".into(), "eth3".into())
        );
        assert_eq!(router_far_v6(1), "fd00:41::1");
        // IFNAMSIZ: every name fits.
        assert!(far_ns(9).len() < 16);
    }
}

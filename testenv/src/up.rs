//! Building the test network.

use crate::hosts::{add_host, hold_vips_on_loopback};
use crate::netns::{ip_in, run, sysctl_in};
use crate::topology::{
    server_ns, switch_port, Host, BRIDGE, CLIENT_NS, DSR_MARKER, IFACE, LB_V4, LB_V6, RUN_DIR, SERVERS, SWITCH_NS,
    VIP_V4, VIP_V6,
};
use crate::{servers, xdp_pass};
use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// Also put the VIPs on every server's `lo` (with ARP suppression), for
    /// services with `forwarding = "dsr"`.
    pub dsr: bool,
    /// Also build the L3 layout (`l3.rs`): a router, the LB's second NIC, far servers in
    /// two subnets behind the router.
    pub l3: bool,
}

/// Builds the whole network and starts the backends, after clearing whatever
/// an earlier run left. On error the partial network stays for inspection;
/// the next `up` or `down` clears it.
pub fn up(opts: &UpOptions) -> Result<()> {
    crate::down()?;
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    build_switch()?;
    let hosts = Host::all();
    for host in &hosts {
        add_host(host)?;
    }
    route_vips_via_lb()?;
    xdp_pass::install()?;
    for host in &hosts {
        xdp_pass::attach(&switch_port(&host.ns))?;
    }
    if opts.dsr {
        std::fs::write(DSR_MARKER, "").with_context(|| format!("writing {DSR_MARKER}"))?;
        for n in 1..=SERVERS {
            hold_vips_on_loopback(&server_ns(n))?;
        }
    }
    let numbers: Vec<u8> = (1..=SERVERS).collect();
    servers::start_all(&numbers)?;
    if opts.l3 {
        crate::l3::build()?;
    }
    Ok(())
}

/// Whether the network is (at least partly) up.
pub fn is_up() -> Result<bool> {
    crate::netns::namespace_exists(SWITCH_NS)
}

/// The switch: a namespace holding one bridge, a plain L2 device.
fn build_switch() -> Result<()> {
    run("ip", &["netns", "add", SWITCH_NS])?;
    ip_in(SWITCH_NS, &["link", "set", "lo", "up"])?;
    // A switch has no addresses: no IPv6 link-locals, router or MLD chatter.
    sysctl_in(SWITCH_NS, &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])?;
    // Without STP, ports forward as soon as they are up. Without multicast
    // snooping, IPv6 neighbour discovery is flooded like on a dumb switch
    // instead of depending on MLD reports having been seen.
    ip_in(SWITCH_NS, &["link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"])?;
    ip_in(SWITCH_NS, &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// The client reaches the VIPs through the LB, as through an upstream router;
/// everything else in 172.20.0.0/16 is on-link.
/// Another client on the running network: `ns` at 172.20.0.{host} / fd00:20::{host}
/// (host 3..=9: below the LB's .10), routing the VIPs via the LB like `lbt-client`. For tests
/// that need a second source (a flood beside a well-behaved client).
pub fn add_client(ns: &str, host: u8) -> Result<()> {
    if !(3..=9).contains(&host) {
        anyhow::bail!("client host number {host} is out of range 3..=9");
    }
    if !ns.starts_with(crate::topology::NS_PREFIX) {
        anyhow::bail!("{ns}: test namespaces start with {}", crate::topology::NS_PREFIX);
    }
    let host = Host::extra(ns, host);
    add_host(&host)?;
    route_vips_via_lb_from(&host.ns)?;
    xdp_pass::attach(&switch_port(&host.ns))
}

fn route_vips_via_lb() -> Result<()> {
    route_vips_via_lb_from(CLIENT_NS)
}

fn route_vips_via_lb_from(ns: &str) -> Result<()> {
    ip_in(ns, &["route", "add", &format!("{VIP_V4}/32"), "via", LB_V4, "dev", IFACE])?;
    ip_in(ns, &["-6", "route", "add", &format!("{VIP_V6}/128"), "via", LB_V6, "dev", IFACE])?;
    Ok(())
}

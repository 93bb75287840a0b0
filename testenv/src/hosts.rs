//! One host of the test network: its namespace, its veth to the switch, its addresses, and
//! (for dsr) the VIPs on its loopback. Used when the network comes up and when a server or
//! client joins it later.

use crate::netns::{exec_ok, ip_in, run, sysctl_in};
use crate::topology::{switch_port, Host, BRIDGE, IFACE, PREFIX_V4, PREFIX_V6, SWITCH_NS, VIP_V4, VIP_V6};
use anyhow::Result;

/// One host: its namespace, a veth pair created directly in the two
/// namespaces (nothing ever appears in the root namespace), the switch port
/// on the bridge, and eth0 configured.
pub(crate) fn add_host(host: &Host) -> Result<()> {
    let port = switch_port(&host.ns);
    run("ip", &["netns", "add", &host.ns])?;
    run(
        "ip",
        &[
            "link", "add", IFACE, "netns", &host.ns, "address", &host.mac, "type", "veth", "peer", "name", &port,
            "netns", SWITCH_NS,
        ],
    )?;
    ip_in(SWITCH_NS, &["link", "set", &port, "master", BRIDGE])?;
    no_tx_checksum_offload(SWITCH_NS, &port)?;
    ip_in(SWITCH_NS, &["link", "set", &port, "up"])?;
    configure_eth0(host)
}

fn configure_eth0(host: &Host) -> Result<()> {
    let ns = host.ns.as_str();
    ip_in(ns, &["link", "set", "lo", "up"])?;
    ip_in(ns, &["addr", "add", &format!("{}/{PREFIX_V4}", host.v4), "dev", IFACE])?;
    // nodad: usable at once instead of after ~1 s of duplicate detection.
    ip_in(ns, &["addr", "add", &format!("{}/{PREFIX_V6}", host.v6), "dev", IFACE, "nodad"])?;
    no_tx_checksum_offload(ns, IFACE)?;
    ip_in(ns, &["link", "set", IFACE, "up"])?;
    Ok(())
}

/// Kernel rule: a veth hands its peer skbs in CHECKSUM_PARTIAL state, the
/// checksum not yet filled in. An XDP program sees only the bytes, and a frame
/// it rewrites and sends (XDP_TX) loses that state, so it arrives with a wrong
/// checksum. With tx checksum offload off, senders fill in every checksum.
/// On switch ports too, as a safety net for frames the bridge forwards.
fn no_tx_checksum_offload(ns: &str, dev: &str) -> Result<()> {
    exec_ok(ns, &["ethtool", "-K", dev, "tx", "off"]).map(drop)
}

/// DSR: the server accepts packets for the VIP (the LB changed only the MAC)
/// and answers the client from the VIP directly. Only the LB may answer ARP
/// for the VIP: arp_ignore=1 answers only for addresses on the receiving
/// interface (the VIP is on lo), arp_announce=2 never uses the VIP as the
/// source of the server's own ARP requests. Both `all` and eth0, because the
/// kernel uses the larger (arp_ignore: max) of the two. IPv6 needs nothing:
/// the kernel answers neighbour solicitations only for addresses on the
/// receiving interface.
pub(crate) fn hold_vips_on_loopback(ns: &str) -> Result<()> {
    sysctl_in(
        ns,
        &[
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            &format!("net.ipv4.conf.{IFACE}.arp_ignore=1"),
            &format!("net.ipv4.conf.{IFACE}.arp_announce=2"),
        ],
    )?;
    ip_in(ns, &["addr", "add", &format!("{VIP_V4}/32"), "dev", "lo"])?;
    ip_in(ns, &["addr", "add", &format!("{VIP_V6}/128"), "dev", "lo", "nodad"])?;
    Ok(())
}

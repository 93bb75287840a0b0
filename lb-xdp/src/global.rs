//! The data path's daemon-wide settings (`LB_CONFIG`): SNAT addresses and ports, idle
//! timeouts, from the config with the interface's addresses as defaults.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{bail, Result};
use lb_common::maps::GlobalConfig;
use lb_config::{Config, Forwarding};

use crate::host::interface_addresses;

/// How long a TCP flow lives on after its FIN or RST, for the last ACKs and retransmits.
const TCP_CLOSING: Duration = Duration::from_secs(10);

pub fn global_config(cfg: &Config, interface: &str) -> Result<GlobalConfig> {
    let (if_v4, if_v6) = interface_addresses(interface)?;
    global_config_from(cfg, interface, if_v4, if_v6)
}

/// The data path's settings from the config, with the interface's addresses as the SNAT
/// defaults.
pub fn global_config_from(
    cfg: &Config,
    interface: &str,
    if_v4: Option<Ipv4Addr>,
    if_v6: Option<Ipv6Addr>,
) -> Result<GlobalConfig> {
    let d = &cfg.daemon;
    let v4 = d.snat_ipv4.or(if_v4);
    let v6 = d.snat_ipv6.or(if_v6);
    for s in cfg.services.iter().filter(|s| s.forwarding == Forwarding::Nat) {
        if s.vip.is_ipv4() && v4.is_none() {
            bail!("service {}: nat needs an IPv4 SNAT address; {interface} has none, set daemon.snat_ipv4", s.name);
        }
        if s.vip.is_ipv6() && v6.is_none() {
            bail!(
                "service {}: nat needs an IPv6 SNAT address; {interface} has no global one, set daemon.snat_ipv6",
                s.name
            );
        }
    }
    let v4_word = v4.map_or(0, |a| u32::from_ne_bytes(a.octets()));
    let v6_words = v6.map_or([0; 4], |a| lb_common::addr::ip_words(IpAddr::V6(a)).0);
    Ok(GlobalConfig {
        tcp_idle_ns: d.tcp_idle_timeout.as_nanos() as u64,
        udp_idle_ns: d.udp_idle_timeout.as_nanos() as u64,
        tcp_closing_ns: TCP_CLOSING.min(d.tcp_idle_timeout).as_nanos() as u64,
        snat_v6: v6_words,
        snat_v4: v4_word,
        snat_port_min: d.snat_ports.start,
        snat_port_max: d.snat_ports.end,
        lb_mac: [0; 6],
        configured: 1,
        _pad: 0,
    })
}

//! The data path's daemon-wide settings (`LB_CONFIG`): SNAT addresses and ports, idle,
//! handshake and unreplied timeouts, the interface's MAC, the encapsulation settings (outer
//! source prefixes, GUE port, tunnel MTU), from the config with the interface's addresses
//! and MTU as defaults; across a change of `snat_ports`, the range the live flows got their
//! ports from; and the daemon's random SNAT probe seed.
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
    let mut g = global_config_from(cfg, interface, if_v4, if_v6)?;
    g.if_mac = interface_mac(interface)?;
    if g.tunnel_mtu == 0 && cfg.services.iter().any(|s| s.forwarding.encapsulates()) {
        g.tunnel_mtu = interface_mtu(interface)?;
        check_tunnel_mtu(cfg, g.tunnel_mtu, interface)?;
    }
    Ok(g)
}

/// The interface's MTU (`/sys/class/net/IF/mtu`): the default `tunnel_mtu`.
fn interface_mtu(interface: &str) -> Result<u32> {
    let path = format!("/sys/class/net/{interface}/mtu");
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
    text.trim().parse().map_err(|_| anyhow::anyhow!("{path}: {:?} is not an MTU", text.trim()))
}

/// An interface MTU taken as the tunnel's must pass the rule a written `tunnel_mtu` passes
/// in `lb check` (lb-config's `tunnel_mtu_fits`), checked here because only the daemon
/// knows it.
fn check_tunnel_mtu(cfg: &Config, mtu: u32, interface: &str) -> Result<()> {
    use lb_common::consts::{FAMILY_V4, FAMILY_V6, FWD_GUE, FWD_IPIP};
    for s in cfg.services.iter().filter(|s| s.forwarding.encapsulates()) {
        let outer_v6 = s.vip.is_ipv6() || s.backends.iter().any(|b| b.address.is_ipv6());
        let fwd = if s.forwarding == Forwarding::Gue { FWD_GUE } else { FWD_IPIP };
        let overhead = lb_common::encap::overhead(fwd, if outer_v6 { FAMILY_V6 } else { FAMILY_V4 }) as u32;
        let min = if s.vip.is_ipv6() { lb_config::MIN_TUNNEL_MTU_V6 } else { lb_config::MIN_TUNNEL_MTU_V4 };
        if mtu < min + overhead {
            bail!(
                "service {}: {interface}'s MTU {mtu} is too small for any encapsulation ({} adds {overhead} bytes \
                 to packets of up to {min}); raise the MTU or set daemon.tunnel_mtu",
                s.name,
                s.forwarding.as_str()
            );
        }
    }
    Ok(())
}

/// A fresh random seed for the SNAT probe order, drawn once per daemon (at start); a
/// reload keeps it (`keep_daemon_seed`). Never 0, so "not drawn yet" stays recognisable.
pub fn fresh_seed() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let seed = if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        // No entropy source: still per daemon and per start, if not secret.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
    };
    seed.max(1)
}

/// `next` with the seed the running settings already have: one seed per daemon.
pub fn keep_daemon_seed(running: &GlobalConfig, mut next: GlobalConfig) -> GlobalConfig {
    next.snat_seed = running.snat_seed;
    next
}

/// The interface's own MAC (`/sys/class/net/IF/address`): every frame the data path sends
/// leaves from it.
fn interface_mac(interface: &str) -> Result<[u8; 6]> {
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
    parse_mac(text.trim()).ok_or_else(|| anyhow::anyhow!("{path}: {:?} is not a MAC address", text.trim()))
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
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
    let (encap_v4, encap_len_v4) = encap_source(d.encap_source_ipv4, v4.map(IpAddr::V4));
    let (encap_v6, encap_len_v6) = encap_source(d.encap_source_ipv6, v6.map(IpAddr::V6));
    for s in cfg.services.iter().filter(|s| s.forwarding.encapsulates()) {
        let outer_v4 = s.vip.is_ipv4() && (s.backends.is_empty() || s.backends.iter().any(|b| b.address.is_ipv4()));
        let outer_v6 = s.vip.is_ipv6() || s.backends.iter().any(|b| b.address.is_ipv6());
        if outer_v4 && encap_len_v4.is_none() {
            bail!(
                "service {}: {} needs an outer IPv4 source; {interface} has no IPv4 address, set \
                 daemon.encap_source_ipv4 or daemon.snat_ipv4",
                s.name,
                s.forwarding.as_str()
            );
        }
        if outer_v6 && encap_len_v6.is_none() {
            bail!(
                "service {}: {} needs an outer IPv6 source; {interface} has no global IPv6 address, set \
                 daemon.encap_source_ipv6 or daemon.snat_ipv6",
                s.name,
                s.forwarding.as_str()
            );
        }
    }
    Ok(GlobalConfig {
        tcp_idle_ns: d.tcp_idle_timeout.as_nanos() as u64,
        udp_idle_ns: d.udp_idle_timeout.as_nanos() as u64,
        tcp_closing_ns: TCP_CLOSING.min(d.tcp_idle_timeout).as_nanos() as u64,
        tcp_handshake_ns: d.tcp_handshake_timeout.as_nanos() as u64,
        udp_unreplied_ns: d.udp_unreplied_timeout.as_nanos() as u64,
        snat_v6: v6_words,
        snat_v4: v4_word,
        snat_port_min: d.snat_ports.start,
        snat_port_max: d.snat_ports.end,
        prev_snat_port_min: 0,
        prev_snat_port_max: 0,
        _pad_ports: [0; 2],
        configured: 1,
        _pad: 0,
        // Set by the caller: the seed once per daemon, the MAC from the interface.
        snat_seed: 0,
        if_mac: [0; 6],
        _pad_mac: [0; 6],
        encap_src_v6: lb_common::addr::ip_words(encap_v6).0,
        encap_src_v4: lb_common::addr::ip_words(encap_v4).0[0],
        // 0 until the caller reads the interface's MTU (`global_config`).
        tunnel_mtu: d.tunnel_mtu.unwrap_or(0),
        gue_port: d.gue_port,
        encap_len_v4: encap_len_v4.unwrap_or(0),
        encap_len_v6: encap_len_v6.unwrap_or(0),
        _pad_encap: [0; 4],
    })
}

/// The outer source prefix of one family, in packet order, and its length: the configured
/// one, else the SNAT address alone (routable, and what uRPF filters on the way accept).
/// `None` for the length: this family has neither (unspecified address).
fn encap_source(configured: Option<lb_config::Cidr>, snat: Option<IpAddr>) -> (IpAddr, Option<u8>) {
    match (configured, snat) {
        (Some(prefix), _) => (prefix.network(), Some(prefix.prefix_len())),
        (None, Some(ip)) => (ip, Some(if ip.is_ipv4() { 32 } else { 128 })),
        (None, None) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), None),
    }
}

/// The settings to write over `running` (what the data path has now, from the last reload
/// or, on adoption, from the pins): `next`, plus the SNAT port range live flows may still
/// hold. A nat flow keeps its port for life, and its replies are only recognised in a
/// range the data path knows, so when `snat_ports` changes the range it had stays valid
/// for replies as the previous one, until the next change. One range is remembered: a flow
/// that got its port two changes ago loses its replies (as a flow to a removed backend
/// does). A range the new one covers needs no remembering.
pub fn keep_live_snat_ports(running: &GlobalConfig, mut next: GlobalConfig) -> GlobalConfig {
    if running.configured == 0 {
        return next;
    }
    let candidates =
        [(running.snat_port_min, running.snat_port_max), (running.prev_snat_port_min, running.prev_snat_port_max)];
    let (min, max) = candidates
        .into_iter()
        .filter(|&(_, max)| max != 0)
        .find(|&(min, max)| min < next.snat_port_min || max > next.snat_port_max)
        .unwrap_or((0, 0));
    next.prev_snat_port_min = min;
    next.prev_snat_port_max = max;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(min: u16, max: u16) -> GlobalConfig {
        GlobalConfig { snat_port_min: min, snat_port_max: max, configured: 1, ..Default::default() }
    }

    fn prev(g: &GlobalConfig) -> (u16, u16) {
        (g.prev_snat_port_min, g.prev_snat_port_max)
    }

    #[test]
    fn macs_parse_as_sysfs_writes_them() {
        assert_eq!(parse_mac("02:00:00:00:00:1a"), Some([2, 0, 0, 0, 0, 0x1a]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:00:00"), None);
    }

    #[test]
    fn seeds_differ_between_daemons_and_a_reload_keeps_its_own() {
        let (a, b) = (fresh_seed(), fresh_seed());
        assert_ne!(a, b, "two draws of 32 random bits");
        let running = GlobalConfig { snat_seed: a, ..ports(1, 2) };
        assert_eq!(keep_daemon_seed(&running, ports(3, 4)).snat_seed, a);
    }

    #[test]
    fn a_fresh_start_has_no_previous_range() {
        assert_eq!(prev(&keep_live_snat_ports(&GlobalConfig::default(), ports(20000, 32767))), (0, 0));
    }

    #[test]
    fn a_changed_range_keeps_the_old_one_for_replies() {
        let after = keep_live_snat_ports(&ports(20000, 32767), ports(40000, 40999));
        assert_eq!((after.snat_port_min, after.snat_port_max), (40000, 40999));
        assert_eq!(prev(&after), (20000, 32767));
        assert!(after.is_snat_port(20000) && after.is_snat_port(40999));
    }

    #[test]
    fn an_unrelated_reload_keeps_the_previous_range() {
        let changed = keep_live_snat_ports(&ports(20000, 32767), ports(40000, 40999));
        let again = keep_live_snat_ports(&changed, ports(40000, 40999));
        assert_eq!(prev(&again), (20000, 32767));
    }

    #[test]
    fn a_range_the_new_one_covers_is_not_remembered() {
        assert_eq!(prev(&keep_live_snat_ports(&ports(21000, 22000), ports(20000, 32767))), (0, 0));
        // Grown back over the previous range as well: nothing left to remember.
        let shrunk = keep_live_snat_ports(&ports(20000, 32767), ports(20000, 25000));
        assert_eq!(prev(&shrunk), (20000, 32767));
        assert_eq!(prev(&keep_live_snat_ports(&shrunk, ports(20000, 32767))), (0, 0));
    }

    #[test]
    fn a_second_change_remembers_the_range_just_left() {
        let b = keep_live_snat_ports(&ports(20000, 20999), ports(30000, 30999));
        let c = keep_live_snat_ports(&b, ports(40000, 40999));
        assert_eq!(prev(&c), (30000, 30999));
        // Back to the first range while the second still has flows: the second stays valid.
        let back = keep_live_snat_ports(&b, ports(20000, 20999));
        assert_eq!(prev(&back), (30000, 30999));
    }

    #[test]
    fn a_range_that_grew_over_the_current_keeps_the_uncovered_previous_one() {
        // 20000-20999 → 30000-30999 → 30000-31999: the first range still has live flows.
        let b = keep_live_snat_ports(&ports(20000, 20999), ports(30000, 30999));
        let grown = keep_live_snat_ports(&b, ports(30000, 31999));
        assert_eq!(prev(&grown), (20000, 20999));
    }

    fn config(text: &str) -> Config {
        Config::from_str(text, "test.toml").unwrap()
    }

    const ENCAP: &str = "[[service]]\nname = \"t\"\nvip = \"172.20.0.100:80\"\nforwarding = \"gue\"\n\
                         [[service.backend]]\naddress = \"[fd00:30::11]:80\"\n";

    #[test]
    fn encapsulation_sources_default_to_the_snat_addresses_alone() {
        let v4: Ipv4Addr = "172.20.0.10".parse().unwrap();
        let v6: Ipv6Addr = "fd00:20::10".parse().unwrap();
        let g = global_config_from(&config(ENCAP), "eth0", Some(v4), Some(v6)).unwrap();
        assert_eq!((g.encap_src_v4.to_ne_bytes(), g.encap_len_v4), (v4.octets(), 32));
        assert_eq!((g.encap_src_v6, g.encap_len_v6), (lb_common::addr::ip_words(IpAddr::V6(v6)).0, 128));
        assert_eq!((g.gue_port, g.tunnel_mtu), (6080, 0), "MTU 0 until the interface's is read");
    }

    #[test]
    fn configured_encapsulation_settings_reach_the_data_path() {
        let text = format!(
            "[daemon]\nencap_source_ipv4 = \"172.31.0.0/16\"\nencap_source_ipv6 = \"fd00:31::/64\"\n\
             gue_port = 7777\ntunnel_mtu = 9000\n{ENCAP}"
        );
        let g = global_config_from(&config(&text), "eth0", Some("172.20.0.10".parse().unwrap()), None).unwrap();
        assert_eq!((g.encap_src_v4.to_ne_bytes(), g.encap_len_v4), ([172, 31, 0, 0], 16));
        assert_eq!(g.encap_len_v6, 64);
        assert_eq!(g.encap_src_v6[0].to_ne_bytes(), [0xfd, 0, 0, 0x31]);
        assert_eq!((g.gue_port, g.tunnel_mtu), (7777, 9000));
    }

    #[test]
    fn an_encapsulating_service_needs_an_outer_source_of_its_backends_family() {
        let err = global_config_from(&config(ENCAP), "eth0", Some("172.20.0.10".parse().unwrap()), None).unwrap_err();
        assert!(err.to_string().contains("service t: gue needs an outer IPv6 source"), "{err}");
    }

    #[test]
    fn an_interface_mtu_too_small_for_the_tunnel_is_refused() {
        let c = config(ENCAP);
        // 4-in-6 gue: 68 + 48.
        assert!(check_tunnel_mtu(&c, 116, "eth0").is_ok());
        let err = check_tunnel_mtu(&c, 115, "eth0").unwrap_err();
        assert!(err.to_string().contains("eth0's MTU 115 is too small for any encapsulation"), "{err}");
    }
}

//! Next-hop MACs for backends, from the kernel's neighbour table. The data path rewrites
//! the destination MAC to these; a backend whose MAC is not known yet gets no traffic
//! (counted as `no_neighbor`) until the next refresh finds it.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct NeighEntry {
    dst: IpAddr,
    lladdr: Option<String>,
}

#[derive(Deserialize)]
struct RouteEntry {
    gateway: Option<IpAddr>,
}

/// The kernel's resolved neighbours on `interface` (REACHABLE, STALE, DELAY, PERMANENT...).
pub fn table(interface: &str) -> Result<HashMap<IpAddr, [u8; 6]>> {
    let out =
        Command::new("ip").args(["-j", "neigh", "show", "dev", interface]).output().context("running `ip neigh`")?;
    let entries: Vec<NeighEntry> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(entries.into_iter().filter_map(|e| Some((e.dst, parse_mac(e.lladdr.as_deref()?)?))).collect())
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The address whose MAC a packet to `ip` needs: `ip` itself when on-link, else its gateway.
pub fn next_hop(ip: IpAddr) -> IpAddr {
    let out = Command::new("ip").args(["-j", "route", "get", &ip.to_string()]).output();
    out.ok()
        .and_then(|o| serde_json::from_slice::<Vec<RouteEntry>>(&o.stdout).ok())
        .and_then(|r| r.into_iter().next()?.gateway)
        .unwrap_or(ip)
}

/// Make the kernel resolve `ip`: a one-byte UDP datagram to the discard port. The packet
/// itself is harmless (at worst an ICMP port unreachable comes back); the ARP/ND exchange
/// it triggers is what fills the neighbour table.
pub fn solicit(ip: IpAddr) {
    let bind: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    if let Ok(sock) = UdpSocket::bind(bind) {
        let _ = sock.send_to(&[0], SocketAddr::new(ip, 9));
    }
}

/// MACs for every backend address we can resolve now; solicits the ones we cannot, so a
/// later call finds them.
pub fn resolve(interface: &str, backends: impl IntoIterator<Item = IpAddr>) -> Result<HashMap<IpAddr, [u8; 6]>> {
    let known = table(interface)?;
    let mut out = HashMap::new();
    for ip in backends {
        let hop = if known.contains_key(&ip) { ip } else { next_hop(ip) };
        match known.get(&hop) {
            Some(mac) => {
                out.insert(ip, *mac);
            }
            None => solicit(hop),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_garbage_does_not() {
        assert_eq!(parse_mac("02:00:ac:14:00:0b"), Some([2, 0, 0xac, 0x14, 0, 0x0b]));
        assert_eq!(parse_mac("02:00:ac:14:00"), None);
        assert_eq!(parse_mac("02:00:ac:14:00:0b:00"), None);
        assert_eq!(parse_mac("zz:00:ac:14:00:0b"), None);
    }
}

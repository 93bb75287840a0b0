//! Next-hop MACs for backends, from the kernel's neighbour table. The data path rewrites
//! the destination MAC to these; a backend whose MAC is not known yet gets no traffic
//! (counted as `no_neighbor`) until the next refresh finds it.
//!
//! A refresh runs every second and at every reconcile, so it must be cheap: the IPv4 table
//! is read from `/proc/net/arp` (no process), the IPv6 one with a single `ip -j -6 neigh`
//! and only when there are IPv6 backends; a backend that is not itself a resolved
//! neighbour has its next hop (itself, or its gateway) looked up once and kept for
//! `ROUTE_TTL`; only the next hops still unresolved are solicited, each at most once per
//! `SOLICIT_EVERY`.
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Deserialize;

/// How long a backend's next hop is trusted before it is looked up again (a route change
/// is noticed within this).
pub const ROUTE_TTL: Duration = Duration::from_secs(30);
/// An unresolved next hop is solicited at most this often.
pub const SOLICIT_EVERY: Duration = Duration::from_secs(1);

/// What the resolver asks of the host (a trait so tests can count the asking).
pub trait NeighbourHost {
    /// The resolved neighbours on any of `interfaces` of the families asked for.
    fn table(&mut self, interfaces: &[String], v4: bool, v6: bool) -> Result<HashMap<IpAddr, [u8; 6]>>;
    /// The address whose MAC a packet to `ip` needs: `ip` itself when on-link, else its gateway.
    fn next_hop(&mut self, ip: IpAddr) -> IpAddr;
    /// Make the kernel resolve `ip`.
    fn solicit(&mut self, ip: IpAddr);
}

/// The real host: `/proc/net/arp`, `ip -j -6 neigh`, `ip -j route get`, a UDP datagram.
pub struct Kernel;

impl NeighbourHost for Kernel {
    fn table(&mut self, interfaces: &[String], v4: bool, v6: bool) -> Result<HashMap<IpAddr, [u8; 6]>> {
        let mut out = HashMap::new();
        if v4 {
            let text = std::fs::read_to_string("/proc/net/arp").context("reading /proc/net/arp")?;
            out.extend(parse_arp(&text, interfaces));
        }
        for interface in interfaces.iter().filter(|_| v6) {
            let o = Command::new("ip")
                .args(["-j", "-6", "neigh", "show", "dev", interface])
                .output()
                .context("running `ip -6 neigh`")?;
            let entries: Vec<NeighEntry> = serde_json::from_slice(&o.stdout).unwrap_or_default();
            out.extend(entries.into_iter().filter_map(|e| Some((e.dst, parse_mac(e.lladdr.as_deref()?)?))));
        }
        Ok(out)
    }

    fn next_hop(&mut self, ip: IpAddr) -> IpAddr {
        let out = Command::new("ip").args(["-j", "route", "get", &ip.to_string()]).output();
        out.ok()
            .and_then(|o| serde_json::from_slice::<Vec<RouteEntry>>(&o.stdout).ok())
            .and_then(|r| r.into_iter().next()?.gateway)
            .unwrap_or(ip)
    }

    /// A one-byte UDP datagram to the discard port. The packet itself is harmless (at worst
    /// an ICMP port unreachable comes back); the ARP/ND exchange it triggers is what fills
    /// the neighbour table.
    fn solicit(&mut self, ip: IpAddr) {
        let bind: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
        if let Ok(sock) = UdpSocket::bind(bind) {
            let _ = sock.send_to(&[0], SocketAddr::new(ip, 9));
        }
    }
}

#[derive(Deserialize)]
struct NeighEntry {
    dst: IpAddr,
    lladdr: Option<String>,
}

#[derive(Deserialize)]
struct RouteEntry {
    gateway: Option<IpAddr>,
}

/// Complete entries of `/proc/net/arp` on any of `interfaces` (flag ATF_COM, 0x2).
pub fn parse_arp(text: &str, interfaces: &[String]) -> HashMap<IpAddr, [u8; 6]> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [ip, _hw_type, flags, mac, _mask, dev] = f.as_slice() else { return None };
            let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
            if !interfaces.iter().any(|i| i == dev) || flags & 0x2 == 0 {
                return None;
            }
            Some((ip.parse().ok()?, parse_mac(mac)?))
        })
        .collect()
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Backends' next hops as last looked up, and when each unresolved one was last solicited.
#[derive(Default)]
pub struct Resolver {
    routes: HashMap<IpAddr, (IpAddr, Instant)>,
    solicited: HashMap<IpAddr, Instant>,
}

impl Resolver {
    /// MACs for every backend address that can be resolved now; solicits the next hops
    /// that cannot, so a later call finds them.
    pub fn resolve(
        &mut self,
        host: &mut impl NeighbourHost,
        interfaces: &[String],
        backends: impl IntoIterator<Item = IpAddr>,
        now: Instant,
    ) -> Result<HashMap<IpAddr, [u8; 6]>> {
        let backends: HashSet<IpAddr> = backends.into_iter().collect();
        self.routes.retain(|ip, (_, at)| backends.contains(ip) && now.duration_since(*at) < ROUTE_TTL);
        // A next hop is of its backend's family.
        let (v4, v6) = (backends.iter().any(IpAddr::is_ipv4), backends.iter().any(IpAddr::is_ipv6));
        let known = if v4 || v6 { host.table(interfaces, v4, v6)? } else { HashMap::new() };
        let mut out = HashMap::new();
        let mut unresolved = HashSet::new();
        for &ip in &backends {
            // On-link and resolved: no route to look up.
            if let Some(mac) = known.get(&ip) {
                out.insert(ip, *mac);
                continue;
            }
            let (hop, _) = *self.routes.entry(ip).or_insert_with(|| (host.next_hop(ip), now));
            match known.get(&hop) {
                Some(mac) => {
                    out.insert(ip, *mac);
                }
                None => {
                    unresolved.insert(hop);
                    self.solicit_now_and_then(host, hop, now);
                }
            }
        }
        self.solicited.retain(|hop, _| unresolved.contains(hop));
        Ok(out)
    }

    fn solicit_now_and_then(&mut self, host: &mut impl NeighbourHost, hop: IpAddr, now: Instant) {
        if self.solicited.get(&hop).is_some_and(|at| now.duration_since(*at) < SOLICIT_EVERY) {
            return;
        }
        host.solicit(hop);
        self.solicited.insert(hop, now);
    }
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

    #[test]
    fn the_arp_table_gives_complete_entries_of_the_interfaces() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    172.20.0.11      0x1         0x2         02:00:ac:14:00:0b     *        lb0\n\
                    172.20.0.12      0x1         0x0         00:00:00:00:00:00     *        lb0\n\
                    172.20.0.13      0x1         0x2         02:00:ac:14:00:0d     *        eth9\n\
                    garbage\n";
        let t = parse_arp(text, &nics(&["lb0"]));
        assert_eq!(t.len(), 1);
        assert_eq!(t[&"172.20.0.11".parse::<IpAddr>().unwrap()], [2, 0, 0xac, 0x14, 0, 0x0b]);
        // Several NICs: the complete entries of each.
        let t = parse_arp(text, &nics(&["lb0", "eth9"]));
        assert_eq!(t.len(), 2);
        assert_eq!(t[&"172.20.0.13".parse::<IpAddr>().unwrap()], [2, 0, 0xac, 0x14, 0, 0x0d]);
    }

    fn nics(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// A host whose gateway 10.0.0.1 is resolved, and that counts what it is asked.
    #[derive(Default)]
    struct Counting {
        tables: usize,
        routes: usize,
        solicits: Vec<IpAddr>,
    }

    impl NeighbourHost for Counting {
        fn table(&mut self, _: &[String], _: bool, _: bool) -> Result<HashMap<IpAddr, [u8; 6]>> {
            self.tables += 1;
            Ok([("10.0.0.1".parse().unwrap(), [2, 0, 0, 0, 0, 1])].into())
        }
        fn next_hop(&mut self, ip: IpAddr) -> IpAddr {
            self.routes += 1;
            match ip {
                IpAddr::V4(v4) if v4.octets()[0] == 192 => ip,
                _ => "10.0.0.1".parse().unwrap(),
            }
        }
        fn solicit(&mut self, ip: IpAddr) {
            self.solicits.push(ip);
        }
    }

    #[test]
    fn a_refresh_reads_the_table_once_looks_routes_up_once_and_solicits_only_the_unresolved() {
        let mut host = Counting::default();
        let mut r = Resolver::default();
        // 100 backends behind the gateway, one on-link that does not answer.
        let mut backends: Vec<IpAddr> = (0..100u8).map(|i| IpAddr::from([10, 1, 0, i])).collect();
        backends.push("192.168.0.9".parse().unwrap());
        let t0 = Instant::now();
        let macs = r.resolve(&mut host, &nics(&["lb0"]), backends.clone(), t0).unwrap();
        assert_eq!(macs.len(), 100, "all behind the gateway resolve through its MAC");
        assert_eq!((host.tables, host.routes), (1, 101));
        assert_eq!(host.solicits, ["192.168.0.9".parse::<IpAddr>().unwrap()]);
        for tick in 1..=5 {
            r.resolve(&mut host, &nics(&["lb0"]), backends.clone(), t0 + Duration::from_millis(200 * tick)).unwrap();
        }
        assert_eq!(host.tables, 6, "one table read per refresh");
        assert_eq!(host.routes, 101, "no route lookup while the routes are fresh");
        assert_eq!(host.solicits.len(), 2, "the unresolved hop, once a second");
        r.resolve(&mut host, &nics(&["lb0"]), backends, t0 + ROUTE_TTL).unwrap();
        assert_eq!(host.routes, 202, "routes looked up again after ROUTE_TTL");
        // A backend that is itself a resolved neighbour needs no route at all.
        let mut fresh = Resolver::default();
        fresh.resolve(&mut host, &nics(&["lb0"]), ["10.0.0.1".parse().unwrap()], t0).unwrap();
        assert_eq!(host.routes, 202);
    }
}

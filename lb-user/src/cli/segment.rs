//! `lb check`'s look at the host for `forwarding = "dsr"`: L2 dsr changes only the MACs of
//! a frame still addressed to the VIP, so a backend must sit on a subnet connected to one
//! of the balancer's NICs (`daemon.interface`). Behind a router the frame would reach the
//! router, which routes the VIP elsewhere (back to the balancer, or nowhere); `ipip` and
//! `gue` are the forwarding modes for such backends.
//!
//! Error or warning: validation (what `lb run` and reloads use) cannot know the host, so
//! this is `lb check`'s own look, made where it runs. When the configured NICs are on this
//! host and none of them has the backend's subnet, the config cannot work here: an error.
//! When a configured NIC is missing (`lb check` on a build machine, or a NIC not created
//! yet) nothing can be concluded about the backends it might reach: a warning, which does
//! not fail the check.
use std::net::IpAddr;

use lb_config::{Config, Diagnostic, Forwarding, Position};

/// An address of the host with its prefix length: the subnet it connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub nic: String,
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Subnet {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => same_prefix(&a.octets(), &b.octets(), self.prefix),
            (IpAddr::V6(a), IpAddr::V6(b)) => same_prefix(&a.octets(), &b.octets(), self.prefix),
            _ => false,
        }
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.addr, self.prefix, self.nic)
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let whole = (prefix / 8) as usize;
    let rest = prefix % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// The host as this check sees it: which configured NICs exist, and their subnets.
pub struct Host {
    pub present: Vec<String>,
    pub subnets: Vec<Subnet>,
}

impl Host {
    /// The configured NICs found on this host, with their addresses (link-local ones left out:
    /// no backend is addressed by one).
    pub fn read(interfaces: &[String]) -> Host {
        use network_interface::{Addr, NetworkInterface, NetworkInterfaceConfig};
        let all = NetworkInterface::show().unwrap_or_default();
        let mut present: Vec<String> = Vec::new();
        let mut subnets = Vec::new();
        for nic in all.iter().filter(|n| interfaces.contains(&n.name)) {
            if !present.contains(&nic.name) {
                present.push(nic.name.clone());
            }
            for a in &nic.addr {
                let (addr, prefix) = match a {
                    Addr::V4(a) => (IpAddr::V4(a.ip), a.netmask.map(|m| u32::from(m).count_ones())),
                    Addr::V6(a) => (IpAddr::V6(a.ip), a.netmask.map(|m| u128::from(m).count_ones())),
                };
                if let (Some(prefix), false) = (prefix, is_link_local(addr)) {
                    subnets.push(Subnet { nic: nic.name.clone(), addr, prefix: prefix as u8 });
                }
            }
        }
        Host { present, subnets }
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// What the check found: errors (the check fails) and warnings.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Every dsr backend of `cfg` that is not on a subnet of `host`, at its position in the
/// file (`positions`, from `Config::backend_positions`).
pub fn dsr_backends(cfg: &Config, origin: &str, positions: &[Vec<Position>], host: &Host) -> Findings {
    let mut found = Findings::default();
    let nics = &cfg.daemon.interfaces;
    if nics.is_empty() {
        return found;
    }
    let missing: Vec<&String> = nics.iter().filter(|n| !host.present.contains(n)).collect();
    let at = |si: usize, bi: usize, message: String| Diagnostic {
        file: origin.to_string(),
        position: positions.get(si).and_then(|b| b.get(bi)).copied(),
        message,
    };
    for (si, s) in cfg.services.iter().enumerate().filter(|(_, s)| s.forwarding == Forwarding::Dsr) {
        for (bi, b) in s.backends.iter().enumerate() {
            let ip = b.address.ip();
            if host.subnets.iter().any(|n| n.contains(ip)) {
                continue;
            }
            let connected: Vec<String> = host.subnets.iter().map(|n| n.to_string()).collect();
            let connected = if connected.is_empty() { "none".to_string() } else { connected.join(", ") };
            let why = format!(
                "service {:?}: dsr backend {ip} is not on a subnet connected to the balancer ({connected}): \
                 L2 dsr only rewrites MACs, so its backends must be on the balancer's own segment; \
                 for a backend behind a router use forwarding = \"ipip\" or \"gue\"",
                s.name
            );
            if missing.is_empty() {
                found.errors.push(at(si, bi, why));
            } else {
                let names: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
                found.warnings.push(at(
                    si,
                    bi,
                    format!(
                        "{why} (daemon.interface {} is not on this host: run `lb check` on the balancer to be sure)",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"[daemon]
interface = ["eth0", "eth1"]

[[service]]
name = "near"
vip = "10.0.0.100:80"
forwarding = "dsr"
backend = [{ address = "10.0.0.11:80" }, { address = "10.9.0.5:80" }]

[[service]]
name = "routed"
vip = "10.0.0.100:81"
backend = [{ address = "10.9.0.5:81" }]

[[service]]
name = "six"
vip = "[fd00::100]:80"
forwarding = "dsr"
backend = [{ address = "[fd00::11]:80" }, { address = "[fd01::11]:80" }]
"#;

    fn host(present: &[&str]) -> Host {
        let subnet = |nic: &str, addr: &str, prefix| Subnet { nic: nic.into(), addr: addr.parse().unwrap(), prefix };
        let mut subnets = vec![subnet("eth0", "10.0.0.1", 24), subnet("eth0", "fd00::1", 64)];
        subnets.retain(|s| present.contains(&s.nic.as_str()));
        Host { present: present.iter().map(|s| s.to_string()).collect(), subnets }
    }

    fn check(present: &[&str]) -> Findings {
        let cfg = Config::from_str(CONFIG, "lb.toml").unwrap();
        dsr_backends(&cfg, "lb.toml", &Config::backend_positions(CONFIG), &host(present))
    }

    #[test]
    fn a_dsr_backend_off_the_connected_subnets_is_an_error_at_its_address() {
        let f = check(&["eth0", "eth1"]);
        let errors: Vec<String> = f.errors.iter().map(|d| d.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("lb.toml:8:54: service \"near\": dsr backend 10.9.0.5 is not on a subnet"),
            "{}",
            errors[0]
        );
        assert!(errors[0].contains("10.0.0.1/24 on eth0") && errors[0].contains("forwarding = \"ipip\" or \"gue\""));
        assert!(errors[1].starts_with("lb.toml:19:55: service \"six\": dsr backend fd01::11"), "{}", errors[1]);
        assert!(f.warnings.is_empty(), "a nat backend behind a router is fine");
    }

    #[test]
    fn without_the_configured_nics_on_this_host_it_is_a_warning() {
        let f = check(&["eth0"]);
        assert!(f.errors.is_empty());
        assert_eq!(f.warnings.len(), 2);
        assert!(
            f.warnings[0].warning().contains("daemon.interface eth1 is not on this host"),
            "{}",
            f.warnings[0].warning()
        );
        let none = check(&[]);
        assert_eq!((none.errors.len(), none.warnings.len()), (0, 4));
    }

    #[test]
    fn prefixes_compare_bit_by_bit() {
        let s = Subnet { nic: "x".into(), addr: "10.0.0.1".parse().unwrap(), prefix: 23 };
        assert!(s.contains("10.0.1.200".parse().unwrap()));
        assert!(!s.contains("10.0.2.1".parse().unwrap()));
        assert!(!s.contains("fd00::1".parse().unwrap()));
        let all = Subnet { nic: "x".into(), addr: "10.0.0.1".parse().unwrap(), prefix: 0 };
        assert!(all.contains("192.0.2.1".parse().unwrap()));
    }
}

//! Which addresses a registration may name. An agent that registers a backend at the LB's
//! own address, a VIP, loopback or the admin API turns the balancer on itself (a loop, or
//! traffic to whatever listens on the LB host); multicast, broadcast, link-local (the
//! cloud metadata service at 169.254.169.254) and unspecified addresses are never a
//! backend. So the register call refuses them, and a start or reload drops persisted
//! ones, unless the service opts in with `allow_registration_from`. The admin API's own
//! address is refused even then: a backend there would feed clients into the API.
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_config::{Cidr, Config};

pub struct RegistrationGuard {
    /// Each service's opt-in prefixes.
    allowed: HashMap<String, Vec<Cidr>>,
    /// (service, VIP address).
    vips: Vec<(String, IpAddr)>,
    /// The LB's own addresses: SNAT addresses and every interface's.
    own: BTreeSet<IpAddr>,
    admin: SocketAddr,
}

impl RegistrationGuard {
    /// The rules of `cfg`, with `host` as the LB's interface addresses.
    pub fn new(cfg: &Config, host: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut own: BTreeSet<IpAddr> = host.into_iter().map(lb_config::canonical_ip).collect();
        own.extend(cfg.daemon.snat_ipv4.map(IpAddr::V4));
        own.extend(cfg.daemon.snat_ipv6.map(IpAddr::V6));
        RegistrationGuard {
            allowed: cfg.services.iter().map(|s| (s.name.clone(), s.allow_registration_from.clone())).collect(),
            vips: cfg.services.iter().map(|s| (s.name.clone(), lb_config::canonical_ip(s.vip.ip()))).collect(),
            own,
            admin: cfg.daemon.admin_listen,
        }
    }

    /// [`new`](Self::new) with this host's interface addresses, read now (an address
    /// added since the start counts). Unreadable interfaces leave only the config's.
    pub fn for_host(cfg: &Config) -> Self {
        use network_interface::{Addr, NetworkInterface, NetworkInterfaceConfig};
        let host = NetworkInterface::show()
            .inspect_err(|e| tracing::warn!("cannot list the host's addresses to check registrations: {e}"))
            .unwrap_or_default();
        let addresses = host.iter().flat_map(|i| i.addr.iter()).map(|a| match a {
            Addr::V4(a) => IpAddr::V4(a.ip),
            Addr::V6(a) => IpAddr::V6(a.ip),
        });
        Self::new(cfg, addresses.collect::<Vec<_>>())
    }

    /// Ok, or why a backend at `address` may not be registered in `service`.
    pub fn check(&self, service: &str, address: SocketAddr) -> Result<(), String> {
        let ip = lb_config::canonical_ip(address.ip());
        if self.is_admin_api(ip, address.port()) {
            return Err(format!(
                "{address} is the admin API's own address (admin_listen {}): never a backend",
                self.admin
            ));
        }
        if self.allowed.get(service).is_some_and(|prefixes| prefixes.iter().any(|p| p.contains(ip))) {
            return Ok(());
        }
        let why = special(ip)
            .map(str::to_string)
            .or_else(|| self.vips.iter().find(|(_, vip)| *vip == ip).map(|(s, _)| format!("the VIP of service {s}")))
            .or_else(|| self.own.contains(&ip).then(|| "one of the LB's own addresses".to_string()));
        match why {
            Some(why) => Err(format!(
                "{address} is {why}: registrations there are refused (a service can allow an address range \
                 with allow_registration_from)"
            )),
            None => Ok(()),
        }
    }

    /// The admin API listens on `ip:port`: exactly, or through an unspecified listen address
    /// (then every local address at its port).
    fn is_admin_api(&self, ip: IpAddr, port: u16) -> bool {
        if port != self.admin.port() {
            return false;
        }
        let admin = lb_config::canonical_ip(self.admin.ip());
        if admin.is_unspecified() {
            return ip.is_unspecified() || ip.is_loopback() || self.own.contains(&ip);
        }
        admin == ip
    }
}

/// Addresses no backend has, whatever the config says.
fn special(ip: IpAddr) -> Option<&'static str> {
    let v4_in = |net: [u8; 4], len: u8, ip: Ipv4Addr| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net))
    };
    match ip {
        _ if ip.is_unspecified() => Some("the unspecified address"),
        _ if ip.is_loopback() => Some("a loopback address"),
        _ if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(v4) if v4_in([169, 254, 0, 0], 16, v4) => {
            Some("a link-local address (169.254.0.0/16, where cloud metadata services answer)")
        }
        IpAddr::V4(v4) if v4_in([0, 0, 0, 0], 8, v4) => Some("in 0.0.0.0/8 (\"this network\", not a destination)"),
        IpAddr::V4(v4) if v4_in([240, 0, 0, 0], 4, v4) => Some("a reserved address (240.0.0.0/4)"),
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some("a link-local address (fe80::/10)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra_service: &str) -> Config {
        Config::from_str(
            &format!(
                "[daemon]\nadmin_listen = \"127.0.0.1:9100\"\nsnat_ipv4 = \"172.20.0.9\"\n\
                 [[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n{extra_service}\
                 [[service]]\nname = \"v6\"\nvip = \"[fd00:20::100]:80\"\n"
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn check(guard: &RegistrationGuard, service: &str, address: &str) -> Result<(), String> {
        guard.check(service, address.parse().unwrap())
    }

    #[test]
    fn addresses_that_are_no_backend_are_refused_with_the_reason() {
        let guard = RegistrationGuard::new(&cfg(""), ["172.20.0.10".parse().unwrap(), "fd00:20::10".parse().unwrap()]);
        for (service, address, reason) in [
            ("web", "127.0.0.1:9100", "the admin API's own address"),
            ("web", "127.0.0.1:8080", "a loopback address"),
            ("web", "127.9.9.9:80", "a loopback address"),
            ("v6", "[::1]:80", "a loopback address"),
            ("web", "[::ffff:127.0.0.1]:80", "a loopback address"),
            ("web", "0.0.0.0:80", "the unspecified address"),
            ("v6", "[::]:80", "the unspecified address"),
            ("web", "224.0.0.1:80", "a multicast address"),
            ("web", "239.1.2.3:80", "a multicast address"),
            ("v6", "[ff02::1]:80", "a multicast address"),
            ("web", "169.254.169.254:80", "link-local"),
            ("v6", "[fe80::1]:80", "link-local"),
            ("web", "255.255.255.255:80", "the broadcast address"),
            ("web", "0.1.2.3:80", "0.0.0.0/8"),
            ("web", "172.20.0.100:8080", "the VIP of service web"),
            ("v6", "[fd00:20::100]:81", "the VIP of service v6"),
            ("web", "172.20.0.10:80", "one of the LB's own addresses"),
            ("v6", "[fd00:20::10]:80", "one of the LB's own addresses"),
            ("web", "172.20.0.9:80", "one of the LB's own addresses"),
        ] {
            let e = check(&guard, service, address).expect_err(address);
            assert!(e.contains(reason), "{address}: {e}");
            assert!(e.starts_with(&address.parse::<SocketAddr>().unwrap().to_string()), "{e}");
        }
        for address in ["172.20.0.11:80", "10.0.0.1:9100", "8.8.8.8:53"] {
            assert_eq!(check(&guard, "web", address), Ok(()), "{address}");
        }
        assert_eq!(check(&guard, "v6", "[fd00:20::11]:80"), Ok(()));
    }

    #[test]
    fn a_service_may_allow_ranges_but_never_the_admin_api() {
        let guard = RegistrationGuard::new(
            &cfg("allow_registration_from = [\"127.0.0.0/8\", \"172.20.0.10/32\"]\n"),
            ["172.20.0.10".parse().unwrap()],
        );
        assert_eq!(check(&guard, "web", "127.0.0.1:8080"), Ok(()));
        assert_eq!(check(&guard, "web", "172.20.0.10:8080"), Ok(()));
        assert!(check(&guard, "web", "127.0.0.1:9100").unwrap_err().contains("admin API"));
        assert!(check(&guard, "web", "169.254.169.254:80").is_err(), "only the ranges named");
        assert!(check(&guard, "v6", "[::1]:80").is_err(), "only for the service that opts in");
    }

    #[test]
    fn an_admin_api_on_every_address_covers_each_local_one_at_its_port() {
        let mut c = cfg("allow_registration_from = [\"0.0.0.0/0\"]\n");
        c.daemon.admin_listen = "0.0.0.0:9100".parse().unwrap();
        let guard = RegistrationGuard::new(&c, ["172.20.0.10".parse().unwrap()]);
        for address in ["172.20.0.10:9100", "127.0.0.1:9100", "172.20.0.9:9100"] {
            assert!(check(&guard, "web", address).unwrap_err().contains("admin API"), "{address}");
        }
        assert_eq!(check(&guard, "web", "172.20.0.11:9100"), Ok(()), "another host's port 9100");
    }
}

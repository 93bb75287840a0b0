//! `[[service]] allow = [...]`, `deny = [...]`: which client addresses a service takes new
//! flows (connections) from. Prefixes are IPv4 or IPv6 CIDRs (`"10.0.0.0/8"`,
//! `"fd00::/16"`) or single addresses. Deny wins over allow; an empty `allow` means every
//! address. Both paths apply the same rule: the XDP program through an LPM trie, the proxy
//! with [`SourceAcl::permits`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix, with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// The prefix's bit count for its family.
    fn max_bits(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The address as a 128-bit number, left-aligned for IPv4 (its prefix bits compare the
    /// same way in either family).
    fn wide(addr: &IpAddr) -> u128 {
        match addr {
            IpAddr::V4(a) => (u32::from(*a) as u128) << 96,
            IpAddr::V6(a) => u128::from(*a),
        }
    }

    fn mask(bits: u8) -> u128 {
        if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits as u32)
        }
    }

    /// Is `ip` inside this prefix? Never across families.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.addr.is_ipv4() == ip.is_ipv4() && Self::wide(ip) & Self::mask(self.bits) == Self::wide(&self.addr)
    }

    /// Is all of `other` inside this prefix?
    pub fn covers(&self, other: &Cidr) -> bool {
        other.bits >= self.bits && self.contains(&other.addr)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr_text, bits_text) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("invalid address prefix {text:?}: expected e.g. \"10.0.0.0/8\" or \"fd00::/16\""))?;
        let max = Self::max_bits(&addr);
        let bits = match bits_text {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("invalid prefix length in {text:?}: expected 0 to {max}")),
            },
        };
        let wide = Self::wide(&addr);
        // IPv4 addresses sit in the top 32 bits: their low 96 are always zero.
        if wide & !Self::mask(bits) != 0 {
            let network = Cidr::network(&addr, bits);
            return Err(format!("{text:?} has host bits set; the prefix is \"{network}/{bits}\""));
        }
        Ok(Cidr { addr, bits })
    }
}

impl Cidr {
    fn network(addr: &IpAddr, bits: u8) -> IpAddr {
        let wide = Self::wide(addr) & Self::mask(bits);
        match addr {
            IpAddr::V4(_) => IpAddr::V4(((wide >> 96) as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(wide.into()),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// A service's source lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceAcl {
    /// Empty: every address not denied.
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl SourceAcl {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// May a new flow from `ip` start? Deny wins over allow; an empty allow list allows all.
    pub fn permits(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 peer (a dual-stack socket) is the IPv4 client it maps.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|c| c.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(&ip))
    }

    /// The allow prefixes no deny prefix covers: in a longest-match table these and the deny
    /// prefixes give the same answers as [`SourceAcl::permits`] (a covered allow prefix
    /// would out-match the deny around it).
    pub fn effective_allow(&self) -> impl Iterator<Item = &Cidr> {
        self.allow.iter().filter(|a| !self.deny.iter().any(|d| d.covers(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(allow: &[&str], deny: &[&str]) -> SourceAcl {
        SourceAcl {
            allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
            deny: deny.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_parse_and_refuse_host_bits_and_bad_lengths() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("fd00::1".parse::<Cidr>().unwrap().bits, 128);
        assert!("10.0.0.1/8".parse::<Cidr>().unwrap_err().contains("the prefix is \"10.0.0.0/8\""));
        assert!("10.0.0.0/33".parse::<Cidr>().unwrap_err().contains("0 to 32"));
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("example.com/8".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0".parse::<Cidr>().is_ok() && "::/0".parse::<Cidr>().is_ok());
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_all() {
        assert!(acl(&[], &[]).permits(ip("192.0.2.1")));
        let a = acl(&["10.0.0.0/8"], &["10.1.0.0/16"]);
        assert!(a.permits(ip("10.2.3.4")));
        assert!(!a.permits(ip("10.1.3.4")));
        assert!(!a.permits(ip("192.0.2.1")));
        let b = acl(&["10.1.0.0/16"], &["10.0.0.0/8"]);
        assert!(!b.permits(ip("10.1.3.4")), "deny wins even against a longer allow");
        assert_eq!(b.effective_allow().count(), 0);
        let c = acl(&[], &["0.0.0.0/0"]);
        assert!(!c.permits(ip("1.2.3.4")) && c.permits(ip("fd00::1")), "families never mix");
        assert!(!c.permits(ip("::ffff:1.2.3.4")), "a mapped IPv4 peer is its IPv4 address");
    }
}

//! Address prefixes (`"10.0.0.0/8"`, `"fd00::/8"`, or a single address), as config keys
//! write them: `allow_registration_from`, and the source lists `allow` / `deny`.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 prefix. Its address has no bits set past the prefix length, so the
/// text it was written as says exactly what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Is all of `other` inside this prefix?
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.network)
    }

    /// Does the prefix cover `ip`? An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is
    /// taken as the IPv4 address it carries, so it cannot slip past an IPv4 prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask_v4(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask_v6(self.len) == u128::from(net),
            _ => false,
        }
    }
}

/// `ip`, with an IPv4-mapped IPv6 address turned into its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = "expected ADDRESS/LENGTH or an address, e.g. \"10.0.0.0/8\" or \"fd00::1\"";
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| format!("invalid prefix {text:?}: {expected}"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        // A single address is the prefix of its full length.
        let len: u8 = len
            .map_or(Some(max), |l| l.parse().ok())
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("invalid prefix {text:?}: the length must be 0 to {max}"))?;
        let exact = match network {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len))),
        };
        if exact != network {
            return Err(format!(
                "invalid prefix {text:?}: bits are set past the length; did you mean \"{exact}/{len}\"?"
            ));
        }
        Ok(Cidr { network, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn prefixes_cover_their_addresses_and_no_others() {
        assert!(cidr("10.0.0.0/8").contains("10.255.1.2".parse().unwrap()));
        assert!(!cidr("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!cidr("0.0.0.0/0").contains("::1".parse().unwrap()), "families never mix");
        assert!(cidr("127.0.0.1/32").contains("127.0.0.1".parse().unwrap()));
        assert!(cidr("fd00::/8").contains("fd00:20::11".parse().unwrap()));
        assert!(cidr("::/0").contains("fe80::1".parse().unwrap()));
        assert!(cidr("127.0.0.0/8").contains("::ffff:127.0.0.1".parse().unwrap()), "mapped counts as IPv4");
    }

    #[test]
    fn bad_prefixes_say_why() {
        for (text, says) in [
            ("example.com/8", "expected ADDRESS/LENGTH"),
            ("10.0.0/8", "expected ADDRESS/LENGTH"),
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.0/x", "0 to 32"),
            ("10.0.0.1/8", "did you mean \"10.0.0.0/8\""),
        ] {
            let e = text.parse::<Cidr>().unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(cidr("fd00::1").prefix_len(), 128, "a single address is its full-length prefix");
        assert_eq!(cidr("10.0.0.1").to_string(), "10.0.0.1/32");
    }

    #[test]
    fn a_prefix_covers_the_longer_prefixes_inside_it() {
        assert!(cidr("10.0.0.0/8").covers(&cidr("10.1.0.0/16")));
        assert!(!cidr("10.1.0.0/16").covers(&cidr("10.0.0.0/8")));
        assert!(!cidr("0.0.0.0/0").covers(&cidr("fd00::/8")), "families never mix");
    }
}

//! `[[service]] allow = [...]`, `deny = [...]`: which client addresses a service takes new
//! flows (connections) from. Prefixes are IPv4 or IPv6 CIDRs (`"10.0.0.0/8"`,
//! `"fd00::/16"`) or single addresses. Deny wins over allow; an empty `allow` means every
//! address. Both paths apply the same rule: the XDP program through an LPM trie, the proxy
//! with [`SourceAcl::permits`].

use std::net::IpAddr;

use crate::cidr::Cidr;

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
        // An IPv4-mapped IPv6 peer (a dual-stack socket) is the IPv4 client it maps:
        // `Cidr::contains` takes it so.
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
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

//! A service's `allow` / `deny` lists as `LB_ACL` entries (an LPM trie: the longest prefix
//! that matches decides). Deny wins over allow: an allow prefix inside a deny prefix is
//! left out, so the deny around it is what matches.
use std::collections::HashMap;
use std::net::IpAddr;

use lb_common::addr::ip_words;
use lb_common::consts::{ACL_ALLOW, ACL_DENY, ACL_HAS_ALLOW, ACL_HAS_DENY, FAMILY_V4, FAMILY_V6};
use lb_common::maps::AclData;
use lb_config::{Cidr, SourceAcl};

use crate::store::AclEntry;

/// `VipInfo::acl`: whether new flows look the trie up, and what no match means.
pub fn flags(acl: &SourceAcl) -> u8 {
    let mut f = 0;
    if !acl.allow.is_empty() {
        f |= ACL_HAS_ALLOW;
    }
    if !acl.deny.is_empty() {
        f |= ACL_HAS_DENY;
    }
    f
}

/// The trie entries of service `service_id`'s lists, each prefix once.
pub fn entries(service_id: u32, acl: &SourceAcl) -> Vec<(AclEntry, u32)> {
    let mut out: HashMap<AclEntry, u32> = HashMap::new();
    for c in acl.effective_allow() {
        out.insert(entry(service_id, c), ACL_ALLOW);
    }
    for c in &acl.deny {
        out.insert(entry(service_id, c), ACL_DENY);
    }
    let mut v: Vec<(AclEntry, u32)> = out.into_iter().collect();
    v.sort_by_key(|(k, _)| (k.prefix_len, k.data.addr));
    v
}

fn entry(service_id: u32, c: &Cidr) -> AclEntry {
    let family = if c.network().is_ipv4() { FAMILY_V4 } else { FAMILY_V6 };
    let (words, _) = ip_words(c.network());
    AclEntry {
        prefix_len: AclData::prefix_len(family, c.prefix_len() as u32),
        data: AclData::new(service_id, &words, family),
    }
}

/// The trie's answer for `ip`, computed the way the kernel's longest-prefix match does:
/// for tests that check the entries against `SourceAcl::permits`.
pub fn lookup(entries: &[(AclEntry, u32)], service_id: u32, ip: IpAddr, has_allow: bool) -> bool {
    let family = if ip.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 };
    let key = AclData::new(service_id, &ip_words(ip).0, family);
    let bits = |d: &AclData| -> u128 { d.addr.iter().fold(0u128, |acc, w| (acc << 32) | u32::from_be(*w) as u128) };
    let best = entries
        .iter()
        .filter(|(e, _)| e.data.service_id_be == key.service_id_be)
        .filter(|(e, _)| {
            let n = e.prefix_len - AclData::SERVICE_BITS;
            let mask = if n == 0 { 0 } else { u128::MAX << (128 - n) };
            bits(&e.data) & mask == bits(&key) & mask
        })
        .max_by_key(|(e, _)| e.prefix_len);
    match best {
        Some((_, verdict)) => *verdict != ACL_DENY,
        None => !has_allow,
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

    /// The longest match over the entries gives the lists' own answer, for every shape of
    /// nesting between allow and deny, in both families.
    #[test]
    fn the_longest_match_agrees_with_the_lists() {
        let cases = [
            acl(&["10.0.0.0/8"], &["10.1.0.0/16"]),
            acl(&["10.1.0.0/16"], &["10.0.0.0/8"]),
            acl(&["10.0.0.0/8", "10.0.0.0/8"], &["10.0.0.0/8"]),
            acl(&[], &["192.0.2.0/24", "fd00::/16"]),
            acl(&["0.0.0.0/0"], &[]),
            acl(&["fd00:1::/32"], &["fd00::/16", "10.0.0.1"]),
        ];
        let ips = ["10.0.0.1", "10.1.2.3", "10.2.0.0", "192.0.2.9", "1.2.3.4", "fd00::1", "fd00:1::1", "fe80::1"];
        for (i, a) in cases.iter().enumerate() {
            let e = entries(7, a);
            for ip in ips {
                let ip: IpAddr = ip.parse().unwrap();
                assert_eq!(lookup(&e, 7, ip, !a.allow.is_empty()), a.permits(ip), "case {i}, {ip}");
            }
        }
    }

    #[test]
    fn ipv4_prefixes_are_mapped_and_keyed_by_service() {
        let e = entries(3, &acl(&[], &["10.0.0.0/8"]));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0.prefix_len, 32 + 96 + 8);
        assert_eq!(e[0].0.data.service_id_be, 3u32.to_be());
        assert!(!lookup(&e, 3, "10.9.9.9".parse().unwrap(), false));
        assert!(lookup(&e, 4, "10.9.9.9".parse().unwrap(), false), "another service's prefixes do not apply");
    }
}

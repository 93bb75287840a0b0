//! The rules of `[cluster]`: each value converted and checked at its position, and the
//! warnings a fleet's config earns (see `cluster` for the model, `schema` for the keys).
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::cluster::*;
use super::duration::format_duration;
use super::enums::{Algorithm, Forwarding};
use super::schema::{RawBgp, RawCluster, RawNeighbor, RawService, TextOrNumber};
use super::validate::{positive_duration, Validator};

impl Validator<'_> {
    pub(super) fn cluster(&mut self, raw: &RawCluster) -> Option<Cluster> {
        let node = self.optional(raw.node.as_ref(), None, |n| node_name(n).map(Some));
        let hash_seed = self.optional(raw.hash_seed.as_ref(), 0, |&n| hash_seed(n));
        let etcd: Vec<Option<String>> = raw.etcd.iter().map(|e| self.required(e, |u| etcd_endpoint(u))).collect();
        let etcd_prefix = self.optional(raw.etcd_prefix.as_ref(), DEFAULT_ETCD_PREFIX.to_string(), |p| etcd_prefix(p));
        let bgp = raw.bgp.as_ref().map(|b| self.bgp(b));
        let grace_default = if raw.bgp.is_some() { DEFAULT_DRAIN_GRACE } else { Duration::ZERO };
        let drain_grace = self.optional(raw.drain_grace.as_ref(), grace_default, drain_grace);
        Some(Cluster {
            node: node?,
            hash_seed: hash_seed?,
            etcd: etcd.into_iter().collect::<Option<_>>()?,
            etcd_prefix: etcd_prefix?,
            drain_grace: drain_grace?,
            bgp: bgp.map_or(Some(None), |b| b.map(Some))?,
        })
    }

    fn bgp(&mut self, raw: &Spanned<RawBgp>) -> Option<Bgp> {
        let span = raw.span();
        let raw = raw.get_ref();
        let speaker = self.optional(raw.speaker.as_ref(), Speaker::Bird, |s| speaker(s));
        let asn = match &raw.asn {
            Some(a) => self.required(a, |&n| asn(n, "asn")),
            None => {
                self.report(&span, "[cluster.bgp] needs asn, this node's AS number");
                None
            }
        };
        let router_id = match &raw.router_id {
            Some(r) => self.required(r, |t| router_id(t)),
            None => {
                self.report(&span, "[cluster.bgp] needs router_id, an IPv4 address unique to this node");
                None
            }
        };
        if raw.neighbors.is_empty() {
            self.report(
                &span,
                "[cluster.bgp] needs neighbors = [{ address = \"IP\", asn = N }, ...]: the routers to announce to",
            );
        }
        let neighbors: Vec<Option<Neighbor>> = raw.neighbors.iter().map(|n| self.neighbor(n.get_ref())).collect();
        self.duplicate_neighbors(
            raw.neighbors.iter().map(|n| (&n.get_ref().address, n.get_ref().address.get_ref().parse::<IpAddr>().ok())),
            "neighbor",
        );
        let hold_time = self.optional(raw.hold_time.as_ref(), DEFAULT_HOLD_TIME, hold_time);
        Some(Bgp {
            speaker: speaker?,
            asn: asn?,
            router_id: router_id?,
            neighbors: neighbors.into_iter().collect::<Option<_>>().filter(|n: &Vec<Neighbor>| !n.is_empty())?,
            hold_time: hold_time?,
            bird: raw.bird.clone().unwrap_or_else(|| PathBuf::from("bird")),
            run_dir: raw.run_dir.clone().unwrap_or_else(|| PathBuf::from("/run/lb/bird")),
        })
    }

    fn neighbor(&mut self, raw: &RawNeighbor) -> Option<Neighbor> {
        let address = self.required(&raw.address, |t| {
            t.parse::<IpAddr>().map_err(|_| format!("invalid neighbor address {t:?}; expected an IP address"))
        });
        let asn = self.required(&raw.asn, |&n| asn(n, "neighbor asn"));
        Some(Neighbor { address: address?, asn: asn? })
    }

    /// Duplicate neighbors: each after the first is reported where it is written.
    fn duplicate_neighbors<'s>(
        &mut self,
        items: impl Iterator<Item = (&'s Spanned<String>, Option<IpAddr>)>,
        what: &str,
    ) {
        let mut seen = std::collections::HashSet::new();
        for (raw, ip) in items {
            if let Some(ip) = ip {
                if !seen.insert(ip) {
                    self.report(&raw.span(), format!("duplicate {what} {ip}"));
                }
            }
        }
    }

    /// Valid, but not what a fleet wants: services whose algorithm does not give every
    /// node the same backend for a flow.
    pub(super) fn cluster_warnings(&mut self, raw: &RawCluster, services: &[RawService]) {
        if raw.bgp.is_none() {
            return;
        }
        for s in services {
            let Some(a) = s.algorithm else { continue };
            let hashed = matches!(a, Algorithm::Maglev | Algorithm::SourceHash);
            // A nat flow is lost with its node anyway (its SNAT address was that node's).
            let stateless = s.forwarding.is_some_and(|f| f != Forwarding::Nat);
            if !hashed && stateless {
                self.warn(
                    &s.name.span(),
                    format!(
                        "with [cluster.bgp], {} picks backends per node: a flow that moves to another node \
                         (ECMP rehash, a node lost) changes backend; maglev and source_hash do not",
                        a.as_str()
                    ),
                );
            }
        }
    }
}

fn node_name(name: &str) -> Result<String, String> {
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > 63 || !plain {
        return Err(format!(
            "invalid node {name:?}: 1 to 63 characters of letters, digits, '-', '_' and '.' (it is an etcd key \
             part and a metric label)"
        ));
    }
    Ok(name.to_string())
}

fn hash_seed(n: i64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("hash_seed {n} is out of range; expected 0 to {}", u32::MAX))
}

/// Plain HTTP only: the client is built without TLS (say so rather than fail at connect).
fn etcd_endpoint(url: &str) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "invalid etcd endpoint {url:?}; expected \"http://HOST:PORT\" (https is not supported: reach etcd \
             over a trusted network or a local proxy)"
        ));
    };
    let host_port = rest.trim_end_matches('/');
    let port_ok =
        host_port.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || host_port.contains('/') {
        return Err(format!(
            "invalid etcd endpoint {url:?}; expected \"http://HOST:PORT\", e.g. \"http://10.0.0.5:2379\""
        ));
    }
    Ok(format!("http://{host_port}"))
}

fn etcd_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_end_matches('/');
    if !prefix.starts_with('/') || trimmed.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid etcd_prefix {prefix:?}; expected a key path such as \"/lb\" (not the root)"));
    }
    Ok(trimmed.to_string())
}

fn drain_grace(value: &TextOrNumber) -> Result<Duration, String> {
    if let TextOrNumber::Text(t) = value {
        if matches!(t.trim(), "0" | "0s") {
            return Ok(Duration::ZERO);
        }
    }
    let d = positive_duration(value, "drain_grace")?;
    if d > MAX_DRAIN_GRACE {
        return Err(format!(
            "drain_grace {} is too long; the maximum is {}",
            format_duration(d),
            format_duration(MAX_DRAIN_GRACE)
        ));
    }
    Ok(d)
}

fn speaker(name: &str) -> Result<Speaker, String> {
    match name {
        "bird" => Ok(Speaker::Bird),
        other => Err(format!("unknown speaker {other:?}; expected \"bird\" (BIRD 2)")),
    }
}

/// 0 and AS_TRANS (23456) are reserved; 4294967295 is reserved too (RFC 7300).
fn asn(n: i64, key: &str) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(a) if a != 0 && a != 23456 && a != u32::MAX => Ok(a),
        _ => Err(format!("{key} {n} is not a usable AS number; expected 1 to 4294967294, not 23456")),
    }
}

fn router_id(text: &str) -> Result<Ipv4Addr, String> {
    match text.parse::<Ipv4Addr>() {
        Ok(ip) if !ip.is_unspecified() => Ok(ip),
        _ => Err(format!("invalid router_id {text:?}; expected a non-zero IPv4 address unique to this node")),
    }
}

fn hold_time(value: &TextOrNumber) -> Result<Duration, String> {
    let d = positive_duration(value, "hold_time")?;
    if d.subsec_nanos() != 0 || d < MIN_HOLD_TIME || d > MAX_HOLD_TIME {
        return Err(format!(
            "hold_time {} is not a BGP hold time; expected whole seconds from 3s to 65535s",
            format_duration(d)
        ));
    }
    Ok(d)
}

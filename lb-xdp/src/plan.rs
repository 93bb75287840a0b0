//! The reconciler's pure half: desired state in, the exact entries of every data-path map
//! out (ids, VIP entries, backend entries, Maglev tables). Host-testable; `writer` puts the
//! result into the maps.
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use lb_common::consts::*;
use lb_common::maglev::{self, MaglevBackend};
use lb_common::maps::{BackendInfo, BackendMeta, GlobalConfig, ServiceMeta, Trial, VipInfo, VipKey};
use lb_common::ratelimit::{Limit, RateLimit};

use super::ids::IdAllocator;
use crate::store::AclEntry;
use lb_common::addr::{ip_words, port_be, vip_key};
use lb_config::desired::{Circuit, Desired, DesiredBackend, Health};
use lb_config::{AdminState, Algorithm, Forwarding, Protocol};

#[derive(Clone, Debug, PartialEq)]
pub struct ServicePlan {
    pub id: u32,
    pub vip: VipKey,
    /// `ring_gen` is the writer's business; it is 0 here.
    pub info: VipInfo,
    pub meta: ServiceMeta,
    /// The VIP's address is also one of the host's own (the seed's LB-on-:8080 case).
    pub shared_with_host: bool,
    pub table: Vec<u32>,
    /// The `LB_SEQ` entries: round robin's order, or the members least_conn/p2c choose from.
    pub sequence: Vec<u32>,
    pub rate_limit: RateLimit,
    /// A half-open backend's trial flow, armed on every write.
    pub trial: Trial,
    /// Its `LB_ACL` entries (source prefixes), with their verdicts.
    pub acl: Vec<(AclEntry, u32)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendPlan {
    pub id: u32,
    pub service: String,
    pub address: SocketAddr,
    pub info: BackendInfo,
    pub meta: BackendMeta,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub global: GlobalConfig,
    pub services: Vec<ServicePlan>,
    pub backends: Vec<BackendPlan>,
}

/// Ids live as long as the reconciler: the same service or backend keeps its index. A
/// reconcile that fails restores them from a copy (`reconcile`), as the maps are restored.
///
/// A service is known here by its VIP (address, port, protocol), the key of its `LB_VIPS`
/// entry, and a backend by its service's VIP and its address: what a flow is pinned to.
/// A renamed service keeps its ids, and its flows their backends; one that moves to
/// another VIP is a new one there. So ids only pass between VIPs, never between services
/// sharing a VIP in turn, which keeps the writer's handovers in an order (see `writer`).
#[derive(Clone, Debug)]
pub struct Ids {
    services: IdAllocator<VipKey>,
    backends: IdAllocator<(VipKey, SocketAddr)>,
    /// Each service's last Maglev table, kept with the reconciler's other long-lived state.
    rings: RingCache,
}

/// Ids for the default `max_services` (`DEFAULT_MAX_SERVICES`), the object's own sizes.
impl Default for Ids {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SERVICES)
    }
}

impl Ids {
    /// Ids for maps whose table arrays hold `ring_services` services
    /// (`MapStore::ring_services`): service ids run below it, never past `MAX_SERVICES`.
    pub fn new(ring_services: u32) -> Self {
        Self {
            services: IdAllocator::new(ring_services.min(MAX_SERVICES), "services"),
            backends: IdAllocator::new(MAX_BACKENDS, "backends"),
            rings: RingCache::default(),
        }
    }
}

/// Maglev tables by service, with the inputs they were built from: a reconcile rebuilds
/// only the tables of services whose members (ids, identities, weights) changed. A build
/// fills 65537 slots, so rebuilding every service on every health change or registration
/// is what made reconciles of many services slow. Entries are shared (`Arc`), so the copy
/// of `Ids` a reconcile keeps for its rollback costs no table copies.
#[derive(Clone, Debug, Default)]
pub struct RingCache {
    by_vip: HashMap<VipKey, (RingInputs, std::sync::Arc<Vec<u32>>)>,
    /// Tables built (not found in the cache) since start: what tests and measurements read.
    pub builds: u64,
}

/// A table's members as (id, identity, weight), sorted: all a Maglev build depends on.
type RingInputs = Vec<(u32, u64, u32)>;

impl RingCache {
    /// The table for `members`, built only when they differ from the last ones of `vip`.
    pub fn table(&mut self, vip: VipKey, members: &[MaglevBackend]) -> Vec<u32> {
        let mut inputs: RingInputs = members.iter().map(|m| (m.id, m.key, m.weight)).collect();
        inputs.sort_unstable();
        if let Some((cached, table)) = self.by_vip.get(&vip) {
            if *cached == inputs {
                return table.as_ref().clone();
            }
        }
        let table = maglev::build(members, RING_SIZE);
        self.builds += 1;
        self.by_vip.insert(vip, (inputs, std::sync::Arc::new(table.clone())));
        table
    }

    /// Forget the services that are gone.
    fn retain(&mut self, vips: &HashSet<VipKey>) {
        self.by_vip.retain(|v, _| vips.contains(v));
    }
}

impl Ids {
    /// Keep the ids a previous daemon gave out: its flows still name them.
    pub fn seed(&mut self, adopted: &super::adopt::Adopted) {
        let mut vips = HashMap::new();
        for (id, name, vip, _) in &adopted.services {
            self.services.seed(*vip, *id);
            vips.insert(name.as_str(), *vip);
        }
        for (id, service, address) in &adopted.backends {
            if let Some(vip) = vips.get(service.as_str()) {
                self.backends.seed((*vip, *address), *id);
            }
        }
    }
}

fn proto(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
    }
}

/// What the host knows that the config does not: next-hop MACs and its own addresses.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    pub neighbours: HashMap<IpAddr, [u8; 6]>,
    pub own_addresses: HashSet<IpAddr>,
}

pub fn plan(desired: &Desired, global: GlobalConfig, host: &HostFacts, ids: &mut Ids) -> Result<Plan> {
    let vips: HashSet<VipKey> = desired.services.iter().map(|s| vip_key(s.vip, proto(s.protocol))).collect();
    let keys: HashSet<(VipKey, SocketAddr)> = desired
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (vip_key(s.vip, proto(s.protocol)), b.address)))
        .collect();
    ids.services.retain(|v| vips.contains(v));
    ids.backends.retain(|k| keys.contains(k));
    ids.rings.retain(&vips);

    give_ids_in_address_order(desired, &vips, ids)?;
    let mut plan = Plan { global, services: Vec::new(), backends: Vec::new() };
    for s in &desired.services {
        let vip = vip_key(s.vip, proto(s.protocol));
        let sid = ids.services.id(&vip)?;
        let mut ring_members = Vec::new();
        let mut members: Vec<(SocketAddr, u32, u32)> = Vec::new();
        let mut trial = Trial::default();
        for b in &s.backends {
            let bid = backend_id(ids, &vips, vip, b.address)?;
            let reachable = host.neighbours.contains_key(&b.address.ip());
            if b.on_trial() && reachable {
                trial = Trial { backend_id: bid, armed: 1 };
            }
            plan.backends.push(BackendPlan { service: s.name.clone(), ..backend_plan(bid, sid, b, host) });
            // Only backends we can reach take new flows: one whose next-hop MAC is not
            // resolved yet joins the table once it is (within a neighbour refresh).
            if b.in_rotation() && reachable {
                let weight = s.table_weight(b);
                ring_members.push(MaglevBackend::seeded(
                    bid,
                    b.address.to_string().as_bytes(),
                    weight,
                    desired.settings.hash_seed,
                ));
                members.push((b.address, bid, weight));
            }
        }
        let sequence = sequence_for(s.algorithm, members);
        let info = VipInfo {
            service_id: sid,
            ring_gen: 0,
            seq_len: sequence.len() as u32,
            algorithm: algorithm_code(s.algorithm)?,
            forwarding: match s.forwarding {
                Forwarding::Nat => FWD_NAT,
                Forwarding::Dsr => FWD_DSR,
                Forwarding::Ipip => FWD_IPIP,
                Forwarding::Gue => FWD_GUE,
            },
            acl: crate::acl::flags(&s.acl),
            _pad: 0,
            persist_ms: s.traffic.persistence_timeout.map_or(0, |t| t.as_millis().min(u32::MAX as u128) as u32),
        };
        plan.services.push(ServicePlan {
            id: sid,
            vip,
            info,
            meta: service_meta(&s.name, vip, &info, s.backends.len() as u32),
            shared_with_host: host.own_addresses.contains(&s.vip.ip()),
            table: ids.rings.table(vip, &ring_members),
            sequence,
            rate_limit: RateLimit {
                service: Limit::new(s.rate_limit.new_flows_per_second, s.rate_limit.burst),
                per_source: Limit::new(s.rate_limit.per_source_new_flows_per_second, s.rate_limit.per_source_burst),
            },
            trial,
            acl: crate::acl::entries(sid, &s.acl),
        });
    }
    Ok(plan)
}

/// Newcomers get their ids in address order (services by VIP, backends by VIP and address),
/// not in the order of the config file or of the registrations' arrival: two nodes given
/// the same inputs in any order build the same ids, and so byte-identical tables. A node
/// with another history (a backend that came and went) may number differently; its tables
/// still send every flow to the same address, since a Maglev table's fill depends only on
/// the backends' identities and weights (see `lb_common::maglev`).
fn give_ids_in_address_order(desired: &Desired, vips: &HashSet<VipKey>, ids: &mut Ids) -> Result<()> {
    let mut services: Vec<(SocketAddr, u8)> = desired.services.iter().map(|s| (s.vip, proto(s.protocol))).collect();
    services.sort_unstable();
    let mut backends: Vec<(SocketAddr, u8, SocketAddr)> = desired
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s.vip, proto(s.protocol), b.address)))
        .collect();
    backends.sort_unstable();
    for (vip, p) in services {
        ids.services.id(&vip_key(vip, p))?;
    }
    for (vip, p, address) in backends {
        backend_id(ids, vips, vip_key(vip, p), address)?;
    }
    Ok(())
}

/// The id of a backend of `vip`. Out of free ids, one this VIP's backends held goes first
/// (its own tables are the only ones naming it), then one of a VIP that goes (retired
/// first), then another's (taken over once that VIP has flipped).
fn backend_id(ids: &mut Ids, vips: &HashSet<VipKey>, vip: VipKey, address: SocketAddr) -> Result<u32> {
    ids.backends.id_ranked(&(vip, address), |(previous, _)| match previous {
        p if *p == vip => 0,
        p if !vips.contains(p) => 1,
        _ => 2,
    })
}

/// The data path's algorithm code (part of the pinned-map ABI).
fn algorithm_code(a: Algorithm) -> Result<u8> {
    Ok(match a {
        Algorithm::Maglev => ALG_MAGLEV,
        Algorithm::SourceHash => ALG_SOURCE_HASH,
        Algorithm::RoundRobin => ALG_ROUND_ROBIN,
        Algorithm::WeightedRoundRobin => ALG_WEIGHTED_ROUND_ROBIN,
        Algorithm::Random => ALG_RANDOM,
        Algorithm::LeastConn => ALG_LEAST_CONN,
        Algorithm::P2c => ALG_P2C,
    })
}

/// The sequence table: in address order (stable across reconciles), each member once, or
/// for weighted round robin the smooth weighted sequence.
fn sequence_for(algorithm: Algorithm, mut members: Vec<(SocketAddr, u32, u32)>) -> Vec<u32> {
    members.sort();
    members.truncate(SEQ_SIZE as usize);
    if algorithm == Algorithm::WeightedRoundRobin {
        let weights: Vec<u32> = members.iter().map(|m| m.2).collect();
        lb_common::sequence::smooth_weighted(&weights, SEQ_SIZE as usize).into_iter().map(|i| members[i].1).collect()
    } else {
        members.into_iter().map(|m| m.1).collect()
    }
}

fn backend_plan(id: u32, service_id: u32, b: &DesiredBackend, host: &HostFacts) -> BackendPlan {
    let (addr, family) = ip_words(b.address.ip());
    let mac = host.neighbours.get(&b.address.ip()).copied();
    let mut flags = 0;
    if b.keeps_flows() {
        flags |= BACKEND_ACTIVE;
    }
    if mac.is_some() {
        flags |= BACKEND_HAS_MAC;
        // As for the tables: only a backend whose next hop is known takes new flows.
        if b.in_rotation() {
            flags |= BACKEND_IN_ROTATION;
        }
    }
    BackendPlan {
        id,
        service: String::new(),
        address: b.address,
        info: BackendInfo {
            addr,
            port: port_be(b.address.port()),
            family,
            flags,
            service_id,
            mac: mac.unwrap_or_default(),
            _pad: [0; 2],
        },
        meta: BackendMeta {
            weight: b.weight,
            state: match b.state {
                AdminState::Ready => 0,
                AdminState::Drain => 1,
                AdminState::Maint => 2,
            },
            health: match b.health {
                Health::Unknown => 0,
                Health::Up => 1,
                Health::Down => 2,
            },
            source: b.sources,
            in_use: 1,
            circuit: match b.circuit {
                Circuit::Closed => 0,
                Circuit::Open => 1,
                Circuit::HalfOpen => 2,
            },
            _pad: [0; 3],
        },
    }
}

fn service_meta(name: &str, vip: VipKey, info: &VipInfo, backend_count: u32) -> ServiceMeta {
    let mut meta = ServiceMeta {
        vip,
        algorithm: info.algorithm,
        forwarding: info.forwarding,
        in_use: 1,
        backend_count,
        ..Default::default()
    };
    // Names are validated to at most 47 bytes; the last byte stays NUL.
    let n = name.len().min(meta.name.len() - 1);
    meta.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::desired::{Circuit, DesiredService, SOURCE_CONFIG};

    fn backend(addr: &str, weight: u32, state: AdminState) -> DesiredBackend {
        DesiredBackend {
            address: addr.parse().unwrap(),
            weight,
            state,
            health: Health::Unknown,
            sources: SOURCE_CONFIG,
            circuit: Circuit::Closed,
            ramp: None,
        }
    }

    fn web(backends: Vec<DesiredBackend>) -> Desired {
        Desired {
            services: vec![DesiredService {
                name: "web".into(),
                vip: "172.20.0.100:80".parse().unwrap(),
                protocol: Protocol::Tcp,
                algorithm: Algorithm::Maglev,
                forwarding: Forwarding::Nat,
                rate_limit: Default::default(),
                acl: Default::default(),
                proxy_mode: Default::default(),
                pool: Default::default(),
                max_connections: 0,
                connection_caps: Default::default(),
                traffic: Default::default(),
                proxy_options: Default::default(),
                backends,
            }],
            settings: Default::default(),
        }
    }

    #[test]
    fn drain_and_maint_and_zero_weight_backends_stay_out_of_the_table() {
        let d = web(vec![
            backend("172.20.0.11:80", 1, AdminState::Ready),
            backend("172.20.0.12:80", 1, AdminState::Drain),
            backend("172.20.0.13:80", 1, AdminState::Maint),
            backend("172.20.0.14:80", 0, AdminState::Ready),
        ]);
        let p = plan(&d, GlobalConfig::default(), &HostFacts::default(), &mut Ids::default()).unwrap();
        assert!(p.services[0].table.iter().all(|&id| id == NO_BACKEND), "no MAC known: nothing reachable");
        let mut facts = HostFacts::default();
        for b in &d.services[0].backends {
            facts.neighbours.insert(b.address.ip(), [2, 0, 0, 0, 0, 1]);
        }
        let p = plan(&d, GlobalConfig::default(), &facts, &mut Ids::default()).unwrap();
        let ids: HashSet<u32> = p.services[0].table.iter().copied().collect();
        assert_eq!(ids, HashSet::from([p.backends[0].id]));
        // Drain keeps its flows, maint does not.
        assert_ne!(p.backends[1].info.flags & BACKEND_ACTIVE, 0);
        assert_eq!(p.backends[2].info.flags & BACKEND_ACTIVE, 0);
        assert_ne!(p.backends[0].info.flags & BACKEND_HAS_MAC, 0);
    }

    #[test]
    fn ids_are_stable_across_reconciles_and_removed_backends_free_theirs() {
        let mut ids = Ids::default();
        let two =
            web(vec![backend("172.20.0.11:80", 1, AdminState::Ready), backend("172.20.0.12:80", 1, AdminState::Ready)]);
        let mut facts = HostFacts::default();
        facts.neighbours.insert("172.20.0.11".parse().unwrap(), [2, 0, 0, 0, 0, 11]);
        facts.neighbours.insert("172.20.0.12".parse().unwrap(), [2, 0, 0, 0, 0, 12]);
        let p1 = plan(&two, GlobalConfig::default(), &facts, &mut ids).unwrap();
        let one = web(vec![backend("172.20.0.12:80", 1, AdminState::Ready)]);
        let p2 = plan(&one, GlobalConfig::default(), &facts, &mut ids).unwrap();
        assert_eq!(p1.backends[1].id, p2.backends[0].id);
        assert!(p2.services[0].table.iter().all(|&id| id == p2.backends[0].id));
    }

    #[test]
    fn ids_go_by_vip_a_renamed_service_keeps_them_and_a_moved_one_gets_new_ones() {
        let mut ids = Ids::default();
        let mut d =
            web(vec![backend("172.20.0.11:80", 1, AdminState::Ready), backend("172.20.0.12:80", 1, AdminState::Ready)]);
        let facts = HostFacts::default();
        let p1 = plan(&d, GlobalConfig::default(), &facts, &mut ids).unwrap();
        d.services[0].name = "www".into();
        let p2 = plan(&d, GlobalConfig::default(), &facts, &mut ids).unwrap();
        assert_eq!(p2.services[0].id, p1.services[0].id);
        assert_eq!(
            p2.backends.iter().map(|b| b.id).collect::<Vec<_>>(),
            p1.backends.iter().map(|b| b.id).collect::<Vec<_>>()
        );
        assert_eq!(p2.backends[0].service, "www");
        d.services[0].vip = "172.20.0.101:80".parse().unwrap();
        let p3 = plan(&d, GlobalConfig::default(), &facts, &mut ids).unwrap();
        assert_ne!(p3.services[0].id, p1.services[0].id, "another VIP: another service to the data path");
        assert!(p3.backends.iter().all(|b| p1.backends.iter().all(|o| o.id != b.id)));
    }

    #[test]
    fn all_backends_out_leaves_an_empty_table() {
        let d = web(vec![backend("172.20.0.11:80", 1, AdminState::Maint)]);
        let p = plan(&d, GlobalConfig::default(), &HostFacts::default(), &mut Ids::default()).unwrap();
        assert!(p.services[0].table.iter().all(|&id| id == NO_BACKEND));
    }

    /// `n` services of three backends each, every backend's MAC known.
    fn many(n: u8) -> (Desired, HostFacts) {
        let template = web(vec![]).services.remove(0);
        let mut d = web(vec![]);
        d.services.clear();
        let mut facts = HostFacts::default();
        for s in 0..n {
            let backends: Vec<DesiredBackend> =
                (1..=3).map(|b| backend(&format!("10.{s}.0.{b}:80"), 1, AdminState::Ready)).collect();
            for b in &backends {
                facts.neighbours.insert(b.address.ip(), [2, 0, 0, 0, s, 1]);
            }
            d.services.push(DesiredService {
                name: format!("s{s}"),
                vip: format!("172.20.1.{s}:80").parse().unwrap(),
                backends,
                ..template.clone()
            });
        }
        (d, facts)
    }

    #[test]
    fn a_reconcile_rebuilds_only_the_maglev_tables_of_services_that_changed() {
        let (mut d, facts) = many(100);
        let mut ids = Ids::default();
        let started = std::time::Instant::now();
        plan(&d, GlobalConfig::default(), &facts, &mut ids).unwrap();
        let cold = started.elapsed();
        assert_eq!(ids.rings.builds, 100);
        // One backend of one service goes down: one table to build, not a hundred.
        d.services[42].backends[1].health = Health::Down;
        let started = std::time::Instant::now();
        let p = plan(&d, GlobalConfig::default(), &facts, &mut ids).unwrap();
        let warm = started.elapsed();
        assert_eq!(ids.rings.builds, 101, "only the changed service's table was built");
        eprintln!("plan of 100 services: {cold:?} building every table, {warm:?} with one changed");
        // The cached tables are the ones a fresh build makes.
        let fresh = plan(&d, GlobalConfig::default(), &facts, &mut Ids::default()).unwrap();
        assert_eq!(p.services, fresh.services);
        let id = p.backends.iter().find(|b| b.address == d.services[42].backends[1].address).unwrap().id;
        assert!(!p.services[42].table.contains(&id), "the down backend left its service's table");
        // A weight change is a change of inputs too.
        d.services[7].backends[0].weight = 5;
        plan(&d, GlobalConfig::default(), &facts, &mut ids).unwrap();
        assert_eq!(ids.rings.builds, 102);
    }
}

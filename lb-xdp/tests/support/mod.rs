//! The writer's host tests' world: a desired state with the host facts and settings it is
//! planned with, and a daemon (writer + ids) on an in-memory model of the maps, checked
//! after each reconcile against a fresh start on the same world.
#![allow(dead_code)]

pub mod sequence;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use lb_common::addr::{ip_words, vip_addr_key, vip_key};
use lb_common::consts::{PROTO_TCP, PROTO_UDP, RING_SIZE};
use lb_common::maps::{GlobalConfig, VipInfo, VipKey};
use lb_config::desired::{Circuit, Desired, DesiredBackend, DesiredService, Health, SOURCE_CONFIG};
use lb_config::{AdminState, Algorithm, Forwarding, Protocol};
use lb_xdp::plan::{HostFacts, Ids};
use lb_xdp::reconcile::reconcile;
use lb_xdp::store::{read_installed, MapStore, Table};
use lb_xdp::testkit::model::{ModelMaps, Owned};
use lb_xdp::testkit::view::View;
use lb_xdp::writer::Writer;

/// What a reconcile is given: the desired state, and the host and settings it meets.
#[derive(Clone, Debug)]
pub struct World {
    pub desired: Desired,
    /// Backend addresses whose next-hop MAC is not resolved.
    pub unresolved: BTreeSet<IpAddr>,
    /// VIP addresses that are also the host's own.
    pub own: BTreeSet<IpAddr>,
    pub global: GlobalConfig,
}

impl Default for World {
    fn default() -> Self {
        World { desired: Desired::default(), unresolved: BTreeSet::new(), own: BTreeSet::new(), global: settings(0) }
    }
}

/// Data-path settings, a few variants of them.
pub fn settings(variant: u8) -> GlobalConfig {
    let v = variant as u64 % 4;
    GlobalConfig {
        tcp_idle_ns: (v + 1) * 60_000_000_000,
        udp_idle_ns: 30_000_000_000,
        tcp_closing_ns: 10_000_000_000,
        snat_v4: u32::from_ne_bytes([172, 20, 0, 10]),
        snat_port_min: 20_000 + v as u16,
        snat_port_max: 29_999,
        configured: 1,
        ..Default::default()
    }
}

/// A MAC for each backend address (what neighbour resolution would find).
pub fn mac_of(ip: IpAddr) -> [u8; 6] {
    let (w, _) = ip_words(ip);
    let b = w[3].to_ne_bytes();
    let a = w[0].to_ne_bytes();
    [2, a[3], b[0], b[1], b[2], b[3]]
}

impl World {
    pub fn facts(&self) -> HostFacts {
        let mut f = HostFacts::default();
        for s in &self.desired.services {
            for b in &s.backends {
                if !self.unresolved.contains(&b.address.ip()) {
                    f.neighbours.insert(b.address.ip(), mac_of(b.address.ip()));
                }
            }
        }
        f.own_addresses = self.own.iter().copied().collect();
        f
    }

    /// What the target owns, for the model's watch.
    pub fn owned(&self) -> Owned {
        let mut o = Owned::default();
        for s in &self.desired.services {
            o.vips.insert(vip_key(s.vip, proto(s.protocol)));
            o.addrs.insert(vip_addr_key(s.vip.ip()));
        }
        o
    }

    pub fn service(&self, name: &str) -> Option<&DesiredService> {
        self.desired.services.iter().find(|s| s.name == name)
    }

    pub fn backends(&self) -> usize {
        self.desired.services.iter().map(|s| s.backends.len()).sum()
    }
}

pub fn proto(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
    }
}

pub fn backend(address: SocketAddr) -> DesiredBackend {
    DesiredBackend {
        address,
        weight: 1,
        state: AdminState::Ready,
        health: Health::Unknown,
        sources: SOURCE_CONFIG,
        circuit: Circuit::Closed,
        ramp: None,
    }
}

pub fn service(name: &str, vip: SocketAddr, protocol: Protocol, backends: Vec<DesiredBackend>) -> DesiredService {
    DesiredService {
        name: name.to_string(),
        vip,
        protocol,
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
    }
}

/// The `i`th backend address of a family, on `port`: 10.1.x.y or fd01::x:y.
pub fn backend_address(i: u32, v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 {
        format!("fd01::{:x}:{:x}", i / 200, i % 200 + 0x11).parse().unwrap()
    } else {
        format!("10.1.{}.{}", i / 200, i % 200 + 11).parse().unwrap()
    };
    SocketAddr::new(ip, port)
}

/// The `i`th VIP address of a family: 10.0.x.y or fd00::x:y.
pub fn vip_address(i: u32, v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 {
        format!("fd00::{:x}:{:x}", i / 200, i % 200 + 1).parse().unwrap()
    } else {
        format!("10.0.{}.{}", i / 200, i % 200 + 1).parse().unwrap()
    };
    SocketAddr::new(ip, port)
}

/// A daemon's reconciler on an in-memory model of the maps.
pub struct Daemon {
    pub writer: Writer<ModelMaps>,
    pub ids: Ids,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon { writer: Writer::new(ModelMaps::new()), ids: Ids::default() }
    }
}

impl Daemon {
    /// Reconcile `world`, with the model watching for breaches of the writer's promises.
    pub fn reconcile(&mut self, world: &World) -> Result<()> {
        self.writer.maps.owned = world.owned();
        let r = reconcile(&mut self.writer, &mut self.ids, &world.desired, world.global, &world.facts()).map(|_| ());
        self.writer.maps.owned = Owned::default();
        r
    }

    /// Stop, and start a new daemon on the same maps: it adopts them as `lb run` does.
    pub fn restart(&mut self) {
        let maps = std::mem::take(&mut self.writer.maps);
        let adopted = read_installed(&maps).expect("read the maps back");
        self.writer = Writer::new(maps);
        self.writer.adopt(&adopted);
        self.ids = Ids::default();
        self.ids.seed(&adopted);
    }

    pub fn view(&self) -> View {
        View::read(&self.writer.maps).expect("read the model")
    }
}

/// The maps a fresh start on `world` writes.
pub fn fresh_view(world: &World) -> View {
    let mut d = Daemon::default();
    d.reconcile(world).unwrap_or_else(|e| panic!("a fresh start failed: {e:#}"));
    assert!(d.writer.maps.violations.is_empty(), "a fresh start broke a promise: {:?}", d.writer.maps.violations);
    d.view()
}

/// The daemon's maps are a fresh start's, its mirror is the maps, and no write on the way
/// broke a promise.
pub fn assert_like_fresh(d: &Daemon, world: &World, what: &str) {
    let v = &d.writer.maps.violations;
    assert!(v.is_empty(), "{what}: the writer broke a promise:\n{}", v.join("\n"));
    let diffs = d.view().differences(&fresh_view(world), 12);
    assert!(
        diffs.is_empty(),
        "{what}: the maps differ from a fresh start's (left: after reconciles):\n{}",
        diffs.join("\n")
    );
    d.writer.check_mirror().unwrap_or_else(|e| panic!("{what}: the writer's mirror is not the maps: {e:#}"));
}

/// `vip` answers: its entry names the service called `name`, whose live table names
/// only its own backends, and at least one.
pub fn assert_serves(view: &View, name: &str, vip: &str, what: &str) {
    let s = view
        .services
        .get(vip)
        .unwrap_or_else(|| panic!("{what}: no VIP entry {vip}; entries: {:?}", view.services.keys()));
    assert_eq!(s.name, name, "{what}: {vip} serves another service");
    assert!(!s.members.is_empty(), "{what}: {name} has no backend");
    assert!(
        s.ring.iter().all(|&t| (t as usize) < s.members.len()),
        "{what}: {name}'s table names no backend or another's"
    );
}

/// Everything the data path reads, exactly (ids and generations included), for comparing
/// a model before and after a write that was rolled back.
#[derive(Debug, PartialEq)]
pub struct Exact {
    pub config: GlobalConfig,
    pub vips: Vec<(VipKey, VipInfo)>,
    pub addrs: Vec<(String, u32)>,
    pub services: Vec<lb_xdp::store::ServiceRows>,
    pub backends: Vec<lb_xdp::store::BackendRows>,
    /// The live tables, by VIP entry.
    pub tables: Vec<(Vec<u32>, Vec<u32>)>,
}

pub fn exact(m: &ModelMaps) -> Exact {
    let mut vips = m.vips().unwrap();
    vips.sort_by_key(|(k, _)| (k.family, k.addr, k.port, k.proto));
    let mut addrs: Vec<(String, u32)> =
        m.vip_addrs().unwrap().into_iter().map(|(k, f)| (format!("{:?}", (k.family, k.addr)), f)).collect();
    addrs.sort();
    let tables = vips
        .iter()
        .map(|(_, i)| {
            let ring = m.read_slots(Table::Ring, lb_common::consts::ring_base(i.service_id, i.ring_gen), RING_SIZE);
            let seq = m.read_slots(Table::Seq, lb_common::consts::seq_base(i.service_id, i.ring_gen), i.seq_len);
            (ring.unwrap(), seq.unwrap())
        })
        .collect();
    Exact { config: m.config, vips, addrs, services: m.services.clone(), backends: m.backends.clone(), tables }
}

/// "tcp 10.0.0.1:80", as `View` keys services.
pub fn vip_name(vip: SocketAddr, protocol: Protocol) -> String {
    format!("{} {vip}", protocol.as_str())
}

impl Exact {
    /// What differs from `other`, in a line each.
    pub fn differences(&self, other: &Exact) -> Vec<String> {
        let mut d = Vec::new();
        if self.config != other.config {
            d.push("LB_CONFIG".to_string());
        }
        for (k, i) in &self.vips {
            match other.vips.iter().find(|(o, _)| o == k) {
                None => d.push(format!("VIP {k:?} only on the left")),
                Some((_, j)) if j != i => d.push(format!("VIP {k:?}: {i:?} vs {j:?}")),
                _ => {}
            }
        }
        for (k, _) in &other.vips {
            if !self.vips.iter().any(|(o, _)| o == k) {
                d.push(format!("VIP {k:?} only on the right"));
            }
        }
        if self.addrs != other.addrs {
            d.push(format!("LB_VIP_ADDRS: {:?} vs {:?}", self.addrs, other.addrs));
        }
        for (id, (a, b)) in self.services.iter().zip(&other.services).enumerate() {
            if a != b {
                d.push(format!("service id {id}: {a:?} vs {b:?}"));
            }
        }
        for (id, (a, b)) in self.backends.iter().zip(&other.backends).enumerate() {
            if a != b {
                d.push(format!("backend id {id}: {a:?} vs {b:?}"));
            }
        }
        if self.tables != other.tables {
            d.push("the live tables".to_string());
        }
        d.truncate(8);
        d
    }
}

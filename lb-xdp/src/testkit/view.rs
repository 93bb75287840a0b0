//! What a store holds, in the terms a long-lived writer's maps are compared with a fresh
//! start's: services by VIP, backends by service name and address, live tables as the
//! backends they name. Service ids, backend ids and table generations are left out: a
//! long-lived allocator and a fresh one may give them differently. Everything else must
//! be equal, including rows no VIP reaches (`strays`), of which a fresh start has none.
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use anyhow::Result;
use lb_common::addr::{proto_name, socket, words_ip};
use lb_common::consts::{ring_base, seq_base, MAX_BACKENDS, MAX_SERVICES, NO_BACKEND, RING_SIZE, SEQ_SIZE};
use lb_common::maps::{BackendInfo, BackendMeta, GlobalConfig, ServiceMeta, VipKey};
use lb_common::ratelimit::RateLimit;

use crate::inspect::service_name;
use crate::store::{BackendRows, MapStore, ServiceRows, Table};

/// A table slot naming an id that is not one of the service's backends.
pub const FOREIGN: u32 = u32::MAX - 1;

#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub config: GlobalConfig,
    /// VIP addresses and their flags.
    pub addrs: BTreeMap<String, u32>,
    /// By "protocol VIP".
    pub services: BTreeMap<String, ServiceView>,
    /// By (service name, address).
    pub backends: BTreeMap<(String, SocketAddr), BackendView>,
    /// Rows no VIP entry reaches, and VIP entries that reach the wrong rows.
    pub strays: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceView {
    pub name: String,
    pub algorithm: u8,
    pub forwarding: u8,
    pub meta: ServiceMeta,
    pub rate_limit: RateLimit,
    /// The armed trial's backend (if its id is one of the service's), and `armed`.
    pub trial: (Option<SocketAddr>, u32),
    /// The service's backends in address order: the tables below name them by index.
    pub members: Vec<SocketAddr>,
    /// The live Maglev table: member indexes, `NO_BACKEND`, or `FOREIGN`.
    pub ring: Vec<u32>,
    /// The live sequence table's `seq_len` entries, the same way.
    pub sequence: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendView {
    /// `service_id` zeroed: an id.
    pub info: BackendInfo,
    pub meta: BackendMeta,
}

fn vip_name(key: &VipKey) -> String {
    format!("{} {}", proto_name(key.proto), socket(&key.addr, key.port, key.family))
}

impl View {
    pub fn read(store: &impl MapStore) -> Result<View> {
        let mut strays = Vec::new();
        let services_rows: Vec<ServiceRows> = (0..MAX_SERVICES).map(|id| store.service(id)).collect::<Result<_>>()?;
        let backend_rows: Vec<BackendRows> = (0..MAX_BACKENDS).map(|id| store.backend(id)).collect::<Result<_>>()?;
        let vips = store.vips()?;
        // Service id -> name, for the services a VIP entry reaches.
        let mut live: HashMap<u32, String> = HashMap::new();
        for (key, info) in &vips {
            let meta = services_rows.get(info.service_id as usize).map(|r| r.meta).unwrap_or_default();
            if meta.in_use == 0 || meta.vip != *key {
                strays.push(format!(
                    "VIP {} names service id {}, whose rows are not its",
                    vip_name(key),
                    info.service_id
                ));
            }
            if live.insert(info.service_id, service_name(&meta)).is_some() {
                strays.push(format!("service id {} is named by two VIP entries", info.service_id));
            }
        }
        for (id, rows) in services_rows.iter().enumerate() {
            if *rows != ServiceRows::default() && !live.contains_key(&(id as u32)) {
                strays.push(format!("service id {id} ({}) has rows but no VIP entry", service_name(&rows.meta)));
            }
        }
        let mut backends = BTreeMap::new();
        // Service id -> its backends (address, id).
        let mut members: HashMap<u32, Vec<(SocketAddr, u32)>> = HashMap::new();
        for (id, rows) in backend_rows.iter().enumerate() {
            if *rows == BackendRows::default() {
                continue;
            }
            let address = socket(&rows.info.addr, rows.info.port, rows.info.family);
            let Some(name) = live.get(&rows.info.service_id) else {
                strays.push(format!(
                    "backend id {id} ({address}) of service id {}, which no VIP names",
                    rows.info.service_id
                ));
                continue;
            };
            let view = BackendView { info: BackendInfo { service_id: 0, ..rows.info }, meta: rows.meta };
            if backends.insert((name.clone(), address), view).is_some() {
                strays.push(format!("backend {address} of service {name} has two ids"));
            }
            members.entry(rows.info.service_id).or_default().push((address, id as u32));
        }
        let mut services = BTreeMap::new();
        for (key, info) in &vips {
            let id = info.service_id;
            let rows = services_rows.get(id as usize).copied().unwrap_or_default();
            let mut own = members.get(&id).cloned().unwrap_or_default();
            own.sort();
            // Backend id -> index in `own`.
            let mut index = vec![FOREIGN; MAX_BACKENDS as usize];
            for (i, (_, bid)) in own.iter().enumerate() {
                index[*bid as usize] = i as u32;
            }
            let token = |bid: &u32| match bid {
                &NO_BACKEND => NO_BACKEND,
                bid => index.get(*bid as usize).copied().unwrap_or(FOREIGN),
            };
            let ring = store.read_slots(Table::Ring, ring_base(id, info.ring_gen), RING_SIZE)?;
            let seq = store.read_slots(Table::Seq, seq_base(id, info.ring_gen), info.seq_len.min(SEQ_SIZE))?;
            // A trial not armed names no backend (its id field is whatever was last there).
            let trial = match rows.trial.armed {
                0 => (None, 0),
                armed => (own.get(token(&rows.trial.backend_id) as usize).map(|b| b.0), armed),
            };
            services.insert(
                vip_name(key),
                ServiceView {
                    name: service_name(&rows.meta),
                    algorithm: info.algorithm,
                    forwarding: info.forwarding,
                    meta: rows.meta,
                    rate_limit: rows.rate_limit,
                    trial,
                    members: own.iter().map(|(a, _)| *a).collect(),
                    ring: ring.iter().map(token).collect(),
                    sequence: seq.iter().map(token).collect(),
                },
            );
        }
        let addrs =
            store.vip_addrs()?.into_iter().map(|(k, flags)| (words_ip(&k.addr, k.family).to_string(), flags)).collect();
        strays.sort();
        Ok(View { config: store.config()?, addrs, services, backends, strays })
    }

    /// What differs from `other`, one line each (tables summed up), at most `limit` lines.
    pub fn differences(&self, other: &View, limit: usize) -> Vec<String> {
        let mut d = Vec::new();
        // Each daemon draws its own SNAT probe seed: two loads never share it.
        let unseeded = |c: &lb_common::maps::GlobalConfig| lb_common::maps::GlobalConfig { snat_seed: 0, ..*c };
        if unseeded(&self.config) != unseeded(&other.config) {
            d.push(format!("LB_CONFIG: {:?} vs {:?}", self.config, other.config));
        }
        if self.addrs != other.addrs {
            d.push(format!("LB_VIP_ADDRS: {:?} vs {:?}", self.addrs, other.addrs));
        }
        for (vip, a) in &self.services {
            match other.services.get(vip) {
                None => d.push(format!("service {vip} ({}) only on the left", a.name)),
                Some(b) if a != b => d.push(format!("service {vip}: {}", service_difference(a, b))),
                Some(_) => {}
            }
        }
        for (vip, b) in &other.services {
            if !self.services.contains_key(vip) {
                d.push(format!("service {vip} ({}) only on the right", b.name));
            }
        }
        for (key, a) in &self.backends {
            match other.backends.get(key) {
                None => d.push(format!("backend {} {} only on the left", key.0, key.1)),
                Some(b) if a != b => d.push(format!("backend {} {}: {a:?} vs {b:?}", key.0, key.1)),
                Some(_) => {}
            }
        }
        for key in other.backends.keys() {
            if !self.backends.contains_key(key) {
                d.push(format!("backend {} {} only on the right", key.0, key.1));
            }
        }
        if self.strays != other.strays {
            d.push(format!("stray rows: {:?} vs {:?}", self.strays, other.strays));
        }
        d.truncate(limit);
        d
    }
}

fn service_difference(a: &ServiceView, b: &ServiceView) -> String {
    let mut d = Vec::new();
    if a.name != b.name {
        d.push(format!("name {} vs {}", a.name, b.name));
    }
    if (a.algorithm, a.forwarding) != (b.algorithm, b.forwarding) {
        d.push(format!("algorithm/forwarding {:?} vs {:?}", (a.algorithm, a.forwarding), (b.algorithm, b.forwarding)));
    }
    if a.meta != b.meta {
        d.push(format!("meta {:?} vs {:?}", a.meta, b.meta));
    }
    if a.rate_limit != b.rate_limit {
        d.push(format!("rate limit {:?} vs {:?}", a.rate_limit, b.rate_limit));
    }
    if a.trial != b.trial {
        d.push(format!("trial {:?} vs {:?}", a.trial, b.trial));
    }
    if a.members != b.members {
        d.push(format!("members {:?} vs {:?}", a.members, b.members));
    }
    for (what, x, y) in [("ring", &a.ring, &b.ring), ("sequence", &a.sequence, &b.sequence)] {
        if x != y {
            let differing = x.iter().zip(y.iter()).filter(|(p, q)| p != q).count();
            let first = x.iter().zip(y.iter()).position(|(p, q)| p != q);
            d.push(format!("{what}: lengths {} vs {}, {differing} slots differ, first at {first:?}", x.len(), y.len()));
        }
    }
    d.join("; ")
}

//! Reading the data path's state back for people and scripts (`lb list`). Display only:
//! nothing here feeds a decision.
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use anyhow::Result;
use lb_common::consts::*;
use lb_common::maps::{FlowKey, FlowState, ServiceMeta, VipKey};
use lb_common::reason::{ACTION_NAMES, DROP_REASON_NAMES};
use serde::Serialize;

use super::maps::{sum_counters, Maps};
use lb_common::addr::{proto_name, socket};
use lb_config::desired::{source_names, Health};

#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct VipRow {
    pub service: String,
    pub vip: String,
    pub protocol: String,
    pub algorithm: String,
    pub forwarding: String,
    pub backends: u32,
    /// `[cluster.bgp]`: whether the VIP is announced (from the daemon's API); `null`
    /// without BGP or when the API does not answer.
    #[serde(default)]
    pub announced: Option<bool>,
}

#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct BackendRow {
    pub service: String,
    pub address: String,
    pub weight: u32,
    pub state: String,
    pub health: String,
    pub source: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Circuit breaker: "closed" | "open" | "half_open".
    #[serde(default = "lb_config::desired::Circuit::closed_name")]
    pub circuit: String,
}

#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct FlowRow {
    pub protocol: String,
    pub client: String,
    pub vip: String,
    /// The backend the flow went to. Once that backend is retired (its id freed, or
    /// given to another backend) the data path no longer knows it by id: a nat flow's
    /// address is then read from its reverse-NAT entry, a dsr flow's is gone (`unknown`).
    pub backend: String,
    /// The flow's backend was retired: its next packet will be treated as a new flow.
    #[serde(default)]
    pub backend_retired: bool,
    /// The LB's source port towards the backend (nat), absent in dsr.
    pub snat_port: Option<u16>,
    pub idle_seconds: f64,
    pub closing: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Stats {
    pub actions: BTreeMap<String, u64>,
    pub drops: BTreeMap<String, u64>,
    /// New flows refused by `rate_limit`: service → scope ("service" | "source") → count.
    pub ratelimited: BTreeMap<String, BTreeMap<String, u64>>,
    /// New flows refused by the service's `allow` / `deny` lists: service → count.
    pub acl_denied: BTreeMap<String, u64>,
}

pub fn service_name(meta: &ServiceMeta) -> String {
    let end = meta.name.iter().position(|&b| b == 0).unwrap_or(meta.name.len());
    String::from_utf8_lossy(&meta.name[..end]).into_owned()
}

pub fn algorithm_name(code: u8) -> &'static str {
    match code {
        ALG_MAGLEV => "maglev",
        ALG_SOURCE_HASH => "source_hash",
        ALG_ROUND_ROBIN => "round_robin",
        ALG_WEIGHTED_ROUND_ROBIN => "weighted_round_robin",
        ALG_RANDOM => "random",
        ALG_LEAST_CONN => "least_conn",
        ALG_P2C => "p2c",
        _ => "unknown",
    }
}

/// Live flows that count as active (opened by a SYN or confirmed, not closing: see
/// `FLOW_COUNTED`) per backend id: what least_conn and p2c compare. The daemon
/// writes these counts back into `LB_ACTIVE` every few seconds, correcting what the data
/// path's own counting cannot see (flows that expire without a FIN or RST).
pub fn live_flows_per_backend(maps: &Maps) -> Result<std::collections::HashMap<u32, u32>> {
    let cfg = maps.config.get(&CONFIG_KEY, 0)?;
    let now = monotonic_ns();
    let mut counts = std::collections::HashMap::new();
    for (k, s) in maps.flows.iter().flatten() {
        if s.flags & FLOW_COUNTED != 0 && s.is_live(k.proto, now, &cfg) {
            *counts.entry(s.backend_id).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

fn forwarding_name(code: u8) -> &'static str {
    match code {
        FWD_DSR => "dsr",
        FWD_IPIP => "ipip",
        FWD_GUE => "gue",
        _ => "nat",
    }
}

/// The services in use; none when their table cannot be read (the listings that name
/// services by id then name none).
fn services(maps: &Maps) -> Vec<(u32, ServiceMeta)> {
    maps.services_in_use().inspect_err(|e| tracing::debug!("{e:#}")).unwrap_or_default()
}

pub fn vips(maps: &Maps) -> Vec<VipRow> {
    services(maps)
        .into_iter()
        .map(|(_, m)| VipRow {
            service: service_name(&m),
            vip: socket(&m.vip.addr, m.vip.port, m.vip.family).to_string(),
            protocol: proto_name(m.vip.proto).into(),
            algorithm: algorithm_name(m.algorithm).into(),
            forwarding: forwarding_name(m.forwarding).into(),
            backends: m.backend_count,
            announced: None,
        })
        .collect()
}

pub fn backends(maps: &Maps) -> Result<Vec<BackendRow>> {
    let names: BTreeMap<u32, String> = services(maps).into_iter().map(|(id, m)| (id, service_name(&m))).collect();
    let mut rows = Vec::new();
    for (id, meta) in maps.backends_in_use()? {
        let info = maps.backends.get(&id, 0)?;
        let c = sum_counters(&maps.backend_stats.get(&id, 0)?);
        rows.push(BackendRow {
            service: names.get(&info.service_id).cloned().unwrap_or_default(),
            address: socket(&info.addr, info.port, info.family).to_string(),
            weight: meta.weight,
            state: ["ready", "drain", "maint"].get(meta.state as usize).unwrap_or(&"unknown").to_string(),
            health: [Health::Unknown, Health::Up, Health::Down]
                .get(meta.health as usize)
                .map_or("unknown", |h| h.as_str())
                .to_string(),
            source: source_names(meta.source).join(","),
            packets: c.packets,
            bytes: c.bytes,
            new_flows: c.new_flows,
            circuit: ["closed", "open", "half_open"].get(meta.circuit as usize).unwrap_or(&"unknown").to_string(),
        });
    }
    Ok(rows)
}

/// CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Live flows (entries past their idle timeout are dead to the data path and not shown).
pub fn flows(maps: &Maps) -> Result<Vec<FlowRow>> {
    let cfg = maps.config.get(&CONFIG_KEY, 0)?;
    let now = monotonic_ns();
    let services: HashMap<VipKey, u32> = maps.vips.iter().flatten().map(|(k, v)| (k, v.service_id)).collect();
    let mut nat: Option<HashMap<NatOwner, SocketAddr>> = None;
    let mut rows = Vec::new();
    for entry in maps.flows.iter() {
        let Ok((key, s)) = entry else { continue };
        if !s.is_live(key.proto, now, &cfg) {
            continue;
        }
        let idle = now.saturating_sub(s.last_seen_ns);
        let current = current_backend(maps, &key, s.backend_id, &services)?;
        let (backend, backend_retired) = match current {
            Some(b) => (b.to_string(), false),
            None => {
                // Read once, and only when some flow needs it: as big as the flow table.
                let nat = nat.get_or_insert_with(|| nat_backends(maps));
                let went_to = nat.get(&NatOwner::of(&key, &s)).map_or_else(|| "unknown".to_string(), |a| a.to_string());
                (went_to, true)
            }
        };
        rows.push(FlowRow {
            protocol: proto_name(key.proto).into(),
            client: socket(&key.src, key.sport, key.family).to_string(),
            vip: socket(&key.dst, key.dport, key.family).to_string(),
            backend,
            backend_retired,
            snat_port: (s.snat_port != 0).then(|| u16::from_be(s.snat_port)),
            idle_seconds: (idle as f64 / 1e9 * 10.0).round() / 10.0,
            closing: s.flags & FLOW_CLOSING != 0,
        });
    }
    rows.sort_by(|a, b| (&a.vip, &a.client).cmp(&(&b.vip, &b.client)));
    Ok(rows)
}

/// The address of the flow's backend while its id still names it: in use, and not given
/// to a backend of another service than the one that now has the flow's VIP. `None`:
/// retired (the data path will move the flow at its next packet).
fn current_backend(
    maps: &Maps,
    key: &FlowKey,
    backend_id: u32,
    services: &HashMap<VipKey, u32>,
) -> Result<Option<SocketAddr>> {
    if maps.backend_meta.get(&backend_id, 0)?.in_use == 0 {
        return Ok(None);
    }
    let b = maps.backends.get(&backend_id, 0)?;
    let vip = VipKey { addr: key.dst, port: key.dport, proto: key.proto, family: key.family };
    let same_service = services.get(&vip).is_none_or(|&id| id == b.service_id);
    Ok(same_service.then(|| socket(&b.addr, b.port, b.family)))
}

/// What identifies a nat flow in its reverse-NAT entry: the client's side, its SNAT port
/// and the backend id it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct NatOwner {
    client: ([u32; 4], u16),
    vip: ([u32; 4], u16),
    proto: u8,
    family: u8,
    snat_port: u16,
    backend_id: u32,
}

impl NatOwner {
    fn of(key: &FlowKey, s: &FlowState) -> Self {
        NatOwner {
            client: (key.src, key.sport),
            vip: (key.dst, key.dport),
            proto: key.proto,
            family: key.family,
            snat_port: s.snat_port,
            backend_id: s.backend_id,
        }
    }
}

/// Every reverse-NAT entry's backend address, by the flow that made it. The entry keeps
/// the address after the backend's id is retired, for as long as the flow lives.
fn nat_backends(maps: &Maps) -> HashMap<NatOwner, SocketAddr> {
    maps.nat
        .iter()
        .flatten()
        .map(|(k, v)| {
            let owner = NatOwner {
                client: (v.client_addr, v.client_port),
                vip: (v.vip_addr, v.vip_port),
                proto: k.proto,
                family: k.family,
                snat_port: k.snat_port,
                backend_id: v.backend_id,
            };
            (owner, socket(&k.backend_addr, k.backend_port, k.family))
        })
        .collect()
}

pub fn stats(maps: &Maps) -> Result<Stats> {
    let mut actions = BTreeMap::new();
    for (i, name) in ACTION_NAMES.iter().enumerate() {
        let v = maps.action_stats.get(&(i as u32), 0)?;
        actions.insert(name.to_string(), v.iter().sum());
    }
    let mut drops = BTreeMap::new();
    for (i, name) in DROP_REASON_NAMES.iter().enumerate() {
        let v = maps.drop_stats.get(&(i as u32), 0)?;
        drops.insert(name.to_string(), v.iter().sum());
    }
    let mut ratelimited: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (service, scope, n) in self::ratelimited(maps)? {
        ratelimited.entry(service).or_default().insert(scope.to_string(), n);
    }
    let acl_denied = self::acl_denied(maps)?.into_iter().collect();
    Ok(Stats { actions, drops, ratelimited, acl_denied })
}

/// New flows each service's source lists refused: (service, count), every service.
pub fn acl_denied(maps: &Maps) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for (id, meta) in services(maps) {
        let n: u64 = maps.acl_denied.get(&id, 0)?.iter().sum();
        out.push((service_name(&meta), n));
    }
    Ok(out)
}

/// New flows each service's `rate_limit` refused, per scope: (service, scope, count).
pub fn ratelimited(maps: &Maps) -> Result<Vec<(String, &'static str, u64)>> {
    let mut out = Vec::new();
    for (id, meta) in services(maps) {
        for (scope, name) in RL_SCOPE_NAMES.iter().enumerate() {
            let n: u64 = maps.ratelimited.get(&(id * 2 + scope as u32), 0)?.iter().sum();
            out.push((service_name(&meta), *name, n));
        }
    }
    Ok(out)
}

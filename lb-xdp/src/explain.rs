//! `lb explain`: which backend a flow gets, computed from the pinned maps with the data
//! path's own functions (lb-common's hash, the live table generation, the same
//! conntrack-then-ring order), so the answer is where real packets go.
use std::net::SocketAddr;

use anyhow::{bail, Result};
use lb_common::consts::*;
use lb_common::hash::{flow_hash, source_hash};
use lb_common::maps::FlowKey;
use serde::Serialize;

use super::inspect::{algorithm_name, monotonic_ns, service_name};
use super::maps::Maps;
use lb_common::addr::{ip_words, port_be, socket, vip_key};

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Explanation {
    pub service: String,
    pub algorithm: String,
    /// "existing flow" when conntrack already pins the flow, else "new flow".
    pub decision: String,
    pub backend: Option<String>,
    pub ring_slot: Option<u32>,
    pub hash: u32,
}

pub fn explain(maps: &Maps, vip: SocketAddr, client: SocketAddr, proto: u8) -> Result<Explanation> {
    if vip.is_ipv4() != client.is_ipv4() {
        bail!("the VIP and the client must be of the same address family");
    }
    let vk = vip_key(vip, proto);
    let Ok(info) = maps.vips.get(&vk, 0) else {
        bail!("no service has VIP {vip}/{}", lb_common::addr::proto_name(proto));
    };
    let meta = maps.service_meta.get(&info.service_id, 0)?;
    let (src, family) = ip_words(client.ip());
    let key = FlowKey { src, dst: vk.addr, sport: port_be(client.port()), dport: vk.port, proto, family, _pad: [0; 2] };
    let hash = flow_hash(&key.src, &key.dst, key.sport, key.dport, key.proto);
    let usable = |id: u32| {
        maps.backends
            .get(&id, 0)
            .ok()
            .filter(|b| b.flags & BACKEND_ACTIVE != 0 && b.service_id == info.service_id)
            .map(|b| socket(&b.addr, b.port, b.family).to_string())
    };
    let mut out = Explanation {
        service: service_name(&meta),
        algorithm: algorithm_name(info.algorithm).into(),
        decision: "new flow".into(),
        backend: None,
        ring_slot: None,
        hash,
    };
    if let Ok(state) = maps.flows.get(&key, 0) {
        let cfg = maps.config.get(&CONFIG_KEY, 0)?;
        if state.is_live(proto, monotonic_ns(), &cfg) {
            if let Some(b) = usable(state.backend_id) {
                out.decision = "existing flow".into();
                out.backend = Some(b);
                return Ok(out);
            }
        }
    }
    let h = match info.algorithm {
        ALG_MAGLEV => hash,
        ALG_SOURCE_HASH => source_hash(&key.src),
        _ => return not_a_function_of_the_flow(maps, &info, out, usable),
    };
    let slot = h % RING_SIZE;
    out.ring_slot = Some(slot);
    let id = maps.ring.get(&(ring_base(info.service_id, info.ring_gen) + slot), 0)?;
    out.backend = if id == NO_BACKEND { None } else { usable(id) };
    Ok(out)
}

/// The other algorithms decide from state, not from the flow: say how, and for least_conn
/// name the backend the live-flow counts favour right now.
fn not_a_function_of_the_flow(
    maps: &Maps,
    info: &lb_common::maps::VipInfo,
    mut out: Explanation,
    usable: impl Fn(u32) -> Option<String>,
) -> Result<Explanation> {
    let base = seq_base(info.service_id, info.ring_gen);
    let members: Vec<u32> = (0..info.seq_len.min(SEQ_SIZE)).filter_map(|i| maps.seq.get(&(base + i), 0).ok()).collect();
    let how = match info.algorithm {
        ALG_ROUND_ROBIN | ALG_WEIGHTED_ROUND_ROBIN => "the next backend in turn (each CPU keeps its own turn)",
        ALG_RANDOM => "a random backend, weighted",
        ALG_P2C => "the less loaded of two random backends",
        _ => "the backend with the fewest live flows",
    };
    out.decision = format!("new flow: {how}");
    if info.algorithm == ALG_LEAST_CONN {
        let load = |id: &u32| maps.active.get(id, 0).ok().filter(|n| *n < 1 << 62).unwrap_or(0);
        out.backend = members.iter().min_by_key(|id| load(id)).and_then(|id| usable(*id));
    }
    Ok(out)
}

//! Backend selection for a new flow: the seam where every algorithm plugs in. Maglev and
//! source hash read the service's live Maglev table; the hash functions are lb-common's,
//! the same ones `lb explain` calls.

use lb_common::{
    consts::{ring_base, ALG_SOURCE_HASH, BACKEND_ACTIVE, NO_BACKEND, RING_SIZE},
    hash::source_hash,
    maps::{BackendInfo, FlowKey, VipInfo},
};

use crate::maps::{LB_BACKENDS, LB_RING};

#[inline(always)]
pub fn pick(vip: &VipInfo, key: &FlowKey, flow_hash: u32) -> Option<u32> {
    let h = match vip.algorithm {
        ALG_SOURCE_HASH => source_hash(&key.src),
        _ => flow_hash,
    };
    let id = *LB_RING.get(ring_base(vip.service_id, vip.ring_gen) + h % RING_SIZE)?;
    if id == NO_BACKEND { None } else { Some(id) }
}

/// The backend behind `id`, if it still belongs to the service and may carry flows
/// (ready or draining, not removed, not down).
#[inline(always)]
pub fn usable(id: u32, service_id: u32) -> Option<&'static BackendInfo> {
    let b = LB_BACKENDS.get(id)?;
    if b.flags & BACKEND_ACTIVE == 0 || b.service_id != service_id {
        return None;
    }
    Some(b)
}

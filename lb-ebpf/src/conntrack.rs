//! Connection tracking: a flow keeps its backend for its whole life. Entries live in an LRU
//! hash; an entry idle for longer than its protocol's timeout (shortened once a FIN or RST
//! was seen) counts as gone, so its next packet is a new flow.

use lb_common::{
    consts::FLOW_CLOSING,
    maps::{FlowKey, FlowState, GlobalConfig},
};

use crate::{
    maps::LB_FLOWS,
    parse::{L3, L4, TCP_FIN, TCP_RST},
};

#[inline(always)]
pub fn key(p: &L3, l4: &L4) -> FlowKey {
    FlowKey { src: p.src, dst: p.dst, sport: l4.sport, dport: l4.dport, proto: p.proto, family: p.family, _pad: [0; 2] }
}

/// The live entry of a flow, if any.
#[inline(always)]
pub fn live(key: &FlowKey, now: u64, cfg: &GlobalConfig) -> Option<*mut FlowState> {
    let state = LB_FLOWS.get_ptr_mut(key)?;
    // SAFETY: map value pointer from a successful lookup.
    if !unsafe { &*state }.is_live(key.proto, now, cfg) {
        return None;
    }
    Some(state)
}

/// A packet of the flow went through: refresh its idle timer, note FIN/RST. When this
/// packet is the flow's first FIN or RST, the flow's backend id: the caller then counts the
/// flow out of that backend's live flows (`select::flow_closing`), once.
#[inline(always)]
#[must_use]
pub fn touch(state: *mut FlowState, now: u64, tcp_flags: u8) -> Option<u32> {
    // SAFETY: map value pointer; a racing writer on another CPU can only store the same
    // kinds of values, and a torn timestamp only shortens or lengthens one idle check.
    unsafe {
        (*state).last_seen_ns = now;
        if tcp_flags & (TCP_FIN | TCP_RST) != 0 && (*state).flags & FLOW_CLOSING == 0 {
            (*state).flags |= FLOW_CLOSING;
            return Some((*state).backend_id);
        }
    }
    None
}

#[inline(always)]
pub fn insert(key: &FlowKey, backend_id: u32, snat_port: u16, now: u64, tcp_flags: u8) -> bool {
    let flags = if tcp_flags & (TCP_FIN | TCP_RST) != 0 { FLOW_CLOSING } else { 0 };
    let state = FlowState { last_seen_ns: now, backend_id, snat_port, flags, _pad: 0 };
    LB_FLOWS.insert(key, &state, 0).is_ok()
}

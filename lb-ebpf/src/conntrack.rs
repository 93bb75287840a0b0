//! Connection tracking: a flow keeps its backend for its whole life. Entries live in an LRU
//! hash; an entry idle for longer than its limit counts as gone, so its next packet is a
//! new flow. The limit depends on how far the flow got (lb-common `track.rs`): embryonic
//! flows (handshake not completed, UDP not answered) live only `tcp_handshake_timeout` /
//! `udp_unreplied_timeout`, closing ones a short while, established ones their idle timeout.

use lb_common::{
    consts::FLOW_COUNTED,
    maps::{FlowKey, FlowState, GlobalConfig},
    track::{Count, Segment},
};

use crate::{
    maps::LB_FLOWS,
    parse::{L3, L4},
    select,
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

/// Whether a flow is counted in `LB_ACTIVE` changed: apply it to its backend's count.
#[inline(always)]
fn recount(state: *mut FlowState, count: Count) {
    // SAFETY: map value pointer.
    let backend_id = unsafe { (*state).backend_id };
    match count {
        Count::In => select::flow_opened(backend_id),
        Count::Out => select::flow_closing(backend_id),
        Count::Same => {}
    }
}

/// A client's packet of a live flow went through: refresh it, track how far it got.
/// (A racing writer on another CPU stores the same kinds of values; a torn update only
/// shortens or lengthens one idle check.)
#[inline(always)]
pub fn client_packet(state: *mut FlowState, proto: u8, forwarding: u8, seg: &Segment, now: u64) {
    // SAFETY: map value pointer from a successful lookup.
    let count = unsafe { (*state).client_packet(proto, forwarding, seg, now) };
    recount(state, count);
}

/// A backend's packet of a live flow on its way back (nat).
#[inline(always)]
pub fn server_packet(state: *mut FlowState, proto: u8, seg: &Segment, now: u64) {
    // SAFETY: as above.
    let count = unsafe { (*state).server_packet(proto, seg, now) };
    recount(state, count);
}

/// Record a new flow; it counts as active at once unless it is unconfirmed or closing.
#[inline(always)]
pub fn insert(key: &FlowKey, backend_id: u32, snat_port: u16, now: u64, seg: &Segment) -> bool {
    let state = FlowState::opened(backend_id, snat_port, now, key.proto, seg);
    if LB_FLOWS.insert(key, &state, 0).is_err() {
        return false;
    }
    if state.flags & FLOW_COUNTED != 0 {
        select::flow_opened(backend_id);
    }
    true
}

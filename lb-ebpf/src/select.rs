//! Backend selection for a new flow: the seam where every algorithm plugs in. The hashing
//! ones (maglev, source_hash) and random read the service's Maglev table; round robin and
//! weighted round robin walk its sequence table with a per-CPU cursor; least_conn and p2c
//! compare the live-flow counts of its members. The hash functions are lb-common's, the
//! same ones `lb explain` and the proxy path call.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use lb_common::{
    consts::*,
    hash::source_hash,
    maps::{BackendInfo, FlowKey, VipInfo},
};

use crate::maps::{LB_ACTIVE, LB_BACKENDS, LB_RING, LB_RR_CURSOR, LB_SEQ, LB_TRIALS};

/// A half-open circuit breaker's trial: the next new flow of the service goes to the
/// backend on trial, once. Two CPUs may both take it at the same instant: then two flows
/// try it, which the daemon's breaker handles the same way.
#[inline(always)]
pub fn trial(service_id: u32) -> Option<u32> {
    let t = LB_TRIALS.get_ptr_mut(service_id)?;
    // SAFETY: map value pointer; the daemon rewrites the entry whole.
    unsafe {
        if (*t).armed == 0 {
            return None;
        }
        (*t).armed = 0;
        Some((*t).backend_id)
    }
}

/// Out of line: its frame is separate from the forwarding path's (BPF stack, 512 bytes).
#[inline(never)]
pub fn pick(vip: &VipInfo, key: &FlowKey, flow_hash: u32) -> u32 {
    let id = match vip.algorithm {
        ALG_SOURCE_HASH => ring(vip, source_hash(&key.src)),
        // SAFETY: helper without preconditions.
        ALG_RANDOM => ring(vip, unsafe { bpf_get_prandom_u32() }),
        ALG_ROUND_ROBIN | ALG_WEIGHTED_ROUND_ROBIN => sequence(vip),
        ALG_LEAST_CONN => least_conn(vip),
        ALG_P2C => two_choices(vip),
        _ => ring(vip, flow_hash),
    };
    id.unwrap_or(NO_BACKEND)
}

#[inline(always)]
fn ring(vip: &VipInfo, hash: u32) -> Option<u32> {
    let id = *LB_RING.get(ring_base(vip.service_id, vip.ring_gen) + hash % RING_SIZE)?;
    if id == NO_BACKEND {
        None
    } else {
        Some(id)
    }
}

#[inline(always)]
fn member(vip: &VipInfo, i: u32) -> Option<u32> {
    if vip.seq_len == 0 || vip.seq_len > SEQ_SIZE {
        return None;
    }
    LB_SEQ.get(seq_base(vip.service_id, vip.ring_gen) + i % vip.seq_len).copied()
}

/// This CPU's next position in the service's sequence.
#[inline(always)]
fn next_cursor(service_id: u32) -> u32 {
    match LB_RR_CURSOR.get_ptr_mut(service_id) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        Some(c) => unsafe {
            let n = *c;
            *c = n.wrapping_add(1);
            n
        },
        None => 0,
    }
}

#[inline(always)]
fn sequence(vip: &VipInfo) -> Option<u32> {
    member(vip, next_cursor(vip.service_id))
}

/// Live flows on backend `id`. A count that wrapped below zero (a decrement after the
/// daemon's recount already left the flow out) reads as 0 until the next recount.
#[inline(always)]
fn active(id: u32) -> u64 {
    match LB_ACTIVE.get(id) {
        Some(&n) if n < 1 << 62 => n,
        Some(_) => 0,
        None => u64::MAX,
    }
}

#[inline(always)]
fn least_conn(vip: &VipInfo) -> Option<u32> {
    let start = next_cursor(vip.service_id);
    let mut best = member(vip, start)?;
    let mut best_load = active(best);
    let n = if vip.seq_len < LEAST_CONN_SCAN { vip.seq_len } else { LEAST_CONN_SCAN };
    for k in 1..LEAST_CONN_SCAN {
        if k >= n {
            break;
        }
        let Some(id) = member(vip, start.wrapping_add(k)) else { break };
        let load = active(id);
        if load < best_load {
            best = id;
            best_load = load;
        }
    }
    Some(best)
}

#[inline(always)]
fn two_choices(vip: &VipInfo) -> Option<u32> {
    // SAFETY: helper without preconditions.
    let (a, b) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
    let a = member(vip, a)?;
    let b = member(vip, b)?;
    Some(if active(b) < active(a) { b } else { a })
}

/// A new flow on `id`: one more live flow. A plain read-modify-write, not an atomic one
/// (the BPF target offers no atomic read-modify-write to Rust's core): two CPUs updating
/// the same backend at the same instant can lose one step, which the daemon's periodic
/// recount repairs. Documented as an approximation.
#[inline(always)]
pub fn flow_opened(id: u32) {
    if let Some(p) = LB_ACTIVE.get_ptr_mut(id) {
        // SAFETY: a u64 in a map value; see above for concurrent updates.
        unsafe { *p = (*p).wrapping_add(1) };
    }
}

/// A flow on `id` saw its first FIN or RST.
#[inline(always)]
pub fn flow_closing(id: u32) {
    if let Some(p) = LB_ACTIVE.get_ptr_mut(id) {
        // SAFETY: as above.
        unsafe { *p = (*p).wrapping_sub(1) };
    }
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

//! `rate_limit`: token buckets for new flows, checked before a backend is chosen, so a
//! flood costs one map lookup per packet and nothing downstream. Established flows never
//! come here. The client's own bucket is checked first: an abusive source is stopped by
//! its limit without draining the service's budget for everyone else.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use lb_common::{
    consts::{RL_SCOPE_SERVICE, RL_SCOPE_SOURCE},
    maps::{FlowKey, SourceKey},
    ratelimit::{Bucket, Limit},
};

use crate::maps::{LB_RATELIMITED, LB_RATE_LIMITS, LB_SERVICE_BUCKETS, LB_SOURCE_BUCKETS};

/// Scratch for a new flow's rate-limit lookups. Private to the program, never pinned.
#[map]
static LB_SCRATCH_RATE: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// A source bucket's key and a fresh bucket, built in per-CPU scratch: on the stack they
/// would push the deepest call chain past the 512-byte BPF stack.
#[repr(C)]
struct Scratch {
    key: SourceKey,
    _pad: u32,
    bucket: Bucket,
}

/// May this new flow start? Refusals are counted per service and scope.
#[inline(never)]
pub fn admit(key: &FlowKey, service_id: u32, now: u64) -> bool {
    let Some(limits) = LB_RATE_LIMITS.get(service_id) else { return true };
    if !limits.per_source.unlimited() && !source(key, service_id, &limits.per_source, now) {
        refused(service_id, RL_SCOPE_SOURCE);
        return false;
    }
    if !limits.service.unlimited() {
        if let Some(b) = LB_SERVICE_BUCKETS.get_ptr_mut(service_id) {
            // SAFETY: map value pointer; see LB_SERVICE_BUCKETS on concurrent updates.
            if !unsafe { (*b).take(&limits.service, now) } {
                refused(service_id, RL_SCOPE_SERVICE);
                return false;
            }
        }
    }
    true
}

#[inline(always)]
fn source(key: &FlowKey, service_id: u32, limit: &Limit, now: u64) -> bool {
    let Some(scratch) = LB_SCRATCH_RATE.get_ptr_mut(0) else { return true };
    // SAFETY: per-CPU scratch, only this program on this CPU uses it now.
    let scratch = unsafe { &mut *scratch };
    scratch.key = SourceKey::new(&key.src, key.family, service_id);
    if let Some(b) = LB_SOURCE_BUCKETS.get_ptr_mut(&scratch.key) {
        // SAFETY: map value pointer from a successful lookup.
        return unsafe { (*b).take(limit, now) };
    }
    // First flow from this client (or it was evicted): a full bucket, less this flow.
    scratch.bucket = Bucket::full(limit, now);
    let ok = scratch.bucket.take(limit, now);
    let _ = LB_SOURCE_BUCKETS.insert(&scratch.key, &scratch.bucket, 0);
    ok
}

#[inline(always)]
fn refused(service_id: u32, scope: u32) {
    if let Some(c) = LB_RATELIMITED.get_ptr_mut(service_id * 2 + scope) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        unsafe { *c += 1 };
    }
}

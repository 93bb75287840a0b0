//! Per-CPU counters: every decision the data path makes is counted, so it explains itself.

use lb_common::{maps::Counters, reason::DropReason};

use crate::maps::{LB_ACTION_STATS, LB_BACKEND_STATS, LB_DROP_STATS, LB_SERVICE_STATS};

#[inline(always)]
pub fn action(action: u32) -> u32 {
    if let Some(c) = LB_ACTION_STATS.get_ptr_mut(action) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        unsafe { *c += 1 };
    }
    action
}

#[inline(always)]
pub fn drop(reason: DropReason) {
    if let Some(c) = LB_DROP_STATS.get_ptr_mut(reason as u32) {
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn add(c: Option<*mut Counters>, bytes: u64, new_flow: bool) {
    if let Some(c) = c {
        // SAFETY: per-CPU slot, as above.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
            if new_flow {
                (*c).new_flows += 1;
            }
        }
    }
}

#[inline(always)]
pub fn forwarded(service_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    add(LB_SERVICE_STATS.get_ptr_mut(service_id), bytes, new_flow);
    add(LB_BACKEND_STATS.get_ptr_mut(backend_id), bytes, new_flow);
}

//! `persistence_timeout`: a client's new flow within the timeout of its previous one goes to
//! the same backend, whatever the algorithm would pick, as long as that backend is still in
//! the service's rotation (a backend draining, down, ejected or removed ends its clients'
//! persistence: their next flow is balanced anew). The clock restarts at each new flow of
//! the client. Keyed by the client's full address, per service, in the LRU `LB_PERSIST`.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use lb_common::{
    consts::{BACKEND_IN_ROTATION, NO_BACKEND},
    maps::{FlowKey, PersistKey, Persisted, VipInfo},
};

use crate::maps::{LB_BACKENDS, LB_PERSIST};

/// The key and a fresh entry, built in per-CPU scratch: on the stack they would push the
/// forwarding path past the 512-byte BPF stack. Private to the program, never pinned.
#[map]
static LB_SCRATCH_PERSIST: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct Scratch {
    key: PersistKey,
    entry: Persisted,
}

/// The scratch slot with `key` set to this client of this service.
#[inline(always)]
fn scratch(vip: &VipInfo, key: &FlowKey) -> Option<*mut Scratch> {
    let s = LB_SCRATCH_PERSIST.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, no other user on this CPU while the program runs.
    unsafe {
        (*s).key = PersistKey { addr: key.src, service_id: vip.service_id, family: key.family, _pad: [0; 3] };
    }
    Some(s)
}

/// The backend this client persists on, or `NO_BACKEND`. A hit restarts the client's clock.
#[inline(never)]
pub fn remembered(vip: &VipInfo, key: &FlowKey, now: u64) -> u32 {
    let Some(s) = scratch(vip, key) else { return NO_BACKEND };
    // SAFETY: the scratch slot above.
    let Some(p) = LB_PERSIST.get_ptr_mut(unsafe { &(*s).key }) else { return NO_BACKEND };
    // SAFETY: map value pointer from a successful lookup; two CPUs writing the same
    // client's entry at once each write a whole, valid entry.
    let (last, id) = unsafe { ((*p).last_ns, (*p).backend_id) };
    if now.saturating_sub(last) >= u64::from(vip.persist_ms) * 1_000_000 {
        return NO_BACKEND;
    }
    let Some(b) = LB_BACKENDS.get(id) else { return NO_BACKEND };
    if b.flags & BACKEND_IN_ROTATION == 0 || b.service_id != vip.service_id {
        return NO_BACKEND;
    }
    // SAFETY: as above.
    unsafe { (*p).last_ns = now };
    id
}

/// This client's new flow went to `id`: its next ones follow, within the timeout.
#[inline(never)]
pub fn remember(vip: &VipInfo, key: &FlowKey, id: u32, now: u64) {
    let Some(s) = scratch(vip, key) else { return };
    // SAFETY: the scratch slot above; the map copies key and value.
    unsafe {
        (*s).entry = Persisted { last_ns: now, backend_id: id, _pad: 0 };
        let _ = LB_PERSIST.insert(&(*s).key, &(*s).entry, 0);
    }
}

//! Full NAT: a new flow gets a source port from `snat_ports` on the LB's SNAT address, and
//! the mapping (backend, backend port, SNAT port) → (client, VIP) lets replies be translated
//! back, so backends need no change at all (the seed's Docker set-up).

use aya_ebpf::{
    bindings::{BPF_EXIST, BPF_NOEXIST},
    helpers::bpf_get_prandom_u32,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use lb_common::{
    consts::FAMILY_V4,
    hash::snat_probe_start,
    maps::{BackendInfo, FlowKey, FlowState, GlobalConfig, NatKey, NatValue},
    reason::DropReason,
};

use crate::{
    conntrack, egress,
    maps::LB_NAT,
    outcome,
    parse::{L3, L4},
    rewrite::{self, Tuple},
};

/// Ports tried per new flow before giving up; linear probing from the flow's hash. 4 lost
/// a new flow about once in ten thousand at 10% occupancy (seen in a test); 16 still fit
/// the verifier's budget and keep a backend usable up to a high share of its ports.
const SNAT_PROBES: u32 = 16;

/// Scratch for the reverse-NAT entry a new nat flow records (52 bytes off the stack).
/// Private to the program, never pinned.
#[map]
static LB_SCRATCH_NAT: PerCpuArray<NatValue> = PerCpuArray::with_max_entries(1, 0);

/// A claim on one version of a stale `LB_NAT` entry: the CPU whose `BPF_NOEXIST` insert of
/// the claim succeeds is the one that may reclaim the port. Two CPUs that both saw the same
/// stale entry would otherwise both overwrite it and both believe they own the port.
#[repr(C)]
struct Claim {
    nat: NatKey,
    version: u32,
}

/// Claims only need to outlive the few instructions between a CPU's look at a stale entry
/// and its overwrite; an LRU keeps the newest. The value is the claimant's own entry
/// version. Private to the program, never pinned.
#[map]
static LB_SNAT_CLAIMS: LruHashMap<Claim, u32> = LruHashMap::with_max_entries(8192, 0);

/// This CPU's scratch entry, for a new flow to fill before `allocate` records it.
#[inline(always)]
pub fn scratch_entry() -> Option<&'static mut NatValue> {
    let p = LB_SCRATCH_NAT.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, only this program on this CPU uses it now.
    Some(unsafe { &mut *p })
}

#[inline(always)]
fn nat_key(backend: &BackendInfo, snat_port: u16, key: &FlowKey) -> NatKey {
    NatKey {
        backend_addr: backend.addr,
        backend_port: backend.port,
        snat_port,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// The live flow that holds the NAT entry `v` (of SNAT port `port`): the flow that made it,
/// if it is live and still uses that port on that backend. Replies and ICMP errors are
/// translated only for such a flow; an entry without one is free for a new flow.
#[inline(always)]
pub fn live_owner(
    v: &NatValue,
    proto: u8,
    family: u8,
    port: u16,
    now: u64,
    cfg: &GlobalConfig,
) -> Option<*mut FlowState> {
    let s = conntrack::live(&v.owner(proto, family), now, cfg)?;
    // SAFETY: map value pointer from a successful lookup.
    if unsafe { (*s).snat_port == port && (*s).backend_id == v.backend_id } {
        Some(s)
    } else {
        None
    }
}

#[inline(always)]
fn in_use(v: &NatValue, key: &FlowKey, port: u16, now: u64, cfg: &GlobalConfig) -> bool {
    live_owner(v, key.proto, key.family, port, now, cfg).is_some()
}

/// Pick a free SNAT port for a new flow to `backend` and record the reverse mapping. A port
/// is taken with an insert that fails if the entry exists (`BPF_NOEXIST`), or, when its
/// entry is stale, by the one CPU that claims that version of it: two live flows never
/// hold one (backend, port). The probe order is keyed by the daemon's random seed.
#[inline(always)]
pub fn allocate(
    key: &FlowKey,
    backend: &BackendInfo,
    value: &mut NatValue,
    cfg: &GlobalConfig,
) -> Result<u16, DropReason> {
    // (Not an argument: BPF calls take at most five.)
    let now = crate::now();
    // SAFETY: helper without preconditions.
    value.version = unsafe { bpf_get_prandom_u32() };
    if cfg.snat_port_max < cfg.snat_port_min {
        return Err(DropReason::NotConfigured);
    }
    let min = cfg.snat_port_min as u32;
    let range = cfg.snat_port_max as u32 - min + 1;
    let start = snat_probe_start(cfg.snat_seed, &key.src, &key.dst, key.sport, key.dport, key.proto);
    for i in 0..SNAT_PROBES {
        let port = ((min + (start.wrapping_add(i)) % range) as u16).to_be();
        let nk = nat_key(backend, port, key);
        let taken = match LB_NAT.get_ptr(&nk) {
            None => LB_NAT.insert(&nk, &*value, BPF_NOEXIST as u64).is_ok(),
            // SAFETY: map value pointer from a successful lookup.
            Some(v) => !in_use(unsafe { &*v }, key, port, now, cfg) && reclaim(&nk, unsafe { (*v).version }, &*value),
        };
        if taken {
            return Ok(port);
        }
    }
    Err(DropReason::SnatExhausted)
}

/// Take over the stale entry `nk` that had `version`: only if this CPU is the first to
/// claim that version, and the entry still holds it (it was not evicted and taken anew).
/// Out of line: its claim key gets a frame of its own, off the forwarding path's.
#[inline(never)]
fn reclaim(nk: &NatKey, version: u32, value: &NatValue) -> bool {
    let claim = Claim { nat: *nk, version };
    if LB_SNAT_CLAIMS.insert(&claim, &value.version, BPF_NOEXIST as u64).is_err() {
        return false;
    }
    match LB_NAT.get_ptr(nk) {
        // SAFETY: map value pointer from a successful lookup.
        Some(v) if unsafe { (*v).version } == version => LB_NAT.insert(nk, value, BPF_EXIST as u64).is_ok(),
        _ => false,
    }
}

/// The forward rewrite: client → VIP becomes SNAT address:port → backend.
#[inline(always)]
pub fn forward(
    ctx: &aya_ebpf::programs::XdpContext,
    p: &L3,
    l4: &L4,
    backend: &BackendInfo,
    snat_port: u16,
    cfg: &GlobalConfig,
) -> Option<()> {
    let src = if p.family == FAMILY_V4 { [cfg.snat_v4, 0, 0, 0] } else { cfg.snat_v6 };
    rewrite::l3_l4(ctx, p, l4, &Tuple { src, sport: snat_port, dst: backend.addr, dport: backend.port })
}

/// Is this packet addressed to our SNAT address? (Then it may be a backend's reply.)
#[inline(always)]
pub fn to_snat_address(p: &L3, cfg: &GlobalConfig) -> bool {
    if p.family == FAMILY_V4 {
        cfg.snat_v4 != 0 && p.dst[0] == cfg.snat_v4
    } else {
        cfg.snat_v6 != [0; 4] && p.dst == cfg.snat_v6
    }
}

/// The `LB_NAT` key of a packet a backend sent to our SNAT address (a reply, or the packet
/// an ICMP error quotes): `None` when its SNAT-side port is neither in `snat_ports` nor in
/// the range before its last change (flows that got a port there before a reload live on),
/// so it cannot be one of our flows and costs no lookup. Inlined: six arguments would not
/// pass a BPF call.
#[inline(always)]
pub fn reply_key(
    backend_addr: [u32; 4],
    backend_port: u16,
    snat_port: u16,
    proto: u8,
    family: u8,
    cfg: &GlobalConfig,
) -> Option<NatKey> {
    if !cfg.is_snat_port(u16::from_be(snat_port)) {
        return None;
    }
    Some(NatKey { backend_addr, backend_port, snat_port, proto, family, _pad: [0; 2] })
}

/// A backend's reply: translate it back to VIP → client and send it the way the flow's
/// packets came. `None`: not one of our live NAT flows (the LB's own traffic, or a flow
/// that is gone), leave it alone.
#[inline(always)]
pub fn reverse(ctx: &aya_ebpf::programs::XdpContext, p: &L3, l4: &L4, cfg: &GlobalConfig, now: u64) -> Option<u32> {
    let nk = reply_key(p.src, l4.sport, l4.dport, p.proto, p.family, cfg)?;
    // SAFETY: copied out at once; a concurrent overwrite yields another valid entry.
    let v = unsafe { *LB_NAT.get(&nk)? };
    let state = live_owner(&v, p.proto, p.family, nk.snat_port, now, cfg)?;
    rewrite::l3_l4(
        ctx,
        p,
        l4,
        &Tuple { src: v.vip_addr, sport: v.vip_port, dst: v.client_addr, dport: v.client_port },
    )?;
    outcome::reply(state, p.proto, l4.seg.flags);
    conntrack::server_packet(state, p.proto, &l4.seg, now);
    // Rewritten: from here on the frame is ours to send or to drop (counted).
    Some(egress::action(egress::send(ctx, p.family, &v.client_addr, Some(&v.client_mac), cfg)))
}

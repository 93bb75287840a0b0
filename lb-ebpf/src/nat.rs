//! Full NAT: a new flow gets a source port from `snat_ports` on the LB's SNAT address, and
//! the mapping (backend, backend port, SNAT port) → (client, VIP) lets replies be translated
//! back, so backends need no change at all (the seed's Docker set-up).

use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::PerCpuArray};
use lb_common::{
    consts::FAMILY_V4,
    maps::{BackendInfo, FlowKey, GlobalConfig, NatKey, NatValue},
    reason::DropReason,
};

use crate::{
    conntrack,
    maps::LB_NAT,
    outcome,
    parse::{L3, L4},
    rewrite::{self, Tuple},
    select,
};

/// Ports tried per new flow before giving up; linear probing from the flow's hash. 4 lost
/// a new flow about once in ten thousand at 10% occupancy (seen in a test); 16 still fit
/// the verifier's budget and keep a backend usable up to a high share of its ports.
const SNAT_PROBES: u32 = 16;

/// Scratch for the reverse-NAT entry a new nat flow records (52 bytes off the stack).
/// Private to the program, never pinned.
#[map]
static LB_SCRATCH_NAT: PerCpuArray<NatValue> = PerCpuArray::with_max_entries(1, 0);

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

/// The flow a NAT entry was made for.
#[inline(always)]
fn owner(v: &NatValue, key: &FlowKey) -> FlowKey {
    FlowKey {
        src: v.client_addr,
        dst: v.vip_addr,
        sport: v.client_port,
        dport: v.vip_port,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// A NAT entry is still in use while the flow that made it is live and still uses it.
#[inline(always)]
fn in_use(v: &NatValue, key: &FlowKey, port: u16, now: u64, cfg: &GlobalConfig) -> bool {
    match conntrack::live(&owner(v, key), now, cfg) {
        // SAFETY: map value pointer from a successful lookup.
        Some(s) => unsafe { (*s).snat_port == port && (*s).backend_id == v.backend_id },
        None => false,
    }
}

/// Pick a free SNAT port for a new flow to `backend` and record the reverse mapping.
#[inline(always)]
pub fn allocate(
    key: &FlowKey,
    hash: u32,
    backend: &BackendInfo,
    value: &NatValue,
    cfg: &GlobalConfig,
) -> Result<u16, DropReason> {
    // SAFETY: helper without preconditions. (Not an argument: BPF calls take at most five.)
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    if cfg.snat_port_max < cfg.snat_port_min {
        return Err(DropReason::NotConfigured);
    }
    let min = cfg.snat_port_min as u32;
    let range = cfg.snat_port_max as u32 - min + 1;
    for i in 0..SNAT_PROBES {
        let port = ((min + (hash.wrapping_add(i)) % range) as u16).to_be();
        let nk = nat_key(backend, port, key);
        let free = match LB_NAT.get_ptr(&nk) {
            None => LB_NAT.insert(&nk, value, BPF_NOEXIST as u64).is_ok(),
            // SAFETY: map value pointer from a successful lookup.
            Some(v) => !in_use(unsafe { &*v }, key, port, now, cfg) && LB_NAT.insert(&nk, value, 0).is_ok(),
        };
        if free {
            return Ok(port);
        }
    }
    Err(DropReason::SnatExhausted)
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
/// packets came. `None`: not one of our NAT flows (the LB's own traffic), leave it alone.
#[inline(always)]
pub fn reverse(ctx: &aya_ebpf::programs::XdpContext, p: &L3, l4: &L4, cfg: &GlobalConfig, now: u64) -> Option<()> {
    let nk = reply_key(p.src, l4.sport, l4.dport, p.proto, p.family, cfg)?;
    // SAFETY: copied out at once; a concurrent overwrite yields another valid entry.
    let v = unsafe { *LB_NAT.get(&nk)? };
    rewrite::l3_l4(
        ctx,
        p,
        l4,
        &Tuple { src: v.vip_addr, sport: v.vip_port, dst: v.client_addr, dport: v.client_port },
    )?;
    rewrite::l2(ctx, &v.client_mac)?;
    let flow = FlowKey {
        src: v.client_addr,
        dst: v.vip_addr,
        sport: v.client_port,
        dport: v.vip_port,
        proto: p.proto,
        family: p.family,
        _pad: [0; 2],
    };
    if let Some(state) = conntrack::live(&flow, now, cfg) {
        outcome::reply(state, p.proto, l4.tcp_flags);
        if let Some(closing) = conntrack::touch(state, now, l4.tcp_flags) {
            select::flow_closing(closing);
        }
    }
    Some(())
}

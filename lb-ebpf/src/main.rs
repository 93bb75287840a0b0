//! The XDP program: the story of one packet. Parse it; if it is a backend's reply to one of
//! our NAT flows, translate it back; if it is for a VIP, find the flow's backend (conntrack,
//! else the service's selection algorithm), rewrite it and send it back out; count every
//! decision. Everything else goes to the kernel untouched. No input ever ends in
//! `XDP_ABORTED`: every failure maps to a counted `XDP_DROP` or to `XDP_PASS` on purpose.
#![no_std]
#![no_main]
// Map keys go to the helpers by reference on purpose: a key passed by value is copied again
// onto the 512-byte BPF stack, which the deepest path already nearly fills.
#![allow(clippy::needless_borrows_for_generic_args)]

mod acl;
mod bench;
mod conntrack;
mod egress;
mod encap;
mod icmp;
mod maps;
mod nat;
mod outcome;
mod parse;
mod persist;
mod pmtu;
mod ratelimit;
mod rewrite;
mod select;
mod stats;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::{
    consts::{BACKEND_HAS_MAC, CONFIG_KEY, FWD_NAT, PROTO_TCP, VIP_ADDR_SHARED_WITH_HOST},
    hash::flow_hash,
    maps::{BackendInfo, FlowKey, GlobalConfig, NatValue, VipAddrKey, VipInfo, VipKey},
    reason::DropReason,
    track::Segment,
};

use crate::{
    maps::{LB_CONFIG, LB_VIPS, LB_VIP_ADDRS},
    parse::{is_tcp_or_udp, L3, L4},
};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    stats::action(balance(&ctx))
}

/// `lb_xdp` for `cargo xtask bench` alone: the same path, then the frame put back as it
/// came (bench.rs), so that every repetition of a timed run takes that path.
#[xdp]
pub fn lb_xdp_bench(ctx: XdpContext) -> u32 {
    bench::timed(&ctx, |ctx| stats::action(balance(ctx)))
}

#[inline(always)]
fn balance(ctx: &XdpContext) -> u32 {
    let Some(p) = parse::scratch_l3() else { return XDP_PASS };
    if parse::l3(ctx, p).is_none() {
        return XDP_PASS;
    }
    let Some(cfg) = LB_CONFIG.get(CONFIG_KEY) else { return XDP_PASS };

    // A backend's reply to one of our NAT flows? (Anything else to the SNAT address, such
    // as the seed's service on the LB's own address, carries on below.)
    if cfg.configured != 0 && nat::to_snat_address(p, cfg) && p.bad.is_none() && !p.fragment && is_tcp_or_udp(p.proto) {
        if let Some(action) = reverse_nat(ctx, p, cfg, now()) {
            return action;
        }
    }

    // An ICMP error about one of our flows goes to the flow's owner (icmp.rs); any other
    // ICMP carries on to be passed.
    if cfg.configured != 0 && icmp::is_icmp(p) {
        if let Some(action) = icmp::error_for_flow(ctx, p, cfg, now()) {
            return action;
        }
    }

    match vip_path(ctx, p, cfg) {
        // ipip and gue frames get their outer header here, beside `vip_path`'s stack frame.
        XDP_TX => encap::finish(ctx, p),
        action => action,
    }
}

/// The clock, read only on the paths that need it (flows): traffic that is not ours
/// passes without paying for it. The coarse clock (CLOCK_MONOTONIC_COARSE, one scheduler
/// tick of resolution, 1–10 ms): the fine one (`bpf_ktime_get_ns`) reads the TSC, which
/// was the single hottest symbol of the established-flow path in a profile, and nothing
/// here needs better than a tick: idle timeouts are seconds, the SYN-retry window half a
/// second, and a token bucket refilled a tick at a time still holds its rate. The daemon
/// compares with CLOCK_MONOTONIC, at most a tick ahead; every comparison saturates.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Traffic for a VIP address. Out of line, like `reverse_nat`: each path gets its own
/// stack frame, and only one of them is live at a time under the small caller's frame
/// (the verifier sums the frames of a call chain against the 512-byte BPF stack).
#[inline(never)]
fn vip_path(ctx: &XdpContext, p: &L3, cfg: &GlobalConfig) -> u32 {
    // The common case first, with one lookup: a well-formed TCP or UDP packet is ours
    // exactly when its (address, port, protocol) is a service's. The address-only
    // `LB_VIP_ADDRS` lookup is for the rest (`unusual`).
    if p.bad.is_some() || p.fragment || !is_tcp_or_udp(p.proto) {
        return unusual(p, None);
    }
    let l4 = match parse::l4(ctx, p) {
        Ok(l4) => l4,
        Err(reason) => return unusual(p, Some(reason)),
    };
    let Some(vip) = service(p, &l4) else { return XDP_PASS };
    if cfg.configured == 0 {
        return drop(DropReason::NotConfigured);
    }
    match forward(ctx, p, &l4, &vip, now()) {
        Ok(action) => action,
        Err(reason) => drop(reason),
    }
}

/// The service a packet is for, if any. Its key is built in per-CPU scratch, not on
/// `vip_path`'s frame, which the forwarding path's call chain needs (512-byte BPF stack).
#[inline(always)]
fn service(p: &L3, l4: &L4) -> Option<VipInfo> {
    let key = LB_SCRATCH_VIP_KEY.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, only this program on this CPU uses it now.
    let key = unsafe { &mut *key };
    *key = VipKey { addr: p.dst, port: l4.dport, proto: p.proto, family: p.family };
    // SAFETY: copied out at once; the daemon replaces entries whole.
    unsafe { LB_VIPS.get(key).copied() }
}

/// Scratch for `service`'s lookup key. Private to the program, never pinned.
#[map]
static LB_SCRATCH_VIP_KEY: PerCpuArray<VipKey> = PerCpuArray::with_max_entries(1, 0);

/// A packet that is malformed (`p.bad`, or the L4 `reason`), a fragment, or neither TCP nor
/// UDP: one lookup decides for all non-VIP traffic (pass). Malformed input for an address
/// only VIPs use is ours to drop; for an address the host shares (the LB's own address) the
/// kernel validates it as it would without us. Anything else (ICMP to a VIP, say) passes.
/// Out of line: its lookup key stays off `vip_path`'s frame, which the forwarding path's
/// call chain needs (512-byte BPF stack).
#[inline(never)]
fn unusual(p: &L3, l4_error: Option<DropReason>) -> u32 {
    let Some(addr_flags) = vip_address(p) else { return XDP_PASS };
    let dedicated = addr_flags & VIP_ADDR_SHARED_WITH_HOST == 0;
    if let Some(reason) = p.bad.or(l4_error) {
        return refuse(reason, dedicated);
    }
    if p.fragment {
        return refuse(DropReason::Fragment, dedicated);
    }
    XDP_PASS
}

/// Out of line on purpose: see `vip_path`. `None`: not one of our flows.
#[inline(never)]
fn reverse_nat(ctx: &XdpContext, p: &L3, cfg: &GlobalConfig, now: u64) -> Option<u32> {
    match parse::l4(ctx, p) {
        Ok(l4) => nat::reverse(ctx, p, &l4, cfg, now),
        Err(_) => None,
    }
}

#[inline(always)]
fn vip_address(p: &L3) -> Option<u32> {
    let key = VipAddrKey { addr: p.dst, family: p.family, _pad: [0; 3] };
    // SAFETY: copied out at once.
    unsafe { LB_VIP_ADDRS.get(&key).copied() }
}

#[inline(always)]
fn refuse(reason: DropReason, dedicated: bool) -> u32 {
    if dedicated {
        drop(reason)
    } else {
        XDP_PASS
    }
}

#[inline(always)]
fn drop(reason: DropReason) -> u32 {
    stats::drop(reason);
    XDP_DROP
}

/// Where a packet of a flow goes.
struct Steering {
    backend_id: u32,
    backend: &'static BackendInfo,
    /// The flow's SNAT source port (network order); 0 in dsr mode.
    snat_port: u16,
    /// The packet opened the flow (counted as a new flow).
    new_flow: bool,
}

#[inline(always)]
fn forward(ctx: &XdpContext, p: &L3, l4: &L4, vip: &VipInfo, now: u64) -> Result<u32, DropReason> {
    // Looked up here rather than passed: BPF functions take at most five arguments.
    let cfg = LB_CONFIG.get(CONFIG_KEY).ok_or(DropReason::NotConfigured)?;
    let key = conntrack::key(p, l4);
    let to = match established(&key, vip, cfg, now, &l4.seg) {
        Ok(found) => found,
        Err(moved) => new_flow(ctx, &key, vip, cfg, now, &l4.seg, moved)?,
    };
    if vip.forwarding == FWD_NAT {
        nat::forward(ctx, p, l4, to.backend, to.snat_port, cfg).ok_or(DropReason::Truncated)?;
    }
    // ipip and gue: a dsr flow in every respect above. Its frame gets the outer header, the
    // MACs, its way out and its counters once `vip_path` has returned (`encap::finish`: see
    // there why); `XDP_TX` is what tells `balance` to finish it.
    if encap::encapsulates(vip.forwarding) {
        encap::note(vip.forwarding, vip.service_id, to.backend_id, to.new_flow);
        return Ok(XDP_TX);
    }
    let action = egress::send(ctx, p.family, &to.backend.addr, backend_mac(to.backend), cfg)?;
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    stats::forwarded(vip.service_id, to.backend_id, bytes, to.new_flow);
    Ok(action)
}

/// The daemon's neighbour-table MAC of a backend, if it has resolved one: the fallback of
/// `egress::send`.
#[inline(always)]
fn backend_mac(backend: &BackendInfo) -> Option<&[u8; 6]> {
    (backend.flags & BACKEND_HAS_MAC != 0).then_some(&backend.mac)
}

/// A live flow whose backend may still carry it. A flow whose backend was removed, went
/// down or was put in maintenance is not: it is re-steered as a new flow (`Err(true)`: the
/// flow existed, so its next segment may move it even when it is not a SYN). `Err(false)`:
/// no live flow.
#[inline(always)]
fn established(key: &FlowKey, vip: &VipInfo, cfg: &GlobalConfig, now: u64, seg: &Segment) -> Result<Steering, bool> {
    let state = conntrack::live(key, now, cfg).ok_or(false)?;
    // SAFETY: map value pointer from a successful lookup.
    let s = unsafe { *state };
    let backend = select::usable(s.backend_id, vip.service_id).ok_or(true)?;
    outcome::request(state, key.proto, seg.flags, now);
    conntrack::client_packet(state, key.proto, vip.forwarding, seg, now);
    Ok(Steering { backend_id: s.backend_id, backend, snat_port: s.snat_port, new_flow: false })
}

/// A packet with no live flow. In nat mode only a SYN opens one (or any segment of a flow
/// whose backend went away, `moved`): anything else would take a SNAT port for a
/// connection that never existed. dsr picks up mid-stream segments (after a restart or an
/// ECMP change), as unconfirmed flows.
#[inline(always)]
fn new_flow(
    ctx: &XdpContext,
    key: &FlowKey,
    vip: &VipInfo,
    cfg: &GlobalConfig,
    now: u64,
    seg: &Segment,
    moved: bool,
) -> Result<Steering, DropReason> {
    if key.proto == PROTO_TCP && vip.forwarding == FWD_NAT && !moved && !seg.is_syn() {
        return Err(DropReason::NoFlow);
    }
    if !acl::admit(key, vip) {
        return Err(DropReason::AclDenied);
    }
    if !ratelimit::admit(key, vip.service_id, now) {
        return Err(DropReason::RateLimited);
    }
    let hash = flow_hash(&key.src, &key.dst, key.sport, key.dport, key.proto);
    let id = match select::trial(vip.service_id) {
        Some(id) => id,
        None if vip.persist_ms != 0 => persistent(vip, key, hash, now),
        None => select::pick(vip, key, hash),
    };
    if id == lb_common::consts::NO_BACKEND {
        return Err(DropReason::NoBackend);
    }
    let backend = select::usable(id, vip.service_id).ok_or(DropReason::NoBackend)?;
    let mut snat_port = 0;
    if vip.forwarding == FWD_NAT {
        let reply_to = nat::scratch_entry().ok_or(DropReason::NotConfigured)?;
        *reply_to = NatValue {
            client_addr: key.src,
            vip_addr: key.dst,
            client_port: key.sport,
            vip_port: key.dport,
            backend_id: id,
            service_id: vip.service_id,
            client_mac: rewrite::source_mac(ctx).ok_or(DropReason::Truncated)?,
            _pad: [0; 2],
            version: 0,
        };
        snat_port = nat::allocate(key, backend, reply_to, cfg)?;
    }
    if !conntrack::insert(key, id, snat_port, now, seg) {
        return Err(DropReason::FlowInsertFailed);
    }
    Ok(Steering { backend_id: id, backend, snat_port, new_flow: true })
}

/// The client's persisting backend, else the algorithm's pick, remembered for its next flows.
#[inline(always)]
fn persistent(vip: &VipInfo, key: &FlowKey, hash: u32, now: u64) -> u32 {
    let id = persist::remembered(vip, key, now);
    if id != lb_common::consts::NO_BACKEND {
        return id;
    }
    let id = select::pick(vip, key, hash);
    if id != lb_common::consts::NO_BACKEND {
        persist::remember(vip, key, id, now);
    }
    id
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: the verifier rejects programs that could get here.
    loop {}
}

//! Encapsulated forwarding (`forwarding = "ipip"` and `"gue"`): an encapsulated flow is a
//! dsr flow whose frame gets an outer header. Backend selection and flow tracking happen in
//! `forward` (main.rs) exactly as for dsr; then the client's IP packet, unchanged, is put
//! inside an outer IPv4 or IPv6 header to the backend (plus GUE's UDP header), the outer
//! family being the backend's (IPv4-in-IPv6 is allowed, IPv6-in-IPv4 refused by the
//! config). The headers themselves come from `lb_common::encap`.
//!
//! Two steps, because of the 512-byte BPF stack: the forwarding path (`vip_path`, with
//! `select::pick` under it) already uses all of it, so nothing with a stack frame of its
//! own can be called beneath it, and even a little more code in it spills more. `forward`
//! only notes the backend ([`note`], into a per-CPU scratch entry); the program's entry
//! point, once `vip_path` has returned `XDP_TX`, carries it out ([`finish`], a frame beside
//! `vip_path`'s, not on top of it): MTU check, outer headers, MACs, counters.
//!
//! The frame grows at its head (`bpf_xdp_adjust_head`): the L2 header moves to the new
//! start, the outer header fills the gap, and the inner packet does not move at all. Every
//! pointer into the frame is re-derived after the helper (`parse::read` / `write` check the
//! bounds against the new `data`/`data_end` each time), as the verifier demands.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_TX},
    helpers::bpf_xdp_adjust_head,
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::{
    consts::{BACKEND_HAS_MAC, CONFIG_KEY, FAMILY_V4, FWD_GUE, FWD_IPIP},
    encap::{self, IPPROTO_UDP, IPV4_HEADER, IPV6_HEADER},
    hash::flow_hash,
    maps::{BackendInfo, GlobalConfig},
    reason::DropReason,
};

use crate::{
    egress::{self, Refusal},
    maps::{LB_BACKENDS, LB_CONFIG},
    parse::{read, write, ETH_P_IP, ETH_P_IPV6, L3},
    pmtu, stats,
};

/// The two Ethernet addresses: what moves to the frame's new start.
const MACS: usize = 12;
/// An 802.1Q tag (TPID and TCI) after the MACs, when the frame had one.
const VLAN_TAG: usize = 4;

/// `Pending::step`: nothing to do (any packet `forward` did not just note).
const NOTHING: u8 = 0;
/// Encapsulate for the backend (or answer, if it will not fit).
const TUNNEL: u8 = 1;

/// What `forward` noted about the frame it is about to return `XDP_TX` for. Private to
/// the program, never pinned; `finish` clears it for the next packet on this CPU.
#[map]
static LB_SCRATCH_ENCAP: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

pub struct Pending {
    step: u8,
    forwarding: u8,
    /// The packet opened its flow (1): counted as a new flow once forwarded.
    new_flow: u8,
    service_id: u32,
    backend_id: u32,
}

/// Does this forwarding mode put the packet inside an outer header?
#[inline(always)]
pub fn encapsulates(forwarding: u8) -> bool {
    forwarding == FWD_IPIP || forwarding == FWD_GUE
}

/// `forward`'s half: the flow's backend, chosen as for dsr, for `finish`. Fields written one
/// by one into the scratch entry: nothing more on `vip_path`'s full stack.
#[inline(always)]
pub fn note(forwarding: u8, service_id: u32, backend_id: u32, new_flow: bool) {
    if let Some(s) = LB_SCRATCH_ENCAP.get_ptr_mut(0) {
        // SAFETY: per-CPU scratch; XDP runs to completion on a CPU, so nothing else uses it.
        unsafe {
            (*s).step = TUNNEL;
            (*s).forwarding = forwarding;
            (*s).new_flow = new_flow as u8;
            (*s).service_id = service_id;
            (*s).backend_id = backend_id;
        }
    }
}

/// The entry point's half, for a frame `vip_path` returned `XDP_TX` for: carry out what
/// `forward` noted, if anything, and say how the frame leaves. A packet that would not fit
/// the tunnel is answered (`pmtu`) and counted as `too_big`, not as forwarded; failures are
/// counted drops, as everywhere.
#[inline(never)]
pub fn finish(ctx: &XdpContext, p: &L3) -> u32 {
    let Some(s) = LB_SCRATCH_ENCAP.get_ptr_mut(0) else { return XDP_TX };
    // SAFETY: per-CPU scratch, as in `note`; read and cleared at once.
    let (step, forwarding, new_flow, service_id, backend_id) =
        unsafe { ((*s).step, (*s).forwarding, (*s).new_flow != 0, (*s).service_id, (*s).backend_id) };
    if step == NOTHING {
        return XDP_TX;
    }
    // SAFETY: as above.
    unsafe { (*s).step = NOTHING };
    match carry_out(ctx, p, forwarding, backend_id) {
        Ok(Tunnelled::Sent(action)) => {
            stats::forwarded(service_id, backend_id, (ctx.data_end() - ctx.data()) as u64, new_flow);
            action
        }
        Ok(Tunnelled::Answered) => XDP_TX,
        Err(reason) => {
            stats::drop(reason);
            XDP_DROP
        }
    }
}

enum Tunnelled {
    /// Encapsulated and addressed to the backend, leaving by this action (`XDP_TX` on the
    /// ingress NIC, `XDP_REDIRECT` to another).
    Sent(u32),
    /// Too big for the tunnel: now the ICMP answer to the client.
    Answered,
}

#[inline(always)]
fn carry_out(ctx: &XdpContext, p: &L3, forwarding: u8, backend_id: u32) -> Result<Tunnelled, DropReason> {
    let cfg = LB_CONFIG.get(CONFIG_KEY).ok_or(DropReason::NotConfigured)?;
    let backend = LB_BACKENDS.get(backend_id).ok_or(DropReason::NoBackend)?;
    let overhead = encap::overhead(forwarding, backend.family);
    // Two MTUs bound the outer packet: the tunnel's (`tunnel_mtu`, the whole path's if the
    // operator knows it) and the egress route's (the FIB checks it below).
    if !pmtu::fits(inner_len(p), overhead, cfg.tunnel_mtu) {
        pmtu::answer(ctx, p, cfg.tunnel_mtu.saturating_sub(overhead as u32), &cfg.if_mac)?;
        return Ok(Tunnelled::Answered);
    }
    // The way out, for the outer destination, before the frame grows: the MACs written now
    // move along with it.
    let fallback = (backend.flags & BACKEND_HAS_MAC != 0).then_some(&backend.mac);
    let action = match egress::send_grown(ctx, backend.family, &backend.addr, fallback, cfg, overhead) {
        Ok(action) => action,
        Err(Refusal::FragNeeded(mtu)) => {
            pmtu::answer(ctx, p, (mtu as u32).saturating_sub(overhead as u32), &cfg.if_mac)?;
            return Ok(Tunnelled::Answered);
        }
        Err(Refusal::Drop(reason)) => return Err(reason),
    };
    // The flow hash, as `new_flow` computes it, from the ports still in the packet.
    let [sport, dport]: [u16; 2] = read(ctx, p.l4).ok_or(DropReason::Truncated)?;
    let hash = flow_hash(&p.src, &p.dst, sport, dport, p.proto);
    let class = inner_class(ctx, p).ok_or(DropReason::Truncated)?;
    grow(ctx, p.l3, overhead, backend.family).ok_or(DropReason::Truncated)?;
    outer(ctx, p, cfg, forwarding, backend, hash, class).ok_or(DropReason::Truncated)?;
    Ok(Tunnelled::Sent(action))
}

/// The IP packet as its length fields say (the frame may carry Ethernet padding after it,
/// which then stays after it, inside the outer packet's link padding).
#[inline(always)]
fn inner_len(p: &L3) -> usize {
    p.l4 - p.l3 + p.l4_len
}

/// The inner packet's TOS (IPv4) or traffic class (IPv6), copied to the outer header so
/// DSCP marking and ECN survive the tunnel.
#[inline(always)]
fn inner_class(ctx: &XdpContext, p: &L3) -> Option<u8> {
    // Two bytes at once: see parse::l4 on 1-byte reads at variable offsets.
    let [b0, b1]: [u8; 2] = read(ctx, p.l3)?;
    Some(if p.family == FAMILY_V4 { b1 } else { (b0 << 4) | (b1 >> 4) })
}

/// Make room for `by` bytes of outer headers between the L2 header (`l2_len` bytes: 14, or
/// 18 with a VLAN tag) and the inner packet, and say in the ethertype that an IP packet of
/// `outer_family` follows. The MACs move along (and are rewritten for the backend after).
#[inline(always)]
fn grow(ctx: &XdpContext, l2_len: usize, by: usize, outer_family: u8) -> Option<()> {
    // SAFETY: the helper checks the headroom (XDP leaves 256 bytes; a driver with less
    // makes it fail, and the packet is a drop counted as `truncated`); our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(by as i32)) } != 0 {
        return None;
    }
    // The old L2 header now starts `by` bytes in. Moved a 32-bit word at a time: a 12-byte
    // array compiles to a call of the BPF target's byte-at-a-time `memmove`.
    for off in [0, 4, 8] {
        let word: u32 = read(ctx, by + off)?;
        write(ctx, off, word)?;
    }
    if l2_len == MACS + VLAN_TAG + 2 {
        let tag: [u8; VLAN_TAG] = read(ctx, by + MACS)?;
        write(ctx, MACS, tag)?;
    }
    let ethertype = if outer_family == FAMILY_V4 { ETH_P_IP } else { ETH_P_IPV6 };
    write(ctx, l2_len - 2, ethertype.to_be())
}

/// Write the outer IP header (and GUE's UDP header) in the room `grow` made at `p.l3`.
/// Outer source: the flow hash in the host bits of the configured prefix, so the backend
/// NIC's RSS (which hashes addresses only, for IPIP) spreads the flows over its queues;
/// GUE's UDP source port and the IPv6 flow label carry the hash as well.
#[inline(always)]
fn outer(
    ctx: &XdpContext,
    p: &L3,
    cfg: &GlobalConfig,
    forwarding: u8,
    backend: &BackendInfo,
    hash: u32,
    class: u8,
) -> Option<()> {
    let inner_len = inner_len(p);
    let gue = forwarding == FWD_GUE;
    let proto = if gue { IPPROTO_UDP } else { encap::inner_proto(p.family) };
    let ip_len = if backend.family == FAMILY_V4 {
        let src = encap::spread_v4(cfg.encap_src_v4, cfg.encap_len_v4, hash);
        let total = inner_len + encap::overhead(forwarding, FAMILY_V4);
        write(ctx, p.l3, encap::ipv4_header(src, backend.addr[0], proto, total as u16, class))?;
        IPV4_HEADER
    } else {
        let src = encap::spread_v6(&cfg.encap_src_v6, cfg.encap_len_v6, hash);
        let payload = inner_len + encap::overhead(forwarding, backend.family) - IPV6_HEADER;
        write(ctx, p.l3, encap::ipv6_header(&src, &backend.addr, proto, payload as u16, class, hash))?;
        IPV6_HEADER
    };
    if gue {
        let udp_len = (encap::UDP_HEADER + inner_len) as u16;
        write(ctx, p.l3 + ip_len, encap::gue_udp_header(encap::gue_source_port(hash), cfg.gue_port, udp_len))?;
    }
    Some(())
}

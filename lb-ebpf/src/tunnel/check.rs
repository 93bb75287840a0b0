//! The balancer's tc egress program for health checks of encapsulating services. A check
//! socket carries `SO_MARK` = `CHECK_MARK_PREFIX | slot` and connects to the VIP; this
//! program finds the mark in `LB_TUNNEL_CHECKS`, wraps the packet in the outer header the
//! data path would use for that backend (IPIP or GUE, IPv4 or IPv6), and sends it toward the
//! backend: the kernel's FIB picks the egress interface, `bpf_redirect_neigh` the next hop.
//! The backend answers from the VIP straight to this host, as it answers clients, so the
//! check passes only when the whole path (tunnel, decap, VIP on `lo`, service) works.
//!
//! Unmarked packets and marks that are not ours: untouched, and handed on to whatever else
//! runs on the hook (TC_ACT_UNSPEC: the next tcx program or tc filter; TC_ACT_OK would end
//! the chain there and skip them). A mark of ours
//! without an entry is dropped: a check must never reach the VIP unencapsulated, where
//! something else might answer for the backend.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup as FibLookup, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, TC_ACT_SHOT, TC_ACT_UNSPEC,
    },
    helpers::{bpf_fib_lookup, bpf_get_hash_recalc, bpf_redirect_neigh},
    macros::classifier,
    programs::TcContext,
};
use lb_common::{
    consts::{FAMILY_V4, FWD_GUE},
    encap::{self, IPPROTO_UDP, IPV4_HEADER, IPV6_HEADER},
    tunnel::{is_check_mark, TunnelCheck},
};

use crate::maps::LB_TUNNEL_CHECKS;
use crate::packet::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

#[classifier]
pub fn lb_tunnel_check(ctx: TcContext) -> i32 {
    // SAFETY: the context's __sk_buff, readable by every tc program.
    let mark = unsafe { (*ctx.skb.skb).mark };
    if !is_check_mark(mark) {
        return TC_ACT_UNSPEC;
    }
    // SAFETY: a read-only lookup, copied out at once.
    let Some(target) = (unsafe { LB_TUNNEL_CHECKS.get(&mark) }).copied() else { return TC_ACT_SHOT };
    match encapsulate(&ctx, &target) {
        Some(()) => send(&ctx, &target),
        None => TC_ACT_SHOT,
    }
}

/// Make room after the Ethernet header and write the outer headers there.
#[inline(always)]
fn encapsulate(ctx: &TcContext, t: &TunnelCheck) -> Option<()> {
    let ethertype = u16::from_be(ctx.load::<u16>(12).ok()?);
    let (inner_family, tos) = match ethertype {
        ETH_P_IP => (FAMILY_V4, ctx.load::<u8>(ETH_HLEN + 1).ok()?),
        ETH_P_IPV6 => {
            let first = u16::from_be(ctx.load::<u16>(ETH_HLEN).ok()?);
            (lb_common::consts::FAMILY_V6, (first >> 4) as u8)
        }
        _ => return None,
    };
    let inner_len = (ctx.len() as usize).checked_sub(ETH_HLEN)?;
    let gue = t.kind == FWD_GUE;
    let overhead = encap::overhead(t.kind, t.family);
    let mut flags = if t.family == FAMILY_V4 { BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 } else { BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 };
    if gue {
        flags |= BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
    }
    ctx.adjust_room(overhead as i32, BPF_ADJ_ROOM_MAC, flags as u64).ok()?;
    // The flow's hash: one GUE source port and flow label per check connection.
    // SAFETY: the helper only reads (and caches) the skb's hash.
    let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
    let proto = if gue { IPPROTO_UDP } else { encap::inner_proto(inner_family) };
    let outer_len = (overhead + inner_len) as u16;
    if t.family == FAMILY_V4 {
        let h = encap::ipv4_header(t.source[0], t.backend[0], proto, outer_len, tos);
        ctx.store(ETH_HLEN, &h, 0).ok()?;
        ctx.store(12, &ETH_P_IP.to_be(), 0).ok()?;
    } else {
        let h = encap::ipv6_header(&t.source, &t.backend, proto, outer_len - IPV6_HEADER as u16, tos, hash);
        ctx.store(ETH_HLEN, &h, 0).ok()?;
        ctx.store(12, &ETH_P_IPV6.to_be(), 0).ok()?;
    }
    if gue {
        let ip = if t.family == FAMILY_V4 { IPV4_HEADER } else { IPV6_HEADER };
        let udp_len = outer_len - ip as u16;
        let udp = encap::gue_udp_header(encap::gue_source_port(hash), t.gue_port, udp_len);
        ctx.store(ETH_HLEN + ip, &udp, 0).ok()?;
    }
    Some(())
}

/// Toward the backend: the FIB's egress interface when it has one, else the interface the
/// check socket's own route chose (where this program runs); the kernel's neighbour table
/// fills in the MACs. The mark goes, so the encapsulated packet is not taken for a check
/// again on its way out.
#[inline(always)]
fn send(ctx: &TcContext, t: &TunnelCheck) -> i32 {
    ctx.set_mark(0);
    // SAFETY: the context's __sk_buff.
    let here = unsafe { (*ctx.skb.skb).ifindex };
    let ifindex = egress(ctx, t, here).unwrap_or(here);
    // SAFETY: no neighbour parameters (NULL, 0): the kernel resolves the next hop.
    unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32 }
}

/// The FIB's egress interface for the outer destination. Lookups are made as for a
/// forwarded packet arriving on `here`; where forwarding is off they fail, and the caller
/// keeps `here`.
#[inline(always)]
fn egress(ctx: &TcContext, t: &TunnelCheck, here: u32) -> Option<u32> {
    // SAFETY: a plain C struct, all zero is a valid (empty) request.
    let mut p: FibLookup = unsafe { core::mem::zeroed() };
    p.ifindex = here;
    if t.family == FAMILY_V4 {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = t.source[0];
        p.__bindgen_anon_4.ipv4_dst = t.backend[0];
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_3.ipv6_src = t.source;
        p.__bindgen_anon_4.ipv6_dst = t.backend;
    }
    // SAFETY: `p` is a valid bpf_fib_lookup of the size passed.
    let rc = unsafe { bpf_fib_lookup(ctx.skb.skb as *mut _, &mut p, core::mem::size_of::<FibLookup>() as i32, 0) };
    let rc = rc as u32;
    (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH).then_some(p.ifindex)
}

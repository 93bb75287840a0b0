//! ICMP and ICMPv6 errors about our flows (destination unreachable, fragmentation needed,
//! packet too big, time exceeded). The party that owns the flow must get them, or path MTU
//! discovery and "connection refused" break through the balancer:
//!
//! - nat, backend side: an error sent to the SNAT address about a packet we forwarded
//!   (SNAT:port → backend) goes to the client as if the VIP had sent it, quoting the packet
//!   the client sent (client → VIP).
//! - nat, client side: an error sent to the VIP about a reply we sent (VIP → client) goes to
//!   the flow's backend as if the SNAT address had sent it, quoting the backend's own reply
//!   (backend → SNAT:port).
//! - dsr: an error sent to the VIP about a flow goes to the flow's backend unchanged (it
//!   holds the VIP on a loopback); only the MACs change, as for the flow's packets.
//!
//! Everything else (echo, errors about no live flow, errors we cannot read) is left to the
//! kernel untouched: `false` here, and the caller carries on to the path that passes it.
//! Truncated or malformed ICMP is passed, not dropped: ICMP carries no flow of ours that a
//! drop would protect, and the kernel validates it as it would without us.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use lb_common::{
    consts::{BACKEND_HAS_MAC, FAMILY_V4, FAMILY_V6, FWD_NAT, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP},
    csum,
    maps::{FlowKey, GlobalConfig, VipKey},
};

use crate::{
    conntrack, egress,
    maps::{LB_NAT, LB_VIPS},
    nat,
    parse::{read, write, IPV6_HLEN, L3},
    rewrite::Tuple,
    select, stats,
};

/// ICMP header: type, code, checksum, 4 bytes that depend on the type (unused, MTU).
const ICMP_HLEN: usize = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
const IPV4_HLEN: usize = 20;

/// Scratch for an ICMP error being translated. Private to the program, never pinned.
#[map]
static LB_SCRATCH_ICMP: PerCpuArray<Quote> = PerCpuArray::with_max_entries(1, 0);

/// An ICMP error being translated: the packet it quotes, as far as we need it, and what the
/// message becomes. Lives in the per-CPU scratch map `LB_SCRATCH_ICMP`: on the stack, with
/// the keys and map values beside it, it overran the 512-byte BPF stack.
struct Quote {
    /// Offsets of the quoted IP and transport headers in the frame.
    l3: usize,
    l4: usize,
    src: [u32; 4],
    dst: [u32; 4],
    sport: u16,
    dport: u16,
    proto: u8,
    /// Offset of the quoted TCP/UDP checksum field, or 0 when the quote stops before it.
    check_off: usize,
    /// The outer addresses the message leaves with.
    out_src: [u32; 4],
    out_dst: [u32; 4],
    /// The quoted packet's addresses and ports after translation.
    inner: Tuple,
}

/// Is this an ICMP message of the packet's IP version? (The caller's cheap first test.)
#[inline(always)]
pub fn is_icmp(p: &L3) -> bool {
    (p.family == FAMILY_V4 && p.proto == PROTO_ICMP) || (p.family == FAMILY_V6 && p.proto == PROTO_ICMPV6)
}

/// An ICMP error about one of our flows: rewritten for the flow's owner and sent
/// (`Some`: the XDP action, see egress.rs). `None`: not ours, and the frame is unchanged
/// (every write comes after the reads that proved its bytes are in the frame, so a rewrite
/// never stops half-way).
/// Out of line: its own stack frame, beside (not on top of) the forwarding path's.
#[inline(never)]
pub fn error_for_flow(ctx: &XdpContext, p: &L3, cfg: &GlobalConfig, now: u64) -> Option<u32> {
    if p.bad.is_some() || p.fragment {
        return None;
    }
    let q = LB_SCRATCH_ICMP.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch; XDP runs to completion on a CPU, so nothing else uses it now.
    let q = unsafe { &mut *q };
    quote(ctx, p, q)?;
    // An error goes to the sender of the packet it quotes; anything else is not about a
    // packet we sent.
    if q.src != p.dst {
        return None;
    }
    if nat::to_snat_address(p, cfg) {
        if let Some(action) = to_client(ctx, p, q, cfg, now) {
            return Some(action);
        }
    }
    to_backend(ctx, p, q, cfg, now)
}

/// The ICMP error's type, checked, and the packet it quotes. Only TCP and UDP quotes with
/// both ports are of interest; an IPv4 quote with options, or an IPv6 quote with extension
/// headers, goes to the kernel (rare enough for an error message not to be worth parsing).
#[inline(always)]
fn quote(ctx: &XdpContext, p: &L3, q: &mut Quote) -> Option<()> {
    // Type and code as one 2-byte read: see parse::l4 on 1-byte reads at variable offsets.
    let [kind, _code]: [u8; 2] = read(ctx, p.l4)?;
    q.l3 = p.l4 + ICMP_HLEN;
    // The IP length, not the frame, bounds the message (the frame may be padded).
    let end = p.l4 + p.l4_len;
    if p.family == FAMILY_V4 {
        if kind != ICMP_DEST_UNREACH && kind != ICMP_TIME_EXCEEDED {
            return None;
        }
        let [vihl, _tos]: [u8; 2] = read(ctx, q.l3)?;
        let frag = u16::from_be(read::<u16>(ctx, q.l3 + 6)?);
        let [_ttl, proto]: [u8; 2] = read(ctx, q.l3 + 8)?;
        // Options, or a later fragment (no ports in it): not for us.
        if vihl != 0x45 || frag & 0x1fff != 0 {
            return None;
        }
        q.proto = proto;
        q.src = [read(ctx, q.l3 + 12)?, 0, 0, 0];
        q.dst = [read(ctx, q.l3 + 16)?, 0, 0, 0];
        q.l4 = q.l3 + IPV4_HLEN;
    } else {
        if kind != ICMPV6_DEST_UNREACH && kind != ICMPV6_PACKET_TOO_BIG && kind != ICMPV6_TIME_EXCEEDED {
            return None;
        }
        let [vtc, _]: [u8; 2] = read(ctx, q.l3)?;
        let [next, _hop]: [u8; 2] = read(ctx, q.l3 + 6)?;
        if vtc >> 4 != 6 {
            return None;
        }
        q.proto = next;
        q.src = read(ctx, q.l3 + 8)?;
        q.dst = read(ctx, q.l3 + 24)?;
        q.l4 = q.l3 + IPV6_HLEN;
    }
    let check_at = match q.proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return None,
    };
    // RFC 792 promises the first 8 bytes of the transport header; we need the ports.
    if q.l4 + 4 > end {
        return None;
    }
    q.sport = read(ctx, q.l4)?;
    q.dport = read(ctx, q.l4 + 2)?;
    let check_off = q.l4 + check_at;
    q.check_off = if check_off + 2 <= end && read::<u16>(ctx, check_off).is_some() { check_off } else { 0 };
    Some(())
}

/// nat, backend side: the quote is (SNAT:port → backend:port), which we made from the
/// client's (client:port → VIP:port). The client gets the error from the VIP, quoting its
/// own packet, so its stack finds the socket.
#[inline(always)]
fn to_client(ctx: &XdpContext, p: &L3, q: &mut Quote, cfg: &GlobalConfig, now: u64) -> Option<u32> {
    let nk = nat::reply_key(q.dst, q.dport, q.sport, q.proto, p.family, cfg)?;
    // SAFETY: map value; fields copied out at once (a concurrent overwrite could mix two
    // entries' fields into one error message, which then matches no socket: harmless).
    let v = unsafe { LB_NAT.get(nk)? };
    // Only about a live flow that still holds the entry: an entry left by a flow that is
    // gone names a client that may since have nothing to do with this backend.
    nat::live_owner(v, q.proto, p.family, q.sport, now, cfg)?;
    q.out_src = v.vip_addr;
    q.out_dst = v.client_addr;
    q.inner = Tuple { src: v.client_addr, sport: v.client_port, dst: v.vip_addr, dport: v.vip_port };
    let (client_mac, service_id, backend_id) = (v.client_mac, v.service_id, v.backend_id);
    translate(ctx, p, q)?;
    let action = egress::action(egress::send(ctx, p.family, &q.out_dst, Some(&client_mac), cfg));
    stats::forwarded(service_id, backend_id, (ctx.data_end() - ctx.data()) as u64, false);
    Some(action)
}

/// nat or dsr, client side: the quote is (VIP:port → client:port), a packet of the flow
/// (client:port → VIP:port). Its backend gets the error: in nat mode from the SNAT address,
/// quoting its own reply (backend:port → SNAT:port); in dsr mode as it is.
#[inline(always)]
fn to_backend(ctx: &XdpContext, p: &L3, q: &mut Quote, cfg: &GlobalConfig, now: u64) -> Option<u32> {
    let vip_key = VipKey { addr: q.src, port: q.sport, proto: q.proto, family: p.family };
    // SAFETY: copied out at once; the daemon replaces entries whole.
    let vip = unsafe { *LB_VIPS.get(vip_key)? };
    let flow = FlowKey {
        src: q.dst,
        dst: q.src,
        sport: q.dport,
        dport: q.sport,
        proto: q.proto,
        family: p.family,
        _pad: [0; 2],
    };
    // Not `touch`ed: an error is no sign of life of the flow.
    let state = conntrack::live(&flow, now, cfg)?;
    // SAFETY: map value pointer from a successful lookup.
    let (backend_id, snat_port) = unsafe { ((*state).backend_id, (*state).snat_port) };
    let backend = select::usable(backend_id, vip.service_id)?;
    if vip.forwarding == FWD_NAT {
        q.out_src = if p.family == FAMILY_V4 { [cfg.snat_v4, 0, 0, 0] } else { cfg.snat_v6 };
        q.out_dst = backend.addr;
        q.inner = Tuple { src: backend.addr, sport: backend.port, dst: q.out_src, dport: snat_port };
        translate(ctx, p, q)?;
    }
    let mac = (backend.flags & BACKEND_HAS_MAC != 0).then_some(&backend.mac);
    let action = egress::action(egress::send(ctx, p.family, &backend.addr, mac, cfg));
    stats::forwarded(vip.service_id, backend_id, (ctx.data_end() - ctx.data()) as u64, false);
    Some(action)
}

/// Rewrite the outer addresses to `q.out_*` and the quoted packet to `q.inner`, with every
/// checksum fixed incrementally: the outer IPv4 header's, the quote's IPv4 header's, the
/// quote's TCP/UDP checksum when it is inside the quote, and the ICMP checksum over all the
/// changed words (ICMPv6's also over the outer addresses, its pseudo-header). Every changed
/// word sits at an even offset from the ICMP header, so 16-bit updates are exact.
/// Receivers do not verify the quoted transport checksum (the quote is usually cut short),
/// so one outside the quote is left alone; one inside is kept consistent, which makes the
/// quote the very packet the receiver sent.
#[inline(always)]
fn translate(ctx: &XdpContext, p: &L3, q: &Quote) -> Option<()> {
    let inner = &q.inner;
    let mut icmp: u16 = read(ctx, p.l4 + 2)?;
    if q.check_off != 0 {
        let old: u16 = read(ctx, q.check_off)?;
        let mut c = csum::replace128(old, &q.src, &inner.src);
        c = csum::replace128(c, &q.dst, &inner.dst);
        c = csum::replace16(c, q.sport, inner.sport);
        c = csum::replace16(c, q.dport, inner.dport);
        if q.proto == PROTO_UDP {
            c = csum::udp_fixup(old, c);
        }
        write(ctx, q.check_off, c)?;
        icmp = csum::replace16(icmp, old, c);
    }
    write(ctx, q.l4, inner.sport)?;
    write(ctx, q.l4 + 2, inner.dport)?;
    icmp = csum::replace16(icmp, q.sport, inner.sport);
    icmp = csum::replace16(icmp, q.dport, inner.dport);
    // replace128 on IPv4 addresses works too: their unused words are zero on both sides.
    icmp = csum::replace128(icmp, &q.src, &inner.src);
    icmp = csum::replace128(icmp, &q.dst, &inner.dst);
    if p.family == FAMILY_V4 {
        let old: u16 = read(ctx, q.l3 + 10)?;
        let c = csum::replace32(csum::replace32(old, q.src[0], inner.src[0]), q.dst[0], inner.dst[0]);
        write(ctx, q.l3 + 10, c)?;
        write(ctx, q.l3 + 12, inner.src[0])?;
        write(ctx, q.l3 + 16, inner.dst[0])?;
        icmp = csum::replace16(icmp, old, c);
        let ip: u16 = read(ctx, p.l3 + 10)?;
        let ip = csum::replace32(csum::replace32(ip, p.src[0], q.out_src[0]), p.dst[0], q.out_dst[0]);
        write(ctx, p.l3 + 10, ip)?;
        write(ctx, p.l3 + 12, q.out_src[0])?;
        write(ctx, p.l3 + 16, q.out_dst[0])?;
    } else {
        write(ctx, q.l3 + 8, inner.src)?;
        write(ctx, q.l3 + 24, inner.dst)?;
        icmp = csum::replace128(icmp, &p.src, &q.out_src);
        icmp = csum::replace128(icmp, &p.dst, &q.out_dst);
        write(ctx, p.l3 + 8, q.out_src)?;
        write(ctx, p.l3 + 24, q.out_dst)?;
    }
    write(ctx, p.l4 + 2, icmp)
}

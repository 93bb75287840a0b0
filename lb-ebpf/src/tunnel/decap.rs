//! `lb decap`'s XDP program: a packet to one of this host's decap addresses that carries
//! IPIP (IPv4 protocol / IPv6 next header 4 or 41) or GUE variant 1 (UDP to the GUE port,
//! the inner IP header right after the UDP header) loses its outer headers and goes up the
//! stack as the inner packet, where the VIP sits on `lo`. Everything else passes
//! untouched. A tunnel packet to us that is truncated or inconsistent is dropped and
//! counted; one this program does not strip (IPv4 options, fragments, GUE variant 0) is
//! passed for the kernel to deal with. Never XDP_ABORTED.
//!
//! The inner packet is not touched: the balancer sent the client's packet unchanged, and
//! the kernel checks its checksums as for any other packet.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_xdp_adjust_head,
    macros::xdp,
    programs::XdpContext,
};
use lb_common::{
    consts::{FAMILY_V4, FAMILY_V6},
    encap::{IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP, IPV4_HEADER, IPV6_HEADER, UDP_HEADER},
    tunnel::{DecapAddr, DecapOutcome},
};

use crate::maps::{LB_DECAP_ADDRS, LB_DECAP_CONFIG, LB_DECAP_STATS};
use crate::packet::{has, read, write, ETH_HLEN, ETH_P_IP, ETH_P_IPV6};

#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    let outcome = match tunnel(&ctx) {
        Ok(t) => strip(&ctx, &t),
        Err(o) => o,
    };
    count(outcome);
    if outcome == DecapOutcome::Malformed {
        XDP_DROP
    } else {
        XDP_PASS
    }
}

/// What to take off: `outer` bytes after the Ethernet header, leaving an IP packet of
/// `inner` family.
struct Tunnel {
    outer: usize,
    inner: u8,
    gue: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ipip(u8),
    Gue,
}

#[inline(always)]
fn tunnel(ctx: &XdpContext) -> Result<Tunnel, DecapOutcome> {
    let ethertype = u16::from_be(read::<u16>(ctx, 12).ok_or(DecapOutcome::NotTunnel)?);
    let (outer, kind) = match ethertype {
        ETH_P_IP => outer_v4(ctx)?,
        ETH_P_IPV6 => outer_v6(ctx)?,
        _ => return Err(DecapOutcome::NotTunnel),
    };
    let at = ETH_HLEN + outer;
    let version = read::<u8>(ctx, at).ok_or(DecapOutcome::Malformed)? >> 4;
    let inner = match (kind, version) {
        (Kind::Ipip(family), v) if v == family => family,
        (Kind::Ipip(_), _) => return Err(DecapOutcome::Malformed),
        (Kind::Gue, 4) => FAMILY_V4,
        (Kind::Gue, 6) => FAMILY_V6,
        // GUE variant 0 (a GUE header first) or a control message: not ours to strip.
        (Kind::Gue, _) => return Err(DecapOutcome::Unsupported),
    };
    let header = if inner == FAMILY_V4 { IPV4_HEADER } else { IPV6_HEADER };
    if !has(ctx, at, header) {
        return Err(DecapOutcome::Malformed);
    }
    Ok(Tunnel { outer, inner, gue: kind == Kind::Gue })
}

/// The inner family an IPIP protocol number announces.
#[inline(always)]
fn ipip(proto: u8) -> Option<Kind> {
    match proto {
        IPPROTO_IPIP => Some(Kind::Ipip(FAMILY_V4)),
        IPPROTO_IPV6 => Some(Kind::Ipip(FAMILY_V6)),
        _ => None,
    }
}

/// Whether the UDP header at `at` goes to the GUE port.
#[inline(always)]
fn to_gue_port(ctx: &XdpContext, at: usize) -> bool {
    let Some(cfg) = LB_DECAP_CONFIG.get(0) else { return false };
    let Some(dport) = read::<u16>(ctx, at + 2) else { return false };
    cfg.gue_port != 0 && u16::from_be(dport) == cfg.gue_port
}

#[inline(always)]
fn ours(key: &DecapAddr) -> bool {
    // SAFETY: a read-only lookup; the value is not used.
    unsafe { LB_DECAP_ADDRS.get(key).is_some() }
}

/// An outer IPv4 header to one of our addresses carrying a tunnel: its length and kind.
#[inline(always)]
fn outer_v4(ctx: &XdpContext) -> Result<(usize, Kind), DecapOutcome> {
    let h: [u8; IPV4_HEADER] = read(ctx, ETH_HLEN).ok_or(DecapOutcome::NotTunnel)?;
    let ihl = (h[0] & 0x0f) as usize * 4;
    if h[0] >> 4 != 4 || ihl < IPV4_HEADER {
        return Err(DecapOutcome::NotTunnel);
    }
    let dst = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
    if !ours(&DecapAddr::v4(dst)) {
        return Err(DecapOutcome::NotTunnel);
    }
    let kind = match ipip(h[9]) {
        Some(k) => k,
        None if h[9] == IPPROTO_UDP && to_gue_port(ctx, ETH_HLEN + ihl) => Kind::Gue,
        None => return Err(DecapOutcome::NotTunnel),
    };
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    if ihl != IPV4_HEADER || fragment {
        return Err(DecapOutcome::Unsupported);
    }
    if !checksum_ok(&h) {
        return Err(DecapOutcome::Malformed);
    }
    let outer = if kind == Kind::Gue { IPV4_HEADER + UDP_HEADER } else { IPV4_HEADER };
    // The outer datagram's length must cover its headers and fit in the frame.
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total < outer || !has(ctx, ETH_HLEN, total) {
        return Err(DecapOutcome::Malformed);
    }
    if kind == Kind::Gue {
        udp_length_ok(ctx, ETH_HLEN + IPV4_HEADER, total - IPV4_HEADER)?;
    }
    Ok((outer, kind))
}

/// An outer IPv6 header to one of our addresses carrying a tunnel right after it
/// (extension headers are not followed: such packets pass untouched).
#[inline(always)]
fn outer_v6(ctx: &XdpContext) -> Result<(usize, Kind), DecapOutcome> {
    let first: u32 = read(ctx, ETH_HLEN).ok_or(DecapOutcome::NotTunnel)?;
    if u32::from_be(first) >> 28 != 6 {
        return Err(DecapOutcome::NotTunnel);
    }
    let dst: [u32; 4] = read(ctx, ETH_HLEN + 24).ok_or(DecapOutcome::NotTunnel)?;
    if !ours(&DecapAddr::v6(dst)) {
        return Err(DecapOutcome::NotTunnel);
    }
    let next: u8 = read(ctx, ETH_HLEN + 6).ok_or(DecapOutcome::NotTunnel)?;
    let kind = match ipip(next) {
        Some(k) => k,
        None if next == IPPROTO_UDP && to_gue_port(ctx, ETH_HLEN + IPV6_HEADER) => Kind::Gue,
        None => return Err(DecapOutcome::NotTunnel),
    };
    let outer = if kind == Kind::Gue { IPV6_HEADER + UDP_HEADER } else { IPV6_HEADER };
    let payload = u16::from_be(read::<u16>(ctx, ETH_HLEN + 4).ok_or(DecapOutcome::Malformed)?) as usize;
    if payload + IPV6_HEADER < outer || !has(ctx, ETH_HLEN + IPV6_HEADER, payload) {
        return Err(DecapOutcome::Malformed);
    }
    if kind == Kind::Gue {
        udp_length_ok(ctx, ETH_HLEN + IPV6_HEADER, payload)?;
    }
    Ok((outer, kind))
}

/// GUE's UDP length: at least its own header, at most what the outer header carries.
#[inline(always)]
fn udp_length_ok(ctx: &XdpContext, at: usize, room: usize) -> Result<(), DecapOutcome> {
    let len = u16::from_be(read::<u16>(ctx, at + 4).ok_or(DecapOutcome::Malformed)?) as usize;
    if len < UDP_HEADER || len > room {
        return Err(DecapOutcome::Malformed);
    }
    Ok(())
}

/// A header with its checksum in place sums to 0xffff.
#[inline(always)]
fn checksum_ok(h: &[u8; IPV4_HEADER]) -> bool {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_HEADER {
        sum += u16::from_ne_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    lb_common::csum::fold(sum) == 0xffff
}

/// Move the Ethernet addresses forward over the outer headers, drop them, and say what the
/// frame now carries.
#[inline(always)]
fn strip(ctx: &XdpContext, t: &Tunnel) -> DecapOutcome {
    let Some(macs) = read::<[u8; 12]>(ctx, 0) else { return DecapOutcome::Malformed };
    // The outer header lengths are 20, 28, 40 or 48: the mask only tells the verifier so.
    let outer = (t.outer & 0x3f) as i32;
    // SAFETY: the helper checks the new head against the frame; it fails rather than
    // leaving a frame shorter than an Ethernet header.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer) } != 0 {
        return DecapOutcome::Unsupported;
    }
    let ethertype = if t.inner == FAMILY_V4 { ETH_P_IP } else { ETH_P_IPV6 };
    if write(ctx, 0, macs).is_none() || write(ctx, 12, ethertype.to_be()).is_none() {
        // Cannot happen (the inner header was checked to be there); never leave a frame
        // with the wrong type going up.
        return DecapOutcome::Malformed;
    }
    match (t.gue, t.inner) {
        (false, FAMILY_V4) => DecapOutcome::IpipV4,
        (false, _) => DecapOutcome::IpipV6,
        (true, FAMILY_V4) => DecapOutcome::GueV4,
        (true, _) => DecapOutcome::GueV6,
    }
}

#[inline(always)]
fn count(outcome: DecapOutcome) {
    if let Some(c) = LB_DECAP_STATS.get_ptr_mut(outcome as u32) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        unsafe { *c += 1 };
    }
}

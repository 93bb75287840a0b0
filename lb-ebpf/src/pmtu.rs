//! Path MTU for encapsulated forwarding. A client's packet that would exceed the MTU of the
//! path to the backend once the outer headers are added is not forwarded: the client is
//! answered, from the VIP, with ICMP "fragmentation needed" (type 3 code 4) or ICMPv6
//! "packet too big" (type 2), carrying the MTU left for its packets (the path's minus the
//! encapsulation overhead), so its stack lowers the flow's MSS / path MTU and sends again.
//!
//! The answer is built in place from the client's own frame: room for the new IP and ICMP
//! headers at the head, the original IP header and the first 8 bytes of its TCP/UDP header
//! kept as the quote (RFC 792 and 4443 ask for the IP header plus 64 bits: enough for the
//! client to find the socket), the rest cut off, every checksum computed over the bytes
//! sent. It leaves by `XDP_TX` to the MAC the packet came from.
//!
//! An IPv4 packet without DF is answered too: nothing here can fragment it (XDP has no
//! fragmentation, and fragments to a VIP are dropped on the way in, `DropReason::Fragment`,
//! since they carry no ports to balance by), so forwarding it is impossible either way, and
//! the answer at least tells the sender why, where silence would be a black hole.

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_common::{
    consts::{FAMILY_V4, PROTO_ICMP, PROTO_ICMPV6},
    csum,
    encap::{self, IPV4_HEADER, IPV6_HEADER},
    reason::DropReason,
};

use crate::{
    parse::{read, write, L3},
    stats,
};

/// ICMP and ICMPv6 headers: type, code, checksum, then the MTU (in the last two bytes for
/// IPv4, RFC 1191; all four for IPv6).
const ICMP_HEADER: usize = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// Bytes of the transport header quoted after the original IP header.
const QUOTED_L4: usize = 8;
/// The longest IPv4 header (IHL 15), and so the longest IPv4 quote, in 32-bit words.
const MAX_QUOTE_WORDS_V4: usize = (60 + QUOTED_L4) / 4;
/// The IPv6 quote: the fixed header (extension headers are not walked: such packets never
/// reach the forwarding path) and 8 bytes.
const QUOTE_V6: usize = IPV6_HEADER + QUOTED_L4;
/// The largest IP packet a length field can describe.
const MAX_IP_LEN: usize = 65_535;

/// Does an IP packet of `inner_len` bytes still fit `mtu` with `overhead` bytes of outer
/// headers in front? `mtu` 0: not known, only the IP length limit applies. Exactly `mtu`
/// bytes fit. The MTU comes from the caller: today `GlobalConfig::tunnel_mtu`; a route
/// lookup's MTU can be passed the same way.
#[inline(always)]
pub fn fits(inner_len: usize, overhead: usize, mtu: u32) -> bool {
    let limit = if mtu == 0 { MAX_IP_LEN } else { (mtu as usize).min(MAX_IP_LEN) };
    inner_len + overhead <= limit
}

/// Turn the client's packet `p` into the ICMP answer, from `if_mac`, telling it that at
/// most `mtu` bytes get through, and count it (`too_big`). `Err`: the frame could not be
/// reshaped (the caller drops it, counted as its reason).
#[inline(always)]
pub fn answer(ctx: &XdpContext, p: &L3, mtu: u32, if_mac: &[u8; 6]) -> Result<(), DropReason> {
    let done = if p.family == FAMILY_V4 { frag_needed(ctx, p, mtu, if_mac) } else { too_big_v6(ctx, p, mtu, if_mac) };
    done.ok_or(DropReason::Truncated)?;
    stats::drop(DropReason::TooBig);
    Ok(())
}

/// IPv4: [L2][IP 20][ICMP 8][original IP header][8 bytes of L4].
#[inline(always)]
fn frag_needed(ctx: &XdpContext, p: &L3, mtu: u32, if_mac: &[u8; 6]) -> Option<()> {
    let l2 = p.l3;
    let quote = p.l4 - p.l3 + QUOTED_L4;
    let room = IPV4_HEADER + ICMP_HEADER;
    reshape(ctx, l2, room, l2 + room + quote, if_mac)?;
    let total = (IPV4_HEADER + ICMP_HEADER + quote) as u16;
    write(ctx, l2, encap::ipv4_header(p.dst[0], p.src[0], PROTO_ICMP, total, 0))?;
    // Unused (2 bytes), then the next-hop MTU (RFC 1191).
    let next_hop = (mtu.min(u16::MAX as u32) as u16).to_be_bytes();
    let icmp = l2 + IPV4_HEADER;
    write(ctx, icmp, [ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, 0, 0, next_hop[0], next_hop[1]])?;
    // The checksum covers the ICMP message only: header, then the quote (whole words: an
    // IPv4 header is words, and 8 more bytes).
    let mut sum = words(read::<[u32; 2]>(ctx, icmp)?);
    let at = icmp + ICMP_HEADER;
    for i in 0..MAX_QUOTE_WORDS_V4 {
        if i * 4 < quote {
            sum += words(read::<[u32; 1]>(ctx, at + i * 4)?);
        }
    }
    write(ctx, icmp + 2, !csum::fold(sum))
}

/// IPv6: [L2][IPv6 40][ICMPv6 8][original IPv6 header][8 bytes of L4].
#[inline(always)]
fn too_big_v6(ctx: &XdpContext, p: &L3, mtu: u32, if_mac: &[u8; 6]) -> Option<()> {
    let l2 = p.l3;
    let room = IPV6_HEADER + ICMP_HEADER;
    reshape(ctx, l2, room, l2 + room + QUOTE_V6, if_mac)?;
    let len = (ICMP_HEADER + QUOTE_V6) as u16;
    write(ctx, l2, encap::ipv6_header(&p.dst, &p.src, PROTO_ICMPV6, len, 0, 0))?;
    let m = mtu.to_be_bytes();
    let icmp = l2 + IPV6_HEADER;
    write(ctx, icmp, [ICMPV6_PACKET_TOO_BIG, 0, 0, 0, m[0], m[1], m[2], m[3]])?;
    // ICMPv6's checksum also covers a pseudo-header: both addresses, the length (32 bits)
    // and the next header (RFC 4443 2.3, RFC 8200 8.1).
    let mut sum = words(p.dst) + words(p.src);
    sum += words([(len as u32).to_be(), (PROTO_ICMPV6 as u32).to_be()]);
    sum += words(read::<[u32; 2]>(ctx, icmp)?);
    let quote: [u32; QUOTE_V6 / 4] = read(ctx, icmp + ICMP_HEADER)?;
    sum += words(quote);
    write(ctx, icmp + 2, !csum::fold(sum))
}

/// Grow the frame's head by `room` bytes and cut it to `len`, the L2 header (`l2` bytes)
/// moved to the new start with the addresses turned round: to the MAC the packet came
/// from, from our own.
#[inline(always)]
fn reshape(ctx: &XdpContext, l2: usize, room: usize, len: usize, if_mac: &[u8; 6]) -> Option<()> {
    let client_mac: [u8; 6] = read(ctx, 6)?;
    // SAFETY: as in encap::grow: the helper checks the headroom; our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(room as i32)) } != 0 {
        return None;
    }
    write(ctx, 0, client_mac)?;
    write(ctx, 6, *if_mac)?;
    // The VLAN tag (if any) and the ethertype (same family) move along unchanged.
    let rest: [u8; 2] = read(ctx, room + 12)?;
    write(ctx, 12, rest)?;
    if l2 > 14 {
        let tag: [u8; 4] = read(ctx, room + 14)?;
        write(ctx, 14, tag)?;
    }
    // Opaque to LLVM, which would otherwise fold `- len` into the packet pointer, an
    // arithmetic the verifier refuses.
    let frame = core::hint::black_box(ctx.data_end() - ctx.data());
    let cut = frame as i64 - len as i64;
    // SAFETY: as above; shrinking by what lies past the quote.
    if cut < 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(cut as i32)) } != 0 {
        return None;
    }
    Some(())
}

/// The 16-bit words of some 32-bit words (as they sit in the packet), summed.
#[inline(always)]
fn words<const N: usize>(w: [u32; N]) -> u32 {
    let mut sum = 0u32;
    for x in w {
        sum += (x & 0xffff) + (x >> 16);
    }
    sum
}

//! The outer headers of encapsulated forwarding (`forwarding = "ipip"` and `"gue"`), built the
//! same way by the XDP program, the health checks' tunnel program and the tests' independent
//! frame builders' cross-checks.
//!
//! - `ipip`: the client's IP packet, unchanged, inside an outer IP header of the backend's
//!   family (protocol 4 for an inner IPv4 packet, 41 for an inner IPv6 one): IPv4-in-IPv4,
//!   IPv6-in-IPv6 and IPv4-in-IPv6.
//! - `gue`: the same inside outer IP + UDP to the backend's GUE port. GUE "variant 1"
//!   (RFC draft-ietf-intarea-gue, section 3.2; the kernel's `fou` in `gue` mode takes it): no
//!   GUE header, the inner IP header follows the UDP header directly, its version nibble
//!   (4 or 6) saying what it is. Eight bytes less than a variant 0 header and what other XDP
//!   balancers send.
//!
//! Entropy for the backend NIC's RSS and for ECMP routers on the way: the UDP source port
//! (gue) and the IPv6 flow label carry the flow hash; for `ipip` over IPv4 the only field a
//! NIC hashes is the outer source address, which takes the flow hash in the host bits of the
//! configured encapsulation source prefix ([`spread_v4`]).
//!
//! Addresses are `u32` words as they sit in the packet (read natively, as everywhere in the
//! maps); ports and lengths are in host order here and written big-endian.

use crate::consts::{FAMILY_V4, FWD_GUE};

pub const IPV4_HEADER: usize = 20;
pub const IPV6_HEADER: usize = 40;
pub const UDP_HEADER: usize = 8;
/// IP protocol numbers of an encapsulated packet: IPv4 (IPIP) and IPv6.
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_UDP: u8 = 17;
/// The default UDP port GUE is sent to (`daemon.gue_port`).
pub const DEFAULT_GUE_PORT: u16 = 6080;
/// TTL / hop limit of the outer header.
pub const OUTER_TTL: u8 = 64;
/// GUE's UDP source ports come from this range (RFC 8086, 3.2.1: the ephemeral range).
pub const GUE_SPORT_MIN: u16 = 49_152;

/// Bytes an encapsulation of kind `fwd` (`FWD_IPIP` or `FWD_GUE`) adds in front of the
/// client's packet when the outer header is of family `outer_family`.
#[inline(always)]
pub const fn overhead(fwd: u8, outer_family: u8) -> usize {
    let ip = if outer_family == FAMILY_V4 { IPV4_HEADER } else { IPV6_HEADER };
    if fwd == FWD_GUE {
        ip + UDP_HEADER
    } else {
        ip
    }
}

/// The IP protocol number (IPv4's protocol, IPv6's next header) that says the payload is an
/// IP packet of `inner_family`.
#[inline(always)]
pub const fn inner_proto(inner_family: u8) -> u8 {
    if inner_family == FAMILY_V4 {
        IPPROTO_IPIP
    } else {
        IPPROTO_IPV6
    }
}

/// An outer IPv4 header, its checksum computed. `total_len`: the whole outer datagram; `tos`
/// is copied from the inner packet so DSCP marking survives the tunnel. DF is set: the
/// path's MTU is checked before sending (a too-big packet is answered, not fragmented).
#[inline(always)]
pub fn ipv4_header(src: u32, dst: u32, proto: u8, total_len: u16, tos: u8) -> [u8; IPV4_HEADER] {
    let len = total_len.to_be_bytes();
    let s = src.to_ne_bytes();
    let d = dst.to_ne_bytes();
    let mut h = [
        0x45, tos, len[0], len[1], 0, 0, 0x40, 0, OUTER_TTL, proto, 0, 0, s[0], s[1], s[2], s[3], d[0], d[1], d[2],
        d[3],
    ];
    let check = ipv4_checksum(&h);
    h[10..12].copy_from_slice(&check.to_ne_bytes());
    h
}

/// The IPv4 header checksum over 20 bytes whose checksum field is zero (native-order words,
/// like the rest of `csum`).
#[inline(always)]
pub fn ipv4_checksum(h: &[u8; IPV4_HEADER]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_HEADER {
        sum += u16::from_ne_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    !crate::csum::fold(sum)
}

/// An outer IPv6 header. `payload_len`: everything after it; `flow_label`: the low 20 bits of
/// the flow hash (ECMP and RSS on IPv6 hash it).
#[inline(always)]
pub fn ipv6_header(
    src: &[u32; 4],
    dst: &[u32; 4],
    next_header: u8,
    payload_len: u16,
    traffic_class: u8,
    flow_label: u32,
) -> [u8; IPV6_HEADER] {
    let mut h = [0u8; IPV6_HEADER];
    let first = (6u32 << 28) | ((traffic_class as u32) << 20) | (flow_label & 0x000f_ffff);
    h[0..4].copy_from_slice(&first.to_be_bytes());
    h[4..6].copy_from_slice(&payload_len.to_be_bytes());
    h[6] = next_header;
    h[7] = OUTER_TTL;
    let mut i = 0;
    while i < 4 {
        h[8 + i * 4..12 + i * 4].copy_from_slice(&src[i].to_ne_bytes());
        h[24 + i * 4..28 + i * 4].copy_from_slice(&dst[i].to_ne_bytes());
        i += 1;
    }
    h
}

/// GUE's UDP header (variant 1: nothing between it and the inner IP header). `len`: UDP
/// header plus the inner packet. The checksum is zero: allowed for IPv4, and for IPv6
/// tunnels by RFC 6935/6936 (the kernel's `fou` on IPv6 needs `udp6zerocsumrx` for it); the
/// inner packet keeps its own checksums.
#[inline(always)]
pub fn gue_udp_header(sport: u16, dport: u16, len: u16) -> [u8; UDP_HEADER] {
    let s = sport.to_be_bytes();
    let d = dport.to_be_bytes();
    let l = len.to_be_bytes();
    [s[0], s[1], d[0], d[1], l[0], l[1], 0, 0]
}

/// GUE's UDP source port for a flow: the flow hash folded into the ephemeral range, so a
/// flow keeps one port (no reordering) and flows spread over the backend's receive queues.
#[inline(always)]
pub const fn gue_source_port(flow_hash: u32) -> u16 {
    let folded = (flow_hash ^ (flow_hash >> 16)) as u16;
    GUE_SPORT_MIN | (folded & 0x3fff)
}

/// An IPv4 outer source inside `prefix/len` (`prefix` in packet order) whose host bits come
/// from the flow hash. `len` 32 gives `prefix` itself (no spreading).
#[inline(always)]
pub const fn spread_v4(prefix: u32, len: u8, flow_hash: u32) -> u32 {
    let host_mask: u32 = if len >= 32 { 0 } else { u32::MAX >> len };
    let net = u32::from_be(prefix) & !host_mask;
    (net | (flow_hash & host_mask)).to_be()
}

/// As [`spread_v4`] for IPv6: the flow hash fills the host bits of the last 32 bits (a
/// prefix shorter than /96 spreads over 2^32 addresses, plenty for RSS).
#[inline(always)]
pub const fn spread_v6(prefix: &[u32; 4], len: u8, flow_hash: u32) -> [u32; 4] {
    let host_bits = if len >= 128 { 0 } else { 128 - len as u32 };
    let last_len = if host_bits >= 32 { 0 } else { 32 - host_bits as u8 };
    [prefix[0], prefix[1], prefix[2], spread_v4(prefix[3], last_len, flow_hash)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::{FAMILY_V6, FWD_IPIP};

    fn v4(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn overheads_per_kind_and_family() {
        assert_eq!(overhead(FWD_IPIP, FAMILY_V4), 20);
        assert_eq!(overhead(FWD_GUE, FAMILY_V4), 28);
        assert_eq!(overhead(FWD_IPIP, FAMILY_V6), 40);
        assert_eq!(overhead(FWD_GUE, FAMILY_V6), 48);
        assert_eq!((inner_proto(FAMILY_V4), inner_proto(FAMILY_V6)), (4, 41));
    }

    /// The header of 10.0.0.1 -> 10.0.1.2, protocol 4, 60 bytes, DF, TTL 64.
    #[test]
    fn ipv4_header_bytes_and_checksum() {
        let h = ipv4_header(v4([10, 0, 0, 1]), v4([10, 0, 1, 2]), IPPROTO_IPIP, 60, 0x10);
        let mut expected = [0x45, 0x10, 0, 60, 0, 0, 0x40, 0, 64, 4, 0, 0, 10, 0, 0, 1, 10, 0, 1, 2];
        // As big-endian words: 0x4510 + 0x003c + 0x4000 + 0x4004 + 0x0a00 + 0x0001 + 0x0a00
        // + 0x0102 = 0xda53, whose complement is 0x25ac.
        expected[10] = 0x25;
        expected[11] = 0xac;
        assert_eq!(h, expected);
        // A header with its checksum in place sums to 0xffff.
        let mut sum = 0u32;
        for w in h.chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        assert_eq!(crate::csum::fold(sum), 0xffff);
    }

    #[test]
    fn ipv6_header_fields() {
        let src = [u32::from_ne_bytes([0xfd, 0, 0, 0x30]), 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
        let dst = [u32::from_ne_bytes([0xfd, 0, 0, 0x40]), 0, 0, u32::from_ne_bytes([0, 0, 0, 0x11])];
        let h = ipv6_header(&src, &dst, IPPROTO_IPIP, 1300, 0xb8, 0xabcde123);
        assert_eq!(&h[0..8], &[0x6b, 0x8d, 0xe1, 0x23, 0x05, 0x14, 4, 64]);
        assert_eq!(&h[8..12], &[0xfd, 0, 0, 0x30]);
        assert_eq!(&h[20..24], &[0, 0, 0, 1]);
        assert_eq!(&h[24..28], &[0xfd, 0, 0, 0x40]);
        assert_eq!(&h[36..40], &[0, 0, 0, 0x11]);
    }

    #[test]
    fn gue_udp_header_and_source_ports() {
        assert_eq!(gue_udp_header(50_000, 6080, 68), [0xc3, 0x50, 0x17, 0xc0, 0, 68, 0, 0]);
        for h in [0u32, 1, 0xffff_ffff, 0x1234_5678, 0xdead_beef] {
            assert!(gue_source_port(h) >= GUE_SPORT_MIN, "{h:#x}");
        }
        assert_ne!(gue_source_port(1), gue_source_port(2));
    }

    #[test]
    fn outer_sources_spread_inside_their_prefix() {
        let p = v4([172, 16, 0, 0]);
        assert_eq!(spread_v4(p, 16, 0x0000_0102).to_ne_bytes(), [172, 16, 1, 2]);
        assert_eq!(spread_v4(p, 16, 0xffff_0304).to_ne_bytes(), [172, 16, 3, 4]);
        assert_eq!(spread_v4(v4([10, 0, 0, 7]), 32, 0xffff_ffff).to_ne_bytes(), [10, 0, 0, 7]);
        assert_eq!(spread_v4(p, 0, 0x0a0b_0c0d).to_ne_bytes(), [10, 11, 12, 13]);
        let p6 = [u32::from_ne_bytes([0xfd, 0, 0, 0x1b]), 0, 0, 0];
        let s = spread_v6(&p6, 64, 0x0102_0304);
        assert_eq!((s[0], s[1], s[2]), (p6[0], 0, 0));
        assert_eq!(s[3].to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(spread_v6(&p6, 120, 0xffff_ff05)[3].to_ne_bytes(), [0, 0, 0, 5]);
        assert_eq!(spread_v6(&p6, 128, 0xffff_ffff), p6);
    }
}

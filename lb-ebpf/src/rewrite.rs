//! Rewriting addresses and ports with incremental checksum updates (the arithmetic lives in
//! lb-common and is property-tested there), and the Ethernet addresses for `XDP_TX`.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    consts::{FAMILY_V4, PROTO_UDP},
    csum,
    maps::GlobalConfig,
};

use crate::parse::{read, write, L3, L4};

/// The addresses and ports a packet leaves with.
pub struct Tuple {
    pub src: [u32; 4],
    pub sport: u16,
    pub dst: [u32; 4],
    pub dport: u16,
}

/// Rewrite L3 and L4 of `p` to `to`, fixing the IPv4 header checksum and the TCP/UDP
/// checksum (pseudo-header addresses and ports) incrementally.
#[inline(always)]
pub fn l3_l4(ctx: &XdpContext, p: &L3, l4: &L4, to: &Tuple) -> Option<()> {
    let old_check: u16 = read(ctx, l4.check_off)?;
    let mut check = old_check;
    if p.family == FAMILY_V4 {
        let ip_check: u16 = read(ctx, p.l3 + 10)?;
        let ip_check = csum::replace32(ip_check, p.src[0], to.src[0]);
        let ip_check = csum::replace32(ip_check, p.dst[0], to.dst[0]);
        write(ctx, p.l3 + 10, ip_check)?;
        write(ctx, p.l3 + 12, to.src[0])?;
        write(ctx, p.l3 + 16, to.dst[0])?;
        check = csum::replace32(check, p.src[0], to.src[0]);
        check = csum::replace32(check, p.dst[0], to.dst[0]);
    } else {
        write(ctx, p.l3 + 8, to.src)?;
        write(ctx, p.l3 + 24, to.dst)?;
        check = csum::replace128(check, &p.src, &to.src);
        check = csum::replace128(check, &p.dst, &to.dst);
    }
    check = csum::replace16(check, l4.sport, to.sport);
    check = csum::replace16(check, l4.dport, to.dport);
    if p.proto == PROTO_UDP {
        check = csum::udp_fixup(old_check, check);
    }
    write(ctx, p.l4, to.sport)?;
    write(ctx, p.l4 + 2, to.dport)?;
    write(ctx, l4.check_off, check)
}

/// Send the frame to `next_hop` from the interface's own MAC (`XDP_TX` leaves through the
/// interface it came in on). Never from the MAC the frame was addressed to: a frame sent
/// to a broadcast, multicast or foreign MAC must not make us send from that address.
#[inline(always)]
pub fn l2(ctx: &XdpContext, next_hop: &[u8; 6], cfg: &GlobalConfig) -> Option<()> {
    write(ctx, 0, *next_hop)?;
    write(ctx, 6, cfg.if_mac)
}

/// The MAC a frame came from: where replies to its flow are sent back to.
#[inline(always)]
pub fn source_mac(ctx: &XdpContext) -> Option<[u8; 6]> {
    read(ctx, 6)
}

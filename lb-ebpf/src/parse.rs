//! Header parsing. Every packet access goes through `ptr_at`, which checks the bounds the
//! verifier insists on; nothing here trusts a length field without checking it against the
//! frame.

use core::mem::size_of;

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use lb_common::{
    consts::{FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP},
    reason::DropReason,
    track::Segment,
};

const ETH_HLEN: usize = 14;
/// Ethertypes of IPv4 and IPv6 (host order), for every module that reads or writes them.
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const IPV6_HLEN: usize = 40;
const IPPROTO_FRAGMENT: u8 = 44;
const TCP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;

pub use lb_common::track::{TCP_ACK, TCP_RST, TCP_SYN};

/// A pointer to `T` at `off` bytes into the frame, if the whole `T` is inside it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    // Header offsets are below 200; the mask gives the verifier a bound for offsets that
    // went through the scratch map (values loaded from a map are unbounded to it).
    let off = off & 0xfff;
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

#[inline(always)]
pub fn read<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    // SAFETY: bounds checked by ptr_at; packet data has no alignment guarantee.
    ptr_at::<T>(ctx, off).map(|p| unsafe { p.read_unaligned() })
}

#[inline(always)]
pub fn write<T: Copy>(ctx: &XdpContext, off: usize, v: T) -> Option<()> {
    // SAFETY: as in `read`.
    ptr_at::<T>(ctx, off).map(|p| unsafe { p.write_unaligned(v) })
}

/// Per-CPU scratch space for the parsed headers: the 512-byte BPF stack cannot hold them
/// beside the forwarding path's own state. Private to the program, never pinned.
#[map]
static LB_SCRATCH: PerCpuArray<L3> = PerCpuArray::with_max_entries(1, 0);

/// The network layer of a frame, as far as it could be read. Lives in the per-CPU
/// scratch map `LB_SCRATCH`, not on the stack.
pub struct L3 {
    pub l3: usize,
    pub l4: usize,
    pub family: u8,
    pub proto: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// L4 bytes according to the IP length fields (not the frame, which may be padded).
    pub l4_len: usize,
    /// Set when the IP header cannot be valid; `l4` and `l4_len` are then meaningless.
    pub bad: Option<DropReason>,
    pub fragment: bool,
}

/// The transport header of a TCP or UDP packet.
pub struct L4 {
    pub sport: u16,
    pub dport: u16,
    /// TCP flags, sequence and acknowledgement numbers, payload length (all 0 for UDP).
    pub seg: Segment,
    /// Offset of the L4 checksum field.
    pub check_off: usize,
}

/// This CPU's `L3`, for `l3` to fill.
#[inline(always)]
pub fn scratch_l3() -> Option<&'static mut L3> {
    let p = LB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch; XDP runs to completion on a CPU, so nothing else uses it now.
    Some(unsafe { &mut *p })
}

/// Ethernet (+ one VLAN tag) then IPv4 or IPv6. `None`: not IP, or too short to tell
/// where it goes; the kernel gets those untouched.
#[inline(always)]
pub fn l3(ctx: &XdpContext, out: &mut L3) -> Option<()> {
    let mut l3 = ETH_HLEN;
    let mut proto = u16::from_be(read::<u16>(ctx, 12)?);
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = u16::from_be(read::<u16>(ctx, 16)?);
        l3 += 4;
    }
    // Filled in place: one L3 on the stack, not one per branch (the BPF stack is 512 bytes).
    match proto {
        ETH_P_IP => ipv4(ctx, l3, out),
        ETH_P_IPV6 => ipv6(ctx, l3, out),
        _ => None,
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize, out: &mut L3) -> Option<()> {
    let vihl: u8 = read(ctx, l3)?;
    let tot_len = u16::from_be(read::<u16>(ctx, l3 + 2)?) as usize;
    let frag = u16::from_be(read::<u16>(ctx, l3 + 6)?);
    let proto: u8 = read(ctx, l3 + 9)?;
    let src: u32 = read(ctx, l3 + 12)?;
    let dst: u32 = read(ctx, l3 + 16)?;
    // Any IHL from 5 to 15 words: options are carried through untouched.
    let hlen = ((vihl & 0x0f) as usize) * 4;
    let frame_len = ctx.data_end() - ctx.data();
    let bad = if vihl >> 4 != 4 || hlen < 20 || tot_len < hlen {
        Some(DropReason::BadIpHeader)
    } else if l3 + tot_len > frame_len {
        Some(DropReason::Truncated)
    } else {
        None
    };
    *out = L3 {
        l3,
        l4: l3 + hlen,
        family: FAMILY_V4,
        proto,
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        l4_len: tot_len.saturating_sub(hlen),
        bad,
        // MF set, or a non-zero offset: either way no usable L4 header in this packet.
        fragment: frag & 0x3fff != 0,
    };
    Some(())
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize, out: &mut L3) -> Option<()> {
    let payload_len = u16::from_be(read::<u16>(ctx, l3 + 4)?) as usize;
    let next: u8 = read(ctx, l3 + 6)?;
    let src: [u32; 4] = read(ctx, l3 + 8)?;
    let dst: [u32; 4] = read(ctx, l3 + 24)?;
    let frame_len = ctx.data_end() - ctx.data();
    let bad = if l3 + IPV6_HLEN + payload_len > frame_len { Some(DropReason::Truncated) } else { None };
    *out = L3 {
        l3,
        l4: l3 + IPV6_HLEN,
        family: FAMILY_V6,
        proto: next,
        src,
        dst,
        l4_len: payload_len,
        bad,
        // Extension headers other than a fragment header are not walked: such packets are
        // not TCP/UDP to us and go to the kernel.
        fragment: next == IPPROTO_FRAGMENT,
    };
    Some(())
}

/// TCP or UDP header, checked against both the frame and the IP length.
#[inline(always)]
pub fn l4(ctx: &XdpContext, p: &L3) -> Result<L4, DropReason> {
    let (min, check_off) = match p.proto {
        PROTO_TCP => (TCP_HLEN, p.l4 + 16),
        PROTO_UDP => (UDP_HLEN, p.l4 + 6),
        _ => return Err(DropReason::BadL4Header),
    };
    if p.l4_len == 0 {
        return Err(DropReason::BadL4Header);
    }
    if p.l4_len < min {
        return Err(DropReason::Truncated);
    }
    let sport: u16 = read(ctx, p.l4).ok_or(DropReason::Truncated)?;
    let dport: u16 = read(ctx, p.l4 + 2).ok_or(DropReason::Truncated)?;
    // Checksum field last: proves the whole minimal header is in the frame.
    let _: u16 = read(ctx, check_off).ok_or(DropReason::Truncated)?;
    let mut seg = Segment::default();
    if p.proto == PROTO_TCP {
        // Data offset and flags as one 2-byte read: LLVM turns a 1-byte bounds check at a
        // variable offset into a form the verifier cannot prove.
        let [doff, flags]: [u8; 2] = read(ctx, p.l4 + 12).ok_or(DropReason::Truncated)?;
        let hlen = ((doff >> 4) as usize) * 4;
        if hlen < TCP_HLEN || hlen > p.l4_len {
            return Err(DropReason::BadL4Header);
        }
        let [seq, ack]: [u32; 2] = read(ctx, p.l4 + 4).ok_or(DropReason::Truncated)?;
        seg = Segment { flags, seq: u32::from_be(seq), ack: u32::from_be(ack), len: (p.l4_len - hlen) as u32 };
    }
    Ok(L4 { sport, dport, seg, check_off })
}

#[inline(always)]
pub fn is_tcp_or_udp(proto: u8) -> bool {
    proto == PROTO_TCP || proto == PROTO_UDP
}

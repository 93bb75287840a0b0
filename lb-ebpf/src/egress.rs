//! How a rewritten frame leaves: every sending site (nat and dsr forwarding, reverse NAT,
//! ICMP errors for a flow) ends here. The kernel's FIB (`bpf_fib_lookup`, in every kernel
//! this program loads on) names the egress NIC and the next hop's MAC; the frame leaves by
//! `XDP_TX` when that NIC is the one it came in on, else by `XDP_REDIRECT` through
//! `LB_TX_PORTS` (the configured NICs).
//!
//! The daemon's neighbour table (`BackendInfo.mac`, `NatValue.client_mac`) is the
//! fallback, with `XDP_TX` on the ingress NIC, the way every frame left before FIB lookups:
//!
//! - forwarding is off on the ingress NIC (`net.ipv4.conf.<nic>.forwarding`, or IPv6's):
//!   the FIB refuses XDP lookups then (`BPF_FIB_LKUP_RET_FWD_DISABLED`);
//! - the FIB will not forward to the target (a local, broadcast or multicast route, a
//!   blackhole or unreachable route, a lightweight tunnel), or the lookup failed;
//! - the frame carries a VLAN tag: the FIB answers for untagged frames only.
//!
//! A next hop without a neighbour entry (`BPF_FIB_LKUP_RET_NO_NEIGH`) is recorded in
//! `LB_UNRESOLVED` and the frame dropped (`no_neighbor`): the daemon polls the map every
//! 100 ms and makes the kernel resolve the address, so the client's retransmission gets
//! through. The frame is not passed to the kernel to resolve it instead: its source is the
//! VIP, the SNAT address or the client, and a frame arriving with one of the host's own
//! addresses as source is a martian to the kernel (dropped), while a client-sourced one
//! would go through the kernel's forwarding path and its conntrack/firewall, not ours.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams,
        xdp_action::{XDP_DROP, XDP_REDIRECT, XDP_TX},
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::bpf_fib_lookup,
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::{
    consts::FAMILY_V4,
    maps::{GlobalConfig, NextHop},
    reason::DropReason,
};

use crate::{
    maps::{LB_TX_PORTS, LB_UNRESOLVED},
    parse::{read, ETH_P_IP, ETH_P_IPV6},
    rewrite,
};

const ETH_HLEN: usize = 14;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `BPF_NOEXIST`: the first packet to meet an unresolved next hop records it; the rest
/// find it there and cost no write.
const NOEXIST: u64 = 1;

/// The FIB lookup's 64-byte parameters: per CPU, off the 512-byte BPF stack. Private to
/// the program, never pinned.
#[map]
static LB_SCRATCH_FIB: PerCpuArray<FibParams> = PerCpuArray::with_max_entries(1, 0);

/// Why a frame could not be sent.
pub enum Refusal {
    /// Counted as this drop reason.
    Drop(DropReason),
    /// Larger than the egress route's MTU, which it carries: an encapsulating path answers
    /// with an ICMP "fragmentation needed" / "packet too big"; others drop it (`too_big`).
    FragNeeded(u16),
}

impl From<Refusal> for DropReason {
    #[inline(always)]
    fn from(r: Refusal) -> DropReason {
        match r {
            Refusal::Drop(reason) => reason,
            Refusal::FragNeeded(_) => DropReason::TooBig,
        }
    }
}

/// Send the rewritten frame towards `to` (an address of the frame's IP family: the
/// backend, or the client; for dsr not the frame's destination, which is still the VIP).
/// `fallback`: the daemon's neighbour-table MAC for `to`, if it has one. `Ok`: the XDP
/// action to return, the Ethernet addresses written.
#[inline(always)]
pub fn send(
    ctx: &XdpContext,
    family: u8,
    to: &[u32; 4],
    fallback: Option<&[u8; 6]>,
    cfg: &GlobalConfig,
) -> Result<u32, Refusal> {
    send_grown(ctx, family, to, fallback, cfg, 0)
}

/// As `send`, for a frame that will grow by `grow` bytes of outer headers of `family`
/// (ipip, gue) once the way out is known: the MTU check counts them, and the lookup is for
/// the outer destination `to` whatever the frame's own family (4-in-6). The Ethernet
/// addresses are written at the frame's start and move along when it grows.
#[inline(always)]
pub fn send_grown(
    ctx: &XdpContext,
    family: u8,
    to: &[u32; 4],
    fallback: Option<&[u8; 6]>,
    cfg: &GlobalConfig,
    grow: usize,
) -> Result<u32, Refusal> {
    let ingress = ingress_ifindex(ctx);
    let Some(fib) = LB_SCRATCH_FIB.get_ptr_mut(0) else { return neighbour_table(ctx, fallback, cfg) };
    // SAFETY: per-CPU scratch; XDP runs to completion on a CPU, so nothing else uses it now.
    let fib = unsafe { &mut *fib };
    if prepare(ctx, fib, family, to, ingress, grow).is_none() {
        return neighbour_table(ctx, fallback, cfg);
    }
    // SAFETY: `fib` points to a whole `bpf_fib_lookup` in map memory; the size passed is its own.
    let rc = unsafe {
        bpf_fib_lookup(ctx.ctx as *mut _, fib as *mut FibParams, core::mem::size_of::<FibParams>() as i32, 0)
    };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return via_fib(ctx, fib, ingress);
    }
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        unresolved(fib, family);
        return Err(Refusal::Drop(DropReason::NoNeighbor));
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        // SAFETY: the kernel wrote the union's `mtu_result` member for this answer.
        return Err(Refusal::FragNeeded(unsafe { fib.__bindgen_anon_1.mtu_result }));
    }
    neighbour_table(ctx, fallback, cfg)
}

/// Count the outcome of `send` for a site that has no other use for a refusal.
#[inline(always)]
pub fn action(sent: Result<u32, Refusal>) -> u32 {
    match sent {
        Ok(action) => action,
        Err(r) => {
            crate::stats::drop(r.into());
            XDP_DROP
        }
    }
}

#[inline(always)]
fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    // SAFETY: the context pointer the kernel gave the program.
    unsafe { (*ctx.ctx).ingress_ifindex }
}

/// Fill the lookup for `to`, an address of `family`, with the IP length the kernel checks
/// against the route's MTU: the frame's own plus `grow`. A frame sent as it is (`grow` 0)
/// must be of `family`, and its source address goes in too (policy routing may depend on
/// it). A frame that will grow by outer headers of `family` may be of either family (4-in-6)
/// and gives no source (the outer one is not written yet; the FIB needs none). `None`: a
/// frame the FIB cannot answer for (VLAN-tagged, or not IP).
#[inline(always)]
fn prepare(ctx: &XdpContext, fib: &mut FibParams, family: u8, to: &[u32; 4], ingress: u32, grow: usize) -> Option<()> {
    let ethertype = u16::from_be(read(ctx, 12)?);
    let own = if family == FAMILY_V4 { ETH_P_IP } else { ETH_P_IPV6 };
    if ethertype != own && (grow == 0 || (ethertype != ETH_P_IP && ethertype != ETH_P_IPV6)) {
        return None;
    }
    let len = ctx.data_end() - ctx.data();
    clear(fib);
    fib.ifindex = ingress;
    fib.__bindgen_anon_1.tot_len = (len.checked_sub(ETH_HLEN)? + grow) as u16;
    if family == FAMILY_V4 {
        fib.family = AF_INET;
        if grow == 0 {
            fib.__bindgen_anon_3.ipv4_src = read(ctx, ETH_HLEN + 12)?;
        }
        fib.__bindgen_anon_4.ipv4_dst = to[0];
    } else {
        fib.family = AF_INET6;
        if grow == 0 {
            // SAFETY: plain data; the union member of the family asked for.
            read_words(ctx, ETH_HLEN + 8, unsafe { &mut fib.__bindgen_anon_3.ipv6_src })?;
        }
        fib.__bindgen_anon_4.ipv6_dst = *to;
    }
    Some(())
}

/// Zero the lookup's parameters (every field is then set or left zero on purpose) a word at
/// a time: `*fib = zeroed()` compiles to a call of the BPF target's `memset`, a loop of 64
/// single-byte stores, on every forwarded frame.
#[inline(always)]
fn clear(fib: &mut FibParams) {
    let words = fib as *mut FibParams as *mut u64;
    for i in 0..core::mem::size_of::<FibParams>() / 8 {
        // SAFETY: inside the struct (64 bytes); volatile, so the stores stay word stores.
        unsafe { words.add(i).write_volatile(0) };
    }
}

/// An IPv6 address from the frame into `to`, as four 32-bit reads straight into place (one
/// 16-byte unaligned read compiles to a byte-at-a-time `memmove` call, and a temporary
/// array would take stack the deepest call chain does not have).
#[inline(always)]
fn read_words(ctx: &XdpContext, off: usize, to: &mut [u32; 4]) -> Option<()> {
    for (i, word) in to.iter_mut().enumerate() {
        *word = read(ctx, off + 4 * i)?;
    }
    Some(())
}

/// The FIB found the egress NIC and the next hop's MAC.
#[inline(always)]
fn via_fib(ctx: &XdpContext, fib: &FibParams, ingress: u32) -> Result<u32, Refusal> {
    crate::parse::write(ctx, 0, fib.dmac).ok_or(Refusal::Drop(DropReason::Truncated))?;
    crate::parse::write(ctx, 6, fib.smac).ok_or(Refusal::Drop(DropReason::Truncated))?;
    if fib.ifindex == ingress {
        return Ok(XDP_TX);
    }
    // A miss returns XDP_DROP: the route leaves by a NIC the daemon does not manage.
    match LB_TX_PORTS.redirect(fib.ifindex, XDP_DROP as u64) {
        Ok(_) => Ok(XDP_REDIRECT),
        Err(_) => Err(Refusal::Drop(DropReason::NoTxPort)),
    }
}

/// Record the next hop the FIB named (it wrote the gateway, or the target when on-link,
/// into the destination field, and the egress NIC into `ifindex`) for the daemon.
#[inline(always)]
fn unresolved(fib: &FibParams, family: u8) {
    // SAFETY: the kernel left the destination in the union member of the family asked for.
    let addr = unsafe {
        if family == FAMILY_V4 {
            [fib.__bindgen_anon_4.ipv4_dst, 0, 0, 0]
        } else {
            fib.__bindgen_anon_4.ipv6_dst
        }
    };
    let hop = NextHop { addr, ifindex: fib.ifindex, family, _pad: [0; 3] };
    let now = crate::now();
    // An existing entry (already recorded, not yet handled) refuses the insert: fine.
    let _ = LB_UNRESOLVED.insert(&hop, &now, NOEXIST);
}

/// Today's path without the FIB: the daemon's neighbour-table MAC, out the ingress NIC.
#[inline(always)]
fn neighbour_table(ctx: &XdpContext, fallback: Option<&[u8; 6]>, cfg: &GlobalConfig) -> Result<u32, Refusal> {
    let mac = fallback.ok_or(Refusal::Drop(DropReason::NoNeighbor))?;
    rewrite::l2(ctx, mac, cfg).ok_or(Refusal::Drop(DropReason::Truncated))?;
    Ok(XDP_TX)
}

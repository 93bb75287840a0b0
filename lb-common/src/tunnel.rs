//! The tunnel object's ABI (`lb-tunnel`, separate from the balancer's object so that a
//! backend running `lb decap` never creates the balancer's maps): the decapsulating XDP
//! program's address set, settings and counters, and the health checks' tc program's
//! mark table. Layouts are `#[repr(C)]` without implicit padding, as in `maps`.

use crate::consts::FAMILY_V4;

/// The XDP program that strips IPIP/GUE headers (`lb decap`).
pub const DECAP_PROGRAM: &str = "lb_decap";
/// The tc egress program that encapsulates marked health-check packets.
pub const CHECK_PROGRAM: &str = "lb_tunnel_check";

/// Map names, as the object declares them.
pub const DECAP_ADDRS: &str = "LB_DECAP_ADDRS";
pub const DECAP_CONFIG: &str = "LB_DECAP_CONFIG";
pub const DECAP_STATS: &str = "LB_DECAP_STATS";
pub const CHECK_TARGETS: &str = "LB_TUNNEL_CHECKS";

/// Capacity of the decap address set (a host's own addresses).
pub const DECAP_ADDRS_MAX: u32 = 256;
/// Capacity of the mark table: one entry per backend of an encapsulating service.
pub const CHECK_TARGETS_MAX: u32 = 65_536;

/// A health-check socket's `SO_MARK` is this prefix with the backend's slot in the low 16
/// bits; the tc program ignores every other mark (and unmarked packets).
pub const CHECK_MARK_PREFIX: u32 = 0x4c42_0000;
pub const CHECK_MARK_MASK: u32 = 0xffff_0000;

/// The mark of check slot `slot`.
#[inline(always)]
pub const fn check_mark(slot: u16) -> u32 {
    CHECK_MARK_PREFIX | slot as u32
}

/// Whether `mark` is one of ours.
#[inline(always)]
pub const fn is_check_mark(mark: u32) -> bool {
    mark & CHECK_MARK_MASK == CHECK_MARK_PREFIX
}

/// One of this host's decap addresses (`LB_DECAP_ADDRS` key). IPv4 in `addr[0]`, the rest
/// zero; words in packet order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecapAddr {
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u32; 4],
}

impl DecapAddr {
    pub const fn v4(addr: u32) -> Self {
        DecapAddr { family: FAMILY_V4, _pad: [0; 3], addr: [addr, 0, 0, 0] }
    }

    pub const fn v6(addr: [u32; 4]) -> Self {
        DecapAddr { family: crate::consts::FAMILY_V6, _pad: [0; 3], addr }
    }
}

/// `LB_DECAP_CONFIG[0]`. `gue_port` in host order; 0 turns GUE decapsulation off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapConfig {
    pub gue_port: u16,
    pub _pad: [u8; 2],
}

/// What the decap program did with a packet: `LB_DECAP_STATS` is a per-CPU array of
/// packet counts indexed by these.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapOutcome {
    /// IPIP (outer protocol 4 / next header 4) carrying IPv4, decapsulated.
    IpipV4 = 0,
    /// IPIP (protocol / next header 41) carrying IPv6, decapsulated.
    IpipV6 = 1,
    /// GUE carrying IPv4, decapsulated.
    GueV4 = 2,
    /// GUE carrying IPv6, decapsulated.
    GueV6 = 3,
    /// Not a tunnel packet to one of our decap addresses: passed untouched.
    NotTunnel = 4,
    /// A tunnel packet this program does not strip (outer IPv4 options or fragment, a GUE
    /// payload that is not variant 1): passed untouched for the kernel to handle.
    Unsupported = 5,
    /// A tunnel packet to us that is truncated or inconsistent (bad outer checksum or
    /// length, inner header missing or of the wrong version): dropped.
    Malformed = 6,
}

pub const DECAP_OUTCOMES: usize = 7;

impl DecapOutcome {
    pub const ALL: [DecapOutcome; DECAP_OUTCOMES] = [
        DecapOutcome::IpipV4,
        DecapOutcome::IpipV6,
        DecapOutcome::GueV4,
        DecapOutcome::GueV6,
        DecapOutcome::NotTunnel,
        DecapOutcome::Unsupported,
        DecapOutcome::Malformed,
    ];

    /// The name `lb decap` prints and the docs list.
    pub const fn name(self) -> &'static str {
        match self {
            DecapOutcome::IpipV4 => "ipip_v4",
            DecapOutcome::IpipV6 => "ipip_v6",
            DecapOutcome::GueV4 => "gue_v4",
            DecapOutcome::GueV6 => "gue_v6",
            DecapOutcome::NotTunnel => "not_tunnel",
            DecapOutcome::Unsupported => "unsupported_passed",
            DecapOutcome::Malformed => "malformed_dropped",
        }
    }
}

/// Where a marked health-check packet goes (`LB_TUNNEL_CHECKS` value, keyed by the mark):
/// encapsulated as `kind` (`FWD_IPIP` or `FWD_GUE`) in an outer header of `family` from
/// `source` to `backend`. `gue_port` in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelCheck {
    pub family: u8,
    pub kind: u8,
    pub gue_port: u16,
    pub backend: [u32; 4],
    pub source: [u32; 4],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), no implicit padding, every bit pattern valid.
    unsafe impl aya::Pod for DecapAddr {}
    unsafe impl aya::Pod for DecapConfig {}
    unsafe impl aya::Pod for TunnelCheck {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_carry_the_slot_under_a_prefix() {
        assert_eq!(check_mark(7), 0x4c42_0007);
        assert!(is_check_mark(check_mark(0xffff)));
        assert!(!is_check_mark(0) && !is_check_mark(7) && !is_check_mark(0x4c43_0001));
        assert_eq!(core::mem::size_of::<DecapAddr>(), 20);
        assert_eq!(core::mem::size_of::<TunnelCheck>(), 36);
    }
}

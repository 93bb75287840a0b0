//! Map keys and values. `#[repr(C)]` with every padding byte spelled out: the verifier
//! rejects reads of uninitialised stack bytes in keys, and the daemon and the XDP program
//! must agree on the layout byte for byte. Addresses and ports are kept in network byte
//! order exactly as they sit in the packet, so the data path never swaps bytes; an IPv4
//! address lives in `addr[0]` with the rest zero.

use crate::consts::{FAMILY_V4, FAMILY_V6};

/// A virtual service: (address, port, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: [u32; 4],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// What the data path needs to know about a service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipInfo {
    pub service_id: u32,
    /// Which of the service's two ring tables is live (0 or 1).
    pub ring_gen: u32,
    pub algorithm: u8,
    pub forwarding: u8,
    /// `ACL_HAS_ALLOW` | `ACL_HAS_DENY`: whether new flows look up `LB_ACL`.
    pub acl: u8,
    pub _pad: u8,
    /// Entries of the live `LB_SEQ` generation (0: no backend in rotation).
    pub seq_len: u32,
    /// `persistence_timeout` in ms: a client's new flow within this of its previous one
    /// goes to the same backend (`LB_PERSIST`). 0: off.
    pub persist_ms: u32,
}

/// Key of `LB_VIP_ADDRS`: every address some VIP uses, for packets without ports (fragments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipAddrKey {
    pub addr: [u32; 4],
    pub family: u8,
    pub _pad: [u8; 3],
}

/// A backend as the data path sees it, indexed by backend id in `LB_BACKENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendInfo {
    pub addr: [u32; 4],
    pub port: u16,
    pub family: u8,
    /// `BACKEND_ACTIVE`, `BACKEND_HAS_MAC`
    pub flags: u8,
    /// The service this id belongs to; a flow pinned to an id reused by another service
    /// is re-steered instead of following it.
    pub service_id: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// The 5-tuple of a flow as the client sent it (destination = the VIP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Connection tracking entry: the backend a flow is pinned to, and how far the flow got
/// (`track.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub last_seen_ns: u64,
    pub backend_id: u32,
    /// SNAT source port (network order); 0 in dsr mode.
    pub snat_port: u16,
    /// `FLOW_*`: closing, established, unconfirmed, replied, counted, outcome bits.
    pub flags: u8,
    pub _pad: u8,
    /// TCP: the next sequence number expected from the client (host order).
    pub client_next: u32,
    /// TCP, nat: the next sequence number expected from the backend, once `FLOW_REPLIED`.
    pub server_next: u32,
}

/// Key of the reverse-NAT table: a backend's reply as it arrives at the LB's SNAT address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatKey {
    pub backend_addr: [u32; 4],
    pub backend_port: u16,
    pub snat_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// What a reply is translated back to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatValue {
    pub client_addr: [u32; 4],
    pub vip_addr: [u32; 4],
    pub client_port: u16,
    pub vip_port: u16,
    pub backend_id: u32,
    pub service_id: u32,
    /// The L2 neighbour the client's packets came from (its router, or the client):
    /// replies go back the way the request came.
    pub client_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// A random number drawn when the entry was written: a stale entry is reclaimed by the
    /// one CPU that claims this version of it (`lb-ebpf/src/nat.rs`).
    pub version: u32,
}

/// A next hop the kernel's FIB named but has no neighbour entry for (`LB_UNRESOLVED`):
/// the daemon makes the kernel resolve it, then deletes the entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// The next hop's address (the gateway, or the target itself when on-link), as the
    /// FIB returned it; IPv4 in the first word.
    pub addr: [u32; 4],
    /// The NIC the FIB would send through.
    pub ifindex: u32,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// An `LB_TX_PORTS` value, the kernel's `struct bpf_devmap_val`: the NIC, and an XDP
/// program to run on redirected frames before they leave (0: none; the daemon sets none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxPort {
    pub ifindex: u32,
    pub prog_fd: u32,
}

/// Data-path settings, the single entry of `LB_CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    pub tcp_idle_ns: u64,
    pub udp_idle_ns: u64,
    /// Life left to a TCP flow after FIN or RST, so late packets still find their backend.
    pub tcp_closing_ns: u64,
    pub snat_v6: [u32; 4],
    pub snat_v4: u32,
    /// `snat_ports`: new flows get their ports here. Host byte order, inclusive.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// The `snat_ports` before the last change (host order, inclusive; 0-0: none). Replies
    /// to its ports are still ours: flows that got them before a reload keep working. These
    /// four bytes were an unused, always-zero field before, so a pin written by an older
    /// daemon reads as "no previous range", which is what it means.
    pub prev_snat_port_min: u16,
    pub prev_snat_port_max: u16,
    pub _pad_ports: [u8; 2],
    /// Non-zero once the daemon has written the entry.
    pub configured: u8,
    pub _pad: u8,
    /// A TCP flow whose handshake has not completed lives this long without a packet.
    pub tcp_handshake_ns: u64,
    /// A UDP flow that has seen no reply (nat) or no second packet (dsr) lives this long.
    pub udp_unreplied_ns: u64,
    /// Keys the SNAT ports' probe order: drawn at random by each daemon at start, so the
    /// port a flow will get cannot be computed from public constants.
    pub snat_seed: u32,
    /// The interface's own MAC: the source MAC of every frame the data path sends.
    pub if_mac: [u8; 6],
    pub _pad_mac: [u8; 6],
    /// `encap_source_ipv6`: the prefix outer IPv6 sources of `ipip`/`gue` come from (packet
    /// order); the flow hash fills its host bits (`encap::spread_v6`).
    pub encap_src_v6: [u32; 4],
    /// `encap_source_ipv4`: as `encap_src_v6`, for outer IPv4 headers.
    pub encap_src_v4: u32,
    /// The MTU of the path to encapsulation backends (`tunnel_mtu`, else the egress
    /// interface's): an encapsulated packet longer than this is answered with ICMP
    /// "fragmentation needed" / "packet too big" instead. 0: not checked.
    pub tunnel_mtu: u32,
    /// `gue_port`: GUE's UDP destination port (host order).
    pub gue_port: u16,
    /// The prefix lengths of `encap_src_v4` (0-32) and `encap_src_v6` (0-128).
    pub encap_len_v4: u8,
    pub encap_len_v6: u8,
    pub _pad_encap: [u8; 4],
}

/// Per-service and per-backend counters (per CPU; readers sum them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// Frames up to this long can be timed by the data path's bench entry point.
pub const BENCH_FRAME_MAX: usize = 128;

/// The per-CPU state of the bench entry point `lb_xdp_bench` (lb-ebpf `bench.rs`): the frame
/// it restores after every run, so that `BPF_PROG_TEST_RUN`'s repetitions each see the
/// frame the caller gave, however the program rewrote it. The caller writes it with
/// `len = 0` before each call; the first repetition saves its frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchFrame {
    /// Bytes of `frame` saved; 0 until the first repetition saved them.
    pub len: u32,
    /// Offset in the frame of a big-endian 32-bit word (the low word of the source
    /// address) to count up by one after every repetition, so that each one opens a new
    /// flow; 0: leave the frame as it came.
    pub vary_at: u32,
    pub frame: [u8; BENCH_FRAME_MAX],
}

impl BenchFrame {
    /// Ready for a new call, counting up the word at `vary_at` (0: none).
    pub const fn armed(vary_at: u32) -> Self {
        Self { len: 0, vary_at, frame: [0; BENCH_FRAME_MAX] }
    }
}

/// Key of `LB_PERSIST`: one client address of one service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistKey {
    pub addr: [u32; 4],
    pub service_id: u32,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Value of `LB_PERSIST`: the backend of the client's last new flow, and when (ns since
/// boot, the data path's coarse clock).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    pub last_ns: u64,
    pub backend_id: u32,
    pub _pad: u32,
}

/// Key of `LB_SOURCE_BUCKETS`: one client of one service. IPv6 clients are keyed by their
/// /64 (the daemon and the data path both mask with `SourceKey::new`): one host holds a
/// whole /64, so per-address buckets would not limit it at all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub addr: [u32; 4],
    pub service_id: u32,
}

impl SourceKey {
    #[inline(always)]
    pub fn new(addr: &[u32; 4], family: u8, service_id: u32) -> Self {
        let addr = if family == FAMILY_V6 { [addr[0], addr[1], 0, 0] } else { [addr[0], 0, 0, 0] };
        SourceKey { addr, service_id }
    }
}

/// Passive health signals per backend id (`LB_OUTCOMES`, per CPU): new nat flows the
/// backend answered (SYN-ACK), and new flows it refused (RST before any SYN-ACK) or left
/// unanswered until the client sent its SYN again. The daemon reads the deltas.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub answered: u64,
    pub failed: u64,
}

/// A half-open circuit breaker's trial, per service id (`LB_TRIALS`): while `armed`, the
/// next new flow goes to `backend_id` (which is out of rotation), and disarms it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trial {
    pub backend_id: u32,
    pub armed: u32,
}

/// Display data for `lb list`, written by the daemon, never read by the data path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceMeta {
    pub name: [u8; 48],
    pub vip: VipKey,
    pub algorithm: u8,
    pub forwarding: u8,
    pub in_use: u8,
    pub _pad: u8,
    pub backend_count: u32,
}

impl Default for ServiceMeta {
    fn default() -> Self {
        Self {
            name: [0; 48],
            vip: VipKey::default(),
            algorithm: 0,
            forwarding: 0,
            in_use: 0,
            _pad: 0,
            backend_count: 0,
        }
    }
}

/// Display data for a backend id, written by the daemon, never read by the data path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendMeta {
    pub weight: u32,
    /// 0 ready, 1 drain, 2 maint
    pub state: u8,
    /// 0 unknown, 1 up, 2 down
    pub health: u8,
    /// bit 0 config, bit 1 registration
    pub source: u8,
    pub in_use: u8,
    /// Circuit breaker: 0 closed, 1 open (ejected), 2 half-open
    pub circuit: u8,
    pub _pad: [u8; 3],
}

/// Key data of `LB_ACL`, an LPM trie (its key is a prefix length, then this): a service's
/// source prefix. The trie matches `SERVICE_BITS` bits of `service_id_be` (always all of
/// them) then the address: an IPv6 address, or an IPv4 one mapped (`::ffff:a.b.c.d`), so
/// IPv4 and IPv6 prefixes never match each other.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AclData {
    pub service_id_be: u32,
    pub addr: [u32; 4],
}

impl AclData {
    /// Prefix bits before the address: the service id.
    pub const SERVICE_BITS: u32 = 32;
    /// Prefix bits of the mapped IPv4 address's fixed part (`::ffff:`).
    pub const V4_MAPPED_BITS: u32 = 96;

    /// A client address (network order, as in `FlowKey`) of a service.
    #[inline(always)]
    pub fn new(service_id: u32, addr: &[u32; 4], family: u8) -> Self {
        let addr = if family == FAMILY_V6 { *addr } else { [0, 0, 0xffff_u32.to_be(), addr[0]] };
        AclData { service_id_be: service_id.to_be(), addr }
    }

    /// The trie prefix length of an address prefix of `bits` bits.
    #[inline(always)]
    pub fn prefix_len(family: u8, bits: u32) -> u32 {
        Self::SERVICE_BITS + if family == FAMILY_V6 { bits } else { Self::V4_MAPPED_BITS + bits }
    }
}

impl GlobalConfig {
    /// Is `port` (host order), on the SNAT address, possibly one of our nat flows: in
    /// `snat_ports`, or in the range before its last change (whose flows live on)? Any
    /// other port is the host's own traffic, which never costs an `LB_NAT` lookup.
    #[inline(always)]
    pub fn is_snat_port(&self, port: u16) -> bool {
        (port >= self.snat_port_min && port <= self.snat_port_max)
            || (self.prev_snat_port_max != 0 && port >= self.prev_snat_port_min && port <= self.prev_snat_port_max)
    }

    /// How long a flow may sit idle before it counts as gone: the protocol's timeout, or the
    /// short closing one once a FIN or RST was seen. The data path, `lb list flows` and
    /// `lb explain` all decide liveness with this one rule.
    /// A flow not yet established (`FLOW_ESTABLISHED`) gets the short handshake (TCP) or
    /// unreplied (UDP) limit instead, if that is shorter.
    #[inline(always)]
    pub fn idle_limit_ns(&self, proto: u8, flow_flags: u8) -> u64 {
        use crate::consts::{FLOW_CLOSING, FLOW_ESTABLISHED, PROTO_TCP};
        let established = flow_flags & FLOW_ESTABLISHED != 0;
        let (limit, embryonic) = if proto != PROTO_TCP {
            (self.udp_idle_ns, self.udp_unreplied_ns)
        } else if flow_flags & FLOW_CLOSING != 0 {
            (self.tcp_closing_ns, self.tcp_handshake_ns)
        } else {
            (self.tcp_idle_ns, self.tcp_handshake_ns)
        };
        if !established && embryonic < limit {
            embryonic
        } else {
            limit
        }
    }
}

impl NatValue {
    /// The flow this NAT entry was made for (`proto` and `family` are the entry key's).
    #[inline(always)]
    pub fn owner(&self, proto: u8, family: u8) -> FlowKey {
        FlowKey {
            src: self.client_addr,
            dst: self.vip_addr,
            sport: self.client_port,
            dport: self.vip_port,
            proto,
            family,
            _pad: [0; 2],
        }
    }
}

impl FlowState {
    #[inline(always)]
    pub fn is_live(&self, proto: u8, now_ns: u64, cfg: &GlobalConfig) -> bool {
        now_ns.saturating_sub(self.last_seen_ns) <= cfg.idle_limit_ns(proto, self.flags)
    }
}

impl VipKey {
    pub const fn v4(addr_be: u32, port_be: u16, proto: u8) -> Self {
        Self { addr: [addr_be, 0, 0, 0], port: port_be, proto, family: FAMILY_V4 }
    }
    pub const fn v6(addr_be: [u32; 4], port_be: u16, proto: u8) -> Self {
        Self { addr: addr_be, port: port_be, proto, family: FAMILY_V6 }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), Copy, and have no implicit padding (every byte is a
    // named field), so any byte pattern is a valid value.
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for VipAddrKey {}
    unsafe impl aya::Pod for BackendInfo {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for PersistKey {}
    unsafe impl aya::Pod for Persisted {}
    unsafe impl aya::Pod for NatKey {}
    unsafe impl aya::Pod for NatValue {}
    unsafe impl aya::Pod for GlobalConfig {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for BenchFrame {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for TxPort {}
    unsafe impl aya::Pod for ServiceMeta {}
    unsafe impl aya::Pod for BackendMeta {}
    unsafe impl aya::Pod for SourceKey {}
    unsafe impl aya::Pod for Outcomes {}
    unsafe impl aya::Pod for Trial {}
    unsafe impl aya::Pod for AclData {}
    unsafe impl aya::Pod for crate::ratelimit::Bucket {}
    unsafe impl aya::Pod for crate::ratelimit::RateLimit {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    // Sizes are the sum of the named fields: no implicit padding anywhere.
    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<VipKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<VipInfo>(), 4 + 4 + 1 + 1 + 2 + 4 + 4);
        assert_eq!(size_of::<VipAddrKey>(), 16 + 1 + 3);
        assert_eq!(size_of::<BackendInfo>(), 16 + 2 + 1 + 1 + 4 + 6 + 2);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 1 + 1 + 2);
        assert_eq!(size_of::<FlowState>(), 8 + 4 + 2 + 1 + 1 + 4 + 4);
        assert_eq!(size_of::<NatKey>(), 16 + 2 + 2 + 1 + 1 + 2);
        assert_eq!(size_of::<NatValue>(), 16 + 16 + 2 + 2 + 4 + 4 + 6 + 2 + 4);
        assert_eq!(
            size_of::<GlobalConfig>(),
            8 * 3 + 16 + 4 + 2 + 2 + 2 + 2 + 2 + 1 + 1 + 8 + 8 + 4 + 6 + 6 + 16 + 4 + 4 + 2 + 1 + 1 + 4
        );
        assert_eq!(size_of::<AclData>(), 4 + 16);
        assert_eq!(size_of::<Counters>(), 24);
        assert_eq!(size_of::<ServiceMeta>(), 48 + 20 + 4 + 4);
        assert_eq!(size_of::<BackendMeta>(), 12);
        assert_eq!(size_of::<SourceKey>(), 16 + 4);
        assert_eq!(size_of::<PersistKey>(), 16 + 4 + 1 + 3);
        assert_eq!(size_of::<Persisted>(), 8 + 4 + 4);
        assert_eq!(size_of::<Outcomes>(), 16);
        assert_eq!(size_of::<Trial>(), 8);
        assert_eq!(size_of::<NextHop>(), 16 + 4 + 1 + 3);
        assert_eq!(size_of::<TxPort>(), 8);
        assert_eq!(size_of::<crate::ratelimit::Bucket>(), 16);
        assert_eq!(size_of::<crate::ratelimit::RateLimit>(), 32);
    }
}

#[cfg(test)]
mod liveness_tests {
    use super::*;
    use crate::consts::{FLOW_CLOSING, FLOW_ESTABLISHED, PROTO_TCP, PROTO_UDP};

    fn cfg() -> GlobalConfig {
        GlobalConfig {
            tcp_idle_ns: 300,
            udp_idle_ns: 30,
            tcp_closing_ns: 10,
            tcp_handshake_ns: 5,
            udp_unreplied_ns: 3,
            ..Default::default()
        }
    }

    #[test]
    fn embryonic_flows_live_only_their_handshake_or_unreplied_limit() {
        let cfg = cfg();
        let embryonic = FlowState { last_seen_ns: 1000, ..Default::default() };
        assert!(embryonic.is_live(PROTO_TCP, 1005, &cfg));
        assert!(!embryonic.is_live(PROTO_TCP, 1006, &cfg));
        assert!(embryonic.is_live(PROTO_UDP, 1003, &cfg));
        assert!(!embryonic.is_live(PROTO_UDP, 1004, &cfg));
        let refused = FlowState { flags: FLOW_CLOSING, ..embryonic };
        assert!(!refused.is_live(PROTO_TCP, 1006, &cfg), "closing never lengthens an embryonic flow");
    }

    #[test]
    fn flows_live_until_their_protocols_idle_limit() {
        let cfg = cfg();
        let open = FlowState { last_seen_ns: 1000, flags: FLOW_ESTABLISHED, ..Default::default() };
        let closing = FlowState { flags: FLOW_CLOSING | FLOW_ESTABLISHED, ..open };
        assert!(open.is_live(PROTO_TCP, 1300, &cfg));
        assert!(!open.is_live(PROTO_TCP, 1301, &cfg));
        assert!(closing.is_live(PROTO_TCP, 1010, &cfg));
        assert!(!closing.is_live(PROTO_TCP, 1011, &cfg));
        assert!(open.is_live(PROTO_UDP, 1030, &cfg));
        assert!(!open.is_live(PROTO_UDP, 1031, &cfg));
    }
}

#[cfg(test)]
mod snat_port_tests {
    use super::*;

    #[test]
    fn replies_are_ours_in_the_current_range_and_in_the_one_before_a_change() {
        let cfg = GlobalConfig { snat_port_min: 30000, snat_port_max: 30999, ..Default::default() };
        assert!(cfg.is_snat_port(30000) && cfg.is_snat_port(30999));
        assert!(!cfg.is_snat_port(29999) && !cfg.is_snat_port(31000));
        assert!(!cfg.is_snat_port(0), "no previous range: port 0 is not ours either");
        let changed = GlobalConfig { prev_snat_port_min: 20000, prev_snat_port_max: 20999, ..cfg };
        assert!(changed.is_snat_port(20000) && changed.is_snat_port(20999) && changed.is_snat_port(30500));
        assert!(!changed.is_snat_port(19999) && !changed.is_snat_port(21000) && !changed.is_snat_port(25000));
    }

    /// The fields a change of layout version 2 added sit after the older ones: nothing
    /// that was there before moved.
    #[test]
    fn the_newer_fields_follow_the_older_ones() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(GlobalConfig, snat_port_max), 46);
        assert_eq!(offset_of!(GlobalConfig, prev_snat_port_min), 48);
        assert_eq!(offset_of!(GlobalConfig, configured), 54);
        assert_eq!(offset_of!(GlobalConfig, tcp_handshake_ns), 56);
        // Layout version 3: the encapsulation settings, after everything else.
        assert_eq!(offset_of!(GlobalConfig, encap_src_v6), 88);
        assert_eq!(offset_of!(GlobalConfig, tunnel_mtu), 108);
        assert_eq!(core::mem::size_of::<GlobalConfig>(), 120);
    }
}

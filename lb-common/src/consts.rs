//! Sizes and flag values shared by the data path and the daemon.

/// Maglev lookup table size per service: a prime, as Maglev requires, and Katran's default.
/// Large enough that M > 100·N for up to 655 backends per service (balance within 1%).
pub const RING_SIZE: u32 = 65_537;
/// Each service owns two tables (live and shadow); the daemon writes the shadow one and then
/// flips `VipInfo::ring_gen`, so a packet never sees a half-written table.
pub const RING_GENERATIONS: u32 = 2;
/// Services at once, the most `daemon.max_services` may ask for, and the capacity of every
/// per-service map except the two table arrays. Those hold two Maglev tables of 65537
/// slots per service, which the kernel keeps in 8 bytes each (an array's values are 8-byte
/// aligned): 1 MiB per service, 1 GiB for `LB_RING` at this size, charged when the map is
/// created. So they are sized at load time from `daemon.max_services` instead, the way
/// `flow_table_size` sizes `LB_FLOWS`: a daemon pays for the services it is configured
/// for, and the packet tests' many maps stay small.
pub const MAX_SERVICES: u32 = 1024;
/// `daemon.max_services`'s default, and the services `LB_RING` / `LB_SEQ` hold in the XDP
/// object before the loader resizes them: 128 MiB of `LB_RING`, as before the limit rose.
pub const DEFAULT_MAX_SERVICES: u32 = 128;
/// Backends at once, all services together. Every per-backend map is an array of this size
/// (the per-CPU ones once per CPU): 16384 rows of 48 bytes or less, under 1 MiB each.
pub const MAX_BACKENDS: u32 = 16_384;
/// Addresses VIPs use, all services together: one each at most.
pub const MAX_VIP_ADDRS: u32 = MAX_SERVICES;
/// NICs the daemon attaches to (`daemon.interface`), the capacity of `LB_TX_PORTS`.
pub const MAX_TX_PORTS: u32 = 64;
/// Next hops waiting for the kernel to resolve them (`LB_UNRESOLVED`).
pub const MAX_UNRESOLVED: u32 = 256;
/// Ring slot value for "no backend": a service whose backends are all out.
pub const NO_BACKEND: u32 = u32::MAX;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// `VipInfo::forwarding`
pub const FWD_NAT: u8 = 0;
pub const FWD_DSR: u8 = 1;
/// Encapsulated (`encap.rs`): IP-in-IP, and IP in UDP (GUE).
pub const FWD_IPIP: u8 = 2;
pub const FWD_GUE: u8 = 3;

/// `VipInfo::algorithm`: the selection seam. Values are part of the pinned-map ABI.
pub const ALG_MAGLEV: u8 = 0;
pub const ALG_SOURCE_HASH: u8 = 1;
pub const ALG_ROUND_ROBIN: u8 = 2;
pub const ALG_WEIGHTED_ROUND_ROBIN: u8 = 3;
pub const ALG_RANDOM: u8 = 4;
pub const ALG_LEAST_CONN: u8 = 5;
pub const ALG_P2C: u8 = 6;

/// Per-service sequence table (the `LB_SEQ` map): the order round robin walks (each
/// backend once, or the smooth weighted sequence), and the member list least_conn and p2c
/// choose from. Two generations, flipped with the ring.
pub const SEQ_SIZE: u32 = 1024;
/// least_conn looks at this many members per new flow, from a rotating start: exact for
/// services of up to 64 backends in rotation, a sliding window beyond.
pub const LEAST_CONN_SCAN: u32 = 64;

/// `BackendInfo::flags`
/// The backend may keep serving the flows it already has (ready or drain, healthy).
pub const BACKEND_ACTIVE: u8 = 1;
/// `BackendInfo::mac` holds the next-hop MAC resolved by the daemon.
pub const BACKEND_HAS_MAC: u8 = 2;
/// The backend takes new flows (it is in the service's tables): a client persisting on it
/// (`persistence_timeout`) may keep coming; otherwise its next flow is balanced anew.
pub const BACKEND_IN_ROTATION: u8 = 4;

/// `FlowState::flags`
pub const FLOW_CLOSING: u8 = 1;
/// The backend answered the flow's SYN (SYN-ACK or RST seen on the way back, nat only):
/// its outcome is counted, once.
pub const FLOW_ANSWERED: u8 = 2;
/// The client sent the SYN again before any answer: counted once as a failure.
pub const FLOW_SYN_RETRIED: u8 = 4;
/// Past the embryonic stage (see `track.rs`): a TCP handshake completed (nat: the client
/// acknowledged the backend's SYN-ACK; dsr: a second client packet), a nat UDP flow got a
/// reply, a dsr UDP flow saw a second client packet. Until then the flow lives only
/// `tcp_handshake_timeout` / `udp_unreplied_timeout`.
pub const FLOW_ESTABLISHED: u8 = 8;
/// Opened by a segment that was not a SYN (dsr mid-stream pick-up, or a nat flow moved off
/// its backend): not counted as active until a further plausible packet confirms it.
pub const FLOW_UNCONFIRMED: u8 = 16;
/// The backend sent a packet back (nat): `FlowState::server_next` is known.
pub const FLOW_REPLIED: u8 = 32;
/// The flow is counted in `LB_ACTIVE` (one `flow_opened` not yet matched by a
/// `flow_closing`): only a flow counted in is ever counted out.
pub const FLOW_COUNTED: u8 = 64;

/// A TCP sequence (or acknowledgement) number is plausible for a flow when it lies within
/// this distance of the next one expected (RFC 5961's idea, with the largest unscaled
/// window): a blind sender hits it about once in 32768 tries.
pub const SEQ_WINDOW: u32 = 65_535;

/// `LB_RATELIMITED` index: `service_id * 2 + scope`.
pub const RL_SCOPE_SERVICE: u32 = 0;
pub const RL_SCOPE_SOURCE: u32 = 1;
pub const RL_SCOPE_NAMES: [&str; 2] = ["service", "source"];
/// Per-source buckets (`LB_SOURCE_BUCKETS`, LRU): clients tracked at once, all services.
pub const MAX_RATE_SOURCES: u32 = 65_536;

/// `VipInfo::acl`: the service has source allow entries (a source matching none is
/// refused) / deny entries in `LB_ACL`. Zero: no lookup at all.
pub const ACL_HAS_ALLOW: u8 = 1;
pub const ACL_HAS_DENY: u8 = 2;
/// `LB_ACL` values: what the longest matching prefix says.
pub const ACL_ALLOW: u32 = 1;
pub const ACL_DENY: u32 = 2;
/// Source prefixes (`allow` and `deny` together) per service.
pub const MAX_ACL_PER_SERVICE: u32 = 1024;
/// Source prefixes in `LB_ACL`, all services together (an LPM trie allocates per entry, so
/// the cap costs nothing until used).
pub const MAX_ACL_ENTRIES: u32 = MAX_SERVICES * MAX_ACL_PER_SERVICE;

/// `VipAddrInfo` flags: the address also belongs to the host (the seed's LB-on-:8080 case),
/// so traffic to it that is not for a VIP port must reach the kernel.
pub const VIP_ADDR_SHARED_WITH_HOST: u32 = 1;

/// Index of the single `GlobalConfig` entry.
pub const CONFIG_KEY: u32 = 0;

/// Index of a service's sequence generation `gen` inside the flat `LB_SEQ` array.
#[inline(always)]
pub const fn seq_base(service_id: u32, gen: u32) -> u32 {
    (service_id * RING_GENERATIONS + (gen & 1)) * SEQ_SIZE
}

/// `LB_RING` entries for `services` services (both generations).
#[inline(always)]
pub const fn ring_entries(services: u32) -> u32 {
    services * RING_GENERATIONS * RING_SIZE
}

/// `LB_SEQ` entries for `services` services (both generations).
#[inline(always)]
pub const fn seq_entries(services: u32) -> u32 {
    services * RING_GENERATIONS * SEQ_SIZE
}

/// Index of a service's ring generation `gen` inside the flat `LB_RING` array.
#[inline(always)]
pub const fn ring_base(service_id: u32, gen: u32) -> u32 {
    (service_id * RING_GENERATIONS + (gen & 1)) * RING_SIZE
}

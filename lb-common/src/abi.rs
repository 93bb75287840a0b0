//! The pinned-map ABI: the one list of the maps the XDP program and the daemon share,
//! pinned by name under the daemon's `pin_path`, so `lb list` and a restarted daemon find
//! them. Everything else is derived from [`pinned_maps!`]'s table: the XDP program's
//! `#[map]` statics (lb-ebpf `maps.rs`), the name constants (`abi::map_names`),
//! [`PINNED_MAPS`] (what the daemon checks pins against), and the daemon's typed handles
//! (lb-user `dataplane::maps::Maps`). A map cannot be added, renamed or resized in one
//! place and forgotten in another.
//!
//! # Layout version
//!
//! A restarted daemon adopts the pinned maps as they are, with the flows in them, and the
//! loader does not compare their layout with the object's. So whenever a row changes in a
//! way that makes an existing pin unreadable — a key or value type's size or field layout,
//! a kind, a capacity, or what a field means — bump [`LAYOUT_VERSION`]. The daemon stores
//! it in `LB_LAYOUT` beside the pins and refuses pins of another version before it loads
//! anything. `layout_fingerprint_is_recorded_with_its_version` below records the table's
//! sizes beside the version, so no change it can see goes by without someone deciding on
//! the bump. Adding a row needs no bump: a new map is created empty next to the adopted
//! ones.

/// The layout of the pinned maps, stored in `LB_LAYOUT`. Bump it with any change to an
/// existing row of [`pinned_maps!`] (see the module documentation).
pub const LAYOUT_VERSION: u32 = 5;

/// Maps in the XDP object that are not part of the ABI: per-CPU scratch space private to the
/// program (each module owns its own), never pinned and never read by the daemon. Listed so
/// a test can tell them from a pinned map missing from the table.
/// `LB_SNAT_CLAIMS` is private too: who reclaims a stale SNAT entry, for microseconds.
pub const SCRATCH_MAPS: &[&str] = &[
    "LB_SCRATCH",
    "LB_SCRATCH_NAT",
    "LB_SCRATCH_RATE",
    "LB_SCRATCH_ICMP",
    "LB_SCRATCH_FIB",
    "LB_SNAT_CLAIMS",
    "LB_SCRATCH_ENCAP",
    "LB_SCRATCH_VIP_KEY",
    "LB_SCRATCH_PERSIST",
    "LB_BENCH_FRAME",
];

/// A map's kind, valued as the kernel's `bpf_map_type`, so a pin's type compares directly.
/// Variant names are aya-ebpf's map types, which the table rows use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapKind {
    HashMap = 1,
    Array = 2,
    PerCpuArray = 6,
    LruHashMap = 9,
    LpmTrie = 11,
    DevMapHash = 25,
}

/// One pinned map as the daemon checks it: a pin whose kind, key size, value size or
/// capacity differs is not the map this build reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    /// The object's capacity; the daemon overrides the flow tables' and the table arrays'
    /// at load time (lb-xdp `layout::SIZED_AT_LOAD`).
    pub max_entries: u32,
}

/// What the table rows name, so rows read like the types they describe. Brought into scope
/// by [`pinned_maps!`] wherever the table is expanded.
pub mod prelude {
    pub use crate::consts::{
        ring_entries, seq_entries, DEFAULT_MAX_SERVICES, MAX_ACL_ENTRIES, MAX_BACKENDS, MAX_RATE_SOURCES, MAX_SERVICES,
        MAX_TX_PORTS, MAX_UNRESOLVED, MAX_VIP_ADDRS,
    };
    pub use crate::maps::{
        AclData, BackendInfo, BackendMeta, Counters, FlowKey, FlowState, GlobalConfig, NatKey, NatValue, NextHop,
        Outcomes, PersistKey, Persisted, ServiceMeta, SourceKey, Trial, TxPort, VipAddrKey, VipInfo, VipKey,
    };
    pub use crate::ratelimit::{Bucket, RateLimit};
    pub use crate::reason::{ACTION_COUNT, DROP_REASON_COUNT};
}

/// The table. `pinned_maps!(then)` calls the macro `then` with one row per pinned map:
///
/// ```text
/// /// doc
/// LB_NAME (NAME, field): Kind(Key => Value) [capacity];
/// ```
///
/// `LB_NAME` is the map's name (aya's `#[map]` takes it from the static's identifier, and
/// the pin file is called so), `NAME` its constant in `abi::map_names`, `field` the
/// daemon's handle in `Maps`, `Kind` one of [`MapKind`]'s variants (arrays are keyed by
/// `u32`). Keep rows in the order they are best read in; bump [`LAYOUT_VERSION`] when an
/// existing row changes.
#[macro_export]
macro_rules! pinned_maps {
    ($then:ident) => {
        #[allow(unused_imports)]
        use $crate::abi::prelude::*;
        $then! {
            /// The layout version (`LAYOUT_VERSION`) of the maps pinned beside it, written
            /// when they are created and checked before they are adopted. Its own layout
            /// never changes.
            LB_LAYOUT (LAYOUT, layout): Array(u32 => u32) [1];
            /// Data-path settings: the single entry `CONFIG_KEY`.
            LB_CONFIG (CONFIG, config): Array(u32 => GlobalConfig) [1];
            /// Services by (address, port, protocol).
            LB_VIPS (VIPS, vips): HashMap(VipKey => VipInfo) [MAX_SERVICES];
            /// Every address some VIP uses, for packets without ports (fragments); the value
            /// holds `VIP_ADDR_*` flags.
            LB_VIP_ADDRS (VIP_ADDRS, vip_addrs): HashMap(VipAddrKey => u32) [MAX_VIP_ADDRS];
            /// Every service's two Maglev tables, flat: see `consts::ring_base`. The daemon
            /// sizes it from `max_services` at load time (see `consts::MAX_SERVICES`).
            LB_RING (RING, ring): Array(u32 => u32) [ring_entries(DEFAULT_MAX_SERVICES)];
            /// Every service's two sequence tables (round robin order, member list): see
            /// `consts::seq_base`. Sized like `LB_RING`.
            LB_SEQ (SEQ, seq): Array(u32 => u32) [seq_entries(DEFAULT_MAX_SERVICES)];
            /// Live flows per backend id, for least_conn and p2c: counted up on a new flow,
            /// down on its first FIN or RST; the daemon recounts from the flow table every few
            /// seconds, which also catches flows that just expire (UDP, or TCP without a
            /// goodbye).
            LB_ACTIVE (ACTIVE, active): Array(u32 => u64) [MAX_BACKENDS];
            /// Per-CPU round-robin positions per service: no cross-CPU contention; each CPU
            /// walks the sequence on its own, so the mix is exact per CPU and close overall.
            /// Only the data path writes it; pinned so a restart keeps the rotation going.
            LB_RR_CURSOR (RR_CURSOR, rr_cursor): PerCpuArray(u32 => u32) [MAX_SERVICES];
            /// Backends by id.
            LB_BACKENDS (BACKENDS, backends): Array(u32 => BackendInfo) [MAX_BACKENDS];
            /// Connection tracking. The daemon sizes it from `flow_table_size` at load time.
            LB_FLOWS (FLOWS, flows): LruHashMap(FlowKey => FlowState) [65_536];
            /// Reverse NAT for replies. Sized like `LB_FLOWS`.
            LB_NAT (NAT, nat): LruHashMap(NatKey => NatValue) [65_536];
            /// `persistence_timeout`: each client's backend per service, and when its last
            /// new flow started. The least recently seen clients make room for new ones (and
            /// are balanced anew). The daemon sizes it at an eighth of `flow_table_size`.
            LB_PERSIST (PERSIST, persist): LruHashMap(PersistKey => Persisted) [8_192];
            /// Per-service counters, per CPU.
            LB_SERVICE_STATS (SERVICE_STATS, service_stats): PerCpuArray(u32 => Counters) [MAX_SERVICES];
            /// Per-backend counters, per CPU.
            LB_BACKEND_STATS (BACKEND_STATS, backend_stats): PerCpuArray(u32 => Counters) [MAX_BACKENDS];
            /// Packets per XDP action, per CPU.
            LB_ACTION_STATS (ACTION_STATS, action_stats): PerCpuArray(u32 => u64) [ACTION_COUNT];
            /// Drops per `DropReason`, per CPU.
            LB_DROP_STATS (DROP_STATS, drop_stats): PerCpuArray(u32 => u64) [DROP_REASON_COUNT];
            /// Display data for `lb list`; the data path never reads it.
            LB_SERVICE_META (SERVICE_META, service_meta): Array(u32 => ServiceMeta) [MAX_SERVICES];
            /// Display data for `lb list`; the data path never reads it.
            LB_BACKEND_META (BACKEND_META, backend_meta): Array(u32 => BackendMeta) [MAX_BACKENDS];
            /// Each service's `rate_limit`, as costs in ns per new flow (all zero: unlimited).
            LB_RATE_LIMITS (RATE_LIMITS, rate_limits): Array(u32 => RateLimit) [MAX_SERVICES];
            /// Each service's own bucket. Shared by all CPUs and updated without atomics (no
            /// atomic read-modify-write here): two CPUs refilling at the same instant can admit
            /// a flow or two more than the limit; never fewer.
            LB_SERVICE_BUCKETS (SERVICE_BUCKETS, service_buckets): Array(u32 => Bucket) [MAX_SERVICES];
            /// One bucket per (service, client address or IPv6 /64); the least recently seen
            /// clients make room for new ones, and a returning one starts full again.
            LB_SOURCE_BUCKETS (SOURCE_BUCKETS, source_buckets): LruHashMap(SourceKey => Bucket) [MAX_RATE_SOURCES];
            /// New flows refused by a limit, per `service_id * 2 + scope` (`RL_SCOPE_*`).
            LB_RATELIMITED (RATELIMITED, ratelimited): PerCpuArray(u32 => u64) [MAX_SERVICES * 2];
            /// Passive health signals per backend id, read by the daemon's circuit breakers.
            LB_OUTCOMES (OUTCOMES, outcomes): PerCpuArray(u32 => Outcomes) [MAX_BACKENDS];
            /// Half-open circuit breakers' trial flows, per service id.
            LB_TRIALS (TRIALS, trials): Array(u32 => Trial) [MAX_SERVICES];
            /// Each service's source `allow` / `deny` prefixes (`ACL_ALLOW`, `ACL_DENY`): the
            /// longest match decides. The key is the trie's prefix length, then `AclData`.
            LB_ACL (ACL, acl): LpmTrie(AclData => u32) [MAX_ACL_ENTRIES];
            /// New flows refused by the service's `allow` / `deny` lists, per service id.
            LB_ACL_DENIED (ACL_DENIED, acl_denied): PerCpuArray(u32 => u64) [MAX_SERVICES];
            /// The NICs frames may leave by (`daemon.interface`), by ifindex: a frame whose
            /// FIB egress is another of them goes there with `XDP_REDIRECT` (lb-ebpf
            /// `egress.rs`).
            LB_TX_PORTS (TX_PORTS, tx_ports): DevMapHash(u32 => TxPort) [MAX_TX_PORTS];
            /// Next hops the FIB named without a neighbour entry, with the time (ns since
            /// boot) the data path first met each: the daemon makes the kernel resolve
            /// them and deletes the entries.
            LB_UNRESOLVED (UNRESOLVED, unresolved): LruHashMap(NextHop => u64) [MAX_UNRESOLVED];
        }
    };
}

macro_rules! map_specs {
    ($($(#[$doc:meta])* $name:ident ($short:ident, $field:ident): $kind:ident ($k:ty => $v:ty) [$cap:expr];)*) => {
        /// Every pinned map, in table order.
        pub const PINNED_MAPS: &[MapSpec] = &[$(MapSpec {
            name: stringify!($name),
            kind: MapKind::$kind,
            // An LPM trie's key is its prefix length (a u32), then the row's key data.
            key_size: core::mem::size_of::<$k>() as u32
                + if matches!(MapKind::$kind, MapKind::LpmTrie) { 4 } else { 0 },
            value_size: core::mem::size_of::<$v>() as u32,
            max_entries: $cap,
        },)*];
    };
}
pinned_maps!(map_specs);

macro_rules! map_name_consts {
    ($($(#[$doc:meta])* $name:ident ($short:ident, $field:ident): $kind:ident ($k:ty => $v:ty) [$cap:expr];)*) => {
        $($(#[$doc])* pub const $short: &str = stringify!($name);)*
    };
}

/// Pinned map names (also the names of the maps in the XDP object), one per table row.
pub mod map_names {
    pinned_maps!(map_name_consts);
}

/// The spec of the pinned map called `name`.
pub fn spec(name: &str) -> Option<&'static MapSpec> {
    PINNED_MAPS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ours() {
        for (i, s) in PINNED_MAPS.iter().enumerate() {
            assert!(s.name.starts_with("LB_"), "{}", s.name);
            assert!(PINNED_MAPS[i + 1..].iter().all(|o| o.name != s.name), "{} twice", s.name);
            assert!(!SCRATCH_MAPS.contains(&s.name), "{} is both pinned and scratch", s.name);
        }
    }

    #[test]
    fn arrays_are_keyed_by_u32_and_the_layout_map_holds_one_version() {
        for s in PINNED_MAPS.iter().filter(|s| matches!(s.kind, MapKind::Array | MapKind::PerCpuArray)) {
            assert_eq!(s.key_size, 4, "{}", s.name);
        }
        let layout = spec(map_names::LAYOUT).unwrap();
        assert_eq!((layout.kind, layout.key_size, layout.value_size, layout.max_entries), (MapKind::Array, 4, 4, 1));
    }

    #[test]
    fn name_constants_follow_the_table() {
        assert_eq!(map_names::VIPS, "LB_VIPS");
        assert_eq!(map_names::RR_CURSOR, "LB_RR_CURSOR");
        assert_eq!(map_names::SOURCE_BUCKETS, "LB_SOURCE_BUCKETS");
        assert_eq!(spec(map_names::BACKEND_META).unwrap().value_size, 12);
    }

    /// Everything of the table the daemon can check on a pin, folded into one number
    /// (FNV-1a): names, kinds, key and value sizes, capacities.
    fn fingerprint() -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h = (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for s in PINNED_MAPS {
            eat(s.name.as_bytes());
            for n in [s.kind as u32, s.key_size, s.value_size, s.max_entries] {
                eat(&n.to_le_bytes());
            }
        }
        h
    }

    /// Fails when a row changed (or one was added) without this line being updated: bump
    /// `LAYOUT_VERSION` if an existing row changed (see the module documentation), then
    /// record the new fingerprint beside it.
    #[test]
    fn layout_fingerprint_is_recorded_with_its_version() {
        assert_eq!(
            (LAYOUT_VERSION, fingerprint()),
            (5, 0xf7d3_ba57_1e6a_fcea),
            "the pinned-map table changed: see abi.rs on LAYOUT_VERSION"
        );
    }
}

//! The maps, pinned by name under the daemon's `pin_path` so `lb list` and a restarted
//! daemon find them. Sizes here are defaults; the daemon sets the flow tables' size from
//! `flow_table_size` at load time.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use lb_common::{
    consts::{MAX_BACKENDS, MAX_RATE_SOURCES, MAX_SERVICES, MAX_VIP_ADDRS, RING_GENERATIONS, RING_SIZE, SEQ_SIZE},
    maps::{
        BackendInfo, BackendMeta, Counters, FlowKey, FlowState, GlobalConfig, NatKey, NatValue,
        Outcomes, ServiceMeta, SourceKey, Trial, VipAddrKey, VipInfo, VipKey,
    },
    ratelimit::{Bucket, RateLimit},
    reason::{ACTION_COUNT, DROP_REASON_COUNT},
};

#[map]
pub static LB_VIPS: HashMap<VipKey, VipInfo> = HashMap::pinned(MAX_SERVICES, 0);

#[map]
pub static LB_VIP_ADDRS: HashMap<VipAddrKey, u32> = HashMap::pinned(MAX_VIP_ADDRS, 0);

/// Every service's two Maglev tables, flat: see `lb_common::consts::ring_base`.
#[map]
pub static LB_RING: Array<u32> = Array::pinned(MAX_SERVICES * RING_GENERATIONS * RING_SIZE, 0);

/// Every service's two sequence tables (round robin order, member list): see
/// `lb_common::consts::seq_base`.
#[map]
pub static LB_SEQ: Array<u32> = Array::pinned(MAX_SERVICES * RING_GENERATIONS * SEQ_SIZE, 0);

/// Live flows per backend id, for least_conn and p2c: counted up on a new flow, down on its
/// first FIN or RST; the daemon recounts from the flow table every few seconds, which also
/// catches flows that just expire (UDP, or TCP without a goodbye).
#[map]
pub static LB_ACTIVE: Array<u64> = Array::pinned(MAX_BACKENDS, 0);

/// Per-CPU round-robin positions per service: no cross-CPU contention; each CPU walks the
/// sequence on its own, so the mix is exact per CPU and close overall.
#[map]
pub static LB_RR_CURSOR: PerCpuArray<u32> = PerCpuArray::pinned(MAX_SERVICES, 0);

#[map]
pub static LB_BACKENDS: Array<BackendInfo> = Array::pinned(MAX_BACKENDS, 0);

#[map]
pub static LB_FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::pinned(65_536, 0);

#[map]
pub static LB_NAT: LruHashMap<NatKey, NatValue> = LruHashMap::pinned(65_536, 0);

#[map]
pub static LB_CONFIG: Array<GlobalConfig> = Array::pinned(1, 0);

#[map]
pub static LB_SERVICE_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(MAX_SERVICES, 0);

#[map]
pub static LB_BACKEND_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(MAX_BACKENDS, 0);

#[map]
pub static LB_ACTION_STATS: PerCpuArray<u64> = PerCpuArray::pinned(ACTION_COUNT, 0);

#[map]
pub static LB_DROP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_REASON_COUNT, 0);

/// Display data for `lb list`; the data path never reads these two.
/// Per-CPU scratch space for the parsed headers: the 512-byte BPF stack cannot hold them
/// beside the forwarding path's own state. Private to the program, never pinned.
#[map]
pub static LB_SCRATCH: PerCpuArray<crate::parse::L3> = PerCpuArray::with_max_entries(1, 0);

/// Scratch for the reverse-NAT entry a new nat flow records (52 bytes off the stack).
#[map]
pub static LB_SCRATCH_NAT: PerCpuArray<NatValue> = PerCpuArray::with_max_entries(1, 0);

/// Scratch for a new flow's rate-limit lookups.
#[map]
pub static LB_SCRATCH_RATE: PerCpuArray<crate::ratelimit::Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Scratch for an ICMP error being translated (icmp.rs): the quote and its rewrite.
#[map]
pub static LB_SCRATCH_ICMP: PerCpuArray<crate::icmp::Quote> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static LB_SERVICE_META: Array<ServiceMeta> = Array::pinned(MAX_SERVICES, 0);

#[map]
pub static LB_BACKEND_META: Array<BackendMeta> = Array::pinned(MAX_BACKENDS, 0);

/// Each service's `rate_limit`, as costs in ns per new flow (all zero: unlimited).
#[map]
pub static LB_RATE_LIMITS: Array<RateLimit> = Array::pinned(MAX_SERVICES, 0);

/// Each service's own bucket. Shared by all CPUs and updated without atomics (no atomic
/// read-modify-write here): two CPUs refilling at the same instant can admit a flow or two
/// more than the limit; never fewer.
#[map]
pub static LB_SERVICE_BUCKETS: Array<Bucket> = Array::pinned(MAX_SERVICES, 0);

/// One bucket per (service, client address or IPv6 /64); the least recently seen clients
/// make room for new ones, and a returning one starts full again.
#[map]
pub static LB_SOURCE_BUCKETS: LruHashMap<SourceKey, Bucket> = LruHashMap::pinned(MAX_RATE_SOURCES, 0);

/// New flows refused by a limit, per `service_id * 2 + scope` (`RL_SCOPE_*`).
#[map]
pub static LB_RATELIMITED: PerCpuArray<u64> = PerCpuArray::pinned(MAX_SERVICES * 2, 0);

/// Passive health signals per backend id, read by the daemon's circuit breakers.
#[map]
pub static LB_OUTCOMES: PerCpuArray<Outcomes> = PerCpuArray::pinned(MAX_BACKENDS, 0);

/// Half-open circuit breakers' trial flows, per service id.
#[map]
pub static LB_TRIALS: Array<Trial> = Array::pinned(MAX_SERVICES, 0);

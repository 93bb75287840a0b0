//! The tunnel object's maps, named as lb-common's `tunnel` module says. Not pinned: they
//! live as long as the process that loaded the object (`lb decap`, or the daemon).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use lb_common::tunnel::{DecapAddr, DecapConfig, TunnelCheck, CHECK_TARGETS_MAX, DECAP_ADDRS_MAX, DECAP_OUTCOMES};

/// This host's decap addresses: only packets to one of them are decapsulated.
#[map]
pub static LB_DECAP_ADDRS: HashMap<DecapAddr, u8> = HashMap::with_max_entries(DECAP_ADDRS_MAX, 0);

/// `[0]`: the GUE port.
#[map]
pub static LB_DECAP_CONFIG: Array<DecapConfig> = Array::with_max_entries(1, 0);

/// Packets per `DecapOutcome`.
#[map]
pub static LB_DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DECAP_OUTCOMES as u32, 0);

/// Health-check mark → where its packets go, encapsulated.
#[map]
pub static LB_TUNNEL_CHECKS: HashMap<u32, TunnelCheck> = HashMap::with_max_entries(CHECK_TARGETS_MAX, 0);

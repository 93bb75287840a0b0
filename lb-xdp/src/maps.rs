//! Typed handles on the data path's maps, taken from a freshly loaded program or opened
//! from their pins (for `lb list`, `lb explain`, and a daemon adopting a running one).
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::Ebpf;
use lb_common::consts::map_names as n;
use lb_common::maps::*;

pub struct Maps {
    pub vips: HashMap<MapData, VipKey, VipInfo>,
    pub vip_addrs: HashMap<MapData, VipAddrKey, u32>,
    pub ring: Array<MapData, u32>,
    pub seq: Array<MapData, u32>,
    pub active: Array<MapData, u64>,
    pub backends: Array<MapData, BackendInfo>,
    pub flows: HashMap<MapData, FlowKey, FlowState>,
    pub nat: HashMap<MapData, NatKey, NatValue>,
    pub config: Array<MapData, GlobalConfig>,
    pub service_stats: PerCpuArray<MapData, Counters>,
    pub backend_stats: PerCpuArray<MapData, Counters>,
    pub action_stats: PerCpuArray<MapData, u64>,
    pub drop_stats: PerCpuArray<MapData, u64>,
    pub service_meta: Array<MapData, ServiceMeta>,
    pub backend_meta: Array<MapData, BackendMeta>,
    pub rate_limits: Array<MapData, lb_common::ratelimit::RateLimit>,
    pub ratelimited: PerCpuArray<MapData, u64>,
    pub outcomes: PerCpuArray<MapData, Outcomes>,
    pub trials: Array<MapData, Trial>,
}


impl Maps {
    /// Take the maps out of a loaded program (the program keeps its own references).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Self::build(|name| ebpf.take_map(name).ok_or_else(|| anyhow!("the XDP object has no map {name}")))
    }

    /// Open the maps pinned under `dir`.
    pub fn open_pinned(dir: &Path) -> Result<Self> {
        if !dir.join(n::VIPS).exists() {
            return Err(NothingPinned(dir.to_path_buf()).into());
        }
        Self::build(|name| {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| format!("cannot open pinned map {}", path.display()))?;
            Ok(Map::from_map_data(data)?)
        })
    }

    fn build(mut get: impl FnMut(&str) -> Result<Map>) -> Result<Self> {
        macro_rules! typed {
            ($name:expr) => {
                get($name)?.try_into().with_context(|| format!("map {} has an unexpected type", $name))?
            };
        }
        Ok(Self {
            vips: typed!(n::VIPS),
            vip_addrs: typed!(n::VIP_ADDRS),
            ring: typed!(n::RING),
            seq: typed!(n::SEQ),
            active: typed!(n::ACTIVE),
            backends: typed!(n::BACKENDS),
            flows: typed!(n::FLOWS),
            nat: typed!(n::NAT),
            config: typed!(n::CONFIG),
            service_stats: typed!(n::SERVICE_STATS),
            backend_stats: typed!(n::BACKEND_STATS),
            action_stats: typed!(n::ACTION_STATS),
            drop_stats: typed!(n::DROP_STATS),
            service_meta: typed!(n::SERVICE_META),
            backend_meta: typed!(n::BACKEND_META),
            rate_limits: typed!(n::RATE_LIMITS),
            ratelimited: typed!(n::RATELIMITED),
            outcomes: typed!(n::OUTCOMES),
            trials: typed!(n::TRIALS),
        })
    }
}

/// `lb list` and `lb explain` say this plainly instead of a syscall error.
#[derive(Debug, thiserror::Error)]
#[error("nothing is pinned under {0}: is `lb run` running in XDP mode with this pin_path?")]
pub struct NothingPinned(pub PathBuf);

/// Sum a per-CPU counter set.
pub fn sum_counters(values: &aya::maps::PerCpuValues<Counters>) -> Counters {
    values.iter().fold(Counters::default(), |a, c| Counters {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
        new_flows: a.new_flows + c.new_flows,
    })
}

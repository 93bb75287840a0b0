//! Typed handles on the data path's maps, taken from a freshly loaded program or opened
//! from their pins (for `lb list`, `lb explain`, and a daemon adopting a running one).
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use aya::maps::{Array, DevMapHash, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray};
use aya::Ebpf;
use lb_common::abi::map_names as n;
use lb_common::maps::*;

/// A table row's kind as the daemon's handle on it. aya's `HashMap` also reads LRU hashes.
macro_rules! handle {
    (Array, $k:ty, $v:ty) => { Array<MapData, $v> };
    (PerCpuArray, $k:ty, $v:ty) => { PerCpuArray<MapData, $v> };
    (HashMap, $k:ty, $v:ty) => { HashMap<MapData, $k, $v> };
    (LruHashMap, $k:ty, $v:ty) => { HashMap<MapData, $k, $v> };
    (LpmTrie, $k:ty, $v:ty) => { LpmTrie<MapData, $k, $v> };
    (DevMapHash, $k:ty, $v:ty) => { DevMapHash<MapData> };
}

/// `Maps` has one field per row of the pinned-map table (`lb_common::pinned_maps!`), named
/// by the row's field column (`vips`, `ring`, `flows`, ...) and typed by its kind, key and
/// value: a map added to the table gets its handle here without anyone keeping a list.
macro_rules! maps_struct {
    ($($(#[$doc:meta])* $name:ident ($short:ident, $field:ident): $kind:ident ($k:ty => $v:ty) [$cap:expr];)*) => {
        /// Typed handles on every pinned map.
        pub struct Maps {
            $($(#[$doc])* pub $field: handle!($kind, $k, $v),)*
        }

        impl Maps {
            fn build(mut get: impl FnMut(&str) -> Result<Map>) -> Result<Self> {
                Ok(Self { $($field: typed(get(n::$short)?, n::$short)?,)* })
            }
        }
    };
}

lb_common::pinned_maps!(maps_struct);

fn typed<T: TryFrom<Map, Error = MapError>>(map: Map, name: &str) -> Result<T> {
    map.try_into().with_context(|| format!("map {name} has an unexpected type"))
}

impl Maps {
    /// Take the maps out of a loaded program (the program keeps its own references).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Self::build(|name| ebpf.take_map(name).ok_or_else(|| anyhow!("the XDP object has no map {name}")))
    }

    /// Open the maps pinned under `dir`, once their layout is known to be this build's.
    pub fn open_pinned(dir: &Path) -> Result<Self> {
        if !dir.join(n::VIPS).exists() {
            return Err(NothingPinned(dir.to_path_buf()).into());
        }
        crate::layout::check_pinned_layout(dir, None)?;
        Self::build(|name| {
            let path = dir.join(name);
            let data =
                MapData::from_pin(&path).with_context(|| format!("cannot open pinned map {}", path.display()))?;
            Ok(Map::from_map_data(data)?)
        })
    }
}

impl Maps {
    /// The service slots in use, with their meta: `LB_SERVICE_META` read whole, in one
    /// batch (listings, scrapes and the status page read it each time).
    pub fn services_in_use(&self) -> Result<Vec<(u32, ServiceMeta)>> {
        let all = crate::batch::lookup(&self.service_meta, 0, self.service_meta.len())
            .with_context(|| format!("reading {}", n::SERVICE_META))?;
        Ok(in_use(all, |m| m.in_use != 0))
    }

    /// The backend slots in use, with their meta: `LB_BACKEND_META` read whole, in one batch.
    pub fn backends_in_use(&self) -> Result<Vec<(u32, BackendMeta)>> {
        let all = crate::batch::lookup(&self.backend_meta, 0, self.backend_meta.len())
            .with_context(|| format!("reading {}", n::BACKEND_META))?;
        Ok(in_use(all, |m| m.in_use != 0))
    }
}

fn in_use<M>(all: Vec<M>, used: impl Fn(&M) -> bool) -> Vec<(u32, M)> {
    (0u32..).zip(all).filter(|(_, m)| used(m)).collect()
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

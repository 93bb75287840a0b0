//! The seam between the writer and the maps it writes: the rows of the pinned maps the
//! reconciler owns (`LB_CONFIG`, `LB_VIPS`, `LB_VIP_ADDRS`, `LB_RING`, `LB_SEQ`, the per
//! service and per backend arrays), each read and written the way the kernel offers it:
//! one row at a time, tables in batches. The daemon's implementation is aya's `Maps`;
//! `testkit::model` holds the same rows in memory, so the writer's guarantees can be tested
//! without root.
//!
//! Errors name the map (`writing LB_VIPS: …`), as the reconcile reports them.
use std::io;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use aya::maps::lpm_trie::Key;
use aya::maps::{MapError, PerCpuValues};
use aya::util::nr_cpus;
use lb_common::abi::map_names as n;
use lb_common::addr::socket;
use lb_common::consts::{ring_entries, seq_entries, CONFIG_KEY, MAX_BACKENDS, MAX_SERVICES};
use lb_common::maps::{
    AclData, BackendInfo, BackendMeta, Counters, GlobalConfig, ServiceMeta, Trial, VipAddrKey, VipInfo, VipKey,
};
use lb_common::ratelimit::{Bucket, RateLimit};

use crate::adopt::Adopted;
use crate::inspect::service_name;
use crate::maps::Maps;

/// The two flat `u32` table arrays, indexed by `consts::ring_base` / `consts::seq_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// `LB_RING`: the Maglev tables.
    Ring,
    /// `LB_SEQ`: the sequence tables.
    Seq,
}

impl Table {
    pub fn map_name(self) -> &'static str {
        match self {
            Table::Ring => n::RING,
            Table::Seq => n::SEQ,
        }
    }
}

/// The rows of one service id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceRows {
    pub meta: ServiceMeta,
    pub rate_limit: RateLimit,
    pub trial: Trial,
}

/// One prefix of `LB_ACL`: the trie's prefix length and key data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AclEntry {
    pub prefix_len: u32,
    pub data: AclData,
}

/// The rows of one backend id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendRows {
    pub info: BackendInfo,
    pub meta: BackendMeta,
}

/// The reconciler's rows of the data path's maps. Array rows always exist (all zero until
/// written); hash map rows exist once put, and putting a new key into a full hash map
/// fails as the kernel's does (E2BIG). Deleting a key that is not there is no error.
pub trait MapStore {
    fn config(&self) -> Result<GlobalConfig>;
    fn set_config(&mut self, config: &GlobalConfig) -> Result<()>;

    fn vips(&self) -> Result<Vec<(VipKey, VipInfo)>>;
    fn put_vip(&mut self, key: &VipKey, info: &VipInfo) -> Result<()>;
    fn delete_vip(&mut self, key: &VipKey) -> Result<()>;

    /// `LB_ACL`: every prefix, with its verdict (`ACL_ALLOW`, `ACL_DENY`).
    fn acl(&self) -> Result<Vec<(AclEntry, u32)>>;
    fn put_acl(&mut self, key: &AclEntry, verdict: u32) -> Result<()>;
    fn delete_acl(&mut self, key: &AclEntry) -> Result<()>;

    fn vip_addrs(&self) -> Result<Vec<(VipAddrKey, u32)>>;
    fn put_vip_addr(&mut self, key: &VipAddrKey, flags: u32) -> Result<()>;
    fn delete_vip_addr(&mut self, key: &VipAddrKey) -> Result<()>;

    fn service(&self, id: u32) -> Result<ServiceRows>;
    fn trial(&self, id: u32) -> Result<Trial>;
    fn set_service_meta(&mut self, id: u32, meta: &ServiceMeta) -> Result<()>;
    fn set_rate_limit(&mut self, id: u32, limit: &RateLimit) -> Result<()>;
    fn set_trial(&mut self, id: u32, trial: &Trial) -> Result<()>;

    fn backend(&self, id: u32) -> Result<BackendRows>;
    fn set_backend_info(&mut self, id: u32, info: &BackendInfo) -> Result<()>;
    fn set_backend_meta(&mut self, id: u32, meta: &BackendMeta) -> Result<()>;

    /// Zero what the data path counts for service id `id` (traffic counters, the rate
    /// limit's bucket): the id has a new holder, which starts from nothing as on a fresh
    /// start. Counters are the data path's, not rows the writer owns: a rollback does not
    /// bring them back.
    fn clear_service_counters(&mut self, id: u32) -> Result<()>;
    /// Zero what the data path counts for backend id `id` (traffic counters, live flows).
    fn clear_backend_counters(&mut self, id: u32) -> Result<()>;

    /// Write `values[i]` at index `keys[i]` of `table`, in batches where the store can.
    fn write_slots(&mut self, table: Table, keys: &[u32], values: &[u32]) -> Result<()>;
    /// `count` entries of `table` from index `first` on.
    fn read_slots(&self, table: Table, first: u32, count: u32) -> Result<Vec<u32>>;
    /// Services the table arrays hold tables for (sized at load time from `max_services`,
    /// or as adopted): service ids run below it.
    fn ring_services(&self) -> u32;
}

/// Services `entries` of `table` hold both generations of a table for.
pub fn services_in(table: Table, entries: u32) -> u32 {
    let per_service = match table {
        Table::Ring => ring_entries(1),
        Table::Seq => seq_entries(1),
    };
    entries / per_service
}

/// What a previous writer installed, as `adopt::read_existing` reads it from the daemon's
/// maps, from any store: services whose VIP entry names them, and their backends.
pub fn read_installed(store: &impl MapStore) -> Result<Adopted> {
    let vips = store.vips()?;
    let mut a = Adopted::default();
    for id in 0..MAX_SERVICES {
        let meta = store.service(id)?.meta;
        if meta.in_use == 0 {
            continue;
        }
        if let Some((_, info)) = vips.iter().find(|(k, i)| *k == meta.vip && i.service_id == id) {
            a.services.push((id, service_name(&meta), meta.vip, info.ring_gen));
        }
    }
    for id in 0..MAX_BACKENDS {
        let b = store.backend(id)?;
        if b.meta.in_use == 0 {
            continue;
        }
        if let Some((_, name, _, _)) = a.services.iter().find(|s| s.0 == b.info.service_id) {
            let address: SocketAddr = socket(&b.info.addr, b.info.port, b.info.family);
            a.backends.push((id, name.clone(), address));
        }
    }
    Ok(a)
}

/// A delete of a key that is not there reached what it wanted.
fn absent_is_fine(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

/// Counters of zero on every possible CPU.
fn zero_per_cpu() -> Result<PerCpuValues<Counters>> {
    let cpus = nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    Ok(PerCpuValues::try_from(vec![Counters::default(); cpus])?)
}

fn reading(name: &str) -> String {
    format!("reading {name}")
}

fn writing(name: &str) -> String {
    format!("writing {name}")
}

impl MapStore for Maps {
    fn config(&self) -> Result<GlobalConfig> {
        self.config.get(&CONFIG_KEY, 0).with_context(|| reading(n::CONFIG))
    }

    fn set_config(&mut self, config: &GlobalConfig) -> Result<()> {
        self.config.set(CONFIG_KEY, config, 0).with_context(|| writing(n::CONFIG))
    }

    fn vips(&self) -> Result<Vec<(VipKey, VipInfo)>> {
        self.vips.iter().collect::<Result<_, _>>().with_context(|| reading(n::VIPS))
    }

    fn put_vip(&mut self, key: &VipKey, info: &VipInfo) -> Result<()> {
        self.vips.insert(key, info, 0).with_context(|| writing(n::VIPS))
    }

    fn delete_vip(&mut self, key: &VipKey) -> Result<()> {
        absent_is_fine(self.vips.remove(key)).with_context(|| format!("deleting from {}", n::VIPS))
    }

    fn acl(&self) -> Result<Vec<(AclEntry, u32)>> {
        let rows: Vec<(Key<AclData>, u32)> =
            self.acl.iter().collect::<Result<_, _>>().with_context(|| reading(n::ACL))?;
        Ok(rows.into_iter().map(|(k, v)| (AclEntry { prefix_len: k.prefix_len(), data: k.data() }, v)).collect())
    }

    fn put_acl(&mut self, key: &AclEntry, verdict: u32) -> Result<()> {
        self.acl.insert(&Key::new(key.prefix_len, key.data), verdict, 0).with_context(|| writing(n::ACL))
    }

    fn delete_acl(&mut self, key: &AclEntry) -> Result<()> {
        absent_is_fine(self.acl.remove(&Key::new(key.prefix_len, key.data)))
            .with_context(|| format!("deleting from {}", n::ACL))
    }

    fn vip_addrs(&self) -> Result<Vec<(VipAddrKey, u32)>> {
        self.vip_addrs.iter().collect::<Result<_, _>>().with_context(|| reading(n::VIP_ADDRS))
    }

    fn put_vip_addr(&mut self, key: &VipAddrKey, flags: u32) -> Result<()> {
        self.vip_addrs.insert(key, flags, 0).with_context(|| writing(n::VIP_ADDRS))
    }

    fn delete_vip_addr(&mut self, key: &VipAddrKey) -> Result<()> {
        absent_is_fine(self.vip_addrs.remove(key)).with_context(|| format!("deleting from {}", n::VIP_ADDRS))
    }

    fn service(&self, id: u32) -> Result<ServiceRows> {
        Ok(ServiceRows {
            meta: self.service_meta.get(&id, 0).with_context(|| reading(n::SERVICE_META))?,
            rate_limit: self.rate_limits.get(&id, 0).with_context(|| reading(n::RATE_LIMITS))?,
            trial: self.trials.get(&id, 0).with_context(|| reading(n::TRIALS))?,
        })
    }

    fn trial(&self, id: u32) -> Result<Trial> {
        self.trials.get(&id, 0).with_context(|| reading(n::TRIALS))
    }

    fn set_service_meta(&mut self, id: u32, meta: &ServiceMeta) -> Result<()> {
        self.service_meta.set(id, meta, 0).with_context(|| writing(n::SERVICE_META))
    }

    fn set_rate_limit(&mut self, id: u32, limit: &RateLimit) -> Result<()> {
        self.rate_limits.set(id, limit, 0).with_context(|| writing(n::RATE_LIMITS))
    }

    fn set_trial(&mut self, id: u32, trial: &Trial) -> Result<()> {
        self.trials.set(id, trial, 0).with_context(|| writing(n::TRIALS))
    }

    fn backend(&self, id: u32) -> Result<BackendRows> {
        Ok(BackendRows {
            info: self.backends.get(&id, 0).with_context(|| reading(n::BACKENDS))?,
            meta: self.backend_meta.get(&id, 0).with_context(|| reading(n::BACKEND_META))?,
        })
    }

    fn set_backend_info(&mut self, id: u32, info: &BackendInfo) -> Result<()> {
        self.backends.set(id, info, 0).with_context(|| writing(n::BACKENDS))
    }

    fn set_backend_meta(&mut self, id: u32, meta: &BackendMeta) -> Result<()> {
        self.backend_meta.set(id, meta, 0).with_context(|| writing(n::BACKEND_META))
    }

    fn clear_service_counters(&mut self, id: u32) -> Result<()> {
        self.service_stats.set(id, zero_per_cpu()?, 0).with_context(|| writing(n::SERVICE_STATS))?;
        self.service_buckets.set(id, Bucket::default(), 0).with_context(|| writing(n::SERVICE_BUCKETS))
    }

    fn clear_backend_counters(&mut self, id: u32) -> Result<()> {
        self.backend_stats.set(id, zero_per_cpu()?, 0).with_context(|| writing(n::BACKEND_STATS))?;
        self.active.set(id, 0, 0).with_context(|| writing(n::ACTIVE))
    }

    fn write_slots(&mut self, table: Table, keys: &[u32], values: &[u32]) -> Result<()> {
        let map = match table {
            Table::Ring => &mut self.ring,
            Table::Seq => &mut self.seq,
        };
        crate::batch::update(map, keys, values).with_context(|| writing(table.map_name()))
    }

    fn read_slots(&self, table: Table, first: u32, count: u32) -> Result<Vec<u32>> {
        let map = match table {
            Table::Ring => &self.ring,
            Table::Seq => &self.seq,
        };
        crate::batch::lookup(map, first, count).with_context(|| reading(table.map_name()))
    }

    fn ring_services(&self) -> u32 {
        services_in(Table::Ring, self.ring.len()).min(services_in(Table::Seq, self.seq.len()))
    }
}

/// The error a full kernel hash map gives for a new key (`E2BIG`, "Argument list too
/// long"), for stores that imitate it.
pub fn map_full() -> io::Error {
    io::Error::from_raw_os_error(libc::E2BIG)
}

//! The reconciler's maps in memory (`store::MapStore`), for host tests of the writer: the
//! same rows as the pinned maps, the same capacities (a new key in a full hash map fails
//! with E2BIG, as in the kernel), arrays all zero until written.
//!
//! It also watches every write for what the writer promises a packet, as the data path
//! would meet the maps at that instant, and records each breach in `violations`:
//! - a table generation is never written while a VIP entry reads it;
//! - a VIP entry is put only when its address is in `LB_VIP_ADDRS` and its tables name
//!   only backends already written for its service;
//! - an address is never deleted while a VIP entry on it remains;
//! - a key of `owned` (the target of the write under way) is never deleted;
//! - a backend id does not pass to another service (or get retired) while a VIP entry's
//!   live table names it for the old one;
//! - a service id's rows do not pass to another service (or get retired) while a VIP entry
//!   other than the new service's names the id.
//!
//! And it fails on request (`fail_at`), to test the rollback.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;

use anyhow::{bail, Result};
use lb_common::abi::map_names as n;
use lb_common::addr::{socket, vip_addr_key, words_ip};
use lb_common::consts::{
    DEFAULT_MAX_SERVICES, MAX_ACL_ENTRIES, MAX_BACKENDS, MAX_SERVICES, MAX_VIP_ADDRS, NO_BACKEND, RING_GENERATIONS,
    RING_SIZE, SEQ_SIZE,
};
use lb_common::maps::{BackendInfo, BackendMeta, GlobalConfig, ServiceMeta, Trial, VipAddrKey, VipInfo, VipKey};
use lb_common::ratelimit::RateLimit;

use crate::inspect::service_name;
use crate::store::{map_full, AclEntry, BackendRows, MapStore, ServiceRows, Table};

/// Keys the write under way must not delete: what its target owns.
#[derive(Clone, Debug, Default)]
pub struct Owned {
    pub vips: HashSet<VipKey>,
    pub addrs: HashSet<VipAddrKey>,
}

#[derive(Clone, Debug)]
pub struct ModelMaps {
    pub config: GlobalConfig,
    pub vips: HashMap<VipKey, VipInfo>,
    pub vip_addrs: HashMap<VipAddrKey, u32>,
    pub acl: HashMap<AclEntry, u32>,
    pub services: Vec<ServiceRows>,
    pub backends: Vec<BackendRows>,
    /// `LB_RING` / `LB_SEQ`, one vector per (service id, generation) once written.
    rings: HashMap<u32, Vec<u32>>,
    seqs: HashMap<u32, Vec<u32>>,
    /// Services the table arrays hold, as a load with `max_services` sizes them.
    pub ring_services: u32,
    /// Mutations tried so far (reads are not counted).
    pub writes: usize,
    /// Mutations (by their number in `writes`, from 0) that fail, once each.
    pub fail_at: BTreeSet<usize>,
    pub owned: Owned,
    pub violations: Vec<String>,
    /// Service and backend ids whose data-path counters are not zero (tests set them;
    /// `clear_*_counters` takes them out).
    pub counted_services: BTreeSet<u32>,
    pub counted_backends: BTreeSet<u32>,
}

impl Default for ModelMaps {
    fn default() -> Self {
        ModelMaps {
            config: GlobalConfig::default(),
            vips: HashMap::new(),
            vip_addrs: HashMap::new(),
            acl: HashMap::new(),
            services: vec![ServiceRows::default(); MAX_SERVICES as usize],
            backends: vec![BackendRows::default(); MAX_BACKENDS as usize],
            rings: HashMap::new(),
            seqs: HashMap::new(),
            ring_services: DEFAULT_MAX_SERVICES,
            writes: 0,
            fail_at: BTreeSet::new(),
            owned: Owned::default(),
            violations: Vec::new(),
            counted_services: BTreeSet::new(),
            counted_backends: BTreeSet::new(),
        }
    }
}

/// Which (service id, generation) an index of a table array belongs to, and its offset.
fn locate(table: Table, index: u32) -> (u32, u32) {
    (index / table_size(table), index % table_size(table))
}

/// Entries of one (service id, generation) table.
fn table_size(table: Table) -> u32 {
    match table {
        Table::Ring => RING_SIZE,
        Table::Seq => SEQ_SIZE,
    }
}

impl ModelMaps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count a mutation; the ones asked for fail.
    fn mutation(&mut self, what: &str) -> Result<()> {
        let n = self.writes;
        self.writes += 1;
        if self.fail_at.remove(&n) {
            // The write under way is given up: its rollback deletes what it had put.
            self.owned = Owned::default();
            bail!("{what}: {} (failure injected at write {n})", io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Ok(())
    }

    fn array_row(&self, id: u32, capacity: u32, name: &str) -> Result<usize> {
        if id >= capacity {
            bail!("{name}: index {id} is out of range (capacity {capacity})");
        }
        Ok(id as usize)
    }

    /// The table of (service id, generation), if it was ever written (else all zero).
    fn table(&self, table: Table, id: u32, gen: u32) -> Option<&[u32]> {
        let chunk = id * RING_GENERATIONS + (gen & 1);
        let tables = match table {
            Table::Ring => &self.rings,
            Table::Seq => &self.seqs,
        };
        tables.get(&chunk).map(Vec::as_slice)
    }

    /// Why a packet meeting `info` now could be sent astray, if it could.
    fn unready(&self, key: &VipKey, info: &VipInfo) -> Option<String> {
        let vip = socket(&key.addr, key.port, key.family);
        if !self.vip_addrs.contains_key(&vip_addr_key(words_ip(&key.addr, key.family))) {
            return Some(format!("VIP {vip} put before its address"));
        }
        let zeros = vec![0; RING_SIZE as usize];
        let ring = self.table(Table::Ring, info.service_id, info.ring_gen).unwrap_or(&zeros);
        let seq = self.table(Table::Seq, info.service_id, info.ring_gen).unwrap_or(&zeros[..SEQ_SIZE as usize]);
        let seq = &seq[..(info.seq_len.min(SEQ_SIZE) as usize)];
        let mut checked = vec![false; MAX_BACKENDS as usize];
        for &id in ring.iter().chain(seq).filter(|&&id| id != NO_BACKEND) {
            if checked.get(id as usize) == Some(&true) {
                continue;
            }
            if let Some(c) = checked.get_mut(id as usize) {
                *c = true;
            }
            let b = self.backends.get(id as usize);
            if b.is_none_or(|b| b.meta.in_use == 0 || b.info.service_id != info.service_id) {
                return Some(format!(
                    "VIP {vip} made live with a table naming backend id {id}, which is not written for service id {}",
                    info.service_id
                ));
            }
        }
        None
    }

    /// A VIP entry whose live table names backend `backend` for service id `service`.
    fn reads_backend(&self, service: u32, backend: u32) -> Option<VipKey> {
        self.vips
            .iter()
            .filter(|(_, i)| i.service_id == service)
            .map(|(k, i)| (*k, *i))
            .find(|(_, i)| {
                let ring = self.table(Table::Ring, service, i.ring_gen).unwrap_or(&[]);
                let seq = self.table(Table::Seq, service, i.ring_gen).unwrap_or(&[]);
                ring.contains(&backend) || seq[..(i.seq_len as usize).min(seq.len())].contains(&backend)
            })
            .map(|(k, _)| k)
    }

    fn read_by_a_vip(&self, id: u32, gen: u32) -> Option<VipKey> {
        self.vips.iter().find(|(_, i)| i.service_id == id && i.ring_gen & 1 == gen & 1).map(|(k, _)| *k)
    }
}

impl MapStore for ModelMaps {
    fn config(&self) -> Result<GlobalConfig> {
        Ok(self.config)
    }

    fn set_config(&mut self, config: &GlobalConfig) -> Result<()> {
        self.mutation(&format!("writing {}", n::CONFIG))?;
        self.config = *config;
        Ok(())
    }

    fn vips(&self) -> Result<Vec<(VipKey, VipInfo)>> {
        Ok(self.vips.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_vip(&mut self, key: &VipKey, info: &VipInfo) -> Result<()> {
        self.mutation(&format!("writing {}", n::VIPS))?;
        if !self.vips.contains_key(key) && self.vips.len() >= MAX_SERVICES as usize {
            bail!("writing {}: {}", n::VIPS, map_full());
        }
        if let Some(why) = self.unready(key, info) {
            self.violations.push(why);
        }
        self.vips.insert(*key, *info);
        Ok(())
    }

    fn delete_vip(&mut self, key: &VipKey) -> Result<()> {
        self.mutation(&format!("deleting from {}", n::VIPS))?;
        if self.owned.vips.contains(key) {
            let vip = socket(&key.addr, key.port, key.family);
            self.violations.push(format!("deleted the VIP entry {vip} (protocol {}) the target owns", key.proto));
        }
        self.vips.remove(key);
        Ok(())
    }

    fn acl(&self) -> Result<Vec<(AclEntry, u32)>> {
        Ok(self.acl.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_acl(&mut self, key: &AclEntry, verdict: u32) -> Result<()> {
        self.mutation(&format!("writing {}", n::ACL))?;
        if !self.acl.contains_key(key) && self.acl.len() >= MAX_ACL_ENTRIES as usize {
            bail!("writing {}: {}", n::ACL, map_full());
        }
        self.acl.insert(*key, verdict);
        Ok(())
    }

    fn delete_acl(&mut self, key: &AclEntry) -> Result<()> {
        self.mutation(&format!("deleting from {}", n::ACL))?;
        self.acl.remove(key);
        Ok(())
    }

    fn vip_addrs(&self) -> Result<Vec<(VipAddrKey, u32)>> {
        Ok(self.vip_addrs.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_vip_addr(&mut self, key: &VipAddrKey, flags: u32) -> Result<()> {
        self.mutation(&format!("writing {}", n::VIP_ADDRS))?;
        if !self.vip_addrs.contains_key(key) && self.vip_addrs.len() >= MAX_VIP_ADDRS as usize {
            bail!("writing {}: {}", n::VIP_ADDRS, map_full());
        }
        self.vip_addrs.insert(*key, flags);
        Ok(())
    }

    fn delete_vip_addr(&mut self, key: &VipAddrKey) -> Result<()> {
        self.mutation(&format!("deleting from {}", n::VIP_ADDRS))?;
        let ip = words_ip(&key.addr, key.family);
        if self.owned.addrs.contains(key) {
            self.violations.push(format!("deleted the VIP address {ip} the target owns"));
        }
        if self.vips.keys().any(|k| vip_addr_key(words_ip(&k.addr, k.family)) == *key) {
            self.violations.push(format!("deleted the VIP address {ip} while a VIP entry on it remains"));
        }
        self.vip_addrs.remove(key);
        Ok(())
    }

    fn service(&self, id: u32) -> Result<ServiceRows> {
        Ok(self.services[self.array_row(id, MAX_SERVICES, n::SERVICE_META)?])
    }

    fn trial(&self, id: u32) -> Result<Trial> {
        Ok(self.services[self.array_row(id, MAX_SERVICES, n::TRIALS)?].trial)
    }

    fn set_service_meta(&mut self, id: u32, meta: &ServiceMeta) -> Result<()> {
        self.mutation(&format!("writing {}", n::SERVICE_META))?;
        let i = self.array_row(id, MAX_SERVICES, n::SERVICE_META)?;
        let old = self.services[i].meta;
        if old.in_use != 0 && (old.name != meta.name || meta.in_use == 0) {
            let (was, now) = (service_name(&old), service_name(meta));
            let reader =
                self.vips.keys().find(|k| self.vips[*k].service_id == id && (meta.in_use == 0 || **k != meta.vip));
            if let Some(k) = reader {
                let vip = socket(&k.addr, k.port, k.family);
                self.violations.push(format!(
                    "service id {id} passed from {was} to {now:?} while VIP {vip} (protocol {}) names it",
                    k.proto
                ));
            }
        }
        self.services[i].meta = *meta;
        Ok(())
    }

    fn set_rate_limit(&mut self, id: u32, limit: &RateLimit) -> Result<()> {
        self.mutation(&format!("writing {}", n::RATE_LIMITS))?;
        let i = self.array_row(id, MAX_SERVICES, n::RATE_LIMITS)?;
        self.services[i].rate_limit = *limit;
        Ok(())
    }

    fn set_trial(&mut self, id: u32, trial: &Trial) -> Result<()> {
        self.mutation(&format!("writing {}", n::TRIALS))?;
        let i = self.array_row(id, MAX_SERVICES, n::TRIALS)?;
        self.services[i].trial = *trial;
        Ok(())
    }

    fn backend(&self, id: u32) -> Result<BackendRows> {
        Ok(self.backends[self.array_row(id, MAX_BACKENDS, n::BACKENDS)?])
    }

    fn set_backend_info(&mut self, id: u32, info: &BackendInfo) -> Result<()> {
        self.mutation(&format!("writing {}", n::BACKENDS))?;
        let i = self.array_row(id, MAX_BACKENDS, n::BACKENDS)?;
        let old = self.backends[i].info;
        if old.service_id != info.service_id || (*info == BackendInfo::default() && old != BackendInfo::default()) {
            if let Some(k) = self.reads_backend(old.service_id, id) {
                let vip = socket(&k.addr, k.port, k.family);
                self.violations.push(format!(
                    "backend id {id} passed from service id {} to {} while VIP {vip}'s table names it",
                    old.service_id, info.service_id
                ));
            }
        }
        self.backends[i].info = *info;
        Ok(())
    }

    fn set_backend_meta(&mut self, id: u32, meta: &BackendMeta) -> Result<()> {
        self.mutation(&format!("writing {}", n::BACKEND_META))?;
        let i = self.array_row(id, MAX_BACKENDS, n::BACKEND_META)?;
        self.backends[i].meta = *meta;
        Ok(())
    }

    fn clear_service_counters(&mut self, id: u32) -> Result<()> {
        self.mutation(&format!("writing {}", n::SERVICE_STATS))?;
        self.array_row(id, MAX_SERVICES, n::SERVICE_STATS)?;
        self.counted_services.remove(&id);
        Ok(())
    }

    fn clear_backend_counters(&mut self, id: u32) -> Result<()> {
        self.mutation(&format!("writing {}", n::BACKEND_STATS))?;
        self.array_row(id, MAX_BACKENDS, n::BACKEND_STATS)?;
        self.counted_backends.remove(&id);
        Ok(())
    }

    fn write_slots(&mut self, table: Table, keys: &[u32], values: &[u32]) -> Result<()> {
        self.mutation(&format!("writing {}", table.map_name()))?;
        let size = table_size(table);
        let total = size * RING_GENERATIONS * self.ring_services;
        if keys.len() != values.len() || keys.iter().any(|&k| k >= total) {
            bail!("writing {}: {}", table.map_name(), io::Error::from_raw_os_error(libc::EINVAL));
        }
        let chunks: BTreeSet<u32> = keys.iter().map(|&k| locate(table, k).0).collect();
        for chunk in chunks {
            let (id, gen) = (chunk / RING_GENERATIONS, chunk % RING_GENERATIONS);
            if let Some(k) = self.read_by_a_vip(id, gen) {
                let vip = socket(&k.addr, k.port, k.family);
                self.violations.push(format!(
                    "wrote {} of service id {id}, generation {gen}, while VIP {vip} reads it",
                    table.map_name()
                ));
            }
        }
        let tables = match table {
            Table::Ring => &mut self.rings,
            Table::Seq => &mut self.seqs,
        };
        let mut i = 0;
        while i < keys.len() {
            let chunk = keys[i] / size;
            let (first, end) = (chunk * size, (chunk + 1) * size);
            let t = tables.entry(chunk).or_insert_with(|| vec![0; size as usize]);
            while i < keys.len() && keys[i] >= first && keys[i] < end {
                t[(keys[i] - first) as usize] = values[i];
                i += 1;
            }
        }
        Ok(())
    }

    fn read_slots(&self, table: Table, first: u32, count: u32) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(count as usize);
        let end = first + count;
        let mut i = first;
        while i < end {
            let (chunk, offset) = locate(table, i);
            let n = (table_size(table) - offset).min(end - i);
            match self.table(table, chunk / RING_GENERATIONS, chunk % RING_GENERATIONS) {
                Some(t) => out.extend_from_slice(&t[offset as usize..(offset + n) as usize]),
                None => out.resize(out.len() + n as usize, 0),
            }
            i += n;
        }
        Ok(out)
    }

    fn ring_services(&self) -> u32 {
        self.ring_services
    }
}

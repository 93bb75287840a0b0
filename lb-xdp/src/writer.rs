//! The reconciler's writing half: puts a `Plan` into the maps. The plan is the complete
//! target state of every row the reconciler owns (`store::MapStore`); the writer compares
//! it with what the maps hold (its mirror of them) and writes the difference, as one
//! transaction:
//!
//! - **Every packet sees the old or the new state of a service, never a mix.** Backends are
//!   written first (a table may only name ids whose entries are in place); each service's
//!   tables go into a generation no VIP entry reads, then its service rows, then one VIP
//!   entry update makes them live (a hash map update replaces the value whole). Only then
//!   are removed services and backends retired, so their flows are re-steered by a data
//!   path that already has the new tables. Only changed rows and table slots are written;
//!   tables in batches.
//! - **Nothing the target owns is deleted.** Deletions are the keys the maps hold minus the
//!   keys of the target, computed over the whole state, never per service: a VIP that
//!   passes from one service to another (a rename, a swap) is updated in place.
//! - **No map needs more than its capacity at any moment.** When the old and the new
//!   VIPs (or VIP addresses) together exceed `LB_VIPS` (`LB_VIP_ADDRS`), the ones that go
//!   are deleted first, before any new key is put: they answer nothing after the write
//!   either way.
//! - **An id passes to a new holder only once nothing reads it through the old one.** Ids
//!   run short only when the old and the new state together exceed a cap; then the target
//!   gives ids the running state still uses to other services or backends (see `ids` for
//!   which go first). VIPs that go and read such an id are deleted first; a service that
//!   takes one over waits until every other VIP entry naming it has flipped to its own
//!   target, and the rows it takes over are written just before its own flip. Only ids
//!   passing between services in a circle, or maps another writer left inconsistent,
//!   leave no such order: then one service goes first, and until the others have
//!   flipped, a new flow of theirs may meet its rows.
//! - **It completes or it rolls back.** Each row's previous value is logged before it is
//!   written; on any failure the log is replayed backwards (every intermediate state is
//!   one the forward write went through, so no capacity is exceeded), the maps are read
//!   back into the mirror, and the error says that nothing changed. The tables of the old
//!   state are never written, so rolling back their VIP entries brings them back whole.
//!   Should the rollback fail too, the error says so, and the mirror re-read from the maps
//!   is again the truth the next write starts from.
//!
//! The mirror holds the rows (`LB_CONFIG`, `LB_VIPS`, `LB_VIP_ADDRS`, the per-service and
//! per-backend arrays) and what each table generation holds when known. A new writer
//! assumes a freshly loaded program (everything empty); `adopt` makes the first write
//! read a previous daemon's maps first.
use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, ensure, Context, Result};
use lb_common::consts::{
    ring_base, seq_base, MAX_BACKENDS, MAX_SERVICES, MAX_VIP_ADDRS, NO_BACKEND, RING_SIZE, SEQ_SIZE,
    VIP_ADDR_SHARED_WITH_HOST,
};
use lb_common::maps::{BackendInfo, BackendMeta, GlobalConfig, ServiceMeta, Trial, VipAddrKey, VipInfo, VipKey};
use lb_common::ratelimit::RateLimit;

use crate::adopt::Adopted;
use crate::inspect::service_name;
use crate::maps::Maps;
use crate::plan::{Plan, ServicePlan};
use crate::store::{AclEntry, BackendRows, MapStore, ServiceRows, Table};
use lb_common::addr::{socket, vip_addr_key, words_ip};

/// `LB_VIPS` holds one entry per service.
const VIPS_CAPACITY: usize = MAX_SERVICES as usize;
const VIP_ADDRS_CAPACITY: usize = MAX_VIP_ADDRS as usize;

#[derive(Clone)]
pub struct Writer<S: MapStore = Maps> {
    pub maps: S,
    mirror: Mirror,
    /// What each (table, service id, generation) holds, where known: a write only touches
    /// the slots that differ.
    tables: HashMap<(Table, u32, u32), Vec<u32>>,
    /// The mirror may not be what the maps hold (adopted maps, or a read back that failed):
    /// read them before the next write.
    stale: bool,
}

/// The rows the writer owns, as the maps hold them. Array rows that are all zero are
/// left out.
#[derive(Clone, Debug, Default, PartialEq)]
struct Mirror {
    config: GlobalConfig,
    vips: HashMap<VipKey, VipInfo>,
    addrs: HashMap<VipAddrKey, u32>,
    acl: HashMap<AclEntry, u32>,
    /// Service ids with a row that is not zero: (meta, rate limit). Trials are not
    /// mirrored: the data path disarms them, and every write arms them again.
    services: BTreeMap<u32, (ServiceMeta, RateLimit)>,
    backends: BTreeMap<u32, BackendRows>,
}

/// A row's value before the transaction wrote it.
enum Undo {
    Config(GlobalConfig),
    Vip(VipKey, Option<VipInfo>),
    Addr(VipAddrKey, Option<u32>),
    Acl(AclEntry, Option<u32>),
    ServiceMeta(u32, ServiceMeta),
    RateLimit(u32, RateLimit),
    Trial(u32, Trial),
    BackendInfo(u32, BackendInfo),
    BackendMeta(u32, BackendMeta),
}

impl<S: MapStore> Writer<S> {
    /// A writer for the maps of a freshly loaded program (every row empty).
    pub fn new(maps: S) -> Self {
        Self { maps, mirror: Mirror::default(), tables: HashMap::new(), stale: false }
    }

    /// Continue from a previous daemon's maps: the first apply reads every row back before
    /// it writes (every VIP entry there is, not only those `adopted` lists), keeps the live
    /// generations live until it has written the other one, and retires whatever the plan
    /// does not name.
    pub fn adopt(&mut self, _adopted: &Adopted) {
        self.tables.clear();
        self.stale = true;
    }

    /// Make the maps hold `plan`, or leave them as they were (see the module docs).
    pub fn apply(&mut self, plan: &Plan) -> Result<()> {
        let target =
            Target::new(plan, self.maps.ring_services()).context("the plan is inconsistent; nothing was written")?;
        if self.stale {
            self.reread().context("reading the maps back before writing; nothing was written")?;
        }
        let mut undo = Vec::new();
        match self.write(&target, &mut undo) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.roll_back(undo, e)),
        }
    }

    /// Compare the mirror with the maps: Ok when every row and every table generation the
    /// writer believes it knows is what the maps hold. For tests and checks; the writer
    /// itself never needs it.
    pub fn check_mirror(&self) -> Result<()> {
        let read = read_mirror(&self.maps)?;
        let m = &self.mirror;
        ensure!(read.config == m.config, "LB_CONFIG: the maps hold {:?}, the mirror {:?}", read.config, m.config);
        ensure!(read.vips == m.vips, "LB_VIPS: the maps hold {:?}, the mirror {:?}", read.vips, m.vips);
        ensure!(read.addrs == m.addrs, "LB_VIP_ADDRS: the maps hold {:?}, the mirror {:?}", read.addrs, m.addrs);
        ensure!(read.acl == m.acl, "LB_ACL: the maps hold {:?}, the mirror {:?}", read.acl, m.acl);
        for id in read.services.keys().chain(m.services.keys()) {
            let (a, b) = (read.services.get(id), m.services.get(id));
            ensure!(a == b, "service id {id}: the maps hold {a:?}, the mirror {b:?}");
        }
        for id in read.backends.keys().chain(m.backends.keys()) {
            let (a, b) = (read.backends.get(id), m.backends.get(id));
            ensure!(a == b, "backend id {id}: the maps hold {a:?}, the mirror {b:?}");
        }
        for ((table, id, gen), known) in &self.tables {
            let held = self.maps.read_slots(*table, table_base(*table, *id, *gen), known.len() as u32)?;
            ensure!(
                &held == known,
                "{} of service id {id}, generation {gen}: not what the mirror says",
                table.map_name()
            );
        }
        Ok(())
    }

    fn write(&mut self, t: &Target, undo: &mut Vec<Undo>) -> Result<()> {
        let plan = t.plan;
        let gone_vips: Vec<(VipKey, VipInfo)> =
            self.mirror.vips.iter().filter(|(k, _)| !t.vips.contains_key(*k)).map(|(k, i)| (*k, *i)).collect();
        let gone_addrs: Vec<VipAddrKey> =
            self.mirror.addrs.keys().filter(|k| !t.addrs.contains_key(*k)).copied().collect();
        // The generations the running state reads: never written by this transaction.
        let pinned: Vec<(u32, u32)> = self.mirror.vips.values().map(|i| (i.service_id, i.ring_gen & 1)).collect();

        // Ids that pass to another holder (only when the old and the new state together
        // exceed the capacity, see `ids`): a service id given to another name, a backend
        // id given to a backend of another service or of a service id that passes. Their
        // rows are written just before the new holder's flip, once no VIP entry reads them
        // through the old one.
        let moved: HashSet<u32> = plan.services.iter().map(|s| s.id).filter(|&id| self.id_moves(t, id)).collect();
        let handed: HashMap<u32, u32> = plan
            .backends
            .iter()
            .filter_map(|b| {
                let old = self.mirror.backends.get(&b.id)?.info.service_id;
                (old != b.info.service_id || moved.contains(&old)).then_some((b.id, old))
            })
            .collect();
        let vacated: HashSet<u32> = moved.iter().copied().chain(handed.values().copied()).collect();

        // Free before insert: VIPs that go, when the new ones would not fit beside them,
        // and those whose ids pass to another holder.
        let new_vips = t.vips.keys().filter(|k| !self.mirror.vips.contains_key(*k)).count();
        let new_addrs = t.addrs.keys().filter(|k| !self.mirror.addrs.contains_key(*k)).count();
        let crowded = self.mirror.vips.len() + new_vips > VIPS_CAPACITY
            || self.mirror.addrs.len() + new_addrs > VIP_ADDRS_CAPACITY;
        for (key, info) in &gone_vips {
            if crowded || vacated.contains(&info.service_id) {
                self.delete_vip(undo, key)?;
            }
        }
        if crowded {
            for key in &gone_addrs {
                self.delete_vip_addr(undo, key)?;
            }
        }

        if self.mirror.config != plan.global {
            self.set_config(undo, &plan.global)?;
        }
        // Backends before any table names them.
        for b in plan.backends.iter().filter(|b| !handed.contains_key(&b.id)) {
            self.set_backend(undo, b.id, &b.info, &b.meta)?;
        }
        // A VIP's address before its entry.
        for (key, flags) in &t.addrs {
            if self.mirror.addrs.get(key) != Some(flags) {
                self.put_vip_addr(undo, key, *flags)?;
            }
        }

        // Each service: tables into a generation no VIP entry reads, nor read when the
        // write began (a rollback makes those entries live again), rows, then the flip.
        let mut done: HashSet<VipKey> = HashSet::new();
        let mut pending: Vec<&ServicePlan> = plan.services.iter().collect();
        while !pending.is_empty() {
            let mut waiting = Vec::new();
            for s in &pending {
                let gen = self.generation_for(s, &pinned);
                match gen.filter(|_| self.vacated_for(s, t, &moved, &handed, &done)) {
                    Some(gen) => {
                        self.write_service(undo, s, gen, t, &handed)?;
                        done.insert(s.vip);
                    }
                    None => waiting.push(*s),
                }
            }
            if waiting.len() == pending.len() {
                // None can go without a VIP entry reading what it writes: entries of other
                // services read both generations of the first one's id (only maps another
                // writer left inconsistent look so), or ids pass between services in a
                // circle. Take the readers of the generation out (their services are retired,
                // or flip to their own ids below) and write the first one: its flows may meet
                // the other's rows until they flip too.
                let s = waiting.remove(0);
                if self.generation_for(s, &pinned).is_none() {
                    let readers: Vec<VipKey> = self
                        .mirror
                        .vips
                        .iter()
                        .filter(|(k, i)| **k != s.vip && i.service_id == s.id)
                        .map(|(k, _)| *k)
                        .collect();
                    for key in &readers {
                        self.delete_vip(undo, key)?;
                    }
                }
                let gen = self.generation_for(s, &[]).context("no table generation to write")?;
                self.write_service(undo, s, gen, t, &handed)?;
                done.insert(s.vip);
            }
            pending = waiting;
        }

        // Retire what the target does not name, now that the new tables are live.
        for (key, _) in &gone_vips {
            if self.mirror.vips.contains_key(key) {
                self.delete_vip(undo, key)?;
            }
        }
        for key in &gone_addrs {
            if self.mirror.addrs.contains_key(key) {
                self.delete_vip_addr(undo, key)?;
            }
        }
        let gone_services: Vec<u32> =
            self.mirror.services.keys().filter(|id| !t.services.contains_key(*id)).copied().collect();
        for id in gone_services {
            self.reset_service(undo, id)?;
        }
        let gone_backends: Vec<u32> =
            self.mirror.backends.keys().filter(|id| !t.backends.contains_key(*id)).copied().collect();
        for id in gone_backends {
            self.reset_backend(undo, id)?;
        }
        // Source prefixes no service keeps, now that no VIP entry reads them through theirs.
        let gone_acl: Vec<AclEntry> = self.mirror.acl.keys().filter(|k| !t.acl.contains_key(*k)).copied().collect();
        for key in &gone_acl {
            self.delete_acl(undo, key)?;
        }
        Ok(())
    }

    /// The target gives `id` to a service other than the one holding it now.
    fn id_moves(&self, t: &Target, id: u32) -> bool {
        let Some(&i) = t.services.get(&id) else { return false };
        self.mirror.services.get(&id).map(|(meta, _)| meta.name) != Some(t.plan.services[i].meta.name)
    }

    /// No VIP entry but `s`'s own reads the ids `s` takes over through their old holder:
    /// each entry naming such a service id is done (flipped to its own target) or gone.
    fn vacated_for(
        &self,
        s: &ServicePlan,
        t: &Target,
        moved: &HashSet<u32>,
        handed: &HashMap<u32, u32>,
        done: &HashSet<VipKey>,
    ) -> bool {
        let mut taken: HashSet<u32> = t.backends_of(s.id).filter_map(|b| handed.get(&b).copied()).collect();
        if moved.contains(&s.id) {
            taken.insert(s.id);
        }
        taken.is_empty()
            || self.mirror.vips.iter().all(|(k, i)| !taken.contains(&i.service_id) || *k == s.vip || done.contains(k))
    }

    /// The generation to make live for `s`: one that already holds its tables (read by
    /// other entries or not: nothing is written to it), else one no VIP entry reads and
    /// none of `pinned` names, known contents first (fewer slots to write). None while
    /// every generation is read.
    fn generation_for(&self, s: &ServicePlan, pinned: &[(u32, u32)]) -> Option<u32> {
        let holds = |gen: u32| {
            self.tables.get(&(Table::Ring, s.id, gen)) == Some(&s.table)
                && self.tables.get(&(Table::Seq, s.id, gen)) == Some(&s.sequence)
        };
        let own = self.mirror.vips.get(&s.vip).filter(|i| i.service_id == s.id).map(|i| i.ring_gen & 1);
        if let Some(gen) = own.into_iter().chain([0, 1]).find(|&g| holds(g)) {
            return Some(gen);
        }
        let read = |gen: u32| {
            pinned.contains(&(s.id, gen))
                || self.mirror.vips.values().any(|i| i.service_id == s.id && i.ring_gen & 1 == gen)
        };
        let free: Vec<u32> = [0, 1].into_iter().filter(|&g| !read(g)).collect();
        free.iter().copied().find(|&g| self.tables.contains_key(&(Table::Ring, s.id, g))).or(free.first().copied())
    }

    fn write_service(
        &mut self,
        undo: &mut Vec<Undo>,
        s: &ServicePlan,
        gen: u32,
        t: &Target,
        handed: &HashMap<u32, u32>,
    ) -> Result<()> {
        self.write_table(Table::Ring, s.id, gen, &s.table)?;
        self.write_table(Table::Seq, s.id, gen, &s.sequence)?;
        let (meta, limit) = self.mirror.services.get(&s.id).copied().unwrap_or_default();
        if meta.in_use == 0 || meta.vip != s.meta.vip {
            // A new holder of the id (ids go by VIP): it counts from zero, as on a fresh start.
            self.maps.clear_service_counters(s.id)?;
        }
        if meta != s.meta {
            self.set_service_meta(undo, s.id, &s.meta)?;
        }
        if limit != s.rate_limit {
            self.set_rate_limit(undo, s.id, &s.rate_limit)?;
        }
        // Its source prefixes before the flip that makes the VIP entry look them up. A changed
        // list is briefly the union of the old and the new: the old one's extra prefixes go
        // once every service has flipped.
        for (key, verdict) in &s.acl {
            if self.mirror.acl.get(key) != Some(verdict) {
                self.put_acl(undo, key, *verdict)?;
            }
        }
        // Always: the data path disarms a trial when a flow takes it; each write re-arms.
        self.set_trial(undo, s.id, &s.trial)?;
        // Backend ids taken over from another holder, now that no entry reads them so.
        for id in t.backends_of(s.id).filter(|b| handed.contains_key(b)) {
            let b = &t.plan.backends[t.backends[&id]];
            self.set_backend(undo, id, &b.info, &b.meta)?;
        }
        // The flip.
        let info = VipInfo { ring_gen: gen, ..s.info };
        if self.mirror.vips.get(&s.vip) != Some(&info) {
            self.put_vip(undo, &s.vip, &info)?;
        }
        Ok(())
    }

    fn set_backend(&mut self, undo: &mut Vec<Undo>, id: u32, info: &BackendInfo, meta: &BackendMeta) -> Result<()> {
        let have = self.mirror.backends.get(&id).copied().unwrap_or_default();
        let holder = |i: &BackendInfo| (i.service_id, i.addr, i.port, i.family);
        if have.meta.in_use == 0 || holder(&have.info) != holder(info) {
            // A new holder of the id: its traffic and live flows start from zero.
            self.maps.clear_backend_counters(id)?;
        }
        if have.info != *info {
            self.set_backend_info(undo, id, info)?;
        }
        if have.meta != *meta {
            self.set_backend_meta(undo, id, meta)?;
        }
        Ok(())
    }

    /// Write `values` into one generation's table, only the slots that differ from what it
    /// is known to hold (all of them when that is unknown), in batches.
    fn write_table(&mut self, table: Table, id: u32, gen: u32, values: &[u32]) -> Result<()> {
        if self.tables.get(&(table, id, gen)).map(Vec::as_slice) == Some(values) {
            return Ok(());
        }
        // Unknown from here until the write has completed.
        let held = self.tables.remove(&(table, id, gen));
        let base = table_base(table, id, gen);
        let (keys, slots) = match held {
            None => ((base..base + values.len() as u32).collect(), values.to_vec()),
            Some(held) => {
                let (mut keys, mut slots) = (Vec::new(), Vec::new());
                for (slot, &v) in values.iter().enumerate() {
                    if held.get(slot) != Some(&v) {
                        keys.push(base + slot as u32);
                        slots.push(v);
                    }
                }
                (keys, slots)
            }
        };
        self.maps.write_slots(table, &keys, &slots)?;
        self.tables.insert((table, id, gen), values.to_vec());
        Ok(())
    }

    fn reset_service(&mut self, undo: &mut Vec<Undo>, id: u32) -> Result<()> {
        self.set_service_meta(undo, id, &ServiceMeta::default())?;
        self.set_rate_limit(undo, id, &RateLimit::default())?;
        self.set_trial(undo, id, &Trial::default())
    }

    fn reset_backend(&mut self, undo: &mut Vec<Undo>, id: u32) -> Result<()> {
        self.set_backend_info(undo, id, &BackendInfo::default())?;
        self.set_backend_meta(undo, id, &BackendMeta::default())
    }

    // Row writes: each logs the row's previous value once the store has taken the new
    // one, and keeps the mirror in step.

    fn set_config(&mut self, undo: &mut Vec<Undo>, config: &GlobalConfig) -> Result<()> {
        self.maps.set_config(config)?;
        undo.push(Undo::Config(std::mem::replace(&mut self.mirror.config, *config)));
        Ok(())
    }

    fn put_vip(&mut self, undo: &mut Vec<Undo>, key: &VipKey, info: &VipInfo) -> Result<()> {
        self.maps.put_vip(key, info)?;
        undo.push(Undo::Vip(*key, self.mirror.vips.insert(*key, *info)));
        Ok(())
    }

    fn delete_vip(&mut self, undo: &mut Vec<Undo>, key: &VipKey) -> Result<()> {
        self.maps.delete_vip(key)?;
        undo.push(Undo::Vip(*key, self.mirror.vips.remove(key)));
        Ok(())
    }

    fn put_vip_addr(&mut self, undo: &mut Vec<Undo>, key: &VipAddrKey, flags: u32) -> Result<()> {
        self.maps.put_vip_addr(key, flags)?;
        undo.push(Undo::Addr(*key, self.mirror.addrs.insert(*key, flags)));
        Ok(())
    }

    fn delete_vip_addr(&mut self, undo: &mut Vec<Undo>, key: &VipAddrKey) -> Result<()> {
        self.maps.delete_vip_addr(key)?;
        undo.push(Undo::Addr(*key, self.mirror.addrs.remove(key)));
        Ok(())
    }

    fn put_acl(&mut self, undo: &mut Vec<Undo>, key: &AclEntry, verdict: u32) -> Result<()> {
        self.maps.put_acl(key, verdict)?;
        undo.push(Undo::Acl(*key, self.mirror.acl.insert(*key, verdict)));
        Ok(())
    }

    fn delete_acl(&mut self, undo: &mut Vec<Undo>, key: &AclEntry) -> Result<()> {
        self.maps.delete_acl(key)?;
        undo.push(Undo::Acl(*key, self.mirror.acl.remove(key)));
        Ok(())
    }

    fn set_service_meta(&mut self, undo: &mut Vec<Undo>, id: u32, meta: &ServiceMeta) -> Result<()> {
        self.maps.set_service_meta(id, meta)?;
        let (before, limit) = self.mirror.services.get(&id).copied().unwrap_or_default();
        undo.push(Undo::ServiceMeta(id, before));
        self.mirror_service(id, *meta, limit);
        Ok(())
    }

    fn set_rate_limit(&mut self, undo: &mut Vec<Undo>, id: u32, limit: &RateLimit) -> Result<()> {
        self.maps.set_rate_limit(id, limit)?;
        let (meta, before) = self.mirror.services.get(&id).copied().unwrap_or_default();
        undo.push(Undo::RateLimit(id, before));
        self.mirror_service(id, meta, *limit);
        Ok(())
    }

    /// Trials are the data path's to change too, so their previous value is read.
    fn set_trial(&mut self, undo: &mut Vec<Undo>, id: u32, trial: &Trial) -> Result<()> {
        let before = self.maps.trial(id)?;
        self.maps.set_trial(id, trial)?;
        undo.push(Undo::Trial(id, before));
        Ok(())
    }

    fn set_backend_info(&mut self, undo: &mut Vec<Undo>, id: u32, info: &BackendInfo) -> Result<()> {
        self.maps.set_backend_info(id, info)?;
        let mut rows = self.mirror.backends.get(&id).copied().unwrap_or_default();
        undo.push(Undo::BackendInfo(id, std::mem::replace(&mut rows.info, *info)));
        self.mirror_backend(id, rows);
        Ok(())
    }

    fn set_backend_meta(&mut self, undo: &mut Vec<Undo>, id: u32, meta: &BackendMeta) -> Result<()> {
        self.maps.set_backend_meta(id, meta)?;
        let mut rows = self.mirror.backends.get(&id).copied().unwrap_or_default();
        undo.push(Undo::BackendMeta(id, std::mem::replace(&mut rows.meta, *meta)));
        self.mirror_backend(id, rows);
        Ok(())
    }

    fn mirror_service(&mut self, id: u32, meta: ServiceMeta, limit: RateLimit) {
        if meta == ServiceMeta::default() && limit == RateLimit::default() {
            self.mirror.services.remove(&id);
        } else {
            self.mirror.services.insert(id, (meta, limit));
        }
    }

    fn mirror_backend(&mut self, id: u32, rows: BackendRows) {
        if rows == BackendRows::default() {
            self.mirror.backends.remove(&id);
        } else {
            self.mirror.backends.insert(id, rows);
        }
    }

    /// Undo the transaction backwards, then read the maps back: the mirror is the truth
    /// again whatever the rollback managed.
    fn roll_back(&mut self, undo: Vec<Undo>, cause: anyhow::Error) -> anyhow::Error {
        // Stop at the first revert that fails: the maps stay in a state the forward write
        // went through, which packets may meet; skipping one could make a state they may not.
        let mut failed = None;
        for u in undo.into_iter().rev() {
            if let Err(e) = self.revert(u) {
                failed = Some(e);
                break;
            }
        }
        let reread = self.reread();
        if reread.is_err() {
            self.stale = true;
        }
        match (failed, reread) {
            (None, Ok(())) => {
                cause.context("the data path is unchanged: writing the new tables failed and was rolled back")
            }
            (None, Err(e)) => cause.context(format!(
                "the data path is unchanged: writing the new tables failed and was rolled back \
                 (reading the maps back failed: {e:#}; they are read again before the next write)"
            )),
            (Some(e), _) => cause.context(format!(
                "writing the new tables failed and so did rolling them back ({e:#}): the data path is partly \
                 changed; the next reconcile writes it whole"
            )),
        }
    }

    fn revert(&mut self, undo: Undo) -> Result<()> {
        match undo {
            Undo::Config(c) => self.maps.set_config(&c),
            Undo::Vip(key, Some(info)) => self.maps.put_vip(&key, &info),
            Undo::Vip(key, None) => self.maps.delete_vip(&key),
            Undo::Addr(key, Some(flags)) => self.maps.put_vip_addr(&key, flags),
            Undo::Addr(key, None) => self.maps.delete_vip_addr(&key),
            Undo::Acl(key, Some(verdict)) => self.maps.put_acl(&key, verdict),
            Undo::Acl(key, None) => self.maps.delete_acl(&key),
            Undo::ServiceMeta(id, meta) => self.maps.set_service_meta(id, &meta),
            Undo::RateLimit(id, limit) => self.maps.set_rate_limit(id, &limit),
            Undo::Trial(id, trial) => self.maps.set_trial(id, &trial),
            Undo::BackendInfo(id, info) => self.maps.set_backend_info(id, &info),
            Undo::BackendMeta(id, meta) => self.maps.set_backend_meta(id, &meta),
        }
    }

    fn reread(&mut self) -> Result<()> {
        self.mirror = read_mirror(&self.maps)?;
        self.stale = false;
        Ok(())
    }
}

fn table_base(table: Table, id: u32, gen: u32) -> u32 {
    match table {
        Table::Ring => ring_base(id, gen),
        Table::Seq => seq_base(id, gen),
    }
}

/// Every row the writer owns, as `store` holds it.
fn read_mirror(store: &impl MapStore) -> Result<Mirror> {
    let mut m = Mirror {
        config: store.config()?,
        vips: store.vips()?.into_iter().collect(),
        addrs: store.vip_addrs()?.into_iter().collect(),
        acl: store.acl()?.into_iter().collect(),
        ..Default::default()
    };
    for id in 0..MAX_SERVICES {
        let rows = store.service(id)?;
        if rows != ServiceRows::default() {
            m.services.insert(id, (rows.meta, rows.rate_limit));
        }
    }
    for id in 0..MAX_BACKENDS {
        let rows = store.backend(id)?;
        if rows != BackendRows::default() {
            m.backends.insert(id, rows);
        }
    }
    Ok(m)
}

/// The plan indexed by key, checked for what the write relies on: ids in range and unique,
/// one service per VIP, whole tables that name only the service's own backends.
struct Target<'p> {
    plan: &'p Plan,
    vips: HashMap<VipKey, usize>,
    addrs: HashMap<VipAddrKey, u32>,
    acl: HashMap<AclEntry, u32>,
    services: HashMap<u32, usize>,
    backends: HashMap<u32, usize>,
    /// Backend ids by service id.
    members: HashMap<u32, Vec<u32>>,
}

impl<'p> Target<'p> {
    fn backends_of(&self, service: u32) -> impl Iterator<Item = u32> + '_ {
        self.members.get(&service).into_iter().flatten().copied()
    }

    /// `ring_services`: the services the table arrays hold (`MapStore::ring_services`).
    fn new(plan: &'p Plan, ring_services: u32) -> Result<Self> {
        ensure!(
            plan.services.len() <= VIPS_CAPACITY,
            "{} services: the data path holds at most {VIPS_CAPACITY}",
            plan.services.len()
        );
        let mut t = Target {
            plan,
            vips: HashMap::new(),
            addrs: HashMap::new(),
            acl: HashMap::new(),
            services: HashMap::new(),
            backends: HashMap::new(),
            members: HashMap::new(),
        };
        // The service id of each backend id, for the table checks.
        let mut owner = vec![u32::MAX; MAX_BACKENDS as usize];
        for (i, b) in plan.backends.iter().enumerate() {
            ensure!(b.id < MAX_BACKENDS, "backend {}: id {} is out of range", b.address, b.id);
            ensure!(t.backends.insert(b.id, i).is_none(), "backend id {} is given twice", b.id);
            owner[b.id as usize] = b.info.service_id;
            t.members.entry(b.info.service_id).or_default().push(b.id);
        }
        for (i, s) in plan.services.iter().enumerate() {
            let name = service_name(&s.meta);
            ensure!(
                s.id < ring_services.min(MAX_SERVICES),
                "service {name}: id {} is out of range (the table arrays hold {ring_services} services)",
                s.id
            );
            ensure!(s.info.service_id == s.id, "service {name}: its VIP entry names service id {}", s.info.service_id);
            ensure!(t.services.insert(s.id, i).is_none(), "service id {} is given twice", s.id);
            let vip = socket(&s.vip.addr, s.vip.port, s.vip.family);
            ensure!(t.vips.insert(s.vip, i).is_none(), "VIP {vip} (protocol {}) is given twice", s.vip.proto);
            ensure!(s.table.len() == RING_SIZE as usize, "service {name}: its table has {} slots", s.table.len());
            ensure!(
                s.sequence.len() <= SEQ_SIZE as usize && s.info.seq_len as usize == s.sequence.len(),
                "service {name}: a sequence of {} entries, {} in its VIP entry",
                s.sequence.len(),
                s.info.seq_len
            );
            let foreign = |id: u32| id != NO_BACKEND && owner.get(id as usize) != Some(&s.id);
            for table in [&s.table, &s.sequence] {
                if let Some(id) = table.iter().copied().find(|&id| foreign(id)) {
                    bail!("service {name}: its tables name backend id {id}, not one of its backends");
                }
            }
            ensure!(s.trial.armed == 0 || !foreign(s.trial.backend_id), "service {name}: its trial is not its own");
            for (key, verdict) in &s.acl {
                ensure!(key.data.service_id_be == s.id.to_be(), "service {name}: a source prefix of another id");
                ensure!(t.acl.insert(*key, *verdict).is_none(), "service {name}: a source prefix given twice");
            }
            let flags = if s.shared_with_host { VIP_ADDR_SHARED_WITH_HOST } else { 0 };
            *t.addrs.entry(vip_addr_key(words_ip(&s.vip.addr, s.vip.family))).or_insert(0) |= flags;
        }
        ensure!(t.addrs.len() <= VIP_ADDRS_CAPACITY, "{} VIP addresses: at most {VIP_ADDRS_CAPACITY}", t.addrs.len());
        if let Some(b) = plan.backends.iter().find(|b| !t.services.contains_key(&b.info.service_id)) {
            bail!("backend {} names service id {}, which the plan does not have", b.address, b.info.service_id);
        }
        Ok(t)
    }
}

//! The reconciler's writing half: puts a `Plan` into the maps so that every packet sees
//! either the old or the new state of a service, never a mix:
//! 1. backends first (a table may only name ids whose entries are in place);
//! 2. each service's table into its shadow generation, then one VIP entry update flips it
//!    (hash map updates replace the value whole);
//! 3. only then are removed services and backends retired, so their flows are re-steered
//!    by a data path that already has the new tables.
//!
//! Writing a table only touches the slots that differ from what that generation held.
use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use lb_common::consts::{ring_base, seq_base, CONFIG_KEY, VIP_ADDR_SHARED_WITH_HOST};
use lb_common::maps::{BackendInfo, BackendMeta, ServiceMeta, VipAddrKey, VipInfo, VipKey};

use super::maps::Maps;
use super::plan::{Plan, ServicePlan};
use lb_common::addr::vip_addr_key;

#[derive(Default)]
struct Rings {
    live: u32,
    /// What each generation holds: (Maglev table, sequence table).
    held: [Option<(Vec<u32>, Vec<u32>)>; 2],
    /// Live generation taken over from a previous daemon, contents unknown to us.
    adopted: bool,
}

pub struct Writer {
    pub maps: Maps,
    rings: HashMap<u32, Rings>,
    vips: HashMap<u32, VipKey>,
    addrs: HashSet<VipAddrKey>,
    backends: HashSet<u32>,
}

impl Writer {
    pub fn new(maps: Maps) -> Self {
        Self { maps, rings: HashMap::new(), vips: HashMap::new(), addrs: HashSet::new(), backends: HashSet::new() }
    }

    /// Continue from a previous daemon's maps: its live generations stay live until the
    /// first apply writes the other one and flips, and what it installed is retired like
    /// anything else the plan no longer names.
    pub fn adopt(&mut self, adopted: &super::adopt::Adopted) {
        for (id, _, vip, gen) in &adopted.services {
            self.rings.insert(*id, Rings { live: *gen & 1, held: [None, None], adopted: true });
            self.vips.insert(*id, *vip);
            self.addrs.insert(lb_common::addr::vip_addr_key(lb_common::addr::words_ip(&vip.addr, vip.family)));
        }
        self.backends.extend(adopted.backends.iter().map(|b| b.0));
    }

    pub fn apply(&mut self, plan: &Plan) -> Result<()> {
        self.maps.config.set(CONFIG_KEY, plan.global, 0).context("writing LB_CONFIG")?;
        for b in &plan.backends {
            self.maps.backends.set(b.id, b.info, 0).context("writing LB_BACKENDS")?;
            self.maps.backend_meta.set(b.id, b.meta, 0).context("writing LB_BACKEND_META")?;
        }
        let mut addrs = HashMap::new();
        for s in &plan.services {
            let flags = if s.shared_with_host { VIP_ADDR_SHARED_WITH_HOST } else { 0 };
            let key = vip_addr_key(lb_common::addr::words_ip(&s.vip.addr, s.vip.family));
            *addrs.entry(key).or_insert(0) |= flags;
        }
        for (key, flags) in &addrs {
            self.maps.vip_addrs.insert(key, flags, 0).context("writing LB_VIP_ADDRS")?;
        }
        for s in &plan.services {
            self.apply_service(s)?;
        }
        self.retire(plan, &addrs)
    }

    fn apply_service(&mut self, s: &ServicePlan) -> Result<()> {
        let rings = self.rings.entry(s.id).or_default();
        // A service seen for the first time has no live table: write generation 0. Otherwise
        // (including one adopted from a previous daemon) write the generation not in use.
        let fresh = rings.held.iter().all(Option::is_none) && !rings.adopted;
        let wanted = (s.table.clone(), s.sequence.clone());
        if fresh || rings.held[rings.live as usize].as_ref() != Some(&wanted) {
            let shadow = if fresh { 0 } else { 1 - rings.live };
            rings.adopted = false;
            let held = rings.held[shadow as usize].as_ref();
            write_slots(
                &mut self.maps.ring,
                ring_base(s.id, shadow),
                held.map(|h| h.0.as_slice()),
                &s.table,
                "LB_RING",
            )?;
            write_slots(
                &mut self.maps.seq,
                seq_base(s.id, shadow),
                held.map(|h| h.1.as_slice()),
                &s.sequence,
                "LB_SEQ",
            )?;
            rings.held[shadow as usize] = Some(wanted);
            rings.live = shadow;
        }
        // The flip: one VIP entry update makes the new table live.
        let info = VipInfo { ring_gen: rings.live, ..s.info };
        self.maps.vips.insert(s.vip, info, 0).context("writing LB_VIPS")?;
        if let Some(old) = self.vips.insert(s.id, s.vip) {
            if old != s.vip {
                let _ = self.maps.vips.remove(&old);
            }
        }
        self.maps.service_meta.set(s.id, s.meta, 0).context("writing LB_SERVICE_META")?;
        self.maps.rate_limits.set(s.id, s.rate_limit, 0).context("writing LB_RATE_LIMITS")?;
        self.maps.trials.set(s.id, s.trial, 0).context("writing LB_TRIALS")?;
        Ok(())
    }

    fn retire(&mut self, plan: &Plan, addrs: &HashMap<VipAddrKey, u32>) -> Result<()> {
        let live_services: HashSet<u32> = plan.services.iter().map(|s| s.id).collect();
        let gone: Vec<u32> = self.vips.keys().copied().filter(|id| !live_services.contains(id)).collect();
        for id in gone {
            if let Some(key) = self.vips.remove(&id) {
                let _ = self.maps.vips.remove(&key);
            }
            self.rings.remove(&id);
            self.maps.service_meta.set(id, ServiceMeta::default(), 0)?;
            self.maps.rate_limits.set(id, lb_common::ratelimit::RateLimit::default(), 0)?;
            self.maps.trials.set(id, lb_common::maps::Trial::default(), 0)?;
        }
        for key in self.addrs.iter().filter(|k| !addrs.contains_key(k)) {
            let _ = self.maps.vip_addrs.remove(key);
        }
        self.addrs = addrs.keys().copied().collect();
        let live_backends: HashSet<u32> = plan.backends.iter().map(|b| b.id).collect();
        for id in self.backends.iter().filter(|id| !live_backends.contains(id)) {
            self.maps.backends.set(*id, BackendInfo::default(), 0)?;
            self.maps.backend_meta.set(*id, BackendMeta::default(), 0)?;
        }
        self.backends = live_backends;
        Ok(())
    }
}

/// Write `table` at `base`, skipping the slots that already hold the same value, in batches.
fn write_slots(
    map: &mut aya::maps::Array<aya::maps::MapData, u32>,
    base: u32,
    held: Option<&[u32]>,
    table: &[u32],
    name: &str,
) -> Result<()> {
    let (keys, values): (Vec<u32>, Vec<u32>) = table
        .iter()
        .enumerate()
        .filter(|&(slot, id)| held.is_none_or(|h| h.get(slot) != Some(id)))
        .map(|(slot, &id)| (base + slot as u32, id))
        .unzip();
    super::batch::update(map, &keys, &values).with_context(|| format!("writing {name}"))
}

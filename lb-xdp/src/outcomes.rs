//! Passive outcomes per backend (`LB_OUTCOMES`) as deltas for the circuit breakers. Backend
//! ids are reused, so the totals are tracked per id together with who owns it.
use std::collections::{HashMap, HashSet};

use anyhow::Result;
use lb_config::desired::BackendKey;
use lb_control::datapath::Outcome;

use crate::maps::Maps;
use crate::plan::BackendPlan;

#[derive(Default)]
pub struct OutcomeWatch {
    /// Every backend id of the last reconcile.
    watched: Vec<(u32, BackendKey)>,
    /// `LB_OUTCOMES` totals as last read, per backend id.
    totals: HashMap<u32, (u64, u64)>,
}

impl OutcomeWatch {
    /// Track the backend ids of a new plan. An id given to another backend starts from the
    /// counters as they are, so the old owner's outcomes are not blamed on the new one.
    pub fn track(&mut self, maps: &Maps, backends: &[BackendPlan]) {
        let before: HashMap<u32, BackendKey> = self.watched.drain(..).collect();
        for b in backends {
            let key = BackendKey::new(b.service.clone(), b.address);
            if before.get(&b.id) != Some(&key) {
                let totals = read(maps, b.id).unwrap_or_default();
                self.totals.insert(b.id, totals);
            }
            self.watched.push((b.id, key));
        }
        let live: HashSet<u32> = self.watched.iter().map(|w| w.0).collect();
        self.totals.retain(|id, _| live.contains(id));
    }

    /// Passive outcomes since the last call, per backend: (answered, failed) new flows.
    pub fn deltas(&mut self, maps: &Maps) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (id, key) in &self.watched {
            let Ok(now) = read(maps, *id) else { continue };
            let last = self.totals.insert(*id, now).unwrap_or(now);
            let delta = (now.0.saturating_sub(last.0), now.1.saturating_sub(last.1));
            if delta != (0, 0) {
                out.push(Outcome { backend: key.clone(), succeeded: delta.0, failed: delta.1 });
            }
        }
        out
    }
}

/// (answered, failed) new flows of a backend id, summed over CPUs.
fn read(maps: &Maps, id: u32) -> Result<(u64, u64)> {
    let values = maps.outcomes.get(&id, 0)?;
    Ok(values.iter().fold((0, 0), |(a, f), o| (a + o.answered, f + o.failed)))
}

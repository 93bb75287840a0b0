//! What the API shows of services and backends (`GET /v1/services`, `lb list` in proxy
//! mode).
use std::time::Instant;

use super::Controller;
use crate::registry::BackendKey;
use crate::view::{BackendView, CheckView, ServiceView};
use lb_config::desired::source_names;

impl Controller {
    pub(super) fn views(&self) -> Vec<ServiceView> {
        let now = Instant::now();
        self.desired
            .services
            .iter()
            .map(|s| ServiceView {
                name: s.name.clone(),
                vip: s.vip.to_string(),
                protocol: s.protocol.to_string(),
                algorithm: s.algorithm.to_string(),
                forwarding: s.forwarding.to_string(),
                announced: self.announced(s.vip.ip()),
                backends: s
                    .backends
                    .iter()
                    .map(|b| {
                        let key = BackendKey::new(s.name.clone(), b.address);
                        BackendView {
                            address: b.address.to_string(),
                            weight: b.weight,
                            api_weight: self.registry.weights.get(&key).copied(),
                            slow_start_percent: b.ramp,
                            state: b.state.to_string(),
                            health: b.health.as_str().to_string(),
                            last_check: self.last_checks.get(&key).map(|c| CheckView {
                                ok: c.ok,
                                detail: c.detail.clone(),
                                duration_seconds: c.duration.as_secs_f64(),
                                age_seconds: now.saturating_duration_since(c.finished).as_secs_f64(),
                            }),
                            sources: source_names(b.sources).iter().map(|s| s.to_string()).collect(),
                            // With a shared store the lease is etcd's: this node does
                            // not know when it runs out.
                            lease_expires_in_seconds: self
                                .registry
                                .registrations
                                .get(&key)
                                .filter(|_| !self.store_backed)
                                .map(|r| r.expires_at.saturating_duration_since(now).as_secs_f64()),
                            proxy: self.dataplane.backend_counters(&s.name, b.address),
                            circuit: b.circuit.as_str().to_string(),
                            ejections_total: self.breakers.get(&key).map_or(0, |br| br.ejections_total),
                            agent: self.registry.agent.get(&key).cloned(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

//! Active health checks: one checker task per backend, and their reports.
use std::collections::HashMap;

use tracing::info;

use super::Controller;
use crate::breaker::{Breaker, Change};
use crate::health::{self, Report};
use crate::registry::BackendKey;
use lb_config::desired::Health;
use lb_config::{HealthCheck, HealthCheckType};

impl Controller {
    pub(super) fn health_report(&mut self, r: Report) {
        let key = BackendKey::new(r.service, r.address);
        let Some((check, _)) = self.checkers.get(&key) else { return };
        let (healthy, unhealthy) = (check.healthy_threshold, check.unhealthy_threshold);
        let seconds = r.result.duration.as_secs_f64();
        self.shared.telemetry.update(|t| {
            t.health_check_seconds.entry((key.service.clone(), key.address.to_string())).or_default().observe(seconds);
        });
        let changed = self.trackers.entry(key.clone()).or_default().record(r.result.ok, healthy, unhealthy);
        if let Some(h) = changed {
            info!(service = %key.service, backend = %key.address, health = h.as_str(), detail = %r.result.detail, "health changed");
            if h == Health::Up {
                if let Some(Change::Closed) = self.breakers.get_mut(&key).and_then(Breaker::health_recovered) {
                    info!(service = %key.service, backend = %key.address, "circuit closed: the health check passes again");
                }
            }
        }
        self.last_checks.insert(key, r.result);
        if changed.is_some() {
            self.apply();
        }
    }

    pub(super) fn health_map(&self) -> HashMap<BackendKey, Health> {
        self.trackers.iter().map(|(k, t)| (k.clone(), t.health)).collect()
    }

    /// One checker per backend that exists now, with its service's current settings.
    pub(super) fn sync_checkers(&mut self) {
        let mut wanted: HashMap<BackendKey, HealthCheck> = HashMap::new();
        for s in &self.desired.services {
            let Some(cfg) = self.cfg.services.iter().find(|c| c.name == s.name) else { continue };
            if cfg.health_check.kind == HealthCheckType::None {
                continue;
            }
            for b in &s.backends {
                wanted.insert(BackendKey::new(&s.name, b.address), cfg.health_check.clone());
            }
        }
        self.checkers.retain(|key, (check, task)| {
            let keep = wanted.get(key) == Some(check);
            if !keep {
                task.abort();
            }
            keep
        });
        self.trackers.retain(|key, _| wanted.contains_key(key));
        self.last_checks.retain(|key, _| wanted.contains_key(key));
        for (key, check) in wanted {
            if self.checkers.contains_key(&key) {
                continue;
            }
            let task =
                tokio::spawn(health::run(check.clone(), key.service.clone(), key.address, self.reports_tx.clone()));
            self.checkers.insert(key, (check, task));
        }
    }
}

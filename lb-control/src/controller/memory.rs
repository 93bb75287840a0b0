//! What a restart remembers of health: backends that were down and circuit breakers that
//! were open are saved in the state file on every change, and a new daemon starts from
//! them (its first tables included), so a restart never puts a failing backend back into
//! rotation. A remembered `down` holds until the backend's checker counts
//! `healthy_threshold` successes, as if the daemon had never stopped; a remembered
//! ejection ends at its wall-clock time, then goes half-open as usual.
//!
//! Only what the current config still checks is restored: a backend whose service has no
//! active check any more, or no circuit breaker, starts as a fresh start would.
use std::collections::HashMap;
use std::time::Instant;

use super::Controller;
use crate::breaker::Breaker;
use crate::health::Tracker;
use crate::registration_guard::RegistrationGuard;
use crate::registry::{BackendKey, Registry, Remembered};
use crate::state_file::{self, SavedBackend, SavedEjection};
use lb_config::desired::{Desired, Health};
use lb_config::{Config, HealthCheckType};

/// Health and breakers as the state file left them, for what `cfg` still checks.
pub(super) fn restore(
    cfg: &Config,
    registry: &Registry,
    now: Instant,
) -> (HashMap<BackendKey, Health>, HashMap<BackendKey, Breaker>) {
    let checked =
        |service: &str| cfg.services.iter().any(|s| s.name == service && s.health_check.kind != HealthCheckType::None);
    let breaking =
        |service: &str| cfg.services.iter().any(|s| s.name == service && s.circuit_breaker.consecutive_failures > 0);
    let health = registry
        .remembered
        .down
        .iter()
        .filter(|b| checked(&b.service))
        .map(|b| (BackendKey::new(b.service.clone(), b.address), Health::Down))
        .collect();
    let breakers = registry
        .remembered
        .ejections
        .iter()
        .filter(|e| breaking(&e.service))
        .map(|e| {
            let until = now + state_file::until_unix_ms(e.until_unix_ms);
            (BackendKey::new(e.service.clone(), e.address), Breaker::reopened(until, e.in_row))
        })
        .collect();
    (health, breakers)
}

/// The start's desired state: the sources, with the remembered health and ejections.
pub(super) fn desired_at_start(cfg: &Config, registry: &Registry, now: Instant) -> Desired {
    let (health, breakers) = restore(cfg, registry, now);
    let refused = registry.refused_at_start(cfg, &RegistrationGuard::for_host(cfg));
    let mut desired = crate::sources::desired_without(cfg, registry, &health, &refused);
    for s in &mut desired.services {
        for b in &mut s.backends {
            if let Some(br) = breakers.get(&BackendKey::new(&s.name, b.address)) {
                b.circuit = br.circuit();
            }
        }
    }
    desired
}

impl Controller {
    /// Take over what the state file remembered (called once, at construction).
    pub(super) fn restore_memory(&mut self, now: Instant) {
        let (health, breakers) = restore(&self.cfg, &self.registry, now);
        for key in health.into_keys() {
            self.trackers.insert(key, Tracker::remembered_down());
        }
        self.breakers = breakers;
    }

    /// What to remember now: the backends that are down, the breakers that are not closed.
    pub(super) fn remember(&self, now: Instant) -> Remembered {
        let saved = |k: &BackendKey| SavedBackend { service: k.service.clone(), address: k.address };
        let mut down: Vec<SavedBackend> =
            self.health_map().iter().filter(|(_, h)| **h == Health::Down).map(|(k, _)| saved(k)).collect();
        down.sort_by(|a, b| (&a.service, a.address).cmp(&(&b.service, b.address)));
        let mut ejections: Vec<SavedEjection> = self
            .breakers
            .iter()
            .filter_map(|(k, b)| {
                let (left, in_row) = b.saved(now)?;
                Some(SavedEjection {
                    service: k.service.clone(),
                    address: k.address,
                    until_unix_ms: state_file::unix_ms_in(left),
                    in_row,
                })
            })
            .collect();
        ejections.sort_by(|a, b| (&a.service, a.address).cmp(&(&b.service, b.address)));
        Remembered { down, ejections }
    }
}

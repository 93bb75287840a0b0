//! Passive ejection: the data path's outcomes feed each backend's circuit breaker.
use std::time::Instant;

use tracing::{info, warn};

use super::Controller;
use crate::breaker::{self, Breaker, Change};
use crate::datapath::Outcome;
use crate::registry::BackendKey;
use lb_config::desired::Desired;

impl Controller {
    /// Feed the data path's passive outcomes to the circuit breakers, run their clocks, and
    /// reconcile when one changed.
    pub(super) fn passive(&mut self) {
        // No breaker configured: nothing to read every 100 ms. The first read after one is
        // turned on only sets the baseline, so old failures do not count against it.
        if !self.cfg.services.iter().any(|s| s.circuit_breaker.consecutive_failures > 0) {
            self.outcomes_primed = false;
            return;
        }
        let outcomes = self.dataplane.outcomes();
        if !std::mem::replace(&mut self.outcomes_primed, true) {
            return;
        }
        let now = Instant::now();
        let mut changed = false;
        for Outcome { backend: key, succeeded, failed } in outcomes {
            let Some(cfg) = self.breaker_config(&key.service) else { continue };
            let may_eject = self.may_eject(&key.service, cfg.max_ejected_percent);
            let change = self.breakers.entry(key.clone()).or_default().observe(succeeded, failed, &cfg, may_eject, now);
            if let Some(Change::Ejected(_)) = change {
                self.share_ejection(&key, now);
            }
            changed |= self.log_change(&key, change);
        }
        let mut clock = Vec::new();
        for (key, b) in &mut self.breakers {
            clock.push((key.clone(), b.tick(now)));
        }
        for (key, change) in clock {
            changed |= self.log_change(&key, change);
        }
        if changed {
            self.persist();
            self.apply();
        }
    }

    pub(super) fn log_change(&self, key: &BackendKey, change: Option<Change>) -> bool {
        match change {
            Some(Change::Ejected(time)) => {
                warn!(service = %key.service, backend = %key.address, ejection = ?time, "circuit open: backend ejected after failed flows")
            }
            Some(Change::HalfOpen) => {
                info!(service = %key.service, backend = %key.address, "circuit half-open: one trial flow")
            }
            Some(Change::Closed) => {
                info!(service = %key.service, backend = %key.address, "circuit closed: the trial flow succeeded")
            }
            Some(Change::Rearm) => {}
            None => return false,
        }
        true
    }

    /// The service's breaker settings, if passive ejection is on.
    pub(super) fn breaker_config(&self, service: &str) -> Option<lb_config::CircuitBreaker> {
        let s = self.cfg.services.iter().find(|s| s.name == service)?;
        (s.circuit_breaker.consecutive_failures > 0).then_some(s.circuit_breaker)
    }

    /// Would one more ejection in `service` stay within `max_ejected_percent`?
    pub(super) fn may_eject(&self, service: &str, percent: u32) -> bool {
        let Some(s) = self.desired.services.iter().find(|s| s.name == service) else { return false };
        let ejected = s
            .backends
            .iter()
            .filter(|b| self.breakers.get(&BackendKey::new(service, b.address)).is_some_and(Breaker::ejected))
            .count();
        breaker::within_percent(ejected, s.backends.len(), percent)
    }

    /// Breakers go with their backend, and all of a service's when passive ejection is
    /// turned off.
    pub(super) fn forget_breakers(&mut self, next: &Desired) {
        let cfg = &self.cfg;
        self.breakers.retain(|BackendKey { service, address }, _| {
            let on = cfg.services.iter().any(|s| &s.name == service && s.circuit_breaker.consecutive_failures > 0);
            on && next.services.iter().any(|s| &s.name == service && s.backends.iter().any(|b| b.address == *address))
        });
    }

    /// Each backend's breaker state into the next desired state.
    pub(super) fn apply_circuits(&self, next: &mut Desired) {
        for s in &mut next.services {
            for b in &mut s.backends {
                if let Some(br) = self.breakers.get(&BackendKey::new(&s.name, b.address)) {
                    b.circuit = br.circuit();
                }
            }
        }
    }
}

//! Slow start (`slow_start = "30s"`): a backend that joins the rotation of a running
//! service (added or registered, back up, back from drain or maintenance, its circuit
//! closed, its weight raised from 0) takes a growing share of its weight over the window
//! instead of its full share at once, as HAProxy's `slowstart` and Envoy's slow start mode
//! do. The share is [`lb_config::ramp_percent`]: 10% at once, then linearly to 100%.
//!
//! The controller marks each ramping backend with its share (`DesiredBackend::ramp`), and
//! each data path builds its tables from `DesiredService::table_weight`; the tick
//! reconciles once a second while any backend ramps, so the XDP path gets one new weighted
//! table per second (written beside the live one and flipped) and the proxy one new
//! selection. Backends in rotation when the daemon starts, and the backends of a service
//! that a reload adds, take their full share: there is nothing to protect them from.
use std::time::Instant;

use super::Controller;
use crate::registry::BackendKey;
use lb_config::desired::{Desired, DesiredService};
use lb_config::ramp_percent;

impl Controller {
    /// Start, carry on or end the ramps of `next` against the state it replaces.
    pub(super) fn apply_ramps(&mut self, next: &mut Desired, now: Instant) {
        let mut ramps = std::collections::HashMap::new();
        for s in &mut next.services {
            let Some(window) = s.traffic.slow_start else { continue };
            let Some(before) = self.desired.services.iter().find(|p| p.name == s.name) else { continue };
            for b in s.backends.iter_mut().filter(|b| b.in_rotation()) {
                let key = BackendKey::new(s.name.clone(), b.address);
                let started = match self.ramps.get(&key) {
                    Some(&started) => started,
                    None if !was_in_rotation(before, b.address) => now,
                    None => continue,
                };
                let elapsed = now.saturating_duration_since(started);
                if elapsed < window {
                    b.ramp = Some(ramp_percent(elapsed, window));
                    ramps.insert(key, started);
                }
            }
        }
        self.ramps = ramps;
    }

    /// Some backend is ramping: the next tick writes its next step.
    pub(super) fn ramping(&self) -> bool {
        !self.ramps.is_empty()
    }
}

fn was_in_rotation(service: &DesiredService, address: std::net::SocketAddr) -> bool {
    service.backends.iter().any(|b| b.address == address && b.in_rotation())
}

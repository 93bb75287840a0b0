//! Active health checks: one checker task per backend, and their reports.
//!
//! A checker's results count only under the settings it checks with. When a reload
//! removes a service's check (`type = "none"`) or changes any of its settings, the old
//! results say nothing about the new check: the backends go back to `unknown` (which
//! counts as up) in the reload's own reconcile, and a changed check starts its checkers
//! afresh. This is what a fresh start with the new config does, and what Envoy and
//! HAProxy do with a changed check.
use std::collections::{HashMap, HashSet};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::Controller;
use crate::breaker::{Breaker, Change};
use crate::health::{self, Report};
use crate::registry::BackendKey;
use crate::tunnel_check::{Target, TunnelRoute};
use lb_config::desired::{Desired, Health};
use lb_config::{HealthCheck, HealthCheckType};

/// One backend's running checker.
pub(super) struct Checker {
    /// The settings it checks with.
    pub check: HealthCheck,
    /// Where it connects: the backend, or the VIP through the tunnel.
    pub target: Target,
    /// Its reports carry this, so that a result still on its way from a checker that was
    /// replaced is not counted for its successor.
    pub id: u64,
    pub task: JoinHandle<()>,
}

impl Controller {
    pub(super) fn health_report(&mut self, r: Report) {
        let key = BackendKey::new(r.service, r.address);
        let Some(checker) = self.checkers.get(&key).filter(|c| c.id == r.checker) else { return };
        if r.result.local {
            // This host ran short (descriptors, buffers, memory): nothing is known of the
            // backend, so its health and its run of results stay as they were.
            warn!(service = %key.service, backend = %key.address, detail = %r.result.detail, "health check could not run here: not counted against the backend");
            self.shared.telemetry.update(|t| t.health_check_local_errors_total += 1);
            self.last_checks.insert(key, r.result);
            return;
        }
        let (healthy, unhealthy) = (checker.check.healthy_threshold, checker.check.unhealthy_threshold);
        let seconds = r.result.duration.as_secs_f64();
        let counted = (checker.check.kind.as_str(), if r.result.ok { "pass" } else { "fail" });
        self.shared.telemetry.update(|t| {
            t.health_check_seconds.entry((key.service.clone(), key.address.to_string())).or_default().observe(seconds);
            *t.health_checks_total.entry(counted).or_default() += 1;
        });
        let changed = self.trackers.entry(key.clone()).or_default().record(r.result.ok, healthy, unhealthy);
        let check = checker.check.clone();
        let agent_changed = r.result.agent.as_ref().is_some_and(|words| self.agent_said(&key, words, &check));
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
            self.persist();
        }
        if changed.is_some() || agent_changed {
            self.apply();
        }
    }

    /// Takes in what a backend's agent said (see `agent_overlay`); true when it changes
    /// the desired state.
    fn agent_said(&mut self, key: &BackendKey, words: &health::AgentWords, check: &HealthCheck) -> bool {
        let report = self.registry.agent.entry(key.clone()).or_default();
        let changed = report.merge_under(words, check);
        if changed {
            info!(service = %key.service, backend = %key.address, state = ?report.state, weight_percent = ?report.weight_percent, "agent report changed");
        }
        if report.is_empty() {
            self.registry.agent.remove(key);
        }
        changed
    }

    /// Each service's check under the current config; services with none are not in it.
    fn configured_checks(&self) -> HashMap<&str, &HealthCheck> {
        self.cfg
            .services
            .iter()
            .filter(|s| s.health_check.kind != HealthCheckType::None)
            .map(|s| (s.name.as_str(), &s.health_check))
            .collect()
    }

    /// Each backend's health, from the checkers that check it as the current config says.
    /// A backend whose check was removed or changed is not in it: it is `unknown`, even in
    /// the reconcile that runs before `sync_checkers` replaces its checker.
    pub(super) fn health_map(&self) -> HashMap<BackendKey, Health> {
        let checks = self.configured_checks();
        self.trackers
            .iter()
            .filter(|(key, _)| {
                let Some(check) = checks.get(key.service.as_str()) else { return false };
                // No checker yet: health the state file remembered, until its first checker
                // starts (see `memory`).
                self.checkers.get(*key).is_none_or(|c| c.check == **check)
            })
            .map(|(k, t)| (k.clone(), t.health))
            .collect()
    }

    /// One checker per backend that exists now, with its service's current settings. A
    /// checker whose settings changed is replaced, and its backend's results go with it.
    pub(super) fn sync_checkers(&mut self) {
        // Owned: `targets` below needs the controller mutably.
        let checks: HashMap<String, HealthCheck> =
            self.configured_checks().into_iter().map(|(name, c)| (name.to_string(), c.clone())).collect();
        let targets = self.targets(tunnelled_backends(&self.desired, &checks));
        let mut wanted: HashMap<BackendKey, (HealthCheck, Target)> = HashMap::new();
        for s in &self.desired.services {
            let Some(check) = checks.get(s.name.as_str()) else { continue };
            for b in &s.backends {
                let key = BackendKey::new(&s.name, b.address);
                let target = targets.get(&key).cloned().unwrap_or(Target::Direct(b.address));
                wanted.insert(key, (check.clone(), target));
            }
        }
        let had_checker: HashSet<BackendKey> = self.checkers.keys().cloned().collect();
        self.checkers.retain(|key, c| {
            let keep = wanted.get(key).is_some_and(|(check, target)| *check == c.check && *target == c.target);
            if !keep {
                c.task.abort();
            }
            keep
        });
        let checkers = &self.checkers;
        // A tracker goes with its checker; one that never had a checker holds remembered
        // health, which the backend's first checker takes over.
        self.trackers
            .retain(|key, _| checkers.contains_key(key) || (!had_checker.contains(key) && wanted.contains_key(key)));
        self.last_checks.retain(|key, _| checkers.contains_key(key));
        self.registry.agent.retain(|key, _| checkers.contains_key(key));
        for (key, (check, target)) in wanted {
            if self.checkers.contains_key(&key) {
                continue;
            }
            let id = self.next_checker;
            self.next_checker += 1;
            let run = health::run(
                check.clone(),
                key.service.clone(),
                key.address,
                target.clone(),
                id,
                self.reports_tx.clone(),
            );
            let task = tokio::spawn(run);
            self.checkers.insert(key, Checker { check, target, id, task });
        }
    }

    /// Tunnelled targets for the checked backends of encapsulating services, with their
    /// marks written to the data path first (a check's first packet finds its entry). A
    /// data path without a tunnel program, or a failed write, leaves them checked directly.
    fn targets(&mut self, tunnelled: Vec<(BackendKey, lb_config::Forwarding)>) -> HashMap<BackendKey, Target> {
        let Some(device) = self.dataplane.tunnel_check_device(None) else {
            if !tunnelled.is_empty() && !self.warned_no_tunnel {
                warn!("this data path has no tunnel program: health checks of ipip/gue services go to the backends directly, not through the tunnel");
                self.warned_no_tunnel = true;
            }
            return HashMap::new();
        };
        let marks = self.marks.assign(tunnelled.iter().map(|(k, _)| k));
        if marks.len() < tunnelled.len() {
            warn!(
                tunnelled = tunnelled.len(),
                marks = marks.len(),
                "more ipip/gue backends than tunnelled health-check slots: the rest are checked directly"
            );
        }
        let routes: Vec<TunnelRoute> = tunnelled
            .iter()
            .filter_map(|(k, fwd)| {
                marks.get(k).map(|&mark| TunnelRoute { mark, backend: k.address.ip(), forwarding: *fwd })
            })
            .collect();
        if let Err(e) = self.dataplane.set_tunnel_checks(&routes) {
            warn!("tunnelled health checks: {e:#}");
        }
        // The device each VIP routes out of, asked once per VIP (a route lookup), not per backend.
        let vips: HashMap<&str, (std::net::SocketAddr, String)> = self
            .desired
            .services
            .iter()
            .filter(|s| s.forwarding.encapsulates())
            .map(|s| {
                let routed = self.dataplane.tunnel_check_device(Some(s.vip.ip())).unwrap_or_else(|| device.clone());
                (s.name.as_str(), (s.vip, routed))
            })
            .collect();
        marks
            .into_iter()
            .filter_map(|(k, mark)| {
                let (vip, device) = vips.get(k.service.as_str())?.clone();
                Some((k, Target::Tunnel { vip, mark, device }))
            })
            .collect()
    }
}

/// The checked backends of encapsulating services, with their service's forwarding. Not
/// those with an `agent` check: the agent answers on the backend's own address.
fn tunnelled_backends(
    desired: &Desired,
    checks: &HashMap<String, HealthCheck>,
) -> Vec<(BackendKey, lb_config::Forwarding)> {
    desired
        .services
        .iter()
        .filter(|s| {
            s.forwarding.encapsulates() && checks.get(s.name.as_str()).is_some_and(|c| c.kind != HealthCheckType::Agent)
        })
        .flat_map(|s| s.backends.iter().map(move |b| (BackendKey::new(&s.name, b.address), s.forwarding)))
        .collect()
}

//! Registrations (agents' leases) and admin states set through the API.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Controller;
use crate::handle::ControlError;
use crate::registration_guard::RegistrationGuard;
use crate::registry::{self, BackendKey, Misfit, Registration, Registry};
use lb_config::desired::Desired;
use lb_config::{AdminState, MAX_BACKENDS};

impl Controller {
    /// Checked before anything changes: the service takes the address (family, dsr port),
    /// the address is one registrations may name (`registration_guard`), and a new backend
    /// finds room under the cap. A data path that refuses it anyway leaves everything as it
    /// was: the registry, the desired state `/v1/services` shows, and the tables.
    pub(super) fn register(
        &mut self,
        service: String,
        address: SocketAddr,
        weight: u32,
        ttl: Duration,
    ) -> Result<bool, ControlError> {
        let key = BackendKey::new(service.clone(), address);
        self.admit_registration(&key)?;
        let previous = self.registry.registrations.get(&key).cloned();
        let new = self.registry.register(key.clone(), weight, ttl, Instant::now());
        self.apply_or_undo(|registry| match previous {
            Some(r) => {
                registry.registrations.insert(key.clone(), r);
            }
            None => {
                registry.remove(&key);
            }
        })
        .map_err(|e| {
            ControlError::Unavailable(format!(
                "the data path could not take backend {address} of service {service}, so it is not registered: {e:#}"
            ))
        })?;
        self.shared.telemetry.update(|t| t.registrations_total += 1);
        if new {
            info!(service, backend = %address, weight, ttl = ?ttl, "registered");
        }
        self.persist();
        Ok(new)
    }

    /// A backend the service does not have yet needs a free slot: the data path's backend
    /// ids are shared by every service, and draining backends still hold theirs.
    pub(super) fn room_for(&self, key: &BackendKey) -> Result<(), ControlError> {
        let present = self
            .desired
            .services
            .iter()
            .any(|s| s.name == key.service && s.backends.iter().any(|b| b.address == key.address));
        if present || backend_slots(&self.desired) < MAX_BACKENDS {
            return Ok(());
        }
        warn!(service = %key.service, backend = %key.address, "registration refused: the backend cap is reached");
        Err(ControlError::Conflict(registry::over_capacity(key)))
    }

    /// Reconcile after a change of the registry; if the data path refuses it, `undo` puts
    /// the registry back and the desired state, the retiring backends and the tables are
    /// what they were. The error is the data path's.
    pub(super) fn apply_or_undo(&mut self, undo: impl FnOnce(&mut Registry)) -> anyhow::Result<()> {
        let (desired, retiring) = (self.desired.clone(), self.retiring.clone());
        match self.reconcile() {
            Ok(()) => {
                self.sync_checkers();
                Ok(())
            }
            Err(e) => {
                warn!("the data path refused the change, which is undone: {e:#}");
                undo(&mut self.registry);
                self.desired = desired;
                self.retiring = retiring;
                if let Err(again) = self.dataplane.reconcile(&self.desired) {
                    warn!("restoring the previous tables failed too: {again:#}");
                }
                Err(e)
            }
        }
    }

    /// Registrations the config no longer takes (their service is gone, or its VIP's family,
    /// or with dsr its port, changed), or whose address it now refuses (a new VIP, a changed
    /// `allow_registration_from`), leave: the same rules as the register call. Returns
    /// them, so that a config that is not applied after all can put them back.
    pub(super) fn drop_misfit_registrations(&mut self) -> Vec<(BackendKey, Registration, Misfit)> {
        self.registry.drop_misfits(&self.cfg, &RegistrationGuard::for_host(&self.cfg))
    }

    /// At start: what the state file held that the config does not take, that is refused,
    /// or that has no room (see `Registry::refused_at_start`).
    pub(super) fn drop_refused_at_start(&mut self) -> Vec<(BackendKey, Registration, Misfit)> {
        self.registry.drop_refused_at_start(&self.cfg, &RegistrationGuard::for_host(&self.cfg))
    }

    /// The dropped registrations are gone for good: say so, and forget them on disk.
    pub(super) fn forget_misfit_registrations(&mut self, dropped: Vec<(BackendKey, Registration, Misfit)>) {
        if dropped.is_empty() {
            return;
        }
        for (key, _, why) in &dropped {
            warn!(service = %key.service, backend = %key.address, reason = %why, "registration dropped");
            self.forget_state_unless_configured(key);
        }
        self.persist();
    }

    /// A backend that leaves every source takes its API-set admin state and weight with it: an agent
    /// that drained, deregistered and comes back later starts `ready`, not stuck in drain.
    /// With a shared store the states are etcd's: the API's deregistration clears the key
    /// there, and every node follows.
    pub(super) fn forget_state_unless_configured(&mut self, key: &BackendKey) {
        if self.store_backed {
            return;
        }
        if !self.configured(key) {
            self.registry.states.remove(key);
            self.registry.weights.remove(key);
        }
    }

    /// May `key` be registered here: its service takes the address, the address is one
    /// registrations may name, and there is room. The API's answer for each misfit.
    pub(super) fn admit_registration(&self, key: &BackendKey) -> Result<(), ControlError> {
        let guard = RegistrationGuard::for_host(&self.cfg);
        registry::admissible(&self.cfg, &guard, key).map_err(|why| match why {
            Misfit::NoService(_) => ControlError::NotFound(why.to_string()),
            Misfit::Mismatch(_) | Misfit::Refused(_) => ControlError::BadRequest(why.to_string()),
            Misfit::OverCapacity(_) => ControlError::Conflict(why.to_string()),
        })?;
        self.room_for(key)
    }

    pub(super) fn known_backend(&self, service: &str, address: SocketAddr) -> Result<BackendKey, ControlError> {
        let s = self
            .desired
            .services
            .iter()
            .find(|s| s.name == service)
            .ok_or_else(|| ControlError::NotFound(format!("no service named {service}")))?;
        if !s.backends.iter().any(|b| b.address == address) {
            return Err(ControlError::NotFound(format!("service {service} has no backend {address}")));
        }
        Ok(BackendKey::new(service, address))
    }

    pub(super) fn heartbeat(&mut self, key: BackendKey) -> Result<(), ControlError> {
        if self.registry.heartbeat(&key, Instant::now()) {
            Ok(())
        } else {
            Err(ControlError::NotFound(format!("{} has no registration in service {}", key.address, key.service)))
        }
    }

    pub(super) fn set_state(
        &mut self,
        service: &str,
        address: SocketAddr,
        state: AdminState,
    ) -> Result<(), ControlError> {
        let key = self.known_backend(service, address)?;
        let previous = self.registry.states.insert(key.clone(), state);
        self.apply_or_undo(|registry| match previous {
            Some(s) => {
                registry.states.insert(key.clone(), s);
            }
            None => {
                registry.states.remove(&key);
            }
        })
        .map_err(|e| ControlError::Unavailable(format!("the data path could not take the state {state}: {e:#}")))?;
        info!(service = %key.service, backend = %key.address, %state, "admin state set");
        self.persist();
        Ok(())
    }

    pub(super) fn deregister(&mut self, key: BackendKey) -> Result<(), ControlError> {
        if !self.registry.remove(&key) {
            return Err(ControlError::NotFound(format!(
                "{} has no registration in service {}",
                key.address, key.service
            )));
        }
        info!(service = %key.service, backend = %key.address, "deregistered");
        self.forget_state_unless_configured(&key);
        self.persist();
        self.apply();
        Ok(())
    }

    /// Leases that ran out remove their registration (the backend then retires).
    pub(super) fn expire_leases(&mut self, now: Instant) {
        let expired = self.registry.expire(now);
        if expired.is_empty() {
            return;
        }
        for key in &expired {
            info!(service = %key.service, backend = %key.address, "lease expired");
            self.forget_state_unless_configured(key);
        }
        self.shared.telemetry.update(|t| t.lease_expirations_total += expired.len() as u64);
        self.persist();
        self.apply();
    }
}

/// Backend slots `desired` takes in the data path: one per backend of each service,
/// draining ones included (ids are per VIP and address, and a service has one VIP).
fn backend_slots(desired: &Desired) -> usize {
    desired.services.iter().map(|s| s.backends.len()).sum()
}

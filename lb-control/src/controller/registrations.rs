//! Registrations (agents' leases) and admin states set through the API.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Controller;
use crate::handle::ControlError;
use crate::registry::{self, BackendKey, Misfit, Registration};
use lb_config::AdminState;

impl Controller {
    pub(super) fn register(
        &mut self,
        service: String,
        address: SocketAddr,
        weight: u32,
        ttl: Duration,
    ) -> Result<bool, ControlError> {
        let key = BackendKey::new(service.clone(), address);
        registry::fits(&self.cfg, &key).map_err(|why| match why {
            Misfit::NoService(_) => ControlError::NotFound(why.to_string()),
            Misfit::Mismatch(_) => ControlError::BadRequest(why.to_string()),
        })?;
        let new = self.registry.register(key, weight, ttl, Instant::now());
        self.shared.telemetry.update(|t| t.registrations_total += 1);
        if new {
            info!(service, backend = %address, weight, ttl = ?ttl, "registered");
        }
        self.persist();
        self.apply();
        Ok(new)
    }

    /// Registrations the config no longer takes (their service is gone, or its VIP's family,
    /// or with dsr its port, changed) leave: the same rules as the register call. Returns
    /// them, so that a config that is not applied after all can put them back.
    pub(super) fn drop_misfit_registrations(&mut self) -> Vec<(BackendKey, Registration, Misfit)> {
        self.registry.drop_misfits(&self.cfg)
    }

    /// The dropped registrations are gone for good: say so, and forget them on disk.
    pub(super) fn forget_misfit_registrations(&mut self, dropped: Vec<(BackendKey, Registration, Misfit)>) {
        if dropped.is_empty() {
            return;
        }
        for (key, _, why) in &dropped {
            warn!(service = %key.service, backend = %key.address, reason = %why, "registration dropped: the config no longer takes it");
            self.forget_state_unless_configured(key);
        }
        self.persist();
    }

    /// A backend that leaves every source takes its API-set admin state with it: an agent
    /// that drained, deregistered and comes back later starts `ready`, not stuck in drain.
    pub(super) fn forget_state_unless_configured(&mut self, key: &BackendKey) {
        let configured = self
            .cfg
            .services
            .iter()
            .any(|s| s.name == key.service && s.backends.iter().any(|b| b.address == key.address));
        if !configured {
            self.registry.states.remove(key);
        }
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
        info!(service = %key.service, backend = %key.address, %state, "admin state set");
        self.registry.states.insert(key, state);
        self.persist();
        self.apply();
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

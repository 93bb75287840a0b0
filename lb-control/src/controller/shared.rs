//! The shared store's side of the controller (`[cluster] etcd`): proposals checked before
//! the API writes them to etcd, and the changes every node reads back from it, applied
//! with the same rules as a local register, deregister or state change. A change from etcd
//! that does not fit here (a service this node's config lacks, an address it refuses) is
//! logged and left out; the rest of the fleet may well take it.
use std::collections::BTreeMap;

use tracing::{info, warn};

use super::Controller;
use crate::cluster::store_keys::RegistrationValue;
use crate::cluster::store_watch::StoreChange;
use crate::handle::{Admitted, ControlError, Proposal};
use crate::registry::BackendKey;
use lb_config::AdminState;

impl Controller {
    /// The checks `register`, `set_state` and `deregister` make, without the change.
    pub(super) fn check(&self, proposal: &Proposal) -> Result<Admitted, ControlError> {
        match proposal {
            Proposal::Register(key) => {
                self.admit_registration(key)?;
            }
            Proposal::SetState(key) | Proposal::SetWeight(key) => {
                self.known_backend(&key.service, key.address)?;
            }
            Proposal::Deregister(_) => {}
        }
        let key = match proposal {
            Proposal::Register(k) | Proposal::SetState(k) | Proposal::SetWeight(k) | Proposal::Deregister(k) => k,
        };
        Ok(Admitted { configured: self.configured(key) })
    }

    /// A change read from the store.
    pub(super) fn store_change(&mut self, change: StoreChange) {
        match change {
            StoreChange::Snapshot { registrations, states, weights, ejections } => {
                self.adopt_snapshot(registrations, states, weights);
                for (key, value) in ejections {
                    self.adopt_ejection(key, value);
                }
            }
            StoreChange::Ejected(key, value) => self.adopt_ejection(key, value),
            StoreChange::Registered(key, value) => self.adopt_registration(key, value),
            StoreChange::Unregistered(key) => {
                if self.registry.remove(&key) {
                    info!(service = %key.service, backend = %key.address, "deregistered (shared store)");
                    self.persist();
                    self.apply();
                }
            }
            StoreChange::StateSet(key, state) => self.adopt_state(key, state),
            StoreChange::WeightSet(key, weight) => self.adopt_weight(key, Some(weight)),
            StoreChange::WeightCleared(key) => self.adopt_weight(key, None),
            StoreChange::StateCleared(key) => {
                if self.registry.states.remove(&key).is_some() {
                    info!(service = %key.service, backend = %key.address, "admin state cleared (shared store)");
                    self.persist();
                    self.apply();
                }
            }
        }
    }

    /// Register as the API does, unless this node has the same registration already (the
    /// echo of a write it made itself).
    fn adopt_registration(&mut self, key: BackendKey, value: RegistrationValue) {
        let same =
            self.registry.registrations.get(&key).is_some_and(|r| r.weight == value.weight && r.ttl == value.ttl());
        if same {
            return;
        }
        let (service, address) = (key.service.clone(), key.address);
        if let Err(e) = self.register(service, address, value.weight, value.ttl()) {
            warn!(service = %key.service, backend = %key.address, error = %e, "a registration from the shared store does not fit here; ignored");
        }
    }

    fn adopt_state(&mut self, key: BackendKey, state: AdminState) {
        if self.registry.states.get(&key) == Some(&state) {
            return;
        }
        if let Err(e) = self.set_state(&key.service, key.address, state) {
            warn!(service = %key.service, backend = %key.address, %state, error = %e, "an admin state from the shared store does not fit here; ignored");
        }
    }

    /// The store's view replaces this node's: what it lacks leaves, what it has is
    /// registered (registrations first, so that their states find their backends).
    fn adopt_snapshot(
        &mut self,
        registrations: Vec<(BackendKey, RegistrationValue)>,
        states: Vec<(BackendKey, AdminState)>,
        weights: Vec<(BackendKey, u32)>,
    ) {
        let registrations: BTreeMap<BackendKey, RegistrationValue> = registrations.into_iter().collect();
        let states: BTreeMap<BackendKey, AdminState> = states.into_iter().collect();
        let weights: BTreeMap<BackendKey, u32> = weights.into_iter().collect();
        let gone: Vec<BackendKey> =
            self.registry.registrations.keys().filter(|k| !registrations.contains_key(*k)).cloned().collect();
        for key in &gone {
            self.registry.remove(key);
            info!(service = %key.service, backend = %key.address, "not in the shared store: deregistered");
        }
        let cleared = self.registry.states.len();
        self.registry.states.retain(|k, _| states.contains_key(k));
        let unweighted = self.registry.weights.len();
        self.registry.weights.retain(|k, _| weights.contains_key(k));
        let changed =
            !gone.is_empty() || cleared != self.registry.states.len() || unweighted != self.registry.weights.len();
        if changed {
            self.persist();
            self.apply();
        }
        for (key, value) in registrations {
            self.adopt_registration(key, value);
        }
        for (key, state) in states {
            self.adopt_state(key, state);
        }
        for (key, weight) in weights {
            self.adopt_weight(key, Some(weight));
        }
        info!(
            registrations = self.registry.registrations.len(),
            states = self.registry.states.len(),
            weights = self.registry.weights.len(),
            "took the shared store's state"
        );
    }

    /// Is `key` one of the config's own backends?
    pub(super) fn configured(&self, key: &BackendKey) -> bool {
        self.cfg.services.iter().any(|s| s.name == key.service && s.backends.iter().any(|b| b.address == key.address))
    }

    /// With a shared store, etcd's leases are the clock: no registration runs out here.
    pub(super) fn leases_run_out_here(&self) -> bool {
        !self.store_backed
    }
}

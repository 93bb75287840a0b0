//! Weights set through the API (`PUT .../weight`, `lb backend set-weight`): they win over
//! the config's and the registration's weight until cleared, and are kept in the state file
//! (with `[cluster] etcd`, in the shared store, so every node follows).
use std::net::SocketAddr;

use tracing::{info, warn};

use super::Controller;
use crate::handle::ControlError;
use crate::registry::BackendKey;

impl Controller {
    /// Set (`Some`) or clear (`None`) the API's weight of a backend the service has. A
    /// data path that refuses the new tables leaves the previous weight in place.
    pub(super) fn set_weight(
        &mut self,
        service: &str,
        address: SocketAddr,
        weight: Option<u32>,
    ) -> Result<(), ControlError> {
        let key = self.known_backend(service, address)?;
        let previous = match weight {
            Some(w) => self.registry.weights.insert(key.clone(), w),
            None => self.registry.weights.remove(&key),
        };
        if previous == weight {
            return Ok(());
        }
        self.apply_or_undo(|registry| match previous {
            Some(w) => {
                registry.weights.insert(key.clone(), w);
            }
            None => {
                registry.weights.remove(&key);
            }
        })
        .map_err(|e| ControlError::Unavailable(format!("the data path could not take the weight: {e:#}")))?;
        match weight {
            Some(w) => info!(service = %key.service, backend = %key.address, weight = w, "weight set"),
            None => info!(service = %key.service, backend = %key.address, "weight cleared: back to its own"),
        }
        self.persist();
        Ok(())
    }

    /// A weight from the shared store, unless this node has it already (its own write's echo).
    pub(super) fn adopt_weight(&mut self, key: BackendKey, weight: Option<u32>) {
        if self.registry.weights.get(&key).copied() == weight {
            return;
        }
        // Cleared for a backend this node does not have: nothing to reconcile, only to forget.
        if weight.is_none() && self.known_backend(&key.service, key.address).is_err() {
            self.registry.weights.remove(&key);
            self.persist();
            return;
        }
        if let Err(e) = self.set_weight(&key.service, key.address, weight) {
            warn!(service = %key.service, backend = %key.address, ?weight, error = %e, "a weight from the shared store does not fit here; ignored");
        }
    }
}

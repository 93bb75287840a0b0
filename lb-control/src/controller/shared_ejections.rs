//! Circuit breakers across a fleet (`[cluster] etcd`): an ejection on one node is written to
//! the shared store (on a lease as long as the ejection) and every other node takes the
//! backend out of rotation until the same wall-clock end, so a backend failing flows
//! through one node stops getting new flows from all of them. After the ejection each
//! node's breaker goes half-open and runs its own trial, as a local ejection does.
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::warn;

use super::Controller;
use crate::breaker::Breaker;
use crate::cluster::{EjectionValue, SharedEjection};
use crate::registry::BackendKey;
use crate::state_file::{unix_ms_in, until_unix_ms};

impl Controller {
    /// Share this node's ejections through `tx` (a task writes them to the store).
    pub fn with_ejection_sink(mut self, tx: mpsc::UnboundedSender<SharedEjection>) -> Self {
        self.ejections_out = Some(tx);
        self
    }

    /// The breaker of `key` just opened here: tell the fleet.
    pub(super) fn share_ejection(&self, key: &BackendKey, now: Instant) {
        let (Some(tx), Some(breaker)) = (&self.ejections_out, self.breakers.get(key)) else { return };
        let Some((length, in_row)) = breaker.saved(now) else { return };
        let value = EjectionValue { until_unix_ms: unix_ms_in(length), in_row, node: self.node_name() };
        let _ = tx.send(SharedEjection { key: key.clone(), length, value });
    }

    /// Another node ejected `key`: eject it here until the same end, unless this node has
    /// it ejected already (its own write, read back), its service has no breaker here, the
    /// backend is not this node's, the ejection is over, or one more ejection would pass the
    /// service's `max_ejected_percent` here.
    pub(super) fn adopt_ejection(&mut self, key: BackendKey, value: EjectionValue) {
        let Some(cfg) = self.breaker_config(&key.service) else { return };
        if self.breakers.get(&key).is_some_and(Breaker::ejected)
            || self.known_backend(&key.service, key.address).is_err()
        {
            return;
        }
        let left = until_unix_ms(value.until_unix_ms);
        if left.is_zero() {
            return;
        }
        if !self.may_eject(&key.service, cfg.max_ejected_percent) {
            warn!(service = %key.service, backend = %key.address, by = %value.node, "an ejection from the shared store would pass max_ejected_percent here; not applied");
            return;
        }
        warn!(service = %key.service, backend = %key.address, by = %value.node, ejection = ?left, "circuit open: backend ejected by another node (shared store)");
        self.breakers.insert(key, Breaker::reopened(Instant::now() + left, value.in_row));
        self.persist();
        self.apply();
    }

    /// This node's name as the fleet knows it (`[cluster] node`, else the host name).
    fn node_name(&self) -> String {
        self.cfg.cluster.as_ref().and_then(|c| c.node.clone()).unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
        })
    }
}

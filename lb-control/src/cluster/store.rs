//! The shared store: registrations and admin states in etcd (`[cluster] etcd`). Every call
//! is bounded by `DEADLINE`: an etcd that does not answer makes a write fail fast (the API
//! then answers 503 and changes nothing) instead of holding the agent.
//!
//! A registration is a key on an etcd lease of the agent's TTL: a heartbeat, received by
//! any node, keeps that lease alive; when the agent stops, etcd deletes the key and every
//! node's watch removes the backend. etcd's lease is the only clock.
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions};
use tracing::{debug, info, warn};

use super::store_keys::{EjectionValue, Keys, RegistrationValue, StateValue, WeightValue};
use crate::registry::BackendKey;
use crate::telemetry::Telemetry;
use lb_config::AdminState;

/// Longest an etcd call may take before the store counts as unreachable.
pub const DEADLINE: Duration = Duration::from_millis(1500);
/// HTTP/2 pings on the connection: a cut link is noticed within about this.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// Why a store call did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// etcd did not answer in time or refused the call: nothing was written.
    #[error("etcd is unreachable ({0}); nothing was changed")]
    Unreachable(String),
    /// The key (or its lease) is not in etcd.
    #[error("{0}")]
    Missing(String),
}

/// A client of the fleet's etcd, with the key layout and the status it reports.
#[derive(Clone)]
pub struct Store {
    client: Client,
    keys: Keys,
    telemetry: Arc<Telemetry>,
}

impl Store {
    /// The client connects lazily: a store whose etcd is down still starts, reports itself
    /// unreachable, and connects when etcd comes back.
    pub async fn connect(endpoints: &[String], prefix: &str, telemetry: Arc<Telemetry>) -> anyhow::Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(DEADLINE)
            .with_timeout(DEADLINE)
            .with_keep_alive(KEEPALIVE, KEEPALIVE)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options)).await?;
        telemetry.update(|t| t.store_up = Some(false));
        Ok(Store { client, keys: Keys::new(prefix), telemetry })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(super) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Say whether etcd answers (`/readyz`, `lb_store_up`).
    pub(super) fn set_up(&self, up: bool) {
        self.telemetry.update(|t| t.store_up = Some(up));
    }

    /// A write the API refused because etcd was unreachable (`lb_store_writes_refused_total`).
    pub(crate) fn count_refused(&self) {
        self.telemetry.update(|t| t.store_writes_refused_total += 1);
    }

    /// Run one etcd call within the deadline; its outcome says whether etcd is reachable.
    async fn call<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(DEADLINE, f).await {
            Ok(Ok(v)) => {
                self.set_up(true);
                Ok(v)
            }
            Ok(Err(e)) => {
                debug!(error = %e, "etcd: {what} failed");
                self.set_up(false);
                Err(StoreError::Unreachable(format!("{what}: {e}")))
            }
            Err(_) => {
                debug!("etcd: {what} did not answer within {DEADLINE:?}");
                self.set_up(false);
                Err(StoreError::Unreachable(format!("{what}: no answer within {DEADLINE:?}")))
            }
        }
    }

    /// Register (or renew with new settings): a fresh lease of `ttl` (whole seconds, at
    /// least 1: etcd's unit), the key put on it; the lease of a previous registration of
    /// the same backend is revoked after (a put moved the key off it already). True when
    /// the fleet did not have the registration before.
    pub async fn register(&self, key: &BackendKey, value: RegistrationValue) -> Result<bool, StoreError> {
        let mut client = self.client();
        let seconds = value.ttl().as_millis().div_ceil(1000).max(1) as i64;
        let lease = self.call("granting a lease", client.lease_grant(seconds, None)).await?.id();
        let json = serde_json::to_vec(&value).expect("a registration value serializes");
        let put = PutOptions::new().with_lease(lease).with_prev_key();
        let previous =
            self.call("writing a registration", client.put(self.keys.registration(key), json, Some(put))).await;
        let previous = match previous {
            Ok(mut r) => r.take_prev_key().map(|kv| kv.lease()),
            Err(e) => {
                // Not written: the lease would only run out; revoke it now if etcd answers.
                let _ = tokio::time::timeout(DEADLINE, client.lease_revoke(lease)).await;
                return Err(e);
            }
        };
        if let Some(old) = previous.filter(|&l| l != 0 && l != lease) {
            let _ = tokio::time::timeout(DEADLINE, client.lease_revoke(old)).await;
        }
        Ok(previous.is_none())
    }

    /// The lease a registration is on, or `Missing` when the backend is not registered.
    async fn lease_of(&self, key: &BackendKey) -> Result<i64, StoreError> {
        let mut client = self.client();
        let response = self.call("reading a registration", client.get(self.keys.registration(key), None)).await?;
        response.kvs().first().map(|kv| kv.lease()).filter(|&l| l != 0).ok_or_else(|| not_registered(key))
    }

    /// A heartbeat: one keep-alive of the registration's lease.
    pub async fn heartbeat(&self, key: &BackendKey) -> Result<(), StoreError> {
        let lease = self.lease_of(key).await?;
        let mut client = self.client();
        let kept = tokio::time::timeout(DEADLINE, client.lease_keep_alive(lease)).await;
        match kept {
            Ok(Ok(_)) => Ok(()),
            // The lease ran out between the read and the keep-alive: as good as missing.
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => Err(not_registered(key)),
            Ok(Err(e)) => Err(self.unreachable("renewing a lease", e.to_string())),
            Err(_) => Err(self.unreachable("renewing a lease", format!("no answer within {DEADLINE:?}"))),
        }
    }

    fn unreachable(&self, what: &str, why: String) -> StoreError {
        self.set_up(false);
        StoreError::Unreachable(format!("{what}: {why}"))
    }

    /// Deregister: the key goes and its lease is revoked. `Missing` when not registered.
    pub async fn deregister(&self, key: &BackendKey) -> Result<(), StoreError> {
        let mut client = self.client();
        let options = etcd_client::DeleteOptions::new().with_prev_key();
        let mut deleted =
            self.call("deleting a registration", client.delete(self.keys.registration(key), Some(options))).await?;
        let prev = deleted.take_prev_kvs();
        let Some(kv) = prev.first() else { return Err(not_registered(key)) };
        if kv.lease() != 0 {
            let _ = tokio::time::timeout(DEADLINE, client.lease_revoke(kv.lease())).await;
        }
        Ok(())
    }

    /// Set an admin state for every node.
    pub async fn set_state(&self, key: &BackendKey, state: AdminState) -> Result<(), StoreError> {
        let mut client = self.client();
        let json = serde_json::to_vec(&StateValue { state }).expect("a state value serializes");
        self.call("writing an admin state", client.put(self.keys.state(key), json, None)).await?;
        Ok(())
    }

    /// Clear an admin state (the backend goes back to its configured one).
    pub async fn clear_state(&self, key: &BackendKey) -> Result<(), StoreError> {
        let mut client = self.client();
        self.call("clearing an admin state", client.delete(self.keys.state(key), None)).await?;
        Ok(())
    }

    /// Set a weight for every node.
    pub async fn set_weight(&self, key: &BackendKey, weight: u32) -> Result<(), StoreError> {
        let mut client = self.client();
        let json = serde_json::to_vec(&WeightValue { weight }).expect("a weight value serializes");
        self.call("writing a weight", client.put(self.keys.weight(key), json, None)).await?;
        Ok(())
    }

    /// Clear a weight set through the API (the backend goes back to its own).
    pub async fn clear_weight(&self, key: &BackendKey) -> Result<(), StoreError> {
        let mut client = self.client();
        self.call("clearing a weight", client.delete(self.keys.weight(key), None)).await?;
        Ok(())
    }

    /// Share a circuit breaker's ejection: the key lives on a lease of `length` (whole
    /// seconds, rounded up), so it leaves by itself when the ejection ends.
    pub async fn eject(&self, key: &BackendKey, value: &EjectionValue, length: Duration) -> Result<(), StoreError> {
        let mut client = self.client();
        let seconds = length.as_millis().div_ceil(1000).max(1) as i64;
        let lease = self.call("granting a lease", client.lease_grant(seconds, None)).await?.id();
        let json = serde_json::to_vec(value).expect("an ejection value serializes");
        let put = PutOptions::new().with_lease(lease);
        self.call("writing an ejection", client.put(self.keys.ejection(key), json, Some(put))).await?;
        Ok(())
    }

    /// Write each ejection this node's breakers share (`Controller::with_ejection_sink`)
    /// until the controller is gone. One that cannot be written (etcd unreachable) stays this
    /// node's alone, and the log says so: it is an observation, not an operator's write, so
    /// nobody waits on it.
    pub async fn share_ejections(self, mut rx: tokio::sync::mpsc::UnboundedReceiver<super::SharedEjection>) {
        while let Some(e) = rx.recv().await {
            match self.eject(&e.key, &e.value, e.length).await {
                Ok(()) => info!(service = %e.key.service, backend = %e.key.address, "ejection shared with the fleet"),
                Err(err) => warn!(service = %e.key.service, backend = %e.key.address, "ejection not shared: {err}"),
            }
        }
    }

    /// Everything under the prefix in one read, and the revision it was read at.
    pub(super) async fn read_all(&self) -> Result<(Vec<etcd_client::KeyValue>, i64), StoreError> {
        let mut client = self.client();
        let mut response = self
            .call("reading the shared state", client.get(self.keys.all(), Some(GetOptions::new().with_prefix())))
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        Ok((response.take_kvs(), revision))
    }
}

fn not_registered(key: &BackendKey) -> StoreError {
    StoreError::Missing(format!("{} has no registration in service {}", key.address, key.service))
}

//! The API's writes with a shared store: checked by the controller first (the same 404,
//! 400 and 409 as without a store), then written to etcd, then applied here at once (the
//! watch brings the same change back later as a no-op), then answered. etcd unreachable:
//! 503, and nothing changes here either — a node never serves what the fleet does not have.
use std::net::SocketAddr;
use std::time::Duration;

use tracing::warn;

use super::{ControlError, ControlHandle};
use crate::cluster::store::{Store, StoreError};
use crate::cluster::store_keys::RegistrationValue;
use crate::registry::BackendKey;
use lb_config::AdminState;

/// A change to check before it is written to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposal {
    Register(BackendKey),
    SetState(BackendKey),
    SetWeight(BackendKey),
    Deregister(BackendKey),
}

/// What the controller says of an accepted proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The config names the backend (its admin state outlives a deregistration).
    pub configured: bool,
}

/// A store failure as the API answers it: unreachable → 503 (counted), missing → 404.
fn refused(store: &Store, e: StoreError) -> ControlError {
    match e {
        StoreError::Unreachable(_) => {
            warn!("{e}: the write is refused (503)");
            store.count_refused();
            ControlError::Unavailable(e.to_string())
        }
        StoreError::Missing(m) => ControlError::NotFound(m),
    }
}

pub(crate) async fn register(
    control: &ControlHandle,
    store: &Store,
    service: String,
    address: SocketAddr,
    weight: u32,
    ttl: Duration,
) -> Result<bool, ControlError> {
    let key = BackendKey::new(service.clone(), address);
    control.check(Proposal::Register(key.clone())).await?;
    let value = RegistrationValue { weight, ttl_ms: ttl.as_millis() as u64 };
    let new = store.register(&key, value).await.map_err(|e| refused(store, e))?;
    // Whether it is new is the fleet's answer: the watch may have brought it here already.
    if let Err(e) = control.register_here(service, address, weight, ttl).await {
        // Checked a moment ago, refused now (the data path, or a race for the last slot):
        // take it back out of etcd so that the fleet does not hold what was refused.
        warn!(service = %key.service, backend = %key.address, error = %e, "registration written to etcd but refused here; removing it");
        let _ = store.deregister(&key).await;
        return Err(e);
    }
    Ok(new)
}

pub(crate) async fn heartbeat(store: &Store, service: String, address: SocketAddr) -> Result<(), ControlError> {
    store.heartbeat(&BackendKey::new(service, address)).await.map_err(|e| refused(store, e))
}

pub(crate) async fn set_state(
    control: &ControlHandle,
    store: &Store,
    service: String,
    address: SocketAddr,
    state: AdminState,
) -> Result<(), ControlError> {
    let key = BackendKey::new(service.clone(), address);
    control.check(Proposal::SetState(key.clone())).await?;
    store.set_state(&key, state).await.map_err(|e| refused(store, e))?;
    control.set_state_here(service, address, state).await
}

/// A weight set (or cleared, `None`) in etcd first, then here (the watch's echo is a no-op).
pub(crate) async fn set_weight(
    control: &ControlHandle,
    store: &Store,
    service: String,
    address: SocketAddr,
    weight: Option<u32>,
) -> Result<(), ControlError> {
    let key = BackendKey::new(service.clone(), address);
    control.check(Proposal::SetWeight(key.clone())).await?;
    match weight {
        Some(w) => store.set_weight(&key, w).await,
        None => store.clear_weight(&key).await,
    }
    .map_err(|e| refused(store, e))?;
    control.set_weight_here(service, address, weight).await
}

/// The registration leaves etcd (its lease revoked); a backend the config does not name
/// takes its admin state along, as without a store.
pub(crate) async fn deregister(
    control: &ControlHandle,
    store: &Store,
    service: String,
    address: SocketAddr,
) -> Result<(), ControlError> {
    let key = BackendKey::new(service.clone(), address);
    let admitted = control.check(Proposal::Deregister(key.clone())).await?;
    store.deregister(&key).await.map_err(|e| refused(store, e))?;
    if !admitted.configured {
        if let Err(e) = store.clear_state(&key).await {
            warn!(service = %key.service, backend = %key.address, error = %e, "deregistered, but its admin state stays in etcd");
        }
    }
    match control.deregister_here(service, address).await {
        // This node had refused the registration (it did not fit here): nothing to undo.
        Err(ControlError::NotFound(_)) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

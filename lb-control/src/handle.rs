//! Requests to the controller task, each with a reply channel.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::view::ServiceView;
use crate::cluster::store::Store;
use crate::cluster::store_watch::{Follower, StoreChange};
pub use store_writes::{Admitted, Proposal};

mod store_writes;
use lb_config::{AdminState, Diagnostic};

/// Why the controller refused a request; the API maps each to its HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 400
    #[error("{0}")]
    BadRequest(String),
    /// 422: the reloaded config did not validate; every diagnostic, in file order.
    #[error("{}", lines(.0))]
    InvalidConfig(Vec<Diagnostic>),
    /// 422: the config is valid but the data path could not take it (the running config
    /// stays).
    #[error("{0}")]
    NotApplied(String),
    /// 409: the request conflicts with what is running (the backend cap is reached).
    #[error("{0}")]
    Conflict(String),
    /// 503: the controller is gone (shutting down), or the data path could not take the
    /// change (nothing changed).
    #[error("{0}")]
    Unavailable(String),
}

/// One diagnostic per line (`FILE:LINE:COL: message`).
fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

pub type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

#[derive(Debug)]
pub enum Request {
    Services(Reply<Vec<ServiceView>>),
    /// Register (or re-register) a backend with a lease; `Ok(true)` when it is new.
    Register {
        service: String,
        address: SocketAddr,
        weight: u32,
        ttl: Duration,
        reply: Reply<bool>,
    },
    Heartbeat {
        service: String,
        address: SocketAddr,
        reply: Reply<()>,
    },
    SetState {
        service: String,
        address: SocketAddr,
        state: AdminState,
        reply: Reply<()>,
    },
    /// Set (`Some`) or clear (`None`) the weight set through the API.
    SetWeight {
        service: String,
        address: SocketAddr,
        weight: Option<u32>,
        reply: Reply<()>,
    },
    /// Remove a registration (a backend the config names stays, as config).
    Deregister {
        service: String,
        address: SocketAddr,
        reply: Reply<()>,
    },
    Reload(Reply<()>),
    /// Drain (`true`) or stop draining: withdraw every BGP announcement, or announce again.
    /// `Ok(previous)`: whether the node was draining before.
    Drain {
        drain: bool,
        reply: Reply<bool>,
    },
    /// Would this change be accepted? (Checked before it is written to the shared store.)
    Check {
        proposal: Proposal,
        reply: Reply<Admitted>,
    },
    /// A change read from the shared store (`[cluster] etcd`), applied as a local one is.
    Store(StoreChange),
}

#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Request>,
    /// With `[cluster] etcd`: writes go to etcd first (see `cluster::store_writes`).
    store: Option<Store>,
}

impl std::fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHandle").field("store", &self.store.is_some()).finish()
    }
}

impl ControlHandle {
    pub fn new(tx: mpsc::Sender<Request>) -> Self {
        Self { tx, store: None }
    }

    /// Registrations, heartbeats and admin states go through `store` (every node sees them).
    pub fn with_store(self, store: Store) -> Self {
        Self { store: Some(store), ..self }
    }

    pub(crate) async fn check(&self, proposal: Proposal) -> Result<Admitted, ControlError> {
        self.ask(|reply| Request::Check { proposal, reply }).await
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ControlError> {
        let (reply, rx) = oneshot::channel();
        let gone = || ControlError::Unavailable("the daemon is shutting down".into());
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn services(&self) -> Result<Vec<ServiceView>, ControlError> {
        self.ask(Request::Services).await
    }

    pub async fn register(
        &self,
        service: String,
        address: SocketAddr,
        weight: u32,
        ttl: Duration,
    ) -> Result<bool, ControlError> {
        match &self.store {
            Some(store) => store_writes::register(self, store, service, address, weight, ttl).await,
            None => self.register_here(service, address, weight, ttl).await,
        }
    }

    pub(crate) async fn register_here(
        &self,
        service: String,
        address: SocketAddr,
        weight: u32,
        ttl: Duration,
    ) -> Result<bool, ControlError> {
        self.ask(|reply| Request::Register { service, address, weight, ttl, reply }).await
    }

    pub async fn heartbeat(&self, service: String, address: SocketAddr) -> Result<(), ControlError> {
        match &self.store {
            Some(store) => store_writes::heartbeat(store, service, address).await,
            None => self.ask(|reply| Request::Heartbeat { service, address, reply }).await,
        }
    }

    pub async fn set_state(&self, service: String, address: SocketAddr, state: AdminState) -> Result<(), ControlError> {
        match &self.store {
            Some(store) => store_writes::set_state(self, store, service, address, state).await,
            None => self.set_state_here(service, address, state).await,
        }
    }

    pub(crate) async fn set_state_here(
        &self,
        service: String,
        address: SocketAddr,
        state: AdminState,
    ) -> Result<(), ControlError> {
        self.ask(|reply| Request::SetState { service, address, state, reply }).await
    }

    pub async fn set_weight(
        &self,
        service: String,
        address: SocketAddr,
        weight: Option<u32>,
    ) -> Result<(), ControlError> {
        match &self.store {
            Some(store) => store_writes::set_weight(self, store, service, address, weight).await,
            None => self.set_weight_here(service, address, weight).await,
        }
    }

    pub(crate) async fn set_weight_here(
        &self,
        service: String,
        address: SocketAddr,
        weight: Option<u32>,
    ) -> Result<(), ControlError> {
        self.ask(|reply| Request::SetWeight { service, address, weight, reply }).await
    }

    pub async fn deregister(&self, service: String, address: SocketAddr) -> Result<(), ControlError> {
        match &self.store {
            Some(store) => store_writes::deregister(self, store, service, address).await,
            None => self.deregister_here(service, address).await,
        }
    }

    pub(crate) async fn deregister_here(&self, service: String, address: SocketAddr) -> Result<(), ControlError> {
        self.ask(|reply| Request::Deregister { service, address, reply }).await
    }

    pub async fn reload(&self) -> Result<(), ControlError> {
        self.ask(Request::Reload).await
    }

    pub async fn drain(&self, drain: bool) -> Result<bool, ControlError> {
        self.ask(|reply| Request::Drain { drain, reply }).await
    }
}

/// The shared store's changes go to the controller as messages.
impl Follower for ControlHandle {
    async fn change(&self, change: StoreChange) -> bool {
        self.tx.send(Request::Store(change)).await.is_ok()
    }
}

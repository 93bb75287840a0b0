//! Requests to the controller task, each with a reply channel.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::view::ServiceView;
use lb_config::AdminState;

/// Why the controller refused a request; the API maps each to its HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 400
    #[error("{0}")]
    BadRequest(String),
    /// 422: a config reload that failed validation; one message per line.
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the controller is gone (shutting down).
    #[error("{0}")]
    Unavailable(String),
}

pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

#[derive(Debug)]
pub enum Command {
    Services(Reply<Vec<ServiceView>>),
    /// Register (or re-register) a backend with a lease; `Ok(true)` when it is new.
    Register { service: String, address: SocketAddr, weight: u32, ttl: Duration, reply: Reply<bool> },
    Heartbeat { service: String, address: SocketAddr, reply: Reply<()> },
    SetState { service: String, address: SocketAddr, state: AdminState, reply: Reply<()> },
    /// Remove a registration (a backend the config names stays, as config).
    Deregister { service: String, address: SocketAddr, reply: Reply<()> },
    Reload(Reply<()>),
}

#[derive(Clone, Debug)]
pub struct ControlHandle {
    tx: mpsc::Sender<Command>,
}

impl ControlHandle {
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        Self { tx }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        let gone = || ApiError::Unavailable("the daemon is shutting down".into());
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn services(&self) -> Result<Vec<ServiceView>, ApiError> {
        self.ask(Command::Services).await
    }

    pub async fn register(&self, service: String, address: SocketAddr, weight: u32, ttl: Duration) -> Result<bool, ApiError> {
        self.ask(|reply| Command::Register { service, address, weight, ttl, reply }).await
    }

    pub async fn heartbeat(&self, service: String, address: SocketAddr) -> Result<(), ApiError> {
        self.ask(|reply| Command::Heartbeat { service, address, reply }).await
    }

    pub async fn set_state(&self, service: String, address: SocketAddr, state: AdminState) -> Result<(), ApiError> {
        self.ask(|reply| Command::SetState { service, address, state, reply }).await
    }

    pub async fn deregister(&self, service: String, address: SocketAddr) -> Result<(), ApiError> {
        self.ask(|reply| Command::Deregister { service, address, reply }).await
    }

    pub async fn reload(&self) -> Result<(), ApiError> {
        self.ask(Command::Reload).await
    }
}

//! The agent (`lb agent`) that runs beside a backend, and the admin API client it shares with
//! `lb backend set-state`.
//!
//! - [`client`]: one blocking HTTP call per registration operation, errors classified into
//!   retry / re-register / give up.
//! - [`failover`]: several balancers; an unreachable one or a 5xx moves to the next.
//! - [`lease`]: the loop: register, heartbeat every ttl/3, drain and deregister on a signal.
//! - [`backoff`]: exponential backoff with jitter for an unreachable LB.
//! - [`shutdown`]: SIGTERM/SIGINT as a polled counter.
pub mod backoff;
pub mod client;
pub mod failover;
pub mod lease;
pub mod shutdown;

pub use backoff::{Backoff, RETRY_CAP, RETRY_START};
pub use client::{encode_path_segment, ApiClient, ApiError, ApiUrl, Auth, Failure, REQUEST_TIMEOUT};
pub use failover::Balancers;
pub use lease::{run, AgentSettings};
pub use shutdown::Shutdown;

//! The `lb` binary's own layer, as a library so tests drive the same code the binary runs:
//! the daemon that wires a data path (`lb-xdp` or `lb-proxy`) to the controller
//! (`lb-control`), the admin API, the CLI, metrics, the agent and `lb doctor`.
pub mod agent;
pub mod api;
pub mod cli;
pub mod daemon;
pub mod descriptors;
pub mod doctor;
pub mod metrics;
pub mod notify;

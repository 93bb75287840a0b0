//! The control plane: every source of truth (config file, agent registrations, health
//! checks, admin state set through the API) feeds one controller task, which recomputes the
//! desired state and reconciles the data path. Other tasks talk to it through a
//! `ControlHandle`; nothing else writes the maps.
pub mod agent_overlay;
pub mod breaker;
pub mod cluster;
pub mod controller;
pub mod datapath;
pub mod exposition;
pub mod handle;
pub mod health;
pub mod lock;
pub mod ready_flag;
pub mod registration_guard;
pub mod registry;
pub mod sources;
pub mod state_file;
pub mod telemetry;
#[cfg(test)]
mod test_config;
pub mod tunnel_check;
pub mod view;
pub mod watch;

pub use datapath::{BackendCounters, DataPath, Outcome};
pub use handle::{ControlError, ControlHandle, Request};
pub use ready_flag::ReadyFlag;
pub use telemetry::{Histogram, Telemetry};
pub use view::{BackendView, CheckView, ServiceView};

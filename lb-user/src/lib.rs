//! The `lb` daemon, CLI and agent, as a library so tests drive the same code the binary runs.
pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod doctor;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod select;
pub mod state;

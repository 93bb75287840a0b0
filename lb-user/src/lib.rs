//! The `lb` daemon, CLI and agent, as a library so tests drive the same code the binary runs.
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod state;

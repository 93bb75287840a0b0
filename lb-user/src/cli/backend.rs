//! `lb backend set-state`: one admin API call to change a backend's admin state.
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};

use super::agent::{service_name, ApiArgs};
use super::out;
use lb_config::AdminState;

#[derive(Subcommand, Debug, Clone)]
pub enum BackendCommand {
    /// Set a backend's admin state: ready (takes new flows), drain (no new flows, existing
    /// ones continue) or maint (out). Prints the new state.
    SetState(SetStateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SetStateArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The service (its `name` in lb.toml)
    #[arg(long, value_name = "NAME", value_parser = service_name)]
    pub service: String,
    /// The backend, IP:PORT ([v6]:port for IPv6), as the service lists it
    #[arg(long, value_name = "IP:PORT")]
    pub address: SocketAddr,
    /// The new admin state
    #[arg(value_name = "STATE",
          value_parser = PossibleValuesParser::new(AdminState::NAMES).try_map(|s| s.parse::<AdminState>()))]
    pub state: AdminState,
}

pub fn backend(command: BackendCommand) -> Result<ExitCode> {
    match command {
        BackendCommand::SetState(args) => set_state(args),
    }
}

/// Prints the state the server reports; a failure is the server's message and status (via
/// `main`, exit 1).
fn set_state(args: SetStateArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let state = client.set_state(&args.service, args.address, args.state)?;
    out::line(state)?;
    Ok(ExitCode::SUCCESS)
}

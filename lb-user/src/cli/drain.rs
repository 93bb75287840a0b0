//! `lb drain [--undo]`: one admin API call (`POST /v1/drain`) to withdraw or restore this
//! node's BGP announcements.
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::agent::ApiArgs;
use super::out;

#[derive(Args, Debug, Clone)]
pub struct DrainArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// End the drain: announce the VIPs that can serve again
    #[arg(long)]
    pub undo: bool,
}

/// Prints the node's new state; a failure is the server's message and status (via `main`,
/// exit 1), e.g. 409 when the node has no [cluster.bgp].
pub fn drain(args: DrainArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    client.drain(!args.undo)?;
    out::line(if args.undo { "announcing" } else { "draining" })?;
    Ok(ExitCode::SUCCESS)
}

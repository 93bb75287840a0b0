//! `lb backend set-state` and `lb backend set-weight`: one admin API call each, to change a
//! backend's admin state or weight.
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};

use super::agent::{service_name, ApiArgs};
use super::out;
use lb_config::{AdminState, MAX_WEIGHT};

#[derive(Subcommand, Debug, Clone)]
pub enum BackendCommand {
    /// Set a backend's admin state: ready (takes new flows), drain (no new flows, existing
    /// ones continue) or maint (out). Prints the new state.
    SetState(SetStateArgs),
    /// Set a backend's weight (0 to 10000; 0 takes no new flows), overriding the config's
    /// and the registration's until cleared with `clear`. Kept across restarts (and, with
    /// `[cluster] etcd`, on every node). Prints the new weight, or `cleared`.
    SetWeight(SetWeightArgs),
}

/// Which backend of which service, and the API to ask.
#[derive(Args, Debug, Clone)]
pub struct BackendTarget {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The service (its `name` in lb.toml)
    #[arg(long, value_name = "NAME", value_parser = service_name)]
    pub service: String,
    /// The backend, IP:PORT ([v6]:port for IPv6), as the service lists it
    #[arg(long, value_name = "IP:PORT")]
    pub address: SocketAddr,
}

#[derive(Args, Debug, Clone)]
pub struct SetWeightArgs {
    #[command(flatten)]
    pub target: BackendTarget,
    /// The new weight, 0 to 10000, or `clear` (back to the config's or the registration's)
    #[arg(value_name = "WEIGHT|clear", value_parser = weight_or_clear)]
    pub weight: WeightArg,
}

/// A weight to set, or none (`clear`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightArg(pub Option<u32>);

fn weight_or_clear(text: &str) -> Result<WeightArg, String> {
    if text == "clear" {
        return Ok(WeightArg(None));
    }
    let weight: u32 =
        text.parse().map_err(|_| format!("{text:?} is not a weight: a whole number 0 to {MAX_WEIGHT}, or `clear`"))?;
    if weight > MAX_WEIGHT {
        return Err(format!("weight {weight} is too large; the maximum is {MAX_WEIGHT}"));
    }
    Ok(WeightArg(Some(weight)))
}

#[derive(Args, Debug, Clone)]
pub struct SetStateArgs {
    #[command(flatten)]
    pub target: BackendTarget,
    /// The new admin state
    #[arg(value_name = "STATE",
          value_parser = PossibleValuesParser::new(AdminState::NAMES).try_map(|s| s.parse::<AdminState>()))]
    pub state: AdminState,
}

pub fn backend(command: BackendCommand) -> Result<ExitCode> {
    match command {
        BackendCommand::SetState(args) => set_state(args),
        BackendCommand::SetWeight(args) => set_weight(args),
    }
}

/// Prints the weight the server reports, or `cleared`.
fn set_weight(args: SetWeightArgs) -> Result<ExitCode> {
    let t = &args.target;
    match t.api.client()?.set_weight(&t.service, t.address, args.weight.0)? {
        Some(w) => out::line(w)?,
        None => out::line("cleared")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the state the server reports; a failure is the server's message and status (via
/// `main`, exit 1).
fn set_state(args: SetStateArgs) -> Result<ExitCode> {
    let t = &args.target;
    let state = t.api.client()?.set_state(&t.service, t.address, args.state)?;
    out::line(state)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_is_a_number_up_to_the_maximum_or_clear() {
        assert_eq!(weight_or_clear("0"), Ok(WeightArg(Some(0))));
        assert_eq!(weight_or_clear("10000"), Ok(WeightArg(Some(10_000))));
        assert_eq!(weight_or_clear("clear"), Ok(WeightArg(None)));
        assert_eq!(weight_or_clear("10001").unwrap_err(), "weight 10001 is too large; the maximum is 10000");
        for bad in ["-1", "1.5", "five", "", "CLEAR"] {
            let e = weight_or_clear(bad).unwrap_err();
            assert!(e.contains("is not a weight"), "{bad:?}: {e}");
        }
    }
}

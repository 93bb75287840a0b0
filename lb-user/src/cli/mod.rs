//! The command line (the contract is in docs/cli.md): noun-verb subcommands, `--help` on each.
mod agent;
mod backend;
mod check;
mod decap;
mod doctor;
mod drain;
mod explain;
mod list;
mod out;
mod remote;
mod run;
mod segment;
mod table;
mod top;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

/// Default pin path, as in the config contract.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/lb";

#[derive(Parser, Debug)]
#[command(name = "lb", version, about = "An XDP L4 load balancer: daemon, CLI and agent")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground: load the config, attach XDP, keep the maps fed.
    Run {
        /// Config file
        #[arg(short, long, default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
        /// On SIGTERM/SIGINT, detach XDP and remove the pinned maps. Without it the program
        /// keeps forwarding with its tables and flows for the next `lb run` to adopt.
        #[arg(long)]
        detach_on_exit: bool,
    },
    /// Validate a config file: prints "ok" and exits 0, or FILE:LINE:COL errors and exits 1.
    Check {
        #[arg(short, long, default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
    },
    /// Show the data path's state, read straight from the pinned maps.
    List {
        #[arg(value_enum)]
        what: ListWhat,
        /// Where the daemon pinned its maps (daemon.pin_path)
        #[arg(long, default_value = DEFAULT_PIN_PATH)]
        pin_path: PathBuf,
        /// JSON for scripts: an array of rows (an object for `stats`)
        #[arg(long)]
        json: bool,
        /// The daemon's admin API, asked when nothing is pinned (the proxy path)
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        api: String,
    },
    /// Services and backends with their rates (new flows, packets, bytes per second),
    /// refreshed in the terminal; keys sort and filter. From the pinned maps, or the admin
    /// API when nothing is pinned (the proxy path).
    Top(top::TopArgs),
    /// Which backend a flow gets, computed with the data path's own hash and tables.
    Explain {
        /// The service's VIP, IP:PORT ([v6]:port for IPv6)
        #[arg(long)]
        vip: SocketAddr,
        /// The client, IP:PORT
        #[arg(long)]
        client: SocketAddr,
        #[arg(long, value_enum, default_value = "tcp")]
        proto: Proto,
        #[arg(long, default_value = DEFAULT_PIN_PATH)]
        pin_path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run beside a backend: register it with the LB, heartbeat its lease, and on
    /// SIGTERM/SIGINT drain, wait, deregister and exit 0.
    Agent(agent::AgentArgs),
    /// Change a registered or configured backend through the admin API.
    Backend {
        #[command(subcommand)]
        command: backend::BackendCommand,
    },
    /// Withdraw this node's BGP announcements ([cluster.bgp]) through the admin API, so the
    /// routers send new flows to the other nodes; forwarding goes on. `--undo` announces
    /// again. Prints "draining" or "announcing".
    Drain(drain::DrainArgs),
    /// Can XDP run natively on an interface, and what is in the way, each with its fix.
    ///
    /// Checks the interface, privileges (CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN), the BPF
    /// filesystem at /sys/fs/bpf, the driver (loopback has no native XDP), the MTU, LRO,
    /// a veth's peer (it needs XDP or GRO to take XDP_TX frames), rp_filter and tx checksum
    /// offload on veths. The definitive check attaches a pass-through XDP program natively
    /// for a moment and detaches it (on some NICs this briefly resets the rx queues); an
    /// XDP program already attached is left alone. Prints one line per check (ok, note or
    /// problem) and a verdict; exits 0 when native XDP attaches, 1 otherwise. The daemon's
    /// auto mode names the same reasons when it falls back to the proxy path.
    #[command(verbatim_doc_comment)]
    Doctor {
        /// The interface the data path would attach to (daemon.interface); repeat it for
        /// several NICs, which adds the redirect-target check to each
        #[arg(short, long, required = true)]
        interface: Vec<String>,
        /// JSON for scripts: an array of findings {check, status, ok, blocker, detail, fix}
        #[arg(long)]
        json: bool,
    },
    /// On a backend of an ipip/gue service: strip the tunnel headers in XDP and pass the
    /// client's packet up the stack (the VIP on lo). Runs until SIGINT/SIGTERM, then
    /// detaches and prints its counters.
    Decap(decap::DecapArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListWhat {
    Vips,
    Backends,
    Flows,
    Stats,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Runs a subcommand. One whose output goes to a pipe that was closed stops there and exits
/// 0, quietly: see `out`.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match subcommand(cli) {
        Err(e) if e.is::<out::StdoutClosed>() => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Prints an error (`lb: …`) where `main` reports it; a closed stderr is no reason to panic.
pub fn report_error(e: &anyhow::Error) {
    out::note(format!("lb: {e:#}"));
}

fn subcommand(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run { config, detach_on_exit } => run::run(&config, detach_on_exit),
        Command::Check { config } => check::check(&config),
        Command::List { what, pin_path, json, api } => list::list(what, &pin_path, &api, json),
        Command::Top(args) => top::top(args),
        Command::Explain { vip, client, proto, pin_path, json } => {
            explain::explain(vip, client, proto, &pin_path, json)
        }
        Command::Agent(args) => agent::agent(args),
        Command::Backend { command } => backend::backend(command),
        Command::Drain(args) => drain::drain(args),
        Command::Doctor { interface, json } => doctor::doctor(&interface, json),
        Command::Decap(args) => decap::decap(args),
    }
}

//! `lb agent`: runs beside a backend, registers it with the LB and keeps it registered.
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::agent::{self, AgentSettings, ApiClient, ApiUrl, Auth, Shutdown};
use lb_config::{format_duration, parse_duration, DEFAULT_WEIGHT, MAX_WEIGHT};

/// Where the daemon's token lives by default (`daemon.token_file`).
pub const DEFAULT_TOKEN_FILE: &str = "/etc/lb/token";

/// A lease shorter than this cannot be kept alive over HTTP with any margin.
const MIN_TTL: Duration = Duration::from_millis(100);
/// The admin API refuses longer leases.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// How to reach the admin API; shared by `lb agent` and `lb backend`.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// The LB's admin API (daemon.admin_listen), e.g. http://127.0.0.1:9100. A fleet's
    /// balancers: repeat the flag or list them with commas; an unreachable one, or one that
    /// answers 5xx, hands the request to the next
    #[arg(long, value_name = "URL", required = true, value_delimiter = ',')]
    pub api: Vec<ApiUrl>,
    /// File holding the bearer token for mutating API calls (daemon.token_file); when it does
    /// not exist, requests go without a token
    #[arg(long, value_name = "FILE", default_value = DEFAULT_TOKEN_FILE)]
    pub token_file: PathBuf,
}

impl ApiArgs {
    pub fn client(&self) -> Result<ApiClient> {
        Ok(ApiClient::with_token_file(self.api.clone(), &self.token_file)?)
    }
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The service (its `name` in lb.toml) this backend serves
    #[arg(long, value_name = "NAME", value_parser = service_name)]
    pub service: String,
    /// This backend's address as the LB reaches it, IP:PORT ([v6]:port for IPv6)
    #[arg(long, value_name = "IP:PORT")]
    pub address: SocketAddr,
    /// Share of new flows, 0 to 10000; 0 behaves like drain
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WEIGHT,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_WEIGHT)))]
    pub weight: u32,
    /// Lease length, with a unit (e.g. 10s, 1m30s); heartbeats go every ttl/3 and the LB
    /// drops the backend when a lease runs out
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = ttl)]
    pub ttl: Duration,
    /// On SIGTERM/SIGINT: how long to stay in drain (existing flows finish, no new ones
    /// arrive) before deregistering
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    pub drain_time: Duration,
}

pub fn agent(args: AgentArgs) -> Result<ExitCode> {
    // try_init: a test harness or an embedding program may have set a subscriber already.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("LB_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Plain text when stderr goes to a file or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    // Handlers first: a SIGTERM while the first registration is in flight must not kill us
    // with a half-done registration left behind.
    let shutdown = Shutdown::on_signals().context("cannot install SIGTERM/SIGINT handlers")?;
    let client = args.api.client()?;
    if let Auth::None { reason } = client.auth() {
        tracing::info!("{reason}: sending requests without a bearer token");
    }
    let settings = AgentSettings {
        service: args.service,
        address: args.address,
        weight: args.weight,
        ttl: args.ttl,
        drain_time: args.drain_time,
    };
    agent::run(&client, &settings, &shutdown)?;
    Ok(ExitCode::SUCCESS)
}

/// Same as the config's rule for presence; the rest (spelling, length) the server checks.
pub(super) fn service_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("service name must not be empty".to_string());
    }
    Ok(text.to_string())
}

pub(super) fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn ttl(text: &str) -> Result<Duration, String> {
    let ttl = duration(text)?;
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(format!("ttl must be between {} and {}", format_duration(MIN_TTL), format_duration(MAX_TTL)));
    }
    Ok(ttl)
}

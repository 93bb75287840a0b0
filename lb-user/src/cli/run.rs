//! `lb run -c lb.toml`: the daemon, in the foreground.
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Mode};
use crate::daemon::XdpDaemon;

pub fn run(path: &Path) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("LB_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cfg = Config::from_file(path).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    if cfg.daemon.mode == Mode::Proxy {
        bail!("daemon.mode = \"proxy\": the userspace proxy path is not part of this build yet; use \"xdp\"");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let daemon = XdpDaemon::start(&cfg)?;
        daemon.serve(path, &cfg.daemon.pin_path).await
    })?;
    Ok(ExitCode::SUCCESS)
}

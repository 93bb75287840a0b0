//! `lb run -c lb.toml`: the daemon, in the foreground.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use tracing_subscriber::EnvFilter;

pub fn run(path: &Path, detach_on_exit: bool) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("LB_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colour codes only for people: logs redirected to a file stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let checked = lb_config::Config::check_file(path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    for w in &checked.warnings {
        tracing::warn!("{}", w.warning());
    }
    let cfg = checked.config;
    // The daemon's runtime: control plane, API, health checks, XDP loader. The proxy serves
    // its listeners and connections on its own threads, a current-thread runtime per
    // worker (lb-proxy's `workers`); `daemon.workers` (0: one per core) sizes this one too,
    // for the checks and API work it carries.
    let workers = match cfg.daemon.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n as usize,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers.max(1)).enable_all().build()?;
    runtime.block_on(crate::daemon::run(cfg, path, detach_on_exit))?;
    Ok(ExitCode::SUCCESS)
}

//! `lb run`: wires the pieces together. The data path starts first (tables written, XDP
//! attached or adopted); then the controller owns it, the admin API talks to the
//! controller, health checkers report to it, and signals and the config watcher ask it to
//! reload. SIGTERM/SIGINT stop everything; the XDP program keeps forwarding unless
//! `--detach-on-exit` was given.
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::api::{self, ApiState};
use crate::config::{Config, Mode};
use crate::control::controller::{Controller, Shared};
use crate::control::registry::Registry;
use crate::control::{ControlHandle, Telemetry};
use crate::dataplane::xdp::XdpDataplane;

pub async fn run(config_path: &Path, detach_on_exit: bool) -> Result<()> {
    let cfg = Config::from_file(config_path).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    if cfg.daemon.mode == Mode::Proxy {
        bail!("daemon.mode = \"proxy\": the userspace proxy path is not part of this build yet; use \"xdp\"");
    }
    let registry = Registry::load(&cfg.daemon.state_file, Instant::now())
        .context("the state file holds registrations and admin states; fix or remove it")?;
    // Bound before the data path starts: a port conflict must not leave XDP attached.
    let listener = tokio::net::TcpListener::bind(cfg.daemon.admin_listen)
        .await
        .with_context(|| format!("admin API cannot listen on {}", cfg.daemon.admin_listen))?;
    info!(listen = %cfg.daemon.admin_listen, "admin API listening");
    let desired = Controller::desired(&cfg, &registry);
    let dataplane = tokio::task::block_in_place(|| XdpDataplane::start(&cfg, &desired))?;

    let telemetry = Arc::new(Telemetry::default());
    telemetry.update(|t| t.path = "xdp");
    let token = Arc::new(RwLock::new(api::load_token(&cfg.daemon.token_file)));
    if token.read().map(|t| t.is_none()).unwrap_or(true) {
        warn!(token_file = %cfg.daemon.token_file.display(), "no API token: every mutating API call will be refused (401)");
    }
    let ready = Arc::new(AtomicBool::new(false));
    let (commands_tx, commands) = mpsc::channel(64);
    let (reports_tx, reports) = mpsc::channel(1024);
    let (reloads_tx, reloads) = mpsc::channel(8);
    let (stop_tx, stop) = watch::channel(false);

    let api_state = ApiState {
        control: ControlHandle::new(commands_tx),
        token: token.clone(),
        telemetry: telemetry.clone(),
        pin_path: cfg.daemon.pin_path.clone(),
        ready: ready.clone(),
    };
    let mut api_stop = stop.clone();
    let api_task = tokio::spawn(api::serve(listener, api_state, async move {
        let _ = api_stop.changed().await;
    }));
    let _watcher = crate::control::watch::spawn(config_path, reloads_tx.clone())
        .inspect_err(|e| warn!("config file changes will not be noticed: {e:#}"))
        .ok();
    tokio::spawn(signals(reloads_tx, stop_tx));

    let shared = Shared { telemetry, token, ready };
    let controller = Controller::new(cfg, config_path.to_path_buf(), dataplane, registry, reports_tx, shared);
    let dataplane = controller.run(commands, reports, reloads, stop).await;
    if let Ok(Err(e)) = api_task.await {
        warn!("admin API: {e:#}");
    }
    tokio::task::block_in_place(|| dataplane.shutdown(detach_on_exit));
    Ok(())
}

/// SIGHUP reloads; SIGTERM and SIGINT stop.
async fn signals(reloads: mpsc::Sender<()>, stop: watch::Sender<bool>) -> Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = reloads.send(()).await; }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("stopping");
    let _ = stop.send(true);
    Ok(())
}

//! `lb run`: wires the pieces together. The data path starts first (tables written, XDP
//! attached or adopted); then the controller owns it, the admin API talks to the
//! controller, health checkers report to it, and signals and the config watcher ask it to
//! reload. SIGTERM/SIGINT stop everything; the XDP program keeps forwarding unless
//! `--detach-on-exit` was given. With `[cluster.bgp]` the BGP speaker (BIRD, a child of
//! this process) announces what the controller says, and SIGTERM first withdraws every VIP
//! and keeps forwarding for `cluster.drain_grace`, so the routers move new flows away
//! before this node stops. Under systemd (`Type=notify`) it says when it serves, reloads
//! and stops (see `notify`).
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::api::{self, ApiState};
use lb_config::{Config, Mode};
use lb_control::cluster::store::Store;
use lb_control::cluster::SpeakerThread;
use lb_control::controller::{Controller, Shared};
use lb_control::registry::Registry;
use lb_control::{ControlHandle, DataPath, ReadyFlag, Telemetry};
use lb_proxy::{ProxyDataplane, ProxyStats};
use lb_xdp::lock::PinPathBusy;
use lb_xdp::xdp::XdpDataplane;

/// `cfg` is the config already read from `config_path` (reloads read the path again).
pub async fn run(cfg: Config, config_path: &Path, detach_on_exit: bool) -> Result<()> {
    // Registered first: a SIGTERM that arrives while the data path starts (or right after
    // "lb is serving") must stop the daemon cleanly, not kill it with the default action.
    let signals = OsSignals::register()?;
    raise_descriptor_limit();
    // A state file that does not parse is moved aside (logged loudly) and the daemon starts
    // without it; only one that cannot be read at all (permissions, I/O) stops the start.
    let registry = Registry::load(&cfg.daemon.state_file, Instant::now())
        .context("the state file holds registrations, admin states and remembered health; fix its permissions")?;
    // Bound before the data path starts: a port conflict must not leave XDP attached.
    let listener = tokio::net::TcpListener::bind(cfg.daemon.admin_listen)
        .await
        .with_context(|| format!("admin API cannot listen on {}", cfg.daemon.admin_listen))?;
    info!(listen = %cfg.daemon.admin_listen, "admin API listening");
    let telemetry = Arc::new(Telemetry::default());
    // Before the data path too: a client that cannot be set up must not leave XDP attached.
    let store = shared_store(&cfg, &telemetry).await?;
    let desired = Controller::desired(&cfg, &registry);
    let Started { path: dataplane, proxy_stats } = start_path(&cfg, &desired)?;
    info!(path = dataplane.name(), "lb is serving");

    let path_name = dataplane.name();
    telemetry.update(|t| t.path = path_name);
    let token = Arc::new(RwLock::new(lb_config::Tokens::load(&cfg.daemon.token_file)));
    match token.read().map(|t| t.len()).unwrap_or(0) {
        0 => {
            warn!(token_file = %cfg.daemon.token_file.display(), "no API token: every mutating API call will be refused (401)")
        }
        1 => {}
        n => {
            info!(token_file = %cfg.daemon.token_file.display(), tokens = n, "the admin API accepts any of several tokens")
        }
    }
    let ready = ReadyFlag::default();
    let (commands_tx, commands) = mpsc::channel(64);
    let (reports_tx, reports) = mpsc::channel(1024);
    let (reloads_tx, reloads) = mpsc::channel(8);
    let (stop_tx, stop) = watch::channel(false);

    let mut control = ControlHandle::new(commands_tx);
    if let Some(store) = &store {
        control = control.with_store(store.clone());
        tokio::spawn(lb_control::cluster::store_watch::run(store.clone(), control.clone(), stop.clone()));
    }
    let api_state = ApiState {
        control: control.clone(),
        token: token.clone(),
        admin_listen: cfg.daemon.admin_listen,
        flow_walks: api::FlowWalks::default(),
        telemetry: telemetry.clone(),
        pin_path: cfg.daemon.pin_path.clone(),
        ready: ready.clone(),
        proxy: proxy_stats,
    };
    let mut api_stop = stop.clone();
    let api_task = tokio::spawn(api::serve(listener, api_state, async move {
        let _ = api_stop.changed().await;
    }));
    let _watcher = lb_control::watch::spawn(config_path, reloads_tx)
        .inspect_err(|e| warn!("config file changes will not be noticed: {e:#}"))
        .ok();
    let bgp = cfg.cluster.as_ref().and_then(|c| c.bgp.clone());
    let grace = cfg.cluster.as_ref().filter(|_| bgp.is_some()).map(|c| c.drain_grace);
    tokio::spawn(signals.forward(control.clone(), path_name, stop_tx, grace));

    let drain = cfg.daemon.drain_timeout;
    let shared_ready = ready.clone();
    let shared = Shared { telemetry: telemetry.clone(), token, ready };
    let mut controller = Controller::new(cfg, config_path.to_path_buf(), dataplane, registry, reports_tx, shared);
    if let Some(store) = store {
        // Circuit breakers' ejections go to the fleet through the store.
        let (ejections_tx, ejections) = mpsc::unbounded_channel();
        controller = controller.with_ejection_sink(ejections_tx);
        tokio::spawn(store.share_ejections(ejections));
    }
    // The controller first: the speaker's first BIRD config already holds what to announce.
    let mut speaker = None;
    if let Some(bgp) = bgp {
        let (announce_tx, announce_rx) = watch::channel(Default::default());
        controller = controller.with_announcements(announce_tx);
        speaker = Some(SpeakerThread::spawn(bgp, announce_rx, telemetry)?);
    }
    tokio::spawn(notify_when_ready(shared_ready, path_name));
    let dataplane = controller.run(commands, reports, reloads, stop).await;
    if let Some(speaker) = speaker {
        speaker.stop().await;
    }
    if let Ok(Err(e)) = api_task.await {
        warn!("admin API: {e:#}");
    }
    dataplane.shutdown(detach_on_exit, drain).await;
    Ok(())
}

/// With `[cluster] etcd`: the API's writes go through the shared store, and a task
/// follows it for the controller. The client connects lazily: while etcd is down the node
/// serves what its state file held, and keeps trying.
async fn shared_store(cfg: &Config, telemetry: &Arc<Telemetry>) -> Result<Option<Store>> {
    let Some(cluster) = cfg.cluster.as_ref().filter(|c| !c.etcd.is_empty()) else { return Ok(None) };
    let store = Store::connect(&cluster.etcd, &cluster.etcd_prefix, telemetry.clone())
        .await
        .context("cannot set up the etcd client")?;
    info!(etcd = %cluster.etcd.join(","), prefix = %cluster.etcd_prefix, "registrations and admin states are shared through etcd");
    Ok(Some(store))
}

/// Raise the soft descriptor limit to the hard one (see `descriptors`) and log both.
fn raise_descriptor_limit() {
    match crate::descriptors::raise_to_hard() {
        Ok((before, after)) => info!(
            soft_before = before.soft,
            soft = after.soft,
            hard = after.hard,
            "file descriptor limit (RLIMIT_NOFILE): soft raised to the hard limit"
        ),
        Err(e) => warn!("could not raise the file descriptor limit (RLIMIT_NOFILE): {e}"),
    }
}

/// The data path that serves, and the proxy's counters when it is the proxy (the admin
/// API's scrape reads them; the XDP path's are read from the pinned maps).
struct Started {
    path: Box<dyn DataPath>,
    proxy_stats: Option<Arc<ProxyStats>>,
}

/// `mode = "xdp"`: XDP or fail. `"proxy"`: the proxy. `"auto"`: XDP when it can run here,
/// else the proxy, with a warning that names every reason (the same findings as
/// `lb doctor`).
fn start_path(cfg: &Config, desired: &lb_config::desired::Desired) -> Result<Started> {
    let proxy = || -> Result<Started> {
        let p = ProxyDataplane::start(desired)?;
        let proxy_stats = Some(p.stats());
        Ok(Started { path: Box::new(p), proxy_stats })
    };
    let xdp = || -> Result<Started> {
        let x = tokio::task::block_in_place(|| XdpDataplane::start(cfg, desired))?;
        Ok(Started { path: Box::new(x), proxy_stats: None })
    };
    match cfg.daemon.mode {
        Mode::Xdp => xdp(),
        Mode::Proxy => proxy(),
        Mode::Auto => match xdp_can_serve(cfg).and_then(|_| xdp()) {
            Ok(started) => Ok(started),
            // Another daemon serves this data path: the proxy beside it would be a second
            // daemon on the same VIPs, not a fallback.
            Err(e) if e.chain().any(|c| c.is::<PinPathBusy>()) => Err(e),
            Err(e) => {
                let mut reasons = vec![format!("{e:#}")];
                for interface in &cfg.daemon.interfaces {
                    reasons.extend(crate::doctor::blockers(interface).into_iter().map(|f| match f.fix {
                        Some(fix) => format!("{}: {} (fix: {fix})", f.check, f.detail),
                        None => format!("{}: {}", f.check, f.detail),
                    }));
                }
                warn!(reasons = %reasons.join("; "), "XDP cannot serve here: falling back to the userspace proxy (mode = \"auto\")");
                proxy()
            }
        },
    }
}

/// What the config alone rules out for XDP.
fn xdp_can_serve(cfg: &Config) -> Result<()> {
    if cfg.daemon.interface.is_none() {
        bail!("no daemon.interface to attach XDP to");
    }
    if let Some(s) = cfg.services.iter().find(|s| s.vip.ip().is_unspecified()) {
        bail!("service {}: VIP {} has no specific address, which only the proxy can serve", s.name, s.vip);
    }
    Ok(())
}

/// What `systemctl status` shows while the daemon serves.
fn serving(path: &str) -> String {
    format!("serving on the {path} path")
}

/// `READY=1` to systemd the moment `/readyz` answers ready (the controller sets the flag
/// when its loop starts: the data path serves, the checkers run).
async fn notify_when_ready(ready: ReadyFlag, path: &'static str) {
    const LIMIT: Duration = Duration::from_secs(120);
    if tokio::time::timeout(LIMIT, ready.wait()).await.is_err() {
        warn!("the controller did not turn ready within {LIMIT:?}: systemd is not told READY=1");
        return;
    }
    crate::notify::ready(&serving(path));
}

/// A SIGHUP's reload, awaited so that systemd hears `READY=1` only once it has ended; a
/// failed reload keeps the running config (the controller logs why), so the daemon is
/// ready again either way.
async fn reload_on_hangup(control: &ControlHandle, path: &str) {
    crate::notify::reloading();
    let status = match control.reload().await {
        Ok(()) => format!("{}; config reloaded", serving(path)),
        Err(e) => format!("{}; the last reload failed, the running config stays: {e}", serving(path)),
    };
    crate::notify::ready(&status);
}

/// SIGHUP reloads; SIGTERM and SIGINT stop.
struct OsSignals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl OsSignals {
    fn register() -> Result<Self> {
        Ok(OsSignals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// SIGHUP reloads (systemd's `ExecReload`, told when it begins and ends); SIGTERM and
    /// SIGINT stop the daemon. With `drain` (BGP): first withdraw every VIP and keep serving
    /// for the grace, so new flows move to other nodes while this one still forwards those
    /// that arrive; a second signal cuts it short.
    async fn forward(
        mut self,
        control: ControlHandle,
        path: &'static str,
        stop: watch::Sender<bool>,
        drain: Option<Duration>,
    ) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => reload_on_hangup(&control, path).await,
                _ = self.term.recv() => break,
                _ = self.int.recv() => break,
            }
        }
        crate::notify::stopping();
        if let Some(grace) = drain {
            match control.drain(true).await {
                Ok(_) => {
                    info!(grace = ?grace, "stopping: every VIP withdrawn, forwarding goes on for the drain grace");
                    tokio::select! {
                        _ = tokio::time::sleep(grace) => {}
                        _ = self.term.recv() => info!("second signal: the drain grace is cut short"),
                        _ = self.int.recv() => info!("second signal: the drain grace is cut short"),
                    }
                }
                Err(e) => warn!("stopping without a drain: {e}"),
            }
        }
        info!("stopping");
        let _ = stop.send(true);
    }
}

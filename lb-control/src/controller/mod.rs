//! The controller task: the one owner of the desired state and of the data path. Sources
//! arrive as messages (API commands, health reports, reload requests, the lease clock); each
//! change recomputes the desired state and reconciles, then the health checkers are brought
//! in line with the backends that now exist.
//!
//! The loop and the reconcile are here; each concern's handlers are in their own file:
//! `registrations` (agents and admin states), `shared` (the shared store's changes), `checks` (active health), `ejections`
//! (passive outcomes and circuit breakers), `retiring` (removed backends' grace period),
//! `weights` (weights set through the API), `slow_start` (ramps) and `views` (what the API
//! shows).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, info_span, warn};

use crate::breaker::Breaker;
use crate::datapath::DataPath;
use crate::handle::{ControlError, Request};
use crate::health::{CheckResult, Report, Tracker};
use crate::registry::{BackendKey, Registry};
use crate::sources;
use crate::telemetry::Telemetry;
use checks::Checker;
use lb_config::desired::{Desired, DesiredBackend};
use lb_config::Config;

mod announcements;
mod checks;
mod ejections;
mod memory;
mod registrations;
mod retiring;
mod shared;
mod shared_ejections;
mod slow_start;
mod views;
mod weights;

#[cfg(test)]
mod tests;

/// How often leases are checked and next-hop MACs refreshed.
const TICK: Duration = Duration::from_secs(1);
/// A backend no source names any more (removed from the config, deregistered, lease run
/// out) drains this long before it leaves: requests in flight finish instead of being
/// re-steered mid-connection to a backend that would reset them. Backends that are down or
/// in maintenance are cut at once.
pub const REMOVAL_GRACE: Duration = Duration::from_secs(10);
/// How often the data path's passive outcomes are read: an ejection follows the failures
/// that cause it within this (plus a reconcile).
const PASSIVE_POLL: Duration = Duration::from_millis(100);
/// Every this many ticks the live-flow counts least_conn and p2c use are recounted.
const ACTIVE_RECOUNT_TICKS: u64 = 3;
/// Ticks between sweeps of ended flows out of the XDP flow and NAT tables (a walk of both).
const SWEEP_TICKS: u64 = 10;

/// Everything outside the controller that it needs to reach.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    /// The admin API's accepted bearer tokens (`token_file`, one per line).
    pub token: Arc<RwLock<lb_config::Tokens>>,
    pub ready: crate::ReadyFlag,
}

pub struct Controller {
    cfg: Config,
    config_path: PathBuf,
    dataplane: Box<dyn DataPath>,
    registry: Registry,
    trackers: HashMap<BackendKey, Tracker>,
    last_checks: HashMap<BackendKey, CheckResult>,
    checkers: HashMap<BackendKey, Checker>,
    /// The id the next checker gets.
    next_checker: u64,
    /// The marks of tunnelled health checks (encapsulating services' backends).
    marks: crate::tunnel_check::Marks,
    /// Said once: encapsulating services' checks cannot go through a tunnel here.
    warned_no_tunnel: bool,
    reports_tx: mpsc::Sender<Report>,
    shared: Shared,
    desired: Desired,
    retiring: HashMap<BackendKey, (Instant, DesiredBackend)>,
    breakers: HashMap<BackendKey, Breaker>,
    /// The data path's outcome counters have been read since passive ejection was last
    /// off: what they report now happened while some breaker was on.
    outcomes_primed: bool,
    ticks: u64,
    /// `[cluster.bgp]`: where each reconcile's announcement goes (see `announcements`).
    announce: Option<tokio::sync::watch::Sender<crate::cluster::Announcement>>,
    /// `lb drain`, SIGTERM with BGP: every VIP withdrawn, forwarding unchanged.
    draining: bool,
    /// `[cluster] etcd` at start: registrations and admin states are the shared store's
    /// (see `shared`), and etcd's leases, not this node's clock, end registrations.
    store_backed: bool,
    /// `[cluster] etcd`: where this node's circuit-breaker ejections go to be shared (see
    /// `shared_ejections`).
    ejections_out: Option<mpsc::UnboundedSender<crate::cluster::SharedEjection>>,
    /// Slow start: when each ramping backend joined the rotation (see `slow_start`).
    ramps: HashMap<BackendKey, Instant>,
}

impl Controller {
    pub fn new(
        cfg: Config,
        config_path: PathBuf,
        dataplane: Box<dyn DataPath>,
        registry: Registry,
        reports_tx: mpsc::Sender<Report>,
        shared: Shared,
    ) -> Self {
        // What the state file holds may be older than the config: the start's desired state
        // left those registrations out already (see `sources`); here they leave for good.
        let now = Instant::now();
        let desired = memory::desired_at_start(&cfg, &registry, now);
        let store_backed = cfg.cluster.as_ref().is_some_and(|c| !c.etcd.is_empty());
        let mut controller = Controller {
            cfg,
            config_path,
            dataplane,
            registry,
            trackers: HashMap::new(),
            last_checks: HashMap::new(),
            checkers: HashMap::new(),
            next_checker: 0,
            marks: Default::default(),
            warned_no_tunnel: false,
            reports_tx,
            shared,
            desired,
            retiring: HashMap::new(),
            breakers: HashMap::new(),
            outcomes_primed: false,
            ticks: 0,
            announce: None,
            draining: false,
            store_backed,
            ejections_out: None,
            ramps: HashMap::new(),
        };
        controller.restore_memory(now);
        let dropped = controller.drop_refused_at_start();
        controller.forget_misfit_registrations(dropped);
        controller
    }

    /// The desired state a start serves first: the config and the state file's
    /// registrations, less those a start refuses (see `Registry::refused_at_start`, which
    /// `new` then drops for good), with the health and ejections the state file remembered
    /// (see `memory`).
    pub fn desired(cfg: &Config, registry: &Registry) -> Desired {
        memory::desired_at_start(cfg, registry, Instant::now())
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Request>,
        mut reports: mpsc::Receiver<Report>,
        mut reloads: mpsc::Receiver<()>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Box<dyn DataPath> {
        self.sync_checkers();
        self.shared.ready.set(true);
        let mut tick = tokio::time::interval(TICK);
        let mut passive = tokio::time::interval(PASSIVE_POLL);
        passive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(cmd) = commands.recv() => self.command(cmd),
                Some(report) = reports.recv() => self.health_report(report),
                Some(()) = reloads.recv() => { let _ = self.reload(); }
                _ = tick.tick() => self.tick(),
                _ = passive.tick() => self.passive(),
                _ = stop.changed() => break,
            }
        }
        self.shared.ready.set(false);
        // The ejections' clocks moved on since the last change: save where they are now.
        self.persist();
        for (_, checker) in self.checkers.drain() {
            checker.task.abort();
        }
        self.dataplane
    }

    fn command(&mut self, cmd: Request) {
        match cmd {
            Request::Services(reply) => {
                let _ = reply.send(Ok(self.views()));
            }
            Request::Register { service, address, weight, ttl, reply } => {
                let _ = reply.send(self.register(service, address, weight, ttl));
            }
            Request::Heartbeat { service, address, reply } => {
                let _ = reply.send(self.heartbeat(BackendKey::new(service, address)));
            }
            Request::SetState { service, address, state, reply } => {
                let _ = reply.send(self.set_state(&service, address, state));
            }
            Request::SetWeight { service, address, weight, reply } => {
                let _ = reply.send(self.set_weight(&service, address, weight));
            }
            Request::Deregister { service, address, reply } => {
                let _ = reply.send(self.deregister(BackendKey::new(service, address)));
            }
            Request::Reload(reply) => {
                let _ = reply.send(self.reload());
            }
            Request::Drain { drain, reply } => {
                let _ = reply.send(self.drain(drain));
            }
            Request::Check { proposal, reply } => {
                let _ = reply.send(self.check(&proposal));
            }
            Request::Store(change) => self.store_change(change),
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        self.end_grace_periods(now);
        if self.ramping() {
            self.apply();
        }
        if self.leases_run_out_here() {
            self.expire_leases(now);
        }
        let (dataplane, desired) = (&mut self.dataplane, &self.desired);
        match off_runtime(|| dataplane.refresh_neighbours(desired)) {
            Ok(true) => self.apply(),
            Ok(false) => {}
            Err(e) => warn!("neighbour refresh failed: {e:#}"),
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(ACTIVE_RECOUNT_TICKS) {
            let dataplane = &mut self.dataplane;
            if let Err(e) = off_runtime(|| dataplane.recount_active_flows()) {
                warn!("recounting live flows failed: {e:#}");
            }
        }
        if self.ticks.is_multiple_of(SWEEP_TICKS) {
            let dataplane = &mut self.dataplane;
            if let Err(e) = off_runtime(|| dataplane.sweep_flows()) {
                warn!("sweeping ended flows failed: {e:#}");
            }
        }
    }

    /// Validate first; on any error the running config stays.
    fn reload(&mut self) -> Result<(), ControlError> {
        let _span = info_span!("reload", path = %self.config_path.display()).entered();
        let result = Config::check_file(&self.config_path)
            .map_err(|e| ControlError::InvalidConfig(e.diagnostics().to_vec()))
            .and_then(|checked| {
                for w in &checked.warnings {
                    warn!("{}", w.warning());
                }
                self.adopt_config(checked.config)
            });
        match &result {
            Ok(()) => {
                info!("config reloaded");
                self.shared.telemetry.update(|t| t.reloads_success += 1);
            }
            Err(e) => {
                warn!("config reload failed, the running config stays:\n{e}");
                self.shared.telemetry.update(|t| t.reloads_failure += 1);
            }
        }
        result
    }

    /// Everything derived from the config follows it in the same reconcile: registrations
    /// it no longer takes leave, and health comes only from checkers whose settings are the
    /// new config's (a removed or changed check leaves its backends `unknown`; see
    /// `checks`). The data path is then what a fresh start with this config and these
    /// sources would build.
    fn adopt_config(&mut self, cfg: Config) -> Result<(), ControlError> {
        let old = std::mem::replace(&mut self.cfg, cfg);
        let dropped = self.drop_misfit_registrations();
        if let Err(e) = self.dataplane.set_global(&self.cfg).and_then(|_| self.reconcile()) {
            self.cfg = old;
            for (key, registration, _) in dropped {
                self.registry.registrations.insert(key, registration);
            }
            let _ = self.dataplane.set_global(&self.cfg);
            self.apply();
            return Err(ControlError::NotApplied(format!("{e:#}")));
        }
        self.forget_misfit_registrations(dropped);
        if let Ok(mut t) = self.shared.token.write() {
            *t = lb_config::Tokens::load(&self.cfg.daemon.token_file);
        }
        self.sync_checkers();
        Ok(())
    }

    fn reconcile(&mut self) -> anyhow::Result<()> {
        let mut next = sources::desired(&self.cfg, &self.registry, &self.health_map());
        let now = Instant::now();
        self.track_retiring(&next, now);
        self.forget_breakers(&next);
        self.apply_circuits(&mut next);
        self.add_retiring(&mut next);
        self.apply_ramps(&mut next, now);
        self.desired = next;
        self.publish_announcement();
        // One quick look (no waiting): a backend whose MAC is still unknown stays out of
        // the tables until the tick's refresh finds it.
        if let Err(e) = self.dataplane.refresh_neighbours(&self.desired) {
            warn!("neighbour lookup failed: {e:#}");
        }
        self.dataplane.reconcile(&self.desired)
    }

    /// Reconcile after a change of sources; a failure is logged (the old tables stay).
    fn apply(&mut self) {
        if let Err(e) = self.reconcile() {
            warn!("reconcile failed, the data path keeps its previous tables: {e:#}");
        }
        self.sync_checkers();
    }

    /// Write the state file: registrations, admin states, and what is remembered of health.
    fn persist(&mut self) {
        self.registry.remembered = self.remember(Instant::now());
        if let Err(e) = self.registry.save() {
            warn!("could not write the state file: {e:#}");
        }
    }
}

/// Run blocking work (a walk of the whole flow table, reading the neighbour table) without
/// holding up the runtime's other tasks (the admin API, the health checkers): on a
/// multi-threaded runtime the worker hands its other tasks to a new one while `work`
/// runs (`block_in_place`, since the controller cannot lend its data path to another
/// thread); a current-thread runtime (tests) has no other worker to hand them to.
fn off_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

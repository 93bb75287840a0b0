//! The controller task: the one owner of the desired state and of the data path. Sources
//! arrive as messages (API commands, health reports, reload requests, the lease clock); each
//! change recomputes the desired state and reconciles, then the health checkers are brought
//! in line with the backends that now exist.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn};

use super::breaker::{self, Breaker, Change};
use super::handle::{ApiError, Command};
use super::health::{self, CheckResult, Report, Tracker};
use super::registry::{BackendKey, Registry};
use super::sources;
use super::telemetry::Telemetry;
use super::view::{BackendView, CheckView, ServiceView};
use lb_config::{AdminState, Config, HealthCheck, HealthCheckType};
use crate::datapath::DataPath;
use lb_config::desired::{source_names, Desired, DesiredBackend, Health, SOURCE_RETIRING};

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

/// Why the controller's loop ended.
pub enum Exit {
    Stop,
}

/// Everything outside the controller that it needs to reach.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    pub token: Arc<RwLock<Option<String>>>,
    pub ready: Arc<AtomicBool>,
}

pub struct Controller {
    cfg: Config,
    config_path: PathBuf,
    dataplane: Box<dyn DataPath>,
    registry: Registry,
    trackers: HashMap<BackendKey, Tracker>,
    last_checks: HashMap<BackendKey, CheckResult>,
    checkers: HashMap<BackendKey, (HealthCheck, JoinHandle<()>)>,
    reports_tx: mpsc::Sender<Report>,
    shared: Shared,
    desired: Desired,
    retiring: HashMap<BackendKey, (Instant, DesiredBackend)>,
    breakers: HashMap<BackendKey, Breaker>,
    /// The data path's outcome counters have been read since passive ejection was last
    /// off: what they report now happened while some breaker was on.
    outcomes_primed: bool,
    ticks: u64,
}

impl Controller {
    pub fn new(cfg: Config, config_path: PathBuf, dataplane: Box<dyn DataPath>, registry: Registry, reports_tx: mpsc::Sender<Report>, shared: Shared) -> Self {
        let desired = sources::desired(&cfg, &registry, &HashMap::new());
        Controller {
            cfg,
            config_path,
            dataplane,
            registry,
            trackers: HashMap::new(),
            last_checks: HashMap::new(),
            checkers: HashMap::new(),
            reports_tx,
            shared,
            desired,
            retiring: HashMap::new(),
            breakers: HashMap::new(),
            outcomes_primed: false,
            ticks: 0,
        }
    }

    /// The desired state for the current sources (also what `start` was given).
    pub fn desired(cfg: &Config, registry: &Registry) -> Desired {
        sources::desired(cfg, registry, &HashMap::new())
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut reports: mpsc::Receiver<Report>,
        mut reloads: mpsc::Receiver<()>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Box<dyn DataPath> {
        self.sync_checkers();
        self.shared.ready.store(true, Ordering::SeqCst);
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
        self.shared.ready.store(false, Ordering::SeqCst);
        for (_, (_, task)) in self.checkers.drain() {
            task.abort();
        }
        self.dataplane
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Services(reply) => {
                let _ = reply.send(Ok(self.views()));
            }
            Command::Register { service, address, weight, ttl, reply } => {
                let _ = reply.send(self.register(service, address, weight, ttl));
            }
            Command::Heartbeat { service, address, reply } => {
                let key = BackendKey::new(service, address);
                let r = if self.registry.heartbeat(&key, Instant::now()) {
                    Ok(())
                } else {
                    Err(ApiError::NotFound(format!("{} has no registration in service {}", key.address, key.service)))
                };
                let _ = reply.send(r);
            }
            Command::SetState { service, address, state, reply } => {
                let r = self.known_backend(&service, address).map(|key| {
                    info!(service = %key.service, backend = %key.address, %state, "admin state set");
                    self.registry.states.insert(key, state);
                    self.persist();
                    self.apply();
                });
                let _ = reply.send(r);
            }
            Command::Deregister { service, address, reply } => {
                let key = BackendKey::new(service, address);
                let r = if self.registry.remove(&key) {
                    info!(service = %key.service, backend = %key.address, "deregistered");
                    self.forget_state_unless_configured(&key);
                    self.persist();
                    self.apply();
                    Ok(())
                } else {
                    Err(ApiError::NotFound(format!("{} has no registration in service {}", key.address, key.service)))
                };
                let _ = reply.send(r);
            }
            Command::Reload(reply) => {
                let _ = reply.send(self.reload());
            }
        }
    }

    fn register(&mut self, service: String, address: SocketAddr, weight: u32, ttl: Duration) -> Result<bool, ApiError> {
        let Some(s) = self.cfg.services.iter().find(|s| s.name == service) else {
            return Err(ApiError::NotFound(format!("no service named {service}")));
        };
        if s.vip.is_ipv4() != address.is_ipv4() {
            return Err(ApiError::BadRequest(format!("{address} is not of the address family of {}'s VIP {}", s.name, s.vip)));
        }
        if s.forwarding == lb_config::Forwarding::Dsr && address.port() != s.vip.port() {
            return Err(ApiError::BadRequest(format!("dsr backends hold the VIP on loopback, so the port must be the VIP's ({})", s.vip.port())));
        }
        let new = self.registry.register(BackendKey::new(service.clone(), address), weight, ttl, Instant::now());
        self.shared.telemetry.update(|t| t.registrations_total += 1);
        if new {
            info!(service, backend = %address, weight, ttl = ?ttl, "registered");
        }
        self.persist();
        self.apply();
        Ok(new)
    }

    /// A backend that leaves every source takes its API-set admin state with it: an agent
    /// that drained, deregistered and comes back later starts `ready`, not stuck in drain.
    fn forget_state_unless_configured(&mut self, key: &BackendKey) {
        let configured = self.cfg.services.iter().any(|s| s.name == key.service && s.backends.iter().any(|b| b.address == key.address));
        if !configured {
            self.registry.states.remove(key);
        }
    }

    fn known_backend(&self, service: &str, address: SocketAddr) -> Result<BackendKey, ApiError> {
        let s = self
            .desired
            .services
            .iter()
            .find(|s| s.name == service)
            .ok_or_else(|| ApiError::NotFound(format!("no service named {service}")))?;
        if !s.backends.iter().any(|b| b.address == address) {
            return Err(ApiError::NotFound(format!("service {service} has no backend {address}")));
        }
        Ok(BackendKey::new(service, address))
    }

    fn health_report(&mut self, r: Report) {
        let key = BackendKey::new(r.service, r.address);
        let Some((check, _)) = self.checkers.get(&key) else { return };
        let (healthy, unhealthy) = (check.healthy_threshold, check.unhealthy_threshold);
        let seconds = r.result.duration.as_secs_f64();
        self.shared.telemetry.update(|t| {
            t.health_check_seconds.entry((key.service.clone(), key.address.to_string())).or_default().observe(seconds);
        });
        let changed = self.trackers.entry(key.clone()).or_default().record(r.result.ok, healthy, unhealthy);
        if let Some(h) = changed {
            info!(service = %key.service, backend = %key.address, health = h.as_str(), detail = %r.result.detail, "health changed");
            if h == Health::Up {
                if let Some(Change::Closed) = self.breakers.get_mut(&key).and_then(Breaker::health_recovered) {
                    info!(service = %key.service, backend = %key.address, "circuit closed: the health check passes again");
                }
            }
        }
        self.last_checks.insert(key, r.result);
        if changed.is_some() {
            self.apply();
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let before = self.retiring.len();
        self.retiring.retain(|_, (deadline, _)| *deadline > now);
        if self.retiring.len() != before {
            self.apply();
        }
        let expired = self.registry.expire(now);
        if !expired.is_empty() {
            for key in &expired {
                info!(service = %key.service, backend = %key.address, "lease expired");
                self.forget_state_unless_configured(key);
            }
            self.shared.telemetry.update(|t| t.lease_expirations_total += expired.len() as u64);
            self.persist();
            self.apply();
        }
        match self.dataplane.refresh_neighbours(&self.desired) {
            Ok(true) => self.apply(),
            Ok(false) => {}
            Err(e) => warn!("neighbour refresh failed: {e:#}"),
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(ACTIVE_RECOUNT_TICKS) {
            if let Err(e) = self.dataplane.recount_active_flows() {
                warn!("recounting live flows failed: {e:#}");
            }
        }
    }

    /// Feed the data path's passive outcomes to the circuit breakers, run their clocks, and
    /// reconcile when one changed.
    fn passive(&mut self) {
        // No breaker configured: nothing to read every 100 ms. The first read after one is
        // turned on only sets the baseline, so old failures do not count against it.
        if !self.cfg.services.iter().any(|s| s.circuit_breaker.consecutive_failures > 0) {
            self.outcomes_primed = false;
            return;
        }
        let outcomes = self.dataplane.outcomes();
        if !std::mem::replace(&mut self.outcomes_primed, true) {
            return;
        }
        let now = Instant::now();
        let mut changed = false;
        for crate::datapath::Outcome { backend: key, succeeded, failed } in outcomes {
            let Some(cfg) = self.breaker_config(&key.service) else { continue };
            let may_eject = self.may_eject(&key.service, cfg.max_ejected_percent);
            let change = self.breakers.entry(key.clone()).or_default().observe(succeeded, failed, &cfg, may_eject, now);
            changed |= self.log_change(&key, change);
        }
        let mut clock = Vec::new();
        for (key, b) in &mut self.breakers {
            clock.push((key.clone(), b.tick(now)));
        }
        for (key, change) in clock {
            changed |= self.log_change(&key, change);
        }
        if changed {
            self.apply();
        }
    }

    fn log_change(&self, key: &BackendKey, change: Option<Change>) -> bool {
        match change {
            Some(Change::Ejected(time)) => warn!(service = %key.service, backend = %key.address, ejection = ?time, "circuit open: backend ejected after failed flows"),
            Some(Change::HalfOpen) => info!(service = %key.service, backend = %key.address, "circuit half-open: one trial flow"),
            Some(Change::Closed) => info!(service = %key.service, backend = %key.address, "circuit closed: the trial flow succeeded"),
            Some(Change::Rearm) => {}
            None => return false,
        }
        true
    }

    /// The service's breaker settings, if passive ejection is on.
    fn breaker_config(&self, service: &str) -> Option<lb_config::CircuitBreaker> {
        let s = self.cfg.services.iter().find(|s| s.name == service)?;
        (s.circuit_breaker.consecutive_failures > 0).then_some(s.circuit_breaker)
    }

    /// Would one more ejection in `service` stay within `max_ejected_percent`?
    fn may_eject(&self, service: &str, percent: u32) -> bool {
        let Some(s) = self.desired.services.iter().find(|s| s.name == service) else { return false };
        let ejected = s.backends.iter().filter(|b| self.breakers.get(&BackendKey::new(service, b.address)).is_some_and(Breaker::ejected)).count();
        breaker::within_percent(ejected, s.backends.len(), percent)
    }

    /// Validate first; on any error the running config stays.
    fn reload(&mut self) -> Result<(), ApiError> {
        let _span = info_span!("reload", path = %self.config_path.display()).entered();
        let result = Config::from_file(&self.config_path)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))
            .and_then(|cfg| self.adopt_config(cfg));
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

    fn adopt_config(&mut self, cfg: Config) -> Result<(), ApiError> {
        let old = std::mem::replace(&mut self.cfg, cfg);
        if let Err(e) = self.dataplane.set_global(&self.cfg).and_then(|_| self.reconcile()) {
            self.cfg = old;
            let _ = self.dataplane.set_global(&self.cfg);
            self.apply();
            return Err(ApiError::Unprocessable(format!("{e:#}")));
        }
        if let Ok(mut t) = self.shared.token.write() {
            *t = lb_config::load_token(&self.cfg.daemon.token_file);
        }
        self.sync_checkers();
        Ok(())
    }

    fn health_map(&self) -> HashMap<BackendKey, Health> {
        self.trackers.iter().map(|(k, t)| (k.clone(), t.health)).collect()
    }

    fn reconcile(&mut self) -> anyhow::Result<()> {
        let mut next = sources::desired(&self.cfg, &self.registry, &self.health_map());
        self.track_retiring(&next, Instant::now());
        self.forget_breakers(&next);
        for s in &mut next.services {
            for b in &mut s.backends {
                if let Some(br) = self.breakers.get(&BackendKey::new(&s.name, b.address)) {
                    b.circuit = br.circuit();
                }
            }
        }
        for s in &mut next.services {
            for (BackendKey { service, .. }, (_, b)) in &self.retiring {
                if service == &s.name {
                    s.backends.push(b.clone());
                }
            }
        }
        self.desired = next;
        // One quick look (no waiting): a backend whose MAC is still unknown stays out of
        // the tables until the tick's refresh finds it.
        if let Err(e) = self.dataplane.refresh_neighbours(&self.desired) {
            warn!("neighbour lookup failed: {e:#}");
        }
        self.dataplane.reconcile(&self.desired)
    }

    /// Breakers go with their backend, and all of a service's when passive ejection is
    /// turned off.
    fn forget_breakers(&mut self, next: &Desired) {
        let cfg = &self.cfg;
        self.breakers.retain(|BackendKey { service, address }, _| {
            let on = cfg.services.iter().any(|s| &s.name == service && s.circuit_breaker.consecutive_failures > 0);
            on && next.services.iter().any(|s| &s.name == service && s.backends.iter().any(|b| b.address == *address))
        });
    }

    /// Backends that were there and are no longer named start their grace period; ones
    /// named again stop retiring.
    fn track_retiring(&mut self, next: &Desired, now: Instant) {
        let named = |service: &str, address: SocketAddr| {
            next.services.iter().find(|s| s.name == service).map(|s| s.backends.iter().any(|b| b.address == address))
        };
        for s in &self.desired.services {
            for b in s.backends.iter().filter(|b| b.sources != SOURCE_RETIRING) {
                if named(&s.name, b.address) == Some(false) {
                    info!(service = %s.name, backend = %b.address, grace = ?REMOVAL_GRACE, "backend removed: draining its flows");
                    let retiring = DesiredBackend { state: AdminState::Drain, sources: SOURCE_RETIRING, ..b.clone() };
                    self.retiring.insert(BackendKey::new(&s.name, b.address), (now + REMOVAL_GRACE, retiring));
                }
            }
        }
        self.retiring.retain(|BackendKey { service, address }, _| named(service, *address) == Some(false));
    }

    /// Reconcile after a change of sources; a failure is logged (the old tables stay).
    fn apply(&mut self) {
        if let Err(e) = self.reconcile() {
            warn!("reconcile failed, the data path keeps its previous tables: {e:#}");
        }
        self.sync_checkers();
    }

    fn persist(&self) {
        if let Err(e) = self.registry.save() {
            warn!("could not write the state file: {e:#}");
        }
    }

    /// One checker per backend that exists now, with its service's current settings.
    fn sync_checkers(&mut self) {
        let mut wanted: HashMap<BackendKey, HealthCheck> = HashMap::new();
        for s in &self.desired.services {
            let Some(cfg) = self.cfg.services.iter().find(|c| c.name == s.name) else { continue };
            if cfg.health_check.kind == HealthCheckType::None {
                continue;
            }
            for b in &s.backends {
                wanted.insert(BackendKey::new(&s.name, b.address), cfg.health_check.clone());
            }
        }
        self.checkers.retain(|key, (check, task)| {
            let keep = wanted.get(key) == Some(check);
            if !keep {
                task.abort();
            }
            keep
        });
        self.trackers.retain(|key, _| wanted.contains_key(key));
        self.last_checks.retain(|key, _| wanted.contains_key(key));
        for (key, check) in wanted {
            if self.checkers.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(health::run(check.clone(), key.service.clone(), key.address, self.reports_tx.clone()));
            self.checkers.insert(key, (check, task));
        }
    }

    fn views(&self) -> Vec<ServiceView> {
        let now = Instant::now();
        self.desired
            .services
            .iter()
            .map(|s| ServiceView {
                name: s.name.clone(),
                vip: s.vip.to_string(),
                protocol: s.protocol.to_string(),
                algorithm: s.algorithm.to_string(),
                forwarding: s.forwarding.to_string(),
                backends: s
                    .backends
                    .iter()
                    .map(|b| {
                        let key = BackendKey::new(s.name.clone(), b.address);
                        BackendView {
                            address: b.address.to_string(),
                            weight: b.weight,
                            state: b.state.to_string(),
                            health: b.health.as_str().to_string(),
                            last_check: self.last_checks.get(&key).map(|c| CheckView {
                                ok: c.ok,
                                detail: c.detail.clone(),
                                duration_seconds: c.duration.as_secs_f64(),
                                age_seconds: now.saturating_duration_since(c.finished).as_secs_f64(),
                            }),
                            sources: source_names(b.sources).iter().map(|s| s.to_string()).collect(),
                            lease_expires_in_seconds: self
                                .registry
                                .registrations
                                .get(&key)
                                .map(|r| r.expires_at.saturating_duration_since(now).as_secs_f64()),
                            proxy: self.dataplane.backend_counters(&s.name, b.address),
                            circuit: b.circuit.as_str().to_string(),
                            ejections_total: self.breakers.get(&key).map_or(0, |br| br.ejections_total),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

//! The userspace proxy: the same config, selection algorithms, admin states and health
//! results as the XDP path, served from sockets where XDP cannot run.
//!
//! - `listen`: `SO_REUSEPORT` listeners, one per worker and service; `workers`: a thread
//!   and current-thread runtime per worker, serving that worker's listeners and every
//!   connection they accept.
//! - `accept`: TCP accept loops; the rate limit at accept, then the connection to `tcp` or
//!   `http` by the service's mode.
//! - `tcp`: l4 TCP relay (half-close, resets, connect and idle timeouts).
//! - `udp` + `sessions`: l4 UDP with a session table.
//! - `http` + `pool`: HTTP/1.1 proxy over pooled keep-alive upstream connections;
//!   `client`: the client's socket as hyper holds it; `framing`: how each request arrived
//!   (what hyper does not say); `headers`: the hop-by-hop headers it removes;
//!   `upgrade`: an `Upgrade` (WebSocket) switched to a byte relay after the backend's 101.
//! - `table`: the per-service selector, swapped on reconcile, and a new flow's picks;
//!   `service`: what a service's tasks share; `signal`: what ends them; `stats`: counters
//!   and metrics; `tracker`: every task counted.
//! - `front` + `proxy_header`: `accept_proxy` (a front load balancer's PROXY header read
//!   before anything else) and `send_proxy` (one written to each backend connection);
//!   `sni`: TLS passthrough routed by the ClientHello's server name; `traffic_stats`:
//!   their counters.
//! - `vip_lock`: one lb per VIP (`SO_REUSEPORT` would let a second daemon share it).
//! - `caps`: `max_client_connections` / `max_connections_per_source`, the open connections
//!   a service holds (every one a socket).
//! - `limit`: `[service.rate_limit]` token buckets (per service, per source); `outcome`:
//!   passive outcomes per backend for the controller's circuit breakers, read through
//!   `outcomes`. The table carries the rest of the breaker: a half-open backend's one
//!   trial flow and `max_connections`.
//!
//! The controller drives it like the XDP data path: `reconcile` with each new desired
//! state. There, a backend that may no longer keep its flows (maintenance, down, gone) has
//! its connections closed: the proxy's way of re-steering them.
mod accept;
mod caps;
mod client;
mod framing;
mod front;
mod headers;
mod http;
mod idle;
mod io;
mod lazy_select;
mod limit;
mod listen;
mod outcome;
mod pool;
mod proxy_header;
mod service;
mod sessions;
mod signal;
mod sni;
mod stats;
mod table;
mod tcp;
mod tracker;
mod traffic_stats;
mod udp;
mod upgrade;
mod vip_lock;
mod workers;

pub mod select;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::net::{TcpListener, UdpSocket};
use tokio::runtime::Handle;
use tracing::{debug, info, info_span, warn};

pub use limit::{Scope, MAX_SOURCES};
pub use stats::{
    BackendCounters, BackendStats, HttpRejection, ProxyFlow, ProxyStats, ServiceCounters, ServiceStats, PATH_PROXY,
};
pub use tracker::{TaskKind, TaskTracker};
pub use vip_lock::VipBusy;

use limit::RateLimiter;
use pool::UpstreamPool;
use service::ServiceCtx;
use sessions::Sessions;
use signal::Signals;
use table::{BackendSlot, Settings, SharedTable, Table, TrialFlow};
use vip_lock::VipLocks;
use workers::Workers;

use crate::select::{Candidate, Selector};
use lb_config::desired::BackendKey;
use lb_config::desired::{Desired, DesiredService};
use lb_config::{Protocol, ProxyMode};
use lb_control::datapath::{DataPath, Outcome, Shutdown};

/// What the listening sockets depend on: a change rebinds them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ListenKey {
    vip: SocketAddr,
    protocol: Protocol,
    mode: ProxyMode,
    workers: usize,
}

/// A backend as reconcile last saw it.
struct BackendRecord {
    slot: Arc<BackendSlot>,
    keeps_flows: bool,
}

struct ServiceRuntime {
    key: ListenKey,
    ctx: Arc<ServiceCtx>,
    backends: HashMap<SocketAddr, BackendRecord>,
    /// Its TCP listeners (duplicates of the accepting tasks' descriptors), to take them out
    /// of the VIP's `SO_REUSEPORT` group at once when the service goes (see `stop_listening`).
    listening: Vec<std::net::TcpListener>,
}

/// Sockets bound for a service, not yet serving.
enum Bound {
    Tcp(Vec<std::net::TcpListener>),
    Udp(Vec<std::net::UdpSocket>),
}

pub struct ProxyDataplane {
    services: HashMap<String, ServiceRuntime>,
    stats: Arc<ProxyStats>,
    /// Per (service, backend): (succeeded, failed) totals as the last `outcomes` saw them.
    outcomes_seen: HashMap<BackendKey, (u64, u64)>,
    signals: Arc<Signals>,
    runtime: Handle,
    /// The VIPs this proxy serves, locked against other daemons (released when dropped).
    vip_locks: VipLocks,
    /// Where the listeners and their connections run (last: dropped after the rest).
    workers: Workers,
}

impl ProxyDataplane {
    /// Binds every service's listeners and starts serving. Call inside a tokio runtime.
    /// Fails, naming the VIP and the OS error, if any listener cannot be bound (then nothing
    /// is left listening).
    pub fn start(desired: &Desired) -> Result<Self> {
        let runtime = Handle::try_current().context("the proxy must start inside a tokio runtime")?;
        let mut dp = ProxyDataplane {
            services: HashMap::new(),
            stats: Arc::new(ProxyStats::default()),
            outcomes_seen: HashMap::new(),
            signals: Arc::new(Signals::default()),
            runtime,
            vip_locks: VipLocks::new(),
            workers: Workers::default(),
        };
        dp.reconcile(desired)?;
        info!(
            services = dp.services.len(),
            workers = listen::worker_count(desired.settings.workers),
            "proxy data path serving"
        );
        Ok(dp)
    }

    /// Brings the proxy in line with `desired`: each service's selector rebuilt from its
    /// in-rotation backends and swapped in; services added or removed (or whose VIP,
    /// protocol or mode changed) get their listeners opened or closed, while a service
    /// renamed with its listen key unchanged keeps them under its new name; connections keep
    /// their backend, except that connections to a backend that may no longer keep flows
    /// (maintenance, down, removed) are closed. All listeners are bound before anything
    /// changes: on error the proxy is as it was. A VIP another lb serves is refused
    /// (`VipBusy`), before anything is bound.
    pub fn reconcile(&mut self, desired: &Desired) -> Result<()> {
        let _span = info_span!("proxy_reconcile").entered();
        let workers = listen::worker_count(desired.settings.workers);
        let key_of = |s: &DesiredService| ListenKey { vip: s.vip, protocol: s.protocol, mode: s.proxy_mode, workers };

        // 0. Renames: a service gone whose listen key a new name takes over is that service,
        // renamed; it keeps its listeners and connections (as the XDP path keeps flows).
        let renames = self.renames(desired, &key_of);

        // 1. Start the workers, lock the VIPs, then bind what is new (the only steps that
        // can fail).
        self.workers.handle(workers - 1).context("cannot start the proxy's worker threads")?;
        self.vip_locks.claim(desired.services.iter().map(|s| (s.name.as_str(), s.vip, s.protocol)))?;
        let mut bound: HashMap<String, Bound> = HashMap::new();
        for s in &desired.services {
            let key = key_of(s);
            if self.services.get(&s.name).is_some_and(|r| r.key == key) || renames.contains_key(&s.name) {
                continue;
            }
            let sockets = match s.protocol {
                Protocol::Tcp => listen::tcp_listeners(s.vip, workers).map(Bound::Tcp),
                Protocol::Udp => listen::udp_sockets(s.vip, workers).map(Bound::Udp),
            };
            match sockets {
                Ok(sockets) => bound.insert(s.name.clone(), sockets),
                Err(e) => {
                    self.vip_locks.settle(self.services.iter().map(|(n, r)| (n.as_str(), r.key.vip, r.key.protocol)));
                    return Err(e)
                        .with_context(|| format!("service {}: cannot listen on {} ({})", s.name, s.vip, s.protocol));
                }
            };
        }

        for (to, from) in renames {
            self.rename(&from, to);
        }

        // 2. Services that are gone: listeners closed, connections closed.
        let wanted: HashMap<&str, &DesiredService> = desired.services.iter().map(|s| (s.name.as_str(), s)).collect();
        let gone: Vec<String> = self.services.keys().filter(|n| !wanted.contains_key(n.as_str())).cloned().collect();
        for name in gone {
            if let Some(rt) = self.services.remove(&name) {
                info!(service = %name, vip = %rt.key.vip, "service removed: listeners and connections closed");
                stop_listening(&rt.listening);
                close_service(&rt.ctx);
            }
        }

        // 3. New and rebound services start serving.
        let _guard = self.runtime.enter();
        for s in &desired.services {
            let Some(sockets) = bound.remove(&s.name) else { continue };
            let settings = Arc::new(Settings::new(&desired.settings, pool_of(s)));
            let key = key_of(s);
            let (backends, limiter, conns) = match self.services.remove(&s.name) {
                Some(old) => {
                    // Listeners replaced: the old ones stop accepting; their connections go on
                    // (and are still cut with their backends, whose slots carry over).
                    info!(service = %s.name, from = %old.key.vip, to = %key.vip, mode = ?key.mode, workers, "service listeners replaced");
                    stop_listening(&old.listening);
                    old.ctx.own.stop.fire();
                    if let Some(p) = &old.ctx.pool {
                        p.close();
                    }
                    (old.backends, old.ctx.limiter.clone(), old.ctx.conns.clone())
                }
                None => {
                    info!(service = %s.name, vip = %s.vip, protocol = %s.protocol, mode = ?key.mode, workers, "service listening");
                    (HashMap::new(), Arc::new(RateLimiter::default()), Arc::default())
                }
            };
            let ctx = Arc::new(ServiceCtx {
                name: service::ServiceName::new(&s.name),
                vip: s.vip,
                protocol: s.protocol,
                mode: key.mode,
                table: SharedTable::new(Table::new(
                    Selector::new(s.algorithm, Vec::new()),
                    HashMap::new(),
                    settings.clone(),
                )),
                stats: self.stats.clone(),
                service_stats: self.stats.service_entry(&s.name),
                own: Signals::default(),
                global: self.signals.clone(),
                pool: (s.protocol == Protocol::Tcp && key.mode == ProxyMode::Http)
                    .then(|| Arc::new(UpstreamPool::new(&settings.pool))),
                sessions: (s.protocol == Protocol::Udp).then(|| Arc::new(Sessions::default())),
                limiter,
                conns,
            });
            ctx.service_stats.http.store(ctx.pool.is_some(), std::sync::atomic::Ordering::Relaxed);
            let listening = match &sockets {
                Bound::Tcp(listeners) => listeners.iter().filter_map(|l| l.try_clone().ok()).collect(),
                Bound::Udp(_) => Vec::new(),
            };
            spawn_listeners(&ctx, sockets, &self.workers);
            if let Some(pool) = &ctx.pool {
                tokio::spawn(http::reaper(pool.clone(), ctx.clone(), ctx.track(TaskKind::Housekeeping)));
            }
            self.services.insert(s.name.clone(), ServiceRuntime { key, ctx, backends, listening });
        }

        // 4. Every service's backends and table.
        for s in &desired.services {
            let Some(rt) = self.services.get_mut(&s.name) else { continue };
            let settings = Arc::new(Settings::new(&desired.settings, pool_of(s)));
            rt.ctx.limiter.configure(&s.rate_limit);
            rt.ctx.conns.configure(&s.connection_caps);
            rt.ctx.limiter.configure_acl(&s.acl);
            update_backends(rt, s, &self.stats, settings, s.max_connections);
        }
        self.stats.retain(
            |service, address| wanted.get(service).is_some_and(|s| s.backends.iter().any(|b| b.address == address)),
            |service| wanted.contains_key(service),
        );
        self.vip_locks.settle(desired.services.iter().map(|s| (s.name.as_str(), s.vip, s.protocol)));
        Ok(())
    }

    /// New name → old name, for each service that is gone while a service not running yet
    /// has its listen key (VIP, protocol, mode, workers): one service under another name.
    /// Keys are unique among running services and among desired ones, so the match is 1:1.
    fn renames(&self, desired: &Desired, key_of: &impl Fn(&DesiredService) -> ListenKey) -> HashMap<String, String> {
        let wanted: std::collections::HashSet<&str> = desired.services.iter().map(|s| s.name.as_str()).collect();
        let mut gone: Vec<(&String, &ListenKey)> =
            self.services.iter().filter(|(n, _)| !wanted.contains(n.as_str())).map(|(n, rt)| (n, &rt.key)).collect();
        let mut renames = HashMap::new();
        for s in desired.services.iter().filter(|s| !self.services.contains_key(&s.name)) {
            let key = key_of(s);
            if let Some(i) = gone.iter().position(|(_, k)| **k == key) {
                let (from, _) = gone.swap_remove(i);
                renames.insert(s.name.clone(), from.clone());
            }
        }
        renames
    }

    /// One service under a new name: the same listeners, connections, counters and outcomes.
    fn rename(&mut self, from: &str, to: String) {
        let Some(rt) = self.services.remove(from) else { return };
        info!(from, to = %to, vip = %rt.key.vip, "service renamed: listeners and connections kept");
        self.stats.rename_service(from, &to);
        rt.ctx.name.set(&to);
        // Outcomes already reported stay reported: the counters carry on under `to`.
        let seen: Vec<BackendKey> = self.outcomes_seen.keys().filter(|k| k.service == from).cloned().collect();
        for key in seen {
            if let Some(v) = self.outcomes_seen.remove(&key) {
                self.outcomes_seen.insert(BackendKey::new(to.clone(), key.address), v);
            }
        }
        self.services.insert(to, rt);
    }

    /// Stops accepting, lets in-flight connections finish for up to `drain`, then closes the
    /// rest. Returns when every task has ended (or, if one would not, after a warning).
    pub async fn shutdown(self, drain: Duration) {
        let tracker = self.stats.tasks().clone();
        let live = tracker.live_of(TaskKind::Connection) + tracker.live_of(TaskKind::Session);
        info!(connections = live, drain = ?drain, "proxy shutting down: no new connections");
        self.signals.stop.fire();
        for rt in self.services.values() {
            stop_listening(&rt.listening);
            if let Some(p) = &rt.ctx.pool {
                p.close();
            }
        }
        if tokio::time::timeout(drain, tracker.wait_idle()).await.is_ok() {
            info!("proxy drained");
            return;
        }
        let left = tracker.live_of(TaskKind::Connection) + tracker.live_of(TaskKind::Session);
        warn!(connections = left, "drain timeout: closing the remaining connections");
        self.signals.kill.fire();
        if tokio::time::timeout(Duration::from_secs(5), tracker.wait_idle()).await.is_err() {
            warn!(tasks = tracker.live(), "proxy tasks still running after shutdown");
        }
    }

    /// The proxy's counters (shared; still readable after `shutdown`).
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// The address a service listens on (its VIP), if it is served.
    pub fn listening(&self, service: &str) -> Option<SocketAddr> {
        self.services.get(service).map(|rt| rt.key.vip)
    }

    /// Idle pooled connections to one backend of an HTTP service.
    pub fn pool_idle(&self, service: &str, backend: SocketAddr) -> usize {
        self.services.get(service).and_then(|rt| rt.ctx.pool.as_ref()).map_or(0, |p| p.idle_count(backend))
    }

    /// Passive outcomes for the circuit breaker: per (service, backend), the new flows that
    /// succeeded and failed since the previous call (the first call: since the backend's
    /// counters were created). Backends with nothing new are left out, as on the XDP path.
    pub fn outcomes(&mut self) -> Vec<Outcome> {
        let mut seen = HashMap::with_capacity(self.outcomes_seen.len());
        let mut out = Vec::new();
        for (service, address, c) in self.stats.backends() {
            let key = BackendKey::new(service, address);
            let (s0, f0) = self.outcomes_seen.get(&key).copied().unwrap_or_default();
            // Counters that went backwards were recreated (the backend left and came
            // back): everything they hold is new.
            let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
            let (succeeded, failed) = (delta(c.succeeded_total, s0), delta(c.failed_total, f0));
            if (succeeded, failed) != (0, 0) {
                out.push(Outcome { backend: key.clone(), succeeded, failed });
            }
            seen.insert(key, (c.succeeded_total, c.failed_total));
        }
        // Backends no longer counted are forgotten with them.
        self.outcomes_seen = seen;
        out
    }

    /// Open UDP sessions of a service.
    pub fn udp_sessions(&self, service: &str) -> usize {
        self.services.get(service).and_then(|rt| rt.ctx.sessions.as_ref()).map_or(0, |s| s.len())
    }
}

/// Dropped without `shutdown` (an error path): nothing keeps serving behind the owner's back.
impl Drop for ProxyDataplane {
    fn drop(&mut self) {
        self.signals.stop.fire();
        self.signals.kill.fire();
    }
}

/// Socket `i` of a service goes to worker `i`, whose runtime then runs every connection
/// (or session) it takes. A socket registers with the runtime that polls it, so each is
/// converted on its worker.
fn spawn_listeners(ctx: &Arc<ServiceCtx>, sockets: Bound, workers: &Workers) {
    match sockets {
        Bound::Tcp(listeners) => {
            for (i, l) in listeners.into_iter().enumerate() {
                let (ctx, guard) = (ctx.clone(), ctx.track(TaskKind::Listener));
                on_worker(workers, i, &ctx.clone(), async move {
                    match TcpListener::from_std(l) {
                        Ok(l) => accept::accept_loop(l, ctx, guard).await,
                        Err(e) => warn!(service = %ctx.name, vip = %ctx.vip, "listener lost: {e}"),
                    }
                });
            }
        }
        Bound::Udp(sockets) => {
            for (i, s) in sockets.into_iter().enumerate() {
                let (ctx, guard) = (ctx.clone(), ctx.track(TaskKind::Listener));
                on_worker(workers, i, &ctx.clone(), async move {
                    match UdpSocket::from_std(s) {
                        Ok(s) => udp::worker(Arc::new(s), ctx, guard).await,
                        Err(e) => warn!(service = %ctx.name, vip = %ctx.vip, "listener lost: {e}"),
                    }
                });
            }
        }
    }
}

fn on_worker(
    workers: &Workers,
    i: usize,
    ctx: &ServiceCtx,
    serve: impl std::future::Future<Output = ()> + Send + 'static,
) {
    match workers.handle(i) {
        Ok(h) => drop(h.spawn(serve)),
        Err(e) => warn!(service = %ctx.name, vip = %ctx.vip, "listener lost: no worker thread: {e}"),
    }
}

/// Takes a service's TCP listeners out of LISTEN now, in the reconcile: a shutdown of a
/// listening socket unhashes it from the VIP's `SO_REUSEPORT` group at once. Left to the
/// accepting tasks, the close comes a moment later, and a proxy that takes the VIP over in
/// between (another lb, once this one gave it up) would share the group with a socket about
/// to close, whose queued connections are then reset.
fn stop_listening(listeners: &[std::net::TcpListener]) {
    for l in listeners {
        let _ = socket2::SockRef::from(l).shutdown(std::net::Shutdown::Read);
    }
}

/// Stops the service's listeners and closes all its connections.
fn close_service(ctx: &ServiceCtx) {
    ctx.own.stop.fire();
    ctx.own.kill.fire();
    if let Some(p) = &ctx.pool {
        p.close();
    }
}

/// Backends: slots kept for the ones that stay, cut for the ones that may no longer keep
/// flows; then the new table.
fn update_backends(
    rt: &mut ServiceRuntime,
    s: &DesiredService,
    stats: &Arc<ProxyStats>,
    settings: Arc<Settings>,
    max_connections: u32,
) {
    let ctx = &rt.ctx;
    for b in &s.backends {
        let keeps = b.keeps_flows();
        let record = rt.backends.entry(b.address).or_insert_with(|| BackendRecord {
            slot: Arc::new(BackendSlot::new(b.address, stats.backend_entry(&s.name, b.address))),
            keeps_flows: true,
        });
        if record.keeps_flows && !keeps {
            cut(ctx, record, &format!("{} / {}", b.state, b.health.as_str()));
        }
        record.keeps_flows = keeps;
    }
    let gone: Vec<SocketAddr> =
        rt.backends.keys().filter(|a| !s.backends.iter().any(|b| b.address == **a)).copied().collect();
    for address in gone {
        if let Some(mut record) = rt.backends.remove(&address) {
            if record.keeps_flows {
                cut(ctx, &mut record, "removed");
            }
        }
    }
    let mut slots = HashMap::new();
    // With SNI routes, each route group's backends apart; `candidates` are then the ones
    // without a group.
    let routing = &s.proxy_options.sni;
    let group_of = |address: SocketAddr| if routing.is_empty() { None } else { routing.group_of_backend(address) };
    let mut candidates = Vec::new();
    let mut by_group: HashMap<String, Vec<Candidate>> =
        routing.routes.iter().map(|r| (r.group.clone(), Vec::new())).collect();
    for b in s.backends.iter().filter(|b| b.in_rotation()) {
        let Some(record) = rt.backends.get(&b.address) else { continue };
        let candidate =
            Candidate { address: b.address, weight: s.table_weight(b), active: record.slot.stats.active.clone() };
        match group_of(b.address) {
            Some(g) => by_group.entry(g.to_string()).or_default().push(candidate),
            None => candidates.push(candidate),
        }
        slots.insert(b.address, record.slot.clone());
    }
    let groups = by_group.into_iter().map(|(g, c)| (g, Selector::new(s.algorithm, c))).collect();
    // At most one trial per table: the controller half-opens backends one poll at a time,
    // and one trial flow at a time keeps a still-broken service from failing many clients.
    let trial = s.backends.iter().filter(|b| b.on_trial()).find_map(|b| {
        let record = rt.backends.get(&b.address)?;
        let candidate =
            Candidate { address: b.address, weight: s.table_weight(b), active: record.slot.stats.active.clone() };
        Some(TrialFlow::new(candidate, record.slot.clone()))
    });
    debug!(service = %s.name, in_rotation = candidates.len(), backends = s.backends.len(), trial = ?trial.as_ref().map(|t| t.candidate.address), "proxy table");
    if let Some(p) = &ctx.pool {
        p.configure(&settings.pool);
    }
    // Clients keep their backends across table swaps (a reload, a health change).
    let persistence = s.traffic.persistence_timeout.map(|timeout| select::Persistent {
        clients: ctx.table.load().persistence().cloned().unwrap_or_default(),
        timeout,
    });
    let has_default_group = s.backends.iter().any(|b| group_of(b.address).is_none());
    let trial_group = trial.as_ref().and_then(|t| group_of(t.candidate.address)).map(str::to_string);
    let traffic = &ctx.service_stats.traffic;
    traffic.accepts_proxy.store(s.proxy_options.proxy_protocol.accepts(), std::sync::atomic::Ordering::Relaxed);
    traffic.routes_sni.store(!routing.is_empty(), std::sync::atomic::Ordering::Relaxed);
    traffic.know_groups(routing.routes.iter().map(|r| r.group.as_str()));
    let table = Table::new(Selector::new(s.algorithm, candidates), slots, settings)
        .with_trial(trial)
        .with_max_connections(max_connections)
        .with_options(Arc::new(s.proxy_options.clone()), groups, trial_group, has_default_group)
        .with_persistence(persistence);
    ctx.table.store(table);
}

/// The service's upstream pool settings. With `send_proxy`, a connection's PROXY header
/// names the client that opened it, so no connection may serve another client: nothing is
/// kept idle (every request gets its own connection, closed after its response).
fn pool_of(s: &DesiredService) -> lb_config::Pool {
    let mut pool = s.pool.clone();
    if s.proxy_options.proxy_protocol.send.is_some() {
        pool.max_idle_per_backend = 0;
    }
    pool
}

/// Closes every connection to the backend; later connections get a fresh slot (same
/// counters) should it come back.
fn cut(ctx: &ServiceCtx, record: &mut BackendRecord, why: &str) {
    let active = record.slot.stats.active.load(std::sync::atomic::Ordering::Relaxed);
    info!(service = %ctx.name, backend = %record.slot.address, why, active, "backend may not keep its flows: closing its connections");
    record.slot.cut.fire();
    if let Some(p) = &ctx.pool {
        p.evict(record.slot.address);
    }
    record.slot = Arc::new(BackendSlot::new(record.slot.address, record.slot.stats.clone()));
}

impl DataPath for ProxyDataplane {
    fn name(&self) -> &'static str {
        PATH_PROXY
    }

    fn reconcile(&mut self, desired: &Desired) -> Result<()> {
        ProxyDataplane::reconcile(self, desired)
    }

    fn outcomes(&mut self) -> Vec<Outcome> {
        ProxyDataplane::outcomes(self)
    }

    fn backend_counters(&self, service: &str, address: SocketAddr) -> Option<BackendCounters> {
        self.stats.backend(service, address)
    }

    fn shutdown(self: Box<Self>, _detach: bool, drain: Duration) -> Shutdown {
        Box::pin(ProxyDataplane::shutdown(*self, drain))
    }
}

//! A service's table: the selector over its in-rotation backends plus the settings new
//! connections use. Reconcile builds a fresh one and swaps it in; a connection takes the
//! table current when it starts and keeps its backend whatever happens later, unless that
//! backend is cut (maintenance, down, removed).
//!
//! The table also carries the circuit breaker's share of the pick: the half-open backend's
//! one trial flow, and the cap on connections per backend; and the service's persistence
//! (`persistence_timeout`). A new flow walks its `Picks`: the trial, the backend the client
//! persists on, then the selector's choices in order, taking the first that can take it.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::signal::Signal;
use super::stats::BackendStats;
use crate::select::{ActiveGuard, Candidate, Choices, Flow, Persistence, Persistent, Selection, Selector};
use lb_config::desired::PathSettings;
use lb_config::{Pool, ProxyOptions};

/// Backends tried per new flow (connect failures) before the client is given up on.
pub const MAX_TRIES: usize = 3;

/// The config values the proxy's tasks read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub tcp_idle_timeout: Duration,
    pub udp_idle_timeout: Duration,
    /// Most UDP sessions per service (the flow table's size: the XDP path's bound too).
    pub max_udp_sessions: usize,
    pub pool: Pool,
    /// HTTP mode: a request head must arrive within this.
    pub http_header_timeout: Duration,
    /// HTTP mode: the largest request head, in bytes.
    pub http_max_header_size: usize,
}

impl Settings {
    pub fn new(d: &PathSettings, pool: Pool) -> Self {
        Settings {
            connect_timeout: d.connect_timeout,
            tcp_idle_timeout: d.tcp_idle_timeout,
            udp_idle_timeout: d.udp_idle_timeout,
            max_udp_sessions: d.flow_table_size as usize,
            pool,
            // Zero: settings not from a config file; the config's defaults then.
            http_header_timeout: match d.http_header_timeout {
                t if t.is_zero() => lb_config::Daemon::default().http_header_timeout,
                t => t,
            },
            http_max_header_size: match d.http_max_header_size {
                0 => lb_config::Daemon::default().http_max_header_size as usize,
                n => n as usize,
            },
        }
    }
}

/// How often a failing backend may log a warning.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One backend as the connections that use it see it.
pub struct BackendSlot {
    pub address: SocketAddr,
    pub stats: Arc<BackendStats>,
    /// Fired when the backend may no longer keep its flows: every connection to it closes.
    pub cut: Signal,
    warned_at: AtomicU64,
    start: Instant,
}

impl BackendSlot {
    pub fn new(address: SocketAddr, stats: Arc<BackendStats>) -> Self {
        BackendSlot { address, stats, cut: Signal::default(), warned_at: AtomicU64::new(0), start: Instant::now() }
    }

    /// True at most once per `WARN_EVERY`: failures are logged, not once per connection.
    pub fn may_warn(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.warned_at.load(Ordering::Relaxed);
        if last != 0 && now - last < WARN_EVERY.as_millis() as u64 {
            return false;
        }
        self.warned_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// A half-open backend's one trial flow (see `control::breaker`): armed afresh by every
/// reconcile that still names the backend half-open, taken by the first new flow after it.
pub struct TrialFlow {
    pub candidate: Candidate,
    pub slot: Arc<BackendSlot>,
    armed: AtomicBool,
}

impl TrialFlow {
    pub fn new(candidate: Candidate, slot: Arc<BackendSlot>) -> Self {
        TrialFlow { candidate, slot, armed: AtomicBool::new(true) }
    }

    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }
}

/// The backend picked for a new flow, counted as active from the pick on (so concurrent
/// picks already see it, and `max_connections` holds exactly).
pub struct Picked {
    pub slot: Arc<BackendSlot>,
    pub active: ActiveGuard,
}

/// Why no backend was picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoBackend {
    /// None in rotation, or every one was tried (and failed) for this flow.
    None,
    /// Some were left, but each was at `max_connections`.
    Full,
}

pub struct Table {
    /// With SNI routes: the backends without a group; else every one.
    pub selector: Selector,
    slots: HashMap<SocketAddr, Arc<BackendSlot>>,
    pub settings: Arc<Settings>,
    trial: Option<TrialFlow>,
    /// `[service.circuit_breaker] max_connections`: 0 = unlimited.
    max_connections: u64,
    /// `persistence_timeout`: clients go back to their last backend.
    persistence: Option<Persistent>,
    /// The PROXY protocol and SNI routes of the service, as this reconcile set them.
    pub options: Arc<ProxyOptions>,
    /// SNI routes: each route group's backends in rotation (perhaps none).
    groups: HashMap<String, Selector>,
    /// The trial backend's group (it is offered only to flows routed there).
    trial_group: Option<String>,
    /// SNI routes: some backend of the service has no group (else a connection no route
    /// takes has nowhere to go).
    pub has_default_group: bool,
}

impl Table {
    /// `slots` must hold every candidate's address.
    pub fn new(selector: Selector, slots: HashMap<SocketAddr, Arc<BackendSlot>>, settings: Arc<Settings>) -> Self {
        Table {
            selector,
            slots,
            settings,
            trial: None,
            max_connections: 0,
            options: Arc::default(),
            groups: HashMap::new(),
            trial_group: None,
            has_default_group: true,
            persistence: None,
        }
    }

    /// SNI routes: the service's options, each route group's selector, and the trial
    /// backend's group.
    pub fn with_options(
        mut self,
        options: Arc<ProxyOptions>,
        groups: HashMap<String, Selector>,
        trial_group: Option<String>,
        has_default_group: bool,
    ) -> Self {
        self.has_default_group = has_default_group;
        self.options = options;
        self.groups = groups;
        self.trial_group = trial_group;
        self
    }

    /// The half-open backend that may take one flow of this table.
    pub fn with_trial(mut self, trial: Option<TrialFlow>) -> Self {
        self.trial = trial;
        self
    }

    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = u64::from(max);
        self
    }

    /// `persistence_timeout`: the service's memory of its clients (kept across tables).
    pub fn with_persistence(mut self, persistence: Option<Persistent>) -> Self {
        self.persistence = persistence;
        self
    }

    /// The memory of clients this table persists with, for the next table of the service.
    pub fn persistence(&self) -> Option<&Arc<Persistence>> {
        self.persistence.as_ref().map(|p| &p.clients)
    }

    /// No backend could take a new flow (none in rotation, no trial armed).
    pub fn is_empty(&self) -> bool {
        self.selector.candidates().is_empty() && !self.trial.as_ref().is_some_and(TrialFlow::is_armed)
    }

    /// The backends a new flow may take, in order; see `Picks`.
    pub fn picks(&self, flow: &Flow) -> Picks<'_> {
        self.picks_in(flow, None)
    }

    /// The backends of an SNI route's `group` a new flow may take (None: those without a
    /// group); a group with none in rotation gives none.
    pub fn picks_in(&self, flow: &Flow, group: Option<&str>) -> Picks<'_> {
        let selector = match group {
            None => Some(&self.selector),
            Some(g) => self.groups.get(g),
        };
        let trial = self.trial.as_ref().filter(|_| group == self.trial_group.as_deref());
        Picks {
            table: self,
            trial,
            client: flow.client.ip(),
            persisted: None,
            looked_up: false,
            candidates: selector.map_or(&[][..], |s| s.candidates()),
            choices: selector.map(|s| s.iter(flow)),
            full: false,
        }
    }

    /// The flow's slot for a candidate: none if the candidate has none or was cut (this table
    /// is about to be replaced; its flows must not start on a backend that lost them).
    fn live_slot(&self, address: SocketAddr) -> Option<&Arc<BackendSlot>> {
        self.slots.get(&address).filter(|s| !s.cut.is_fired())
    }
}

/// A new flow's backends: an armed trial backend first (once per table), then the
/// backend the client persists on (`persistence_timeout`), then the selector's choices in
/// order (the one taken is remembered for the client). Each is counted active as it is handed out (so concurrent
/// flows already see it, and `max_connections` holds exactly); one at `max_connections`
/// is passed over for the next choice. No backend comes twice for one flow.
pub struct Picks<'a> {
    table: &'a Table,
    /// The half-open backend, until this flow has taken its trial.
    trial: Option<&'a TrialFlow>,
    client: IpAddr,
    /// The backend the client persisted on, once offered: not offered twice.
    persisted: Option<SocketAddr>,
    looked_up: bool,
    /// The flow's group's backends in rotation: where a persisted one must still be.
    candidates: &'a [Candidate],
    /// None: the flow's group has no selector (no backend).
    choices: Option<Choices<'a>>,
    /// A choice was passed over as full: what to report once none is left.
    full: bool,
}

impl Picks<'_> {
    /// The next backend to try for the flow, or why there is none left.
    pub fn next_backend(&mut self) -> Result<Picked, NoBackend> {
        if let Some(picked) = self.take_trial() {
            return Ok(picked);
        }
        if let Some(picked) = self.take_persisted() {
            return Ok(picked);
        }
        let cap = self.table.max_connections;
        for c in self.choices.iter_mut().flatten() {
            if Some(c.address) == self.persisted {
                continue;
            }
            let Some(slot) = self.table.live_slot(c.address) else { continue };
            match ActiveGuard::reserve(c, cap) {
                Some(active) => {
                    if let Some(p) = &self.table.persistence {
                        p.remember(self.client, c.address, Instant::now());
                    }
                    return Ok(Picked { slot: slot.clone(), active });
                }
                None => self.full = true,
            }
        }
        Err(if self.full { NoBackend::Full } else { NoBackend::None })
    }

    /// The backend the client persists on, once per flow, if it may take the flow: still a
    /// candidate (in rotation), not cut, below `max_connections`.
    fn take_persisted(&mut self) -> Option<Picked> {
        if std::mem::replace(&mut self.looked_up, true) {
            return None;
        }
        let address = self.table.persistence.as_ref()?.remembered(self.client, Instant::now())?;
        self.persisted = Some(address);
        let candidate = self.candidates.iter().find(|c| c.address == address)?;
        let slot = self.table.live_slot(address)?;
        let active = ActiveGuard::reserve(candidate, self.table.max_connections)?;
        Some(Picked { slot: slot.clone(), active })
    }

    /// The half-open backend's one trial flow, if it is still to be had.
    fn take_trial(&mut self) -> Option<Picked> {
        let t = self.trial.filter(|t| t.is_armed() && !t.slot.cut.is_fired())?;
        let active = ActiveGuard::reserve(&t.candidate, self.table.max_connections)?;
        // Exactly one flow wins the swap; the others go on to the selector's choices.
        if !t.armed.swap(false, Ordering::Relaxed) {
            return None;
        }
        self.trial = None;
        Some(Picked { slot: t.slot.clone(), active })
    }
}

/// The current table, swapped whole on reconcile. Readers hold the lock only to clone an
/// `Arc`.
pub struct SharedTable(RwLock<Arc<Table>>);

impl SharedTable {
    pub fn new(t: Table) -> Self {
        SharedTable(RwLock::new(Arc::new(t)))
    }

    pub fn load(&self) -> Arc<Table> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn store(&self, t: Table) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::Algorithm;

    fn candidate(i: u8) -> Candidate {
        Candidate { address: SocketAddr::from(([10, 0, 0, i], 80)), weight: 1, active: Arc::default() }
    }

    fn slot(c: &Candidate) -> Arc<BackendSlot> {
        Arc::new(BackendSlot::new(c.address, Arc::default()))
    }

    fn settings() -> Arc<Settings> {
        let d = Duration::from_secs(1);
        Arc::new(Settings {
            connect_timeout: d,
            tcp_idle_timeout: d,
            udp_idle_timeout: d,
            max_udp_sessions: 1,
            pool: Pool::default(),
            http_header_timeout: d,
            http_max_header_size: 1024,
        })
    }

    /// A round robin table over `n` backends (cursor at the first) and their slots.
    fn table(n: u8, max_connections: u32) -> (Table, Vec<Candidate>, Vec<Arc<BackendSlot>>) {
        let candidates: Vec<Candidate> = (1..=n).map(candidate).collect();
        let slots: Vec<Arc<BackendSlot>> = candidates.iter().map(slot).collect();
        let by_address = slots.iter().map(|s| (s.address, s.clone())).collect();
        let t = Table::new(Selector::new(Algorithm::RoundRobin, candidates.clone()), by_address, settings())
            .with_max_connections(max_connections);
        (t, candidates, slots)
    }

    fn flow() -> Flow {
        Flow { client: "192.0.2.1:4000".parse().unwrap(), vip: "192.0.2.100:80".parse().unwrap(), proto: 6 }
    }

    fn address(p: Result<Picked, NoBackend>) -> SocketAddr {
        match p {
            Ok(p) => p.slot.address,
            Err(why) => panic!("no backend: {why:?}"),
        }
    }

    #[test]
    fn picks_go_through_the_choices_once_each_then_none() {
        let (t, c, _) = table(3, 0);
        let mut picks = t.picks(&flow());
        let got: Vec<SocketAddr> = (0..3).map(|_| address(picks.next_backend())).collect();
        assert_eq!(got, vec![c[0].address, c[1].address, c[2].address]);
        assert_eq!(picks.next_backend().err(), Some(NoBackend::None));
    }

    #[test]
    fn a_full_backend_is_passed_over_and_all_full_is_reported() {
        let (t, c, _) = table(2, 1);
        c[0].active.store(1, Ordering::Relaxed);
        let mut picks = t.picks(&flow());
        assert_eq!(address(picks.next_backend()), c[1].address, "the next choice");
        assert_eq!(picks.next_backend().err(), Some(NoBackend::Full), "one was full: overflow, not nothing");
        // Another flow, every backend full from the start.
        c[1].active.store(1, Ordering::Relaxed);
        assert_eq!(t.picks(&flow()).next_backend().err(), Some(NoBackend::Full));
    }

    #[test]
    fn a_picked_backend_counts_as_active_until_its_flow_ends() {
        let (t, c, _) = table(1, 0);
        let picked = t.picks(&flow()).next_backend().ok().unwrap();
        assert_eq!(c[0].active.load(Ordering::Relaxed), 1);
        drop(picked);
        assert_eq!(c[0].active.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_cut_backend_is_never_picked() {
        let (t, c, slots) = table(2, 0);
        slots[0].cut.fire();
        let mut picks = t.picks(&flow());
        assert_eq!(address(picks.next_backend()), c[1].address);
        assert_eq!(picks.next_backend().err(), Some(NoBackend::None));
    }

    #[test]
    fn a_group_picks_only_its_backends_and_a_missing_group_none() {
        let (t, _, _) = table(1, 0);
        let api = candidate(7);
        let mut slots: HashMap<SocketAddr, Arc<BackendSlot>> = HashMap::new();
        slots.insert(api.address, slot(&api));
        let groups = HashMap::from([("api".to_string(), Selector::new(Algorithm::RoundRobin, vec![api.clone()]))]);
        let t = Table { slots: t.slots.into_iter().chain(slots).collect(), ..t }.with_options(
            Arc::default(),
            groups,
            None,
            true,
        );
        let mut picks = t.picks_in(&flow(), Some("api"));
        assert_eq!(address(picks.next_backend()), api.address);
        assert_eq!(picks.next_backend().err(), Some(NoBackend::None));
        assert_eq!(address(t.picks(&flow()).next_backend()), candidate(1).address, "the default set");
        assert_eq!(t.picks_in(&flow(), Some("web")).next_backend().err(), Some(NoBackend::None));
    }

    #[test]
    fn the_trial_backend_takes_exactly_one_flow_first() {
        let (t, c, _) = table(1, 0);
        let on_trial = candidate(9);
        let t = t.with_trial(Some(TrialFlow::new(on_trial.clone(), slot(&on_trial))));
        let mut first = t.picks(&flow());
        assert_eq!(address(first.next_backend()), on_trial.address);
        assert_eq!(address(first.next_backend()), c[0].address, "its next choice: the selector's");
        assert_eq!(address(t.picks(&flow()).next_backend()), c[0].address, "one trial flow per table");
        assert!(!t.is_empty());
    }

    fn persistent_table(n: u8, clients: Arc<Persistence>) -> Table {
        let (t, _, _) = table(n, 0);
        t.with_persistence(Some(Persistent { clients, timeout: Duration::from_secs(60) }))
    }

    fn from(client: &str) -> Flow {
        Flow { client: client.parse().unwrap(), ..flow() }
    }

    #[test]
    fn a_persisting_client_goes_back_to_its_backend_across_flows_and_tables() {
        let clients = Arc::new(Persistence::default());
        let t = persistent_table(3, clients.clone());
        let first = address(t.picks(&from("198.51.100.1:1000")).next_backend());
        for port in 1001..1006 {
            assert_eq!(address(t.picks(&from(&format!("198.51.100.1:{port}"))).next_backend()), first);
        }
        let other = address(t.picks(&from("198.51.100.2:1000")).next_backend());
        assert_ne!(other, first, "another client is balanced (round robin moved on)");
        let next = persistent_table(3, clients);
        assert_eq!(address(next.picks(&from("198.51.100.1:2000")).next_backend()), first, "a new table keeps them");
    }

    #[test]
    fn a_persisted_backend_no_longer_a_candidate_is_skipped_and_never_offered_twice() {
        let clients = Arc::new(Persistence::default());
        let t = persistent_table(3, clients.clone());
        let c3: SocketAddr = SocketAddr::from(([10, 0, 0, 3], 80));
        Persistent { clients: clients.clone(), timeout: Duration::from_secs(60) }.remember(
            "198.51.100.1".parse().unwrap(),
            c3,
            Instant::now(),
        );
        let mut picks = t.picks(&from("198.51.100.1:1000"));
        let got: Vec<SocketAddr> = (0..3).map(|_| address(picks.next_backend())).collect();
        assert_eq!(got[0], c3, "its backend first");
        assert_eq!(got.iter().filter(|a| **a == c3).count(), 1, "and only once: {got:?}");
        let smaller = persistent_table(2, clients);
        let moved = address(smaller.picks(&from("198.51.100.1:1001")).next_backend());
        assert_ne!(moved, c3, "out of rotation: balanced anew");
        assert_eq!(address(smaller.picks(&from("198.51.100.1:1002")).next_backend()), moved, "and kept there");
    }
}

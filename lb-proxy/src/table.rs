//! A service's table: the selector over its in-rotation backends plus the settings new
//! connections use. Reconcile builds a fresh one and swaps it in; a connection takes the
//! table current when it starts and keeps its backend whatever happens later, unless that
//! backend is cut (maintenance, down, removed).
//!
//! The table also carries the circuit breaker's share of the pick: the half-open backend's
//! one trial flow, and the cap on connections per backend.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::service::Signal;
use super::stats::BackendStats;
use lb_config::desired::PathSettings;
use lb_config::Pool;
use crate::select::{ActiveGuard, Candidate, Flow, Selector};

/// The config values the proxy's tasks read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub tcp_idle_timeout: Duration,
    pub udp_idle_timeout: Duration,
    /// Most UDP sessions per service (the flow table's size: the XDP path's bound too).
    pub max_udp_sessions: usize,
    pub pool: Pool,
}

impl Settings {
    pub fn new(d: &PathSettings, pool: Pool) -> Self {
        Settings {
            connect_timeout: d.connect_timeout,
            tcp_idle_timeout: d.tcp_idle_timeout,
            udp_idle_timeout: d.udp_idle_timeout,
            max_udp_sessions: d.flow_table_size as usize,
            pool,
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
pub struct Trial {
    pub candidate: Candidate,
    pub slot: Arc<BackendSlot>,
    armed: AtomicBool,
}

impl Trial {
    pub fn new(candidate: Candidate, slot: Arc<BackendSlot>) -> Self {
        Trial { candidate, slot, armed: AtomicBool::new(true) }
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
    /// None in rotation, or every one was excluded (failed for this flow).
    None,
    /// Some were left, but each was at `max_connections`.
    Full,
}

pub struct Table {
    pub selector: Selector,
    slots: HashMap<SocketAddr, Arc<BackendSlot>>,
    pub settings: Arc<Settings>,
    trial: Option<Trial>,
    /// `[service.circuit_breaker] max_connections`: 0 = unlimited.
    max_connections: u64,
}

impl Table {
    /// `slots` must hold every candidate's address.
    pub fn new(selector: Selector, slots: HashMap<SocketAddr, Arc<BackendSlot>>, settings: Arc<Settings>) -> Self {
        Table { selector, slots, settings, trial: None, max_connections: 0 }
    }

    /// The half-open backend that may take one flow of this table.
    pub fn with_trial(mut self, trial: Option<Trial>) -> Self {
        self.trial = trial;
        self
    }

    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = u64::from(max);
        self
    }

    /// No backend could take a new flow (none in rotation, no trial armed).
    pub fn is_empty(&self) -> bool {
        self.selector.candidates().is_empty() && !self.trial.as_ref().is_some_and(Trial::is_armed)
    }

    /// The backend for a new flow: an armed trial backend first (once per table), else
    /// the selector's choice; backends in `excluded` and those at `max_connections` are
    /// skipped for the next choice.
    pub fn pick(&self, flow: &Flow, excluded: &[SocketAddr]) -> Result<Picked, NoBackend> {
        if let Some(t) = &self.trial {
            if !excluded.contains(&t.candidate.address) && t.is_armed() {
                if let Some(active) = ActiveGuard::reserve(&t.candidate, self.max_connections) {
                    // Exactly one flow wins the swap; the others fall through to the selector.
                    if t.armed.swap(false, Ordering::Relaxed) {
                        return Ok(Picked { slot: t.slot.clone(), active });
                    }
                }
            }
        }
        let mut skipped: Vec<SocketAddr> = excluded.to_vec();
        let mut full = false;
        while let Some(c) = self.selector.pick(flow, &skipped) {
            let Some(slot) = self.slots.get(&c.address) else {
                skipped.push(c.address);
                continue;
            };
            match ActiveGuard::reserve(c, self.max_connections) {
                Some(active) => return Ok(Picked { slot: slot.clone(), active }),
                None => {
                    full = true;
                    skipped.push(c.address);
                }
            }
        }
        Err(if full { NoBackend::Full } else { NoBackend::None })
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

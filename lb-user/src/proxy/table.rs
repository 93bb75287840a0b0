//! A service's table: the selector over its in-rotation backends plus the settings new
//! connections use. Reconcile builds a fresh one and swaps it in; a connection takes the
//! table current when it starts and keeps its backend whatever happens later, unless that
//! backend is cut (maintenance, down, removed).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::service::Signal;
use super::stats::BackendStats;
use crate::config::{Config, Pool};
use crate::select::{Candidate, Flow, Selector};

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
    pub fn new(cfg: &Config, pool: Pool) -> Self {
        let d = &cfg.daemon;
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

pub struct Table {
    pub selector: Selector,
    slots: HashMap<SocketAddr, Arc<BackendSlot>>,
    pub settings: Arc<Settings>,
}

impl Table {
    /// `slots` must hold every candidate's address.
    pub fn new(selector: Selector, slots: HashMap<SocketAddr, Arc<BackendSlot>>, settings: Arc<Settings>) -> Self {
        Table { selector, slots, settings }
    }

    pub fn is_empty(&self) -> bool {
        self.selector.candidates().is_empty()
    }

    /// The backend for a new flow (see `Selector::pick`) and its slot.
    pub fn pick(&self, flow: &Flow, excluded: &[SocketAddr]) -> Option<(&Candidate, Arc<BackendSlot>)> {
        let c = self.selector.pick(flow, excluded)?;
        let slot = self.slots.get(&c.address)?.clone();
        Some((c, slot))
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

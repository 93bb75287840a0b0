//! Every task the proxy spawns is counted here, by kind and (for the ones serving clients)
//! by service. Shutdown waits on it for the drain, and tests assert it is back to zero: a
//! task that outlives its connection is a leaked socket.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What a tracked task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// An accept loop (TCP) or a datagram loop (UDP), one per listening socket.
    Listener,
    /// One accepted client connection (l4 relay or HTTP server connection).
    Connection,
    /// One UDP session (client address ↔ connected socket to its backend).
    Session,
    /// One keep-alive connection to a backend (HTTP mode), busy or idle in the pool.
    Upstream,
    /// Periodic upkeep (the pool's idle reaper).
    Housekeeping,
}

const KINDS: usize = 5;

impl TaskKind {
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
pub struct TaskTracker {
    total: AtomicUsize,
    by_kind: [AtomicUsize; KINDS],
    /// Connection and session tasks per service name.
    per_service: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    idle: Notify,
}

/// Held by a task for its whole life; dropping it is the task's end.
pub struct TaskGuard {
    tracker: Arc<TaskTracker>,
    kind: TaskKind,
    service: Option<Arc<AtomicUsize>>,
}

impl TaskTracker {
    /// Counts a task that is about to be spawned (before the spawn, so a count of zero is
    /// never a task that has not started yet).
    pub fn enter(self: &Arc<Self>, kind: TaskKind, service: &str) -> TaskGuard {
        self.total.fetch_add(1, Ordering::SeqCst);
        self.by_kind[kind.index()].fetch_add(1, Ordering::SeqCst);
        let service = matches!(kind, TaskKind::Connection | TaskKind::Session).then(|| {
            let mut m = self.per_service.lock().unwrap_or_else(|e| e.into_inner());
            let c = m.entry(service.to_string()).or_default().clone();
            c.fetch_add(1, Ordering::SeqCst);
            c
        });
        TaskGuard { tracker: self.clone(), kind, service }
    }

    /// Tasks alive now, all kinds.
    pub fn live(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub fn live_of(&self, kind: TaskKind) -> usize {
        self.by_kind[kind.index()].load(Ordering::SeqCst)
    }

    /// Client connections and UDP sessions of one service alive now.
    pub fn live_connections(&self, service: &str) -> usize {
        let m = self.per_service.lock().unwrap_or_else(|e| e.into_inner());
        m.get(service).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// The service's tasks are counted under its new name from now on (the same counter:
    /// tasks already running keep counting in it).
    pub fn rename_service(&self, from: &str, to: &str) {
        let mut m = self.per_service.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.remove(from) {
            m.insert(to.to_string(), c);
        }
    }

    /// Returns once no tracked task is alive.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a last guard dropped in between still wakes us.
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(s) = &self.service {
            s.fetch_sub(1, Ordering::SeqCst);
        }
        self.tracker.by_kind[self.kind.index()].fetch_sub(1, Ordering::SeqCst);
        if self.tracker.total.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

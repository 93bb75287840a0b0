//! The UDP session table: per client address, a socket connected to the backend picked for
//! it, kept until the session ends.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::idle::Activity;
use super::outcome::Verdict;
use super::table::BackendSlot;

pub struct Session {
    pub socket: UdpSocket,
    pub slot: Arc<BackendSlot>,
    /// The session's outcome: its first reply (success) or port unreachable (failure).
    pub verdict: Verdict,
    pub activity: Activity,
    /// Wakes the session's task to end it (the backend is unreachable).
    pub end: Notify,
    closed: AtomicBool,
}

impl Session {
    pub fn new(socket: UdpSocket, slot: Arc<BackendSlot>) -> Self {
        let verdict = Verdict::new(slot.stats.clone());
        Session { socket, slot, verdict, activity: Activity::new(), end: Notify::new(), closed: AtomicBool::new(false) }
    }

    /// Its task is ending: datagrams from its client open a new session.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }
}

/// The session table of one service, keyed by client address and shared by its workers
/// (a client stays in its session even if the kernel's hash moves it to another socket).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<SocketAddr, Arc<Session>>>,
}

impl Sessions {
    fn map(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn get(&self, client: SocketAddr) -> Option<Arc<Session>> {
        self.map().get(&client).filter(|s| s.is_open()).cloned()
    }

    /// The client's open session, or the one `open` makes (given how many sessions there
    /// are; None: it made none). One lock from the look-up to the insert: two workers never
    /// open two sessions for one client.
    pub fn get_or_open(
        &self,
        client: SocketAddr,
        open: impl FnOnce(usize) -> Option<Arc<Session>>,
    ) -> Option<Arc<Session>> {
        let mut map = self.map();
        if let Some(s) = map.get(&client).filter(|s| s.is_open()) {
            return Some(s.clone());
        }
        let session = open(map.len())?;
        map.insert(client, session.clone());
        Some(session)
    }

    /// Forgets the client's session, if it is still this one.
    pub fn remove(&self, client: SocketAddr, session: &Arc<Session>) {
        let mut map = self.map();
        if map.get(&client).is_some_and(|s| Arc::ptr_eq(s, session)) {
            map.remove(&client);
        }
    }
}

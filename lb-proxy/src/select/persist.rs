//! `persistence_timeout` on the proxy path: a client (source address) whose previous new
//! flow started within the timeout goes back to that flow's backend, as long as it is still
//! a candidate (in rotation, not cut); otherwise the selector places it, and that backend is
//! remembered. The same rule as the XDP path's `LB_PERSIST`. The memory is per service,
//! shared by all workers and kept across table swaps; it holds at most `MAX_CLIENTS`
//! clients (when full, the timed-out ones leave; if none has, a new client is not
//! remembered until one does, so a flood of sources cannot grow it without bound).
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most clients remembered per service.
pub const MAX_CLIENTS: usize = 65_536;

/// The clients of one service and the backend each persists on.
#[derive(Debug, Default)]
pub struct Persistence {
    clients: Mutex<HashMap<IpAddr, Remembered>>,
}

#[derive(Clone, Copy, Debug)]
struct Remembered {
    backend: SocketAddr,
    last: Instant,
}

/// A service's persistence as a table uses it: the shared memory and the timeout.
#[derive(Clone, Debug)]
pub struct Persistent {
    pub clients: Arc<Persistence>,
    pub timeout: Duration,
}

impl Persistent {
    /// The backend `client` persists on at `now`, if its last flow was within the timeout.
    /// A hit restarts the client's clock (its new flow starts now).
    pub fn remembered(&self, client: IpAddr, now: Instant) -> Option<SocketAddr> {
        let mut clients = self.clients.lock();
        let r = clients.get_mut(&client)?;
        if now.saturating_duration_since(r.last) >= self.timeout {
            return None;
        }
        r.last = now;
        Some(r.backend)
    }

    /// `client`'s new flow went to `backend` at `now`.
    pub fn remember(&self, client: IpAddr, backend: SocketAddr, now: Instant) {
        let mut clients = self.clients.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, r| now.saturating_duration_since(r.last) < self.timeout);
            if clients.len() >= MAX_CLIENTS {
                return;
            }
        }
        clients.insert(client, Remembered { backend, last: now });
    }
}

impl Persistence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Remembered>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Clients remembered now (timed out or not).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persistent(timeout: Duration) -> Persistent {
        Persistent { clients: Arc::default(), timeout }
    }

    #[test]
    fn a_client_is_remembered_within_the_timeout_and_each_hit_restarts_its_clock() {
        let p = persistent(Duration::from_secs(10));
        let (client, backend) = ("198.51.100.1".parse().unwrap(), "10.0.0.1:80".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(p.remembered(client, t0), None);
        p.remember(client, backend, t0);
        assert_eq!(p.remembered(client, t0 + Duration::from_secs(9)), Some(backend));
        assert_eq!(p.remembered(client, t0 + Duration::from_secs(18)), Some(backend), "restarted at 9 s");
        assert_eq!(p.remembered(client, t0 + Duration::from_secs(28)), None, "10 s of silence");
    }

    #[test]
    fn a_full_memory_makes_room_from_timed_out_clients_only() {
        let p = persistent(Duration::from_secs(10));
        let backend: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_CLIENTS as u32 {
            p.remember(IpAddr::from(i.to_be_bytes()), backend, t0);
        }
        let late: IpAddr = "203.0.113.9".parse().unwrap();
        p.remember(late, backend, t0 + Duration::from_secs(1));
        assert_eq!(p.remembered(late, t0 + Duration::from_secs(1)), None, "full of live clients: not remembered");
        assert_eq!(p.clients.len(), MAX_CLIENTS);
        p.remember(late, backend, t0 + Duration::from_secs(11));
        assert_eq!(p.remembered(late, t0 + Duration::from_secs(11)), Some(backend), "the timed-out ones left");
        assert_eq!(p.clients.len(), 1);
    }
}

//! `max_client_connections` and `max_connections_per_source`: how many client connections
//! (TCP, either mode) or UDP sessions a service holds open at once, in all and per source
//! address (IPv6 per /64, as the rate limiter counts sources). Every open one holds a socket,
//! so these caps are what keeps one client from taking the process's descriptors: a new
//! connection past either is refused at accept (reset at once), a datagram that would open a
//! session past either is dropped.
//!
//! Unlike the rate limit, this counts what is open now: a `ConnSlot` is taken at accept and
//! given back when the connection (or session) ends. The counts are kept across reconciles
//! and listener rebinds; a cap lowered below what is open refuses new ones until enough end.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lb_config::ConnectionCaps;

use super::limit::{source_key, Scope};

/// How often a service may log that it refused connections (with the count since).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One service's open client connections and its caps.
pub struct ConnCounter {
    per_service: AtomicU32,
    per_source: AtomicU32,
    open: AtomicU64,
    /// Open connections per source key; only sources with one open, and only while a
    /// per-source cap is set (so the map never outgrows the sockets it stands for).
    sources: Mutex<HashMap<IpAddr, u32>>,
    log: RefusalLog,
}

impl Default for ConnCounter {
    fn default() -> Self {
        ConnCounter {
            per_service: AtomicU32::new(0),
            per_source: AtomicU32::new(0),
            open: AtomicU64::new(0),
            sources: Mutex::default(),
            log: RefusalLog::new(),
        }
    }
}

/// One open connection's place in its service's counts, given back when dropped.
pub struct ConnSlot {
    counter: Arc<ConnCounter>,
    /// The source it counts under, when it was counted per source.
    source: Option<IpAddr>,
}

impl ConnCounter {
    /// Applies the service's caps (a reload); open connections keep their slots.
    pub fn configure(&self, caps: &ConnectionCaps) {
        self.per_service.store(caps.per_service, Ordering::Relaxed);
        self.per_source.store(caps.per_source, Ordering::Relaxed);
    }

    /// Client connections (or sessions) open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot for a new connection from `client`, or the cap that refuses it. The source's
    /// cap is checked first: a source at its cap takes nothing from the service's.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnSlot, Scope> {
        let per_source = self.per_source.load(Ordering::Relaxed);
        let source = if per_source > 0 {
            let key = source_key(client);
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let n = sources.entry(key).or_insert(0);
            if *n >= per_source {
                return Err(Scope::Source);
            }
            *n += 1;
            Some(key)
        } else {
            None
        };
        // From here on the slot exists: dropping it (a refusal below) gives the source back.
        let slot = ConnSlot { counter: self.clone(), source };
        let per_service = u64::from(self.per_service.load(Ordering::Relaxed));
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if per_service > 0 && before >= per_service {
            // `slot`'s drop takes this increment back.
            return Err(Scope::Service);
        }
        Ok(slot)
    }

    /// Counts a refusal; true when it should be logged (at most once per `LOG_EVERY`), with
    /// how many were refused since the last log.
    pub fn refused(&self) -> Option<u64> {
        self.log.note()
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let c = &self.counter;
        c.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(key) = self.source {
            let mut sources = c.sources.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = sources.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    sources.remove(&key);
                }
            }
        }
    }
}

/// Refusals come in floods: one log line per `LOG_EVERY`, saying how many.
struct RefusalLog {
    start: Instant,
    /// Milliseconds after `start` (+1, so 0 is "never") of the last line.
    logged_at: AtomicU64,
    since: AtomicU64,
}

impl RefusalLog {
    fn new() -> Self {
        RefusalLog { start: Instant::now(), logged_at: AtomicU64::new(0), since: AtomicU64::new(0) }
    }

    fn note(&self) -> Option<u64> {
        let since = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.logged_at.load(Ordering::Relaxed);
        if last != 0 && now - last < LOG_EVERY.as_millis() as u64 {
            return None;
        }
        if self.logged_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return None;
        }
        self.since.fetch_sub(since, Ordering::Relaxed);
        Some(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn counter(per_service: u32, per_source: u32) -> Arc<ConnCounter> {
        let c = Arc::new(ConnCounter::default());
        c.configure(&ConnectionCaps { per_service, per_source });
        c
    }

    #[test]
    fn a_source_at_its_cap_is_refused_until_one_of_its_connections_ends() {
        let c = counter(0, 2);
        let a = c.admit(ip("10.0.0.1")).unwrap();
        let _b = c.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(c.admit(ip("10.0.0.1")).err(), Some(Scope::Source));
        assert!(c.admit(ip("10.0.0.2")).is_ok(), "another source is not affected");
        drop(a);
        assert!(c.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        let c = counter(0, 1);
        let _a = c.admit(ip("fd00:20::1")).unwrap();
        assert_eq!(c.admit(ip("fd00:20::ffff:1")).err(), Some(Scope::Source));
        assert!(c.admit(ip("fd00:20:0:1::1")).is_ok());
    }

    #[test]
    fn the_service_cap_counts_every_source_and_a_refusal_holds_nothing() {
        let c = counter(2, 5);
        let held: Vec<ConnSlot> = ["10.0.0.1", "10.0.0.2"].iter().map(|s| c.admit(ip(s)).unwrap()).collect();
        for _ in 0..10 {
            assert_eq!(c.admit(ip("10.0.0.3")).err(), Some(Scope::Service));
        }
        assert_eq!(c.open(), 2);
        assert_eq!(c.sources.lock().unwrap().len(), 2, "refused sources leave no entry");
        drop(held);
        assert_eq!(c.open(), 0);
        assert!(c.sources.lock().unwrap().is_empty());
    }

    #[test]
    fn no_cap_admits_everything_and_keeps_no_source_state() {
        let c = counter(0, 0);
        let held: Vec<ConnSlot> = (0..1000).map(|i| c.admit(IpAddr::from([10, 0, 0, i as u8])).unwrap()).collect();
        assert_eq!(c.open(), 1000);
        assert!(c.sources.lock().unwrap().is_empty());
        drop(held);
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn a_cap_set_while_connections_are_open_counts_only_later_ones_per_source() {
        let c = counter(0, 0);
        let old = c.admit(ip("10.0.0.1")).unwrap();
        c.configure(&ConnectionCaps { per_service: 0, per_source: 1 });
        let new = c.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(c.admit(ip("10.0.0.1")).err(), Some(Scope::Source));
        drop(old);
        assert_eq!(c.admit(ip("10.0.0.1")).err(), Some(Scope::Source), "the old slot was never counted per source");
        drop(new);
        assert!(c.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn refusals_are_logged_once_per_period_with_their_count() {
        let log = RefusalLog::new();
        assert_eq!(log.note(), Some(1));
        assert_eq!((0..99).filter_map(|_| log.note()).count(), 0);
        assert_eq!(log.since.load(Ordering::Relaxed), 99, "counted for the next line");
    }
}

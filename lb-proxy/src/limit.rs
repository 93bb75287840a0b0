//! `[service.rate_limit]` on the proxy path: token buckets for new flows (l4 connections,
//! HTTP client connections, UDP sessions), one per service and one per source address
//! (IPv6 per /64, as one host usually holds a whole /64). Established flows never pass
//! here, so they are never limited.
//!
//! The buckets are the XDP path's own (`lb_common::ratelimit`), so both paths admit the
//! same flows for the same config. The source bucket is checked first: a source over its
//! limit is refused before it can take anything from the service's budget.
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Instant;

use lb_common::ratelimit::{Bucket, Limit};

use lb_config::{RateLimit, SourceAcl};

/// Sources remembered per service. A source forgotten to make room comes back with a full
/// bucket, so the bound costs precision only while more sources than this are active.
pub const MAX_SOURCES: usize = 65_536;

/// Which bucket refused a new flow (the `scope` label of `lb_ratelimited_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Service,
    Source,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Service => "service",
            Scope::Source => "source",
        }
    }
}

/// Nanoseconds on a monotonic clock shared by the whole process (the buckets compare
/// timestamps taken on different threads).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years; saturate rather than wrap past that.
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The key a source is counted under: IPv4 as is, IPv6 by its /64. An IPv4-mapped IPv6
/// address (a dual-stack socket) counts as the IPv4 address it is.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

struct Entry {
    bucket: Bucket,
    /// The `order` stamp of this entry's latest use; older stamps in `order` are stale.
    stamp: u64,
}

/// Per-source buckets, at most `capacity`, least recently used evicted first. Recency is a
/// queue of (key, stamp) pushed on every use; stale pairs are skipped on eviction and the
/// queue is compacted when it grows past twice the map, so every operation is amortised
/// O(1) even under a flood of distinct sources.
pub struct SourceBuckets {
    capacity: usize,
    map: HashMap<IpAddr, Entry>,
    order: VecDeque<(IpAddr, u64)>,
    next_stamp: u64,
}

impl SourceBuckets {
    pub fn new(capacity: usize) -> Self {
        SourceBuckets { capacity: capacity.max(1), map: HashMap::new(), order: VecDeque::new(), next_stamp: 0 }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    #[cfg(test)]
    pub fn contains(&self, key: IpAddr) -> bool {
        self.map.contains_key(&key)
    }

    /// Takes one new flow from `key`'s bucket (a new source starts full).
    pub fn take(&mut self, key: IpAddr, limit: &Limit, now: u64) -> bool {
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            self.evict_one();
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let entry = self.map.entry(key).or_insert_with(|| Entry { bucket: Bucket::full(limit, now), stamp });
        entry.stamp = stamp;
        let admitted = entry.bucket.take(limit, now);
        self.order.push_back((key, stamp));
        if self.order.len() > 2 * self.capacity.max(self.map.len()) {
            self.compact();
        }
        admitted
    }

    fn evict_one(&mut self) {
        while let Some((key, stamp)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.stamp == stamp) {
                self.map.remove(&key);
                return;
            }
        }
    }

    /// Drops the stale recency pairs (each key keeps only its latest).
    fn compact(&mut self) {
        let map = &self.map;
        self.order.retain(|(k, s)| map.get(k).is_some_and(|e| e.stamp == *s));
    }
}

/// The limits in force and the raw config they came from (to tell a changed limit).
#[derive(Clone, Copy, Default)]
struct Limits {
    config: RateLimit,
    service: Limit,
    per_source: Limit,
}

/// A rate and burst as a bucket's limit. The config defaults a missing burst to one
/// second's worth; a burst of 0 from anywhere else means the same, not "refuse everything".
fn bucket_limit(rate: u32, burst: u32) -> Limit {
    Limit::new(rate, if burst == 0 { rate } else { burst })
}

/// One service's new-flow limiter. Kept across reconciles (and listener rebinds): its
/// buckets start over only when the service's limits change.
pub struct RateLimiter {
    /// The service's `allow` / `deny` lists, checked before any bucket.
    acl: RwLock<SourceAcl>,
    limits: RwLock<Limits>,
    service: Mutex<Bucket>,
    sources: Mutex<SourceBuckets>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::with_capacity(MAX_SOURCES)
    }
}

impl RateLimiter {
    pub fn with_capacity(sources: usize) -> Self {
        RateLimiter {
            acl: RwLock::new(SourceAcl::default()),
            limits: RwLock::new(Limits::default()),
            service: Mutex::new(Bucket::default()),
            sources: Mutex::new(SourceBuckets::new(sources)),
        }
    }

    /// Applies the service's `allow` / `deny` lists.
    pub fn configure_acl(&self, acl: &SourceAcl) {
        let mut current = self.acl.write().unwrap_or_else(|e| e.into_inner());
        if *current != *acl {
            *current = acl.clone();
        }
    }

    /// May a new flow (connection, UDP session) from `client` start at all?
    pub fn permits(&self, client: IpAddr) -> bool {
        self.acl.read().unwrap_or_else(|e| e.into_inner()).permits(client)
    }

    /// Applies `[service.rate_limit]`. A scope whose limit is unchanged keeps its buckets
    /// (and their credit); a changed one starts over, full.
    pub fn configure(&self, config: &RateLimit) {
        let mut limits = self.limits.write().unwrap_or_else(|e| e.into_inner());
        if limits.config == *config {
            return;
        }
        let service = bucket_limit(config.new_flows_per_second, config.burst);
        let per_source = bucket_limit(config.per_source_new_flows_per_second, config.per_source_burst);
        if service != limits.service {
            *self.service.lock().unwrap_or_else(|e| e.into_inner()) = Bucket::full(&service, now_ns());
        }
        if per_source != limits.per_source {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let capacity = sources.capacity;
            *sources = SourceBuckets::new(capacity);
        }
        *limits = Limits { config: *config, service, per_source };
    }

    /// May a new flow from `client` start now? Err names the bucket that refused it.
    pub fn admit(&self, client: IpAddr) -> Result<(), Scope> {
        self.admit_at(client, now_ns())
    }

    pub fn admit_at(&self, client: IpAddr, now: u64) -> Result<(), Scope> {
        let limits = *self.limits.read().unwrap_or_else(|e| e.into_inner());
        if !limits.per_source.unlimited() {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            if !sources.take(source_key(client), &limits.per_source, now) {
                return Err(Scope::Source);
            }
        }
        if !limits.service.unlimited()
            && !self.service.lock().unwrap_or_else(|e| e.into_inner()).take(&limits.service, now)
        {
            return Err(Scope::Service);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_key(ip("fd00:20::1:2:3:4")), ip("fd00:20::"));
        assert_eq!(source_key(ip("fd00:20::ffff")), source_key(ip("fd00:20::1")));
        assert_ne!(source_key(ip("fd00:20:0:1::1")), source_key(ip("fd00:20::1")));
        assert_eq!(source_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(source_key(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn the_map_never_holds_more_than_its_capacity_and_evicts_the_least_recently_used() {
        let limit = Limit::new(1, 1);
        let mut m = SourceBuckets::new(3);
        for i in 0..3 {
            assert!(m.take(v4(i), &limit, 0));
        }
        // Source 0 is used again: source 1 is now the least recently used.
        assert!(!m.take(v4(0), &limit, 0));
        assert!(m.take(v4(3), &limit, 0));
        assert_eq!(m.len(), 3);
        assert!(m.contains(v4(0)) && !m.contains(v4(1)) && m.contains(v4(2)) && m.contains(v4(3)));
    }

    #[test]
    fn an_evicted_source_comes_back_with_a_full_bucket() {
        let limit = Limit::new(1, 2);
        let mut m = SourceBuckets::new(1);
        assert!(m.take(v4(0), &limit, 0) && m.take(v4(0), &limit, 0));
        assert!(!m.take(v4(0), &limit, 0), "empty");
        assert!(m.take(v4(1), &limit, 0), "evicts source 0");
        assert!(m.take(v4(0), &limit, 0) && m.take(v4(0), &limit, 0), "back, full");
    }

    #[test]
    fn a_flood_of_distinct_sources_keeps_the_recency_queue_bounded() {
        let limit = Limit::new(10, 10);
        let mut m = SourceBuckets::new(100);
        for i in 0..100_000u32 {
            m.take(v4(i % 1000), &limit, u64::from(i));
            assert!(m.len() <= 100);
            assert!(m.order.len() <= 200 + 1, "queue {}", m.order.len());
        }
        // One hot source used over and over stays while cold ones churn.
        for i in 0..10_000u32 {
            m.take(v4(5_000), &limit, 0);
            m.take(v4(10_000 + i), &limit, 0);
            assert!(m.contains(v4(5_000)));
        }
    }

    #[test]
    fn a_source_over_its_limit_does_not_drain_the_service_budget() {
        let l = RateLimiter::default();
        l.configure(&RateLimit {
            new_flows_per_second: 1,
            burst: 3,
            per_source_new_flows_per_second: 1,
            per_source_burst: 1,
        });
        assert_eq!(l.admit_at(ip("10.0.0.1"), SEC), Ok(()));
        for _ in 0..10 {
            assert_eq!(l.admit_at(ip("10.0.0.1"), SEC), Err(Scope::Source));
        }
        assert_eq!(l.admit_at(ip("10.0.0.2"), SEC), Ok(()));
        assert_eq!(l.admit_at(ip("10.0.0.3"), SEC), Ok(()));
        assert_eq!(l.admit_at(ip("10.0.0.4"), SEC), Err(Scope::Service));
    }

    #[test]
    fn unchanged_limits_keep_the_buckets_and_changed_ones_refill_them() {
        let cfg = RateLimit { new_flows_per_second: 1, burst: 1, ..Default::default() };
        let l = RateLimiter::default();
        l.configure(&cfg);
        assert!(l.admit(ip("10.0.0.1")).is_ok());
        assert_eq!(l.admit(ip("10.0.0.1")), Err(Scope::Service));
        l.configure(&cfg);
        assert_eq!(l.admit(ip("10.0.0.1")), Err(Scope::Service), "same limits: still empty");
        l.configure(&RateLimit { burst: 2, ..cfg });
        assert!(l.admit(ip("10.0.0.1")).is_ok(), "new limits: full again");
    }

    #[test]
    fn changing_one_scope_keeps_the_other_scopes_buckets() {
        let cfg =
            RateLimit { new_flows_per_second: 1, burst: 5, per_source_new_flows_per_second: 1, per_source_burst: 1 };
        let l = RateLimiter::default();
        l.configure(&cfg);
        assert!(l.admit_at(ip("10.0.0.1"), SEC).is_ok());
        assert_eq!(l.admit_at(ip("10.0.0.1"), SEC), Err(Scope::Source));
        l.configure(&RateLimit { burst: 6, ..cfg });
        assert_eq!(l.admit_at(ip("10.0.0.1"), SEC), Err(Scope::Source), "the source's bucket was kept");
        l.configure(&RateLimit { per_source_burst: 2, burst: 6, ..cfg });
        assert!(l.admit_at(ip("10.0.0.1"), SEC).is_ok(), "the sources start over");
    }

    #[test]
    fn a_burst_of_zero_means_one_seconds_worth() {
        let l = RateLimiter::default();
        l.configure(&RateLimit { new_flows_per_second: 3, burst: 0, ..Default::default() });
        assert_eq!((0..10).filter(|_| l.admit_at(ip("10.0.0.1"), SEC).is_ok()).count(), 3);
    }

    #[test]
    fn no_limit_admits_everything() {
        let l = RateLimiter::default();
        l.configure(&RateLimit::default());
        assert!((0..10_000).all(|i| l.admit(v4(i)).is_ok()));
        assert!(l.sources.lock().unwrap().is_empty(), "no per-source state kept when unlimited");
    }
}

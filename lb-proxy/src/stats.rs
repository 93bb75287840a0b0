//! The proxy's counters: per backend (connections, active, bytes, connect failures), per
//! service (the HTTP pool), the open flows for `lb list flows`, and their Prometheus text.
//!
//! Counters are atomics bumped by the connection tasks; the maps holding them change only
//! on reconcile (a write lock there, a read lock per scrape), never per packet or request.
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

pub use lb_control::datapath::BackendCounters;
use lb_control::exposition::{sample, Exposition};

use super::limit::Scope;
use super::tracker::TaskTracker;
use lb_config::Protocol;

/// The `path` label of every proxy series.
pub const PATH_PROXY: &str = "proxy";

/// One backend of one service.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// New flows given to the backend: connections (l4 TCP), sessions (UDP), requests
    /// (HTTP mode, where the request is the unit of balancing).
    pub connections_total: AtomicU64,
    /// Open now (l4: connections, UDP: sessions, HTTP: requests in flight). The very
    /// counter the selector's `least_conn` / `p2c` read, so metric and decision agree.
    pub active: Arc<AtomicU64>,
    /// Client → backend bytes (payload for l4; what went on the wire, headers included,
    /// for HTTP).
    pub bytes_in: AtomicU64,
    /// Backend → client bytes.
    pub bytes_out: AtomicU64,
    /// Connects that failed or timed out (UDP: ICMP port unreachable on the session).
    pub connect_failures_total: AtomicU64,
    /// New flows that worked (passive outcome for the circuit breaker; see `outcome`).
    pub succeeded_total: AtomicU64,
    /// New flows that failed: connect refused or timed out, reset before the backend sent
    /// anything, HTTP 5xx, UDP port unreachable.
    pub failed_total: AtomicU64,
}

/// One service.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Upstream connections the HTTP pool opened.
    pub pool_connections_opened_total: AtomicU64,
    /// Requests sent upstream by the HTTP proxy (retries included).
    pub pool_requests_total: AtomicU64,
    /// UDP datagrams dropped because the session table was full.
    pub udp_sessions_rejected_total: AtomicU64,
    /// New flows refused by `[service.rate_limit]`: the service's bucket was empty.
    pub ratelimited_service_total: AtomicU64,
    /// New flows refused by `[service.rate_limit]`: the source's bucket was empty.
    pub ratelimited_source_total: AtomicU64,
    /// New flows refused by the service's `allow` / `deny` lists.
    pub acl_denied_total: AtomicU64,
    /// New flows refused because every candidate backend was at `max_connections`.
    pub overflow_total: AtomicU64,
    /// Client connections (UDP: sessions) refused at `max_client_connections`.
    pub capped_service_total: AtomicU64,
    /// Client connections (UDP: sessions) refused at `max_connections_per_source`.
    pub capped_source_total: AtomicU64,
    /// HTTP requests refused before reaching a backend, by reason.
    pub http_rejected: [AtomicU64; HttpRejection::ALL.len()],
    /// The service is in HTTP mode (only those have pool series).
    pub http: std::sync::atomic::AtomicBool,
    /// PROXY headers refused, SNI routes taken and refused.
    pub traffic: super::traffic_stats::TrafficStats,
}

/// A plain copy of a service's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceCounters {
    pub pool_connections_opened_total: u64,
    pub pool_requests_total: u64,
    pub udp_sessions_rejected_total: u64,
    pub ratelimited_service_total: u64,
    pub ratelimited_source_total: u64,
    pub overflow_total: u64,
    pub capped_service_total: u64,
    pub capped_source_total: u64,
    pub acl_denied_total: u64,
    /// Per `HttpRejection::ALL`.
    pub http_rejected: [u64; HttpRejection::ALL.len()],
}

/// Why the HTTP mode refused a request itself (the `reason` label of
/// `lb_proxy_http_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRejection {
    /// The head did not arrive within `http_header_timeout`: 408.
    HeaderTimeout,
    /// The head was larger than `http_max_header_size`: 431.
    HeaderTooLarge,
    /// Both `Content-Length` and `Transfer-Encoding`: 400.
    ConflictingLength,
    /// Anything else the parser refused (differing `Content-Length`s, obs-fold, a bad
    /// header name, a bad request line): 400.
    Malformed,
}

impl HttpRejection {
    pub const ALL: [HttpRejection; 4] = [
        HttpRejection::HeaderTimeout,
        HttpRejection::HeaderTooLarge,
        HttpRejection::ConflictingLength,
        HttpRejection::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HttpRejection::HeaderTimeout => "header_timeout",
            HttpRejection::HeaderTooLarge => "header_too_large",
            HttpRejection::ConflictingLength => "conflicting_length",
            HttpRejection::Malformed => "malformed",
        }
    }
}

impl ServiceCounters {
    /// 1 - opened/requests: the share of requests that rode an existing connection. 0 before
    /// the first request.
    pub fn reuse_ratio(&self) -> f64 {
        if self.pool_requests_total == 0 {
            return 0.0;
        }
        (1.0 - self.pool_connections_opened_total as f64 / self.pool_requests_total as f64).max(0.0)
    }
}

impl BackendStats {
    pub fn snapshot(&self) -> BackendCounters {
        BackendCounters {
            connections_total: self.connections_total.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            connect_failures_total: self.connect_failures_total.load(Ordering::Relaxed),
            succeeded_total: self.succeeded_total.load(Ordering::Relaxed),
            failed_total: self.failed_total.load(Ordering::Relaxed),
        }
    }
}

impl ServiceStats {
    /// Counts a new flow the service's `allow` / `deny` lists refused.
    pub fn acl_denied(&self) {
        self.acl_denied_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a new flow the rate limiter refused.
    pub fn ratelimited(&self, scope: Scope) {
        let c = match scope {
            Scope::Service => &self.ratelimited_service_total,
            Scope::Source => &self.ratelimited_source_total,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection (or session) refused at a connection cap.
    pub fn capped(&self, scope: Scope) {
        let c = match scope {
            Scope::Service => &self.capped_service_total,
            Scope::Source => &self.capped_source_total,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request the HTTP mode refused itself.
    pub fn http_rejected(&self, why: HttpRejection) {
        self.http_rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ServiceCounters {
        ServiceCounters {
            pool_connections_opened_total: self.pool_connections_opened_total.load(Ordering::Relaxed),
            pool_requests_total: self.pool_requests_total.load(Ordering::Relaxed),
            udp_sessions_rejected_total: self.udp_sessions_rejected_total.load(Ordering::Relaxed),
            ratelimited_service_total: self.ratelimited_service_total.load(Ordering::Relaxed),
            ratelimited_source_total: self.ratelimited_source_total.load(Ordering::Relaxed),
            overflow_total: self.overflow_total.load(Ordering::Relaxed),
            capped_service_total: self.capped_service_total.load(Ordering::Relaxed),
            capped_source_total: self.capped_source_total.load(Ordering::Relaxed),
            acl_denied_total: self.acl_denied_total.load(Ordering::Relaxed),
            http_rejected: std::array::from_fn(|i| self.http_rejected[i].load(Ordering::Relaxed)),
        }
    }
}

/// An open connection (l4), session (UDP) or request in flight (HTTP), as `lb list flows`
/// shows it. `vip` is the address the client reached (the listener's own address when the
/// service listens on `0.0.0.0` / `::`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyFlow {
    pub service: String,
    pub protocol: Protocol,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub backend: SocketAddr,
}

const FLOW_SHARDS: usize = 16;

/// Open flows, sharded so that connections opening and closing on different threads rarely
/// meet on one lock.
#[derive(Default)]
struct FlowTable {
    next: AtomicU64,
    shards: [Mutex<HashMap<u64, ProxyFlow>>; FLOW_SHARDS],
}

/// Removes its flow from the table when dropped.
pub struct FlowEntry {
    stats: Arc<ProxyStats>,
    id: u64,
}

impl Drop for FlowEntry {
    fn drop(&mut self) {
        let shard = &self.stats.flows.shards[self.id as usize % FLOW_SHARDS];
        shard.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// Everything the proxy counts, shared by the data plane, its tasks and the metrics scrape.
#[derive(Default)]
pub struct ProxyStats {
    backends: RwLock<BTreeMap<(String, SocketAddr), Arc<BackendStats>>>,
    services: RwLock<BTreeMap<String, Arc<ServiceStats>>>,
    flows: FlowTable,
    tasks: Arc<TaskTracker>,
}

impl ProxyStats {
    /// The tracker of every task the proxy runs.
    pub fn tasks(&self) -> &Arc<TaskTracker> {
        &self.tasks
    }

    /// Tasks alive now (0 once the proxy is shut down and nothing leaked).
    pub fn live_tasks(&self) -> usize {
        self.tasks.live()
    }

    /// A backend's counters, created on first use (reconcile creates them for every backend
    /// it sees, so a scrape lists idle backends with zeros).
    pub(crate) fn backend_entry(&self, service: &str, address: SocketAddr) -> Arc<BackendStats> {
        let key = (service.to_string(), address);
        if let Some(b) = self.backends.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return b.clone();
        }
        self.backends.write().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone()
    }

    pub(crate) fn service_entry(&self, service: &str) -> Arc<ServiceStats> {
        if let Some(s) = self.services.read().unwrap_or_else(|e| e.into_inner()).get(service) {
            return s.clone();
        }
        self.services.write().unwrap_or_else(|e| e.into_inner()).entry(service.to_string()).or_default().clone()
    }

    /// Forgets the counters of backends no source names any more (once nothing uses them)
    /// and of services that are gone.
    pub(crate) fn retain(&self, keep_backend: impl Fn(&str, SocketAddr) -> bool, keep_service: impl Fn(&str) -> bool) {
        self.backends
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(s, a), b| keep_backend(s, *a) || b.active.load(Ordering::Relaxed) > 0);
        self.services.write().unwrap_or_else(|e| e.into_inner()).retain(|s, _| keep_service(s));
    }

    /// A service renamed in place: its counters (service, backends), open flows and task
    /// counts go on under the new name, as the same series.
    pub(crate) fn rename_service(&self, from: &str, to: &str) {
        {
            let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = services.remove(from) {
                services.insert(to.to_string(), s);
            }
        }
        {
            let mut backends = self.backends.write().unwrap_or_else(|e| e.into_inner());
            let moved: Vec<(String, SocketAddr)> = backends.keys().filter(|(s, _)| s == from).cloned().collect();
            for key in moved {
                if let Some(b) = backends.remove(&key) {
                    backends.insert((to.to_string(), key.1), b);
                }
            }
        }
        for shard in &self.flows.shards {
            for flow in shard.lock().unwrap_or_else(|e| e.into_inner()).values_mut().filter(|f| f.service == from) {
                flow.service = to.to_string();
            }
        }
        self.tasks.rename_service(from, to);
    }

    /// Registers an open flow until the returned entry is dropped.
    pub(crate) fn open_flow(self: &Arc<Self>, flow: ProxyFlow) -> FlowEntry {
        let id = self.flows.next.fetch_add(1, Ordering::Relaxed);
        let shard = &self.flows.shards[id as usize % FLOW_SHARDS];
        shard.lock().unwrap_or_else(|e| e.into_inner()).insert(id, flow);
        FlowEntry { stats: self.clone(), id }
    }

    /// Open connections, UDP sessions and HTTP requests in flight.
    pub fn flows(&self) -> Vec<ProxyFlow> {
        let mut v: Vec<ProxyFlow> = Vec::new();
        for shard in &self.flows.shards {
            v.extend(shard.lock().unwrap_or_else(|e| e.into_inner()).values().cloned());
        }
        v.sort_by(|a, b| (&a.service, a.client, a.backend).cmp(&(&b.service, b.client, b.backend)));
        v
    }

    pub fn backend(&self, service: &str, address: SocketAddr) -> Option<BackendCounters> {
        let m = self.backends.read().unwrap_or_else(|e| e.into_inner());
        m.get(&(service.to_string(), address)).map(|b| b.snapshot())
    }

    /// Every backend's counters: (service, backend, counters), sorted.
    pub fn backends(&self) -> Vec<(String, SocketAddr, BackendCounters)> {
        let m = self.backends.read().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|((s, a), b)| (s.clone(), *a, b.snapshot())).collect()
    }

    pub fn service(&self, name: &str) -> Option<ServiceCounters> {
        self.services.read().unwrap_or_else(|e| e.into_inner()).get(name).map(|s| s.snapshot())
    }

    /// The proxy's families in Prometheus text format 0.0.4 (HELP and TYPE once each;
    /// families without samples left out).
    pub fn render_metrics(&self) -> String {
        let backends = self.backends();
        let every_service: Vec<(String, ServiceCounters, bool)> = {
            let m = self.services.read().unwrap_or_else(|e| e.into_inner());
            m.iter().map(|(s, c)| (s.clone(), c.snapshot(), c.http.load(Ordering::Relaxed))).collect()
        };
        let services: Vec<(String, ServiceCounters)> =
            every_service.iter().filter(|(_, _, http)| *http).map(|(s, c, _)| (s.clone(), *c)).collect();
        let mut out = Exposition::default();
        let per_backend =
            |out: &mut Exposition, name: &str, kind: &str, help: &str, f: &dyn Fn(&BackendCounters) -> u64| {
                out.family(
                    name,
                    kind,
                    help,
                    backends.iter().map(|(s, a, c)| {
                        sample(name, &[("service", s), ("backend", &a.to_string()), ("path", PATH_PROXY)], f(c))
                    }),
                );
            };
        per_backend(
            &mut out,
            "lb_backend_new_flows_total",
            "counter",
            "Flows the proxy gave the backend (connections, UDP sessions, or HTTP requests).",
            &|c| c.connections_total,
        );
        per_backend(
            &mut out,
            "lb_backend_bytes_total",
            "counter",
            "Bytes the proxy forwarded to the backend (client to backend).",
            &|c| c.bytes_in,
        );
        per_backend(
            &mut out,
            "lb_backend_reply_bytes_total",
            "counter",
            "Bytes the proxy relayed from the backend back to clients.",
            &|c| c.bytes_out,
        );
        per_backend(
            &mut out,
            "lb_backend_active_flows",
            "gauge",
            "Connections, UDP sessions or HTTP requests open to the backend now (what least_conn and p2c compare).",
            &|c| c.active,
        );
        per_backend(
            &mut out,
            "lb_backend_connect_failures_total",
            "counter",
            "Connects to the backend that failed or timed out.",
            &|c| c.connect_failures_total,
        );
        let per_service =
            |out: &mut Exposition, name: &str, kind: &str, help: &str, f: &dyn Fn(&ServiceCounters) -> String| {
                out.family(name, kind, help, services.iter().map(|(s, c)| sample(name, &[("service", s)], f(c))));
            };
        per_service(
            &mut out,
            "lb_pool_connections_opened_total",
            "counter",
            "Upstream connections the HTTP proxy's pool opened.",
            &|c| c.pool_connections_opened_total.to_string(),
        );
        per_service(&mut out, "lb_pool_requests_total", "counter", "Requests the HTTP proxy sent upstream.", &|c| {
            c.pool_requests_total.to_string()
        });
        per_service(
            &mut out,
            "lb_pool_reuse_ratio",
            "gauge",
            "1 - connections opened / requests: the share of requests that reused a pooled connection.",
            &|c| format!("{}", c.reuse_ratio()),
        );
        // Every service, both scopes, zeros included: a rate alert needs the series to exist
        // before the first refusal.
        out.family(
            "lb_ratelimited_total",
            "counter",
            "New flows refused by the rate limit, by the bucket that refused them (service or source).",
            every_service.iter().flat_map(|(s, c, _)| {
                [(Scope::Service, c.ratelimited_service_total), (Scope::Source, c.ratelimited_source_total)].map(
                    |(scope, n)| {
                        sample(
                            "lb_ratelimited_total",
                            &[("service", s), ("scope", scope.as_str()), ("path", PATH_PROXY)],
                            n,
                        )
                    },
                )
            }),
        );
        out.family(
            "lb_acl_denied_total",
            "counter",
            "New flows refused by the service's allow / deny source lists.",
            every_service.iter().map(|(s, c, _)| {
                sample("lb_acl_denied_total", &[("service", s), ("path", PATH_PROXY)], c.acl_denied_total)
            }),
        );
        out.family(
            "lb_proxy_overflow_total",
            "counter",
            "New flows refused because every backend was at max_connections.",
            every_service.iter().map(|(s, c, _)| {
                sample("lb_proxy_overflow_total", &[("service", s), ("path", PATH_PROXY)], c.overflow_total)
            }),
        );
        out.family(
            "lb_proxy_connections_refused_total",
            "counter",
            "Client connections (UDP: sessions) refused at accept by max_client_connections (scope service) or max_connections_per_source (scope source).",
            every_service.iter().flat_map(|(s, c, _)| {
                [(Scope::Service, c.capped_service_total), (Scope::Source, c.capped_source_total)].map(|(scope, n)| {
                    sample(
                        "lb_proxy_connections_refused_total",
                        &[("service", s), ("scope", scope.as_str()), ("path", PATH_PROXY)],
                        n,
                    )
                })
            }),
        );
        out.family(
            "lb_proxy_http_rejected_total",
            "counter",
            "HTTP requests the proxy refused before any backend saw them, by reason.",
            services.iter().flat_map(|(s, c)| {
                HttpRejection::ALL.map(|why| {
                    sample(
                        "lb_proxy_http_rejected_total",
                        &[("service", s), ("reason", why.as_str()), ("path", PATH_PROXY)],
                        c.http_rejected[why as usize],
                    )
                })
            }),
        );
        let all: Vec<(String, Arc<ServiceStats>)> = {
            let m = self.services.read().unwrap_or_else(|e| e.into_inner());
            m.iter().map(|(s, c)| (s.clone(), c.clone())).collect()
        };
        let traffic: Vec<(&str, &super::traffic_stats::TrafficStats)> =
            all.iter().map(|(s, c)| (s.as_str(), &c.traffic)).collect();
        super::traffic_stats::render(&mut out, &traffic, PATH_PROXY);
        out.into_string()
    }
}

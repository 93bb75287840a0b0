//! Prometheus metrics (docs/metrics.md, "The contract"), in the text exposition format
//! 0.0.4: names `lb_<noun>_<unit>`, counters ending in `_total`, durations in seconds.
//!
//! Two sources: the controller (services, health, reloads, registrations) and, when the
//! XDP program's maps are pinned, the data path's own counters. Without pinned maps the
//! data-path families are simply absent, not zero: zero would claim traffic was measured.
//!
//! Cost of a scrape: `lb_backend_active_flows` walks the whole flow table (`LB_FLOWS`) with
//! one syscall per entry, so a scrape takes time proportional to the number of flows
//! (roughly a second per million). Backend counters read every backend id once.
use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use lb_common::consts::CONFIG_KEY;
use lb_common::maps::Counters;

use lb_common::addr::socket;
use lb_control::exposition::{sample, Exposition, Float};
use lb_control::telemetry::{Histogram, TelemetryData};
use lb_control::ServiceView;
use lb_xdp::inspect::{self, monotonic_ns, service_name, Stats};
use lb_xdp::maps::{sum_counters, Maps};

/// The `path` label of data-path series: they come from the XDP program's maps.
const PATH_XDP: &str = "xdp";

pub fn render(telemetry: &TelemetryData, services: &[ServiceView], maps: Option<&Maps>) -> String {
    let mut out = Exposition::default();
    control_plane(&mut out, telemetry, services);
    if let Some(maps) = maps {
        // All or nothing: a half-read data path would show misleading partial sums.
        match XdpCounters::read(maps) {
            Ok(data) => data.write(&mut out),
            Err(e) => tracing::warn!("metrics: cannot read the pinned maps: {e:#}"),
        }
    }
    out.into_string()
}

fn control_plane(out: &mut Exposition, t: &TelemetryData, services: &[ServiceView]) {
    let backends = || services.iter().flat_map(|s| s.backends.iter().map(move |b| (s.name.as_str(), b)));
    out.family(
        "lb_backend_up",
        "gauge",
        "1 unless the backend's health check says it is down (unknown counts as up).",
        backends().map(|(s, b)| {
            sample("lb_backend_up", &[("service", s), ("backend", &b.address)], u8::from(b.health != "down"))
        }),
    );
    out.family(
        "lb_backend_ejected",
        "gauge",
        "1 while the circuit breaker keeps the backend out of rotation (open or half-open).",
        backends().map(|(s, b)| {
            sample("lb_backend_ejected", &[("service", s), ("backend", &b.address)], u8::from(b.circuit != "closed"))
        }),
    );
    out.family(
        "lb_backend_ejections_total",
        "counter",
        "Passive ejections of the backend by its circuit breaker, since start.",
        backends().map(|(s, b)| {
            sample("lb_backend_ejections_total", &[("service", s), ("backend", &b.address)], b.ejections_total)
        }),
    );
    out.family(
        "lb_backend_weight",
        "gauge",
        "The backend's weight: its share of new flows.",
        backends().map(|(s, b)| sample("lb_backend_weight", &[("service", s), ("backend", &b.address)], b.weight)),
    );
    out.family(
        "lb_backend_share_percent",
        "gauge",
        "The share of its weight the backend takes: below 100 while slow start ramps it up.",
        backends().map(|(s, b)| {
            let percent = b.slow_start_percent.unwrap_or(100);
            sample("lb_backend_share_percent", &[("service", s), ("backend", &b.address)], percent)
        }),
    );
    out.family(
        "lb_registrations",
        "gauge",
        "Backends of the service currently registered by an agent.",
        services.iter().map(|s| {
            let n = s.backends.iter().filter(|b| b.sources.iter().any(|src| src == "registration")).count();
            sample("lb_registrations", &[("service", &s.name)], n)
        }),
    );
    out.family(
        "lb_registrations_total",
        "counter",
        "Registrations accepted (new or renewed), since start.",
        [sample("lb_registrations_total", &[], t.registrations_total)],
    );
    out.family(
        "lb_lease_expirations_total",
        "counter",
        "Registration leases that ran out without a heartbeat, since start.",
        [sample("lb_lease_expirations_total", &[], t.lease_expirations_total)],
    );
    out.family(
        "lb_health_check_local_errors_total",
        "counter",
        "Health checks that could not run for a reason of this host's (out of descriptors, buffers or memory), not counted against their backend, since start.",
        [sample("lb_health_check_local_errors_total", &[], t.health_check_local_errors_total)],
    );
    out.family(
        "lb_admin_connections_refused_total",
        "counter",
        "Admin API connections closed at once because the connection cap was reached, since start.",
        [sample("lb_admin_connections_refused_total", &[], t.admin_connections_refused_total)],
    );
    out.family(
        "lb_config_reloads_total",
        "counter",
        "Configuration reloads, by result.",
        [
            sample("lb_config_reloads_total", &[("result", "success")], t.reloads_success),
            sample("lb_config_reloads_total", &[("result", "failure")], t.reloads_failure),
        ],
    );
    out.family(
        "lb_health_checks_total",
        "counter",
        "Health checks counted against their backend, by check type and result, since start.",
        t.health_checks_total
            .iter()
            .map(|((kind, result), n)| sample("lb_health_checks_total", &[("type", kind), ("result", result)], n)),
    );
    out.family(
        "lb_health_check_duration_seconds",
        "histogram",
        "How long health checks took.",
        t.health_check_seconds.iter().flat_map(|((s, b), h)| histogram("lb_health_check_duration_seconds", s, b, h)),
    );
    if let Some(bgp) = &t.bgp {
        bgp_families(out, bgp, services);
    }
    store(out, t);
}

/// `[cluster.bgp]` only: what the speaker announces, its sessions, and the drain.
fn bgp_families(out: &mut Exposition, bgp: &lb_control::telemetry::BgpTelemetry, services: &[ServiceView]) {
    // One series per VIP address (several services may share one), announced or not; an
    // unspecified VIP (the proxy's any address) is never a route.
    let vips: std::collections::BTreeSet<std::net::IpAddr> = services
        .iter()
        .filter_map(|s| s.vip.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    out.family(
        "lb_vip_announced",
        "gauge",
        "1 while the BGP speaker announces the VIP address (a service on it can take new flows and the node is not draining).",
        vips.iter().map(|ip| {
            sample("lb_vip_announced", &[("vip", &ip.to_string())], u8::from(bgp.announced.contains(ip)))
        }),
    );
    out.family(
        "lb_bgp_session_up",
        "gauge",
        "1 while the BGP session to the neighbor is established.",
        bgp.sessions.iter().map(|(n, up)| sample("lb_bgp_session_up", &[("neighbor", &n.to_string())], u8::from(*up))),
    );
    out.family(
        "lb_draining",
        "gauge",
        "1 while the node drains (lb drain, SIGTERM): every VIP withdrawn, forwarding goes on.",
        [sample("lb_draining", &[], u8::from(bgp.draining))],
    );
}

/// The shared store's series, only with `[cluster] etcd`.
fn store(out: &mut Exposition, t: &TelemetryData) {
    let Some(up) = t.store_up else { return };
    out.family(
        "lb_store_up",
        "gauge",
        "1 while the shared store (etcd) answers; 0 while it does not (the node serves its last known state and refuses writes).",
        [sample("lb_store_up", &[], u8::from(up))],
    );
    out.family(
        "lb_store_writes_refused_total",
        "counter",
        "API writes (registrations, heartbeats, states, deregistrations) refused with 503 because etcd was unreachable, since start.",
        [sample("lb_store_writes_refused_total", &[], t.store_writes_refused_total)],
    );
}

fn histogram(name: &str, service: &str, backend: &str, h: &Histogram) -> Vec<String> {
    let bucket = format!("{name}_bucket");
    let mut lines: Vec<String> = h
        .buckets
        .iter()
        .map(|(bound, n)| {
            sample(&bucket, &[("service", service), ("backend", backend), ("le", &Float(*bound).to_string())], n)
        })
        .collect();
    lines.push(sample(&bucket, &[("service", service), ("backend", backend), ("le", "+Inf")], h.count));
    lines.push(sample(&format!("{name}_sum"), &[("service", service), ("backend", backend)], Float(h.sum)));
    lines.push(sample(&format!("{name}_count"), &[("service", service), ("backend", backend)], h.count));
    lines
}

/// What the data path's maps say, read in one go before anything is written.
struct XdpCounters {
    backends: Vec<BackendSeries>,
    stats: Stats,
    /// (service, scope, new flows refused)
    ratelimited: Vec<(String, &'static str, u64)>,
    /// (service, new flows its source lists refused)
    acl_denied: Vec<(String, u64)>,
}

struct BackendSeries {
    service: String,
    backend: String,
    counters: Counters,
    active_flows: u64,
}

impl XdpCounters {
    fn read(maps: &Maps) -> Result<Self> {
        // Names and addresses the way `inspect::backends` (`lb list backends`) finds them,
        // but keyed by backend id, which the flow table refers to.
        let names: BTreeMap<u32, String> =
            maps.services_in_use()?.into_iter().map(|(id, m)| (id, service_name(&m))).collect();
        let active = active_flows(maps)?;
        let mut backends = Vec::new();
        for (id, _) in maps.backends_in_use()? {
            let info = maps.backends.get(&id, 0)?;
            backends.push(BackendSeries {
                service: names.get(&info.service_id).cloned().unwrap_or_default(),
                backend: socket(&info.addr, info.port, info.family).to_string(),
                counters: sum_counters(&maps.backend_stats.get(&id, 0)?),
                active_flows: active.get(&id).copied().unwrap_or(0),
            });
        }
        Ok(Self {
            backends,
            stats: inspect::stats(maps)?,
            ratelimited: inspect::ratelimited(maps)?,
            acl_denied: inspect::acl_denied(maps)?,
        })
    }

    fn write(&self, out: &mut Exposition) {
        fn labels(s: &BackendSeries) -> [(&'static str, &str); 3] {
            [("service", &s.service), ("backend", &s.backend), ("path", PATH_XDP)]
        }
        let b = &self.backends;
        out.family(
            "lb_backend_packets_total",
            "counter",
            "Packets forwarded to the backend.",
            b.iter().map(|s| sample("lb_backend_packets_total", &labels(s), s.counters.packets)),
        );
        out.family(
            "lb_backend_bytes_total",
            "counter",
            "Bytes forwarded to the backend.",
            b.iter().map(|s| sample("lb_backend_bytes_total", &labels(s), s.counters.bytes)),
        );
        out.family(
            "lb_backend_new_flows_total",
            "counter",
            "Flows the data path assigned to the backend.",
            b.iter().map(|s| sample("lb_backend_new_flows_total", &labels(s), s.counters.new_flows)),
        );
        out.family(
            "lb_backend_active_flows",
            "gauge",
            "Live flows pinned to the backend (counted by walking the flow table at scrape time).",
            b.iter().map(|s| {
                sample("lb_backend_active_flows", &[("service", &s.service), ("backend", &s.backend)], s.active_flows)
            }),
        );
        out.family(
            "lb_xdp_actions_total",
            "counter",
            "Packets by the XDP action the program returned.",
            self.stats.actions.iter().map(|(a, n)| sample("lb_xdp_actions_total", &[("action", a)], n)),
        );
        out.family(
            "lb_drops_total",
            "counter",
            "Packets the data path dropped, by reason.",
            self.stats.drops.iter().map(|(r, n)| sample("lb_drops_total", &[("reason", r)], n)),
        );
        out.family(
            "lb_ratelimited_total",
            "counter",
            "New flows refused by the service's rate_limit, by scope (service or source).",
            self.ratelimited.iter().map(|(service, scope, n)| {
                sample("lb_ratelimited_total", &[("service", service), ("scope", scope), ("path", PATH_XDP)], n)
            }),
        );
        out.family(
            "lb_acl_denied_total",
            "counter",
            "New flows refused by the service's allow / deny source lists.",
            self.acl_denied
                .iter()
                .map(|(service, n)| sample("lb_acl_denied_total", &[("service", service), ("path", PATH_XDP)], n)),
        );
    }
}

/// Live flows per backend id, by the same liveness rule as the data path.
fn active_flows(maps: &Maps) -> Result<HashMap<u32, u64>> {
    let cfg = maps.config.get(&CONFIG_KEY, 0)?;
    let now = monotonic_ns();
    let mut counts = HashMap::new();
    // Entries removed while we walk come back as errors: they are gone, skip them.
    for (key, state) in maps.flows.iter().flatten() {
        if state.is_live(key.proto, now, &cfg) {
            *counts.entry(state.backend_id).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_control::BackendView;

    fn backend(address: &str, health: &str, sources: &[&str]) -> BackendView {
        BackendView {
            address: address.into(),
            weight: 3,
            api_weight: None,
            slow_start_percent: None,
            state: "ready".into(),
            health: health.into(),
            last_check: None,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            lease_expires_in_seconds: None,
            proxy: None,
            circuit: if health == "down" { "open".into() } else { "closed".into() },
            ejections_total: 2,
            agent: None,
        }
    }

    fn services() -> Vec<ServiceView> {
        vec![ServiceView {
            name: "web".into(),
            vip: "172.20.0.100:80".into(),
            protocol: "tcp".into(),
            algorithm: "maglev".into(),
            forwarding: "nat".into(),
            announced: None,
            backends: vec![
                backend("172.20.0.11:80", "up", &["config"]),
                backend("[fd00:20::12]:80", "down", &["config", "registration"]),
                backend("172.20.0.13:80", "unknown", &["registration"]),
            ],
        }]
    }

    fn telemetry() -> TelemetryData {
        let mut h = Histogram::default();
        h.observe(0.002);
        h.observe(0.2);
        h.observe(3.0);
        TelemetryData {
            reloads_success: 4,
            reloads_failure: 2,
            registrations_total: 7,
            lease_expirations_total: 1,
            health_check_local_errors_total: 3,
            admin_connections_refused_total: 5,
            health_check_seconds: [(("web".to_string(), "172.20.0.11:80".to_string()), h)].into(),
            health_checks_total: [(("agent", "fail"), 2), (("udp", "pass"), 9)].into(),
            path: "xdp",
            ..Default::default()
        }
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use prometheus_parse::Value::*;
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))?;
        match s.value {
            Counter(v) | Gauge(v) | Untyped(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn store_series_only_with_a_store() {
        let scrape = parse(&render(&telemetry(), &services(), None));
        assert_eq!(value(&scrape, "lb_store_up", &[]), None, "no [cluster] etcd, no series");
        let t = TelemetryData { store_up: Some(false), store_writes_refused_total: 2, ..telemetry() };
        let scrape = parse(&render(&t, &services(), None));
        assert_eq!(value(&scrape, "lb_store_up", &[]), Some(0.0));
        assert_eq!(value(&scrape, "lb_store_writes_refused_total", &[]), Some(2.0));
        let t = TelemetryData { store_up: Some(true), ..telemetry() };
        assert_eq!(value(&parse(&render(&t, &services(), None)), "lb_store_up", &[]), Some(1.0));
    }

    #[test]
    fn control_plane_series_without_maps() {
        let text = render(&telemetry(), &services(), None);
        let scrape = parse(&text);
        let web = |b: &'static str| [("service", "web"), ("backend", b)];
        assert_eq!(value(&scrape, "lb_backend_up", &web("172.20.0.11:80")), Some(1.0));
        assert_eq!(value(&scrape, "lb_backend_up", &web("[fd00:20::12]:80")), Some(0.0));
        assert_eq!(value(&scrape, "lb_backend_up", &web("172.20.0.13:80")), Some(1.0));
        assert_eq!(value(&scrape, "lb_backend_weight", &web("172.20.0.11:80")), Some(3.0));
        assert_eq!(value(&scrape, "lb_registrations", &[("service", "web")]), Some(2.0));
        assert_eq!(value(&scrape, "lb_registrations_total", &[]), Some(7.0));
        assert_eq!(value(&scrape, "lb_lease_expirations_total", &[]), Some(1.0));
        assert_eq!(value(&scrape, "lb_health_check_local_errors_total", &[]), Some(3.0));
        assert_eq!(value(&scrape, "lb_health_checks_total", &[("type", "agent"), ("result", "fail")]), Some(2.0));
        assert_eq!(value(&scrape, "lb_health_checks_total", &[("type", "udp"), ("result", "pass")]), Some(9.0));
        assert_eq!(value(&scrape, "lb_admin_connections_refused_total", &[]), Some(5.0));
        assert_eq!(value(&scrape, "lb_config_reloads_total", &[("result", "success")]), Some(4.0));
        assert_eq!(value(&scrape, "lb_config_reloads_total", &[("result", "failure")]), Some(2.0));
        assert!(text.contains("# TYPE lb_config_reloads_total counter\n"));
        assert!(text.contains("# HELP lb_backend_up "));
    }

    #[test]
    fn health_histogram_is_cumulative_with_inf_sum_and_count() {
        let scrape = parse(&render(&telemetry(), &[], None));
        let h =
            scrape.samples.iter().find(|s| s.metric == "lb_health_check_duration_seconds").expect("histogram present");
        assert_eq!(h.labels.get("backend"), Some("172.20.0.11:80"));
        let prometheus_parse::Value::Histogram(buckets) = &h.value else { panic!("not a histogram: {h:?}") };
        let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
        assert_eq!(at(0.001), Some(0.0));
        assert_eq!(at(0.0025), Some(1.0));
        assert_eq!(at(0.5), Some(2.0));
        assert_eq!(at(1.0), Some(2.0));
        assert_eq!(at(f64::INFINITY), Some(3.0));
        let web = [("service", "web"), ("backend", "172.20.0.11:80")];
        assert_eq!(value(&scrape, "lb_health_check_duration_seconds_count", &web), Some(3.0));
        assert!((value(&scrape, "lb_health_check_duration_seconds_sum", &web).unwrap() - 3.202).abs() < 1e-9);
    }

    #[test]
    fn data_path_families_are_absent_without_maps() {
        let text = render(&telemetry(), &services(), None);
        for name in [
            "lb_backend_packets_total",
            "lb_backend_bytes_total",
            "lb_backend_new_flows_total",
            "lb_backend_active_flows",
            "lb_xdp_actions_total",
            "lb_drops_total",
        ] {
            assert!(!text.contains(name), "{name} present without maps");
        }
    }

    #[test]
    fn empty_families_leave_no_stubs_and_each_family_is_declared_once() {
        let text = render(&TelemetryData::default(), &[], None);
        assert!(!text.contains("lb_backend_up"));
        assert!(!text.contains("lb_health_check_duration_seconds"));
        let text = render(&telemetry(), &services(), None);
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n, "a family declared twice");
        for t in types {
            let name = t.split(' ').nth(2).unwrap();
            assert!(name.starts_with("lb_"), "{name}");
            assert_eq!(t.ends_with(" counter"), name.ends_with("_total"), "{t}");
        }
    }

    #[test]
    fn bgp_families_only_with_bgp() {
        let text = render(&telemetry(), &services(), None);
        for name in ["lb_vip_announced", "lb_bgp_session_up", "lb_draining"] {
            assert!(!text.contains(name), "{name} without [cluster.bgp]");
        }
        let mut t = telemetry();
        let mut more = services();
        more.push(ServiceView { name: "tls".into(), vip: "172.20.0.101:443".into(), ..more[0].clone() });
        more.push(ServiceView { name: "any".into(), vip: "0.0.0.0:8080".into(), ..more[0].clone() });
        t.bgp = Some(lb_control::telemetry::BgpTelemetry {
            announced: ["172.20.0.100".parse().unwrap()].into(),
            sessions: [("10.61.0.1".parse().unwrap(), true), ("10.61.0.2".parse().unwrap(), false)].into(),
            draining: false,
        });
        let scrape = parse(&render(&t, &more, None));
        assert_eq!(value(&scrape, "lb_vip_announced", &[("vip", "172.20.0.100")]), Some(1.0));
        assert_eq!(value(&scrape, "lb_vip_announced", &[("vip", "172.20.0.101")]), Some(0.0));
        assert_eq!(value(&scrape, "lb_bgp_session_up", &[("neighbor", "10.61.0.1")]), Some(1.0));
        assert_eq!(value(&scrape, "lb_bgp_session_up", &[("neighbor", "10.61.0.2")]), Some(0.0));
        assert_eq!(value(&scrape, "lb_draining", &[]), Some(0.0));
        assert_eq!(value(&scrape, "lb_vip_announced", &[("vip", "0.0.0.0")]), None, "not a route");
    }

    #[test]
    fn label_values_and_floats_are_escaped_for_the_format() {
        assert_eq!(sample("m", &[("a", "x\"y\\z\nw")], 1), r#"m{a="x\"y\\z\nw"} 1"#);
        assert_eq!(sample("m", &[], 2), "m 2");
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Float(0.0005).to_string(), "0.0005");
        assert_eq!(Float(1.0).to_string(), "1");
    }
}

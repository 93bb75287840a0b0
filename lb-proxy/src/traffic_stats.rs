//! The counters of a service's PROXY-header and SNI-routing decisions, and their Prometheus
//! families. Series exist only for services that use the
//! feature (`accept_proxy`, `[[service.route]]`), zeros included once they do.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use lb_control::exposition::{sample, Exposition};

use super::front::FrontRefusal;
use super::sni::SniRefusal;

/// The `group` label of connections routed to the backends without a group.
pub const DEFAULT_GROUP: &str = "(default)";

#[derive(Debug, Default)]
pub struct TrafficStats {
    /// The service reads PROXY headers (`accept_proxy`).
    pub accepts_proxy: AtomicBool,
    /// The service routes by SNI.
    pub routes_sni: AtomicBool,
    proxy_header_rejected: [AtomicU64; FrontRefusal::ALL.len()],
    sni_rejected: [AtomicU64; SniRefusal::ALL.len()],
    /// Connections routed, per group (a handful per service).
    sni_routed: Mutex<BTreeMap<String, u64>>,
}

impl TrafficStats {
    pub fn proxy_header_rejected(&self, why: FrontRefusal) {
        self.proxy_header_rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn sni_rejected(&self, why: SniRefusal) {
        self.sni_rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection routed to `group` (None: the backends without one).
    pub fn sni_routed(&self, group: Option<&str>) {
        let mut m = self.sni_routed.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(group.unwrap_or(DEFAULT_GROUP).to_string()).or_default() += 1;
    }

    /// The groups a service routes to, listed with zeros before their first connection.
    pub fn know_groups<'a>(&self, groups: impl Iterator<Item = &'a str>) {
        let mut m = self.sni_routed.lock().unwrap_or_else(|e| e.into_inner());
        for g in groups.chain([DEFAULT_GROUP]) {
            m.entry(g.to_string()).or_default();
        }
    }

    pub fn routed(&self) -> BTreeMap<String, u64> {
        self.sni_routed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn rejected_header(&self, why: FrontRefusal) -> u64 {
        self.proxy_header_rejected[why as usize].load(Ordering::Relaxed)
    }

    pub fn rejected_sni(&self, why: SniRefusal) -> u64 {
        self.sni_rejected[why as usize].load(Ordering::Relaxed)
    }
}

/// The three families, over every service (name, counters), labelled with `path`.
pub fn render(out: &mut Exposition, services: &[(&str, &TrafficStats)], path: &str) {
    let uses = |f: fn(&TrafficStats) -> bool| services.iter().filter(move |(_, t)| f(t));
    out.family(
        "lb_proxy_proxy_header_rejected_total",
        "counter",
        "Connections of accept_proxy services closed before any backend: from an untrusted source, with a malformed PROXY header, or none in time.",
        uses(|t| t.accepts_proxy.load(Ordering::Relaxed)).flat_map(|(s, c)| {
            FrontRefusal::ALL.map(|why| {
                sample(
                    "lb_proxy_proxy_header_rejected_total",
                    &[("service", s), ("reason", why.as_str()), ("path", path)],
                    c.rejected_header(why),
                )
            })
        }),
    );
    out.family(
        "lb_proxy_sni_routed_total",
        "counter",
        "TLS connections routed by their server name, per backend group ((default): the backends without a group).",
        uses(|t| t.routes_sni.load(Ordering::Relaxed)).flat_map(|(s, c)| {
            c.routed().into_iter().map(move |(group, n)| {
                sample("lb_proxy_sni_routed_total", &[("service", s), ("group", &group), ("path", path)], n)
            })
        }),
    );
    out.family(
        "lb_proxy_sni_rejected_total",
        "counter",
        "Connections of SNI-routed services closed before any backend, by reason.",
        uses(|t| t.routes_sni.load(Ordering::Relaxed)).flat_map(|(s, c)| {
            SniRefusal::ALL.map(|why| {
                sample(
                    "lb_proxy_sni_rejected_total",
                    &[("service", s), ("reason", why.as_str()), ("path", path)],
                    c.rejected_sni(why),
                )
            })
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_services_using_a_feature_have_its_series_zeros_included() {
        let (a, b) = (TrafficStats::default(), TrafficStats::default());
        a.accepts_proxy.store(true, Ordering::Relaxed);
        a.proxy_header_rejected(FrontRefusal::Untrusted);
        b.routes_sni.store(true, Ordering::Relaxed);
        b.know_groups(["api"].into_iter());
        b.sni_routed(Some("api"));
        b.sni_routed(None);
        b.sni_rejected(SniRefusal::NotTls);
        let mut out = Exposition::default();
        render(&mut out, &[("a", &a), ("b", &b)], "proxy");
        let text = out.into_string();
        for line in [
            "lb_proxy_proxy_header_rejected_total{service=\"a\",reason=\"untrusted\",path=\"proxy\"} 1",
            "lb_proxy_proxy_header_rejected_total{service=\"a\",reason=\"timeout\",path=\"proxy\"} 0",
            "lb_proxy_sni_routed_total{service=\"b\",group=\"(default)\",path=\"proxy\"} 1",
            "lb_proxy_sni_routed_total{service=\"b\",group=\"api\",path=\"proxy\"} 1",
            "lb_proxy_sni_rejected_total{service=\"b\",reason=\"not_tls\",path=\"proxy\"} 1",
            "lb_proxy_sni_rejected_total{service=\"b\",reason=\"no_route\",path=\"proxy\"} 0",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(
            !text.contains("service=\"b\",reason=\"untrusted\"") && !text.contains("sni_routed_total{service=\"a\"")
        );
    }
}

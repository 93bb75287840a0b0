//! One reading of every backend's counters: from the pinned maps (the XDP path) or, when
//! nothing is pinned, from the daemon's admin API (the proxy path's counters), as `lb list`
//! reads them. Rates come from two of these (`rates`).
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use lb_control::ServiceView;
use lb_xdp::{
    inspect,
    maps::{Maps, NothingPinned},
};

/// One backend's identity, state and counters at the time of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSample {
    pub service: String,
    pub vip: String,
    pub address: String,
    pub state: String,
    pub health: String,
    pub circuit: String,
    pub weight: u32,
    pub new_flows: u64,
    /// The proxy moves bytes, not packets: `None` there.
    pub packets: Option<u64>,
    pub bytes: u64,
}

impl BackendSample {
    /// What identifies a backend from one sample to the next (ids are reused; addresses
    /// within a service are not).
    pub fn key(&self) -> (&str, &str) {
        (&self.service, &self.address)
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// Where the counters came from: `xdp`, or the API's view (`proxy`, …).
    pub path: String,
    /// When it was taken: rates divide by the time between two of these.
    pub taken: Instant,
    /// The wall clock at the same moment, for the header.
    pub wall: SystemTime,
    pub backends: Vec<BackendSample>,
    /// The XDP path's packets per drop reason; `None` on the proxy path, which has none.
    pub drops: Option<BTreeMap<String, u64>>,
}

/// Where samples come from: the flags of `lb top`.
#[derive(Debug, Clone)]
pub struct Source {
    pub pin_path: PathBuf,
    pub api: String,
}

impl Source {
    /// Reads every backend now. The maps are opened afresh each time, so a daemon that
    /// stops (maps unpinned) or comes back shows as such instead of as frozen counters.
    pub fn sample(&self) -> Result<Sample> {
        match Maps::open_pinned(&self.pin_path) {
            Ok(maps) => from_maps(&maps),
            Err(e) if e.is::<NothingPinned>() => from_api(&self.api)
                .map_err(|api_err| anyhow!("{e}; and the daemon's API did not answer either: {api_err:#}")),
            Err(e) => Err(e),
        }
    }
}

fn from_maps(maps: &Maps) -> Result<Sample> {
    let vips: HashMap<String, String> = inspect::vips(maps).into_iter().map(|v| (v.service, v.vip)).collect();
    let backends = inspect::backends(maps)?
        .into_iter()
        .map(|b| BackendSample {
            vip: vips.get(&b.service).cloned().unwrap_or_default(),
            service: b.service,
            address: b.address,
            state: b.state,
            health: b.health,
            circuit: b.circuit,
            weight: b.weight,
            new_flows: b.new_flows,
            packets: Some(b.packets),
            bytes: b.bytes,
        })
        .collect();
    let drops = inspect::stats(maps)?.drops;
    Ok(Sample { path: "xdp".into(), taken: Instant::now(), wall: SystemTime::now(), backends, drops: Some(drops) })
}

fn agent(api: &str) -> (ureq::Agent, String) {
    // Short: a refresh must not hang on a daemon that stopped answering.
    (ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build(), api.trim_end_matches('/').to_string())
}

fn from_api(api: &str) -> Result<Sample> {
    let (agent, base) = agent(api);
    let url = format!("{base}/v1/services");
    let services: Vec<ServiceView> = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .into_json()
        .with_context(|| format!("GET {url}: not the expected JSON"))?;
    let taken = Instant::now();
    Ok(Sample {
        path: path_of(&agent, &base),
        taken,
        wall: SystemTime::now(),
        backends: services.into_iter().flat_map(backend_samples).collect(),
        drops: None,
    })
}

/// The path the daemon serves (`/readyz` says), or `api` when it does not say.
fn path_of(agent: &ureq::Agent, base: &str) -> String {
    let answer = match agent.get(&format!("{base}/readyz")).call() {
        Ok(r) => r,
        // 503 while starting or stopping still names the path.
        Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return "api".into(),
    };
    answer
        .into_json::<serde_json::Value>()
        .ok()
        .and_then(|v| v["path"].as_str().map(str::to_string))
        .unwrap_or_else(|| "api".into())
}

/// A service's backends with the proxy path's counters (zero when the proxy does not
/// serve: the XDP path's are in the maps).
pub fn backend_samples(s: ServiceView) -> Vec<BackendSample> {
    s.backends
        .into_iter()
        .map(|b| {
            let c = b.proxy.unwrap_or_default();
            BackendSample {
                service: s.name.clone(),
                vip: s.vip.clone(),
                address: b.address,
                state: b.state,
                health: b.health,
                circuit: b.circuit,
                weight: b.weight,
                new_flows: c.connections_total,
                packets: None,
                bytes: c.bytes_in + c.bytes_out,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(json: &str) -> ServiceView {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn api_backends_carry_the_proxy_counters_and_no_packets() {
        let s = view(
            r#"{"name":"web","vip":"10.0.0.1:80","protocol":"tcp","algorithm":"maglev","forwarding":"nat",
            "backends":[{"address":"10.0.1.1:80","weight":3,"state":"ready","health":"up","last_check":null,
            "sources":["config"],"lease_expires_in_seconds":null,"circuit":"open",
            "proxy":{"connections_total":7,"active":1,"bytes_in":100,"bytes_out":23,"connect_failures_total":0}}]}"#,
        );
        let rows = backend_samples(s);
        assert_eq!(rows.len(), 1);
        let b = &rows[0];
        assert_eq!((b.service.as_str(), b.vip.as_str(), b.address.as_str()), ("web", "10.0.0.1:80", "10.0.1.1:80"));
        assert_eq!((b.new_flows, b.packets, b.bytes), (7, None, 123));
        assert_eq!((b.weight, b.circuit.as_str(), b.health.as_str()), (3, "open", "up"));
    }

    #[test]
    fn a_backend_without_proxy_counters_counts_zero() {
        let s = view(
            r#"{"name":"web","vip":"10.0.0.1:80","protocol":"tcp","algorithm":"maglev","forwarding":"nat",
            "backends":[{"address":"10.0.1.1:80","weight":1,"state":"drain","health":"unknown","last_check":null,
            "sources":["config"],"lease_expires_in_seconds":null}]}"#,
        );
        let b = &backend_samples(s)[0];
        assert_eq!((b.new_flows, b.bytes, b.state.as_str(), b.circuit.as_str()), (0, 0, "drain", "closed"));
    }

    #[test]
    fn nothing_pinned_and_no_api_names_both_failures() {
        let source = Source { pin_path: "/nonexistent/lb-top-pins".into(), api: "http://127.0.0.1:1".into() };
        let e = format!("{:#}", source.sample().unwrap_err());
        assert!(e.contains("nothing is pinned under /nonexistent/lb-top-pins"), "{e}");
        assert!(e.contains("API did not answer either") && e.contains("127.0.0.1:1"), "{e}");
    }
}

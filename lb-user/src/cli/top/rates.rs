//! Rates: the difference of a counter between two samples divided by the time between
//! them. Unknown (`None`, shown `-`) on the first sample, for a backend the previous sample
//! did not have, and for a counter that went backwards (a daemon that started afresh, a
//! backend removed and added again): a rate from those would be made up.
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::sample::{BackendSample, Sample};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub new_flows: Option<f64>,
    pub packets: Option<f64>,
    pub bytes: Option<f64>,
}

/// One line of the table: a backend and its rates since the previous sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub backend: BackendSample,
    pub rates: Rates,
}

/// Per second, from `before` to `now` over `elapsed`.
pub fn per_second(before: u64, now: u64, elapsed: Duration) -> Option<f64> {
    if now < before || elapsed.is_zero() {
        return None;
    }
    Some((now - before) as f64 / elapsed.as_secs_f64())
}

fn elapsed(prev: &Sample, now: &Sample) -> Option<Duration> {
    // Counters from two different paths (the daemon restarted in the other mode) do not
    // continue each other.
    (prev.path == now.path).then(|| now.taken.saturating_duration_since(prev.taken))
}

/// Every backend of `now`, with its rates since `prev`.
pub fn rows(prev: Option<&Sample>, now: &Sample) -> Vec<Row> {
    let before: HashMap<(&str, &str), &BackendSample> = match prev {
        Some(p) if elapsed(p, now).is_some() => p.backends.iter().map(|b| (b.key(), b)).collect(),
        _ => HashMap::new(),
    };
    let dt = prev.and_then(|p| elapsed(p, now)).unwrap_or_default();
    now.backends
        .iter()
        .map(|b| {
            let rates = before.get(&b.key()).map_or(Rates::default(), |old| Rates {
                new_flows: per_second(old.new_flows, b.new_flows, dt),
                packets: old.packets.zip(b.packets).and_then(|(o, n)| per_second(o, n, dt)),
                bytes: per_second(old.bytes, b.bytes, dt),
            });
            Row { backend: b.clone(), rates }
        })
        .collect()
}

/// The sum of the known rates of `rows`, per column; unknown when none is known.
pub fn totals(rows: &[Row]) -> Rates {
    fn sum(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
        values.flatten().fold(None, |total, v| Some(total.unwrap_or(0.0) + v))
    }
    Rates {
        new_flows: sum(rows.iter().map(|r| r.rates.new_flows)),
        packets: sum(rows.iter().map(|r| r.rates.packets)),
        bytes: sum(rows.iter().map(|r| r.rates.bytes)),
    }
}

/// Packets dropped per second, per drop reason, since `prev`: the XDP path's only (`None`
/// on the proxy path); each reason's rate unknown on the first sample.
pub fn drops(prev: Option<&Sample>, now: &Sample) -> Option<BTreeMap<String, Option<f64>>> {
    let current = now.drops.as_ref()?;
    let before = prev.filter(|p| elapsed(p, now).is_some()).and_then(|p| p.drops.as_ref());
    let dt = prev.and_then(|p| elapsed(p, now)).unwrap_or_default();
    Some(
        current
            .iter()
            .map(|(reason, &n)| {
                let rate = before.and_then(|b| b.get(reason)).and_then(|&old| per_second(old, n, dt));
                (reason.clone(), rate)
            })
            .collect(),
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::{Instant, SystemTime};

    pub fn backend(service: &str, address: &str, new_flows: u64, packets: Option<u64>, bytes: u64) -> BackendSample {
        BackendSample {
            service: service.into(),
            vip: "10.0.0.1:80".into(),
            address: address.into(),
            state: "ready".into(),
            health: "up".into(),
            circuit: "closed".into(),
            weight: 1,
            new_flows,
            packets,
            bytes,
        }
    }

    pub fn sample(path: &str, taken: Instant, backends: Vec<BackendSample>) -> Sample {
        Sample { path: path.into(), taken, wall: SystemTime::now(), backends, drops: None }
    }

    #[test]
    fn per_second_divides_the_difference_by_the_time() {
        assert_eq!(per_second(100, 300, Duration::from_secs(2)), Some(100.0));
        assert_eq!(per_second(100, 100, Duration::from_millis(500)), Some(0.0));
        assert_eq!(per_second(10, 15, Duration::from_millis(500)), Some(10.0));
        assert_eq!(per_second(300, 100, Duration::from_secs(1)), None, "a counter that went backwards");
        assert_eq!(per_second(1, 2, Duration::ZERO), None);
    }

    #[test]
    fn the_first_sample_has_no_rates() {
        let now = sample("xdp", Instant::now(), vec![backend("web", "10.0.1.1:80", 5, Some(50), 500)]);
        let rows = rows(None, &now);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].rates, Rates::default());
        assert_eq!(totals(&rows), Rates::default());
    }

    #[test]
    fn rates_follow_each_backend_by_service_and_address() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let prev = sample(
            "xdp",
            t0,
            vec![backend("web", "10.0.1.1:80", 10, Some(100), 1000), backend("web", "10.0.1.2:80", 0, Some(0), 0)],
        );
        // Reordered, one new backend, one whose counters went backwards.
        let now = sample(
            "xdp",
            t1,
            vec![
                backend("web", "10.0.1.2:80", 4, Some(40), 400),
                backend("api", "10.0.1.1:80", 9, Some(9), 9),
                backend("web", "10.0.1.1:80", 2, Some(300), 5000),
            ],
        );
        let rows = rows(Some(&prev), &now);
        let by = |s: &str, a: &str| rows.iter().find(|r| r.backend.key() == (s, a)).unwrap().rates;
        assert_eq!(by("web", "10.0.1.2:80"), Rates { new_flows: Some(2.0), packets: Some(20.0), bytes: Some(200.0) });
        assert_eq!(by("api", "10.0.1.1:80"), Rates::default(), "not in the previous sample");
        assert_eq!(by("web", "10.0.1.1:80"), Rates { new_flows: None, packets: Some(100.0), bytes: Some(2000.0) });
        assert_eq!(totals(&rows), Rates { new_flows: Some(2.0), packets: Some(120.0), bytes: Some(2200.0) });
    }

    #[test]
    fn the_proxy_path_has_no_packet_rate() {
        let t0 = Instant::now();
        let prev = sample("proxy", t0, vec![backend("web", "10.0.1.1:80", 1, None, 10)]);
        let now = sample("proxy", t0 + Duration::from_secs(1), vec![backend("web", "10.0.1.1:80", 3, None, 30)]);
        let rows = rows(Some(&prev), &now);
        assert_eq!(rows[0].rates, Rates { new_flows: Some(2.0), packets: None, bytes: Some(20.0) });
        assert_eq!(totals(&rows).packets, None);
    }

    #[test]
    fn counters_of_another_path_are_no_base_for_a_rate() {
        let t0 = Instant::now();
        let prev = sample("xdp", t0, vec![backend("web", "10.0.1.1:80", 1, Some(1), 10)]);
        let now = sample("proxy", t0 + Duration::from_secs(1), vec![backend("web", "10.0.1.1:80", 3, None, 30)]);
        assert_eq!(rows(Some(&prev), &now)[0].rates, Rates::default());
    }

    #[test]
    fn drop_rates_per_reason() {
        let t0 = Instant::now();
        let mut prev = sample("xdp", t0, vec![]);
        prev.drops = Some(BTreeMap::from([("no_backend".to_string(), 10), ("ratelimited".to_string(), 0)]));
        let mut now = sample("xdp", t0 + Duration::from_millis(500), vec![]);
        now.drops = Some(BTreeMap::from([("no_backend".to_string(), 20), ("ratelimited".to_string(), 0)]));
        let d = drops(Some(&prev), &now).unwrap();
        assert_eq!(d["no_backend"], Some(20.0));
        assert_eq!(d["ratelimited"], Some(0.0));
        assert!(drops(None, &now).unwrap().values().all(Option::is_none), "first sample: unknown");
        assert_eq!(drops(Some(&prev), &sample("proxy", t0, vec![])), None, "the proxy path has no drop counters");
    }
}

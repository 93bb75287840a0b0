use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::*;

fn cands(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| Candidate { address: format!("10.0.0.{}:80", i + 1).parse().unwrap(), weight: *w, active: Arc::new(AtomicU64::new(0)) })
        .collect()
}

fn flow(port: u16) -> Flow {
    Flow { client: format!("172.20.0.2:{port}").parse().unwrap(), vip: "172.20.0.100:80".parse().unwrap(), proto: 6 }
}

fn shares(s: &Selector, n: usize) -> HashMap<SocketAddr, usize> {
    let mut m = HashMap::new();
    for i in 0..n {
        *m.entry(s.pick(&flow(10_000 + (i % 50_000) as u16), &[]).unwrap().address).or_default() += 1;
    }
    m
}

#[test]
fn round_robin_is_exact() {
    let s = Selector::new(Algorithm::RoundRobin, cands(&[1, 5, 1]));
    assert!(shares(&s, 300).values().all(|&n| n == 100));
}

#[test]
fn smooth_weighted_round_robin_is_exact_and_spreads_the_heavy_backend() {
    let s = Selector::new(Algorithm::WeightedRoundRobin, cands(&[5, 1, 1]));
    let seq: Vec<SocketAddr> = (0..7).map(|_| s.pick(&flow(1), &[]).unwrap().address).collect();
    let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
    assert_eq!(seq.iter().filter(|x| **x == a).count(), 5);
    assert!(seq.windows(3).all(|w| w.iter().any(|x| *x != a)), "no three in a row: {seq:?}");
    let m = shares(&s, 7000);
    assert_eq!(m[&a], 5000);
}

#[test]
fn random_and_two_choices_and_maglev_follow_weights_roughly() {
    for alg in [Algorithm::Random, Algorithm::Maglev] {
        let s = Selector::new(alg, cands(&[3, 1]));
        let m = shares(&s, 20_000);
        let share = m[&"10.0.0.1:80".parse().unwrap()] as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.03, "{alg}: {share}");
    }
}

#[test]
fn hashing_algorithms_are_stable_per_flow_and_per_client() {
    let m = Selector::new(Algorithm::Maglev, cands(&[1, 1, 1]));
    let s = Selector::new(Algorithm::SourceHash, cands(&[1, 1, 1]));
    for p in 0..50 {
        assert_eq!(m.pick(&flow(p), &[]).unwrap().address, m.pick(&flow(p), &[]).unwrap().address);
        assert_eq!(s.pick(&flow(p), &[]).unwrap().address, s.pick(&flow(9), &[]).unwrap().address, "same client, any port");
    }
}

#[test]
fn least_conn_and_two_choices_avoid_the_busy_backend() {
    for alg in [Algorithm::LeastConn, Algorithm::P2c] {
        let c = cands(&[1, 1, 1]);
        c[0].active.store(50, std::sync::atomic::Ordering::Relaxed);
        let s = Selector::new(alg, c);
        let m = shares(&s, 600);
        assert!(m.get(&"10.0.0.1:80".parse().unwrap()).copied().unwrap_or(0) < 10, "{alg}: {m:?}");
    }
}

#[test]
fn excluded_backends_are_skipped_and_none_when_all_are() {
    let all = cands(&[1, 1]);
    let first = all[0].address;
    let both = [all[0].address, all[1].address];
    for &alg in Algorithm::ALL {
        let s = Selector::new(alg, all.clone());
        for p in 0..20 {
            assert_ne!(s.pick(&flow(p), &[first]).unwrap().address, first, "{alg}");
        }
        assert!(s.pick(&flow(1), &both).is_none(), "{alg}");
        assert!(Selector::new(alg, vec![]).pick(&flow(1), &[]).is_none(), "{alg}: empty");
    }
}

#[test]
fn proxy_maglev_picks_what_the_xdp_table_would() {
    // Same lb-common table and hash: a flow lands on the same backend on both paths.
    let c = cands(&[1, 1, 1]);
    let s = Selector::new(Algorithm::Maglev, c.clone());
    let members: Vec<MaglevBackend> = c.iter().enumerate().map(|(i, c)| MaglevBackend::new(i as u32, c.address.to_string().as_bytes(), 1)).collect();
    let table = maglev::build(&members, RING_SIZE);
    for p in 0..50 {
        let f = flow(p);
        let want = table[(algorithms::flow_hash_of(&f) % RING_SIZE) as usize] as usize;
        assert_eq!(s.pick(&f, &[]).unwrap().address, c[want].address);
    }
}

#[test]
fn reserve_never_lets_concurrent_flows_past_the_cap() {
    let c = cands(&[1]).remove(0);
    let held: Vec<ActiveGuard> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8).map(|_| s.spawn(|| (0..100).filter_map(|_| ActiveGuard::reserve(&c, 10)).collect::<Vec<_>>())).collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(held.len(), 10);
    assert_eq!(c.active.load(Ordering::Relaxed), 10);
    drop(held);
    assert_eq!(c.active.load(Ordering::Relaxed), 0, "refusals left no count behind");
    assert!(ActiveGuard::reserve(&c, 0).is_some(), "0: no cap");
}

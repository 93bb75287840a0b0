use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lb_common::consts::{NO_BACKEND, RING_SIZE};
use lb_common::maglev::{self, MaglevBackend};

use super::*;

fn cands(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| Candidate {
            address: format!("10.0.0.{}:80", i + 1).parse().unwrap(),
            weight: *w,
            active: Arc::new(AtomicU64::new(0)),
        })
        .collect()
}

fn flow(port: u16) -> Flow {
    Flow { client: format!("172.20.0.2:{port}").parse().unwrap(), vip: "172.20.0.100:80".parse().unwrap(), proto: 6 }
}

/// The flow's first choice: where it goes when every backend can take it.
fn first(s: &Selector, f: &Flow) -> SocketAddr {
    s.iter(f).next().unwrap().address
}

fn all_choices(s: &Selector, f: &Flow) -> Vec<SocketAddr> {
    s.iter(f).map(|c| c.address).collect()
}

fn shares(s: &Selector, n: usize) -> HashMap<SocketAddr, usize> {
    let mut m = HashMap::new();
    for i in 0..n {
        *m.entry(first(s, &flow(10_000 + (i % 50_000) as u16))).or_default() += 1;
    }
    m
}

fn maglev_table(c: &[Candidate]) -> Vec<u32> {
    let members: Vec<MaglevBackend> = c
        .iter()
        .enumerate()
        .map(|(i, c)| MaglevBackend::new(i as u32, c.address.to_string().as_bytes(), c.weight))
        .collect();
    maglev::build(&members, RING_SIZE)
}

#[test]
fn round_robin_is_exact() {
    let s = Selector::new(Algorithm::RoundRobin, cands(&[1, 5, 1]));
    assert!(shares(&s, 300).values().all(|&n| n == 100));
}

#[test]
fn smooth_weighted_round_robin_is_exact_and_spreads_the_heavy_backend() {
    let s = Selector::new(Algorithm::WeightedRoundRobin, cands(&[5, 1, 1]));
    let seq: Vec<SocketAddr> = (0..7).map(|_| first(&s, &flow(1))).collect();
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
        assert_eq!(all_choices(&m, &flow(p)), all_choices(&m, &flow(p)), "the same order, fallbacks included");
        assert_eq!(all_choices(&s, &flow(p)), all_choices(&s, &flow(9)), "same client, any port");
    }
}

#[test]
fn least_conn_and_two_choices_avoid_the_busy_backend() {
    for alg in [Algorithm::LeastConn, Algorithm::P2c] {
        let c = cands(&[1, 1, 1]);
        c[0].active.store(50, Ordering::Relaxed);
        let s = Selector::new(alg, c);
        let m = shares(&s, 600);
        assert!(m.get(&"10.0.0.1:80".parse().unwrap()).copied().unwrap_or(0) < 10, "{alg}: {m:?}");
    }
}

#[test]
fn next_choices_skip_the_ones_yielded_and_end_when_all_were() {
    let all = cands(&[1, 1]);
    for &alg in Algorithm::ALL {
        let s = Selector::new(alg, all.clone());
        for p in 0..20 {
            let mut choices = s.iter(&flow(p));
            let first = choices.next().unwrap().address;
            assert_ne!(choices.next().unwrap().address, first, "{alg}");
            assert!(choices.next().is_none(), "{alg}");
        }
        assert!(Selector::new(alg, vec![]).iter(&flow(1)).next().is_none(), "{alg}: empty");
    }
}

#[test]
fn every_candidate_comes_exactly_once_then_the_iterator_ends_for_good() {
    let c = cands(&[1, 2, 3, 1, 5, 1, 1]);
    let want: HashSet<SocketAddr> = c.iter().map(|c| c.address).collect();
    for (i, c) in c.iter().enumerate() {
        c.active.store(i as u64 % 3, Ordering::Relaxed);
    }
    for &alg in Algorithm::ALL {
        let s = Selector::new(alg, c.clone());
        for p in 0..200 {
            let mut choices = s.iter(&flow(p));
            let got: Vec<SocketAddr> = choices.by_ref().map(|c| c.address).collect();
            assert_eq!(got.len(), want.len(), "{alg}: {got:?}");
            assert_eq!(got.iter().copied().collect::<HashSet<_>>(), want, "{alg}");
            assert!(choices.next().is_none() && choices.next().is_none(), "{alg}: ended for good");
        }
    }
}

#[test]
fn proxy_maglev_picks_what_the_xdp_table_would() {
    // Same lb-common table and hash: a flow lands on the same backend on both paths.
    let c = cands(&[1, 1, 1]);
    let s = Selector::new(Algorithm::Maglev, c.clone());
    let table = maglev_table(&c);
    for p in 0..50 {
        let f = flow(p);
        let want = table[(hash::flow_hash_of(&f) % RING_SIZE) as usize] as usize;
        assert_eq!(first(&s, &f), c[want].address);
    }
}

/// The old `pick` with nothing excluded: the table's backend at the flow's slot (or the
/// next slot holding one). The next choices: backends in slot order from there.
fn table_order(table: &[u32], hash: u32, c: &[Candidate]) -> Vec<SocketAddr> {
    let start = (hash % RING_SIZE) as usize;
    let mut order = Vec::new();
    for k in 0..table.len() {
        let id = table[(start + k) % table.len()];
        if id != NO_BACKEND && !order.contains(&c[id as usize].address) {
            order.push(c[id as usize].address);
        }
    }
    order
}

#[test]
fn hash_choices_walk_the_table_from_the_flows_slot() {
    let c = cands(&[1, 2, 1, 3]);
    let table = maglev_table(&c);
    let m = Selector::new(Algorithm::Maglev, c.clone());
    let s = Selector::new(Algorithm::SourceHash, c.clone());
    for p in 0..100 {
        let f = Flow { client: format!("172.20.{}.{}:{}", p % 7, p % 251, 1000 + p).parse().unwrap(), ..flow(0) };
        assert_eq!(all_choices(&m, &f), table_order(&table, hash::flow_hash_of(&f), &c));
        assert_eq!(all_choices(&s, &f), table_order(&table, hash::source_hash_of(&f), &c));
    }
}

#[test]
fn round_robin_first_choices_cycle_like_the_old_pick_and_fallbacks_follow_the_cursor() {
    let c = cands(&[1, 1, 1, 1]);
    let s = Selector::new(Algorithm::RoundRobin, c.clone());
    for n in 0..12 {
        assert_eq!(first(&s, &flow(1)), c[n % 4].address, "flow {n}: the cursor's turn");
    }
    // Cursor at 0 again: the fallbacks follow it round, and one flow moves it once only.
    let order = all_choices(&s, &flow(1));
    assert_eq!(order, vec![c[0].address, c[1].address, c[2].address, c[3].address]);
    assert_eq!(first(&s, &flow(1)), c[1].address, "every fallback taken, the cursor moved once");
    // An iterator never advanced takes no turn.
    drop(s.iter(&flow(1)));
    assert_eq!(first(&s, &flow(1)), c[2].address);
}

/// nginx's smooth weighted round robin, as the old `pick` played it with nothing excluded.
fn smooth_sequence(weights: &[i64], n: usize) -> Vec<usize> {
    let mut current = vec![0i64; weights.len()];
    let total: i64 = weights.iter().sum();
    (0..n)
        .map(|_| {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best
        })
        .collect()
}

#[test]
fn smooth_weighted_first_choices_are_the_old_sequence_and_fallbacks_do_not_move_it() {
    let weights = [5u32, 1, 3, 2];
    let c = cands(&weights);
    let want = smooth_sequence(&weights.map(i64::from), 110);
    let s = Selector::new(Algorithm::WeightedRoundRobin, c.clone());
    for (n, &w) in want.iter().enumerate() {
        // Every other flow also takes all its fallbacks: the sequence must not notice.
        let got = if n % 2 == 0 { first(&s, &flow(1)) } else { all_choices(&s, &flow(1))[0] };
        assert_eq!(got, c[w].address, "flow {n}");
    }
    // Weights 5,1,1 just after a round picked the heavy one: the two light ones are owed.
    let s = Selector::new(Algorithm::WeightedRoundRobin, cands(&[5, 1, 1]));
    let order = all_choices(&s, &flow(1));
    assert_eq!(order[0], "10.0.0.1:80".parse().unwrap());
    assert_eq!(order.len(), 3);
}

#[test]
fn least_conn_choices_go_by_load_and_ties_share_like_the_old_pick() {
    let c = cands(&[1, 1, 2, 1]);
    for (i, load) in [6u64, 0, 2, 3].iter().enumerate() {
        c[i].active.store(*load, Ordering::Relaxed);
    }
    // Loads per weight: 6, 0, 1, 3.
    let s = Selector::new(Algorithm::LeastConn, c.clone());
    assert_eq!(all_choices(&s, &flow(1)), vec![c[1].address, c[2].address, c[3].address, c[0].address]);
    // Equal loads: the first choices take turns over the tied ones, as before.
    let c = cands(&[1, 1, 1]);
    c[1].active.store(4, Ordering::Relaxed);
    let s = Selector::new(Algorithm::LeastConn, c.clone());
    let firsts: Vec<SocketAddr> = (0..4).map(|_| first(&s, &flow(1))).collect();
    assert_eq!(firsts, vec![c[0].address, c[2].address, c[0].address, c[2].address]);
}

#[test]
fn loads_are_read_when_each_choice_is_asked_for() {
    for alg in [Algorithm::LeastConn, Algorithm::P2c] {
        let c = cands(&[1, 1, 1]);
        let s = Selector::new(alg, c.clone());
        let mut choices = s.iter(&flow(1));
        let taken = choices.next().unwrap().address;
        // Between the choices, one of the others fills up: it comes last.
        let busy = c.iter().find(|c| c.address != taken).unwrap();
        busy.active.store(100, Ordering::Relaxed);
        let rest: Vec<SocketAddr> = choices.map(|c| c.address).collect();
        assert_eq!(rest.len(), 2, "{alg}");
        if alg == Algorithm::LeastConn {
            assert_eq!(rest[1], busy.address, "{alg}: {rest:?}");
        }
    }
}

#[test]
fn reserve_never_lets_concurrent_flows_past_the_cap() {
    let c = cands(&[1]).remove(0);
    let held: Vec<ActiveGuard> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| s.spawn(|| (0..100).filter_map(|_| ActiveGuard::reserve(&c, 10)).collect::<Vec<_>>()))
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(held.len(), 10);
    assert_eq!(c.active.load(Ordering::Relaxed), 10);
    drop(held);
    assert_eq!(c.active.load(Ordering::Relaxed), 0, "refusals left no count behind");
    assert!(ActiveGuard::reserve(&c, 0).is_some(), "0: no cap");
}

//! Identical tables on every node of a fleet (host, no root). Nodes behind the routers'
//! ECMP share no flow state: a flow that moves to another node (a node lost, a rehash)
//! keeps its backend only because every node computes the same one. So the plan a node
//! builds from its inputs (services, backends, weights, states, `cluster.hash_seed`) must
//! not depend on the order those inputs arrived in: config order, registration order,
//! service order. Two nodes given the same inputs in any order give the same ids, VIP and
//! backend entries and byte-identical Maglev tables.
//!
//! A node with another history (a backend that came and went) may number its backends
//! differently; that its tables still send each flow to the same address is the reconcile
//! property (`reconcile_property.rs`: every step's maps equal a fresh start's, compared by
//! address), and `packet_fleet.rs` shows it on the loaded program.
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use lb_common::maps::GlobalConfig;
use lb_config::desired::{Circuit, Desired, DesiredBackend, DesiredService, Health, SOURCE_CONFIG};
use lb_config::{AdminState, Config};
use lb_xdp::plan::{plan, HostFacts, Ids, Plan};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestRunner};

const SERVICES: &str = r#"
[[service]]
name = "dsr"
vip = "10.100.0.1:80"
forwarding = "dsr"
[[service]]
name = "gue"
vip = "10.100.0.3:80"
forwarding = "gue"
[[service]]
name = "v6"
vip = "[fd00:100::1]:80"
forwarding = "ipip"
"#;

fn base(seed: u32) -> Desired {
    let cfg = Config::from_str(&format!("[cluster]\nhash_seed = {seed}\n{SERVICES}"), "fleet.toml").unwrap();
    Desired::from_config(&cfg)
}

/// Backends of one service: distinct addresses of the VIP's family, with weights and states.
fn backends(v6: bool) -> impl Strategy<Value = Vec<DesiredBackend>> {
    let one = (1u8..200, 0u32..6, 0u8..10).prop_map(move |(host, weight, state)| DesiredBackend {
        address: if v6 {
            SocketAddr::new(format!("fd00:61::{host:x}").parse().unwrap(), 80)
        } else {
            SocketAddr::new(IpAddr::from([10, 61, 0, host]), 80)
        },
        weight,
        state: match state {
            0 => AdminState::Drain,
            1 => AdminState::Maint,
            _ => AdminState::Ready,
        },
        health: if state == 2 { Health::Down } else { Health::Up },
        sources: SOURCE_CONFIG,
        circuit: Circuit::Closed,
        ramp: None,
    });
    prop::collection::vec(one, 1..40).prop_map(|mut v| {
        let mut seen = HashSet::new();
        v.retain(|b| seen.insert(b.address));
        v
    })
}

fn facts(desired: &Desired) -> HostFacts {
    let mut f = HostFacts::default();
    for b in desired.services.iter().flat_map(|s| &s.backends) {
        f.neighbours.insert(b.address.ip(), [2, 0, 0, 0, 0, 1]);
    }
    f
}

/// A fresh node's plan, services and backends in id order (the maps are indexed by id).
fn fresh_plan(desired: &Desired) -> Plan {
    let mut p = plan(desired, GlobalConfig::default(), &facts(desired), &mut Ids::default()).expect("plan");
    p.services.sort_by_key(|s| s.id);
    p.backends.sort_by_key(|b| b.id);
    p
}

/// The same inputs, arrived in another order: services, and each service's backends,
/// permuted by `order`'s keys.
fn reordered(d: &Desired, order: &[u64]) -> Desired {
    let mut d = d.clone();
    let key = |i: usize| order.get(i % order.len().max(1)).copied().unwrap_or(0) ^ i as u64;
    let mut ranked: Vec<(u64, DesiredService)> = d.services.drain(..).enumerate().map(|(i, s)| (key(i), s)).collect();
    ranked.sort_by_key(|(k, _)| *k);
    d.services = ranked.into_iter().map(|(_, s)| s).collect();
    for (n, s) in d.services.iter_mut().enumerate() {
        let mut ranked: Vec<(u64, DesiredBackend)> =
            s.backends.drain(..).enumerate().map(|(i, b)| (key(i + n * 7).rotate_left(n as u32), b)).collect();
        ranked.sort_by_key(|(k, _)| *k);
        s.backends = ranked.into_iter().map(|(_, b)| b).collect();
    }
    d
}

#[test]
fn two_nodes_given_the_same_inputs_in_any_order_build_identical_plans() {
    let inputs =
        (any::<u32>(), backends(false), backends(false), backends(true), prop::collection::vec(any::<u64>(), 1..8));
    let mut runner = TestRunner::new(RunConfig { cases: 64, ..RunConfig::default() });
    let compared = std::cell::Cell::new(0usize);
    runner
        .run(&inputs, |(seed, dsr, gue, v6, order)| {
            let mut a = base(seed);
            for (s, bs) in a.services.iter_mut().zip([dsr, gue, v6]) {
                s.backends = bs;
            }
            let b = reordered(&a, &order);
            let (pa, pb) = (fresh_plan(&a), fresh_plan(&b));
            prop_assert_eq!(&pa.services, &pb.services, "services, tables included");
            prop_assert_eq!(&pa.backends, &pb.backends);
            compared.set(compared.get() + pa.services.iter().map(|s| s.table.len()).sum::<usize>());
            Ok(())
        })
        .unwrap();
    let compared = compared.get();
    assert!(compared >= 64 * 3 * 65537, "every case compared three full tables ({compared} slots)");
}

#[test]
fn the_hash_seed_is_the_fleets_shared_choice_of_table() {
    let with = |seed: u32| {
        let mut d = base(seed);
        d.services.truncate(1);
        d.services[0].backends = (1..=5)
            .map(|h| DesiredBackend {
                address: SocketAddr::new(IpAddr::from([10, 61, 0, 20 + h]), 80),
                weight: 1,
                state: AdminState::Ready,
                health: Health::Up,
                sources: SOURCE_CONFIG,
                circuit: Circuit::Closed,
                ramp: None,
            })
            .collect();
        fresh_plan(&d).services[0].table.clone()
    };
    assert_eq!(with(7), with(7), "the same seed, the same table");
    let (a, b) = (with(7), with(8));
    let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(moved > a.len() / 2, "another seed spreads the same backends differently: {moved} slots of {}", a.len());
    assert_eq!(with(0), with(0), "no cluster: seed 0, as before");
}

//! The limits at full size on the real maps: `max_services = 1024` services holding 16384
//! backends between them load, reconcile and balance, and a data path whose table arrays
//! were sized for fewer services refuses one more with an error that says why. Root only:
//! `cargo xtask test` runs them (`--ignored`).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_common::consts::{MAX_BACKENDS, MAX_SERVICES};
use lb_xdp::plan::HostFacts;
use lb_xdp::testkit::frame::destination;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const SERVICES: u32 = MAX_SERVICES;
const BACKENDS_PER_SERVICE: u32 = MAX_BACKENDS / MAX_SERVICES;

/// Service `s`'s VIP: one address per service, so `LB_VIP_ADDRS` fills up too.
fn vip(s: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, (s >> 8) as u8, s as u8)), 80)
}

/// Backend `j` of service `s`: every one a different address.
fn backend(s: u32, j: u32) -> SocketAddr {
    let g = s * BACKENDS_PER_SERVICE + j;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 64 + (g >> 16) as u8, (g >> 8) as u8, g as u8)), 80)
}

fn config(max_services: u32, services: u32, backends_per_service: u32) -> String {
    let mut t = format!(
        "[daemon]\ninterface = \"eth0\"\nsnat_ipv4 = \"172.20.0.10\"\nflow_table_size = 4096\nmax_services = {max_services}\n"
    );
    for s in 0..services {
        let _ = write!(t, "\n[[service]]\nname = \"s{s}\"\nvip = \"{}\"\n", vip(s));
        for j in 0..backends_per_service {
            let _ = write!(t, "[[service.backend]]\naddress = \"{}\"\n", backend(s, j));
        }
    }
    t
}

/// Every backend resolved (one MAC for all: the test reads the address, not the MAC).
fn facts(services: u32, backends_per_service: u32) -> HostFacts {
    let mut f = HostFacts::default();
    for s in 0..services {
        for j in 0..backends_per_service {
            f.neighbours.insert(backend(s, j).ip(), server_mac(1));
        }
    }
    f.own_addresses.insert("172.20.0.10".parse().unwrap());
    f
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_most_services_and_backends_load_reconcile_and_the_last_service_is_balanced() {
    let toml = config(SERVICES, SERVICES, BACKENDS_PER_SERVICE);
    let h = Harness::with_facts(&toml, facts(SERVICES, BACKENDS_PER_SERVICE));
    assert_eq!(h.plan.services.len(), MAX_SERVICES as usize);
    assert_eq!(h.plan.backends.len(), MAX_BACKENDS as usize);
    assert_eq!(h.maps().ring.len(), MAX_SERVICES * 2 * lb_common::consts::RING_SIZE, "LB_RING sized by max_services");
    h.writer().check_mirror().expect("the maps hold what the writer wrote");

    // New flows to the last service: each leaves towards the backend its table names, and
    // over 1600 flows every one of its 16 backends gets its share (binomial, mean 100,
    // standard deviation under 10: 50 to 150 is five deviations either way).
    let last = SERVICES - 1;
    let mut hits: BTreeMap<SocketAddr, u32> = BTreeMap::new();
    let flows = 100 * BACKENDS_PER_SERVICE;
    for i in 0..flows {
        let client = format!("203.0.113.{}:{}", 1 + i % 200, 10_000 + i);
        let syn = Pkt::tcp(&client, &vip(last).to_string(), SYN);
        let (action, out) = h.run(&syn.bytes());
        assert_eq!(action, XDP_TX, "flow {i} to the last service: action");
        let to = destination(&out);
        assert_eq!(to, h.expected(syn.src, syn.dst, TCP).0, "flow {i}: the backend its table slot names");
        *hits.entry(to).or_default() += 1;
    }
    let own: Vec<SocketAddr> = (0..BACKENDS_PER_SERVICE).map(|j| backend(last, j)).collect();
    assert_eq!(hits.keys().copied().collect::<Vec<_>>(), own, "the last service's backends, and only those");
    for (b, n) in &hits {
        assert!((50..=150).contains(n), "backend {b} got {n} of {flows} new flows: {hits:?}");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_data_path_sized_for_fewer_services_refuses_one_more_and_keeps_what_it_has() {
    let mut h = Harness::with_facts(&config(2, 2, 2), facts(3, 2));
    assert_eq!(h.maps().ring.len(), 2 * 2 * lb_common::consts::RING_SIZE, "LB_RING sized for 2 services");
    // The config is valid (max_services = 3), but the running maps hold tables for 2: the
    // setting only applies to maps created afresh.
    let e = h.try_reload(&config(3, 3, 2)).expect_err("a third service has no table to go to");
    let message = format!("{e:#}");
    assert!(message.contains("too many services: the data path holds at most 2"), "{message}");
    h.writer().check_mirror().expect("the failed reconcile left the maps as the writer knows them");
    let syn = Pkt::tcp("203.0.113.1:10000", &vip(1).to_string(), SYN);
    assert_eq!(h.run(&syn.bytes()).0, XDP_TX, "the second service still forwards");
}

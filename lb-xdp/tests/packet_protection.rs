//! Packet fixtures for the protection logic in the data path: rate-limit buckets (burst,
//! drop, refill, per source and per service, IPv6 by /64), the passive outcomes the circuit
//! breakers read (SYN-ACK, RST, a SYN sent again), and a half-open breaker's single trial
//! flow. Real XDP object, maps written by the daemon's code, BPF_PROG_TEST_RUN.

use std::time::Duration;

use lb_common::consts::{RL_SCOPE_SERVICE, RL_SCOPE_SOURCE};
use lb_common::reason::DropReason;
use lb_config::desired::Circuit;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const VIP: &str = "172.20.0.100:80";
const VIP6: &str = "[fd00:20::100]:80";

fn limited(table: &str) -> String {
    format!(
        r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
snat_ipv6 = "fd00:20::10"
flow_table_size = 4096

[[service]]
name = "web"
vip = "{VIP}"
{table}
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.12:80"
[[service.backend]]
address = "172.20.0.13:80"

[[service]]
name = "web6"
vip = "{VIP6}"
{table}
[[service.backend]]
address = "[fd00:20::11]:80"
"#
    )
}

fn new_flow(h: &Harness, client: &str, vip: &str) -> u32 {
    h.run(&Pkt::tcp(client, vip, SYN).bytes()).0
}

fn ratelimited(h: &Harness, service: u32, scope: u32) -> u64 {
    h.maps().ratelimited.get(&(service * 2 + scope), 0).expect("LB_RATELIMITED").iter().sum()
}

fn service_id(h: &Harness, name: &str) -> u32 {
    h.plan.services.iter().find(|s| lb_xdp::inspect::service_name(&s.meta) == name).expect("service").id
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_sources_bucket_admits_its_burst_drops_the_rest_and_refills_at_its_rate() {
    // 10 new flows a second (one per 100 ms), 3 at once.
    let h = Harness::new(&limited("[service.rate_limit]\nper_source_new_flows_per_second = 10\nper_source_burst = 3"));
    let web = service_id(&h, "web");
    let actions: Vec<u32> = (0..5).map(|i| new_flow(&h, &format!("172.20.0.2:{}", 40000 + i), VIP)).collect();
    assert_eq!(actions, [XDP_TX, XDP_TX, XDP_TX, XDP_DROP, XDP_DROP]);
    assert_eq!(h.drops(DropReason::RateLimited), 2);
    assert_eq!(ratelimited(&h, web, RL_SCOPE_SOURCE), 2);
    assert_eq!(ratelimited(&h, web, RL_SCOPE_SERVICE), 0);
    // Established flows never meet the bucket.
    for _ in 0..5 {
        assert_eq!(h.run(&Pkt::tcp("172.20.0.2:40000", VIP, ACK).bytes()).0, XDP_TX, "established");
    }
    // Another client has its own bucket.
    assert_eq!(new_flow(&h, "172.20.0.3:40000", VIP), XDP_TX);
    // 100 ms of credit is one more flow.
    std::thread::sleep(Duration::from_millis(110));
    assert_eq!(new_flow(&h, "172.20.0.2:40010", VIP), XDP_TX, "refilled");
    assert_eq!(new_flow(&h, "172.20.0.2:40011", VIP), XDP_DROP, "and empty again");
    assert_eq!(ratelimited(&h, web, RL_SCOPE_SOURCE), 3);
    let stats = lb_xdp::inspect::stats(h.maps()).unwrap();
    assert_eq!(stats.ratelimited["web"]["source"], 3);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_service_bucket_limits_all_clients_together() {
    let h = Harness::new(&limited("[service.rate_limit]\nnew_flows_per_second = 1\nburst = 2"));
    let web = service_id(&h, "web");
    let actions: Vec<u32> = (0..4).map(|i| new_flow(&h, &format!("172.20.0.{}:40000", 2 + i), VIP)).collect();
    assert_eq!(actions, [XDP_TX, XDP_TX, XDP_DROP, XDP_DROP]);
    assert_eq!(ratelimited(&h, web, RL_SCOPE_SERVICE), 2);
    assert_eq!(ratelimited(&h, web, RL_SCOPE_SOURCE), 0);
    // The other service has its own budget.
    assert_eq!(new_flow(&h, "[fd00:20::2]:40000", VIP6), XDP_TX);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv6_clients_share_a_bucket_per_64() {
    let h = Harness::new(&limited("[service.rate_limit]\nper_source_new_flows_per_second = 1\nper_source_burst = 1"));
    assert_eq!(new_flow(&h, "[fd00:20::2]:40000", VIP6), XDP_TX);
    assert_eq!(new_flow(&h, "[fd00:20::ffff:2]:40000", VIP6), XDP_DROP, "same /64");
    assert_eq!(new_flow(&h, "[fd00:20:0:1::2]:40000", VIP6), XDP_TX, "another /64");
}

const PLAIN: &str = "";

fn outcomes(h: &Harness, backend: std::net::SocketAddr) -> (u64, u64) {
    let id = h.plan.backends.iter().find(|b| b.address == backend).expect("backend").id;
    let v = h.maps().outcomes.get(&id, 0).expect("LB_OUTCOMES");
    v.iter().fold((0, 0), |(a, f), o| (a + o.answered, f + o.failed))
}

/// Open a nat flow from `client` and return the backend it went to and the frame the
/// backend would answer with (to the SNAT address:port), carrying `flags`.
fn answer(h: &Harness, client: &str, flags: u8) -> (std::net::SocketAddr, Vec<u8>) {
    let (action, out) = h.run(&Pkt::tcp(client, VIP, SYN).bytes());
    assert_eq!(action, XDP_TX);
    let (backend, port) = h.expected(client.parse().unwrap(), VIP.parse().unwrap(), TCP);
    assert_eq!(&out[0..6], &mac_of(backend.ip()), "the SYN went to the ring's backend");
    let mut reply = Pkt::tcp(&backend.to_string(), &format!("172.20.0.10:{port}"), flags);
    reply.src_mac = mac_of(backend.ip());
    reply.dst_mac = LB_MAC;
    reply.payload.clear();
    (backend, reply.bytes())
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn syn_ack_counts_a_success_and_rst_before_it_a_failure_once_per_flow() {
    let h = Harness::new(&limited(PLAIN));
    let (b1, syn_ack) = answer(&h, "172.20.0.2:40001", SYN | ACK);
    assert_eq!(h.run(&syn_ack).0, XDP_TX, "translated back");
    assert_eq!(outcomes(&h, b1), (1, 0));
    assert_eq!(h.run(&syn_ack).0, XDP_TX, "a repeated SYN-ACK");
    let (_, rst) = answer(&h, "172.20.0.2:40001", RST);
    assert_eq!(h.run(&rst).0, XDP_TX, "an RST later in an answered flow");
    assert_eq!(outcomes(&h, b1), (1, 0), "counted once, as the success it was");

    let (b2, rst) = answer(&h, "172.20.0.2:40002", RST | ACK);
    assert_eq!(h.run(&rst).0, XDP_TX, "the refusal reaches the client");
    let before = if b2 == b1 { 1 } else { 0 };
    assert_eq!(outcomes(&h, b2), (before, 1), "nothing listens: a failure");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_syn_sent_again_after_a_silence_without_answer_counts_one_failure() {
    let h = Harness::new(&limited(PLAIN));
    let client = "172.20.0.2:40003";
    let (backend, _) = h.expected(client.parse().unwrap(), VIP.parse().unwrap(), TCP);
    assert_eq!(new_flow(&h, client, VIP), XDP_TX);
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(new_flow(&h, client, VIP), XDP_TX, "retransmissions still reach the backend");
    }
    assert_eq!(outcomes(&h, backend), (0, 1));
}

/// What a client alone can send must not count against a backend: SYNs resent at once
/// (before a healthy backend could answer), and a bare ACK whose RST from the backend (it
/// has no such connection) comes back through the LB.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_client_cannot_forge_a_failure_with_resent_syns_or_a_bare_ack() {
    let h = Harness::new(&limited(PLAIN));
    let client = "172.20.0.2:40004";
    let (backend, _) = h.expected(client.parse().unwrap(), VIP.parse().unwrap(), TCP);
    for _ in 0..5 {
        assert_eq!(new_flow(&h, client, VIP), XDP_TX);
    }
    assert_eq!(outcomes(&h, backend), (0, 0), "SYNs back to back are the client's, not the backend's");

    let stray = "172.20.0.2:40005";
    let (action, _) = h.run(&Pkt::tcp(stray, VIP, ACK).bytes());
    if action == XDP_TX {
        // A bare ACK that opened a flow (dsr, or nat before it refused them): the backend
        // answers it with a plain RST.
        let (b, port) = h.expected(stray.parse().unwrap(), VIP.parse().unwrap(), TCP);
        let mut rst = Pkt::tcp(&b.to_string(), &format!("172.20.0.10:{port}"), RST);
        rst.src_mac = mac_of(b.ip());
        rst.dst_mac = LB_MAC;
        rst.payload.clear();
        h.run(&rst.bytes());
        assert_eq!(outcomes(&h, b).1, 0, "a reset of a connection the backend never had is no refusal");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_half_open_backend_gets_exactly_one_trial_flow_per_arming() {
    let mut h = Harness::new(&limited(PLAIN));
    let trial: std::net::SocketAddr = "172.20.0.11:80".parse().unwrap();
    let half_open = |d: &mut lb_config::desired::Desired| {
        let b = d.services[0].backends.iter_mut().find(|b| b.address == trial).unwrap();
        b.circuit = Circuit::HalfOpen;
    };
    h.reconcile_with(half_open);
    let to_trial = |h: &Harness, first: u16| {
        (first..first + 50)
            .filter(|p| {
                let (action, out) = h.run(&Pkt::tcp(&format!("172.20.0.2:{p}"), VIP, SYN).bytes());
                assert_eq!(action, XDP_TX);
                out[0..6] == mac_of(trial.ip())
            })
            .count()
    };
    assert_eq!(to_trial(&h, 41000), 1, "one trial flow, then the others");
    h.reconcile_with(half_open);
    assert_eq!(to_trial(&h, 42000), 1, "armed again");
    h.reconcile_with(|d| d.services[0].backends[0].circuit = Circuit::Open);
    assert_eq!(to_trial(&h, 43000), 0, "open: no flows at all");
}

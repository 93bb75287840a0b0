//! The bench entry point `lb_xdp_bench` (lb-ebpf `bench.rs`), which `cargo xtask bench`
//! times every data-path case with: each repetition of one call must take the same path as
//! a single run of `lb_xdp` would, however the program rewrote the frame, and with a varied
//! source each repetition must open a flow of its own. If it did not, the bench would time
//! a path that was not taken. Root only: `cargo xtask test` runs them (`--ignored`).

use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const CLIENT: &str = "172.20.0.2:40000";
const VIP: &str = "172.20.0.100:80";
/// Offset of the IPv4 source address in an Ethernet frame.
const SOURCE: u32 = 26;

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn every_repetition_of_a_rewritten_frame_takes_the_path_of_the_first() {
    require_root();
    let mut h = Harness::new(CONFIG);
    // Loaded (and verified, which takes seconds) before the flow opens: an unanswered
    // handshake lives only `tcp_handshake_timeout` (5 s).
    h.bench_program();
    assert_eq!(h.run(&Pkt::tcp(CLIENT, VIP, SYN).bytes()).0, XDP_TX);
    let ack = Pkt::tcp(CLIENT, VIP, ACK).bytes();
    let (_, natted) = h.run(&ack);
    let sent = h.action_count(XDP_TX);
    let (action, out, _) = h.run_bench(&ack, 100, 0);
    assert_eq!(action, XDP_TX);
    assert_eq!(h.action_count(XDP_TX) - sent, 100, "all 100 repetitions forwarded (nat rewrote each)");
    assert_eq!(h.action_count(XDP_PASS), 0, "none met the rewritten frame, which is for a backend");
    assert_eq!(out, ack, "the frame comes back as it went in");
    assert_ne!(natted, ack, "(nat does rewrite it)");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_varied_source_opens_a_flow_per_repetition() {
    require_root();
    let mut h = Harness::new(CONFIG);
    let syn = Pkt::tcp(CLIENT, VIP, SYN).bytes();
    let (action, out, _) = h.run_bench(&syn, 50, SOURCE);
    assert_eq!(action, XDP_TX);
    assert_eq!(h.action_count(XDP_TX), 50);
    let opened: u64 = h
        .plan
        .services
        .iter()
        .map(|s| {
            let c = h.maps().service_stats.get(&s.id, 0).expect("service stats");
            lb_xdp::maps::sum_counters(&c).new_flows
        })
        .sum();
    assert_eq!(opened, 50, "each repetition a new client, a new flow");
    // The frame is left as a 51st repetition would see it: the first source plus 50.
    let first = u32::from_be_bytes(syn[26..30].try_into().unwrap());
    assert_eq!(u32::from_be_bytes(out[26..30].try_into().unwrap()), first + 50, "counted up once per repetition");
}

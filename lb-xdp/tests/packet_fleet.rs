//! A fleet's promise on the loaded program (root, BPF_PROG_TEST_RUN): a mid-stream packet of
//! a dsr, ipip or gue flow that arrives at a node which never saw the flow (the routers
//! moved it there: a node lost, an ECMP rehash) leaves exactly as it would have left the
//! node that carried the flow from its SYN — same backend, byte for byte — even though the
//! second node has another history (backends that came and went, another config order) and
//! so other backend ids. With another `hash_seed` the nodes would disagree: the negative
//! control that shows the test can tell.
//!
//! Root only, like the other packet tests: `cargo xtask test` runs them.
use std::collections::HashSet;

use lb_xdp::plan::HostFacts;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const SERVICES: [(&str, &str); 4] = [
    ("dsr", "172.20.0.120:80"),
    ("ipip", "172.20.0.121:80"),
    ("gue", "172.20.0.122:80"),
    ("dsr6", "[fd00:20::120]:80"),
];

/// A node's config: the fleet's seed, the services above over `backends` (host numbers, in
/// the order given).
fn config(seed: u32, backends: &[u8]) -> String {
    let mut c = format!(
        "[daemon]\ninterface = \"eth0\"\nsnat_ipv4 = \"172.20.0.10\"\nsnat_ipv6 = \"fd00:20::10\"\n\
         flow_table_size = 4096\n[cluster]\nhash_seed = {seed}\n"
    );
    for (name, vip) in SERVICES {
        c += &format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nforwarding = \"{}\"\n",
            name.trim_end_matches('6')
        );
        for n in backends {
            let address = if vip.starts_with('[') { format!("[fd00:20::{n}]:80") } else { format!("172.20.0.{n}:80") };
            c += &format!("[[service.backend]]\naddress = \"{address}\"\n");
        }
    }
    c
}

fn facts() -> HostFacts {
    let mut f = test_facts();
    for n in 20..=40u8 {
        f.neighbours.insert(format!("172.20.0.{n}").parse().unwrap(), server_mac(n));
        f.neighbours.insert(format!("fd00:20::{n}").parse().unwrap(), server_mac(n));
    }
    f
}

const FLEET: &[u8] = &[21, 22, 23, 24, 25, 26, 27, 28];

fn client(vip: &str, port: u16) -> String {
    if vip.starts_with('[') {
        format!("[fd00:20::2]:{port}")
    } else {
        format!("172.20.0.2:{port}")
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_mid_stream_packet_at_a_node_that_never_saw_the_flow_goes_to_the_flows_backend() {
    let seed = 4242;
    // The three nodes load on threads of their own: each load is seconds of verification,
    // and this file's one test would leave the second CPU idle.
    let (one, two, three) = std::thread::scope(|s| {
        // Node 1 carries every flow from its SYN.
        let one = s.spawn(|| Harness::with_facts(&config(seed, FLEET), facts()));
        // Node 2: other backends came and went first, and its file lists them in another
        // order.
        let two = s.spawn(|| {
            let mut two = Harness::with_facts(&config(seed, &[30, 28, 29, 21, 31, 22]), facts());
            let reversed: Vec<u8> = FLEET.iter().rev().copied().collect();
            two.reload(&config(seed, &reversed));
            two
        });
        // Node 3: the same inputs, another fleet's seed.
        let three = Harness::with_facts(&config(seed + 1, FLEET), facts());
        let joined =
            |h: std::thread::ScopedJoinHandle<'_, Harness>| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (joined(one), joined(two), three)
    });
    for (name, vip) in SERVICES {
        let (mut backends, mut disagreements) = (HashSet::new(), 0);
        for port in 0..200u16 {
            let client = client(vip, 30000 + port);
            let (verdict, _) = one.run(&Pkt::tcp(&client, vip, SYN).bytes());
            assert_eq!(verdict, XDP_TX, "{name}: the SYN is forwarded");
            let data = Pkt::tcp(&client, vip, ACK).seqs(1000, 2000).bytes();
            let (v1, f1) = one.run(&data);
            let (v2, f2) = two.run(&data);
            assert_eq!((v1, v2), (XDP_TX, XDP_TX), "{name} {client}: both nodes forward");
            assert_eq!(
                hex(&f2),
                hex(&f1),
                "{name} {client}: the node that never saw the flow sends it where its first node did"
            );
            backends.insert(f1[..6].to_vec());
            let (_, f3) = three.run(&data);
            disagreements += usize::from(f3 != f1);
        }
        assert!(backends.len() >= 6, "{name}: 200 flows spread over the backends, not one ({})", backends.len());
        assert!(disagreements > 50, "{name}: another seed moves flows ({disagreements} of 200)");
    }
}

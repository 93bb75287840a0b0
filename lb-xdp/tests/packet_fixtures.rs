//! Packet fixtures: the real XDP object, maps written by the daemon's code, frames through
//! BPF_PROG_TEST_RUN, whole output frames compared with frames built independently.
//! Root only: `cargo xtask test` runs them (`--ignored`), and they fail, never skip,
//! without root.

use lb_common::reason::DropReason;
use lb_xdp::testkit::frame::destination;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const CLIENT: &str = "172.20.0.2:40000";
const VIP: &str = "172.20.0.100:80";

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn tcp_syn_to_vip_is_natted_to_its_ring_backend() {
    let h = Harness::new(CONFIG);
    let syn = Pkt::tcp(CLIENT, VIP, SYN);
    let (want, _, _) = natted(&syn, &h);
    assert_frame(h.run(&syn.bytes()), XDP_TX, &want.bytes(), "SYN");
    assert_eq!(h.action_count(XDP_TX), 1);
    let flows = lb_xdp::inspect::flows(h.maps()).unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].client, CLIENT);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn later_packets_of_a_flow_keep_its_backend_and_snat_port() {
    let h = Harness::new(CONFIG);
    let syn = Pkt::tcp(CLIENT, VIP, SYN);
    let (want_syn, _, _) = natted(&syn, &h);
    assert_frame(h.run(&syn.bytes()), XDP_TX, &want_syn.bytes(), "SYN");
    let mut data = Pkt::tcp(CLIENT, VIP, ACK);
    data.payload = vec![b'x'; 100];
    let (want, _, _) = natted(&data, &h);
    assert_frame(h.run(&data.bytes()), XDP_TX, &want.bytes(), "data");
    let b = lb_xdp::inspect::backends(h.maps()).unwrap();
    assert_eq!(b.iter().map(|r| r.new_flows).sum::<u64>(), 1, "one new flow");
    assert_eq!(b.iter().map(|r| r.packets).sum::<u64>(), 2);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn backend_reply_is_translated_back_to_the_client() {
    let h = Harness::new(CONFIG);
    let syn = Pkt::tcp(CLIENT, VIP, SYN);
    let (_, backend, port) = natted(&syn, &h);
    h.run(&syn.bytes());
    let reply = reply_from(backend, &format!("172.20.0.10:{port}"), TCP);
    let mut want = reply.clone().addrs(VIP, CLIENT);
    want.src_mac = LB_MAC;
    want.dst_mac = CLIENT_MAC;
    assert_frame(h.run(&reply.bytes()), XDP_TX, &want.bytes(), "reply");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn reply_to_the_lb_that_is_no_nat_flow_passes_to_the_kernel() {
    let h = Harness::new(CONFIG);
    // The LB's own connection (e.g. a health check) from an ephemeral port.
    let own = reply_from("172.20.0.11:80".parse().unwrap(), "172.20.0.10:45000", TCP);
    assert_frame(h.run(&own.bytes()), XDP_PASS, &own.bytes(), "own traffic");
    // In the SNAT range but no such flow.
    let stray = reply_from("172.20.0.11:80".parse().unwrap(), "172.20.0.10:20001", TCP);
    assert_frame(h.run(&stray.bytes()), XDP_PASS, &stray.bytes(), "stray");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn tcp_syn_in_dsr_mode_changes_only_the_macs() {
    let h = Harness::new(CONFIG);
    for (client, vip) in [(CLIENT, "172.20.0.101:80"), ("[fd00:20::2]:40000", "[fd00:20::101]:80")] {
        let syn = Pkt::tcp(client, vip, SYN);
        let (backend, _) = h.expected(syn.src, syn.dst, TCP);
        let want = syn.clone().macs(LB_MAC, mac_of(backend.ip()));
        assert_frame(h.run(&syn.bytes()), XDP_TX, &want.bytes(), "dsr SYN");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn udp_is_natted_and_replies_come_back() {
    let h = Harness::new(CONFIG);
    let q = Pkt::udp(CLIENT, "172.20.0.100:53");
    let (want, backend, port) = natted(&q, &h);
    assert_frame(h.run(&q.bytes()), XDP_TX, &want.bytes(), "query");
    let r = reply_from(backend, &format!("172.20.0.10:{port}"), UDP);
    let mut back = r.clone().addrs("172.20.0.100:53", CLIENT);
    back.src_mac = LB_MAC;
    back.dst_mac = CLIENT_MAC;
    assert_frame(h.run(&r.bytes()), XDP_TX, &back.bytes(), "answer");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn udp_without_checksum_keeps_none() {
    let h = Harness::new(CONFIG);
    let mut q = Pkt::udp("172.20.0.2:40001", "172.20.0.100:53");
    q.udp_no_checksum = true;
    let (want, _, _) = natted(&q, &h);
    let (action, out) = h.run(&q.bytes());
    assert_eq!(action, XDP_TX);
    assert_eq!(hex(&out), hex(&want.bytes()));
    assert_eq!(&out[14 + 20 + 6..14 + 20 + 8], &[0, 0], "checksum stays 0");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv6_flow_is_natted_and_its_reply_translated_back() {
    let h = Harness::new(CONFIG);
    let client = "[fd00:20::2]:40000";
    let vip = "[fd00:20::100]:80";
    let syn = Pkt::tcp(client, vip, SYN);
    let (want, backend, port) = natted(&syn, &h);
    assert_frame(h.run(&syn.bytes()), XDP_TX, &want.bytes(), "v6 SYN");
    let r = reply_from(backend, &format!("[fd00:20::10]:{port}"), TCP);
    let mut back = r.clone().addrs(vip, client);
    back.src_mac = LB_MAC;
    back.dst_mac = CLIENT_MAC;
    assert_frame(h.run(&r.bytes()), XDP_TX, &back.bytes(), "v6 reply");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv4_options_and_a_vlan_tag_are_carried_through() {
    let h = Harness::new(CONFIG);
    let mut syn = Pkt::tcp("172.20.0.2:40002", VIP, SYN);
    syn.ip_options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    syn.vlan = Some(7);
    let (want, _, _) = natted(&syn, &h);
    assert_frame(h.run(&syn.bytes()), XDP_TX, &want.bytes(), "options + vlan");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_seed_service_on_the_lbs_own_address_is_balanced() {
    let h = Harness::new(CONFIG);
    let syn = Pkt::tcp(CLIENT, "172.20.0.10:8080", SYN);
    let (want, backend, _) = natted(&syn, &h);
    assert_eq!(backend.to_string(), "172.20.0.13:80");
    assert_frame(h.run(&syn.bytes()), XDP_TX, &want.bytes(), "seed");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn non_vip_traffic_passes_untouched() {
    let h = Harness::new(CONFIG);
    let cases = [
        Pkt::tcp(CLIENT, "172.20.0.10:22", SYN).bytes(),   // SSH to the LB itself
        Pkt::tcp(CLIENT, "172.20.0.100:443", SYN).bytes(), // VIP address, other port
        Pkt::udp(CLIENT, "172.20.0.11:53").bytes(),        // to a server directly
        Pkt::tcp("[fd00:20::2]:1", "[fd00:20::10]:22", SYN).bytes(),
    ];
    for frame in cases {
        assert_frame(h.run(&frame), XDP_PASS, &frame, "non-VIP");
    }
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_frame(h.run(&arp), XDP_PASS, &arp, "ARP");
}

/// Frame surgery on a valid SYN to the VIP (IPv4 header at 14, TCP at 34).
fn mangled(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Pkt::tcp(CLIENT, VIP, SYN).bytes();
    f(&mut b);
    b
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn malformed_packets_for_a_vip_get_their_defined_action() {
    let h = Harness::new(CONFIG);
    let cases: Vec<(&str, Vec<u8>, u32, Option<DropReason>)> = vec![
        ("bare Ethernet header (the kernel refuses shorter test frames)", mangled(|b| b.truncate(14)), XDP_PASS, None),
        ("IPv4 header cut short", mangled(|b| b.truncate(14 + 12)), XDP_PASS, None),
        ("TCP header cut short", mangled(|b| b.truncate(14 + 20 + 10)), XDP_DROP, Some(DropReason::Truncated)),
        ("bad IHL (3)", mangled(|b| b[14] = 0x43), XDP_DROP, Some(DropReason::BadIpHeader)),
        (
            "IP total length beyond the frame",
            mangled(|b| b[16..18].copy_from_slice(&1500u16.to_be_bytes())),
            XDP_DROP,
            Some(DropReason::Truncated),
        ),
        ("fragment (MF)", mangled(|b| b[20] = 0x20), XDP_DROP, Some(DropReason::Fragment)),
        (
            "later fragment",
            mangled(|b| {
                b[20] = 0x00;
                b[21] = 0x10
            }),
            XDP_DROP,
            Some(DropReason::Fragment),
        ),
        (
            "zero-length L4",
            mangled(|b| b[16..18].copy_from_slice(&20u16.to_be_bytes())),
            XDP_DROP,
            Some(DropReason::BadL4Header),
        ),
        ("TCP data offset 4", mangled(|b| b[14 + 20 + 12] = 4 << 4), XDP_DROP, Some(DropReason::BadL4Header)),
    ];
    for (what, frame, action, reason) in cases {
        let before = reason.map(|r| h.drops(r));
        let (got, _) = h.run(&frame);
        assert_eq!(got, action, "{what}");
        if let (Some(r), Some(before)) = (reason, before) {
            assert_eq!(h.drops(r), before + 1, "{what}: counted as {r:?}");
        }
    }
    assert_eq!(h.action_count(0), 0, "never XDP_ABORTED");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn malformed_packets_to_an_address_shared_with_the_host_go_to_the_kernel() {
    let h = Harness::new(CONFIG);
    let mut b = Pkt::tcp(CLIENT, "172.20.0.10:8080", SYN).bytes();
    b[20] = 0x20; // fragment
    assert_eq!(h.run(&b).0, XDP_PASS);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn no_backend_in_rotation_drops_new_flows_and_unknown_macs_wait() {
    let mut h = Harness::new(
        &CONFIG
            .replace("address = \"172.20.0.11:53\"", "address = \"172.20.0.11:53\"\nstate = \"maint\"")
            .replace("address = \"172.20.0.12:53\"", "address = \"172.20.0.12:53\"\nstate = \"drain\""),
    );
    assert_eq!(h.run(&Pkt::udp(CLIENT, "172.20.0.100:53").bytes()).0, XDP_DROP);
    assert_eq!(h.drops(DropReason::NoBackend), 1);
    // A flow is established, then every next-hop MAC is forgotten: new flows find no
    // reachable backend, the established one waits for its MAC (counted, not misrouted).
    assert_eq!(h.run(&Pkt::tcp(CLIENT, VIP, SYN).bytes()).0, XDP_TX);
    h.set_facts(lb_xdp::plan::HostFacts::default());
    assert_eq!(h.run(&Pkt::tcp("172.20.0.2:50000", VIP, SYN).bytes()).0, XDP_DROP);
    assert_eq!(h.drops(DropReason::NoBackend), 2);
    assert_eq!(h.run(&Pkt::tcp(CLIENT, VIP, ACK).bytes()).0, XDP_DROP);
    assert_eq!(h.drops(DropReason::NoNeighbor), 1);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_flow_keeps_its_backend_when_the_set_changes_and_moves_only_when_its_backend_goes() {
    let mut h = Harness::new(CONFIG);
    // Many flows, so some land on every backend.
    let clients: Vec<String> = (0..60).map(|i| format!("172.20.0.2:{}", 41000 + i)).collect();
    let mut first = Vec::new();
    for c in &clients {
        let (_, out) = h.run(&Pkt::tcp(c, VIP, SYN).bytes());
        first.push(out[30..34].to_vec()); // destination address after NAT
    }
    // Add a fourth backend: a new flow may go there, existing ones stay.
    let with_four = CONFIG.replace(
        "address = \"172.20.0.13:80\"\n",
        "address = \"172.20.0.13:80\"\n[[service.backend]]\naddress = \"172.20.0.14:80\"\n",
    );
    let mut facts = test_facts();
    facts.neighbours.insert("172.20.0.14".parse().unwrap(), server_mac(4));
    h.set_facts(facts);
    h.reload(&with_four);
    for (c, dst) in clients.iter().zip(&first) {
        let (_, out) = h.run(&Pkt::tcp(c, VIP, ACK).bytes());
        assert_eq!(&out[30..34], &dst[..], "{c} kept its backend");
    }
    // Remove backend .12: its flows are re-steered, the others stay.
    h.reload(&with_four.replace("[[service.backend]]\naddress = \"172.20.0.12:80\"\n", ""));
    for (c, dst) in clients.iter().zip(&first) {
        let (action, out) = h.run(&Pkt::tcp(c, VIP, ACK).bytes());
        assert_eq!(action, XDP_TX);
        if dst[..] == [172, 20, 0, 12] {
            assert_ne!(&out[30..34], &dst[..], "{c} left the removed backend");
        } else {
            assert_eq!(&out[30..34], &dst[..], "{c} kept its backend");
        }
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn explain_names_the_backend_real_packets_get() {
    let h = Harness::new(CONFIG);
    for i in 0..20 {
        let client = format!("172.20.0.2:{}", 42000 + i);
        let e = lb_xdp::explain::explain(h.maps(), VIP.parse().unwrap(), client.parse().unwrap(), TCP).unwrap();
        assert_eq!(e.decision, "new flow");
        let (_, out) = h.run(&Pkt::tcp(&client, VIP, SYN).bytes());
        assert_eq!(e.backend, Some(destination(&out).to_string()));
        let again = lb_xdp::explain::explain(h.maps(), VIP.parse().unwrap(), client.parse().unwrap(), TCP).unwrap();
        assert_eq!(again.decision, "existing flow");
        assert_eq!(again.backend, e.backend);
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn random_and_mutated_frames_never_abort() {
    let h = Harness::new(CONFIG);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let bases = [
        Pkt::tcp(CLIENT, VIP, SYN).bytes(),
        Pkt::udp(CLIENT, "172.20.0.100:53").bytes(),
        Pkt::tcp("[fd00:20::2]:5", "[fd00:20::100]:80", SYN).bytes(),
    ];
    for i in 0..3000 {
        let mut f = bases[i % 3].clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % f.len();
            f[at] = next() as u8;
        }
        f.truncate(14 + (next() as usize) % (f.len() - 13));
        let (action, _) = h.run(&f);
        assert!(matches!(action, XDP_DROP | XDP_PASS | XDP_TX), "frame {i}: action {action}");
    }
    assert_eq!(h.action_count(0), 0, "never XDP_ABORTED");
}

/// A config with one service "alg" on 172.20.0.102:80 using `algorithm`, with backends
/// .11, .12, .13 of the given weights. dsr: these tests are about the choice of backend,
/// not about SNAT ports.
fn algorithm_config(algorithm: &str, weights: [u32; 3]) -> String {
    let mut c = format!("[daemon]\ninterface = \"eth0\"\nsnat_ipv4 = \"172.20.0.10\"\nflow_table_size = 8192\n\n[[service]]\nname = \"alg\"\nvip = \"172.20.0.102:80\"\nforwarding = \"dsr\"\nalgorithm = \"{algorithm}\"\n");
    for (i, w) in weights.iter().enumerate() {
        c.push_str(&format!("[[service.backend]]\naddress = \"172.20.0.1{}:80\"\nweight = {w}\n", i + 1));
    }
    c
}

/// Which of .11/.12/.13 a dsr frame goes to: its destination MAC is server_mac(n) = 02::1n.
fn backend_of(frame: &[u8]) -> u8 {
    frame[5] - 0x10 + 10
}

/// Send `n` new flows (SYNs from fresh client ports) and count where they went, by the
/// backend address's last byte (11, 12, 13).
fn spread(h: &Harness, first_port: u16, n: u16) -> std::collections::BTreeMap<u8, usize> {
    let mut m = std::collections::BTreeMap::new();
    for p in first_port..first_port + n {
        let (action, out) = h.run(&Pkt::tcp(&format!("172.20.0.2:{p}"), "172.20.0.102:80", SYN).bytes());
        assert_eq!(action, XDP_TX);
        *m.entry(backend_of(&out)).or_default() += 1;
    }
    m
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn round_robin_and_weighted_round_robin_are_exact_in_xdp() {
    let h = Harness::new(&algorithm_config("round_robin", [5, 1, 1]));
    assert_eq!(spread(&h, 30_000, 30), [(11, 10), (12, 10), (13, 10)].into(), "weights ignored, each in turn");
    let h = Harness::new(&algorithm_config("weighted_round_robin", [3, 1, 1]));
    assert_eq!(spread(&h, 30_000, 50), [(11, 30), (12, 10), (13, 10)].into());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn random_follows_the_weights_in_xdp() {
    let h = Harness::new(&algorithm_config("random", [2, 1, 1]));
    let m = spread(&h, 20_000, 4000);
    let share = m[&11] as f64 / 4000.0;
    assert!((share - 0.5).abs() < 0.04, "{m:?}");
}

/// Close `count` of the flows that went to backend `.{last}`, with a FIN each.
fn close_flows_to(h: &Harness, first_port: u16, n: u16, last: u8, count: usize) {
    let mut closed = 0;
    for p in first_port..first_port + n {
        if closed == count {
            break;
        }
        let (_, out) = h.run(&Pkt::tcp(&format!("172.20.0.2:{p}"), "172.20.0.102:80", ACK).bytes());
        if backend_of(&out) == last {
            h.run(&Pkt::tcp(&format!("172.20.0.2:{p}"), "172.20.0.102:80", FIN | ACK).bytes());
            closed += 1;
        }
    }
    assert_eq!(closed, count);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn least_conn_sends_new_flows_to_the_backend_with_fewest_live_flows_in_xdp() {
    let h = Harness::new(&algorithm_config("least_conn", [1, 1, 1]));
    assert_eq!(spread(&h, 30_000, 30), [(11, 10), (12, 10), (13, 10)].into(), "ties go round");
    close_flows_to(&h, 30_000, 30, 12, 6);
    assert_eq!(spread(&h, 31_000, 6), [(12, 6)].into(), "the emptied backend fills up first");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn p2c_prefers_the_less_loaded_of_two_in_xdp() {
    let h = Harness::new(&algorithm_config("p2c", [1, 1, 1]));
    let first = spread(&h, 30_000, 60);
    let on_13 = first[&13];
    close_flows_to(&h, 30_000, 60, 13, on_13);
    // .13 now carries nothing: it wins every draw it is in (5 of 9 draws) until it catches up.
    let m = spread(&h, 31_000, 30);
    assert!(
        m[&13] > m.get(&11).copied().unwrap_or(0) && m[&13] > m.get(&12).copied().unwrap_or(0),
        "the emptied backend wins most: {m:?}"
    );
}

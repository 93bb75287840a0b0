//! Hostile traffic the data path must shrug off: segments of connections that never
//! existed (nat opens flows only on a SYN), handshakes that never complete (their flows and
//! SNAT ports go after `tcp_handshake_timeout`), SNAT probes nobody outside can predict,
//! stale NAT entries reclaimed by one CPU only, spoofed FIN/RST, frames to foreign MACs,
//! ICMP errors about no live flow, and sources a service refuses (`allow` / `deny`).
//! Root only: `cargo xtask test` runs them (`--ignored`).

use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData};
use lb_common::addr::{ip_words, port_be};
use lb_common::consts::{FLOW_CLOSING, FLOW_COUNTED, FLOW_ESTABLISHED, FLOW_UNCONFIRMED, PROTO_TCP};
use lb_common::maps::{FlowKey, FlowState, NatKey};
use lb_common::reason::DropReason;
use lb_xdp::testkit::frame::{destination, source};
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const VIP: &str = "172.20.0.100:80";
const DSR_VIP: &str = "172.20.0.101:80";

/// One nat service, one backend, one SNAT port, short embryonic timeouts: whoever holds
/// the port shows at once.
const ONE_PORT: &str = r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
snat_ports = "40000"
flow_table_size = 4096
tcp_handshake_timeout = "200ms"
udp_unreplied_timeout = "200ms"

[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:80"

[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
[[service.backend]]
address = "172.20.0.11:53"
"#;

const PAST_HANDSHAKE: Duration = Duration::from_millis(300);

fn flow_key(client: &str, vip: &str, proto: u8) -> FlowKey {
    let (c, v): (std::net::SocketAddr, std::net::SocketAddr) = (client.parse().unwrap(), vip.parse().unwrap());
    let (src, family) = ip_words(c.ip());
    FlowKey {
        src,
        dst: ip_words(v.ip()).0,
        sport: port_be(c.port()),
        dport: port_be(v.port()),
        proto,
        family,
        _pad: [0; 2],
    }
}

fn flow(h: &Harness, client: &str, vip: &str, proto: u8) -> Option<FlowState> {
    h.maps().flows.get(&flow_key(client, vip, proto), 0).ok()
}

fn snat_port_of(frame: &[u8]) -> u16 {
    source(frame).port()
}

fn active(h: &Harness, backend_id: u32) -> u64 {
    h.maps().active.get(&backend_id, 0).unwrap()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn nat_opens_flows_only_on_a_syn_and_counts_the_rest_as_no_flow() {
    let h = Harness::new(CONFIG);
    for (i, flags) in [ACK, ACK | FIN, RST, FIN, ACK | 0x08, SYN | ACK].into_iter().enumerate() {
        let client = format!("172.20.0.2:{}", 41000 + i);
        let got = h.run(&Pkt::tcp(&client, VIP, flags).bytes());
        assert_eq!(got.0, XDP_DROP, "flags {flags:#x} without a flow");
        assert!(flow(&h, &client, VIP, PROTO_TCP).is_none(), "flags {flags:#x} made a flow");
    }
    assert_eq!(h.drops(DropReason::NoFlow), 6);
    assert!(h.maps().nat.keys().next().is_none(), "no SNAT port taken");
    let (want, _, _) = natted(&Pkt::tcp("172.20.0.2:42000", VIP, SYN), &h);
    assert_frame(h.run(&Pkt::tcp("172.20.0.2:42000", VIP, SYN).bytes()), XDP_TX, &want.bytes(), "a SYN opens");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn dsr_picks_up_mid_stream_segments_as_unconfirmed_flows() {
    let h = Harness::new(CONFIG);
    let client = "172.20.0.2:43000";
    assert_eq!(h.run(&Pkt::tcp(client, DSR_VIP, ACK).seqs(7000, 1).bytes()).0, XDP_TX);
    let f = flow(&h, client, DSR_VIP, PROTO_TCP).expect("a dsr flow");
    assert_eq!(f.flags & (FLOW_UNCONFIRMED | FLOW_COUNTED), FLOW_UNCONFIRMED);
    assert_eq!(active(&h, f.backend_id), 0, "unconfirmed: not active");
    // The next segment, right after the first, confirms it.
    let next = Pkt::tcp(client, DSR_VIP, ACK).seqs(7000 + 18, 1);
    assert_eq!(h.run(&next.bytes()).0, XDP_TX);
    let f = flow(&h, client, DSR_VIP, PROTO_TCP).unwrap();
    assert_eq!(f.flags & (FLOW_UNCONFIRMED | FLOW_COUNTED | FLOW_ESTABLISHED), FLOW_COUNTED | FLOW_ESTABLISHED);
    assert_eq!(active(&h, f.backend_id), 1);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn unanswered_handshakes_give_their_snat_port_back_after_the_handshake_timeout() {
    let h = Harness::new(ONE_PORT);
    let (a, b) = ("172.20.0.2:44000", "172.20.0.3:44000");
    let first = h.run(&Pkt::tcp(a, VIP, SYN).bytes());
    assert_eq!((first.0, snat_port_of(&first.1)), (XDP_TX, 40000));
    // Resent within the timeout: the same backend and port, byte for byte.
    assert_eq!(h.run(&Pkt::tcp(a, VIP, SYN).bytes()), first, "a resent SYN keeps its backend and port");
    assert_eq!(h.run(&Pkt::tcp(b, VIP, SYN).bytes()).0, XDP_DROP, "the only port is held");
    assert_eq!(h.drops(DropReason::SnatExhausted), 1);
    std::thread::sleep(PAST_HANDSHAKE);
    let second = h.run(&Pkt::tcp(b, VIP, SYN).bytes());
    assert_eq!((second.0, snat_port_of(&second.1)), (XDP_TX, 40000), "the port came back");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_completed_handshake_keeps_its_port_past_the_handshake_timeout() {
    let h = Harness::new(ONE_PORT);
    let (a, b) = ("172.20.0.2:44100", "172.20.0.3:44100");
    assert_eq!(h.run(&Pkt::tcp(a, VIP, SYN).seqs(1000, 0).bytes()).0, XDP_TX);
    let backend: std::net::SocketAddr = "172.20.0.11:80".parse().unwrap();
    let synack = reply_from(backend, "172.20.0.10:40000", TCP).seqs(5000, 1001);
    assert_eq!(h.run(&synack.bytes()).0, XDP_TX, "the SYN-ACK goes back to the client");
    assert_eq!(h.run(&Pkt::tcp(a, VIP, ACK).seqs(1001, 5001).bytes()).0, XDP_TX);
    assert_ne!(flow(&h, a, VIP, PROTO_TCP).unwrap().flags & FLOW_ESTABLISHED, 0);
    std::thread::sleep(PAST_HANDSHAKE);
    assert_eq!(h.run(&Pkt::tcp(b, VIP, SYN).bytes()).0, XDP_DROP, "the established flow still holds the port");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn unreplied_udp_flows_give_their_port_back_and_replied_ones_keep_it() {
    let h = Harness::new(ONE_PORT);
    let dns = "172.20.0.100:53";
    let (a, b, c) = ("172.20.0.2:45000", "172.20.0.3:45000", "172.20.0.4:45000");
    assert_eq!(h.run(&Pkt::udp(a, dns).bytes()).0, XDP_TX);
    assert_eq!(h.run(&Pkt::udp(b, dns).bytes()).0, XDP_DROP);
    std::thread::sleep(PAST_HANDSHAKE);
    assert_eq!(h.run(&Pkt::udp(b, dns).bytes()).0, XDP_TX, "a's unreplied flow is gone");
    let backend: std::net::SocketAddr = "172.20.0.11:53".parse().unwrap();
    assert_eq!(h.run(&reply_from(backend, "172.20.0.10:40000", UDP).bytes()).0, XDP_TX);
    std::thread::sleep(PAST_HANDSHAKE);
    assert_eq!(h.run(&Pkt::udp(c, dns).bytes()).0, XDP_DROP, "b's replied flow keeps the port");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn snat_probes_follow_each_daemons_random_seed() {
    let (one, two) = (Harness::new(CONFIG), Harness::new(CONFIG));
    let mut differ = 0;
    let mut public = 0;
    let g = &one.plan.global;
    let range = (g.snat_port_max - g.snat_port_min) as u32 + 1;
    for i in 0..16 {
        let client = format!("172.20.0.2:{}", 46000 + i);
        let syn = Pkt::tcp(&client, VIP, SYN).bytes();
        let (a, b) = (snat_port_of(&one.run(&syn).1), snat_port_of(&two.run(&syn).1));
        differ += (a != b) as u32;
        let key = flow_key(&client, VIP, PROTO_TCP);
        let hash = lb_common::hash::flow_hash(&key.src, &key.dst, key.sport, key.dport, key.proto);
        public += (a == g.snat_port_min + (hash % range) as u16) as u32;
    }
    assert!(differ >= 12, "two daemons probe ports in different orders ({differ} of 16 differ)");
    assert!(public <= 4, "the probe order is not the public flow hash ({public} of 16 match it)");
}

fn claims(h: &mut Harness) -> BpfHashMap<&mut MapData, Claim, u32> {
    BpfHashMap::try_from(h.private_map("LB_SNAT_CLAIMS")).unwrap()
}

/// A claim key as `lb-ebpf/src/nat.rs` lays it out.
#[repr(C)]
#[derive(Clone, Copy)]
struct Claim {
    nat: NatKey,
    version: u32,
}
// SAFETY: repr(C), no padding (28 + 4 bytes), any bytes valid.
unsafe impl aya::Pod for Claim {}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_stale_snat_entry_another_cpu_claimed_is_not_taken_again() {
    let mut h = Harness::new(ONE_PORT);
    assert_eq!(h.run(&Pkt::tcp("172.20.0.2:47000", VIP, SYN).bytes()).0, XDP_TX);
    std::thread::sleep(PAST_HANDSHAKE);
    // Another CPU saw the same stale entry and claimed it, and is about to overwrite it.
    let (key, value) = h.maps().nat.iter().next().expect("the first flow's NAT entry").unwrap();
    let claim = Claim { nat: key, version: value.version };
    claims(&mut h).insert(claim, 1, 0).unwrap();
    assert_eq!(h.run(&Pkt::tcp("172.20.0.3:47000", VIP, SYN).bytes()).0, XDP_DROP, "the port is the claimant's");
    assert_eq!(h.drops(DropReason::SnatExhausted), 1);
    // Unclaimed, the stale entry is reclaimed.
    claims(&mut h).remove(&claim).unwrap();
    assert_eq!(h.run(&Pkt::tcp("172.20.0.3:47000", VIP, SYN).bytes()).0, XDP_TX);
}

/// SYN, SYN-ACK, ACK of a nat flow from `client`; its SNAT port.
fn handshake(h: &Harness, client: &str) -> u16 {
    let out = h.run(&Pkt::tcp(client, VIP, SYN).seqs(1000, 0).bytes());
    let port = snat_port_of(&out.1);
    let backend = destination(&out.1);
    let synack = reply_from(backend, &format!("172.20.0.10:{port}"), TCP).seqs(5000, 1001);
    assert_eq!(h.run(&synack.bytes()).0, XDP_TX);
    assert_eq!(h.run(&Pkt::tcp(client, VIP, ACK).seqs(1001, 5001).bytes()).0, XDP_TX);
    port
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_spoofed_fin_or_rst_does_not_close_an_established_flow() {
    let h = Harness::new(CONFIG);
    let client = "172.20.0.2:48000";
    handshake(&h, client);
    let f = flow(&h, client, VIP, PROTO_TCP).unwrap();
    assert_ne!(f.flags & FLOW_ESTABLISHED, 0);
    for (flags, seq) in [(RST, 900_000_000), (FIN | ACK, 3_000_000), (RST | ACK, 1001 + 70_000)] {
        // Forwarded (the backend's stack judges it), but the flow stays open.
        assert_eq!(h.run(&Pkt::tcp(client, VIP, flags).seqs(seq, 5001).bytes()).0, XDP_TX);
        assert_eq!(flow(&h, client, VIP, PROTO_TCP).unwrap().flags & FLOW_CLOSING, 0, "seq {seq}");
    }
    assert_eq!(active(&h, f.backend_id), 1);
    assert_eq!(h.run(&Pkt::tcp(client, VIP, FIN | ACK).seqs(1001, 5001).bytes()).0, XDP_TX);
    assert_ne!(flow(&h, client, VIP, PROTO_TCP).unwrap().flags & FLOW_CLOSING, 0, "the real FIN closes");
    assert_eq!(active(&h, f.backend_id), 0);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_flow_opened_by_a_fin_or_rst_never_counts_as_active() {
    let h = Harness::new(CONFIG);
    for (i, flags) in [FIN | ACK, RST].into_iter().enumerate() {
        let client = format!("172.20.0.2:{}", 49000 + i);
        assert_eq!(h.run(&Pkt::tcp(&client, DSR_VIP, flags).bytes()).0, XDP_TX);
        let f = flow(&h, &client, DSR_VIP, PROTO_TCP).expect("dsr picks it up");
        assert_eq!(f.flags & FLOW_COUNTED, 0);
        assert_eq!(active(&h, f.backend_id), 0, "flags {flags:#x}");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn frames_leave_from_the_interfaces_own_mac_whatever_they_were_sent_to() {
    let h = Harness::new(CONFIG);
    for (i, dst_mac) in [[0xff; 6], [0x01, 0x00, 0x5e, 0, 0, 1], [0x02, 0, 0, 0, 0, 0x99]].into_iter().enumerate() {
        let syn = Pkt::tcp(&format!("172.20.0.2:{}", 50000 + i), VIP, SYN).macs(CLIENT_MAC, dst_mac);
        let (action, out) = h.run(&syn.bytes());
        assert_eq!(action, XDP_TX);
        assert_eq!(out[6..12], LB_MAC, "source MAC for a frame sent to {dst_mac:02x?}");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn icmp_errors_about_no_live_flow_are_not_translated() {
    let h = Harness::new(ONE_PORT);
    let backend = "172.20.0.11:80";
    // Quoting a packet of a flow that never existed: no NAT entry.
    let quoted = Pkt::tcp("172.20.0.10:40000", backend, SYN).ip_packet();
    let frag_needed =
        IcmpPkt::new("172.20.0.11", "172.20.0.10", 3, 4, [0, 0, 5, 0xdc], &quoted).macs(server_mac(1), LB_MAC).bytes();
    assert_eq!(h.run(&frag_needed), (XDP_PASS, frag_needed.clone()));
    // Quoting a packet of a flow that is gone (its NAT entry is left behind).
    assert_eq!(h.run(&Pkt::tcp("172.20.0.2:51000", VIP, SYN).bytes()).0, XDP_TX);
    let live = h.run(&frag_needed);
    assert_eq!(live.0, XDP_TX, "while the flow lives, the error reaches its client");
    std::thread::sleep(PAST_HANDSHAKE);
    assert!(h.maps().nat.keys().next().is_some(), "the stale entry is still there");
    assert_eq!(h.run(&frag_needed), (XDP_PASS, frag_needed.clone()), "a gone flow's entry translates nothing");
}

const ACL: &str = r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
snat_ipv6 = "fd00:20::10"
flow_table_size = 4096

[[service]]
name = "web"
vip = "172.20.0.100:80"
allow = ["172.20.0.0/24", "fd00:20::/64"]
deny = ["172.20.0.66", "fd00:20::66/128"]
[service.rate_limit]
new_flows_per_second = 1
burst = 2
[[service.backend]]
address = "172.20.0.11:80"

[[service]]
name = "web6"
vip = "[fd00:20::100]:80"
deny = ["fd00:20::66/128"]
[[service.backend]]
address = "[fd00:20::11]:80"
"#;

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn sources_a_service_refuses_are_dropped_before_its_rate_limit() {
    let h = Harness::new(ACL);
    for client in ["172.20.0.66:52000", "10.9.9.9:52000", "172.20.1.2:52000"] {
        assert_eq!(h.run(&Pkt::tcp(client, VIP, SYN).bytes()).0, XDP_DROP, "{client}");
    }
    assert_eq!(h.run(&Pkt::tcp("[fd00:20::66]:52000", "[fd00:20::100]:80", SYN).bytes()).0, XDP_DROP);
    assert_eq!(h.drops(DropReason::AclDenied), 4);
    assert_eq!(h.drops(DropReason::RateLimited), 0, "refused before the buckets: they are still full");
    let per_service: Vec<u64> = (0..2).map(|id| h.maps().acl_denied.get(&id, 0).unwrap().iter().sum::<u64>()).collect();
    assert_eq!(per_service.iter().sum::<u64>(), 4);
    assert!(per_service.contains(&3) && per_service.contains(&1), "counted per service: {per_service:?}");
    // Allowed sources pass (the rate limit's burst of 2 still whole), on both services.
    assert_eq!(h.run(&Pkt::tcp("172.20.0.2:52001", VIP, SYN).bytes()).0, XDP_TX);
    assert_eq!(h.run(&Pkt::tcp("172.20.0.3:52001", VIP, SYN).bytes()).0, XDP_TX);
    assert_eq!(h.run(&Pkt::tcp("[fd00:20::2]:52001", "[fd00:20::100]:80", SYN).bytes()).0, XDP_TX);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_reload_that_lifts_a_deny_takes_its_prefix_out_of_the_trie() {
    let mut h = Harness::new(ACL);
    assert_eq!(h.run(&Pkt::tcp("172.20.0.66:53000", VIP, SYN).bytes()).0, XDP_DROP);
    h.reload(&ACL.replace("deny = [\"172.20.0.66\", \"fd00:20::66/128\"]\n", ""));
    assert_eq!(h.run(&Pkt::tcp("172.20.0.66:53000", VIP, SYN).bytes()).0, XDP_TX);
    h.writer().check_mirror().unwrap();
    assert_eq!(h.maps().acl.iter().count(), 3, "web's two allow prefixes and web6's deny are left");
}

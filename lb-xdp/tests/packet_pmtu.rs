//! Path MTU fixtures: a client packet that would exceed `tunnel_mtu` once encapsulated is
//! answered, from the VIP, with ICMP "fragmentation needed" or ICMPv6 "packet too big"
//! carrying the MTU left for the client's packets; one that fits exactly is forwarded.
//! Expected answers are built here byte by byte (checksums by RFC 1071, ICMPv6's over its
//! pseudo-header), never with the data path's code. Root only: `cargo xtask test` runs them.

use std::net::IpAddr;

use lb_common::reason::DropReason;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const XDP_ABORTED: u32 = 0;

const CLIENT: &str = "172.20.0.2:40000";
const CLIENT6: &str = "[fd00:20::2]:40000";
const IPIP4: &str = "172.20.0.102:80";
const IPIP6: &str = "[fd00:20::102]:80";
const GUE4: &str = "172.20.0.104:80";
const GUE6: &str = "[fd00:20::104]:80";
const GUE46: &str = "172.20.0.105:80";
const GUE_DNS: &str = "172.20.0.104:53";

const TUNNEL_MTU: usize = 1400;

const CONFIG: &str = r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
snat_ipv6 = "fd00:20::10"
flow_table_size = 4096
tunnel_mtu = 1400

[[service]]
name = "ipip4"
vip = "172.20.0.102:80"
forwarding = "ipip"
[[service.backend]]
address = "172.20.0.11:80"

[[service]]
name = "ipip6"
vip = "[fd00:20::102]:80"
forwarding = "ipip"
[[service.backend]]
address = "[fd00:20::11]:80"

[[service]]
name = "gue4"
vip = "172.20.0.104:80"
forwarding = "gue"
[[service.backend]]
address = "172.20.0.12:80"

[[service]]
name = "gue6"
vip = "[fd00:20::104]:80"
forwarding = "gue"
[[service.backend]]
address = "[fd00:20::12]:80"

[[service]]
name = "gue46"
vip = "172.20.0.105:80"
forwarding = "gue"
[[service.backend]]
address = "[fd00:20::13]:80"

[[service]]
name = "gue-dns"
vip = "172.20.0.104:53"
protocol = "udp"
forwarding = "gue"
[[service.backend]]
address = "172.20.0.12:53"
"#;

/// A TCP segment (or UDP datagram) whose IP packet is exactly `ip_len` bytes long.
fn sized(mut p: Pkt, ip_len: usize) -> Pkt {
    let ip = if p.src.is_ipv4() { 20 + p.ip_options.len() } else { 40 };
    let l4 = if p.proto == TCP { 20 } else { 8 };
    p.payload = (0..ip_len - ip - l4).map(|i| (i * 7) as u8).collect();
    assert_eq!(p.ip_packet().len(), ip_len);
    p
}

/// The answer to `input` (whose frame is `frame`), telling it `mtu`: from the VIP to the
/// client, MACs turned round, quoting the IP header and 8 bytes of the transport header.
fn answer(input: &Pkt, frame: &[u8], mtu: u32) -> Vec<u8> {
    let l2 = if input.vlan.is_some() { 18 } else { 14 };
    let ip = &frame[l2..];
    let mut f = Vec::new();
    f.extend_from_slice(&input.src_mac);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&frame[12..l2 - 2]);
    match (input.dst.ip(), input.src.ip()) {
        (IpAddr::V4(vip), IpAddr::V4(client)) => {
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let quote = &ip[..ihl + 8];
            let mut icmp = vec![3, 4, 0, 0, 0, 0];
            icmp.extend_from_slice(&(mtu as u16).to_be_bytes());
            icmp.extend_from_slice(quote);
            let c = checksum(&icmp, 0);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0x40, 0, 64, ICMP, 0, 0]);
            h.extend_from_slice(&vip.octets());
            h.extend_from_slice(&client.octets());
            let c = checksum(&h, 0);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&h);
            f.extend_from_slice(&icmp);
        }
        (IpAddr::V6(vip), IpAddr::V6(client)) => {
            let mut icmp = vec![2, 0, 0, 0];
            icmp.extend_from_slice(&mtu.to_be_bytes());
            icmp.extend_from_slice(&ip[..48]);
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&vip.octets());
            pseudo.extend_from_slice(&client.octets());
            pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
            let c = checksum(&icmp, sum(&pseudo, 0));
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[ICMPV6, 64]);
            f.extend_from_slice(&vip.octets());
            f.extend_from_slice(&client.octets());
            f.extend_from_slice(&icmp);
        }
        _ => unreachable!(),
    }
    f
}

fn forwarded_packets(h: &Harness) -> u64 {
    lb_xdp::inspect::backends(h.maps()).unwrap().iter().map(|r| r.packets).sum()
}

/// For each (client, VIP, overhead): the largest packet that fits is forwarded, one byte
/// more is answered with the MTU that leaves for the client's packets.
fn edge(h: &Harness, client: &str, vip: &str, overhead: usize, proto: u8) {
    let fit = TUNNEL_MTU - overhead;
    let base = if proto == TCP { Pkt::tcp(client, vip, ACK) } else { Pkt::udp(client, vip) };
    let exact = sized(base.clone(), fit);
    let (action, out) = h.run(&exact.bytes());
    assert_eq!(action, XDP_TX, "{vip}: exact fit");
    assert_eq!(out.len(), 14 + TUNNEL_MTU, "{vip}: exact fit leaves as a {TUNNEL_MTU}-byte IP packet");
    assert_eq!(&out[14 + overhead..], &exact.ip_packet()[..], "{vip}: exact fit carried unchanged");

    let before = (h.drops(DropReason::TooBig), forwarded_packets(h));
    let over = sized(base, fit + 1);
    let frame = over.bytes();
    assert_frame(h.run(&frame), XDP_TX, &answer(&over, &frame, fit as u32), &format!("{vip}: one byte over"));
    assert_eq!(h.drops(DropReason::TooBig), before.0 + 1, "{vip}: counted as too_big");
    assert_eq!(forwarded_packets(h), before.1, "{vip}: not counted as forwarded");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv4_one_byte_over_the_tunnel_mtu_gets_fragmentation_needed() {
    let h = Harness::new(CONFIG);
    edge(&h, CLIENT, IPIP4, 20, TCP);
    edge(&h, "172.20.0.2:40001", GUE4, 28, TCP);
    edge(&h, "172.20.0.2:40002", GUE_DNS, 28, UDP);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv6_one_byte_over_the_tunnel_mtu_gets_packet_too_big() {
    let h = Harness::new(CONFIG);
    edge(&h, CLIENT6, IPIP6, 40, TCP);
    edge(&h, "[fd00:20::2]:40001", GUE6, 48, TCP);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv4_in_ipv6_counts_the_ipv6_overhead() {
    let h = Harness::new(CONFIG);
    edge(&h, CLIENT, GUE46, 48, TCP);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv4_without_df_is_answered_too() {
    let h = Harness::new(CONFIG);
    let p = sized(Pkt::tcp(CLIENT, IPIP4, ACK), 1500);
    let mut frame = p.bytes();
    // Flags and fragment offset 0 (DF cleared), the header checksum recomputed.
    frame[20] = 0;
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&frame[14..34], 0);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    assert_frame(h.run(&frame), XDP_TX, &answer(&p, &frame, 1380), "no DF");
    // What `lb list stats` and `lb_drops_total{reason="too_big"}` show.
    let stats = lb_xdp::inspect::stats(h.maps()).unwrap();
    assert_eq!(stats.drops.get("too_big"), Some(&1));
    assert_eq!(stats.actions.get("tx"), Some(&1), "the answer leaves by XDP_TX");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_quote_holds_ipv4_options_and_the_answer_keeps_the_vlan_tag() {
    let h = Harness::new(CONFIG);
    let mut p = Pkt::tcp(CLIENT, GUE4, ACK);
    p.ip_options = vec![1, 1, 1, 0, 1, 1, 1, 0];
    p.vlan = Some(42);
    let p = sized(p, 1600);
    let frame = p.bytes();
    let want = answer(&p, &frame, 1372);
    assert_eq!(want.len(), 18 + 20 + 8 + 28 + 8, "options quoted whole");
    assert_frame(h.run(&frame), XDP_TX, &want, "options + VLAN");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn without_a_tunnel_mtu_large_packets_are_forwarded() {
    let h = Harness::new(&CONFIG.replace("tunnel_mtu = 1400\n", ""));
    let p = sized(Pkt::tcp(CLIENT6, GUE6, ACK), 3000);
    let (action, out) = h.run(&p.bytes());
    assert_eq!(action, XDP_TX);
    assert_eq!(out.len(), 14 + 48 + 3000);
    assert_eq!(h.drops(DropReason::TooBig), 0);
}

/// Oversize frames cut short or with a byte changed: never ABORTED, and whatever is sent
/// back is a well-formed answer or an encapsulated frame.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn truncated_and_mutated_oversize_frames_never_abort() {
    let h = Harness::new(CONFIG);
    for (client, vip) in [(CLIENT, IPIP4), (CLIENT6, GUE6), (CLIENT, GUE46)] {
        let whole = sized(Pkt::tcp(client, vip, ACK), 1500).bytes();
        let headers = if client == CLIENT { 14 + 40 } else { 14 + 60 };
        for len in (14..headers + 16).chain([200, 1000, 1413, 1414, 1499]) {
            assert_ne!(h.run(&whole[..len]).0, XDP_ABORTED, "{vip} cut to {len}");
        }
        let mut x: u32 = 0x9e37_79b9;
        for i in 0..300 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut frame = whole.clone();
            let at = (x as usize) % (headers + 8);
            frame[at] ^= (x >> 24) as u8 | 1;
            assert_ne!(h.run(&frame).0, XDP_ABORTED, "{vip} mutation {i} at {at}");
        }
    }
    assert_eq!(h.action_count(XDP_ABORTED), 0);
}

//! Encapsulated forwarding fixtures (`forwarding = "ipip"` and `"gue"`): the client's packet,
//! byte for byte, inside an outer header to the backend the service's table picks, as for
//! dsr. Expected frames are built here from first principles (header bytes spelt out, the
//! IPv4 checksum by RFC 1071 over them, the outer source, GUE port and flow label derived
//! from the flow hash by the rules the docs give), never with lb-common's `encap` module.
//! Root only, like the other packet fixtures: `cargo xtask test` runs them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lb_common::addr::{ip_words, port_be};
use lb_common::hash::flow_hash;
use lb_common::reason::DropReason;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const XDP_ABORTED: u32 = 0;

const CLIENT: &str = "172.20.0.2:40000";
const CLIENT6: &str = "[fd00:20::2]:40000";
const IPIP4: &str = "172.20.0.102:80";
const IPIP6: &str = "[fd00:20::102]:80";
const IPIP46: &str = "172.20.0.103:80";
const GUE4: &str = "172.20.0.104:80";
const GUE6: &str = "[fd00:20::104]:80";
const GUE46: &str = "172.20.0.105:80";
const GUE_DNS: &str = "172.20.0.104:53";

/// Encapsulating services of every kind over the test network's servers, outer sources
/// from two prefixes; `gue_port` not the default, so the test sees it is the configured one.
const CONFIG: &str = r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
snat_ipv6 = "fd00:20::10"
flow_table_size = 4096
encap_source_ipv4 = "172.31.0.0/16"
encap_source_ipv6 = "fd00:31::/64"
gue_port = 7777

[[service]]
name = "ipip4"
vip = "172.20.0.102:80"
forwarding = "ipip"
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.12:80"

[[service]]
name = "ipip6"
vip = "[fd00:20::102]:80"
forwarding = "ipip"
[[service.backend]]
address = "[fd00:20::11]:80"
[[service.backend]]
address = "[fd00:20::12]:80"

[[service]]
name = "ipip46"
vip = "172.20.0.103:80"
forwarding = "ipip"
[[service.backend]]
address = "[fd00:20::13]:80"

[[service]]
name = "gue4"
vip = "172.20.0.104:80"
forwarding = "gue"
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.12:80"
[[service.backend]]
address = "172.20.0.13:80"

[[service]]
name = "gue6"
vip = "[fd00:20::104]:80"
forwarding = "gue"
[[service.backend]]
address = "[fd00:20::11]:80"
[[service.backend]]
address = "[fd00:20::13]:80"

[[service]]
name = "gue46"
vip = "172.20.0.105:80"
forwarding = "gue"
[[service.backend]]
address = "[fd00:20::12]:80"

[[service]]
name = "gue-dns"
vip = "172.20.0.104:53"
protocol = "udp"
forwarding = "gue"
[[service.backend]]
address = "172.20.0.11:53"
[[service.backend]]
address = "172.20.0.12:53"
"#;

/// The outer headers' settings a test expects.
struct Outer {
    v4_prefix: (Ipv4Addr, u8),
    v6_prefix: (Ipv6Addr, u8),
    gue_port: u16,
}

const CONFIGURED: Outer = Outer {
    v4_prefix: (Ipv4Addr::new(172, 31, 0, 0), 16),
    v6_prefix: (Ipv6Addr::new(0xfd00, 0x31, 0, 0, 0, 0, 0, 0), 64),
    gue_port: 7777,
};

/// The flow hash of a client packet (the data path's, from lb-common: what Maglev and the
/// flow table use too; the encapsulation rules on top of it are spelt out below).
fn hash_of(p: &Pkt) -> u32 {
    let (src, _) = ip_words(p.src.ip());
    let (dst, _) = ip_words(p.dst.ip());
    flow_hash(&src, &dst, port_be(p.src.port()), port_be(p.dst.port()), p.proto)
}

/// The host bits of a prefix filled from the hash (IPv6: only the last 32 bits take it).
fn spread(prefix: IpAddr, len: u8, hash: u32) -> IpAddr {
    match prefix {
        IpAddr::V4(net) => {
            let mask = if len >= 32 { 0 } else { u32::MAX >> len };
            IpAddr::V4(Ipv4Addr::from((u32::from(net) & !mask) | (hash & mask)))
        }
        IpAddr::V6(net) => {
            let host_bits = 128 - len as u32;
            let mask: u128 = if host_bits >= 32 { 0xffff_ffff } else { (1u128 << host_bits) - 1 };
            IpAddr::V6(Ipv6Addr::from((u128::from(net) & !mask) | (hash as u128 & mask)))
        }
    }
}

/// GUE's UDP source port: the hash folded to 16 bits, in 49152-65535.
fn gue_sport(hash: u32) -> u16 {
    0xc000 | (((hash ^ (hash >> 16)) as u16) & 0x3fff)
}

/// The frame `input` must leave as, encapsulated (`gue` or ipip) for `backend`.
fn encapsulated(input: &Pkt, backend: SocketAddr, gue: bool, o: &Outer) -> Vec<u8> {
    let inner = input.ip_packet();
    let hash = hash_of(input);
    let inner_v4 = input.src.is_ipv4();
    let inner_proto = if inner_v4 { 4 } else { 41 };
    // The inner TOS / traffic class, copied.
    let class = if inner_v4 { inner[1] } else { (inner[0] << 4) | (inner[1] >> 4) };
    let mut payload = Vec::new();
    if gue {
        payload.extend_from_slice(&gue_sport(hash).to_be_bytes());
        payload.extend_from_slice(&o.gue_port.to_be_bytes());
        payload.extend_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
    }
    payload.extend_from_slice(&inner);
    let proto = if gue { 17 } else { inner_proto };
    let mut f = Vec::new();
    f.extend_from_slice(&mac_of(backend.ip()));
    f.extend_from_slice(&LB_MAC);
    if let Some(tag) = input.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tag.to_be_bytes());
    }
    match backend.ip() {
        IpAddr::V4(dst) => {
            let IpAddr::V4(src) = spread(IpAddr::V4(o.v4_prefix.0), o.v4_prefix.1, hash) else { unreachable!() };
            let total = (20 + payload.len()) as u16;
            let mut ip = vec![0x45, class];
            ip.extend_from_slice(&total.to_be_bytes());
            // id 0, DF, TTL 64
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&dst.octets());
            let c = checksum(&ip, 0);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&ip);
        }
        IpAddr::V6(dst) => {
            let IpAddr::V6(src) = spread(IpAddr::V6(o.v6_prefix.0), o.v6_prefix.1, hash) else { unreachable!() };
            let first = (6u32 << 28) | ((class as u32) << 20) | (hash & 0xfffff);
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&first.to_be_bytes());
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
        }
    }
    f.extend_from_slice(&payload);
    f
}

/// Send `input` and compare with the frame its flow's backend must get.
fn check(h: &Harness, input: &Pkt, gue: bool, what: &str) -> SocketAddr {
    let (backend, _) = h.expected(input.src, input.dst, input.proto);
    assert_frame(h.run(&input.bytes()), XDP_TX, &encapsulated(input, backend, gue, &CONFIGURED), what);
    backend
}

fn with_payload(mut p: Pkt, n: usize) -> Pkt {
    p.payload = (0..n).map(|i| i as u8).collect();
    p
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipip_carries_ipv4_in_ipv4_byte_for_byte() {
    let h = Harness::new(CONFIG);
    check(&h, &Pkt::tcp(CLIENT, IPIP4, SYN), false, "ipip SYN");
    check(&h, &with_payload(Pkt::tcp(CLIENT, IPIP4, ACK), 300), false, "ipip data");
    let b = lb_xdp::inspect::backends(h.maps()).unwrap();
    assert_eq!(b.iter().map(|r| r.packets).sum::<u64>(), 2, "both counted as forwarded");
    assert_eq!(b.iter().map(|r| r.new_flows).sum::<u64>(), 1, "one new flow");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipip_carries_ipv6_in_ipv6_byte_for_byte() {
    let h = Harness::new(CONFIG);
    check(&h, &Pkt::tcp(CLIENT6, IPIP6, SYN), false, "ipip6 SYN");
    check(&h, &with_payload(Pkt::tcp(CLIENT6, IPIP6, ACK), 500), false, "ipip6 data");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipip_carries_ipv4_in_ipv6_to_an_ipv6_backend() {
    let h = Harness::new(CONFIG);
    let backend = check(&h, &Pkt::tcp(CLIENT, IPIP46, SYN), false, "4-in-6 SYN");
    assert!(backend.is_ipv6());
    check(&h, &with_payload(Pkt::tcp(CLIENT, IPIP46, ACK), 100), false, "4-in-6 data");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn gue_carries_the_packet_after_a_udp_header_to_the_configured_port() {
    let h = Harness::new(CONFIG);
    check(&h, &Pkt::tcp(CLIENT, GUE4, SYN), true, "gue4 SYN");
    check(&h, &with_payload(Pkt::tcp(CLIENT, GUE4, ACK), 200), true, "gue4 data");
    check(&h, &Pkt::tcp(CLIENT6, GUE6, SYN), true, "gue6 SYN");
    check(&h, &with_payload(Pkt::tcp(CLIENT6, GUE6, ACK), 200), true, "gue6 data");
    let backend = check(&h, &Pkt::tcp(CLIENT, GUE46, SYN), true, "gue 4-in-6 SYN");
    assert!(backend.is_ipv6());
    check(&h, &Pkt::udp(CLIENT, GUE_DNS), true, "gue UDP");
    let mut bare = Pkt::udp("172.20.0.2:40001", GUE_DNS);
    bare.udp_no_checksum = true;
    check(&h, &bare, true, "gue UDP without a checksum");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn dscp_and_a_vlan_tag_survive_the_tunnel() {
    let h = Harness::new(CONFIG);
    // TOS 0xb8 (EF) on IPv4, traffic class 0xb8 on IPv6, patched into builder frames with
    // the IPv4 checksum recomputed from scratch.
    let mut p = Pkt::tcp(CLIENT, GUE4, SYN);
    p.vlan = Some(7);
    let mut frame = p.bytes();
    frame[18 + 1] = 0xb8;
    frame[18 + 10..18 + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&frame[18..38], 0);
    frame[18 + 10..18 + 12].copy_from_slice(&c.to_be_bytes());
    let (backend, _) = h.expected(p.src, p.dst, p.proto);
    let mut want = encapsulated(&p, backend, true, &CONFIGURED);
    // The expected frame from the unpatched packet, patched the same way: inner at 18 + 28.
    want[18 + 1] = 0xb8;
    let outer_c = {
        let mut ip = want[18..38].to_vec();
        ip[10] = 0;
        ip[11] = 0;
        checksum(&ip, 0)
    };
    want[18 + 10..18 + 12].copy_from_slice(&outer_c.to_be_bytes());
    want[18 + 28..].copy_from_slice(&frame[18..]);
    assert_frame(h.run(&frame), XDP_TX, &want, "TOS + VLAN");

    let p6 = Pkt::tcp(CLIENT6, IPIP6, SYN);
    let mut frame6 = p6.bytes();
    frame6[14] = 0x6b;
    frame6[15] = 0x80;
    let (backend6, _) = h.expected(p6.src, p6.dst, p6.proto);
    let mut want6 = encapsulated(&p6, backend6, false, &CONFIGURED);
    want6[14] = 0x6b;
    want6[15] = (want6[15] & 0x0f) | 0x80;
    want6[14 + 40..].copy_from_slice(&frame6[14..]);
    assert_frame(h.run(&frame6), XDP_TX, &want6, "traffic class");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn an_established_flow_keeps_its_backend_when_the_table_changes() {
    let mut h = Harness::new(CONFIG);
    // Open flows from many clients, then add a backend: some clients' table slots move to
    // it, and their flows must stay where they are.
    let clients: Vec<String> = (0..64).map(|i| format!("172.20.0.2:{}", 41000 + i)).collect();
    let mut first = Vec::new();
    for c in &clients {
        first.push(check(&h, &Pkt::tcp(c, IPIP4, SYN), false, "SYN"));
    }
    h.reload(&CONFIG.replace(
        "name = \"ipip4\"\nvip = \"172.20.0.102:80\"\nforwarding = \"ipip\"\n",
        "name = \"ipip4\"\nvip = \"172.20.0.102:80\"\nforwarding = \"ipip\"\n[[service.backend]]\naddress = \"172.20.0.13:80\"\n",
    ));
    let mut moved = 0;
    for (c, backend) in clients.iter().zip(&first) {
        let ack = Pkt::tcp(c, IPIP4, ACK);
        let (now_expected, _) = h.expected(ack.src, ack.dst, ack.proto);
        moved += (now_expected != *backend) as u32;
        assert_frame(h.run(&ack.bytes()), XDP_TX, &encapsulated(&ack, *backend, false, &CONFIGURED), c);
    }
    assert!(moved > 0, "the new backend took some table slots (else this test proves nothing)");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn outer_sources_spread_within_the_configured_prefix() {
    let h = Harness::new(CONFIG);
    let mut sources = std::collections::BTreeSet::new();
    let mut ports = std::collections::BTreeSet::new();
    for i in 0..200u32 {
        let client = format!("10.{}.{}.{}:{}", i % 7, i % 251, i % 253, 40000 + i);
        let syn = Pkt::tcp(&client, GUE4, SYN);
        check(&h, &syn, true, &client);
        let (_, out) = h.run(&Pkt::tcp(&client, GUE4, ACK).bytes());
        let src = Ipv4Addr::new(out[26], out[27], out[28], out[29]);
        assert_eq!(&src.octets()[..2], &[172, 31], "{src} outside 172.31.0.0/16");
        sources.insert(src);
        ports.insert(u16::from_be_bytes([out[34], out[35]]));
    }
    assert!(sources.len() > 190, "{} distinct outer sources for 200 flows", sources.len());
    assert!(ports.len() > 190, "{} distinct GUE source ports for 200 flows", ports.len());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn without_encap_source_the_outer_source_is_the_snat_address() {
    let config = CONFIG
        .replace("encap_source_ipv4 = \"172.31.0.0/16\"\n", "")
        .replace("encap_source_ipv6 = \"fd00:31::/64\"\n", "")
        .replace("gue_port = 7777\n", "");
    let h = Harness::new(&config);
    let o = Outer {
        v4_prefix: (Ipv4Addr::new(172, 20, 0, 10), 32),
        v6_prefix: ("fd00:20::10".parse().unwrap(), 128),
        gue_port: 6080,
    };
    for (client, vip, gue) in [(CLIENT, GUE4, true), (CLIENT6, IPIP6, false), (CLIENT, GUE46, true)] {
        let syn = Pkt::tcp(client, vip, SYN);
        let (backend, _) = h.expected(syn.src, syn.dst, syn.proto);
        assert_frame(h.run(&syn.bytes()), XDP_TX, &encapsulated(&syn, backend, gue, &o), vip);
    }
}

/// Every prefix of a valid frame, and frames with single bytes changed: never ABORTED, and
/// a frame cut inside its headers is never forwarded.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn truncated_and_mutated_frames_never_abort() {
    let h = Harness::new(CONFIG);
    for (client, vip) in [(CLIENT, GUE4), (CLIENT6, IPIP6), (CLIENT, IPIP46), (CLIENT6, GUE6)] {
        let whole = with_payload(Pkt::tcp(client, vip, ACK), 64).bytes();
        let headers = if client == CLIENT { 14 + 20 + 20 } else { 14 + 40 + 20 };
        for len in 14..whole.len() {
            let (action, _) = h.run(&whole[..len]);
            assert_ne!(action, XDP_ABORTED, "{vip} cut to {len}");
            if len < headers {
                assert_ne!(action, XDP_TX, "{vip} cut to {len} inside its headers was forwarded");
            }
        }
        // A deterministic walk of single-byte changes over the headers and some payload.
        let mut x: u32 = 0x1234_5678;
        for i in 0..400 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut frame = whole.clone();
            let at = (x as usize) % (headers + 16);
            frame[at] ^= (x >> 24) as u8 | 1;
            let (action, out) = h.run(&frame);
            assert_ne!(action, XDP_ABORTED, "{vip} mutation {i} at {at}");
            if action == XDP_TX {
                assert!(out.len() >= frame.len(), "{vip} mutation {i}: a forwarded frame only grows");
            }
        }
    }
    assert_eq!(h.action_count(XDP_ABORTED), 0);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn backends_without_a_resolved_next_hop_give_a_counted_drop_not_a_frame() {
    let mut facts = test_facts();
    facts.neighbours.remove(&"172.20.0.11".parse::<IpAddr>().unwrap());
    facts.neighbours.remove(&"172.20.0.12".parse::<IpAddr>().unwrap());
    let h = Harness::with_facts(CONFIG, facts);
    let syn = Pkt::tcp(CLIENT, IPIP4, SYN).bytes();
    assert_eq!(h.run(&syn).0, XDP_DROP);
    // Unresolved backends stay out of the table until they are resolved.
    assert_eq!(h.drops(DropReason::NoBackend), 1);
}

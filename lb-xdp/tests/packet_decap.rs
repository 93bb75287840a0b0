//! `lb decap`'s XDP program through BPF_PROG_TEST_RUN: each kind of tunnel (IPIP 4-in-4,
//! 4-in-6, 6-in-6, GUE over IPv4 and IPv6 carrying either family) comes out as the inner
//! packet, byte for byte, behind the same MACs with the inner Ethernet type; packets not for
//! a decap address, not tunnels, or of a kind the program does not strip pass untouched;
//! truncated or inconsistent tunnels are dropped and counted. Outer headers are built here
//! from scratch (checksums by RFC 1071 in the testkit), not with lb-common's `encap`. Root
//! only, like the other packet fixtures: `cargo xtask test` runs them.
use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use lb_common::tunnel::DecapOutcome;
use lb_xdp::testkit::harness::{require_root, XDP_DROP, XDP_PASS};
use lb_xdp::testkit::packet::{checksum, Pkt, SYN};
use lb_xdp::tunnel::decap::Decap;

const ME_V4: &str = "10.70.0.2";
const ME_V6: &str = "fd00:70::2";
const LB_V4: [u8; 4] = [10, 70, 0, 1];
const LB_V6: [u8; 16] = [0xfd, 0, 0, 0x70, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const GUE_PORT: u16 = 6080;
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const XDP_ABORTED: u32 = 0;

fn octets4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn octets6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// The client's packet as the balancer sends it, inner IP header first.
fn inner_v4() -> Vec<u8> {
    Pkt::tcp("198.51.100.7:40000", "10.99.0.10:80", SYN).ip_packet()
}

fn inner_v6() -> Vec<u8> {
    Pkt::tcp("[2001:db8::7]:40000", "[fd00:99::10]:80", SYN).ip_packet()
}

fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = DST_MAC.to_vec();
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn outer_v4(dst: [u8; 4], proto: u8, payload_len: usize) -> Vec<u8> {
    let len = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&LB_V4);
    h.extend_from_slice(&dst);
    let c = checksum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn outer_v6(dst: [u8; 16], next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&LB_V6);
    h.extend_from_slice(&dst);
    h
}

fn udp(dport: u16, payload_len: usize) -> Vec<u8> {
    let mut h = 50_000u16.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

/// A whole frame: Ethernet, the outer header(s), the inner packet.
fn frame(outer_v6_frame: bool, headers: &[Vec<u8>], inner: &[u8]) -> Vec<u8> {
    let mut f = eth(if outer_v6_frame { 0x86dd } else { 0x0800 });
    for h in headers {
        f.extend_from_slice(h);
    }
    f.extend_from_slice(inner);
    f
}

fn ipip4(inner: &[u8], proto: u8) -> Vec<u8> {
    frame(false, &[outer_v4(octets4(ME_V4), proto, inner.len())], inner)
}

fn ipip6(inner: &[u8], next: u8) -> Vec<u8> {
    frame(true, &[outer_v6(octets6(ME_V6), next, inner.len())], inner)
}

fn gue4(inner: &[u8], port: u16) -> Vec<u8> {
    frame(false, &[outer_v4(octets4(ME_V4), 17, 8 + inner.len()), udp(port, inner.len())], inner)
}

fn gue6(inner: &[u8]) -> Vec<u8> {
    frame(true, &[outer_v6(octets6(ME_V6), 17, 8 + inner.len()), udp(GUE_PORT, inner.len())], inner)
}

/// What should come out: the same MACs, the inner family's type, the inner packet.
fn stripped(inner: &[u8]) -> Vec<u8> {
    let mut f = eth(if inner[0] >> 4 == 6 { 0x86dd } else { 0x0800 });
    f.extend_from_slice(inner);
    f
}

fn decap() -> Decap {
    require_root();
    let addrs: Vec<IpAddr> = vec![ME_V4.parse().unwrap(), ME_V6.parse().unwrap()];
    Decap::load(&addrs, GUE_PORT).expect("load the decap program")
}

fn run(d: &mut Decap, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let r = d
        .program()
        .unwrap()
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

fn count(d: &Decap, o: DecapOutcome) -> u64 {
    d.counts().unwrap()[o as usize]
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn every_tunnel_kind_comes_out_as_the_inner_packet_byte_for_byte() {
    let mut d = decap();
    let cases = [
        ("ipip 4-in-4", ipip4(&inner_v4(), 4), inner_v4(), DecapOutcome::IpipV4),
        ("ipip 6-in-4", ipip4(&inner_v6(), 41), inner_v6(), DecapOutcome::IpipV6),
        ("ipip 4-in-6", ipip6(&inner_v4(), 4), inner_v4(), DecapOutcome::IpipV4),
        ("ipip 6-in-6", ipip6(&inner_v6(), 41), inner_v6(), DecapOutcome::IpipV6),
        ("gue v4 in v4", gue4(&inner_v4(), GUE_PORT), inner_v4(), DecapOutcome::GueV4),
        ("gue v6 in v4", gue4(&inner_v6(), GUE_PORT), inner_v6(), DecapOutcome::GueV6),
        ("gue v4 in v6", gue6(&inner_v4()), inner_v4(), DecapOutcome::GueV4),
        ("gue v6 in v6", gue6(&inner_v6()), inner_v6(), DecapOutcome::GueV6),
    ];
    for (what, input, inner, outcome) in cases {
        let before = count(&d, outcome);
        let (action, out) = run(&mut d, &input);
        assert_eq!(action, XDP_PASS, "{what}");
        assert_eq!(out, stripped(&inner), "{what}: the inner packet behind the same MACs");
        assert_eq!(count(&d, outcome), before + 1, "{what}: counted as {}", outcome.name());
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn what_is_not_a_tunnel_to_us_passes_untouched() {
    let mut d = decap();
    let inner = inner_v4();
    let mut to_other = ipip4(&inner, 4);
    // Another host's address (checksum fixed up: only the destination differs).
    to_other[14 + 16..14 + 20].copy_from_slice(&[10, 70, 0, 3]);
    to_other[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&to_other[14..34], 0);
    to_other[24..26].copy_from_slice(&c.to_be_bytes());
    let plain_tcp = Pkt::tcp("10.70.0.1:40000", &format!("{ME_V4}:80"), SYN).bytes();
    let other_udp = gue4(&inner, 53);
    let arp = {
        let mut f = eth(0x0806);
        f.extend_from_slice(&[0u8; 28]);
        f
    };
    for (what, input) in
        [("to another address", to_other), ("plain TCP", plain_tcp), ("UDP to another port", other_udp), ("ARP", arp)]
    {
        let before = count(&d, DecapOutcome::NotTunnel);
        let (action, out) = run(&mut d, &input);
        assert_eq!((action, &out), (XDP_PASS, &input), "{what}");
        assert_eq!(count(&d, DecapOutcome::NotTunnel), before + 1, "{what}");
    }
    // Tunnels it does not strip: outer options, an outer fragment, GUE variant 0.
    let mut options = vec![0x46, 0, 0, 0, 0, 0, 0x40, 0, 64, 4, 0, 0];
    options[2..4].copy_from_slice(&((24 + inner.len()) as u16).to_be_bytes());
    options.extend_from_slice(&LB_V4);
    options.extend_from_slice(&octets4(ME_V4));
    options.extend_from_slice(&[1, 1, 1, 0]);
    let c = checksum(&options, 0);
    options[10..12].copy_from_slice(&c.to_be_bytes());
    let with_options = frame(false, &[options], &inner);
    let mut fragment = ipip4(&inner, 4);
    fragment[14 + 6] = 0x20; // MF
    fragment[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&fragment[14..34], 0);
    fragment[24..26].copy_from_slice(&c.to_be_bytes());
    let mut variant0 = inner.clone();
    variant0.splice(0..0, [0u8, 0, 0, 0]);
    let gue_v0 = gue4(&variant0, GUE_PORT);
    for (what, input) in [("outer options", with_options), ("outer fragment", fragment), ("GUE variant 0", gue_v0)] {
        let before = count(&d, DecapOutcome::Unsupported);
        let (action, out) = run(&mut d, &input);
        assert_eq!((action, &out), (XDP_PASS, &input), "{what}");
        assert_eq!(count(&d, DecapOutcome::Unsupported), before + 1, "{what}");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn truncated_or_inconsistent_tunnels_are_dropped_and_counted_never_aborted() {
    let mut d = decap();
    let inner = inner_v4();
    let whole = ipip4(&inner, 4);
    let mut bad_checksum = whole.clone();
    bad_checksum[24] ^= 0xff;
    let wrong_version = ipip4(&inner_v6(), 4);
    let mut too_long = whole.clone();
    too_long[16..18].copy_from_slice(&((20 + inner.len() + 100) as u16).to_be_bytes());
    let c = {
        too_long[24..26].copy_from_slice(&[0, 0]);
        checksum(&too_long[14..34], 0)
    };
    too_long[24..26].copy_from_slice(&c.to_be_bytes());
    let mut bad_udp_len = gue6(&inner);
    bad_udp_len[14 + 40 + 4..14 + 40 + 6].copy_from_slice(&4u16.to_be_bytes());
    let cases = [
        ("bad outer checksum", bad_checksum),
        ("IPv6 inside protocol 4", wrong_version),
        ("outer length beyond the frame", too_long),
        ("GUE UDP length below its header", bad_udp_len),
        ("IPIP cut inside the inner header", whole[..14 + 20 + 10].to_vec()),
        ("IPIP whose inner header is short", ipip4(&inner[..10], 4)),
        ("GUE cut right after UDP", gue4(&inner, GUE_PORT)[..14 + 28].to_vec()),
    ];
    for (what, input) in cases {
        let before = count(&d, DecapOutcome::Malformed);
        let (action, _) = run(&mut d, &input);
        assert_eq!(action, XDP_DROP, "{what}");
        assert_eq!(count(&d, DecapOutcome::Malformed), before + 1, "{what}");
    }
    // Every prefix of every kind (BPF_PROG_TEST_RUN takes no XDP frame shorter than an
    // Ethernet header): a defined action, never XDP_ABORTED.
    for input in [whole, ipip6(&inner_v6(), 41), gue4(&inner, GUE_PORT), gue6(&inner_v6())] {
        for len in 14..input.len() {
            let (action, _) = run(&mut d, &input[..len]);
            assert!(action == XDP_PASS || action == XDP_DROP, "prefix {len}: action {action}");
            assert_ne!(action, XDP_ABORTED);
        }
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn gue_port_zero_turns_gue_off() {
    require_root();
    let mut d = Decap::load(&[ME_V4.parse().unwrap()], 0).unwrap();
    let input = gue4(&inner_v4(), GUE_PORT);
    let (action, out) = run(&mut d, &input);
    assert_eq!((action, out), (XDP_PASS, input));
    assert_eq!(count(&d, DecapOutcome::NotTunnel), 1);
    // IPIP still works.
    let (action, out) = run(&mut d, &ipip4(&inner_v4(), 4));
    assert_eq!((action, out), (XDP_PASS, stripped(&inner_v4())));
}

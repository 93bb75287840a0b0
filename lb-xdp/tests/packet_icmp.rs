//! ICMP fixtures: errors about a flow reach the party that owns it (translated in nat mode,
//! forwarded by MAC in dsr mode); any other ICMP reaches the kernel byte for byte. Expected
//! frames are built from scratch (checksums by RFC 1071), never by the data path's
//! arithmetic. Root only, like the other packet fixtures: `cargo xtask test` runs them.

use lb_common::reason::DropReason;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const CLIENT: &str = "172.20.0.2:40000";
const CLIENT6: &str = "[fd00:20::2]:40000";
const WEB: &str = "172.20.0.100:80";
const WEB6: &str = "[fd00:20::100]:80";
const DNS: &str = "172.20.0.100:53";

// (type, code)
const PORT_UNREACHABLE: (u8, u8) = (3, 3);
const FRAG_NEEDED: (u8, u8) = (3, 4);
const TIME_EXCEEDED: (u8, u8) = (11, 0);
const ECHO_REQUEST: (u8, u8) = (8, 0);
const ECHO_REPLY: (u8, u8) = (0, 0);
const V6_PACKET_TOO_BIG: (u8, u8) = (2, 0);
const V6_ECHO_REQUEST: (u8, u8) = (128, 0);

const XDP_ABORTED: u32 = 0;

/// The header's last four bytes of fragmentation needed / packet too big: the MTU.
fn mtu(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

fn error(src: &str, dst: &str, (kind, code): (u8, u8), rest: [u8; 4], quoted: &[u8]) -> IcmpPkt {
    IcmpPkt::new(src, dst, kind, code, rest, quoted)
}

fn ip(a: std::net::SocketAddr) -> String {
    a.ip().to_string()
}

fn backend_packets(h: &Harness) -> u64 {
    lb_xdp::inspect::backends(h.maps()).unwrap().iter().map(|r| r.packets).sum()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn udp_port_unreachable_from_a_nat_backend_reaches_the_client_from_the_vip() {
    let h = Harness::new(CONFIG);
    let query = Pkt::udp(CLIENT, DNS);
    let (sent, backend, _) = natted(&query, &h);
    assert_eq!(h.run(&query.bytes()).0, XDP_TX);
    // The backend has nothing on port 53 and says so about the packet we sent it.
    let err = error(&ip(backend), "172.20.0.10", PORT_UNREACHABLE, [0; 4], &sent.ip_packet())
        .macs(mac_of(backend.ip()), LB_MAC);
    // The client must see it from the VIP, quoting its own query: its socket finds it so.
    let want =
        error("172.20.0.100", "172.20.0.2", PORT_UNREACHABLE, [0; 4], &query.ip_packet()).macs(LB_MAC, CLIENT_MAC);
    assert_frame(h.run(&err.bytes()), XDP_TX, &want.bytes(), "port unreachable");
    assert_eq!(backend_packets(&h), 2, "the error counts as a packet of the flow's backend");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn fragmentation_needed_about_a_nat_tcp_flow_reaches_the_client_with_short_and_long_quotes() {
    let h = Harness::new(CONFIG);
    assert_eq!(h.run(&Pkt::tcp(CLIENT, WEB, SYN).bytes()).0, XDP_TX);
    let mut data = Pkt::tcp(CLIENT, WEB, ACK);
    data.payload = vec![b'x'; 1400];
    let (sent, _, _) = natted(&data, &h);
    assert_eq!(h.run(&data.bytes()).0, XDP_TX);
    // A router between the LB and the backend: RFC 792 quotes 8 bytes of TCP (the
    // checksum is not among them), Linux up to 576 bytes in all (the checksum is).
    for quote_len in [28, 548] {
        let err = error("172.20.0.254", "172.20.0.10", FRAG_NEEDED, mtu(1300), &sent.ip_packet()[..quote_len]);
        let want = error("172.20.0.100", "172.20.0.2", FRAG_NEEDED, mtu(1300), &data.ip_packet()[..quote_len])
            .macs(LB_MAC, CLIENT_MAC);
        assert_frame(h.run(&err.bytes()), XDP_TX, &want.bytes(), &format!("frag needed, {quote_len}-byte quote"));
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn errors_from_the_client_side_about_nat_replies_reach_the_backend_from_the_snat_address() {
    let h = Harness::new(CONFIG);
    // The seed's service on the LB's own address: a VIP on the SNAT address itself.
    let seed = "172.20.0.10:8080";
    for (vip, proto, kind, rest) in
        [(WEB, TCP, FRAG_NEEDED, mtu(1400)), (DNS, UDP, PORT_UNREACHABLE, [0; 4]), (seed, TCP, TIME_EXCEEDED, [0; 4])]
    {
        let first = if proto == TCP { Pkt::tcp(CLIENT, vip, SYN) } else { Pkt::udp(CLIENT, vip) };
        let (_, backend, port) = natted(&first, &h);
        assert_eq!(h.run(&first.bytes()).0, XDP_TX);
        let reply = reply_from(backend, &format!("172.20.0.10:{port}"), proto);
        let (action, translated) = h.run(&reply.bytes());
        assert_eq!(action, XDP_TX);
        // The client (or a router near it) objects to the reply it got from the VIP.
        let vip_ip = ip(vip.parse().unwrap());
        let err = error("172.20.0.2", &vip_ip, kind, rest, &translated[14..]);
        let want =
            error("172.20.0.10", &ip(backend), kind, rest, &reply.ip_packet()).macs(LB_MAC, mac_of(backend.ip()));
        assert_frame(h.run(&err.bytes()), XDP_TX, &want.bytes(), &format!("{vip}: error to the backend"));
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipv6_packet_too_big_is_translated_both_ways() {
    let h = Harness::new(CONFIG);
    let syn = Pkt::tcp(CLIENT6, WEB6, SYN);
    let (sent, backend, port) = natted(&syn, &h);
    assert_eq!(h.run(&syn.bytes()).0, XDP_TX);

    let err = error("fd00:20::fe", "fd00:20::10", V6_PACKET_TOO_BIG, mtu(1280), &sent.ip_packet())
        .macs(mac_of(backend.ip()), LB_MAC);
    let want =
        error("fd00:20::100", "fd00:20::2", V6_PACKET_TOO_BIG, mtu(1280), &syn.ip_packet()).macs(LB_MAC, CLIENT_MAC);
    assert_frame(h.run(&err.bytes()), XDP_TX, &want.bytes(), "backend side");

    let reply = reply_from(backend, &format!("[fd00:20::10]:{port}"), TCP);
    let (action, translated) = h.run(&reply.bytes());
    assert_eq!(action, XDP_TX);
    let err = error("fd00:20::2", "fd00:20::100", V6_PACKET_TOO_BIG, mtu(1280), &translated[14..]);
    let want = error("fd00:20::10", &ip(backend), V6_PACKET_TOO_BIG, mtu(1280), &reply.ip_packet())
        .macs(LB_MAC, mac_of(backend.ip()));
    assert_frame(h.run(&err.bytes()), XDP_TX, &want.bytes(), "client side");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn dsr_errors_about_a_flow_go_to_its_backend_with_only_the_macs_changed() {
    let h = Harness::new(CONFIG);
    for (client, vip, router, kind) in [
        (CLIENT, "172.20.0.101:80", "172.20.0.254", FRAG_NEEDED),
        (CLIENT6, "[fd00:20::101]:80", "fd00:20::fe", V6_PACKET_TOO_BIG),
    ] {
        let syn = Pkt::tcp(client, vip, SYN);
        let (backend, _) = h.expected(syn.src, syn.dst, TCP);
        assert_eq!(h.run(&syn.bytes()).0, XDP_TX);
        // The backend answers from the VIP itself; a router towards the client objects.
        let answer = Pkt::tcp(vip, client, SYN | ACK);
        let err = error(router, &ip(syn.dst), kind, mtu(1280), &answer.ip_packet());
        let want = err.clone().macs(LB_MAC, mac_of(backend.ip()));
        assert_frame(h.run(&err.bytes()), XDP_TX, &want.bytes(), &format!("dsr {vip}"));
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn echo_and_other_non_error_icmp_pass_untouched() {
    let h = Harness::new(CONFIG);
    // A flow, so that a lookup by mistake would have something to find.
    assert_eq!(h.run(&Pkt::udp(CLIENT, DNS).bytes()).0, XDP_TX);
    let cases = [
        error("172.20.0.2", "172.20.0.100", ECHO_REQUEST, [0, 1, 0, 1], b"ping to the VIP"),
        error("172.20.0.2", "172.20.0.10", ECHO_REQUEST, [0, 1, 0, 2], b"ping to the LB"),
        error("172.20.0.11", "172.20.0.10", ECHO_REPLY, [0, 1, 0, 3], b"pong from a backend"),
        error("fd00:20::2", "fd00:20::100", V6_ECHO_REQUEST, [0, 1, 0, 4], b"ping6 to the VIP"),
    ];
    for c in cases {
        let frame = c.bytes();
        assert_frame(h.run(&frame), XDP_PASS, &frame, &format!("{c:?}"));
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn errors_about_no_known_flow_pass_untouched() {
    let h = Harness::new(CONFIG);
    let q = Pkt::udp(CLIENT, DNS);
    let (sent, _, _) = natted(&q, &h);
    assert_eq!(h.run(&q.bytes()).0, XDP_TX);
    let mut with_options = Pkt::tcp("172.20.0.2:40007", WEB, SYN);
    with_options.ip_options = vec![1, 1, 1, 0];
    let (sent_with_options, _, _) = natted(&with_options, &h);
    assert_eq!(h.run(&with_options.bytes()).0, XDP_TX);
    let cases = [
        (
            "SNAT port with no NAT entry",
            error(
                "172.20.0.11",
                "172.20.0.10",
                PORT_UNREACHABLE,
                [0; 4],
                &Pkt::udp("172.20.0.10:20001", "172.20.0.11:53").ip_packet(),
            ),
        ),
        (
            "the LB's own connection (ephemeral port)",
            error(
                "172.20.0.11",
                "172.20.0.10",
                PORT_UNREACHABLE,
                [0; 4],
                &Pkt::tcp("172.20.0.10:45000", "172.20.0.11:80", SYN).ip_packet(),
            ),
        ),
        (
            "VIP reply of no flow",
            error(
                "172.20.0.2",
                "172.20.0.100",
                PORT_UNREACHABLE,
                [0; 4],
                &Pkt::udp(DNS, "172.20.0.2:49999").ip_packet(),
            ),
        ),
        (
            "VIP port of no service",
            error(
                "172.20.0.2",
                "172.20.0.100",
                PORT_UNREACHABLE,
                [0; 4],
                &Pkt::udp("172.20.0.100:54", CLIENT).ip_packet(),
            ),
        ),
        (
            "to an address that is not ours",
            error(
                "172.20.0.2",
                "172.20.0.11",
                PORT_UNREACHABLE,
                [0; 4],
                &Pkt::udp("172.20.0.11:53", CLIENT).ip_packet(),
            ),
        ),
        (
            "quote not sent by the error's addressee",
            error(
                "172.20.0.11",
                "172.20.0.10",
                PORT_UNREACHABLE,
                [0; 4],
                &Pkt::udp("172.20.0.99:20001", "172.20.0.11:53").ip_packet(),
            ),
        ),
        (
            "quote with IPv4 options (documented: left to the kernel)",
            error("172.20.0.254", "172.20.0.10", TIME_EXCEEDED, [0; 4], &sent_with_options.ip_packet()),
        ),
        (
            "quote of an ICMP message",
            error(
                "172.20.0.11",
                "172.20.0.10",
                PORT_UNREACHABLE,
                [0; 4],
                &error("172.20.0.10", "172.20.0.11", ECHO_REQUEST, [0; 4], b"x").bytes()[14..],
            ),
        ),
    ];
    for (what, c) in cases {
        let frame = c.bytes();
        assert_frame(h.run(&frame), XDP_PASS, &frame, what);
    }
    // The flow itself is fine: its own error is translated.
    let err = error("172.20.0.11", "172.20.0.10", PORT_UNREACHABLE, [0; 4], &sent.ip_packet());
    assert_eq!(h.run(&err.bytes()).0, XDP_TX);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn truncated_and_mangled_icmp_errors_never_abort() {
    let h = Harness::new(CONFIG);
    let q = Pkt::udp(CLIENT, DNS);
    let (sent, backend, port) = natted(&q, &h);
    assert_eq!(h.run(&q.bytes()).0, XDP_TX);
    let reply = reply_from(backend, &format!("172.20.0.10:{port}"), UDP);
    let (_, translated) = h.run(&reply.bytes());
    let to_snat = error(&ip(backend), "172.20.0.10", PORT_UNREACHABLE, [0; 4], &sent.ip_packet()).bytes();
    let to_vip = error("172.20.0.2", "172.20.0.100", PORT_UNREACHABLE, [0; 4], &translated[14..]).bytes();

    // Frames cut short: the IP length runs past the frame. To the SNAT address (the
    // host's) the kernel gets them untouched; to a VIP-only address they are a counted
    // drop, as any malformed packet for a VIP.
    for len in 14..to_snat.len() {
        let f = &to_snat[..len];
        assert_frame(h.run(f), XDP_PASS, f, &format!("to the SNAT address, cut at {len}"));
    }
    let before = h.drops(DropReason::Truncated);
    for len in 14 + 20..to_vip.len() {
        assert_eq!(h.run(&to_vip[..len]).0, XDP_DROP, "to the VIP, cut at {len}");
    }
    assert_eq!(h.drops(DropReason::Truncated), before + (to_vip.len() - 34) as u64);

    // Consistent lengths, but the quote stops before the ports: untouched.
    for quote_len in [0, 10, 20, 22] {
        let f = error(&ip(backend), "172.20.0.10", PORT_UNREACHABLE, [0; 4], &sent.ip_packet()[..quote_len]).bytes();
        assert_frame(h.run(&f), XDP_PASS, &f, &format!("{quote_len}-byte quote"));
    }

    let mut seed = 0x0bad_cafe_1234_5678u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let bases = [to_snat, to_vip];
    for i in 0..3000 {
        let mut f = bases[i % 2].clone();
        for _ in 0..(next() % 4 + 1) {
            let at = 14 + (next() as usize) % (f.len() - 14);
            f[at] = next() as u8;
        }
        if next() % 2 == 0 {
            f.truncate(14 + (next() as usize) % (f.len() - 13));
        }
        let (action, _) = h.run(&f);
        assert!(matches!(action, XDP_DROP | XDP_PASS | XDP_TX), "frame {i}: action {action}");
    }
    assert_eq!(h.action_count(XDP_ABORTED), 0, "never XDP_ABORTED");
}

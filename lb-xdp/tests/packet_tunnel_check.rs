//! The tunnelled health checks' tc program through BPF_PROG_TEST_RUN: a packet whose mark
//! is in the table comes out encapsulated for its backend (IPIP or GUE, outer IPv4 or
//! IPv6, 4-in-6 too), the mark cleared, and is redirected (TC_ACT_REDIRECT); an unmarked
//! packet or a mark that is not ours is untouched and handed on (TC_ACT_UNSPEC); a mark of ours without an
//! entry, or a marked frame that is not IP, is dropped. Expected frames are built here from
//! scratch, not with lb-common's `encap`; the two fields that carry the flow hash (GUE's
//! source port, the IPv6 flow label) are checked for their range and then taken as sent.
//! Root only: `cargo xtask test` runs it.
use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use lb_common::tunnel::check_mark;
use lb_config::Forwarding;
use lb_control::tunnel_check::TunnelRoute;
use lb_xdp::testkit::harness::require_root;
use lb_xdp::testkit::packet::{checksum, Pkt, SYN};
use lb_xdp::tunnel::check::{Outer, TunnelChecks};

/// -1: the next program on the hook decides.
const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const GUE_PORT: u16 = 6081;
const SRC_V4: [u8; 4] = [10, 80, 0, 1];
const SRC_V6: [u8; 16] = [0xfd, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const BACKEND_V4: [u8; 4] = [10, 81, 0, 2];
const BACKEND_V6: [u8; 16] = [0xfd, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// __sk_buff's `mark` (after `len` and `pkt_type`).
const SKB_MARK_OFFSET: usize = 8;
/// At least sizeof(struct __sk_buff) (the kernel copies all of it back); the bytes past
/// it are zero, which the kernel accepts.
const SKB_CTX_LEN: usize = 256;

fn outer() -> Outer {
    Outer { source_v4: Some(SRC_V4.into()), source_v6: Some(SRC_V6.into()), gue_port: GUE_PORT }
}

fn route(slot: u16, backend: IpAddr, forwarding: Forwarding) -> TunnelRoute {
    TunnelRoute { mark: check_mark(slot), backend, forwarding }
}

/// Slots 1-5: ipip and gue to an IPv4 backend, ipip and gue to an IPv6 one (carrying
/// either family). Slot 9 is a mark of ours with no entry.
fn checks() -> TunnelChecks {
    require_root();
    let mut t = TunnelChecks::load().expect("load the tunnel check program");
    let v4 = IpAddr::from(BACKEND_V4);
    let v6 = IpAddr::from(BACKEND_V6);
    let routes = [
        route(1, v4, Forwarding::Ipip),
        route(2, v4, Forwarding::Gue),
        route(3, v6, Forwarding::Ipip),
        route(4, v6, Forwarding::Gue),
    ];
    t.set(&routes, &outer()).expect("write the mark table");
    t
}

/// The check's SYN to the VIP, as the socket sends it (tos 0x10 to see it copied).
fn check_v4() -> Vec<u8> {
    let mut f = Pkt::tcp("10.80.0.1:41000", "10.99.0.10:80", SYN).bytes();
    f[15] = 0x10;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&f[14..34], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

fn check_v6() -> Vec<u8> {
    Pkt::tcp("[fd00:80::1]:41000", "[fd00:99::10]:80", SYN).bytes()
}

/// Returns (action, frame out, mark after).
fn run(t: &mut TunnelChecks, frame: &[u8], mark: u32) -> (u32, Vec<u8>, u32) {
    let mut ctx = [0u8; SKB_CTX_LEN];
    ctx[SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4].copy_from_slice(&mark.to_ne_bytes());
    let mut ctx_out = [0u8; SKB_CTX_LEN];
    let mut out = vec![0u8; frame.len() + 256];
    let r = t
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ctx_out: Some(&mut ctx_out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    let mark_after = u32::from_ne_bytes(ctx_out[SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4].try_into().unwrap());
    (r.return_value, out, mark_after)
}

fn outer_v4(proto: u8, payload: usize, tos: u8) -> Vec<u8> {
    let mut h = vec![0x45, tos, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&SRC_V4);
    h.extend_from_slice(&BACKEND_V4);
    let c = checksum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// Traffic class and flow label taken as sent (see the module doc).
fn outer_v6(next: u8, payload: usize, first_word: [u8; 4]) -> Vec<u8> {
    let mut h = first_word.to_vec();
    h.extend_from_slice(&(payload as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&SRC_V6);
    h.extend_from_slice(&BACKEND_V6);
    h
}

fn udp(sport: [u8; 2], payload: usize) -> Vec<u8> {
    let mut h = sport.to_vec();
    h.extend_from_slice(&GUE_PORT.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

/// The input's MACs, the outer family's type, the outer headers, the input's IP packet.
fn encapsulated(input: &[u8], v6: bool, headers: &[Vec<u8>]) -> Vec<u8> {
    let mut f = input[..12].to_vec();
    f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    for h in headers {
        f.extend_from_slice(h);
    }
    f.extend_from_slice(&input[14..]);
    f
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn marked_checks_leave_encapsulated_for_their_backend() {
    let mut t = checks();
    let (v4, v6) = (check_v4(), check_v6());
    let (len4, len6) = (v4.len() - 14, v6.len() - 14);

    let (action, out, mark) = run(&mut t, &v4, check_mark(1));
    assert_eq!((action, mark), (TC_ACT_REDIRECT, 0), "ipip 4-in-4: redirected, mark cleared");
    assert_eq!(out, encapsulated(&v4, false, &[outer_v4(4, len4, 0x10)]), "ipip 4-in-4");

    let (action, out, _) = run(&mut t, &v4, check_mark(2));
    assert_eq!(action, TC_ACT_REDIRECT);
    let sport = [out[34], out[35]];
    assert!(u16::from_be_bytes(sport) >= 49_152, "GUE source port in the ephemeral range");
    assert_eq!(out, encapsulated(&v4, false, &[outer_v4(17, 8 + len4, 0x10), udp(sport, len4)]), "gue v4");

    let (action, out, _) = run(&mut t, &v4, check_mark(3));
    assert_eq!(action, TC_ACT_REDIRECT);
    let first = [out[14], out[15], out[16], out[17]];
    assert_eq!(first[0] >> 4, 6);
    assert_eq!(((first[0] & 0x0f) << 4) | (first[1] >> 4), 0x10, "traffic class from the inner tos");
    assert_eq!(out, encapsulated(&v4, true, &[outer_v6(4, len4, first)]), "ipip 4-in-6");

    let (action, out, _) = run(&mut t, &v6, check_mark(3));
    assert_eq!(action, TC_ACT_REDIRECT);
    let first = [out[14], out[15], out[16], out[17]];
    assert_eq!(out, encapsulated(&v6, true, &[outer_v6(41, len6, first)]), "ipip 6-in-6");

    let (action, out, _) = run(&mut t, &v6, check_mark(4));
    assert_eq!(action, TC_ACT_REDIRECT);
    let first = [out[14], out[15], out[16], out[17]];
    let sport = [out[54], out[55]];
    assert!(u16::from_be_bytes(sport) >= 49_152);
    assert_eq!(out, encapsulated(&v6, true, &[outer_v6(17, 8 + len6, first), udp(sport, len6)]), "gue 6-in-6");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn other_traffic_is_untouched_and_unknown_marks_of_ours_never_leave_bare() {
    let mut t = checks();
    let v4 = check_v4();
    for (what, mark) in [("unmarked", 0), ("another mark", 0x1234), ("a mark just outside our prefix", 0x4c43_0001)] {
        let (action, out, after) = run(&mut t, &v4, mark);
        assert_eq!((action, &out, after), (TC_ACT_UNSPEC, &v4, mark), "{what}");
    }
    let (action, _, _) = run(&mut t, &v4, check_mark(9));
    assert_eq!(action, TC_ACT_SHOT, "our mark without an entry");
    let mut arp = v4[..12].to_vec();
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let (action, _, _) = run(&mut t, &arp, check_mark(1));
    assert_eq!(action, TC_ACT_SHOT, "a marked frame that is not IP");
    // A route removed from the table: its mark is dropped from then on.
    t.set(&[route(2, IpAddr::from(BACKEND_V4), Forwarding::Gue)], &outer()).unwrap();
    assert_eq!(run(&mut t, &v4, check_mark(1)).0, TC_ACT_SHOT);
    assert_eq!(run(&mut t, &v4, check_mark(2)).0, TC_ACT_REDIRECT);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_backend_without_a_source_of_its_family_is_named() {
    require_root();
    let mut t = TunnelChecks::load().unwrap();
    let no_v6 = Outer { source_v6: None, ..outer() };
    let e = t.set(&[route(1, IpAddr::from(BACKEND_V6), Forwarding::Ipip)], &no_v6).unwrap_err();
    assert!(e.to_string().contains("fd00:81::2"), "{e}");
    assert_eq!(run(&mut t, &check_v6(), check_mark(1)).0, TC_ACT_SHOT);
}

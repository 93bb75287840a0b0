//! SNAT across reloads: a nat flow keeps its SNAT port for life, so a reload that changes
//! `snat_ports` must keep translating the replies of the flows that hold ports of the old
//! range, while new flows get ports of the new one.
//! Root only: `cargo xtask test` runs them (`--ignored`).

use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const VIP: &str = "172.20.0.100:80";

fn with_snat_ports(range: &str) -> String {
    CONFIG.replace("flow_table_size = 4096\n", &format!("flow_table_size = 4096\nsnat_ports = \"{range}\"\n"))
}

/// The SNAT port a natted frame leaves with (IPv4, no options: TCP source port at 34).
fn snat_port_of(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34], frame[35]])
}

/// A backend's reply to `port` on the SNAT address must come out as VIP → `client`.
fn assert_reply_translated(h: &Harness, backend: std::net::SocketAddr, port: u16, client: &str, what: &str) {
    let reply = reply_from(backend, &format!("172.20.0.10:{port}"), TCP);
    let mut want = reply.clone().addrs(VIP, client);
    want.src_mac = LB_MAC;
    want.dst_mac = CLIENT_MAC;
    assert_frame(h.run(&reply.bytes()), XDP_TX, &want.bytes(), what);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_nat_flow_keeps_its_replies_after_snat_ports_changes() {
    let mut h = Harness::new(&with_snat_ports("20000-20999"));
    let old_client = "172.20.0.2:40000";
    let syn = Pkt::tcp(old_client, VIP, SYN);
    let (want, old_backend, old_port) = natted(&syn, &h);
    assert!((20000..=20999).contains(&old_port), "the first flow's port {old_port} is from the first range");
    assert_frame(h.run(&syn.bytes()), XDP_TX, &want.bytes(), "SYN under the first range");
    assert_reply_translated(&h, old_backend, old_port, old_client, "reply under the first range");

    h.reload(&with_snat_ports("30000-30999"));

    // The live flow: its replies still come back, and its own packets keep their port.
    assert_reply_translated(&h, old_backend, old_port, old_client, "reply after the range changed");
    let (action, out) = h.run(&Pkt::tcp(old_client, VIP, ACK).bytes());
    assert_eq!((action, snat_port_of(&out)), (XDP_TX, old_port), "the live flow keeps its SNAT port");

    // A new flow gets a port of the new range, and its replies come back too.
    let new_client = "172.20.0.2:40001";
    let syn = Pkt::tcp(new_client, VIP, SYN);
    let (want, backend, new_port) = natted(&syn, &h);
    assert!((30000..=30999).contains(&new_port), "the new flow's port {new_port} is from the new range");
    assert_frame(h.run(&syn.bytes()), XDP_TX, &want.bytes(), "SYN under the new range");
    assert_reply_translated(&h, backend, new_port, new_client, "reply to the new flow");

    // An unrelated reload keeps the old range valid; ports in neither range stay the host's.
    h.reload(&with_snat_ports("30000-30999"));
    assert_reply_translated(&h, old_backend, old_port, old_client, "after another reload");
    let own = reply_from("172.20.0.11:80".parse().unwrap(), "172.20.0.10:25000", TCP);
    assert_frame(h.run(&own.bytes()), XDP_PASS, &own.bytes(), "a port in neither range");
}

//! NAT state across reloads: a nat flow keeps its SNAT port for life, so a reload that
//! changes `snat_ports` must keep translating the replies of the flows that hold ports of
//! the old range, while new flows get ports of the new one; and a flow whose backend was
//! retired is still shown with the address it went to (from its NAT entry).
//! Root only: `cargo xtask test` runs them (`--ignored`).

use lb_xdp::testkit::frame::source;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const VIP: &str = "172.20.0.100:80";

fn with_snat_ports(range: &str) -> String {
    CONFIG.replace("flow_table_size = 4096\n", &format!("flow_table_size = 4096\nsnat_ports = \"{range}\"\n"))
}

/// The SNAT port a natted frame leaves with.
fn snat_port_of(frame: &[u8]) -> u16 {
    source(frame).port()
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

/// The flow of `client`, as `lb list flows` shows it.
fn flow_of(h: &Harness, client: &str) -> lb_xdp::inspect::FlowRow {
    let flows = lb_xdp::inspect::flows(h.maps()).expect("flows");
    flows.into_iter().find(|f| f.client == client).unwrap_or_else(|| panic!("no flow of {client}"))
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn flows_of_a_retired_backend_show_where_they_went_and_that_it_is_retired() {
    let mut h = Harness::new(CONFIG);
    // A nat flow and a dsr flow, each to a backend that is then removed.
    let (nat_client, dsr_client, dsr_vip) = ("172.20.0.2:40000", "172.20.0.2:40001", "172.20.0.101:80");
    let (_, nat_backend, _) = natted(&Pkt::tcp(nat_client, VIP, SYN), &h);
    assert_eq!(h.run(&Pkt::tcp(nat_client, VIP, SYN).bytes()).0, XDP_TX);
    let (dsr_backend, _) = h.expected("172.20.0.2:40001".parse().unwrap(), dsr_vip.parse().unwrap(), TCP);
    assert_eq!(h.run(&Pkt::tcp(dsr_client, dsr_vip, SYN).bytes()).0, XDP_TX);
    let before = flow_of(&h, nat_client);
    assert_eq!((before.backend, before.backend_retired), (nat_backend.to_string(), false));

    let gone = |config: &str, backend: std::net::SocketAddr| {
        config.replacen(&format!("[[service.backend]]\naddress = \"{backend}\"\n"), "", 1)
    };
    let without = gone(CONFIG, nat_backend);
    // The dsr service's copy of the address is the one after "direct"'s VIP.
    let at = without.find("name = \"direct\"").expect("the dsr service");
    let without = format!("{}{}", &without[..at], gone(&without[at..], dsr_backend));
    assert_ne!(without, CONFIG);
    h.reload(&without);

    let nat = flow_of(&h, nat_client);
    assert_eq!((nat.backend, nat.backend_retired), (nat_backend.to_string(), true), "nat: the NAT entry's address");
    let dsr = flow_of(&h, dsr_client);
    assert_eq!((dsr.backend, dsr.backend_retired), ("unknown".to_string(), true), "dsr: nothing left to tell");
    // And the data path agrees: the nat flow's next packet goes elsewhere.
    let (action, out) = h.run(&Pkt::tcp(nat_client, VIP, ACK).bytes());
    assert_eq!(action, XDP_TX);
    let std::net::IpAddr::V4(gone_ip) = nat_backend.ip() else { panic!("an IPv4 backend") };
    assert_ne!(&out[30..34], &gone_ip.octets()[..], "not to the removed backend");
}

//! The daemon's sweep of ended flows (`lb_xdp::sweep`) against the real maps of the loaded
//! object: flows past their timeout (and the grace) leave the flow table with their NAT
//! entries, live flows and the entries they hold stay, and a NAT entry whose flow is gone
//! goes too. Root only: `cargo xtask test` runs them (`--ignored`).

use std::time::Duration;

use lb_xdp::sweep::{sweep, Swept};
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const VIP: &str = "172.20.0.100:80";

/// Short embryonic timeouts so that unanswered handshakes end quickly; a long idle timeout
/// so that an answered one stays.
const CONFIG: &str = r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
snat_ports = "40000-40099"
flow_table_size = 4096
tcp_handshake_timeout = "200ms"

[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:80"
"#;

const PAST_HANDSHAKE: Duration = Duration::from_millis(300);

fn entries(h: &Harness) -> (usize, usize) {
    (h.maps().flows.keys().count(), h.maps().nat.keys().count())
}

/// A handshake the backend answered and the client completed: an established flow.
fn established(h: &Harness, client: &str) {
    let out = h.run(&Pkt::tcp(client, VIP, SYN).seqs(1000, 0).bytes());
    assert_eq!(out.0, XDP_TX);
    let (_, backend, snat_port) = natted(&Pkt::tcp(client, VIP, SYN), h);
    let synack = reply_from(backend, &format!("172.20.0.10:{snat_port}"), TCP).seqs(5000, 1001);
    assert_eq!(h.run(&synack.bytes()).0, XDP_TX, "the SYN-ACK goes back");
    assert_eq!(h.run(&Pkt::tcp(client, VIP, ACK).seqs(1001, 5001).bytes()).0, XDP_TX);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ended_flows_leave_both_tables_and_live_ones_stay() {
    let mut h = Harness::new(CONFIG);
    established(&h, "172.20.0.2:41000");
    for port in 0..20 {
        let client = format!("172.20.0.3:{}", 42000 + port);
        assert_eq!(h.run(&Pkt::tcp(&client, VIP, SYN).bytes()).0, XDP_TX);
    }
    assert_eq!(entries(&h), (21, 21));
    assert_eq!(sweep(h.maps_mut(), Duration::ZERO).unwrap(), Swept::default(), "nothing has ended yet");
    std::thread::sleep(PAST_HANDSHAKE);
    assert_eq!(sweep(h.maps_mut(), Duration::from_secs(30)).unwrap(), Swept::default(), "ended, but within the grace");
    assert_eq!(sweep(h.maps_mut(), Duration::ZERO).unwrap(), Swept { flows: 20, nat: 20 });
    assert_eq!(entries(&h), (1, 1), "the established flow and its NAT entry stay");
    // The established flow still works both ways.
    assert_eq!(h.run(&Pkt::tcp("172.20.0.2:41000", VIP, ACK).seqs(1001, 5001).bytes()).0, XDP_TX);
    assert_eq!(sweep(h.maps_mut(), Duration::ZERO).unwrap(), Swept::default(), "a second sweep finds nothing");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_nat_entry_whose_flow_is_gone_is_swept() {
    let mut h = Harness::new(CONFIG);
    established(&h, "172.20.0.2:41100");
    let key = h.maps().flows.keys().next().unwrap().unwrap();
    // The LRU evicted the flow (or anything else removed it): its NAT entry is an orphan.
    h.maps_mut().flows.remove(&key).unwrap();
    assert_eq!(entries(&h), (0, 1));
    assert_eq!(sweep(h.maps_mut(), Duration::from_secs(30)).unwrap(), Swept { flows: 0, nat: 1 });
    assert_eq!(entries(&h), (0, 0));
}

//! `persistence_timeout` on the XDP path: a client's new flows follow its first one to the
//! same backend while they come within the timeout, whatever the algorithm would pick;
//! after the timeout, or once that backend leaves the rotation, the next one is balanced
//! anew. `least_conn` makes "balanced anew" visible: the client's own flows pile up on its
//! backend, so the algorithm alone would send the next one elsewhere. Root only: `cargo
//! xtask test` runs them (`--ignored`).
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use lb_config::AdminState;
use lb_xdp::testkit::frame::destination;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;

const VIP: &str = "172.20.0.100:80";

fn config(persistence: &str) -> String {
    format!(
        r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
flow_table_size = 4096

[[service]]
name = "web"
vip = "{VIP}"
algorithm = "least_conn"
{persistence}
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.12:80"
[[service.backend]]
address = "172.20.0.13:80"
"#
    )
}

/// Where a new flow from `client` went (the nat rewrite's destination).
fn new_flow(h: &Harness, client: &str) -> SocketAddr {
    let (action, out) = h.run(&Pkt::tcp(client, VIP, SYN).bytes());
    assert_eq!(action, XDP_TX, "{client}: a new flow is forwarded");
    destination(&out)
}

/// The backends of `n` new flows from one client address, on ports `from..`.
fn flows(h: &Harness, address: &str, from: u16, n: u16) -> Vec<SocketAddr> {
    (from..from + n).map(|port| new_flow(h, &format!("{address}:{port}"))).collect()
}

fn distinct(v: &[SocketAddr]) -> usize {
    v.iter().collect::<BTreeSet<_>>().len()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn without_persistence_one_clients_flows_spread_and_with_it_they_stay() {
    let h = Harness::new(&config(""));
    let spread = flows(&h, "198.51.100.1", 1000, 9);
    assert!(distinct(&spread) >= 2, "least_conn alone spreads one client's flows: {spread:?}");

    let h = Harness::new(&config("persistence_timeout = \"30s\""));
    let a = flows(&h, "198.51.100.1", 1000, 9);
    assert_eq!(distinct(&a), 1, "one client, one backend: {a:?}");
    let b = flows(&h, "198.51.100.2", 1000, 3);
    assert_eq!(distinct(&b), 1, "{b:?}");
    assert_ne!(a[0], b[0], "another client is balanced: least_conn sends it away from the loaded backend");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn after_the_timeout_the_next_flow_is_balanced_anew() {
    let h = Harness::new(&config("persistence_timeout = \"1s\""));
    let a = flows(&h, "198.51.100.1", 1000, 6);
    assert_eq!(distinct(&a), 1, "{a:?}");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(flows(&h, "198.51.100.1", 2000, 1)[0], a[0], "within the timeout: the same backend");
    // Each flow restarted the clock: 1.2 s of silence is past it.
    std::thread::sleep(Duration::from_millis(1200));
    let next = flows(&h, "198.51.100.1", 3000, 1)[0];
    assert_ne!(next, a[0], "timed out: least_conn picks a backend without the client's 7 flows");
    assert_eq!(flows(&h, "198.51.100.1", 3001, 2), [next, next], "and the client persists there now");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_backend_leaving_the_rotation_ends_its_clients_persistence() {
    let mut h = Harness::new(&config("persistence_timeout = \"30s\""));
    let a = flows(&h, "198.51.100.1", 1000, 3)[0];
    h.reconcile_with(|d| {
        let b = d.services[0].backends.iter_mut().find(|b| b.address == a).unwrap();
        b.state = AdminState::Drain;
    });
    let moved = flows(&h, "198.51.100.1", 2000, 3);
    assert!(!moved.contains(&a), "a draining backend takes no persisting client: {moved:?}");
    assert_eq!(distinct(&moved), 1, "the client persists on its new backend: {moved:?}");
    h.reconcile_with(|_| {});
    assert_eq!(flows(&h, "198.51.100.1", 3000, 2), [moved[0], moved[0]], "back in rotation, the new one stays");
}

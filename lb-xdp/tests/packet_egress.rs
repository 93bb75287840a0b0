//! Next hops from the kernel's FIB (lb-ebpf `egress.rs`): each test builds its own network
//! namespace with two veth pairs (`in0`, the NIC frames arrive on, and `out0`), routes and
//! permanent neighbour entries, enters it on the test's thread, and runs the program with
//! an XDP context whose ingress interface is `in0`. Expected frames are built from scratch.
//! Root only, like the other packet fixtures: `cargo xtask test` runs them.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use lb_common::addr::ip_words;
use lb_common::consts::FAMILY_V4;
use lb_common::maps::NextHop;
use lb_common::reason::DropReason;
use lb_xdp::plan::HostFacts;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;
use lb_xdp::unresolved::{drain, Datagram};

/// The NICs' own MACs, and the permanent neighbours' behind them.
const IN0_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x01];
const OUT0_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x02];
const NEAR_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 1, 0x02];
const FAR_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 2, 0x02];
const CLIENT_NEIGH_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 1, 0x50];

const CLIENT: &str = "10.77.1.50:40000";
const CLIENT6: &str = "[fd77:1::50]:40000";

/// dsr to a backend behind `in0` (:80), behind `out0` (:81), behind a router on `out0`
/// whose MAC nobody knows (:82); nat to the backend behind `out0` (:83); IPv6 dsr to
/// backends behind `in0` and `out0`.
const CONFIG: &str = r#"
[daemon]
interface = "in0"
snat_ipv4 = "10.77.1.1"
snat_ipv6 = "fd77:1::1"
flow_table_size = 1024

[[service]]
name = "near"
vip = "10.77.1.100:80"
forwarding = "dsr"
[[service.backend]]
address = "10.77.1.2:80"

[[service]]
name = "far"
vip = "10.77.1.100:81"
forwarding = "dsr"
[[service.backend]]
address = "10.77.2.2:81"

[[service]]
name = "routed"
vip = "10.77.1.100:82"
forwarding = "dsr"
[[service.backend]]
address = "10.77.9.5:82"

[[service]]
name = "natted"
vip = "10.77.1.100:83"
[[service.backend]]
address = "10.77.2.2:83"

[[service]]
name = "near6"
vip = "[fd77:1::100]:80"
forwarding = "dsr"
[[service.backend]]
address = "[fd77:1::2]:80"

[[service]]
name = "far6"
vip = "[fd77:1::100]:81"
forwarding = "dsr"
[[service.backend]]
address = "[fd77:2::2]:81"
"#;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A private network namespace, entered by the calling thread (test threads are never
/// reused), deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        require_root();
        let name = format!("lbeg-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        for cmd in [
            "link add in0 address 02:ee:00:00:00:01 type veth peer name in0p",
            "link add out0 address 02:ee:00:00:00:02 type veth peer name out0p",
            "link set lo up",
            "link set in0 up",
            "link set in0p up",
            "link set out0 up",
            "link set out0p up",
            "addr add 10.77.1.1/24 dev in0",
            "addr add 10.77.2.1/24 dev out0",
            "-6 addr add fd77:1::1/64 dev in0 nodad",
            "-6 addr add fd77:2::1/64 dev out0 nodad",
            "route add 10.77.9.0/24 via 10.77.2.9 dev out0",
            "neigh replace 10.77.1.2 lladdr 02:ee:00:00:01:02 dev in0 nud permanent",
            "neigh replace 10.77.1.50 lladdr 02:ee:00:00:01:50 dev in0 nud permanent",
            "neigh replace 10.77.2.2 lladdr 02:ee:00:00:02:02 dev out0 nud permanent",
            "-6 neigh replace fd77:1::2 lladdr 02:ee:00:00:01:02 dev in0 nud permanent",
            "-6 neigh replace fd77:2::2 lladdr 02:ee:00:00:02:02 dev out0 nud permanent",
        ] {
            ns.ip(&cmd.split(' ').collect::<Vec<_>>());
        }
        ns.forwarding(true);
        let fd = std::fs::File::open(format!("/var/run/netns/{}", ns.name)).expect("open the namespace");
        // SAFETY: a namespace fd; setns changes only this thread's network namespace.
        assert_eq!(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// IPv4 and IPv6 forwarding, on every NIC of the namespace.
    fn forwarding(&self, on: bool) {
        let v = if on { "1" } else { "0" };
        for key in ["net.ipv4.ip_forward", "net.ipv4.conf.in0.forwarding", "net.ipv6.conf.all.forwarding"] {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.name, "sysctl", "-q", "-w", &format!("{key}={v}")])
                .status()
                .expect("run sysctl");
            assert!(ok.success(), "sysctl {key}={v}");
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn ifindex(name: &str) -> u32 {
    lb_xdp::pinned_link::ifindex_of(name).expect("interface in the test namespace")
}

/// The daemon's neighbour table for the fallback: other MACs than the kernel's, so a frame
/// tells which path it took. (The planner puts only backends it has a MAC for in rotation.)
fn facts() -> HostFacts {
    let mut f = HostFacts::default();
    f.neighbours.insert("10.77.1.2".parse().unwrap(), server_mac(1));
    f.neighbours.insert("10.77.2.2".parse().unwrap(), server_mac(2));
    f.neighbours.insert("10.77.9.5".parse().unwrap(), server_mac(3));
    f.neighbours.insert("fd77:1::2".parse().unwrap(), server_mac(1));
    f.neighbours.insert("fd77:2::2".parse().unwrap(), server_mac(2));
    f.own_addresses.insert("10.77.1.1".parse().unwrap());
    f
}

/// A harness in a fresh namespace, with `out0` (and `in0`) as transmit ports when asked.
fn setup(ports: bool) -> (Netns, Harness) {
    let ns = Netns::new();
    let mut h = Harness::with_facts(CONFIG, facts());
    if ports {
        for nic in ["in0", "out0"] {
            h.maps_mut().tx_ports.insert(ifindex(nic), ifindex(nic), None, 0).expect("fill LB_TX_PORTS");
        }
    }
    (ns, h)
}

fn syn(dst: &str) -> Pkt {
    Pkt::tcp(if dst.starts_with('[') { CLIENT6 } else { CLIENT }, dst, SYN)
}

/// `p` with only its MACs changed (dsr).
fn relayed(p: &Pkt, src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    p.clone().macs(src, dst).bytes()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_backend_behind_the_ingress_nic_gets_the_frame_by_xdp_tx_with_the_fibs_macs() {
    let (_ns, h) = setup(true);
    for vip in ["10.77.1.100:80", "[fd77:1::100]:80"] {
        let p = syn(vip);
        assert_frame(h.run_on(ifindex("in0"), &p.bytes()), XDP_TX, &relayed(&p, IN0_MAC, NEAR_MAC), vip);
    }
    assert_eq!(h.action_count(XDP_TX), 2);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_backend_behind_another_nic_gets_the_frame_by_xdp_redirect_from_that_nics_mac() {
    let (_ns, h) = setup(true);
    for vip in ["10.77.1.100:81", "[fd77:1::100]:81"] {
        let p = syn(vip);
        assert_frame(h.run_on(ifindex("in0"), &p.bytes()), XDP_REDIRECT, &relayed(&p, OUT0_MAC, FAR_MAC), vip);
    }
    assert_eq!(h.action_count(XDP_REDIRECT), 2);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn nat_forward_and_reverse_cross_the_two_nics() {
    let (_ns, h) = setup(true);
    let vip = "10.77.1.100:83";
    let p = syn(vip);
    let (backend, port) = h.expected(p.src, p.dst, TCP);
    let mut out = p.clone();
    out.src = SocketAddr::new("10.77.1.1".parse().unwrap(), port);
    out.dst = backend;
    out = out.macs(OUT0_MAC, FAR_MAC);
    assert_frame(h.run_on(ifindex("in0"), &p.bytes()), XDP_REDIRECT, &out.bytes(), "nat forward");

    // The backend's SYN-ACK comes in on out0 and goes back to the client out of in0.
    let reply = Pkt::tcp(&backend.to_string(), &format!("10.77.1.1:{port}"), SYN | ACK).macs(FAR_MAC, OUT0_MAC);
    let mut back = reply.clone();
    back.src = vip.parse().unwrap();
    back.dst = CLIENT.parse().unwrap();
    back = back.macs(IN0_MAC, CLIENT_NEIGH_MAC);
    assert_frame(h.run_on(ifindex("out0"), &reply.bytes()), XDP_REDIRECT, &back.bytes(), "reverse nat");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn an_egress_nic_that_is_not_a_transmit_port_is_a_counted_drop() {
    let (_ns, h) = setup(false);
    let p = syn("10.77.1.100:81");
    assert_eq!(h.run_on(ifindex("in0"), &p.bytes()).0, XDP_DROP);
    assert_eq!(h.drops(DropReason::NoTxPort), 1);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn with_forwarding_off_the_daemons_neighbour_table_and_xdp_tx_are_used() {
    let (ns, h) = setup(true);
    ns.forwarding(false);
    // Even for a backend whose route leaves by out0: XDP_TX knows only the ingress NIC.
    for (vip, n) in [("10.77.1.100:80", 1), ("[fd77:1::100]:80", 1), ("10.77.1.100:81", 2), ("[fd77:1::100]:81", 2)] {
        let p = syn(vip);
        assert_frame(h.run_on(ifindex("in0"), &p.bytes()), XDP_TX, &relayed(&p, LB_MAC, server_mac(n)), vip);
    }
    assert_eq!(h.action_count(XDP_REDIRECT), 0);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn an_unresolved_next_hop_is_recorded_once_and_the_daemon_asks_the_kernel_to_resolve_it() {
    let (ns, mut h) = setup(true);
    let p = syn("10.77.1.100:82");
    for _ in 0..3 {
        assert_eq!(h.run_on(ifindex("in0"), &p.bytes()).0, XDP_DROP);
    }
    assert_eq!(h.drops(DropReason::NoNeighbor), 3);
    let entries: Vec<NextHop> = h.maps().unresolved.keys().map(|k| k.expect("read LB_UNRESOLVED")).collect();
    let (gateway, _) = ip_words("10.77.2.9".parse().unwrap());
    assert_eq!(
        entries,
        vec![NextHop { addr: gateway, ifindex: ifindex("out0"), family: FAMILY_V4, _pad: [0; 3] }],
        "the router on out0, once"
    );

    // The daemon's poll: the kernel is asked (its neighbour table now has an entry for the
    // router, being resolved) and the entry goes; a second poll within SOLICIT_EVERY finds
    // the re-recorded hop and deletes it without asking again.
    let mut recent = std::collections::HashMap::new();
    let now = std::time::Instant::now();
    assert_eq!(drain(&mut h.maps_mut().unresolved, &mut Datagram, &mut recent, now), 1);
    assert_eq!(h.maps().unresolved.keys().count(), 0);
    let neigh =
        Command::new("ip").args(["-n", &ns.name, "neigh", "show", "10.77.2.9", "dev", "out0"]).output().unwrap();
    assert!(!neigh.stdout.is_empty(), "the kernel was asked to resolve 10.77.2.9");
    assert_eq!(h.run_on(ifindex("in0"), &p.bytes()).0, XDP_DROP);
    assert_eq!(drain(&mut h.maps_mut().unresolved, &mut Datagram, &mut recent, now), 0);
    assert_eq!(h.maps().unresolved.keys().count(), 0);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn frames_run_without_an_ingress_nic_take_the_fallback_whatever_the_hosts_routes() {
    // A namespace where the FIB would answer (forwarding on, a route and a neighbour for
    // the backend): `Harness::run` moves the thread to a private one first, so the
    // fixtures' expected frames (the neighbour table's MACs, XDP_TX) hold on any host.
    let (_ns, h) = setup(true);
    let p = syn("10.77.1.100:80");
    assert_frame(h.run(&p.bytes()), XDP_TX, &relayed(&p, LB_MAC, server_mac(1)), "fallback");
}

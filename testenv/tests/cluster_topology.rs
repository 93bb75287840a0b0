//! The fleet network on its own, without `lb`: a hand-written BIRD in each balancer
//! namespace announces a VIP, the router merges the three routes into one ECMP route, and
//! new connections from many client ports reach all three balancers; a stopped speaker or a
//! cut link leaves the set; etcd and the backends answer; `down` removes it all.
//! Root only (`cargo xtask test` runs it).

use std::time::Duration;

use testenv::cluster::{self, *};
use testenv::{exec, exec_ok, lock_network, require_root, NetworkLock};

/// Connections the client opens, each from its own port.
const CONNECTIONS: u16 = 60;
const FIRST_PORT: u16 = 41000;

/// Holds the machine's one test network and takes it down however the test ends.
struct Fleet {
    _lock: NetworkLock,
}

impl Fleet {
    fn up() -> Fleet {
        require_root();
        let lock = lock_network().expect("lock the test network");
        cluster::up(&testenv::lb_binary()).expect("cluster up");
        Fleet { _lock: lock }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Err(error) = testenv::down() {
            eprintln!("testenv down after the test: {error:#}");
        }
    }
}

/// In balancer i: count the SYNs to `vip` it is handed (it forwards them, having no `lb`)
/// and answer each with a reset, so the client's connect ends at once.
fn count_syns(i: u8, vip: &str) {
    let ns = balancer_ns(i);
    exec_ok(&ns, &["nft", "add", "table", "ip", "fleet"]).unwrap();
    exec_ok(&ns, &["nft", "add", "chain", "ip", "fleet", "syns", "{ type filter hook forward priority 0; }"]).unwrap();
    exec_ok(
        &ns,
        &[
            "nft", "add", "rule", "ip", "fleet", "syns", "ip", "daddr", vip, "tcp", "flags", "syn", "counter",
            "reject", "with", "tcp", "reset",
        ],
    )
    .unwrap();
}

fn syns_counted(i: u8) -> u64 {
    let shown = exec_ok(&balancer_ns(i), &["nft", "list", "chain", "ip", "fleet", "syns"]).unwrap();
    let words: Vec<&str> = shown.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "packets").expect("a counter in the chain");
    words[at + 1].parse().unwrap()
}

/// From the client, `CONNECTIONS` connects to vip:80, each bound to its own source port;
/// returns how many were refused (answered with a reset).
fn connect_from_many_ports(vip: &str) -> u64 {
    let script = format!(
        "import socket\nrefused = 0\nfor port in range({FIRST_PORT}, {FIRST_PORT} + {CONNECTIONS}):\n    \
         s = socket.socket()\n    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
         s.bind(('{CLIENT_V4}', port))\n    s.settimeout(2)\n    try:\n        s.connect(('{vip}', 80))\n    \
         except ConnectionRefusedError:\n        refused += 1\n    except OSError:\n        pass\n    \
         s.close()\nprint(refused)\n"
    );
    let out = exec_ok(CLIENT_NS, &["python3", "-c", &script]).unwrap();
    out.trim().parse().unwrap()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn bgp_gives_the_router_one_next_hop_per_balancer_and_new_connections_reach_all_three() {
    let _fleet = Fleet::up();
    for i in 1..=BALANCERS {
        count_syns(i, VIP_DSR);
        announce_by_hand(i, &[VIP_DSR]).unwrap();
    }
    let took = wait_next_hops(VIP_DSR, 3, Duration::from_secs(30)).unwrap();
    eprintln!("ECMP route with 3 next hops after {:.2} s", took.as_secs_f64());
    let hops: Vec<String> = next_hops(VIP_DSR).unwrap().iter().map(|h| h.to_string()).collect();
    assert_eq!(hops, ["10.61.0.11", "10.61.0.12", "10.61.0.13"]);

    let refused = connect_from_many_ports(VIP_DSR);
    let per_balancer: Vec<u64> = (1..=BALANCERS).map(syns_counted).collect();
    eprintln!("{CONNECTIONS} connections: SYNs per balancer {per_balancer:?}, {refused} refused");
    assert_eq!(refused, CONNECTIONS as u64, "every connect reached a balancer and was reset");
    assert_eq!(per_balancer.iter().sum::<u64>(), CONNECTIONS as u64, "each SYN crossed exactly one balancer");
    assert!(per_balancer.iter().all(|&n| n > 0), "the router hashes by port: every balancer gets some");

    // A speaker that stops says so (a NOTIFICATION): its next hop goes at once.
    stop_announcing_by_hand(2).unwrap();
    let gone = wait_next_hops(VIP_DSR, 2, Duration::from_secs(10)).unwrap();
    eprintln!("stopped speaker's next hop gone after {:.2} s", gone.as_secs_f64());
    assert!(!next_hops(VIP_DSR).unwrap().iter().any(|h| h.to_string() == "10.61.0.12"));

    // A cut link says nothing: the router's hold timer (3 s) ends the session.
    cut_link(3).unwrap();
    let gone = wait_next_hops(VIP_DSR, 1, Duration::from_secs(10)).unwrap();
    eprintln!("cut balancer's next hop gone after {:.2} s", gone.as_secs_f64());
    assert!(gone >= Duration::from_secs(1), "a cut link is noticed by the hold timer, not at once: {gone:?}");
    restore_link(3).unwrap();
    let back = wait_next_hops(VIP_DSR, 2, Duration::from_secs(20)).unwrap();
    eprintln!("restored balancer back in the set after {:.2} s", back.as_secs_f64());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn backends_answer_etcd_restarts_with_its_data_and_down_removes_everything_half_built_too() {
    let fleet = Fleet::up();
    // Each backend names itself over HTTP and on the echo port, seen from a balancer.
    for b in 1..=BACKENDS {
        let body =
            testenv::curl(&balancer_ns(1), &format!("http://{}/", backend_v4(b)), Duration::from_secs(3)).unwrap();
        assert!(body.contains(&backend_name(b)), "{body}");
        let script = format!(
            "import socket\ns = socket.create_connection(('{}', {ECHO_PORT}), 2)\ns.sendall(b'ping\\n')\n\
             print(s.makefile().readline().strip())\n",
            backend_v4(b)
        );
        let echoed = exec_ok(&balancer_ns(1), &["python3", "-c", &script]).unwrap();
        assert_eq!(echoed.trim(), format!("{} ping", backend_name(b)));
        assert!(testenv::xdp_attached(&backend_ns(b), "eth0").unwrap(), "lb decap runs on backend {b}");
    }
    let etcdctl = |args: &[&str]| {
        let mut full = vec!["etcdctl", "--endpoints", "http://10.61.0.5:2379", "--dial-timeout", "1s"];
        full.extend_from_slice(args);
        exec(&balancer_ns(2), &full).unwrap()
    };
    assert!(etcdctl(&["put", "/fleet-test", "kept"]).status.success());
    stop_etcd().unwrap();
    assert!(!etcd_healthy());
    assert!(!etcdctl(&["get", "/fleet-test"]).status.success(), "etcd stopped answers nothing");
    start_etcd().unwrap();
    let got = etcdctl(&["get", "--print-value-only", "/fleet-test"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "kept");

    // The root namespace gets nothing of the fleet's ranges.
    let root = |args: &[&str]| String::from_utf8(std::process::Command::new("ip").args(args).output().unwrap().stdout);
    for shown in [root(&["-4", "addr"]).unwrap(), root(&["-4", "route"]).unwrap()] {
        assert!(!shown.contains("10.60.") && !shown.contains("10.61.") && !shown.contains("10.100."), "{shown}");
    }

    testenv::down().unwrap();
    // A half-built fleet (a namespace left by a crash) is cleared too, and down again is a no-op.
    testenv::exec_ok("lbc-client", &["true"]).unwrap_err();
    std::process::Command::new("ip").args(["netns", "add", "lbc-lb1"]).status().unwrap();
    testenv::down().unwrap();
    testenv::down().unwrap();
    let namespaces =
        String::from_utf8(std::process::Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    assert!(!namespaces.contains("lbc-"), "{namespaces}");
    assert!(!std::path::Path::new(RUN_DIR).exists());
    drop(fleet);
}

/// What the fleet is for, with BIRD by hand in place of `lb`'s speaker: `lb run` on each
/// balancer, the VIPs announced from all three, and every forwarding mode answering the
/// client through the router's ECMP from many client ports, each request reaching some
/// backend (dsr, ipip and gue replies come back past the balancers).
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn every_forwarding_mode_answers_through_the_fleet() {
    let _fleet = Fleet::up();
    let lb = testenv::lb_binary();
    let nodes: Vec<Node> =
        (1..=BALANCERS).map(|i| Node::start(i, &lb, &node_config_without_bgp(i)).expect("lb run")).collect();
    let vips: Vec<&str> = VIPS.iter().map(|(_, vip)| *vip).collect();
    for i in 1..=BALANCERS {
        announce_by_hand(i, &vips).unwrap();
    }
    for vip in &vips {
        wait_next_hops(vip, 3, Duration::from_secs(30)).unwrap();
    }
    for (forwarding, vip) in VIPS {
        let mut answered = std::collections::BTreeSet::new();
        for _ in 0..9 {
            let body = testenv::curl(CLIENT_NS, &format!("http://{vip}/"), Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("{forwarding} {vip}: {e:#}"));
            let name = (1..=BACKENDS).map(backend_name).find(|n| body.contains(n.as_str()));
            answered.insert(name.unwrap_or_else(|| panic!("{forwarding}: no backend named in {body}")));
        }
        eprintln!("{forwarding} {vip}: answered by {answered:?}");
    }
    let carried: Vec<f64> =
        nodes.iter().map(|n| metric_sum(&n.metrics().unwrap(), "lb_backend_new_flows_total", &[])).collect();
    eprintln!("new flows per node: {carried:?}");
    assert_eq!(carried.iter().sum::<f64>(), (VIPS.len() * 9) as f64, "each request is one node's new flow");
}

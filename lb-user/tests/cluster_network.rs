//! The fleet on the fleet network (`testenv::cluster`): three `lb run` nodes announcing the
//! VIPs by BGP (their own BIRD) to a router that spreads flows over them by ECMP on the
//! 5-tuple, sharing registrations and admin states through etcd. Real clients (curl, Python
//! sockets) in the client namespace behind the router, real backends (HTTP, a line echo,
//! `lb decap`).
//!
//! - new connections from many client ports spread over all three nodes;
//! - a registration sent to one node is served by the others within a second;
//! - a node killed (SIGKILL), and separately its link cut: no connection through the
//!   others breaks, its dsr/ipip/gue connections carry on through the survivors with the
//!   same backend, its nat connections are lost (their SNAT address was the dead node's);
//! - a draining node withdraws its routes while it still forwards, and its connections
//!   finish on the others;
//! - etcd stopped for 10 s: traffic unaffected, writes refused, state converges after.
//!
//! Each test prints what it measured (convergence times, connections kept) for the docs.
//! Root only: `cargo xtask test` runs them.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use testenv::cluster::{self, *};
use testenv::{exec, lock_network, require_root, NetworkLock};

const ANNOUNCED_WITHIN: Duration = Duration::from_secs(30);
const WITHDRAWN_WITHIN: Duration = Duration::from_secs(15);

/// The fleet network with `lb run` on every node, every VIP announced by all three; taken
/// down however the test ends.
struct Fleet {
    nodes: Vec<Node>,
    _lock: NetworkLock,
}

impl Fleet {
    fn up() -> Fleet {
        Self::with_configs(node_config)
    }

    fn with_configs(config: impl Fn(u8) -> String) -> Fleet {
        require_root();
        let lock = lock_network().expect("lock the test network");
        cluster::up(&testenv::lb_binary()).expect("cluster up");
        let nodes: Vec<Node> =
            (1..=BALANCERS).map(|i| Node::start(i, &testenv::lb_binary(), &config(i)).expect("lb run")).collect();
        let fleet = Fleet { nodes, _lock: lock };
        for (_, vip) in VIPS {
            let took = wait_next_hops(vip, BALANCERS as usize, ANNOUNCED_WITHIN)
                .unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.logs()));
            println!("{vip}: three next hops {:.2} s after the nodes served", took.as_secs_f64());
        }
        fleet
    }

    fn node(&self, i: u8) -> &Node {
        &self.nodes[usize::from(i - 1)]
    }

    fn node_mut(&mut self, i: u8) -> &mut Node {
        &mut self.nodes[usize::from(i - 1)]
    }

    fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- {}:\n{}", node_name(n.i), n.log())).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.nodes.clear();
        if let Err(error) = testenv::down() {
            eprintln!("testenv down after the test: {error:#}");
        }
    }
}

/// `curl` from the client namespace; the body, or the error.
fn get(url: &str) -> Result<String, String> {
    let out = exec(CLIENT_NS, &["curl", "-sS", "--fail", "--noproxy", "*", "--max-time", "2", url])
        .map_err(|e| format!("{e:#}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An admin API call to node i from its own namespace, with the fleet's token; (status, body).
fn api(i: u8, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let url = format!("{}{path}", node_api(i));
    let mut args =
        vec!["curl", "-sS", "--noproxy", "*", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "-X", method];
    let auth = format!("Authorization: Bearer {TOKEN}");
    args.extend(["-H", auth.as_str(), "-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        args.extend(["--data", b]);
    }
    args.push(&url);
    let out = exec(&balancer_ns(i), &args).expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn services_of(i: u8) -> serde_json::Value {
    let (code, body) = api(i, "GET", "/v1/services", None);
    assert_eq!(code, 200, "GET /v1/services on {}: {body}", node_name(i));
    serde_json::from_str(&body).expect("services JSON")
}

/// The backend `address` of `service` as node i shows it, if it has it.
fn backend_on(i: u8, service: &str, address: &str) -> Option<serde_json::Value> {
    let all = services_of(i);
    let services = all.as_array().cloned().or_else(|| all["services"].as_array().cloned()).unwrap_or_default();
    let s = services.into_iter().find(|s| s["name"] == service)?;
    s["backends"].as_array()?.iter().find(|b| b["address"] == address).cloned()
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn new_connections_from_many_client_ports_spread_over_all_three_nodes() {
    let fleet = Fleet::up();
    let service = service_name("dsr", HTTP_PORT);
    let flows = |n: &Node| {
        metric_sum(&n.metrics().unwrap(), "lb_backend_new_flows_total", &[&format!("service=\"{service}\"")])
    };
    let before: Vec<f64> = fleet.nodes.iter().map(flows).collect();
    let requests = 60;
    for port in 0..requests {
        let local = (43000 + port).to_string();
        let out = exec(
            CLIENT_NS,
            &[
                "curl",
                "-sS",
                "--fail",
                "--noproxy",
                "*",
                "--max-time",
                "2",
                "--local-port",
                &local,
                &format!("http://{VIP_DSR}/"),
            ],
        )
        .unwrap();
        assert!(out.status.success(), "request from port {local}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let per_node: Vec<f64> = fleet.nodes.iter().zip(&before).map(|(n, b)| flows(n) - b).collect();
    println!("new flows per node for {requests} connections: {per_node:?}");
    assert_eq!(per_node.iter().sum::<f64>(), requests as f64, "each connection is one new flow on exactly one node");
    assert!(per_node.iter().all(|&n| n >= 5.0), "every node carries a share: {per_node:?}");
}

/// Node i's config with the dsr HTTP service lacking backend 3 (it registers itself).
fn without_backend_3(i: u8) -> String {
    let config = node_config(i);
    let name = format!("name = \"{}\"", service_name("dsr", HTTP_PORT));
    let start = config.find(&name).expect("the dsr service");
    let end = config[start..].find("[[service]]").map_or(config.len(), |e| start + e);
    let block = config[start..end]
        .replace(&format!("\n[[service.backend]]\naddress = \"{}:{HTTP_PORT}\"\n", backend_v4(3)), "\n");
    format!("{}{block}{}", &config[..start], &config[end..])
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_registration_and_a_weight_sent_to_one_node_reach_the_others_within_a_second() {
    let fleet = Fleet::with_configs(without_backend_3);
    let service = service_name("dsr", HTTP_PORT);
    let address = format!("{}:{HTTP_PORT}", backend_v4(3));
    assert!(backend_on(2, &service, &address).is_none(), "not configured: it must come by registration");
    let body = format!("{{\"address\":\"{address}\",\"weight\":1,\"ttl\":\"30s\"}}");
    let sent = Instant::now();
    let (code, answer) = api(1, "POST", &format!("/v1/services/{service}/backends"), Some(&body));
    assert_eq!(code, 201, "registration on lb1: {answer}");
    for i in [2, 3] {
        wait_until(&format!("{} shows the registration", node_name(i)), Duration::from_secs(1), || {
            backend_on(i, &service, &address).is_some()
        });
        println!(
            "registration on lb1 shown by {} {:.0} ms after it was sent",
            node_name(i),
            sent.elapsed().as_secs_f64() * 1000.0
        );
    }
    println!("registration convergence: all nodes within {:.0} ms", sent.elapsed().as_secs_f64() * 1000.0);
    // Served: requests spread by the router reach Backend3 through nodes 2 and 3 too.
    let new_flows = |i: u8| {
        metric_sum(
            &fleet.node(i).metrics().unwrap(),
            "lb_backend_new_flows_total",
            &[&format!("service=\"{service}\""), &format!("backend=\"{address}\"")],
        )
    };
    let mut answered_by_3 = 0;
    for _ in 0..60 {
        if get(&format!("http://{VIP_DSR}/")).is_ok_and(|b| b.contains(&backend_name(3))) {
            answered_by_3 += 1;
        }
    }
    let per_node: Vec<f64> = [1, 2, 3].map(new_flows).to_vec();
    println!("requests answered by the registered backend: {answered_by_3} of 60; its new flows per node {per_node:?}");
    assert!(answered_by_3 > 0, "the registered backend serves");
    assert!(per_node[1] > 0.0 && per_node[2] > 0.0, "nodes 2 and 3 send it flows: {per_node:?}");

    // A weight set through one node's API is every node's (etcd's `weights/` key), and so
    // is clearing it through another.
    let weight_path = format!("/v1/services/{service}/backends/{address}/weight");
    let (code, answer) = api(1, "PUT", &weight_path, Some("{\"weight\":7}"));
    assert_eq!(code, 200, "weight on lb1: {answer}");
    for i in [2, 3] {
        wait_until(&format!("{} takes the weight", node_name(i)), Duration::from_secs(2), || {
            backend_on(i, &service, &address).is_some_and(|b| b["weight"] == 7 && b["api_weight"] == 7)
        });
    }
    let (code, answer) = api(3, "DELETE", &weight_path, None);
    assert_eq!(code, 200, "clear on lb3: {answer}");
    for i in [1, 2] {
        wait_until(&format!("{} clears the weight", node_name(i)), Duration::from_secs(2), || {
            backend_on(i, &service, &address).is_some_and(|b| b["weight"] == 1 && b.get("api_weight").is_none())
        });
    }
}

/// Connections held across a failure, one set per forwarding mode, all talking for
/// `seconds` with a reply missing for `silence` seconds counted as broken.
fn hold_every_mode(seconds: u64, silence: u64) -> Vec<(&'static str, Held)> {
    VIPS.iter()
        .enumerate()
        .map(|(n, (mode, vip))| {
            let hold = Hold { vip, first_port: 44000 + 100 * n as u16, connections: 9, seconds, silence };
            (*mode, Held::open(hold).unwrap_or_else(|e| panic!("{mode}: {e:#}")))
        })
        .collect()
}

/// The node that carries the most direct-return connections (so the failure has some to
/// move), and each set's connections by node.
fn busiest(fleet: &Fleet, held: &[(&str, Held)]) -> (u8, Vec<BTreeMap<u16, u8>>) {
    let via: Vec<BTreeMap<u16, u8>> = held.iter().map(|(_, h)| h.nodes(&fleet.nodes).unwrap()).collect();
    let mut count = [0usize; 4];
    for (k, map) in held.iter().zip(&via) {
        if k.0 != "nat" {
            for node in map.values() {
                count[usize::from(*node)] += 1;
            }
        }
    }
    let victim = (1..=3u8).max_by_key(|i| count[usize::from(*i)]).unwrap();
    (victim, via)
}

/// After a node's loss: no connection through a survivor broke; the lost node's dsr/ipip/gue
/// connections carried on (same backend: the script breaks one answered by another); its nat
/// connections broke. Returns (kept of the lost node's direct-return ones, their number).
fn judge(held: Vec<(&'static str, Held)>, via: &[BTreeMap<u16, u8>], lost: u8) -> (usize, usize) {
    let (mut kept, mut moved, mut nat_lost) = (0, 0, 0);
    for ((mode, h), via) in held.into_iter().zip(via) {
        let outcomes = h.finish().unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        for (port, o) in &outcomes {
            let node = via.get(port).copied();
            match (node == Some(lost), mode) {
                (false, _) => assert!(
                    o.broken.is_none(),
                    "{mode} connection from port {port} through {node:?} (a survivor) broke: {:?}",
                    o.broken
                ),
                (true, "nat") => {
                    assert!(o.broken.is_some(), "{mode} port {port}: a nat flow cannot outlive its node's SNAT state");
                    nat_lost += 1;
                }
                (true, _) => {
                    moved += 1;
                    assert!(
                        o.broken.is_none(),
                        "{mode} connection from port {port} through the lost node broke: {:?}",
                        o.broken
                    );
                    kept += 1;
                }
            }
        }
        println!(
            "{mode}: {} connections, {} through the lost node",
            outcomes.len(),
            via.values().filter(|n| **n == lost).count()
        );
    }
    println!("the lost node's dsr/ipip/gue connections kept: {kept} of {moved}; its nat connections lost: {nat_lost}");
    (kept, moved)
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_killed_node_breaks_no_connection_and_its_direct_return_ones_carry_on() {
    let mut fleet = Fleet::up();
    let held = hold_every_mode(8, 2);
    std::thread::sleep(Duration::from_millis(500));
    let (victim, via) = busiest(&fleet, &held);
    let killed = Instant::now();
    fleet.node_mut(victim).kill().unwrap();
    let shrank = wait_next_hops(VIP_DSR, 2, WITHDRAWN_WITHIN).unwrap();
    println!(
        "BGP convergence after SIGKILL of {}: the ECMP set shrank in {:.3} s",
        node_name(victim),
        shrank.as_secs_f64()
    );
    assert!(killed.elapsed() < Duration::from_secs(4), "withdrawn well within the hold time: the speaker died with lb");
    let (kept, moved) = judge(held, &via, victim);
    assert!(moved > 0 && kept == moved);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_node_whose_link_is_cut_breaks_no_connection_and_its_direct_return_ones_carry_on() {
    let fleet = Fleet::up();
    // The router learns of a cut link only when the hold time (3 s) runs out: TCP
    // retransmits across that gap, so a connection counts as broken only after 10 s silent.
    let held = hold_every_mode(14, 10);
    std::thread::sleep(Duration::from_millis(500));
    let (victim, via) = busiest(&fleet, &held);
    cut_link(victim).unwrap();
    let shrank = wait_next_hops(VIP_DSR, 2, WITHDRAWN_WITHIN).unwrap();
    println!(
        "BGP convergence after {}'s link was cut: the ECMP set shrank in {:.3} s",
        node_name(victim),
        shrank.as_secs_f64()
    );
    let (kept, moved) = judge(held, &via, victim);
    assert!(moved > 0 && kept == moved);
    restore_link(victim).unwrap();
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_draining_node_withdraws_first_and_its_connections_finish_on_the_others() {
    let mut fleet = Fleet::up();
    let hold = |vip, first_port| Hold { vip, first_port, connections: 9, seconds: 6, silence: 2 };
    let held =
        vec![("dsr", Held::open(hold(VIP_DSR, 45000)).unwrap()), ("gue", Held::open(hold(VIP_GUE, 45100)).unwrap())];
    std::thread::sleep(Duration::from_millis(500));
    let (victim, via) = busiest(&fleet, &held);
    assert_eq!(announced_by_lb_list(victim), ["yes"; 4], "before the drain");
    let (code, body) = api(victim, "POST", "/v1/drain", None);
    assert_eq!(code, 200, "drain: {body}");
    let shrank = wait_next_hops(VIP_DSR, 2, WITHDRAWN_WITHIN).unwrap();
    println!("lb drain on {}: withdrawn in {:.3} s while it still runs", node_name(victim), shrank.as_secs_f64());
    assert!(fleet.node(victim).pid().is_some(), "the draining node still runs");
    let metrics = fleet.node(victim).metrics().unwrap();
    assert_eq!(metric_sum(&metrics, "lb_draining", &[]), 1.0);
    assert_eq!(metric_sum(&metrics, "lb_vip_announced", &[]), 0.0, "every VIP withdrawn");
    assert_eq!(announced_by_lb_list(victim), ["no"; 4], "lb list vips says so");
    let (kept, moved) = judge(held, &via, victim);
    assert!(moved > 0 && kept == moved, "its connections finish");
    // SIGTERM after a drain: the routes are gone already; the node exits after its grace.
    let status = fleet.node_mut(victim).stop().unwrap();
    assert!(status.success(), "{status}");
}

/// `lb list vips --json` on node i (its pinned maps, the announcement from its API): each
/// distinct VIP address's `announced`, as yes/no.
fn announced_by_lb_list(i: u8) -> Vec<&'static str> {
    let lb = testenv::lb_binary();
    let (pins, url) = (node_pin_path(i), node_api(i));
    let args = [lb.to_str().unwrap(), "list", "vips", "--json", "--pin-path", pins.to_str().unwrap(), "--api", &url];
    let out = exec(&balancer_ns(i), &args).unwrap();
    assert!(out.status.success(), "lb list vips: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_ip = BTreeMap::new();
    for row in rows {
        let ip = row["vip"].as_str().unwrap_or_default().rsplit_once(':').map(|(ip, _)| ip.to_string());
        by_ip.insert(ip, if row["announced"] == true { "yes" } else { "no" });
    }
    by_ip.into_values().collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn with_etcd_stopped_traffic_goes_on_writes_are_refused_and_state_converges_after() {
    let fleet = Fleet::up();
    let service = service_name("dsr", HTTP_PORT);
    let address = format!("{}:{HTTP_PORT}", backend_v4(2));
    let state_path = format!("/v1/services/{service}/backends/{address}/state");
    stop_etcd().unwrap();
    let stopped = Instant::now();
    let (mut served, mut refused) = (0, 0);
    while stopped.elapsed() < Duration::from_secs(10) {
        if get(&format!("http://{VIP_DSR}/")).is_ok() {
            served += 1;
        }
        let (code, body) = api(1 + served as u8 % 3, "PUT", &state_path, Some("{\"state\":\"drain\"}"));
        assert_eq!(code, 503, "a write while etcd is down: {body}");
        assert!(body.contains("etcd is unreachable"), "{body}");
        refused += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("etcd down 10 s: {served} requests served, {refused} writes refused");
    assert!(served >= 15, "traffic is unaffected");
    for node in &fleet.nodes {
        let m = node.metrics().unwrap();
        assert_eq!(metric_sum(&m, "lb_store_up", &[]), 0.0, "{}", node_name(node.i));
        assert!(metric_sum(&m, "lb_store_writes_refused_total", &[]) >= 1.0);
        let (_, ready) = api(node.i, "GET", "/readyz", None);
        assert!(ready.contains("\"store\":\"unreachable\""), "{ready}");
        let b = backend_on(node.i, &service, &address).expect("still served");
        assert_eq!(b["state"], "ready", "nothing refused was applied");
    }
    start_etcd().unwrap();
    let back = Instant::now();
    wait_until("a write through lb2 goes through again", Duration::from_secs(15), || {
        api(2, "PUT", &state_path, Some("{\"state\":\"drain\"}")).0 == 200
    });
    for i in [1, 3] {
        wait_until(&format!("{} follows", node_name(i)), Duration::from_secs(10), || {
            backend_on(i, &service, &address).is_some_and(|b| b["state"] == "drain")
        });
    }
    println!("etcd back: every node converged {:.2} s after it restarted", back.elapsed().as_secs_f64());
    for node in &fleet.nodes {
        assert_eq!(metric_sum(&node.metrics().unwrap(), "lb_store_up", &[]), 1.0);
    }
}

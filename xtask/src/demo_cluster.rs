//! `cargo xtask demo --cluster`: the fleet network (testenv `cluster.rs`), `lb run` on three
//! balancers that announce the VIPs to a router by BGP, requests from the client spread by
//! the router's ECMP, each one narrated with the node that carried it (read off the nodes'
//! flow counters) and the backend that answered; then one node killed (SIGKILL), the time
//! until the router's ECMP set shrank, and the requests again on the survivors. Across the
//! kill, a few long-lived connections (a line every 100 ms) say whether they kept their
//! backend, those through the killed node included.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use testenv::cluster::{
    self, metric_sum, next_hops, node_name, service_name, wait_next_hops, Held, Hold, Node, Outcome, BALANCERS,
    CLIENT_NS, ECHO_PORT, HTTP_PORT, VIP_DSR,
};

const REQUESTS: usize = 12;
/// The demo's etcd is a real cluster, as a fleet would run it (the tests use one member).
const ETCD_MEMBERS: u8 = 3;
/// BGP needs a few seconds to come up (BIRD's connect delay, the OPEN exchange).
const ANNOUNCED_WITHIN: Duration = Duration::from_secs(30);
/// Hold time 3 s, and a dead node's speaker may not say goodbye.
const WITHDRAWN_WITHIN: Duration = Duration::from_secs(15);
/// The node killed half-way.
const VICTIM: u8 = 2;
const NEW_FLOWS: &str = "lb_backend_new_flows_total";
/// How long the held connections talk: past the kill, the router's reaction and the second
/// round of requests.
const HELD_SECONDS: u64 = 12;
/// The long-lived connections: a few to the dsr VIP's echo port, a reply missing for 1 s
/// counts as broken.
const HOLD: Hold = Hold { vip: VIP_DSR, first_port: 42000, connections: 6, seconds: HELD_SECONDS, silence: 1 };

pub fn run() -> Result<()> {
    if !crate::cmd::is_root() {
        bail!("the demo builds network namespaces and attaches XDP: run it as root");
    }
    // One test network per machine: the tests and other demos wait for this one.
    let _lock = testenv::lock_network()?;
    let _teardown = crate::demo::Teardown;
    println!(
        "==> bringing up the fleet network: router (BIRD, ECMP), 3 balancers, 3 backends, etcd (3 members), client"
    );
    cluster::up_with_etcd(&testenv::lb_binary(), ETCD_MEMBERS)?;
    println!(
        "==> node 1's config (the others differ only in their names and addresses):\n{}",
        cluster::node_config_for(1, ETCD_MEMBERS)
    );
    let mut nodes = Vec::new();
    for i in 1..=BALANCERS {
        println!("==> lb run in {}", cluster::balancer_ns(i));
        nodes.push(Node::start(i, &testenv::lb_binary(), &cluster::node_config_for(i, ETCD_MEMBERS))?);
    }
    println!("\n==> waiting for the router to learn {VIP_DSR} from all three nodes");
    let took = wait_next_hops(VIP_DSR, nodes.len(), ANNOUNCED_WITHIN)
        .context("no ECMP route with a next hop per node: does this lb announce its VIPs by BGP ([cluster.bgp])?")?;
    println!("  after {:.1} s: {}", took.as_secs_f64(), route_text()?);
    show_announcements(&nodes);

    println!("\n==> {REQUESTS} requests from {CLIENT_NS}: curl http://{VIP_DSR}/ (dsr)");
    let before = requests(&nodes)?;

    println!(
        "\n==> {} long-lived connections to {VIP_DSR}:{ECHO_PORT} (dsr echo), a line every 100 ms",
        HOLD.connections
    );
    let held = Held::open(HOLD)?;
    std::thread::sleep(Duration::from_millis(300));
    let via = held.nodes(&nodes)?;
    for (port, node) in &via {
        println!("  client port {port}: via {}", node_name(*node));
    }

    let victim = nodes.iter().position(|n| n.i == VICTIM).context("victim node")?;
    println!("\n==> kill -9 lb run on {} (no withdrawal sent: the router must notice)", node_name(VICTIM));
    let killed = Instant::now();
    nodes[victim].kill()?;
    let shrank = wait_next_hops(VIP_DSR, nodes.len() - 1, WITHDRAWN_WITHIN);
    let shrank = shrank.map(|_| killed.elapsed())?;
    println!("  the ECMP set shrank {:.2} s after the kill: {}", shrank.as_secs_f64(), route_text()?);
    nodes.remove(victim);

    println!("\n==> {REQUESTS} requests again, on the survivors");
    let after = requests(&nodes)?;
    if after.iter().any(|(node, _)| *node == VICTIM) {
        bail!("a request was carried by the killed node");
    }
    let talked = held.finish()?;
    println!("\n==> the long-lived connections, {HELD_SECONDS} s across the kill");
    let broken = show_held(&talked, &via);
    println!("\n==> summary");
    println!("  before the kill: {}", spread(&before));
    println!("  after the kill:  {}", spread(&after));
    println!("  BGP convergence after the kill: {:.2} s", shrank.as_secs_f64());
    println!(
        "  long-lived connections: through the survivors {} broken of {}; through {} {} kept of {}",
        broken.survivors.0,
        broken.survivors.1,
        node_name(VICTIM),
        broken.victim.0,
        broken.victim.1
    );
    for node in &mut nodes {
        node.stop()?;
    }
    if broken.survivors.0 > 0 {
        bail!("{} connections through the surviving nodes broke", broken.survivors.0);
    }
    Ok(())
}

/// Held connections: (broken, of) through the survivors, (kept, of) through the victim.
struct HeldCount {
    survivors: (usize, usize),
    victim: (usize, usize),
}

fn show_held(talked: &BTreeMap<u16, Outcome>, via: &BTreeMap<u16, u8>) -> HeldCount {
    let mut count = HeldCount { survivors: (0, 0), victim: (0, 0) };
    for (port, Outcome { backend, exchanges, broken }) in talked {
        let node = via.get(port).copied();
        let outcome = match broken {
            None => "unbroken".to_string(),
            Some(why) => format!("BROKEN ({why})"),
        };
        let shown = node.map_or("an unknown node".to_string(), node_name);
        println!("  client port {port} via {shown} -> {backend}: {exchanges} exchanges, {outcome}");
        if node == Some(VICTIM) {
            count.victim.1 += 1;
            count.victim.0 += usize::from(broken.is_none());
        } else {
            count.survivors.1 += 1;
            count.survivors.0 += usize::from(broken.is_some());
        }
    }
    count
}

/// Sends REQUESTS requests, each from a new client port; for each, the node whose counter
/// of new flows grew and the backend that answered. Every request must be carried by
/// exactly one node.
fn requests(nodes: &[Node]) -> Result<Vec<(u8, String)>> {
    let service = format!("service=\"{}\"", service_name("dsr", HTTP_PORT));
    let mut carried = Vec::new();
    for r in 1..=REQUESTS {
        let before = flow_counts(nodes, &service)?;
        let body = testenv::curl(CLIENT_NS, &format!("http://{VIP_DSR}/"), Duration::from_secs(3))?;
        let backend = crate::demo::server_of(&body).unwrap_or_else(|| "?".into());
        let after = flow_counts(nodes, &service)?;
        let grew: Vec<u8> =
            nodes.iter().zip(before.iter().zip(&after)).filter(|(_, (b, a))| a > b).map(|(n, _)| n.i).collect();
        let [node] = grew[..] else {
            bail!("request {r}: the new-flow counters of nodes {grew:?} grew, not exactly one node's");
        };
        println!("  request {r:>2}: via {} -> {backend}", node_name(node));
        carried.push((node, backend));
    }
    Ok(carried)
}

fn flow_counts(nodes: &[Node], service: &str) -> Result<Vec<f64>> {
    nodes.iter().map(|n| Ok(metric_sum(&n.metrics()?, NEW_FLOWS, &[service]))).collect()
}

/// Each node's `lb_vip_announced` samples (1: announced, 0: withdrawn).
fn show_announcements(nodes: &[Node]) {
    for node in nodes {
        let metrics = node.metrics().unwrap_or_default();
        let samples: Vec<&str> = metrics.lines().filter(|l| l.starts_with("lb_vip_announced")).collect();
        if samples.is_empty() {
            println!("  {}: no lb_vip_announced in its metrics", node_name(node.i));
        }
        for sample in samples {
            println!("  {}: {sample}", node_name(node.i));
        }
    }
}

fn route_text() -> Result<String> {
    let hops = next_hops(VIP_DSR)?;
    let hops: Vec<String> = hops.iter().map(|h| h.to_string()).collect();
    Ok(format!("{VIP_DSR} via {}", hops.join(", ")))
}

fn spread(carried: &[(u8, String)]) -> String {
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for (node, _) in carried {
        *per_node.entry(node_name(*node)).or_default() += 1;
    }
    per_node.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
}

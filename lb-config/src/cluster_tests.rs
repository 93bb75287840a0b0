//! Spec tests for `[cluster]`: what parses to what, and each error at its position.
use std::time::Duration;

use super::tests::{error, errors, parse, warnings};
use super::*;

#[test]
fn a_full_cluster_table_parses_with_its_values() {
    let cfg = parse(
        r#"[cluster]
node = "lb-1"
hash_seed = 4242
etcd = ["http://10.50.0.2:2379/", "http://etcd.example:2379"]
etcd_prefix = "/fleet/a/"
drain_grace = "2s"
bgp = { asn = 65010, router_id = "10.50.1.11", neighbors = [{ address = "10.50.1.1", asn = 65000 }, { address = "fd00:50::1", asn = 65000 }], hold_time = "3s" }
"#,
    );
    let c = cfg.cluster.expect("a cluster");
    assert_eq!(c.node.as_deref(), Some("lb-1"));
    assert_eq!(c.hash_seed, 4242);
    assert_eq!(c.etcd, ["http://10.50.0.2:2379", "http://etcd.example:2379"]);
    assert_eq!(c.etcd_prefix, "/fleet/a");
    assert_eq!(c.drain_grace, Duration::from_secs(2));
    let bgp = c.bgp.expect("bgp");
    assert_eq!((bgp.speaker, bgp.asn, bgp.router_id.to_string()), (Speaker::Bird, 65010, "10.50.1.11".into()));
    assert_eq!(bgp.neighbors.len(), 2);
    assert_eq!(bgp.neighbors[1].address.to_string(), "fd00:50::1");
    assert_eq!(bgp.hold_time, Duration::from_secs(3));
    assert_eq!(bgp.bird.to_str(), Some("bird"));
}

#[test]
fn defaults_without_bgp_or_etcd_and_without_the_table() {
    assert_eq!(parse("").cluster, None, "no [cluster]: a single balancer");
    let c = parse("[cluster]\nhash_seed = 1\n").cluster.unwrap();
    assert_eq!(
        (c.node, c.etcd.len(), c.etcd_prefix.as_str(), c.drain_grace),
        (None, 0, DEFAULT_ETCD_PREFIX, Duration::ZERO)
    );
    let c = parse(
        "[cluster.bgp]\nasn = 65001\nrouter_id = \"1.1.1.1\"\nneighbors = [{ address = \"1.1.1.2\", asn = 65000 }]\n",
    )
    .cluster
    .unwrap();
    assert_eq!(c.drain_grace, DEFAULT_DRAIN_GRACE, "with BGP a SIGTERM withdraws first");
    assert_eq!(c.bgp.unwrap().hold_time, DEFAULT_HOLD_TIME);
}

#[test]
fn each_bad_value_is_reported_where_it_is_written() {
    let all = errors(
        r#"[cluster]
node = "lb 1"
hash_seed = -1
etcd = ["https://10.0.0.1:2379", "http://nohost"]
etcd_prefix = "lb"
drain_grace = "11m"
[cluster.bgp]
speaker = "gobgp"
asn = 23456
router_id = "0.0.0.0"
neighbors = [{ address = "10.0.0.300", asn = 0 }, { address = "10.0.0.1", asn = 65000 }, { address = "10.0.0.1", asn = 65000 }]
hold_time = "2s"
"#,
    );
    let at: Vec<&str> = all.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        at,
        [
            "lb.toml:2:8",
            "lb.toml:3:13",
            "lb.toml:4:9",
            "lb.toml:4:34",
            "lb.toml:5:15",
            "lb.toml:6:15",
            "lb.toml:8:11",
            "lb.toml:9:7",
            "lb.toml:10:13",
            "lb.toml:11:26",
            "lb.toml:11:46",
            "lb.toml:11:102",
            "lb.toml:12:13"
        ],
        "{all:#?}"
    );
    assert!(all[2].contains("https is not supported"), "{}", all[2]);
    assert!(all[7].contains("not a usable AS number"), "{}", all[7]);
    assert!(all[11].contains("duplicate neighbor 10.0.0.1"), "{}", all[11]);
    assert!(all[12].contains("whole seconds from 3s"), "{}", all[12]);
}

#[test]
fn bgp_without_its_required_keys_says_which() {
    let e = errors("[cluster.bgp]\nhold_time = \"3s\"\n");
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].starts_with("lb.toml:1:1: ") || e[0].starts_with("lb.toml:2:1: "), "{e:#?}");
    assert!(e.iter().any(|m| m.contains("needs asn")) && e.iter().any(|m| m.contains("needs router_id")));
    assert!(e.iter().any(|m| m.contains("needs neighbors")));
    assert!(error("[cluster]\nseed = 1\n").contains("unknown key `seed`"));
}

#[test]
fn a_fleet_warns_about_algorithms_that_pick_per_node() {
    let w = warnings(
        r#"[cluster.bgp]
asn = 65001
router_id = "1.1.1.1"
neighbors = [{ address = "1.1.1.2", asn = 65000 }]
[[service]]
name = "rr"
vip = "10.0.0.1:80"
forwarding = "dsr"
algorithm = "round_robin"
[[service]]
name = "natrr"
vip = "10.0.0.2:80"
algorithm = "round_robin"
[[service]]
name = "mg"
vip = "10.0.0.3:80"
forwarding = "gue"
"#,
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with("lb.toml:6:8: warning: with [cluster.bgp], round_robin picks backends per node"),
        "{w:#?}"
    );
}

//! The userspace proxy path on the test network: proxy mode through the VIP, the seed's
//! `curl localhost:8080`, auto mode falling back where XDP cannot attach, and the HTTP
//! mode's upstream connection pool counted at the servers. Root only.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::net::*;
use testenv::{LbDaemon, LB_NS, VIP_V4, VIP_V6};

fn config(mode: &str, interface: &str, services: &str) -> String {
    format!(
        "[daemon]\ninterface = \"{interface}\"\nmode = \"{mode}\"\npin_path = \"{pin}\"\nadmin_listen = \"127.0.0.1:9100\"\n\
         state_file = \"/run/lbt/state.json\"\nworkers = 2\n\n{services}",
        pin = testenv::LB_PIN_PATH
    )
}

fn service(name: &str, vip: &str, extra: &str, backends: &[&str]) -> String {
    let list: String = backends.iter().map(|a| format!("[[service.backend]]\naddress = \"{a}\"\n")).collect();
    format!("[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\n{extra}\n{list}\n")
}

const V4: [&str; 3] = ["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"];
const V6: [&str; 3] = ["[fd00:20::11]:80", "[fd00:20::12]:80", "[fd00:20::13]:80"];

fn all_three() -> BTreeSet<String> {
    ["Server1", "Server2", "Server3"].iter().map(|s| s.to_string()).collect()
}

/// In proxy mode the LB's kernel must own the VIP (it is not routed through XDP).
fn vips_on_the_lb() {
    testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{VIP_V4}/32"), "dev", "lo"]).unwrap();
    testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{VIP_V6}/128"), "dev", "lo", "nodad"]).unwrap();
}

fn readyz() -> String {
    testenv::exec_ok(LB_NS, &["curl", "-s", "--noproxy", "*", "http://127.0.0.1:9100/readyz"]).unwrap()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn proxy_mode_balances_ipv4_and_ipv6_vips_over_all_three_servers() {
    let _net = Net::up(false);
    vips_on_the_lb();
    let services = service("web", &format!("{VIP_V4}:80"), "algorithm = \"round_robin\"", &V4)
        + &service("web6", &format!("[{VIP_V6}]:80"), "", &V6);
    let lb = LbDaemon::start_with(&testenv::lb_binary(), &config("proxy", "eth0", &services), &[]).unwrap();
    assert!(lb.log().contains("path=\"proxy\"") || lb.log().contains("path=proxy"), "{}", lb.log());
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
    assert_eq!(servers_reached(&format!("http://[{VIP_V6}]/"), 30), all_three());
    assert!(readyz().contains("\"proxy\""), "{}", readyz());
    // Nothing is pinned in proxy mode: `lb list` asks the daemon's API (on the LB host).
    let bin = testenv::lb_binary();
    let backends = testenv::exec(
        LB_NS,
        &[bin.to_str().unwrap(), "list", "backends", "--json", "--pin-path", testenv::LB_PIN_PATH],
    )
    .unwrap();
    assert!(backends.status.success(), "lb list in proxy mode: {}", String::from_utf8_lossy(&backends.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&backends.stdout).unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().map(|r| r["new_flows"].as_u64().unwrap()).sum::<u64>() >= 60, "proxy counters: {rows:?}");
    let _ = lb;
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_seeds_curl_localhost_8080_reaches_server1_to_3() {
    let _net = Net::up(false);
    let services = service("seed", "0.0.0.0:8080", "", &V4);
    let _lb = LbDaemon::start_with(&testenv::lb_binary(), &config("proxy", "eth0", &services), &[]).unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let body = testenv::curl(LB_NS, "http://localhost:8080/", Duration::from_secs(3)).expect("curl localhost:8080");
        seen.insert(server_of(&body));
    }
    assert_eq!(seen, all_three());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn auto_mode_falls_back_to_the_proxy_where_xdp_cannot_attach_and_says_why() {
    let _net = Net::up(false);
    // Native XDP cannot attach to loopback.
    let services = service("seed", "127.0.0.1:8080", "", &V4);
    let lb = LbDaemon::start_with(&testenv::lb_binary(), &config("auto", "lo", &services), &[]).unwrap();
    let log = lb.log();
    assert!(log.contains("falling back to the userspace proxy"), "{log}");
    assert!(log.contains("XDP attach to lo failed"), "the reason is named: {log}");
    assert!(readyz().contains("\"proxy\""), "{}", readyz());
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(server_of(&testenv::curl(LB_NS, "http://127.0.0.1:8080/", Duration::from_secs(3)).unwrap()));
    }
    assert_eq!(seen, all_three());
}

/// Connections the servers accepted from the LB host (SYNs counted by nftables).
fn count_syns_at_servers() {
    for n in 1..=3u8 {
        let ns = testenv::server_ns(n);
        for cmd in [
            "add table inet lbt",
            "add chain inet lbt in { type filter hook input priority 0 ; }",
            "add rule inet lbt in ip saddr 172.20.0.10 tcp dport 80 tcp flags syn / syn,ack counter",
        ] {
            let args: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
            testenv::exec_ok(&ns, &args).unwrap_or_else(|e| panic!("nft in {ns}: {e:#}"));
        }
    }
}

fn syns_at_servers() -> u64 {
    (1..=3u8)
        .map(|n| {
            let out = testenv::exec_ok(&testenv::server_ns(n), &["nft", "list", "chain", "inet", "lbt", "in"]).unwrap();
            let at = out.find("packets ").expect("counter");
            out[at + 8..].split_whitespace().next().unwrap().parse::<u64>().unwrap()
        })
        .sum()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_http_modes_pool_reuses_upstream_connections() {
    let _net = Net::up(false);
    vips_on_the_lb();
    count_syns_at_servers();
    let extra = "proxy_mode = \"http\"\n[service.health_check]\ntype = \"none\"\n[service.pool]\nmax_idle_per_backend = 8\nidle_timeout = \"30s\"";
    let services = service("web", &format!("{VIP_V4}:80"), extra, &V4);
    let _lb = LbDaemon::start_with(&testenv::lb_binary(), &config("proxy", "eth0", &services), &[]).unwrap();
    const N: usize = 90;
    let reached = servers_reached(&format!("http://{VIP_V4}/"), N);
    assert_eq!(reached, all_three());
    let opened = syns_at_servers();
    assert!(opened * 5 < N as u64, "{opened} upstream connections for {N} requests: the pool should reuse them");
    println!("{N} requests through the http proxy opened {opened} upstream connections");
}

//! Reloads that used to leave the XDP path different from what a fresh start builds, tried
//! as an operator would: real clients through the VIP while the config changes under them,
//! and not one request may fail. Each test names the reload it tries: a service renamed,
//! two services swapping VIPs, a reload to nearly twice as many services as were running
//! (old plus new above the service cap), a health check switched off on a UDP service, and
//! a new `snat_ports` range under a live nat flow. Root only: `cargo xtask test` runs them.
mod common;

use std::time::Duration;

use common::net::*;
use serde_json::Value;
use testenv::{LbDaemon, CLIENT_NS, VIP_V4};

const PIN: &str = testenv::LB_PIN_PATH;

fn daemon_section(extra: &str) -> String {
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{PIN}\"\nadmin_listen = \"172.20.0.10:9100\"\n\
         state_file = \"/run/lbt/state.json\"\n{extra}\n"
    )
}

/// A TCP service on `vip_port` balancing to the given servers (1..=3), no health check.
fn http_service(name: &str, vip_port: u16, servers: &[u8]) -> String {
    let backends: String =
        servers.iter().map(|n| format!("[[service.backend]]\naddress = \"172.20.0.1{n}:80\"\n")).collect();
    format!(
        "[[service]]\nname = \"{name}\"\nvip = \"{VIP_V4}:{vip_port}\"\n\
         [service.health_check]\ntype = \"none\"\n{backends}\n"
    )
}

fn url(port: u16) -> String {
    format!("http://{VIP_V4}:{port}/")
}

/// `n` requests in a row through `port`; each must be answered by one of `servers`.
fn all_answer(port: u16, n: usize, servers: &[u8]) {
    let names: Vec<String> = servers.iter().map(|s| format!("Server{s}")).collect();
    for i in 0..n {
        let body = testenv::curl(CLIENT_NS, &url(port), Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("request {i} to {} failed: {e:#}", url(port)));
        let server = server_of(&body);
        assert!(names.contains(&server), "{} answered by {server}, expected one of {names:?}", url(port));
    }
}

fn no_failures(clients: ClientLoop, what: &str) -> usize {
    let outcomes = clients.finish();
    let failed = failures(&outcomes);
    assert!(failed.is_empty(), "{what}: {} of {} requests failed, first {:?}", failed.len(), outcomes.len(), failed[0]);
    println!("{what}: {} requests, none failed", outcomes.len());
    outcomes.len()
}

fn backend_rows(lb: &LbDaemon) -> Vec<Value> {
    serde_json::from_str(&lb.list_json("backends").expect("lb list backends")).expect("JSON rows")
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn renaming_a_service_keeps_its_vip_answering_and_so_does_a_restart_with_the_new_name() {
    let _net = Net::up(false);
    let mut lb = start(&(daemon_section("") + &http_service("web", 80, &[1, 2, 3])));
    let clients = ClientLoop::start(&url(80));
    std::thread::sleep(Duration::from_millis(300));
    lb.reload(&(daemon_section("") + &http_service("frontend", 80, &[1, 2, 3]))).unwrap();
    all_answer(80, 10, &[1, 2, 3]);
    std::thread::sleep(Duration::from_millis(300));
    no_failures(clients, "rename web -> frontend");

    // A restart that adopts the pins of "frontend" with a config naming it "site".
    std::fs::write(testenv::LB_CONFIG, daemon_section("") + &http_service("site", 80, &[1, 2, 3])).unwrap();
    lb.kill().unwrap();
    let clients = ClientLoop::start(&url(80));
    let lb = LbDaemon::start_with(&testenv::lb_binary(), "", &[]).unwrap();
    all_answer(80, 10, &[1, 2, 3]);
    no_failures(clients, "restart renaming frontend -> site");
    assert!(backend_rows(&lb).iter().all(|r| r["service"] == "site"), "{:?}", backend_rows(&lb));
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn two_services_swapping_their_vips_both_answer_at_their_new_vip() {
    let _net = Net::up(false);
    let before = daemon_section("") + &http_service("a", 80, &[1]) + &http_service("b", 81, &[2]);
    let mut lb = start(&before);
    all_answer(80, 3, &[1]);
    all_answer(81, 3, &[2]);
    let clients = ClientLoop::start(&url(80));
    lb.reload(&(daemon_section("") + &http_service("a", 81, &[1]) + &http_service("b", 80, &[2]))).unwrap();
    all_answer(80, 10, &[2]);
    all_answer(81, 10, &[1]);
    no_failures(clients, "VIP swap");
}

/// Reload with `config` and wait until the pinned VIPs are its `services`: the file watcher
/// and SIGHUP may both reload, and the first "config reloaded" can be the watcher's, still
/// reading the file as it was.
fn reload_to(lb: &mut LbDaemon, config: &str, services: usize) {
    lb.reload(config).unwrap();
    let vips = || serde_json::from_str::<Vec<Value>>(&lb.list_json("vips").unwrap()).unwrap().len();
    let start = std::time::Instant::now();
    while vips() != services && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(vips(), services, "the reload's services are the pinned VIPs");
}

fn many_services(count: u16, servers: &[u8]) -> String {
    (0..count).map(|i| http_service(&format!("svc{i}"), 1000 + i, servers)).collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_reload_to_121_services_from_61_serves_every_new_one_and_lists_no_stray_rows() {
    let _net = Net::up(false);
    let mut lb = start(&(daemon_section("") + &many_services(61, &[1, 2])));
    all_answer(1000, 2, &[1, 2]);
    all_answer(1060, 2, &[1, 2]);
    let clients = ClientLoop::start(&url(1000));
    // Every old service stays (with other backends), 60 new ones join: 121 in all.
    reload_to(&mut lb, &(daemon_section("") + &many_services(121, &[2, 3])), 121);
    for port in [1000, 1060, 1061, 1120] {
        all_answer(port, 4, &[2, 3]);
    }
    no_failures(clients, "61 -> 121 services");
    let rows = backend_rows(&lb);
    assert!(rows.iter().all(|r| r["service"].as_str().is_some_and(|s| s.starts_with("svc"))), "stray rows: {rows:?}");
    // Server1, removed from the 61 old services, drains for its grace period meanwhile.
    let configured = rows.iter().filter(|r| r["source"].to_string().contains("config")).count();
    let retiring = rows.iter().filter(|r| r["source"].to_string().contains("retiring")).count();
    assert_eq!((configured, retiring), (121 * 2, 61), "two backends per service, server1 retiring from the old 61");
    // And back down: the removed services stop answering, the rest carry on.
    reload_to(&mut lb, &(daemon_section("") + &many_services(10, &[1])), 10);
    all_answer(1009, 3, &[1]);
    assert!(testenv::curl(CLIENT_NS, &url(1010), Duration::from_secs(1)).is_err(), "svc10 was removed");
}

fn udp_service(check: &str) -> String {
    let backends: String =
        (1..=3).map(|n| format!("[[service.backend]]\naddress = \"172.20.0.1{n}:5300\"\n")).collect();
    format!(
        "[[service]]\nname = \"dns\"\nvip = \"{VIP_V4}:53\"\nprotocol = \"udp\"\n\
         [service.health_check]\n{check}\n{backends}\n"
    )
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn switching_a_udp_services_check_off_brings_its_down_backends_back_at_once() {
    let _net = Net::up(false);
    let _echoes = UdpEchoes::start();
    // A TCP check on a UDP-only port: every backend goes down.
    let tcp_check = "type = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nunhealthy_threshold = 1";
    let mut lb = start(&(daemon_section("") + &udp_service(tcp_check)));
    let down = || backend_rows(&lb).iter().all(|r| r["health"] == "down");
    let start = std::time::Instant::now();
    while !down() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(down(), "{:?}", backend_rows(&lb));
    assert_eq!(udp_answers(3), 0, "every backend is down");
    lb.reload(&(daemon_section("") + &udp_service("type = \"none\""))).unwrap();
    assert_eq!(udp_answers(5), 5, "with no check, as on a fresh start, every datagram is answered");
    assert!(backend_rows(&lb).iter().all(|r| r["health"] == "unknown"), "{:?}", backend_rows(&lb));
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_new_snat_port_range_keeps_a_live_nat_flow_and_gives_new_flows_the_new_ports() {
    let _net = Net::up(false);
    let service = http_service("web", 80, &[1, 2, 3]);
    let mut lb = start(&(daemon_section("snat_ports = \"20000-20999\"") + &service));
    let (mut conn, client_port) = KeepAliveClient::connect(VIP_V4);
    let pinned = conn.request();
    let clients = ClientLoop::start(&url(80));
    lb.reload(&(daemon_section("snat_ports = \"21000-21999\"") + &service)).unwrap();
    for _ in 0..5 {
        assert_eq!(conn.request(), pinned, "the live flow keeps its backend and its replies");
        std::thread::sleep(Duration::from_millis(200));
    }
    no_failures(clients, "snat_ports change");
    let flows: Vec<Value> = serde_json::from_str(&lb.list_json("flows").unwrap()).unwrap();
    assert!(flows.iter().any(|f| f["client"] == format!("172.20.0.2:{client_port}")), "the live flow is listed");
    all_answer(80, 5, &[1, 2, 3]);
}

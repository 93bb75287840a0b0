//! Control-plane network tests: health checks, agent registration with leases, the admin
//! API's refusals, hot reload, hitless restart and metrics, each under real traffic on the
//! test network. Root only; `cargo xtask test` runs them one at a time.
mod common;

use std::time::{Duration, Instant};

use common::net::*;
use serde_json::Value;
use testenv::{LbDaemon, CLIENT_NS, LB_NS, VIP_V4};

const API: &str = "http://172.20.0.10:9100";
const TOKEN: &str = "s3cret-test-token";
const TOKEN_FILE: &str = "/run/lbt/token";
const INTERVAL: Duration = Duration::from_secs(1);
const HEALTHY: u32 = 2;
const UNHEALTHY: u32 = 2;

fn config(backends: &[(&str, u32)]) -> String {
    let list: String =
        backends.iter().map(|(a, w)| format!("[[service.backend]]\naddress = \"{a}\"\nweight = {w}\n")).collect();
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\nadmin_listen = \"172.20.0.10:9100\"\n\
         token_file = \"{TOKEN_FILE}\"\nstate_file = \"/run/lbt/state.json\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\n\n\
         [service.health_check]\ntype = \"http\"\npath = \"/\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         healthy_threshold = {HEALTHY}\nunhealthy_threshold = {UNHEALTHY}\n\n{list}",
        pin = testenv::LB_PIN_PATH,
    )
}

const THREE: [(&str, u32); 3] = [("172.20.0.11:80", 1), ("172.20.0.12:80", 1), ("172.20.0.13:80", 1)];

fn up_with(backends: &[(&str, u32)]) -> (Net, LbDaemon) {
    let net = Net::up(false);
    std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).unwrap();
    let lb = start(&config(backends));
    (net, lb)
}

fn services() -> Value {
    let (code, body) = api("GET", &format!("{API}/v1/services"), None, None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// What a reload may change: each backend's address, weight, admin state and sources
/// (health and check results move on by themselves).
fn configured() -> Vec<(String, u64, String, String)> {
    let s = services();
    s[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (b["address"].to_string(), b["weight"].as_u64().unwrap(), b["state"].to_string(), b["sources"].to_string())
        })
        .collect()
}

fn backend(address: &str) -> Option<Value> {
    services()[0]["backends"].as_array().unwrap().iter().find(|b| b["address"] == address).cloned()
}

/// Poll until `f` holds (at most `limit`); returns when it first held.
fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Instant {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {limit:?}");
}

fn health_is(address: &str, want: &str) -> bool {
    backend(address).is_some_and(|b| b["health"] == want)
}

fn url() -> String {
    format!("http://{VIP_V4}/")
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_stopped_backend_leaves_within_its_thresholds_and_rejoins_when_it_is_back() {
    let (_net, _lb) = up_with(&THREE);
    for a in ["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"] {
        wait_until(Duration::from_secs(10), "all up", || health_is(a, "up"));
    }
    // A long-lived connection on a healthy backend: server2's flapping must not move it.
    let (mut steady, steady_server) = (0..20)
        .map(|_| {
            let (mut c, _) = KeepAliveClient::connect(VIP_V4);
            let s = c.request();
            (c, s)
        })
        .find(|(_, s)| s != "Server2")
        .expect("a connection to server1 or server3");
    let clients = ClientLoop::start(&url());
    std::thread::sleep(Duration::from_secs(1));

    testenv::stop_server(2).unwrap();
    let stopped = Instant::now();
    let down = wait_until(Duration::from_secs(10), "server2 down", || health_is("172.20.0.12:80", "down"));
    let detection = down - stopped;
    let bound = INTERVAL * UNHEALTHY + INTERVAL;
    assert!(detection <= bound, "detected after {detection:?}, bound {bound:?}");
    let detected = down + Duration::from_millis(200);

    std::thread::sleep(Duration::from_secs(2));
    testenv::start_server(2).unwrap();
    let restarted = Instant::now();
    let up = wait_until(Duration::from_secs(10), "server2 up", || health_is("172.20.0.12:80", "up"));
    let rejoin = up - restarted;
    assert!(rejoin <= INTERVAL * HEALTHY + INTERVAL, "rejoined after {rejoin:?}");
    std::thread::sleep(Duration::from_secs(2));
    let outcomes = clients.finish();
    assert_eq!(steady.request(), steady_server, "a healthy backend's flow stayed through the flap");

    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started > detected).collect();
    let failed: Vec<_> = after.iter().filter(|o| o.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests after detection failed: {:?}",
        failed.len(),
        after.len(),
        failed.first()
    );
    let while_down = after.iter().filter(|o| o.started < restarted);
    assert!(while_down.clone().all(|o| o.result.as_deref() != Ok("Server2")), "server2 got no new flows while down");
    let rejoined = after.iter().filter(|o| o.started > up + Duration::from_millis(200));
    assert!(rejoined.clone().any(|o| o.result.as_deref() == Ok("Server2")), "server2 takes traffic again");
    println!(
        "detection {detection:?} (bound {bound:?}), rejoin {rejoin:?}; {} requests, {} after detection, all ok",
        outcomes.len(),
        after.len()
    );
}

fn spawn_agent(ttl: &str) -> std::process::Child {
    let bin = testenv::lb_binary();
    testenv::spawn(
        &testenv::server_ns(4),
        &[
            bin.to_str().unwrap(),
            "agent",
            "--api",
            API,
            "--service",
            "web",
            "--address",
            "172.20.0.14:80",
            "--ttl",
            ttl,
            "--token-file",
            TOKEN_FILE,
            "--drain-time",
            "1s",
        ],
    )
    .expect("spawn lb agent")
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn an_agent_registers_a_fourth_backend_which_leaves_when_its_lease_runs_out_or_the_agent_stops() {
    let (_net, _lb) = up_with(&THREE);
    testenv::add_server(4).unwrap();
    let mut agent = spawn_agent("2s");
    wait_until(Duration::from_secs(10), "registered", || backend("172.20.0.14:80").is_some());
    wait_until(Duration::from_secs(10), "server4 gets traffic", || servers_reached(&url(), 20).contains("Server4"));
    assert_eq!(backend("172.20.0.14:80").unwrap()["sources"], serde_json::json!(["registration"]));

    // SIGKILL: no goodbye; the lease runs out (TTL 2 s, checked every second).
    agent.kill().unwrap();
    agent.wait().unwrap();
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(6), "lease expired", || {
        backend("172.20.0.14:80").is_none_or(|b| b["sources"] == serde_json::json!(["retiring"]))
    });
    println!("lease expired {:?} after the agent was killed", gone - killed);
    assert!(!servers_reached(&url(), 30).contains("Server4"), "no new flows after expiry");
    wait_until(Duration::from_secs(15), "gone after its grace", || backend("172.20.0.14:80").is_none());

    // SIGTERM: the agent drains, then deregisters; no request fails meanwhile.
    let mut agent = spawn_agent("3s");
    wait_until(Duration::from_secs(10), "server4 back", || servers_reached(&url(), 20).contains("Server4"));
    let clients = ClientLoop::start(&url());
    std::thread::sleep(Duration::from_secs(1));
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().unwrap();
    assert!(status.success(), "agent exit {status}");
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = clients.finish();
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes).first());
    assert!(backend("172.20.0.14:80").is_none_or(|b| b["sources"] == serde_json::json!(["retiring"])));
    println!("{} requests while the agent drained and left, none failed", outcomes.len());

    // Back again after a clean goodbye: ready, not stuck in the drain it left with.
    let mut agent = spawn_agent("3s");
    wait_until(Duration::from_secs(10), "re-registered", || {
        backend("172.20.0.14:80").is_some_and(|b| b["sources"] == serde_json::json!(["registration"]))
    });
    assert_eq!(backend("172.20.0.14:80").unwrap()["state"], "ready");
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_admin_api_refuses_bad_calls_and_they_change_nothing() {
    let (_net, lb) = up_with(&THREE);
    let before = configured();
    let register = format!("{API}/v1/services/web/backends");
    let good = r#"{"address":"172.20.0.14:80","weight":1,"ttl":"10s"}"#;
    // (what, url, token, body, expected status)
    type Case<'a> = (&'a str, String, Option<&'a str>, Option<String>, u16);
    let cases: Vec<Case> = vec![
        ("no token", register.clone(), None, Some(good.into()), 401),
        ("wrong token", register.clone(), Some("nope"), Some(good.into()), 401),
        ("malformed body", register.clone(), Some(TOKEN), Some("{\"address\":".into()), 400),
        ("bad address", register.clone(), Some(TOKEN), Some(r#"{"address":"not-an-address"}"#.into()), 400),
        (
            "oversized body",
            register.clone(),
            Some(TOKEN),
            Some(format!("{{\"address\":\"{}\"}}", "x".repeat(20_000))),
            413,
        ),
        ("unknown service", format!("{API}/v1/services/nope/backends"), Some(TOKEN), Some(good.into()), 404),
    ];
    for (what, url, token, body, want) in cases {
        let (code, text) = api("POST", &url, token, body.as_deref());
        assert_eq!(code, want, "{what}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not a JSON error: {text}"));
        assert!(v["error"].is_string(), "{what}: {text}");
    }
    let (code, _) = api(
        "PUT",
        &format!("{API}/v1/services/web/backends/172.20.0.11:80/state"),
        Some("nope"),
        Some(r#"{"state":"maint"}"#),
    );
    assert_eq!(code, 401);
    assert_eq!(configured(), before, "nothing changed");

    // `lb backend set-state` through the API, and `lb list backends` shows it.
    let bin = testenv::lb_binary();
    let out = testenv::exec(
        CLIENT_NS,
        &[
            bin.to_str().unwrap(),
            "backend",
            "set-state",
            "--api",
            API,
            "--token-file",
            TOKEN_FILE,
            "--service",
            "web",
            "--address",
            "172.20.0.13:80",
            "drain",
        ],
    )
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_str(&lb.list_json("backends").unwrap()).unwrap();
    let row = rows.iter().find(|r| r["address"] == "172.20.0.13:80").unwrap();
    assert_eq!(row["state"], "drain");
    assert!(!servers_reached(&url(), 30).contains("Server3"), "drain takes no new flows");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn reloads_under_load_lose_no_request_and_keep_established_connections() {
    let (_net, mut lb) = up_with(&THREE);
    testenv::add_server(4).unwrap();
    let (mut conn, _) = KeepAliveClient::connect(VIP_V4);
    let pinned = conn.request();
    let keep = format!("172.20.0.1{}:80", pinned.trim_start_matches("Server"));
    let other = THREE.iter().map(|b| b.0).find(|a| *a != keep).unwrap();
    let clients = ClientLoop::start(&url());
    let reloads = |n: u64| move || metric_value("lb_config_reloads_total", &[("result", "success")]) >= n as f64;

    // 1. Add a backend by rewriting the file: the watcher notices.
    let mut four: Vec<(&str, u32)> = THREE.to_vec();
    four.push(("172.20.0.14:80", 1));
    std::fs::write(testenv::LB_CONFIG, config(&four)).unwrap();
    wait_until(Duration::from_secs(5), "reload on file change", reloads(1));
    assert_eq!(conn.request(), pinned);
    // 2. Remove one (not the connection's) with SIGHUP.
    let three: Vec<(&str, u32)> = four.iter().copied().filter(|b| b.0 != other).collect();
    lb.reload(&config(&three)).unwrap();
    assert_eq!(conn.request(), pinned);
    // 3. Change weights through the API.
    let weighted: Vec<(&str, u32)> =
        three.iter().map(|(a, _)| (*a, if *a == "172.20.0.14:80" { 3 } else { 1 })).collect();
    std::fs::write(testenv::LB_CONFIG, config(&weighted)).unwrap();
    wait_until(Duration::from_secs(5), "reload 3", reloads(3));
    let (code, body) = api("POST", &format!("{API}/v1/reload"), Some(TOKEN), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(conn.request(), pinned);
    // 4. An invalid file changes nothing and says why.
    let before = configured();
    std::fs::write(testenv::LB_CONFIG, "[[service]]\nname = \"web\"\nvip = \"nonsense\"\n").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (code, body) = api("POST", &format!("{API}/v1/reload"), Some(TOKEN), None);
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("lb.toml:3"), "{body}");
    assert_eq!(configured(), before, "the running config stays");
    assert!(metric_value("lb_config_reloads_total", &[("result", "failure")]) >= 1.0);
    assert_eq!(conn.request(), pinned);

    std::thread::sleep(Duration::from_millis(500));
    let outcomes = clients.finish();
    assert!(
        failures(&outcomes).is_empty(),
        "{} failed, first {:?}",
        failures(&outcomes).len(),
        failures(&outcomes).first()
    );
    // "172.20.0.1N:80" is ServerN.
    let removed = format!("Server{}", other.trim_start_matches("172.20.0.1").trim_end_matches(":80"));
    let after_removal: Vec<&Outcome> = outcomes.iter().rev().take(20).collect();
    assert!(
        after_removal.iter().all(|o| o.result.as_deref() != Ok(removed.as_str())),
        "{removed} was removed and gets no new flows"
    );
    println!(
        "{} requests through 4 reloads, none failed; the long-lived connection stayed on {pinned}",
        outcomes.len()
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_killed_daemon_leaves_traffic_flowing_and_its_successor_adopts_the_flows() {
    let (_net, mut lb) = up_with(&THREE);
    let (mut conn, port) = KeepAliveClient::connect(VIP_V4);
    let pinned = conn.request();
    let clients = ClientLoop::start(&url());
    std::thread::sleep(Duration::from_millis(500));
    lb.kill().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(conn.request(), pinned, "forwarding without a daemon");
    let lb = LbDaemon::start_with(&testenv::lb_binary(), "", &[]).unwrap();
    assert!(lb.log().contains("adopting the pinned data path"), "{}", lb.log());
    assert_eq!(conn.request(), pinned, "the flow survived the restart");
    let flows: Vec<Value> = serde_json::from_str(&lb.list_json("flows").unwrap()).unwrap();
    assert!(flows.iter().any(|f| f["client"] == format!("172.20.0.2:{port}")), "flow table kept");
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = clients.finish();
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes).first());
    println!("{} requests across a SIGKILL and restart, none failed", outcomes.len());
}

/// One sample of a metric from /metrics, parsed with a real Prometheus parser.
fn metric_value(name: &str, labels: &[(&str, &str)]) -> f64 {
    samples()
        .into_iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn samples() -> Vec<prometheus_parse::Sample> {
    let (code, body) = api("GET", &format!("{API}/metrics"), None, None);
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text").samples
}

/// Packets each server received from the LB's SNAT ports, counted by nftables in the
/// server's namespace (health checks come from ephemeral ports and are not counted).
fn count_at_servers() {
    for n in 1..=3u8 {
        let ns = testenv::server_ns(n);
        for cmd in [
            "add table inet lbt",
            "add chain inet lbt in { type filter hook input priority 0 ; }",
            "add rule inet lbt in ip saddr 172.20.0.10 tcp sport 20000-32767 counter",
        ] {
            let args: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
            testenv::exec_ok(&ns, &args).unwrap_or_else(|e| panic!("nft in {ns}: {e:#}"));
        }
    }
}

fn counted_at_server(n: u8) -> f64 {
    let out = testenv::exec_ok(&testenv::server_ns(n), &["nft", "list", "chain", "inet", "lbt", "in"]).unwrap();
    let at = out.find("packets ").expect("counter");
    out[at + 8..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn metrics_parse_as_prometheus_text_and_count_what_the_servers_received() {
    let (_net, _lb) = up_with(&THREE);
    count_at_servers();
    for _ in 0..60 {
        testenv::curl(CLIENT_NS, &url(), Duration::from_secs(3)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let names: std::collections::BTreeSet<String> = samples().into_iter().map(|s| s.metric).collect();
    for want in [
        "lb_backend_up",
        "lb_backend_packets_total",
        "lb_backend_bytes_total",
        "lb_backend_new_flows_total",
        "lb_xdp_actions_total",
        "lb_drops_total",
        "lb_config_reloads_total",
        "lb_registrations",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("lb_health_check_duration_seconds")), "{names:?}");
    for n in 1..=3u8 {
        let backend = format!("172.20.0.1{n}:80");
        let exported = metric_value("lb_backend_packets_total", &[("service", "web"), ("backend", &backend)]);
        let received = counted_at_server(n);
        assert!(received > 0.0, "server{n} got traffic");
        assert!(
            (exported - received).abs() <= received * 0.01,
            "{backend}: /metrics says {exported}, the server received {received}"
        );
        println!("{backend}: /metrics {exported} packets, server counted {received}");
    }
    let _ = LB_NS;
}

//! Traffic management on the test network with real clients (new TCP connections from the
//! client namespace to the seed's backends), on both paths: a weight set through the CLI
//! shifts the share and `clear` undoes it, a backend back from maintenance ramps its share
//! over `slow_start` (measured per second), and `persistence_timeout` keeps a client on
//! one backend until that backend leaves the rotation. Root only: `cargo xtask test`.
mod common;

use std::collections::BTreeMap;

use common::net::*;
use serde_json::Value;
use testenv::{LbDaemon, CLIENT_NS, LB_NS, VIP_V4};

const TOKEN: &str = "s3cret-test-token";
const TOKEN_FILE: &str = "/run/lbt/token";
const STATE_FILE: &str = "/run/lbt/state.json";
const SERVER1: &str = "172.20.0.11:80";
const SERVER2: &str = "172.20.0.12:80";

/// The daemon's config: `mode` xdp or proxy, the API where the client can reach it.
fn config(mode: &str, service_keys: &str) -> String {
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"{mode}\"\npin_path = \"{pin}\"\n\
         admin_listen = \"172.20.0.10:9100\"\ntoken_file = \"{TOKEN_FILE}\"\nstate_file = \"{STATE_FILE}\"\n\
         workers = 2\n\n[[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\n{service_keys}\n\
         [service.health_check]\ninterval = \"1s\"\n\
         [[service.backend]]\naddress = \"{SERVER1}\"\n[[service.backend]]\naddress = \"{SERVER2}\"\n",
        pin = testenv::LB_PIN_PATH
    )
}

/// The test network for `mode`'s scenarios (the proxy needs the VIP on the LB itself).
fn network(mode: &str) -> Net {
    let net = Net::up(false);
    std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).unwrap();
    if mode == "proxy" {
        testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{VIP_V4}/32"), "dev", "lo"]).unwrap();
    }
    net
}

/// A daemon of its own for one scenario, with an empty state file.
fn daemon(mode: &str, service_keys: &str) -> LbDaemon {
    let _ = std::fs::remove_file(STATE_FILE);
    start(&config(mode, service_keys))
}

/// New connections from the client for `seconds`, at most `per_second` a second (bounded
/// in count and time): which server answered each, by the second it was sent in.
fn shares(seconds: u32, per_second: u32) -> Vec<BTreeMap<String, u32>> {
    const CLIENT: &str = r#"
import http.client, json, sys, time
host, seconds, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = time.monotonic()
out = [dict() for _ in range(seconds)]
while True:
    t = time.monotonic() - start
    second = int(t)
    if second >= seconds:
        break
    try:
        c = http.client.HTTPConnection(host, 80, timeout=2)
        c.request("GET", "/", headers={"Connection": "close"})
        server = json.loads(c.getresponse().read())["server"]
        c.close()
    except Exception as e:
        server = "error:" + type(e).__name__
    out[second][server] = out[second].get(server, 0) + 1
    time.sleep(max(0.0, (second + (sum(out[second].values())) / rate) - (time.monotonic() - start)))
print(json.dumps(out))
"#;
    let text =
        testenv::exec_ok(CLIENT_NS, &["python3", "-c", CLIENT, VIP_V4, &seconds.to_string(), &per_second.to_string()])
            .unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("client said {text:?}: {e}"))
}

/// Server `name`'s share of the answers in `seconds`, and the total; no errors allowed.
fn share_of(name: &str, seconds: &[BTreeMap<String, u32>]) -> (f64, u32) {
    let mut total = 0;
    let mut hits = 0;
    for s in seconds {
        for (server, n) in s {
            assert!(!server.starts_with("error"), "a connection failed: {seconds:?}");
            total += n;
            if server == name {
                hits += n;
            }
        }
    }
    (f64::from(hits) / f64::from(total.max(1)), total)
}

fn cli(args: &[&str]) -> String {
    let bin = testenv::lb_binary();
    let mut all = vec![bin.to_str().unwrap(), "backend"];
    all.extend_from_slice(args);
    all.extend(["--api", "http://172.20.0.10:9100", "--token-file", TOKEN_FILE]);
    testenv::exec_ok(CLIENT_NS, &all).unwrap_or_else(|e| panic!("lb backend {args:?}: {e:#}"))
}

fn backend_view(address: &str) -> Value {
    let (status, body) = api("GET", "http://172.20.0.10:9100/v1/services", None, None);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v[0]["backends"].as_array().unwrap().iter().find(|b| b["address"] == address).cloned().unwrap()
}

fn set_state(address: &str, state: &str) {
    let body = format!("{{\"state\":\"{state}\"}}");
    let url = format!("http://172.20.0.10:9100/v1/services/web/backends/{address}/state");
    let (status, answer) = api("PUT", &url, Some(TOKEN), Some(&body));
    assert_eq!(status, 200, "{answer}");
}

/// A weight set with the CLI moves the share at once and is kept in the state file;
/// `clear` puts the config's back.
fn runtime_weights(mode: &str) {
    let _lb = daemon(mode, "algorithm = \"weighted_round_robin\"");
    assert_eq!(cli(&["set-weight", "--service", "web", "--address", SERVER1, "3"]).trim(), "3");
    assert_eq!(backend_view(SERVER1)["api_weight"], 3);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(STATE_FILE).unwrap()).unwrap();
    assert_eq!(state["weights"][0]["weight"], 3, "{state}");
    let (share, n) = share_of("Server1", &shares(3, 40));
    eprintln!("{mode}: weight 3:1, Server1 took {:.0}% of {n}", share * 100.0);
    assert!((0.62..=0.88).contains(&share), "3:1 gives Server1 about 75%: {share:.2} of {n}");
    assert_eq!(cli(&["set-weight", "--service", "web", "--address", SERVER1, "clear"]).trim(), "cleared");
    assert!(backend_view(SERVER1).get("api_weight").is_none());
    let (share, n) = share_of("Server1", &shares(3, 40));
    eprintln!("{mode}: cleared, Server1 took {:.0}% of {n}", share * 100.0);
    assert!((0.38..=0.62).contains(&share), "1:1 again: {share:.2} of {n}");
}

/// Server2 back from maintenance takes a growing share over the 6 s window: per second.
fn slow_start(mode: &str) {
    let _lb = daemon(mode, "algorithm = \"weighted_round_robin\"\nslow_start = \"6s\"");
    set_state(SERVER2, "maint");
    set_state(SERVER2, "ready");
    assert!(backend_view(SERVER2)["slow_start_percent"].as_u64().is_some_and(|p| p < 30));
    let (_, metrics) = api("GET", "http://172.20.0.10:9100/metrics", None, None);
    let share = format!("lb_backend_share_percent{{service=\"web\",backend=\"{SERVER2}\"}} ");
    let line = metrics.lines().find(|l| l.starts_with(&share)).unwrap_or_else(|| panic!("{share} in {metrics}"));
    assert!(line[share.len()..].parse::<u32>().is_ok_and(|p| p < 30), "ramping: {line}");
    let seconds = shares(8, 40);
    let per_second: Vec<String> =
        seconds.iter().map(|s| format!("{:.0}%", share_of("Server2", std::slice::from_ref(s)).0 * 100.0)).collect();
    eprintln!("{mode}: Server2's share per second after it came back: {}", per_second.join(" "));
    let (early, _) = share_of("Server2", &seconds[0..1]);
    let (middle, _) = share_of("Server2", &seconds[2..4]);
    let (late, _) = share_of("Server2", &seconds[6..8]);
    assert!(early < 0.2, "the first second: a small share ({early:.2}): {per_second:?}");
    assert!(middle > early, "growing ({early:.2} then {middle:.2}): {per_second:?}");
    assert!(late > 0.4, "after the window: its full half ({late:.2}): {per_second:?}");
    assert!(backend_view(SERVER2).get("slow_start_percent").is_none(), "the ramp is over");
}

/// One client's new connections stay on one backend; draining it moves them, to one other.
fn persistence(mode: &str) {
    let lb = daemon(mode, "algorithm = \"round_robin\"\npersistence_timeout = \"30s\"");
    let first = shares(2, 15);
    let reached: Vec<&String> = first.iter().flat_map(|s| s.keys()).collect();
    let stuck = reached[0].clone();
    // Persistence ends when the backend leaves rotation (health, next hop, state): the
    // daemon's log and the backends as they are now say which, should this fail.
    assert!(
        reached.iter().all(|s| **s == stuck),
        "round robin, yet one backend: {first:?}\nbackends: {}\n{}",
        lb.list_json("backends").unwrap_or_default(),
        lb.log()
    );
    let (address, other) = if stuck == "Server1" { (SERVER1, "Server2") } else { (SERVER2, "Server1") };
    set_state(address, "drain");
    let moved = shares(2, 15);
    let (share, n) = share_of(other, &moved);
    eprintln!("{mode}: persisted on {stuck}; drained, {n} connections went to {other}: {:.0}%", share * 100.0);
    assert_eq!(share, 1.0, "a draining backend ends persistence; the client persists on the other: {moved:?}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn xdp_weights_slow_start_and_persistence() {
    let _net = network("xdp");
    runtime_weights("xdp");
    slow_start("xdp");
    persistence("xdp");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn proxy_weights_slow_start_and_persistence() {
    let _net = network("proxy");
    runtime_weights("proxy");
    slow_start("proxy");
    persistence("proxy");
}

//! Idle connections must not starve health checks: a real `lb run` on the test network,
//! started with a soft RLIMIT_NOFILE of 1024, while the client namespace holds ~1100 idle
//! TCP connections to the admin API. Requests through the VIP all succeed and no backend
//! flaps down. Twice: with the usual hard limit above it (the daemon raises its soft limit
//! and says so), and with the hard limit at 1024 too (then the admin API's connection cap
//! is what keeps descriptors for the checks). Root only: `cargo xtask test` runs them.
mod common;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

use common::net::*;
use serde_json::Value;
use testenv::{LbDaemon, CLIENT_NS, VIP_V4};

const ADMIN: &str = "172.20.0.10:9100";
const IDLE_CONNECTIONS: usize = 1100;
/// `lb` behind a shell that sets the descriptor limit first (`exec` keeps the pid).
const WRAPPER: &str = "/run/lbt/lb-nofile.sh";

fn config() -> String {
    let backends: String = (1..=3).map(|n| format!("[[service.backend]]\naddress = \"172.20.0.1{n}:80\"\n")).collect();
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\nadmin_listen = \"{ADMIN}\"\n\
         state_file = \"/run/lbt/state.json\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\n\
         [service.health_check]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"1s\"\nunhealthy_threshold = 2\n\
         {backends}",
        pin = testenv::LB_PIN_PATH
    )
}

/// Starts the daemon with `ulimit` applied to it (e.g. "-S -n 1024").
fn start_limited(ulimit: &str) -> LbDaemon {
    let bin = testenv::lb_binary();
    std::fs::create_dir_all(testenv::RUN_DIR).unwrap();
    std::fs::write(WRAPPER, format!("#!/bin/sh\nulimit {ulimit} || exit 97\nexec {} \"$@\"\n", bin.display())).unwrap();
    std::fs::set_permissions(WRAPPER, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_file("/run/lbt/state.json");
    LbDaemon::start(std::path::Path::new(WRAPPER), &config()).unwrap_or_else(|e| panic!("lb run: {e:#}"))
}

/// A client-namespace process holding idle connections to the admin API until its stdin
/// closes. It opens them one after another (each connect bounded, all within 20 s) and
/// prints how many the LB's kernel accepted.
struct IdleConnections {
    child: Child,
    opened: usize,
}

const HOLDER: &str = r#"
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port = sys.argv[1].rsplit(":", 1)
held, deadline = [], time.time() + 20
for _ in range(int(sys.argv[2])):
    if time.time() > deadline:
        break
    try:
        held.append(socket.create_connection((host, int(port)), timeout=2))
    except OSError:
        pass
print(len(held), flush=True)
sys.stdin.read()
for s in held:
    s.close()
"#;

impl IdleConnections {
    fn open(n: usize) -> Self {
        let python = testenv::python();
        let mut child = testenv::spawn(CLIENT_NS, &[&python, "-c", HOLDER, ADMIN, &n.to_string()]).unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let opened = line.trim().parse().unwrap_or_else(|_| panic!("holder said {line:?}"));
        IdleConnections { child, opened }
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        // Closing its stdin tells the holder to close its connections and exit.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Of `n` requests through the VIP, how many succeeded.
fn requests_through_the_vip(n: usize) -> usize {
    let url = format!("http://{VIP_V4}/");
    (0..n).filter(|_| testenv::curl(CLIENT_NS, &url, Duration::from_secs(3)).is_ok()).count()
}

/// (backend, health) of the web service, from the admin API once it answers again.
fn health(within: Duration) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        if let Ok(body) = testenv::curl(CLIENT_NS, &format!("http://{ADMIN}/v1/services"), Duration::from_secs(2)) {
            let v: Value = serde_json::from_str(&body).unwrap();
            return v[0]["backends"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| (b["address"].as_str().unwrap().to_string(), b["health"].as_str().unwrap().to_string()))
                .collect();
        }
        assert!(start.elapsed() < within, "the admin API did not answer within {within:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn metric(name: &str) -> Option<f64> {
    let body = testenv::curl(CLIENT_NS, &format!("http://{ADMIN}/metrics"), Duration::from_secs(3)).ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn under_pressure(lb: &LbDaemon) {
    // Every backend checked up first.
    let start = Instant::now();
    while health(Duration::from_secs(5)).iter().any(|(_, h)| h != "up") {
        assert!(start.elapsed() < Duration::from_secs(15), "backends up before the test: {:?}", health(Duration::ZERO));
        std::thread::sleep(Duration::from_millis(300));
    }
    let fds_before = open_descriptors(lb);
    let idle = IdleConnections::open(IDLE_CONNECTIONS);
    let fds_during = open_descriptors(lb);
    // Health checks run every second: three rounds under pressure (two failures would
    // have made a backend down).
    std::thread::sleep(Duration::from_secs(3));
    let ok = requests_through_the_vip(10);
    let opened = idle.opened;
    drop(idle);
    let rows = health(Duration::from_secs(20));
    let refused = metric("lb_admin_connections_refused_total");
    let local = metric("lb_health_check_local_errors_total");
    eprintln!(
        "idle connections opened: {opened}; daemon descriptors before/during: {fds_before}/{fds_during}; \
         VIP requests ok: {ok}/10; admin connections refused: {refused:?}; local check errors: {local:?}; health: {rows:?}"
    );
    assert!(opened >= 1000, "the pressure was applied: {opened} connections");
    assert_eq!(ok, 10, "every request through the VIP succeeded");
    assert!(rows.iter().all(|(_, h)| h == "up"), "no backend went down: {rows:?}");
    let flapped = lb.log().lines().any(|l| l.contains("health changed") && l.contains("down"));
    assert!(!flapped, "no backend flapped down; log:\n{}", lb.log());
}

fn open_descriptors(lb: &LbDaemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", lb.pid().unwrap())).map(|d| d.count()).unwrap_or(0)
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn idle_admin_connections_at_a_soft_limit_of_1024_starve_no_health_check() {
    let _net = Net::up(false);
    let lb = start_limited("-S -n 1024");
    under_pressure(&lb);
    let log = lb.log();
    assert!(
        log.contains("soft_before=1024") && log.contains("soft raised to the hard limit"),
        "the daemon logged the raised limit:\n{log}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn idle_admin_connections_at_a_hard_limit_of_1024_starve_no_health_check() {
    let _net = Net::up(false);
    let lb = start_limited("-n 1024");
    under_pressure(&lb);
    assert!(lb.log().contains("hard=1024"), "the daemon logged its limits:\n{}", lb.log());
    assert!(metric("lb_admin_connections_refused_total").unwrap_or(0.0) > 0.0, "the cap did the work");
}

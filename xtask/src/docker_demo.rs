//! `cargo xtask docker-demo`: the seed's Docker environment for real. The compose project up
//! (three backends, the lb container with XDP on its eth0, a client), 30 requests from the
//! client container through the VIP, what `lb list` shows inside the lb container, then the
//! seed's own scenario on the Docker host: `lb run` in proxy mode on 0.0.0.0:8080 and `curl
//! localhost:8080`. Everything is removed afterwards (on failure and on Ctrl-C too), and a
//! dockerd started for the demo is stopped.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Result};
use testenv::docker::{self, DockerEnv, Engine, HostProxy, Outcome, CLIENT_CONTAINER, LB_CONTAINER, VIP};

const XDP_REQUESTS: usize = 30;
const PROXY_REQUESTS: usize = 9;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn run(engine: Engine) -> Result<()> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    // The Docker network uses the netns test network's addresses: never both at once.
    let _lock = testenv::lock_network()?;
    println!("==> docker-compose up: backend_server1..3, {LB_CONTAINER} (lb, XDP on eth0), {CLIENT_CONTAINER}");
    let env = DockerEnv::up(&testenv::lb_binary())?;
    let bridge = env.bridge()?;
    println!("    network lb_network on bridge {bridge}");
    let outcome = show();
    println!("\n==> docker-compose down");
    let down = env.down();
    let left = docker::leftovers(&bridge);
    let ours = engine.started_here();
    let stopped = engine.stop();
    outcome?;
    down?;
    stopped?;
    let left = left?;
    if !left.is_empty() {
        bail!("left after down: {left:?}");
    }
    if ours && docker::docker(&["info"]).is_ok() {
        bail!("the dockerd started for the demo still answers");
    }
    println!("==> nothing of the demo is left: no container, network, bridge, firewall rule or XDP program of ours");
    if ours {
        println!("==> and the dockerd started for it is stopped");
    }
    Ok(())
}

fn show() -> Result<()> {
    check_interrupt()?;
    println!("\n==> {XDP_REQUESTS} requests from {CLIENT_CONTAINER} to http://{VIP}/ (XDP in {LB_CONTAINER})");
    let outcomes = docker::requests(XDP_REQUESTS, Duration::ZERO)?;
    let xdp_shares = shares(outcomes.iter().map(|o: &Outcome| o.result.clone()));
    print_shares(&xdp_shares, XDP_REQUESTS);
    check_interrupt()?;
    for what in ["vips", "backends"] {
        println!("\n==> docker exec {LB_CONTAINER} lb list {what}");
        print!("{}", docker::lb_list(&["list", what])?);
    }
    require_all_three("XDP", &xdp_shares)?;
    check_interrupt()?;

    let proxy = HostProxy::start(&testenv::lb_binary())?;
    println!("\n==> the seed's scenario on this host: lb run, proxy mode, with\n{}", indent(&HostProxy::config()));
    println!("==> {PROXY_REQUESTS} x curl localhost:8080");
    let answers = (0..PROXY_REQUESTS).map(|_| docker::curl_host(Duration::from_secs(3)).map_err(|e| format!("{e:#}")));
    let proxied: Vec<Result<String, String>> = answers.map(|a| a.map(|body| server_of(&body))).collect();
    for (i, answer) in proxied.iter().enumerate() {
        println!("  curl {:>2}: {}", i + 1, answer.as_deref().unwrap_or_else(|e| e));
    }
    let proxy_shares = shares(proxied.into_iter());
    print_shares(&proxy_shares, PROXY_REQUESTS);
    proxy.stop()?;
    require_all_three("the proxy", &proxy_shares)
}

fn shares(results: impl Iterator<Item = Result<String, String>>) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    for result in results {
        *shares.entry(result.unwrap_or_else(|e| format!("failed ({e})"))).or_default() += 1;
    }
    shares
}

fn print_shares(shares: &BTreeMap<String, usize>, of: usize) {
    for (server, n) in shares {
        println!("  {server}: {n} of {of}");
    }
}

fn require_all_three(path: &str, shares: &BTreeMap<String, usize>) -> Result<()> {
    let answered = ["Server1", "Server2", "Server3"].iter().filter(|s| shares.contains_key(**s)).count();
    if answered < 3 || shares.keys().any(|k| k.starts_with("failed")) {
        bail!("through {path}: {shares:?}; want all three servers and no failure");
    }
    println!("==> all three servers answered through {path}");
    Ok(())
}

fn server_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["server"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("unreadable answer {body:?}"))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

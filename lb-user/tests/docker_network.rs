//! The seed's Docker environment (`testenv/docker/`) with a real Docker engine: the lb
//! container balancing the client container's requests in XDP, the seed's `curl
//! localhost:8080` through `lb run` in proxy mode on the Docker host, a backend container
//! stopped and started again, and nothing of ours left afterwards. Root only; `cargo xtask
//! test` runs it in its own layer (after `cargo xtask deps --docker`), and it fails, never
//! skips, when Docker cannot run.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use testenv::docker::{self, DockerEnv, Engine, HostProxy, Outcome};

const SERVERS: [&str; 3] = ["Server1", "Server2", "Server3"];
/// The lb container's health check (testenv/docker/lb.toml): 1 s interval, 2 to go down or up.
const INTERVAL: Duration = Duration::from_secs(1);
const THRESHOLD: u32 = 2;

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_seeds_docker_environment_balances_by_xdp_and_by_proxy_and_follows_a_stopped_container() {
    testenv::require_root();
    // The Docker network uses the netns network's addresses: never both at once.
    let waited = Instant::now();
    let _lock = testenv::lock_network().expect("lock the test network");
    let start = Instant::now();
    println!("the test network's lock after {:.1} s", (start - waited).as_secs_f64());
    let engine = Engine::ensure().unwrap_or_else(|e| panic!("Docker cannot run here: {e:#}"));
    let env = DockerEnv::up(&testenv::lb_binary()).unwrap_or_else(|e| panic!("docker-compose up: {e:#}"));
    let bridge = env.bridge().expect("the network's bridge");

    xdp_path_reaches_all_three_servers();
    proxy_path_reaches_all_three_servers();
    a_stopped_container_leaves_and_rejoins();

    env.down().unwrap_or_else(|e| panic!("docker-compose down: {e:#}"));
    nothing_of_ours_is_left(&bridge);
    let ours = engine.started_here();
    engine.stop().expect("stop the dockerd started here");
    if ours {
        assert!(!docker_answers(), "the dockerd started here still answers after stop");
    }
    println!("{:.1} s from the lock to the end", start.elapsed().as_secs_f64());
}

/// 30 requests from the client container through the VIP: every one answered, by all three
/// servers, and the lb container's XDP program sent them (XDP_TX counted).
fn xdp_path_reaches_all_three_servers() {
    let tx_before = xdp_tx();
    let outcomes = docker::requests(30, Duration::ZERO).expect("requests from the client container");
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    assert!(failed.is_empty(), "{} of 30 requests through XDP failed: {:?}", failed.len(), failed.first());
    let shares = shares(&outcomes);
    assert_eq!(shares.keys().cloned().collect::<Vec<_>>(), SERVERS, "{shares:?}");
    let tx = xdp_tx() - tx_before;
    // Each request is at least a SYN-ACK, an ACK and an answer each way through XDP_TX.
    assert!(tx >= 30 * 4, "the lb container's XDP program sent {tx} frames for 30 requests");
    println!("XDP: {shares:?}, {tx} frames by XDP_TX");
}

/// The seed's own scenario: `lb run` in proxy mode on 0.0.0.0:8080 on the Docker host,
/// `curl localhost:8080` balanced over the three containers.
fn proxy_path_reaches_all_three_servers() {
    let proxy = HostProxy::start(&testenv::lb_binary()).unwrap_or_else(|e| panic!("lb run (proxy): {e:#}"));
    let mut shares: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..15 {
        let body = docker::curl_host(Duration::from_secs(3)).unwrap_or_else(|e| panic!("curl localhost:8080: {e:#}"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        *shares.entry(v["server"].as_str().expect("server field").to_string()).or_default() += 1;
    }
    proxy.stop().expect("stop lb run (proxy)");
    assert_eq!(shares.keys().cloned().collect::<Vec<_>>(), SERVERS, "{shares:?}");
    println!("proxy: {shares:?}");
}

/// `docker stop backend_server2` while the client sends requests: the health check marks it
/// down within its thresholds and no request started after that fails; `docker start`: it
/// comes back up and takes requests again.
fn a_stopped_container_leaves_and_rejoins() {
    // 0.1 s apart, each at most 2 s: enough for the stop, the detection, the start and more.
    let clients = docker::ClientLoop::start(120, Duration::from_millis(100)).expect("client loop");
    std::thread::sleep(Duration::from_secs(1));
    docker::stop_server(2).expect("docker stop backend_server2");
    let stopped = Instant::now();
    let down = docker::wait_backend_health(2, "down", Duration::from_secs(10)).expect("server2 marked down");
    let detection = down - stopped;
    // One interval of phase, the failing checks (each up to its 500 ms timeout), and a second
    // for `docker exec lb list` polling on top (3.07 s seen on 2 busy cores).
    let bound = INTERVAL * (THRESHOLD + 1) + Duration::from_secs(1);
    assert!(detection <= bound, "server2 marked down after {detection:?}, bound {bound:?}");
    // A request in flight when the check reported may still have gone to server2.
    let detected = down + Duration::from_millis(500);

    std::thread::sleep(Duration::from_secs(2));
    docker::start_server(2).expect("docker start backend_server2");
    let restarted = Instant::now();
    let up = docker::wait_backend_health(2, "up", Duration::from_secs(10)).expect("server2 back up");
    let rejoin = up - restarted;
    assert!(rejoin <= bound, "server2 up after {rejoin:?}, bound {bound:?}");
    let outcomes = clients.finish().expect("client loop results");

    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started > detected).collect();
    let failed: Vec<&&Outcome> = after.iter().filter(|o| o.result.is_err()).collect();
    assert!(failed.is_empty(), "{} of {} requests after detection failed: {:?}", failed.len(), after.len(), failed);
    assert!(
        after.iter().filter(|o| o.started < restarted).all(|o| o.result.as_deref() != Ok("Server2")),
        "server2 took no request while stopped"
    );
    let rejoined = after.iter().filter(|o| o.started > up + Duration::from_millis(200));
    assert!(rejoined.clone().any(|o| o.result.as_deref() == Ok("Server2")), "server2 takes requests again");
    let before = outcomes.len() - after.len();
    println!(
        "stop/start: down after {detection:?} (bound {bound:?}), up after {rejoin:?}; {} requests, {before} \
         before detection, {} after, none of those failed",
        outcomes.len(),
        after.len()
    );
}

/// No container or network with our label, the bridge gone, no firewall rule naming it or
/// the network's addresses, the host-side pass-through program's bpffs gone.
fn nothing_of_ours_is_left(bridge: &str) {
    let left = docker::leftovers(bridge).unwrap_or_else(|e| panic!("listing leftovers: {e:#}"));
    assert!(left.is_empty(), "left after down: {left:?}");
}

fn shares(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    for o in outcomes {
        if let Ok(server) = &o.result {
            *shares.entry(server.clone()).or_default() += 1;
        }
    }
    shares
}

/// XDP_TX so far in the lb container (`lb list stats --json`, `actions.tx`).
fn xdp_tx() -> u64 {
    let stats = docker::lb_list(&["list", "stats", "--json"]).unwrap_or_else(|e| panic!("lb list stats: {e:#}"));
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap_or_else(|e| panic!("not JSON ({e}): {stats}"));
    v["actions"]["tx"].as_u64().unwrap_or_else(|| panic!("no actions.tx in {stats}"))
}

fn docker_answers() -> bool {
    docker::docker(&["info", "--format", "{{.ServerVersion}}"]).is_ok()
}

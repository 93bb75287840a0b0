//! `[cluster.bgp]` against a real router: a namespace `lbb-router` running BIRD 2 (AS
//! 65000, routes into its kernel table with `merge paths on`) peers with an `lb` daemon in
//! `lbb-lb` (proxy mode, one service 10.100.0.1:80 with one backend), over 10.62.0.0/24.
//! The router's kernel table is the judge: the VIP's route is there while `lb` announces
//! it, and gone after `lb drain`, a backend set to `maint`, the backend down, SIGTERM (while the process still
//! lives, for the drain grace) and SIGKILL (the speaker dies with `lb`). Root only.
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const ROUTER_NS: &str = "lbb-router";
const LB_NS: &str = "lbb-lb";
const RUN: &str = "/run/lbb";
const ROUTER_IP: &str = "10.62.0.1";
const LB_IP: &str = "10.62.0.11";
const VIP: &str = "10.100.0.1";
const API: &str = "http://127.0.0.1:9100";
const TOKEN: &str = "bgp-network-test-token";
const GRACE: Duration = Duration::from_secs(4);

fn sh(args: &[&str]) {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Kills what runs in our namespaces and removes them (before and after the test).
fn clean() {
    for ns in [ROUTER_NS, LB_NS] {
        if let Ok(out) = std::process::Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill(2) of a process in a namespace only this test creates.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", ns]).output();
    }
    let _ = std::fs::remove_dir_all(RUN);
}

/// The two namespaces, their link and the router's BIRD; torn down on drop.
struct Setup {
    _lock: testenv::NetworkLock,
    router: Child,
    backend: Child,
}

impl Setup {
    fn up() -> Self {
        testenv::require_root();
        let lock = testenv::lock_network().expect("network lock");
        clean();
        std::fs::create_dir_all(format!("{RUN}/router")).unwrap();
        for ns in [ROUTER_NS, LB_NS] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&["ip", "link", "add", "lbb-r", "netns", ROUTER_NS, "type", "veth", "peer", "lbb-l", "netns", LB_NS]);
        sh(&["ip", "-n", ROUTER_NS, "addr", "add", &format!("{ROUTER_IP}/24"), "dev", "lbb-r"]);
        sh(&["ip", "-n", LB_NS, "addr", "add", &format!("{LB_IP}/24"), "dev", "lbb-l"]);
        sh(&["ip", "-n", ROUTER_NS, "link", "set", "lbb-r", "up"]);
        sh(&["ip", "-n", LB_NS, "link", "set", "lbb-l", "up"]);
        // The proxy listens on the VIP: the LB host owns it.
        sh(&["ip", "-n", LB_NS, "addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        let conf = format!("{RUN}/router/bird.conf");
        std::fs::write(&conf, router_config()).unwrap();
        let router = testenv::spawn_logged(
            ROUTER_NS,
            &["bird", "-f", "-c", &conf, "-s", &format!("{RUN}/router/bird.ctl")],
            Path::new(&format!("{RUN}/router/bird.log")),
        )
        .expect("start the router's BIRD");
        std::fs::write(format!("{RUN}/token"), TOKEN).unwrap();
        Setup { _lock: lock, router, backend: start_backend() }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for child in [&mut self.router, &mut self.backend] {
            let _ = child.kill();
            let _ = child.wait();
        }
        clean();
    }
}

/// The service's one backend, up for its TCP health check.
fn start_backend() -> Child {
    testenv::spawn_logged(
        LB_NS,
        &["python3", "-m", "http.server", "8080", "--bind", LB_IP],
        Path::new(&format!("{RUN}/backend.log")),
    )
    .expect("start the backend")
}

/// The router: learns the VIPs from `lb` and puts them in its kernel table.
fn router_config() -> String {
    format!(
        "router id {ROUTER_IP};\nprotocol device {{ scan time 2; }}\n\
         protocol kernel {{ merge paths on; ipv4 {{ export all; import none; }}; }}\n\
         protocol bgp lb1 {{ local as 65000; neighbor {LB_IP} as 65010; hold time 9; connect retry time 1; \
         error wait time 1, 2; ipv4 {{ import all; export none; }}; }}\n"
    )
}

fn lb_config() -> String {
    format!(
        "[daemon]\nmode = \"proxy\"\nadmin_listen = \"127.0.0.1:9100\"\nstate_file = \"{RUN}/state.json\"\n\
         token_file = \"{RUN}/token\"\npin_path = \"{RUN}/bpffs\"\nworkers = 1\n\n\
         [cluster]\nnode = \"lb1\"\ndrain_grace = \"{grace}s\"\n\
         bgp = {{ asn = 65010, router_id = \"{LB_IP}\", neighbors = [{{ address = \"{ROUTER_IP}\", asn = 65000 }}], \
         hold_time = \"9s\", run_dir = \"{RUN}/bird\" }}\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP}:80\"\nalgorithm = \"maglev\"\n\
         [service.health_check]\ninterval = \"500ms\"\ntimeout = \"300ms\"\nunhealthy_threshold = 2\n\
         healthy_threshold = 1\n\
         [[service.backend]]\naddress = \"{LB_IP}:8080\"\n",
        grace = GRACE.as_secs()
    )
}

/// `lb run` in the LB namespace (`ip netns exec` execs in place: the child's pid is lb's).
struct Lb {
    child: Child,
}

impl Lb {
    fn start() -> Self {
        let config = format!("{RUN}/lb.toml");
        std::fs::write(&config, lb_config()).unwrap();
        let log = format!("{RUN}/lb.log");
        let _ = std::fs::remove_file(&log);
        let bin = testenv::lb_binary();
        let child = testenv::spawn_logged(LB_NS, &[bin.to_str().unwrap(), "run", "-c", &config], Path::new(&log))
            .expect("start lb");
        let lb = Lb { child };
        lb.wait_log("lb is serving", Duration::from_secs(20));
        lb
    }

    fn log(&self) -> String {
        std::fs::read_to_string(format!("{RUN}/lb.log")).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(start.elapsed() < limit, "lb did not log {needle:?} within {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn cli(&self, args: &[&str]) -> String {
        let bin = testenv::lb_binary();
        let mut full = vec![bin.to_str().unwrap()];
        full.extend_from_slice(args);
        let out = testenv::exec(LB_NS, &full).unwrap();
        assert!(out.status.success(), "lb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (at most 3 s) for a line of `/metrics`.
    fn wait_metric(&self, line: &str) {
        let start = Instant::now();
        loop {
            let metrics = self.api("GET", "/metrics", None);
            if metrics.lines().any(|l| l == line) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(3), "no {line:?} in /metrics:\n{metrics}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let auth = format!("Authorization: Bearer {TOKEN}");
        let url = format!("{API}{path}");
        let mut args = vec!["curl", "-s", "-f", "-m", "5", "-X", method, "-H", &auth];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        args.push(&url);
        testenv::exec_ok(LB_NS, &args).unwrap_or_else(|e| panic!("{method} {path}: {e:#}\n{}", self.log()))
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The router's kernel route to the VIP goes through the LB.
fn routed() -> bool {
    testenv::exec_ok(ROUTER_NS, &["ip", "route", "show", &format!("{VIP}/32")])
        .is_ok_and(|out| out.contains(&format!("via {LB_IP}")))
}

/// Waits until the route is there (`want`) or gone; how long that took.
fn wait_route(want: bool, limit: Duration, lb: Option<&Lb>) -> Duration {
    let start = Instant::now();
    while routed() != want {
        assert!(
            start.elapsed() < limit,
            "route to {VIP} {} within {limit:?}\nrouter log:\n{}\nlb log:\n{}",
            if want { "did not appear" } else { "was not withdrawn" },
            std::fs::read_to_string(format!("{RUN}/router/bird.log")).unwrap_or_default(),
            lb.map(Lb::log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The pid of `lb`'s speaker: its child named `bird`.
fn speaker_pid(lb: &Lb) -> i32 {
    let out =
        std::process::Command::new("pgrep").args(["-P", &lb.child.id().to_string(), "-x", "bird"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("no bird child of lb: {text:?}\n{}", lb.log()))
}

/// The process exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn vips_are_announced_withdrawn_by_drain_maint_down_sigterm_and_sigkill() {
    let mut setup = Setup::up();
    let mut lb = Lb::start();
    let up = wait_route(true, Duration::from_secs(15), Some(&lb));
    eprintln!("announced: route at the router {up:?} after lb serves");

    // The sessions' state is read every second.
    lb.wait_metric(&format!("lb_bgp_session_up{{neighbor=\"{ROUTER_IP}\"}} 1"));
    lb.wait_metric(&format!("lb_vip_announced{{vip=\"{VIP}\"}} 1"));
    lb.wait_metric("lb_draining 0");
    let vips = lb.cli(&["list", "vips", "--pin-path", &format!("{RUN}/bpffs")]);
    assert!(
        vips.contains("ANNOUNCED") && vips.lines().any(|l| l.contains(VIP) && l.trim_end().ends_with("yes")),
        "{vips}"
    );

    // lb drain: withdrawn while the daemon runs; --undo: back.
    let token_file = format!("{RUN}/token");
    assert_eq!(lb.cli(&["drain", "--api", API, "--token-file", &token_file]).trim(), "draining");
    let t = wait_route(false, Duration::from_secs(5), Some(&lb));
    eprintln!("lb drain: withdrawn in {t:?}");
    assert!(lb.alive(), "draining must not stop the daemon");
    lb.wait_metric("lb_draining 1");
    lb.wait_metric(&format!("lb_vip_announced{{vip=\"{VIP}\"}} 0"));
    assert!(lb.api("GET", "/v1/services", None).contains("\"announced\":false"));
    assert_eq!(lb.cli(&["drain", "--undo", "--api", API, "--token-file", &token_file]).trim(), "announcing");
    wait_route(true, Duration::from_secs(5), Some(&lb));

    // The only backend in maintenance: nothing can take new flows, the VIP is withdrawn.
    let state = format!("/v1/services/web/backends/{LB_IP}:8080/state");
    lb.api("PUT", &state, Some(r#"{"state":"maint"}"#));
    let t = wait_route(false, Duration::from_secs(5), Some(&lb));
    eprintln!("backend maint: withdrawn in {t:?}");
    lb.api("PUT", &state, Some(r#"{"state":"ready"}"#));
    wait_route(true, Duration::from_secs(5), Some(&lb));

    // The only backend down (its health check fails): withdrawn; up again: back.
    let _ = setup.backend.kill();
    let _ = setup.backend.wait();
    let t = wait_route(false, Duration::from_secs(10), Some(&lb));
    eprintln!("backend down: withdrawn {t:?} after it stopped (checks every 500ms, 2 failures)");
    setup.backend = start_backend();
    wait_route(true, Duration::from_secs(10), Some(&lb));

    let bird = speaker_pid(&lb);
    // SIGTERM: withdrawn first, while the process still lives for the grace.
    let term = Instant::now();
    lb.signal(libc::SIGTERM);
    let t = wait_route(false, Duration::from_secs(3), Some(&lb));
    assert!(lb.alive(), "lb exited before the drain grace ended:\n{}", lb.log());
    eprintln!("SIGTERM: withdrawn in {t:?}, process still alive");
    while lb.alive() {
        assert!(term.elapsed() < GRACE + Duration::from_secs(10), "lb did not stop after its grace:\n{}", lb.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let lived = term.elapsed();
    assert!(lived >= GRACE, "lb stopped {lived:?} after SIGTERM, before the {GRACE:?} grace");
    eprintln!("SIGTERM: exited {lived:?} after the signal (grace {GRACE:?})");
    assert!(!running(bird), "BIRD outlived lb");

    // SIGKILL: BIRD dies with lb (PDEATHSIG), its sessions close, the router withdraws.
    let mut lb = Lb::start();
    wait_route(true, Duration::from_secs(15), Some(&lb));
    let bird = speaker_pid(&lb);
    lb.signal(libc::SIGKILL);
    let t = wait_route(false, Duration::from_secs(8), None);
    eprintln!("SIGKILL: route gone {t:?} after the kill (hold time 9s)");
    let _ = lb.child.wait();
    assert!(t < Duration::from_secs(3), "withdrawn only after {t:?}: the session was not closed at once");
    let settle = Instant::now();
    while running(bird) {
        assert!(settle.elapsed() < Duration::from_secs(2), "BIRD outlived a SIGKILLed lb");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// BIRD dying under a live `lb` is restarted, and the VIP comes back.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_crashed_speaker_is_restarted() {
    let _setup = Setup::up();
    let lb = Lb::start();
    wait_route(true, Duration::from_secs(15), Some(&lb));
    // SAFETY: kill(2) of lb's own BIRD child, found by its parent's pid.
    unsafe { libc::kill(speaker_pid(&lb), libc::SIGKILL) };
    wait_route(false, Duration::from_secs(5), Some(&lb));
    lb.wait_log("BGP speaker (BIRD) is not running", Duration::from_secs(5));
    let t = wait_route(true, Duration::from_secs(15), Some(&lb));
    eprintln!("speaker restarted, route back after {t:?}");
}

//! The controller against a data path that records what it is told: what a reload makes of
//! health and registrations. Health reports are sent by hand (as the checker with the id
//! the controller gave it would), so no test waits for a real check.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::datapath::{Outcome, Shutdown};
use crate::health::CheckResult;
use lb_config::desired::{Health, SOURCE_CONFIG, SOURCE_RETIRING};

/// What the data path was last told, and whether it refuses the next reconciles.
#[derive(Clone, Default)]
struct Recorder {
    last: Arc<Mutex<Option<Desired>>>,
    refuse: Arc<AtomicBool>,
    /// A tunnel program on this interface (None: none, as the proxy path).
    tunnel: Option<String>,
    /// The tunnelled checks it was last told of.
    routes: Arc<Mutex<Vec<crate::tunnel_check::TunnelRoute>>>,
}

impl DataPath for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn reconcile(&mut self, desired: &Desired) -> anyhow::Result<()> {
        if self.refuse.load(Ordering::SeqCst) {
            anyhow::bail!("refused, as the test asked");
        }
        *self.last.lock().unwrap() = Some(desired.clone());
        Ok(())
    }

    fn outcomes(&mut self) -> Vec<Outcome> {
        Vec::new()
    }

    fn tunnel_check_device(&self, _vip: Option<std::net::IpAddr>) -> Option<String> {
        self.tunnel.clone()
    }

    fn set_tunnel_checks(&mut self, routes: &[crate::tunnel_check::TunnelRoute]) -> anyhow::Result<()> {
        *self.routes.lock().unwrap() = routes.to_vec();
        Ok(())
    }

    fn shutdown(self: Box<Self>, _detach: bool, _drain: Duration) -> Shutdown {
        Box::pin(async {})
    }
}

impl Recorder {
    /// (health, sources) of `address` in `service`, as last reconciled.
    fn backend(&self, service: &str, address: &str) -> Option<(Health, u8)> {
        let last = self.last.lock().unwrap();
        let s = last.as_ref()?.services.iter().find(|s| s.name == service)?;
        let b = s.backends.iter().find(|b| b.address.to_string() == address)?;
        Some((b.health, b.sources))
    }
}

/// A directory of its own for each test's config and state file.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lb-controller-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn config(&self) -> PathBuf {
        self.0.join("lb.toml")
    }

    fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }

    /// Writes the config, with the state file in this directory.
    fn write(&self, services: &str) {
        let text = format!("[daemon]\nstate_file = {:?}\n{services}", self.state().display().to_string());
        std::fs::write(self.config(), text).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A controller on `scratch`'s config and state file, reconciled once as at start.
fn controller(scratch: &Scratch) -> (Controller, Recorder, mpsc::Receiver<Report>) {
    controller_with(scratch, Recorder::default())
}

fn controller_with(scratch: &Scratch, recorder: Recorder) -> (Controller, Recorder, mpsc::Receiver<Report>) {
    let cfg = Config::from_file(&scratch.config()).unwrap();
    let registry = Registry::load(&scratch.state(), Instant::now()).unwrap();
    let (reports_tx, reports) = mpsc::channel(1024);
    let shared = Shared {
        telemetry: Arc::new(Telemetry::default()),
        token: Arc::new(RwLock::new(lb_config::Tokens::default())),
        ready: crate::ReadyFlag::default(),
    };
    let mut c = Controller::new(cfg, scratch.config(), Box::new(recorder.clone()), registry, reports_tx, shared);
    c.apply();
    (c, recorder, reports)
}

fn key(service: &str, address: &str) -> BackendKey {
    BackendKey::new(service, address.parse().unwrap())
}

/// `n` results from `key`'s current checker.
fn report(c: &mut Controller, key: &BackendKey, ok: bool, n: usize) {
    let checker = c.checkers.get(key).expect("a checker runs for the backend").id;
    for _ in 0..n {
        let result = CheckResult {
            ok,
            local: false,
            detail: "by hand".into(),
            duration: Duration::from_millis(1),
            finished: Instant::now(),
            agent: None,
        };
        c.health_report(Report { service: key.service.clone(), address: key.address, checker, result });
    }
}

/// A UDP service whose backend fails a TCP check (3 failures make it down), and what else
/// the test needs in its `[service.health_check]`.
fn udp_service(check: &str) -> String {
    format!(
        "[[service]]\nname = \"dns\"\nvip = \"10.0.0.100:53\"\nprotocol = \"udp\"\n\
         [service.health_check]\n{check}\n\
         [[service.backend]]\naddress = \"127.0.0.1:1\"\n"
    )
}

#[tokio::test]
async fn a_check_switched_to_none_makes_its_down_backends_unknown_in_the_reload() {
    let scratch = Scratch::new();
    scratch.write(&udp_service("type = \"tcp\"\ninterval = \"60s\""));
    let (mut c, recorder, _reports) = controller(&scratch);
    let b = key("dns", "127.0.0.1:1");
    report(&mut c, &b, false, 3);
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down);

    scratch.write(&udp_service("type = \"none\""));
    c.reload().unwrap();
    assert_eq!(
        recorder.backend("dns", "127.0.0.1:1").unwrap().0,
        Health::Unknown,
        "no check, no verdict: the backend is back in rotation at once, as on a fresh start"
    );
    assert!(c.checkers.is_empty() && c.trackers.is_empty() && c.last_checks.is_empty());
}

#[tokio::test]
async fn a_changed_check_starts_over_from_unknown_and_old_results_do_not_count() {
    let scratch = Scratch::new();
    scratch.write(&udp_service("type = \"tcp\"\ninterval = \"60s\""));
    let (mut c, recorder, _reports) = controller(&scratch);
    let b = key("dns", "127.0.0.1:1");
    let old = c.checkers[&b].id;
    report(&mut c, &b, false, 3);
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down);

    scratch.write(&udp_service("type = \"tcp\"\ninterval = \"30s\""));
    c.reload().unwrap();
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Unknown);
    let new = &c.checkers[&b];
    assert_ne!(new.id, old, "a new checker");
    assert_eq!(new.check.interval, Duration::from_secs(30), "with the new settings");
    assert!(c.last_checks.is_empty(), "the old check's last result is not the new one's");

    // A failure the replaced checker had already sent arrives late: it is not counted.
    let late = CheckResult {
        ok: false,
        local: false,
        detail: "late".into(),
        duration: Duration::ZERO,
        finished: Instant::now(),
        agent: None,
    };
    for _ in 0..3 {
        c.health_report(Report { service: b.service.clone(), address: b.address, checker: old, result: late.clone() });
    }
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Unknown);
    assert!(c.trackers.is_empty());
    report(&mut c, &b, false, 3);
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down, "the new checker's count");
}

#[tokio::test]
async fn a_reload_that_leaves_the_check_alone_keeps_its_health() {
    let scratch = Scratch::new();
    scratch.write(&udp_service("type = \"tcp\"\ninterval = \"60s\""));
    let (mut c, recorder, _reports) = controller(&scratch);
    let b = key("dns", "127.0.0.1:1");
    let checker = c.checkers[&b].id;
    report(&mut c, &b, false, 3);
    scratch.write(&(udp_service("type = \"tcp\"\ninterval = \"60s\"") + "weight = 5\n"));
    c.reload().unwrap();
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down);
    assert_eq!(c.checkers[&b].id, checker, "the same checker goes on");
}

const TWO_SERVICES: &str = "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\nforwarding = \"dsr\"\n\
                            health_check = { type = \"none\" }\n\
                            [[service]]\nname = \"api\"\nvip = \"10.0.0.100:81\"\n\
                            health_check = { type = \"none\" }\n";

/// The services' names and addresses in the state file.
fn saved_registrations(path: &Path) -> Vec<(String, String)> {
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    file["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["service"].as_str().unwrap().to_string(), r["address"].as_str().unwrap().to_string()))
        .collect()
}

fn register(c: &mut Controller, service: &str, address: &str) {
    c.register(service.into(), address.parse().unwrap(), 1, Duration::from_secs(60)).unwrap();
}

#[tokio::test]
async fn a_reload_drops_the_registrations_its_services_no_longer_take() {
    let scratch = Scratch::new();
    scratch.write(TWO_SERVICES);
    let (mut c, recorder, _reports) = controller(&scratch);
    register(&mut c, "web", "10.0.0.11:80");
    register(&mut c, "web", "10.0.0.12:80");
    register(&mut c, "api", "10.0.0.13:81");
    register(&mut c, "api", "10.0.0.14:81");
    c.set_state("api", "10.0.0.14:81".parse().unwrap(), lb_config::AdminState::Drain).unwrap();

    // web's VIP moves to port 8080 (dsr: its backends' port no longer matches); api goes
    // IPv6 (both its backends are IPv4). A new service takes nothing of theirs.
    let next = TWO_SERVICES.replace("10.0.0.100:80\"", "10.0.0.100:8080\"").replace("10.0.0.100:81", "[fd00::100]:81");
    scratch.write(&next);
    c.reload().unwrap();
    assert!(c.registry.registrations.is_empty(), "{:?}", c.registry.registrations);
    assert!(c.registry.states.is_empty(), "an API-set state goes with the registration");
    assert!(saved_registrations(&scratch.state()).is_empty(), "and the state file forgets them");
    // Nothing to drain: their flows were to the VIPs as they were, which are no longer
    // served. They leave at once, as a fresh start would not have them.
    assert_eq!(recorder.backend("web", "10.0.0.11:80"), None);
    assert_eq!(recorder.backend("api", "10.0.0.13:81"), None);

    // A registration that fits stays through a reload; one whose service is gone leaves.
    register(&mut c, "api", "[fd00::13]:81");
    scratch.write(&next.replace("name = \"web\"", "name = \"www\""));
    register(&mut c, "web", "10.0.0.11:8080");
    c.reload().unwrap();
    let kept: Vec<String> = c.registry.registrations.keys().map(ToString::to_string).collect();
    assert_eq!(kept, ["api [fd00::13]:81"]);
    assert_eq!(saved_registrations(&scratch.state()), [("api".to_string(), "[fd00::13]:81".to_string())]);
}

#[tokio::test]
async fn a_reload_the_data_path_refuses_keeps_the_registrations() {
    let scratch = Scratch::new();
    scratch.write(TWO_SERVICES);
    let (mut c, recorder, _reports) = controller(&scratch);
    register(&mut c, "api", "10.0.0.13:81");
    scratch.write(&TWO_SERVICES.replace("10.0.0.100:81", "[fd00::100]:81"));
    recorder.refuse.store(true, Ordering::SeqCst);
    assert!(matches!(c.reload(), Err(ControlError::NotApplied(_))));
    let kept: Vec<String> = c.registry.registrations.keys().map(ToString::to_string).collect();
    assert_eq!(kept, ["api 10.0.0.13:81"], "the running config stays, and all it takes");
    assert_eq!(saved_registrations(&scratch.state()), [("api".to_string(), "10.0.0.13:81".to_string())]);
}

#[tokio::test]
async fn a_start_leaves_out_what_the_state_file_holds_that_the_config_does_not_take() {
    let scratch = Scratch::new();
    scratch.write(TWO_SERVICES);
    let saved = serde_json::json!({"registrations": [
        {"service": "web", "address": "10.0.0.11:80", "weight": 1, "ttl_ms": 60000},
        {"service": "web", "address": "10.0.0.12:8080", "weight": 1, "ttl_ms": 60000},
        {"service": "gone", "address": "10.0.0.13:80", "weight": 1, "ttl_ms": 60000},
    ]});
    std::fs::write(scratch.state(), saved.to_string()).unwrap();
    let cfg = Config::from_file(&scratch.config()).unwrap();
    let registry = Registry::load(&scratch.state(), Instant::now()).unwrap();
    let start = Controller::desired(&cfg, &registry);
    let web: Vec<String> = start.services[0].backends.iter().map(|b| b.address.to_string()).collect();
    assert_eq!(web, ["10.0.0.11:80"], "the start's tables");
    let (c, _, _reports) = controller(&scratch);
    let kept: Vec<String> = c.registry.registrations.keys().map(ToString::to_string).collect();
    assert_eq!(kept, ["web 10.0.0.11:80"]);
    assert_eq!(saved_registrations(&scratch.state()), [("web".to_string(), "10.0.0.11:80".to_string())]);
}

#[tokio::test]
async fn a_removed_backend_drains_unless_its_services_new_vip_could_not_take_it() {
    let scratch = Scratch::new();
    let config = |vip: &str, backend: &str| {
        format!(
            "[[service]]\nname = \"api\"\nvip = \"{vip}\"\nhealth_check = {{ type = \"none\" }}\n\
             [[service.backend]]\naddress = \"{backend}\"\n"
        )
    };
    scratch.write(&config("10.0.0.100:81", "10.0.0.13:81"));
    let (mut c, recorder, _reports) = controller(&scratch);
    assert_eq!(recorder.backend("api", "10.0.0.13:81"), Some((Health::Unknown, SOURCE_CONFIG)));
    scratch.write(&config("10.0.0.100:81", "10.0.0.14:81"));
    c.reload().unwrap();
    assert_eq!(recorder.backend("api", "10.0.0.13:81").unwrap().1, SOURCE_RETIRING, "same VIP: its flows drain");
    scratch.write(&config("[fd00::100]:81", "[fd00::14]:81"));
    c.reload().unwrap();
    assert_eq!(recorder.backend("api", "10.0.0.13:81"), None, "an IPv4 backend has no flows at an IPv6 VIP");
    assert_eq!(recorder.backend("api", "10.0.0.14:81"), None);
    assert_eq!(recorder.backend("api", "[fd00::14]:81"), Some((Health::Unknown, SOURCE_CONFIG)));
    assert!(c.retiring.is_empty());
}

#[tokio::test]
async fn a_check_that_fails_for_a_local_reason_is_not_counted_against_the_backend() {
    let scratch = Scratch::new();
    scratch.write(&udp_service("type = \"tcp\"\ninterval = \"60s\"\nunhealthy_threshold = 2"));
    let (mut c, recorder, _reports) = controller(&scratch);
    let b = key("dns", "127.0.0.1:1");
    let checker = c.checkers[&b].id;
    for _ in 0..10 {
        let result = CheckResult {
            ok: false,
            local: true,
            detail: "local: cannot open a socket: Too many open files (os error 24)".into(),
            duration: Duration::ZERO,
            finished: Instant::now(),
            agent: None,
        };
        c.health_report(Report { service: b.service.clone(), address: b.address, checker, result });
    }
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Unknown, "still in rotation");
    assert_eq!(c.shared.telemetry.snapshot().health_check_local_errors_total, 10);
    report(&mut c, &b, false, 1);
    assert_eq!(
        recorder.backend("dns", "127.0.0.1:1").unwrap().0,
        Health::Unknown,
        "the local ones did not start a run"
    );
    report(&mut c, &b, false, 1);
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down);
}

#[tokio::test]
async fn a_restart_keeps_a_down_backend_down_until_its_checker_says_otherwise() {
    let scratch = Scratch::new();
    scratch.write(&udp_service("type = \"tcp\"\ninterval = \"60s\"\nhealthy_threshold = 2"));
    let b = key("dns", "127.0.0.1:1");
    {
        let (mut c, recorder, _reports) = controller(&scratch);
        report(&mut c, &b, false, 3);
        assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down);
    }
    // The next daemon: its first tables already leave the backend out.
    let cfg = Config::from_file(&scratch.config()).unwrap();
    let registry = Registry::load(&scratch.state(), Instant::now()).unwrap();
    let start = Controller::desired(&cfg, &registry);
    assert_eq!(start.services[0].backends[0].health, Health::Down, "the start's tables");
    let (mut c, recorder, _reports) = controller(&scratch);
    c.sync_checkers();
    c.apply();
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down, "after the first reconcile");
    report(&mut c, &b, true, 1);
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Down, "one success is not enough");
    report(&mut c, &b, true, 1);
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Up);
    let (_, recorder, _reports) = controller(&scratch);
    assert_eq!(recorder.backend("dns", "127.0.0.1:1").unwrap().0, Health::Unknown, "up is not remembered as down");
}

#[tokio::test]
async fn a_restart_keeps_an_ejection_until_its_time_runs_out() {
    let scratch = Scratch::new();
    let service = "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\nhealth_check = { type = \"none\" }\n\
                   circuit_breaker = { consecutive_failures = 3, base_ejection = \"30s\", max_ejection = \"300s\" }\n\
                   [[service.backend]]\naddress = \"10.0.0.11:80\"\n[[service.backend]]\naddress = \"10.0.0.12:80\"\n";
    scratch.write(service);
    let b = key("web", "10.0.0.11:80");
    {
        let (mut c, _recorder, _reports) = controller(&scratch);
        c.breakers.insert(b.clone(), crate::breaker::Breaker::reopened(Instant::now() + Duration::from_secs(30), 1));
        c.persist();
    }
    let cfg = Config::from_file(&scratch.config()).unwrap();
    let registry = Registry::load(&scratch.state(), Instant::now()).unwrap();
    let start = Controller::desired(&cfg, &registry);
    assert_eq!(start.services[0].backends[0].circuit, lb_config::desired::Circuit::Open, "the start's tables");
    assert!(!start.services[0].backends[0].in_rotation());
    let (c, recorder, _reports) = controller(&scratch);
    let last = recorder.last.lock().unwrap().clone().unwrap();
    assert_eq!(last.services[0].backends[0].circuit, lb_config::desired::Circuit::Open);
    let (left, in_row) = c.breakers[&b].saved(Instant::now()).unwrap();
    assert!(left > Duration::from_secs(25) && left <= Duration::from_secs(30), "{left:?}");
    assert_eq!(in_row, 1, "the next ejection keeps doubling");
}

/// The tick's flow-table walk and neighbour read must not stall the runtime's other tasks
/// (the admin API, the checkers): with one worker, a task still runs while they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_work_of_the_tick_leaves_the_runtime_to_other_tasks() {
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let blocking = tokio::spawn(async move {
        super::off_runtime(|| {
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if r.load(Ordering::SeqCst) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        })
    });
    tokio::task::yield_now().await;
    let r = ran.clone();
    tokio::spawn(async move { r.store(true, Ordering::SeqCst) });
    assert!(blocking.await.unwrap(), "another task ran while the blocking work did");
}

/// `n` configured backends in service `web` (10.1.x.y:80), and what else `[[service]]` needs.
fn web_with_backends(n: usize, extra: &str) -> String {
    let backends: String =
        (0..n).map(|i| format!("[[service.backend]]\naddress = \"10.1.{}.{}:80\"\n", i / 250, i % 250 + 1)).collect();
    format!(
        "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\nhealth_check = {{ type = \"none\" }}\n{extra}{backends}"
    )
}

fn try_register(c: &mut Controller, service: &str, address: &str) -> Result<bool, ControlError> {
    c.register(service.into(), address.parse().unwrap(), 1, Duration::from_secs(60))
}

fn listed(c: &Controller, service: &str) -> Vec<String> {
    c.views().into_iter().filter(|s| s.name == service).flat_map(|s| s.backends).map(|b| b.address).collect()
}

#[tokio::test]
async fn registrations_at_addresses_that_are_no_backend_are_refused_and_change_nothing() {
    let scratch = Scratch::new();
    // admin_listen is the default, 127.0.0.1:9100.
    scratch.write(&web_with_backends(1, ""));
    let (mut c, recorder, _reports) = controller(&scratch);
    let before = recorder.last.lock().unwrap().clone();
    for address in [
        "127.0.0.1:9100",
        "127.0.0.1:8080",
        "10.0.0.100:80",
        "0.0.0.0:80",
        "169.254.169.254:80",
        "224.0.0.251:80",
        "255.255.255.255:80",
    ] {
        match try_register(&mut c, "web", address) {
            Err(ControlError::BadRequest(why)) => assert!(why.starts_with(address), "{address}: {why}"),
            other => panic!("{address}: {other:?}"),
        }
    }
    assert!(c.registry.registrations.is_empty());
    assert_eq!(listed(&c, "web"), ["10.1.0.1:80"]);
    assert_eq!(*recorder.last.lock().unwrap(), before, "the data path was not touched");
    assert_eq!(c.shared.telemetry.snapshot().registrations_total, 0, "refusals are not registrations");
    assert!(try_register(&mut c, "web", "10.0.0.11:80").unwrap(), "an ordinary address is taken");
}

#[tokio::test]
async fn allow_registration_from_lets_a_service_take_loopback_but_never_the_admin_api() {
    let scratch = Scratch::new();
    scratch.write(&web_with_backends(0, "allow_registration_from = [\"127.0.0.0/8\"]\n"));
    let (mut c, _recorder, _reports) = controller(&scratch);
    assert!(try_register(&mut c, "web", "127.0.0.1:8080").unwrap());
    assert!(
        matches!(try_register(&mut c, "web", "127.0.0.1:9100"), Err(ControlError::BadRequest(m)) if m.contains("admin API"))
    );
    assert_eq!(listed(&c, "web"), ["127.0.0.1:8080"]);
}

#[tokio::test]
async fn the_backend_cap_counts_configured_and_registered_and_a_refusal_keeps_everything_working() {
    let scratch = Scratch::new();
    scratch.write(&web_with_backends(MAX_BACKENDS_FOR_TEST - 2, ""));
    let (mut c, recorder, _reports) = controller(&scratch);
    assert!(try_register(&mut c, "web", "10.2.0.1:80").unwrap());
    assert!(try_register(&mut c, "web", "10.2.0.2:80").unwrap());
    match try_register(&mut c, "web", "10.2.0.3:80") {
        Err(ControlError::Conflict(why)) => {
            assert!(why.contains(&format!("at most {MAX_BACKENDS_FOR_TEST} backends")), "{why}")
        }
        other => panic!("past the cap: {other:?}"),
    }
    // Renewing one that is there needs no room, nor does registering a configured one.
    assert!(!try_register(&mut c, "web", "10.2.0.1:80").unwrap());
    assert!(try_register(&mut c, "web", "10.1.0.1:80").unwrap());
    assert_eq!(c.registry.registrations.len(), 3);
    assert_eq!(listed(&c, "web").len(), MAX_BACKENDS_FOR_TEST);
    // The data path still takes changes: maint on a configured backend reaches it.
    c.set_state("web", "10.1.0.5:80".parse().unwrap(), lb_config::AdminState::Maint).unwrap();
    let last = recorder.last.lock().unwrap().clone().unwrap();
    let b = last.services[0].backends.iter().find(|b| b.address.to_string() == "10.1.0.5:80").unwrap();
    assert_eq!(b.state, lb_config::AdminState::Maint);
    // A removed backend drains for a while and holds its slot meanwhile.
    c.deregister(key("web", "10.2.0.2:80")).unwrap();
    assert!(matches!(try_register(&mut c, "web", "10.2.0.4:80"), Err(ControlError::Conflict(_))));
    assert!(try_register(&mut c, "web", "10.2.0.2:80").is_ok(), "coming back while draining takes its own slot");
}

const MAX_BACKENDS_FOR_TEST: usize = lb_config::MAX_BACKENDS;

#[tokio::test]
async fn a_registration_the_data_path_refuses_is_undone_and_not_shown() {
    let scratch = Scratch::new();
    scratch.write(&web_with_backends(1, ""));
    let (mut c, recorder, _reports) = controller(&scratch);
    assert!(try_register(&mut c, "web", "10.2.0.1:80").unwrap());
    let before = listed(&c, "web");
    recorder.refuse.store(true, Ordering::SeqCst);
    match try_register(&mut c, "web", "10.2.0.2:80") {
        Err(ControlError::Unavailable(why)) => assert!(why.contains("refused, as the test asked"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(listed(&c, "web"), before, "/v1/services shows what the data path does");
    assert!(c.retiring.is_empty(), "nothing drains that never served");
    assert_eq!(c.registry.registrations.keys().map(ToString::to_string).collect::<Vec<_>>(), ["web 10.2.0.1:80"]);
    assert_eq!(saved_registrations(&scratch.state()), [("web".to_string(), "10.2.0.1:80".to_string())]);
    // A state the data path refuses is undone too.
    assert!(c.set_state("web", "10.1.0.1:80".parse().unwrap(), lb_config::AdminState::Maint).is_err());
    assert!(c.registry.states.is_empty());
    assert_eq!(c.views()[0].backends[0].state, "ready");
    recorder.refuse.store(false, Ordering::SeqCst);
    assert!(try_register(&mut c, "web", "10.2.0.2:80").unwrap(), "and works once the data path takes it");
}

#[tokio::test]
async fn a_start_drops_persisted_registrations_at_refused_addresses_with_a_reason() {
    let scratch = Scratch::new();
    scratch.write(&web_with_backends(1, ""));
    let saved = serde_json::json!({"registrations": [
        {"service": "web", "address": "10.0.0.11:80", "weight": 1, "ttl_ms": 60000},
        {"service": "web", "address": "127.0.0.1:9100", "weight": 1, "ttl_ms": 60000},
        {"service": "web", "address": "10.0.0.100:8080", "weight": 1, "ttl_ms": 60000},
        {"service": "web", "address": "169.254.169.254:80", "weight": 1, "ttl_ms": 60000},
    ]});
    std::fs::write(scratch.state(), saved.to_string()).unwrap();
    let cfg = Config::from_file(&scratch.config()).unwrap();
    let registry = Registry::load(&scratch.state(), Instant::now()).unwrap();
    let start = Controller::desired(&cfg, &registry);
    let web: Vec<String> = start.services[0].backends.iter().map(|b| b.address.to_string()).collect();
    assert_eq!(web, ["10.1.0.1:80", "10.0.0.11:80"], "the start's tables hold none of them");
    let (c, recorder, _reports) = controller(&scratch);
    assert_eq!(listed(&c, "web"), ["10.1.0.1:80", "10.0.0.11:80"]);
    assert_eq!(recorder.backend("web", "127.0.0.1:9100"), None, "not even draining");
    assert_eq!(saved_registrations(&scratch.state()), [("web".to_string(), "10.0.0.11:80".to_string())]);
}

/// An ipip service with two backends and a nat one, all TCP-checked.
fn tunnelled_services(forwarding: &str, ipip_backends: &[&str]) -> String {
    let mut text = format!(
        "[[service]]\nname = \"tun\"\nvip = \"10.0.0.100:80\"\nforwarding = \"{forwarding}\"\n\
         health_check = {{ type = \"tcp\", interval = \"60s\" }}\n"
    );
    for b in ipip_backends {
        text += &format!("[[service.backend]]\naddress = \"{b}\"\n");
    }
    text + "[[service]]\nname = \"web\"\nvip = \"10.0.0.101:80\"\nhealth_check = { type = \"tcp\", interval = \"60s\" }\n\
            [[service.backend]]\naddress = \"10.0.0.21:80\"\n"
}

#[tokio::test]
async fn encapsulating_services_are_checked_at_their_vip_through_the_tunnel() {
    use crate::tunnel_check::Target;
    let scratch = Scratch::new();
    scratch.write(&tunnelled_services("ipip", &["10.0.1.11:80", "10.0.1.12:80"]));
    let recorder = Recorder { tunnel: Some("eth0".into()), ..Recorder::default() };
    let (mut c, recorder, _reports) = controller_with(&scratch, recorder);
    c.sync_checkers();
    let routes = recorder.routes.lock().unwrap().clone();
    assert_eq!(routes.len(), 2, "one route per ipip backend, none for nat: {routes:?}");
    assert!(routes.iter().all(|r| r.forwarding == lb_config::Forwarding::Ipip));
    assert!(routes.iter().all(|r| lb_common::tunnel::is_check_mark(r.mark)));
    assert_ne!(routes[0].mark, routes[1].mark);
    let b1 = key("tun", "10.0.1.11:80");
    let mark = routes.iter().find(|r| r.backend.to_string() == "10.0.1.11").unwrap().mark;
    let vip = "10.0.0.100:80".parse().unwrap();
    assert_eq!(c.checkers[&b1].target, Target::Tunnel { vip, mark, device: "eth0".into() });
    let web = key("web", "10.0.0.21:80");
    assert_eq!(c.checkers[&web].target, Target::Direct(web.address), "nat is checked at the backend");

    // A reload to gue without the second backend (which drains, still checked): the routes
    // follow the new forwarding, the first backend keeps its mark and its checker.
    let id = c.checkers[&b1].id;
    scratch.write(&tunnelled_services("gue", &["10.0.1.11:80"]));
    c.reload().unwrap();
    let routes = recorder.routes.lock().unwrap().clone();
    assert!(routes.iter().all(|r| r.forwarding == lb_config::Forwarding::Gue), "{routes:?}");
    let first = routes.iter().find(|r| r.backend.to_string() == "10.0.1.11").unwrap();
    assert_eq!(first.mark, mark);
    assert_eq!(c.checkers[&b1].id, id, "same target, same check: the checker runs on");
    // Once the removed backend has left, so has its route.
    c.end_grace_periods(Instant::now() + REMOVAL_GRACE + Duration::from_secs(1));
    c.sync_checkers();
    assert_eq!(recorder.routes.lock().unwrap().len(), 1, "{:?}", recorder.routes.lock().unwrap());
}

#[tokio::test]
async fn without_a_tunnel_program_encapsulating_services_are_checked_at_the_backend() {
    let scratch = Scratch::new();
    scratch.write(&tunnelled_services("ipip", &["10.0.1.11:80"]));
    let (mut c, recorder, _reports) = controller(&scratch);
    c.sync_checkers();
    assert!(recorder.routes.lock().unwrap().is_empty());
    let b = key("tun", "10.0.1.11:80");
    assert_eq!(c.checkers[&b].target, crate::tunnel_check::Target::Direct(b.address));
}

/// `[cluster.bgp]`: each reconcile hands the speaker what to announce; a backend in
/// maintenance, a reload that removes the service and a drain withdraw; without BGP a drain
/// is refused.
#[tokio::test]
async fn announcements_follow_the_desired_state_and_the_drain() {
    let scratch = Scratch::new();
    let web = "[[service]]\nname = \"web\"\nvip = \"10.100.0.1:80\"\n[[service.backend]]\naddress = \"10.1.0.5:80\"\n";
    let dns = "[[service]]\nname = \"dns\"\nvip = \"10.100.0.2:53\"\nprotocol = \"udp\"\n\
               [[service.backend]]\naddress = \"10.1.0.5:53\"\n";
    scratch.write(&format!("{web}{dns}"));
    let (c, _, _) = controller(&scratch);
    let (tx, rx) = tokio::sync::watch::channel(crate::cluster::Announcement::default());
    let mut c = c.with_announcements(tx);
    let vips = |rx: &tokio::sync::watch::Receiver<crate::cluster::Announcement>| -> Vec<String> {
        rx.borrow().vips.iter().map(ToString::to_string).collect()
    };
    assert_eq!(vips(&rx), ["10.100.0.1", "10.100.0.2"], "announced at once");
    assert_eq!(c.views().iter().map(|v| v.announced).collect::<Vec<_>>(), [Some(true), Some(true)]);

    c.set_state("dns", "10.1.0.5:53".parse().unwrap(), lb_config::AdminState::Maint).unwrap();
    assert_eq!(vips(&rx), ["10.100.0.1"]);
    assert_eq!(c.views().iter().map(|v| v.announced).collect::<Vec<_>>(), [Some(true), Some(false)]);

    assert_eq!(c.drain(true), Ok(false));
    assert!(vips(&rx).is_empty() && rx.borrow().draining);
    // A change while draining announces nothing.
    c.set_state("dns", "10.1.0.5:53".parse().unwrap(), lb_config::AdminState::Ready).unwrap();
    assert!(vips(&rx).is_empty());
    assert_eq!(c.drain(false), Ok(true));
    assert_eq!(vips(&rx), ["10.100.0.1", "10.100.0.2"]);

    scratch.write(web);
    c.reload().unwrap();
    assert_eq!(vips(&rx), ["10.100.0.1"], "a service removed by a reload is withdrawn");

    let plain = Scratch::new();
    plain.write(web);
    let (mut c, _, _) = controller(&plain);
    assert!(matches!(c.drain(true), Err(ControlError::Conflict(_))));
    assert_eq!(c.views()[0].announced, None);
}

/// What an agent check's agent says reaches the data path (drain, a
/// weight share, down), and a changed check forgets it.
#[tokio::test]
async fn an_agents_words_reach_the_data_path_until_its_check_changes() {
    let scratch = Scratch::new();
    let web = |port: u16| {
        format!(
            "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\n[service.health_check]\ntype = \"agent\"\n\
             agent_port = {port}\ninterval = \"60s\"\nunhealthy_threshold = 1\n\
             [[service.backend]]\naddress = \"127.0.0.1:1\"\nweight = 10\n"
        )
    };
    scratch.write(&web(7));
    let (mut c, recorder, _reports) = controller(&scratch);
    let b = key("web", "127.0.0.1:1");
    let said = |c: &mut Controller, line: &str| {
        let words = crate::health::parse_agent_line(line);
        let checker = c.checkers.get(&b).expect("a checker").id;
        let ok = words.health != Some(crate::health::AgentHealth::Down);
        let result = CheckResult {
            ok,
            local: false,
            detail: format!("agent: {line}"),
            duration: Duration::from_millis(1),
            finished: Instant::now(),
            agent: Some(words),
        };
        c.health_report(Report { service: b.service.clone(), address: b.address, checker, result });
    };
    let seen = |recorder: &Recorder| {
        let last = recorder.last.lock().unwrap();
        let backend = last.as_ref().unwrap().services[0].backends[0].clone();
        (backend.weight, backend.state, backend.health)
    };
    said(&mut c, "up drain 50%");
    assert_eq!(seen(&recorder), (5, lb_config::AdminState::Drain, Health::Unknown), "1 success of 2: still unknown");
    assert_eq!(c.views()[0].backends[0].agent.as_ref().and_then(|a| a.weight_percent), Some(50), "shown apart");
    said(&mut c, "ready");
    assert_eq!(seen(&recorder), (5, lb_config::AdminState::Ready, Health::Up));
    said(&mut c, "down");
    assert_eq!(seen(&recorder), (5, lb_config::AdminState::Ready, Health::Down), "down counts as a failure");
    said(&mut c, "maint");
    scratch.write(&web(8));
    c.reload().unwrap();
    assert_eq!(seen(&recorder), (10, lb_config::AdminState::Ready, Health::Unknown), "a changed check starts afresh");
    assert!(c.registry.agent.is_empty());
}

#[path = "traffic_tests.rs"]
mod traffic;

//! What the soak does to the balancer, one step every few seconds, and when: reloads
//! (weights; a backend added, then removed), a registration and its deregistration, a
//! backend's server killed and restarted, a rate-limited flood from a second client, and
//! once the daemon SIGKILLed and restarted. Each step is an event with its time, so a
//! failed request can be held against the window it fell in.
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use testenv::{LbDaemon, VIP_V4};

use super::clients::Failure;
use super::common::net::api;

const API: &str = "http://172.20.0.10:9100";
const TOKEN: &str = "soak-test-token";
const TOKEN_FILE: &str = "/run/lbt/token";
/// Servers 4 (added and removed by reloads) and 5 (registered through the API) beside the
/// network's three.
const ADDED: &str = "172.20.0.14:80";
const REGISTERED: &str = "172.20.0.15:80";
/// The server whose process is killed and started again, and its backend.
const KILLED: u8 = 3;
const KILLED_ADDRESS: &str = "172.20.0.13:80";
const FLOOD_NS: &str = "lbt-flood";
/// How long a request in flight when the health check reports its backend down may still
/// take to fail (the client's timeout is 3 s, but a refused connection fails at once).
const IN_FLIGHT: Duration = Duration::from_millis(500);

/// The daemon's config: three servers (weights rotating), server 4 when `added`, health
/// checks every second, and a per-source limit on new flows that the real client (about 40
/// a second) stays under and the flood does not.
fn config(weights: [u32; 3], added: bool) -> String {
    let mut backends: String = (1..=3)
        .zip(weights)
        .map(|(n, w)| format!("[[service.backend]]\naddress = \"172.20.0.1{n}:80\"\nweight = {w}\n"))
        .collect();
    if added {
        backends += &format!("[[service.backend]]\naddress = \"{ADDED}\"\n");
    }
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\nadmin_listen = \"172.20.0.10:9100\"\n\
         token_file = \"{TOKEN_FILE}\"\nstate_file = \"/run/lbt/state.json\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\n\n\
         [service.rate_limit]\nper_source_new_flows_per_second = 100\nper_source_burst = 50\n\n\
         [service.health_check]\ntype = \"http\"\npath = \"/\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         healthy_threshold = 2\nunhealthy_threshold = 2\n\n{backends}",
        pin = testenv::LB_PIN_PATH,
    )
}

const WEIGHTS: [[u32; 3]; 3] = [[1, 1, 1], [3, 1, 2], [1, 4, 1]];

#[derive(Clone, Debug)]
pub struct Event {
    pub what: String,
    pub at: SystemTime,
    pub took: Duration,
    /// A killed backend: requests that went to it may fail until `until`.
    pub window: Option<(String, SystemTime)>,
}

pub struct Churn {
    lb: LbDaemon,
    pid: Arc<AtomicI32>,
    events: Vec<Event>,
    added: bool,
    weights: usize,
    flood_drops: u64,
}

impl Churn {
    /// The extra hosts, then the daemon, serving once every backend is healthy.
    pub fn start() -> Churn {
        std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).expect("token file");
        testenv::add_server(4).expect("server 4");
        testenv::add_server(5).expect("server 5");
        testenv::add_client(FLOOD_NS, 3).expect("the flood's client");
        let lb = LbDaemon::start(&testenv::lb_binary(), &config(WEIGHTS[0], false))
            .unwrap_or_else(|e| panic!("lb run: {e:#}"));
        let pid = Arc::new(AtomicI32::new(lb.pid().expect("daemon pid")));
        let churn = Churn { lb, pid, events: Vec::new(), added: false, weights: 0, flood_drops: 0 };
        for n in 1..=3 {
            wait_health(&format!("172.20.0.1{n}:80"), "up", Duration::from_secs(15));
        }
        churn
    }

    /// The running daemon's pid, for the sampler (it changes at the restart).
    pub fn pid_cell(&self) -> Arc<AtomicI32> {
        self.pid.clone()
    }

    pub fn step(&mut self, i: usize) {
        let began = (SystemTime::now(), Instant::now());
        let (what, window) = match i % 7 {
            0 | 3 => {
                self.weights = (self.weights + 1) % WEIGHTS.len();
                self.reload_by_signal();
                (format!("reload (SIGHUP): weights {:?}", WEIGHTS[self.weights]), None)
            }
            1 | 4 => {
                self.added = !self.added;
                self.reload_by_api();
                (format!("reload (API): {ADDED} {}", if self.added { "added" } else { "removed" }), None)
            }
            2 => {
                let body = format!("{{\"address\":\"{REGISTERED}\",\"weight\":1,\"ttl\":\"60s\"}}");
                let (code, text) = api("POST", &format!("{API}/v1/services/web/backends"), Some(TOKEN), Some(&body));
                assert_eq!(code, 201, "register: {text}");
                (format!("register {REGISTERED}"), None)
            }
            5 => (format!("deregister {REGISTERED}"), self.deregister()),
            _ => self.kill_backend_or_flood(i),
        };
        self.events.push(Event { what, at: began.0, took: began.1.elapsed(), window });
    }

    fn deregister(&mut self) -> Option<(String, SystemTime)> {
        let url = format!("{API}/v1/services/web/backends/{REGISTERED}");
        let (code, text) = api("DELETE", &url, Some(TOKEN), None);
        assert!(code == 204 || code == 404, "deregister: {code} {text}");
        None
    }

    /// Every other turn of step 6: the backend's server killed until the health check sees
    /// it (the window), then started again until it is back up; else the flood.
    fn kill_backend_or_flood(&mut self, i: usize) -> (String, Option<(String, SystemTime)>) {
        if (i / 7).is_multiple_of(2) {
            let address = KILLED_ADDRESS.to_string();
            testenv::stop_server(KILLED).expect("stop the server");
            let killed = Instant::now();
            wait_health(&address, "down", Duration::from_secs(15));
            let detected = SystemTime::now() + IN_FLIGHT;
            let detection = killed.elapsed();
            testenv::start_server(KILLED).expect("start the server again");
            wait_health(&address, "up", Duration::from_secs(15));
            (format!("kill {address}'s server (down after {detection:.1?}), restart it"), Some((address, detected)))
        } else {
            let before = rate_limited();
            let attempts = flood();
            let dropped = rate_limited() - before;
            self.flood_drops += dropped;
            assert!(dropped > 0, "the flood's {attempts} connection attempts were not rate limited");
            (format!("flood from 172.20.0.3: {attempts} connection attempts, {dropped} SYNs rate limited"), None)
        }
    }

    /// SIGKILL: the XDP program keeps forwarding on its own; the successor adopts it.
    pub fn restart_daemon(&mut self) {
        let (at, began) = (SystemTime::now(), Instant::now());
        self.lb.kill().expect("SIGKILL the daemon");
        // The config file stays as it was: the successor reads the same one.
        self.lb = LbDaemon::start_with(&testenv::lb_binary(), "", &[]).unwrap_or_else(|e| panic!("restart: {e:#}"));
        self.pid.store(self.lb.pid().expect("daemon pid"), Ordering::SeqCst);
        let what = format!("daemon SIGKILLed and restarted (serving again after {:.1?})", began.elapsed());
        self.events.push(Event { what, at, took: began.elapsed(), window: None });
    }

    fn reload_by_signal(&mut self) {
        self.lb.reload(&config(WEIGHTS[self.weights], self.added)).unwrap_or_else(|e| panic!("reload: {e:#}"));
    }

    fn reload_by_api(&mut self) {
        std::fs::write(testenv::LB_CONFIG, config(WEIGHTS[self.weights], self.added)).expect("write the config");
        let (code, text) = api("POST", &format!("{API}/v1/reload"), Some(TOKEN), None);
        assert_eq!(code, 200, "reload through the API: {text}");
    }

    pub fn finish(self) -> Events {
        Events { events: self.events, flood_drops: self.flood_drops }
    }
}

pub struct Events {
    events: Vec<Event>,
    flood_drops: u64,
}

impl Events {
    /// A failed request is excused only inside a killed backend's window, and only if its
    /// flow went to that backend. A failure's time is when its request started, so the
    /// window opens `IN_FLIGHT` before the kill: a request the server had accepted when it
    /// was killed is reset with it, whatever the balancer does.
    pub fn excuses(&self, f: &Failure) -> bool {
        self.events.iter().any(|e| match &e.window {
            Some((backend, until)) => {
                f.at + IN_FLIGHT >= e.at && f.at <= *until && f.backend.as_deref() == Some(backend.as_str())
            }
            None => false,
        })
    }

    pub fn assert_every_kind_ran(&self) {
        for kind in ["reload (SIGHUP)", "reload (API)", "register", "deregister", "kill", "daemon SIGKILLed", "flood"] {
            assert!(self.events.iter().any(|e| e.what.starts_with(kind)), "no {kind} in the run: {:#?}", self.events);
        }
    }

    pub fn summary(&self) -> String {
        let mut out = format!("churn: {} steps, {} SYNs of floods rate limited", self.events.len(), self.flood_drops);
        let first = self.events.first().map(|e| e.at).unwrap_or(SystemTime::now());
        for e in &self.events {
            let t = e.at.duration_since(first).unwrap_or_default().as_secs_f64();
            out += &format!("\n  +{t:6.1}s {} ({:.1?})", e.what, e.took);
        }
        out
    }
}

fn services() -> Value {
    let (code, body) = api("GET", &format!("{API}/v1/services"), None, None);
    if code != 200 {
        return Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn wait_health(address: &str, want: &str, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        let s = services();
        let found =
            s[0]["backends"].as_array().into_iter().flatten().any(|b| b["address"] == address && b["health"] == want);
        if found {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{address} not {want} within {limit:?}: {}", services());
}

/// SYNs the data path dropped by a rate limit so far (`/metrics`).
fn rate_limited() -> u64 {
    let (code, body) = api("GET", &format!("{API}/metrics"), None, None);
    assert_eq!(code, 200, "metrics: {body}");
    body.lines()
        .filter(|l| l.starts_with("lb_drops_total{") && l.contains("reason=\"rate_limited\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// New connections from the second client as fast as it can open them: at most 1500
/// attempts in at most 3 s, each socket closed before it ends. Returns the attempts.
const FLOOD: &str = r#"
import socket, sys, time
vip, end, attempts, open_ = sys.argv[1], time.time() + 3, 0, []
while time.time() < end and attempts < 1500:
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((vip, 80))
    attempts += 1
    open_.append(s)
    if len(open_) >= 200:
        for o in open_:
            o.close()
        open_ = []
    time.sleep(0.001)
for o in open_:
    o.close()
print(attempts)
"#;

fn flood() -> u64 {
    let out = testenv::exec_ok(FLOOD_NS, &["python3", "-c", FLOOD, VIP_V4]).expect("flood");
    out.trim().parse().unwrap_or_else(|_| panic!("flood printed {out:?}"))
}

/// For the failure report: which backend a client's flow went to, from the pinned flow
/// table (the daemon need not be running).
pub fn backend_of(client: &str) -> Option<String> {
    let out = std::process::Command::new(testenv::lb_binary())
        .args(["list", "flows", "--json", "--pin-path", testenv::LB_PIN_PATH])
        .output()
        .ok()?;
    let flows: Value = serde_json::from_slice(&out.stdout).ok()?;
    flows.as_array()?.iter().find(|f| f["client"] == client).and_then(|f| f["backend"].as_str().map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(at: SystemTime, backend: Option<&str>) -> Failure {
        Failure { at, client: "172.20.0.2:40000".into(), error: "refused".into(), backend: backend.map(String::from) }
    }

    #[test]
    fn only_a_failure_through_the_killed_backend_inside_its_window_is_excused() {
        let killed = SystemTime::now();
        let until = killed + Duration::from_secs(2);
        let events = Events {
            events: vec![
                Event {
                    what: "kill".into(),
                    at: killed,
                    took: Duration::ZERO,
                    window: Some((KILLED_ADDRESS.into(), until)),
                },
                Event { what: "reload".into(), at: until, took: Duration::ZERO, window: None },
            ],
            flood_drops: 0,
        };
        let inside = killed + Duration::from_secs(1);
        assert!(events.excuses(&failure(inside, Some(KILLED_ADDRESS))));
        assert!(!events.excuses(&failure(inside, Some("172.20.0.11:80"))), "another backend");
        assert!(!events.excuses(&failure(inside, None)), "no flow to name");
        assert!(!events.excuses(&failure(until + Duration::from_millis(1), Some(KILLED_ADDRESS))), "after");
        let in_flight = killed - IN_FLIGHT + Duration::from_millis(1);
        assert!(events.excuses(&failure(in_flight, Some(KILLED_ADDRESS))), "in flight at the kill");
        let before = killed - IN_FLIGHT - Duration::from_millis(1);
        assert!(!events.excuses(&failure(before, Some(KILLED_ADDRESS))), "before");
    }
}

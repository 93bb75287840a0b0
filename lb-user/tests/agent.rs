//! `lb agent` and `lb backend set-state` against a fake admin API (host, no root); and
//! the CLI's output into a pipe whose reader has gone (`lb list` through the same fake API,
//! `lb check`), which must end quietly, not in a panic.
//!
//! The fake server is a std `TcpListener` on loopback that parses raw HTTP/1.1 requests,
//! records them and answers what each test scripts. The real `lb` binary is the client.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// The fake admin API

#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }

    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// What the server answers: status and body, given the request and how many requests with
/// the same method and path came before it.
type Script = dyn Fn(&Request, usize) -> (u16, String) + Send + Sync;

struct FakeApi {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeApi {
    /// The contract's happy answers: 201 / 200 / 204.
    fn start() -> FakeApi {
        Self::start_with(ok_script)
    }

    fn start_with(script: impl Fn(&Request, usize) -> (u16, String) + Send + Sync + 'static) -> FakeApi {
        Self::serve(TcpListener::bind("127.0.0.1:0").unwrap(), Arc::new(script))
    }

    /// On a port chosen before (by [`reserve_port`]).
    fn start_on(addr: SocketAddr) -> FakeApi {
        Self::serve(TcpListener::bind(addr).expect("bind the reserved port"), Arc::new(ok_script))
    }

    fn serve(listener: TcpListener, script: Arc<Script>) -> FakeApi {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(HashMap::<(String, String), usize>::new()));
        let log = requests.clone();
        // The thread outlives the test's assertions; it ends with the test process.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, seen, script) = (log.clone(), seen.clone(), script.clone());
                thread::spawn(move || handle(stream, &log, &seen, &*script));
            }
        });
        FakeApi { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the recorded requests; panics with them after `timeout`.
    fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; requests so far: {:#?}", summary(&requests));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn ok_script(request: &Request, _: usize) -> (u16, String) {
    match request.method.as_str() {
        "POST" => (201, r#"{"registered":true}"#.into()),
        "DELETE" => (204, String::new()),
        _ => (200, "{}".into()),
    }
}

fn handle(
    stream: TcpStream,
    log: &Mutex<Vec<Request>>,
    seen: &Mutex<HashMap<(String, String), usize>>,
    script: &Script,
) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = Request { method, path, headers, body: String::from_utf8_lossy(&body).into(), at: Instant::now() };
    let nth = {
        let mut seen = seen.lock().unwrap();
        let count = seen.entry((request.method.clone(), request.path.clone())).or_insert(0);
        *count += 1;
        *count - 1
    };
    let (status, body) = script(&request, nth);
    log.lock().unwrap().push(request);
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(response.as_bytes());
}

fn summary(requests: &[Request]) -> Vec<String> {
    requests.iter().map(|r| format!("{} {} {}", r.method, r.path, r.body)).collect()
}

/// A loopback port nobody listens on right now (bound, then released).
fn reserve_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn error_body(message: &str) -> String {
    json!({ "error": message }).to_string()
}

// ---------------------------------------------------------------------------------------
// The `lb` binary

fn lb() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lb"));
    command.env("LB_LOG", "info").stdin(Stdio::null());
    command
}

/// A token file with `token` in it, unique to the test.
/// Rotates the token as an operator's tooling should: a new file renamed over the old one
/// (a request sent while a file is rewritten in place may carry no token at all).
fn rotate(token: &std::path::Path, new: &str) {
    let fresh = token.with_extension("new");
    std::fs::write(&fresh, format!("{new}\n")).unwrap();
    std::fs::rename(&fresh, token).unwrap();
}

fn token_file(name: &str, token: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lb-agent-test-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// `lb agent` as a child; killed if the test ends first. Its stderr is collected.
struct Agent {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    fn spawn(api: &str, extra: &[&str]) -> Agent {
        let mut child = lb()
            .args(["agent", "--api", api, "--service", "web"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lb agent");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Agent { child, stderr }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread drain the pipe.
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                panic!("lb agent still running after {timeout:?}; stderr:\n{}", self.stderr());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn running(&self) -> bool {
        // SAFETY: waitpid(2) with WNOHANG on our own child, without reaping (WNOWAIT).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(libc::P_PID, self.child.id(), &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
        };
        r == 0 && unsafe { info.si_pid() } == 0
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const HEARTBEAT: &str = "/v1/services/web/backends/127.0.0.1%3A8081/heartbeat";
const BACKENDS: &str = "/v1/services/web/backends";

fn outage_warnings(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains("WARN") && l.contains("unreachable")).count()
}

fn count(requests: &[Request], method: &str, path: &str) -> usize {
    requests.iter().filter(|r| r.is(method, path)).count()
}

// ---------------------------------------------------------------------------------------
// lb agent

#[test]
fn agent_registers_with_address_weight_ttl_and_bearer_token() {
    let api = FakeApi::start();
    let token = token_file("register", "s3cret");
    let _agent = Agent::spawn(
        &api.url(),
        &["--address", "127.0.0.1:8081", "--weight", "7", "--ttl", "600ms", "--token-file", token.to_str().unwrap()],
    );
    let requests = api.wait_for(Duration::from_secs(5), "a registration", |r| !r.is_empty());
    let register = &requests[0];
    assert!(register.is("POST", BACKENDS), "{register:?}");
    assert_eq!(register.json(), json!({"address": "127.0.0.1:8081", "weight": 7, "ttl": "600ms"}));
    assert_eq!(register.headers["authorization"], "Bearer s3cret");
    assert!(register.headers["content-type"].starts_with("application/json"));
}

#[test]
fn agent_heartbeats_about_every_third_of_the_ttl() {
    let api = FakeApi::start();
    let token = token_file("heartbeat", "s3cret");
    let _agent = Agent::spawn(
        &api.url(),
        &["--address", "127.0.0.1:8081", "--ttl", "600ms", "--token-file", token.to_str().unwrap()],
    );
    let requests = api.wait_for(Duration::from_secs(5), "five heartbeats", |r| count(r, "PUT", HEARTBEAT) >= 5);
    let register = requests.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(register.json()["weight"], 1, "default weight");
    let beats: Vec<&Request> = requests.iter().filter(|r| r.is("PUT", HEARTBEAT)).collect();
    assert!(beats.iter().all(|b| b.headers["authorization"] == "Bearer s3cret"));
    let mut previous = register.at;
    for beat in &beats {
        let gap = beat.at - previous;
        // ttl/3 = 200 ms; generous bounds for a loaded CI machine.
        assert!(gap >= Duration::from_millis(150) && gap <= Duration::from_millis(450), "gap {gap:?}");
        previous = beat.at;
    }
    assert_eq!(count(&requests, "POST", BACKENDS), 1, "no re-registration while heartbeats succeed");
}

#[test]
fn a_heartbeat_404_makes_the_agent_register_again() {
    // The second heartbeat finds the lease gone (expired, or the LB restarted without it).
    let api = FakeApi::start_with(|request, nth| {
        if request.is("PUT", HEARTBEAT) && nth == 1 {
            (404, error_body("no registration for 127.0.0.1:8081 in service web"))
        } else {
            ok_script(request, nth)
        }
    });
    let agent =
        Agent::spawn(&api.url(), &["--address", "127.0.0.1:8081", "--ttl", "600ms", "--token-file", "/nonexistent"]);
    let requests = api.wait_for(Duration::from_secs(5), "re-registration and a heartbeat after it", |r| {
        count(r, "POST", BACKENDS) == 2 && count(r, "PUT", HEARTBEAT) >= 3
    });
    let sequence: Vec<&str> = requests.iter().take(5).map(|r| r.method.as_str()).collect();
    assert_eq!(sequence, ["POST", "PUT", "PUT", "POST", "PUT"], "{:#?}", summary(&requests));
    assert_eq!(requests[3].json(), requests[0].json(), "the same registration again");
    assert!(agent.running(), "still running");
    assert!(agent.stderr().contains("registering again"), "{}", agent.stderr());
}

#[test]
fn agent_waits_for_an_unreachable_lb_and_registers_once_it_is_up() {
    let addr = reserve_port();
    let agent = Agent::spawn(&format!("http://{addr}"), &["--address", "127.0.0.1:8081", "--ttl", "600ms"]);
    // Several failed attempts (backoff from 200 ms) before the LB appears.
    thread::sleep(Duration::from_millis(1200));
    let api = FakeApi::start_on(addr);
    let requests = api.wait_for(Duration::from_secs(6), "registration then a heartbeat", |r| {
        count(r, "POST", BACKENDS) >= 1 && count(r, "PUT", HEARTBEAT) >= 1
    });
    assert!(requests[0].is("POST", BACKENDS));
    let stderr = agent.stderr();
    assert_eq!(outage_warnings(&stderr), 1, "one warning per outage, not per retry:\n{stderr}");
    assert!(stderr.contains("reachable again"), "{stderr}");
}

#[test]
fn server_errors_are_retried_with_backoff_until_registration_succeeds() {
    let api = FakeApi::start_with(|request, nth| {
        if request.method == "POST" && nth < 3 {
            (503, error_body("starting up"))
        } else {
            ok_script(request, nth)
        }
    });
    let agent = Agent::spawn(&api.url(), &["--address", "127.0.0.1:8081", "--ttl", "600ms"]);
    let requests =
        api.wait_for(Duration::from_secs(6), "four registration attempts", |r| count(r, "POST", BACKENDS) >= 4);
    let posts: Vec<Instant> = requests.iter().filter(|r| r.method == "POST").map(|r| r.at).collect();
    let gaps: Vec<Duration> = posts.windows(2).map(|w| w[1] - w[0]).collect();
    // Backoff 200, 400, 800 ms, less up to a quarter of jitter.
    assert!(gaps[0] >= Duration::from_millis(140), "{gaps:?}");
    assert!(gaps[2] > gaps[0], "delays grow: {gaps:?}");
    api.wait_for(Duration::from_secs(2), "a heartbeat", |r| count(r, "PUT", HEARTBEAT) >= 1);
    assert_eq!(outage_warnings(&agent.stderr()), 1, "{}", agent.stderr());
}

/// SIGTERM and SIGINT: state drain, then the drain time, then DELETE, then exit 0.
fn leaves_gracefully_on(signal: libc::c_int, drain_time: Duration) {
    let api = FakeApi::start();
    let token = token_file("leave", "s3cret");
    let drain = format!("{}ms", drain_time.as_millis());
    let mut agent = Agent::spawn(
        &api.url(),
        &[
            "--address",
            "127.0.0.1:8081",
            "--ttl",
            "600ms",
            "--drain-time",
            &drain,
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    api.wait_for(Duration::from_secs(5), "a heartbeat", |r| count(r, "PUT", HEARTBEAT) >= 1);
    let signalled = Instant::now();
    agent.signal(signal);
    let status = agent.wait(drain_time + Duration::from_secs(4));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", agent.stderr());

    let requests = api.requests();
    let drain = requests
        .iter()
        .position(|r| r.is("PUT", "/v1/services/web/backends/127.0.0.1%3A8081/state"))
        .unwrap_or_else(|| panic!("no drain: {:#?}", summary(&requests)));
    assert_eq!(requests[drain].json(), json!({"state": "drain"}));
    assert_eq!(requests[drain].headers["authorization"], "Bearer s3cret");
    assert!(requests[drain].at - signalled < Duration::from_millis(500), "drain promptly, even mid-sleep");
    let after = &requests[drain + 1..];
    let (delete, beats) =
        after.split_last().unwrap_or_else(|| panic!("nothing after drain: {:#?}", summary(&requests)));
    assert!(beats.iter().all(|r| r.is("PUT", HEARTBEAT)), "only heartbeats, then DELETE: {:#?}", summary(&requests));
    assert_eq!(beats.len(), (drain_time.as_millis() / 200) as usize, "a heartbeat every ttl/3 while draining");
    assert!(delete.is("DELETE", "/v1/services/web/backends/127.0.0.1%3A8081"));
    assert_eq!(delete.headers["authorization"], "Bearer s3cret");
    let waited = delete.at - requests[drain].at;
    assert!(waited >= drain_time, "DELETE {waited:?} after drain; drain time {drain_time:?}");
    assert!(waited < drain_time + Duration::from_millis(500), "{waited:?}");
}

#[test]
fn sigterm_drains_waits_the_drain_time_then_deregisters_and_exits_0() {
    leaves_gracefully_on(libc::SIGTERM, Duration::from_millis(700));
}

#[test]
fn sigint_drains_waits_the_drain_time_then_deregisters_and_exits_0() {
    leaves_gracefully_on(libc::SIGINT, Duration::from_millis(300));
}

#[test]
fn a_signal_before_any_registration_exits_0_without_calls() {
    let addr = reserve_port(); // nobody listens: the agent is in backoff
    let mut agent = Agent::spawn(&format!("http://{addr}"), &["--address", "127.0.0.1:8081"]);
    thread::sleep(Duration::from_millis(500));
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(Duration::from_secs(3)).code(), Some(0), "{}", agent.stderr());
}

#[test]
fn a_refused_token_is_re_read_from_the_file_and_retried_with_backoff() {
    // The LB accepts only "new-token"; the agent starts with the old one, then the file is
    // rotated under it.
    let api = FakeApi::start_with(|request, nth| match request.headers.get("authorization").map(String::as_str) {
        Some("Bearer new-token") => ok_script(request, nth),
        _ => (401, error_body("invalid bearer token")),
    });
    let token = token_file("rotate", "old-token");
    let agent = Agent::spawn(
        &api.url(),
        &["--address", "127.0.0.1:8081", "--ttl", "600ms", "--token-file", token.to_str().unwrap()],
    );
    let refused =
        api.wait_for(Duration::from_secs(5), "three refused registrations", |r| count(r, "POST", BACKENDS) >= 3);
    assert!(agent.running(), "a 401 is not the end: {}", agent.stderr());
    let gaps: Vec<Duration> = refused.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(140) && gaps[1] > gaps[0], "backoff between retries: {gaps:?}");
    rotate(&token, "new-token");
    let bearer = |r: &Request| r.headers.get("authorization").map(String::as_str) == Some("Bearer new-token");
    let requests = api.wait_for(Duration::from_secs(8), "a registration with the new token, then a heartbeat", |r| {
        r.iter().any(|r| r.is("POST", BACKENDS) && bearer(r)) && count(r, "PUT", HEARTBEAT) >= 1
    });
    assert!(requests.iter().filter(|r| r.is("PUT", HEARTBEAT)).all(bearer));
    let stderr = agent.stderr();
    assert_eq!(stderr.matches("refused the token").count(), 1, "one warning per episode:\n{stderr}");
    assert!(stderr.contains("accepts the token again"), "{stderr}");
}

#[test]
fn a_heartbeat_refused_mid_lease_picks_up_the_rotated_token() {
    let api = FakeApi::start_with(|request, nth| {
        let auth = request.headers.get("authorization").map(String::as_str);
        // The old token is retired after the first heartbeat.
        if request.is("PUT", HEARTBEAT) && nth >= 1 && auth != Some("Bearer new-token") {
            (401, error_body("invalid bearer token"))
        } else {
            ok_script(request, nth)
        }
    });
    let token = token_file("rotate-heartbeat", "old-token");
    let agent = Agent::spawn(
        &api.url(),
        &["--address", "127.0.0.1:8081", "--ttl", "600ms", "--token-file", token.to_str().unwrap()],
    );
    api.wait_for(Duration::from_secs(5), "a refused heartbeat", |r| count(r, "PUT", HEARTBEAT) >= 2);
    rotate(&token, "new-token");
    let bearer = |r: &Request| r.headers.get("authorization").map(String::as_str) == Some("Bearer new-token");
    api.wait_for(Duration::from_secs(5), "heartbeats with the new token", |r| {
        r.iter().filter(|r| r.is("PUT", HEARTBEAT) && bearer(r)).count() >= 2
    });
    assert!(agent.running(), "{}", agent.stderr());
}

#[test]
fn without_a_token_a_401_is_retried_and_says_why() {
    let api = FakeApi::start_with(|request, _| {
        if request.headers.contains_key("authorization") {
            (201, "{}".into())
        } else {
            (401, error_body("missing or invalid bearer token"))
        }
    });
    // No token file: the request goes without a token, the server's 401 says so.
    let mut agent = Agent::spawn(&api.url(), &["--address", "127.0.0.1:8081", "--token-file", "/nonexistent/token"]);
    api.wait_for(Duration::from_secs(5), "a retry", |r| r.len() >= 2);
    let stderr = agent.stderr();
    assert!(stderr.contains("401") && stderr.contains("missing or invalid bearer token"), "{stderr}");
    assert!(stderr.contains("no bearer token was sent"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(Duration::from_secs(3)).code(), Some(0), "not registered: nothing to drain");
}

#[test]
fn heartbeats_go_on_while_draining_longer_than_the_lease() {
    let api = FakeApi::start();
    let mut agent = Agent::spawn(
        &api.url(),
        &["--address", "127.0.0.1:8081", "--ttl", "300ms", "--drain-time", "1200ms", "--token-file", "/nonexistent"],
    );
    api.wait_for(Duration::from_secs(5), "a heartbeat", |r| count(r, "PUT", HEARTBEAT) >= 1);
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(Duration::from_secs(5)).code(), Some(0), "{}", agent.stderr());
    let requests = api.requests();
    let drain = requests.iter().position(|r| r.method == "PUT" && r.path.ends_with("/state")).expect("drain");
    let delete = requests.iter().position(|r| r.method == "DELETE").expect("deregister");
    // Each gap between drain, heartbeats and DELETE stays well inside the 300 ms lease.
    let times: Vec<Instant> = requests[drain..=delete].iter().map(|r| r.at).collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 10, "about 12 heartbeats in 1.2 s: {:#?}", summary(&requests[drain..]));
    assert!(gaps.iter().all(|g| *g < Duration::from_millis(250)), "{gaps:?}");
}

#[test]
fn ipv6_backends_register_and_heartbeat_with_the_address_percent_encoded() {
    let api = FakeApi::start();
    let _agent = Agent::spawn(&api.url(), &["--address", "[fd00:20::11]:80", "--ttl", "600ms"]);
    let requests = api.wait_for(Duration::from_secs(5), "a heartbeat", |r| r.iter().any(|r| r.method == "PUT"));
    assert_eq!(requests[0].json()["address"], "[fd00:20::11]:80");
    assert_eq!(requests[1].path, "/v1/services/web/backends/%5Bfd00%3A20%3A%3A11%5D%3A80/heartbeat");
}

// ---------------------------------------------------------------------------------------
// lb backend set-state

#[test]
fn set_state_sends_the_state_with_the_token_and_prints_it() {
    let api = FakeApi::start_with(|_, _| (200, json!({"address": "10.0.0.1:80", "state": "maint"}).to_string()));
    let token = token_file("set-state", "t0ken");
    let output = lb()
        .args(["backend", "set-state", "--api", &api.url(), "--token-file", token.to_str().unwrap()])
        .args(["--service", "web", "--address", "10.0.0.1:80", "maint"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "maint");
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].is("PUT", "/v1/services/web/backends/10.0.0.1%3A80/state"));
    assert_eq!(requests[0].json(), json!({"state": "maint"}));
    assert_eq!(requests[0].headers["authorization"], "Bearer t0ken");
}

#[test]
fn set_state_404_exits_1_with_the_servers_error_and_status() {
    let api = FakeApi::start_with(|_, _| (404, error_body("no backend 10.0.0.9:80 in service web")));
    let output = lb()
        .args(["backend", "set-state", "--api", &api.url(), "--token-file", "/nonexistent/token"])
        .args(["--service", "web", "--address", "10.0.0.9:80", "drain"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no backend 10.0.0.9:80 in service web") && stderr.contains("404"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn set_state_percent_encodes_ipv6_addresses() {
    let api = FakeApi::start();
    let output = lb()
        .args([
            "backend",
            "set-state",
            "--api",
            &api.url(),
            "--service",
            "web",
            "--address",
            "[fd00:20::11]:80",
            "ready",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ready", "the requested state when the answer has none");
    let requests = api.requests();
    assert_eq!(requests[0].path, "/v1/services/web/backends/%5Bfd00%3A20%3A%3A11%5D%3A80/state");
    assert_eq!(requests[0].json(), json!({"state": "ready"}));
}

#[test]
fn set_state_against_an_unreachable_api_exits_1_promptly() {
    let addr = reserve_port();
    let started = Instant::now();
    let output = lb()
        .args([
            "backend",
            "set-state",
            "--api",
            &format!("http://{addr}"),
            "--service",
            "web",
            "--address",
            "10.0.0.1:80",
            "drain",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unreachable"));
    assert!(started.elapsed() < Duration::from_secs(3));
}

// ---------------------------------------------------------------------------------------
// Output into a closed pipe (`lb list flows | head`)

/// Runs `command` with stdout a pipe whose reader is already closed: every write fails with
/// EPIPE. Returns the exit status and stderr.
fn into_closed_pipe(command: &mut Command) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = command.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `GET /v1/services` with 40 services of 25 backends: a thousand lines of table, more as
/// JSON, far beyond a pipe's buffer even if it were read.
fn many_services(request: &Request, _: usize) -> (u16, String) {
    if !request.is("GET", "/v1/services") {
        return (404, error_body("not here"));
    }
    let services: Vec<Value> = (0..40)
        .map(|s| {
            let backends: Vec<Value> = (0..25)
                .map(|b| {
                    json!({"address": format!("10.0.{s}.{b}:80"), "weight": 1, "state": "ready",
                           "health": "unknown", "last_check": null, "sources": ["config"],
                           "lease_expires_in_seconds": null})
                })
                .collect();
            json!({"name": format!("svc{s}"), "vip": format!("10.1.0.{s}:80"), "protocol": "tcp",
                   "algorithm": "maglev", "forwarding": "nat", "backends": backends})
        })
        .collect();
    (200, Value::Array(services).to_string())
}

#[test]
fn lb_list_into_a_closed_pipe_exits_0_without_a_panic() {
    let api = FakeApi::start_with(many_services);
    for args in [vec!["backends"], vec!["backends", "--json"], vec!["vips"], vec!["vips", "--json"]] {
        let (status, stderr) = into_closed_pipe(
            lb().args(["list", "--pin-path", "/nonexistent/lb-pins", "--api", &api.url()]).args(&args),
        );
        assert!(!stderr.contains("panicked"), "lb list {args:?}: {stderr}");
        assert_eq!(status.code(), Some(0), "lb list {args:?}: {stderr}");
        assert_eq!(stderr, "", "lb list {args:?}: quietly");
    }
    // And with a reader, every row arrives.
    let output = lb().args(["list", "backends", "--pin-path", "/nonexistent/lb-pins", "--api", &api.url()]).output();
    let output = output.unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1 + 40 * 25);
}

#[test]
fn lb_check_and_lb_backend_into_a_closed_pipe_exit_0_without_a_panic() {
    let dir = token_file("check-pipe", "unused");
    let config = dir.with_file_name("lb.toml");
    std::fs::write(&config, "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\n").unwrap();
    let (status, stderr) = into_closed_pipe(lb().args(["check", "-c", config.to_str().unwrap()]));
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!((status.code(), stderr.as_str()), (Some(0), ""));

    let api = FakeApi::start_with(|_, _| (200, json!({"address": "10.0.0.1:80", "state": "drain"}).to_string()));
    let (status, stderr) = into_closed_pipe(
        lb().args(["backend", "set-state", "--api", &api.url(), "--token-file", "/nonexistent/token"]).args([
            "--service",
            "web",
            "--address",
            "10.0.0.1:80",
            "drain",
        ]),
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn lb_check_warns_of_a_tcp_check_on_a_udp_service_and_still_says_ok() {
    let dir = token_file("check-warning", "unused");
    let config = dir.with_file_name("lb.toml");
    std::fs::write(
        &config,
        "[[service]]\nname = \"dns\"\nvip = \"10.0.0.100:53\"\nprotocol = \"udp\"\nhealth_check = { type = \"tcp\" }\n",
    )
    .unwrap();
    let output = lb().args(["check", "-c", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");
    let expected = format!("{}:5:25: warning: health check type \"tcp\" connects over TCP", config.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Arguments

#[test]
fn bad_arguments_are_clap_errors_not_panics() {
    let agent = ["agent", "--api", "http://127.0.0.1:9", "--service", "web"];
    let cases: Vec<Vec<&str>> = vec![
        [&agent[..], &["--address", "10.0.0.1"]].concat(),
        [&agent[..], &["--address", "10.0.0.1:80", "--weight", "10001"]].concat(),
        [&agent[..], &["--address", "10.0.0.1:80", "--weight", "-1"]].concat(),
        [&agent[..], &["--address", "10.0.0.1:80", "--ttl", "10"]].concat(),
        [&agent[..], &["--address", "10.0.0.1:80", "--ttl", "0s"]].concat(),
        [&agent[..], &["--address", "10.0.0.1:80", "--ttl", "25h"]].concat(),
        [&agent[..], &["--address", "10.0.0.1:80", "--drain-time", "2x"]].concat(),
        vec!["agent", "--api", "https://lb:9100", "--service", "web", "--address", "10.0.0.1:80"],
        vec!["agent", "--api", "http://127.0.0.1:9", "--service", "", "--address", "10.0.0.1:80"],
        vec![
            "backend",
            "set-state",
            "--api",
            "http://127.0.0.1:9",
            "--service",
            "web",
            "--address",
            "10.0.0.1:80",
            "up",
        ],
        vec!["backend", "set-state", "--api", "http://127.0.0.1:9", "--service", "web", "--address", "10.0.0.1:80"],
    ];
    for args in cases {
        let output = lb().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn help_documents_every_argument() {
    for (args, flags) in [
        (
            vec!["agent", "--help"],
            vec![
                "--api",
                "--service",
                "--address",
                "--weight",
                "--ttl",
                "--token-file",
                "--drain-time",
                "[default: 10s]",
                "[default: 1]",
                "[default: /etc/lb/token]",
                "[default: 2s]",
            ],
        ),
        (
            vec!["backend", "set-state", "--help"],
            vec!["--api", "--service", "--address", "--token-file", "[possible values: ready, drain, maint]"],
        ),
        (vec!["backend", "--help"], vec!["set-state"]),
    ] {
        let output = lb().args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        for flag in flags {
            assert!(help.contains(flag), "{args:?} lacks {flag}:\n{help}");
        }
        // Every option line carries a description after its value name.
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            assert!(line.split("  ").filter(|p| !p.trim().is_empty()).count() >= 2, "undocumented: {line}");
        }
    }
}

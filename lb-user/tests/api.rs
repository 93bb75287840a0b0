//! The admin API on loopback, against a fake controller: a task that answers `Request`s from
//! a tiny in-memory state the way the real controller does. Requests are raw HTTP/1.1 over
//! a TCP socket, so what is tested is exactly what goes over the wire.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use lb_config::Tokens;
use lb_control::cluster::store::Store;
use lb_control::handle::{Admitted, Proposal};
use lb_control::telemetry::{Histogram, TelemetryData};
use lb_control::{BackendView, ControlError, ControlHandle, Request, ServiceView, Telemetry};
use lb_user::api::{serve, ApiState, FlowWalks};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const TOKEN: &str = "s3cret-token";

// ---- fake controller ----------------------------------------------------------------

#[derive(Default)]
struct Fake {
    services: Vec<ServiceView>,
    /// Every command received, as "verb service address", to check what got through.
    seen: Vec<String>,
    fail_reload: bool,
    /// `[cluster.bgp]`: whether the node drains; `None` without BGP (drain refused).
    draining: Option<bool>,
}

impl Fake {
    fn service(&mut self, name: &str) -> Result<&mut ServiceView, ControlError> {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| ControlError::NotFound(format!("unknown service {name:?}")))
    }

    fn backend(&mut self, service: &str, address: SocketAddr) -> Result<&mut BackendView, ControlError> {
        let a = address.to_string();
        self.service(service)?
            .backends
            .iter_mut()
            .find(|b| b.address == a)
            .ok_or_else(|| ControlError::NotFound(format!("service {service:?} has no backend {a}")))
    }

    fn handle(&mut self, cmd: Request) {
        match cmd {
            Request::Services(reply) => {
                let _ = reply.send(Ok(self.services.clone()));
            }
            Request::Register { service, address, weight, ttl, reply } => {
                self.seen.push(format!("register {service} {address}"));
                let result = self.service(&service).map(|s| {
                    let a = address.to_string();
                    let existed = s.backends.iter().any(|b| b.address == a);
                    s.backends.retain(|b| b.address != a);
                    s.backends.push(BackendView {
                        address: a,
                        weight,
                        api_weight: None,
                        slow_start_percent: None,
                        state: "ready".into(),
                        health: "unknown".into(),
                        last_check: None,
                        sources: vec!["registration".into()],
                        lease_expires_in_seconds: Some(ttl.as_secs_f64()),
                        proxy: None,
                        circuit: "closed".into(),
                        ejections_total: 0,
                        agent: None,
                    });
                    !existed
                });
                let _ = reply.send(result);
            }
            Request::Heartbeat { service, address, reply } => {
                self.seen.push(format!("heartbeat {service} {address}"));
                let _ = reply.send(self.backend(&service, address).map(|_| ()));
            }
            Request::SetState { service, address, state, reply } => {
                self.seen.push(format!("set_state {service} {address} {state}"));
                let _ = reply.send(self.backend(&service, address).map(|b| b.state = state.to_string()));
            }
            Request::SetWeight { service, address, weight, reply } => {
                self.seen.push(format!("set_weight {service} {address} {weight:?}"));
                let _ = reply.send(self.backend(&service, address).map(|b| {
                    b.api_weight = weight;
                    if let Some(w) = weight {
                        b.weight = w;
                    }
                }));
            }
            Request::Deregister { service, address, reply } => {
                self.seen.push(format!("deregister {service} {address}"));
                let a = address.to_string();
                let result = self
                    .backend(&service, address)
                    .map(|_| ())
                    .and_then(|()| self.service(&service).map(|s| s.backends.retain(|b| b.address != a)));
                let _ = reply.send(result);
            }
            Request::Drain { drain, reply } => {
                self.seen.push(format!("drain {drain}"));
                let _ = reply.send(match &mut self.draining {
                    Some(draining) => Ok(std::mem::replace(draining, drain)),
                    None => Err(ControlError::Conflict("this node has no [cluster.bgp]".into())),
                });
            }
            Request::Check { proposal, reply } => {
                // The real controller's checks are its own tests'; here: the service exists.
                let (Proposal::Register(key)
                | Proposal::SetState(key)
                | Proposal::SetWeight(key)
                | Proposal::Deregister(key)) = &proposal;
                self.seen.push(format!("check {} {}", key.service, key.address));
                let _ = reply.send(self.service(&key.service).map(|_| Admitted { configured: false }));
            }
            Request::Store(change) => self.seen.push(format!("store {change:?}")),
            Request::Reload(reply) => {
                self.seen.push("reload".into());
                let _ = reply.send(if self.fail_reload {
                    Err(ControlError::InvalidConfig(vec![
                        diagnostic(3, 7, "invalid vip \"nope\""),
                        diagnostic(9, 1, "service \"web\" has no backends"),
                    ]))
                } else {
                    Ok(())
                });
            }
        }
    }
}

fn diagnostic(line: usize, column: usize, message: &str) -> lb_config::Diagnostic {
    lb_config::Diagnostic {
        file: "lb.toml".into(),
        position: Some(lb_config::Position { line, column }),
        message: message.into(),
    }
}

fn web_service() -> ServiceView {
    ServiceView {
        name: "web".into(),
        vip: "172.20.0.100:80".into(),
        protocol: "tcp".into(),
        algorithm: "maglev".into(),
        forwarding: "nat".into(),
        announced: None,
        backends: vec![BackendView {
            address: "172.20.0.11:80".into(),
            weight: 1,
            api_weight: None,
            slow_start_percent: None,
            state: "ready".into(),
            health: "up".into(),
            last_check: None,
            sources: vec!["config".into()],
            lease_expires_in_seconds: None,
            proxy: None,
            circuit: "closed".into(),
            ejections_total: 0,
            agent: None,
        }],
    }
}

// ---- server under test --------------------------------------------------------------

struct Api {
    addr: SocketAddr,
    fake: Arc<Mutex<Fake>>,
    token: Arc<RwLock<Tokens>>,
    telemetry: Arc<Telemetry>,
    flow_walks: FlowWalks,
    ready: lb_control::ReadyFlag,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start() -> Api {
    start_listening_as("127.0.0.1:9100".parse().unwrap()).await
}

/// The server, told that `admin_listen` is `listen` (it serves on an ephemeral loopback
/// port all the same): what decides whether flow listings need the token.
async fn start_listening_as(listen: SocketAddr) -> Api {
    start_with(listen, None).await
}

/// With a shared store whose etcd is `etcd`.
async fn start_with_store(etcd: &str) -> Api {
    start_with("127.0.0.1:9100".parse().unwrap(), Some(etcd)).await
}

async fn start_with(listen: SocketAddr, etcd: Option<&str>) -> Api {
    let fake = Arc::new(Mutex::new(Fake { services: vec![web_service()], ..Default::default() }));
    let (tx, mut rx) = mpsc::channel(16);
    let f = fake.clone();
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            f.lock().unwrap().handle(cmd);
        }
    });
    let telemetry = Arc::new(Telemetry::default());
    let mut control = ControlHandle::new(tx);
    if let Some(etcd) = etcd {
        control = control.with_store(Store::connect(&[etcd.to_string()], "/lb", telemetry.clone()).await.unwrap());
    }
    let state = ApiState {
        control,
        token: Arc::new(RwLock::new(Tokens::parse(TOKEN))),
        admin_listen: listen,
        // Short, so that a test sees a second walk refused without waiting 10 s.
        flow_walks: FlowWalks::with_wait(std::time::Duration::from_millis(300)),
        telemetry,
        // Nothing is pinned here: /metrics must still answer, without data-path series.
        pin_path: PathBuf::from("/nonexistent/lb-api-test-pins"),
        ready: lb_control::ReadyFlag::default(),
        proxy: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, stop) = oneshot::channel::<()>();
    let (token, telemetry, ready) = (state.token.clone(), state.telemetry.clone(), state.ready.clone());
    let flow_walks = state.flow_walks.clone();
    let server = tokio::spawn(serve(listener, state, async move {
        let _ = stop.await;
    }));
    Api { addr, fake, token, telemetry, flow_walks, ready, shutdown: Some(shutdown), server }
}

impl Api {
    fn seen(&self) -> Vec<String> {
        self.fake.lock().unwrap().seen.clone()
    }

    async fn get(&self, path: &str) -> Reply {
        send(self.addr, &format!("GET {path} HTTP/1.1\r\n\r\n"), b"").await
    }

    /// A request with the right token.
    async fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        self.call_with(method, path, &[("Authorization", &format!("Bearer {TOKEN}"))], body).await
    }

    async fn call_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        send(self.addr, &head, body.as_bytes()).await
    }

    async fn services(&self) -> Value {
        let r = self.get("/v1/services").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }
}

// ---- a minimal HTTP/1.1 client --------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The message of a JSON error, checking the status and the `{"error": "..."}` shape.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error message: {self:?}")).to_string()
    }
}

/// Sends `head` (request line and headers, ending in an empty line, without Host and
/// Connection, which are added) and `body`, then reads the reply until the server closes.
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let (line, rest) = head.split_once("\r\n").unwrap();
    let head = format!("{line}\r\nHost: lb\r\nConnection: close\r\n{rest}");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413, 401) and close before reading all of a body: not an error.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => {
                eprintln!("read ended with {e} after the reply");
                break;
            }
            Err(e) => panic!("no reply: {e}"),
        }
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Reply { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn backend<'a>(services: &'a Value, service: &str, address: &str) -> Option<&'a Value> {
    services.as_array()?.iter().find(|s| s["name"] == service)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address)
}

const REGISTER: &str = r#"{"address":"172.20.0.14:80","weight":5,"ttl":"30s"}"#;

// ---- happy paths ----------------------------------------------------------------------

#[tokio::test]
async fn register_then_listed_heartbeat_state_and_delete() {
    let api = start().await;

    let r = api.call("POST", "/v1/services/web/backends", REGISTER).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json(), json!({"service":"web","address":"172.20.0.14:80","weight":5,"ttl_seconds":30,"new":true}));
    let services = api.services().await;
    let b = backend(&services, "web", "172.20.0.14:80").expect("registered backend listed");
    assert_eq!(b["weight"], 5);
    assert_eq!(b["sources"], json!(["registration"]));

    // Renewal: still 201, no longer new.
    let r = api.call("POST", "/v1/services/web/backends", r#"{"address":"172.20.0.14:80","ttl":20}"#).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["new"], false);
    assert_eq!(r.json()["weight"], 1);
    assert_eq!(r.json()["ttl_seconds"], 20);

    let r = api.call("PUT", "/v1/services/web/backends/172.20.0.14:80/heartbeat", "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["address"], "172.20.0.14:80");

    let r = api.call("PUT", "/v1/services/web/backends/172.20.0.14:80/state", r#"{"state":"drain"}"#).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"], "drain");
    assert_eq!(backend(&api.services().await, "web", "172.20.0.14:80").unwrap()["state"], "drain");

    let r = api.call("PUT", "/v1/services/web/backends/172.20.0.14:80/weight", r#"{"weight":7}"#).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["weight"], 7);
    let services = api.services().await;
    let seen = backend(&services, "web", "172.20.0.14:80").unwrap();
    assert_eq!((seen["weight"].clone(), seen["api_weight"].clone()), (7.into(), 7.into()));
    let r = api.call("PUT", "/v1/services/web/backends/172.20.0.14:80/weight", r#"{"weight":null}"#).await;
    assert_eq!((r.status, r.json()["weight"].clone()), (200, serde_json::Value::Null), "{r:?}");
    let r = api.call("DELETE", "/v1/services/web/backends/172.20.0.14:80/weight", "").await;
    assert_eq!((r.status, r.json()["weight"].clone()), (200, serde_json::Value::Null), "{r:?}");
    assert!(backend(&api.services().await, "web", "172.20.0.14:80").unwrap().get("api_weight").is_none());

    let r = api.call("DELETE", "/v1/services/web/backends/172.20.0.14:80", "").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.body, "");
    assert!(backend(&api.services().await, "web", "172.20.0.14:80").is_none());

    assert_eq!(
        api.seen(),
        [
            "register web 172.20.0.14:80",
            "register web 172.20.0.14:80",
            "heartbeat web 172.20.0.14:80",
            "set_state web 172.20.0.14:80 drain",
            "set_weight web 172.20.0.14:80 Some(7)",
            "set_weight web 172.20.0.14:80 None",
            "set_weight web 172.20.0.14:80 None",
            "deregister web 172.20.0.14:80",
        ]
    );
}

#[tokio::test]
async fn ipv6_addresses_in_the_path_percent_encoded_or_raw() {
    let api = start().await;
    let r = api.call("POST", "/v1/services/web/backends", r#"{"address":"[fd00:20::14]:80"}"#).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["address"], "[fd00:20::14]:80");
    assert_eq!(r.json()["ttl_seconds"], 10, "default ttl");

    let encoded = "%5Bfd00%3A20%3A%3A14%5D%3A80";
    let r = api.call("PUT", &format!("/v1/services/web/backends/{encoded}/heartbeat"), "").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api.call("PUT", &format!("/v1/services/web/backends/{encoded}/state"), r#"{"state":"maint"}"#).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api.call("DELETE", "/v1/services/web/backends/[fd00:20::14]:80", "").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        api.seen()[1..],
        ["heartbeat web [fd00:20::14]:80", "set_state web [fd00:20::14]:80 maint", "deregister web [fd00:20::14]:80"]
    );
}

#[tokio::test]
async fn reload_ok_then_failing_with_the_error_lines() {
    let api = start().await;
    let r = api.call("POST", "/v1/reload", "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"result":"ok"}));

    api.fake.lock().unwrap().fail_reload = true;
    let r = api.call("POST", "/v1/reload", "").await;
    assert!(r.error(422).contains("invalid vip"));
    assert_eq!(
        r.json()["errors"],
        json!(["lb.toml:3:7: invalid vip \"nope\"", "lb.toml:9:1: service \"web\" has no backends"])
    );
}

#[tokio::test]
async fn drain_with_or_without_a_body_undo_and_409_without_bgp() {
    let api = start().await;
    assert!(api.call("POST", "/v1/drain", "").await.error(409).contains("[cluster.bgp]"));
    api.fake.lock().unwrap().draining = Some(false);
    let r = api.call("POST", "/v1/drain", "").await;
    assert_eq!((r.status, r.json()), (200, json!({"draining": true, "was_draining": false})), "{r:?}");
    let r = api.call("POST", "/v1/drain", r#"{"drain": false}"#).await;
    assert_eq!((r.status, r.json()), (200, json!({"draining": false, "was_draining": true})), "{r:?}");
    assert!(api.call("POST", "/v1/drain", r#"{"drain": "yes"}"#).await.error(400).contains("invalid JSON body"));
    assert!(api.call("GET", "/v1/drain", "").await.error(405).contains("not allowed"));
    assert_eq!(api.seen(), ["drain true", "drain true", "drain false"]);
}

#[tokio::test]
async fn healthz_and_readyz_both_ways() {
    let api = start().await;
    let r = api.get("/healthz").await;
    assert_eq!((r.status, r.json()), (200, json!({"status":"ok"})));

    let r = api.get("/readyz").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["ready"], false);

    api.telemetry.update(|t| t.path = "xdp");
    api.ready.set(true);
    let r = api.get("/readyz").await;
    assert_eq!((r.status, r.json()), (200, json!({"ready":true,"path":"xdp"})));
}

/// A shared store whose etcd does not answer: every write is a 503 with a JSON error that
/// says so, after the controller's checks (an unknown service is still a 404) and before
/// anything reaches the controller; `/readyz` stays 200 and says the store is unreachable.
#[tokio::test]
async fn with_etcd_unreachable_writes_are_503_and_nothing_changes() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let api = start_with_store("http://127.0.0.1:1").await;
    let register = api.call("POST", "/v1/services/web/backends", r#"{"address":"172.20.0.99:80"}"#).await;
    let message = register.error(503);
    assert!(message.contains("etcd is unreachable") && message.contains("nothing was changed"), "{message}");
    let state = api.call("PUT", "/v1/services/web/backends/172.20.0.11:80/state", r#"{"state":"maint"}"#).await;
    assert!(state.error(503).contains("etcd is unreachable"));
    let heartbeat = api.call("PUT", "/v1/services/web/backends/172.20.0.11:80/heartbeat", "").await;
    assert!(heartbeat.error(503).contains("etcd is unreachable"));
    let deregister = api.call("DELETE", "/v1/services/web/backends/172.20.0.11:80", "").await;
    assert!(deregister.error(503).contains("etcd is unreachable"));
    let unknown = api.call("POST", "/v1/services/nope/backends", r#"{"address":"172.20.0.99:80"}"#).await;
    unknown.error(404);
    assert_eq!(
        api.seen(),
        [
            "check web 172.20.0.99:80",
            "check web 172.20.0.11:80",
            "check web 172.20.0.11:80",
            "check nope 172.20.0.99:80"
        ],
        "checked, never applied"
    );
    let services = api.services().await;
    assert!(backend(&services, "web", "172.20.0.99:80").is_none());
    assert_eq!(backend(&services, "web", "172.20.0.11:80").unwrap()["state"], "ready");

    api.ready.set(true);
    let r = api.get("/readyz").await;
    assert_eq!(r.status, 200, "the data path serves its last known state");
    assert_eq!(r.json()["store"], "unreachable");
    let metrics = api.get("/metrics").await.body;
    assert!(metrics.contains("\nlb_store_up 0\n"), "{metrics}");
    assert!(metrics.contains("\nlb_store_writes_refused_total 4\n"), "{metrics}");
}

#[tokio::test]
async fn metrics_parse_and_carry_control_plane_series() {
    let api = start().await;
    api.telemetry.update(|t: &mut TelemetryData| {
        t.reloads_success = 3;
        t.reloads_failure = 1;
        t.registrations_total = 2;
        let mut h = Histogram::default();
        h.observe(0.003);
        h.observe(0.04);
        t.health_check_seconds.insert(("web".into(), "172.20.0.11:80".into()), h);
        t.path = "xdp";
    });
    let r = api.get("/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"), "{r:?}");
    let scrape = prometheus_parse::Scrape::parse(r.body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let find = |metric: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no {metric}{label:?} in\n{}", r.body))
    };
    use prometheus_parse::Value as V;
    assert_eq!(find("lb_config_reloads_total", ("result", "success")), V::Counter(3.0));
    assert_eq!(find("lb_config_reloads_total", ("result", "failure")), V::Counter(1.0));
    assert_eq!(find("lb_backend_up", ("backend", "172.20.0.11:80")), V::Gauge(1.0));
    assert_eq!(find("lb_registrations", ("service", "web")), V::Gauge(0.0));
    let V::Histogram(buckets) = find("lb_health_check_duration_seconds", ("backend", "172.20.0.11:80")) else {
        panic!("health check duration is not a histogram")
    };
    assert_eq!(buckets.iter().find(|b| b.less_than == 0.005).unwrap().count, 1.0);
    assert_eq!(buckets.iter().find(|b| b.less_than.is_infinite()).unwrap().count, 2.0);
    // Nothing pinned: the data path's series are absent rather than zero.
    assert!(!r.body.contains("lb_backend_packets_total"), "{}", r.body);
}

// ---- authentication -------------------------------------------------------------------

/// Every mutating call, with a body that would otherwise be accepted.
const MUTATIONS: [(&str, &str, &str); 8] = [
    ("POST", "/v1/services/web/backends", REGISTER),
    ("PUT", "/v1/services/web/backends/172.20.0.11:80/heartbeat", ""),
    ("PUT", "/v1/services/web/backends/172.20.0.11:80/state", r#"{"state":"drain"}"#),
    ("PUT", "/v1/services/web/backends/172.20.0.11:80/weight", r#"{"weight":3}"#),
    ("DELETE", "/v1/services/web/backends/172.20.0.11:80/weight", ""),
    ("DELETE", "/v1/services/web/backends/172.20.0.11:80", ""),
    ("POST", "/v1/reload", ""),
    ("POST", "/v1/drain", ""),
];

#[tokio::test]
async fn no_or_wrong_token_is_401_and_reaches_nothing() {
    let api = start().await;
    for (method, path, body) in MUTATIONS {
        let r = api.call_with(method, path, &[], body).await;
        assert!(r.error(401).contains("Authorization"), "{method} {path}: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        for bad in ["Bearer wrong", "Basic czNjcmV0LXRva2Vu", "Bearer s3cret-token-and-more", "Bearer s3cret"] {
            let r = api.call_with(method, path, &[("Authorization", bad)], body).await;
            assert_eq!(
                r.error(401),
                if bad.starts_with("Basic") {
                    "missing \"Authorization: Bearer <token>\" header"
                } else {
                    "invalid bearer token"
                }
            );
        }
    }
    // A bad body without a token is still 401: nothing is looked at before the token.
    let r = api.call_with("POST", "/v1/services/web/backends", &[], "{not json").await;
    r.error(401);
    assert_eq!(api.seen(), Vec::<String>::new(), "the controller saw a refused call");
}

#[tokio::test]
async fn without_a_configured_token_every_mutation_is_401() {
    let api = start().await;
    *api.token.write().unwrap() = Tokens::default();
    for (method, path, body) in MUTATIONS {
        let r = api.call(method, path, body).await;
        assert!(r.error(401).contains("token file is missing"), "{method} {path}: {r:?}");
    }
    assert_eq!(api.seen(), Vec::<String>::new());
    // Reads need no token.
    assert_eq!(api.get("/v1/services").await.status, 200);
}

// ---- bad requests ---------------------------------------------------------------------

#[tokio::test]
async fn malformed_or_incomplete_bodies_are_400_with_a_reason() {
    let api = start().await;
    let post = |body: &'static str| api.call("POST", "/v1/services/web/backends", body);
    assert!(post("{\"address\":").await.error(400).contains("invalid JSON body"));
    assert!(post("").await.error(400).contains("empty"));
    assert!(post(r#"{"weight":2}"#).await.error(400).contains("missing field `address`"));
    assert!(post(r#"{"address":"not-an-address"}"#).await.error(400).contains("invalid backend address"));
    assert!(post(r#"{"address":"172.20.0.14"}"#).await.error(400).contains("IP:PORT"));
    assert!(post(r#"{"address":"172.20.0.14:80","weight":10001}"#).await.error(400).contains("weight"));
    assert!(post(r#"{"address":"172.20.0.14:80","ttl":"10"}"#).await.error(400).contains("ttl"));
    assert!(post(r#"{"address":"172.20.0.14:80","extra":1}"#).await.error(400).contains("unknown field `extra`"));

    let state = |body: &'static str| api.call("PUT", "/v1/services/web/backends/172.20.0.11:80/state", body);
    let e = state(r#"{"state":"sleeping"}"#).await.error(400);
    assert!(e.contains("unknown state \"sleeping\"") && e.contains("\"drain\""), "{e}");
    assert!(state(r#"{}"#).await.error(400).contains("missing field `state`"));
    assert!(state(r#"{"state":3}"#).await.error(400).contains("invalid type"));

    let weight = |body: &'static str| api.call("PUT", "/v1/services/web/backends/172.20.0.11:80/weight", body);
    assert!(weight(r#"{"weight":10001}"#).await.error(400).contains("weight 10001 is too large; the maximum is 10000"));
    assert!(weight(r#"{}"#).await.error(400).contains("missing field `weight`"));
    assert!(weight(r#"{"weight":-1}"#).await.error(400).contains("invalid JSON body"));
    assert!(weight(r#"{"weight":"5"}"#).await.error(400).contains("invalid JSON body"));
    assert!(weight(r#"{"weight":1.5}"#).await.error(400).contains("invalid JSON body"));
    assert!(weight(r#"{"weight":1,"for":"ever"}"#).await.error(400).contains("unknown field `for`"));
    assert!(weight("").await.error(400).contains("empty"));
    assert!(weight("[3]").await.error(400).contains("missing field `weight`"));

    let r = api.call("PUT", "/v1/services/web/backends/172.20.0.11/heartbeat", "").await;
    assert!(r.error(400).contains("invalid backend address \"172.20.0.11\""));
    let r = api.call("DELETE", "/v1/services/web/backends/%5Bfd00%3A%3A1%5D", "").await;
    assert!(r.error(400).contains("[fd00::1]"));
    let r = api.call("DELETE", "/v1/services/web/backends/%FF%FE", "").await;
    r.error(400);
    assert_eq!(api.seen(), Vec::<String>::new(), "the controller saw a bad request");
}

#[tokio::test]
async fn unknown_service_or_backend_is_404() {
    let api = start().await;
    let r = api.call("POST", "/v1/services/nope/backends", REGISTER).await;
    assert!(r.error(404).contains("unknown service \"nope\""));
    let r = api.call("PUT", "/v1/services/web/backends/172.20.0.99:80/heartbeat", "").await;
    assert!(r.error(404).contains("no backend"));
    let r = api.call("DELETE", "/v1/services/nope/backends/172.20.0.11:80", "").await;
    r.error(404);
    let r = api.call("PUT", "/v1/services/web/backends/172.20.0.99:80/weight", r#"{"weight":2}"#).await;
    assert!(r.error(404).contains("no backend"));
}

#[tokio::test]
async fn bodies_over_16_kib_are_413_and_16_kib_is_fine() {
    let api = start().await;
    let limit = lb_user::api::MAX_BODY_BYTES;
    // Exactly the limit: a valid body padded with whitespace.
    let exact = format!("{REGISTER}{}", " ".repeat(limit - REGISTER.len()));
    assert_eq!(api.call("POST", "/v1/services/web/backends", &exact).await.status, 201);

    let over = format!("{exact} ");
    let r = api.call("POST", "/v1/services/web/backends", &over).await;
    assert!(r.error(413).contains("16384"));

    // Chunked, so no Content-Length to refuse early: counted while reading.
    let chunk = "x".repeat(4096);
    let body: String = (0..5).map(|_| format!("1000\r\n{chunk}\r\n")).collect::<String>() + "0\r\n\r\n";
    let head = format!(
        "PUT /v1/services/web/backends/172.20.0.11:80/state HTTP/1.1\r\n\
         Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let r = send(api.addr, &head, body.as_bytes()).await;
    r.error(413);
    assert_eq!(api.seen(), ["register web 172.20.0.14:80"]);
}

#[tokio::test]
async fn unknown_route_404_and_wrong_method_405_are_json() {
    let api = start().await;
    assert!(api.get("/nope").await.error(404).contains("/nope"));
    assert!(api.get("/v1/services/web").await.error(404).contains("no route"));
    let r = api.call("GET", "/v1/reload", "").await;
    assert!(r.error(405).contains("GET"));
    let r = api.call("DELETE", "/v1/services", "").await;
    r.error(405);
    let r = api.call("POST", "/healthz", "").await;
    r.error(405);
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let mut api = start().await;
    api.shutdown.take().unwrap().send(()).unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), &mut api.server).await;
    result.expect("server stopped").unwrap().unwrap();
}

#[test]
fn tokens_load_one_per_line_trimmed_and_blank_means_none() {
    let dir = std::env::temp_dir().join(format!("lb-api-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "  abc123\n").unwrap();
    assert_eq!(Tokens::load(&file).iter().collect::<Vec<_>>(), ["abc123"]);
    std::fs::write(&file, "old-token\n\n  new-token \n").unwrap();
    assert_eq!(Tokens::load(&file).iter().collect::<Vec<_>>(), ["old-token", "new-token"]);
    std::fs::write(&file, " \n").unwrap();
    assert!(Tokens::load(&file).is_empty());
    assert!(Tokens::load(&dir.join("missing")).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- several tokens (rotation) ------------------------------------------------------------

#[tokio::test]
async fn during_a_rotation_both_tokens_are_accepted_and_afterwards_only_the_new_one() {
    let api = start().await;
    *api.token.write().unwrap() = Tokens::parse("old-token\nnew-token\n");
    let api = &api;
    let register = |token: &'static str| {
        let auth = format!("Bearer {token}");
        async move {
            let body = r#"{"address":"172.20.0.14:80"}"#;
            api.call_with("POST", "/v1/services/web/backends", &[("Authorization", &auth)], body).await
        }
    };
    assert_eq!(register("old-token").await.status, 201);
    assert_eq!(register("new-token").await.status, 201);
    assert_eq!(register("other").await.error(401), "invalid bearer token");
    // The old token leaves the file (and a reload swaps the set).
    *api.token.write().unwrap() = Tokens::parse("new-token\n");
    assert_eq!(register("old-token").await.error(401), "invalid bearer token");
    assert_eq!(register("new-token").await.status, 201);
}

// ---- GET /v1/flows ---------------------------------------------------------------------

#[tokio::test]
async fn flows_need_the_token_when_the_api_listens_beyond_loopback() {
    let api = start_listening_as("0.0.0.0:9100".parse().unwrap()).await;
    let r = api.get("/v1/flows").await;
    assert!(r.error(401).contains("Authorization"), "{r:?}");
    assert_eq!(api.call_with("GET", "/v1/flows", &[("Authorization", "Bearer wrong")], "").await.status, 401);
    // With the token it gets as far as the maps (none are pinned here: 503, not 401).
    let r = api.call("GET", "/v1/flows", "").await;
    assert!(r.error(503).starts_with("flows:"), "{r:?}");
    // Other reads stay open.
    assert_eq!(api.get("/v1/services").await.status, 200);
    assert_eq!(api.get("/healthz").await.status, 200);

    let local = start_listening_as("127.0.0.1:9100".parse().unwrap()).await;
    assert!(local.get("/v1/flows").await.error(503).starts_with("flows:"), "loopback only: no token needed");
    let v6 = start_listening_as("[::1]:9100".parse().unwrap()).await;
    assert_eq!(v6.get("/v1/flows").await.status, 503);
}

#[tokio::test]
async fn flow_page_parameters_are_checked_with_a_json_400() {
    let api = start().await;
    for (query, says) in [
        ("limit=0", "invalid limit"),
        ("limit=10001", "invalid limit"),
        ("limit=many", "invalid limit"),
        ("after=nonsense", "invalid cursor"),
        ("after=tcp,1.2.3.4:1,1.2.3.4:80", "invalid cursor"),
        ("colour=red", "unknown field"),
    ] {
        let r = api.get(&format!("/v1/flows?{query}")).await;
        assert!(r.error(400).contains(says), "{query}: {r:?}");
    }
    let ok = "/v1/flows?limit=10000&after=tcp,172.20.0.2:40000,172.20.0.100:80,172.20.0.11:80";
    assert_eq!(api.get(ok).await.status, 503, "valid parameters reach the (absent) maps");
}

#[tokio::test]
async fn one_flow_table_walk_at_a_time_a_second_waits_then_gets_503() {
    let api = start().await;
    let walk = api.flow_walks.begin().await.unwrap();
    let started = std::time::Instant::now();
    let r = api.get("/v1/flows").await;
    assert!(r.error(503).contains("another walk of the flow table"), "{r:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250), "it waited for the walk first");
    let r = api.get("/metrics").await;
    assert!(r.error(503).contains("another walk"), "/metrics waits for the same walk: {r:?}");
    // Once the walk ends, the next one runs (no maps here: a plain 503 of its own, and a
    // scrape without data-path series).
    drop(walk);
    assert!(api.get("/v1/flows").await.error(503).starts_with("flows:"));
    assert_eq!(api.get("/metrics").await.status, 200);
}

#[tokio::test]
async fn the_status_page_and_its_json_show_every_backend_free_on_loopback() {
    let api = start().await;
    let page = api.get("/").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{page:?}");
    assert!(page.header("content-security-policy").is_some_and(|p| p.contains("default-src 'none'")));
    assert!(
        page.body.contains("<tr class=\"backend\" data-service=\"web\" data-backend=\"172.20.0.11:80\">"),
        "{}",
        page.body
    );
    let status = api.get("/v1/status").await.json();
    let web = &status["services"][0];
    assert_eq!(web["name"], "web");
    let backends = web["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), web_service().backends.len());
    assert_eq!(backends[0]["address"], "172.20.0.11:80");
    assert_eq!(backends[0]["new_flows"], 0, "nothing pinned: no counters yet");
    assert!(status["sampled_at_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{status}");
}

#[tokio::test]
async fn beyond_loopback_the_status_page_takes_the_token_as_bearer_or_basic_password_and_nothing_else_takes_basic() {
    use base64::Engine as _;
    let basic =
        |user_password: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password));
    let api = start_listening_as("0.0.0.0:9100".parse().unwrap()).await;
    for path in ["/", "/v1/status"] {
        let r = api.get(path).await;
        assert_eq!(r.status, 401, "{path}: {r:?}");
        let challenges: Vec<&str> =
            r.headers.iter().filter(|(k, _)| k == "www-authenticate").map(|(_, v)| v.as_str()).collect();
        assert!(challenges.iter().any(|c| c.starts_with("Basic realm=\"lb\"")), "{path}: {challenges:?}");
        let wrong = api.call_with("GET", path, &[("Authorization", &basic("lb:nope"))], "").await;
        assert_eq!(wrong.status, 401, "{path}");
        let ok = api.call_with("GET", path, &[("Authorization", &basic(&format!("anyone:{TOKEN}")))], "").await;
        assert_eq!(ok.status, 200, "{path}: {ok:?}");
        let bearer = api.call_with("GET", path, &[("Authorization", &format!("Bearer {TOKEN}"))], "").await;
        assert_eq!(bearer.status, 200, "{path}");
    }
    // A change never takes Basic: a browser would replay it for any page that posts here.
    let r = api.call_with("POST", "/v1/reload", &[("Authorization", &basic(&format!("lb:{TOKEN}")))], "").await;
    assert_eq!(r.status, 401, "{r:?}");
}

#[tokio::test]
async fn the_openapi_description_is_served_and_names_the_status_routes() {
    let api = start().await;
    let doc = api.get("/openapi.json").await.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    for path in ["/", "/v1/status", "/v1/services/{service}/backends"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(doc["components"]["securitySchemes"]["token"]["scheme"], "bearer");
}

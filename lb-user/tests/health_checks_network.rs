//! The udp, https and agent health checks on the test network with real backends: per
//! type, a backend goes down and comes back, and the daemon's view
//! (`GET /v1/services`) follows; the time from the backend's change to the daemon's is
//! measured and printed. Root only: `cargo xtask test` runs it.
mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::net::*;
use serde_json::Value;
use testenv::VIP_V4;

const API: &str = "http://172.20.0.10:9100";
const DIR: &str = "/run/lbt/health-checks";
const SNI: &str = "server1.lbt.test";

/// The checks' timing, the same for every type: a check every 500 ms (±10%), two
/// failures to go down, two successes to come up.
const TIMING: &str = "interval = \"500ms\"\ntimeout = \"400ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n";

/// The backends, in server1's namespace: `udp PORT` (echo, answering `Server1 ` and the
/// datagram), `https PORT CERT KEY` (200 to any GET), `agent PORT FILE` (the file's first
/// line to each connection).
const BACKEND: &str = r#"
import http.server, socket, ssl, sys
mode, port = sys.argv[1], int(sys.argv[2])
if mode == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(b"Server1 " + data, peer)
elif mode == "https":
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Ok)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
elif mode == "agent":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(open(sys.argv[3], "rb").read().strip() + b"\n")
        finally:
            c.close()
"#;

struct Backend(Child);

impl Backend {
    fn start(args: &[&str]) -> Self {
        let python = testenv::python();
        let mut argv = vec![python.as_str(), "-c", BACKEND];
        argv.extend(args);
        Backend(testenv::spawn("lbt-server1", &argv).expect("start a backend"))
    }

    /// Gone when this returns: its port is closed.
    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a certificate for `SNI` it signed, made now: (CA, certificate, key) files.
fn certificates() -> (String, String, String) {
    std::fs::create_dir_all(DIR).unwrap();
    let file = |name: &str| format!("{DIR}/{name}");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(&[
        &["req", "-x509", "-days", "1", "-subj", "/CN=lbt test CA"],
        &ec[..],
        &["-keyout", &file("ca.key"), "-out", &file("ca.pem")],
    ]);
    openssl(&[
        &["req", "-subj", &format!("/CN={SNI}")],
        &ec[..],
        &["-keyout", &file("key.pem"), "-out", &file("req.csr")],
    ]);
    std::fs::write(file("ext"), format!("subjectAltName=DNS:{SNI}\nbasicConstraints=CA:FALSE\n")).unwrap();
    openssl(&[
        &["x509", "-req", "-days", "1", "-in", &file("req.csr"), "-CA", &file("ca.pem"), "-CAkey", &file("ca.key")],
        &["-extfile", &file("ext"), "-out", &file("cert.pem")],
    ]);
    (file("ca.pem"), file("cert.pem"), file("key.pem"))
}

fn openssl(parts: &[&[&str]]) {
    let args: Vec<&str> = parts.concat();
    let out =
        std::process::Command::new("openssl").args(&args).output().expect("openssl (cargo xtask deps installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn config(ca: &str) -> String {
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\nadmin_listen = \"172.20.0.10:9100\"\n\
         state_file = \"{DIR}/state.json\"\n\n\
         [[service]]\nname = \"dns\"\nvip = \"{VIP_V4}:53\"\nprotocol = \"udp\"\n\
         [service.health_check]\ntype = \"udp\"\nsend = \"ping\"\nexpect = \"Server1\"\n{TIMING}\
         [[service.backend]]\naddress = \"172.20.0.11:5300\"\n\n\
         [[service]]\nname = \"tls\"\nvip = \"{VIP_V4}:443\"\n\
         [service.health_check]\ntype = \"https\"\nsni = \"{SNI}\"\nverify = true\nca_file = \"{ca}\"\n{TIMING}\
         [[service.backend]]\naddress = \"172.20.0.11:8443\"\n\n\
         [[service]]\nname = \"app\"\nvip = \"{VIP_V4}:80\"\n\
         [service.health_check]\ntype = \"agent\"\nagent_port = 5555\n{TIMING}\
         [[service.backend]]\naddress = \"172.20.0.11:80\"\nweight = 10\n",
        pin = testenv::LB_PIN_PATH
    )
}

/// The daemon's view of `service`'s one backend.
fn backend(service: &str) -> Value {
    let (code, body) = api("GET", &format!("{API}/v1/services"), None, None);
    assert_eq!(code, 200, "{body}");
    let services: Value = serde_json::from_str(&body).unwrap();
    let s = services.as_array().unwrap().iter().find(|s| s["name"] == service).expect("the service");
    s["backends"][0].clone()
}

/// Polls the daemon's view until `done` holds (every ~50 ms, for at most 15 s); the time
/// it took from `since`.
fn until(service: &str, since: Instant, what: &str, done: impl Fn(&Value) -> bool) -> Duration {
    let deadline = since + Duration::from_secs(15);
    loop {
        let b = backend(service);
        if done(&b) {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "{service}: never {what}: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn health_is(h: &'static str) -> impl Fn(&Value) -> bool {
    move |b: &Value| b["health"] == h
}

/// Server1 drops (or again takes) the datagrams to the UDP echo.
fn silence_udp(on: bool) {
    let script = if on {
        "add table inet lbt_silence\nadd chain inet lbt_silence input { type filter hook input priority 0; }\n\
         add rule inet lbt_silence input udp dport 5300 drop\n"
    } else {
        "delete table inet lbt_silence\n"
    };
    let file = format!("{DIR}/silence.nft");
    std::fs::write(&file, script).unwrap();
    testenv::exec_ok("lbt-server1", &["nft", "-f", &file]).expect("nft in server1");
}

fn agent_says(file: &str, line: &str) -> Instant {
    std::fs::write(file, format!("{line}\n")).unwrap();
    Instant::now()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn udp_https_and_agent_checks_follow_real_backends_down_and_up() {
    let _net = Net::up(false);
    let (ca, cert, key) = certificates();
    let agent_file = format!("{DIR}/agent");
    std::fs::write(&agent_file, "up\n").unwrap();
    let udp = Backend::start(&["udp", "5300"]);
    let https = Backend::start(&["https", "8443", &cert, &key]);
    let _agent = Backend::start(&["agent", "5555", &agent_file]);
    let lb = start(&config(&ca));
    let started = Instant::now();
    for service in ["dns", "tls", "app"] {
        until(service, started, "up", health_is("up"));
    }
    let mut measured = Vec::new();

    // udp: the echo stops; the port is closed, so the ICMP port unreachable fails each
    // check at once.
    let t = Instant::now();
    udp.stop();
    let down = until("dns", t, "down", health_is("down"));
    let detail = backend("dns")["last_check"]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.starts_with("port unreachable"), "refused, not timed out: {detail}");
    let t = Instant::now();
    let _udp = Backend::start(&["udp", "5300"]);
    let up = until("dns", t, "up", health_is("up"));
    measured.push(("udp", down, up));
    // udp, silent: server1 drops the datagrams (a host gone, a firewall), so each check
    // waits out its timeout.
    let t = Instant::now();
    silence_udp(true);
    let down = until("dns", t, "down", health_is("down"));
    let detail = backend("dns")["last_check"]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.starts_with("timeout after 400ms"), "{detail}");
    let t = Instant::now();
    silence_udp(false);
    let up = until("dns", t, "up", health_is("up"));
    measured.push(("udp (silent)", down, up));

    // https: the server stops; then it comes back.
    let t = Instant::now();
    https.stop();
    let down = until("tls", t, "down", health_is("down"));
    let t = Instant::now();
    let _https = Backend::start(&["https", "8443", &cert, &key]);
    let up = until("tls", t, "up", health_is("up"));
    assert_eq!(backend("tls")["last_check"]["detail"], "TLS, HTTP 200", "verified against the CA, for the SNI");
    measured.push(("https", down, up));

    // agent: it says down, then up; drain, a share and maint, then ready 100%.
    let t = agent_says(&agent_file, "down#maintenance window");
    let down = until("app", t, "down", health_is("down"));
    let t = agent_says(&agent_file, "up");
    let up = until("app", t, "up", health_is("up"));
    measured.push(("agent", down, up));
    let t = agent_says(&agent_file, "drain 50%");
    let drained = until("app", t, "drained at half weight", |b| b["state"] == "drain" && b["weight"] == 5);
    let b = backend("app");
    assert_eq!((b["agent"]["state"].as_str(), b["agent"]["weight_percent"].as_u64()), (Some("drain"), Some(50)), "{b}");
    agent_says(&agent_file, "maint");
    until("app", Instant::now(), "in maint", |b| b["state"] == "maint");
    agent_says(&agent_file, "ready 100%");
    until("app", Instant::now(), "back", |b| b["state"] == "ready" && b["weight"] == 10 && b["agent"].is_null());
    assert_eq!(backend("app")["health"], "up", "state words leave health alone");

    eprintln!("detection times (interval 500ms ±10%, timeout 400ms, unhealthy 2, healthy 2):");
    for (kind, down, up) in &measured {
        eprintln!("  {kind:<12} down after {:>5} ms, up after {:>5} ms", down.as_millis(), up.as_millis());
    }
    eprintln!("  agent        drain 50% applied after {} ms", drained.as_millis());
    for (kind, down, up) in &measured {
        // Two failures one interval apart, the first within an interval of the change,
        // each within the timeout (waited out when silent); plus the API polling and a
        // second of slack for a loaded machine. Coming up: the same with successes.
        let bound = Duration::from_millis(2 * 550 + 2 * 400 + 1000);
        assert!(*down <= bound, "{kind}: down after {down:?}, more than {bound:?}");
        assert!(*up <= bound + Duration::from_secs(2), "{kind}: up after {up:?} (python start-up included)");
    }
    assert!(lb.log().contains("agent report changed"), "{}", lb.log());
}
